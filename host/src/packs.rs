//! The pack files of the templates folder and their load states. A scan
//! lists and hashes the folder; every new or changed file is loaded on its
//! own task, and the catalog is republished as each load ends, so packs
//! appear one by one and one slow or broken pack never delays another.
//!
//! Invariants:
//! * scans are serialised, and read and hash files on a blocking thread,
//!   never on an async worker; loads run through the admission (see
//!   [`crate::loader`]), concurrently up to its limits;
//! * a file is loaded again only when its content hash changed; a load's
//!   result is applied only if no newer version of that file was seen since
//!   it started (a per-file token), so a slow load of an old version never
//!   overwrites a newer one;
//! * a new version replaces the old one only once it loaded and passed its
//!   self-test; otherwise the last good version keeps serving and the
//!   failure is listed; a removed file's pack disappears at the next scan;
//! * every publish assembles the whole catalog from the current states
//!   (clash rules in [`crate::catalog`]), under one lock, so generations
//!   increase in publish order.
//!
//! Lifecycle: created empty with the service; [`PackSet::rescan`] runs once
//! at start (in the background for `serve`) and again on every watcher
//! event; [`PackSet::revalidate`] runs each time a backend's catalog and
//! model files become known ([`PackSet::backend_answered`], on every
//! (re)connection), so every pack is self-tested against what its real
//! calls will see; [`PackSet::wait_idle`] waits until no scan or load
//! is in flight.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use sha2::{Digest, Sha256};
use tokio::sync::watch;

use comfyui::ModelSnapshot;
use comfyui::nodes::NodeCatalog;

use crate::catalog::{Candidate, Catalog, CatalogStore, PackProblem, ProblemKind};
use crate::loader::{PackLoader, pack_files};

/// The templates folder's packs, loading and serving.
pub struct PackSet {
    dir: PathBuf,
    loader: Arc<PackLoader>,
    store: Arc<CatalogStore>,
    state: Mutex<State>,
    scanning: tokio::sync::Mutex<()>,
    in_flight: watch::Sender<usize>,
}

#[derive(Default)]
struct State {
    scan: u64,
    next_token: u64,
    files: BTreeMap<PathBuf, FileState>,
    folder_problem: Option<PackProblem>,
}

struct FileState {
    hash: String,
    seen_in_scan: u64,
    token: u64,
    serving: Option<Candidate>,
    failure: Option<PackProblem>,
}

/// Decrements the in-flight count when dropped (also on panic or abort).
struct InFlight(watch::Sender<usize>);

impl InFlight {
    fn enter(tx: &watch::Sender<usize>) -> Self {
        tx.send_modify(|n| *n += 1);
        Self(tx.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.send_modify(|n| *n = n.saturating_sub(1));
    }
}

impl PackSet {
    /// A set for `dir`, publishing into `store`; nothing is loaded yet.
    pub fn new(dir: PathBuf, loader: Arc<PackLoader>, store: Arc<CatalogStore>) -> Arc<Self> {
        let (in_flight, _) = watch::channel(0);
        Arc::new(Self {
            dir,
            loader,
            store,
            state: Mutex::new(State::default()),
            scanning: tokio::sync::Mutex::new(()),
            in_flight,
        })
    }

    /// The watched folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The loader.
    pub fn loader(&self) -> &Arc<PackLoader> {
        &self.loader
    }

    /// Starts a scan in the background; returns at once. [`PackSet::wait_idle`]
    /// covers it from the moment this returns.
    pub fn spawn_rescan(self: &Arc<Self>) {
        let guard = InFlight::enter(&self.in_flight);
        let this = self.clone();
        tokio::spawn(async move {
            this.rescan().await;
            drop(guard);
        });
    }

    /// Lists and hashes the folder, then starts a load for every new or
    /// changed file and publishes removals. Returns once the loads are
    /// started, not finished.
    pub async fn rescan(self: &Arc<Self>) {
        let _in_flight = InFlight::enter(&self.in_flight);
        let _serial = self.scanning.lock().await;
        let dir = self.dir.clone();
        let seen = match tokio::task::spawn_blocking(move || hash_folder(&dir)).await {
            Ok(seen) => seen,
            Err(e) => {
                tracing::error!("templates folder scan aborted: {e}");
                return;
            }
        };
        let mut loads = Vec::new();
        {
            let mut state = self.lock();
            state.scan += 1;
            let scan = state.scan;
            let mut changed = false;
            match seen {
                Err(problem) => {
                    tracing::error!("{}", problem.error);
                    changed |= state.folder_problem.as_ref() != Some(&problem);
                    state.folder_problem = Some(problem);
                    // Keep serving what loaded; the folder may come back.
                }
                Ok(seen) => {
                    changed |= state.folder_problem.take().is_some();
                    let before = state.files.len();
                    state.files.retain(|path, _| seen.contains_key(path));
                    changed |= state.files.len() != before;
                    for (path, hash) in seen {
                        if state.files.get(&path).is_some_and(|f| f.hash == hash) {
                            continue;
                        }
                        state.next_token += 1;
                        let token = state.next_token;
                        let entry = state.files.entry(path.clone()).or_insert(FileState {
                            hash: String::new(),
                            seen_in_scan: scan,
                            token,
                            serving: None,
                            failure: None,
                        });
                        entry.hash = hash;
                        entry.seen_in_scan = scan;
                        entry.token = token;
                        loads.push((path, token, InFlight::enter(&self.in_flight)));
                    }
                }
            }
            if changed {
                self.publish(&mut state);
            }
        }
        for (path, token, guard) in loads {
            self.spawn_load(path, token, guard);
        }
    }

    /// Loads `path` (version `token`) on its own task and applies the outcome; loads
    /// again while the backends' catalogs changed during the self-test (a revalidation
    /// then may not have seen this pack, which was not serving yet).
    fn spawn_load(self: &Arc<Self>, path: PathBuf, token: u64, guard: InFlight) {
        let this = self.clone();
        tokio::spawn(async move {
            loop {
                let (outcome, tested) = this.loader.load(&path).await;
                if this.apply(&path, token, outcome, tested) {
                    break;
                }
                tracing::debug!(path = %path.display(), "the backends' catalogs changed during the self-test: loading again");
            }
            drop(guard);
        });
    }

    /// Records what farm member `member` (named `name`) offers now, on its
    /// (re)connection, and self-tests every pack again against what the
    /// backends offer together (see [`PackSet::revalidate`]). Covered by
    /// [`PackSet::wait_idle`] from the moment it is called.
    pub async fn backend_answered(
        self: &Arc<Self>,
        member: usize,
        name: &str,
        nodes: Arc<NodeCatalog>,
        models: Arc<ModelSnapshot>,
    ) {
        let _in_flight = InFlight::enter(&self.in_flight);
        self.loader
            .live()
            .record(member, name, Some(&nodes), Some(&models));
        tracing::info!(
            backend = %name,
            "the node catalog and model files of {name} are known: self-testing every pack against what the backends offer"
        );
        self.revalidate().await;
    }

    /// Self-tests every serving pack again (a backend's catalog and model
    /// files have become known), on the loaded pack itself (no file is read);
    /// a pack that now fails is withdrawn, since its graphs would fail on the
    /// backends as well. A file with no serving version whose last load
    /// failed its self-test is loaded again: a backend that has become known
    /// may run it. A result is dropped if a new version of the file was seen
    /// meanwhile. Returns once the self-tests are started.
    pub async fn revalidate(self: &Arc<Self>) {
        let _in_flight = InFlight::enter(&self.in_flight);
        let _serial = self.scanning.lock().await;
        let (retests, reloads): (Vec<_>, Vec<_>) = {
            let mut state = self.lock();
            let retests = state
                .files
                .iter()
                .filter_map(|(path, f)| {
                    let serving = f.serving.as_ref()?.pack.clone();
                    Some((path.clone(), f.token, serving))
                })
                .collect();
            let refused: Vec<PathBuf> = state
                .files
                .iter()
                .filter(|(_, f)| {
                    f.serving.is_none()
                        && f.failure
                            .as_ref()
                            .is_some_and(|p| p.kind == ProblemKind::SelfTest)
                })
                .map(|(path, _)| path.clone())
                .collect();
            let mut reloads = Vec::new();
            for path in refused {
                state.next_token += 1;
                let token = state.next_token;
                if let Some(entry) = state.files.get_mut(&path) {
                    entry.token = token;
                    reloads.push((path, token, InFlight::enter(&self.in_flight)));
                }
            }
            (retests, reloads)
        };
        for (path, token, guard) in reloads {
            self.spawn_load(path, token, guard);
        }
        for (path, token, pack) in retests {
            let guard = InFlight::enter(&self.in_flight);
            let this = self.clone();
            tokio::spawn(async move {
                if let Err(problem) = this.loader.retest(pack.clone()).await {
                    this.withdraw(&path, token, &pack, problem);
                }
                drop(guard);
            });
        }
    }

    /// Waits until no scan or load is in flight.
    pub async fn wait_idle(&self) {
        let mut rx = self.in_flight.subscribe();
        let _ = rx.wait_for(|n| *n == 0).await;
    }

    /// Stops serving `pack` (which failed a retest), unless the file changed
    /// or another version serves meanwhile.
    fn withdraw(
        &self,
        path: &Path,
        token: u64,
        pack: &Arc<pack_runtime::Pack>,
        problem: PackProblem,
    ) {
        let mut state = self.lock();
        let Some(entry) = state.files.get_mut(path) else {
            return;
        };
        let same = entry.token == token
            && entry
                .serving
                .as_ref()
                .is_some_and(|c| Arc::ptr_eq(&c.pack, pack));
        if !same {
            return;
        }
        tracing::error!("pack withdrawn: {}", problem.error);
        entry.serving = None;
        entry.failure = Some(problem);
        self.publish(&mut state);
    }

    /// Applies the outcome of loading version `token` of `path`, self-tested at
    /// [`crate::live::LiveComfy::generation`] `tested`. Returns `false`, applying
    /// nothing, when the backends' catalogs changed since: the load must run again.
    fn apply(
        &self,
        path: &Path,
        token: u64,
        outcome: Result<Arc<pack_runtime::Pack>, PackProblem>,
        tested: u64,
    ) -> bool {
        let mut state = self.lock();
        let Some(entry) = state.files.get_mut(path) else {
            return true; // removed meanwhile
        };
        if entry.token != token {
            return true; // a newer version is loading
        }
        // Under the state lock, as `revalidate` lists the serving packs: a change recorded
        // after this check finds this pack serving and retests it.
        if self.loader.live().generation() != tested {
            return false;
        }
        match outcome {
            Ok(pack) => {
                tracing::info!(
                    path = %path.display(),
                    pack = %pack.info().name,
                    version = %pack.info().version,
                    templates = pack.templates().len(),
                    "pack loaded"
                );
                entry.failure = None;
                entry.serving = Some(Candidate {
                    pack,
                    seen_in_scan: entry.seen_in_scan,
                });
            }
            Err(mut problem) => {
                if let Some(kept) = &entry.serving {
                    problem.error.push_str(&format!(
                        " (version {} keeps serving)",
                        kept.pack.info().version
                    ));
                }
                tracing::error!("pack not (re)loaded: {}", problem.error);
                entry.failure = Some(problem);
            }
        }
        self.publish(&mut state);
        true
    }

    fn publish(&self, state: &mut State) {
        let candidates: BTreeMap<PathBuf, Candidate> = state
            .files
            .iter()
            .filter_map(|(path, f)| f.serving.clone().map(|c| (path.clone(), c)))
            .collect();
        let failures: Vec<PackProblem> = state
            .folder_problem
            .iter()
            .cloned()
            .chain(state.files.values().filter_map(|f| f.failure.clone()))
            .collect();
        let previous = self.store.load();
        let next = Catalog::assemble(
            previous.generation() + 1,
            state.scan,
            candidates,
            failures,
            Some(&previous),
        );
        tracing::info!(
            generation = next.generation(),
            templates = next.templates().len(),
            errors = next.errors().len(),
            "catalog updated"
        );
        self.store.publish(next);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Content hash of every pack file in `dir`. Blocking. A file that cannot be
/// read right now (being replaced) is left out and picked up by the next event.
fn hash_folder(dir: &Path) -> Result<BTreeMap<PathBuf, String>, PackProblem> {
    let mut seen = BTreeMap::new();
    for path in pack_files(dir)? {
        if let Ok(bytes) = std::fs::read(&path) {
            seen.insert(path, hex::encode(Sha256::digest(bytes)));
        }
    }
    Ok(seen)
}
