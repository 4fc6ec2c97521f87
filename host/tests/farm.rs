//! A farm of simulators behind one server (`comfyui_mcp::farm`): routing by model and by
//! node class, the load spread by capacity, a graph no member can run, status and cancel
//! going to the member holding the job, failover of queued jobs (same prompt id, moved to the
//! other member, completed there), and a running job's member dying (failed with the reason,
//! or resubmitted when `retries` allows).

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use comfyui::JobState;
use comfyui_mcp::App;
use serde_json::{Map, Value, json};
use simulator::{Machine, SimConfig, SimHandle};

const FAILOVER_MS: &str = "300";

async fn sim(checkpoints: &[&str], omit_nodes: &[&str], step_delay: Duration) -> SimHandle {
    common::simulator_with(SimConfig {
        step_delay,
        machine: Machine {
            checkpoints: Some(checkpoints.iter().map(|c| (*c).to_owned()).collect()),
            loras: None,
            omit_nodes: omit_nodes.iter().map(|c| (*c).to_owned()).collect(),
        },
        ..SimConfig::default()
    })
    .await
}

struct Rig {
    app: std::sync::Arc<App>,
    _dirs: (tempfile::TempDir, tempfile::TempDir, tempfile::TempDir),
}

/// The shipped pack served over a farm of `sims` (via a backends file naming them `a`, `b`,
/// … with these capacities).
async fn farm(sims: &[&SimHandle], capacities: &[f64], extra: &[&str]) -> Rig {
    let out = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    let conf = tempfile::tempdir().unwrap();
    let backends: Vec<Value> = sims
        .iter()
        .zip(capacities)
        .enumerate()
        .map(|(i, (sim, capacity))| {
            json!({"name": ((b'a' + i as u8) as char).to_string(), "url": sim.base_url(), "capacity": capacity})
        })
        .collect();
    let file = conf.path().join("backends.json");
    std::fs::write(&file, serde_json::to_vec(&backends).unwrap()).unwrap();
    let file = file.display().to_string();
    let mut flags = vec!["--backends-file", &file, "--failover-after-ms", FAILOVER_MS];
    flags.extend_from_slice(extra);
    let settings = common::settings(
        "http://unused.invalid:1".into(),
        out.path(),
        &common::repo().join("templates"),
        cache.path(),
        &flags,
    );
    let app = common::start_app(&settings).await;
    // Every member connected before the test routes work (rotation is the connected ones).
    for member in app.farm().members() {
        let mut conn = member.comfy.connection();
        tokio::time::timeout(Duration::from_secs(10), conn.wait_for(|c| c.connected))
            .await
            .expect("member connects")
            .unwrap();
    }
    Rig {
        app,
        _dirs: (out, cache, conf),
    }
}

fn args(v: Value) -> Map<String, Value> {
    let mut map = v.as_object().unwrap().clone();
    map.entry("prompt").or_insert(json!("a knight"));
    map.entry("width").or_insert(json!(64));
    map.entry("height").or_insert(json!(64));
    map.entry("steps").or_insert(json!(2));
    map
}

fn prompts(sim: &SimHandle) -> usize {
    sim.requests()
        .iter()
        .filter(|r| r.method == "POST" && r.path.ends_with("/prompt"))
        .count()
}

async fn finished(app: &App, prompt_id: &str) -> comfyui::JobSnapshot {
    let done = app.wait(prompt_id, Duration::from_secs(30)).await.unwrap();
    assert!(done.state.is_terminal(), "{done:?}");
    done
}

/// `character-portrait` with `a`.
async fn portrait(
    app: &App,
    a: Map<String, Value>,
) -> Result<comfyui::JobSnapshot, comfyui_mcp::error::AppError> {
    app.generate("character-portrait", a).await
}

/// `image-variation` of `image` (base64) with `checkpoint` (image templates take no size).
async fn variation(
    app: &App,
    image: &str,
    checkpoint: &str,
) -> Result<comfyui::JobSnapshot, comfyui_mcp::error::AppError> {
    let mut a = args(json!({"image": image, "checkpoint": checkpoint}));
    a.remove("width");
    a.remove("height");
    app.generate("image-variation", a).await
}

/// A black 64x64 PNG, base64.
fn black_png() -> String {
    use base64::Engine as _;
    let mut png = Vec::new();
    image::DynamicImage::ImageRgb8(image::RgbImage::new(64, 64))
        .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .unwrap();
    base64::engine::general_purpose::STANDARD.encode(&png)
}

#[tokio::test]
async fn graphs_go_where_their_model_and_nodes_are() {
    let a = sim(&["alpha.safetensors"], &[], Duration::ZERO).await;
    let b = sim(&["beta.safetensors"], &["VAEEncode"], Duration::ZERO).await;
    let rig = farm(&[&a, &b], &[1.0, 1.0], &[]).await;

    for _ in 0..3 {
        let job = portrait(&rig.app, args(json!({"checkpoint": "beta.safetensors"})))
            .await
            .unwrap();
        assert_eq!(job.backend, "b", "only b has beta.safetensors");
        let job = portrait(&rig.app, args(json!({"checkpoint": "alpha.safetensors"})))
            .await
            .unwrap();
        assert_eq!(job.backend, "a");
    }
    // image-variation needs VAEEncode, which b lacks: always a, although a is busier.
    let image = black_png();
    for _ in 0..3 {
        let job = variation(&rig.app, &image, "alpha.safetensors")
            .await
            .unwrap();
        assert_eq!(job.backend, "a");
        let done = finished(&rig.app, &job.prompt_id).await;
        assert_eq!(done.state, JobState::Completed, "{done:?}");
        assert_eq!(done.backend, "a", "the status names the backend");
    }
    // No member has both beta.safetensors and VAEEncode: the error names what is missing where.
    let err = variation(&rig.app, &image, "beta.safetensors")
        .await
        .unwrap_err();
    assert_eq!(err.kind(), "no_backend", "{err}");
    let text = err.to_string();
    assert!(
        text.starts_with("no ComfyUI backend can run this graph:"),
        "{text}"
    );
    assert!(
        text.contains("- a: ") && text.contains("beta.safetensors"),
        "{text}"
    );
    assert!(
        text.contains("- b: ") && text.contains("VAEEncode"),
        "{text}"
    );
    assert_eq!(
        err.to_json()["details"]["backends"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
}

#[tokio::test]
async fn work_is_spread_by_load_and_capacity() {
    let a = sim(&["m.safetensors"], &[], Duration::ZERO).await;
    let b = sim(&["m.safetensors"], &[], Duration::ZERO).await;
    a.hold_queue(true);
    b.hold_queue(true);
    let rig = farm(&[&a, &b], &[3.0, 1.0], &[]).await;
    let mut on: BTreeMap<String, usize> = BTreeMap::new();
    for i in 0..8 {
        let job = portrait(&rig.app, args(json!({"seed": i}))).await.unwrap();
        *on.entry(job.backend).or_default() += 1;
    }
    assert_eq!(
        on,
        BTreeMap::from([("a".into(), 6), ("b".into(), 2)]),
        "3:1 by capacity"
    );
    assert_eq!((prompts(&a), prompts(&b)), (6, 2));
}

#[tokio::test]
async fn equal_members_share_the_work_evenly() {
    let a = sim(&["m.safetensors"], &[], Duration::ZERO).await;
    let b = sim(&["m.safetensors"], &[], Duration::ZERO).await;
    let rig = farm(&[&a, &b], &[1.0, 1.0], &[]).await;
    // Each job finishes before the next: loads are equal every time, ties alternate.
    for i in 0..6 {
        let job = portrait(&rig.app, args(json!({"seed": i}))).await.unwrap();
        finished(&rig.app, &job.prompt_id).await;
    }
    assert_eq!((prompts(&a), prompts(&b)), (3, 3));
}

#[tokio::test]
async fn cancel_and_status_go_to_the_member_holding_the_job() {
    let a = sim(&["alpha.safetensors"], &[], Duration::ZERO).await;
    let b = sim(&["beta.safetensors"], &[], Duration::ZERO).await;
    b.hold_queue(true);
    let rig = farm(&[&a, &b], &[1.0, 1.0], &[]).await;
    let job = portrait(&rig.app, args(json!({"checkpoint": "beta.safetensors"})))
        .await
        .unwrap();
    assert_eq!(job.backend, "b");
    let status = rig.app.status(&job.prompt_id).await.unwrap();
    assert_eq!(
        (status.state, status.backend.as_str()),
        (JobState::Queued, "b")
    );
    a.clear_requests();
    b.clear_requests();
    let report = rig.app.cancel(Some(&job.prompt_id), false).await.unwrap();
    assert!(report.cancelled, "{report:?}");
    let deletes = |sim: &SimHandle| {
        sim.requests()
            .iter()
            .filter(|r| r.method == "POST" && r.path.ends_with("/queue"))
            .count()
    };
    assert_eq!(
        (deletes(&a), deletes(&b)),
        (0, 1),
        "the delete went to b only"
    );
    let done = finished(&rig.app, &job.prompt_id).await;
    assert_eq!(done.state, JobState::Cancelled);
}

#[tokio::test]
async fn queued_jobs_of_a_dead_member_move_and_complete_under_the_same_id() {
    let a = sim(&["m.safetensors"], &[], Duration::ZERO).await;
    let b = sim(&["m.safetensors"], &[], Duration::ZERO).await;
    a.hold_queue(true);
    b.hold_queue(true);
    let rig = farm(&[&a, &b], &[1.0, 1.0], &[]).await;
    let mut on_a = Vec::new();
    for i in 0..4 {
        let job = portrait(&rig.app, args(json!({"seed": 100 + i})))
            .await
            .unwrap();
        if job.backend == "a" {
            on_a.push(job);
        }
    }
    assert_eq!(on_a.len(), 2, "half the jobs went to a");
    b.hold_queue(false);
    let before = prompts(&b);
    a.shutdown().await;
    for job in &on_a {
        let done = finished(&rig.app, &job.prompt_id).await;
        assert_eq!(done.state, JobState::Completed, "{done:?}");
        assert_eq!(done.prompt_id, job.prompt_id);
        assert_eq!(done.backend, "b");
        assert_eq!(done.parameters["seed"], job.parameters["seed"], "same seed");
        assert!(
            done.warnings
                .iter()
                .any(|w| w
                    == "moved from backend `a` to `b`: `a` stopped answering while it was queued"),
            "{:?}",
            done.warnings
        );
        let provenance =
            std::fs::read_to_string(done.files[0].path.parent().unwrap().join("provenance.json"))
                .unwrap();
        let provenance: Value = serde_json::from_str(&provenance).unwrap();
        assert_eq!(provenance["backend"], "b");
        assert!(
            provenance["warnings"][0]
                .as_str()
                .unwrap()
                .contains("from backend `a`")
        );
    }
    assert_eq!(
        prompts(&b),
        before + 2,
        "both moved jobs were submitted to b"
    );
    assert_eq!(
        rig.app.farm().retained().used(),
        0,
        "nothing retained once they ended"
    );
}

/// A job running on `a` (30 s per step) of a two-member farm; `b` is instant.
async fn running_on_a(extra_args: Value) -> (Rig, SimHandle, SimHandle, comfyui::JobSnapshot) {
    let a = sim(&["m.safetensors"], &[], Duration::from_secs(30)).await;
    let b = sim(&["m.safetensors"], &[], Duration::ZERO).await;
    let rig = farm(&[&a, &b], &[1.0, 1.0], &[]).await;
    // The first tie goes to the first member.
    let job = rig
        .app
        .generate("character-portrait", args(extra_args))
        .await
        .unwrap();
    assert_eq!(job.backend, "a");
    let mut feed = rig.app.watch(&job.prompt_id).unwrap();
    tokio::time::timeout(
        Duration::from_secs(10),
        feed.wait_for(|s| s.state == JobState::Running),
    )
    .await
    .expect("the job starts")
    .unwrap();
    (rig, a, b, job)
}

#[tokio::test]
async fn a_running_job_fails_with_its_member_naming_why() {
    let (rig, a, _b, job) = running_on_a(json!({})).await;
    a.shutdown().await;
    let failed = finished(&rig.app, &job.prompt_id).await;
    assert_eq!(
        (failed.state, failed.backend.as_str()),
        (JobState::Failed, "a"),
        "{failed:?}"
    );
    let error = failed.error.unwrap();
    assert_eq!(error.exception_type.as_deref(), Some("BackendLost"));
    assert!(
        error.message.starts_with("backend `a` stopped answering (unreachable for 0.3 s) while the job was running; it was not resubmitted: pass `retries` (up to 3)"),
        "{}",
        error.message
    );
    assert!(
        rig.app.farm().members()[0].comfy.open_job_ids().is_empty(),
        "nothing left open"
    );
}

#[tokio::test]
async fn a_running_job_with_retries_is_resubmitted_elsewhere() {
    let (rig, a, _b, job) = running_on_a(json!({"retries": 1})).await;
    assert_eq!(job.metadata["retries"], 1);
    a.shutdown().await;
    let done = finished(&rig.app, &job.prompt_id).await;
    assert_eq!(
        (done.state, done.backend.as_str()),
        (JobState::Completed, "b"),
        "{done:?}"
    );
    assert!(
        done.warnings
            .iter()
            .any(|w| w == "moved from backend `a` to `b`: `a` stopped answering while running it (retry 1 of 1)"),
        "{:?}",
        done.warnings
    );
    let err = portrait(&rig.app, args(json!({"retries": 4})))
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("retries: must be a whole number from 0 to 3, got 4"),
        "{err}"
    );
}

#[tokio::test]
async fn list_workflows_knows_which_templates_run_where() {
    let a = sim(&["m.safetensors"], &[], Duration::ZERO).await;
    let b = sim(&["m.safetensors"], &["VAEEncode"], Duration::ZERO).await;
    let rig = farm(&[&a, &b], &[1.0, 1.0], &[]).await;
    let runnable = rig.app.runnable().await.expect("both answer");
    assert_eq!(runnable["character-portrait"], ["a", "b"]);
    assert_eq!(runnable["image-variation"], ["a"], "b lacks VAEEncode");
    assert_eq!(runnable["inpaint"], ["a"]);
    let again = rig.app.runnable().await.unwrap();
    assert!(
        std::sync::Arc::ptr_eq(&runnable, &again),
        "cached until something changes"
    );
}

/// Waits until the server has self-tested its packs against the live catalogs (not the
/// stock one) and every self-test it started has ended.
async fn self_tested_live(app: &App) {
    tokio::time::timeout(Duration::from_secs(10), async {
        while !matches!(
            app.loader().check_catalog(),
            comfyui_mcp::selftest::CheckCatalog::Live(..)
        ) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the live catalog becomes known");
    app.packs().wait_idle().await;
}

fn pack_problems(app: &App) -> Vec<String> {
    app.catalog()
        .errors()
        .iter()
        .map(|p| p.error.clone())
        .collect()
}

#[tokio::test]
async fn a_pack_whose_template_only_another_member_can_run_keeps_serving() {
    // The primary lacks VAEEncode, which image-variation and inpaint need; b has it. The
    // farm can run every template, so the self-test must not withdraw the pack.
    let a = sim(&["m.safetensors"], &["VAEEncode"], Duration::ZERO).await;
    let b = sim(&["m.safetensors"], &[], Duration::ZERO).await;
    let rig = farm(&[&a, &b], &[1.0, 1.0], &[]).await;
    self_tested_live(&rig.app).await;
    assert_eq!(pack_problems(&rig.app), Vec::<String>::new());
    let job = variation(&rig.app, &black_png(), "m.safetensors")
        .await
        .unwrap();
    assert_eq!(job.backend, "b", "only b has VAEEncode");
    let job = portrait(&rig.app, args(json!({}))).await.unwrap();
    assert!(["a", "b"].contains(&job.backend.as_str()));
}

#[tokio::test]
async fn a_template_no_member_can_run_fails_the_self_test_naming_each_member() {
    // Neither member has VAEEncode: image-variation cannot run anywhere.
    let a = sim(&["m.safetensors"], &["VAEEncode"], Duration::ZERO).await;
    let b = sim(
        &["m.safetensors"],
        &["VAEEncode", "KSampler"],
        Duration::ZERO,
    )
    .await;
    let rig = farm(&[&a, &b], &[1.0, 1.0], &[]).await;
    self_tested_live(&rig.app).await;
    let problems = pack_problems(&rig.app);
    let [problem] = problems.as_slice() else {
        panic!("{problems:?}");
    };
    assert!(problem.contains("template `image-variation`"), "{problem}");
    assert!(
        problem.contains("on a:") && problem.contains("on b:"),
        "{problem}"
    );
    assert!(problem.contains("VAEEncode"), "{problem}");
    assert!(rig.app.catalog().template("character-portrait").is_none());
}

#[tokio::test]
async fn a_member_back_with_the_nodes_a_refused_pack_needs_brings_the_pack_back() {
    let a = sim(&["m.safetensors"], &["VAEEncode"], Duration::ZERO).await;
    let b = sim(&["m.safetensors"], &["VAEEncode"], Duration::ZERO).await;
    let rig = farm(&[&a, &b], &[1.0, 1.0], &[]).await;
    self_tested_live(&rig.app).await;
    assert!(
        rig.app.catalog().template("image-variation").is_none(),
        "no member can run image-variation: the pack is refused"
    );
    // b restarts with VAEEncode installed: its reconnection is a new catalog, the refused
    // pack is loaded again and serves.
    let bytes = std::fs::read(common::repo().join("host/comfyui/data/object_info.json")).unwrap();
    let machine = Machine {
        checkpoints: Some(vec!["m.safetensors".to_owned()]),
        ..Machine::default()
    };
    b.set_object_info(machine.apply(serde_json::from_slice(&bytes).unwrap()));
    let mut changes = rig.app.catalog_changes();
    b.restart().await;
    tokio::time::timeout(
        Duration::from_secs(20),
        changes.wait_for(|_| rig.app.catalog().template("image-variation").is_some()),
    )
    .await
    .expect("the pack serves again once b is back with VAEEncode")
    .unwrap();
    let job = variation(&rig.app, &black_png(), "m.safetensors")
        .await
        .unwrap();
    assert_eq!(job.backend, "b", "only b has VAEEncode now");
}
