//! Setup shared by the host's integration tests and benches: the ComfyUI simulator on
//! loopback, the settings and the `App` over it, a raw JSON-RPC pipe to an `McpServer`, and
//! `serve --http` on loopback with a raw MCP session to it.
//!
//! Each test binary uses a part of it, hence the `dead_code` allowance.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use comfyui_mcp::App;
use comfyui_mcp::config::{Cli, Settings};
use comfyui_mcp::mcp::{McpOptions, McpServer};
use rmcp::ServiceExt as _;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader, DuplexStream, Lines, ReadHalf, WriteHalf};
use tokio_util::sync::CancellationToken;

/// The repository root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The simulator on a loopback port with `step_delay` per sampling step (and the TLS
/// provider installed, once per process).
pub async fn simulator(step_delay: Duration) -> simulator::SimHandle {
    simulator_with(simulator::SimConfig {
        step_delay,
        ..simulator::SimConfig::default()
    })
    .await
}

/// The simulator on a loopback port with `config` (and the TLS provider installed).
pub async fn simulator_with(config: simulator::SimConfig) -> simulator::SimHandle {
    let _ = rustls::crypto::ring::default_provider().install_default();
    simulator::start(([127, 0, 0, 1], 0).into(), config)
        .await
        .expect("simulator starts")
}

/// The settings for the simulator at `comfyui_url`, with these folders, plus `extra` flags.
pub fn settings(
    comfyui_url: String,
    out: &Path,
    templates: &Path,
    cache: &Path,
    extra: &[&str],
) -> Settings {
    let mut args = vec![
        "comfyui-mcp".to_owned(),
        "--comfyui-url".to_owned(),
        comfyui_url,
        "--output-dir".to_owned(),
        out.display().to_string(),
        "--templates-dir".to_owned(),
        templates.display().to_string(),
        "--cache-dir".to_owned(),
        cache.display().to_string(),
    ];
    args.extend(extra.iter().map(|a| (*a).to_owned()));
    <Cli as clap::Parser>::try_parse_from(args)
        .expect("settings parse")
        .settings
}

/// The service over `settings`, its first scan complete.
pub async fn start_app(settings: &Settings) -> Arc<App> {
    comfyui_mcp::commands::start_app(settings)
        .await
        .expect("app starts")
}

/// The service over the shipped templates, with these folders, plus `extra` flags.
pub async fn shipped_app(
    sim: &simulator::SimHandle,
    out: &Path,
    cache: &Path,
    extra: &[&str],
) -> Arc<App> {
    start_app(&settings(
        sim.base_url(),
        out,
        &repo().join("templates"),
        cache,
        extra,
    ))
    .await
}

/// Asserts that the catalog offers `count` templates; `what` names their source.
pub fn assert_templates(app: &App, count: usize, what: &str) {
    assert_eq!(
        app.catalog().templates().len(),
        count,
        "{what} offers {count} templates; errors: {:?}",
        app.catalog().errors()
    );
}

/// The client end of an in-memory pipe.
pub type PipeWrite = WriteHalf<DuplexStream>;
/// The client's line reader on an in-memory pipe (stdio framing: one message a line).
pub type PipeLines = Lines<BufReader<ReadHalf<DuplexStream>>>;

/// Serves a fresh `McpServer` over `app` on an in-memory pipe; returns the client's ends.
pub fn serve_pipe(app: Arc<App>) -> (PipeWrite, PipeLines) {
    let (client_end, server_end) = tokio::io::duplex(1 << 20);
    let server = McpServer::new(app, McpOptions::default());
    tokio::spawn(async move {
        let running = server.serve(server_end).await.expect("server starts");
        let _ = running.waiting().await;
    });
    let (read, write) = tokio::io::split(client_end);
    (write, BufReader::new(read).lines())
}

/// Waits (at most `bound`) until the simulator has received a `POST /prompt`.
pub async fn wait_for_prompt(sim: &simulator::SimHandle, bound: Duration) {
    let deadline = tokio::time::Instant::now() + bound;
    while !sim
        .requests()
        .iter()
        .any(|r| r.method == "POST" && r.path.ends_with("/prompt"))
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the job never reached the simulator"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `serve --http` over `app` on a loopback port of this process: its base URL
/// (`http://ADDR`, MCP at `/mcp`, the plain API at `/api`) and the token that stops it.
pub async fn serve_http_loopback(app: Arc<App>) -> (String, CancellationToken) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let shutdown = CancellationToken::new();
    tokio::spawn(comfyui_mcp::mcp::serve_http_on(
        app,
        McpOptions::default(),
        listener,
        shutdown.clone(),
    ));
    (base, shutdown)
}

/// The protocol version raw HTTP sessions speak.
pub const HTTP_PROTOCOL: &str = "2025-06-18";

/// A raw MCP session over streamable HTTP (session mode, SSE answers), initialised.
pub struct HttpSession {
    http: reqwest::Client,
    url: String,
    session: String,
    next_id: u64,
}

impl HttpSession {
    /// `initialize` + `notifications/initialized` at `url` (the `/mcp` endpoint).
    pub async fn open(http: reqwest::Client, url: String) -> Self {
        let init = json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {"protocolVersion": HTTP_PROTOCOL, "capabilities": {}, "clientInfo": {"name": "bench", "version": "0"}}});
        let answer = Self::post(&http, &url, &init, None).await;
        let session = answer.headers()["mcp-session-id"]
            .to_str()
            .unwrap()
            .to_owned();
        answer.text().await.unwrap();
        let initialized = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
        Self::post(&http, &url, &initialized, Some(&session)).await;
        Self {
            http,
            url,
            session,
            next_id: 0,
        }
    }

    async fn post(
        http: &reqwest::Client,
        url: &str,
        body: &Value,
        session: Option<&str>,
    ) -> reqwest::Response {
        let mut request = http
            .post(url)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .json(body);
        if let Some(session) = session {
            request = request
                .header("mcp-session-id", session)
                .header("mcp-protocol-version", HTTP_PROTOCOL);
        }
        request.send().await.unwrap()
    }

    /// `tools/call name arguments`; the answer's text (an SSE stream).
    pub async fn call(&mut self, name: &str, arguments: Value) -> String {
        self.next_id += 1;
        let body = json!({"jsonrpc": "2.0", "id": self.next_id, "method": "tools/call", "params": {"name": name, "arguments": arguments}});
        Self::post(&self.http, &self.url, &body, Some(&self.session))
            .await
            .text()
            .await
            .unwrap()
    }

    /// A call that must succeed (`isError: false`).
    pub async fn call_ok(&mut self, name: &str, arguments: Value) {
        let text = self.call(name, arguments).await;
        assert!(text.contains("\"isError\":false"), "{text}");
    }
}

/// Arguments of the `i`-th benchmark `generate_image` call: a tiny, distinct job.
pub fn bench_generate_arguments(i: usize) -> Value {
    json!({"template": "item-icon", "prompt": format!("bench sword {i}"), "seed": i, "steps": 1, "width": 64, "height": 64})
}

/// The `q` quantile (0..=1) of sorted, non-empty samples.
pub fn quantile(sorted: &[Duration], q: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

/// A bench setting from the environment: a positive whole number, else `default`.
pub fn env_count(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n: &usize| n > 0)
        .unwrap_or(default)
}

/// Runs a bench's `main` body on a multi-threaded runtime (all drivers enabled).
pub fn block_on<F: std::future::Future>(body: F) -> F::Output {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(body)
}
