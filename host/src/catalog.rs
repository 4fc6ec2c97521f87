//! The template catalog: an immutable snapshot of every loaded pack and the
//! templates they offer, swapped atomically as a whole when packs change.
//!
//! Invariants:
//! * template ids are unique within a snapshot, and so are pack names;
//! * a clash is never resolved silently, and never by file-name or load
//!   order. A claimant (a pack name, or a template id) belongs to the pack
//!   that held it in the previous snapshot *since before* the rival's current
//!   file was first seen (the incumbent); the rival is refused (a whole pack
//!   for a name, one template for an id) and lists a clash problem. Rivals
//!   with no incumbent (typically two files present at start-up, seen in the
//!   same scan) are all refused: neither serves the claim until one is
//!   renamed or removed, and each lists the clash;
//! * a pack that fails to load or self-test is listed in `errors` with its
//!   path and a typed [`ProblemKind`], and never removes a working pack.
//!
//! Packs of one scan are published as each finishes loading, so during the
//! first scan a clashing id can be served briefly by the pack that loaded
//! first, until its rival has loaded and the rule above withdraws it.

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

/// What kind of problem keeps a pack file (or one of its templates) from serving.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ProblemKind {
    /// The templates folder cannot be read.
    Folder,
    /// The file could not be read, compiled, or described, or its metadata is invalid.
    Load,
    /// A template failed its self-test.
    SelfTest,
    /// Describe plus self-test took longer than the load budget.
    LoadTimeout,
    /// The pack's name is used by another pack file.
    NameClash {
        /// The contested pack name.
        name: String,
        /// The other file claiming it.
        other_path: PathBuf,
        /// Whether the other file keeps it (else neither serves).
        other_keeps: bool,
    },
    /// One of the pack's template ids is offered by another pack too.
    TemplateClash {
        /// The contested template id.
        id: String,
        /// The other pack's file.
        other_path: PathBuf,
        /// Whether the other pack keeps it (else neither serves).
        other_keeps: bool,
    },
}

impl ProblemKind {
    /// Clashes are recomputed with every snapshot; other problems belong to
    /// one version of one file.
    pub fn is_clash(&self) -> bool {
        matches!(
            self,
            ProblemKind::NameClash { .. } | ProblemKind::TemplateClash { .. }
        )
    }
}

/// A pack file that is not (fully) serving, and why.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PackProblem {
    /// The pack file.
    pub path: PathBuf,
    /// What kind of problem.
    #[serde(flatten)]
    pub kind: ProblemKind,
    /// What went wrong, for people.
    pub error: String,
}

/// A loaded pack offered to [`Catalog::assemble`].
#[derive(Debug, Clone)]
pub struct Candidate {
    /// The pack.
    pub pack: Arc<Pack>,
    /// Number of the folder scan that first saw this file's current content.
    pub seen_in_scan: u64,
}

/// Since which scan a path has held a claim (a pack name or a template id).
#[derive(Debug, Clone)]
struct Holder {
    path: PathBuf,
    since: u64,
}

/// One immutable state of the catalog.
#[derive(Debug, Default)]
pub struct Catalog {
    generation: u64,
    packs: BTreeMap<PathBuf, Arc<Pack>>,
    templates: Vec<TemplateEntry>,
    index: HashMap<String, usize>,
    errors: Vec<PackProblem>,
    names: HashMap<String, Holder>,
    ids: HashMap<String, Holder>,
}

/// Resolves one contested claim among `claimants` (path, seen-in-scan):
/// `Some(winner)` when exactly one claims it or an incumbent keeps it,
/// `None` when nobody may serve it.
fn resolve_claim(claimants: &[(&PathBuf, u64)], previous: Option<&Holder>) -> Option<PathBuf> {
    if let [(only, _)] = claimants {
        return Some((*only).clone());
    }
    let holder = previous?;
    let rivals_seen_after = claimants
        .iter()
        .filter(|(path, _)| **path != holder.path)
        .all(|(_, seen)| holder.since < *seen);
    let holder_claims = claimants.iter().any(|(path, _)| **path == holder.path);
    (holder_claims && rivals_seen_after).then(|| holder.path.clone())
}

impl Catalog {
    /// Assembles a snapshot from the packs that loaded (by path) and the
    /// files that failed. `previous` and `scan` (the newest scan number)
    /// decide who keeps a contested name or id; see the module docs.
    pub fn assemble(
        generation: u64,
        scan: u64,
        candidates: BTreeMap<PathBuf, Candidate>,
        failures: Vec<PackProblem>,
        previous: Option<&Catalog>,
    ) -> Self {
        let mut errors = failures;
        let since = |map: Option<&HashMap<String, Holder>>, key: &str, path: &Path| {
            map.and_then(|m| m.get(key))
                .filter(|h| h.path == path)
                .map_or(scan, |h| h.since)
        };

        // Pack names first: a refused pack offers nothing.
        let mut by_name: BTreeMap<&str, Vec<(&PathBuf, u64)>> = BTreeMap::new();
        for (path, c) in &candidates {
            by_name
                .entry(c.pack.info().name.as_str())
                .or_default()
                .push((path, c.seen_in_scan));
        }
        let mut names = HashMap::new();
        let mut packs = BTreeMap::new();
        for (name, claimants) in &by_name {
            let winner = resolve_claim(claimants, previous.and_then(|p| p.names.get(*name)));
            for (path, _) in claimants {
                if winner.as_ref() == Some(*path) {
                    names.insert(
                        (*name).to_owned(),
                        Holder {
                            path: (*path).clone(),
                            since: since(previous.map(|p| &p.names), name, path),
                        },
                    );
                    packs.insert((*path).clone(), candidates[*path].pack.clone());
                    continue;
                }
                let others: Vec<&PathBuf> = claimants
                    .iter()
                    .map(|(p, _)| *p)
                    .filter(|p| p != path)
                    .collect();
                let other = winner.clone().unwrap_or_else(|| others[0].to_path_buf());
                let keeps = winner.is_some();
                errors.push(PackProblem {
                    path: (*path).clone(),
                    error: if keeps {
                        format!(
                            "pack name `{name}` is already used by {}, which keeps it; this file is not served until its pack is renamed or one of them removed",
                            other.display()
                        )
                    } else {
                        format!(
                            "pack name `{name}` is also claimed by {}, seen in the same scan; neither is served until one is renamed or removed",
                            display_all(&others)
                        )
                    },
                    kind: ProblemKind::NameClash {
                        name: (*name).to_owned(),
                        other_path: other,
                        other_keeps: keeps,
                    },
                });
            }
        }

        // Then template ids, among the packs that kept their names.
        let mut by_id: HashMap<&str, Vec<(&PathBuf, u64)>> = HashMap::new();
        for (path, pack) in &packs {
            for info in pack.templates() {
                by_id
                    .entry(info.id.as_str())
                    .or_default()
                    .push((path, candidates[path].seen_in_scan));
            }
        }
        let mut ids = HashMap::new();
        let mut winners: HashMap<&str, Option<PathBuf>> = HashMap::new();
        for (id, claimants) in &by_id {
            let winner = resolve_claim(claimants, previous.and_then(|p| p.ids.get(*id)));
            if let Some(path) = &winner {
                ids.insert(
                    (*id).to_owned(),
                    Holder {
                        path: path.clone(),
                        since: since(previous.map(|p| &p.ids), id, path),
                    },
                );
            }
            winners.insert(*id, winner);
        }
        let mut templates = Vec::new();
        let mut index = HashMap::new();
        for (path, pack) in &packs {
            let summary = PackSummary::of(pack);
            for info in pack.templates() {
                let winner = &winners[info.id.as_str()];
                if winner.as_ref() == Some(path) {
                    index.insert(info.id.clone(), templates.len());
                    templates.push(TemplateEntry {
                        info: info.clone(),
                        pack: summary.clone(),
                        input_schema: pack_runtime::params::input_schema(info),
                        runner: pack.clone(),
                    });
                    continue;
                }
                let others: Vec<&PathBuf> = by_id[info.id.as_str()]
                    .iter()
                    .map(|(p, _)| *p)
                    .filter(|p| *p != path)
                    .collect();
                let error = match winner {
                    Some(owner) => format!(
                        "template id `{}` of pack {} clashes with pack {} ({}), which keeps it; rename one of them",
                        info.id,
                        summary.name,
                        packs[owner].info().name,
                        owner.display()
                    ),
                    None => format!(
                        "template id `{}` of pack {} clashes with {}, seen in the same scan; neither serves it until one is renamed or removed",
                        info.id,
                        summary.name,
                        others
                            .iter()
                            .map(|p| format!("pack {} ({})", packs[*p].info().name, p.display()))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                };
                errors.push(PackProblem {
                    path: path.clone(),
                    kind: ProblemKind::TemplateClash {
                        id: info.id.clone(),
                        other_path: winner.clone().unwrap_or_else(|| others[0].to_path_buf()),
                        other_keeps: winner.is_some(),
                    },
                    error,
                });
            }
        }
        errors.sort_by(|a, b| a.path.cmp(&b.path).then_with(|| a.error.cmp(&b.error)));
        Self {
            generation,
            packs,
            templates,
            index,
            errors,
            names,
            ids,
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

fn display_all(paths: &[&PathBuf]) -> String {
    paths
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
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
