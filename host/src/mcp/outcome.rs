//! What a tool call comes to before a transport renders it: the [`CallContext`] a call runs
//! in (its cancellation and where its progress goes), the typed [`Outcome`] it returns, and
//! [`UnknownTool`] for a name that is no tool.
//!
//! MCP renders an outcome as a `CallToolResult` ([`Outcome::into_result`]); the plain HTTP
//! API renders the same outcome as an HTTP response. Invariants: a success's `value` is the
//! structured result both transports return unchanged; every failure has a kind taken from
//! its type ([`Failure::kind`]), never from its message.

use rmcp::ErrorData as McpError;
use rmcp::RoleServer;
use rmcp::model::{CallToolResult, ContentBlock};
use rmcp::service::RequestContext;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use super::content::{tool_error, tool_success};
use super::progress::{ProgressReporter, ProgressSink};
use crate::error::AppError;

/// What one call runs with: cancelling `cancel` ends a wait and cancels its job; `progress`
/// receives the job's progress while waiting.
pub struct CallContext {
    /// Fired when the caller gave up (MCP `notifications/cancelled`, a dropped HTTP call).
    pub cancel: CancellationToken,
    /// Where a waiting call reports progress.
    pub progress: Box<dyn ProgressSink>,
}

impl CallContext {
    /// A context from its parts.
    pub fn new(cancel: CancellationToken, progress: impl ProgressSink + 'static) -> Self {
        Self {
            cancel,
            progress: Box::new(progress),
        }
    }

    /// The context of an MCP request: its cancellation, progress as `notifications/progress`.
    pub fn mcp(context: &RequestContext<RoleServer>) -> Self {
        Self::new(context.ct.clone(), ProgressReporter::new(context))
    }
}

impl std::fmt::Debug for CallContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallContext")
            .field("cancelled", &self.cancel.is_cancelled())
            .finish_non_exhaustive()
    }
}

/// A mistake in a tool's arguments.
#[derive(Debug, thiserror::Error)]
#[error("{tool}: {message}")]
pub struct ArgumentError {
    /// The tool called.
    pub tool: String,
    /// What was wrong and what is allowed.
    pub message: String,
}

impl ArgumentError {
    /// A mistake in the arguments of `tool`.
    pub fn new(tool: &str, message: impl Into<String>) -> Self {
        Self {
            tool: tool.to_owned(),
            message: message.into(),
        }
    }
}

/// Why a call did not succeed.
#[derive(Debug)]
pub enum Failure {
    /// The arguments were wrong.
    Arguments(ArgumentError),
    /// The app refused or failed.
    App(AppError),
    /// The caller cancelled while waiting, so the job was cancelled.
    Cancelled {
        /// What happened.
        message: String,
        /// The job's generation JSON after cancelling.
        job: Value,
    },
    /// The job ran and failed in ComfyUI.
    JobFailed {
        /// Which node failed and ComfyUI's message.
        message: String,
        /// The job's generation JSON.
        job: Value,
    },
}

impl Failure {
    /// The machine-readable kind: `invalid_arguments`, an [`AppError::kind`], `cancelled`
    /// or `job_failed`.
    pub fn kind(&self) -> &'static str {
        match self {
            Failure::Arguments(_) => "invalid_arguments",
            Failure::App(e) => e.kind(),
            Failure::Cancelled { .. } => "cancelled",
            Failure::JobFailed { .. } => "job_failed",
        }
    }

    /// The precise message.
    pub fn message(&self) -> String {
        match self {
            Failure::Arguments(e) => e.to_string(),
            Failure::App(e) => e.to_string(),
            Failure::Cancelled { message, .. } | Failure::JobFailed { message, .. } => {
                message.clone()
            }
        }
    }

    /// `{"kind", "message", "details"?}`.
    pub fn to_json(&self) -> Value {
        match self {
            Failure::App(e) => e.to_json(),
            Failure::Arguments(_) => json!({"kind": self.kind(), "message": self.message()}),
            Failure::Cancelled { job, .. } | Failure::JobFailed { job, .. } => {
                json!({"kind": self.kind(), "message": self.message(), "details": job})
            }
        }
    }
}

impl From<AppError> for Failure {
    fn from(error: AppError) -> Self {
        Failure::App(error)
    }
}

impl From<ArgumentError> for Failure {
    fn from(error: ArgumentError) -> Self {
        Failure::Arguments(error)
    }
}

/// What a call came to.
#[derive(Debug)]
pub enum Outcome {
    /// The structured result and the content blocks that go with it over MCP (thumbnails,
    /// resource links).
    Success {
        /// The structured result.
        value: Value,
        /// Extra MCP content blocks.
        blocks: Vec<ContentBlock>,
    },
    /// The call failed.
    Failure(Failure),
}

impl Outcome {
    /// A success without extra blocks.
    pub fn success(value: Value) -> Self {
        Outcome::Success {
            value,
            blocks: Vec::new(),
        }
    }

    /// The MCP rendering: a success's value as structured content (and its text block),
    /// a failure as `isError` with `{"error": …}`, except a failed job, whose structured
    /// content is the job itself.
    pub fn into_result(self) -> CallToolResult {
        match self {
            Outcome::Success { value, blocks } => tool_success(value, blocks),
            Outcome::Failure(Failure::JobFailed { message, job }) => {
                let mut result = tool_error(message, json!({}));
                result.structured_content = Some(job);
                result
            }
            Outcome::Failure(failure) => tool_error(failure.message(), failure.to_json()),
        }
    }
}

impl From<Failure> for Outcome {
    fn from(failure: Failure) -> Self {
        Outcome::Failure(failure)
    }
}

impl From<AppError> for Outcome {
    fn from(error: AppError) -> Self {
        Outcome::Failure(Failure::App(error))
    }
}

impl From<ArgumentError> for Outcome {
    fn from(error: ArgumentError) -> Self {
        Outcome::Failure(Failure::Arguments(error))
    }
}

/// A call to a tool that does not exist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownTool {
    /// The name asked for.
    pub name: String,
    /// The tools that exist.
    pub available: Vec<String>,
}

impl UnknownTool {
    /// `unknown tool `x`; available tools: …`.
    pub fn message(&self) -> String {
        format!(
            "unknown tool `{}`; available tools: {}",
            self.name,
            self.available.join(", ")
        )
    }

    /// The MCP protocol error (`-32602`).
    pub fn into_mcp(self) -> McpError {
        McpError::invalid_params(self.message(), Some(json!({ "tool": self.name })))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_jobs_keep_the_job_as_structured_content_over_mcp() {
        let job = json!({"prompt_id": "p", "status": "failed"});
        let failure = Failure::JobFailed {
            message: "job p failed".into(),
            job: job.clone(),
        };
        assert_eq!(failure.to_json()["details"], job);
        let result = Outcome::from(failure).into_result();
        assert_eq!(result.is_error, Some(true));
        assert_eq!(result.structured_content, Some(job));
    }

    #[test]
    fn kinds_come_from_the_types() {
        let args = Failure::from(ArgumentError::new("t", "`x` is required"));
        assert_eq!(args.kind(), "invalid_arguments");
        assert_eq!(args.to_json()["message"], "t: `x` is required");
        let app = Failure::from(AppError::UnknownJob("p".into()));
        assert_eq!(app.kind(), "unknown_job");
        let result = Outcome::from(app).into_result();
        assert_eq!(
            result.structured_content.unwrap()["error"]["kind"],
            "unknown_job"
        );
    }
}
