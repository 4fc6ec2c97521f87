//! Drives a [`JobStore`] from the backend: every store call runs on the blocking pool under a
//! semaphore, one follower task per tracked job writes its snapshot changes, a heartbeat
//! renews this process's lease and adopts the jobs of servers that are gone, and a pruner
//! applies the retention.
//!
//! Invariants:
//! - At most [`PersistOptions::concurrency`] store calls run at once; none runs on an async
//!   worker thread.
//! - A follower has at most one write in flight; changes made meanwhile are coalesced (the
//!   watch channel keeps the latest snapshot), so a chatty job costs at most one transaction
//!   per write's duration. It ends once the job's ending is stored (a failed write of an
//!   ending is retried [`ENDING_RETRIES`] times), or when the backend stops.
//! - When the store refuses a write because it already holds an ending (another process
//!   cancelled the job, or the open-job bound expired it), the tracker takes the store's
//!   ending: the store is the authority on how a job ended.
//! - The pruner never deletes image files unless [`PersistOptions::prune_images`] is set.
//!
//! Lifecycle: created by `ComfyUi::connect_with` when a store is configured; its tasks stop
//! with the backend's cancellation token.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Semaphore, watch};
use tokio_util::sync::CancellationToken;

use crate::snapshot::JobSnapshot;
use crate::store::{JobStore, StoreError, StoredJob, Update};

/// Times a failed write of a job's ending is retried.
pub const ENDING_RETRIES: u32 = 5;

/// Settings of the store driver.
#[derive(Debug, Clone)]
pub struct PersistOptions {
    /// Store calls in flight at once (at least 1).
    pub concurrency: usize,
    /// Period of the heartbeat (lease renewal, adoption, open-job bound).
    pub heartbeat_interval: Duration,
    /// Period of the retention pass.
    pub prune_interval: Duration,
    /// Also delete the image folder of every pruned job.
    pub prune_images: bool,
    /// Jobs adopted per heartbeat at most.
    pub adopt_limit: usize,
    /// Pause before retrying a failed write of an ending.
    pub retry_delay: Duration,
}

impl PersistOptions {
    /// Default store calls in flight.
    pub const DEFAULT_CONCURRENCY: usize = 4;
    /// Default retention period.
    pub const DEFAULT_PRUNE_INTERVAL: Duration = Duration::from_secs(600);
}

impl Default for PersistOptions {
    fn default() -> Self {
        Self {
            concurrency: Self::DEFAULT_CONCURRENCY,
            heartbeat_interval: Duration::from_secs(10),
            prune_interval: Self::DEFAULT_PRUNE_INTERVAL,
            prune_images: false,
            adopt_limit: 1000,
            retry_delay: Duration::from_secs(1),
        }
    }
}

/// What the driver needs from the tracker (implemented by the backend).
pub(crate) trait Tracked: Send + Sync + 'static {
    /// Ids of the jobs followed here that are still open.
    fn open_ids(&self) -> Vec<String>;
    /// Starts following an adopted job; returns its change feed (None if already followed).
    fn adopt(&self, job: &StoredJob) -> Option<watch::Receiver<JobSnapshot>>;
    /// Puts an adopted job under the execution timeout, as a job submitted here is (its clock
    /// starts when this process sees it running: the time it ran under its gone owner is
    /// unknown, so it gets the whole limit from then on).
    fn guard_execution(self: Arc<Self>, job: watch::Receiver<JobSnapshot>, stop: CancellationToken);
    /// Replaces a job's snapshot by the ending the store holds.
    fn settle(&self, ending: JobSnapshot);
    /// Where job image folders live.
    fn output_dir(&self) -> PathBuf;
    /// The backend's name as jobs record it (only its own jobs are adopted).
    fn backend_name(&self) -> String;
}

/// The store and its call budget.
#[derive(Debug)]
pub struct Persistence {
    store: Arc<dyn JobStore>,
    permits: Arc<Semaphore>,
    options: PersistOptions,
}

impl Persistence {
    /// Wraps `store` with `options`.
    pub fn new(store: Arc<dyn JobStore>, options: PersistOptions) -> Self {
        let permits = Arc::new(Semaphore::new(options.concurrency.max(1)));
        Self {
            store,
            permits,
            options,
        }
    }

    /// Runs `f` on the store on the blocking pool, within the call budget.
    pub async fn call<T: Send + 'static>(
        &self,
        f: impl FnOnce(&dyn JobStore) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|e| StoreError(Box::new(e)))?;
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            f(&*store)
        })
        .await
        .map_err(|e| StoreError(Box::new(e)))?
    }

    /// Writes every change of a job until its ending is stored. With `stored` the value
    /// `rx` holds now is already in the store (the insert of a new job): the first write is
    /// of its first change.
    pub(crate) async fn follow(
        self: Arc<Self>,
        tracked: Arc<impl Tracked>,
        mut rx: watch::Receiver<JobSnapshot>,
        token: CancellationToken,
        stored: bool,
    ) {
        let mut failures = 0;
        if stored && !next_change(&mut rx, &token).await {
            return;
        }
        loop {
            let snap = rx.borrow_and_update().clone();
            let (id, ending) = (snap.prompt_id.clone(), snap.state.is_terminal());
            match self.call(move |s| s.update(&snap)).await {
                Ok(Update::Stale(stored)) if stored.state.is_terminal() => {
                    tracking_settled(&id, &stored);
                    tracked.settle(*stored);
                    return;
                }
                Ok(_) if ending => return,
                Ok(_) => failures = 0,
                Err(e) => {
                    tracing::warn!(prompt_id = %id, error = %e, "could not store the job's state");
                    failures += 1;
                    if ending && failures <= ENDING_RETRIES {
                        tokio::select! {
                            _ = token.cancelled() => return,
                            _ = tokio::time::sleep(self.options.retry_delay) => continue,
                        }
                    }
                    if ending {
                        tracing::error!(prompt_id = %id, "gave up storing the job's ending");
                        return;
                    }
                }
            }
            if !next_change(&mut rx, &token).await {
                return;
            }
        }
    }

    /// Renews the lease, adopts jobs of gone servers and settles jobs ended elsewhere, every
    /// heartbeat interval (the first beat at once).
    pub(crate) async fn heartbeat_loop(
        self: Arc<Self>,
        tracked: Arc<impl Tracked>,
        token: CancellationToken,
        on_adopt: impl Fn() + Send + 'static,
    ) {
        loop {
            let open = tracked.open_ids();
            let limit = self.options.adopt_limit;
            let backend = tracked.backend_name();
            match self
                .call(move |s| s.heartbeat(&open, limit, &backend))
                .await
            {
                Ok(beat) => {
                    for ending in beat.ended {
                        tracked.settle(ending);
                    }
                    let adopted = !beat.adopted.is_empty();
                    for job in beat.adopted {
                        if let Some(rx) = tracked.adopt(&job) {
                            tracked.clone().guard_execution(rx.clone(), token.clone());
                            tokio::spawn(self.clone().follow(
                                tracked.clone(),
                                rx,
                                token.clone(),
                                false,
                            ));
                        }
                    }
                    if adopted {
                        on_adopt();
                    }
                }
                Err(e) => tracing::warn!(error = %e, "job store heartbeat failed"),
            }
            tokio::select! {
                _ = token.cancelled() => return,
                _ = tokio::time::sleep(self.options.heartbeat_interval) => {}
            }
        }
    }

    /// Applies the retention every prune interval (the first pass at once).
    pub(crate) async fn prune_loop(
        self: Arc<Self>,
        tracked: Arc<impl Tracked>,
        token: CancellationToken,
    ) {
        loop {
            self.prune_now(&tracked.output_dir()).await;
            tokio::select! {
                _ = token.cancelled() => return,
                _ = tokio::time::sleep(self.options.prune_interval) => {}
            }
        }
    }

    async fn prune_now(&self, output_dir: &std::path::Path) {
        let mut total = 0;
        loop {
            let ids = match self.call(|s| s.prune()).await {
                Ok(ids) => ids,
                Err(e) => {
                    tracing::warn!(error = %e, "job store retention pass failed");
                    return;
                }
            };
            if ids.is_empty() {
                break;
            }
            total += ids.len();
            if self.options.prune_images {
                for id in &ids {
                    let dir = crate::outputs::job_dir(output_dir, id);
                    if let Err(e) = tokio::fs::remove_dir_all(&dir).await
                        && e.kind() != std::io::ErrorKind::NotFound
                    {
                        tracing::warn!(dir = %dir.display(), error = %e, "could not delete a pruned job's images");
                    }
                }
            }
        }
        if total > 0 {
            tracing::info!(
                jobs = total,
                images_deleted = self.options.prune_images,
                "pruned ended jobs beyond the retention"
            );
        }
    }
}

fn tracking_settled(id: &str, stored: &JobSnapshot) {
    tracing::info!(prompt_id = %id, state = %stored.state, "the job store already holds this job's ending (set by another server or the open-job bound); taking it");
}

/// Waits for the job's next change; false when the job's sender is gone or `token` is
/// cancelled first.
async fn next_change(rx: &mut watch::Receiver<JobSnapshot>, token: &CancellationToken) -> bool {
    tokio::select! {
        _ = token.cancelled() => false,
        changed = rx.changed() => changed.is_ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Heartbeat, JobPage, JobQuery};
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Reads take 50 ms and count how many run at once; prune hands out its passes.
    #[derive(Debug, Default)]
    struct Counting {
        running: AtomicUsize,
        peak: AtomicUsize,
        passes: Mutex<Vec<Vec<String>>>,
    }

    impl JobStore for Counting {
        fn insert(&self, _job: &StoredJob) -> Result<(), StoreError> {
            Ok(())
        }
        fn update(&self, _snapshot: &JobSnapshot) -> Result<Update, StoreError> {
            Ok(Update::Applied)
        }
        fn get(&self, _prompt_id: &str) -> Result<Option<StoredJob>, StoreError> {
            let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
            self.peak.fetch_max(now, Ordering::SeqCst);
            std::thread::sleep(Duration::from_millis(50));
            self.running.fetch_sub(1, Ordering::SeqCst);
            Ok(None)
        }
        fn list(&self, _query: &JobQuery) -> Result<JobPage, StoreError> {
            Ok(JobPage::default())
        }
        fn cancel(&self, _snapshot: &JobSnapshot) -> Result<Update, StoreError> {
            Ok(Update::Applied)
        }
        fn heartbeat(&self, _: &[String], _: usize, _: &str) -> Result<Heartbeat, StoreError> {
            Ok(Heartbeat::default())
        }
        fn prune(&self) -> Result<Vec<String>, StoreError> {
            Ok(self.passes.lock().unwrap().pop().unwrap_or_default())
        }
    }

    fn persistence(store: &Arc<Counting>, options: PersistOptions) -> Persistence {
        Persistence::new(store.clone(), options)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn at_most_concurrency_store_calls_run_at_once() {
        for concurrency in [1, 2, 3] {
            let store = Arc::new(Counting::default());
            let persist = Arc::new(persistence(
                &store,
                PersistOptions {
                    concurrency,
                    ..PersistOptions::default()
                },
            ));
            let calls: Vec<_> = (0..concurrency + 2)
                .map(|_| {
                    let persist = persist.clone();
                    tokio::spawn(async move { persist.call(|s| s.get("job")).await })
                })
                .collect();
            for call in calls {
                call.await.unwrap().unwrap();
            }
            assert_eq!(
                store.peak.load(Ordering::SeqCst),
                concurrency,
                "{} calls at a limit of {concurrency}",
                concurrency + 2
            );
        }
    }

    #[tokio::test]
    async fn pruned_jobs_lose_their_images_only_when_asked() {
        for prune_images in [false, true] {
            let out = tempfile::tempdir().unwrap();
            for id in ["a", "b", "kept"] {
                let dir = crate::outputs::job_dir(out.path(), id);
                std::fs::create_dir_all(&dir).unwrap();
                std::fs::write(dir.join("image.png"), b"png").unwrap();
            }
            let store = Arc::new(Counting::default());
            // Two passes (as a full first pass would be followed by another), then none.
            *store.passes.lock().unwrap() = vec![vec!["b".into()], vec!["a".into()]];
            let persist = persistence(
                &store,
                PersistOptions {
                    prune_images,
                    ..PersistOptions::default()
                },
            );
            persist.prune_now(out.path()).await;
            for (id, pruned) in [("a", true), ("b", true), ("kept", false)] {
                let exists = crate::outputs::job_dir(out.path(), id).exists();
                assert_eq!(
                    exists,
                    !(pruned && prune_images),
                    "{id}, prune_images {prune_images}"
                );
            }
        }
    }
}
