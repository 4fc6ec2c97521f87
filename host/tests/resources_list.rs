//! `resources/list` refreshes every recent queued job from ONE `GET /queue` snapshot (it
//! used to send one per queued job). Against the in-process simulator; counts requests.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use comfyui::{JobOrigin, JobRequest};
use comfyui_mcp::App;
use comfyui_mcp::mcp::resources;
use serde_json::json;

const BOUND: Duration = Duration::from_secs(60);

async fn app(sim: &simulator::SimHandle, out: &tempfile::TempDir) -> Arc<App> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let templates = tempfile::tempdir().unwrap();
    common::start_app(&common::settings(
        sim.base_url(),
        out.path(),
        templates.path(),
        Path::new("off"),
        &[],
    ))
    .await
}

fn job(i: usize) -> JobRequest {
    JobRequest {
        graph: json!({
            "1": {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 64, "batch_size": 1, "color": i}},
            "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "mcp/list"}}
        }),
        origin: JobOrigin::Workflow {
            path: "list.json".into(),
            sha256: "00".repeat(32),
        },
        parameters: json!({}),
        metadata: json!({}),
        postprocess: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resources_list_uses_one_queue_snapshot_for_all_queued_jobs() {
    let sim = simulator::start(([127, 0, 0, 1], 0).into(), simulator::SimConfig::default())
        .await
        .expect("simulator starts");
    let out = tempfile::tempdir().unwrap();
    let app = app(&sim, &out).await;
    let mut conn = app.comfy().connection();
    tokio::time::timeout(BOUND, conn.wait_for(|c| c.connected))
        .await
        .expect("connects")
        .unwrap();
    sim.hold_queue(true);
    for i in 0..10 {
        app.comfy().submit(job(i)).await.unwrap();
    }
    sim.clear_requests();
    let listed = resources::list(&app).await;
    let job_entries = listed
        .resources
        .iter()
        .filter(|r| r.uri.starts_with("comfyui://jobs/"))
        .count();
    assert_eq!(job_entries, 10);
    let queue_gets = sim
        .requests()
        .iter()
        .filter(|r| r.method == "GET" && r.path.ends_with("/queue"))
        .count();
    // One for the listing; the backend's 2 s safety-net reconciliation may add its own.
    assert!(
        queue_gets <= 2,
        "{queue_gets} GET /queue for one listing of ten queued jobs"
    );
    sim.hold_queue(false);
}
