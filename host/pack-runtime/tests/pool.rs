//! The instance pool (`Limits::pool_slots`) at its limit: N calls at once
//! are served from N slots, call N+1 succeeds through the on-demand
//! fallback, a slot holds exactly the memory cap, and a pack bigger than a
//! slot behaves exactly as without the pool.

use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex};

use pack_runtime::{
    CallError, CallStats, HostView, Limits, LoadError, Pack, Runtime, RuntimeConfig, StaticHost,
    TABLE_ELEMENT_BYTES,
};
use serde_json::{Map, Value, json};

const PAGE: usize = 64 << 10;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn runtime(limits: Limits, cache_dir: Option<&Path>) -> Runtime {
    Runtime::new(RuntimeConfig {
        limits,
        cache_dir: cache_dir.map(Path::to_owned),
        ..RuntimeConfig::default()
    })
    .expect("engine")
}

fn slots(n: usize) -> Limits {
    Limits {
        pool_slots: n,
        ..Limits::default()
    }
}

fn shipped(rt: &Runtime) -> Pack {
    rt.load_file(&repo().join("templates/game-assets.wasm"))
        .expect("shipped pack loads")
}

fn args() -> Map<String, Value> {
    json!({"prompt": "a sword", "seed": 1})
        .as_object()
        .cloned()
        .unwrap()
}

fn host() -> Arc<dyn HostView> {
    let mut h = StaticHost::default();
    h.models.insert(
        "checkpoints".into(),
        vec!["tiny-random-sd15.safetensors".into()],
    );
    Arc::new(h)
}

fn build(pack: &Pack, host: Arc<dyn HostView>) -> (Result<(), CallError>, CallStats) {
    let (built, stats) = pack.build_with_stats("item-icon", &args(), host);
    (built.map(drop), stats.expect("the pack ran"))
}

/// A host whose model list blocks until released: a call in it holds its slot.
struct Parked {
    entered: Sender<()>,
    release: Mutex<Receiver<()>>,
}

impl HostView for Parked {
    fn models(&self, _folder: &str) -> Vec<String> {
        let _ = self.entered.send(());
        let _ = self.release.lock().unwrap().recv();
        vec!["tiny-random-sd15.safetensors".into()]
    }
    fn has_node(&self, _class_type: &str) -> bool {
        true
    }
}

#[test]
fn n_calls_at_once_use_the_pool_and_call_n_plus_one_falls_back() {
    const N: usize = 3;
    let cache = tempfile::tempdir().unwrap();
    // Compiled by the first runtime; the second loads the cached artifact,
    // so the pool and its fallback run code from the compile cache.
    drop(shipped(&runtime(slots(N), Some(cache.path()))));
    let rt = runtime(slots(N), Some(cache.path()));
    let pack = Arc::new(shipped(&rt));
    let (_, alone) = build(&pack, host());
    assert!(alone.pooled, "a call with the pool free is pooled");

    let (entered, started) = channel();
    let mut releases = Vec::new();
    let mut parked = Vec::new();
    for _ in 0..N {
        let (release, wait) = channel();
        releases.push(release);
        let host: Arc<dyn HostView> = Arc::new(Parked {
            entered: entered.clone(),
            release: Mutex::new(wait),
        });
        let pack = pack.clone();
        parked.push(std::thread::spawn(move || build(&pack, host)));
        // Each call is inside the pack (its slot taken) before the next starts.
        started.recv().unwrap();
    }
    let (over, stats) = build(&pack, host());
    over.expect("call N+1 succeeds through the fallback");
    assert!(!stats.pooled, "call N+1 is allocated on demand");
    let (again, stats) = build(&pack, host());
    again.expect("and so does the next one");
    assert!(!stats.pooled);

    drop(releases);
    for call in parked {
        let (result, stats) = call.join().unwrap();
        result.expect("a parked call finishes");
        assert!(stats.pooled, "the N calls at once are pooled");
    }
    let (_, after) = build(&pack, host());
    assert!(after.pooled, "slots are returned when their calls end");
}

#[test]
fn a_pooled_call_gets_memory_up_to_the_cap_and_not_a_byte_more() {
    let path = repo().join("templates/game-assets.wasm");
    let peak = build(&shipped(&runtime(slots(1), None)), host())
        .1
        .peak_memory_bytes;
    // Loading asks the pack for its templates, which may take a few pages
    // more than a build: the cap is the least that both fit in (memory
    // grows by whole pages, the tables are fixed).
    let (cap, pack) = (0..32)
        .map(|pages| peak + pages * PAGE)
        .find_map(|cap| {
            let limits = Limits {
                memory_bytes: cap,
                ..slots(1)
            };
            runtime(limits, None)
                .load_file(&path)
                .ok()
                .map(|p| (cap, p))
        })
        .expect("the pack loads within 32 pages of its build peak");
    // The pool's memory slots are sized from the cap: exactly it fits.
    let (result, stats) = build(&pack, host());
    result.expect("a call needing at most the cap succeeds");
    assert!(stats.pooled);
    assert!(stats.peak_memory_bytes <= cap);
    // One byte less (memories and tables share the cap): refused, by the
    // load's own calls or by the build, with the typed error naming the cap.
    let under = Limits {
        memory_bytes: cap - 1,
        ..slots(1)
    };
    let limit = cap - 1;
    match runtime(under, None).load_file(&path) {
        Err(LoadError::Describe {
            source: CallError::MemoryLimit { limit_bytes },
            ..
        }) => assert_eq!(limit_bytes, limit),
        Err(e) => panic!("{e}"),
        Ok(pack) => {
            let (result, stats) = build(&pack, host());
            assert!(stats.pooled);
            assert!(
                matches!(result, Err(CallError::MemoryLimit { limit_bytes }) if limit_bytes == limit),
                "{result:?}"
            );
        }
    }
}

/// A component around core module text `module` whose exports have the
/// wrong types: it instantiates (the part under test), then fails to bind.
fn component(module: &str) -> Vec<u8> {
    let wat = format!(
        r#"(component
(core module $m {module}
(func (export "f") (result i32) i32.const 0))
(core instance $i0 (instantiate $m))
(func $f (result u32) (canon lift (core func $i0 "f")))
(instance $t (export "info" (func $f)) (export "list" (func $f)) (export "build" (func $f)))
(export "comfyui:workflow/templates@1.0.0" (instance $t)))"#
    );
    wat::parse_str(&wat).expect("valid component text")
}

/// How a WAT pack's load fails with the pool on (one slot) and off.
fn load_both(module: &str, memory_bytes: usize) -> [String; 2] {
    let bytes = component(module);
    [1, 0].map(|slots| {
        let rt = runtime(
            Limits {
                pool_slots: slots,
                memory_bytes,
                ..Limits::default()
            },
            None,
        );
        let err = rt
            .load_bytes(Path::new("big.wasm"), &bytes)
            .expect_err("wrong export types never load");
        match err {
            LoadError::ExportMismatch { .. } => "instantiated, then export mismatch".to_owned(),
            LoadError::Describe { source, .. } => format!("{source}"),
            other => format!("unexpected: {other}"),
        }
    })
}

#[test]
fn a_pack_bigger_than_a_slot_behaves_as_without_the_pool() {
    // Three memories: a slot holds two, the limits allow four.
    let [pooled, on_demand] = load_both("(memory 1) (memory 1) (memory 1)", 64 << 20);
    assert_eq!(pooled, "instantiated, then export mismatch");
    assert_eq!(pooled, on_demand);
    // A table one element over what the cap allows: larger than a table slot
    // (refused when the pool validates it), so it runs on demand, where the
    // limiter refuses it with the same typed error as without the pool.
    let cap = 16 << 20;
    let elements = cap / TABLE_ELEMENT_BYTES + 1;
    let [pooled, on_demand] = load_both(&format!("(table {elements} funcref)"), cap);
    assert!(pooled.contains("memory limit of 16 MiB"), "{pooled}");
    assert_eq!(pooled, on_demand);
    // A table grown past a slot's capacity mid-call: the limiter refuses it
    // (as on demand) instead of the pool answering -1.
    let grow = format!(
        r#"(table $t 1 funcref)
        (func $grow (drop (table.grow $t (ref.null func) (i32.const {elements}))))
        (start $grow)"#
    );
    let [pooled, on_demand] = load_both(&grow, cap);
    assert!(pooled.contains("memory limit of 16 MiB"), "{pooled}");
    assert_eq!(pooled, on_demand);
}

/// A host that panics when asked for models.
struct Panicking;

impl HostView for Panicking {
    fn models(&self, _folder: &str) -> Vec<String> {
        panic!("host bug");
    }
    fn has_node(&self, _class_type: &str) -> bool {
        true
    }
}

#[test]
fn a_panic_in_a_call_reaches_the_caller_and_the_call_threads_keep_serving() {
    let rt = runtime(slots(1), None);
    let pack = shipped(&rt);
    let (_, first) = build(&pack, host());
    let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        build(&pack, Arc::new(Panicking))
    }));
    assert!(
        panicked.is_err(),
        "the host's panic is resumed on the caller"
    );
    for _ in 0..3 {
        let (result, stats) = build(&pack, host());
        result.expect("calls after the panic succeed");
        assert!(stats.pooled);
        assert_eq!(stats.peak_memory_bytes, first.peak_memory_bytes);
    }
}

/// What `grudge` (a pack that counts its calls in a static and reads the
/// memory it grows before marking it) reports of the calls before it.
fn grudge_reports(limits: Limits, calls: usize) -> Vec<(String, bool)> {
    let rt = runtime(limits, None);
    let pack = rt
        .load_file(&repo().join("tests/packs/grudge.wasm"))
        .expect("grudge loads");
    (0..calls)
        .map(|_| {
            let (built, stats) =
                pack.build_with_stats("remember", &Map::new(), Arc::new(StaticHost::default()));
            let graph = built.expect("grudge builds").graph;
            let prefix = graph
                .as_object()
                .and_then(|nodes| {
                    nodes
                        .values()
                        .find_map(|node| node["inputs"]["filename_prefix"].as_str())
                })
                .expect("a SaveImage node")
                .to_owned();
            (prefix, stats.expect("the pack ran").pooled)
        })
        .collect()
}

/// A returned slot keeps up to `pool_keep_resident_bytes` of each memory
/// resident, reset in place: a call never sees what the call before it
/// left, neither in its data segment nor in memory it grew, within that
/// budget or beyond it, whatever the budget.
#[test]
fn a_reused_slot_shows_no_trace_of_the_calls_before_within_or_beyond_the_resident_budget() {
    let fresh = "comfyui-mcp/grudge/1-0-0".to_owned();
    for keep in [Limits::default().pool_keep_resident_bytes, 64 << 10, 0] {
        let limits = Limits {
            pool_keep_resident_bytes: keep,
            ..slots(1)
        };
        for (i, (prefix, pooled)) in grudge_reports(limits, 4).into_iter().enumerate() {
            assert!(pooled, "call {i} came from the one slot (keep {keep})");
            assert_eq!(prefix, fresh, "call {i}, keep-resident {keep} bytes");
        }
    }
    // Without the pool, the same.
    for (prefix, pooled) in grudge_reports(slots(0), 2) {
        assert!(!pooled);
        assert_eq!(prefix, fresh);
    }
}
