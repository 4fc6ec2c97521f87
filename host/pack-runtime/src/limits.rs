//! Per-call resource limits of the sandbox, as plain data with defaults in one place.

use std::time::Duration;

use crate::metadata::MetadataLimits;

/// Limits applied to every call into a pack (metadata calls at load time included).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Maximum linear memory a call may grow to, in bytes (default 64 MiB).
    pub memory_bytes: usize,
    /// Wall-clock budget of one call, enforced by epoch interruption (default 2 s).
    pub call_timeout: Duration,
    /// Maximum size of the graph JSON a pack may return, in bytes (default 4 MiB).
    pub max_graph_bytes: usize,
    /// Maximum bytes of a pack's stdout, stderr and log lines kept per call (default 64 KiB).
    pub max_log_bytes: usize,
    /// Caps on the pack file, its metadata and the text callers pass (see [`MetadataLimits`]).
    pub metadata: MetadataLimits,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            memory_bytes: 64 << 20,
            call_timeout: Duration::from_secs(2),
            max_graph_bytes: 4 << 20,
            max_log_bytes: 64 << 10,
            metadata: MetadataLimits::DEFAULT,
        }
    }
}
