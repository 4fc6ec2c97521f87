//! Which compiler turns a pack into machine code, and the engines behind them.
//!
//! Two wasmtime engines share one sandbox configuration (epoch deadlines,
//! the wasm stack limit, the component model) and differ only in their code
//! generator:
//! * **Cranelift** (`OptLevel::Speed`), the optimising compiler, for packs up
//!   to [`DEFAULT_BASELINE_ABOVE_MB`] (a Rust pack is 0.1–1 MB and compiles in
//!   0.1–0.3 s);
//! * **Winch**, wasmtime's baseline compiler, for larger packs: componentized
//!   interpreters (CPython 18 MB, SpiderMonkey 12 MB, QuickJS 1.6 MB), whose
//!   Cranelift compile costs 2–17 CPU-seconds while a call takes a few
//!   milliseconds either way. The figures behind this choice are in the
//!   README ("Big packs") and come from `cargo bench -p
//!   comfyui-mcp-pack-runtime --bench compile`.
//!
//! Invariants: every engine has the same limits, so a pack behaves the same
//! under either (deadlines and stack exhaustion included: the tests run the
//! hostile packs under both); the compile cache keys artifacts by the
//! engine's compatibility hash, so artifacts of the two never mix; a pack
//! Winch cannot compile (a feature it does not support) falls back to
//! Cranelift; every engine's epoch is advanced by the one ticker.
//!
//! ## The instance pool (Cranelift)
//!
//! Every call instantiates the pack in a fresh store. With on-demand
//! allocation that means an `mmap` of the memory reservation, `mprotect`s and
//! a copy-on-write image map per memory and a `malloc` per table and instance,
//! and as many `munmap`s when the store drops. The Cranelift engine instead
//! uses wasmtime's pooling allocator ([`Limits::pool_slots`] slots, default
//! [`crate::DEFAULT_POOL_SLOTS`]): memories, tables and instances are
//! reserved once at start-up and a call takes and returns slots (README,
//! Benchmarks, "per call"). Winch serves big interpreter packs whose calls
//! cost milliseconds, so its engine keeps on-demand allocation.
//!
//! Sizes, all derived from [`Limits`] so the pool never admits what the
//! limiter would refuse nor refuses, mid-call, what it would admit:
//! * one slot = one component instance, up to `max_instances` core
//!   instances, 2 linear memories and 4 tables (a Rust pack uses 1 and 2;
//!   counts past the slot's share fall back, see below);
//! * a memory slot holds `memory_bytes` (the limiter's budget, so a growth
//!   the limiter grants always fits) plus wasmtime's 32 MiB guard; a table
//!   slot holds `memory_bytes / TABLE_ELEMENT_BYTES` elements (a growth past
//!   that is over the budget by itself, and the limiter refuses it first);
//! * the address space reserved (never committed) is therefore 2 x
//!   (64 + 32) MiB + 4 x 64 MiB = 448 MiB per slot at the defaults, 7 GiB for
//!   16 slots. On-demand allocation reserves 4 GiB + 32 MiB per live memory,
//!   so 16 concurrent calls reserved 64 GiB before.
//!
//! **Reset on return**: up to [`Limits::pool_keep_resident_bytes`] of each
//! memory and table stays resident and the pages a call dirtied are reset in
//! place (Linux's `PAGEMAP_SCAN` finds them), instead of an `madvise` per
//! slot. An `madvise` of a mapping in a multi-threaded process interrupts
//! every core it ran on to flush its TLB, and the next call then faults
//! each page back in: on the shipped pack that was a quarter of the call.
//!
//! The memory reservation is `memory_bytes` instead of wasmtime's 4 GiB (the
//! pool's memory slots are that size), so Cranelift emits explicit bounds
//! checks; the benchmark's per-call figure includes that cost.
//!
//! **Fallback when the pool is full** (more calls at once than slots, or a
//! pack needing more memories, tables, instances or a bigger instance than a
//! slot holds): the call is instantiated again, in a fresh store with the
//! rest of its deadline, by an on-demand twin engine with the identical
//! `Config` but the allocation strategy, so it runs the same compiled code
//! (`Component::serialize` then `deserialize`, which checks the tunables,
//! done once per pack on its first fallback). Chosen over waiting for a slot
//! or a typed "pool full" error because the admission (host) already bounds
//! calls at once, so an overflow is rare and should cost nothing but speed;
//! and a pack too big for a slot must still behave exactly as without the
//! pool. A failed pooled instantiation is retried only when it was neither
//! a trap nor a limiter refusal (so never a timeout or a memory cap: those
//! are final), and the retry's errors are what the caller sees.

use std::sync::Arc;

use wasmtime::component::Linker;
use wasmtime::{
    Config, Enabled, Engine, InstanceAllocationStrategy, OptLevel, PoolingAllocationConfig,
    Strategy,
};

use crate::limits::{Limits, TABLE_ELEMENT_BYTES};
use crate::runtime::EngineError;
use crate::sandbox::StoreState;

/// Default size above which packs are compiled with Winch, in MiB.
///
/// Chosen from the compile benchmark (README, "Big packs"): on an 18.5 MB
/// componentized-Python pack Winch took 2.65 CPU-s to compile against
/// Cranelift's 17.4 (6.5x less; the wait of every first load and hot
/// reload), for 6.9 ms per call against 2.8 (a 2 s call limit, a 2-4 ms MCP
/// round trip). Packs above 1 MiB are such interpreters (QuickJS 1.6 MB and
/// up); below it are Rust packs, which Cranelift compiles in 0.1-0.3 s, so
/// its faster code is free.
pub const DEFAULT_BASELINE_ABOVE_MB: u64 = 1;

/// A code generator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compiler {
    /// Cranelift with `OptLevel::Speed`.
    Cranelift,
    /// Winch, the baseline compiler.
    Winch,
}

impl Compiler {
    /// Its name in logs and reports.
    pub fn name(self) -> &'static str {
        match self {
            Compiler::Cranelift => "cranelift",
            Compiler::Winch => "winch",
        }
    }
}

/// Memories one pool slot holds (see the module docs).
const POOL_MEMORIES_PER_SLOT: u32 = 2;
/// Tables one pool slot holds (see the module docs).
const POOL_TABLES_PER_SLOT: u32 = 4;

/// An engine and the linker of the host API and WASI for it.
pub(crate) struct Sandbox {
    pub engine: Engine,
    pub linker: Linker<StoreState>,
}

impl Sandbox {
    fn new(config: &Config) -> Result<Self, EngineError> {
        let engine = Engine::new(config).map_err(|e| EngineError(format!("{e:#}")))?;
        let mut linker = Linker::<StoreState>::new(&engine);
        // Synchronous WASI: calls run on a blocking thread, never inside a
        // future, so no async support is needed in the store.
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker)
            .map_err(|e| EngineError(e.to_string()))?;
        // Every served ABI major's host imports, side by side.
        crate::bindings::add_to_linker(&mut linker).map_err(|e| EngineError(e.to_string()))?;
        Ok(Self { engine, linker })
    }
}

/// The engine packs of one compiler are compiled and run with, and the
/// on-demand twin its calls fall back to when it is a pooling engine.
pub(crate) struct Backend {
    pub engine: Engine,
    pub linker: Linker<StoreState>,
    pub compiler: Compiler,
    /// The on-demand twin of a pooling engine; `None` without a pool.
    pub fallback: Option<Arc<Sandbox>>,
}

impl Backend {
    pub(crate) fn new(limits: &Limits, compiler: Compiler) -> Result<Self, EngineError> {
        let config = sandbox_config(limits, compiler);
        if let Some(pooling) = pooling_config(limits, compiler) {
            let mut pooled = config.clone();
            pooled.allocation_strategy(InstanceAllocationStrategy::Pooling(pooling));
            match Sandbox::new(&pooled) {
                Ok(primary) => {
                    return Ok(Self {
                        engine: primary.engine,
                        linker: primary.linker,
                        compiler,
                        fallback: Some(Arc::new(Sandbox::new(&config)?)),
                    });
                }
                // The reservation can fail under an address-space ulimit:
                // serve every call on demand rather than not at all.
                Err(e) => tracing::warn!(
                    slots = limits.pool_slots,
                    "cannot reserve the instance pool, allocating every pack call on demand: {e}"
                ),
            }
        }
        let sandbox = Sandbox::new(&config)?;
        Ok(Self {
            engine: sandbox.engine,
            linker: sandbox.linker,
            compiler,
            fallback: None,
        })
    }

    /// Every engine of this backend, for the epoch ticker.
    pub(crate) fn engines(&self) -> impl Iterator<Item = Engine> + '_ {
        std::iter::once(self.engine.clone()).chain(self.fallback.iter().map(|f| f.engine.clone()))
    }
}

/// Whether `compiler`'s engine pools instances under `limits`.
fn pooled(limits: &Limits, compiler: Compiler) -> bool {
    compiler == Compiler::Cranelift && limits.pool_slots > 0
}

/// The pooling allocator of `compiler`'s engine, `None` when it allocates on
/// demand. Sizes: see the module docs.
fn pooling_config(limits: &Limits, compiler: Compiler) -> Option<PoolingAllocationConfig> {
    if !pooled(limits, compiler) {
        return None;
    }
    let slots = u32::try_from(limits.pool_slots).unwrap_or(u32::MAX);
    let count = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
    let mut pool = PoolingAllocationConfig::new();
    pool.total_component_instances(slots)
        .total_core_instances(slots.saturating_mul(count(limits.max_instances)))
        .total_memories(slots.saturating_mul(POOL_MEMORIES_PER_SLOT))
        .total_tables(slots.saturating_mul(POOL_TABLES_PER_SLOT))
        .max_core_instances_per_component(count(limits.max_instances))
        .max_memories_per_component(count(limits.max_memories))
        .max_tables_per_component(count(limits.max_tables))
        .max_memories_per_module(count(limits.max_memories))
        .max_tables_per_module(count(limits.max_tables))
        .max_memory_size(limits.memory_bytes)
        .table_elements(limits.memory_bytes / TABLE_ELEMENT_BYTES)
        .linear_memory_keep_resident(limits.pool_keep_resident_bytes)
        .table_keep_resident(limits.pool_keep_resident_bytes)
        .pagemap_scan(Enabled::Auto);
    Some(pool)
}

/// The engine configuration every pack runs under, with `compiler` as code
/// generator and on-demand allocation (the pooling engine adds its
/// allocation strategy to this, nothing else). Public for the compile benchmark only; the host goes through [`crate::Runtime`].
#[doc(hidden)]
pub fn sandbox_config(limits: &Limits, compiler: Compiler) -> Config {
    let mut wasm = Config::new();
    // Deadlines: the guest checks the epoch at loop headers and function
    // entries, so an endless loop is stopped within one tick of its limit.
    wasm.epoch_interruption(true);
    wasm.wasm_component_model(true);
    match compiler {
        Compiler::Cranelift => {
            wasm.strategy(Strategy::Cranelift);
            wasm.cranelift_opt_level(OptLevel::Speed);
        }
        Compiler::Winch => {
            wasm.strategy(Strategy::Winch);
        }
    }
    // Interpreters compiled to wasm (QuickJS, SpiderMonkey, CPython) recurse
    // deeply; wasmtime's 512 KiB default is too small for them. Every call
    // runs on a thread with `Limits::native_stack_bytes` of native stack
    // (`Pack::call`), so this limit is always hit before the native stack.
    wasm.max_wasm_stack(limits.wasm_stack_bytes);
    // Never used (calls are synchronous), but wasmtime refuses a wasm stack
    // larger than it; give it the same headroom as the call threads.
    wasm.async_stack_size(limits.native_stack_bytes());
    if pooled(limits, compiler) {
        // The pool's memory slots are `memory_bytes` (module docs); the
        // on-demand twin must compile identically, so it shares this.
        wasm.memory_reservation(limits.memory_bytes as u64);
    }
    wasm
}
