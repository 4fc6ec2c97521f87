//! Workflow-file parsing (`comfyui_mcp::workflow_file::parse_api_graph`)
//! followed by `apply_overrides` and the graph check, as `load_workflow`
//! does. The input is the file's bytes, then a NUL byte, then the overrides
//! as JSON text (an object; anything else means no overrides).
//!
//! Invariants checked: no panic; every override is reported either applied
//! or unmatched, exactly once; applying overrides keeps the graph an object.

#![no_main]

use std::sync::{Arc, LazyLock};

use comfyui::nodes::NodeCatalog;
use comfyui_mcp::workflow_file::{apply_overrides, parse_api_graph};
use libfuzzer_sys::fuzz_target;
use serde_json::{Map, Value};

static CATALOG: LazyLock<Arc<NodeCatalog>> = LazyLock::new(NodeCatalog::bundled);

fuzz_target!(|data: &[u8]| {
    let (file, overrides) = match data.iter().position(|&b| b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    let overrides: Map<String, Value> = match serde_json::from_slice(overrides) {
        Ok(Value::Object(map)) => map,
        _ => Map::new(),
    };
    let Ok(mut graph) = parse_api_graph(
        "fuzz.json",
        file,
        comfyui::graph::GraphLimits::DEFAULT.max_nodes,
    ) else {
        return;
    };
    assert!(graph.is_object(), "parse_api_graph returned a non-object");
    let result = apply_overrides(&mut graph, &overrides);
    assert!(graph.is_object(), "overrides changed the graph's shape");
    assert_eq!(
        result.applied.len() + result.unmatched.len(),
        overrides.len(),
        "every override is applied or unmatched"
    );
    for key in overrides.keys() {
        assert!(
            result.applied.contains_key(key) != result.unmatched.contains(key),
            "override `{key}` reported twice or not at all"
        );
    }
    let _ = comfyui::graph::check(&graph, &CATALOG);
});
