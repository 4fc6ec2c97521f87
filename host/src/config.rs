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
}

impl Settings {
    /// Per-call limits for the pack runtime.
    pub fn limits(&self) -> pack_runtime::Limits {
        pack_runtime::Limits {
            memory_bytes: self.pack_memory_mb << 20,
            call_timeout: Duration::from_millis(self.pack_timeout_ms),
            max_graph_bytes: self.max_graph_bytes,
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
            .with_max_finished_jobs(self.max_finished_jobs)
            .with_body_limits(self.body_limits()?);
        Ok(config)
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

fn default_cache_dir() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    Some(base.join("comfyui-mcp").join("compiled-packs"))
}

#[cfg(test)]
mod body_limit_tests {
    use super::*;

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
