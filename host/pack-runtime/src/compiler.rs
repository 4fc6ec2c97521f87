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
//! Cranelift; both engines' epochs are advanced by the one ticker.

use wasmtime::component::Linker;
use wasmtime::{Config, Engine, OptLevel, Strategy};

use crate::limits::Limits;
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

/// An engine and the linker of the host API and WASI for it.
pub(crate) struct Backend {
    pub engine: Engine,
    pub linker: Linker<StoreState>,
    pub compiler: Compiler,
}

impl Backend {
    pub(crate) fn new(limits: &Limits, compiler: Compiler) -> Result<Self, EngineError> {
        let engine = Engine::new(&sandbox_config(limits, compiler))
            .map_err(|e| EngineError(e.to_string()))?;
        let mut linker = Linker::<StoreState>::new(&engine);
        // Synchronous WASI: calls run on a blocking thread, never inside a
        // future, so no async support is needed in the store.
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker)
            .map_err(|e| EngineError(e.to_string()))?;
        // Every served ABI major's host imports, side by side.
        crate::bindings::add_to_linker(&mut linker).map_err(|e| EngineError(e.to_string()))?;
        Ok(Self {
            engine,
            linker,
            compiler,
        })
    }
}

/// The engine configuration every pack runs under, with `compiler` as code
/// generator. Public for the compile benchmark only; the host goes through [`crate::Runtime`].
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
    wasm
}
