//! Per-call cost of the shipped pack (fresh store + instantiate + build),
//! with the instance pool (`Limits::pool_slots` at its default) and without
//! it (`pool_slots: 0`, on-demand allocation and wasmtime's default memory
//! reservation, as before the pool). Also: the pool with every page of a
//! returned slot handed back to the kernel (`pool_keep_resident_bytes: 0`,
//! as before the resident budget); the pool on a thread that declared its
//! stack (`declare_call_thread`, as the server's admission threads do: no hop
//! to a call thread); the pool full (every call through the on-demand
//! fallback); the same path as the server's for a trivial pack
//! (`tests/packs/mini.wasm`, a two-node graph: the floor of instantiation and
//! the component boundary); and spawning the call thread alone. Everything
//! runs on one thread with the native stack a call needs, which declares it
//! only for its arm.
//!
//! Arms rotate in blocks of `COMFYUI_MCP_BENCH_BLOCK` consecutive calls
//! (default 100), so every arm sees the same machine load over the run and
//! each is measured as a server runs it, call after call on the same pack.
//! With a block of 1 every call follows one of another arm: each then pays
//! for the caches and TLB entries the others evicted (the on-demand arms map
//! and unmap a memory reservation per call), which roughly doubles the
//! cheapest arms' figures.
//!
//! Run with: `cargo bench -p comfyui-mcp-pack-runtime --bench per_call` (the optimised
//! build, as the README's figures; `--profile dev` reuses the test build's wasmtime), with
//! `COMFYUI_MCP_BENCH_CALLS` calls per arm (default 2000). Prints a table; never asserts
//! on timings.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use pack_runtime::{HostView, Limits, Runtime, RuntimeConfig, StaticHost};
use serde_json::json;

fn stats(mut samples: Vec<Duration>) -> (Duration, Duration, Duration) {
    samples.sort();
    let pick = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
    (pick(0.5), pick(0.99), samples[0])
}

/// The number in environment variable `name`, else `default`.
fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(default)
}

fn runtime(pool_slots: usize, pool_keep_resident_bytes: usize) -> Runtime {
    Runtime::new(RuntimeConfig {
        limits: Limits {
            pool_slots,
            pool_keep_resident_bytes,
            ..Limits::default()
        },
        ..RuntimeConfig::default()
    })
    .unwrap()
}

fn main() {
    std::thread::Builder::new()
        .stack_size(Limits::default().native_stack_bytes())
        .spawn(measure)
        .unwrap()
        .join()
        .unwrap();
}

fn measure() {
    let keep = Limits::default().pool_keep_resident_bytes;
    let calls = env_or("COMFYUI_MCP_BENCH_CALLS", 2000);
    let block = env_or("COMFYUI_MCP_BENCH_BLOCK", 100);
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../templates/game-assets.wasm");
    let slots = pack_runtime::DEFAULT_POOL_SLOTS;
    let on_demand = runtime(0, keep).load_file(&path).unwrap();
    let released = runtime(slots, 0).load_file(&path).unwrap();
    let pooled = runtime(slots, keep).load_file(&path).unwrap();
    let mini_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/packs/mini.wasm");
    let mini = runtime(slots, keep).load_file(&mini_path).unwrap();
    // A pool of one slot, held by a call parked in the host: every call
    // measured on it goes through the fallback.
    let full = Arc::new(runtime(1, keep).load_file(&path).unwrap());
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
    let (parked, release) = park(&full, &args);

    let mut samples: [Vec<Duration>; 7] = Default::default();
    let mut pooled_calls = [0usize; 6];
    let declared = Limits::default().native_stack_bytes();
    let no_args = serde_json::Map::new();
    // Each arm: the pack, the stack its thread declares, and the template (`None`: the
    // shipped pack's two, alternating) with its arguments.
    let arms = [
        (&on_demand, 0, None, &args),
        (&released, 0, None, &args),
        (&pooled, 0, None, &args),
        (&pooled, declared, None, &args),
        (&*full, 0, None, &args),
        (&mini, declared, Some("solid-color"), &no_args),
    ];
    let block = block.clamp(1, calls.max(1));
    for first in (0..calls).step_by(block) {
        let count = block.min(calls - first);
        for (k, (pack, stack, template, arguments)) in arms.into_iter().enumerate() {
            pack_runtime::declare_call_thread(stack);
            for i in first..first + count {
                let template = template.unwrap_or(["item-icon", "pixel-art"][i % 2]);
                let t = Instant::now();
                let (built, stats) = pack.build_with_stats(template, arguments, host.clone());
                samples[k].push(t.elapsed());
                drop(built.unwrap());
                pooled_calls[k] += usize::from(stats.unwrap().pooled);
            }
        }
        pack_runtime::declare_call_thread(0);
        for _ in 0..count {
            let t = Instant::now();
            std::thread::Builder::new()
                .stack_size(Limits::default().native_stack_bytes())
                .spawn(|| ())
                .unwrap()
                .join()
                .unwrap();
            samples[6].push(t.elapsed());
        }
    }
    release.send(()).unwrap();
    drop(release);
    parked.join().unwrap();

    println!(
        "pack: templates/game-assets.wasm, {calls} calls each, arms rotating in blocks of {block}"
    );
    println!(
        "{:<62} {:>10} {:>10} {:>10} {:>7}",
        "figure", "median", "p99", "min", "pooled"
    );
    let names = [
        "per call, on demand (pool_slots 0, as before)",
        "per call, pool, slots reset by madvise (keep-resident 0)",
        "per call, pool (defaults), on a call thread",
        "per call, pool (defaults), on the declared caller thread",
        "per call, pool full: on-demand fallback",
        "floor: trivial pack (mini.wasm), the server's path",
        "spawning the call thread alone (6 MiB stack)",
    ];
    let mut medians = Vec::new();
    for (k, (name, samples)) in names.iter().zip(samples).enumerate() {
        let (median, p99, min) = stats(samples);
        medians.push(median);
        let pooled = pooled_calls.get(k).map_or(String::new(), |n| n.to_string());
        println!("{name:<62} {median:>10.2?} {p99:>10.2?} {min:>10.2?} {pooled:>7}");
    }
    let ratio = |a: usize, b: usize| medians[a].as_secs_f64() / medians[b].as_secs_f64();
    println!(
        "median ratios: on demand / pool {:.2}x; keep-resident 0 / default {:.2}x; call thread / declared caller {:.2}x",
        ratio(0, 2),
        ratio(1, 2),
        ratio(2, 3)
    );
}

/// Starts a call on `pack` that holds its pool slot until `release` is sent.
fn park(
    pack: &Arc<pack_runtime::Pack>,
    args: &serde_json::Map<String, serde_json::Value>,
) -> (std::thread::JoinHandle<()>, std::sync::mpsc::Sender<()>) {
    let (release, wait) = std::sync::mpsc::channel();
    let (entered, started) = std::sync::mpsc::channel();
    let host: Arc<dyn HostView> = Arc::new(Parked {
        entered,
        wait: std::sync::Mutex::new(wait),
    });
    let pack = pack.clone();
    let args = args.clone();
    let handle = std::thread::spawn(move || {
        let (_, stats) = pack.build_with_stats("item-icon", &args, host);
        assert!(stats.unwrap().pooled);
    });
    started.recv().unwrap();
    (handle, release)
}

/// A host whose model list blocks until released (once).
struct Parked {
    entered: std::sync::mpsc::Sender<()>,
    wait: std::sync::Mutex<std::sync::mpsc::Receiver<()>>,
}

impl HostView for Parked {
    fn models(&self, _folder: &str) -> Vec<String> {
        let _ = self.entered.send(());
        let _ = self.wait.lock().unwrap().recv();
        vec!["tiny-random-sd15.safetensors".to_owned()]
    }
    fn has_node(&self, _class_type: &str) -> bool {
        true
    }
}
