//! Makespan of JOBS jobs on a farm of 1, 2 and 4 simulated backends: each simulator takes
//! STEP_DELAY per sampling step (STEPS steps per job, so one job is about STEPS × STEP_DELAY of
//! "GPU" time and a backend runs one job at a time, as ComfyUI does). All jobs are submitted at
//! once through `App::generate` (the shipped `character-portrait`, 64x64), then awaited; the
//! makespan is from the first submission to the last completion. Printed per farm size: the
//! median makespan over RUNS, its ratio to one backend in the same run, and where the jobs ran.
//!
//! Run with: `cargo bench --profile dev -p comfyui-mcp --bench farm_makespan`
//! (`FARM_BENCH_RUNS` overrides RUNS). Prints; never asserts on timings.

#[path = "../tests/common/mod.rs"]
mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

const JOBS: usize = 16;
const STEPS: u32 = 4;
const STEP_DELAY: Duration = Duration::from_millis(50);
const RUNS: usize = 3;
const SIZES: [usize; 3] = [1, 2, 4];

fn runs() -> usize {
    common::env_count("FARM_BENCH_RUNS", RUNS)
}

fn main() {
    common::block_on(run());
}

async fn one_run(backends: usize) -> (Duration, BTreeMap<String, usize>) {
    let mut sims = Vec::new();
    for _ in 0..backends {
        sims.push(common::simulator(STEP_DELAY).await);
    }
    let out = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    let urls: Vec<String> = sims.iter().map(|s| s.base_url()).collect();
    let settings = common::settings(
        urls.join(","),
        out.path(),
        &common::repo().join("templates"),
        cache.path(),
        &["--db", "off"],
    );
    let app = common::start_app(&settings).await;
    for member in app.farm().members() {
        let mut conn = member.comfy.connection();
        let _ = conn.wait_for(|c| c.connected).await;
    }
    let start = Instant::now();
    let submits = (0..JOBS).map(|i| {
        let app = app.clone();
        async move {
            let args =
                json!({"prompt": "a knight", "width": 64, "height": 64, "steps": STEPS, "seed": i});
            let Value::Object(args) = args else {
                unreachable!()
            };
            app.generate("character-portrait", args)
                .await
                .expect("submitted")
        }
    });
    let jobs = futures_util::future::join_all(submits).await;
    let mut on = BTreeMap::new();
    for job in &jobs {
        let done = app
            .wait(&job.prompt_id, Duration::from_secs(120))
            .await
            .expect("known");
        assert!(done.state.is_terminal(), "{done:?}");
        *on.entry(done.backend.clone()).or_insert(0) += 1;
    }
    let makespan = start.elapsed();
    for sim in sims {
        sim.shutdown().await;
    }
    (makespan, on)
}

async fn run() {
    let runs = runs();
    println!(
        "farm makespan: {JOBS} jobs x {STEPS} steps x {STEP_DELAY:?} per step, simulators in-process ({runs} runs, dev profile)"
    );
    println!(
        "{:>8} {:>12} {:>10}   jobs per backend",
        "backends", "makespan", "vs 1"
    );
    let mut baseline = None;
    for backends in SIZES {
        let mut times = Vec::new();
        let mut spread = BTreeMap::new();
        for _ in 0..runs {
            let (took, on) = one_run(backends).await;
            times.push(took);
            spread = on;
        }
        times.sort();
        let median = times[times.len() / 2];
        let base = *baseline.get_or_insert(median);
        let counts: Vec<usize> = spread.values().copied().collect();
        println!(
            "{backends:>8} {:>12.2?} {:>9.2}x   {counts:?}",
            median,
            median.as_secs_f64() / base.as_secs_f64()
        );
    }
}
