//! Simulator settings: plain data with defaults in one place.

use serde_json::Value;
use std::time::Duration;

/// Default time a simulated node (and each sampler step) takes.
pub const DEFAULT_STEP_DELAY: Duration = Duration::from_millis(20);

/// Default in-memory budget for stored files (outputs, previews, uploads).
pub const DEFAULT_MAX_STORED_BYTES: usize = 256 * 1024 * 1024;

/// Largest request body accepted (ComfyUI's default `--max-upload-size` of 100 MiB).
pub const MAX_UPLOAD_BYTES: usize = 100 * 1024 * 1024;

/// How the simulator behaves. Build it with struct update syntax:
/// `SimConfig { step_delay: Duration::ZERO, ..SimConfig::default() }`.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Time each node takes, and each sampler step on top of that (default 20 ms). Can be
    /// changed while running with `SimHandle::set_step_delay`.
    pub step_delay: Duration,
    /// A node catalog (`GET /object_info` document) replacing the bundled one.
    pub object_info: Option<Value>,
    /// When set, every request must carry `Authorization: Bearer <key>` or gets 401
    /// (emulates an authenticating reverse proxy; ComfyUI itself has no auth).
    pub require_api_key: Option<String>,
    /// Serve everything under this path (e.g. `/comfy`), like ComfyUI behind a reverse proxy.
    /// Empty (the default) serves at the root.
    pub path_prefix: String,
    /// Send a binary preview frame per sampler step, as ComfyUI does when started with a
    /// preview method (PNG previews: image type 2). Off by default, like ComfyUI.
    pub preview_images: bool,
    /// Upper bound on the bytes of files kept in memory; the oldest are evicted first.
    pub max_stored_bytes: usize,
    /// The machine simulated: its model files and the node classes it lacks (see
    /// [`crate::Machine`]); the default is the starting document unchanged.
    pub machine: crate::Machine,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            step_delay: DEFAULT_STEP_DELAY,
            object_info: None,
            require_api_key: None,
            path_prefix: String::new(),
            preview_images: false,
            max_stored_bytes: DEFAULT_MAX_STORED_BYTES,
            machine: crate::Machine::default(),
        }
    }
}

/// Normalises a path prefix to `""` or `/segment[/segment...]` (no trailing slash).
pub(crate) fn normalize_prefix(prefix: &str) -> String {
    let trimmed = prefix.trim().trim_matches('/');
    if trimmed.is_empty() {
        String::new()
    } else {
        format!("/{trimmed}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_are_normalised() {
        assert_eq!(normalize_prefix(""), "");
        assert_eq!(normalize_prefix("/"), "");
        assert_eq!(normalize_prefix("comfy/"), "/comfy");
        assert_eq!(normalize_prefix("/a/b"), "/a/b");
    }
}
