//! Requests kept so that a job can move to another member: its graph, its post-processor and
//! its input images, under one byte budget for the whole server
//! (`COMFYUI_MCP_FARM_RETAIN_MB`).
//!
//! Lifecycle: kept when the job is submitted on a farm (if it fits the budget), released when
//! the job ends, or when it starts running with no retries left (it can then only fail with
//! its member, never move). A job that did not fit is not movable: if its member stops
//! answering it fails, naming the budget. Invariant: the bytes accounted never exceed the
//! budget, and every entry's bytes are returned when it leaves.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use comfyui::{JobRequest, JobState};

use super::Farm;
use crate::inputs::PreparedInputs;

/// What a job needs to be submitted again.
#[derive(Clone)]
pub struct Entry {
    /// The request as first submitted (graph with its seed, origin, parameters, processor).
    pub request: JobRequest,
    /// The input images it uploaded (uploaded again to a new member).
    pub inputs: PreparedInputs,
    /// How many more times it may be resubmitted after its member died while running it.
    pub retries_left: u32,
    /// The member it is on (an index into the farm's members).
    pub member: usize,
    /// What it counts against the budget.
    pub bytes: u64,
}

/// The retained entries and their byte budget.
pub struct Retained {
    budget: u64,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    used: u64,
    entries: HashMap<String, Entry>,
}

/// The bytes a request holds: its graph as compact JSON plus its input files.
pub fn request_bytes(request: &JobRequest, inputs: &PreparedInputs) -> u64 {
    struct Count(u64);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len() as u64;
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    let _ = serde_json::to_writer(&mut count, &request.graph);
    count.0 + inputs.iter().map(|i| i.bytes.len() as u64).sum::<u64>()
}

impl Retained {
    /// An empty set with `budget` bytes.
    pub fn new(budget: u64) -> Self {
        Self {
            budget,
            state: Mutex::new(State::default()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Keeps `entry` for `prompt_id` if it fits the budget (replacing an earlier entry of
    /// that id); false when it does not fit.
    pub fn keep(&self, prompt_id: &str, entry: Entry) -> bool {
        let mut state = self.lock();
        let old = state.entries.get(prompt_id).map_or(0, |e| e.bytes);
        let used = state.used - old;
        if used.saturating_add(entry.bytes) > self.budget {
            return false;
        }
        state.used = used + entry.bytes;
        state.entries.insert(prompt_id.to_owned(), entry);
        true
    }

    /// A copy of the entry for `prompt_id`.
    pub fn get(&self, prompt_id: &str) -> Option<Entry> {
        self.lock().entries.get(prompt_id).cloned()
    }

    /// Drops the entry for `prompt_id`, if it is (still) on `member` (`None`: whatever its
    /// member).
    pub fn release(&self, prompt_id: &str, member: Option<usize>) {
        let mut state = self.lock();
        let matches = state
            .entries
            .get(prompt_id)
            .is_some_and(|e| member.is_none_or(|m| e.member == m));
        if matches && let Some(entry) = state.entries.remove(prompt_id) {
            state.used -= entry.bytes;
        }
    }

    /// Drops the entry for `prompt_id` whatever its member (e.g. on cancel).
    pub fn forget(&self, prompt_id: &str) {
        self.release(prompt_id, None);
    }

    /// Bytes held now.
    pub fn used(&self) -> u64 {
        self.lock().used
    }

    /// The budget in bytes.
    pub fn budget(&self) -> u64 {
        self.budget
    }

    /// Entries held now.
    pub fn len(&self) -> usize {
        self.lock().entries.len()
    }

    /// Whether none is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Releases the entry of `prompt_id` once its job on `member` can no longer move: ended, or
/// running with no retries left (a moved job's feed closes and its new member's watch takes
/// over: the release only applies while the entry is still on `member`).
pub fn watch_release(farm: &Arc<Farm>, prompt_id: &str, member: usize, retries_left: u32) {
    let Some(mut job) = farm.members()[member].comfy.watch(prompt_id) else {
        farm.retained().release(prompt_id, Some(member));
        return;
    };
    let farm = Arc::downgrade(farm);
    let id = prompt_id.to_owned();
    tokio::spawn(async move {
        let _ = job
            .wait_for(|s| {
                s.state.is_terminal() || (s.state == JobState::Running && retries_left == 0)
            })
            .await;
        if let Some(farm) = farm.upgrade() {
            farm.retained().release(&id, Some(member));
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn entry(member: usize, bytes: u64) -> Entry {
        Entry {
            request: JobRequest {
                graph: json!({}),
                origin: comfyui::JobOrigin::InlineWorkflow {
                    sha256: String::new(),
                },
                parameters: json!({}),
                metadata: json!({}),
                postprocess: None,
            },
            inputs: PreparedInputs::default(),
            retries_left: 0,
            member,
            bytes,
        }
    }

    #[test]
    fn the_budget_holds_at_its_limit_and_bytes_come_back() {
        let kept = Retained::new(100);
        assert!(kept.keep("a", entry(0, 60)));
        assert!(kept.keep("b", entry(0, 40)), "exactly at the budget");
        assert!(!kept.keep("c", entry(0, 1)), "one byte over");
        assert_eq!(kept.used(), 100);
        kept.release("a", Some(1));
        assert_eq!(kept.used(), 100, "a is on member 0, not 1");
        kept.release("a", Some(0));
        assert_eq!((kept.used(), kept.len()), (40, 1));
        assert!(
            kept.keep("b", entry(1, 90)),
            "replacing an entry frees its bytes first"
        );
        assert_eq!(kept.used(), 90);
        kept.forget("b");
        assert!(kept.is_empty() && kept.used() == 0);
    }
}
