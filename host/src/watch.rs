//! Hot reload: the templates folder is watched (notify, debounced), and every
//! change produces a new catalog snapshot, swapped in atomically.
//!
//! * Compiling and self-testing run on a blocking thread, never on the async
//!   workers.
//! * A new or changed pack replaces the old version only after it loaded and
//!   passed its self-test; otherwise the last good version keeps serving and
//!   the failure is listed in the catalog's `errors`.
//! * A removed pack's templates disappear.
//! * Calls in flight keep the `Arc<Pack>` they started with, so a swap never
//!   breaks them.
//! * Events can be lost (inotify overflow) or arrive for partial writes, so a
//!   reload always rescans the whole folder and compares content hashes.
//! * Only events that can change content trigger a rescan: a rescan reads the
//!   packs, and the opens it causes must not trigger the next one.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use notify::RecursiveMode;
use notify::event::{AccessKind, AccessMode, EventKind};
use notify_debouncer_full::new_debouncer;
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

use crate::app::App;
use crate::catalog::Catalog;
use crate::loader::pack_files;

/// Quiet period before a burst of file events becomes one reload. Short, so
/// a `cp` or an atomic rename is picked up quickly; a partial write that
/// slips through fails to load and is retried on the next event.
pub const DEBOUNCE: Duration = Duration::from_millis(20);

/// Keeps the watcher alive; dropping it stops watching.
pub struct WatchHandle {
    _debouncer: Box<dyn std::any::Any + Send>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for WatchHandle {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Starts watching `app`'s templates folder.
pub fn spawn(app: Arc<App>) -> anyhow::Result<WatchHandle> {
    let dir = app.templates_dir().to_owned();
    let (tx, mut rx) = mpsc::channel::<()>(1);
    let mut debouncer = new_debouncer(
        DEBOUNCE,
        None,
        move |result: notify_debouncer_full::DebounceEventResult| match result {
            Ok(events) if !events.iter().any(|e| is_change(&e.event.kind)) => {}
            Ok(_) => {
                let _ = tx.try_send(());
            }
            Err(errors) => {
                tracing::warn!(
                    ?errors,
                    "file watcher error; rescanning the templates folder"
                );
                let _ = tx.try_send(());
            }
        },
    )?;
    debouncer
        .watch(&dir, RecursiveMode::NonRecursive)
        .map_err(|e| anyhow::anyhow!("cannot watch the templates folder {}: {e}", dir.display()))?;
    tracing::info!(dir = %dir.display(), "watching for pack changes");
    let task = tokio::spawn(async move {
        let mut known = fingerprints(&app.catalog());
        while rx.recv().await.is_some() {
            let app2 = app.clone();
            let previous_known = known.clone();
            match tokio::task::spawn_blocking(move || reload(&app2, previous_known)).await {
                Ok(Some(next)) => known = next,
                Ok(None) => {}
                Err(e) => tracing::error!("reload task failed: {e}"),
            }
        }
    });
    Ok(WatchHandle {
        _debouncer: Box::new(debouncer),
        task,
    })
}

/// Whether a file event can mean the folder's content changed.
///
/// inotify also reports opens and read-only closes, and every rescan opens each
/// pack file to hash it: reacting to those would make each reload trigger the
/// next, rescanning forever. A close after writing does count (it ends an
/// in-place copy).
fn is_change(kind: &EventKind) -> bool {
    match kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        EventKind::Access(_) => false,
        _ => true,
    }
}

/// Content hash of each file as last seen (serving or failed).
type Fingerprints = BTreeMap<PathBuf, String>;

fn fingerprints(catalog: &Catalog) -> Fingerprints {
    let mut out: Fingerprints = catalog
        .packs()
        .iter()
        .map(|(path, pack)| (path.clone(), pack.sha256().to_owned()))
        .collect();
    for problem in catalog.errors() {
        if let Ok(bytes) = std::fs::read(&problem.path) {
            out.entry(problem.path.clone())
                .or_insert_with(|| hex::encode(Sha256::digest(bytes)));
        }
    }
    out
}

/// Rescans the folder and publishes a new catalog if anything changed.
/// Returns the new fingerprints, or `None` when nothing changed.
pub fn reload(app: &App, known: Fingerprints) -> Option<Fingerprints> {
    let dir = app.templates_dir();
    let files = match pack_files(dir) {
        Ok(files) => files,
        Err(error) => {
            tracing::error!("{error}");
            return None;
        }
    };
    let mut seen = Fingerprints::new();
    for path in files {
        if let Ok(bytes) = std::fs::read(&path) {
            seen.insert(path, hex::encode(Sha256::digest(bytes)));
        }
    }
    if seen == known {
        return None;
    }
    let current = app.catalog();
    let mut packs = current.packs().clone();
    let mut failures: BTreeMap<PathBuf, String> = current
        .errors()
        .iter()
        .filter(|p| seen.contains_key(&p.path) && !p.error.contains("clashes with"))
        .map(|p| (p.path.clone(), p.error.clone()))
        .collect();
    packs.retain(|path, _| seen.contains_key(path));
    for (path, hash) in &seen {
        if known.get(path) == Some(hash) {
            continue;
        }
        match app.loader().load(path) {
            Ok(pack) => {
                tracing::info!(
                    path = %path.display(),
                    pack = %pack.info().name,
                    version = %pack.info().version,
                    "pack (re)loaded"
                );
                failures.remove(path);
                packs.insert(path.clone(), pack);
            }
            Err(error) => {
                let kept = packs
                    .get(path)
                    .map(|p| format!(" (version {} keeps serving)", p.info().version));
                tracing::error!(
                    "pack not (re)loaded: {error}{}",
                    kept.clone().unwrap_or_default()
                );
                failures.insert(path.clone(), format!("{error}{}", kept.unwrap_or_default()));
            }
        }
    }
    let next = Catalog::assemble(current.generation() + 1, packs, failures, Some(&current));
    tracing::info!(
        generation = next.generation(),
        templates = next.templates().len(),
        errors = next.errors().len(),
        "catalog updated"
    );
    app.catalog_store().publish(next);
    Some(seen)
}

#[cfg(test)]
mod tests {
    use notify::event::{CreateKind, DataChange, ModifyKind, RemoveKind, RenameMode};

    use super::*;

    #[test]
    fn reads_are_not_changes_but_writes_renames_and_removals_are() {
        for kind in [
            EventKind::Access(AccessKind::Open(AccessMode::Any)),
            EventKind::Access(AccessKind::Read),
            EventKind::Access(AccessKind::Close(AccessMode::Read)),
            EventKind::Access(AccessKind::Any),
        ] {
            assert!(!is_change(&kind), "{kind:?} must not trigger a rescan");
        }
        for kind in [
            EventKind::Access(AccessKind::Close(AccessMode::Write)),
            EventKind::Create(CreateKind::File),
            EventKind::Modify(ModifyKind::Data(DataChange::Any)),
            EventKind::Modify(ModifyKind::Name(RenameMode::To)),
            EventKind::Remove(RemoveKind::File),
            EventKind::Any,
            EventKind::Other,
        ] {
            assert!(is_change(&kind), "{kind:?} must trigger a rescan");
        }
    }
}
