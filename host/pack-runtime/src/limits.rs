//! Per-call resource limits of the sandbox, as plain data with defaults in one place.
//!
//! Every budget a pack call runs under is a field of [`Limits`], documented
//! with its default here and nowhere else. Each is enforced in one place:
//! memory, tables and instance counts by the store's resource limiter
//! (`limiter.rs`), time by epoch interruption (`pack.rs`), the stack by the
//! engine (`runtime.rs`), text by the output capture and the error cap
//! (`sandbox.rs`, `text.rs`), post-processed images by `postprocess.rs`.

use std::time::Duration;

/// What one table element costs against [`Limits::memory_bytes`]: wasmtime
/// stores a pointer per element (funcref or externref), so tables and linear
/// memories share one byte budget.
pub const TABLE_ELEMENT_BYTES: usize = std::mem::size_of::<usize>();

/// Native stack headroom above [`Limits::wasm_stack_bytes`] that a thread
/// running pack calls keeps for host frames (wasmtime's entry trampolines,
/// WASI and our host functions). See [`Limits::native_stack_bytes`].
pub const NATIVE_STACK_HEADROOM: usize = 2 << 20;

/// Default [`Limits::pool_slots`]: calls the pooling allocator serves at
/// once before calls fall back to on-demand allocation (see `compiler.rs`).
pub const DEFAULT_POOL_SLOTS: usize = 16;
use crate::metadata::MetadataLimits;

/// Limits applied to every call into a pack (metadata calls at load time included).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Bytes one call may hold in all its linear memories and tables together
    /// (tables at [`TABLE_ELEMENT_BYTES`] per element), initial sizes
    /// included (default 64 MiB).
    pub memory_bytes: usize,
    /// Core module instances one call may create (default 32: a Rust pack
    /// needs about 4, a componentized Python or JavaScript runtime 10 to 20).
    pub max_instances: usize,
    /// Linear memories one call may create (default 4).
    pub max_memories: usize,
    /// Tables one call may create (default 32).
    pub max_tables: usize,
    /// Wall-clock budget of one call, enforced by epoch interruption (default 2 s).
    pub call_timeout: Duration,
    /// Maximum WebAssembly call stack of a call, in bytes (default 4 MiB,
    /// enough for interpreters such as QuickJS or SpiderMonkey). An engine
    /// setting: it applies to every pack of a runtime.
    pub wasm_stack_bytes: usize,
    /// Calls at once whose instances come from the pooling allocator
    /// (default [`DEFAULT_POOL_SLOTS`]; 0 turns the pool off). An engine
    /// setting of the Cranelift engine: a call past the slots (or needing
    /// more than a slot holds) runs on on-demand allocation under the same
    /// limits. Each slot reserves address space, not memory: 2 linear
    /// memories of `memory_bytes` + 32 MiB guard and 4 tables of
    /// `memory_bytes` each (448 MiB per slot at the defaults, 7 GiB for 16).
    /// Also the most finished call threads kept for reuse (`threads.rs`).
    pub pool_slots: usize,
    /// Bytes of each pooled linear memory and table kept resident when its
    /// slot is returned (default 2 MiB; 0 resets everything with `madvise`).
    /// Within it, the pages a call dirtied are reset in place (found with
    /// Linux's `PAGEMAP_SCAN` where the kernel has it, 6.7 and later; else
    /// the low bytes are reset with `memset`), so the next call takes no
    /// page faults and the process no TLB-flush interrupts; beyond it,
    /// pages are returned to the kernel. Idle slots therefore hold at most
    /// `pool_slots` x 6 x this much memory (2 memories and 4 tables a slot;
    /// a Rust pack's call touches about 1.2 MiB of one memory).
    pub pool_keep_resident_bytes: usize,
    /// Maximum size of the graph JSON a pack may return, in bytes (default 4 MiB).
    pub max_graph_bytes: usize,
    /// Maximum bytes of a pack's stdout, stderr and log lines kept per call,
    /// after escaping (default 64 KiB).
    pub max_log_bytes: usize,
    /// Maximum lines of a pack's stdout, stderr and log kept per call, empty
    /// lines included (default 256).
    pub max_log_lines: usize,
    /// Maximum bytes of one pack-provided error text (a `failed` message, one
    /// field error, an unknown template id), after escaping (default 4 KiB).
    pub max_error_bytes: usize,
    /// Maximum field errors kept from a pack's `invalid-params` (default 32).
    pub max_field_errors: usize,
    /// Maximum bytes of one `wasi:random` request (default 1 MiB; larger
    /// requests trap instead of making the host allocate them).
    pub max_random_bytes: u64,
    /// Most pixels (`width * height`) of an image passed to or returned by
    /// a pack's post-processor (default 16 777 216, 4096 x 4096). An input
    /// over it is refused before the pack runs; an output over it fails the
    /// call. Checked in `postprocess.rs`.
    pub max_postprocess_pixels: u64,
    /// Most steps kept from one post-processing call (default 32); the rest
    /// are counted in one extra step.
    pub max_postprocess_steps: usize,
    /// Caps on the pack file, its metadata and the text callers pass (see [`MetadataLimits`]).
    pub metadata: MetadataLimits,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            memory_bytes: 64 << 20,
            max_instances: 32,
            max_memories: 4,
            max_tables: 32,
            call_timeout: Duration::from_secs(2),
            wasm_stack_bytes: 4 << 20,
            pool_slots: DEFAULT_POOL_SLOTS,
            pool_keep_resident_bytes: 2 << 20,
            max_graph_bytes: 4 << 20,
            max_log_bytes: 64 << 10,
            max_log_lines: 256,
            max_error_bytes: 4 << 10,
            max_field_errors: 32,
            max_random_bytes: 1 << 20,
            max_postprocess_pixels: 1 << 24,
            max_postprocess_steps: 32,
            metadata: MetadataLimits::DEFAULT,
        }
    }
}

impl Limits {
    /// Native stack of the thread that runs one pack call: the wasm stack
    /// plus [`NATIVE_STACK_HEADROOM`] (default 6 MiB). Every call runs on a
    /// thread of this size, whatever thread called it.
    pub fn native_stack_bytes(&self) -> usize {
        self.wasm_stack_bytes.saturating_add(NATIVE_STACK_HEADROOM)
    }
}
