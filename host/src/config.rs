//! Command line and environment configuration, as plain data with every
//! default in one place. Flags win over environment variables, which win over
//! defaults (clap's `env` support).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

/// comfyui-mcp: an MCP server in front of ComfyUI whose workflow templates are
/// sandboxed WebAssembly components.
#[derive(Debug, Parser)]
#[command(name = "comfyui-mcp", version, about, long_about = None)]
pub struct Cli {
    /// What to do; `serve` when omitted.
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Settings shared by every command.
    #[command(flatten)]
    pub settings: Settings,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the MCP server (stdio by default, streamable HTTP with --http).
    Serve(ServeArgs),
    /// List the templates of every pack in the templates folder.
    Templates,
    /// Load one pack, build every template with its defaults, check the graphs.
    Check {
        /// The pack file (.wasm).
        pack: PathBuf,
        /// Print the report as one JSON object instead of text.
        #[arg(long)]
        json: bool,
        /// Treat warnings as errors (non-zero exit when there are any).
        #[arg(long)]
        strict: bool,
    },
    /// Run the ComfyUI simulator on loopback (a stand-in for development and tests).
    Simulate(SimulateArgs),
    /// Write a new pack project (one working text-to-image template) in Rust, Python or JS.
    New(crate::scaffold::NewArgs),
}

/// Options of `serve`.
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Serve MCP over streamable HTTP on this address (e.g. 127.0.0.1:8765) instead of stdio.
    #[arg(long, value_name = "ADDR")]
    pub http: Option<SocketAddr>,
    /// Bearer token HTTP clients must send. Required when --http is not a loopback address.
    #[arg(long, env = "COMFYUI_MCP_HTTP_TOKEN", hide_env_values = true)]
    pub http_token: Option<String>,
    /// Extra Host names accepted on HTTP (comma-separated), e.g. behind a reverse proxy.
    #[arg(long, env = "COMFYUI_MCP_ALLOWED_HOSTS", value_delimiter = ',')]
    pub allowed_hosts: Vec<String>,
    /// Do not expose each template as its own MCP tool (only the generic generate_image).
    #[arg(long, env = "COMFYUI_MCP_NO_TEMPLATE_TOOLS")]
    pub no_template_tools: bool,
    /// Do not watch the templates folder for changes.
    #[arg(long, env = "COMFYUI_MCP_NO_WATCH")]
    pub no_watch: bool,
    /// Largest JSON-RPC message accepted, in bytes (one stdio line or one HTTP body).
    #[arg(
        long,
        env = "COMFYUI_MCP_MAX_REQUEST_BYTES",
        default_value_t = crate::mcp::framing::DEFAULT_MAX_REQUEST_BYTES,
        value_parser = positive_count
    )]
    pub max_request_bytes: usize,
    /// Milliseconds to receive a whole HTTP request body (`/mcp`, `/api`); 408 after.
    #[arg(
        long,
        env = "COMFYUI_MCP_HTTP_BODY_TIMEOUT_MS",
        default_value_t = crate::mcp::body_deadline::DEFAULT_BODY_TIMEOUT.as_millis() as u64,
        value_parser = clap::value_parser!(u64).range(1..)
    )]
    pub http_body_timeout_ms: u64,
    /// Blocking threads making inline thumbnails at once (decode, scale, encode).
    #[arg(
        long,
        env = "COMFYUI_MCP_THUMBNAIL_WORKERS",
        default_value_t = crate::mcp::thumbnails::DEFAULT_THUMBNAIL_WORKERS,
        value_parser = positive_count
    )]
    pub thumbnail_workers: usize,
    // Plain HTTP API (`/api` beside `/mcp` when serving --http).
    /// Plain HTTP API calls (tool calls and image downloads) running at once; beyond it a
    /// call is answered 503 with Retry-After.
    #[arg(
        long,
        env = "COMFYUI_MCP_API_MAX_CALLS",
        default_value_t = crate::mcp::options::DEFAULT_API_MAX_CALLS,
        value_parser = positive_count
    )]
    pub api_max_calls: usize,
}

/// Options of `simulate`.
#[derive(Debug, Clone, Args)]
pub struct SimulateArgs {
    /// Port on 127.0.0.1 (0 picks a free one; the address is printed on stderr).
    #[arg(long, default_value_t = 8188)]
    pub port: u16,
    /// Simulated time per sampler step and per node, in milliseconds.
    #[arg(long, default_value_t = 20)]
    pub step_delay_ms: u64,
    /// Checkpoint files this machine reports (comma-separated; `""` for none). Default: the
    /// bundled catalog's two.
    #[arg(long, value_delimiter = ',', num_args = 0..)]
    pub checkpoints: Option<Vec<String>>,
    /// LoRA files this machine reports (comma-separated). Default: none.
    #[arg(long, value_delimiter = ',', num_args = 0..)]
    pub loras: Option<Vec<String>>,
    /// Node classes this machine lacks (comma-separated), as an install without some custom
    /// nodes.
    #[arg(long, value_delimiter = ',')]
    pub omit_nodes: Vec<String>,
}

impl SimulateArgs {
    /// The simulated machine these flags describe (empty names dropped).
    pub fn machine(&self) -> simulator::Machine {
        let names = |list: &Option<Vec<String>>| {
            list.as_ref().map(|l| {
                l.iter()
                    .map(|n| n.trim().to_owned())
                    .filter(|n| !n.is_empty())
                    .collect()
            })
        };
        simulator::Machine {
            checkpoints: names(&self.checkpoints),
            loras: names(&self.loras),
            omit_nodes: names(&Some(self.omit_nodes.clone())).unwrap_or_default(),
        }
    }
}

/// Settings shared by every command.
#[derive(Debug, Clone, Args)]
pub struct Settings {
    /// ComfyUI's base URL (http or https, may include a path prefix); several, comma-separated,
    /// make a farm.
    #[arg(
        long,
        env = "COMFYUI_URL",
        default_value = "http://127.0.0.1:8188",
        global = true
    )]
    pub comfyui_url: String,
    /// API key sent to ComfyUI as a bearer token (every backend without its own).
    #[arg(long, env = "COMFYUI_API_KEY", hide_env_values = true, global = true)]
    pub comfyui_api_key: Option<String>,
    // --- Several ComfyUI backends (a farm) ---
    /// A JSON file listing the backends (url, name, api_key, capacity); replaces COMFYUI_URL.
    #[arg(long, env = "COMFYUI_MCP_BACKENDS_FILE", global = true)]
    pub backends_file: Option<PathBuf>,
    /// Milliseconds a backend of a farm may be unreachable before its open jobs leave it.
    #[arg(
        long,
        env = "COMFYUI_MCP_FAILOVER_AFTER_MS",
        default_value_t = crate::farm::FarmOptions::DEFAULT_FAILOVER_AFTER.as_millis() as u64,
        value_parser = clap::value_parser!(u64).range(1..),
        global = true
    )]
    pub failover_after_ms: u64,
    /// MiB of requests (graphs, input images) a farm keeps so that queued jobs can move.
    #[arg(
        long,
        env = "COMFYUI_MCP_FARM_RETAIN_MB",
        default_value_t = crate::farm::FarmOptions::DEFAULT_RETAIN_BYTES >> 20,
        global = true
    )]
    pub farm_retain_mb: u64,
    // --- Execution timeout and ComfyUI request timeout (topic: custom workflows + timeouts) ---
    /// Longest a workflow may execute in ComfyUI, in seconds (time waiting in ComfyUI's queue
    /// does not count); a job over it is interrupted and fails. Also the default `timeout`
    /// of `wait`.
    #[arg(
        long,
        env = "COMFYUI_TIMEOUT",
        default_value_t = comfyui::config::DEFAULT_EXECUTION_TIMEOUT.as_secs_f64(),
        value_parser = positive_seconds,
        global = true
    )]
    pub comfyui_timeout: f64,
    /// Timeout of each HTTP request to ComfyUI (each image download too), in seconds.
    #[arg(
        long,
        env = "COMFYUI_MCP_REQUEST_TIMEOUT",
        default_value_t = comfyui::config::DEFAULT_REQUEST_TIMEOUT.as_secs_f64(),
        value_parser = positive_seconds,
        global = true
    )]
    pub request_timeout: f64,
    // --- end of the timeout settings ---
    /// Where finished images and their provenance are written.
    #[arg(
        long,
        env = "COMFYUI_OUTPUT_DIR",
        default_value = "./generated_images",
        global = true
    )]
    pub output_dir: PathBuf,
    /// The watched folder of workflow packs (.wasm).
    #[arg(
        long,
        env = "COMFYUI_TEMPLATES_DIR",
        default_value = "./templates",
        global = true
    )]
    pub templates_dir: PathBuf,
    /// Folders load_workflow may read from (':'-separated in the environment).
    #[arg(
        long = "workflow-dir",
        env = "COMFYUI_WORKFLOW_DIRS",
        value_delimiter = ':',
        default_values = ["./workflows", "examples/workflows"],
        global = true
    )]
    pub workflow_dirs: Vec<PathBuf>,
    /// Compiled-pack cache folder; "off" disables it. Default: the user cache folder.
    /// It must be owned by this user and not writable by group or others
    /// (artifacts are native code); otherwise the server refuses to start.
    #[arg(long, env = "COMFYUI_MCP_CACHE_DIR", global = true)]
    pub cache_dir: Option<String>,
    /// Size cap of the compiled-pack cache, in MiB; least recently used
    /// artifacts are deleted past it.
    #[arg(
        long,
        env = "COMFYUI_MCP_CACHE_MAX_MB",
        default_value_t = pack_runtime::DEFAULT_CACHE_MAX_MB,
        global = true
    )]
    pub cache_max_mb: u64,
    /// Memory cap of one pack call, in MiB.
    #[arg(
        long,
        env = "COMFYUI_MCP_PACK_MEMORY_MB",
        default_value_t = 64,
        global = true
    )]
    pub pack_memory_mb: usize,
    /// Time cap of one pack call, in milliseconds.
    #[arg(
        long,
        env = "COMFYUI_MCP_PACK_TIMEOUT_MS",
        default_value_t = 2000,
        global = true
    )]
    pub pack_timeout_ms: u64,
    /// Size cap of the graph a pack returns, in bytes.
    #[arg(long, env = "COMFYUI_MCP_MAX_GRAPH_BYTES", default_value_t = 4 << 20, global = true)]
    pub max_graph_bytes: usize,
    /// Pack calls running at once, server-wide (each on its own 8 MiB-stack
    /// thread). Default: the number of cores.
    #[arg(long, env = "COMFYUI_MCP_PACK_CONCURRENCY", global = true)]
    pub pack_concurrency: Option<usize>,
    /// Pack calls of one pack running at once. Default: half the pack
    /// concurrency, rounded up.
    #[arg(long, env = "COMFYUI_MCP_PACK_SHARE", global = true)]
    pub pack_share: Option<usize>,
    /// Longest wait for a pack-call permit before a call fails as busy, in milliseconds.
    #[arg(
        long,
        env = "COMFYUI_MCP_PACK_QUEUE_WAIT_MS",
        default_value_t = 5000,
        global = true
    )]
    pub pack_queue_wait_ms: u64,
    /// Budget of a whole pack load (describe, then the self-test of every
    /// template), in milliseconds.
    #[arg(
        long,
        env = "COMFYUI_MCP_PACK_LOAD_TIMEOUT_MS",
        default_value_t = 10_000,
        global = true
    )]
    pub pack_load_timeout_ms: u64,
    /// Most nodes in one graph, from a pack or a workflow file; bigger graphs are refused.
    #[arg(
        long,
        env = "COMFYUI_MCP_MAX_GRAPH_NODES",
        default_value_t = comfyui::graph::GraphLimits::DEFAULT.max_nodes,
        global = true
    )]
    pub max_graph_nodes: usize,
    /// Most graph defects listed in one error (the rest are counted).
    #[arg(
        long,
        env = "COMFYUI_MCP_MAX_GRAPH_ERRORS",
        default_value_t = comfyui::graph::GraphLimits::DEFAULT.max_errors,
        global = true
    )]
    pub max_graph_errors: usize,
    /// Most "did you mean" suggestions computed for one graph.
    #[arg(
        long,
        env = "COMFYUI_MCP_MAX_GRAPH_SUGGESTIONS",
        default_value_t = comfyui::graph::GraphLimits::DEFAULT.max_suggestions,
        global = true
    )]
    pub max_graph_suggestions: usize,
    /// Graph checks and workflow-file reads running at once, off the async runtime (at least 1).
    #[arg(
        long,
        env = "COMFYUI_MCP_CHECK_THREADS",
        default_value_t = crate::blocking::BlockingPool::DEFAULT_THREADS,
        global = true
    )]
    pub check_threads: usize,
    /// Size cap of a load_workflow file, in bytes (checked before reading).
    #[arg(
        long,
        env = "COMFYUI_MCP_MAX_WORKFLOW_BYTES",
        default_value_t = crate::workflow_file::DEFAULT_MAX_WORKFLOW_BYTES,
        global = true
    )]
    pub max_workflow_bytes: u64,
    // --- Images from clients (image and mask parameters) ---
    /// Folders an image argument may name files in (':'-separated in the environment).
    #[arg(
        long = "input-dir",
        env = "COMFYUI_MCP_INPUT_DIRS",
        value_delimiter = ':',
        default_values = ["./inputs"],
        global = true
    )]
    pub input_dirs: Vec<PathBuf>,
    /// Size cap of one input image, in bytes (base64: its decoded size, from its length).
    #[arg(
        long,
        env = "COMFYUI_MCP_INPUT_MAX_BYTES",
        default_value_t = crate::inputs::InputLimits::DEFAULT_MAX_BYTES,
        value_parser = clap::value_parser!(u64).range(1..),
        global = true
    )]
    pub input_max_bytes: u64,
    /// Largest input image, in pixels (width × height, from its header, before decoding).
    #[arg(
        long,
        env = "COMFYUI_MCP_INPUT_MAX_PIXELS",
        default_value_t = crate::inputs::InputLimits::DEFAULT_MAX_PIXELS,
        value_parser = clap::value_parser!(u64).range(1..),
        global = true
    )]
    pub input_max_pixels: u64,
    /// Input images read and decoded at once, off the async runtime.
    #[arg(
        long,
        env = "COMFYUI_MCP_INPUT_THREADS",
        default_value_t = crate::inputs::InputLimits::DEFAULT_THREADS,
        value_parser = positive_count,
        global = true
    )]
    pub input_threads: usize,
    /// Node classes allowed although the node policy refuses them by default (comma-separated),
    /// e.g. CheckpointSave or one API node class.
    #[arg(
        long,
        env = "COMFYUI_MCP_ALLOW_NODES",
        value_delimiter = ',',
        global = true
    )]
    pub allow_nodes: Vec<String>,
    /// Allow every paid API node (refused by default); the environment takes 1/true/yes/on.
    #[arg(
        long,
        env = "COMFYUI_MCP_ALLOW_API_NODES",
        value_parser = clap::builder::BoolishValueParser::new(),
        global = true
    )]
    pub allow_api_nodes: bool,
    /// Core module instances one pack call may create.
    #[arg(long, env = "COMFYUI_MCP_PACK_MAX_INSTANCES", default_value_t = pack_runtime::Limits::default().max_instances, global = true)]
    pub pack_max_instances: usize,
    /// Linear memories one pack call may create (all share the memory cap).
    #[arg(long, env = "COMFYUI_MCP_PACK_MAX_MEMORIES", default_value_t = pack_runtime::Limits::default().max_memories, global = true)]
    pub pack_max_memories: usize,
    /// Tables one pack call may create (their elements share the memory cap).
    #[arg(long, env = "COMFYUI_MCP_PACK_MAX_TABLES", default_value_t = pack_runtime::Limits::default().max_tables, global = true)]
    pub pack_max_tables: usize,
    /// WebAssembly stack of one pack call, in KiB (each call runs on a thread with this plus 2 MiB).
    #[arg(long, env = "COMFYUI_MCP_PACK_STACK_KB", default_value_t = pack_runtime::Limits::default().wasm_stack_bytes >> 10, global = true)]
    pub pack_stack_kb: usize,
    /// Pack calls at once served from the instance pool (faster
    /// instantiation); calls past it are allocated on demand. 0 turns the pool off.
    #[arg(long, env = "COMFYUI_MCP_PACK_POOL_SLOTS", default_value_t = pack_runtime::DEFAULT_POOL_SLOTS, global = true)]
    pub pack_pool_slots: usize,
    /// KiB of each pooled memory and table kept resident between calls
    /// (reset in place, no page faults on reuse); 0 returns every page to the kernel.
    #[arg(long, env = "COMFYUI_MCP_PACK_POOL_KEEP_RESIDENT_KB", default_value_t = pack_runtime::Limits::default().pool_keep_resident_bytes >> 10, global = true)]
    pub pack_pool_keep_resident_kb: usize,
    /// Bytes of log output (log, stdout, stderr) kept per pack call.
    #[arg(long, env = "COMFYUI_MCP_PACK_LOG_BYTES", default_value_t = pack_runtime::Limits::default().max_log_bytes, global = true)]
    pub pack_log_bytes: usize,
    /// Lines of log output kept per pack call (empty lines count).
    #[arg(long, env = "COMFYUI_MCP_PACK_LOG_LINES", default_value_t = pack_runtime::Limits::default().max_log_lines, global = true)]
    pub pack_log_lines: usize,
    /// Bytes kept of one pack error text (a failure message, one field error).
    #[arg(long, env = "COMFYUI_MCP_PACK_ERROR_BYTES", default_value_t = pack_runtime::Limits::default().max_error_bytes, global = true)]
    pub pack_error_bytes: usize,
    /// Field errors kept from a pack's invalid-params answer.
    #[arg(long, env = "COMFYUI_MCP_PACK_FIELD_ERRORS", default_value_t = pack_runtime::Limits::default().max_field_errors, global = true)]
    pub pack_field_errors: usize,
    /// Bytes one wasi:random request of a pack may ask for.
    #[arg(long, env = "COMFYUI_MCP_PACK_RANDOM_BYTES", default_value_t = pack_runtime::Limits::default().max_random_bytes, global = true)]
    pub pack_random_bytes: u64,
    /// Steps kept from one post-processing call.
    #[arg(long, env = "COMFYUI_MCP_POSTPROCESS_MAX_STEPS", default_value_t = pack_runtime::Limits::default().max_postprocess_steps, global = true)]
    pub postprocess_max_steps: usize,
    /// Largest pack file accepted, in bytes (checked before reading).
    #[arg(
        long,
        env = "COMFYUI_MCP_MAX_PACK_FILE_BYTES",
        default_value_t = pack_runtime::MetadataLimits::DEFAULT.max_pack_file_bytes,
        global = true
    )]
    pub max_pack_file_bytes: u64,
    /// Templates one pack may offer.
    #[arg(
        long,
        env = "COMFYUI_MCP_MAX_TEMPLATES_PER_PACK",
        default_value_t = pack_runtime::MetadataLimits::DEFAULT.max_templates_per_pack,
        global = true
    )]
    pub max_templates_per_pack: usize,
    /// Parameters one template may declare.
    #[arg(
        long,
        env = "COMFYUI_MCP_MAX_PARAMS_PER_TEMPLATE",
        default_value_t = pack_runtime::MetadataLimits::DEFAULT.max_params_per_template,
        global = true
    )]
    pub max_params_per_template: usize,
    /// Bytes of a pack name or version, template name or category.
    #[arg(
        long,
        env = "COMFYUI_MCP_MAX_NAME_BYTES",
        default_value_t = pack_runtime::MetadataLimits::DEFAULT.max_name_bytes,
        global = true
    )]
    pub max_name_bytes: usize,
    /// Bytes of one pack, template or parameter description.
    #[arg(
        long,
        env = "COMFYUI_MCP_MAX_DESCRIPTION_BYTES",
        default_value_t = pack_runtime::MetadataLimits::DEFAULT.max_description_bytes,
        global = true
    )]
    pub max_description_bytes: usize,
    /// Entries of one metadata list (a template's tags, a parameter's choices or aliases).
    #[arg(
        long,
        env = "COMFYUI_MCP_MAX_LIST_ITEMS",
        default_value_t = pack_runtime::MetadataLimits::DEFAULT.max_list_items,
        global = true
    )]
    pub max_list_items: usize,
    /// Bytes of one tag, choice or alias.
    #[arg(
        long,
        env = "COMFYUI_MCP_MAX_ITEM_BYTES",
        default_value_t = pack_runtime::MetadataLimits::DEFAULT.max_item_bytes,
        global = true
    )]
    pub max_item_bytes: usize,
    /// Bytes of all metadata text of one pack together.
    #[arg(
        long,
        env = "COMFYUI_MCP_MAX_METADATA_BYTES",
        default_value_t = pack_runtime::MetadataLimits::DEFAULT.max_metadata_bytes,
        global = true
    )]
    pub max_metadata_bytes: usize,
    /// Bytes of one text parameter (e.g. a prompt) a caller may pass.
    #[arg(
        long,
        env = "COMFYUI_MCP_MAX_TEXT_PARAM_BYTES",
        default_value_t = pack_runtime::MetadataLimits::DEFAULT.max_text_param_bytes,
        global = true
    )]
    pub max_text_param_bytes: usize,
    /// Finished jobs remembered for status look-ups (oldest evicted first).
    #[arg(
        long,
        env = "COMFYUI_MCP_MAX_JOBS",
        default_value_t = 1000,
        global = true
    )]
    pub max_finished_jobs: usize,
    /// Size cap of ComfyUI's largest JSON answers (`/object_info`, `/queue`), in MiB.
    #[arg(
        long,
        env = "COMFYUI_MCP_MAX_COMFY_BODY_MB",
        default_value_t = comfyui::BodyLimits::DEFAULT_LARGE_JSON >> 20,
        global = true
    )]
    pub max_comfy_body_mb: u64,
    /// Size cap of every other JSON answer from ComfyUI (`/prompt`, `/history`, …), in MiB.
    #[arg(
        long,
        env = "COMFYUI_MCP_MAX_COMFY_ANSWER_MB",
        default_value_t = comfyui::BodyLimits::DEFAULT_JSON >> 20,
        global = true
    )]
    pub max_comfy_answer_mb: u64,
    /// Size cap of one image downloaded from ComfyUI, in MiB.
    #[arg(
        long,
        env = "COMFYUI_MCP_MAX_IMAGE_MB",
        default_value_t = comfyui::BodyLimits::DEFAULT_IMAGE >> 20,
        global = true
    )]
    pub max_image_mb: u64,
    // --- Post-processing of output images (2.x packs with a postprocessor) ---
    /// Largest image, in pixels, decoded for a pack's post-processor or accepted from it
    /// (one setting for both sides: the job pipeline and the pack call's limits).
    #[arg(
        long,
        env = "COMFYUI_MCP_POSTPROCESS_MAX_PIXELS",
        default_value_t = comfyui::postprocess::DEFAULT_MAX_PIXELS,
        value_parser = clap::value_parser!(u64).range(1..),
        global = true
    )]
    pub postprocess_max_pixels: u64,
    /// Output images post-processed at once, across all jobs.
    #[arg(
        long,
        env = "COMFYUI_MCP_POSTPROCESS_CONCURRENCY",
        default_value_t = comfyui::postprocess::DEFAULT_CONCURRENCY,
        value_parser = positive_count,
        global = true
    )]
    pub postprocess_concurrency: usize,
    /// Keep ComfyUI's original of each post-processed image as `<name>.orig.png`.
    #[arg(
        long,
        env = "COMFYUI_MCP_KEEP_RAW_OUTPUTS",
        default_value_t = false,
        global = true
    )]
    pub keep_raw_outputs: bool,
    // --- Prompts and models (MCP prompts, list_models, comfyui://models, missing-model errors) ---
    /// Most file names list_models and comfyui://models/{folder} give per folder (the rest are counted).
    #[arg(
        long,
        env = "COMFYUI_MCP_MAX_LISTED_MODELS",
        default_value_t = crate::missing_model::DEFAULT_MAX_LISTED_MODELS,
        value_parser = positive_count,
        global = true
    )]
    pub max_listed_models: usize,
    /// Installed file names a "Missing model file" error lists per missing file, closest first.
    #[arg(
        long,
        env = "COMFYUI_MCP_MISSING_MODEL_CHOICES",
        default_value_t = crate::missing_model::DEFAULT_MISSING_MODEL_CHOICES,
        value_parser = positive_count,
        global = true
    )]
    pub missing_model_choices: usize,
    /// Largest value of one prompts/get argument, in bytes.
    #[arg(
        long,
        env = "COMFYUI_MCP_MAX_PROMPT_ARGUMENT_BYTES",
        default_value_t = crate::mcp::prompts::DEFAULT_MAX_PROMPT_ARGUMENT_BYTES,
        value_parser = positive_count,
        global = true
    )]
    pub max_prompt_argument_bytes: usize,
    // --- Job store (SQLite; jobs outlive the process, shared by every server) ---
    /// The job store file, or `off` (jobs in this process's memory only). Default:
    /// `<output-dir>/comfyui-mcp-jobs.sqlite3`.
    #[arg(long = "db", env = "COMFYUI_MCP_DB", global = true)]
    pub db: Option<String>,
    /// How long a store write waits for another process's lock, in milliseconds.
    #[arg(long, env = "COMFYUI_MCP_DB_BUSY_TIMEOUT_MS", default_value_t = jobstore::StoreOptions::DEFAULT_BUSY_TIMEOUT.as_millis() as u64, value_parser = clap::value_parser!(u64).range(1..), global = true)]
    pub db_busy_timeout_ms: u64,
    /// How long a server's lease on its open jobs lasts without a heartbeat, in seconds
    /// (heartbeat every third of it); a server gone that long has its jobs adopted.
    #[arg(long, env = "COMFYUI_MCP_DB_LEASE_SECS", default_value_t = jobstore::StoreOptions::DEFAULT_LEASE.as_secs(), value_parser = clap::value_parser!(u64).range(3..), global = true)]
    pub db_lease_secs: u64,
    /// Longest a job may stay open (queued or running) before it is failed as expired, in
    /// seconds.
    #[arg(long, env = "COMFYUI_MCP_JOB_MAX_OPEN_SECS", default_value_t = jobstore::StoreOptions::DEFAULT_MAX_OPEN.as_secs(), value_parser = clap::value_parser!(u64).range(1..), global = true)]
    pub job_max_open_secs: u64,
    /// Ended jobs older than this many days are pruned from the store.
    #[arg(long, env = "COMFYUI_MCP_DB_KEEP_DAYS", default_value_t = jobstore::StoreOptions::DEFAULT_RETENTION_AGE.as_secs() / 86_400, value_parser = clap::value_parser!(u64).range(1..), global = true)]
    pub db_keep_days: u64,
    /// At most this many ended jobs are kept in the store (oldest pruned first).
    #[arg(long, env = "COMFYUI_MCP_DB_KEEP_JOBS", default_value_t = jobstore::StoreOptions::DEFAULT_RETENTION_COUNT, value_parser = positive_count, global = true)]
    pub db_keep_jobs: usize,
    /// Most job-store writes committed in one transaction when they queue behind one another.
    #[arg(long, env = "COMFYUI_MCP_DB_MAX_BATCH", default_value_t = jobstore::StoreOptions::DEFAULT_MAX_BATCH, value_parser = positive_count, global = true)]
    pub db_max_batch: usize,
    /// Pruning also deletes the job's image folder (off: images stay on disk).
    #[arg(
        long,
        env = "COMFYUI_MCP_DB_PRUNE_IMAGES",
        default_value_t = false,
        global = true
    )]
    pub db_prune_images: bool,
    /// Seconds between two retention passes.
    #[arg(long, env = "COMFYUI_MCP_DB_PRUNE_SECS", default_value_t = comfyui::persist::PersistOptions::DEFAULT_PRUNE_INTERVAL.as_secs(), value_parser = clap::value_parser!(u64).range(1..), global = true)]
    pub db_prune_secs: u64,
    /// Job store calls in flight at once (each on the blocking pool).
    #[arg(long, env = "COMFYUI_MCP_DB_CONCURRENCY", default_value_t = comfyui::persist::PersistOptions::DEFAULT_CONCURRENCY, value_parser = positive_count, global = true)]
    pub db_concurrency: usize,

    // --- Big packs (compile strategy) and `check` (helper F) ---
    /// Packs larger than this (MiB) are compiled with Winch, wasmtime's
    /// baseline compiler, instead of Cranelift: 6.5x less compile CPU for
    /// componentized interpreters (README, "Big packs"). `off` compiles
    /// every pack with Cranelift.
    #[arg(
        long,
        env = "COMFYUI_MCP_BASELINE_COMPILER_ABOVE_MB",
        default_value_t = MbOrOff::Mb(pack_runtime::DEFAULT_BASELINE_ABOVE_MB),
        global = true
    )]
    pub baseline_compiler_above_mb: MbOrOff,
    /// How long `check` waits for ComfyUI's node catalog before falling back
    /// to the stock offline catalog, in milliseconds.
    #[arg(
        long,
        env = "COMFYUI_MCP_CHECK_PROBE_MS",
        default_value_t = 3000,
        global = true
    )]
    pub check_probe_ms: u64,
}

/// A size in MiB, or `off`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MbOrOff {
    /// This many MiB.
    Mb(u64),
    /// Switched off.
    Off,
}

impl MbOrOff {
    /// The size in bytes, `None` when off.
    pub fn bytes(self) -> Option<u64> {
        match self {
            MbOrOff::Mb(mb) => Some(mb.saturating_mul(1 << 20)),
            MbOrOff::Off => None,
        }
    }
}

impl std::fmt::Display for MbOrOff {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MbOrOff::Mb(mb) => write!(f, "{mb}"),
            MbOrOff::Off => f.write_str("off"),
        }
    }
}

impl std::str::FromStr for MbOrOff {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if s.eq_ignore_ascii_case("off") {
            return Ok(MbOrOff::Off);
        }
        s.parse()
            .map(MbOrOff::Mb)
            .map_err(|_| format!("expected a size in MiB or `off`, got `{s}`"))
    }
}

impl Settings {
    /// Per-call limits for the pack runtime.
    pub fn limits(&self) -> pack_runtime::Limits {
        pack_runtime::Limits {
            memory_bytes: self.pack_memory_mb << 20,
            call_timeout: Duration::from_millis(self.pack_timeout_ms),
            max_graph_bytes: self.max_graph_bytes,
            max_instances: self.pack_max_instances,
            max_memories: self.pack_max_memories,
            max_tables: self.pack_max_tables,
            wasm_stack_bytes: self.pack_stack_kb << 10,
            pool_slots: self.pack_pool_slots,
            pool_keep_resident_bytes: self.pack_pool_keep_resident_kb << 10,
            max_log_bytes: self.pack_log_bytes,
            max_log_lines: self.pack_log_lines,
            max_error_bytes: self.pack_error_bytes,
            max_field_errors: self.pack_field_errors,
            max_random_bytes: self.pack_random_bytes,
            max_postprocess_pixels: self.postprocess_max_pixels,
            max_postprocess_steps: self.postprocess_max_steps,
            metadata: pack_runtime::MetadataLimits {
                max_pack_file_bytes: self.max_pack_file_bytes,
                max_templates_per_pack: self.max_templates_per_pack,
                max_params_per_template: self.max_params_per_template,
                max_name_bytes: self.max_name_bytes,
                max_description_bytes: self.max_description_bytes,
                max_list_items: self.max_list_items,
                max_item_bytes: self.max_item_bytes,
                max_metadata_bytes: self.max_metadata_bytes,
                max_text_param_bytes: self.max_text_param_bytes,
            },
        }
    }

    /// The admission limits of pack calls.
    pub fn admission(&self) -> crate::admission::AdmissionConfig {
        crate::admission::AdmissionConfig::resolve(
            self.pack_concurrency,
            self.pack_share,
            Duration::from_millis(self.pack_queue_wait_ms),
        )
    }

    /// Budget of one whole pack load.
    pub fn load_budget(&self) -> Duration {
        Duration::from_millis(self.pack_load_timeout_ms)
    }

    /// The graph budgets.
    pub fn graph_limits(&self) -> comfyui::graph::GraphLimits {
        comfyui::graph::GraphLimits {
            max_nodes: self.max_graph_nodes,
            max_errors: self.max_graph_errors,
            max_suggestions: self.max_graph_suggestions,
        }
    }

    /// The model-file budgets (list_models, comfyui://models, missing-model errors).
    pub fn model_limits(&self) -> crate::missing_model::ModelLimits {
        crate::missing_model::ModelLimits {
            missing_model_choices: self.missing_model_choices,
            max_listed_models: self.max_listed_models,
        }
    }

    /// The node policy.
    pub fn node_policy(&self) -> comfyui::policy::NodePolicy {
        comfyui::policy::NodePolicy {
            allow_api_nodes: self.allow_api_nodes,
            allowed_classes: self
                .allow_nodes
                .iter()
                .map(|class| class.trim())
                .filter(|class| !class.is_empty())
                .map(str::to_owned)
                .collect(),
        }
    }

    /// The gate every graph passes before submission: its own blocking pool, the graph
    /// budgets and the node policy.
    pub fn graph_gate(&self) -> crate::graph_gate::GraphGate {
        crate::graph_gate::GraphGate::new(
            crate::blocking::BlockingPool::new("graph check", self.check_threads),
            self.graph_limits(),
            self.node_policy(),
        )
    }

    /// The intake of client images: caps, input folders and its own blocking pool.
    pub fn image_intake(&self) -> crate::inputs::ImageIntake {
        crate::inputs::ImageIntake::new(
            crate::inputs::InputLimits {
                max_bytes: self.input_max_bytes,
                max_pixels: self.input_max_pixels,
            },
            crate::allowed_dirs::AllowedDirs::new(self.input_dirs.clone()),
            crate::blocking::BlockingPool::new("image input", self.input_threads),
        )
    }

    /// The compile cache folder, unless disabled.
    pub fn compile_cache_dir(&self) -> Option<PathBuf> {
        match self.cache_dir.as_deref() {
            Some("off") | Some("") => None,
            Some(dir) => Some(PathBuf::from(dir)),
            None => default_cache_dir(),
        }
    }

    /// The execution timeout (`COMFYUI_TIMEOUT`).
    pub fn execution_timeout(&self) -> anyhow::Result<Duration> {
        seconds("COMFYUI_TIMEOUT", self.comfyui_timeout)
    }

    /// The connection settings of the first (or only) backend.
    pub fn comfy_config(&self) -> anyhow::Result<comfyui::ComfyConfig> {
        let mut backends = self.backends()?;
        Ok(backends.swap_remove(0).0)
    }

    /// Every backend's connection settings and capacity: from the backends file when one
    /// is set, else from `COMFYUI_URL` (comma-separated).
    pub fn backends(&self) -> anyhow::Result<Vec<(comfyui::ComfyConfig, f64)>> {
        use crate::farm::backends;
        let specs = match &self.backends_file {
            Some(path) => backends::from_file(path)?,
            None => backends::from_url_list(&self.comfyui_url)?,
        };
        specs
            .into_iter()
            .map(|spec| {
                let key = spec
                    .api_key
                    .clone()
                    .or_else(|| self.comfyui_api_key.clone());
                let config = self.backend_config(&spec.url, key)?.with_name(spec.name);
                Ok((config, spec.capacity))
            })
            .collect()
    }

    /// The connection settings of the backend at `url`.
    fn backend_config(
        &self,
        url: &str,
        api_key: Option<String>,
    ) -> anyhow::Result<comfyui::ComfyConfig> {
        use anyhow::Context;
        let config = comfyui::ComfyConfig::new(url)
            .with_context(|| format!("invalid COMFYUI_URL {url:?}"))?
            .with_api_key(api_key)
            .context("invalid COMFYUI_API_KEY")?
            .with_timeout(seconds(
                "COMFYUI_MCP_REQUEST_TIMEOUT",
                self.request_timeout,
            )?)
            .context("invalid COMFYUI_MCP_REQUEST_TIMEOUT")?
            .with_execution_timeout(self.execution_timeout()?)
            .context("invalid COMFYUI_TIMEOUT")?
            .with_output_dir(&self.output_dir)
            .with_max_finished_jobs(self.max_finished_jobs)
            .with_body_limits(self.body_limits()?);
        Ok(config)
    }

    /// The farm's budgets.
    pub fn farm_options(&self) -> crate::farm::FarmOptions {
        crate::farm::FarmOptions {
            failover_after: Duration::from_millis(self.failover_after_ms),
            retain_bytes: self.farm_retain_mb.saturating_mul(1 << 20),
            ..crate::farm::FarmOptions::default()
        }
    }

    /// The post-processing stage's settings.
    pub fn postprocess_options(&self) -> comfyui::PostprocessOptions {
        comfyui::PostprocessOptions {
            max_pixels: self.postprocess_max_pixels,
            concurrency: self.postprocess_concurrency,
            keep_raw: self.keep_raw_outputs,
        }
    }

    /// The job store file, or `None` for `COMFYUI_MCP_DB=off`.
    pub fn db_path(&self) -> Option<PathBuf> {
        match self.db.as_deref().map(str::trim) {
            Some("off") => None,
            Some(path) if !path.is_empty() => Some(PathBuf::from(path)),
            _ => Some(self.output_dir.join(DEFAULT_DB_FILE)),
        }
    }

    /// The job store's budgets.
    pub fn store_options(&self) -> jobstore::StoreOptions {
        jobstore::StoreOptions {
            busy_timeout: Duration::from_millis(self.db_busy_timeout_ms),
            lease: Duration::from_secs(self.db_lease_secs),
            max_open: Duration::from_secs(self.job_max_open_secs),
            retention_age: Duration::from_secs(self.db_keep_days.saturating_mul(86_400)),
            retention_count: self.db_keep_jobs,
            max_batch: self.db_max_batch,
        }
    }

    /// How the backend drives the job store.
    pub fn persist_options(&self) -> comfyui::persist::PersistOptions {
        comfyui::persist::PersistOptions {
            concurrency: self.db_concurrency,
            heartbeat_interval: Duration::from_secs(self.db_lease_secs) / 3,
            prune_interval: Duration::from_secs(self.db_prune_secs),
            prune_images: self.db_prune_images,
            ..comfyui::persist::PersistOptions::default()
        }
    }

    /// The size caps on ComfyUI's answers, from the `*_MB` settings (each at least 1 MiB).
    pub fn body_limits(&self) -> anyhow::Result<comfyui::BodyLimits> {
        let mib = |name: &str, value: u64| -> anyhow::Result<u64> {
            match value.checked_mul(1 << 20) {
                Some(bytes) if value > 0 => Ok(bytes),
                _ => anyhow::bail!(
                    "{name} must be a whole number of MiB from 1 to {}, got {value}",
                    u64::MAX >> 20
                ),
            }
        };
        Ok(comfyui::BodyLimits {
            large_json: mib("COMFYUI_MCP_MAX_COMFY_BODY_MB", self.max_comfy_body_mb)?,
            json: mib("COMFYUI_MCP_MAX_COMFY_ANSWER_MB", self.max_comfy_answer_mb)?,
            image: mib("COMFYUI_MCP_MAX_IMAGE_MB", self.max_image_mb)?,
        })
    }
}

/// The job store's file name inside the output folder.
pub const DEFAULT_DB_FILE: &str = "comfyui-mcp-jobs.sqlite3";

fn default_cache_dir() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    Some(base.join("comfyui-mcp").join("compiled-packs"))
}

/// The longest time setting accepted, in seconds (about 31 years).
const MAX_SECONDS: f64 = 1e9;

/// A number of seconds above 0 and at most [`MAX_SECONDS`].
fn positive_seconds(text: &str) -> Result<f64, String> {
    match text.trim().parse::<f64>() {
        Ok(s) if s.is_finite() && s > 0.0 && s <= MAX_SECONDS => Ok(s),
        Ok(s) => Err(format!(
            "must be a number of seconds above 0 and at most {MAX_SECONDS}, got {s}"
        )),
        Err(e) => Err(format!("must be a number of seconds ({e})")),
    }
}

/// `secs` of the setting `name` as a duration (settings built without the parser are checked
/// here too).
fn seconds(name: &str, secs: f64) -> anyhow::Result<Duration> {
    positive_seconds(&secs.to_string())
        .map(Duration::from_secs_f64)
        .map_err(|e| anyhow::anyhow!("{name} {e}"))
}

/// A count of at least 1 (a budget of 0 would refuse everything).
fn positive_count(text: &str) -> Result<usize, String> {
    match text.trim().parse::<usize>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(e) => Err(format!("must be a whole number of at least 1 ({e})")),
    }
}

#[cfg(test)]
mod graph_settings_tests {
    use super::*;
    use clap::CommandFactory as _;

    fn parse(args: &[&str]) -> Settings {
        let mut all = vec!["comfyui-mcp"];
        all.extend_from_slice(args);
        Cli::try_parse_from(all).expect("parses").settings
    }

    #[test]
    fn graph_budgets_and_node_policy_have_documented_defaults_and_flags() {
        let defaults = parse(&[]);
        assert_eq!(
            defaults.graph_limits(),
            comfyui::graph::GraphLimits::DEFAULT
        );
        assert_eq!(
            defaults.node_policy(),
            comfyui::policy::NodePolicy::default()
        );
        assert_eq!(
            defaults.check_threads,
            crate::blocking::BlockingPool::DEFAULT_THREADS
        );
        let set = parse(&[
            "--max-graph-nodes",
            "10",
            "--max-graph-errors",
            "3",
            "--max-graph-suggestions",
            "1",
            "--check-threads",
            "4",
            "--allow-nodes",
            "CheckpointSave, ModelSave",
            "--allow-api-nodes",
        ]);
        assert_eq!(
            set.graph_limits(),
            comfyui::graph::GraphLimits {
                max_nodes: 10,
                max_errors: 3,
                max_suggestions: 1
            }
        );
        let policy = set.node_policy();
        assert!(policy.allow_api_nodes);
        assert_eq!(
            policy.allowed_classes.into_iter().collect::<Vec<_>>(),
            ["CheckpointSave", "ModelSave"]
        );
        assert_eq!(set.graph_gate().limits().max_nodes, 10);
    }

    /// The policy flags read the documented environment variables.
    #[test]
    fn policy_flags_read_their_environment_variables() {
        let cmd = Cli::command();
        for (id, env) in [
            ("allow_api_nodes", "COMFYUI_MCP_ALLOW_API_NODES"),
            ("allow_nodes", "COMFYUI_MCP_ALLOW_NODES"),
            ("max_graph_nodes", "COMFYUI_MCP_MAX_GRAPH_NODES"),
            ("check_threads", "COMFYUI_MCP_CHECK_THREADS"),
            ("input_threads", "COMFYUI_MCP_INPUT_THREADS"),
            ("max_workflow_bytes", "COMFYUI_MCP_MAX_WORKFLOW_BYTES"),
        ] {
            let arg = cmd
                .get_arguments()
                .find(|a| a.get_id() == id)
                .expect("the flag exists");
            assert_eq!(arg.get_env(), Some(std::ffi::OsStr::new(env)), "{id}");
        }
    }
}

#[cfg(test)]
mod body_limit_tests {
    use super::*;

    /// This round's budgets: their variables, their defaults, and where they arrive.
    #[test]
    fn pool_keep_resident_and_db_batch_read_their_variables_and_reach_their_limits() {
        use clap::CommandFactory as _;
        let cmd = Cli::command();
        for (id, env) in [
            (
                "pack_pool_keep_resident_kb",
                "COMFYUI_MCP_PACK_POOL_KEEP_RESIDENT_KB",
            ),
            ("db_max_batch", "COMFYUI_MCP_DB_MAX_BATCH"),
        ] {
            let arg = cmd.get_arguments().find(|a| a.get_id() == id).unwrap();
            assert_eq!(arg.get_env(), Some(std::ffi::OsStr::new(env)), "{id}");
        }
        let d = settings(&[]);
        assert_eq!(
            d.limits().pool_keep_resident_bytes,
            pack_runtime::Limits::default().pool_keep_resident_bytes
        );
        assert_eq!(
            d.store_options().max_batch,
            jobstore::StoreOptions::DEFAULT_MAX_BATCH
        );
        let s = settings(&["--pack-pool-keep-resident-kb", "0", "--db-max-batch", "1"]);
        assert_eq!(s.limits().pool_keep_resident_bytes, 0);
        assert_eq!(s.store_options().max_batch, 1);
        let zero = <Cli as Parser>::try_parse_from(["comfyui-mcp", "--db-max-batch", "0"]);
        assert!(zero.is_err(), "a batch of 0 writes is refused");
    }

    fn settings(args: &[&str]) -> Settings {
        let mut all = vec!["comfyui-mcp"];
        all.extend_from_slice(args);
        <Cli as Parser>::try_parse_from(all).unwrap().settings
    }

    #[test]
    fn comfy_body_caps_default_and_are_set_in_mib() {
        let d = settings(&[]).body_limits().unwrap();
        assert_eq!(d, comfyui::BodyLimits::default());
        let s = settings(&[
            "--max-comfy-body-mb",
            "1",
            "--max-comfy-answer-mb",
            "2",
            "--max-image-mb",
            "3",
        ]);
        let l = s.body_limits().unwrap();
        assert_eq!((l.large_json, l.json, l.image), (1 << 20, 2 << 20, 3 << 20));
        assert_eq!(s.comfy_config().unwrap().body_limits, l);
    }

    #[test]
    fn zero_or_overflowing_caps_are_refused_naming_the_setting() {
        let err = settings(&["--max-comfy-body-mb", "0"])
            .body_limits()
            .unwrap_err();
        assert!(
            err.to_string().contains("COMFYUI_MCP_MAX_COMFY_BODY_MB"),
            "{err}"
        );
        let huge = (u64::MAX >> 19).to_string();
        let err = settings(&["--max-image-mb", &huge])
            .body_limits()
            .unwrap_err();
        assert!(
            err.to_string().contains("COMFYUI_MCP_MAX_IMAGE_MB"),
            "{err}"
        );
    }
}

#[cfg(test)]
mod metadata_limit_tests {
    use clap::CommandFactory;

    use super::Cli;

    /// Every metadata cap is a flag and an environment variable spelled the way
    /// the runtime's error messages name them (`pack_runtime::metadata::setting_hint`).
    #[test]
    fn metadata_caps_are_settings_named_as_in_the_messages() {
        let cmd = Cli::command();
        for field in [
            "max_pack_file_bytes",
            "max_templates_per_pack",
            "max_params_per_template",
            "max_name_bytes",
            "max_description_bytes",
            "max_list_items",
            "max_item_bytes",
            "max_metadata_bytes",
            "max_text_param_bytes",
        ] {
            let hint = pack_runtime::metadata::setting_hint(field);
            let arg = cmd
                .get_arguments()
                .find(|a| a.get_id().as_str() == field)
                .unwrap_or_else(|| panic!("no setting {field}"));
            let long = arg.get_long().expect("a long flag");
            let env = arg.get_env().expect("an env var").to_string_lossy();
            assert!(hint.contains(&format!("--{long} ")), "{hint} vs --{long}");
            assert!(hint.contains(&*env), "{hint} vs {env}");
        }
        let cli =
            <Cli as clap::Parser>::try_parse_from(["comfyui-mcp", "--max-templates-per-pack", "3"])
                .unwrap();
        assert_eq!(cli.settings.limits().metadata.max_templates_per_pack, 3);
        let cli = <Cli as clap::Parser>::try_parse_from(["comfyui-mcp"]).unwrap();
        assert_eq!(
            cli.settings.limits().metadata,
            pack_runtime::MetadataLimits::DEFAULT
        );
    }
}

#[cfg(test)]
mod job_store_settings_tests {
    use super::*;

    fn parse(args: &[&str]) -> Settings {
        let mut all = vec!["comfyui-mcp", "--output-dir", "/srv/out"];
        all.extend_from_slice(args);
        Cli::try_parse_from(all).expect("parses").settings
    }

    #[test]
    fn the_store_lives_in_the_output_folder_unless_named_or_off() {
        let defaults = parse(&[]);
        assert_eq!(
            defaults.db_path(),
            Some(PathBuf::from("/srv/out").join(DEFAULT_DB_FILE))
        );
        assert_eq!(defaults.store_options(), jobstore::StoreOptions::default());
        assert_eq!(parse(&["--db", "off"]).db_path(), None);
        assert_eq!(
            parse(&["--db", "/var/jobs.sqlite3"]).db_path(),
            Some(PathBuf::from("/var/jobs.sqlite3"))
        );
        let set = parse(&["--db-lease-secs", "9", "--db-keep-days", "2"]);
        assert_eq!(
            set.persist_options().heartbeat_interval,
            Duration::from_secs(3)
        );
        assert_eq!(
            set.store_options().retention_age,
            Duration::from_secs(2 * 86_400)
        );
        for bad in [
            &["--db-keep-jobs", "0"][..],
            &["--db-lease-secs", "1"],
            &["--db-busy-timeout-ms", "0"],
        ] {
            let mut all = vec!["comfyui-mcp"];
            all.extend_from_slice(bad);
            assert!(Cli::try_parse_from(all).is_err(), "{bad:?}");
        }
    }
}

#[cfg(test)]
mod timeout_settings_tests {
    use clap::{CommandFactory, Parser};

    use super::*;

    fn settings(args: &[&str]) -> Result<Settings, clap::Error> {
        let mut all = vec!["comfyui-mcp"];
        all.extend_from_slice(args);
        <Cli as Parser>::try_parse_from(all).map(|cli| cli.settings)
    }

    #[test]
    fn execution_and_request_timeouts_are_separate_settings_with_their_defaults() {
        let config = settings(&[]).unwrap().comfy_config().unwrap();
        assert_eq!(
            config.execution_timeout,
            comfyui::config::DEFAULT_EXECUTION_TIMEOUT
        );
        assert_eq!(config.timeout, comfyui::config::DEFAULT_REQUEST_TIMEOUT);
        let set = settings(&["--comfyui-timeout", "2.5", "--request-timeout", "7"]).unwrap();
        assert_eq!(
            set.execution_timeout().unwrap(),
            Duration::from_millis(2500)
        );
        let config = set.comfy_config().unwrap();
        assert_eq!(config.execution_timeout, Duration::from_millis(2500));
        assert_eq!(config.timeout, Duration::from_secs(7));
        let cmd = Cli::command();
        let env = |id: &str| {
            cmd.get_arguments()
                .find(|a| a.get_id() == id)
                .and_then(|a| a.get_env())
                .map(|e| e.to_string_lossy().into_owned())
        };
        assert_eq!(env("comfyui_timeout").as_deref(), Some("COMFYUI_TIMEOUT"));
        assert_eq!(
            env("request_timeout").as_deref(),
            Some("COMFYUI_MCP_REQUEST_TIMEOUT")
        );
    }

    #[test]
    fn zero_negative_or_huge_timeouts_are_refused_at_start() {
        for bad in ["0", "-1", "nan", "inf", "1e10", "soon"] {
            for flag in ["--comfyui-timeout", "--request-timeout"] {
                let arg = format!("{flag}={bad}");
                let err = settings(&[&arg]).unwrap_err().to_string();
                assert!(err.contains("seconds"), "{flag} {bad}: {err}");
            }
        }
        assert!(
            settings(&["--comfyui-timeout", "1e9"]).is_ok(),
            "at the limit"
        );
        let mut s = settings(&[]).unwrap();
        s.comfyui_timeout = 0.0;
        let err = s.comfy_config().unwrap_err().to_string();
        assert!(err.contains("COMFYUI_TIMEOUT"), "{err}");
    }
}
