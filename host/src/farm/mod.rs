//! A render farm: one server in front of several ComfyUI machines (its *members*, each a
//! [`ComfyUi`] backend with its own websocket, tracker and caches; see [`backends`] for how
//! they are configured).
//!
//! Lifecycle of a job on the farm:
//! 1. *placement* ([`route`]): the graph goes only to members that can run it (every node
//!    class and model file it names, from each member's `object_info`, refreshed on every
//!    reconnect), then to the least loaded of those (open jobs / capacity); members whose
//!    websocket is down are out of rotation while another is up;
//! 2. *submission*: the job is submitted to that member; its request (graph, processor,
//!    input images) is *retained* ([`retain`]) within a byte budget until the job is past
//!    the point where it could move;
//! 3. *failover* ([`failover`]): a member unreachable for [`FarmOptions::failover_after`]
//!    gives up its open jobs: queued ones move to another capable member under the same
//!    prompt id (same parameters and seed), running ones move only while they have retries
//!    left and fail with the reason otherwise; nothing stays open on a dead member.
//!
//! Status, wait, cancel and images go to the member holding the job (in memory, else the
//! job store's `backend` column names it). With one member the farm adds nothing to
//! today's behaviour: no health filter, no retention, no failover task.

pub mod backends;
pub mod failover;
pub mod retain;
pub mod route;

use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::time::Duration;

use comfyui::store::{JobPage, JobQuery, StoreError};
use comfyui::{CancelError, CancelOutcome, ClientError, ComfyUi, JobRequest, JobSnapshot};
use tokio::sync::watch;

use crate::graph_gate::GraphGate;
use crate::inputs::PreparedInputs;
use retain::{Entry, Retained};

/// One ComfyUI machine of the farm.
pub struct Member {
    /// Its backend.
    pub comfy: Arc<ComfyUi>,
    /// Relative throughput (see [`backends::BackendSpec::capacity`]).
    pub capacity: f64,
}

impl Member {
    /// Its name (see [`comfyui::ComfyConfig::name`]).
    pub fn name(&self) -> String {
        self.comfy.name()
    }

    /// Open jobs per unit of capacity.
    pub fn load(&self) -> f64 {
        self.comfy.open_jobs() as f64 / self.capacity
    }
}

/// The farm's budgets.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FarmOptions {
    /// How long a member may be unreachable before its open jobs leave it.
    pub failover_after: Duration,
    /// Bytes of requests (graphs and input images) retained for failover, across jobs.
    pub retain_bytes: u64,
    /// Most `retries` a call may ask for.
    pub max_retries: u32,
}

impl FarmOptions {
    /// Default wait before a silent member's jobs move: 10 s.
    pub const DEFAULT_FAILOVER_AFTER: Duration = Duration::from_secs(10);
    /// Default retention budget: 256 MiB.
    pub const DEFAULT_RETAIN_BYTES: u64 = 256 << 20;
    /// Default largest `retries`: 3.
    pub const DEFAULT_MAX_RETRIES: u32 = 3;
}

impl Default for FarmOptions {
    fn default() -> Self {
        Self {
            failover_after: Self::DEFAULT_FAILOVER_AFTER,
            retain_bytes: Self::DEFAULT_RETAIN_BYTES,
            max_retries: Self::DEFAULT_MAX_RETRIES,
        }
    }
}

/// The members and what moves jobs between them.
pub struct Farm {
    members: Vec<Member>,
    options: FarmOptions,
    /// The node policy and graph check placement uses (also when jobs move).
    gate: GraphGate,
    retained: Retained,
    /// Where the next tie between equally loaded members starts (spreads them evenly).
    cursor: AtomicUsize,
}

impl Farm {
    /// A farm of `members` (at least one; the first is the primary: pack self-tests and
    /// store listings use it). Starts the failover watch when there are several.
    pub fn new(members: Vec<Member>, options: FarmOptions, gate: GraphGate) -> Arc<Farm> {
        assert!(!members.is_empty(), "a farm has at least one member");
        let farm = Arc::new(Farm {
            members,
            gate,
            retained: Retained::new(options.retain_bytes),
            options,
            cursor: AtomicUsize::new(0),
        });
        if farm.members.len() > 1 {
            failover::spawn(&farm);
        }
        farm
    }

    /// A farm of one backend: today's single-ComfyUI behaviour.
    pub fn single(comfy: Arc<ComfyUi>, gate: GraphGate) -> Arc<Farm> {
        Farm::new(
            vec![Member {
                comfy,
                capacity: backends::DEFAULT_CAPACITY,
            }],
            FarmOptions::default(),
            gate,
        )
    }

    /// Submits `request` to `member`; on a farm its request and `inputs` are retained (within
    /// the budget) so that the job can move, with `retries` resubmissions allowed after its
    /// member dies while running it.
    pub async fn submit(
        self: &Arc<Self>,
        member: usize,
        request: JobRequest,
        inputs: &PreparedInputs,
        retries: u32,
    ) -> Result<JobSnapshot, ClientError> {
        let entry = self.is_farm().then(|| Entry {
            bytes: retain::request_bytes(&request, inputs),
            request: request.clone(),
            inputs: inputs.clone(),
            retries_left: retries,
            member,
        });
        let snap = self.members[member].comfy.submit(request).await?;
        if let Some(entry) = entry {
            if self.retained.keep(&snap.prompt_id, entry) {
                retain::watch_release(self, &snap.prompt_id, member, retries);
            } else {
                tracing::warn!(
                    prompt_id = %snap.prompt_id,
                    budget = self.retained.budget(),
                    "the failover retention budget is full: this job cannot move if its backend stops answering"
                );
            }
        }
        Ok(snap)
    }

    /// The members, in configuration order.
    pub fn members(&self) -> &[Member] {
        &self.members
    }

    /// The first member.
    pub fn primary(&self) -> &Arc<ComfyUi> {
        &self.members[0].comfy
    }

    /// Whether there are several members (routing, retention and failover are on).
    pub fn is_farm(&self) -> bool {
        self.members.len() > 1
    }

    /// The budgets.
    pub fn options(&self) -> &FarmOptions {
        &self.options
    }

    /// The retained requests.
    pub fn retained(&self) -> &Retained {
        &self.retained
    }

    /// The member following `prompt_id` in this process, if any.
    pub fn holder(&self, prompt_id: &str) -> Option<&Member> {
        self.members.iter().find(|m| m.comfy.holds(prompt_id))
    }

    /// The member a job is on: the one following it here, else the one the job store
    /// names, else the primary (which answers from the store).
    async fn owner(&self, prompt_id: &str) -> Result<&Member, StoreError> {
        if let Some(member) = self.holder(prompt_id) {
            return Ok(member);
        }
        if self.is_farm()
            && let Some(job) = self.primary().status(prompt_id).await?
            && let Some(member) = self.members.iter().find(|m| m.name() == job.backend)
        {
            return Ok(member);
        }
        Ok(&self.members[0])
    }

    /// The job's current state (from its member, or the job store).
    pub async fn status(&self, prompt_id: &str) -> Result<Option<JobSnapshot>, StoreError> {
        match self.holder(prompt_id) {
            Some(member) => member.comfy.status(prompt_id).await,
            None => self.primary().status(prompt_id).await,
        }
    }

    /// Several jobs' states, in order.
    pub async fn statuses(
        &self,
        prompt_ids: &[String],
    ) -> Vec<Result<Option<JobSnapshot>, StoreError>> {
        let mut out = Vec::with_capacity(prompt_ids.len());
        for id in prompt_ids {
            out.push(self.status(id).await);
        }
        out
    }

    /// Follows a job's snapshots as they change (on the member following it now; a job
    /// that moves ends this feed, so callers look it up again).
    pub fn watch(&self, prompt_id: &str) -> Option<watch::Receiver<JobSnapshot>> {
        self.members.iter().find_map(|m| m.comfy.watch(prompt_id))
    }

    /// Waits until the job is finished or `timeout` runs out, following it across moves (a
    /// moving job is held by its new member before its old one lets it go).
    pub async fn wait(
        &self,
        prompt_id: &str,
        timeout: Duration,
    ) -> Result<Option<JobSnapshot>, StoreError> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let member = self.owner(prompt_id).await?;
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let snap = member.comfy.wait(prompt_id, left).await?;
            let open = snap.as_ref().is_some_and(|s| !s.state.is_terminal());
            let moved = !member.comfy.holds(prompt_id) && self.holder(prompt_id).is_some();
            if open && moved && !left.is_zero() {
                continue;
            }
            return Ok(snap);
        }
    }

    /// Cancels one of our jobs on the member that holds it.
    pub async fn cancel(&self, prompt_id: &str) -> Result<CancelOutcome, CancelError> {
        let member = self.owner(prompt_id).await.map_err(CancelError::Store)?;
        self.retained.forget(prompt_id);
        member.comfy.cancel(prompt_id).await
    }

    /// Interrupts the running job of ours on the first member running one.
    pub async fn interrupt_running(&self) -> Result<Option<String>, CancelError> {
        for member in &self.members {
            if let Some(id) = member.comfy.interrupt_running().await? {
                return Ok(Some(id));
            }
        }
        Ok(None)
    }

    /// One page of jobs, newest first: from the job store (it holds every member's jobs),
    /// else merged from the members' memories.
    pub async fn list_jobs(&self, query: JobQuery) -> Result<JobPage, StoreError> {
        if !self.is_farm() || self.primary().has_store() {
            return self.primary().list_jobs(query).await;
        }
        let mut jobs = Vec::new();
        for member in &self.members {
            jobs.extend(member.comfy.list_jobs(query.clone()).await?.jobs);
        }
        jobs.sort_by(|a, b| {
            b.submitted_at
                .total_cmp(&a.submitted_at)
                .then_with(|| b.prompt_id.cmp(&a.prompt_id))
        });
        Ok(JobPage::from_ordered(jobs, query.limit))
    }
}
