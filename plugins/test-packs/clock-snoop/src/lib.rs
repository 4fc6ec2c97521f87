//! Hostile test pack `clock-snoop`: `build` of its one template, `snoop-time`, reads
//! everything that could make a graph depend on more than its parameters, and puts it
//! in the graph: the wall clock (std and raw WASI), the monotonic clock twice, 16
//! bytes each of `wasi:random/random` and `wasi:random/insecure`, the insecure seed,
//! and the iteration order of a std `HashSet` (randomly keyed).
//!
//! Graph: EmptyImage -> SaveImage whose `filename_prefix` is
//! `comfyui-mcp/clock-snoop/<prompt>/<readings>` (readings joined by `-`). With a real
//! clock or real randomness two builds with equal parameters differ; in a pure host
//! they are byte-identical, and a different prompt changes the random parts.

use std::collections::HashSet;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use test_pack_support::{BuildError, Param, solid_color_graph, text_value};
use wasip2::clocks::{monotonic_clock, wall_clock};
use wasip2::random::{insecure, insecure_seed, random};

test_pack_support::single_template_pack! {
    template: ("snoop-time", "Snoop Time", "Puts clock readings and random bytes in its graph."),
    build: build,
}

fn build(params: Vec<Param>) -> Result<String, BuildError> {
    let prompt = text_value(&params, "prompt");
    let std_wall = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let raw_wall = wall_clock::now();
    let started = Instant::now();
    let mono_a = monotonic_clock::now();
    let mono_b = monotonic_clock::now();
    let elapsed = started.elapsed().as_nanos();
    let secure = hex(&random::get_random_bytes(16));
    let weak = hex(&insecure::get_insecure_random_bytes(16));
    let (seed_lo, seed_hi) = insecure_seed::insecure_seed();
    let order: Vec<String> = (0..8)
        .map(|i| i.to_string())
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    let readings = [
        std_wall.to_string(),
        format!("{}.{:09}", raw_wall.seconds, raw_wall.nanoseconds),
        mono_a.to_string(),
        mono_b.to_string(),
        elapsed.to_string(),
        secure,
        weak,
        format!("{seed_hi:016x}{seed_lo:016x}"),
        order.join(""),
    ]
    .join("-");
    Ok(solid_color_graph(
        64,
        64,
        0,
        &format!("comfyui-mcp/clock-snoop/{prompt}/{readings}"),
    ))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
