//! The backend's ComfyUI caches (node catalog, model lists, system stats, queue) are
//! single-flight: concurrent callers share one request and its result or error. Checked by
//! counting requests (never by timing).

mod common;

use std::time::Duration;

use comfyui::{BackendOptions, ComfyConfig, ComfyUi};
use common::*;
use simulator::{SimConfig, SimHandle};

const TIMEOUT: Duration = Duration::from_secs(1);

fn short(cfg: ComfyConfig) -> ComfyConfig {
    cfg.with_timeout(TIMEOUT).unwrap()
}

/// With ComfyUI blackholed, 8 concurrent catalog callers open ONE connection and all get its
/// timeout error; they used to queue on a lock held across the request, one timeout each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_catalog_callers_share_one_request_and_its_error() {
    let hole = Switch::blackhole().await;
    let b = backend_with(&hole.base_url(), short);
    let calls: Vec<_> = (0..8)
        .map(|_| {
            let comfy = b.comfy.clone();
            tokio::spawn(async move { comfy.node_catalog().await })
        })
        .collect();
    for call in calls {
        let err = tokio::time::timeout(BOUND, call)
            .await
            .expect("bounded")
            .unwrap()
            .unwrap_err();
        assert!(matches!(err, comfyui::ClientError::Timeout { .. }), "{err}");
        assert!(err.to_string().contains("GET /object_info"), "{err}");
    }
    assert_eq!(
        hole.requests_starting("GET /object_info"),
        1,
        "one request for all"
    );
    // Within the negative TTL the failure is served without a new request.
    let err = b.comfy.node_catalog().await.unwrap_err();
    assert!(matches!(err, comfyui::ClientError::Timeout { .. }), "{err}");
    assert_eq!(
        hole.requests_starting("GET /object_info"),
        1,
        "failure reused"
    );
}

/// Against a live simulator: concurrent callers of every cache cause one request each, and
/// the model folders are all fetched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_callers_of_each_cache_cause_one_request() {
    let sim = sim(SimConfig {
        step_delay: Duration::ZERO,
        ..SimConfig::default()
    })
    .await;
    let b = backend(&sim.base_url());
    connected(&b.comfy).await;
    // Slow answers, so every caller arrives while the first request is in flight.
    sim.faults().http_delay(Duration::from_millis(300));
    sim.clear_requests();
    let mut tasks = Vec::new();
    for _ in 0..6 {
        let c = b.comfy.clone();
        tasks.push(tokio::spawn(async move {
            let (cat, models, stats) =
                tokio::join!(c.node_catalog(), c.models_snapshot(), c.system_stats());
            (cat.unwrap().len(), models.unwrap(), stats.unwrap())
        }));
    }
    let mut results = Vec::new();
    for t in tasks {
        results.push(tokio::time::timeout(BOUND, t).await.unwrap().unwrap());
    }
    let count = |suffix: &str| {
        sim.requests()
            .iter()
            .filter(|r| r.method == "GET" && r.path.ends_with(suffix))
            .count()
    };
    assert_eq!(count("/object_info"), 1);
    assert_eq!(count("/models"), 1);
    assert_eq!(count("/system_stats"), 1);
    let (_, models, _) = &results[0];
    assert!(models.folders.contains_key("checkpoints"), "{models:?}");
    let folder_requests = sim
        .requests()
        .iter()
        .filter(|r| r.path.contains("/models/"))
        .count();
    assert!(folder_requests >= models.folders.len());
    assert!(results.iter().all(|(_, m, _)| m == models));
}

/// A cached failure is not kept for the whole connection: the next caller asks again and
/// gets the value (an HTTP error answer is not reused at all; timeouts expire with the TTL).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_expire_after_the_negative_ttl() {
    let sim = sim(SimConfig::default()).await;
    let out = tempfile::tempdir().unwrap();
    let mut options = fast_options();
    options.negative_cache_ttl = Duration::from_millis(100);
    let comfy = ComfyUi::connect_with(config(&sim.base_url(), &out), options).unwrap();
    connected(&comfy).await;
    sim.faults().fail_http(1, 503);
    let err = comfy.system_stats().await.unwrap_err();
    assert!(
        matches!(err, comfyui::ClientError::Http { status: 503, .. }),
        "{err}"
    );
    let mut recovered = false;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        if comfy.system_stats().await.is_ok() {
            recovered = true;
            break;
        }
    }
    assert!(recovered, "the failure was cached past its TTL");
}

/// A connected backend on a fresh simulator whose queue is held, with no safety-net polling in
/// the way of request counts (submissions still ask for a pass); `tune` adjusts the options.
async fn held_backend(tune: impl FnOnce(&mut BackendOptions)) -> (SimHandle, Backend) {
    let sim = sim(SimConfig::default()).await;
    let out = tempfile::tempdir().unwrap();
    let mut options = fast_options();
    options.reconcile_interval = Duration::from_secs(3600);
    tune(&mut options);
    let comfy = ComfyUi::connect_with(config(&sim.base_url(), &out), options).unwrap();
    let b = Backend { comfy, out };
    connected(&b.comfy).await;
    sim.hold_queue(true);
    (sim, b)
}

/// Submits `n` one-image jobs one after the other; their prompt ids in order.
async fn submit_jobs(b: &Backend, n: usize, prefix: &str) -> Vec<String> {
    let mut ids = Vec::new();
    for i in 0..n {
        let graph = empty_image_graph(1, &format!("mcp/{prefix}{i}"));
        ids.push(b.comfy.submit(request(graph)).await.unwrap().prompt_id);
    }
    ids
}

/// The `GET /queue` requests the simulator has logged.
fn queue_reads(sim: &SimHandle) -> usize {
    sim.requests()
        .iter()
        .filter(|r| r.method == "GET" && r.path.ends_with("/queue"))
        .count()
}

/// `statuses` refreshes many queued jobs from ONE `GET /queue`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statuses_of_many_queued_jobs_use_one_queue_request() {
    let (sim, b) = held_backend(|_| {}).await;
    let ids = submit_jobs(&b, 5, "q").await;
    // Let the reconciliation the submits asked for settle (it fills in every position).
    let last = ids.last().unwrap().clone();
    let mut rx = b.comfy.watch(&last).unwrap();
    tokio::time::timeout(BOUND, rx.wait_for(|s| s.queue_position == Some(4)))
        .await
        .expect("positions known")
        .unwrap();
    sim.clear_requests();
    let snaps = b.comfy.statuses(&ids).await;
    assert_eq!(snaps.len(), 5);
    for (i, s) in snaps.iter().enumerate() {
        let s = s.as_ref().unwrap().as_ref().unwrap();
        assert_eq!(s.queue_position, Some(i as u32), "{s:?}");
    }
    let queue_gets = queue_reads(&sim);
    assert_eq!(queue_gets, 1);
    sim.hold_queue(false);
}

/// A burst of submissions (each also moves ComfyUI's queue, announced by a websocket
/// `status` event) costs one `GET /queue`, not one per submission and per event: each read
/// carries the whole queue, so that made a burst quadratic in its length.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_submissions_reads_the_queue_once() {
    const JOBS: usize = 40;
    // Every submission of the burst lands in one settle window.
    let (sim, b) = held_backend(|o| o.submit_settle = Duration::from_secs(2)).await;
    sim.clear_requests();
    let ids = submit_jobs(&b, JOBS, "burst").await;
    let last = ids.last().unwrap().clone();
    let mut rx = b.comfy.watch(&last).unwrap();
    tokio::time::timeout(
        BOUND,
        rx.wait_for(|s| s.queue_position == Some(JOBS as u32 - 1)),
    )
    .await
    .expect("positions known")
    .unwrap();
    for (i, id) in ids.iter().enumerate() {
        let s = b.comfy.watch(id).unwrap().borrow().clone();
        assert_eq!(s.queue_position, Some(i as u32), "{s:?}");
    }
    let queue_gets = queue_reads(&sim);
    assert_eq!(queue_gets, 1, "one read for the whole burst");
    sim.hold_queue(false);
}
