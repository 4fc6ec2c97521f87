//! Compile time of one pack under each code-generation setting, and what a
//! call costs afterwards: the data behind `compiler.rs`'s choice of Winch
//! for big packs.
//!
//! Run with: `cargo bench -p comfyui-mcp-pack-runtime --bench compile`
//! (the committed `templates/game-assets.wasm` by default), or on a big pack:
//! `COMFYUI_MCP_BENCH_PACK=path/to/py-pack.wasm cargo bench -p comfyui-mcp-pack-runtime --bench compile`.
//! `COMFYUI_MCP_BENCH_TEMPLATE` picks the template built per call (default:
//! the pack's first); `COMFYUI_MCP_BENCH_CALLS` the number of calls (default 30).
//!
//! Prints wall time and the process's CPU time of one cold compile
//! (`Component::new`, no cache) per setting, then the median and p90 of
//! `build` calls through the runtime compiled each way. Never asserts on
//! timings; compare the rows of one run as ratios.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pack_runtime::{
    Compiler, HostView, Limits, Runtime, RuntimeConfig, StaticHost, sandbox_config,
};
use wasmtime::component::Component;
use wasmtime::{Engine, OptLevel};

/// User + system CPU time of this process so far.
fn cpu_time() -> Duration {
    // SAFETY: getrusage writes into the zeroed struct we pass.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

fn compile_once(name: &str, config: &wasmtime::Config, bytes: &[u8]) {
    let engine = Engine::new(config).expect("engine");
    let (wall, cpu) = (Instant::now(), cpu_time());
    Component::new(&engine, bytes).expect("the pack compiles");
    println!(
        "{name:<44} {:>9.2}s {:>9.2}s",
        wall.elapsed().as_secs_f64(),
        (cpu_time() - cpu).as_secs_f64()
    );
}

fn percentile(samples: &mut [Duration], q: f64) -> Duration {
    samples.sort();
    samples[((samples.len() - 1) as f64 * q).round() as usize]
}

fn calls(
    name: &str,
    baseline_above_bytes: Option<u64>,
    path: &Path,
    template: Option<&str>,
    n: usize,
) {
    let rt = Runtime::new(RuntimeConfig {
        baseline_above_bytes,
        ..RuntimeConfig::default()
    })
    .expect("runtime");
    let (wall, cpu) = (Instant::now(), cpu_time());
    let pack = rt.load_file(path).expect("the pack loads");
    let load = (wall.elapsed(), cpu_time() - cpu);
    let template = template.map_or_else(|| pack.templates()[0].id.clone(), str::to_owned);
    let info = pack
        .template(&template)
        .expect("the template exists")
        .clone();
    let args = pack_runtime::params::self_test_args_with(&info, || "a red fox".into());
    let mut host = StaticHost::default();
    host.models.insert(
        "checkpoints".into(),
        vec!["v1-5-pruned-emaonly.safetensors".into()],
    );
    let host: Arc<dyn HostView> = Arc::new(host);
    let mut samples = Vec::with_capacity(n);
    let mut peak = 0;
    for _ in 0..n {
        let params = pack_runtime::params::resolve(&info, &args, &Limits::default().metadata)
            .expect("self-test arguments are valid");
        let (built, stats) = pack.build_measured(&template, params, host.clone());
        built.expect("the template builds");
        let stats = stats.expect("the pack ran");
        samples.push(stats.elapsed);
        peak = peak.max(stats.peak_memory_bytes);
    }
    println!(
        "{name:<44} load {:>6.2}s wall {:>6.2}s cpu; build median {:>7.3}ms p90 {:>7.3}ms; peak memory {:.1} MiB",
        load.0.as_secs_f64(),
        load.1.as_secs_f64(),
        percentile(&mut samples, 0.5).as_secs_f64() * 1e3,
        percentile(&mut samples, 0.9).as_secs_f64() * 1e3,
        peak as f64 / f64::from(1 << 20)
    );
}

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let path = std::env::var_os("COMFYUI_MCP_BENCH_PACK")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("templates/game-assets.wasm"));
    let template = std::env::var("COMFYUI_MCP_BENCH_TEMPLATE").ok();
    let n: usize = std::env::var("COMFYUI_MCP_BENCH_CALLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(30);
    let bytes = std::fs::read(&path).expect("the pack file is readable");
    println!(
        "pack {} ({:.1} MB), {} cores",
        path.display(),
        bytes.len() as f64 / 1e6,
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    let limits = Limits::default();
    println!(
        "{:<44} {:>10} {:>10}",
        "cold compile (Component::new)", "wall", "cpu"
    );
    let speed = sandbox_config(&limits, Compiler::Cranelift);
    compile_once("cranelift, opt speed, parallel (host)", &speed, &bytes);
    let mut serial = sandbox_config(&limits, Compiler::Cranelift);
    serial.parallel_compilation(false);
    compile_once("cranelift, opt speed, one thread", &serial, &bytes);
    let mut none = sandbox_config(&limits, Compiler::Cranelift);
    none.cranelift_opt_level(OptLevel::None);
    compile_once("cranelift, opt none, parallel", &none, &bytes);
    compile_once(
        "winch, parallel",
        &sandbox_config(&limits, Compiler::Winch),
        &bytes,
    );
    let mut winch_serial = sandbox_config(&limits, Compiler::Winch);
    winch_serial.parallel_compilation(false);
    compile_once("winch, one thread", &winch_serial, &bytes);

    println!("\nthrough the runtime (no cache), {n} build calls each:");
    calls("cranelift", None, &path, template.as_deref(), n);
    calls("winch", Some(0), &path, template.as_deref(), n);
}
