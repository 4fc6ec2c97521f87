//! Loading one pack file: read, compile (or reuse the compile cache),
//! describe, self-test, all as one admitted pack call under a load budget.
//!
//! Invariants:
//! * a load runs on an admission thread (never on an async worker) and holds
//!   one permit of its file's share for its whole duration, so loads obey
//!   the same concurrency limits as calls; a load waits for a permit as long
//!   as it takes (it is background work) but never runs outside one;
//! * the load budget ([`PackLoader::load_budget`]) counts from the start of
//!   the load (compile, describe and self-test); the self-test stops at the
//!   first template boundary past it, so a load ends at most one call limit
//!   after its budget, and fails with [`ProblemKind::LoadTimeout`];
//! * the self-test sees what a real call sees (see [`crate::selftest`]): the
//!   node catalogs and model files of every backend reached so far
//!   ([`crate::live`]), else the bundled catalog and a realistic offline
//!   model list.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use comfyui::nodes::NodeCatalog;
use pack_runtime::{Pack, Runtime};

use crate::admission::{Admission, Wait};
use crate::catalog::{PackProblem, ProblemKind};
use crate::live::LiveComfy;
use crate::selftest::{self, CheckCatalog};

/// Loads and self-tests packs.
pub struct PackLoader {
    runtime: Arc<Runtime>,
    admission: Arc<Admission>,
    live: Arc<LiveComfy>,
    load_budget: Duration,
}

impl PackLoader {
    /// A loader running packs in `runtime` through `admission`, self-testing
    /// against `live` when set, each load within `load_budget`.
    pub fn new(
        runtime: Arc<Runtime>,
        admission: Arc<Admission>,
        live: Arc<LiveComfy>,
        load_budget: Duration,
    ) -> Self {
        Self {
            runtime,
            admission,
            live,
            load_budget,
        }
    }

    /// The runtime packs are loaded into.
    pub fn runtime(&self) -> &Arc<Runtime> {
        &self.runtime
    }

    /// The admission every pack call goes through.
    pub fn admission(&self) -> &Arc<Admission> {
        &self.admission
    }

    /// What ComfyUI looked like when last reached.
    pub fn live(&self) -> &Arc<LiveComfy> {
        &self.live
    }

    /// The budget of one whole load.
    pub fn load_budget(&self) -> Duration {
        self.load_budget
    }

    /// What self-tests check against now.
    pub fn check_catalog(&self) -> CheckCatalog {
        let backends = self.live.backends();
        if backends.is_empty() {
            CheckCatalog::Stock(NodeCatalog::bundled())
        } else {
            CheckCatalog::Live(backends)
        }
    }

    /// Loads one pack and self-tests it, as an admitted pack call. Also returns the
    /// [`LiveComfy::generation`] read before the self-test chose its catalogs: if it
    /// differs now, the backends changed while the pack was tested.
    pub async fn load(self: &Arc<Self>, path: &Path) -> (Result<Arc<Pack>, PackProblem>, u64) {
        let this = self.clone();
        let owned = path.to_owned();
        let tested = self.live.generation();
        let outcome = self
            .admission
            .run(&admission_key(path), Wait::Queue, move || {
                this.load_admitted(&owned)
            })
            .await
            .unwrap_or_else(|e| {
                Err(problem(
                    path,
                    ProblemKind::Load,
                    format!("{}: {e}", path.display()),
                ))
            });
        (outcome, tested)
    }

    /// Self-tests an already loaded pack again (against what ComfyUI looks
    /// like now), as an admitted pack call under the load budget.
    pub async fn retest(self: &Arc<Self>, pack: Arc<Pack>) -> Result<Arc<Pack>, PackProblem> {
        let this = self.clone();
        let path = pack.path().to_owned();
        self.admission
            .run(&admission_key(&path), Wait::Queue, move || {
                this.self_test(pack, Instant::now())
            })
            .await
            .unwrap_or_else(|e| {
                Err(problem(
                    &path,
                    ProblemKind::Load,
                    format!("{}: {e}", path.display()),
                ))
            })
    }

    /// The load itself. Runs on an admission thread.
    fn load_admitted(&self, path: &Path) -> Result<Arc<Pack>, PackProblem> {
        let started = Instant::now();
        let pack = self
            .runtime
            .load_file(path)
            .map_err(|e| problem(path, ProblemKind::Load, e.to_string()))?;
        self.self_test(Arc::new(pack), started)
    }

    /// The self-test of every template, within the budget counted from `started`.
    fn self_test(&self, pack: Arc<Pack>, started: Instant) -> Result<Arc<Pack>, PackProblem> {
        let path = pack.path().to_owned();
        let path = path.as_path();
        let reports = selftest::run_within(
            &pack,
            &self.check_catalog(),
            Some((started, self.load_budget)),
        )
        .map_err(|(_, exceeded)| {
            problem(
                path,
                ProblemKind::LoadTimeout,
                format!("{}: {exceeded}", path.display()),
            )
        })?;
        for report in &reports {
            for warning in &report.warnings {
                tracing::warn!(path = %path.display(), template = %report.template, "{warning}");
            }
        }
        selftest::verdict(&reports).map_err(|e| {
            problem(
                path,
                ProblemKind::SelfTest,
                format!("{}: {e}", path.display()),
            )
        })?;
        Ok(pack)
    }
}

/// The admission share a pack file's loads and calls count against.
pub fn admission_key(path: &Path) -> String {
    path.display().to_string()
}

fn problem(path: &Path, kind: ProblemKind, error: String) -> PackProblem {
    PackProblem {
        path: path.to_owned(),
        kind,
        error,
    }
}

/// The `.wasm` files directly inside `dir`, sorted. Blocking.
pub fn pack_files(dir: &Path) -> Result<Vec<PathBuf>, PackProblem> {
    let entries = std::fs::read_dir(dir).map_err(|e| {
        problem(
            dir,
            ProblemKind::Folder,
            format!("{}: cannot read the templates folder: {e}", dir.display()),
        )
    })?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| is_pack_file(p))
        .collect();
    files.sort();
    Ok(files)
}

/// Whether a path looks like a pack (`*.wasm`, not hidden: editors and
/// `build-packs.sh` write hidden temporaries first).
pub fn is_pack_file(path: &Path) -> bool {
    path.extension().is_some_and(|e| e == "wasm")
        && path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| !n.starts_with('.'))
        && path.is_file()
}
