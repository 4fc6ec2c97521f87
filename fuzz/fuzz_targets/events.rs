//! Websocket event parsing (`comfyui::events`): text frames, binary frames,
//! and typed messages (`parse_message`) with arbitrary kinds and data.
//!
//! Invariants checked: no panic for any frame; errors render.

#![no_main]

use comfyui::events::{parse_binary, parse_message, parse_text};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

const KINDS: &[&str] = &[
    "status",
    "execution_start",
    "execution_cached",
    "executing",
    "progress",
    "progress_state",
    "executed",
    "execution_success",
    "execution_error",
    "execution_interrupted",
    "feature_flags",
    "crystools.monitor",
];

fuzz_target!(|data: &[u8]| {
    if let Err(e) = parse_binary(data) {
        let _ = e.to_string();
    }
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Err(e) = parse_text(text) {
        let _ = e.to_string();
    }
    // The same bytes as the `data` of every known kind.
    if let Ok(value) = serde_json::from_str::<Value>(text) {
        for kind in KINDS {
            if let Err(e) = parse_message(kind, value.clone()) {
                let _ = e.to_string();
            }
        }
    }
});
