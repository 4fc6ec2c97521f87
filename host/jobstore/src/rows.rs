//! One `jobs` row ⇄ one [`StoredJob`]: the column list every query selects, the state ranks
//! the forward-only rule compares, and the JSON encoding of nested values.
//!
//! Invariant: [`COLUMNS`] and [`read_job`] agree on column order; ranks are 0 (queued),
//! 1 (running), 2 (any ending), so an ending never replaces another.

use std::path::Path;

use comfyui::store::StoredJob;
use comfyui::{JobSnapshot, JobState};
use rusqlite::Row;
use serde::de::DeserializeOwned;

use crate::error::StoreError;

/// The columns [`read_job`] reads, in order.
pub const COLUMNS: &str = "prompt_id, origin, parameters, metadata, graph_sha256, graph_nodes, \
     state, progress, queue_position, submitted_at, started_at, finished_at, execution_time, \
     error, node_errors, warnings, images, files, backend, cancel_requested, postprocess_ms, \
     postprocessing";

/// The rank of a state in the forward-only order.
pub fn rank(state: JobState) -> i64 {
    match state {
        JobState::Queued => 0,
        JobState::Running => 1,
        JobState::Completed | JobState::Failed | JobState::Cancelled => 2,
    }
}

/// A state from its stored name.
pub fn parse_state(name: &str) -> Option<JobState> {
    [
        JobState::Queued,
        JobState::Running,
        JobState::Completed,
        JobState::Failed,
        JobState::Cancelled,
    ]
    .into_iter()
    .find(|s| s.as_str() == name)
}

/// JSON text of a value (our own types always serialise).
pub fn json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_else(|_| "null".into())
}

/// The raw text of one row, before decoding.
pub struct RawJob {
    texts: [String; 8],
    error: Option<String>,
    prompt_id: String,
    graph_sha256: String,
    state: String,
    progress: f64,
    queue_position: Option<u32>,
    submitted_at: f64,
    started_at: Option<f64>,
    finished_at: Option<f64>,
    execution_time: Option<f64>,
    backend: String,
    cancel_requested: bool,
    postprocess_ms: Option<f64>,
    postprocessing: Option<String>,
}

/// Reads a row selected with [`COLUMNS`].
pub fn read_raw(row: &Row<'_>) -> rusqlite::Result<RawJob> {
    Ok(RawJob {
        prompt_id: row.get(0)?,
        texts: [
            row.get(1)?,
            row.get(2)?,
            row.get(3)?,
            row.get(5)?,
            row.get(14)?,
            row.get(15)?,
            row.get(16)?,
            row.get(17)?,
        ],
        graph_sha256: row.get(4)?,
        state: row.get(6)?,
        progress: row.get(7)?,
        queue_position: row.get(8)?,
        submitted_at: row.get(9)?,
        started_at: row.get(10)?,
        finished_at: row.get(11)?,
        execution_time: row.get(12)?,
        error: row.get(13)?,
        backend: row.get(18)?,
        cancel_requested: row.get(19)?,
        postprocess_ms: row.get(20)?,
        postprocessing: row.get(21)?,
    })
}

const TEXT_NAMES: [&str; 8] = [
    "origin",
    "parameters",
    "metadata",
    "graph_nodes",
    "node_errors",
    "warnings",
    "images",
    "files",
];

impl RawJob {
    /// Decodes the JSON columns.
    pub fn decode(self, path: &Path) -> Result<StoredJob, StoreError> {
        let id = self.prompt_id.clone();
        let field = |i: usize| Field {
            path,
            id: &id,
            column: TEXT_NAMES[i],
        };
        let [
            origin,
            parameters,
            metadata,
            nodes,
            node_errors,
            warnings,
            images,
            files,
        ] = &self.texts;
        let state = parse_state(&self.state).ok_or_else(|| StoreError::Decode {
            path: path.to_path_buf(),
            prompt_id: id.clone(),
            column: "state",
            source: serde::de::Error::custom(format!("unknown state {:?}", self.state)),
        })?;
        let error = match &self.error {
            Some(text) => Some(
                Field {
                    path,
                    id: &id,
                    column: "error",
                }
                .parse(text)?,
            ),
            None => None,
        };
        let postprocessing = match &self.postprocessing {
            Some(text) => Some(
                Field {
                    path,
                    id: &id,
                    column: "postprocessing",
                }
                .parse(text)?,
            ),
            None => None,
        };
        let snapshot = JobSnapshot {
            prompt_id: self.prompt_id,
            state,
            progress: self.progress,
            queue_position: self.queue_position,
            execution_time: self.execution_time,
            postprocess_ms: self.postprocess_ms,
            postprocessing,
            images: field(6).parse(images)?,
            files: field(7).parse(files)?,
            error,
            node_errors: field(4).parse(node_errors)?,
            submitted_at: self.submitted_at,
            started_at: self.started_at,
            finished_at: self.finished_at,
            origin: field(0).parse(origin)?,
            parameters: field(1).parse(parameters)?,
            metadata: field(2).parse(metadata)?,
            backend: self.backend.clone(),
            warnings: field(5).parse(warnings)?,
        };
        Ok(StoredJob {
            snapshot,
            backend: self.backend,
            graph_sha256: self.graph_sha256,
            graph_nodes: field(3).parse(nodes)?,
            cancel_requested: self.cancel_requested,
        })
    }
}

struct Field<'a> {
    path: &'a Path,
    id: &'a str,
    column: &'static str,
}

impl Field<'_> {
    fn parse<T: DeserializeOwned>(&self, text: &str) -> Result<T, StoreError> {
        serde_json::from_str(text).map_err(|source| StoreError::Decode {
            path: self.path.to_path_buf(),
            prompt_id: self.id.to_owned(),
            column: self.column,
            source,
        })
    }
}
