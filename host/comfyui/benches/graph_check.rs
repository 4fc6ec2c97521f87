//! Graph check figures at the default node cap (2000 nodes): a valid graph (1000
//! EmptyImage → SaveImage pairs), and the costliest report a graph can ask for (every node a
//! near-miss class name with a near-miss combo value, so every defect wants a "did you
//! mean"). Prints a table; asserts nothing about timings.
//!
//! `cargo bench -p comfyui-mcp-comfyui --bench graph_check` (optimised), or
//! `cargo test -p comfyui-mcp-comfyui --bench graph_check` (debug build of this crate).

use std::time::{Duration, Instant};

use comfyui::graph::{GraphLimits, check};
use comfyui::nodes::NodeCatalog;
use serde_json::{Map, Value, json};

fn stats(mut samples: Vec<Duration>) -> (Duration, Duration, Duration) {
    samples.sort();
    let pick = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
    (pick(0.5), pick(0.99), samples[0])
}

fn main() {
    let catalog = NodeCatalog::bundled();
    let nodes = GraphLimits::DEFAULT.max_nodes;
    let mut valid = Map::new();
    for pair in 0..nodes / 2 {
        let source = (2 * pair).to_string();
        valid.insert(
            source.clone(),
            json!({"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 0}}),
        );
        valid.insert(
            (2 * pair + 1).to_string(),
            json!({"class_type": "SaveImage", "inputs": {"images": [source, 0], "filename_prefix": "p"}}),
        );
    }
    let valid = Value::Object(valid);
    let names: Vec<String> = catalog.classes().map(|c| format!("{}x", c.name)).collect();
    let near_miss: Map<String, Value> = (0..nodes)
        .map(|i| {
            (
                i.to_string(),
                json!({"class_type": names[i % names.len()], "inputs": {"sampler_name": "eulerr"}}),
            )
        })
        .collect();
    let near_miss = Value::Object(near_miss);

    let runs = 30;
    let mut ok = Vec::new();
    let mut bad = Vec::new();
    for _ in 0..runs {
        let t = Instant::now();
        check(&valid, &catalog).expect("the valid graph passes");
        ok.push(t.elapsed());
        let t = Instant::now();
        let errors = check(&near_miss, &catalog).expect_err("every node is a defect");
        bad.push(t.elapsed());
        assert_eq!(errors.len() + errors.omitted(), nodes);
    }
    println!(
        "{:<52} {:>10} {:>10} {:>10}",
        "figure", "median", "p99", "min"
    );
    for (name, samples) in [
        (format!("valid graph, {nodes} nodes, {runs} runs"), ok),
        (
            format!("near-miss classes, {nodes} nodes, {runs} runs"),
            bad,
        ),
    ] {
        let (median, p99, min) = stats(samples);
        println!("{name:<52} {median:>10.2?} {p99:>10.2?} {min:>10.2?}");
    }
}
