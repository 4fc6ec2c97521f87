//! Loading pack files into catalog snapshots: read, compile (or reuse the
//! compile cache), self-test, and assemble. Blocking work: async callers run
//! it on a blocking thread.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::ArcSwapOption;
use comfyui::nodes::NodeCatalog;
use pack_runtime::{Pack, Runtime};

use crate::catalog::Catalog;
use crate::selftest::{self, CheckCatalog};

/// Loads and self-tests packs.
pub struct PackLoader {
    runtime: Arc<Runtime>,
    /// The newest node catalog fetched from ComfyUI, if any (else the stock one is used).
    live_catalog: Arc<ArcSwapOption<NodeCatalog>>,
}

impl PackLoader {
    /// A loader running packs in `runtime`, self-testing against `live_catalog` when set.
    pub fn new(runtime: Arc<Runtime>, live_catalog: Arc<ArcSwapOption<NodeCatalog>>) -> Self {
        Self {
            runtime,
            live_catalog,
        }
    }

    /// The runtime packs are loaded into.
    pub fn runtime(&self) -> &Arc<Runtime> {
        &self.runtime
    }

    /// The catalog self-tests check against now.
    pub fn check_catalog(&self) -> CheckCatalog {
        match self.live_catalog.load_full() {
            Some(live) => CheckCatalog::Live(live),
            None => CheckCatalog::Stock(NodeCatalog::bundled()),
        }
    }

    /// Loads one pack and self-tests it. The error names the file and the reason.
    pub fn load(&self, path: &Path) -> Result<Arc<Pack>, String> {
        let pack = self.runtime.load_file(path).map_err(|e| e.to_string())?;
        let reports = selftest::run(&pack, &self.check_catalog());
        for report in &reports {
            for warning in &report.warnings {
                tracing::warn!(path = %path.display(), template = %report.template, "{warning}");
            }
        }
        selftest::verdict(&reports).map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(Arc::new(pack))
    }

    /// Loads every `.wasm` file in `dir` into a new catalog.
    pub fn scan(&self, dir: &Path, generation: u64) -> Catalog {
        let mut packs = BTreeMap::new();
        let mut failures = BTreeMap::new();
        match pack_files(dir) {
            Ok(files) => {
                for path in files {
                    match self.load(&path) {
                        Ok(pack) => {
                            tracing::info!(
                                path = %path.display(),
                                pack = %pack.info().name,
                                version = %pack.info().version,
                                templates = pack.templates().len(),
                                "pack loaded"
                            );
                            packs.insert(path, pack);
                        }
                        Err(error) => {
                            tracing::error!("pack not loaded: {error}");
                            failures.insert(path, error);
                        }
                    }
                }
            }
            Err(error) => {
                tracing::error!("{error}");
                failures.insert(dir.to_owned(), error);
            }
        }
        Catalog::assemble(generation, packs, failures, None)
    }
}

/// The `.wasm` files directly inside `dir`, sorted.
pub fn pack_files(dir: &Path) -> Result<Vec<PathBuf>, String> {
    let entries = std::fs::read_dir(dir)
        .map_err(|e| format!("{}: cannot read the templates folder: {e}", dir.display()))?;
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
