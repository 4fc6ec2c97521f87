//! What the job benchmarks share (also included by the job store's bench): the sample job
//! and the reading of the environment.

use comfyui::{JobOrigin, JobRequest};
use serde_json::json;

/// A whole number from the environment, or `default`.
pub fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A tiny two-node job (64x64 image, saved) with template provenance; `i` varies its graph.
pub fn request(i: usize) -> JobRequest {
    JobRequest {
        graph: json!({
            "1": {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 64, "batch_size": 1, "color": i % 16_777_216}},
            "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "bench/img"}}
        }),
        origin: JobOrigin::Template {
            template_id: "bench".into(),
            pack_name: "bench-pack".into(),
            pack_version: "0.0.0".into(),
            pack_sha256: "00".repeat(32),
        },
        parameters: json!({"seed": i, "width": 64, "height": 64, "prompt": "a benchmark image"}),
        metadata: json!({"run": i}),
        postprocess: None,
    }
}

/// The in-process simulator with zero-time steps (16 MiB of stored images).
pub async fn fast_simulator() -> simulator::SimHandle {
    simulator::start(
        "127.0.0.1:0".parse().unwrap(),
        simulator::SimConfig {
            step_delay: std::time::Duration::ZERO,
            max_stored_bytes: 16 * 1024 * 1024,
            ..simulator::SimConfig::default()
        },
    )
    .await
    .expect("simulator")
}
