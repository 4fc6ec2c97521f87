//! The simulator's shared state: one [`Shared`] per running simulator.
//!
//! Locking: all of ComfyUI's server-side state sits in one `std::sync::Mutex<State>`, held only
//! for short, non-async sections (never across an `.await`), so the HTTP handlers, the
//! websocket tasks and the worker always see a consistent picture and websocket messages are
//! queued in one global order. Flags the worker polls while sleeping (interrupt, step delay)
//! live outside the mutex, paired with a `Notify` that wakes the sleeper.

use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::Notify;

use crate::catalog::Catalog;
use crate::faults::{FaultState, lock};
use crate::files::{Dir, FileStore};
use crate::hub::Hub;
use crate::images;
use crate::middleware::RecordedRequest;
use crate::nodes::SimValue;
use crate::queue::PromptQueue;

/// A cached node result (ComfyUI's `outputs` and `ui` caches share the key).
#[derive(Debug, Clone)]
pub(crate) struct CacheEntry {
    /// The node's output slots.
    pub outputs: Arc<Vec<SimValue>>,
    /// The UI output (`{"images": [...]}`) and its `meta`, for output nodes.
    pub ui: Option<UiEntry>,
}

/// What an output node showed, kept for cached re-runs and history.
#[derive(Debug, Clone)]
pub(crate) struct UiEntry {
    /// `{"images": [...]}`.
    pub output: Value,
    /// `{node_id, display_node, parent_node, real_node_id}`.
    pub meta: Value,
}

/// ComfyUI's server state.
#[derive(Debug)]
pub(crate) struct State {
    /// The catalog in effect.
    pub catalog: Arc<Catalog>,
    /// A catalog to switch to at the next restart.
    pub staged_catalog: Option<Arc<Catalog>>,
    /// The `number` counter of `POST /prompt`.
    pub number: i64,
    /// Queue and history.
    pub queue: PromptQueue,
    /// Output cache keyed by node signature.
    pub cache: HashMap<String, CacheEntry>,
    /// input/, output/, temp/.
    pub files: FileStore,
    /// Websockets.
    pub hub: Hub,
    /// `client_id` of the prompt that runs or ran last (`server.client_id`).
    pub client_id: Option<Value>,
    /// The node the current prompt is executing (`server.last_node_id`).
    pub last_node_id: Option<String>,
    /// When held, the worker does not start pending prompts.
    pub held: bool,
}

impl State {
    fn new(catalog: Arc<Catalog>, max_stored_bytes: usize) -> Self {
        let mut files = FileStore::new(max_stored_bytes);
        files.put(Dir::Input, "example.png".into(), images::example_png());
        Self {
            catalog,
            staged_catalog: None,
            number: 0,
            queue: PromptQueue::default(),
            cache: HashMap::new(),
            files,
            hub: Hub::default(),
            client_id: None,
            last_node_id: None,
            held: false,
        }
    }

    /// `{"exec_info": {"queue_remaining": N}}`.
    pub fn queue_info(&self) -> Value {
        json!({"exec_info": {"queue_remaining": self.queue.remaining()}})
    }

    /// ComfyUI's `queue_updated`: broadcasts a `status` message.
    pub fn queue_updated(&self) {
        self.hub
            .send_json("status", json!({"status": self.queue_info()}), None);
    }

    /// The current job's `client_id` as a socket id, if it is a string.
    pub fn client_sid(&self) -> Option<String> {
        self.client_id
            .as_ref()
            .and_then(Value::as_str)
            .map(str::to_string)
    }

    /// Sends to the current job's client (nothing if the job has no `client_id`).
    pub fn send_to_client(&self, event: &str, data: Value) {
        if self.client_id.is_some() {
            // A non-string client id matches no socket, like a dict lookup would.
            let sid = self.client_sid().unwrap_or_else(|| "\u{0}".to_string());
            self.hub.send_json(event, data, Some(&sid));
        }
    }

    /// Sends to the current job's client, or to everyone when the job has no `client_id`.
    pub fn send_to_client_or_all(&self, event: &str, data: Value) {
        if self.client_id.is_some() {
            self.send_to_client(event, data);
        } else {
            self.hub.send_json(event, data, None);
        }
    }
}

/// The collected calls, for test assertions.
#[derive(Debug, Default)]
pub(crate) struct Recorder {
    /// Every HTTP request received.
    pub requests: Vec<RecordedRequest>,
    /// Every `POST /interrupt` (its `prompt_id`, `None` for a global interrupt).
    pub interrupts: Vec<Option<String>>,
}

/// Everything a running simulator shares between tasks.
#[derive(Debug)]
pub(crate) struct Shared {
    /// Normalised path prefix (`""` or `/x`).
    pub prefix: String,
    /// Required bearer token, if any.
    pub api_key: Option<String>,
    /// Whether samplers send preview frames.
    pub preview_images: bool,
    /// ComfyUI's state.
    pub state: Mutex<State>,
    /// Injected faults.
    pub faults: Mutex<FaultState>,
    /// Recorded calls.
    pub recorder: Mutex<Recorder>,
    /// Wakes the worker when a prompt is queued or the queue is released.
    pub worker_wake: Notify,
    /// ComfyUI's global interrupt flag.
    interrupt: AtomicBool,
    /// Wakes sleeping nodes (interrupt requested, or the step delay changed).
    pub sleepers: Notify,
    step_delay: Mutex<Duration>,
}

impl Shared {
    /// Builds the shared state for a new simulator.
    pub fn new(
        catalog: Catalog,
        prefix: String,
        api_key: Option<String>,
        preview_images: bool,
        max_stored_bytes: usize,
        step_delay: Duration,
    ) -> Self {
        Self {
            prefix,
            api_key,
            preview_images,
            state: Mutex::new(State::new(Arc::new(catalog), max_stored_bytes)),
            faults: Mutex::new(FaultState::default()),
            recorder: Mutex::new(Recorder::default()),
            worker_wake: Notify::new(),
            interrupt: AtomicBool::new(false),
            sleepers: Notify::new(),
            step_delay: Mutex::new(step_delay),
        }
    }

    /// True when websocket events of type `kind` are dropped by an injected fault.
    pub fn drops_event(&self, kind: &str) -> bool {
        lock(&self.faults).dropped_events.contains(kind)
    }

    /// Locks ComfyUI's state.
    pub fn lock(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }

    /// The current per-node / per-step delay.
    pub fn step_delay(&self) -> Duration {
        *lock(&self.step_delay)
    }

    /// Changes the delay; sleeping nodes re-check their deadline at once.
    pub fn set_step_delay(&self, d: Duration) {
        *lock(&self.step_delay) = d;
        self.sleepers.notify_waiters();
    }

    /// Sets ComfyUI's interrupt flag and wakes a sleeping node.
    pub fn request_interrupt(&self) {
        self.interrupt.store(true, Ordering::SeqCst);
        self.sleepers.notify_waiters();
    }

    /// Whether an interrupt is pending.
    pub fn interrupted(&self) -> bool {
        self.interrupt.load(Ordering::SeqCst)
    }

    /// Clears the interrupt flag (at the start of every prompt, like ComfyUI).
    pub fn clear_interrupt(&self) {
        self.interrupt.store(false, Ordering::SeqCst);
    }

    /// Drops every websocket connection.
    pub fn drop_all_sockets(&self) {
        self.lock().hub.abort_all();
    }

    /// Forgets queue, history, cache, temp files, sockets and counters, and switches to a
    /// staged catalog (what a ComfyUI restart does). Output and input files survive.
    pub fn reset_for_restart(&self) {
        let mut st = self.lock();
        st.hub.abort_all();
        if let Some(next) = st.staged_catalog.take() {
            st.catalog = next;
        }
        st.number = 0;
        st.queue.reset();
        st.cache.clear();
        st.files.clear_dir(Dir::Temp);
        st.client_id = None;
        st.last_node_id = None;
        drop(st);
        self.clear_interrupt();
    }
}

/// Milliseconds since the Unix epoch (`int(time.time() * 1000)`).
pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
