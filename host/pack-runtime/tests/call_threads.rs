//! Which thread a call runs on (`threads.rs`): a thread that declared a
//! stack at least [`Limits::native_stack_bytes`] runs its calls itself;
//! any other thread hands them to a call thread of the runtime. A call on a
//! declared thread is bounded by the same wasm stack limit.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::thread::ThreadId;

use pack_runtime::{CallError, HostView, Limits, Runtime, RuntimeConfig, declare_call_thread};
use serde_json::{Map, json};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A host that records the thread each query ran on (the call's thread).
#[derive(Default)]
struct Recorder(Mutex<Vec<ThreadId>>);

impl HostView for Recorder {
    fn models(&self, _folder: &str) -> Vec<String> {
        self.0.lock().unwrap().push(std::thread::current().id());
        vec!["tiny-random-sd15.safetensors".into()]
    }
    fn has_node(&self, _class_type: &str) -> bool {
        true
    }
}

/// On a thread with `stack` bytes that declared `declared`: the thread id
/// and the thread the shipped pack's build ran on.
fn run_on(stack: usize, declared: Option<usize>) -> (ThreadId, ThreadId) {
    let rt = Runtime::new(RuntimeConfig::default()).expect("engine");
    let pack = rt
        .load_file(&repo().join("templates/game-assets.wasm"))
        .expect("shipped pack loads");
    std::thread::Builder::new()
        .stack_size(stack)
        .spawn(move || {
            if let Some(bytes) = declared {
                declare_call_thread(bytes);
            }
            let host = Arc::new(Recorder::default());
            let args = json!({"prompt": "a key", "seed": 1});
            pack.build("item-icon", args.as_object().unwrap(), host.clone())
                .expect("builds");
            let seen = host.0.lock().unwrap().clone();
            assert!(!seen.is_empty(), "the pack asked for models");
            assert!(seen.iter().all(|id| *id == seen[0]));
            (std::thread::current().id(), seen[0])
        })
        .unwrap()
        .join()
        .unwrap()
}

#[test]
fn a_thread_that_declared_enough_stack_runs_its_calls_itself() {
    let needed = Limits::default().native_stack_bytes();
    let (caller, call) = run_on(needed, Some(needed));
    assert_eq!(caller, call);
}

#[test]
fn a_thread_that_declared_too_little_or_nothing_hands_calls_to_a_call_thread() {
    let needed = Limits::default().native_stack_bytes();
    let (caller, call) = run_on(needed, Some(needed - 1));
    assert_ne!(caller, call);
    let (caller, call) = run_on(needed, None);
    assert_ne!(caller, call);
}

#[test]
fn runaway_recursion_on_a_declared_thread_is_stopped_by_the_wasm_stack_limit() {
    let needed = Limits::default().native_stack_bytes();
    let rt = Runtime::new(RuntimeConfig::default()).expect("engine");
    let pack = rt
        .load_file(&repo().join("tests/packs/deep-recursion.wasm"))
        .expect("deep-recursion loads");
    let err = std::thread::Builder::new()
        .stack_size(needed)
        .spawn(move || {
            declare_call_thread(needed);
            let host = Arc::new(Recorder::default());
            pack.build("runaway", &Map::new(), host).unwrap_err()
        })
        .unwrap()
        .join()
        .unwrap();
    assert!(
        matches!(err, CallError::StackExhausted { .. }),
        "{err}: expected the wasm stack limit"
    );
}
