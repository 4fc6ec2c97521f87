//! comfyui-mcp: an MCP server in front of ComfyUI whose workflow templates are
//! sandboxed WebAssembly components.
//!
//! Module map:
//! * [`config`]: command line and environment settings;
//! * [`catalog`]: immutable snapshots of the loaded packs and their templates;
//! * [`admission`]: the one place pack calls are admitted and run;
//! * [`loader`] and [`selftest`]: turning pack files into catalog entries;
//! * [`postprocess`]: a job's output images post-processed by its pack (ABI 2.x);
//! * [`packs`]: the pack files' load states, loaded concurrently, published per pack;
//! * [`watch`]: hot reload of the templates folder;
//! * [`allowed_dirs`]: the folder policy of every file a client names by path;
//! * [`workflow_file`]: custom workflow files (folder, size cap, overrides);
//! * [`inputs`]: images from clients (sources, caps, decoding, masks, the upload);
//! * [`uris`]: the `comfyui://` URIs, built and parsed;
//! * [`blocking`] and [`graph_gate`]: the bounded blocking pool, and the node policy and
//!   graph check every graph passes on it before submission;
//! * [`farm`]: one or several ComfyUI backends: placement, retention, failover;
//! * [`app`]: the service core shared by every MCP session;
//! * [`mcp`]: the MCP server (tools, resources, progress; stdio and HTTP);
//! * [`commands`]: the `templates`, `check` and `simulate` commands;
//! * [`scaffold`]: `new`, a pack project to start from (Rust, Python or JavaScript).
//!
//! The sandbox lives in the `pack_runtime` crate, the ComfyUI protocol in
//! `comfyui`, and the ComfyUI stand-in in `simulator`.

pub mod admission;
pub mod allowed_dirs;
pub mod app;
pub mod blocking;
pub mod catalog;
pub mod check_report;
pub mod commands;
pub mod config;
pub mod error;
pub mod farm;
pub mod graph_gate;
pub mod inputs;
pub mod live;
pub mod loader;
pub mod mcp;
pub mod missing_model;
pub mod packs;
pub mod postprocess;
pub mod reattach;
pub mod results;
pub mod runnable;
pub mod scaffold;
pub mod selftest;
pub mod sim_control;
pub mod uris;
pub mod watch;
pub mod workflow_file;

pub use app::App;
pub use error::AppError;
