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
    },
    /// Run the ComfyUI simulator on loopback (a stand-in for development and tests).
    Simulate(SimulateArgs),
}

/// Options of `serve`.
#[derive(Debug, Clone, Args, Default)]
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
}

/// Settings shared by every command.
#[derive(Debug, Clone, Args)]
pub struct Settings {
    /// ComfyUI's base URL (http or https, may include a path prefix).
    #[arg(
        long,
        env = "COMFYUI_URL",
        default_value = "http://127.0.0.1:8188",
        global = true
    )]
    pub comfyui_url: String,
    /// API key sent to ComfyUI as a bearer token.
    #[arg(long, env = "COMFYUI_API_KEY", hide_env_values = true, global = true)]
    pub comfyui_api_key: Option<String>,
    /// Timeout of each request to ComfyUI, in seconds.
    #[arg(long, env = "COMFYUI_TIMEOUT", default_value_t = 120.0, global = true)]
    pub comfyui_timeout: f64,
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
    #[arg(long, env = "COMFYUI_MCP_CACHE_DIR", global = true)]
    pub cache_dir: Option<String>,
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
}

impl Settings {
    /// Per-call limits for the pack runtime.
    pub fn limits(&self) -> pack_runtime::Limits {
        pack_runtime::Limits {
            memory_bytes: self.pack_memory_mb << 20,
            call_timeout: Duration::from_millis(self.pack_timeout_ms),
            max_graph_bytes: self.max_graph_bytes,
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
            ..pack_runtime::Limits::default()
        }
    }

    /// The compile cache folder, unless disabled.
    pub fn compile_cache_dir(&self) -> Option<PathBuf> {
        match self.cache_dir.as_deref() {
            Some("off") | Some("") => None,
            Some(dir) => Some(PathBuf::from(dir)),
            None => default_cache_dir(),
        }
    }

    /// The ComfyUI connection settings.
    pub fn comfy_config(&self) -> anyhow::Result<comfyui::ComfyConfig> {
        use anyhow::Context;
        if !(self.comfyui_timeout.is_finite() && self.comfyui_timeout > 0.0) {
            anyhow::bail!(
                "COMFYUI_TIMEOUT must be a positive number of seconds, got {}",
                self.comfyui_timeout
            );
        }
        let config = comfyui::ComfyConfig::new(&self.comfyui_url)
            .with_context(|| format!("invalid COMFYUI_URL {:?}", self.comfyui_url))?
            .with_api_key(self.comfyui_api_key.clone())
            .context("invalid COMFYUI_API_KEY")?
            .with_timeout(Duration::from_secs_f64(self.comfyui_timeout))
            .context("invalid COMFYUI_TIMEOUT")?
            .with_output_dir(&self.output_dir)
            .with_max_finished_jobs(self.max_finished_jobs);
        Ok(config)
    }
}

fn default_cache_dir() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    Some(base.join("comfyui-mcp").join("compiled-packs"))
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
