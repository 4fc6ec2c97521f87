//! Following a job for a `wait: true` call: reports `notifications/progress` to the client
//! and stops when the job ends, when the timeout runs out, or when the client cancels the
//! request (which cancels the job).
//!
//! Invariants: progress notifications are only sent when the request carried a
//! `progressToken`; their `progress` values (job progress × 100, `total` 100) strictly
//! increase, and a completed job's last notification is 100; a timeout is not an error,
//! the caller gets the job's state at that moment; a client cancellation always cancels
//! the job, even if the caller's future is dropped meanwhile.
//!
//! Where progress goes is a [`ProgressSink`]: MCP requests report through a
//! [`ProgressReporter`] (`notifications/progress`), callers without a channel for progress
//! (the plain HTTP API) through [`NoProgress`].

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;

use comfyui::{JobSnapshot, JobState};
use rmcp::RoleServer;
use rmcp::model::{ProgressNotificationParam, ProgressToken};
use rmcp::service::{Peer, RequestContext};
use tokio_util::sync::CancellationToken;

use crate::app::App;
use crate::error::AppError;

/// The `total` of every progress notification.
pub const PROGRESS_TOTAL: f64 = 100.0;
/// How often the job is polled when its live feed is gone (it was evicted or replaced).
const POLL_INTERVAL: Duration = Duration::from_millis(250);

/// Where a waiting call reports a job's progress.
pub trait ProgressSink: Send {
    /// Reports `job` (a sink decides itself whether the value moved enough to send).
    fn report<'a>(&'a mut self, job: &'a JobSnapshot) -> BoxFuture<'a, ()>;
}

/// A sink that drops every report: for callers that cannot receive progress.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoProgress;

impl ProgressSink for NoProgress {
    fn report<'a>(&'a mut self, _job: &'a JobSnapshot) -> BoxFuture<'a, ()> {
        Box::pin(std::future::ready(()))
    }
}

/// Sends `notifications/progress` for one request, keeping the values strictly increasing.
#[derive(Debug)]
pub struct ProgressReporter {
    peer: Peer<RoleServer>,
    token: Option<ProgressToken>,
    last: Option<f64>,
}

impl ProgressReporter {
    /// A reporter for the request of `context` (silent when it has no progress token).
    pub fn new(context: &RequestContext<RoleServer>) -> Self {
        Self {
            peer: context.peer.clone(),
            token: context.meta.get_progress_token(),
            last: None,
        }
    }

    /// Reports `job` if its progress moved past the last value sent.
    async fn send(&mut self, job: &JobSnapshot) {
        let Some(token) = self.token.clone() else {
            return;
        };
        let value = progress_value(job);
        if self.last.is_some_and(|last| value <= last) {
            return;
        }
        self.last = Some(value);
        let param = ProgressNotificationParam::new(token, value)
            .with_total(PROGRESS_TOTAL)
            .with_message(progress_message(job));
        if let Err(e) = self.peer.notify_progress(param).await {
            tracing::debug!(prompt_id = %job.prompt_id, error = %e, "progress notification not delivered");
        }
    }
}

impl ProgressSink for ProgressReporter {
    fn report<'a>(&'a mut self, job: &'a JobSnapshot) -> BoxFuture<'a, ()> {
        Box::pin(self.send(job))
    }
}

/// The progress value reported for a job: 0..100, exactly 100 once completed.
pub fn progress_value(job: &JobSnapshot) -> f64 {
    if job.state == JobState::Completed {
        return PROGRESS_TOTAL;
    }
    let raw = (job.progress.clamp(0.0, 1.0) * PROGRESS_TOTAL * 100.0).round() / 100.0;
    // Only a completed job may claim the total.
    raw.min(PROGRESS_TOTAL - 0.01)
}

/// A one-line description of where a job stands.
pub fn progress_message(job: &JobSnapshot) -> String {
    match job.state {
        JobState::Queued => match job.queue_position {
            Some(0) | None => "queued".to_owned(),
            Some(n) => format!("queued, {n} job(s) ahead"),
        },
        JobState::Running => match job.postprocessing {
            Some(p) if p.total > 0 => {
                format!("postprocessing {}/{}", (p.done + 1).min(p.total), p.total)
            }
            _ => format!("running, {:.0}%", job.progress.clamp(0.0, 1.0) * 100.0),
        },
        JobState::Completed => format!("completed, {} image(s)", job.files.len()),
        JobState::Failed => match &job.error {
            Some(e) => format!("failed: {}", e.message),
            None => "failed".to_owned(),
        },
        JobState::Cancelled => "cancelled".to_owned(),
    }
}

/// How a wait ended.
#[derive(Debug, Clone)]
pub enum WaitOutcome {
    /// The job reached a terminal state.
    Finished(JobSnapshot),
    /// The timeout ran out first; the job's state then.
    TimedOut(JobSnapshot),
    /// The client cancelled the request; the job was cancelled (its state after that).
    Cancelled(JobSnapshot),
}

/// Follows `first` until it ends, `timeout` runs out or `cancel` fires, reporting progress.
pub async fn wait_for_job(
    app: &Arc<App>,
    first: JobSnapshot,
    timeout: Duration,
    cancel: &CancellationToken,
    reporter: &mut dyn ProgressSink,
) -> Result<WaitOutcome, AppError> {
    let deadline = tokio::time::Instant::now() + timeout;
    let prompt_id = first.prompt_id.clone();
    let mut feed = app.watch(&prompt_id);
    let mut job = match &mut feed {
        Some(rx) => rx.borrow_and_update().clone(),
        None => first,
    };
    loop {
        reporter.report(&job).await;
        if job.state.is_terminal() {
            return Ok(WaitOutcome::Finished(job));
        }
        tokio::select! {
            biased;
            _ = cancel.cancelled() => {
                let after = cancel_job(app, &prompt_id).await.unwrap_or(job);
                return Ok(WaitOutcome::Cancelled(after));
            }
            _ = tokio::time::sleep_until(deadline) => {
                return Ok(WaitOutcome::TimedOut(job));
            }
            next = next_snapshot(app, &prompt_id, &mut feed) => {
                job = next?;
            }
        }
    }
}

/// The job's next state: from its live feed, or by polling once the feed is gone.
async fn next_snapshot(
    app: &App,
    prompt_id: &str,
    feed: &mut Option<tokio::sync::watch::Receiver<JobSnapshot>>,
) -> Result<JobSnapshot, AppError> {
    if let Some(rx) = feed {
        if rx.changed().await.is_ok() {
            return Ok(rx.borrow_and_update().clone());
        }
        *feed = None;
        return app.status(prompt_id).await;
    }
    tokio::time::sleep(POLL_INTERVAL).await;
    if let Some(rx) = app.watch(prompt_id) {
        let job = rx.borrow().clone();
        *feed = Some(rx);
        return Ok(job);
    }
    app.status(prompt_id).await
}

/// Cancels a job on its own task (so it completes even if the caller is dropped) and
/// returns the job's state afterwards.
async fn cancel_job(app: &Arc<App>, prompt_id: &str) -> Option<JobSnapshot> {
    let app = app.clone();
    let id = prompt_id.to_owned();
    let task = tokio::spawn(async move {
        match app.cancel(Some(&id), false).await {
            Ok(report) => {
                tracing::info!(prompt_id = %id, message = %report.message, "job cancelled: the client cancelled its request")
            }
            Err(e) => {
                tracing::warn!(prompt_id = %id, error = %e, "cancelling the job of a cancelled request failed")
            }
        }
        app.status(&id).await.ok()
    });
    task.await.ok().flatten()
}

#[cfg(test)]
mod tests {
    use super::*;
    use comfyui::JobOrigin;
    use serde_json::json;

    fn job(state: JobState, progress: f64) -> JobSnapshot {
        JobSnapshot {
            prompt_id: "p".into(),
            state,
            progress,
            queue_position: Some(2),
            execution_time: None,
            postprocess_ms: None,
            postprocessing: None,
            images: vec![],
            files: vec![],
            error: None,
            node_errors: json!({}),
            submitted_at: 0.0,
            started_at: None,
            finished_at: None,
            origin: JobOrigin::Workflow {
                path: "w".into(),
                sha256: "0".into(),
            },
            parameters: json!({}),
            metadata: json!({}),
            backend: "sim".into(),
            warnings: Vec::new(),
        }
    }

    #[test]
    fn only_completion_reaches_the_total() {
        assert_eq!(progress_value(&job(JobState::Running, 1.0)), 99.99);
        assert_eq!(progress_value(&job(JobState::Completed, 0.3)), 100.0);
        assert_eq!(progress_value(&job(JobState::Running, 0.25)), 25.0);
        assert_eq!(progress_value(&job(JobState::Queued, -1.0)), 0.0);
    }

    #[test]
    fn messages_say_where_the_job_stands() {
        assert_eq!(
            progress_message(&job(JobState::Queued, 0.0)),
            "queued, 2 job(s) ahead"
        );
        assert_eq!(
            progress_message(&job(JobState::Running, 0.5)),
            "running, 50%"
        );
        assert_eq!(
            progress_message(&job(JobState::Cancelled, 0.5)),
            "cancelled"
        );
    }

    #[test]
    fn post_processing_is_named_with_the_image_in_hand() {
        use comfyui::postprocess::PostprocessProgress;
        let mut j = job(JobState::Running, 0.92);
        j.postprocessing = Some(PostprocessProgress { done: 0, total: 0 });
        assert_eq!(progress_message(&j), "running, 92%", "images not known yet");
        for (done, want) in [
            (0, "postprocessing 1/4"),
            (3, "postprocessing 4/4"),
            (4, "postprocessing 4/4"),
        ] {
            j.postprocessing = Some(PostprocessProgress { done, total: 4 });
            assert_eq!(progress_message(&j), want);
        }
    }
}
