//! Job store figures. Prints results; asserts nothing about timings.
//!
//! 1. Job submission overhead with the store against the in-memory table, in the same run:
//!    two backends on one in-process simulator (step delay 0), jobs alternated between them;
//!    `submit()` latency and submit → completed latency, medians and their ratio.
//! 2. Status look-up latency with `JOB_STORE_JOBS` jobs stored (default 100,000): `get` of a
//!    random id, and the first `list_jobs` page.
//! 3. Store size per job (file size after a checkpoint / jobs).
//!
//! `cargo bench -p comfyui-mcp-jobstore --bench job_store`
//! Environment: `JOB_STORE_SUBMITS` (jobs per backend, default 200), `JOB_STORE_JOBS`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use comfyui::jobs::BackendOptions;
use comfyui::snapshot::now_unix;
use comfyui::store::{JobQuery, JobStore, StoredJob};
use comfyui::{ComfyConfig, ComfyUi, JobSnapshot, JobState};
use jobstore::{SqliteJobStore, StoreOptions};
use serde_json::json;

#[path = "../../comfyui/benches/support/mod.rs"]
mod support;
use support::{env_usize, fast_simulator, request};

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

async fn backend(url: &str, out: &std::path::Path, store: bool) -> Arc<ComfyUi> {
    let cfg = ComfyConfig::new(url).unwrap().with_output_dir(out);
    let mut options = BackendOptions::for_config(&cfg);
    if store {
        let db = SqliteJobStore::open(&out.join("jobs.sqlite3"), StoreOptions::default()).unwrap();
        options.job_store = Some(Arc::new(db));
    }
    let comfy = ComfyUi::connect_with(cfg, options).unwrap();
    let mut conn = comfy.connection();
    tokio::time::timeout(Duration::from_secs(30), conn.wait_for(|c| c.connected))
        .await
        .expect("websocket connects")
        .unwrap();
    comfy
}

/// (submit() latency, submit → completed latency).
async fn run_job(comfy: &ComfyUi, i: usize) -> (Duration, Duration) {
    let t0 = Instant::now();
    let snap = comfy.submit(request(i)).await.expect("submit");
    let submitted = t0.elapsed();
    let done = comfy
        .wait(&snap.prompt_id, Duration::from_secs(120))
        .await
        .expect("store readable")
        .expect("tracked");
    assert_eq!(done.state, JobState::Completed, "{:?}", done.error);
    (submitted, t0.elapsed())
}

async fn submission_overhead() {
    let jobs = env_usize("JOB_STORE_SUBMITS", 200).max(1);
    let sim = fast_simulator().await;
    let (out_mem, out_db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let memory = backend(&sim.base_url(), out_mem.path(), false).await;
    let stored = backend(&sim.base_url(), out_db.path(), true).await;
    for i in 0..20 {
        run_job(&memory, i).await;
        run_job(&stored, i).await;
    }
    let (mut mem_submit, mut mem_done, mut db_submit, mut db_done) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for i in 0..jobs {
        let (s, d) = run_job(&memory, 1000 + i).await;
        mem_submit.push(s);
        mem_done.push(d);
        let (s, d) = run_job(&stored, 1000 + i).await;
        db_submit.push(s);
        db_done.push(d);
    }
    let (ms_, md, ds, dd) = (
        median(mem_submit),
        median(mem_done),
        median(db_submit),
        median(db_done),
    );
    println!(
        "job_store: {jobs} jobs per backend, alternated, simulator step delay 0, 1 image each"
    );
    println!(
        "  submit() median: in-memory {:.3} ms, SQLite store {:.3} ms, ratio {:.2}",
        ms(ms_),
        ms(ds),
        ds.as_secs_f64() / ms_.as_secs_f64()
    );
    println!(
        "  submit -> completed median: in-memory {:.3} ms, SQLite store {:.3} ms, ratio {:.2}",
        ms(md),
        ms(dd),
        dd.as_secs_f64() / md.as_secs_f64()
    );
}

fn stored_job(i: usize, now: f64) -> StoredJob {
    let id = format!("{:08x}-0000-4000-8000-{:012x}", i, i);
    let mut snapshot = JobSnapshot {
        prompt_id: id.clone(),
        state: JobState::Queued,
        progress: 0.0,
        queue_position: None,
        execution_time: None,
        postprocess_ms: None,
        postprocessing: None,
        images: vec![comfyui::ImageRef::output(
            format!("ComfyUI_{i:05}_.png"),
            "",
        )],
        files: vec![],
        error: None,
        node_errors: json!({}),
        submitted_at: now - i as f64,
        started_at: None,
        finished_at: None,
        origin: request(i).origin,
        parameters: request(i).parameters,
        metadata: json!({"seed": i, "width": 64, "height": 64, "template": "bench"}),
        backend: "sim".into(),
        warnings: vec![],
    };
    snapshot.files.push(comfyui::SavedImage {
        path: format!("/data/out/{id}/ComfyUI_{i:05}_.png").into(),
        filename: format!("ComfyUI_{i:05}_.png"),
        width: 64,
        height: 64,
        bytes: 4_000,
        postprocess: None,
    });
    StoredJob {
        snapshot,
        backend: "http://127.0.0.1:8188".into(),
        graph_sha256: "ab".repeat(32),
        graph_nodes: vec!["1".into(), "2".into()],
        cancel_requested: false,
    }
}

fn lookups() {
    let n = env_usize("JOB_STORE_JOBS", 100_000).max(1);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("jobs.sqlite3");
    let store = SqliteJobStore::open(&path, StoreOptions::default()).unwrap();
    let now = now_unix();
    let t0 = Instant::now();
    for i in 0..n {
        let mut job = stored_job(i, now);
        store.insert(&job).unwrap();
        job.snapshot.state = JobState::Completed;
        job.snapshot.progress = 1.0;
        job.snapshot.finished_at = Some(now);
        store.update(&job.snapshot).unwrap();
    }
    let fill = t0.elapsed();
    let mut rng = 0x2545_f491_4f6c_dd1du64;
    let mut times = Vec::with_capacity(10_000);
    for _ in 0..10_000 {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let id = stored_job((rng % n as u64) as usize, now)
            .snapshot
            .prompt_id;
        let t = Instant::now();
        let got = store.get(&id).unwrap();
        times.push(t.elapsed());
        assert!(got.is_some());
    }
    let get = median(times);
    let mut pages = Vec::new();
    for _ in 0..200 {
        let t = Instant::now();
        let page = store.list(&JobQuery::default()).unwrap();
        pages.push(t.elapsed());
        assert_eq!(page.jobs.len(), comfyui::store::DEFAULT_PAGE);
    }
    let page = median(pages);
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
        .unwrap();
    let bytes = std::fs::metadata(&path).unwrap().len()
        + std::fs::metadata(path.with_extension("sqlite3-wal"))
            .map(|m| m.len())
            .unwrap_or(0);
    println!(
        "job_store: {n} completed jobs stored (insert + completion: {:.1} s, {:.1} µs per job)",
        fill.as_secs_f64(),
        fill.as_secs_f64() * 1e6 / n as f64
    );
    println!(
        "  status look-up (get by prompt_id) median: {:.1} µs",
        get.as_secs_f64() * 1e6
    );
    println!(
        "  list_jobs first page ({} jobs) median: {:.2} ms",
        comfyui::store::DEFAULT_PAGE,
        ms(page)
    );
    println!(
        "  store size: {} bytes, {:.0} bytes per job",
        bytes,
        bytes as f64 / n as f64
    );
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(submission_overhead());
    lookups();
}
