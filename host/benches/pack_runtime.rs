//! Pack runtime figures: cold compile of the shipped pack, warm load from
//! the compile cache, and the per-call cost (fresh store + instantiate +
//! build + graph check).
//!
//! Run with: `cargo bench -p comfyui-mcp --bench pack_runtime`
//! (prints a table; never asserts on timings).

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use comfyui::nodes::NodeCatalog;
use pack_runtime::{HostView, Runtime, RuntimeConfig, StaticHost};
use serde_json::json;

fn stats(mut samples: Vec<Duration>) -> (Duration, Duration, Duration) {
    samples.sort();
    let pick = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
    (pick(0.5), pick(0.99), samples[0])
}

fn main() {
    let pack_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../templates/game-assets.wasm");
    let size = std::fs::metadata(&pack_path)
        .expect("templates/game-assets.wasm")
        .len();
    println!("pack: templates/game-assets.wasm ({size} bytes)");

    // Cold: a fresh cache folder each time, so every load compiles.
    let mut cold = Vec::new();
    for _ in 0..5 {
        let dir = tempfile::tempdir().unwrap();
        let rt = Runtime::new(RuntimeConfig {
            cache_dir: Some(dir.path().into()),
            ..Default::default()
        })
        .unwrap();
        let t = Instant::now();
        rt.load_file(&pack_path).unwrap();
        cold.push(t.elapsed());
    }
    // Warm: the artifact is cached; a new runtime (as after a restart) loads it.
    let cache = tempfile::tempdir().unwrap();
    let config = RuntimeConfig {
        cache_dir: Some(cache.path().into()),
        ..Default::default()
    };
    Runtime::new(config.clone())
        .unwrap()
        .load_file(&pack_path)
        .unwrap();
    let rt = Runtime::new(config).unwrap();
    let mut warm = Vec::new();
    for _ in 0..50 {
        let t = Instant::now();
        rt.load_file(&pack_path).unwrap();
        warm.push(t.elapsed());
    }

    // Per call: what generate_image does before submitting.
    let pack = rt.load_file(&pack_path).unwrap();
    let mut catalog = (*NodeCatalog::bundled()).clone();
    catalog
        .set_choices(
            "CheckpointLoaderSimple",
            "ckpt_name",
            vec!["tiny-random-sd15.safetensors".into()],
        )
        .unwrap();
    let host: Arc<dyn HostView> = Arc::new(StaticHost {
        models: [(
            "checkpoints".to_owned(),
            vec!["tiny-random-sd15.safetensors".to_owned()],
        )]
        .into(),
        nodes: None,
    });
    let args = json!({"prompt": "a brass key", "seed": 1, "steps": 20})
        .as_object()
        .unwrap()
        .clone();
    let mut build = Vec::new();
    let mut check = Vec::new();
    let mut total = Vec::new();
    for i in 0..2000 {
        let t0 = Instant::now();
        let built = pack
            .build(["item-icon", "pixel-art"][i % 2], &args, host.clone())
            .unwrap();
        let t1 = Instant::now();
        comfyui::graph::check(&built.graph, &catalog).unwrap();
        let t2 = Instant::now();
        build.push(t1 - t0);
        check.push(t2 - t1);
        total.push(t2 - t0);
    }

    println!(
        "{:<44} {:>10} {:>10} {:>10}",
        "figure", "median", "p99", "min"
    );
    for (name, samples) in [
        ("cold compile (no cache), 5 runs", cold),
        ("warm load (compile cache), 50 runs", warm),
        ("call: instantiate + build, 2000 calls", build),
        ("call: graph check, 2000 calls", check),
        ("call: build + graph check, 2000 calls", total),
    ] {
        let (median, p99, min) = stats(samples);
        println!("{name:<44} {median:>10.2?} {p99:>10.2?} {min:>10.2?}");
    }
}
