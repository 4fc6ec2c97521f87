//! Pack loading and pack-call admission, end to end in process: a real `App` over a
//! private templates folder (copies of the committed test packs) and the ComfyUI
//! simulator on loopback.
//!
//! * admission: a storm of spinning calls (`sleeper-agent`, which passes its self-test
//!   and spins on real calls) never runs more than the permits (counted
//!   with the admission's own counter and with the process's OS threads), a good
//!   pack's call still completes or gets a clean busy error, the server stays
//!   responsive;
//! * bounded loads: `initialize` is answered while `slow-loader` loads, other packs
//!   serve meanwhile, a load over its budget fails with a precise message;
//! * catalog integrity: clashing ids and pack names are resolved independently of
//!   file-name order, with typed problems;
//! * an honest self-test: `two-faced`, which builds a valid graph only when it thinks
//!   it is being tested, fails its self-test just as its real calls fail.
//!
//! Tests run one at a time (they count the process's threads). Every wait is bounded;
//! nothing asserts on timings.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use comfyui_mcp::App;
use comfyui_mcp::catalog::ProblemKind;
use serde_json::{Map, Value, json};
use tokio::io::AsyncWriteExt;

/// Upper bound for any single wait (a bound, not an expectation).
const BOUND: Duration = Duration::from_secs(120);

/// One test at a time: the storm test counts the process's threads.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

struct Fixture {
    sim: simulator::SimHandle,
    templates: tempfile::TempDir,
    out: tempfile::TempDir,
}

/// A committed pack: `templates/<name>` for the shipped one, else `tests/packs/<name>`.
fn pack(name: &str) -> PathBuf {
    let shipped = common::repo().join("templates").join(name);
    if shipped.exists() {
        shipped
    } else {
        common::repo().join("tests/packs").join(name)
    }
}

impl Fixture {
    /// A simulator and a templates folder holding `packs` as (source, file name).
    async fn new(packs: &[(&str, &str)]) -> Self {
        let sim = common::simulator(Duration::from_millis(1)).await;
        let templates = tempfile::tempdir().expect("temp dir");
        let fixture = Self {
            sim,
            templates,
            out: tempfile::tempdir().expect("temp dir"),
        };
        for (source, name) in packs {
            fixture.install(source, name);
        }
        fixture
    }

    fn install(&self, source: &str, name: &str) {
        std::fs::copy(pack(source), self.templates.path().join(name)).expect("copy pack");
    }

    fn path(&self, name: &str) -> PathBuf {
        self.templates.path().join(name)
    }

    fn settings(&self, extra: &[&str]) -> comfyui_mcp::config::Settings {
        let cache = Path::new(env!("CARGO_TARGET_TMPDIR")).join("loading-pack-cache");
        common::settings(
            self.sim.base_url(),
            self.out.path(),
            self.templates.path(),
            &cache,
            extra,
        )
    }

    /// The service with its first scan complete.
    async fn app(&self, extra: &[&str]) -> Arc<App> {
        common::start_app(&self.settings(extra)).await
    }
}

/// OS threads of this process now.
fn threads() -> usize {
    std::fs::read_dir("/proc/self/task").map_or(0, |d| d.count())
}

fn problems_of(app: &App, path: &Path) -> Vec<(ProblemKind, String)> {
    app.catalog()
        .errors()
        .iter()
        .filter(|p| p.path == path)
        .map(|p| (p.kind.clone(), p.error.clone()))
        .collect()
}

fn owner_of(app: &App, id: &str) -> Option<String> {
    app.catalog().template(id).map(|t| t.pack.name.clone())
}

// ---------------------------------------------------------------- admission

/// Arguments that wake `sleeper-agent` up (it behaves with an empty prompt, as in its
/// self-test, so it serves).
fn awake() -> Map<String, Value> {
    let mut args = Map::new();
    args.insert("prompt".into(), json!("go"));
    args
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_storm_of_spinning_calls_never_runs_more_than_the_permits() {
    let _serial = SERIAL.lock().await;
    let fx = Fixture::new(&[
        ("sleeper-agent.wasm", "sleeper-agent.wasm"),
        ("mini.wasm", "mini.wasm"),
    ])
    .await;
    let app = fx
        .app(&[
            "--pack-concurrency",
            "2",
            "--pack-share",
            "1",
            "--pack-timeout-ms",
            "300",
            "--pack-queue-wait-ms",
            "1500",
        ])
        .await;
    assert!(
        app.catalog().template("spin").is_some(),
        "{:?}",
        app.catalog().errors()
    );
    // Warm the ComfyUI caches so the storm is pack calls only.
    app.status("warm-up").await.ok();
    let _ = app
        .generate("solid-color", Map::new())
        .await
        .expect("a good call on an idle server");

    let baseline = threads();
    let peak_threads = Arc::new(AtomicUsize::new(baseline));
    let sampling = Arc::new(AtomicBool::new(true));
    let sampler = {
        let (peak, on) = (peak_threads.clone(), sampling.clone());
        std::thread::spawn(move || {
            while on.load(Ordering::SeqCst) {
                peak.fetch_max(threads(), Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(2));
            }
        })
    };
    let storm: Vec<_> = (0..200)
        .map(|_| {
            let app = app.clone();
            tokio::spawn(async move { app.generate("spin", awake()).await })
        })
        .collect();
    // During the storm: a good pack's call completes or is cleanly refused as busy,
    // and requests that need no pack call answer.
    let good = tokio::time::timeout(BOUND, app.generate("solid-color", Map::new()))
        .await
        .expect("the good pack's call answers");
    match &good {
        Ok(job) => assert!(!job.prompt_id.is_empty()),
        Err(e) => assert_eq!(e.kind(), "busy", "{e}"),
    }
    let status = tokio::time::timeout(BOUND, app.status("no-such-job"))
        .await
        .expect("status answers during the storm");
    assert_eq!(status.unwrap_err().kind(), "unknown_job");

    let mut kinds = std::collections::BTreeMap::<&str, usize>::new();
    for call in storm {
        let outcome = tokio::time::timeout(BOUND, call)
            .await
            .expect("every storm call answers")
            .expect("no task panics");
        let err = outcome.expect_err("a spinning call never builds a graph");
        if err.kind() == "busy" {
            assert!(
                err.to_string().contains("COMFYUI_MCP_PACK_SHARE")
                    || err.to_string().contains("COMFYUI_MCP_PACK_CONCURRENCY"),
                "a busy error names its setting: {err}"
            );
        }
        *kinds.entry(err.kind()).or_default() += 1;
    }
    sampling.store(false, Ordering::SeqCst);
    sampler.join().unwrap();
    let extra_threads = peak_threads.load(Ordering::SeqCst).saturating_sub(baseline);
    eprintln!("storm outcomes {kinds:?}; extra OS threads at peak: {extra_threads}");
    assert!(
        kinds.get("pack_failed").copied().unwrap_or(0) >= 1,
        "some calls ran (and timed out): {kinds:?}"
    );
    assert!(
        kinds.get("busy").copied().unwrap_or(0) >= 1,
        "calls beyond the wait are refused as busy: {kinds:?}"
    );
    // 200 blocked callers must not become 200 threads (the admission's pool is started
    // with the app, before the baseline). The slack covers tokio's own helper threads.
    assert!(
        extra_threads <= 16,
        "200 concurrent pack calls grew the process by {extra_threads} OS threads"
    );
    assert!(
        app.admission().peak_running() <= 2,
        "at most 2 pack calls at once, saw {}",
        app.admission().peak_running()
    );
}

// ---------------------------------------------------------------- bounded loads

async fn send(write: &mut tokio::io::WriteHalf<tokio::io::DuplexStream>, message: Value) {
    let mut line = serde_json::to_vec(&message).unwrap();
    line.push(b'\n');
    write.write_all(&line).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn initialize_answers_and_other_packs_serve_while_a_slow_pack_loads() {
    let _serial = SERIAL.lock().await;
    let fx = Fixture::new(&[
        ("slow-loader.wasm", "slow-loader.wasm"),
        ("mini.wasm", "mini.wasm"),
    ])
    .await;
    let settings = fx.settings(&["--pack-concurrency", "2", "--pack-share", "1"]);
    let app = comfyui_mcp::commands::start_app_in_background(&settings)
        .await
        .expect("app starts");
    let mut changes = app.catalog_changes();
    let (mut write, mut lines) = common::serve_pipe(app.clone());
    send(
        &mut write,
        json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-06-18", "capabilities": {},
            "clientInfo": {"name": "loading", "version": "0"}}}),
    )
    .await;
    let init: Value = serde_json::from_str(
        &tokio::time::timeout(BOUND, lines.next_line())
            .await
            .expect("initialize answers")
            .unwrap()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(init["id"], 1);
    assert_eq!(init["result"]["serverInfo"]["name"], "comfyui-mcp");
    // 40 templates x 150 ms: the slow pack cannot have loaded yet.
    assert!(
        app.catalog().template("slow-00").is_none(),
        "initialize waited for the slow pack"
    );
    send(
        &mut write,
        json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
    )
    .await;

    // The other pack appears on its own, while the slow one is still loading.
    tokio::time::timeout(
        BOUND,
        changes.wait_for(|_| app.catalog().template("solid-color").is_some()),
    )
    .await
    .expect("mini loads")
    .unwrap();
    assert!(
        app.catalog().template("slow-00").is_none(),
        "mini was published only with the slow pack"
    );
    let job = app
        .generate("solid-color", Map::new())
        .await
        .expect("mini's template serves while slow-loader loads");
    assert!(!job.prompt_id.is_empty());

    // The session is told, and the slow pack arrives within its budget.
    let mut told = false;
    while !told {
        let line = tokio::time::timeout(BOUND, lines.next_line())
            .await
            .expect("list_changed arrives")
            .unwrap()
            .unwrap();
        let message: Value = serde_json::from_str(&line).unwrap();
        told = message["method"] == "notifications/tools/list_changed";
    }
    tokio::time::timeout(BOUND, app.packs().wait_idle())
        .await
        .expect("loads end");
    let catalog = app.catalog();
    assert!(
        catalog.template("slow-39").is_some(),
        "slow-loader loads within the default budget: {:?}",
        catalog.errors()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_load_over_its_budget_fails_with_the_limit_and_the_setting() {
    let _serial = SERIAL.lock().await;
    let fx = Fixture::new(&[
        ("slow-loader.wasm", "slow-loader.wasm"),
        ("mini.wasm", "mini.wasm"),
    ])
    .await;
    let app = fx.app(&["--pack-load-timeout-ms", "1000"]).await;
    assert!(app.catalog().template("solid-color").is_some());
    assert!(app.catalog().template("slow-00").is_none());
    let problems = problems_of(&app, &fx.path("slow-loader.wasm"));
    let [(kind, message)] = problems.as_slice() else {
        panic!("one problem for slow-loader: {problems:?}");
    };
    assert_eq!(*kind, ProblemKind::LoadTimeout, "{message}");
    for part in [
        "load budget of 1s",
        "of 40 templates",
        "COMFYUI_MCP_PACK_LOAD_TIMEOUT_MS",
    ] {
        assert!(message.contains(part), "`{part}` missing from: {message}");
    }
}

// ---------------------------------------------------------------- catalog integrity

fn template_clashes(app: &App, path: &Path) -> Vec<(String, bool)> {
    problems_of(app, path)
        .into_iter()
        .filter_map(|(kind, _)| match kind {
            ProblemKind::TemplateClash {
                id, other_keeps, ..
            } => Some((id, other_keeps)),
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clashing_id_at_start_up_is_served_by_neither_pack_whatever_the_file_names() {
    let _serial = SERIAL.lock().await;
    // The same two packs under names that sort either way round.
    for clash_file in ["a-clash.wasm", "zz-clash.wasm"] {
        let fx = Fixture::new(&[
            ("game-assets.wasm", "game-assets.wasm"),
            ("a-clash.wasm", clash_file),
        ])
        .await;
        let app = fx.app(&[]).await;
        assert_eq!(
            owner_of(&app, "item-icon"),
            None,
            "with {clash_file}, a clashing id is served by neither pack"
        );
        // game-assets' other templates still serve.
        assert_eq!(
            app.catalog().templates().len(),
            5,
            "{:?}",
            app.catalog().errors()
        );
        for file in ["game-assets.wasm", clash_file] {
            assert_eq!(
                template_clashes(&app, &fx.path(file)),
                vec![("item-icon".to_owned(), false)],
                "{file} lists the clash"
            );
        }
        let (_, message) = &problems_of(&app, &fx.path(clash_file))[0];
        assert!(
            message.contains("neither serves it") && message.contains("game-assets"),
            "{message}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_reload_the_incumbent_keeps_a_clashing_id_whatever_the_file_names() {
    let _serial = SERIAL.lock().await;
    let fx = Fixture::new(&[("game-assets.wasm", "game-assets.wasm")]).await;
    let app = fx.app(&[]).await;
    assert_eq!(owner_of(&app, "item-icon").as_deref(), Some("game-assets"));
    // Both newcomers: one sorting before the incumbent, one after.
    fx.install("a-clash.wasm", "a-clash.wasm");
    fx.install("clash.wasm", "clash.wasm");
    app.packs().rescan().await;
    app.packs().wait_idle().await;
    assert_eq!(owner_of(&app, "item-icon").as_deref(), Some("game-assets"));
    for file in ["a-clash.wasm", "clash.wasm"] {
        assert_eq!(
            template_clashes(&app, &fx.path(file)),
            vec![("item-icon".to_owned(), true)],
            "{file}: {:?}",
            app.catalog().errors()
        );
        let (_, message) = &problems_of(&app, &fx.path(file))[0];
        assert!(
            message.contains("clashes with pack game-assets"),
            "{message}"
        );
    }
    assert!(
        template_clashes(&app, &fx.path("game-assets.wasm")).is_empty(),
        "the incumbent has no problem"
    );
    // The incumbent leaves: the two newcomers (seen in the same scan) still clash.
    std::fs::remove_file(fx.path("game-assets.wasm")).unwrap();
    app.packs().rescan().await;
    app.packs().wait_idle().await;
    assert_eq!(
        owner_of(&app, "item-icon"),
        None,
        "{:?}",
        app.catalog().errors()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pack_name_is_unique_whatever_the_file_names() {
    let _serial = SERIAL.lock().await;
    // At start-up: two files of pack `mini`, neither incumbent.
    let fx = Fixture::new(&[
        ("mini.wasm", "mini.wasm"),
        ("mini.wasm", "0-mini-copy.wasm"),
    ])
    .await;
    let app = fx.app(&[]).await;
    assert!(
        app.catalog().packs().is_empty(),
        "{:?}",
        app.catalog().errors()
    );
    for file in ["mini.wasm", "0-mini-copy.wasm"] {
        let problems = problems_of(&app, &fx.path(file));
        assert!(
            matches!(
                problems.as_slice(),
                [(ProblemKind::NameClash { name, other_keeps: false, .. }, _)] if name == "mini-pack"
            ),
            "{file}: {problems:?}"
        );
    }

    // On reload: the loaded pack keeps its name; a copy sorting first is refused.
    let fx = Fixture::new(&[("mini.wasm", "mini.wasm")]).await;
    let app = fx.app(&[]).await;
    fx.install("mini.wasm", "0-mini-copy.wasm");
    app.packs().rescan().await;
    app.packs().wait_idle().await;
    let catalog = app.catalog();
    assert_eq!(
        catalog.packs().keys().collect::<Vec<_>>(),
        vec![&fx.path("mini.wasm")]
    );
    assert_eq!(
        catalog.template("solid-color").unwrap().pack.path,
        fx.path("mini.wasm")
    );
    let problems = problems_of(&app, &fx.path("0-mini-copy.wasm"));
    let [(ProblemKind::NameClash { other_keeps, .. }, message)] = problems.as_slice() else {
        panic!("{problems:?}");
    };
    assert!(*other_keeps);
    assert!(
        message.contains("pack name `mini-pack` is already used by"),
        "{message}"
    );
}

// ---------------------------------------------------------------- honest self-test

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pack_cannot_tell_its_self_test_from_a_real_call() {
    let _serial = SERIAL.lock().await;
    let fx = Fixture::new(&[
        ("two-faced.wasm", "two-faced.wasm"),
        ("mini.wasm", "mini.wasm"),
    ])
    .await;
    // Offline self-test (stock catalog, offline model list), as at start-up.
    let app = fx.app(&[]).await;
    assert!(
        app.catalog().template("two-faced").is_none(),
        "two-faced passed its self-test by detecting it"
    );
    let problems = problems_of(&app, &fx.path("two-faced.wasm"));
    let [(ProblemKind::SelfTest, offline)] = problems.as_slice() else {
        panic!("{problems:?}");
    };
    assert!(offline.contains("smaller than the minimum"), "{offline}");

    // Connected: a real call's view of ComfyUI is what the self-test sees now.
    app.generate("solid-color", Map::new())
        .await
        .expect("a real call fetches the live catalog");
    let loader = app.loader();
    let live = loader.check_catalog();
    assert!(matches!(
        live,
        comfyui_mcp::selftest::CheckCatalog::Live(..)
    ));
    let two_faced = Arc::new(
        loader
            .runtime()
            .load_file(&fx.path("two-faced.wasm"))
            .unwrap(),
    );
    let reports = comfyui_mcp::selftest::run(&two_faced, &live);
    let self_test = reports[0].outcome.clone().expect_err("self-test fails");
    // The real call: the host `generate` builds with, then the pre-submission check.
    let nodes = app.comfy().node_catalog().await.unwrap();
    let models = app.comfy().models_snapshot().await.unwrap();
    let host = Arc::new(comfyui_mcp::selftest::CatalogHost {
        nodes: nodes.clone(),
        models,
    });
    let built = two_faced.build("two-faced", &Map::new(), host).unwrap();
    let real = comfyui::graph::check(&built.graph, &nodes).expect_err("the real graph is invalid");
    let real: Vec<String> = real.iter().map(|e| e.message.clone()).collect();
    assert_eq!(
        self_test, real,
        "the self-test sees what a real call produces"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn packs_are_self_tested_again_against_the_live_catalog_and_withdrawn_if_they_fail() {
    let _serial = SERIAL.lock().await;
    let fx = Fixture::new(&[("mini.wasm", "mini.wasm")]).await;
    let app = fx.app(&[]).await;
    // The service self-tests against the simulator's catalog once it is reached.
    let live = app.loader().live().clone();
    tokio::time::timeout(BOUND, async {
        while live.backends().is_empty() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the live catalog becomes known");
    app.packs().wait_idle().await;
    assert!(app.catalog().template("solid-color").is_some());

    // A ComfyUI without `EmptyImage`: mini's graphs would fail there, so it stops serving.
    let bytes = std::fs::read(common::repo().join("host/comfyui/data/object_info.json")).unwrap();
    let mut info: Value = serde_json::from_slice(&bytes).unwrap();
    info.as_object_mut().unwrap().remove("EmptyImage");
    let nodes = comfyui::nodes::NodeCatalog::from_object_info(&info).unwrap();
    let name = app.comfy().name();
    live.record(
        0,
        &name,
        Some(&Arc::new(nodes)),
        Some(&Arc::new(comfyui::ModelSnapshot::default())),
    );
    app.packs().revalidate().await;
    app.packs().wait_idle().await;
    assert!(app.catalog().template("solid-color").is_none());
    let problems = problems_of(&app, &fx.path("mini.wasm"));
    let [(ProblemKind::SelfTest, message)] = problems.as_slice() else {
        panic!("{problems:?}");
    };
    assert!(message.contains("EmptyImage"), "{message}");

    // A second backend with `EmptyImage` becomes known (a farm member connecting): the
    // refused file is loaded again and serves, its graphs can run there.
    let stock = comfyui::nodes::NodeCatalog::bundled();
    app.packs()
        .backend_answered(
            1,
            "second",
            stock,
            Arc::new(comfyui::ModelSnapshot::default()),
        )
        .await;
    app.packs().wait_idle().await;
    assert!(app.catalog().template("solid-color").is_some());
    assert_eq!(problems_of(&app, &fx.path("mini.wasm")), []);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_reload_never_delays_another_packs_reload() {
    let _serial = SERIAL.lock().await;
    let fx = Fixture::new(&[]).await;
    let app = fx
        .app(&["--pack-concurrency", "2", "--pack-share", "1"])
        .await;
    let mut changes = app.catalog_changes();
    fx.install("slow-loader.wasm", "slow-loader.wasm");
    app.packs().rescan().await; // starts the 6 s load, returns at once
    fx.install("mini.wasm", "mini.wasm");
    app.packs().rescan().await;
    tokio::time::timeout(
        BOUND,
        changes.wait_for(|_| app.catalog().template("solid-color").is_some()),
    )
    .await
    .expect("mini loads")
    .unwrap();
    assert!(
        app.catalog().template("slow-00").is_none(),
        "mini's reload waited for the slow pack's"
    );
    tokio::time::timeout(BOUND, app.packs().wait_idle())
        .await
        .expect("loads end");
    assert!(app.catalog().template("slow-39").is_some());
}
