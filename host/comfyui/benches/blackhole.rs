//! Time until 50 concurrent calls have all answered while ComfyUI is blackholed (its port
//! accepts TCP and never answers). Each call does what `generate` does against ComfyUI
//! (node catalog, model lists, submit); with the shared single-flight caches the whole burst
//! should take about one request timeout. Prints results; asserts nothing about timings.
//!
//! `cargo bench -p comfyui-mcp-comfyui --bench blackhole`
//! Environment: `BLACKHOLE_CLIENTS` (default 50), `BLACKHOLE_TIMEOUT_MS` (the configured
//! ComfyUI request timeout, default 1000), `BLACKHOLE_ROUNDS` (default 5; a fresh backend
//! each round, so no failure is served from the negative cache).

use std::time::{Duration, Instant};

use comfyui::{ComfyConfig, ComfyUi, JobOrigin, JobRequest};
use serde_json::json;
use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn request(i: u64) -> JobRequest {
    JobRequest {
        graph: json!({
            "1": {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 64, "batch_size": 1, "color": i}},
            "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "bench/hole"}}
        }),
        origin: JobOrigin::Workflow {
            path: "bench.json".into(),
            sha256: "00".repeat(32),
        },
        parameters: json!({}),
        metadata: json!({}),
        postprocess: None,
    }
}

/// Accepts every connection, reads and discards, never answers.
async fn blackhole() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 16 * 1024];
                while matches!(sock.read(&mut buf).await, Ok(n) if n > 0) {}
            });
        }
    });
    format!("http://{addr}")
}

fn main() {
    let clients = env_u64("BLACKHOLE_CLIENTS", 50);
    let timeout = Duration::from_millis(env_u64("BLACKHOLE_TIMEOUT_MS", 1000).max(1));
    let rounds = env_u64("BLACKHOLE_ROUNDS", 5).max(1);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let url = blackhole().await;
        let out = tempfile::tempdir().unwrap();
        let mut totals = Vec::new();
        for _ in 0..rounds {
            let cfg = ComfyConfig::new(&url)
                .unwrap()
                .with_timeout(timeout)
                .unwrap()
                .with_output_dir(out.path());
            let comfy = ComfyUi::connect(cfg).unwrap();
            let started = Instant::now();
            let calls: Vec<_> = (0..clients)
                .map(|i| {
                    let comfy = comfy.clone();
                    tokio::spawn(async move {
                        comfy.node_catalog().await?;
                        comfy.models_snapshot().await?;
                        comfy.submit(request(i)).await
                    })
                })
                .collect();
            let mut failed = 0;
            for c in calls {
                if c.await.unwrap().is_err() {
                    failed += 1;
                }
            }
            let total = started.elapsed();
            assert_eq!(failed, clients, "nothing can succeed against a blackhole");
            totals.push(total);
            comfy.shutdown();
        }
        totals.sort();
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        println!(
            "blackhole: {clients} concurrent generate-like calls, request timeout {} ms, {rounds} rounds: all answered after min {:.0} ms / median {:.0} ms / max {:.0} ms ({:.2} x the timeout at the median)",
            timeout.as_millis(),
            ms(totals[0]),
            ms(totals[totals.len() / 2]),
            ms(totals[totals.len() - 1]),
            ms(totals[totals.len() / 2]) / ms(timeout),
        );
    });
}
