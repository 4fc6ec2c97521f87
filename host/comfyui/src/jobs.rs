//! `ComfyUi`: the backend the MCP layer holds (as `Arc`). Submits jobs, follows them through
//! the websocket and reconciliation, downloads their images, cancels them, and caches the node
//! catalog and model lists.
//!
//! Invariants:
//! - Creating it never fails because ComfyUI is down: the websocket task keeps retrying and
//!   calls fail with "ComfyUI at URL is unreachable" until it is up.
//! - Every job gets a prompt id chosen here and is registered *before* it is posted (events
//!   can beat the POST answer); only jobs submitted here are tracked or cancelled.
//! - After every websocket (re)connect, and every 2 s while a job is open, open jobs are
//!   reconciled with `/queue` and `/history` (ComfyUI does not replay events), so a job that
//!   finished while the socket was down still completes, and a job lost in a ComfyUI restart
//!   fails with a clear message instead of hanging. A submission, and a websocket `status`
//!   event (the queue moved) while a job of ours waits, ask for a pass within
//!   [`BackendOptions::submit_settle`] that serves every such request in that window, spaced
//!   by [`RECONCILE_DUTY`] times the last pass's duration: a `/queue` read carries the whole
//!   queue, so a burst of n submissions costs one read, never n (which made bursts quadratic).
//! - The node catalog, model lists, system stats and the queue snapshot are single-flight
//!   [`SharedCache`]s: concurrent callers share one request and its result or error, no lock
//!   is held across HTTP. They are cached per connection generation; the generation changes on
//!   every websocket connect and disconnect, so a value fetched before a reconnect is never
//!   served after it. A timeout or unreachable failure is reused only for
//!   [`BackendOptions::negative_cache_ttl`]; an HTTP error answer is not reused at all.
//!   The queue snapshot is shared only between concurrent callers (never reused after).
//! - A job that succeeded but for which no image can be found (events missed and `/history`
//!   failing or empty) is retried once from `/history`, then completed with a warning in its
//!   snapshot (`warnings`) and a `warn!` log line, never silently with zero images.
//! - With a job store ([`BackendOptions::job_store`]), every job is recorded once ComfyUI
//!   accepted it and each of its changes is written (see `persist`); status, wait, cancel
//!   and listing also serve jobs other processes submitted, from the store; jobs of servers
//!   that are gone are adopted and reconciled like our own.
//! - A job that executes longer than [`ComfyConfig::execution_timeout`] (`COMFYUI_TIMEOUT`;
//!   queue time does not count) is interrupted in ComfyUI and fails with
//!   [`FailureKind::ExecutionTimeout`](crate::snapshot::FailureKind) ([`crate::watchdog`]).
//! - Background tasks stop when the `ComfyUi` is dropped.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::{Notify, mpsc, watch};
use tokio_util::sync::CancellationToken;

use futures_util::StreamExt;

use crate::cache::{DEFAULT_NEGATIVE_TTL, SharedCache};
use crate::client::{ComfyClient, HistoryEntry, HistoryOutcome, QueueSnapshot, SubmitAccepted};
use crate::config::ComfyConfig;
use crate::error::{CancelError, ClientError};
use crate::events::Event;
use crate::nodes::NodeCatalog;
use crate::outputs::{self, ProvenanceContext};
use crate::persist::{PersistOptions, Persistence, Tracked};
use crate::postprocess::{OutputProcessor, PostprocessOptions, stage};
use crate::reattach::ProcessorSource;
use crate::snapshot::{JobFailure, JobRequest, JobSnapshot, JobState, SavedImage, now_unix};
use crate::store::{JobPage, JobQuery, JobStore, StoreError, StoredJob, Update};
use crate::tracker::{Action, JobTable};
use crate::watchdog;
use crate::ws::{WsOptions, WsSignal, spawn_event_stream};

/// How often open jobs are reconciled with ComfyUI as a safety net.
pub const RECONCILE_INTERVAL: Duration = Duration::from_secs(2);
/// Passes asked for by submissions start no sooner than this many times the last pass's
/// duration after it ended: the reconciler spends at most about 1/(1 + this) of its time
/// reading `/queue`, however long the queue (and ComfyUI answers its reads at that rate).
pub const RECONCILE_DUTY: u32 = 9;
/// Default [`BackendOptions::submit_settle`].
pub const SUBMIT_SETTLE: Duration = Duration::from_millis(50);
/// Default number of `GET /models/{folder}` requests in flight at once.
pub const DEFAULT_MODEL_FETCH_CONCURRENCY: usize = 4;
/// Default wait before the one retry of `/history` for a succeeded job without images.
pub const DEFAULT_HISTORY_RETRY_DELAY: Duration = Duration::from_millis(500);

/// Model files per ComfyUI model folder (`GET /models`, `GET /models/{folder}`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ModelSnapshot {
    /// Folder name → file names. Folders ComfyUI answers 404 for are left out.
    pub folders: BTreeMap<String, Vec<String>>,
}

impl ModelSnapshot {
    /// A snapshot of these `(folder, files)` lists.
    pub fn from_lists(lists: &[(&str, &[&str])]) -> Self {
        Self {
            folders: lists
                .iter()
                .map(|(folder, files)| {
                    (
                        (*folder).to_owned(),
                        files.iter().map(|f| (*f).to_owned()).collect(),
                    )
                })
                .collect(),
        }
    }

    /// Every file of `snapshots` per folder, each once, in the order first seen (the
    /// first snapshot's files first): what several ComfyUI machines have together. One
    /// snapshot comes back as it is.
    pub fn merged<'a>(snapshots: impl IntoIterator<Item = &'a Arc<ModelSnapshot>>) -> Arc<Self> {
        let mut snapshots = snapshots.into_iter();
        let Some(first) = snapshots.next() else {
            return Arc::default();
        };
        let mut rest = snapshots.peekable();
        if rest.peek().is_none() {
            return first.clone();
        }
        let mut merged = ModelSnapshot::clone(first);
        for models in rest {
            for (folder, files) in &models.folders {
                let into = merged.folders.entry(folder.clone()).or_default();
                for file in files {
                    if !into.contains(file) {
                        into.push(file.clone());
                    }
                }
            }
        }
        Arc::new(merged)
    }
}

/// The websocket's state as seen by the backend.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ConnectionState {
    /// A socket is open.
    pub connected: bool,
    /// Bumped on every connect and disconnect.
    pub generation: u64,
    /// Number of successful connections so far.
    pub connects: u64,
}

/// What a successful cancel did.
#[derive(Debug, Clone, PartialEq)]
pub enum CancelOutcome {
    /// The job was still pending and was removed from ComfyUI's queue.
    RemovedFromQueue(JobSnapshot),
    /// The job was running and ComfyUI confirmed the interrupt.
    Interrupted(JobSnapshot),
}

impl CancelOutcome {
    /// The job's snapshot after the cancel (state `cancelled`).
    pub fn snapshot(&self) -> &JobSnapshot {
        match self {
            CancelOutcome::RemovedFromQueue(s) | CancelOutcome::Interrupted(s) => s,
        }
    }

    /// A one-line description for users.
    pub fn message(&self) -> String {
        match self {
            CancelOutcome::RemovedFromQueue(s) => {
                format!(
                    "job {} was removed from ComfyUI's queue before it started",
                    s.prompt_id
                )
            }
            CancelOutcome::Interrupted(s) => {
                format!("job {} was interrupted while running", s.prompt_id)
            }
        }
    }
}

/// Tuning knobs beyond [`ComfyConfig`] (tests shorten them).
#[derive(Debug, Clone)]
pub struct BackendOptions {
    /// Websocket reconnect and keep-alive settings.
    pub ws: WsOptions,
    /// Safety-net reconciliation period while jobs are open.
    pub reconcile_interval: Duration,
    /// How long after a submission the reconciler waits for more before it reads `/queue`
    /// once for all of them (default [`SUBMIT_SETTLE`], 50 ms): queue positions are filled
    /// in that soon, and a burst of n submissions costs one `/queue` read, not n. Each read
    /// carries the whole queue (every graph in it), so passes asked for by submissions are
    /// also spaced by [`RECONCILE_DUTY`] times the last pass's duration.
    pub submit_settle: Duration,
    /// How long `cancel` waits for ComfyUI to confirm an interrupt.
    pub cancel_confirm_timeout: Duration,
    /// How long a catalog / models / stats / queue fetch that failed by timeout, connection
    /// failure or size cap is handed to new callers before the next attempt (default
    /// [`DEFAULT_NEGATIVE_TTL`], 2 s). Other failures are shared with concurrent callers only.
    pub negative_cache_ttl: Duration,
    /// `GET /models/{folder}` requests in flight at once (default 4, at least 1).
    pub model_fetch_concurrency: usize,
    /// Wait before re-reading `/history` for a succeeded job that has no images yet
    /// (default 500 ms).
    pub history_retry_delay: Duration,
    /// Where jobs are persisted; `None` keeps them in this process's memory only.
    pub job_store: Option<Arc<dyn JobStore>>,
    /// How the store is driven (call budget, heartbeat, retention period).
    pub persist: PersistOptions,
    /// The post-processing stage's pixel cap, concurrency and raw-output keeping.
    pub postprocess: PostprocessOptions,
    /// Makes the processor of a job adopted after a restart again (see [`crate::reattach`]);
    /// `None`: such a job fails, its unprocessed images withheld.
    pub processors: Option<Arc<dyn ProcessorSource>>,
    /// The post-processing slots, when several backends share them (a farm: the
    /// concurrency is one budget for the whole server); `None`: this backend's own
    /// `postprocess.concurrency` slots.
    pub postprocess_slots: Option<Arc<tokio::sync::Semaphore>>,
}

impl BackendOptions {
    /// Defaults derived from the config (interrupt confirmation bounded by its timeout).
    pub fn for_config(cfg: &ComfyConfig) -> Self {
        Self {
            ws: WsOptions::default(),
            reconcile_interval: RECONCILE_INTERVAL,
            submit_settle: SUBMIT_SETTLE,
            cancel_confirm_timeout: cfg.timeout,
            negative_cache_ttl: DEFAULT_NEGATIVE_TTL,
            model_fetch_concurrency: DEFAULT_MODEL_FETCH_CONCURRENCY,
            history_retry_delay: DEFAULT_HISTORY_RETRY_DELAY,
            job_store: None,
            persist: PersistOptions::default(),
            postprocess: PostprocessOptions::default(),
            processors: None,
            postprocess_slots: None,
        }
    }
}

struct Inner {
    cfg: ComfyConfig,
    options: BackendOptions,
    client: ComfyClient,
    table: Mutex<JobTable>,
    generation: AtomicU64,
    conn: watch::Sender<ConnectionState>,
    catalog: SharedCache<Arc<NodeCatalog>>,
    models: SharedCache<Arc<ModelSnapshot>>,
    stats: SharedCache<Arc<serde_json::Value>>,
    queue: SharedCache<Arc<QueueSnapshot>>,
    /// Asks for a reconciliation pass now.
    reconcile: Notify,
    /// A job was submitted, or the queue moved with jobs of ours in it: a pass within
    /// [`BackendOptions::submit_settle`], spaced by [`RECONCILE_DUTY`].
    queue_moved: Notify,
    persist: Option<Arc<Persistence>>,
    /// Images being post-processed at once, across jobs.
    postprocess_slots: Arc<tokio::sync::Semaphore>,
    token: CancellationToken,
}

/// The ComfyUI backend: job tracker, catalog cache and client in one.
pub struct ComfyUi {
    inner: Arc<Inner>,
    token: CancellationToken,
}

impl Drop for ComfyUi {
    fn drop(&mut self) {
        self.token.cancel();
    }
}

impl std::fmt::Debug for ComfyUi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ComfyUi")
            .field("url", &self.inner.cfg.display_url())
            .finish()
    }
}

impl ComfyUi {
    /// Starts the backend (websocket, event and reconciliation tasks) with default options.
    /// Must be called inside a tokio runtime. Fails only if the HTTP client cannot be built;
    /// ComfyUI being down is not an error.
    pub fn connect(cfg: ComfyConfig) -> Result<Arc<ComfyUi>, ClientError> {
        let options = BackendOptions::for_config(&cfg);
        Self::connect_with(cfg, options)
    }

    /// [`ComfyUi::connect`] with explicit options.
    pub fn connect_with(
        cfg: ComfyConfig,
        options: BackendOptions,
    ) -> Result<Arc<ComfyUi>, ClientError> {
        let client = ComfyClient::new(&cfg)?;
        let token = CancellationToken::new();
        let (rx, _ws) = spawn_event_stream(&cfg, options.ws.clone(), token.clone());
        let (conn, _) = watch::channel(ConnectionState::default());
        let ttl = options.negative_cache_ttl;
        let persist = options
            .job_store
            .clone()
            .map(|store| Arc::new(Persistence::new(store, options.persist.clone())));
        let inner = Arc::new(Inner {
            persist,
            postprocess_slots: options.postprocess_slots.clone().unwrap_or_else(|| {
                Arc::new(tokio::sync::Semaphore::new(
                    options.postprocess.concurrency.max(1),
                ))
            }),
            token: token.clone(),
            table: Mutex::new(JobTable::new(cfg.max_finished_jobs)),
            cfg,
            options,
            client,
            generation: AtomicU64::new(0),
            conn,
            catalog: SharedCache::new("object_info", ttl, None),
            models: SharedCache::new("models", ttl, None),
            stats: SharedCache::new("system_stats", ttl, None),
            queue: SharedCache::new("queue", ttl, Some(Duration::ZERO)),
            reconcile: Notify::new(),
            queue_moved: Notify::new(),
        });
        tokio::spawn(event_loop(inner.clone(), rx, token.clone()));
        tokio::spawn(reconcile_loop(inner.clone(), token.clone()));
        if let Some(p) = &inner.persist {
            let wake = inner.clone();
            let on_adopt = move || wake.reconcile.notify_one();
            tokio::spawn(
                p.clone()
                    .heartbeat_loop(inner.clone(), token.clone(), on_adopt),
            );
            tokio::spawn(p.clone().prune_loop(inner.clone(), token.clone()));
        }
        tracing::info!(url = %inner.cfg.display_url(), client_id = %inner.cfg.client_id, "ComfyUI backend started");
        Ok(Arc::new(ComfyUi { inner, token }))
    }

    /// Stops the background tasks (also done on drop).
    pub fn shutdown(&self) {
        self.token.cancel();
    }

    /// The HTTP client (uploads, system stats, …).
    pub fn client(&self) -> &ComfyClient {
        &self.inner.client
    }

    /// The configuration in use.
    pub fn config(&self) -> &ComfyConfig {
        &self.inner.cfg
    }

    /// Follows the websocket state (connected flag, generation).
    pub fn connection(&self) -> watch::Receiver<ConnectionState> {
        self.inner.conn.subscribe()
    }

    /// True while the websocket is open.
    pub fn is_connected(&self) -> bool {
        self.inner.conn.borrow().connected
    }

    /// The node catalog (`/object_info`), cached until the next websocket connect or
    /// disconnect. Concurrent callers share one request (and its error); the body is parsed
    /// on the blocking pool.
    pub async fn node_catalog(&self) -> Result<Arc<NodeCatalog>, ClientError> {
        let inner = &self.inner;
        let client = inner.client.clone();
        inner
            .catalog
            .get(inner.generation(), move || async move {
                let bytes = client.object_info_bytes().await?;
                let parsed = tokio::task::spawn_blocking(move || NodeCatalog::from_slice(&bytes))
                    .await
                    .map_err(|e| decode_error(&client, "GET /object_info", e.to_string()))?
                    .map_err(|e| decode_error(&client, "GET /object_info", e.to_string()))?;
                Ok(Arc::new(parsed))
            })
            .await
    }

    /// Model files per folder, cached like [`ComfyUi::node_catalog`]; the folders are fetched
    /// concurrently, at most [`BackendOptions::model_fetch_concurrency`] at a time.
    pub async fn models_snapshot(&self) -> Result<Arc<ModelSnapshot>, ClientError> {
        let inner = &self.inner;
        let client = inner.client.clone();
        let limit = inner.options.model_fetch_concurrency.max(1);
        inner
            .models
            .get(inner.generation(), move || async move {
                let folders = client.model_folders().await?;
                let mut lists = futures_util::stream::iter(folders)
                    .map(|folder| {
                        let client = client.clone();
                        async move {
                            let files = client.models(&folder).await;
                            (folder, files)
                        }
                    })
                    .buffer_unordered(limit);
                let mut snapshot = ModelSnapshot::default();
                while let Some((folder, files)) = lists.next().await {
                    if let Some(files) = files? {
                        snapshot.folders.insert(folder, files);
                    }
                }
                Ok(Arc::new(snapshot))
            })
            .await
    }

    /// `GET /system_stats`, cached like [`ComfyUi::node_catalog`].
    pub async fn system_stats(&self) -> Result<Arc<serde_json::Value>, ClientError> {
        self.inner.system_stats().await
    }

    /// ComfyUI's queue now. Concurrent callers share one `GET /queue` (and its error); a
    /// finished answer is never reused, except that a failure is reused for
    /// [`BackendOptions::negative_cache_ttl`].
    pub async fn queue_snapshot(&self) -> Result<Arc<QueueSnapshot>, ClientError> {
        self.inner.queue_snapshot().await
    }

    /// Submits a job: chooses its prompt id, registers it, posts it. The snapshot returned is
    /// normally `queued` (a fully cached job may already be further along). A 400 from
    /// ComfyUI is [`ClientError::Rejected`] and nothing is tracked.
    pub async fn submit(&self, req: JobRequest) -> Result<JobSnapshot, ClientError> {
        self.submit_as(uuid::Uuid::new_v4().to_string(), req).await
    }

    /// [`ComfyUi::submit`] under a prompt id chosen by the caller: a farm moving a queued
    /// job to another backend keeps the id its client knows.
    pub async fn submit_as(
        &self,
        prompt_id: String,
        req: JobRequest,
    ) -> Result<JobSnapshot, ClientError> {
        let inner = &self.inner;
        let graph_sha = outputs::graph_sha256(&req.graph);
        let stored = inner.persist.as_ref().map(|_| {
            let nodes: Vec<String> = req
                .graph
                .as_object()
                .map(|m| m.keys().cloned().collect())
                .unwrap_or_default();
            (nodes, graph_sha.clone())
        });
        let registered = inner
            .lock()
            .register(&prompt_id, &req, graph_sha, &inner.cfg.name());
        let job = inner.lock().watch(&prompt_id);
        if let Some(job) = job {
            let driver = inner.clone();
            watchdog::watch_job(job, inner.cfg.execution_timeout, self.token.clone(), |id| {
                driver.time_out(id)
            });
        }
        let result = inner
            .client
            .submit(&prompt_id, &req.graph, &inner.cfg.client_id)
            .await;
        let accepted = match result {
            Ok(acc) => acc,
            Err(err @ ClientError::Timeout { .. }) => {
                // The POST may have been accepted with its answer lost: look before giving up.
                match self.find_in_comfyui(&prompt_id).await {
                    true => SubmitAccepted {
                        prompt_id: prompt_id.clone(),
                        number: 0.0,
                        node_errors: serde_json::json!({}),
                    },
                    false => {
                        inner.lock().remove(&prompt_id);
                        return Err(err);
                    }
                }
            }
            Err(err) => {
                inner.lock().remove(&prompt_id);
                return Err(err);
            }
        };
        let snap = inner.lock().accepted(&prompt_id, &accepted);
        // The reconciler fills in the queue position and starts the safety-net polling.
        inner.queue_moved.notify_one();
        if let Some((nodes, sha)) = stored {
            inner.record_new(&accepted.prompt_id, nodes, sha).await;
        }
        tracing::info!(prompt_id = %accepted.prompt_id, "job submitted to ComfyUI");
        Ok(snap.unwrap_or(registered))
    }

    /// The backend's name (see [`ComfyConfig::name`]).
    pub fn name(&self) -> String {
        self.inner.cfg.name()
    }

    /// How many of the jobs followed here are open (queued or running): the backend's load
    /// as this server knows it.
    pub fn open_jobs(&self) -> usize {
        self.inner.lock().open_count()
    }

    /// The ids of the jobs followed here that are still open.
    pub fn open_job_ids(&self) -> Vec<String> {
        self.inner.lock().open_ids()
    }

    /// Stops following a job that is still queued, so that it can be submitted to another
    /// backend under the same prompt id (see [`ComfyUi::submit_as`]); tries to delete it
    /// from this ComfyUI's queue too (it may be unreachable: a job it runs later anyway is
    /// not ours any more). `None` when the job is not queued here.
    pub async fn release_queued(&self, prompt_id: &str) -> Option<JobSnapshot> {
        self.release(prompt_id, false).await
    }

    /// [`ComfyUi::release_queued`], also for a running job (a farm retrying a job whose
    /// backend stopped answering while it ran; the interrupt is best effort).
    pub async fn release(&self, prompt_id: &str, running_too: bool) -> Option<JobSnapshot> {
        let released = self.inner.lock().release(prompt_id, running_too)?;
        // In the background: an unreachable ComfyUI answers only after the request timeout.
        let released_running = released.state == JobState::Running;
        let inner = self.inner.clone();
        let id = prompt_id.to_owned();
        tokio::spawn(async move {
            let stopped = if released_running {
                inner.client.interrupt(Some(&id)).await
            } else {
                inner.client.delete_queued(&[&id]).await
            };
            if let Err(e) = stopped {
                tracing::debug!(prompt_id = %id, error = %e, "could not delete a moved job from its old queue");
            }
        });
        Some(released)
    }

    /// Adds a warning to one of our jobs' snapshot (kept in the store and provenance).
    pub fn note(&self, prompt_id: &str, warning: String) {
        self.inner.lock().note(prompt_id, warning);
    }

    /// Ends one of our open jobs as failed with `failure` (written to the store like any
    /// ending); false when it is not open here.
    pub fn fail(&self, prompt_id: &str, failure: JobFailure) -> bool {
        self.inner.lock().fail(prompt_id, failure)
    }

    /// Whether this backend follows the job in memory (no snapshot is copied).
    pub fn holds(&self, prompt_id: &str) -> bool {
        self.inner.lock().contains(prompt_id)
    }

    /// The job's current snapshot, without asking ComfyUI.
    pub fn snapshot(&self, prompt_id: &str) -> Option<JobSnapshot> {
        self.inner.lock().snapshot(prompt_id)
    }

    /// The job's snapshot; for a queued job the queue position is refreshed from one shared
    /// `/queue` snapshot first (best effort, and only while the websocket is up: with ComfyUI
    /// unreachable the known state is answered at once).
    pub async fn status(&self, prompt_id: &str) -> Result<Option<JobSnapshot>, StoreError> {
        self.statuses(&[prompt_id]).await.pop().unwrap_or(Ok(None))
    }

    /// The snapshots of several jobs (`None` for unknown ids), in the order asked, with at
    /// most one `/queue` request for all of them (only when one is queued and the websocket
    /// is up).
    ///
    /// An id this process does not hold is read from the job store; when the store cannot
    /// be read that id's entry is the store's error (never "unknown").
    pub async fn statuses<S: AsRef<str>>(
        &self,
        prompt_ids: &[S],
    ) -> Vec<Result<Option<JobSnapshot>, StoreError>> {
        let any_queued = prompt_ids.iter().any(|id| {
            self.snapshot(id.as_ref())
                .is_some_and(|s| s.state == JobState::Queued)
        });
        if any_queued
            && self.is_connected()
            && let Ok(queue) = self.inner.queue_snapshot().await
        {
            self.inner.lock().apply_queue(&queue);
        }
        let held: Vec<Option<JobSnapshot>> = {
            let table = self.inner.lock();
            prompt_ids
                .iter()
                .map(|id| table.snapshot(id.as_ref()))
                .collect()
        };
        let mut found = Vec::with_capacity(held.len());
        for (slot, id) in held.into_iter().zip(prompt_ids) {
            found.push(match slot {
                Some(snapshot) => Ok(Some(snapshot)),
                None => self
                    .stored(id.as_ref())
                    .await
                    .map(|job| job.map(|j| j.snapshot)),
            });
        }
        found
    }

    /// A job as the store holds it (`None` without a store or for an unknown id); the
    /// store's error when it cannot be read (logged), so callers never report such a job
    /// as unknown.
    async fn stored(&self, prompt_id: &str) -> Result<Option<StoredJob>, StoreError> {
        let Some(p) = self.inner.persist.as_ref() else {
            return Ok(None);
        };
        let id = prompt_id.to_owned();
        p.call(move |s| s.get(&id)).await.inspect_err(|e| {
            tracing::warn!(prompt_id, error = %e, "could not read the job from the store");
        })
    }

    /// One page of jobs, newest first: from the store when there is one (jobs this process
    /// follows shown as its table has them, which is never older than the store; one that
    /// no longer passes the filters is left out), else from this process's table.
    pub async fn list_jobs(&self, query: JobQuery) -> Result<JobPage, StoreError> {
        let Some(p) = &self.inner.persist else {
            return Ok(JobPage::from_snapshots(
                self.inner.lock().snapshots(),
                &query,
            ));
        };
        let asked = query.clone();
        let mut page = p.call(move |s| s.list(&asked)).await?;
        let table = self.inner.lock();
        page.jobs = std::mem::take(&mut page.jobs)
            .into_iter()
            .filter_map(|stored| match table.snapshot(&stored.prompt_id) {
                Some(live) => query.matches(&live).then_some(live),
                None => Some(stored),
            })
            .collect();
        Ok(page)
    }

    /// True when jobs are persisted in a store.
    pub fn has_store(&self) -> bool {
        self.inner.persist.is_some()
    }

    /// A receiver that sees every change of the job's snapshot.
    pub fn watch(&self, prompt_id: &str) -> Option<watch::Receiver<JobSnapshot>> {
        self.inner.lock().watch(prompt_id)
    }

    /// Waits until the job reaches a final state or `timeout` passes; returns the snapshot at
    /// that point (`None` for an unknown id; the store's error when a job this process does
    /// not hold cannot be read).
    pub async fn wait(
        &self,
        prompt_id: &str,
        timeout: Duration,
    ) -> Result<Option<JobSnapshot>, StoreError> {
        let Some(mut rx) = self.watch(prompt_id) else {
            return self.wait_stored(prompt_id, timeout).await;
        };
        let _ = tokio::time::timeout(timeout, rx.wait_for(|s| s.state.is_terminal())).await;
        let snap = rx.borrow().clone();
        Ok(Some(snap))
    }

    /// [`ComfyUi::wait`] for a job another process follows: the store is read every
    /// reconcile interval.
    async fn wait_stored(
        &self,
        prompt_id: &str,
        timeout: Duration,
    ) -> Result<Option<JobSnapshot>, StoreError> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let Some(job) = self.stored(prompt_id).await? else {
                return Ok(None);
            };
            let snap = job.snapshot;
            let now = tokio::time::Instant::now();
            if snap.state.is_terminal() || now >= deadline {
                return Ok(Some(snap));
            }
            let pause = self.inner.options.reconcile_interval.min(deadline - now);
            tokio::time::sleep(pause).await;
        }
    }

    /// Number of jobs held in memory (open and finished).
    pub fn job_count(&self) -> usize {
        self.inner.lock().len()
    }

    /// Cancels a job submitted here: a pending one is deleted from ComfyUI's queue, a running
    /// one is interrupted (targeted at its prompt id, never global) and the interrupt
    /// confirmed. A job that starts running between the queue look and the delete is
    /// interrupted instead.
    pub async fn cancel(&self, prompt_id: &str) -> Result<CancelOutcome, CancelError> {
        let inner = &self.inner;
        let Some(snap) = self.snapshot(prompt_id) else {
            if let Some(job) = self.stored(prompt_id).await? {
                return self.cancel_elsewhere(job.snapshot).await;
            }
            if let Ok(q) = inner.client.queue().await
                && q.contains(prompt_id)
            {
                return Err(CancelError::NotOurs {
                    prompt_id: prompt_id.to_owned(),
                });
            }
            return Err(CancelError::NotFound {
                prompt_id: prompt_id.to_owned(),
            });
        };
        if !inner.lock().request_cancel(prompt_id) {
            return Err(CancelError::AlreadyFinished {
                prompt_id: prompt_id.to_owned(),
                state: snap.state.to_string(),
            });
        }
        for _ in 0..5 {
            let queue = inner.client.queue().await?;
            if queue.is_running(prompt_id) {
                return self.interrupt_and_confirm(prompt_id).await;
            }
            if queue.is_pending(prompt_id) {
                inner.client.delete_queued(&[prompt_id]).await?;
                let after = inner.client.queue().await?;
                if after.is_running(prompt_id) {
                    // It started between our look and the delete: interrupt it instead.
                    return self.interrupt_and_confirm(prompt_id).await;
                }
                if after.contains(prompt_id) {
                    continue; // still pending: try again
                }
            }
            // Not in the queue (any more): deleted by us, finished, or lost. History decides.
            match inner.client.history(prompt_id).await? {
                None => {
                    inner.lock().mark_cancelled(prompt_id);
                    let snap = self.terminal_snapshot(prompt_id)?;
                    return match snap.state {
                        JobState::Cancelled => Ok(CancelOutcome::RemovedFromQueue(snap)),
                        state => Err(already(prompt_id, state)),
                    };
                }
                Some(entry) => {
                    inner.apply_history(entry);
                    let snap = self
                        .wait(prompt_id, inner.options.cancel_confirm_timeout)
                        .await?
                        .ok_or_else(|| already(prompt_id, JobState::Completed))?;
                    return match snap.state {
                        JobState::Cancelled => Ok(CancelOutcome::Interrupted(snap)),
                        state => Err(already(prompt_id, state)),
                    };
                }
            }
        }
        Err(CancelError::NotConfirmed {
            prompt_id: prompt_id.to_owned(),
            waited: Duration::ZERO,
        })
    }

    /// Interrupts the job ComfyUI is running, only if it was submitted here. `Ok(None)` when
    /// nothing runs.
    pub async fn interrupt_running(&self) -> Result<Option<String>, CancelError> {
        let queue = self.inner.client.queue().await?;
        let Some(running) = queue.running().first() else {
            return Ok(None);
        };
        let id = running.prompt_id.clone();
        let ours = self.inner.lock().contains(&id);
        if !ours && self.stored(&id).await?.is_none() {
            return Err(CancelError::RunningNotOurs { prompt_id: id });
        }
        self.cancel(&id).await?;
        Ok(Some(id))
    }

    /// Cancels a job another process follows: the cancel is recorded in the store first
    /// (forward only, so it loses to an ending already stored), then the job is deleted from
    /// ComfyUI's queue or interrupted by its prompt id. Its owner takes the stored ending.
    async fn cancel_elsewhere(&self, snap: JobSnapshot) -> Result<CancelOutcome, CancelError> {
        let inner = &self.inner;
        let id = snap.prompt_id.clone();
        if snap.state.is_terminal() {
            return Err(already(&id, snap.state));
        }
        let queue = inner.client.queue().await?;
        let running = queue.is_running(&id);
        if !queue.contains(&id) && inner.client.history(&id).await?.is_some() {
            // It finished in ComfyUI; its owner is storing the outcome.
            return Err(already(&id, JobState::Completed));
        }
        let mut ended = snap;
        ended.state = JobState::Cancelled;
        ended.queue_position = Some(0);
        ended.finished_at = Some(now_unix());
        let record = ended.clone();
        let stored = match &inner.persist {
            Some(p) => p.call(move |s| s.cancel(&record)).await,
            None => Ok(Update::Missing),
        };
        match stored {
            Ok(Update::Applied) => {}
            Ok(Update::Stale(s)) => return Err(already(&id, s.state)),
            Ok(Update::Missing) => return Err(CancelError::NotFound { prompt_id: id }),
            Err(e) => {
                tracing::warn!(prompt_id = %id, error = %e, "could not record the cancel");
                return Err(CancelError::NotConfirmed {
                    prompt_id: id,
                    waited: Duration::ZERO,
                });
            }
        }
        if running {
            inner.client.interrupt(Some(&id)).await?;
            tracing::info!(prompt_id = %id, "interrupted a job another server submitted");
            return Ok(CancelOutcome::Interrupted(ended));
        }
        inner.client.delete_queued(&[&id]).await?;
        if inner.client.queue().await?.is_running(&id) {
            inner.client.interrupt(Some(&id)).await?;
            return Ok(CancelOutcome::Interrupted(ended));
        }
        tracing::info!(prompt_id = %id, "removed a job another server submitted from ComfyUI's queue");
        Ok(CancelOutcome::RemovedFromQueue(ended))
    }

    async fn interrupt_and_confirm(&self, prompt_id: &str) -> Result<CancelOutcome, CancelError> {
        let inner = &self.inner;
        inner.client.interrupt(Some(prompt_id)).await?;
        inner.reconcile.notify_one();
        let waited = inner.options.cancel_confirm_timeout;
        let snap = self
            .wait(prompt_id, waited)
            .await?
            .ok_or_else(|| already(prompt_id, JobState::Completed))?;
        match snap.state {
            JobState::Cancelled => Ok(CancelOutcome::Interrupted(snap)),
            JobState::Completed | JobState::Failed => Err(already(prompt_id, snap.state)),
            JobState::Queued | JobState::Running => Err(CancelError::NotConfirmed {
                prompt_id: prompt_id.to_owned(),
                waited,
            }),
        }
    }

    fn terminal_snapshot(&self, prompt_id: &str) -> Result<JobSnapshot, CancelError> {
        self.snapshot(prompt_id)
            .ok_or_else(|| CancelError::NotFound {
                prompt_id: prompt_id.to_owned(),
            })
    }

    /// Whether ComfyUI has the job in its queue or history. Both are asked at once (queue
    /// through the shared snapshot), so this costs at most one request timeout.
    async fn find_in_comfyui(&self, prompt_id: &str) -> bool {
        let (queue, history) = tokio::join!(
            self.inner.queue_snapshot(),
            self.inner.client.history(prompt_id)
        );
        queue.is_ok_and(|q| q.contains(prompt_id)) || matches!(history, Ok(Some(_)))
    }
}

fn already(prompt_id: &str, state: JobState) -> CancelError {
    CancelError::AlreadyFinished {
        prompt_id: prompt_id.to_owned(),
        state: state.to_string(),
    }
}

fn decode_error(client: &ComfyClient, request: &str, reason: String) -> ClientError {
    ClientError::Decode {
        url: client.display_url().to_owned(),
        request: request.to_owned(),
        source: reason.into(),
    }
}

impl Tracked for Inner {
    fn open_ids(&self) -> Vec<String> {
        self.lock().open_ids()
    }

    fn adopt(&self, job: &StoredJob) -> Option<watch::Receiver<JobSnapshot>> {
        let mut table = self.lock();
        if table.adopt(job) {
            table.watch(&job.snapshot.prompt_id)
        } else {
            None
        }
    }

    fn settle(&self, ending: JobSnapshot) {
        self.lock().settle(ending);
    }

    fn guard_execution(
        self: Arc<Self>,
        job: watch::Receiver<JobSnapshot>,
        stop: CancellationToken,
    ) {
        let limit = self.cfg.execution_timeout;
        watchdog::watch_job(job, limit, stop, move |id| self.time_out(id));
    }

    fn output_dir(&self) -> std::path::PathBuf {
        self.cfg.output_dir.clone()
    }

    fn backend_name(&self) -> String {
        self.cfg.name()
    }
}

impl Inner {
    /// Records a job ComfyUI accepted in the store and starts writing its changes.
    async fn record_new(self: &Arc<Self>, prompt_id: &str, nodes: Vec<String>, sha: String) {
        let Some(p) = &self.persist else {
            return;
        };
        // The receiver has seen the snapshot stored: the follower writes changes after it.
        let Some((snapshot, rx)) = ({
            let table = self.lock();
            table.snapshot(prompt_id).zip(table.watch(prompt_id))
        }) else {
            return;
        };
        let job = StoredJob {
            snapshot,
            backend: self.cfg.name(),
            graph_sha256: sha,
            graph_nodes: nodes,
            cancel_requested: false,
        };
        if let Err(e) = p.call(move |s| s.insert(&job)).await {
            tracing::error!(prompt_id, error = %e, "could not record the job in the store; it is followed in memory only");
            return;
        }
        tokio::spawn(p.clone().follow(self.clone(), rx, self.token.clone(), true));
    }

    /// Before an interrupt or a disappearance ends one of our jobs: if another process
    /// recorded a cancel for it in the store, the job counts as cancelled at our request too
    /// (so it ends `cancelled`, never briefly `failed`).
    async fn take_remote_cancel(&self, prompt_id: &str) {
        let Some(p) = &self.persist else {
            return;
        };
        if self
            .lock()
            .run(prompt_id)
            .is_none_or(|r| r.cancel_requested)
        {
            return;
        }
        let id = prompt_id.to_owned();
        if let Ok(Some(job)) = p.call(move |s| s.get(&id)).await
            && (job.cancel_requested || job.snapshot.state == JobState::Cancelled)
        {
            tracing::info!(prompt_id, "another server cancelled this job");
            self.lock().request_cancel(prompt_id);
        }
    }

    fn lock(&self) -> MutexGuard<'_, JobTable> {
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    async fn system_stats(&self) -> Result<Arc<serde_json::Value>, ClientError> {
        let client = self.client.clone();
        self.stats
            .get(self.generation(), move || async move {
                client.system_stats().await.map(Arc::new)
            })
            .await
    }

    async fn queue_snapshot(&self) -> Result<Arc<QueueSnapshot>, ClientError> {
        let client = self.client.clone();
        self.queue
            .get(self.generation(), move || async move {
                client.queue().await.map(Arc::new)
            })
            .await
    }

    fn set_connected(&self, connected: bool) {
        let generation = self.generation.fetch_add(1, Ordering::SeqCst) + 1;
        self.conn.send_modify(|c| {
            c.connected = connected;
            c.generation = generation;
            if connected {
                c.connects += 1;
            }
        });
    }

    fn dispatch(self: &Arc<Self>, action: Option<Action>) {
        match action {
            Some(Action::Finalize(id)) => {
                tokio::spawn(self.clone().finalize(id, None));
            }
            Some(Action::Reconcile) => self.reconcile.notify_one(),
            Some(Action::QueueMoved) => self.queue_moved.notify_one(),
            None => {}
        }
    }

    fn apply_history(self: &Arc<Self>, entry: HistoryEntry) {
        let action = self.lock().apply_history(&entry);
        if let Some(Action::Finalize(id)) = action {
            tokio::spawn(self.clone().finalize(id, Some(entry)));
        }
    }

    /// Ends a job that passed the execution timeout: interrupts it in ComfyUI (or removes it
    /// from the queue), waits for the confirmation, and fails it as timed out either way.
    async fn time_out(self: Arc<Self>, prompt_id: String) {
        if !self
            .lock()
            .request_timeout(&prompt_id, self.cfg.execution_timeout)
        {
            return;
        }
        let stopped = match self.client.queue().await {
            Ok(q) if q.is_running(&prompt_id) => self.client.interrupt(Some(&prompt_id)).await,
            Ok(q) if q.contains(&prompt_id) => self.client.delete_queued(&[&prompt_id]).await,
            Ok(_) => Ok(()),
            Err(e) => Err(e),
        };
        if let Err(e) = stopped {
            tracing::warn!(%prompt_id, error = %e, "could not interrupt the timed-out job");
        }
        self.reconcile.notify_one();
        let job = self.lock().watch(&prompt_id);
        if let Some(mut job) = job {
            let confirmed = job.wait_for(|s| s.state.is_terminal());
            let _ = tokio::time::timeout(self.options.cancel_confirm_timeout, confirmed).await;
        }
        self.lock().finish_timed_out(&prompt_id);
    }

    /// One reconciliation pass over the open jobs.
    async fn reconcile(self: &Arc<Self>) {
        let candidates = self.lock().reconcilable();
        if candidates.is_empty() {
            return;
        }
        // Shared with concurrent status look-ups (one `GET /queue` for all of them).
        let queue = match self.queue_snapshot().await {
            Ok(q) => q,
            Err(e) => {
                tracing::debug!(error = %e, "reconciliation skipped: /queue failed");
                return;
            }
        };
        self.lock().apply_queue(&queue);
        for id in candidates {
            if queue.contains(&id) {
                continue;
            }
            match self.client.history(&id).await {
                Ok(Some(entry)) => {
                    if matches!(entry.outcome(), HistoryOutcome::Interrupted { .. }) {
                        self.take_remote_cancel(&id).await;
                    }
                    self.apply_history(entry)
                }
                Ok(None) => {
                    self.take_remote_cancel(&id).await;
                    tracing::warn!(prompt_id = %id, "job is in neither ComfyUI's queue nor its history");
                    self.lock().mark_lost(&id);
                }
                Err(e) => {
                    tracing::debug!(prompt_id = %id, error = %e, "reconciliation: /history failed")
                }
            }
        }
    }

    async fn comfyui_version(&self) -> Option<String> {
        let stats = self.system_stats().await.ok()?;
        stats
            .pointer("/system/comfyui_version")
            .and_then(|v| v.as_str())
            .map(str::to_owned)
    }

    /// The history entry of a succeeded job, and why it could not be read when it could not.
    /// When neither it nor the websocket events name an image, it is read once more after
    /// [`BackendOptions::history_retry_delay`] (ComfyUI may store the history just after it
    /// announced success).
    async fn history_for_finalize(
        &self,
        prompt_id: &str,
        known: Option<HistoryEntry>,
    ) -> (Option<HistoryEntry>, Option<ClientError>) {
        let (mut history, mut failure) = match known {
            Some(h) => (Some(h), None),
            None => match self.client.history(prompt_id).await {
                Ok(h) => (h, None),
                Err(e) => (None, Some(e)),
            },
        };
        let event_images = self
            .lock()
            .run(prompt_id)
            .is_some_and(|r| !r.event_images.is_empty());
        let history_images = history.as_ref().is_some_and(|h| !h.images().is_empty());
        if !event_images && !history_images {
            tracing::debug!(
                prompt_id,
                "succeeded job without images: reading /history again"
            );
            tokio::time::sleep(self.options.history_retry_delay).await;
            match self.client.history(prompt_id).await {
                Ok(Some(h)) => {
                    history = Some(h);
                    failure = None;
                }
                Ok(None) => failure = None,
                Err(e) => failure = Some(e),
            }
        }
        (history, failure)
    }

    /// Downloads a succeeded job's images and writes its provenance, then completes it (or
    /// fails it if the images cannot be stored).
    async fn finalize(self: Arc<Self>, prompt_id: String, history: Option<HistoryEntry>) {
        let (history, history_failure) = self.history_for_finalize(&prompt_id, history).await;
        let prepared = {
            let table = self.lock();
            let Some(run) = table.run(&prompt_id) else {
                return;
            };
            let images = match &history {
                Some(h) if !h.images().is_empty() => h.images(),
                _ => run.event_images.clone(),
            };
            let graph_sha = run.graph_sha256.clone();
            let start_ts = run
                .start_ts
                .or(history.as_ref().and_then(|h| h.start_timestamp()));
            let end_ts = run
                .end_ts
                .or(history.as_ref().and_then(|h| h.end_timestamp()));
            let mut ending = table.ending(&prompt_id, JobState::Completed, None);
            if let (Some(a), Some(b)) = (start_ts, end_ts)
                && b >= a
            {
                ending.execution_time = Some((b - a) / 1000.0);
            }
            table
                .snapshot(&prompt_id)
                .map(|snap| (snap, images, graph_sha, ending))
        };
        let Some((mut snap, images, graph_sha, mut ending)) = prepared else {
            return;
        };
        if images.is_empty() {
            let why = match &history_failure {
                Some(e) => format!("its history could not be read after a retry: {e}"),
                None if history.is_some() => "its history, read twice, lists no images".to_owned(),
                None => "ComfyUI no longer has its history (read twice)".to_owned(),
            };
            let warning = format!(
                "ComfyUI reported the job as succeeded, but no output image could be found: no image event was received and {why}"
            );
            tracing::warn!(prompt_id = %prompt_id, "{warning}");
            ending.warnings.push(warning.clone());
            snap.warnings.push(warning);
        }
        snap.images = images.clone();
        ending.images = Some(images);
        let stored =
            match outputs::download_job_images(&self.client, &snap, &self.cfg.output_dir).await {
                Ok(files) => self.postprocess(&prompt_id, files).await,
                Err(e) => Err(Undelivered::Output(e)),
            };
        match stored {
            Ok((files, postprocess_ms)) => {
                snap.files = files.clone();
                snap.state = JobState::Completed;
                snap.started_at = snap.started_at.or(ending.started_at);
                snap.finished_at = Some(ending.finished_at);
                snap.execution_time = ending.execution_time;
                snap.postprocess_ms = postprocess_ms;
                snap.postprocessing = self
                    .lock()
                    .snapshot(&prompt_id)
                    .and_then(|s| s.postprocessing);
                ending.postprocess_ms = postprocess_ms;
                let ctx = ProvenanceContext {
                    graph_sha256: graph_sha,
                    comfyui_version: self.comfyui_version().await,
                    backend_url: self.cfg.display_url(),
                };
                if let Err(e) = outputs::write_provenance(&self.cfg.output_dir, &snap, &ctx).await {
                    tracing::error!(prompt_id = %prompt_id, error = %e, "could not write provenance.json");
                }
                ending.files = Some(files);
                tracing::info!(prompt_id = %prompt_id, images = snap.files.len(), "job completed");
            }
            Err(Undelivered::Postprocess(failure)) => {
                tracing::error!(prompt_id = %prompt_id, error = %failure.message, "job finished in ComfyUI but its post-processing failed");
                ending.state = JobState::Failed;
                ending.error = Some(failure);
            }
            Err(Undelivered::Cancelled) => {
                tracing::info!(prompt_id = %prompt_id, "job cancelled during post-processing");
                ending.state = JobState::Cancelled;
            }
            Err(Undelivered::Output(e)) => {
                tracing::error!(prompt_id = %prompt_id, error = %e, "job finished but its images could not be stored");
                ending.state = JobState::Failed;
                ending.error = Some(JobFailure::message(
                    "OutputDownload",
                    format!("ComfyUI finished the job but its images could not be stored: {e}"),
                ));
            }
        }
        self.lock().finish(&prompt_id, ending);
    }

    /// Runs the job's post-processing over its downloaded `files` (see
    /// [`crate::postprocess`]); returns them as delivered and the stage's time. A job without
    /// post-processing passes through untouched; one that needs it but has no processor (it
    /// was adopted after a restart) fails, its unprocessed images withheld.
    async fn postprocess(
        &self,
        prompt_id: &str,
        files: Vec<SavedImage>,
    ) -> Result<(Vec<SavedImage>, Option<f64>), Undelivered> {
        let (snapshot, processor) = {
            let table = self.lock();
            (
                table.snapshot(prompt_id),
                table.run(prompt_id).and_then(|r| r.processor.clone()),
            )
        };
        let Some(snapshot) = snapshot.filter(|s| s.postprocessing.is_some()) else {
            return Ok((files, None));
        };
        let options = self.options.postprocess;
        let dir = outputs::job_dir(&self.cfg.output_dir, prompt_id);
        let processor = match processor.map_or_else(|| self.reattach(&snapshot), Ok) {
            Ok(processor) => processor,
            Err(reason) => {
                stage::withhold(&files, options.keep_raw, &dir).await;
                return Err(Undelivered::Postprocess(stage::adopted_failure(&reason)));
            }
        };
        let observer = JobObserver {
            inner: self,
            prompt_id,
        };
        let slots = &self.postprocess_slots;
        match stage::run(processor, options, slots, &dir, files, &observer).await {
            Ok(done) => Ok((done.files, Some(done.ms))),
            Err(stage::StageError::Cancelled) => Err(Undelivered::Cancelled),
            Err(stage::StageError::Failed(failure)) => {
                Err(Undelivered::Postprocess(failure.job_failure()))
            }
        }
    }

    /// The processor of a job adopted after a restart, made again by the configured
    /// [`ProcessorSource`]; or why it cannot be.
    fn reattach(&self, job: &JobSnapshot) -> Result<Arc<dyn OutputProcessor>, String> {
        let Some(source) = &self.options.processors else {
            return Err("this server has no source of post-processors".to_owned());
        };
        let processor = source.processor_for(job).map_err(|e| e.message)?;
        tracing::info!(prompt_id = %job.prompt_id, "post-processor of an adopted job made again");
        Ok(processor)
    }
}

/// Why a job that succeeded in ComfyUI delivers no images.
enum Undelivered {
    /// Downloading or storing ComfyUI's images failed.
    Output(outputs::OutputError),
    /// Post-processing failed (or could not run).
    Postprocess(JobFailure),
    /// A cancel arrived during post-processing.
    Cancelled,
}

/// What the post-processing stage sees of its job in the table.
struct JobObserver<'a> {
    inner: &'a Inner,
    prompt_id: &'a str,
}

impl stage::StageObserver for JobObserver<'_> {
    fn progress(&self, done: u32, total: u32) {
        self.inner
            .lock()
            .postprocess_progress(self.prompt_id, done, total);
    }

    fn cancelled(&self) -> bool {
        self.inner
            .lock()
            .run(self.prompt_id)
            .is_some_and(|r| r.cancel_requested)
    }
}

async fn event_loop(inner: Arc<Inner>, mut rx: mpsc::Receiver<WsSignal>, token: CancellationToken) {
    loop {
        let signal = tokio::select! {
            _ = token.cancelled() => return,
            s = rx.recv() => match s { Some(s) => s, None => return },
        };
        match signal {
            WsSignal::Connected { first } => {
                tracing::debug!(first, "websocket connected: reconciling open jobs");
                inner.set_connected(true);
                inner.reconcile.notify_one();
            }
            WsSignal::Disconnected { .. } => inner.set_connected(false),
            WsSignal::Event(event) => {
                if let Event::ExecutionInterrupted { prompt_id, .. } = &event {
                    inner.take_remote_cancel(prompt_id).await;
                }
                let action = inner.lock().apply_event(&event);
                inner.dispatch(action);
            }
        }
    }
}

/// Runs reconciliation passes: at once when woken through `reconcile`; within
/// `submit_settle` of a submission or a queue move (one pass for all in that window), spaced by
/// [`RECONCILE_DUTY`] times the last pass's duration; and every `reconcile_interval` while
/// jobs are open; asleep while none is.
async fn reconcile_loop(inner: Arc<Inner>, token: CancellationToken) {
    use tokio::time::Instant;
    const IDLE: Duration = Duration::from_secs(3600);
    let mut next: Option<Instant> = None;
    // When the last pass ended, and how long it took.
    let mut last = (Instant::now(), Duration::ZERO);
    loop {
        let period = if inner.lock().has_open() {
            inner.options.reconcile_interval
        } else {
            IDLE
        };
        let deadline = *next.get_or_insert_with(|| Instant::now() + period);
        tokio::select! {
            _ = token.cancelled() => return,
            _ = inner.reconcile.notified() => {}
            _ = inner.queue_moved.notified() => {
                let settled = Instant::now() + inner.options.submit_settle;
                let spaced = last.0 + last.1 * RECONCILE_DUTY;
                next = Some(deadline.min(settled.max(spaced)));
                continue;
            }
            _ = tokio::time::sleep_until(deadline) => {}
        }
        next = None;
        let started = Instant::now();
        inner.reconcile().await;
        last = (Instant::now(), started.elapsed());
    }
}
