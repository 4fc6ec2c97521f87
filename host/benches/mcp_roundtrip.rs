//! MCP round trips: `tools/call generate_image` (no wait) per second and its latency, over
//! the stdio framing (an in-memory pipe carrying exactly what stdio carries: one JSON-RPC
//! message per line, served by the same rmcp transport) and over streamable HTTP on
//! loopback, against the in-process ComfyUI simulator (step delay 0).
//!
//! Two latencies per call: the round trip (client writes the request → reads the
//! response), and "to POST": from the client writing the request to the simulator
//! receiving the resulting `POST /prompt` (an upper bound of the server-side path:
//! parameter checks, sandboxed build, graph check, submit). The simulator's queue is held,
//! so no job runs during the measurement and the figures are the host's own work.
//!
//! Run with: `cargo bench -p comfyui-mcp --bench mcp_roundtrip` (prints a table; never
//! asserts on timings).

#[path = "../tests/common/mod.rs"]
mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{bench_generate_arguments as arguments, quantile as pick};

use comfyui_mcp::App;
use comfyui_mcp::mcp::{McpOptions, McpServer};
use rmcp::ServiceExt as _;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

const WARMUP: usize = 10;
const CALLS: usize = 200;
/// Calls written back to back for the throughput figure.
const BURST: usize = 500;
const BURST_ID: usize = 1_000_000;

struct Stats {
    median: Duration,
    p99: Duration,
    per_second: f64,
    to_post_median: Duration,
    to_post_p99: Duration,
}

fn stats(mut samples: Vec<Duration>, mut to_post: Vec<Duration>, total: Duration) -> Stats {
    let per_second = samples.len() as f64 / total.as_secs_f64();
    samples.sort();
    to_post.sort();
    Stats {
        median: pick(&samples, 0.5),
        p99: pick(&samples, 0.99),
        per_second,
        to_post_median: pick(&to_post, 0.5),
        to_post_p99: pick(&to_post, 0.99),
    }
}

/// CPU time this process (client, server and simulator together) has used so far, from
/// `/proc/self/stat` (utime + stime, in clock ticks of 10 ms); `None` off Linux.
fn process_cpu() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (which is in parentheses and may hold spaces).
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(Duration::from_millis(ticks * 10))
}

/// Time from `sent` to the simulator's receipt of the newest `POST /prompt`.
fn to_post(sim: &simulator::SimHandle, sent: Instant) -> Duration {
    let arrived = sim
        .requests()
        .iter()
        .rev()
        .find(|r| r.method == "POST" && r.path.ends_with("/prompt"))
        .expect("the call posted a prompt")
        .received_at;
    sim.clear_requests();
    arrived.saturating_duration_since(sent)
}

async fn start_app(sim: &simulator::SimHandle, out: &Path) -> Arc<App> {
    let cache = std::env::temp_dir().join("comfyui-mcp-bench-pack-cache");
    common::shipped_app(sim, out, &cache, &[]).await
}

/// Restarts the simulator (its held queue emptied) and waits until the server has
/// reconnected and ended every job the restart lost, and their store writes are done.
async fn restart(app: &App, sim: &simulator::SimHandle) {
    sim.restart().await;
    sim.hold_queue(true);
    let settled = async {
        let mut conn = app.comfy().connection();
        conn.wait_for(|c| c.connected).await.expect("reconnects");
        while app.comfy().open_jobs() > 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // The lost jobs' endings are written by their followers, just after.
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    tokio::time::timeout(Duration::from_secs(60), settled)
        .await
        .expect("the server settles after the restart");
}

/// Round trips over the stdio framing; `checked` puts the framing layer of the real stdio
/// transport (message checks, size limit, in-flight ids) in front of rmcp, as
/// `serve_stdio` does.
async fn bench_stdio(app: Arc<App>, sim: &simulator::SimHandle, checked: bool) -> (Stats, f64) {
    let (client_end, server_end) = tokio::io::duplex(1 << 20);
    let server = McpServer::new(app, McpOptions::default());
    tokio::spawn(async move {
        let running = if checked {
            let (read, write) = tokio::io::split(server_end);
            let (transport, _tasks) = comfyui_mcp::mcp::framing::frame_stdio(
                read,
                write,
                comfyui_mcp::mcp::framing::DEFAULT_MAX_REQUEST_BYTES,
            );
            server.serve(transport).await.expect("server")
        } else {
            server.serve(server_end).await.expect("server")
        };
        let _ = running.waiting().await;
    });
    let (read, mut write) = tokio::io::split(client_end);
    let mut lines = BufReader::new(read).lines();
    let mut id = 0u64;
    let mut call = async |method: &str, params: Value| -> Value {
        id += 1;
        let mut line = serde_json::to_vec(
            &json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}),
        )
        .unwrap();
        line.push(b'\n');
        write.write_all(&line).await.unwrap();
        loop {
            let text = lines.next_line().await.unwrap().expect("server open");
            let message: Value = serde_json::from_str(&text).unwrap();
            if message["id"] == json!(id) {
                return message;
            }
        }
    };
    call(
        "initialize",
        json!({"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "bench", "version": "0"}}),
    )
    .await;
    let mut samples = Vec::with_capacity(CALLS);
    let mut posts = Vec::with_capacity(CALLS);
    let mut total = Duration::ZERO;
    sim.clear_requests();
    for i in 0..WARMUP + CALLS {
        let t = Instant::now();
        let r = call(
            "tools/call",
            json!({"name": "generate_image", "arguments": arguments(i)}),
        )
        .await;
        let elapsed = t.elapsed();
        assert_eq!(r["result"]["isError"], false, "{r}");
        let post = to_post(sim, t);
        if i >= WARMUP {
            samples.push(elapsed);
            posts.push(post);
            total += elapsed;
        }
    }
    let sequential = stats(samples, posts, total);

    // Throughput with requests in flight together: write a burst of calls back to
    // back on the one stdio stream, then read every answer.
    let started = Instant::now();
    let cpu_before = process_cpu();
    for j in 0..BURST {
        let mut line = serde_json::to_vec(&json!({"jsonrpc": "2.0", "id": BURST_ID + j, "method": "tools/call", "params": {"name": "generate_image", "arguments": arguments(WARMUP + CALLS + j)}})).unwrap();
        line.push(b'\n');
        write.write_all(&line).await.unwrap();
    }
    let mut answered = 0;
    while answered < BURST {
        let text = lines.next_line().await.unwrap().expect("server open");
        let message: Value = serde_json::from_str(&text).unwrap();
        if message["id"]
            .as_u64()
            .is_some_and(|id| id >= BURST_ID as u64)
        {
            assert_eq!(message["result"]["isError"], false, "{message}");
            answered += 1;
        }
    }
    let wall = started.elapsed();
    let burst_rate = BURST as f64 / wall.as_secs_f64();
    if let (Some(before), Some(after)) = (cpu_before, process_cpu()) {
        let cpu = after.saturating_sub(before);
        println!(
            "  burst: {:.2} cores busy on average, {:.0} µs of CPU per call (client, server and simulator together)",
            cpu.as_secs_f64() / wall.as_secs_f64(),
            cpu.as_secs_f64() * 1e6 / BURST as f64
        );
    }
    (sequential, burst_rate)
}

/// Round trips over streamable HTTP (session mode, SSE responses).
async fn bench_http(app: Arc<App>, sim: &simulator::SimHandle) -> Stats {
    let (base, shutdown) = common::serve_http_loopback(app).await;
    let mut session =
        common::HttpSession::open(reqwest::Client::new(), format!("{base}/mcp")).await;
    let mut samples = Vec::with_capacity(CALLS);
    let mut posts = Vec::with_capacity(CALLS);
    let mut total = Duration::ZERO;
    sim.clear_requests();
    for i in 0..WARMUP + CALLS {
        let t = Instant::now();
        session.call_ok("generate_image", arguments(i)).await;
        let elapsed = t.elapsed();
        let post = to_post(sim, t);
        if i >= WARMUP {
            samples.push(elapsed);
            posts.push(post);
            total += elapsed;
        }
    }
    shutdown.cancel();
    stats(samples, posts, total)
}

fn main() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let sim = simulator::start(
            ([127, 0, 0, 1], 0).into(),
            simulator::SimConfig {
                step_delay: Duration::ZERO,
                ..simulator::SimConfig::default()
            },
        )
        .await
        .expect("simulator");
        let out = tempfile::tempdir().unwrap();
        let app = start_app(&sim, out.path()).await;
        // Jobs stay queued: the figures are the host's work, not the simulator's rendering.
        sim.hold_queue(true);
        println!(
            "tools/call generate_image (no wait), {CALLS} sequential calls after {WARMUP} warm-up, simulator step delay 0"
        );
        println!(
            "{:<22} {:>12} {:>12} {:>10} {:>14} {:>14}",
            "transport", "round trip", "p99", "calls/s", "to POST median", "to POST p99"
        );
        let (stdio, burst_rate) = bench_stdio(app.clone(), &sim, false).await;
        // Empty the held queue between phases, so a phase does not pay for 700 queued
        // jobs in every /queue reconciliation, nor for the previous phase's jobs failing.
        restart(&app, &sim).await;
        let (checked, checked_burst_rate) = bench_stdio(app.clone(), &sim, true).await;
        restart(&app, &sim).await;
        let http = bench_http(app.clone(), &sim).await;
        for (name, s) in [
            ("stdio framing (pipe)", stdio),
            ("stdio + framing layer", checked),
            ("streamable HTTP", http),
        ] {
            println!(
                "{name:<22} {:>12.2?} {:>12.2?} {:>10.1} {:>14.2?} {:>14.2?}",
                s.median, s.p99, s.per_second, s.to_post_median, s.to_post_p99
            );
        }
        println!(
            "stdio, {BURST} calls in flight together (written back to back): {burst_rate:.0} calls/s; \
             with the framing layer: {checked_burst_rate:.0} calls/s"
        );
    });
}
