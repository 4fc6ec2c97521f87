//! The MCP layer: exposes the [`App`](crate::app::App) to MCP clients over stdio or
//! streamable HTTP with rmcp.
//!
//! Module map: `server` (the rmcp `ServerHandler`: capabilities, dispatch, catalog-change
//! notifications), `tools` (tool definitions, argument handling and the calls into the
//! app), `schemas` (input and output JSON Schemas of the tools), `progress` (following a
//! job with `notifications/progress` until it ends, times out or the client cancels),
//! `render` (status JSON of a job, thumbnails and content blocks), `resources`
//! (`comfyui://` resources), `http` (streamable HTTP transport with auth and Host/Origin
//! checks), `stdio` (the stdio transport).
//!
//! Invariants: nothing in this layer writes to stdout (stdout is the MCP stream in stdio
//! mode); a failed tool call is a `CallToolResult` with `isError: true`, a precise text
//! message and `structuredContent = {"error": {kind, message, details?}}`, while protocol
//! errors are reserved for malformed requests (unknown tool, unknown resource).

pub mod http;
pub mod progress;
pub mod render;
pub mod resources;
pub mod schemas;
pub mod server;
pub mod stdio;
pub mod tools;

pub use http::{serve_http, serve_http_on};
pub use render::{generation_json, job_json};
pub use server::McpServer;
pub use stdio::serve_stdio;

/// How the MCP layer presents the app and who may reach it over HTTP.
#[derive(Debug, Clone)]
pub struct McpOptions {
    /// Also expose each template as its own tool, named after the template id.
    pub per_template_tools: bool,
    /// Bearer token every HTTP request must carry (`Authorization: Bearer <token>`).
    /// Required when the HTTP address is not a loopback address.
    pub http_token: Option<String>,
    /// Extra `Host` names (with or without port) accepted over HTTP, beyond loopback
    /// names and the bound address.
    pub allowed_hosts: Vec<String>,
    /// Extra browser origins (`scheme://host[:port]`) accepted over HTTP, beyond origins
    /// whose host is itself an accepted host.
    pub allowed_origins: Vec<String>,
}

impl Default for McpOptions {
    fn default() -> Self {
        Self {
            per_template_tools: true,
            http_token: None,
            allowed_hosts: Vec::new(),
            allowed_origins: Vec::new(),
        }
    }
}

impl McpOptions {
    /// The options of the `serve` command line.
    pub fn from_args(args: &crate::config::ServeArgs) -> Self {
        Self {
            per_template_tools: !args.no_template_tools,
            http_token: args.http_token.clone().filter(|t| !t.is_empty()),
            allowed_hosts: args.allowed_hosts.clone(),
            allowed_origins: Vec::new(),
        }
    }
}
