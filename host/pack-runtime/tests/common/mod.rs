//! Helpers shared by the runtime's integration tests: the repository's packs, a host view
//! and call arguments.
//!
//! Each test binary uses a part of it, hence the `dead_code` allowance.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use pack_runtime::{HostView, StaticHost};
use serde_json::{Map, Value};

/// The repository root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A committed test pack, `tests/packs/<name>.wasm`.
pub fn test_pack(name: &str) -> PathBuf {
    repo().join("tests/packs").join(format!("{name}.wasm"))
}

/// A host offering one checkpoint, `tiny-random-sd15.safetensors`.
pub fn host() -> Arc<dyn HostView> {
    let mut host = StaticHost::default();
    host.models.insert(
        "checkpoints".into(),
        vec!["tiny-random-sd15.safetensors".into()],
    );
    Arc::new(host)
}

/// The call arguments of a JSON object.
pub fn args(v: Value) -> Map<String, Value> {
    v.as_object().cloned().unwrap()
}
