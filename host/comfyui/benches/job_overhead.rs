//! Per-job host overhead of `ComfyUi` against the in-process simulator (step delay 0):
//! submit → completed, image download and provenance included, then the resident-memory
//! growth with 10,000 finished jobs retained. Prints results; asserts nothing about timings.
//!
//! The overhead is what `ComfyUi` adds over the least any client of ComfyUI does for the
//! same job (POST `/prompt`, wait on the websocket for its end, GET `/history/{id}`, GET
//! `/view` of its image, write it to a file): both run interleaved in one process, and the figure is the median
//! of the paired differences, so the simulator's own work (validation, PNG encoding, HTTP)
//! is on both sides and cancels out.
//!
//! `cargo bench -p comfyui-mcp-comfyui --bench job_overhead`
//! Environment: `JOB_OVERHEAD_JOBS` (latency sample, default 300), `JOB_OVERHEAD_RETAINED`
//! (finished jobs for the memory figure, default 10000).

use std::sync::Arc;
use std::time::{Duration, Instant};

use comfyui::jobs::BackendOptions;
use comfyui::{ComfyConfig, ComfyUi, JobState};

mod support;
use support::{env_usize, fast_simulator, request};

/// Resident set size in KiB (`VmRSS` of /proc/self/status; 0 where unavailable).
fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

async fn run_job(comfy: &ComfyUi, i: usize) -> Duration {
    let t0 = Instant::now();
    let snap = comfy.submit(request(i)).await.expect("submit");
    let done = comfy
        .wait(&snap.prompt_id, Duration::from_secs(120))
        .await
        .expect("store readable")
        .expect("tracked");
    assert_eq!(done.state, JobState::Completed, "{:?}", done.error);
    t0.elapsed()
}

/// The bare client: one websocket under its own client id, one HTTP client.
struct Bare {
    http: reqwest::Client,
    out: tempfile::TempDir,
    base: String,
    client_id: String,
    ws: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
}

impl Bare {
    async fn connect(base: &str) -> Bare {
        let base = base.trim_end_matches('/').to_owned();
        let client_id = uuid::Uuid::new_v4().to_string();
        let url = format!("{}/ws?clientId={client_id}", base.replacen("http", "ws", 1));
        let (ws, _) = tokio_tungstenite::connect_async(url)
            .await
            .expect("websocket");
        Bare {
            http: reqwest::Client::new(),
            out: tempfile::tempdir().unwrap(),
            base,
            client_id,
            ws,
        }
    }

    /// The job `i` as a bare client runs it: no checks, no tracking, no store, no provenance.
    async fn run_job(&mut self, i: usize) -> Duration {
        use futures_util::StreamExt;
        let t0 = Instant::now();
        let body = serde_json::json!({"prompt": request(i).graph, "client_id": self.client_id});
        let posted: serde_json::Value = self
            .http
            .post(format!("{}/prompt", self.base))
            .json(&body)
            .send()
            .await
            .expect("POST /prompt")
            .json()
            .await
            .expect("POST /prompt answer");
        let id = posted["prompt_id"].as_str().expect("prompt_id").to_owned();
        while let Some(message) = self.ws.next().await {
            let tokio_tungstenite::tungstenite::Message::Text(text) = message.expect("ws") else {
                continue;
            };
            let event: serde_json::Value = serde_json::from_str(&text).expect("ws json");
            if event["type"] == "executing"
                && event["data"]["node"].is_null()
                && event["data"]["prompt_id"] == id.as_str()
            {
                break;
            }
        }
        let history: serde_json::Value = self
            .http
            .get(format!("{}/history/{id}", self.base))
            .send()
            .await
            .expect("GET /history")
            .json()
            .await
            .expect("history json");
        let image = &history[&id]["outputs"]["2"]["images"][0];
        let bytes = self
            .http
            .get(format!("{}/view", self.base))
            .query(&[
                ("filename", image["filename"].as_str().expect("filename")),
                ("subfolder", image["subfolder"].as_str().unwrap_or("")),
                ("type", image["type"].as_str().unwrap_or("output")),
            ])
            .send()
            .await
            .expect("GET /view")
            .bytes()
            .await
            .expect("image bytes");
        tokio::fs::write(self.out.path().join(format!("{i}.png")), &bytes)
            .await
            .expect("image written");
        t0.elapsed()
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(bench());
}

async fn bench() {
    let jobs = env_usize("JOB_OVERHEAD_JOBS", 300).max(1);
    let retained = env_usize("JOB_OVERHEAD_RETAINED", 10_000);
    let sim = fast_simulator().await;
    let out = tempfile::tempdir().unwrap();
    let cfg = ComfyConfig::new(&sim.base_url())
        .unwrap()
        .with_output_dir(out.path())
        .with_max_finished_jobs(retained + jobs + 100);
    let options = BackendOptions::for_config(&cfg);
    let comfy = ComfyUi::connect_with(cfg, options).unwrap();
    let mut conn = comfy.connection();
    tokio::time::timeout(Duration::from_secs(30), conn.wait_for(|c| c.connected))
        .await
        .expect("websocket connects")
        .unwrap();

    let mut bare = Bare::connect(&sim.base_url()).await;
    // Warm-up (connections, caches, allocator).
    for i in 0..20 {
        run_job(&comfy, i).await;
        bare.run_job(500 + i).await;
    }

    let mut times = Vec::with_capacity(jobs);
    let mut bare_times = Vec::with_capacity(jobs);
    let mut added = Vec::with_capacity(jobs);
    for i in 0..jobs {
        let ours = run_job(&comfy, 1000 + i).await;
        let theirs = bare.run_job(50_000 + i).await;
        times.push(ours);
        bare_times.push(theirs);
        added.push(ms(ours) - ms(theirs));
    }
    times.sort();
    bare_times.sort();
    added.sort_by(f64::total_cmp);
    let mean = times.iter().sum::<Duration>() / times.len() as u32;
    println!("job_overhead: {jobs} sequential jobs, simulator step delay 0, 1 image each");
    println!(
        "  submit -> completed (download + provenance included): median {:.2} ms, p99 {:.2} ms, mean {:.2} ms, min {:.2} ms, max {:.2} ms",
        ms(percentile(&times, 0.5)),
        ms(percentile(&times, 0.99)),
        ms(mean),
        ms(times[0]),
        ms(*times.last().unwrap())
    );
    println!("  (includes the in-process simulator's own work: validation, PNG encoding, HTTP)");
    println!(
        "  the same job by a bare client (POST, websocket end, /history, /view, file write), interleaved: median {:.2} ms, p99 {:.2} ms",
        ms(percentile(&bare_times, 0.5)),
        ms(percentile(&bare_times, 0.99)),
    );
    let pick = |p: f64| added[((added.len() as f64 - 1.0) * p).round() as usize];
    println!(
        "  overhead per job (ours - bare, paired): median {:.2} ms, p10 {:.2} ms, p90 {:.2} ms",
        pick(0.5),
        pick(0.1),
        pick(0.9),
    );

    if retained == 0 {
        return;
    }
    // Memory: retain `retained` finished jobs. The simulator runs in this process, so between
    // batches it is restarted and its request log cleared: its history and log do not grow
    // with ours.
    sim.restart().await;
    sim.clear_requests();
    let before_jobs = comfy.job_count();
    let rss_before = rss_kib();
    let t0 = Instant::now();
    let comfy = Arc::new(comfy);
    let batch = 500;
    let mut done = 0;
    while done < retained {
        let n = batch.min(retained - done);
        let mut set = tokio::task::JoinSet::new();
        let sem = Arc::new(tokio::sync::Semaphore::new(16));
        for i in 0..n {
            let comfy = comfy.clone();
            let sem = sem.clone();
            set.spawn(async move {
                let _permit = sem.acquire().await.unwrap();
                run_job(&comfy, 100_000 + done + i).await
            });
        }
        while let Some(r) = set.join_next().await {
            r.expect("job task");
        }
        done += n;
        sim.restart().await;
        sim.clear_requests();
    }
    let rss_after = rss_kib();
    let held = comfy.job_count() - before_jobs;
    let growth = rss_after.saturating_sub(rss_before);
    println!(
        "  retained finished jobs: {held} (ran in {:.1} s, 16 in flight)",
        t0.elapsed().as_secs_f64()
    );
    println!(
        "  RSS: {rss_before} KiB before, {rss_after} KiB after, growth {growth} KiB (~{} bytes per retained job)",
        if held > 0 {
            growth * 1024 / held as u64
        } else {
            0
        }
    );
    drop(comfy);
    sim.shutdown().await;
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
