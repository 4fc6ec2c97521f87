//! ComfyUI protocol for comfyui-mcp: node catalog and graph checks, the HTTP client, typed
//! websocket events with a reconnecting event stream, the job tracker (`ComfyUi`) and local
//! output storage.
//!
//! Module map: `config` (connection settings), `error` (error types), `types` (shared wire
//! types), `cache` (single-flight caches), `client` (HTTP API), `queue` (`GET /queue`, typed), `events` (websocket messages), `ws` (websocket task),
//! `snapshot` (public job view), `tracker` (job state machine, no I/O), `jobs` (the backend
//! service), `outputs` (downloads and provenance), `postprocess` (the post-processing stage: contract,
//! PNG codec, per-job run), `store` (the job store interface and job listing),
//! `persist` (drives the job store), `nodes` (object_info catalog), `graph`
//! (graph checker), `policy` (which node classes a graph may use), `watchdog` (the execution timeout).

pub mod cache;
pub mod client;
pub mod config;
pub mod error;
pub mod events;
pub mod graph;
pub mod jobs;
pub mod nodes;
pub mod outputs;
pub mod persist;
pub mod policy;
pub mod postprocess;
pub mod queue;
pub mod reattach;
pub mod snapshot;
pub mod store;
pub mod tracker;
pub mod types;
pub mod watchdog;
pub mod ws;

pub use client::{
    ComfyClient, HistoryEntry, HistoryOutcome, QueueEntry, QueueSnapshot, SubmitAccepted,
};
pub use config::{BodyLimits, ComfyConfig};
pub use error::{CancelError, ClientError, ConfigError};
pub use events::Event;
pub use jobs::{BackendOptions, CancelOutcome, ComfyUi, ConnectionState, ModelSnapshot};
pub use outputs::OutputError;
pub use postprocess::{
    OutputProcessor, PostprocessError, PostprocessOptions, PostprocessStep, Postprocessed,
    RgbaImage,
};
pub use snapshot::{
    FailureKind, JobFailure, JobOrigin, JobRequest, JobSnapshot, JobState, SavedImage,
};
pub use types::ImageRef;
