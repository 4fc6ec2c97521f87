//! The narrow interface through which the backend persists jobs ([`JobStore`]), and the job
//! listing types shared by the persistent store and the in-memory table ([`JobQuery`],
//! [`JobPage`], [`Cursor`]).
//!
//! Invariants: every [`JobStore`] method is blocking and is only ever called off the async
//! runtime (the backend runs them on the blocking pool, bounded by a semaphore); a store only
//! moves a job's state forward (an `update` or `cancel` that would move it back, or from one
//! ending to another, is refused and answered with [`Update::Stale`] carrying what the store
//! holds); listing is newest first by `(submitted_at, prompt_id)` and a [`Cursor`] names the
//! last entry of the previous page, so pages never repeat or skip an entry that existed
//! when the first page was read.

use std::fmt;

use crate::snapshot::{JobSnapshot, JobState};

/// Why a store operation failed (the store's own typed error, boxed).
#[derive(Debug, thiserror::Error)]
#[error("job store: {0}")]
pub struct StoreError(#[source] pub Box<dyn std::error::Error + Send + Sync>);

/// A job as the store holds it: its snapshot and what another process needs to follow it.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredJob {
    /// The public view.
    pub snapshot: JobSnapshot,
    /// ComfyUI base URL (without credentials) the job was submitted to.
    pub backend: String,
    /// sha256 of the submitted graph's canonical JSON.
    pub graph_sha256: String,
    /// The graph's node ids (progress is measured over them).
    pub graph_nodes: Vec<String>,
    /// A cancel was recorded for it (by any process).
    pub cancel_requested: bool,
}

/// The result of a forward-only write.
#[derive(Debug, Clone, PartialEq)]
pub enum Update {
    /// Written.
    Applied,
    /// Refused: the store already holds an ending (set by another process or a sweep); this
    /// is it. The caller adopts it.
    Stale(Box<JobSnapshot>),
    /// The store has no such job (pruned, or never inserted).
    Missing,
}

/// What one heartbeat found.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Heartbeat {
    /// Open jobs whose owner is gone, now owned by this process.
    pub adopted: Vec<StoredJob>,
    /// Endings the store holds for jobs this process still has open (e.g. cancelled by
    /// another process, or expired by the open-job bound).
    pub ended: Vec<JobSnapshot>,
}

/// The persistent side of the job tracker. Implementations are shared by every process
/// pointed at the same file; all methods block.
pub trait JobStore: Send + Sync + fmt::Debug + 'static {
    /// Records a job ComfyUI just accepted, owned by this process. A job already recorded
    /// and still open (moved to another backend by a farm's failover) gets its new backend,
    /// owner and snapshot; an ended one is left as it is.
    fn insert(&self, job: &StoredJob) -> Result<(), StoreError>;
    /// Writes a job's new snapshot, forward only.
    fn update(&self, snapshot: &JobSnapshot) -> Result<Update, StoreError>;
    /// One job.
    fn get(&self, prompt_id: &str) -> Result<Option<StoredJob>, StoreError>;
    /// One page of jobs, newest first.
    fn list(&self, query: &JobQuery) -> Result<JobPage, StoreError>;
    /// Records a cancel of an open job by any process (state `cancelled`, forward only).
    fn cancel(&self, snapshot: &JobSnapshot) -> Result<Update, StoreError>;
    /// Renews this process's lease, ends jobs open for longer than the store's bound,
    /// adopts up to `adopt_limit` open jobs of `backend` (its name as recorded; empty: any
    /// backend) whose owner is gone, and reports the endings it holds for `open` (ids this
    /// process follows).
    fn heartbeat(
        &self,
        open: &[String],
        adopt_limit: usize,
        backend: &str,
    ) -> Result<Heartbeat, StoreError>;
    /// Deletes ended jobs beyond the retention age and count; returns their ids.
    fn prune(&self) -> Result<Vec<String>, StoreError>;
}

/// Most entries one [`JobQuery`] page may hold.
pub const MAX_PAGE: usize = 200;
/// Entries of a page when no limit is given.
pub const DEFAULT_PAGE: usize = 50;

/// Filters and paging of a job listing.
#[derive(Debug, Clone, PartialEq)]
pub struct JobQuery {
    /// Only jobs in this state.
    pub state: Option<JobState>,
    /// Only jobs of this template id.
    pub template: Option<String>,
    /// Only jobs submitted at or after this unix time.
    pub since: Option<f64>,
    /// Entries per page, 1..=[`MAX_PAGE`].
    pub limit: usize,
    /// Continue after this entry.
    pub cursor: Option<Cursor>,
}

impl Default for JobQuery {
    fn default() -> Self {
        Self {
            state: None,
            template: None,
            since: None,
            limit: DEFAULT_PAGE,
            cursor: None,
        }
    }
}

impl JobQuery {
    /// Whether `snap` passes the filters and comes after the cursor.
    pub fn matches(&self, snap: &JobSnapshot) -> bool {
        self.state.is_none_or(|s| s == snap.state)
            && self
                .template
                .as_deref()
                .is_none_or(|t| snap.origin.template_id() == Some(t))
            && self.since.is_none_or(|t| snap.submitted_at >= t)
            && self
                .cursor
                .as_ref()
                .is_none_or(|c| c.is_before(snap.submitted_at, &snap.prompt_id))
    }
}

/// One page of a listing.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct JobPage {
    /// Newest first.
    pub jobs: Vec<JobSnapshot>,
    /// Where the next page starts, when there is one.
    pub next: Option<Cursor>,
}

impl JobPage {
    /// Pages an unordered set of snapshots (the in-memory table's listing).
    pub fn from_snapshots(mut all: Vec<JobSnapshot>, query: &JobQuery) -> Self {
        all.retain(|s| query.matches(s));
        all.sort_by(|a, b| {
            b.submitted_at
                .total_cmp(&a.submitted_at)
                .then_with(|| b.prompt_id.cmp(&a.prompt_id))
        });
        Self::from_ordered(all, query.limit)
    }

    /// Cuts `ordered` (newest first, already filtered, may hold one entry beyond `limit`)
    /// into a page.
    pub fn from_ordered(mut ordered: Vec<JobSnapshot>, limit: usize) -> Self {
        let limit = limit.clamp(1, MAX_PAGE);
        let more = ordered.len() > limit;
        ordered.truncate(limit);
        let next = more.then(|| ordered.last().map(Cursor::after)).flatten();
        Self {
            jobs: ordered,
            next,
        }
    }
}

/// A position in the newest-first order: the last entry of a page.
#[derive(Debug, Clone, PartialEq)]
pub struct Cursor {
    /// Its submission time.
    pub submitted_at: f64,
    /// Its id.
    pub prompt_id: String,
}

/// A cursor string that this server did not hand out.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error(
    "invalid cursor {given:?}: pass the `next_cursor` of a previous list_jobs answer unchanged"
)]
pub struct CursorError {
    /// What was given.
    pub given: String,
}

impl Cursor {
    /// The cursor just after `snap`.
    pub fn after(snap: &JobSnapshot) -> Self {
        Self {
            submitted_at: snap.submitted_at,
            prompt_id: snap.prompt_id.clone(),
        }
    }

    /// True when `(submitted_at, prompt_id)` comes after this cursor in newest-first order.
    pub fn is_before(&self, submitted_at: f64, prompt_id: &str) -> bool {
        match submitted_at.total_cmp(&self.submitted_at) {
            std::cmp::Ordering::Less => true,
            std::cmp::Ordering::Equal => prompt_id < self.prompt_id.as_str(),
            std::cmp::Ordering::Greater => false,
        }
    }

    /// The opaque text form: the time's bits in hex, a dot, the id.
    pub fn encode(&self) -> String {
        format!("{:016x}.{}", self.submitted_at.to_bits(), self.prompt_id)
    }

    /// Parses [`Cursor::encode`]'s output.
    pub fn decode(text: &str) -> Result<Self, CursorError> {
        let bad = || CursorError {
            given: text.to_owned(),
        };
        let (bits, id) = text.split_once('.').ok_or_else(bad)?;
        if bits.len() != 16 || id.is_empty() {
            return Err(bad());
        }
        let bits = u64::from_str_radix(bits, 16).map_err(|_| bad())?;
        let submitted_at = f64::from_bits(bits);
        if !submitted_at.is_finite() {
            return Err(bad());
        }
        Ok(Self {
            submitted_at,
            prompt_id: id.to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursor_round_trips_and_rejects_foreign_text() {
        let c = Cursor {
            submitted_at: 1_700_000_000.123_456,
            prompt_id: "a.b-c".into(),
        };
        assert_eq!(Cursor::decode(&c.encode()).unwrap(), c);
        for bad in ["", "x", "0.a", "zzzzzzzzzzzzzzzz.a", "7ff0000000000000.a"] {
            assert!(Cursor::decode(bad).is_err(), "{bad}");
        }
    }
}
