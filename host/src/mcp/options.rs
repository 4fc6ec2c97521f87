//! The options of the MCP layer: presentation, HTTP access, and the budgets of the protocol
//! layer (message size, thumbnail workers). Plain data, defaults written once here.

use std::time::Duration;

use super::framing::DEFAULT_MAX_REQUEST_BYTES;
use super::prompts::DEFAULT_MAX_PROMPT_ARGUMENT_BYTES;
use super::thumbnails::DEFAULT_THUMBNAIL_WORKERS;

/// Default of `--api-max-calls`: plain HTTP API calls running at once.
pub const DEFAULT_API_MAX_CALLS: usize = 32;

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
    /// Largest JSON-RPC message read, in bytes (a stdio line or an HTTP request body);
    /// larger ones are answered with an error naming this limit and are not buffered.
    pub max_request_bytes: usize,
    /// Time to receive a whole HTTP request body (`/mcp` and `/api`); a body still
    /// arriving then is refused with 408.
    pub body_timeout: Duration,
    /// Blocking threads that decode and encode thumbnails at once (all sessions).
    pub thumbnail_workers: usize,
    /// Largest value of one `prompts/get` argument, in bytes.
    pub max_prompt_argument_bytes: usize,
    /// Plain HTTP API calls (tool calls, image downloads) running at once.
    pub api_max_calls: usize,
    /// Default `timeout` of `wait`: the execution timeout (`COMFYUI_TIMEOUT`), at most
    /// [`MAX_TIMEOUT_SECS`](super::schemas::MAX_TIMEOUT_SECS).
    pub default_wait: Duration,
}

impl Default for McpOptions {
    fn default() -> Self {
        Self {
            per_template_tools: true,
            http_token: None,
            allowed_hosts: Vec::new(),
            allowed_origins: Vec::new(),
            max_request_bytes: DEFAULT_MAX_REQUEST_BYTES,
            body_timeout: super::body_deadline::DEFAULT_BODY_TIMEOUT,
            thumbnail_workers: DEFAULT_THUMBNAIL_WORKERS,
            max_prompt_argument_bytes: DEFAULT_MAX_PROMPT_ARGUMENT_BYTES,
            api_max_calls: DEFAULT_API_MAX_CALLS,
            default_wait: comfyui::config::DEFAULT_EXECUTION_TIMEOUT,
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
            max_request_bytes: args.max_request_bytes,
            body_timeout: Duration::from_millis(args.http_body_timeout_ms),
            thumbnail_workers: args.thumbnail_workers,
            max_prompt_argument_bytes: DEFAULT_MAX_PROMPT_ARGUMENT_BYTES,
            api_max_calls: args.api_max_calls,
            default_wait: comfyui::config::DEFAULT_EXECUTION_TIMEOUT,
        }
    }

    /// The same options with the prompt argument cap of the settings.
    pub fn with_prompt_limits(mut self, settings: &crate::config::Settings) -> Self {
        self.max_prompt_argument_bytes = settings.max_prompt_argument_bytes;
        self
    }

    /// The same options with `wait` defaulting to the execution timeout (capped at the
    /// largest `timeout` accepted).
    pub fn with_default_wait(mut self, execution_timeout: Duration) -> Self {
        self.default_wait =
            execution_timeout.min(Duration::from_secs_f64(super::schemas::MAX_TIMEOUT_SECS));
        self
    }
}
