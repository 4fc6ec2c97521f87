//! The execution watchdog: the longest a job may *execute* in ComfyUI (`COMFYUI_TIMEOUT`,
//! [`ComfyConfig::execution_timeout`](crate::config::ComfyConfig::execution_timeout)).
//!
//! Lifecycle: `jobs.rs` starts one [`watch_job`] task per submitted job, and one per job
//! adopted from the job store (a gone server's, see `persist`), following the job's snapshot
//! channel. The clock starts when the job turns `running` (ComfyUI's `execution_start`, the
//! first node event, or the queue showing it running during reconciliation; for an adopted job,
//! when this process first sees it running, since the time it ran under its gone owner is
//! unknown); time waiting in ComfyUI's queue never counts. When the limit passes while the job
//! is still open, the task calls the driver's expiry handler once, which interrupts the job in
//! ComfyUI and ends it `failed` with [`timeout_failure`]. The task ends as soon as the job is
//! terminal, its snapshot channel closes (the job was forgotten), or the backend stops.
//!
//! Invariants: at most one task per open job, holding only a snapshot receiver; the expiry
//! handler runs at most once per job; the failure is typed ([`FailureKind::ExecutionTimeout`]),
//! never recognised by its text. Time comes from a [`Clock`] so the rules are tested without
//! waiting.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::snapshot::{FailureKind, JobFailure, JobSnapshot, JobState};

/// The exception type reported with a timeout failure.
pub const TIMEOUT_EXCEPTION: &str = "ExecutionTimeout";

/// A future the watchdog can hold across threads.
pub type Sleep = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Where the watchdog's time comes from: a monotonic time since some fixed start.
pub trait Clock: Send + Sync {
    /// Time elapsed since the clock's start.
    fn now(&self) -> Duration;
    /// Completes once [`Clock::now`] has reached `at`.
    fn sleep_until(&self, at: Duration) -> Sleep;
}

/// The runtime's clock (tokio's timer).
#[derive(Debug, Clone, Copy)]
pub struct TokioClock {
    start: tokio::time::Instant,
}

impl TokioClock {
    /// A clock starting now.
    pub fn new() -> Self {
        Self {
            start: tokio::time::Instant::now(),
        }
    }
}

impl Default for TokioClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for TokioClock {
    fn now(&self) -> Duration {
        self.start.elapsed()
    }

    fn sleep_until(&self, at: Duration) -> Sleep {
        Box::pin(tokio::time::sleep_until(self.start + at))
    }
}

/// The failure of a job that executed longer than `limit`.
pub fn timeout_failure(limit: Duration) -> JobFailure {
    JobFailure {
        kind: FailureKind::ExecutionTimeout,
        node_id: None,
        node_type: None,
        exception_type: Some(TIMEOUT_EXCEPTION.to_owned()),
        message: format!(
            "Workflow execution timeout: the job executed for more than {} s, the execution timeout, and was interrupted in ComfyUI (time waiting in the queue does not count); a server operator can raise it with --comfyui-timeout or COMFYUI_TIMEOUT (seconds)",
            limit.as_secs_f64()
        ),
    }
}

/// Follows one job and resolves to its prompt id when it has executed for `limit` without
/// finishing; `None` when it finished first or its channel closed.
pub async fn expiry(
    mut job: watch::Receiver<JobSnapshot>,
    limit: Duration,
    clock: &dyn Clock,
) -> Option<String> {
    loop {
        let state = job.borrow_and_update().state;
        match state {
            JobState::Queued => job.changed().await.ok()?,
            JobState::Running => break,
            JobState::Completed | JobState::Failed | JobState::Cancelled => return None,
        }
    }
    let mut deadline = clock.sleep_until(clock.now() + limit);
    loop {
        tokio::select! {
            () = &mut deadline => return Some(job.borrow().prompt_id.clone()),
            changed = job.changed() => {
                changed.ok()?;
                if job.borrow_and_update().state.is_terminal() {
                    return None;
                }
            }
        }
    }
}

/// Starts the watchdog of one job: `on_expiry(prompt_id)` runs once if it executes longer
/// than `limit`. The task stops with `stop`.
pub fn watch_job<F, Fut>(
    job: watch::Receiver<JobSnapshot>,
    limit: Duration,
    stop: CancellationToken,
    on_expiry: F,
) where
    F: FnOnce(String) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    tokio::spawn(async move {
        let clock = TokioClock::new();
        let expired = tokio::select! {
            () = stop.cancelled() => None,
            id = expiry(job, limit, &clock) => id,
        };
        if let Some(prompt_id) = expired {
            tracing::warn!(%prompt_id, limit_secs = limit.as_secs_f64(), "job exceeded the execution timeout: interrupting it");
            on_expiry(prompt_id).await;
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::{JobOrigin, JobRequest};
    use crate::tracker::JobTable;
    use futures_util::FutureExt;
    use serde_json::json;

    /// A clock that moves only when told to.
    struct ManualClock(watch::Sender<Duration>);

    impl ManualClock {
        fn new() -> Self {
            Self(watch::channel(Duration::ZERO).0)
        }

        fn advance(&self, by: Duration) {
            self.0.send_modify(|now| *now += by);
        }
    }

    impl Clock for ManualClock {
        fn now(&self) -> Duration {
            *self.0.borrow()
        }

        fn sleep_until(&self, at: Duration) -> Sleep {
            let mut now = self.0.subscribe();
            Box::pin(async move {
                let _ = now.wait_for(|now| *now >= at).await;
            })
        }
    }

    fn snapshot(state: JobState) -> JobSnapshot {
        let request = JobRequest {
            graph: json!({}),
            origin: JobOrigin::InlineWorkflow {
                sha256: "00".into(),
            },
            parameters: json!({}),
            metadata: json!({}),
            postprocess: None,
        };
        let mut snap = JobTable::new(1).register("p1", &request, String::new(), "sim");
        snap.state = state;
        snap
    }

    fn set_state(tx: &watch::Sender<JobSnapshot>, state: JobState) {
        tx.send_modify(|s| s.state = state);
    }

    const LIMIT: Duration = Duration::from_secs(3);
    const TICK: Duration = Duration::from_millis(1);

    #[test]
    fn queue_time_does_not_count_and_the_limit_is_exact() {
        let clock = ManualClock::new();
        let (tx, rx) = watch::channel(snapshot(JobState::Queued));
        let mut fut = Box::pin(expiry(rx, LIMIT, &clock));
        assert!((&mut fut).now_or_never().is_none());
        clock.advance(LIMIT * 10);
        assert!(
            (&mut fut).now_or_never().is_none(),
            "a queued job never times out"
        );
        set_state(&tx, JobState::Running);
        assert!((&mut fut).now_or_never().is_none());
        clock.advance(LIMIT - TICK);
        assert!(
            (&mut fut).now_or_never().is_none(),
            "one tick before the limit"
        );
        tx.send_modify(|s| s.progress = 0.5);
        assert!(
            (&mut fut).now_or_never().is_none(),
            "progress does not reset the clock"
        );
        clock.advance(TICK);
        assert_eq!((&mut fut).now_or_never(), Some(Some("p1".to_owned())));
    }

    #[test]
    fn a_job_finishing_in_time_is_left_alone() {
        for end in [JobState::Completed, JobState::Failed, JobState::Cancelled] {
            let clock = ManualClock::new();
            let (tx, rx) = watch::channel(snapshot(JobState::Running));
            let mut fut = Box::pin(expiry(rx, LIMIT, &clock));
            assert!((&mut fut).now_or_never().is_none());
            clock.advance(LIMIT - TICK);
            set_state(&tx, end);
            assert_eq!((&mut fut).now_or_never(), Some(None), "{end}");
        }
    }

    #[test]
    fn a_job_already_over_or_forgotten_ends_the_watch() {
        let clock = ManualClock::new();
        let (_tx, rx) = watch::channel(snapshot(JobState::Completed));
        assert_eq!(expiry(rx, LIMIT, &clock).now_or_never(), Some(None));
        let (tx, rx) = watch::channel(snapshot(JobState::Queued));
        let mut fut = Box::pin(expiry(rx, LIMIT, &clock));
        assert!((&mut fut).now_or_never().is_none());
        drop(tx);
        assert_eq!((&mut fut).now_or_never(), Some(None), "channel closed");
    }

    #[test]
    fn the_clock_starts_when_the_job_starts_running() {
        let clock = ManualClock::new();
        let (tx, rx) = watch::channel(snapshot(JobState::Queued));
        let mut fut = Box::pin(expiry(rx, LIMIT, &clock));
        clock.advance(Duration::from_secs(100));
        assert!((&mut fut).now_or_never().is_none());
        set_state(&tx, JobState::Running);
        assert!((&mut fut).now_or_never().is_none());
        clock.advance(Duration::from_secs(2));
        assert!((&mut fut).now_or_never().is_none());
        clock.advance(Duration::from_secs(1));
        assert_eq!((&mut fut).now_or_never(), Some(Some("p1".to_owned())));
    }

    #[test]
    fn the_failure_is_typed_and_names_the_limit_and_the_setting() {
        let failure = timeout_failure(Duration::from_millis(2500));
        assert_eq!(failure.kind, FailureKind::ExecutionTimeout);
        assert_eq!(failure.exception_type.as_deref(), Some(TIMEOUT_EXCEPTION));
        assert!(
            failure.message.starts_with("Workflow execution timeout"),
            "{}",
            failure.message
        );
        for part in ["2.5 s", "COMFYUI_TIMEOUT", "--comfyui-timeout"] {
            assert!(
                failure.message.contains(part),
                "{part}: {}",
                failure.message
            );
        }
        let json = serde_json::to_value(&failure).unwrap();
        assert_eq!(json["kind"], "execution_timeout");
        let back: JobFailure = serde_json::from_value(
            json!({"node_id": null, "node_type": null, "exception_type": null, "message": "old"}),
        )
        .unwrap();
        assert_eq!(
            back.kind,
            FailureKind::Execution,
            "older records still read"
        );
    }
}
