//! Which templates can run now, and on which backends: for `list_workflows`.
//!
//! A template runs on a backend when the graph it builds from its self-test arguments (the
//! required parameters at their simplest, placeholder uploads for images), seeing that
//! backend alone (so it picks that backend's default checkpoint), passes the node policy and
//! the graph check against that backend's catalog.
//!
//! Lifecycle and budget: the answer is computed once per (catalog snapshot, backends'
//! catalogs) and cached; a catalog swap (hot reload) or a reconnect (new `object_info`) makes
//! the next listing compute it again. One computation is one pack call and one graph check
//! per template and backend (the calls through the admission, as any call; the checks on the
//! graph check's pool).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use crate::admission::{Admission, Wait};
use crate::catalog::{Catalog, TemplateEntry};
use crate::farm::Farm;
use crate::farm::route::{FarmView, MemberView};
use crate::graph_gate::GraphGate;
use crate::loader::admission_key;

/// Template id → names of the backends it can run on now (empty: none).
pub type Runnable = BTreeMap<String, Vec<String>>;

/// Identifies what an answer was computed from (addresses of the shared snapshots).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Key {
    catalog: usize,
    views: Vec<(usize, usize, usize)>,
}

impl Key {
    fn of(catalog: &Arc<Catalog>, views: &[MemberView]) -> Self {
        Key {
            catalog: Arc::as_ptr(catalog) as usize,
            views: views
                .iter()
                .map(|v| {
                    (
                        v.member,
                        Arc::as_ptr(&v.nodes) as usize,
                        Arc::as_ptr(&v.models) as usize,
                    )
                })
                .collect(),
        }
    }
}

/// The last answer and what it was computed from.
#[derive(Default)]
pub struct RunnableCache {
    last: Mutex<Option<(Key, Arc<Runnable>)>>,
}

impl RunnableCache {
    fn get(&self, key: &Key) -> Option<Arc<Runnable>> {
        let last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        last.as_ref()
            .filter(|(k, _)| k == key)
            .map(|(_, answer)| answer.clone())
    }

    fn put(&self, key: Key, answer: Arc<Runnable>) {
        *self.last.lock().unwrap_or_else(|e| e.into_inner()) = Some((key, answer));
    }

    /// Which templates of `catalog` run on which of the backends seen in `views`.
    pub async fn compute(
        &self,
        catalog: &Arc<Catalog>,
        views: &[MemberView],
        farm: &Farm,
        gate: &GraphGate,
        admission: &Arc<Admission>,
    ) -> Arc<Runnable> {
        let key = Key::of(catalog, views);
        if let Some(answer) = self.get(&key) {
            return answer;
        }
        let mut answer = Runnable::new();
        // A call the admission did not run (busy) says nothing about the template: such an
        // answer is given but not cached.
        let mut settled = true;
        for entry in catalog.templates() {
            let mut names = Vec::new();
            for view in views {
                match runs_on(entry, view, gate, admission).await {
                    Some(true) => names.push(farm.members()[view.member].name()),
                    Some(false) => {}
                    None => settled = false,
                }
            }
            answer.insert(entry.info.id.clone(), names);
        }
        let answer = Arc::new(answer);
        if settled {
            self.put(key, answer.clone());
        }
        answer
    }
}

/// Whether `entry` builds and checks on the backend of `view`; `None` when the admission did
/// not run the call (busy: no verdict).
async fn runs_on(
    entry: &TemplateEntry,
    view: &MemberView,
    gate: &GraphGate,
    admission: &Arc<Admission>,
) -> Option<bool> {
    let runner = entry.runner.clone();
    let id = entry.info.id.clone();
    let args = crate::selftest::self_test_args(&entry.info);
    let inputs = pack_runtime::params::self_test_inputs(&entry.info);
    let host: Arc<dyn pack_runtime::HostView> = Arc::new(FarmView(vec![view.clone()]));
    let built = admission
        .run(&admission_key(&entry.pack.path), Wait::Bounded, move || {
            runner.build_with_inputs(&id, &args, &inputs, host).0
        })
        .await
        .ok()?;
    let Ok(built) = built else {
        return Some(false);
    };
    let checked = gate.check_each(built.graph, vec![view.nodes.clone()]).await;
    Some(matches!(checked, Ok((_, verdicts)) if verdicts.iter().all(Result::is_ok)))
}
