//! Shared helpers for the end-to-end tests: a simulator, a backend pointed at it, graphs.
#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use comfyui::jobs::BackendOptions;
use comfyui::ws::WsOptions;
use comfyui::{ComfyConfig, ComfyUi, JobOrigin, JobRequest};
use serde_json::{Value, json};
use simulator::{SimConfig, SimHandle};

/// Upper bound for any wait in these tests (never asserted on; only to avoid hanging).
pub const BOUND: Duration = Duration::from_secs(60);

pub fn transcripts() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/transcripts")
}

pub fn transcript(name: &str) -> Value {
    serde_json::from_str(&std::fs::read_to_string(transcripts().join(name)).unwrap()).unwrap()
}

pub async fn sim(cfg: SimConfig) -> SimHandle {
    simulator::start("127.0.0.1:0".parse().unwrap(), cfg)
        .await
        .expect("simulator starts")
}

/// Fast reconnects and reconciliation for tests.
pub fn fast_options() -> BackendOptions {
    BackendOptions {
        ws: WsOptions {
            backoff_min: Duration::from_millis(20),
            backoff_max: Duration::from_millis(200),
            ..WsOptions::default()
        },
        reconcile_interval: Duration::from_millis(200),
        cancel_confirm_timeout: BOUND,
    }
}

pub struct Backend {
    pub comfy: Arc<ComfyUi>,
    pub out: tempfile::TempDir,
}

pub fn config(url: &str, out: &tempfile::TempDir) -> ComfyConfig {
    ComfyConfig::new(url)
        .unwrap()
        .with_output_dir(out.path())
        .with_timeout(Duration::from_secs(30))
        .unwrap()
}

pub fn backend_with(url: &str, tweak: impl FnOnce(ComfyConfig) -> ComfyConfig) -> Backend {
    let out = tempfile::tempdir().unwrap();
    let cfg = tweak(config(url, &out));
    let options = fast_options();
    let comfy = ComfyUi::connect_with(cfg, options).unwrap();
    Backend { comfy, out }
}

pub fn backend(url: &str) -> Backend {
    backend_with(url, |c| c)
}

/// Waits until the backend's websocket is open.
pub async fn connected(comfy: &ComfyUi) {
    let mut rx = comfy.connection();
    tokio::time::timeout(BOUND, rx.wait_for(|c| c.connected))
        .await
        .expect("websocket connects within the bound")
        .unwrap();
}

/// EmptyImage (64×64, `batch`) → SaveImage(prefix): runs without any model.
pub fn empty_image_graph(batch: u32, prefix: &str) -> Value {
    json!({
        "1": {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 64, "batch_size": batch, "color": 0}},
        "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": prefix}}
    })
}

/// EmptyImage → ImageInvert → SaveImage.
pub fn invert_graph(prefix: &str) -> Value {
    json!({
        "1": {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 64, "batch_size": 1, "color": 0}},
        "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
        "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": prefix}}
    })
}

/// The recorded tiny text-to-image graph with `steps` sampler steps and `seed`.
pub fn t2i_graph(steps: u32, seed: u64) -> Value {
    let mut g = transcript("prompt_t2i_tiny.json")["request"]["json_body"]["prompt"].clone();
    g["3"]["inputs"]["steps"] = json!(steps);
    g["3"]["inputs"]["seed"] = json!(seed);
    g
}

pub fn request(graph: Value) -> JobRequest {
    JobRequest {
        graph,
        origin: JobOrigin::Template {
            template_id: "test-template".into(),
            pack_name: "test-pack".into(),
            pack_version: "1.2.3".into(),
            pack_sha256: "ab".repeat(32),
        },
        parameters: json!({"seed": 42, "width": 64}),
        metadata: json!({"caller": "tests"}),
    }
}
