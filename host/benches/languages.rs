//! The same template in three languages: the example packs `rust-example`, `python-example`
//! and `js-example` (`plugins/*-example`, one text-to-image template each, same parameters,
//! same graph). Per pack: file size, cold compile (no cache), warm load (from the compile
//! cache, as after a restart), per-call time (fresh store + instantiate + build) and peak
//! memory of a call (the smallest `COMFYUI_MCP_PACK_MEMORY_MB` at which load and build pass,
//! found by bisection: linear memories and tables together, as the host counts them).
//!
//! The packs are built first by `plugins/build-example-packs.sh` (skipped when up to date).
//!
//! Run with: `cargo bench --profile dev -p comfyui-mcp --bench languages`
//! (prints a table; never asserts on timings). Compare the languages as ratios in one run.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use pack_runtime::{HostView, Limits, Runtime, RuntimeConfig, StaticHost};
use serde_json::{Map, Value, json};

const PACKS: [(&str, &str, &str); 3] = [
    ("Rust", "rust-example", "rs-txt2img"),
    ("Python", "python-example", "py-txt2img"),
    ("JavaScript", "js-example", "js-txt2img"),
];
const COLD_RUNS: usize = 3;
const WARM_RUNS: usize = 20;
const CALLS: usize = 200;

fn stats(mut samples: Vec<Duration>) -> (Duration, Duration) {
    samples.sort();
    let pick = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
    (pick(0.5), pick(0.99))
}

fn build_packs(root: &Path) -> PathBuf {
    let out = root.join("target/example-packs");
    let status = Command::new(root.join("plugins/build-example-packs.sh"))
        .arg(&out)
        .status()
        .expect("run plugins/build-example-packs.sh");
    assert!(status.success(), "plugins/build-example-packs.sh failed");
    out
}

fn host() -> Arc<dyn HostView> {
    Arc::new(StaticHost {
        models: [(
            "checkpoints".to_owned(),
            vec!["tiny-random-sd15.safetensors".to_owned()],
        )]
        .into(),
        nodes: None,
    })
}

fn args() -> Map<String, Value> {
    json!({"prompt": "a brass key", "seed": 1, "width": 512, "height": 512})
        .as_object()
        .expect("object")
        .clone()
}

fn config(cache: &Path, memory_bytes: usize) -> RuntimeConfig {
    RuntimeConfig {
        limits: Limits {
            memory_bytes,
            ..Limits::default()
        },
        cache_dir: Some(cache.into()),
        ..Default::default()
    }
}

/// Whether one load and one build pass with a memory cap of `mib` MiB (warm cache).
fn passes_with(cache: &Path, path: &Path, id: &str, mib: usize) -> bool {
    let Ok(rt) = Runtime::new(config(cache, mib << 20)) else {
        return false;
    };
    rt.load_file(path)
        .is_ok_and(|pack| pack.build(id, &args(), host()).is_ok())
}

/// The smallest cap in MiB (1..=default) at which a load and a build pass.
fn peak_mib(cache: &Path, path: &Path, id: &str) -> usize {
    let (mut lo, mut hi) = (1, Limits::default().memory_bytes >> 20);
    assert!(
        passes_with(cache, path, id, hi),
        "{id} fails at the default cap"
    );
    while lo < hi {
        let mid = (lo + hi) / 2;
        if passes_with(cache, path, id, mid) {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    lo
}

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let dir = build_packs(&root);
    let default_memory = Limits::default().memory_bytes;
    println!(
        "{:<11} {:>10} {:>12} {:>11} {:>11} {:>11} {:>11} {:>9}",
        "language",
        "pack",
        "cold compile",
        "warm load",
        "call p50",
        "call p99",
        "call/Rust",
        "peak mem"
    );
    let mut rust_call = None;
    for (language, name, id) in PACKS {
        let path = dir.join(format!("{name}.wasm"));
        let size = std::fs::metadata(&path).expect("built pack").len();
        let mut cold = Vec::new();
        for _ in 0..COLD_RUNS {
            let fresh = tempfile::tempdir().expect("tempdir");
            let rt = Runtime::new(config(fresh.path(), default_memory)).expect("runtime");
            let t = Instant::now();
            rt.load_file(&path).expect("cold load");
            cold.push(t.elapsed());
        }
        let cache = tempfile::tempdir().expect("tempdir");
        Runtime::new(config(cache.path(), default_memory))
            .expect("runtime")
            .load_file(&path)
            .expect("fill the cache");
        let rt = Runtime::new(config(cache.path(), default_memory)).expect("runtime");
        let mut warm = Vec::new();
        for _ in 0..WARM_RUNS {
            let t = Instant::now();
            rt.load_file(&path).expect("warm load");
            warm.push(t.elapsed());
        }
        let pack = rt.load_file(&path).expect("load");
        let (host, args) = (host(), args());
        let mut calls = Vec::new();
        for _ in 0..CALLS {
            let t = Instant::now();
            pack.build(id, &args, host.clone()).expect("build");
            calls.push(t.elapsed());
        }
        let (cold, _) = stats(cold);
        let (warm, _) = stats(warm);
        let (p50, p99) = stats(calls);
        let ratio = p50.as_secs_f64() / rust_call.get_or_insert(p50).as_secs_f64();
        let peak = peak_mib(cache.path(), &path, id);
        println!(
            "{language:<11} {:>9.1}K {cold:>12.2?} {warm:>11.2?} {p50:>11.2?} {p99:>11.2?} {ratio:>10.1}x {peak:>6} MiB",
            size as f64 / 1024.0
        );
    }
    println!(
        "(cold: median of {COLD_RUNS}; warm: median of {WARM_RUNS}; calls: {CALLS}; \
         peak mem: smallest memory cap passing a load and a build)"
    );
}
