//! The public, serialisable view of a job (`JobSnapshot`) and the request that creates one.
//!
//! Invariants: `progress` is within 0..=1 and never decreases over a job's life; `state` only
//! moves forward (queued → running → completed | failed | cancelled); `queue_position` is 0
//! once the job runs or has finished; times are unix seconds (f64).

use std::path::PathBuf;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::postprocess::{ImagePostprocess, OutputProcessor, PostprocessProgress};
use crate::types::ImageRef;

/// Where a job's graph came from (recorded in the provenance file).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum JobOrigin {
    /// Built by a template of a workflow pack.
    Template {
        /// Template id, e.g. `character-portrait`.
        template_id: String,
        /// Pack name.
        pack_name: String,
        /// Pack version.
        pack_version: String,
        /// sha256 of the pack's `.wasm`.
        pack_sha256: String,
    },
    /// Loaded from a workflow JSON file.
    Workflow {
        /// The file as given.
        path: String,
        /// sha256 of the file's bytes.
        sha256: String,
    },
    /// An API-format graph passed inline in the call (`generate_image` with `workflow`).
    InlineWorkflow {
        /// sha256 of the graph as received, serialised as compact JSON (before overrides).
        sha256: String,
    },
}

impl JobOrigin {
    /// The template id, for a job built by a template.
    pub fn template_id(&self) -> Option<&str> {
        match self {
            JobOrigin::Template { template_id, .. } => Some(template_id),
            JobOrigin::Workflow { .. } | JobOrigin::InlineWorkflow { .. } => None,
        }
    }
}

/// What to run.
#[derive(Debug, Clone, PartialEq)]
pub struct JobRequest {
    /// ComfyUI API-format graph.
    pub graph: Value,
    /// Where it came from.
    pub origin: JobOrigin,
    /// The concrete parameters (seed resolved), reported back and recorded.
    pub parameters: Value,
    /// Caller metadata, reported back unchanged.
    pub metadata: Value,
    /// Transforms each output image before the job completes (see [`crate::postprocess`]).
    pub postprocess: Option<Arc<dyn OutputProcessor>>,
}

/// Life-cycle state of a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobState {
    /// Waiting in ComfyUI's queue.
    Queued,
    /// Executing (or its images are being downloaded).
    Running,
    /// Finished; images are on disk.
    Completed,
    /// Failed (see `error`).
    Failed,
    /// Cancelled on request.
    Cancelled,
}

impl JobState {
    /// Completed, failed or cancelled.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            JobState::Completed | JobState::Failed | JobState::Cancelled
        )
    }

    /// Lower-case name, as serialised.
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Queued => "queued",
            JobState::Running => "running",
            JobState::Completed => "completed",
            JobState::Failed => "failed",
            JobState::Cancelled => "cancelled",
        }
    }
}

impl std::fmt::Display for JobState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What kind of failure a [`JobFailure`] is, for callers that must tell them apart (never by
/// the message text).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureKind {
    /// Reported by ComfyUI, lost, or not stored (see `exception_type`).
    #[default]
    Execution,
    /// The job executed longer than the execution timeout (`COMFYUI_TIMEOUT`) and was
    /// interrupted by this server.
    ExecutionTimeout,
    /// An output image could not be post-processed (processor error, invalid result, pixel
    /// cap, …), or the job was adopted after a restart and its processor is gone.
    #[serde(rename = "postprocess_failed")]
    Postprocess,
}

/// Why a job failed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobFailure {
    /// What kind of failure.
    #[serde(default)]
    pub kind: FailureKind,
    /// The failing node, when one is to blame.
    pub node_id: Option<String>,
    /// Its class.
    pub node_type: Option<String>,
    /// Python exception type (or a short kind for host-side failures).
    pub exception_type: Option<String>,
    /// Human-readable message.
    pub message: String,
}

impl JobFailure {
    /// A failure not tied to a node.
    pub fn message(kind: &str, message: impl Into<String>) -> Self {
        Self {
            kind: FailureKind::Execution,
            node_id: None,
            node_type: None,
            exception_type: Some(kind.to_owned()),
            message: message.into(),
        }
    }
}

/// One image written to disk.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SavedImage {
    /// Full local path.
    pub path: PathBuf,
    /// Local file name (sanitised).
    pub filename: String,
    /// Width in pixels (from the PNG header).
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// File size.
    pub bytes: u64,
    /// What post-processing did to it (`None`: delivered as ComfyUI made it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub postprocess: Option<ImagePostprocess>,
}

/// Everything known about a job at one moment.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JobSnapshot {
    /// The job id (chosen by us, used by ComfyUI).
    pub prompt_id: String,
    /// Life-cycle state.
    pub state: JobState,
    /// 0..=1, never decreasing.
    pub progress: f64,
    /// Jobs ahead in ComfyUI's queue (0 when running or finished).
    pub queue_position: Option<u32>,
    /// Seconds from execution start to end.
    pub execution_time: Option<f64>,
    /// Milliseconds the post-processing stage took (all images, waits for a free slot
    /// included); `None` when the job has no post-processing or it has not finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub postprocess_ms: Option<f64>,
    /// Present for a job that post-processes its images: how many are done. While it counts,
    /// the job is `running` with its ComfyUI execution finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub postprocessing: Option<PostprocessProgress>,
    /// ComfyUI's references to every output image.
    pub images: Vec<ImageRef>,
    /// The downloaded files.
    pub files: Vec<SavedImage>,
    /// Why it failed.
    pub error: Option<JobFailure>,
    /// ComfyUI's node_errors for output branches it dropped (`{}` when none).
    pub node_errors: Value,
    /// Unix seconds.
    pub submitted_at: f64,
    /// Unix seconds.
    pub started_at: Option<f64>,
    /// Unix seconds.
    pub finished_at: Option<f64>,
    /// Where the graph came from.
    pub origin: JobOrigin,
    /// Concrete parameters.
    pub parameters: Value,
    /// Caller metadata.
    pub metadata: Value,
    /// The backend (its name, see [`crate::ComfyConfig::name`]) the job is or was on.
    #[serde(default)]
    pub backend: String,
    /// Things the user should know about a job that did not fail, e.g. ComfyUI reported
    /// success but no images could be found for it. Empty in the normal case.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

/// Now as unix seconds.
pub fn now_unix() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}
