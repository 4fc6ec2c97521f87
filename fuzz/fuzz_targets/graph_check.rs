//! The graph check (`comfyui::graph::check`) on arbitrary JSON against the
//! bundled stock node catalog.
//!
//! Invariants checked: no panic (nor stack overflow) for any document; a
//! failed check reports at least one error and its JSON report builds.

#![no_main]

use std::sync::{Arc, LazyLock};

use comfyui::graph::check;
use comfyui::nodes::NodeCatalog;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

static CATALOG: LazyLock<Arc<NodeCatalog>> = LazyLock::new(NodeCatalog::bundled);

fuzz_target!(|data: &[u8]| {
    let Ok(graph) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    match check(&graph, &CATALOG) {
        Ok(_summary) => {}
        Err(errors) => {
            assert!(!errors.is_empty(), "a failed check names no error");
            let _ = errors.to_json();
            let _ = errors.to_string();
        }
    }
});
