//! Post-processing figures: one `postprocess` call of the `mini-abi2` colour inverter
//! (fresh store + instantiate + copying the image in and out + the pack's loop + the
//! host's checks) at several image sizes, and the cost per output megapixel.
//!
//! Run with: `cargo bench -p comfyui-mcp-pack-runtime --bench postprocess`
//! (prints a table; never asserts on timings).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use pack_runtime::{HostView, ImageInput, Limits, RgbaImage, Runtime, RuntimeConfig, StaticHost};
use serde_json::json;

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn main() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/packs/mini-abi2.wasm");
    // Room for a 4 MP image in and out of the guest (16 MiB each) and the pack's copy.
    let limits = Limits {
        memory_bytes: 256 << 20,
        call_timeout: Duration::from_secs(20),
        ..Limits::default()
    };
    let rt = Runtime::new(RuntimeConfig {
        limits,
        ..RuntimeConfig::default()
    })
    .unwrap();
    let pack = rt.load_file(&path).unwrap();
    let host: Arc<dyn HostView> = Arc::new(StaticHost::default());
    let inputs = BTreeMap::from([(
        "image".to_owned(),
        ImageInput {
            name: "in.png".into(),
            width: 512,
            height: 512,
            has_alpha: false,
            sha256: String::new(),
        },
    )]);
    let args = json!({"image": "in.png"}).as_object().unwrap().clone();
    let params = pack_runtime::params::resolve_with_inputs(
        pack.template("invert").unwrap(),
        &args,
        &inputs,
        &pack.limits().metadata,
    )
    .unwrap();
    println!(
        "{:<36} {:>8} {:>12} {:>14} {:>12}",
        "image", "calls", "median", "per megapixel", "peak memory"
    );
    for (side, calls) in [(256u32, 40), (512, 30), (1024, 20), (2048, 8)] {
        let image = RgbaImage {
            width: side,
            height: side,
            pixels: (0..side * side * 4).map(|i| (i % 251) as u8).collect(),
        };
        let mut samples = Vec::new();
        let mut peak = 0;
        for _ in 0..calls {
            let input = image.clone();
            let t = Instant::now();
            let (done, stats) = pack.postprocess_measured("invert", &params, input, host.clone());
            samples.push(t.elapsed());
            done.unwrap();
            peak = peak.max(stats.unwrap().peak_memory_bytes);
        }
        let megapixels = f64::from(side * side) / 1e6;
        let m = median(samples);
        println!(
            "{:<36} {:>8} {:>12.2?} {:>14.2?} {:>9} MiB",
            format!("{side}x{side} ({megapixels:.2} MP)"),
            calls,
            m,
            m.div_f64(megapixels),
            peak >> 20
        );
    }
}
