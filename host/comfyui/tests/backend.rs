//! End-to-end tests of `ComfyUi` (submit, follow, download, cancel, reconnect) against the
//! in-process ComfyUI simulator. Waits are bounded; nothing asserts on timings.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use comfyui::tracker::LOST_MESSAGE;
use comfyui::{CancelError, CancelOutcome, ClientError, ComfyClient, JobState};
use common::*;
use serde_json::{Value, json};
use simulator::SimConfig;

fn fast_sim() -> SimConfig {
    SimConfig {
        step_delay: Duration::from_millis(5),
        ..SimConfig::default()
    }
}

/// A graph slow enough to be caught running: the tiny t2i with many steps and 30 ms a step.
fn slow_sim() -> SimConfig {
    SimConfig {
        step_delay: Duration::from_millis(30),
        ..SimConfig::default()
    }
}

async fn wait_running(b: &Backend, id: &str) {
    let mut rx = b.comfy.watch(id).unwrap();
    tokio::time::timeout(
        BOUND,
        rx.wait_for(|s| s.state == JobState::Running && s.progress > 0.0),
    )
    .await
    .expect("job starts running within the bound")
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_of_four_lands_on_disk_with_provenance() {
    let sim = sim(fast_sim()).await;
    let b = backend(&sim.base_url());
    connected(&b.comfy).await;

    let queued = b
        .comfy
        .submit(request(empty_image_graph(4, "mcp/batch")))
        .await
        .unwrap();
    assert!(uuid::Uuid::parse_str(&queued.prompt_id).is_ok());
    assert_eq!(queued.node_errors, json!({}));
    let done = wait_done(&b.comfy, &queued.prompt_id).await;

    assert_eq!(done.state, JobState::Completed, "{:?}", done.error);
    assert_eq!(done.progress, 1.0);
    assert_eq!(done.queue_position, Some(0));
    assert!(
        done.execution_time.is_some() && done.finished_at.is_some() && done.started_at.is_some()
    );
    assert_eq!(done.images.len(), 4);
    assert_eq!(done.files.len(), 4);
    let job_dir = b.out.path().join(&done.prompt_id);
    let names: BTreeSet<_> = done.files.iter().map(|f| f.filename.clone()).collect();
    assert_eq!(names.len(), 4, "distinct files");
    for f in &done.files {
        assert_eq!(f.path.parent().unwrap(), job_dir);
        let bytes = std::fs::read(&f.path).unwrap();
        assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
        assert_eq!((f.width, f.height), (64, 64));
        assert_eq!(f.bytes, bytes.len() as u64);
    }
    // No temp files left behind.
    let leftovers: Vec<_> = std::fs::read_dir(&job_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    let prov: Value =
        serde_json::from_slice(&std::fs::read(job_dir.join("provenance.json")).unwrap()).unwrap();
    assert_eq!(prov["prompt_id"], json!(done.prompt_id));
    assert_eq!(prov["template_id"], json!("test-template"));
    assert_eq!(prov["origin"]["pack_version"], json!("1.2.3"));
    assert_eq!(prov["parameters"]["seed"], json!(42));
    assert_eq!(
        prov["graph_sha256"],
        json!(comfyui::outputs::graph_sha256(&empty_image_graph(
            4,
            "mcp/batch"
        )))
    );
    assert_eq!(prov["comfyui_version"], json!("0.3.75"));
    assert_eq!(prov["backend_url"], json!(format!("{}/", sim.base_url())));
    assert_eq!(prov["images"].as_array().unwrap().len(), 4);
    assert_eq!(
        prov["images"][0]["path"].as_str().unwrap(),
        done.files[0].path.to_str().unwrap()
    );
    // The POST carried our prompt id and client id.
    let post = sim
        .requests()
        .into_iter()
        .find(|r| r.method == "POST" && r.path.ends_with("/prompt"))
        .unwrap();
    let body = post.body.unwrap();
    assert_eq!(body["prompt_id"], json!(done.prompt_id));
    assert_eq!(body["client_id"], json!(b.comfy.config().client_id));
}

/// Every recorded 400 validation answer comes back as `Rejected` with ComfyUI's payload
/// intact (same error type, same nodes, same error types), and nothing is tracked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_validation_error_is_rejected_intact() {
    let sim = sim(fast_sim()).await;
    let b = backend(&sim.base_url());
    let mut checked = 0;
    let mut entries: Vec<_> = std::fs::read_dir(transcripts())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for path in entries {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if !name.starts_with("error_") {
            continue;
        }
        let t = transcript(&name);
        let want = &t["response"]["json"];
        let graph = &t["request"]["json_body"]["prompt"];
        if t["response"]["status"] != json!(400) || !graph.is_object() || name.contains("loadimage")
        {
            continue;
        }
        let err = b.comfy.submit(request(graph.clone())).await.unwrap_err();
        let ClientError::Rejected {
            error,
            node_errors,
            url,
        } = &err
        else {
            panic!("{name}: expected Rejected, got {err}");
        };
        assert_eq!(url, &format!("{}/", sim.base_url()));
        assert_eq!(error["type"], want["error"]["type"], "{name}");
        // Errors on one node come in no fixed order (ComfyUI walks a Python set).
        let shape = |v: &Value| -> Vec<(String, BTreeSet<String>)> {
            v.as_object()
                .unwrap()
                .iter()
                .map(|(id, n)| {
                    let types = n["errors"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|e| e["type"].as_str().unwrap().to_owned())
                        .collect::<BTreeSet<_>>();
                    (id.clone(), types)
                })
                .collect()
        };
        assert_eq!(shape(node_errors), shape(&want["node_errors"]), "{name}");
        // Readable: the message names the URL and each failing node's class.
        let text = err.to_string();
        assert!(text.contains(&sim.base_url()), "{text}");
        for n in want["node_errors"].as_object().unwrap().values() {
            assert!(
                text.contains(n["class_type"].as_str().unwrap()),
                "{name}: {text}"
            );
        }
        checked += 1;
    }
    assert!(checked >= 12, "only {checked} error transcripts checked");
    assert_eq!(b.comfy.job_count(), 0, "rejected jobs are not tracked");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partial_validity_runs_and_keeps_node_errors() {
    let sim = sim(fast_sim()).await;
    let b = backend(&sim.base_url());
    let graph =
        transcript("partial_one_output_invalid.json")["request"]["json_body"]["prompt"].clone();
    let snap = b.comfy.submit(request(graph)).await.unwrap();
    assert!(snap.node_errors.get("13").is_some(), "{}", snap.node_errors);
    let done = wait_done(&b.comfy, &snap.prompt_id).await;
    assert_eq!(done.state, JobState::Completed);
    assert_eq!(done.files.len(), 1);
    assert!(done.node_errors.get("13").is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn execution_error_fails_with_node_class_and_message() {
    let sim = sim(fast_sim()).await;
    sim.faults()
        .fail_node_class("ImageInvert", "simulated breakdown");
    let b = backend(&sim.base_url());
    connected(&b.comfy).await;
    let snap = b
        .comfy
        .submit(request(invert_graph("mcp/err")))
        .await
        .unwrap();
    let done = wait_done(&b.comfy, &snap.prompt_id).await;
    assert_eq!(done.state, JobState::Failed);
    let e = done.error.unwrap();
    assert_eq!(e.node_id.as_deref(), Some("2"));
    assert_eq!(e.node_type.as_deref(), Some("ImageInvert"));
    assert!(e.message.contains("simulated breakdown"), "{}", e.message);
    assert!(done.files.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_job_is_deleted_not_interrupted() {
    let sim = sim(fast_sim()).await;
    let b = backend(&sim.base_url());
    connected(&b.comfy).await;
    sim.hold_queue(true);
    let snap = b
        .comfy
        .submit(request(empty_image_graph(1, "mcp/held")))
        .await
        .unwrap();
    let status = b.comfy.status(&snap.prompt_id).await.unwrap().unwrap();
    assert_eq!(status.state, JobState::Queued);
    assert_eq!(status.queue_position, Some(0));

    let outcome = b.comfy.cancel(&snap.prompt_id).await.unwrap();
    assert!(
        matches!(outcome, CancelOutcome::RemovedFromQueue(_)),
        "{outcome:?}"
    );
    assert_eq!(outcome.snapshot().state, JobState::Cancelled);
    assert!(
        sim.interrupts().is_empty(),
        "a pending job needs no interrupt"
    );
    let deleted = sim.requests().into_iter().any(|r| {
        r.method == "POST"
            && r.path.ends_with("/queue")
            && r.body == Some(json!({"delete": [snap.prompt_id]}))
    });
    assert!(deleted);
    sim.hold_queue(false);
    let client = ComfyClient::new(b.comfy.config()).unwrap();
    assert!(
        client.history(&snap.prompt_id).await.unwrap().is_none(),
        "it never ran"
    );
    // Cancelling again is refused with the state.
    let again = b.comfy.cancel(&snap.prompt_id).await.unwrap_err();
    assert!(
        matches!(again, CancelError::AlreadyFinished { .. }),
        "{again}"
    );
    assert!(again.to_string().contains("cancelled"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn running_job_gets_a_targeted_interrupt() {
    let sim = sim(slow_sim()).await;
    let b = backend(&sim.base_url());
    connected(&b.comfy).await;
    let snap = b.comfy.submit(request(t2i_graph(200, 7))).await.unwrap();
    wait_running(&b, &snap.prompt_id).await;

    let outcome = b.comfy.cancel(&snap.prompt_id).await.unwrap();
    assert!(
        matches!(outcome, CancelOutcome::Interrupted(_)),
        "{outcome:?}"
    );
    assert_eq!(outcome.snapshot().state, JobState::Cancelled);
    assert_eq!(sim.interrupts(), vec![Some(snap.prompt_id.clone())]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_jobs_are_never_touched() {
    let sim = sim(slow_sim()).await;
    let b = backend(&sim.base_url());
    connected(&b.comfy).await;
    // Someone else's job, running.
    let other = ComfyClient::new(&comfyui::ComfyConfig::new(&sim.base_url()).unwrap()).unwrap();
    let foreign = uuid::Uuid::new_v4().to_string();
    other
        .submit(&foreign, &t2i_graph(200, 9), "someone-else")
        .await
        .unwrap();
    let mut running = false;
    for _ in 0..600 {
        if other.queue().await.unwrap().is_running(&foreign) {
            running = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(running);

    let err = b.comfy.interrupt_running().await.unwrap_err();
    assert!(matches!(err, CancelError::RunningNotOurs { .. }), "{err}");
    assert!(err.to_string().contains(&foreign));
    let err = b.comfy.cancel(&foreign).await.unwrap_err();
    assert!(matches!(err, CancelError::NotOurs { .. }), "{err}");
    let err = b.comfy.cancel("no-such-job").await.unwrap_err();
    assert!(matches!(err, CancelError::NotFound { .. }), "{err}");
    assert!(sim.interrupts().is_empty());
    assert!(
        !sim.requests()
            .iter()
            .any(|r| r.path.ends_with("/queue") && r.method == "POST")
    );
    other.interrupt(Some(&foreign)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interrupt_running_stops_our_job() {
    let sim = sim(slow_sim()).await;
    let b = backend(&sim.base_url());
    connected(&b.comfy).await;
    let snap = b.comfy.submit(request(t2i_graph(200, 11))).await.unwrap();
    wait_running(&b, &snap.prompt_id).await;
    let id = b.comfy.interrupt_running().await.unwrap();
    assert_eq!(id.as_deref(), Some(snap.prompt_id.as_str()));
    assert_eq!(
        b.comfy.snapshot(&snap.prompt_id).unwrap().state,
        JobState::Cancelled
    );
    assert_eq!(sim.interrupts(), vec![Some(snap.prompt_id.clone())]);
    assert_eq!(
        b.comfy.interrupt_running().await.unwrap(),
        None,
        "nothing runs now"
    );
}

/// The socket drops mid-job and stays refused until the job has finished in ComfyUI. The
/// periodic safety net is switched off, so only the reconnect's reconciliation can complete it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn job_finished_while_disconnected_completes_on_reconnect() {
    let sim = sim(slow_sim()).await;
    let out = tempfile::tempdir().unwrap();
    let cfg = config(&sim.base_url(), &out);
    let mut options = fast_options();
    options.reconcile_interval = Duration::from_secs(3600);
    // The pass the submission asks for runs at once, before the socket drops (a settled
    // one could run after the job ended and complete it without the reconnect).
    options.submit_settle = Duration::ZERO;
    let comfy = comfyui::ComfyUi::connect_with(cfg, options).unwrap();
    connected(&comfy).await;
    let before = *comfy.connection().borrow();

    let snap = comfy.submit(request(t2i_graph(20, 3))).await.unwrap();
    let mut rx = comfy.watch(&snap.prompt_id).unwrap();
    tokio::time::timeout(BOUND, rx.wait_for(|s| s.state == JobState::Running))
        .await
        .unwrap()
        .unwrap();
    sim.faults().refuse_websockets(true);
    sim.faults().drop_websockets();
    let mut conn = comfy.connection();
    tokio::time::timeout(BOUND, conn.wait_for(|c| !c.connected))
        .await
        .unwrap()
        .unwrap();

    let client = ComfyClient::new(comfy.config()).unwrap();
    sim.set_step_delay(Duration::ZERO);
    let mut finished = false;
    for _ in 0..1000 {
        if client.history(&snap.prompt_id).await.unwrap().is_some() {
            finished = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(finished, "job finished in ComfyUI");
    assert!(
        !comfy.is_connected(),
        "still disconnected when the job ended"
    );
    assert!(!comfy.snapshot(&snap.prompt_id).unwrap().state.is_terminal());

    sim.faults().refuse_websockets(false);
    let done = wait_done(&comfy, &snap.prompt_id).await;
    assert_eq!(done.state, JobState::Completed, "{:?}", done.error);
    assert_eq!(done.files.len(), 1);
    assert!(comfy.connection().borrow().connects > before.connects);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_fails_the_lost_job_and_refreshes_the_catalog() {
    let sim = sim(slow_sim()).await;
    let b = backend(&sim.base_url());
    connected(&b.comfy).await;
    let catalog = b.comfy.node_catalog().await.unwrap();
    assert!(catalog.contains("EmptyImage") && !catalog.contains("BrandNewNode"));
    assert!(
        std::sync::Arc::ptr_eq(&catalog, &b.comfy.node_catalog().await.unwrap()),
        "cached"
    );

    let snap = b.comfy.submit(request(t2i_graph(200, 5))).await.unwrap();
    wait_running(&b, &snap.prompt_id).await;

    // The restarted ComfyUI knows one more node class.
    let mut full = b.comfy.client().object_info().await.unwrap();
    let mut new_node = full["EmptyImage"].clone();
    new_node["name"] = json!("BrandNewNode");
    full["BrandNewNode"] = new_node;
    sim.set_object_info(full);
    let before = b.comfy.connection().borrow().connects;
    sim.restart().await;

    let done = wait_done(&b.comfy, &snap.prompt_id).await;
    assert_eq!(done.state, JobState::Failed);
    let e = done.error.unwrap();
    assert_eq!(e.message, LOST_MESSAGE);
    assert!(e.message.starts_with("ComfyUI restarted and lost the job"));

    let mut conn = b.comfy.connection();
    tokio::time::timeout(BOUND, conn.wait_for(|c| c.connected && c.connects > before))
        .await
        .unwrap()
        .unwrap();
    let fresh = b.comfy.node_catalog().await.unwrap();
    assert!(
        fresh.contains("BrandNewNode"),
        "catalog refreshed after reconnect"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn comfyui_down_at_start_then_up() {
    // Reserve a free port, release it, and point the backend at it before anything listens.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}");
    let b = backend(&url);

    let err = b.comfy.node_catalog().await.unwrap_err();
    assert!(err.is_unreachable(), "{err}");
    let text = err.to_string();
    assert!(
        text.contains(&format!("ComfyUI at {url}/ is unreachable")),
        "{text}"
    );
    assert!(text.contains("GET /object_info"), "{text}");
    let err = b
        .comfy
        .submit(request(empty_image_graph(1, "x")))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("POST /prompt"), "{err}");
    assert!(!b.comfy.is_connected());

    let sim = simulator::start(format!("127.0.0.1:{port}").parse().unwrap(), fast_sim())
        .await
        .unwrap();
    connected(&b.comfy).await;
    assert!(b.comfy.node_catalog().await.unwrap().contains("SaveImage"));
    let snap = b
        .comfy
        .submit(request(empty_image_graph(1, "late")))
        .await
        .unwrap();
    let done = wait_done(&b.comfy, &snap.prompt_id).await;
    assert_eq!(done.state, JobState::Completed);
    drop(sim);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_key_goes_on_every_request_and_the_upgrade() {
    let sim = sim(SimConfig {
        require_api_key: Some("s3cret".into()),
        ..fast_sim()
    })
    .await;
    let b = backend_with(&sim.base_url(), |c| {
        c.with_api_key(Some("s3cret".into())).unwrap()
    });
    connected(&b.comfy).await;
    let snap = b
        .comfy
        .submit(request(empty_image_graph(2, "key")))
        .await
        .unwrap();
    let done = wait_done(&b.comfy, &snap.prompt_id).await;
    assert_eq!(done.state, JobState::Completed);
    let reqs = sim.requests();
    assert!(
        reqs.iter().any(|r| r.path.ends_with("/ws")),
        "upgrade recorded"
    );
    assert!(reqs.iter().any(|r| r.path.ends_with("/view")));
    for r in &reqs {
        assert_eq!(
            r.authorization.as_deref(),
            Some("Bearer s3cret"),
            "{} {}",
            r.method,
            r.path
        );
    }

    // Without the key: a clear HTTP 401 error.
    let keyless = backend(&sim.base_url());
    let err = keyless
        .comfy
        .submit(request(empty_image_graph(1, "nokey")))
        .await
        .unwrap_err();
    assert!(
        matches!(err, ClientError::Http { status: 401, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("HTTP 401"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn path_prefixed_url_behind_a_proxy() {
    let sim = sim(SimConfig {
        path_prefix: "/comfy".into(),
        ..fast_sim()
    })
    .await;
    assert!(sim.base_url().ends_with("/comfy"));
    let b = backend(&sim.base_url());
    connected(&b.comfy).await;
    let snap = b
        .comfy
        .submit(request(empty_image_graph(1, "prefixed")))
        .await
        .unwrap();
    let done = wait_done(&b.comfy, &snap.prompt_id).await;
    assert_eq!(done.state, JobState::Completed);
    let reqs = sim.requests();
    assert!(reqs.iter().any(|r| r.path == "/comfy/ws"));
    for r in &reqs {
        assert!(r.path.starts_with("/comfy/"), "{}", r.path);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_output_names_stay_in_the_job_directory() {
    let sim = sim(fast_sim()).await;
    let b = backend(&sim.base_url());
    connected(&b.comfy).await;

    // ComfyUI itself refuses a prefix that climbs out of its output folder: a clean failure.
    let snap = b
        .comfy
        .submit(request(empty_image_graph(1, "../../evil")))
        .await
        .unwrap();
    let done = wait_done(&b.comfy, &snap.prompt_id).await;
    assert_eq!(done.state, JobState::Failed);
    assert_eq!(done.error.unwrap().node_type.as_deref(), Some("SaveImage"));

    // Backslashes are not separators for ComfyUI on POSIX and `/view` serves any name without
    // `..`, so `.\sub\.hidden:x_00001_.png` reaches us as is: it must become one plain file
    // name inside the job directory.
    let snap = b
        .comfy
        .submit(request(empty_image_graph(1, ".\\sub\\.hidden:x")))
        .await
        .unwrap();
    let done = wait_done(&b.comfy, &snap.prompt_id).await;
    assert_eq!(done.state, JobState::Completed, "{:?}", done.error);
    assert_eq!(done.images[0].filename, ".\\sub\\.hidden:x_00001_.png");
    let job_dir = b.out.path().join(&done.prompt_id);
    assert_eq!(done.files[0].path.parent().unwrap(), job_dir);
    assert_eq!(done.files[0].filename, "hiddenx_00001_.png");
    // Nothing was written anywhere else.
    let mut all = Vec::new();
    let mut stack = vec![b.out.path().to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                all.push(p);
            }
        }
    }
    for p in &all {
        assert_eq!(p.parent().unwrap(), job_dir, "{}", p.display());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progress_never_moves_backwards() {
    let sim = sim(slow_sim()).await;
    let b = backend(&sim.base_url());
    connected(&b.comfy).await;
    let snap = b.comfy.submit(request(t2i_graph(12, 21))).await.unwrap();
    let mut rx = b.comfy.watch(&snap.prompt_id).unwrap();
    let mut seen = vec![rx.borrow().progress];
    loop {
        let changed = tokio::time::timeout(BOUND, rx.changed())
            .await
            .expect("bounded");
        let s = rx.borrow_and_update().clone();
        seen.push(s.progress);
        if s.state.is_terminal() || changed.is_err() {
            assert_eq!(s.state, JobState::Completed);
            break;
        }
    }
    assert!(seen.windows(2).all(|w| w[1] >= w[0]), "{seen:?}");
    assert!(seen.iter().all(|p| (0.0..=1.0).contains(p)));
    let between: BTreeSet<u64> = seen
        .iter()
        .filter(|p| **p > 0.0 && **p < 1.0)
        .map(|p| (p * 1e6) as u64)
        .collect();
    assert!(between.len() >= 3, "progress moved in steps: {seen:?}");
    assert_eq!(*seen.last().unwrap(), 1.0);
}

/// Regression (issue 10, class 1): a 111+ character `filename_prefix` with a batch of two
/// made the second image's de-duplicated name loop for ever; the job stayed `running`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_filename_prefix_batch_of_two_completes_with_both_images() {
    let sim = sim(fast_sim()).await;
    let b = backend(&sim.base_url());
    connected(&b.comfy).await;
    let prefix = format!("mcp/{}", "long_prefix_".repeat(10)); // 124 characters
    assert!(prefix.len() > 111);
    let queued = b
        .comfy
        .submit(request(empty_image_graph(2, &prefix)))
        .await
        .unwrap();
    let done = b
        .comfy
        .wait(&queued.prompt_id, Duration::from_secs(20))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(done.state, JobState::Completed, "{done:?}");
    assert_eq!(done.images.len(), 2);
    assert_eq!(done.files.len(), 2);
    let names: BTreeSet<String> = done
        .files
        .iter()
        .map(|f| f.filename.to_lowercase())
        .collect();
    assert_eq!(names.len(), 2, "distinct files: {names:?}");
    for f in &done.files {
        assert!(f.filename.len() <= comfyui::outputs::MAX_FILENAME_BYTES);
        assert!(f.path.exists(), "{}", f.path.display());
    }
    assert!(done.warnings.is_empty(), "{:?}", done.warnings);
}

/// Events missed and the first `/history` read without outputs: the job is read once more
/// from `/history` and completes with its images (it used to complete with none).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missed_image_events_are_recovered_by_one_history_retry() {
    let sim = sim(fast_sim()).await;
    let b = backend(&sim.base_url());
    connected(&b.comfy).await;
    sim.faults().drop_ws_events("executed", true);
    sim.faults().hide_history_outputs(1);
    let queued = b
        .comfy
        .submit(request(empty_image_graph(2, "mcp/retry")))
        .await
        .unwrap();
    let done = wait_done(&b.comfy, &queued.prompt_id).await;
    assert_eq!(done.state, JobState::Completed, "{done:?}");
    assert_eq!(done.files.len(), 2, "{done:?}");
    assert!(done.warnings.is_empty(), "{:?}", done.warnings);
}

/// Events missed and `/history` never listing the outputs: the job completes, but with a
/// warning in its snapshot saying no image could be found (not a silent success).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn success_without_any_image_is_reported_as_a_warning() {
    let sim = sim(fast_sim()).await;
    let b = backend(&sim.base_url());
    connected(&b.comfy).await;
    sim.faults().drop_ws_events("executed", true);
    sim.faults().hide_history_outputs(1000);
    let queued = b
        .comfy
        .submit(request(empty_image_graph(1, "mcp/none")))
        .await
        .unwrap();
    let done = wait_done(&b.comfy, &queued.prompt_id).await;
    assert_eq!(done.state, JobState::Completed, "{done:?}");
    assert!(done.files.is_empty());
    assert_eq!(done.warnings.len(), 1, "{done:?}");
    assert!(
        done.warnings[0].contains("no output image could be found"),
        "{:?}",
        done.warnings
    );
    let history_reads = sim
        .requests()
        .iter()
        .filter(|r| r.method == "GET" && r.path.ends_with(&format!("/history/{}", done.prompt_id)))
        .count();
    assert!(
        history_reads >= 2,
        "read once, then retried: {history_reads}"
    );
}
