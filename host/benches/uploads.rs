//! What an input image costs a call: for PNG inputs of 0.25, 1 and 4 megapixels (and a JPEG of
//! 1 MP), the median over RUNS of
//! - `intake`: the image intake alone (base64 decode, format sniff, header check, full decode,
//!   SHA-256) on its blocking pool;
//! - `call`: the whole `App::generate` of `image-variation` from that base64 (intake, parameter
//!   check, the pack's build, the graph check, the upload to ComfyUI, the submission), minus the
//!   median of the same call's baseline: `generate` of a text-to-image template
//!   (`character-portrait`, 64x64), which does all of that but the image;
//!
//! each also per input megapixel. Against the simulator in-process (its queue held, so no job
//! executes: the figures are the host's and the loopback upload's), or against the ComfyUI at
//! `COMFYUI_REAL_URL` when it is set (the upload then goes to ComfyUI's own handler; the job is
//! cancelled after submission). Each run's image differs in one pixel, so every upload is a new
//! file. The sample images are smooth gradients with noise (a photo-like PNG of about 2 bytes
//! per pixel).
//!
//! Run with: `cargo bench --profile dev -p comfyui-mcp --bench uploads` (`UPLOADS_BENCH_RUNS`
//! overrides RUNS). Prints; never asserts on timings.

#[path = "../tests/common/mod.rs"]
mod common;

use std::io::Cursor;
use std::time::{Duration, Instant};

use base64::Engine as _;
use comfyui_mcp::App;
use image::{DynamicImage, ImageFormat};
use serde_json::{Map, Value, json};

const RUNS: usize = 7;
const SIZES: [(u32, u32, ImageFormat); 4] = [
    (512, 512, ImageFormat::Png),
    (1024, 1024, ImageFormat::Png),
    (2048, 2048, ImageFormat::Png),
    (1024, 1024, ImageFormat::Jpeg),
];

fn runs() -> usize {
    common::env_count("UPLOADS_BENCH_RUNS", RUNS)
}

/// A photo-like test image: a gradient plus deterministic noise; `variant` changes one pixel.
fn image_bytes(width: u32, height: u32, format: ImageFormat, variant: u32) -> Vec<u8> {
    let mut state = 0x2545_f491_u32;
    let mut img = image::RgbImage::from_fn(width, height, |x, y| {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        let n = (state & 15) as u8;
        image::Rgb([
            (x * 255 / width) as u8 ^ n,
            (y * 255 / height) as u8 ^ n,
            ((x + y) % 256) as u8,
        ])
    });
    img.put_pixel(0, 0, image::Rgb([variant as u8, (variant >> 8) as u8, 7]));
    let mut out = Vec::new();
    DynamicImage::ImageRgb8(img)
        .write_to(&mut Cursor::new(&mut out), format)
        .expect("encodes");
    out
}

fn args(v: Value) -> Map<String, Value> {
    v.as_object().expect("an object").clone()
}

fn median(mut xs: Vec<Duration>) -> Duration {
    xs.sort();
    xs[xs.len() / 2]
}

async fn timed_generate(app: &App, template: &str, a: Map<String, Value>) -> Duration {
    let start = Instant::now();
    let job = app.generate(template, a).await.expect("submitted");
    let took = start.elapsed();
    // Keep ComfyUI's queue empty (a real one would otherwise render every job).
    let _ = app.cancel(Some(&job.prompt_id), false).await;
    took
}

fn main() {
    common::block_on(run());
}

async fn run() {
    let runs = runs();
    let real = std::env::var("COMFYUI_REAL_URL").ok();
    let sim = common::simulator(Duration::ZERO).await;
    sim.hold_queue(true);
    let out = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    let url = real.clone().unwrap_or_else(|| sim.base_url());
    let settings = common::settings(
        url.clone(),
        out.path(),
        &common::repo().join("templates"),
        cache.path(),
        &[],
    );
    let app = common::start_app(&settings).await;
    println!(
        "uploads bench: {} ({runs} runs per row, dev profile)",
        if real.is_some() {
            format!("real ComfyUI at {url}")
        } else {
            "in-process simulator, queue held".to_owned()
        }
    );

    let mut baseline = Vec::new();
    for i in 0..=runs {
        let a =
            args(json!({"prompt": "a knight", "width": 64, "height": 64, "steps": 1, "seed": i}));
        let took = timed_generate(&app, "character-portrait", a).await;
        if i > 0 {
            baseline.push(took);
        }
    }
    let baseline = median(baseline);
    println!("baseline generate (character-portrait, no image): {baseline:.2?}");
    println!(
        "{:>10} {:>5} {:>9} {:>11} {:>14} {:>11} {:>14}",
        "input", "fmt", "MiB", "intake", "intake ms/MP", "call-base", "call ms/MP"
    );
    let info = app
        .catalog()
        .template("image-variation")
        .expect("image-variation is served")
        .info
        .clone();
    let mut variant = 1;
    for (width, height, format) in SIZES {
        let megapixels = f64::from(width) * f64::from(height) / 1e6;
        let mut intakes = Vec::new();
        let mut calls = Vec::new();
        let mut size = 0;
        for _ in 0..runs {
            variant += 1;
            let bytes = image_bytes(width, height, format, variant);
            size = bytes.len();
            let encoded = base64::engine::general_purpose::STANDARD.encode(&bytes);
            let mut intake_args = args(json!({"image": encoded.clone(), "prompt": "x"}));
            let start = Instant::now();
            app.image_intake()
                .prepare(&info, &mut intake_args, app.farm())
                .await
                .expect("accepted");
            intakes.push(start.elapsed());
            let a = args(
                json!({"image": encoded, "prompt": "a variation", "steps": 1, "seed": variant}),
            );
            calls.push(timed_generate(&app, "image-variation", a).await);
        }
        let intake = median(intakes);
        let call = median(calls).saturating_sub(baseline);
        println!(
            "{:>10} {:>5} {:>9.2} {:>11.2?} {:>14.1} {:>11.2?} {:>14.1}",
            format!("{width}x{height}"),
            format!("{format:?}").to_lowercase(),
            size as f64 / (1 << 20) as f64,
            intake,
            intake.as_secs_f64() * 1e3 / megapixels,
            call,
            call.as_secs_f64() * 1e3 / megapixels,
        );
    }
    sim.shutdown().await;
}
