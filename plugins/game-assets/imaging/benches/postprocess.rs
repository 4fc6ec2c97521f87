//! Time per output megapixel of each post-processor, at 512x512 and 1024x1024, on the
//! native target (the pack runs them compiled to wasm, which is slower by a constant factor).
//!
//! Run: `cd plugins && cargo bench -p game-assets-imaging` (release profile of the bench
//! build; prints one line per processor and size: median of the runs, ms per megapixel).
//! Palette and background take the image by value, so their figures include one copy
//! of the input (about 1 ms per megapixel). Inputs: smooth value noise (like a random-weight checkpoint's output) for the palette
//! and seamless blend; an icon-like disc on a noisy plain background for the cut-out.

use std::hint::black_box;
use std::time::{Duration, Instant};

use game_assets_imaging::{RgbaImage, background, palette, seamless, synth};

fn icon(side: u32) -> RgbaImage {
    let c = side as i64 / 2;
    let r2 = (side as i64 * 3 / 8).pow(2);
    RgbaImage::from_fn(side, side, |x, y| {
        let (dx, dy) = (x as i64 - c, y as i64 - c);
        if dx * dx + dy * dy <= r2 {
            let n = (synth::mix(u64::from(y) << 32 | u64::from(x)) % 64) as u8;
            [150 + n, 40 + n, 30, 255]
        } else {
            let n = (synth::mix(u64::from(x) << 32 | u64::from(y)) % 6) as u8;
            [230 + n, 230 + n, 228 + n, 255]
        }
    })
}

/// Median wall time of `f` over enough runs to fill about a second (at least 5).
fn measure(mut f: impl FnMut()) -> Duration {
    let mut times = Vec::new();
    let started = Instant::now();
    while times.len() < 5 || (started.elapsed() < Duration::from_secs(1) && times.len() < 200) {
        let t = Instant::now();
        f();
        times.push(t.elapsed());
    }
    times.sort_unstable();
    times[times.len() / 2]
}

fn report(name: &str, side: u32, time: Duration) {
    let megapixels = f64::from(side) * f64::from(side) / 1e6;
    println!(
        "{name:<28} {side:>4}x{side:<4} {:>8.2} ms  {:>8.2} ms/MP",
        time.as_secs_f64() * 1e3,
        time.as_secs_f64() * 1e3 / megapixels
    );
}

fn main() {
    for side in [512u32, 1024] {
        let noise = synth::value_noise(side, side, 16, 1);
        for (k, dither) in [(16, false), (256, false), (16, true)] {
            let t = measure(|| {
                black_box(palette::quantize(black_box(noise.clone()), k, dither));
            });
            let label = format!("palette {k}{}", if dither { " dithered" } else { "" });
            report(&label, side, t);
        }
        let t = measure(|| {
            black_box(seamless::make_seamless(black_box(&noise)));
        });
        report("seamless blend", side, t);
        let t = measure(|| {
            black_box(seamless::seam_ratio(black_box(&noise)));
        });
        report("seam ratio (metric)", side, t);
        let img = icon(side);
        let t = measure(|| {
            black_box(background::remove_background(black_box(img.clone())));
        });
        report("background cut-out", side, t);
        let busy = synth::white_noise(side, side, 2);
        let t = measure(|| {
            black_box(background::remove_background(black_box(busy.clone())));
        });
        report("background (leaky noise)", side, t);
    }
}
