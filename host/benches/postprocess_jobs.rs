//! Post-processing cost against generation cost, per job: for each of game-assets 2.0's three
//! post-processors (`pixel-art`'s palette, `environment-texture`'s seamless blend,
//! `item-icon`'s background removal), RUNS jobs at SIZE x SIZE (512) with STEPS sampling steps, each
//! through `App::generate` and `App::wait` to completion, against the ComfyUI at
//! `COMFYUI_REAL_URL` when it is set, else the in-process simulator (said in the output;
//! its execution time is its step delay, so the ratio means nothing there).
//!
//! Per template it prints the medians of the job's `postprocess_ms` (decode, the pack's
//! call, encode and save of every output image), of the time inside the pack
//! (`processor_ms`), of `postprocess_ms` per output megapixel, of ComfyUI's
//! `execution_time`, and the ratio postprocess / execution of the medians. Each job has
//! its own seed (ComfyUI would answer a repeated graph from its cache); one warm-up job at
//! 64x64 (the checkpoint load) is not counted. `pixel-art` renders at up to 4x its size
//! (at most 1024 px a side) and downscales, so its ComfyUI time is that of the larger image.
//!
//! Run with: `cargo bench --profile dev -p comfyui-mcp --bench postprocess_jobs`
//! (`COMFYUI_REAL_URL=http://127.0.0.1:PORT` for a real ComfyUI; `POSTPROCESS_BENCH_RUNS`,
//! `POSTPROCESS_BENCH_SIZE` and `POSTPROCESS_BENCH_STEPS` override RUNS, SIZE and STEPS,
//! `POSTPROCESS_BENCH_TEMPLATES` (comma-separated) runs a subset of the three: a
//! CPU ComfyUI with a full-size SD1.5 checkpoint may need minutes per step at 512x512).
//! ComfyUI's execution timeout is raised to JOB_TIMEOUT for the run. Prints; never asserts
//! on timings.

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::Duration;

use comfyui::JobState;
use comfyui_mcp::App;
use serde_json::{Map, Value, json};

const TEMPLATES: [&str; 3] = ["pixel-art", "environment-texture", "item-icon"];
const RUNS: usize = 3;
const STEPS: u32 = 3;
const SIZE: u32 = 512;
const JOB_TIMEOUT: Duration = Duration::from_secs(900);
/// The simulator's delay per sampling step when no real ComfyUI is given.
const SIM_STEP_DELAY: Duration = Duration::from_millis(50);

/// One finished job's figures.
struct Sample {
    postprocess_ms: f64,
    processor_ms: f64,
    megapixels: f64,
    execution_s: f64,
}

/// What one run generates: width = height, and sampling steps.
#[derive(Clone, Copy)]
struct Job {
    size: u32,
    steps: u32,
}

fn env_number(name: &str, default: u32) -> u32 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse::<u32>().ok())
        .filter(|&n| n > 0)
        .unwrap_or(default)
}

fn arguments(template: &str, seed: u64, job: Job) -> Map<String, Value> {
    let v = json!({
        "template": template,
        "prompt": format!("a game asset, {template}"),
        "seed": seed,
        "steps": job.steps,
        "width": job.size,
        "height": job.size,
    });
    let Value::Object(mut map) = v else {
        unreachable!("an object literal")
    };
    map.remove("template");
    map
}

async fn run_job(app: &App, template: &str, seed: u64, job: Job) -> Sample {
    let submitted = app
        .generate(template, arguments(template, seed, job))
        .await
        .unwrap_or_else(|e| panic!("{template}: generate failed: {e}"));
    let done = app
        .wait(&submitted.prompt_id, JOB_TIMEOUT)
        .await
        .expect("our job");
    assert_eq!(
        done.state,
        JobState::Completed,
        "{template}: the job did not complete: {:?}",
        done.error
    );
    let megapixels: f64 = done
        .files
        .iter()
        .map(|f| f64::from(f.width) * f64::from(f.height) / 1e6)
        .sum();
    let processor_ms: f64 = done
        .files
        .iter()
        .filter_map(|f| f.postprocess.as_ref())
        .map(|p| p.processor_ms)
        .sum();
    Sample {
        postprocess_ms: done
            .postprocess_ms
            .expect("a post-processed job has postprocess_ms"),
        processor_ms,
        megapixels,
        execution_s: done
            .execution_time
            .expect("ComfyUI reported the execution time"),
    }
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let runs = env_number("POSTPROCESS_BENCH_RUNS", RUNS as u32) as usize;
    let job = Job {
        size: env_number("POSTPROCESS_BENCH_SIZE", SIZE),
        steps: env_number("POSTPROCESS_BENCH_STEPS", STEPS),
    };
    runtime.block_on(async {
        let real = std::env::var("COMFYUI_REAL_URL")
            .ok()
            .filter(|u| !u.is_empty());
        let (url, _sim) = match real {
            Some(url) => {
                println!("backend: the ComfyUI at {url}");
                (url, None)
            }
            None => {
                let sim = common::simulator(SIM_STEP_DELAY).await;
                println!(
                    "backend: the built-in simulator (COMFYUI_REAL_URL is not set), {} ms per step: \
                     its execution time is that delay, the ratios mean nothing",
                    SIM_STEP_DELAY.as_millis()
                );
                (sim.base_url(), Some(sim))
            }
        };
        let out = tempfile::tempdir().expect("output folder");
        let cache = std::env::temp_dir().join("comfyui-mcp-bench-pack-cache");
        let settings = common::settings(
            url,
            out.path(),
            &common::repo().join("templates"),
            &cache,
            &["--comfyui-timeout", &JOB_TIMEOUT.as_secs().to_string()],
        );
        let app = common::start_app(&settings).await;
        println!(
            "{runs} jobs per template at {0}x{0}, {1} steps, batch 1, after one warm-up job; medians",
            job.size, job.steps
        );
        let selected: Vec<String> = match std::env::var("POSTPROCESS_BENCH_TEMPLATES") {
            Ok(list) if !list.trim().is_empty() => {
                list.split(',').map(|t| t.trim().to_owned()).collect()
            }
            _ => TEMPLATES.iter().map(|t| (*t).to_owned()).collect(),
        };
        for t in &selected {
            assert!(
                TEMPLATES.contains(&t.as_str()),
                "POSTPROCESS_BENCH_TEMPLATES: unknown template {t:?}; choose from {TEMPLATES:?}"
            );
        }
        let base_seed = u64::from(std::process::id()) << 20;
        let warm_up = Job { size: 64, steps: 1 };
        let _ = run_job(&app, &selected[0], base_seed, warm_up).await;
        println!(
            "{:<20} {:>16} {:>14} {:>12} {:>16} {:>18}",
            "template",
            "postprocess_ms",
            "in pack (ms)",
            "ms per MP",
            "execution (s)",
            "postprocess/exec"
        );
        for (t, template) in selected.iter().enumerate() {
            let mut samples = Vec::with_capacity(runs);
            for i in 0..runs {
                let seed = base_seed + 1 + (t * runs + i) as u64;
                samples.push(run_job(&app, template, seed, job).await);
            }
            let pp = median(samples.iter().map(|s| s.postprocess_ms).collect());
            let inside = median(samples.iter().map(|s| s.processor_ms).collect());
            let per_mp = median(
                samples
                    .iter()
                    .map(|s| s.postprocess_ms / s.megapixels)
                    .collect(),
            );
            let exec = median(samples.iter().map(|s| s.execution_s).collect());
            println!(
                "{template:<20} {pp:>16.1} {inside:>14.1} {per_mp:>12.1} {exec:>16.2} {:>17.4}",
                pp / (exec * 1000.0)
            );
        }
    });
}
