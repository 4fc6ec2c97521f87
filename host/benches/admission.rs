//! Admission control and background loading under hostile packs, each figure with its
//! idle baseline measured in the same run:
//!
//! 1. server RSS ceiling while 200 concurrent calls of `sleeper-agent`'s `hog` (the
//!    `memory-hog` behaviour in a pack that passes its self-test, so it serves: each call
//!    grabs memory up to the per-call cap) run, against the RSS before; expected about
//!    share x cap above it for one pack (default share: half the permits), and
//!    permits x cap with the share raised to every permit;
//! 2. a good pack's call latency (`mini`'s `solid-color`, through `App::generate` to the
//!    simulator) p50/p99 while 200 calls of `sleeper-agent`'s `spin` (the `endless-loop`
//!    behaviour) hold or wait for permits, and idle;
//! 3. `get_workflow_status` and `list_workflows` (MCP tool calls over the stdio framing)
//!    p50/p99 while 200 pack calls wait for permits, and idle;
//! 4. time from start to `initialize` answered while `slow-loader` (40 templates x
//!    150 ms) loads, and the time until that pack is served.
//!
//! Settings: the defaults (permits = cores, share = half, queue wait 5 s), 64 MiB cap,
//! 2 s call limit. Run with: `cargo bench -p comfyui-mcp --bench admission` (prints;
//! never asserts on timings).

#[path = "../tests/common/mod.rs"]
mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use comfyui_mcp::App;
use serde_json::{Map, Value, json};
use tokio::io::AsyncWriteExt;

const STORM: usize = 200;
const SAMPLES: usize = 40;

struct Env {
    sim: simulator::SimHandle,
    templates: tempfile::TempDir,
    out: tempfile::TempDir,
}

async fn env(packs: &[&str]) -> Env {
    let sim = common::simulator(Duration::from_millis(1)).await;
    let templates = tempfile::tempdir().unwrap();
    for p in packs {
        std::fs::copy(
            common::repo().join("tests/packs").join(p),
            templates.path().join(p),
        )
        .unwrap();
    }
    Env {
        sim,
        templates,
        out: tempfile::tempdir().unwrap(),
    }
}

fn settings(env: &Env) -> comfyui_mcp::config::Settings {
    let cache = std::env::temp_dir().join("comfyui-mcp-bench-pack-cache");
    common::settings(
        env.sim.base_url(),
        env.out.path(),
        env.templates.path(),
        &cache,
        &[],
    )
}

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn show(label: &str, mut samples: Vec<Duration>) -> (Duration, Duration) {
    samples.sort();
    let (p50, p99) = (pct(&samples, 0.5), pct(&samples, 0.99));
    println!(
        "{label:<58} p50 {:>9.2?}  p99 {:>9.2?}  (n={})",
        p50,
        p99,
        samples.len()
    );
    (p50, p99)
}

/// `STORM` concurrent calls of a `sleeper-agent` template, awake (a non-empty prompt).
fn storm(app: &Arc<App>, template: &'static str) -> Vec<tokio::task::JoinHandle<()>> {
    (0..STORM)
        .map(|_| {
            let app = app.clone();
            tokio::spawn(async move {
                let mut args = Map::new();
                args.insert("prompt".into(), json!("go"));
                let _ = app.generate(template, args).await;
            })
        })
        .collect()
}

async fn good_calls(app: &Arc<App>) -> Vec<Duration> {
    let mut out = Vec::with_capacity(SAMPLES);
    for _ in 0..SAMPLES {
        let t = Instant::now();
        // Busy answers count too: the latency of the answer is what a client sees.
        let _ = app.generate("solid-color", Map::new()).await;
        out.push(t.elapsed());
    }
    out
}

struct Session {
    write: common::PipeWrite,
    lines: common::PipeLines,
    id: u64,
}

impl Session {
    async fn open(app: Arc<App>) -> Self {
        let (write, lines) = common::serve_pipe(app);
        let mut s = Self {
            write,
            lines,
            id: 0,
        };
        s.call(
            "initialize",
            json!({"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "bench", "version": "0"}}),
        )
        .await;
        s
    }

    async fn call(&mut self, method: &str, params: Value) -> Value {
        self.id += 1;
        let mut line = serde_json::to_vec(
            &json!({"jsonrpc": "2.0", "id": self.id, "method": method, "params": params}),
        )
        .unwrap();
        line.push(b'\n');
        self.write.write_all(&line).await.unwrap();
        loop {
            let text = self.lines.next_line().await.unwrap().expect("server open");
            let message: Value = serde_json::from_str(&text).unwrap();
            if message["id"] == json!(self.id) {
                return message;
            }
        }
    }

    async fn tool_latencies(&mut self, prompt_id: &str) -> (Vec<Duration>, Vec<Duration>) {
        let (mut status, mut list) = (Vec::new(), Vec::new());
        for _ in 0..SAMPLES {
            let t = Instant::now();
            self.call(
                "tools/call",
                json!({"name": "get_workflow_status", "arguments": {"prompt_id": prompt_id}}),
            )
            .await;
            status.push(t.elapsed());
            let t = Instant::now();
            self.call(
                "tools/call",
                json!({"name": "list_workflows", "arguments": {}}),
            )
            .await;
            list.push(t.elapsed());
        }
        (status, list)
    }
}

/// With the default share (one pack: half the permits), then with the share raised to
/// every permit (the server-wide ceiling).
async fn memory_ceiling(whole_server: bool) {
    let env = env(&["sleeper-agent.wasm"]).await;
    let mut s = settings(&env);
    if whole_server {
        s.pack_share = Some(s.admission().permits);
    }
    let app = comfyui_mcp::commands::start_app(&s).await.expect("app");
    let _ = app.generate("hog", Map::new()).await; // warm caches (asleep: a valid graph)
    let before = rss_kib();
    let calls = storm(&app, "hog");
    let mut peak = before;
    while !calls.iter().all(|c| c.is_finished()) {
        peak = peak.max(rss_kib());
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let permits = app.admission().config().permits;
    println!(
        "RSS, {STORM} concurrent sleeper-agent hog calls, share {}: before {} MiB, peak {} MiB, +{} MiB \
         (permits {permits} x cap {} MiB = {} MiB; peak concurrent calls {})",
        app.admission().config().per_pack,
        before / 1024,
        peak / 1024,
        peak.saturating_sub(before) / 1024,
        s.pack_memory_mb,
        permits * s.pack_memory_mb,
        app.admission().peak_running()
    );
}

async fn latency_under_storm() {
    let env = env(&["sleeper-agent.wasm", "mini.wasm"]).await;
    let app = comfyui_mcp::commands::start_app(&settings(&env))
        .await
        .expect("app");
    let job = app.generate("solid-color", Map::new()).await.expect("warm");
    let mut session = Session::open(app.clone()).await;
    let idle_good = good_calls(&app).await;
    let (idle_status, idle_list) = session.tool_latencies(&job.prompt_id).await;
    let calls = storm(&app, "spin");
    // Wait until the storm holds every permit the pack may take.
    while app.admission().running() == 0 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let busy_good = good_calls(&app).await;
    let (busy_status, busy_list) = session.tool_latencies(&job.prompt_id).await;
    let still_running = calls.iter().filter(|c| !c.is_finished()).count();
    for c in calls {
        let _ = c.await;
    }
    let (g0, g0_99) = show("good pack call (mini solid-color), idle", idle_good);
    let (g1, g1_99) = show(
        &format!("good pack call, {STORM} sleeper-agent spin calls in flight"),
        busy_good,
    );
    let (s0, _) = show("get_workflow_status, idle", idle_status);
    let (s1, _) = show(
        &format!("get_workflow_status, {STORM} pack calls waiting"),
        busy_status,
    );
    let (l0, _) = show("list_workflows, idle", idle_list);
    let (l1, _) = show(
        &format!("list_workflows, {STORM} pack calls waiting"),
        busy_list,
    );
    let ratio = |a: Duration, b: Duration| a.as_secs_f64() / b.as_secs_f64().max(1e-9);
    println!(
        "ratios under storm / idle: good call p50 {:.2}x p99 {:.2}x; status p50 {:.2}x; list p50 {:.2}x \
         (storm calls still unanswered when sampling ended: {still_running})",
        ratio(g1, g0),
        ratio(g1_99, g0_99),
        ratio(s1, s0),
        ratio(l1, l0)
    );
}

async fn initialize_while_slow_pack_loads() {
    let env = env(&["slow-loader.wasm", "mini.wasm"]).await;
    let started = Instant::now();
    let app = comfyui_mcp::commands::start_app_in_background(&settings(&env))
        .await
        .expect("app");
    let _session = Session::open(app.clone()).await;
    let initialized = started.elapsed();
    let mut changes = app.catalog_changes();
    let _ = changes
        .wait_for(|_| app.catalog().template("solid-color").is_some())
        .await;
    let mini = started.elapsed();
    app.packs().wait_idle().await;
    let slow = started.elapsed();
    println!(
        "start -> initialize answered {initialized:.2?}; mini served {mini:.2?}; slow-loader served {slow:.2?} ({})",
        if app.catalog().template("slow-39").is_some() {
            "loaded"
        } else {
            "failed"
        }
    );
}

fn main() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        initialize_while_slow_pack_loads().await;
        latency_under_storm().await;
        memory_ceiling(false).await;
        memory_ceiling(true).await;
    });
}
