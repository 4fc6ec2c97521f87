//! Hot reload: the templates folder is watched (notify, debounced), and every
//! change triggers a rescan of the [`PackSet`].
//!
//! * The rescan reads and hashes files on a blocking thread, and every load
//!   runs through the admission, so the watcher never blocks an async worker.
//! * Loads of different files run concurrently and publish independently:
//!   one slow or broken pack never delays another pack's reload.
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

use std::sync::Arc;
use std::time::Duration;

use notify::RecursiveMode;
use notify::event::{AccessKind, AccessMode, EventKind};
use notify_debouncer_full::new_debouncer;
use tokio::sync::mpsc;

use crate::packs::PackSet;

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
pub fn spawn(app: Arc<crate::App>) -> anyhow::Result<WatchHandle> {
    watch_packs(app.packs().clone())
}

/// Starts watching the folder of `packs`. Events that arrive while a rescan
/// runs are coalesced into one more rescan.
pub fn watch_packs(packs: Arc<PackSet>) -> anyhow::Result<WatchHandle> {
    let dir = packs.dir().to_owned();
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
        while rx.recv().await.is_some() {
            packs.rescan().await;
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
