//! The MCP layer: exposes the [`App`](crate::app::App) to MCP clients over stdio or
//! streamable HTTP with rmcp.
//!
//! Module map, each module depending only on the ones listed before it (the dependencies
//! form a DAG; only the transports depend on `server`, and nothing on the transports):
//! * leaves: `uris` (building and parsing `comfyui://` URIs), `content` (tool result
//!   envelopes), `thumbnails` (inline thumbnails on a bounded blocking pool), `schemas`
//!   (input and output JSON Schemas of the tools), `progress` (following a job with
//!   `notifications/progress`), `framing` (JSON-RPC message checks and the stdio framing
//!   layer);
//! * `options` (the layer's options) on `framing` and `thumbnails` (their defaults);
//! * `render` (status JSON of a job, image entries and blocks) on `uris` and `thumbnails`;
//! * `outcome` (the call context and the typed outcome of a tool call) on `content` and
//!   `progress`;
//! * `models` (`list_models` and `comfyui://models/<folder>`) on `outcome` and `uris`;
//! * `resources` (`comfyui://` resources) on `render`, `uris` and `models`;
//! * `definitions` (the tool list and its cache) on `schemas`, `options` and `models`;
//! * `shared` (state shared by every session) on `definitions`, `resources`, `thumbnails`;
//! * `jobs_tool` (the `list_jobs` tool) on `shared`, `render`, `content`, `definitions`;
//! * `tools` (argument handling and the calls into the app) on `shared`, `render`,
//!   `outcome`, `progress`, `jobs_tool`; it renders nothing itself: MCP and the API render its outcome;
//! * `prompts` (one MCP prompt per template) on `definitions` and `options`;
//! * `server` (the rmcp `ServerHandler`) on `shared`, `tools`, `resources`, `prompts`;
//! * `guard` (`Host`/`Origin`/token checks in front of HTTP routes) on `options`;
//! * `api` (the plain HTTP API at `/api`) on `tools`, `shared`, `guard`;
//! * `stdio` and `http` (the transports) on `server` and `framing`; `http` also mounts
//!   `api`.
//!
//! Invariants: nothing in this layer writes to stdout (stdout is the MCP stream in stdio
//! mode); a failed tool call is a `CallToolResult` with `isError: true`, a precise text
//! message and `structuredContent = {"error": {kind, message, details?}}`, while protocol
//! errors are reserved for malformed requests (unknown tool, unknown resource).

pub mod api;
pub mod body_deadline;
pub mod content;
pub mod definitions;
pub mod framing;
pub mod guard;
pub mod http;
pub mod jobs_tool;
pub mod models;
pub mod options;
pub mod outcome;
pub mod progress;
pub mod prompts;
pub mod render;
pub mod resources;
pub mod schemas;
pub mod server;
pub mod shared;
pub mod stdio;
pub mod thumbnails;
pub mod tools;
pub use crate::uris;

pub use http::{serve_http, serve_http_on};
pub use options::McpOptions;
pub use render::{generation_json, job_json};
pub use server::McpServer;
pub use shared::Shared;
pub use stdio::serve_stdio;
