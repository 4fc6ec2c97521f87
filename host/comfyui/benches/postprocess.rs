//! What the post-processing stage costs the host, per output megapixel, with an identity
//! processor (so only the host's work is measured: read, PNG decode to RGBA8, result checks,
//! PNG encode, atomic write):
//!
//! 1. the codec alone (decode + encode of a ComfyUI-like RGB PNG) at 512², 1024² and 2048²;
//! 2. whole jobs: `postprocess_ms` per megapixel against the same job's `execution_time` in
//!    ComfyUI. Against the in-process simulator by default (EmptyImage → SaveImage, so the
//!    execution time is the simulator's, not a model's); set `POSTPROCESS_BENCH_URL` to a real
//!    ComfyUI to run its tiny text-to-image graph (the tests' random-weight SD1.5 checkpoint
//!    `POSTPROCESS_BENCH_CKPT`, default `tiny-random-sd15.safetensors`) at 512x512 instead.
//!
//! Prints results; asserts nothing about timings.
//!
//! `cargo bench -p comfyui-mcp-comfyui --bench postprocess`
//! Environment: `POSTPROCESS_BENCH_RUNS` (per size, default 5), `POSTPROCESS_BENCH_URL`,
//! `POSTPROCESS_BENCH_CKPT`.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use comfyui::jobs::BackendOptions;
use comfyui::postprocess::codec::{decode_rgba, encode_png};
use comfyui::{
    ComfyConfig, ComfyUi, JobState, OutputProcessor, PostprocessError, PostprocessOptions,
    Postprocessed, RgbaImage,
};
use serde_json::json;

mod support;
use support::{env_usize, fast_simulator, request};

/// Hands every image back unchanged.
struct Identity;

impl OutputProcessor for Identity {
    fn process(
        &self,
        image: RgbaImage,
    ) -> Pin<Box<dyn Future<Output = Result<Postprocessed, PostprocessError>> + Send>> {
        Box::pin(std::future::ready(Ok(Postprocessed {
            image,
            steps: vec![],
        })))
    }
}

/// A smooth gradient with light noise, encoded like ComfyUI's SaveImage (RGB, level 4 ≈
/// `png::Compression::Balanced`): closer to a generated picture than a flat colour.
fn comfy_like_png(side: u32) -> Vec<u8> {
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut rgb = Vec::with_capacity((side * side * 3) as usize);
    for y in 0..side {
        for x in 0..side {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let noise = (state & 15) as u32;
            rgb.push(((x * 255 / side + noise) & 255) as u8);
            rgb.push(((y * 255 / side + noise) & 255) as u8);
            rgb.push((((x + y) * 127 / side + noise) & 255) as u8);
        }
    }
    let mut out = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut out, side, side);
        enc.set_color(png::ColorType::Rgb);
        enc.set_compression(png::Compression::Balanced);
        let mut w = enc.write_header().unwrap();
        w.write_image_data(&rgb).unwrap();
    }
    out
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn codec(runs: usize) {
    println!(
        "codec alone (decode ComfyUI-like RGB PNG to RGBA8 + encode RGB, Compression::Fast), median of {runs}:"
    );
    for side in [512u32, 1024, 2048] {
        let png = comfy_like_png(side);
        let mp = f64::from(side * side) / 1e6;
        let (mut dec, mut enc, mut size) = (Vec::new(), Vec::new(), 0);
        for _ in 0..runs {
            let t = Instant::now();
            let img = decode_rgba(&png, u64::MAX).unwrap();
            dec.push(t.elapsed().as_secs_f64() * 1000.0);
            let t = Instant::now();
            size = encode_png(&img).unwrap().len();
            enc.push(t.elapsed().as_secs_f64() * 1000.0);
        }
        let (d, e) = (median(dec), median(enc));
        println!(
            "  {side}x{side}: decode {d:.1} ms + encode {e:.1} ms = {:.1} ms/MP ({} KB in, {} KB out)",
            (d + e) / mp,
            png.len() / 1024,
            size / 1024
        );
    }
}

async fn jobs(runs: usize) {
    let real = std::env::var("POSTPROCESS_BENCH_URL").ok();
    let sim = match real {
        Some(_) => None,
        None => Some(fast_simulator().await),
    };
    let url = real
        .clone()
        .unwrap_or_else(|| sim.as_ref().unwrap().base_url());
    let out = tempfile::tempdir().unwrap();
    let cfg = ComfyConfig::new(&url)
        .unwrap()
        .with_output_dir(out.path())
        .with_execution_timeout(Duration::from_secs(1800))
        .unwrap();
    let options = BackendOptions {
        postprocess: PostprocessOptions::default(),
        ..BackendOptions::for_config(&cfg)
    };
    let comfy = ComfyUi::connect_with(cfg, options).unwrap();
    let mut rx = comfy.connection();
    let _ = tokio::time::timeout(Duration::from_secs(30), rx.wait_for(|c| c.connected)).await;
    let sides: &[u32] = if real.is_some() {
        &[512]
    } else {
        &[512, 1024, 2048]
    };
    let what = if real.is_some() {
        "real ComfyUI, tiny SD1.5 text-to-image"
    } else {
        "simulator, EmptyImage -> SaveImage"
    };
    println!("whole jobs with an identity processor ({what}), median of {runs}:");
    for &side in sides {
        let (mut post, mut exec) = (Vec::new(), Vec::new());
        for i in 0..runs {
            let mut req = request(i);
            req.graph = match &real {
                Some(_) => t2i(side, i as u64),
                None => json!({
                    "1": {"class_type": "EmptyImage", "inputs": {"width": side, "height": side, "batch_size": 1, "color": i}},
                    "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "bench/post"}}
                }),
            };
            req.postprocess = Some(Arc::new(Identity));
            let job = comfy.submit(req).await.expect("submit");
            let done = comfy
                .wait(&job.prompt_id, Duration::from_secs(1800))
                .await
                .unwrap()
                .unwrap();
            assert_eq!(done.state, JobState::Completed, "{:?}", done.error);
            post.push(done.postprocess_ms.unwrap());
            exec.push(done.execution_time.unwrap_or(0.0) * 1000.0);
        }
        let mp = f64::from(side * side) / 1e6;
        let (p, e) = (median(post), median(exec));
        println!(
            "  {side}x{side}: postprocess_ms {p:.1} ({:.1} ms/MP) vs execution_time {e:.0} ms: post-processing = {:.1}% of execution",
            p / mp,
            100.0 * p / e.max(f64::MIN_POSITIVE)
        );
    }
}

/// The tiny text-to-image graph of the real tier at `side`.
fn t2i(side: u32, seed: u64) -> serde_json::Value {
    let ckpt = std::env::var("POSTPROCESS_BENCH_CKPT")
        .unwrap_or_else(|_| "tiny-random-sd15.safetensors".to_owned());
    json!({
        "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": ckpt}},
        "5": {"class_type": "EmptyLatentImage", "inputs": {"width": side, "height": side, "batch_size": 1}},
        "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "a red fox", "clip": ["4", 1]}},
        "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "", "clip": ["4", 1]}},
        "3": {"class_type": "KSampler", "inputs": {"seed": seed, "steps": 4, "cfg": 7.0, "sampler_name": "euler", "scheduler": "normal", "denoise": 1.0, "model": ["4", 0], "positive": ["6", 0], "negative": ["7", 0], "latent_image": ["5", 0]}},
        "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
        "9": {"class_type": "SaveImage", "inputs": {"images": ["8", 0], "filename_prefix": "bench/post"}}
    })
}

fn main() {
    let runs = env_usize("POSTPROCESS_BENCH_RUNS", 5).max(1);
    codec(runs);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(jobs(runs));
}
