//! The template catalog: an immutable snapshot of every loaded pack and the
//! templates they offer, swapped atomically as a whole when packs change.
//!
//! Invariants: template ids are unique within a snapshot; a clash is never
//! resolved silently (the pack that already served the id keeps it, otherwise
//! the first pack in path order, and the loser's clash is listed in
//! `errors`); a pack that fails to load or self-test is listed in `errors`
//! with its path and reason and never removes a working pack.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::ArcSwap;
use pack_runtime::{Pack, TemplateInfo};
use serde::Serialize;
use serde_json::Value;
use tokio::sync::watch;

/// Identity of the pack a template comes from.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PackSummary {
    /// Declared pack name.
    pub name: String,
    /// Declared pack version.
    pub version: String,
    /// The file it was loaded from.
    pub path: PathBuf,
    /// SHA-256 of the file.
    pub sha256: String,
}

impl PackSummary {
    fn of(pack: &Pack) -> Self {
        Self {
            name: pack.info().name.clone(),
            version: pack.info().version.clone(),
            path: pack.path().to_owned(),
            sha256: pack.sha256().to_owned(),
        }
    }
}

/// A template as served: its metadata, its pack, its JSON Schema, and the pack to run.
#[derive(Debug, Clone)]
pub struct TemplateEntry {
    /// What the pack declared.
    pub info: TemplateInfo,
    /// Where it comes from.
    pub pack: PackSummary,
    /// JSON Schema of its parameters.
    pub input_schema: Value,
    /// The loaded pack that builds it.
    pub runner: Arc<Pack>,
}

/// A pack file that is not (fully) serving, and why.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PackProblem {
    /// The pack file.
    pub path: PathBuf,
    /// What went wrong.
    pub error: String,
}

/// One immutable state of the catalog.
#[derive(Debug, Default)]
pub struct Catalog {
    generation: u64,
    packs: BTreeMap<PathBuf, Arc<Pack>>,
    templates: Vec<TemplateEntry>,
    index: HashMap<String, usize>,
    errors: Vec<PackProblem>,
}

impl Catalog {
    /// Assembles a snapshot from the packs currently serving (by path) and
    /// the files that failed. `previous` decides who keeps a clashing id.
    pub fn assemble(
        generation: u64,
        packs: BTreeMap<PathBuf, Arc<Pack>>,
        failures: BTreeMap<PathBuf, String>,
        previous: Option<&Catalog>,
    ) -> Self {
        let mut errors: Vec<PackProblem> = failures
            .into_iter()
            .map(|(path, error)| PackProblem { path, error })
            .collect();
        // Incumbents first, so a newcomer can never take over an id in use.
        let mut order: Vec<&PathBuf> = packs.keys().collect();
        order.sort_by_key(|path| {
            let incumbent = previous.is_some_and(|p| p.packs.contains_key(*path));
            (!incumbent, (*path).clone())
        });
        let mut templates = Vec::new();
        let mut index = HashMap::new();
        for path in order {
            let pack = &packs[path];
            let summary = PackSummary::of(pack);
            for info in pack.templates() {
                if let Some(&owner) = index.get(&info.id) {
                    let owner: &TemplateEntry = &templates[owner];
                    errors.push(PackProblem {
                        path: path.clone(),
                        error: format!(
                            "template id `{}` of pack {} clashes with pack {} ({}), which keeps it; rename one of them",
                            info.id,
                            summary.name,
                            owner.pack.name,
                            owner.pack.path.display()
                        ),
                    });
                    continue;
                }
                index.insert(info.id.clone(), templates.len());
                templates.push(TemplateEntry {
                    info: info.clone(),
                    pack: summary.clone(),
                    input_schema: pack_runtime::params::input_schema(info),
                    runner: pack.clone(),
                });
            }
        }
        errors.sort_by(|a, b| a.path.cmp(&b.path));
        Self {
            generation,
            packs,
            templates,
            index,
            errors,
        }
    }

    /// Increases with every swap.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Every template, in pack path order then the pack's order.
    pub fn templates(&self) -> &[TemplateEntry] {
        &self.templates
    }

    /// A template by id.
    pub fn template(&self, id: &str) -> Option<&TemplateEntry> {
        self.index.get(id).map(|&i| &self.templates[i])
    }

    /// Ids of every template, comma-separated (for error messages).
    pub fn template_ids(&self) -> String {
        let ids: Vec<&str> = self.templates.iter().map(|t| t.info.id.as_str()).collect();
        if ids.is_empty() {
            "none (no pack is loaded)".to_owned()
        } else {
            ids.join(", ")
        }
    }

    /// Packs that failed, and clashes.
    pub fn errors(&self) -> &[PackProblem] {
        &self.errors
    }

    /// The packs serving, by path.
    pub fn packs(&self) -> &BTreeMap<PathBuf, Arc<Pack>> {
        &self.packs
    }

    /// The serving pack loaded from `path`, if any.
    pub fn pack_at(&self, path: &Path) -> Option<&Arc<Pack>> {
        self.packs.get(path)
    }
}

/// The current catalog, readable without locks and replaced atomically.
/// Readers holding an older snapshot keep using it until they finish.
pub struct CatalogStore {
    current: ArcSwap<Catalog>,
    changes: watch::Sender<u64>,
}

impl CatalogStore {
    /// A store holding `initial`.
    pub fn new(initial: Catalog) -> Self {
        let (changes, _) = watch::channel(initial.generation);
        Self {
            current: ArcSwap::from_pointee(initial),
            changes,
        }
    }

    /// The current snapshot.
    pub fn load(&self) -> Arc<Catalog> {
        self.current.load_full()
    }

    /// Replaces the snapshot and notifies subscribers.
    pub fn publish(&self, catalog: Catalog) {
        let generation = catalog.generation;
        self.current.store(Arc::new(catalog));
        self.changes.send_replace(generation);
    }

    /// Receives the generation of every new snapshot.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }
}
