//! The prompt queue and history (ComfyUI's `PromptQueue`).
//!
//! Pending prompts live in a binary heap managed exactly like Python's `heapq`, ordered by
//! `(number, prompt_id)`; `GET /queue` shows the raw heap array, which is *not* run order
//! (e.g. `[-30, 26, 28, 29, 27]`). At most one prompt runs at a time. History keeps finished
//! prompts in insertion order, capped at [`MAX_HISTORY`] (oldest dropped first).

use serde_json::{Map, Value, json};
use std::cmp::Ordering;

use crate::pyval::PyNum;

/// ComfyUI's `MAXIMUM_HISTORY_SIZE`.
pub(crate) const MAX_HISTORY: usize = 10_000;

/// A queued prompt: `(number, prompt_id, prompt, extra_data, outputs_to_execute)` plus the
/// sensitive extra data kept out of listings.
#[derive(Debug, Clone)]
pub(crate) struct QueueItem {
    /// Queue priority (negative for `front`, float when given explicitly).
    pub number: PyNum,
    /// The prompt id.
    pub prompt_id: String,
    /// The validated (converted) prompt.
    pub prompt: Value,
    /// `extra_data` with `client_id` and `create_time`.
    pub extra_data: Map<String, Value>,
    /// Output node ids to execute.
    pub outputs: Vec<String>,
    /// Sensitive `extra_data` keys, never listed.
    pub sensitive: Map<String, Value>,
}

impl QueueItem {
    /// The five-element list `GET /queue` and history show.
    pub fn to_json(&self) -> Value {
        json!([
            self.number.to_value(),
            self.prompt_id,
            self.prompt,
            self.extra_data,
            self.outputs
        ])
    }

    /// The `client_id` the prompt was submitted with, if any.
    pub fn client_id(&self) -> Option<Value> {
        self.extra_data.get("client_id").cloned()
    }

    fn lt(&self, other: &QueueItem) -> bool {
        match self.number.cmp(other.number) {
            Some(Ordering::Less) => true,
            Some(Ordering::Equal) => self.prompt_id < other.prompt_id,
            _ => false,
        }
    }
}

/// Queue plus history.
#[derive(Debug, Default)]
pub(crate) struct PromptQueue {
    heap: Vec<QueueItem>,
    running: Option<QueueItem>,
    history: Map<String, Value>,
}

impl PromptQueue {
    /// `heapq.heappush`.
    pub fn push(&mut self, item: QueueItem) {
        self.heap.push(item);
        let last = self.heap.len() - 1;
        self.sift_down(0, last);
    }

    /// `heapq.heappop` into the running slot; returns a copy of the item now running.
    pub fn start_next(&mut self) -> Option<QueueItem> {
        if self.running.is_some() || self.heap.is_empty() {
            return None;
        }
        let last = self.heap.pop()?;
        let item = if self.heap.is_empty() {
            last
        } else {
            let top = std::mem::replace(&mut self.heap[0], last);
            self.sift_up(0);
            top
        };
        self.running = Some(item.clone());
        Some(item)
    }

    /// The running prompt, if any.
    pub fn running(&self) -> Option<&QueueItem> {
        self.running.as_ref()
    }

    /// Ends the running prompt, storing its history entry.
    pub fn finish(&mut self, entry: Value) {
        let Some(item) = self.running.take() else {
            return;
        };
        if self.history.len() > MAX_HISTORY
            && let Some(oldest) = self.history.keys().next().cloned()
        {
            self.history.shift_remove(&oldest);
        }
        self.history.insert(item.prompt_id, entry);
    }

    /// Running plus pending (`queue_remaining`).
    pub fn remaining(&self) -> usize {
        self.heap.len() + usize::from(self.running.is_some())
    }

    /// `{"queue_running": [...], "queue_pending": [...]}` as `GET /queue` shows it.
    pub fn snapshot(&self) -> Value {
        let running: Vec<Value> = self.running.iter().map(QueueItem::to_json).collect();
        let pending: Vec<Value> = self.heap.iter().map(QueueItem::to_json).collect();
        json!({"queue_running": running, "queue_pending": pending})
    }

    /// Removes the first pending item with this id (re-heapifying); returns whether one was.
    pub fn delete(&mut self, prompt_id: &Value) -> bool {
        let Some(pos) = self
            .heap
            .iter()
            .position(|i| prompt_id.as_str() == Some(i.prompt_id.as_str()))
        else {
            return false;
        };
        self.heap.remove(pos);
        self.heapify();
        true
    }

    /// Removes every pending item (the running one continues).
    pub fn wipe(&mut self) {
        self.heap.clear();
    }

    /// Number of pending items.
    pub fn pending_len(&self) -> usize {
        self.heap.len()
    }

    /// Forgets everything (a restart).
    pub fn reset(&mut self) {
        *self = PromptQueue::default();
    }

    /// `GET /history/{id}`: `{id: entry}` or `{}`.
    pub fn history_entry(&self, prompt_id: &str) -> Value {
        let mut out = Map::new();
        if let Some(e) = self.history.get(prompt_id) {
            out.insert(prompt_id.to_string(), e.clone());
        }
        Value::Object(out)
    }

    /// `GET /history` with ComfyUI's paging rules: no offset and a `max_items` means the
    /// newest `max_items`; otherwise from `offset` (oldest = 0), at most `max_items`.
    pub fn history_page(&self, max_items: Option<i128>, offset: Option<i128>) -> Value {
        let mut offset = offset.unwrap_or(-1);
        if offset < 0
            && let Some(m) = max_items
        {
            offset = self.history.len() as i128 - m;
        }
        let mut out = Map::new();
        for (i, (k, v)) in self.history.iter().enumerate() {
            if i as i128 >= offset {
                out.insert(k.clone(), v.clone());
                if max_items.is_some_and(|m| out.len() as i128 >= m) {
                    break;
                }
            }
        }
        Value::Object(out)
    }

    /// Deletes one history entry (silently if unknown).
    pub fn delete_history(&mut self, prompt_id: &str) {
        self.history.shift_remove(prompt_id);
    }

    /// Deletes all history.
    pub fn wipe_history(&mut self) {
        self.history.clear();
    }

    fn sift_down(&mut self, start: usize, mut pos: usize) {
        while pos > start {
            let parent = (pos - 1) >> 1;
            if self.heap[pos].lt(&self.heap[parent]) {
                self.heap.swap(pos, parent);
                pos = parent;
            } else {
                break;
            }
        }
    }

    fn sift_up(&mut self, mut pos: usize) {
        let end = self.heap.len();
        let start = pos;
        let mut child = 2 * pos + 1;
        while child < end {
            let right = child + 1;
            if right < end && !self.heap[child].lt(&self.heap[right]) {
                child = right;
            }
            self.heap.swap(pos, child);
            pos = child;
            child = 2 * pos + 1;
        }
        self.sift_down(start, pos);
    }

    fn heapify(&mut self) {
        for i in (0..self.heap.len() / 2).rev() {
            self.sift_up(i);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(n: i128, id: &str) -> QueueItem {
        QueueItem {
            number: PyNum::Int(n),
            prompt_id: id.into(),
            prompt: json!({}),
            extra_data: Map::new(),
            outputs: vec![],
            sensitive: Map::new(),
        }
    }

    fn numbers(q: &PromptQueue) -> Vec<Value> {
        q.snapshot()["queue_pending"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i[0].clone())
            .collect()
    }

    #[test]
    fn pending_is_the_raw_heap_like_python() {
        let mut q = PromptQueue::default();
        q.push(item(25, "a"));
        assert_eq!(q.start_next().unwrap().prompt_id, "a");
        for (n, id) in [(26, "b"), (27, "c"), (28, "d"), (29, "e"), (-30, "f")] {
            q.push(item(n, id));
        }
        assert_eq!(
            numbers(&q),
            [json!(-30), json!(26), json!(28), json!(29), json!(27)]
        );
        assert!(q.delete(&json!("c")));
        assert_eq!(q.remaining(), 5);
        q.finish(json!({"x": 1}));
        assert_eq!(q.start_next().unwrap().prompt_id, "f");
        assert_eq!(q.start_next().map(|i| i.prompt_id), None);
        q.finish(json!({}));
        let order: Vec<String> = std::iter::from_fn(|| {
            let i = q.start_next()?;
            q.finish(json!({}));
            Some(i.prompt_id)
        })
        .collect();
        assert_eq!(order, ["b", "d", "e"]);
    }

    #[test]
    fn history_paging_follows_comfyui() {
        let mut q = PromptQueue::default();
        for id in ["a", "b", "c"] {
            q.push(item(0, id));
            q.start_next();
            q.finish(json!({}));
        }
        let keys = |v: Value| v.as_object().unwrap().keys().cloned().collect::<Vec<_>>();
        assert_eq!(keys(q.history_page(None, None)), ["a", "b", "c"]);
        assert_eq!(keys(q.history_page(Some(2), None)), ["b", "c"]);
        assert_eq!(keys(q.history_page(Some(2), Some(0))), ["a", "b"]);
        assert_eq!(keys(q.history_page(Some(2), Some(1))), ["b", "c"]);
        assert_eq!(keys(q.history_page(None, Some(2))), ["c"]);
        q.delete_history("b");
        assert_eq!(keys(q.history_page(None, None)), ["a", "c"]);
        assert_eq!(q.history_entry("zz"), json!({}));
    }
}
