//! `AppError`: everything a caller can get wrong or run into, each with a
//! precise message and a structured form for MCP error payloads.

use comfyui::graph::GraphErrors;
use comfyui::policy::PolicyViolations;
use comfyui::{CancelError, ClientError};
use pack_runtime::{CallError, FieldError};

use crate::inputs::InputError;
use serde_json::{Value, json};

/// A failed request. The server goes on serving everyone else.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// No such template in the current catalog.
    #[error("unknown template `{id}`; available templates: {available}")]
    UnknownTemplate {
        /// Requested id.
        id: String,
        /// What exists.
        available: String,
    },
    /// Parameters rejected (by the host's spec checks or by the pack).
    #[error("invalid parameters: {}", FieldError::join(.0))]
    InvalidParams(Vec<FieldError>),
    /// The pack failed while building (trap, time or memory limit, its own error).
    #[error("template pack `{pack}` failed: {source}")]
    Pack {
        /// Pack name.
        pack: String,
        /// What happened.
        source: CallError,
    },
    /// The graph failed the pre-submission check.
    #[error("the graph is invalid for this ComfyUI:\n{0}")]
    InvalidGraph(GraphErrors),
    /// The graph uses node classes the node policy refuses.
    #[error("the graph uses node classes this server refuses:\n{0}")]
    NodePolicy(PolicyViolations),
    /// A workflow file (checked before reading) or an inline workflow over the size cap.
    #[error(
        "workflow {path} is {bytes} bytes, over the limit of {limit} bytes; a server operator can raise it with --max-workflow-bytes or COMFYUI_MCP_MAX_WORKFLOW_BYTES"
    )]
    WorkflowTooLarge {
        /// The file, or [`crate::workflow_file::INLINE_NAME`].
        path: String,
        /// Its size (or what was read of it; an inline workflow as compact JSON).
        bytes: u64,
        /// The cap.
        limit: u64,
    },
    /// A workflow file with more nodes than the graph node cap.
    #[error(
        "workflow {name} has {nodes} nodes, over the limit of {limit} nodes per graph; a server operator can raise it with --max-graph-nodes or COMFYUI_MCP_MAX_GRAPH_NODES"
    )]
    WorkflowTooManyNodes {
        /// The file's name.
        name: String,
        /// Its node count.
        nodes: usize,
        /// The cap.
        limit: usize,
    },
    /// The graph names model files ComfyUI does not have (found by the graph check or by
    /// ComfyUI's own validation, `cause`); names what is installed.
    #[error("Missing model file: {}\n{cause}", crate::missing_model::MissingModel::describe(.models))]
    MissingModel {
        /// The missing files, each with the installed files of its folder.
        models: Vec<crate::missing_model::MissingModel>,
        /// The error as the graph check or ComfyUI reported it.
        cause: Box<AppError>,
    },
    /// ComfyUI has no such model folder (`list_models`, `comfyui://models/<folder>`).
    #[error("ComfyUI has no model folder `{folder}`; its folders: {available}")]
    UnknownModelFolder {
        /// As asked for (cut).
        folder: String,
        /// What exists, comma-separated.
        available: String,
    },
    /// ComfyUI refused, failed or was unreachable.
    #[error("{0}")]
    ComfyUi(ClientError),
    /// Cancelling failed.
    #[error("{0}")]
    Cancel(CancelError),
    /// Not a job of ours (or forgotten).
    #[error(
        "no job with prompt id `{0}` was submitted through this server (finished jobs are kept for a bounded time)"
    )]
    UnknownJob(String),
    /// No such image in a job.
    #[error("job `{prompt_id}` has no image `{filename}`; its images: {}", if .available.is_empty() { "none yet".to_owned() } else { .available.join(", ") })]
    UnknownImage {
        /// The job.
        prompt_id: String,
        /// Requested file.
        filename: String,
        /// What it has.
        available: Vec<String>,
    },
    /// No backend of the farm can run the graph: each one's reason.
    #[error("no ComfyUI backend can run this graph:\n{}", BackendRefusal::describe(.0))]
    NoBackend(Vec<BackendRefusal>),
    /// An image argument was refused or could not be uploaded (see [`InputError`]).
    #[error("{0}")]
    Input(#[from] InputError),
    /// A workflow path outside the allowed folders.
    #[error(
        "workflow path `{path}` is outside the allowed workflow folders ({allowed}); copy the file into one of them or add its folder with COMFYUI_WORKFLOW_DIRS"
    )]
    PathRefused {
        /// As given.
        path: String,
        /// The allowed folders.
        allowed: String,
    },
    /// A workflow file that cannot be used.
    #[error("{0}")]
    Workflow(String),
    /// A request that makes no sense as given.
    #[error("{0}")]
    InvalidRequest(String),
    /// No pack-call permit came free in time (admission control).
    #[error("{0}")]
    Busy(crate::admission::AdmissionError),
    /// The job store could not be read or written (locked beyond its busy timeout, damaged).
    #[error("the job store failed: {0}; the job is not lost: retry, or check the store file")]
    JobStore(#[from] comfyui::store::StoreError),
    /// A job of a bounded blocking pool (graph check, workflow file) did not finish.
    #[error("internal error: {0}")]
    Blocking(#[from] crate::blocking::BlockingError),
    /// A bug or an aborted task.
    #[error("internal error: {0}")]
    Internal(String),
}

/// Why one backend of a farm cannot run a graph.
#[derive(Debug)]
pub struct BackendRefusal {
    /// The backend's name.
    pub backend: String,
    /// Its reason (the graph check's, a missing model explained with what it has, or
    /// that it did not answer).
    pub error: AppError,
}

impl BackendRefusal {
    /// One line per backend: `- name: reason` (multi-line reasons indented).
    pub fn describe(refusals: &[BackendRefusal]) -> String {
        refusals
            .iter()
            .map(|r| {
                format!(
                    "- {}: {}",
                    r.backend,
                    r.error.to_string().replace('\n', "\n  ")
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl AppError {
    pub(crate) fn from_call(pack: &str, error: CallError) -> Self {
        match error {
            CallError::InvalidParams(errors) => AppError::InvalidParams(errors),
            CallError::UnknownTemplate { id, available } => {
                AppError::UnknownTemplate { id, available }
            }
            source => AppError::Pack {
                pack: pack.to_owned(),
                source,
            },
        }
    }

    /// A refused parameter check: the caller's arguments, or (a host defect) an image
    /// argument the intake did not prepare.
    pub(crate) fn from_resolve(error: pack_runtime::params::ResolveError) -> Self {
        match error {
            pack_runtime::params::ResolveError::Invalid(errors) => AppError::InvalidParams(errors),
            missing @ pack_runtime::params::ResolveError::MissingInput { .. } => {
                AppError::Internal(missing.to_string())
            }
        }
    }

    /// A pack call the admission did not run: busy, or a host-side failure.
    pub(crate) fn from_admission(error: crate::admission::AdmissionError) -> Self {
        match error {
            busy @ crate::admission::AdmissionError::Busy { .. } => AppError::Busy(busy),
            other => AppError::Internal(other.to_string()),
        }
    }

    /// A short machine-readable kind.
    pub fn kind(&self) -> &'static str {
        match self {
            AppError::UnknownTemplate { .. } => "unknown_template",
            AppError::InvalidParams(_) => "invalid_parameters",
            AppError::Pack { .. } => "pack_failed",
            AppError::InvalidGraph(_) => "invalid_graph",
            AppError::NodePolicy(_) => "node_refused",
            AppError::MissingModel { .. } => "missing_model",
            AppError::UnknownModelFolder { .. } => "unknown_model_folder",
            AppError::WorkflowTooLarge { .. } => "workflow_too_large",
            AppError::WorkflowTooManyNodes { .. } => "workflow_too_many_nodes",
            AppError::ComfyUi(ClientError::Rejected { .. }) => "comfyui_rejected",
            AppError::ComfyUi(_) => "comfyui_unavailable",
            AppError::Cancel(_) => "cancel_failed",
            AppError::UnknownJob(_) => "unknown_job",
            AppError::UnknownImage { .. } => "unknown_image",
            AppError::Input(e) => e.kind(),
            AppError::NoBackend(_) => "no_backend",
            AppError::PathRefused { .. } => "path_refused",
            AppError::Workflow(_) => "invalid_workflow",
            AppError::InvalidRequest(_) => "invalid_request",
            AppError::Busy(_) => "busy",
            AppError::JobStore(_) => "job_store",
            AppError::Blocking(_) | AppError::Internal(_) => "internal",
        }
    }

    /// `{"kind", "message", "details"?}` for structured error payloads.
    pub fn to_json(&self) -> Value {
        let details = match self {
            AppError::InvalidParams(errors) => Some(json!(errors)),
            AppError::InvalidGraph(errors) => Some(errors.to_json()),
            AppError::NodePolicy(violations) => Some(violations.to_json()),
            AppError::UnknownModelFolder { folder, .. } => Some(json!({ "folder": folder })),
            AppError::Input(e) => Some(json!({ "param": e.param() })),
            AppError::NoBackend(refusals) => Some(json!({
                "backends": refusals
                    .iter()
                    .map(|r| json!({"backend": r.backend, "error": r.error.to_json()}))
                    .collect::<Vec<_>>(),
            })),
            AppError::MissingModel { models, cause } => Some(json!({
                "missing_models": crate::missing_model::to_json(models),
                "cause": cause.to_json(),
            })),
            AppError::ComfyUi(ClientError::Rejected {
                error, node_errors, ..
            }) => Some(json!({"error": error, "node_errors": node_errors})),
            _ => None,
        };
        let mut out = json!({"kind": self.kind(), "message": self.to_string()});
        if let Some(details) = details {
            out["details"] = details;
        }
        out
    }
}
