//! Load time of a pack AT the default template cap (`tests/packs/template-cap.wasm`,
//! 256 templates), next to the shipped pack: warm load from the compile cache (what a
//! restart or hot reload pays), and the metadata validation alone.
//!
//! Run with: `cargo bench -p comfyui-mcp-pack-runtime --bench template_cap`
//! (prints a table; never asserts on timings).

use std::path::Path;
use std::time::{Duration, Instant};

use pack_runtime::metadata::validate_metadata;
use pack_runtime::{MetadataLimits, Runtime, RuntimeConfig};

fn stats(mut samples: Vec<Duration>) -> (Duration, Duration, Duration) {
    samples.sort();
    let pick = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
    (pick(0.5), pick(0.99), samples[0])
}

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let packs = [
        (
            "template-cap (256 templates)",
            root.join("tests/packs/template-cap.wasm"),
        ),
        (
            "game-assets (4 templates)",
            root.join("templates/game-assets.wasm"),
        ),
    ];
    let cache = tempfile::tempdir().unwrap();
    let config = RuntimeConfig {
        cache_dir: Some(cache.path().into()),
        ..Default::default()
    };
    println!(
        "{:<68} {:>10} {:>10} {:>10}",
        "figure", "median", "p99", "min"
    );
    for (name, path) in &packs {
        // Fill the compile cache, then load from it as after a restart.
        let pack = Runtime::new(config.clone())
            .unwrap()
            .load_file(path)
            .unwrap();
        let rt = Runtime::new(config.clone()).unwrap();
        let mut warm = Vec::new();
        for _ in 0..30 {
            let t = Instant::now();
            rt.load_file(path).unwrap();
            warm.push(t.elapsed());
        }
        let mut validate = Vec::new();
        for _ in 0..200 {
            let t = Instant::now();
            validate_metadata(pack.info(), pack.templates(), &MetadataLimits::DEFAULT).unwrap();
            validate.push(t.elapsed());
        }
        for (what, samples) in [
            ("warm load (compile cache), 30 runs", warm),
            ("metadata validation only, 200 runs", validate),
        ] {
            let (median, p99, min) = stats(samples);
            let label = format!("{name}: {what}");
            println!("{label:<68} {median:>10.2?} {p99:>10.2?} {min:>10.2?}");
        }
    }
}
