//! The sandboxed runtime for workflow packs.
//!
//! A workflow pack is a WebAssembly component implementing the WIT world
//! `comfyui:workflow/workflow-pack` of a served major: 1.x (`wit/v1`) and
//! 2.x (`wit/v2`, which adds image inputs, examples and the optional
//! `postprocessor` export of world `postprocessing-pack`), side by side; one
//! bindings module per major (`bindings/`) converts into the plain types. This crate is a
//! narrow facade over wasmtime: application code never touches
//! `wasmtime::Config`, stores or bindings. It offers
//!
//! * [`Runtime`]: one engine, its epoch ticker and the on-disk compile cache
//!   (a folder only the server's user can write, checked at start-up; an
//!   unsafe folder is a [`CacheError`] and the runtime does not start);
//! * [`Pack`]: a loaded, validated pack (identity, templates, `InstancePre`);
//! * [`postprocess`]: the images passed to and returned by a pack's
//!   postprocessor, and their checks;
//! * [`params`]: the host-side parameter checks and JSON Schemas derived from
//!   the packs' parameter specs;
//! * [`HostView`]: the read-only ComfyUI snapshot a pack may query.
//!
//! Lifecycle and invariants:
//! * a pack is compiled once (or loaded from the compile cache) and
//!   pre-instantiated once; every call gets a fresh `Store`, so nothing leaks
//!   between calls or callers and a trap only ever poisons its own store;
//! * a call's instance comes from the Cranelift engine's instance pool
//!   ([`Limits::pool_slots`] calls at once; memories and tables are reset
//!   when a slot is returned), or from on-demand allocation when the pool is
//!   off, full, or too small for the pack, under the same limits and with
//!   the same compiled code (`compiler.rs`); calls run on reused call
//!   threads (`threads.rs`), or on the caller's own thread when it declared
//!   a large enough stack ([`declare_call_thread`]);
//! * every call runs under [`Limits`]: one memory budget for all memories
//!   and tables of the call, caps on instances, memories and tables, a
//!   wall-clock deadline enforced by epoch interruption, a wasm stack limit
//!   (on a thread with a matching native stack), caps on the graph's size,
//!   on log output (bytes and lines) and on pack error texts;
//! * a call is pure: clocks are fixed and randomness is seeded from the
//!   template id and parameters, so equal parameters give identical graphs;
//! * pack-provided text reaches logs and errors only through
//!   [`text::escape_control`].
//! * WASI p2 is linked so ordinary `wasm32-wasip2` builds instantiate, but
//!   the context grants nothing: no preopens, env, args or sockets. A pack's
//!   stdout and stderr are captured, capped, and forwarded to the log.
//!
//! Calls are synchronous and may block for up to the time limit: async callers
//! run them on a blocking thread (`tokio::task::spawn_blocking`).

#![deny(missing_docs)]

mod abi;
mod bindings;
mod cache;
mod compiler;
mod error;
mod imports;
mod limiter;
mod limits;
pub mod metadata;
mod pack;
pub mod params;
pub mod postprocess;
mod purity;
mod runtime;
mod sandbox;
mod spec;
pub mod text;
mod threads;

pub use abi::{ABI_PACKAGE, ABI_VERSION, SUPPORTED_ABI_VERSIONS};
pub use cache::{CacheError, DEFAULT_CACHE_MAX_MB};
pub use compiler::{Compiler, DEFAULT_BASELINE_ABOVE_MB, sandbox_config};
pub use error::{CallError, ImportFix, LoadError, NoPostprocess, UnlinkedImport};
pub use imports::MAX_REPORTED_IMPORTS;
pub use limits::{DEFAULT_POOL_SLOTS, Limits, NATIVE_STACK_HEADROOM, TABLE_ELEMENT_BYTES};
pub use metadata::{MetadataError, MetadataLimits, MetadataProblem};
pub use pack::{BuiltGraph, CallStats, Pack};
pub use params::{FieldError, ResolveError, ResolvedParams};
pub use postprocess::{ImageFault, PostprocessStep, Postprocessed, RgbaImage};
pub use purity::{FIXED_WALL_CLOCK_SECS, MONOTONIC_STEP_NS};
pub use runtime::{EngineError, Runtime, RuntimeConfig, StartError};
pub use sandbox::{HostView, StaticHost};
pub use spec::{Alias, ImageInput, PackInfo, ParamKind, ParamSpec, ParamValue, TemplateInfo};
pub use threads::declare_call_thread;
