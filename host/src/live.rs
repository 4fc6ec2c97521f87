//! What each ComfyUI backend of the farm offers, its node catalog and model files, as last
//! fetched: what packs are self-tested against, and what callers that must not wait on a
//! backend (resource listings) read.
//!
//! Invariants:
//! * one entry per farm member (by index, at most the farm's size), replaced only by a
//!   newer fetch of that member; a member that stops answering keeps its last entry, so a
//!   pack is judged by what the farm can run, not by which member happens to be up;
//! * readers get one consistent snapshot of every entry (an `ArcSwap`);
//! * [`LiveComfy::record`] says whether anything changed, by snapshot identity: backends
//!   cache their catalogs and hand out the same `Arc` until they fetch again, so callers
//!   self-test again only on news.
//!
//! Lifecycle: empty at start (self-tests use the stock catalog); filled as members answer
//! (`serve` records each member when it (re)connects, and every call records the views it
//! fetched); never emptied.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arc_swap::ArcSwap;
use comfyui::ModelSnapshot;
use comfyui::nodes::NodeCatalog;

use crate::farm::route::MemberView;

/// The farm's backends as last reached. Shared by calls and self-tests.
#[derive(Default)]
pub struct LiveComfy {
    known: ArcSwap<Known>,
    /// Bumped after every change of `known`: a self-test that read it before reading the
    /// catalogs knows, by reading it again, whether they changed while it ran.
    generation: AtomicU64,
}

/// One snapshot of every member's entry.
#[derive(Default, Clone)]
struct Known {
    members: Vec<Option<Entry>>,
    /// Every member's model files together (see [`ModelSnapshot::merged`]).
    models: Option<Arc<ModelSnapshot>>,
}

/// What one member answered last.
#[derive(Clone)]
struct Entry {
    name: String,
    nodes: Option<Arc<NodeCatalog>>,
    models: Option<Arc<ModelSnapshot>>,
}

/// A member whose node catalog and model files are both known.
#[derive(Clone)]
pub struct LiveBackend {
    /// Its name (as the job status names it).
    pub name: String,
    /// Its catalog and model files.
    pub view: MemberView,
}

/// Whether recording `new` (`None`: nothing) over `old` changes nothing.
fn same<T>(old: Option<&Arc<T>>, new: Option<&Arc<T>>) -> bool {
    new.is_none_or(|new| old.is_some_and(|old| Arc::ptr_eq(old, new)))
}

impl LiveComfy {
    /// Records what member `member` (named `name`) answered: its node catalog and/or its
    /// model files (`None` keeps what was known). Returns whether anything changed.
    pub fn record(
        &self,
        member: usize,
        name: &str,
        nodes: Option<&Arc<NodeCatalog>>,
        models: Option<&Arc<ModelSnapshot>>,
    ) -> bool {
        let known = self.known.load();
        let entry = known.members.get(member).and_then(Option::as_ref);
        if entry.is_some_and(|e| {
            e.name == name && same(e.nodes.as_ref(), nodes) && same(e.models.as_ref(), models)
        }) {
            return false;
        }
        drop(known);
        self.known.rcu(|known| {
            let mut next = Known::clone(known);
            if next.members.len() <= member {
                next.members.resize(member + 1, None);
            }
            let entry = next.members[member].get_or_insert_with(|| Entry {
                name: name.to_owned(),
                nodes: None,
                models: None,
            });
            name.clone_into(&mut entry.name);
            if let Some(nodes) = nodes {
                entry.nodes = Some(nodes.clone());
            }
            if let Some(models) = models {
                entry.models = Some(models.clone());
            }
            let all: Vec<&Arc<ModelSnapshot>> = next
                .members
                .iter()
                .flatten()
                .filter_map(|e| e.models.as_ref())
                .collect();
            next.models = (!all.is_empty()).then(|| ModelSnapshot::merged(all));
            next
        });
        self.generation.fetch_add(1, Ordering::SeqCst);
        true
    }

    /// How many changes were recorded so far. Read it before the catalogs: if it is the
    /// same afterwards, nothing changed in between.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    /// The members whose catalog and model files are both known, in member order.
    pub fn backends(&self) -> Vec<LiveBackend> {
        self.known
            .load()
            .members
            .iter()
            .enumerate()
            .filter_map(|(member, entry)| {
                let entry = entry.as_ref()?;
                Some(LiveBackend {
                    name: entry.name.clone(),
                    view: MemberView {
                        member,
                        nodes: entry.nodes.clone()?,
                        models: entry.models.clone()?,
                    },
                })
            })
            .collect()
    }

    /// Every known member's model files together; `None` before any member answered.
    pub fn models(&self) -> Option<Arc<ModelSnapshot>> {
        self.known.load().models.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn models(files: &[&str]) -> Arc<ModelSnapshot> {
        Arc::new(ModelSnapshot::from_lists(&[("checkpoints", files)]))
    }

    #[test]
    fn members_are_kept_apart_and_their_models_merged() {
        let live = LiveComfy::default();
        assert!(live.backends().is_empty() && live.models().is_none());
        let nodes = NodeCatalog::bundled();
        let (a, b) = (models(&["x", "y"]), models(&["y", "z"]));
        assert!(live.record(1, "b", Some(&nodes), Some(&b)));
        assert!(live.record(0, "a", None, Some(&a)));
        // `a` has no catalog yet: only `b` can be checked against.
        let names: Vec<String> = live.backends().into_iter().map(|b| b.name).collect();
        assert_eq!(names, ["b"]);
        assert_eq!(
            live.models().unwrap().folders["checkpoints"],
            ["x", "y", "z"]
        );
        assert!(live.record(0, "a", Some(&nodes), None));
        let backends = live.backends();
        assert_eq!(
            backends
                .iter()
                .map(|b| (b.name.as_str(), b.view.member))
                .collect::<Vec<_>>(),
            [("a", 0), ("b", 1)]
        );
        assert!(
            Arc::ptr_eq(&backends[0].view.models, &a),
            "a keeps its files"
        );
    }

    #[test]
    fn the_same_snapshots_again_are_no_news_and_a_new_fetch_is() {
        let live = LiveComfy::default();
        let nodes = NodeCatalog::bundled();
        let a = models(&["x"]);
        assert!(live.record(0, "a", Some(&nodes), Some(&a)));
        let generation = live.generation();
        assert!(!live.record(0, "a", Some(&nodes), Some(&a)));
        assert!(!live.record(0, "a", None, None));
        assert_eq!(live.generation(), generation, "no news");
        let refetched = models(&["x"]);
        assert!(live.record(0, "a", None, Some(&refetched)));
        assert_eq!(live.generation(), generation + 1);
        // One member: its own snapshot, not a copy.
        assert!(Arc::ptr_eq(&live.models().unwrap(), &refetched));
    }
}
