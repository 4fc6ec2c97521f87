//! The plain HTTP API against MCP over streamable HTTP, in one run on one server: round
//! trip (median, p99) and sequential calls per second of `list_workflows` and of
//! `generate_image` without wait, as `POST /api/tools/{name}` and as MCP `tools/call`
//! (session mode, SSE answer), against the in-process ComfyUI simulator (step delay 0,
//! queue held so no job runs). The two transports' calls are interleaved (one of each per
//! round, alternating which goes first), so load on the machine hits both alike. The ratio
//! row is the API's calls/s over MCP's.
//!
//! Run with: `cargo bench -p comfyui-mcp --bench http_api` (prints a table; never asserts
//! on timings).

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use serde_json::{Value, json};

const WARMUP: usize = 20;
const CALLS: usize = 300;

struct Stats {
    median: Duration,
    p99: Duration,
    per_second: f64,
}

fn stats(mut samples: Vec<Duration>) -> Stats {
    let total: Duration = samples.iter().sum();
    samples.sort();
    let pick = |q: f64| common::quantile(&samples, q);
    Stats {
        median: pick(0.5),
        p99: pick(0.99),
        per_second: samples.len() as f64 / total.as_secs_f64(),
    }
}

/// Times `CALLS` rounds after `WARMUP` untimed ones. Each round makes one call of each
/// transport, alternating which goes first, so both see the same machine load and the same
/// held queue.
async fn measure_pair(
    mut api: impl AsyncFnMut(usize),
    mut mcp: impl AsyncFnMut(usize),
) -> (Stats, Stats) {
    let mut api_samples = Vec::with_capacity(CALLS);
    let mut mcp_samples = Vec::with_capacity(CALLS);
    for i in 0..WARMUP + CALLS {
        for api_turn in [i % 2 == 0, i % 2 == 1] {
            let t = Instant::now();
            if api_turn {
                api(i).await;
            } else {
                mcp(i).await;
            }
            if i >= WARMUP {
                let samples = if api_turn {
                    &mut api_samples
                } else {
                    &mut mcp_samples
                };
                samples.push(t.elapsed());
            }
        }
    }
    (stats(api_samples), stats(mcp_samples))
}

async fn api_call(http: &reqwest::Client, base: &str, name: &str, arguments: Value) {
    let answer = http
        .post(format!("{base}/api/tools/{name}"))
        .json(&arguments)
        .send()
        .await
        .unwrap();
    let status = answer.status();
    let text = answer.text().await.unwrap();
    assert_eq!(status, 200, "{text}");
}

fn row(what: &str, api: &Stats, mcp: &Stats) {
    for (transport, s) in [("plain HTTP API", api), ("MCP streamable HTTP", mcp)] {
        println!(
            "{what:<24} {transport:<20} {:>11.2?} {:>11.2?} {:>9.0}",
            s.median, s.p99, s.per_second
        );
    }
    println!(
        "{what:<24} {:<20} {:>34.2}x",
        "API / MCP calls/s",
        api.per_second / mcp.per_second
    );
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let sim = common::simulator(Duration::ZERO).await;
        let out = tempfile::tempdir().unwrap();
        let cache = std::env::temp_dir().join("comfyui-mcp-bench-pack-cache");
        let app = common::shipped_app(&sim, out.path(), &cache, &[]).await;
        sim.hold_queue(true);
        let (base, shutdown) = common::serve_http_loopback(app).await;
        let http = reqwest::Client::new();
        let mut mcp = common::HttpSession::open(http.clone(), format!("{base}/mcp")).await;

        let (api_list, mcp_list) = measure_pair(
            async |_| api_call(&http, &base, "list_workflows", json!({})).await,
            async |_| mcp.call_ok("list_workflows", json!({})).await,
        )
        .await;
        let generate = |i| common::bench_generate_arguments(i);
        let (api_generate, mcp_generate) = measure_pair(
            async |i| api_call(&http, &base, "generate_image", generate(i)).await,
            async |i| mcp.call_ok("generate_image", generate(i + CALLS + WARMUP)).await,
        )
        .await;
        shutdown.cancel();

        println!(
            "{CALLS} sequential calls per transport after {WARMUP} warm-up, interleaved, one loopback server, simulator step delay 0, queue held"
        );
        println!(
            "{:<24} {:<20} {:>11} {:>11} {:>9}",
            "call", "transport", "round trip", "p99", "calls/s"
        );
        row("list_workflows", &api_list, &mcp_list);
        row("generate_image (no wait)", &api_generate, &mcp_generate);
    });
}
