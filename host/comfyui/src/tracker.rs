//! The job table: a synchronous state machine that turns websocket events, queue snapshots and
//! history entries into [`JobSnapshot`]s. No I/O here; `jobs.rs` drives it.
//!
//! Invariants: a job's state only moves forward and its progress never decreases; a terminal
//! job drops its run-time bookkeeping (memory stays flat: no per-event growth, only the
//! snapshot is kept); at most `max_finished` terminal jobs are kept, the oldest finished are
//! evicted first; only jobs registered here (ours) are ever touched by events; a job is
//! handed out for finalisation (image download) exactly once.

use std::collections::{HashMap, HashSet, VecDeque};

use serde_json::Value;
use tokio::sync::watch;

use crate::client::{HistoryEntry, HistoryOutcome, QueueSnapshot, SubmitAccepted};
use crate::events::{Event, ExecutionErrorInfo};
use crate::postprocess::{OutputProcessor, PostprocessProgress};
use crate::snapshot::{JobFailure, JobRequest, JobSnapshot, JobState, now_unix};
use crate::types::ImageRef;

/// Progress shown until the job is really complete (images downloaded).
const MAX_OPEN_PROGRESS: f64 = 0.99;
/// Where ComfyUI's execution stops counting for a job that post-processes its images: the
/// rest, up to [`MAX_OPEN_PROGRESS`], is the post-processing stage's.
const POSTPROCESS_PROGRESS_START: f64 = 0.9;
/// Cap on images remembered from `executed` events per job.
const MAX_EVENT_IMAGES: usize = 10_000;

/// Message used when a job vanished from ComfyUI.
pub const LOST_MESSAGE: &str = "ComfyUI restarted and lost the job: it is neither in ComfyUI's queue nor in its history (history lives in memory only), or it was removed from the queue outside this server";

/// What the driver must do after an update.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// The job succeeded: download its images, then complete it.
    Finalize(String),
    /// Ask ComfyUI (`/queue`, `/history`) where the open jobs are, now (an event was missed).
    Reconcile,
    /// ComfyUI's queue moved while jobs of ours wait in it: their positions are to be read
    /// again, soon (one read for every such change in a short window).
    QueueMoved,
}

/// Run-time bookkeeping of an open job.
#[derive(Debug)]
pub(crate) struct RunTrack {
    /// The POST was answered: the job is in ComfyUI's queue or history.
    pub posted: bool,
    nodes: HashSet<String>,
    done: HashSet<String>,
    current: Option<String>,
    current_frac: f64,
    success_seen: bool,
    /// Handed out for finalisation.
    pub finalizing: bool,
    /// A cancel was asked for: an interrupt or disappearance means "cancelled".
    pub cancel_requested: bool,
    /// The execution timeout passed (this limit): an interrupt or disappearance means
    /// "failed by timeout" ([`crate::watchdog`]).
    pub timed_out: Option<std::time::Duration>,
    pub event_images: Vec<ImageRef>,
    pub graph_sha256: String,
    /// ComfyUI clock (ms) of execution start / end.
    pub start_ts: Option<f64>,
    pub end_ts: Option<f64>,
    /// The request's post-processor (none for an adopted job: it lived in its gone server and
    /// is made again at finalisation, see [`crate::reattach`]).
    pub processor: Option<std::sync::Arc<dyn OutputProcessor>>,
    /// The job post-processes its images (it has a processor, or had one before adoption).
    postprocesses: bool,
}

impl RunTrack {
    fn progress(&self) -> f64 {
        let total = self.nodes.len().max(1) as f64;
        let mut done = self.done.len() as f64;
        if let Some(c) = &self.current
            && self.nodes.contains(c)
            && !self.done.contains(c)
        {
            done += self.current_frac.clamp(0.0, 1.0);
        }
        let max = if self.postprocesses {
            POSTPROCESS_PROGRESS_START
        } else {
            MAX_OPEN_PROGRESS
        };
        (done / total).clamp(0.0, max)
    }

    fn mark_done(&mut self, node: &str) {
        if self.nodes.contains(node) {
            self.done.insert(node.to_owned());
        }
    }

    fn enter_node(&mut self, node: &str) {
        if self.current.as_deref() != Some(node) {
            if let Some(prev) = self.current.take() {
                self.mark_done(&prev);
            }
            self.current = Some(node.to_owned());
            self.current_frac = 0.0;
        }
    }
}

/// One job: its published snapshot and, while open, its bookkeeping.
#[derive(Debug)]
pub(crate) struct JobEntry {
    pub tx: watch::Sender<JobSnapshot>,
    pub run: Option<Box<RunTrack>>,
}

/// All jobs this process submitted (open ones and the most recent finished ones).
#[derive(Debug)]
pub(crate) struct JobTable {
    jobs: HashMap<String, JobEntry>,
    finished: VecDeque<String>,
    max_finished: usize,
}

/// How a job ends (for [`JobTable::finish`]).
#[derive(Debug, Clone)]
pub(crate) struct Ending {
    pub state: JobState,
    pub error: Option<JobFailure>,
    pub images: Option<Vec<ImageRef>>,
    pub files: Option<Vec<crate::snapshot::SavedImage>>,
    pub finished_at: f64,
    pub execution_time: Option<f64>,
    /// Milliseconds of the post-processing stage, when it ran to the end.
    pub postprocess_ms: Option<f64>,
    pub started_at: Option<f64>,
    /// Added to the snapshot's warnings.
    pub warnings: Vec<String>,
}

impl JobTable {
    pub fn new(max_finished: usize) -> Self {
        Self {
            jobs: HashMap::new(),
            finished: VecDeque::new(),
            max_finished: max_finished.max(1),
        }
    }

    /// Registers a job before it is posted (events may arrive before the POST answer).
    pub fn register(
        &mut self,
        prompt_id: &str,
        req: &JobRequest,
        graph_sha256: String,
        backend: &str,
    ) -> JobSnapshot {
        let nodes: HashSet<String> = req
            .graph
            .as_object()
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default();
        let snap = JobSnapshot {
            prompt_id: prompt_id.to_owned(),
            state: JobState::Queued,
            progress: 0.0,
            queue_position: None,
            execution_time: None,
            postprocess_ms: None,
            postprocessing: req.postprocess.is_some().then(PostprocessProgress::default),
            images: Vec::new(),
            files: Vec::new(),
            error: None,
            node_errors: Value::Object(Default::default()),
            submitted_at: now_unix(),
            started_at: None,
            finished_at: None,
            origin: req.origin.clone(),
            parameters: req.parameters.clone(),
            metadata: req.metadata.clone(),
            backend: backend.to_owned(),
            warnings: Vec::new(),
        };
        let (tx, _) = watch::channel(snap.clone());
        self.jobs.insert(
            prompt_id.to_owned(),
            JobEntry {
                tx,
                run: Some(Box::new(RunTrack {
                    posted: false,
                    nodes,
                    done: HashSet::new(),
                    current: None,
                    current_frac: 0.0,
                    success_seen: false,
                    finalizing: false,
                    cancel_requested: false,
                    timed_out: None,
                    event_images: Vec::new(),
                    graph_sha256,
                    start_ts: None,
                    end_ts: None,
                    processor: req.postprocess.clone(),
                    postprocesses: req.postprocess.is_some(),
                })),
            },
        );
        snap
    }

    /// Follows a job another server submitted and left open (adopted from the job store):
    /// already posted, progress measured over `graph_nodes`. False when already followed.
    pub fn adopt(&mut self, job: &crate::store::StoredJob) -> bool {
        let id = &job.snapshot.prompt_id;
        if self.jobs.contains_key(id) || job.snapshot.state.is_terminal() {
            return false;
        }
        let mut snapshot = job.snapshot.clone();
        snapshot.backend.clone_from(&job.backend);
        let (tx, _) = watch::channel(snapshot);
        let run = RunTrack {
            posted: true,
            nodes: job.graph_nodes.iter().cloned().collect(),
            done: HashSet::new(),
            current: None,
            current_frac: 0.0,
            success_seen: false,
            finalizing: false,
            cancel_requested: job.cancel_requested,
            timed_out: None,
            event_images: Vec::new(),
            graph_sha256: job.graph_sha256.clone(),
            start_ts: None,
            end_ts: None,
            processor: None,
            postprocesses: job.snapshot.postprocessing.is_some(),
        };
        self.jobs.insert(
            id.clone(),
            JobEntry {
                tx,
                run: Some(Box::new(run)),
            },
        );
        true
    }

    /// Takes the ending the job store holds (it ended elsewhere): the job becomes terminal
    /// with exactly that snapshot.
    pub fn settle(&mut self, ending: JobSnapshot) {
        let id = ending.prompt_id.clone();
        let Some(entry) = self.jobs.get_mut(&id) else {
            return;
        };
        let was_open = entry.run.take().is_some();
        entry.tx.send_replace(ending);
        if was_open {
            self.finished.push_back(id);
            self.evict();
        }
    }

    /// Ids of the open jobs.
    pub fn open_ids(&self) -> Vec<String> {
        self.jobs
            .iter()
            .filter(|(_, e)| e.run.is_some())
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// Every snapshot held (for listing without a store).
    pub fn snapshots(&self) -> Vec<JobSnapshot> {
        self.jobs.values().map(|e| e.tx.borrow().clone()).collect()
    }

    /// Forgets a job whose POST failed.
    pub fn remove(&mut self, prompt_id: &str) {
        self.jobs.remove(prompt_id);
    }

    /// Adds a warning to a job's snapshot (e.g. that it moved from another backend).
    pub fn note(&mut self, prompt_id: &str, warning: String) {
        if let Some(entry) = self.jobs.get(prompt_id) {
            entry.tx.send_modify(|s| s.warnings.push(warning));
        }
    }

    /// How many jobs are open (queued or running).
    pub fn open_count(&self) -> usize {
        self.jobs.values().filter(|e| e.run.is_some()).count()
    }

    /// Stops following an open job that moves to another backend (queued; running too when
    /// `running_too`): its entry is removed, nothing is ended. Returns its last snapshot;
    /// `None` when the job is not held, already ended, being finalised, or running and
    /// `running_too` is false.
    pub fn release(&mut self, prompt_id: &str, running_too: bool) -> Option<JobSnapshot> {
        let entry = self.jobs.get(prompt_id)?;
        let run = entry.run.as_deref()?;
        let snap = entry.tx.borrow().clone();
        let movable =
            snap.state == JobState::Queued || (running_too && snap.state == JobState::Running);
        if !movable || run.finalizing {
            return None;
        }
        self.jobs.remove(prompt_id);
        Some(snap)
    }

    /// Ends an open job as failed with `failure` (e.g. its backend stopped answering); false
    /// when it is not open or already being finalised.
    pub fn fail(&mut self, prompt_id: &str, failure: JobFailure) -> bool {
        if self.run(prompt_id).is_none_or(|r| r.finalizing) {
            return false;
        }
        self.finish(
            prompt_id,
            self.ending(prompt_id, JobState::Failed, Some(failure)),
        );
        true
    }

    /// Records ComfyUI's acceptance; re-keys the job if ComfyUI chose another id (old
    /// servers ignore ours). Returns the current snapshot.
    pub fn accepted(&mut self, ours: &str, acc: &SubmitAccepted) -> Option<JobSnapshot> {
        if acc.prompt_id != ours
            && let Some(entry) = self.jobs.remove(ours)
        {
            tracing::warn!(ours, theirs = %acc.prompt_id, "ComfyUI ignored our prompt_id; tracking its id instead");
            entry
                .tx
                .send_modify(|s| s.prompt_id = acc.prompt_id.clone());
            self.jobs.insert(acc.prompt_id.clone(), entry);
        }
        let entry = self.jobs.get_mut(&acc.prompt_id)?;
        if let Some(run) = entry.run.as_deref_mut() {
            run.posted = true;
        }
        let node_errors = acc.node_errors.clone();
        entry.tx.send_if_modified(|s| {
            let has_errors = node_errors.as_object().is_some_and(|m| !m.is_empty());
            if has_errors {
                s.node_errors = node_errors;
            }
            has_errors
        });
        Some(entry.tx.borrow().clone())
    }

    pub fn snapshot(&self, prompt_id: &str) -> Option<JobSnapshot> {
        self.jobs.get(prompt_id).map(|e| e.tx.borrow().clone())
    }

    pub fn watch(&self, prompt_id: &str) -> Option<watch::Receiver<JobSnapshot>> {
        self.jobs.get(prompt_id).map(|e| e.tx.subscribe())
    }

    pub fn contains(&self, prompt_id: &str) -> bool {
        self.jobs.contains_key(prompt_id)
    }

    /// Number of jobs held (open and finished).
    pub fn len(&self) -> usize {
        self.jobs.len()
    }

    pub fn run(&self, prompt_id: &str) -> Option<&RunTrack> {
        self.jobs.get(prompt_id)?.run.as_deref()
    }

    /// Open jobs whose POST was answered and that are not being finalised.
    pub fn reconcilable(&self) -> Vec<String> {
        self.jobs
            .iter()
            .filter(|(_, e)| e.run.as_deref().is_some_and(|r| r.posted && !r.finalizing))
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// True when any job is not finished yet.
    pub fn has_open(&self) -> bool {
        self.jobs.values().any(|e| e.run.is_some())
    }

    /// True when any open job is still queued.
    pub fn has_queued(&self) -> bool {
        self.jobs
            .values()
            .any(|e| e.run.is_some() && e.tx.borrow().state == JobState::Queued)
    }

    /// Records how far a finalising job's post-processing is (`done` of `total` images) and
    /// moves its progress through the stage's share (from 0.9, the image being processed
    /// counting half, to 0.99 when all are done). Unlike event updates this applies while the
    /// job is being finalised, and only then.
    pub fn postprocess_progress(&mut self, prompt_id: &str, done: u32, total: u32) {
        let Some(entry) = self.jobs.get_mut(prompt_id) else {
            return;
        };
        if !entry.run.as_deref().is_some_and(|r| r.finalizing) {
            return;
        }
        let now = PostprocessProgress { done, total };
        let share = f64::from(2 * done.min(total) + 1) / f64::from(2 * total + 1);
        let progress =
            POSTPROCESS_PROGRESS_START + (MAX_OPEN_PROGRESS - POSTPROCESS_PROGRESS_START) * share;
        entry.tx.send_if_modified(|s| {
            let changed = s.postprocessing != Some(now) || progress > s.progress;
            s.postprocessing = Some(now);
            s.progress = s.progress.max(progress).min(MAX_OPEN_PROGRESS);
            changed
        });
    }

    /// Marks a cancel request; false when the job is unknown or already finished.
    pub fn request_cancel(&mut self, prompt_id: &str) -> bool {
        match self
            .jobs
            .get_mut(prompt_id)
            .and_then(|e| e.run.as_deref_mut())
        {
            Some(run) => {
                run.cancel_requested = true;
                true
            }
            None => false,
        }
    }

    /// Marks a job as over the execution timeout `limit`; false when it is unknown, already
    /// finished or being finalised (it succeeded in time).
    pub fn request_timeout(&mut self, prompt_id: &str, limit: std::time::Duration) -> bool {
        match self
            .jobs
            .get_mut(prompt_id)
            .and_then(|e| e.run.as_deref_mut())
        {
            Some(run) if !run.finalizing => {
                run.timed_out = Some(limit);
                true
            }
            _ => false,
        }
    }

    /// Ends a job marked by [`JobTable::request_timeout`] as failed by the timeout, if it is
    /// still open (ComfyUI did not confirm the interrupt).
    pub fn finish_timed_out(&mut self, prompt_id: &str) {
        if let Some(limit) = self
            .run(prompt_id)
            .filter(|r| !r.finalizing)
            .and_then(|r| r.timed_out)
        {
            let failure = crate::watchdog::timeout_failure(limit);
            self.finish(
                prompt_id,
                self.ending(prompt_id, JobState::Failed, Some(failure)),
            );
        }
    }

    /// Applies one websocket event; returns what the driver must do next.
    pub fn apply_event(&mut self, event: &Event) -> Option<Action> {
        match event {
            Event::Status { .. } => self.has_queued().then_some(Action::QueueMoved),
            Event::ExecutionStart {
                prompt_id,
                timestamp,
            } => {
                self.update(prompt_id, |snap, run| {
                    run.start_ts = run.start_ts.or(*timestamp);
                    mark_running(snap)
                });
                None
            }
            Event::ExecutionCached { prompt_id, nodes } => {
                self.update(prompt_id, |snap, run| {
                    for n in nodes {
                        run.mark_done(n);
                    }
                    mark_running(snap) | raise_progress(snap, run)
                });
                None
            }
            Event::Executing {
                node: Some(node),
                prompt_id,
            } => {
                // After a reconnect ComfyUI replays `executing` without prompt_id: it can only
                // be the job that is running, if that is one of ours.
                let id = match prompt_id {
                    Some(id) => Some(id.clone()),
                    None => self.single_running(),
                };
                if let Some(id) = id {
                    self.update(&id, |snap, run| {
                        run.enter_node(node);
                        mark_running(snap) | raise_progress(snap, run)
                    });
                }
                None
            }
            Event::Executing {
                node: None,
                prompt_id: Some(id),
            } => {
                let run = self.jobs.get_mut(id)?.run.as_deref_mut()?;
                if run.finalizing {
                    return None;
                }
                if run.success_seen {
                    run.finalizing = true;
                    Some(Action::Finalize(id.clone()))
                } else {
                    // The outcome message was missed (socket gap): ask /history.
                    Some(Action::Reconcile)
                }
            }
            Event::Executing { .. } => None,
            Event::Progress {
                value,
                max,
                node,
                prompt_id: Some(id),
            } => {
                self.update(id, |snap, run| {
                    if let Some(node) = node {
                        run.enter_node(node);
                    }
                    if *max > 0.0 {
                        run.current_frac = (value / max).clamp(0.0, 1.0);
                    }
                    mark_running(snap) | raise_progress(snap, run)
                });
                None
            }
            Event::Progress { .. } => None,
            Event::ProgressState { prompt_id, nodes } => {
                self.update(prompt_id, |snap, run| {
                    for (id, np) in nodes {
                        match np.state.as_str() {
                            "finished" => run.mark_done(id),
                            "running" => {
                                run.enter_node(id);
                                if np.max > 0.0 {
                                    run.current_frac = (np.value / np.max).clamp(0.0, 1.0);
                                }
                            }
                            _ => {}
                        }
                    }
                    mark_running(snap) | raise_progress(snap, run)
                });
                None
            }
            Event::Executed {
                prompt_id, images, ..
            } => {
                self.update(prompt_id, |_, run| {
                    let room = MAX_EVENT_IMAGES.saturating_sub(run.event_images.len());
                    run.event_images.extend(images.iter().take(room).cloned());
                    false
                });
                None
            }
            Event::ExecutionSuccess {
                prompt_id,
                timestamp,
            } => {
                self.update(prompt_id, |_, run| {
                    run.success_seen = true;
                    run.end_ts = timestamp.or(run.end_ts);
                    false
                });
                None
            }
            Event::ExecutionError(info) => {
                self.fail_with(info);
                None
            }
            Event::ExecutionInterrupted {
                prompt_id,
                node_id,
                node_type,
                timestamp,
            } => {
                self.interrupted(prompt_id, node_id.clone(), node_type.clone(), *timestamp);
                None
            }
            Event::FeatureFlags(_) | Event::Preview { .. } | Event::Unknown { .. } => None,
        }
    }

    /// Applies a `/queue` snapshot: queue positions, and "running" for jobs that started.
    pub fn apply_queue(&mut self, queue: &QueueSnapshot) {
        let ids: Vec<String> = self
            .jobs
            .iter()
            .filter(|(_, e)| e.run.is_some())
            .map(|(id, _)| id.clone())
            .collect();
        for id in ids {
            let Some(pos) = queue.position(&id) else {
                continue;
            };
            let running = queue.is_running(&id);
            self.update(&id, |snap, _| {
                if running {
                    mark_running(snap)
                } else if snap.state == JobState::Queued && snap.queue_position != Some(pos) {
                    snap.queue_position = Some(pos);
                    true
                } else {
                    false
                }
            });
        }
    }

    /// Applies a job's `/history` entry (it has left the queue). Returns `Finalize` when it
    /// succeeded and must now be downloaded.
    pub fn apply_history(&mut self, entry: &HistoryEntry) -> Option<Action> {
        let id = &entry.prompt_id;
        let run = self.jobs.get_mut(id)?.run.as_deref_mut()?;
        if run.finalizing {
            return None;
        }
        run.start_ts = run.start_ts.or(entry.start_timestamp());
        run.end_ts = entry.end_timestamp().or(run.end_ts);
        match entry.outcome() {
            HistoryOutcome::Success => {
                run.finalizing = true;
                Some(Action::Finalize(id.clone()))
            }
            HistoryOutcome::Error(info) => {
                self.fail_with(&info);
                None
            }
            HistoryOutcome::Interrupted { node_id, node_type } => {
                self.interrupted(id, node_id, node_type, entry.end_timestamp());
                None
            }
        }
    }

    /// The job is in neither the queue nor the history: cancelled if we asked for it,
    /// otherwise failed as lost.
    pub fn mark_lost(&mut self, prompt_id: &str) {
        let Some(run) = self.run(prompt_id) else {
            return;
        };
        if !run.posted || run.finalizing {
            return;
        }
        if run.timed_out.is_some() {
            self.finish_timed_out(prompt_id);
        } else if run.cancel_requested {
            self.finish(prompt_id, self.ending(prompt_id, JobState::Cancelled, None));
        } else {
            let failure = JobFailure::message("JobLost", LOST_MESSAGE);
            self.finish(
                prompt_id,
                self.ending(prompt_id, JobState::Failed, Some(failure)),
            );
        }
    }

    /// A cancelled pending job (deleted from ComfyUI's queue).
    pub fn mark_cancelled(&mut self, prompt_id: &str) {
        if self.run(prompt_id).is_some_and(|r| !r.finalizing) {
            self.finish(prompt_id, self.ending(prompt_id, JobState::Cancelled, None));
        }
    }

    /// An ending for `prompt_id` with timing filled in from what is known now.
    pub fn ending(&self, prompt_id: &str, state: JobState, error: Option<JobFailure>) -> Ending {
        let finished_at = now_unix();
        let (snap, run) = match self.jobs.get(prompt_id) {
            Some(e) => (Some(e.tx.borrow().clone()), e.run.as_deref()),
            None => (None, None),
        };
        let started_at = snap
            .as_ref()
            .and_then(|s| s.started_at)
            .or_else(|| run.and_then(|r| r.start_ts).map(|ms| ms / 1000.0));
        let execution_time = match (run.and_then(|r| r.start_ts), run.and_then(|r| r.end_ts)) {
            (Some(a), Some(b)) if b >= a => Some((b - a) / 1000.0),
            _ => started_at.map(|s| (finished_at - s).max(0.0)),
        };
        Ending {
            state,
            error,
            images: None,
            files: None,
            finished_at,
            execution_time,
            postprocess_ms: None,
            started_at,
            warnings: Vec::new(),
        }
    }

    /// Moves a job to a terminal state, drops its bookkeeping and evicts the oldest finished
    /// jobs beyond the cap.
    pub fn finish(&mut self, prompt_id: &str, ending: Ending) {
        let Some(entry) = self.jobs.get_mut(prompt_id) else {
            return;
        };
        if entry.run.take().is_none() {
            return; // already terminal
        }
        entry.tx.send_modify(|s| {
            s.state = ending.state;
            s.queue_position = Some(0);
            if ending.state == JobState::Completed {
                s.progress = 1.0;
            }
            s.error = ending.error;
            if let Some(images) = ending.images {
                s.images = images;
            }
            if let Some(files) = ending.files {
                s.files = files;
            }
            s.started_at = s.started_at.or(ending.started_at);
            s.finished_at = Some(ending.finished_at);
            s.execution_time = ending.execution_time;
            s.postprocess_ms = ending.postprocess_ms.or(s.postprocess_ms);
            s.warnings.extend(ending.warnings);
        });
        self.finished.push_back(prompt_id.to_owned());
        self.evict();
    }

    fn evict(&mut self) {
        while self.finished.len() > self.max_finished {
            if let Some(old) = self.finished.pop_front() {
                self.jobs.remove(&old);
            }
        }
    }

    fn fail_with(&mut self, info: &ExecutionErrorInfo) {
        let id = &info.prompt_id;
        let Some(run) = self.jobs.get_mut(id).and_then(|e| e.run.as_deref_mut()) else {
            return;
        };
        if run.finalizing {
            return;
        }
        run.end_ts = info.timestamp.or(run.end_ts);
        let message = info.exception_message.trim_end().to_owned();
        let failure = JobFailure {
            kind: crate::snapshot::FailureKind::Execution,
            node_id: info.node_id.clone(),
            node_type: info.node_type.clone(),
            exception_type: (!info.exception_type.is_empty()).then(|| info.exception_type.clone()),
            message: match (&info.node_id, &info.node_type) {
                (Some(n), Some(t)) => format!("node {n} ({t}) failed: {message}"),
                _ => message,
            },
        };
        self.finish(id, self.ending(id, JobState::Failed, Some(failure)));
    }

    fn interrupted(
        &mut self,
        prompt_id: &str,
        node_id: Option<String>,
        node_type: Option<String>,
        timestamp: Option<f64>,
    ) {
        let Some(run) = self
            .jobs
            .get_mut(prompt_id)
            .and_then(|e| e.run.as_deref_mut())
        else {
            return;
        };
        if run.finalizing {
            return;
        }
        run.end_ts = timestamp.or(run.end_ts);
        if run.timed_out.is_some() {
            self.finish_timed_out(prompt_id);
        } else if run.cancel_requested {
            self.finish(prompt_id, self.ending(prompt_id, JobState::Cancelled, None));
        } else {
            let failure = JobFailure {
                kind: crate::snapshot::FailureKind::Execution,
                node_id,
                node_type,
                exception_type: Some("Interrupted".into()),
                message: "ComfyUI interrupted the job, but not at this server's request (someone interrupted it in ComfyUI)".into(),
            };
            self.finish(
                prompt_id,
                self.ending(prompt_id, JobState::Failed, Some(failure)),
            );
        }
    }

    fn single_running(&self) -> Option<String> {
        let mut running = self.jobs.iter().filter(|(_, e)| {
            e.run.as_deref().is_some_and(|r| !r.finalizing)
                && e.tx.borrow().state == JobState::Running
        });
        let first = running.next()?;
        running.next().is_none().then(|| first.0.clone())
    }

    /// Runs `f` on an open job's snapshot and bookkeeping; watchers are notified when `f`
    /// returns true.
    fn update(&mut self, prompt_id: &str, f: impl FnOnce(&mut JobSnapshot, &mut RunTrack) -> bool) {
        let Some(entry) = self.jobs.get_mut(prompt_id) else {
            return;
        };
        let Some(run) = entry.run.as_deref_mut() else {
            return;
        };
        if run.finalizing {
            return;
        }
        entry.tx.send_if_modified(|snap| f(snap, run));
    }
}

fn mark_running(snap: &mut JobSnapshot) -> bool {
    if snap.state == JobState::Queued {
        snap.state = JobState::Running;
        snap.queue_position = Some(0);
        snap.started_at = Some(now_unix());
        true
    } else {
        false
    }
}

fn raise_progress(snap: &mut JobSnapshot, run: &RunTrack) -> bool {
    let p = run.progress();
    if p > snap.progress {
        snap.progress = p;
        true
    } else {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::parse_text;
    use crate::snapshot::JobOrigin;
    use serde_json::json;

    fn transcripts() -> std::path::PathBuf {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/transcripts")
    }

    /// The graph posted in a recorded session, and the session's events.
    fn session(ws_file: &str) -> (String, Value, Vec<Event>) {
        let text = std::fs::read_to_string(transcripts().join(ws_file)).unwrap();
        let mut lines = text.lines();
        let header: Value = serde_json::from_str(lines.next().unwrap()).unwrap();
        let prompt_id = header["prompt_id"].as_str().unwrap().to_owned();
        let events = lines
            .filter_map(|l| {
                let v: Value = serde_json::from_str(l).unwrap();
                (v["frame"] == "text").then(|| parse_text(&v["msg"].to_string()).unwrap())
            })
            .collect();
        (prompt_id, header, events)
    }

    fn request(graph: Value) -> JobRequest {
        JobRequest {
            graph,
            origin: JobOrigin::Workflow {
                path: "w.json".into(),
                sha256: "00".into(),
            },
            parameters: json!({"seed": 1}),
            metadata: json!({}),
            postprocess: None,
        }
    }

    fn prompt_graph(file: &str) -> Value {
        let v: Value =
            serde_json::from_str(&std::fs::read_to_string(transcripts().join(file)).unwrap())
                .unwrap();
        v["request"]["json_body"]["prompt"].clone()
    }

    /// The recorded interrupt during sampling, its job registered and accepted.
    fn interrupted_session() -> (String, JobTable, Vec<Event>) {
        let (id, _, events) = session("ws_interrupt_during_sampling.jsonl");
        let mut t = JobTable::new(10);
        t.register(
            &id,
            &request(prompt_graph("prompt_t2i_tiny.json")),
            "h".into(),
            "sim",
        );
        accept(&mut t, &id);
        (id, t, events)
    }

    fn accept(t: &mut JobTable, id: &str) {
        t.accepted(
            id,
            &SubmitAccepted {
                prompt_id: id.into(),
                number: 1.0,
                node_errors: json!({}),
            },
        );
    }

    #[test]
    fn success_session_runs_monotone_then_asks_to_finalize_once() {
        let (id, _, events) = session("ws_success.jsonl");
        let mut t = JobTable::new(10);
        t.register(
            &id,
            &request(prompt_graph("prompt_ok.json")),
            "h".into(),
            "sim",
        );
        accept(&mut t, &id);
        let mut last = 0.0;
        let mut actions = Vec::new();
        for ev in &events {
            if let Some(a) = t.apply_event(ev) {
                actions.push(a);
            }
            let s = t.snapshot(&id).unwrap();
            assert!(
                s.progress >= last,
                "progress went back {last} -> {}",
                s.progress
            );
            assert!(s.progress <= MAX_OPEN_PROGRESS);
            last = s.progress;
        }
        assert!(last > 0.6, "progress only reached {last}");
        assert_eq!(
            actions
                .iter()
                .filter(|a| **a == Action::Finalize(id.clone()))
                .count(),
            1
        );
        assert_eq!(t.snapshot(&id).unwrap().state, JobState::Running);
        // Events after hand-out change nothing; a second end-of-job gives no second hand-out.
        for ev in &events {
            assert_ne!(t.apply_event(ev), Some(Action::Finalize(id.clone())));
        }
    }

    #[test]
    fn sampler_steps_move_progress_inside_a_node() {
        // Same graph layout as the tiny t2i recording (20 steps instead of 2).
        let (id, mut t, events) = interrupted_session();
        let mut seen = Vec::new();
        for ev in &events {
            let is_progress = matches!(ev, Event::Progress { .. });
            t.apply_event(ev);
            if is_progress {
                seen.push(t.snapshot(&id).unwrap().progress);
            }
        }
        assert!(seen.len() >= 3);
        assert!(seen.windows(2).all(|w| w[1] > w[0]), "{seen:?}");
        // Not requested by us: an interrupt is a failure naming the node.
        let s = t.snapshot(&id).unwrap();
        assert_eq!(s.state, JobState::Failed);
        assert_eq!(s.error.unwrap().node_type.as_deref(), Some("KSampler"));
    }

    #[test]
    fn requested_interrupt_is_cancelled() {
        let (id, mut t, events) = interrupted_session();
        assert!(t.request_cancel(&id));
        for ev in &events {
            t.apply_event(ev);
        }
        let s = t.snapshot(&id).unwrap();
        assert_eq!(s.state, JobState::Cancelled);
        assert!(s.error.is_none());
        assert!(
            !t.request_cancel(&id),
            "finished jobs cannot be cancelled again"
        );
    }

    #[test]
    fn an_interrupt_after_the_execution_timeout_fails_the_job_as_timed_out() {
        use crate::snapshot::FailureKind;
        let limit = std::time::Duration::from_secs(2);
        let (id, mut t, events) = interrupted_session();
        assert!(t.request_timeout(&id, limit));
        t.request_cancel(&id);
        for ev in &events {
            t.apply_event(ev);
        }
        let s = t.snapshot(&id).unwrap();
        assert_eq!(s.state, JobState::Failed, "a timeout wins over a cancel");
        let e = s.error.unwrap();
        assert_eq!(e.kind, FailureKind::ExecutionTimeout);
        assert!(
            e.message.starts_with("Workflow execution timeout"),
            "{}",
            e.message
        );
        assert!(
            !t.request_timeout(&id, limit),
            "finished jobs are left alone"
        );
        // Unconfirmed: the driver ends it itself; a lost job ends the same way.
        for end in ["unconfirmed", "lost"] {
            t.register(end, &request(json!({})), "h".into(), "sim");
            accept(&mut t, end);
            t.finish_timed_out(end);
            assert_eq!(
                t.snapshot(end).unwrap().state,
                JobState::Queued,
                "not marked: untouched"
            );
            assert!(t.request_timeout(end, limit));
            if end == "lost" {
                t.mark_lost(end);
            } else {
                t.finish_timed_out(end);
            }
            let error = t.snapshot(end).unwrap().error.unwrap();
            assert_eq!(error.kind, FailureKind::ExecutionTimeout, "{end}");
        }
    }

    #[test]
    fn execution_error_fails_with_node_and_message() {
        let (id, _, events) = session("ws_execution_error.jsonl");
        let mut t = JobTable::new(10);
        t.register(
            &id,
            &request(prompt_graph("prompt_execution_error.json")),
            "h".into(),
            "sim",
        );
        accept(&mut t, &id);
        for ev in &events {
            assert_eq!(
                t.apply_event(ev)
                    .filter(|a| matches!(a, Action::Finalize(_))),
                None
            );
        }
        let s = t.snapshot(&id).unwrap();
        assert_eq!(s.state, JobState::Failed);
        let e = s.error.unwrap();
        assert_eq!(e.node_id.as_deref(), Some("2"));
        assert_eq!(e.node_type.as_deref(), Some("ImageToMask"));
        assert_eq!(e.exception_type.as_deref(), Some("IndexError"));
        assert!(
            e.message.contains("index 3 is out of bounds"),
            "{}",
            e.message
        );
        assert!(s.execution_time.unwrap() >= 0.0);
        assert!(t.run(&id).is_none(), "bookkeeping dropped");
    }

    #[test]
    fn foreign_jobs_are_ignored() {
        let (_, _, events) = session("ws_success.jsonl");
        let mut t = JobTable::new(10);
        t.register("mine", &request(json!({"1": {}})), "h".into(), "sim");
        accept(&mut t, "mine");
        for ev in &events {
            t.apply_event(ev);
        }
        let s = t.snapshot("mine").unwrap();
        assert_eq!((s.state, s.progress), (JobState::Queued, 0.0));
    }

    #[test]
    fn reconnect_replay_without_prompt_id_goes_to_the_running_job() {
        let mut t = JobTable::new(10);
        t.register("a", &request(json!({"1": {}, "12": {}})), "h".into(), "sim");
        accept(&mut t, "a");
        t.apply_event(&Event::ExecutionStart {
            prompt_id: "a".into(),
            timestamp: Some(1.0),
        });
        t.apply_event(&Event::Executing {
            node: Some("1".into()),
            prompt_id: Some("a".into()),
        });
        t.apply_event(&Event::Executing {
            node: Some("12".into()),
            prompt_id: None,
        });
        assert_eq!(t.snapshot("a").unwrap().progress, 0.5);
    }

    #[test]
    fn finished_jobs_are_evicted_oldest_first() {
        let mut t = JobTable::new(3);
        for i in 0..10 {
            let id = format!("j{i}");
            t.register(&id, &request(json!({})), "h".into(), "sim");
            accept(&mut t, &id);
            t.finish(&id, t.ending(&id, JobState::Completed, None));
        }
        assert_eq!(t.len(), 3);
        assert!(t.snapshot("j6").is_none());
        assert!(t.snapshot("j7").is_some() && t.snapshot("j9").is_some());
        // Open jobs are never evicted.
        t.register("open", &request(json!({})), "h".into(), "sim");
        for i in 10..20 {
            let id = format!("j{i}");
            t.register(&id, &request(json!({})), "h".into(), "sim");
            t.finish(&id, t.ending(&id, JobState::Failed, None));
        }
        assert!(t.snapshot("open").is_some());
        assert_eq!(t.len(), 4);
    }

    #[test]
    fn lost_job_fails_unless_cancel_was_requested() {
        let mut t = JobTable::new(10);
        for id in ["a", "b", "unposted"] {
            t.register(id, &request(json!({})), "h".into(), "sim");
        }
        accept(&mut t, "a");
        accept(&mut t, "b");
        t.request_cancel("b");
        for id in ["a", "b", "unposted"] {
            t.mark_lost(id);
        }
        let a = t.snapshot("a").unwrap();
        assert_eq!(a.state, JobState::Failed);
        assert!(
            a.error
                .unwrap()
                .message
                .starts_with("ComfyUI restarted and lost the job")
        );
        assert_eq!(t.snapshot("b").unwrap().state, JobState::Cancelled);
        assert_eq!(t.snapshot("unposted").unwrap().state, JobState::Queued);
    }

    #[test]
    fn queue_positions_follow_the_queue() {
        use crate::client::QueueEntry;
        let mut t = JobTable::new(10);
        t.register("x", &request(json!({})), "h".into(), "sim");
        accept(&mut t, "x");
        let entry = |n: f64, id: &str| QueueEntry {
            number: n,
            prompt_id: id.into(),
            client_id: None,
        };
        t.apply_queue(&QueueSnapshot::new(
            vec![entry(1.0, "other")],
            vec![entry(2.0, "o2"), entry(3.0, "x")],
        ));
        assert_eq!(t.snapshot("x").unwrap().queue_position, Some(2));
        t.apply_queue(&QueueSnapshot::new(vec![entry(3.0, "x")], vec![]));
        let s = t.snapshot("x").unwrap();
        assert_eq!((s.state, s.queue_position), (JobState::Running, Some(0)));
    }

    #[test]
    fn partial_validity_keeps_node_errors() {
        let mut t = JobTable::new(10);
        t.register("p", &request(json!({})), "h".into(), "sim");
        let errs = json!({"13": {"errors": [], "class_type": "SaveImage"}});
        let s = t
            .accepted(
                "p",
                &SubmitAccepted {
                    prompt_id: "p".into(),
                    number: 1.0,
                    node_errors: errs.clone(),
                },
            )
            .unwrap();
        assert_eq!(s.node_errors, errs);
    }

    #[test]
    fn server_chosen_id_rekeys_the_job() {
        let mut t = JobTable::new(10);
        t.register("ours", &request(json!({})), "h".into(), "sim");
        let s = t
            .accepted(
                "ours",
                &SubmitAccepted {
                    prompt_id: "theirs".into(),
                    number: 1.0,
                    node_errors: json!({}),
                },
            )
            .unwrap();
        assert_eq!(s.prompt_id, "theirs");
        assert!(t.snapshot("ours").is_none());
        assert!(t.run("theirs").unwrap().posted);
    }
}
