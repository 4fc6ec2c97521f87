//! The worker: runs queued prompts one at a time and emits ComfyUI's message sequence.
//!
//! For each prompt (see `ws_success.jsonl` and API-FACTS §2): `status` when the worker takes
//! it, `execution_start`, `execution_cached`, then per node that really runs
//! `progress_state` (running), `executing`, per sampler step `progress_state` + `progress`
//! (+ preview frames when enabled), `executed` for output nodes and `progress_state`
//! (finished); then `execution_success` | `execution_error` | `execution_interrupted`, the
//! history entry, `status`, and `executing {node: null}`.
//!
//! Routing follows the server: job events go to the prompt's `client_id` socket only (none
//! without a client id); `status`, `progress_state` and (without a client id) `progress`,
//! previews and `execution_interrupted` go to every socket.
//!
//! Interrupts are checked where ComfyUI checks them: before each node runs and at every
//! sampler step. A node that is "working" when an interrupt arrives finishes at once (the
//! simulator does not make tests wait), then the next check stops the prompt.
//!
//! Invariant: the state lock is never held across an `.await`; the history entry, the final
//! `status` and `executing {node: null}` are produced in one critical section, so once a
//! prompt is visible in `/history` every message about it has been queued to the sockets.

use serde_json::{Map, Value, json};
use std::collections::{HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use tokio::time::Instant;

use crate::catalog::Catalog;
use crate::faults::lock;
use crate::files::{Dir, join, split_annotation};
use crate::graph::{ExecutionList, as_link, node_class, node_inputs, signatures};
use crate::images::{Img, SOFTWARE_TAG};
use crate::nodes::{self, Input, NodeCall, NodeError, NodeResult, SimValue};
use crate::pyjson;
use crate::pyval::{self, PyErr};
use crate::queue::QueueItem;
use crate::state::{CacheEntry, Shared, State, UiEntry, now_ms};

/// Binary websocket event types.
const PREVIEW_IMAGE: u32 = 1;
const PREVIEW_IMAGE_WITH_METADATA: u32 = 4;
/// Image type code for PNG previews inside a `PREVIEW_IMAGE` frame.
const PREVIEW_TYPE_PNG: u32 = 2;

/// Runs prompts forever (until the task is aborted by a restart or shutdown).
pub(crate) async fn worker(shared: Arc<Shared>) {
    loop {
        let item = next_prompt(&shared).await;
        tracing::debug!(prompt_id = %item.prompt_id, "prompt started");
        run_prompt(&shared, item).await;
    }
}

async fn next_prompt(shared: &Shared) -> QueueItem {
    loop {
        {
            let mut st = shared.lock();
            if !st.held
                && let Some(item) = st.queue.start_next()
            {
                st.queue_updated();
                return item;
            }
        }
        shared.worker_wake.notified().await;
    }
}

/// How a prompt ended early.
enum Failure {
    Interrupted {
        node: String,
    },
    Error {
        node: String,
        err: NodeError,
        current_inputs: Value,
    },
}

/// One node's progress entry (ComfyUI's `NodeProgressState`).
struct Progress {
    state: &'static str,
    value: Value,
    max: Value,
}

/// Per-prompt bookkeeping.
struct Job {
    prompt_id: String,
    prompt: Map<String, Value>,
    extra_data: Map<String, Value>,
    has_client: bool,
    messages: Vec<Value>,
    executed: Vec<String>,
    progress: Vec<(String, Progress)>,
    values: HashMap<String, Arc<Vec<SimValue>>>,
    sigs: HashMap<String, String>,
}

impl Job {
    /// `add_message`: timestamp, keep for history, send to the client (or to everyone when
    /// `broadcast` and there is no client).
    fn add_message(&mut self, st: &State, event: &str, data: Value, broadcast: bool) {
        let mut data = data;
        if let Some(m) = data.as_object_mut() {
            m.insert("timestamp".into(), json!(now_ms()));
        }
        self.messages.push(json!([event, data.clone()]));
        if self.has_client || broadcast {
            st.send_to_client_or_all(event, data);
        }
    }

    fn entry(&mut self, id: &str) -> &mut Progress {
        if let Some(pos) = self.progress.iter().position(|(k, _)| k == id) {
            return &mut self.progress[pos].1;
        }
        self.progress.push((
            id.to_string(),
            Progress {
                state: "pending",
                value: json!(0),
                max: json!(1),
            },
        ));
        &mut self.progress.last_mut().expect("just pushed").1
    }

    fn send_progress_state(&self, st: &State) {
        let mut nodes = Map::new();
        for (id, p) in &self.progress {
            if p.state == "pending" {
                continue;
            }
            nodes.insert(
                id.clone(),
                json!({
                    "value": p.value, "max": p.max, "state": p.state, "node_id": id,
                    "prompt_id": self.prompt_id, "display_node_id": id,
                    "parent_node_id": null, "real_node_id": id
                }),
            );
        }
        st.hub.send_json(
            "progress_state",
            json!({"prompt_id": self.prompt_id, "nodes": nodes}),
            None,
        );
    }

    fn start_progress(&mut self, st: &State, id: &str) {
        let e = self.entry(id);
        e.state = "running";
        e.value = json!(0.0);
        e.max = json!(1.0);
        self.send_progress_state(st);
    }

    fn update_progress(&mut self, st: &State, id: &str, value: u32, max: u32) {
        let e = self.entry(id);
        e.state = "running";
        e.value = json!(value);
        e.max = json!(max);
        self.send_progress_state(st);
    }

    fn finish_progress(&mut self, st: &State, id: &str) {
        let e = self.entry(id);
        e.state = "finished";
        e.value = e.max.clone();
        self.send_progress_state(st);
    }
}

fn file_hash(bytes: &[u8]) -> String {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    bytes.hash(&mut h);
    format!("{:016x}", h.finish())
}

/// `IS_CHANGED` of image loaders: a hash of the file, so a re-uploaded file re-runs them.
fn is_changed(st: &State, prompt: &Map<String, Value>, id: &str) -> Value {
    let class = node_class(prompt, id);
    if !matches!(class, "LoadImage" | "LoadImageMask" | "LoadImageOutput") {
        return Value::Bool(false);
    }
    let name = node_inputs(prompt, id)
        .get("image")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let (bare, dir) = split_annotation(&name);
    let dir = dir.unwrap_or(if class == "LoadImageOutput" {
        Dir::Output
    } else {
        Dir::Input
    });
    match join("", bare).and_then(|p| st.files.get(dir, &p)) {
        Some(bytes) => json!(file_hash(&bytes)),
        None => json!("NaN"),
    }
}

async fn run_prompt(shared: &Arc<Shared>, item: QueueItem) {
    shared.clear_interrupt();
    let prompt = item.prompt.as_object().cloned().unwrap_or_default();
    let mut extra_data = item.extra_data.clone();
    extra_data.extend(item.sensitive.clone());
    let mut job = Job {
        prompt_id: item.prompt_id.clone(),
        prompt,
        extra_data,
        has_client: item.client_id().is_some(),
        messages: Vec::new(),
        executed: Vec::new(),
        progress: Vec::new(),
        values: HashMap::new(),
        sigs: HashMap::new(),
    };

    let (catalog, cached) = {
        let mut st = shared.lock();
        st.client_id = item.client_id();
        job.add_message(
            &st,
            "execution_start",
            json!({"prompt_id": job.prompt_id}),
            false,
        );
        let catalog = st.catalog.clone();
        let changed: HashMap<String, Value> = job
            .prompt
            .keys()
            .map(|id| (id.clone(), is_changed(&st, &job.prompt, id)))
            .collect();
        let lookup = |id: &str| changed.get(id).cloned().unwrap_or(Value::Bool(false));
        job.sigs = signatures(&job.prompt, &catalog, &lookup);
        let used: HashSet<&String> = job.sigs.values().collect();
        st.cache.retain(|k, _| used.contains(k));
        let cached: HashSet<String> = job
            .prompt
            .keys()
            .filter(|id| job.sigs.get(*id).is_some_and(|s| st.cache.contains_key(s)))
            .cloned()
            .collect();
        let cached_in_order: Vec<&String> = job
            .prompt
            .keys()
            .filter(|id| cached.contains(*id))
            .collect();
        job.add_message(
            &st,
            "execution_cached",
            json!({"nodes": cached_in_order, "prompt_id": job.prompt_id}),
            false,
        );
        (catalog, cached)
    };

    let prompt = job.prompt.clone();
    let is_cached = |id: &str| cached.contains(id);
    let mut list = ExecutionList::new(&prompt, &catalog, &is_cached);
    for o in &item.outputs {
        list.add_node(o);
    }
    let failure = loop {
        let Some(node) = list.next() else {
            if list.is_empty() {
                break None;
            }
            // Validation rejects cycles, so this only guards against a broken invariant.
            let err = NodeError {
                exc: PyErr::new("graph.DependencyCycleError", "Dependency cycle detected"),
                frames: Vec::new(),
            };
            let node = item.outputs.first().cloned().unwrap_or_default();
            break Some(Failure::Error {
                node,
                err,
                current_inputs: json!([]),
            });
        };
        match execute_node(shared, &mut job, &catalog, &node).await {
            Ok(()) => list.complete(&node),
            Err(f) => break Some(f),
        }
    };
    finish_prompt(shared, &mut job, &item, failure);
}

fn finish_prompt(shared: &Shared, job: &mut Job, item: &QueueItem, failure: Option<Failure>) {
    let mut st = shared.lock();
    let success = failure.is_none();
    match failure {
        None => {
            job.add_message(
                &st,
                "execution_success",
                json!({"prompt_id": job.prompt_id}),
                false,
            );
        }
        Some(Failure::Interrupted { node }) => {
            let data = json!({
                "prompt_id": job.prompt_id,
                "node_id": node,
                "node_type": node_class(&job.prompt, &node),
                "executed": job.executed,
            });
            job.add_message(&st, "execution_interrupted", data, true);
        }
        Some(Failure::Error {
            node,
            err,
            current_inputs,
        }) => {
            let current_outputs: Vec<&String> = job.prompt.keys().collect();
            let data = json!({
                "prompt_id": job.prompt_id,
                "node_id": node,
                "node_type": node_class(&job.prompt, &node),
                "executed": job.executed,
                "exception_message": format!("{}\n", err.exc.message),
                "exception_type": err.exc.type_name,
                "traceback": err.frames,
                "current_inputs": current_inputs,
                "current_outputs": current_outputs,
            });
            job.add_message(&st, "execution_error", data, false);
        }
    }
    let mut outputs = Map::new();
    let mut meta = Map::new();
    for id in job.prompt.keys() {
        let ui = job
            .sigs
            .get(id)
            .and_then(|s| st.cache.get(s))
            .and_then(|e| e.ui.clone());
        if let Some(ui) = ui {
            outputs.insert(id.clone(), ui.output);
            meta.insert(id.clone(), ui.meta);
        }
    }
    st.last_node_id = None;
    let entry = json!({
        "prompt": item.to_json(),
        "outputs": outputs,
        "status": {
            "status_str": if success { "success" } else { "error" },
            "completed": success,
            "messages": job.messages,
        },
        "meta": meta,
    });
    st.queue.finish(entry);
    st.queue_updated();
    st.send_to_client(
        "executing",
        json!({"node": null, "prompt_id": job.prompt_id}),
    );
    tracing::debug!(prompt_id = %job.prompt_id, success, "prompt finished");
}

/// Waits one step delay, returning early when interrupted or when the delay is shortened.
async fn simulate_work(shared: &Shared) {
    let start = Instant::now();
    loop {
        let notified = shared.sleepers.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        if shared.interrupted() {
            return;
        }
        let deadline = start + shared.step_delay();
        if Instant::now() >= deadline {
            tokio::task::yield_now().await;
            return;
        }
        tokio::select! {
            _ = tokio::time::sleep_until(deadline) => return,
            _ = &mut notified => {}
        }
    }
}

/// Resolves a node's inputs (in the order of its `inputs`) from upstream values: computed in
/// this prompt, or cached from an earlier one (ComfyUI's `get_output_cache`).
fn resolve_inputs(job: &mut Job, st: &State, id: &str) -> Vec<(String, Input)> {
    for value in node_inputs(&job.prompt, id).values() {
        if let Some((from, _)) = as_link(value)
            && !job.values.contains_key(from)
            && let Some(entry) = job.sigs.get(from).and_then(|s| st.cache.get(s))
        {
            job.values.insert(from.to_string(), entry.outputs.clone());
        }
    }
    node_inputs(&job.prompt, id)
        .into_iter()
        .filter_map(|(name, value)| match as_link(&value) {
            Some((from, slot)) => {
                let slot = slot.as_u64().unwrap_or(0) as usize;
                let v = job.values.get(from)?.get(slot)?.clone();
                Some((name, Input::Link(v)))
            }
            None => Some((name, Input::Widget(value))),
        })
        .collect()
}

/// ComfyUI's `input_data_all`, formatted like `current_inputs` of an `execution_error`.
fn current_inputs(job: &Job, catalog: &Catalog, id: &str) -> Value {
    let class = node_class(&job.prompt, id);
    let mut out = Map::new();
    for (name, value) in node_inputs(&job.prompt, id) {
        match as_link(&value) {
            Some((from, slot)) => {
                let slot = slot.as_u64().unwrap_or(0) as usize;
                let shown = match job.values.get(from).and_then(|v| v.get(slot)) {
                    Some(v) => json!(v.python_str()),
                    None => Value::Null,
                };
                out.insert(name, json!([shown]));
            }
            None => {
                if catalog.input_spec(class, &name).is_some() {
                    out.insert(name, json!([format_value(&value)]));
                }
            }
        }
    }
    for (name, kind) in catalog.hidden_inputs(class) {
        let shown = match kind.as_str() {
            "PROMPT" => json!(pyval::repr(&Value::Object(job.prompt.clone()))),
            "EXTRA_PNGINFO" => job
                .extra_data
                .get("extra_pnginfo")
                .map(format_value)
                .unwrap_or(Value::Null),
            "UNIQUE_ID" => json!(id),
            "DYNPROMPT" => json!("<comfy_execution.graph.DynamicPrompt object at 0x7f5e3c2a1d50>"),
            _ => Value::Null,
        };
        out.insert(name, json!([shown]));
    }
    Value::Object(out)
}

/// ComfyUI's `format_value`: scalars as they are, anything else as `str()`.
fn format_value(v: &Value) -> Value {
    match v {
        Value::Array(_) | Value::Object(_) => json!(pyval::py_str(v)),
        other => other.clone(),
    }
}

async fn execute_node(
    shared: &Arc<Shared>,
    job: &mut Job,
    catalog: &Catalog,
    id: &str,
) -> Result<(), Failure> {
    let class = node_class(&job.prompt, id).to_string();
    let sig = job.sigs.get(id).cloned().unwrap_or_default();
    let inputs = {
        let mut st = shared.lock();
        if let Some(entry) = st.cache.get(&sig).cloned() {
            let output = entry
                .ui
                .as_ref()
                .map(|u| u.output.clone())
                .unwrap_or(Value::Null);
            let data = json!({"node": id, "display_node": id, "output": output, "prompt_id": job.prompt_id});
            if !shared.drops_event("executed") {
                st.send_to_client("executed", data);
            }
            job.finish_progress(&st, id);
            job.values.insert(id.to_string(), entry.outputs);
            return Ok(());
        }
        job.start_progress(&st, id);
        let inputs = resolve_inputs(job, &st, id);
        if job.has_client {
            st.last_node_id = Some(id.to_string());
            let data = json!({"node": id, "display_node": id, "prompt_id": job.prompt_id});
            st.send_to_client("executing", data);
        }
        inputs
    };
    let fail = |job: &Job, err: NodeError| Failure::Error {
        node: id.to_string(),
        err,
        current_inputs: current_inputs(job, catalog, id),
    };

    // `before_node_execution()`: the interrupt check before the node function runs.
    if shared.interrupted() {
        return Err(Failure::Interrupted {
            node: id.to_string(),
        });
    }
    let injected = lock(&shared.faults).failing_classes.get(&class).cloned();
    if let Some(message) = injected {
        return Err(fail(job, NodeError::injected(&class, &message)));
    }
    simulate_work(shared).await;
    if let Some(steps) = nodes::sampler_steps(&class, &inputs) {
        run_sampler_steps(shared, job, id, &inputs, steps).await?;
    }

    let call = NodeCall {
        class: &class,
        inputs: &inputs,
        catalog,
    };
    let read_input = |dir: Dir, path: &str| shared.lock().files.get(dir, path);
    let result = nodes::run(&call, &read_input).map_err(|e| fail(job, e))?;
    let ui = match &result.save {
        Some(_) => Some(
            save_images(shared, job, &result)
                .await
                .map_err(|e| fail(job, e))?,
        ),
        None => None,
    };

    let mut st = shared.lock();
    let ui_entry = ui.map(|output| UiEntry {
        output,
        meta: json!({"node_id": id, "display_node": id, "parent_node": null, "real_node_id": id}),
    });
    if let Some(u) = &ui_entry {
        let data =
            json!({"node": id, "display_node": id, "output": u.output, "prompt_id": job.prompt_id});
        if !shared.drops_event("executed") {
            st.send_to_client("executed", data);
        }
    }
    let outputs = Arc::new(result.outputs);
    st.cache.insert(
        sig,
        CacheEntry {
            outputs: outputs.clone(),
            ui: ui_entry,
        },
    );
    job.values.insert(id.to_string(), outputs);
    job.finish_progress(&st, id);
    job.executed.push(id.to_string());
    Ok(())
}

async fn run_sampler_steps(
    shared: &Shared,
    job: &mut Job,
    id: &str,
    inputs: &[(String, Input)],
    steps: u32,
) -> Result<(), Failure> {
    let latent = inputs.iter().find_map(|(n, i)| match i {
        Input::Link(v) if n == "latent_image" => v.img().cloned(),
        _ => None,
    });
    for step in 1..=steps {
        simulate_work(shared).await;
        // The progress hook checks the interrupt flag before reporting each step.
        if shared.interrupted() {
            return Err(Failure::Interrupted {
                node: id.to_string(),
            });
        }
        let preview = if shared.preview_images {
            latent.as_ref().and_then(|l| preview_png(l, step))
        } else {
            None
        };
        let st = shared.lock();
        job.update_progress(&st, id, step, steps);
        let sid = st.client_sid();
        let modern = job.has_client && st.hub.supports_preview_metadata(sid.as_deref());
        if let (Some(png), true) = (&preview, modern) {
            let meta = json!({
                "node_id": id, "prompt_id": job.prompt_id, "display_node_id": id,
                "parent_node_id": null, "real_node_id": id, "image_type": "image/png"
            });
            let meta = pyjson::dumps(&meta);
            let mut payload = (meta.len() as u32).to_be_bytes().to_vec();
            payload.extend_from_slice(meta.as_bytes());
            payload.extend_from_slice(png);
            send_binary(&st, job, PREVIEW_IMAGE_WITH_METADATA, &payload);
        }
        let data = json!({"value": step, "max": steps, "prompt_id": job.prompt_id, "node": id});
        st.send_to_client_or_all("progress", data);
        if let (Some(png), false) = (&preview, modern) {
            let mut payload = PREVIEW_TYPE_PNG.to_be_bytes().to_vec();
            payload.extend_from_slice(png);
            send_binary(&st, job, PREVIEW_IMAGE, &payload);
        }
    }
    Ok(())
}

fn send_binary(st: &State, job: &Job, event: u32, payload: &[u8]) {
    if job.has_client {
        let sid = st.client_sid().unwrap_or_else(|| "\u{0}".to_string());
        st.hub.send_bytes(event, payload, Some(&sid));
    } else {
        st.hub.send_bytes(event, payload, None);
    }
}

/// A small PNG preview of a sampler step (latent resolution, like `latent2rgb`).
fn preview_png(latent: &Img, step: u32) -> Option<Vec<u8>> {
    let seed = u64::from(step).wrapping_mul(0x9e37_79b9);
    let img = Img::pattern(
        (latent.width / 8).max(1),
        (latent.height / 8).max(1),
        1,
        seed,
    );
    img.encode_png(0, &[]).ok().map(|b| b.to_vec())
}

/// Names, renders and stores the files of an output node; returns its UI output.
async fn save_images(shared: &Shared, job: &Job, result: &NodeResult) -> Result<Value, NodeError> {
    let Some(save) = &result.save else {
        return Ok(json!({"images": []}));
    };
    let images = &save.images;
    let (folder, base) = nodes::save_location(&save.prefix, images.width, images.height)?;
    let first = shared
        .lock()
        .files
        .reserve_counters(save.dir, &folder, &base, images.batch);
    let mut texts = vec![(
        "prompt".to_string(),
        pyjson::dumps(&Value::Object(job.prompt.clone())),
    )];
    if let Some(Value::Object(extra)) = job.extra_data.get("extra_pnginfo") {
        texts.extend(extra.iter().map(|(k, v)| (k.clone(), pyjson::dumps(v))));
    }
    texts.push(("Software".to_string(), SOFTWARE_TAG.to_string()));
    let img = images.clone();
    let encoded = tokio::task::spawn_blocking(move || {
        (0..img.batch)
            .map(|b| img.encode_png(b, &texts))
            .collect::<Result<Vec<_>, _>>()
    })
    .await
    .map_err(|e| PyErr::new("RuntimeError", format!("image encoding task failed: {e}")))
    .and_then(|r| r.map_err(|e| PyErr::new("OSError", e.to_string())))
    .map_err(|exc| NodeError {
        exc,
        frames: crate::traceback::execution_frames(),
    })?;
    let mut entries = Vec::new();
    let mut st = shared.lock();
    for (b, bytes) in encoded.into_iter().enumerate() {
        let name = format!(
            "{}_{:05}_.png",
            base.replace("%batch_num%", &b.to_string()),
            first + b as u32
        );
        let path = if folder.is_empty() {
            name.clone()
        } else {
            format!("{folder}/{name}")
        };
        st.files.put(save.dir, path, bytes);
        entries.push(json!({"filename": name, "subfolder": folder, "type": save.dir.as_type()}));
    }
    Ok(json!({"images": entries}))
}
