//! Execution order and cache keys, as ComfyUI 0.3.75 computes them.
//!
//! - [`ExecutionList`] is ComfyUI's topological "dissolve": starting from the output nodes it
//!   walks links upstream (skipping cached nodes), then repeatedly picks a ready node with the
//!   same UX heuristic (output nodes first, then nodes one or two links before an output,
//!   otherwise the first ready node in discovery order). This reproduces the recorded order
//!   `4, 5, 7, 6, 3, 8, 9` of the text-to-image graph.
//! - [`signatures`] gives each node its input signature (class, inputs, and the signatures of
//!   all ancestors), the key of ComfyUI's classic output cache: an identical sub-graph is
//!   cached even if its node ids differ.
//!
//! Invariant: graphs reaching here passed validation, so every link points at an existing
//! node; anything else is treated as "not a link" rather than a panic.

use serde_json::{Map, Value, json};
use std::collections::HashMap;

use crate::catalog::Catalog;

/// ComfyUI's `is_link`: a two-element list `[node_id: str, slot: int|float]`.
pub(crate) fn as_link(v: &Value) -> Option<(&str, &Value)> {
    let items = v.as_array()?;
    if items.len() != 2 || !items[1].is_number() {
        return None;
    }
    Some((items[0].as_str()?, &items[1]))
}

/// The `inputs` object of a node (empty if absent or not an object).
pub(crate) fn node_inputs(prompt: &Map<String, Value>, id: &str) -> Map<String, Value> {
    prompt
        .get(id)
        .and_then(|n| n.get("inputs"))
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default()
}

/// The `class_type` of a node.
pub(crate) fn node_class<'a>(prompt: &'a Map<String, Value>, id: &str) -> &'a str {
    prompt
        .get(id)
        .and_then(|n| n.get("class_type"))
        .and_then(Value::as_str)
        .unwrap_or_default()
}

/// The set of nodes still to run, with their dependencies.
pub(crate) struct ExecutionList<'a> {
    prompt: &'a Map<String, Value>,
    catalog: &'a Catalog,
    is_cached: &'a (dyn Fn(&str) -> bool + Sync),
    /// Pending nodes in discovery order (ComfyUI's `pendingNodes` dict).
    pending: Vec<String>,
    block_count: HashMap<String, usize>,
    /// For each pending node, the nodes it blocks (insertion ordered).
    blocking: HashMap<String, Vec<String>>,
}

impl<'a> ExecutionList<'a> {
    /// An empty list over `prompt`; `is_cached` tells which nodes need not run.
    pub fn new(
        prompt: &'a Map<String, Value>,
        catalog: &'a Catalog,
        is_cached: &'a (dyn Fn(&str) -> bool + Sync),
    ) -> Self {
        Self {
            prompt,
            catalog,
            is_cached,
            pending: Vec::new(),
            block_count: HashMap::new(),
            blocking: HashMap::new(),
        }
    }

    /// Adds a node and, transitively, every uncached node it depends on.
    pub fn add_node(&mut self, start: &str) {
        let mut stack = vec![start.to_string()];
        let mut links: Vec<(String, String)> = Vec::new();
        while let Some(id) = stack.pop() {
            if self.pending.contains(&id) {
                continue;
            }
            self.pending.push(id.clone());
            self.block_count.insert(id.clone(), 0);
            self.blocking.insert(id.clone(), Vec::new());
            for value in node_inputs(self.prompt, &id).values() {
                if let Some((from, _)) = as_link(value)
                    && self.prompt.contains_key(from)
                    && !(self.is_cached)(from)
                {
                    stack.push(from.to_string());
                    links.push((from.to_string(), id.clone()));
                }
            }
        }
        for (from, to) in links {
            self.add_strong_link(&from, &to);
        }
    }

    fn add_strong_link(&mut self, from: &str, to: &str) {
        if (self.is_cached)(from) {
            return;
        }
        self.add_node(from);
        let blocked = self.blocking.entry(from.to_string()).or_default();
        if !blocked.iter().any(|b| b == to) {
            blocked.push(to.to_string());
            *self.block_count.entry(to.to_string()).or_default() += 1;
        }
    }

    /// Whether every node has run.
    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    /// The next node to run, or `None` when nothing is ready (empty, or a cycle).
    pub fn next(&self) -> Option<String> {
        let ready: Vec<&String> = self
            .pending
            .iter()
            .filter(|id| self.block_count.get(*id).copied().unwrap_or(0) == 0)
            .collect();
        let is_output = |id: &str| self.catalog.is_output_node(node_class(self.prompt, id));
        let blocks = |id: &str| self.blocking.get(id).cloned().unwrap_or_default();
        if let Some(id) = ready.iter().find(|id| is_output(id)) {
            return Some((*id).clone());
        }
        if let Some(id) = ready
            .iter()
            .find(|id| blocks(id).iter().any(|b| is_output(b)))
        {
            return Some((*id).clone());
        }
        if let Some(id) = ready.iter().find(|id| {
            blocks(id)
                .iter()
                .any(|b| blocks(b).iter().any(|c| is_output(c)))
        }) {
            return Some((*id).clone());
        }
        ready.first().map(|id| (*id).clone())
    }

    /// Marks a node as done, unblocking the nodes waiting for it.
    pub fn complete(&mut self, id: &str) {
        self.pending.retain(|p| p != id);
        for blocked in self.blocking.remove(id).unwrap_or_default() {
            if let Some(c) = self.block_count.get_mut(&blocked) {
                *c = c.saturating_sub(1);
            }
        }
    }
}

/// The cache signature of every node of `prompt`, as canonical JSON text.
///
/// `is_changed(node_id)` supplies the `IS_CHANGED` value (e.g. a file hash for `LoadImage`,
/// `false` for nodes without one). Classes with a hidden `UNIQUE_ID` include their node id.
pub(crate) fn signatures(
    prompt: &Map<String, Value>,
    catalog: &Catalog,
    is_changed: &dyn Fn(&str) -> Value,
) -> HashMap<String, String> {
    prompt
        .keys()
        .map(|id| {
            let mut ancestors: Vec<String> = Vec::new();
            let mut order: HashMap<String, usize> = HashMap::new();
            ordered_ancestry(prompt, id, &mut ancestors, &mut order);
            let mut sig = vec![immediate_signature(prompt, catalog, id, &order, is_changed)];
            for a in &ancestors {
                sig.push(immediate_signature(prompt, catalog, a, &order, is_changed));
            }
            (id.clone(), Value::Array(sig).to_string())
        })
        .collect()
}

fn ordered_ancestry(
    prompt: &Map<String, Value>,
    id: &str,
    ancestors: &mut Vec<String>,
    order: &mut HashMap<String, usize>,
) {
    if !prompt.contains_key(id) {
        return;
    }
    let inputs = node_inputs(prompt, id);
    let mut keys: Vec<&String> = inputs.keys().collect();
    keys.sort();
    for key in keys {
        if let Some((from, _)) = as_link(&inputs[key])
            && !order.contains_key(from)
        {
            ancestors.push(from.to_string());
            order.insert(from.to_string(), ancestors.len() - 1);
            ordered_ancestry(prompt, from, ancestors, order);
        }
    }
}

fn immediate_signature(
    prompt: &Map<String, Value>,
    catalog: &Catalog,
    id: &str,
    order: &HashMap<String, usize>,
    is_changed: &dyn Fn(&str) -> Value,
) -> Value {
    if !prompt.contains_key(id) {
        return json!("NaN");
    }
    let class = node_class(prompt, id);
    let mut sig = vec![json!(class), is_changed(id)];
    if catalog.wants_unique_id(class) {
        sig.push(json!(id));
    }
    let inputs = node_inputs(prompt, id);
    let mut keys: Vec<&String> = inputs.keys().collect();
    keys.sort();
    for key in keys {
        let value = &inputs[key];
        match as_link(value) {
            Some((from, slot)) => {
                let index = order.get(from).copied();
                sig.push(json!([key, ["ANCESTOR", index, slot]]));
            }
            None => sig.push(json!([key, value])),
        }
    }
    Value::Array(sig)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t2i() -> Map<String, Value> {
        json!({
            "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "tiny-random-sd15.safetensors"}},
            "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "a", "clip": ["4", 1]}},
            "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "b", "clip": ["4", 1]}},
            "5": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}},
            "3": {"class_type": "KSampler", "inputs": {"seed": 42, "steps": 2, "cfg": 7.0, "sampler_name": "euler",
                  "scheduler": "normal", "denoise": 1.0, "model": ["4", 0], "positive": ["6", 0],
                  "negative": ["7", 0], "latent_image": ["5", 0]}},
            "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
            "9": {"class_type": "SaveImage", "inputs": {"images": ["8", 0], "filename_prefix": "x"}}
        })
        .as_object()
        .cloned()
        .unwrap()
    }

    fn order(prompt: &Map<String, Value>, cached: &[&str]) -> Vec<String> {
        let catalog = Catalog::bundled().unwrap();
        let is_cached = |id: &str| cached.contains(&id);
        let mut list = ExecutionList::new(prompt, &catalog, &is_cached);
        list.add_node("9");
        let mut out = Vec::new();
        while let Some(id) = list.next() {
            list.complete(&id);
            out.push(id);
        }
        assert!(list.is_empty());
        out
    }

    #[test]
    fn text_to_image_runs_in_the_recorded_order() {
        assert_eq!(order(&t2i(), &[]), ["4", "5", "7", "6", "3", "8", "9"]);
        assert_eq!(order(&t2i(), &["4", "6", "7", "5"]), ["3", "8", "9"]);
    }

    #[test]
    fn signatures_ignore_ids_but_see_changes() {
        let catalog = Catalog::bundled().unwrap();
        let no_change = |_: &str| Value::Bool(false);
        let a = signatures(&t2i(), &catalog, &no_change);
        let mut changed = t2i();
        changed["3"]["inputs"]["seed"] = json!(43);
        let b = signatures(&changed, &catalog, &no_change);
        assert_eq!(a["4"], b["4"]);
        assert_eq!(a["5"], b["5"]);
        assert_ne!(a["3"], b["3"]);
        assert_ne!(a["9"], b["9"]);
        assert_ne!(a["6"], a["7"]);
    }
}
