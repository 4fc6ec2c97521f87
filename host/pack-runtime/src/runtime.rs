//! The engine: the wasmtime engines configured for the sandbox (per
//! compiler; a pooling one with its on-demand twin, `compiler.rs`), the
//! epoch ticker that enforces call deadlines, the linkers, the call threads
//! and the compile cache.
//!
//! A pooling backend compiles (and caches) with its on-demand twin, whose
//! artifacts load whatever a pool slot holds; the pool runs a copy of that
//! code (`Component::serialize`, then `deserialize` into the pooling engine,
//! which checks that both engines compile alike), so a loaded Cranelift pack
//! holds its machine code twice (a Rust pack's is about 1 MB). A pack the
//! pool cannot hold at all (a memory or table larger than a slot) runs every
//! call on demand. The twins share one `Config` but the allocation
//! strategy, including `memory_reservation` = `Limits::memory_bytes`, so a
//! change of the memory cap changes the compatibility hash and with it the
//! cache key.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Weak};
use std::time::Duration;

use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

use crate::bindings::PackPre;
use crate::cache::{CacheError, CompileCache, DEFAULT_CACHE_MAX_MB};
use crate::compiler::{Backend, Compiler, DEFAULT_BASELINE_ABOVE_MB};
use crate::error::LoadError;
use crate::limits::Limits;
use crate::pack::Pack;
use crate::threads::CallThreads;

/// How often the epoch advances. A call's deadline is a number of ticks, so
/// this is the resolution of the time limit. 10 ms keeps the overshoot small
/// without measurable cost (one atomic increment per tick).
pub(crate) const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Settings of a [`Runtime`].
#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    /// Limits applied to every call.
    pub limits: Limits,
    /// Where compiled packs are cached; `None` disables the disk cache. The
    /// folder must be owned by this user and writable by no one else, or
    /// [`Runtime::new`] fails (see [`CacheError`]).
    pub cache_dir: Option<PathBuf>,
    /// Size cap of the compile cache in bytes; least recently used artifacts
    /// are deleted past it. Default [`DEFAULT_CACHE_MAX_MB`] MiB.
    pub cache_max_bytes: u64,
    /// Packs larger than this many bytes are compiled with Winch, the
    /// baseline compiler, instead of Cranelift; `None` compiles every pack
    /// with Cranelift. Default [`DEFAULT_BASELINE_ABOVE_MB`] MiB.
    pub baseline_above_bytes: Option<u64>,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        Self {
            limits: Limits::default(),
            cache_dir: None,
            cache_max_bytes: DEFAULT_CACHE_MAX_MB << 20,
            baseline_above_bytes: Some(DEFAULT_BASELINE_ABOVE_MB << 20),
        }
    }
}

/// Could not start the WebAssembly engine.
#[derive(Debug, thiserror::Error)]
#[error("cannot start the WebAssembly engine: {0}")]
pub struct EngineError(pub(crate) String);

/// Why a [`Runtime`] could not be created.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The WebAssembly engine could not start.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// The compile cache folder is unsafe or unusable.
    #[error(transparent)]
    Cache(#[from] CacheError),
}

/// Loads packs and runs them in sandboxes. Cheap to share behind an `Arc`.
pub struct Runtime {
    /// Compiles packs up to `baseline_above_bytes`, and any Winch cannot compile.
    cranelift: Backend,
    /// Compiles packs above `baseline_above_bytes`; `None` when that is off.
    winch: Option<Backend>,
    config: RuntimeConfig,
    cache: Option<CompileCache>,
    threads: Arc<CallThreads>,
    ticker: Arc<EpochTicker>,
}

impl Runtime {
    /// Creates the engine, links the host API and WASI, and starts the epoch ticker.
    ///
    /// Fails if the compile cache folder is not safe to load native code from.
    pub fn new(config: RuntimeConfig) -> Result<Self, StartError> {
        let cranelift = Backend::new(&config.limits, Compiler::Cranelift)?;
        let winch = match config.baseline_above_bytes {
            Some(_) => Some(Backend::new(&config.limits, Compiler::Winch)?),
            None => None,
        };
        let cache = match &config.cache_dir {
            Some(dir) => Some(CompileCache::open(dir, config.cache_max_bytes)?),
            None => None,
        };
        let engines = std::iter::once(&cranelift)
            .chain(winch.as_ref())
            .flat_map(Backend::engines)
            .collect();
        let ticker = EpochTicker::start(engines);
        let threads = Arc::new(CallThreads::new(&config.limits));
        Ok(Self {
            cranelift,
            winch,
            config,
            cache,
            threads,
            ticker,
        })
    }

    /// The compiler a pack of `size` bytes is compiled with (see `compiler.rs`).
    pub fn compiler_for(&self, size: usize) -> Compiler {
        self.backend_for(size).compiler
    }

    fn backend_for(&self, size: usize) -> &Backend {
        match (&self.winch, self.config.baseline_above_bytes) {
            (Some(winch), Some(above)) if size as u64 > above => winch,
            _ => &self.cranelift,
        }
    }

    /// The limits every call runs under.
    pub fn limits(&self) -> &Limits {
        &self.config.limits
    }

    /// Reads and loads a pack file.
    ///
    /// The file's size is checked against `max_pack_file_bytes` from its
    /// metadata before anything is read, and the read itself stops one byte
    /// past the cap, so a file that grows meanwhile is refused too.
    pub fn load_file(&self, path: &Path) -> Result<Pack, LoadError> {
        use std::io::Read;
        let io = |source| LoadError::Io {
            path: path.to_owned(),
            source,
        };
        let limit = self.config.limits.metadata.max_pack_file_bytes;
        let too_large = |size| LoadError::TooLarge {
            path: path.to_owned(),
            size,
            limit,
        };
        let file = std::fs::File::open(path).map_err(io)?;
        let size = file.metadata().map_err(io)?.len();
        if size > limit {
            return Err(too_large(size));
        }
        let mut bytes = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
        file.take(limit.saturating_add(1))
            .read_to_end(&mut bytes)
            .map_err(io)?;
        if bytes.len() as u64 > limit {
            return Err(too_large(bytes.len() as u64));
        }
        self.load_bytes(path, &bytes)
    }

    /// Loads a pack from its bytes; `path` names it in errors and listings.
    ///
    /// Checks the ABI version (1.x and 2.x are served side by side) and the imports (both by parsing, before any
    /// compiling), compiles (or loads the cached compilation),
    /// links, pre-instantiates, then asks the pack for its identity and
    /// templates and validates them.
    pub fn load_bytes(&self, path: &Path, bytes: &[u8]) -> Result<Pack, LoadError> {
        let abi = crate::abi::check(path, bytes)?;
        crate::imports::check(path, bytes)?;
        let sha256 = hex::encode(Sha256::digest(bytes));
        let (backend, component) = self.compile(path, bytes, &sha256)?;
        let compile_err = |e: wasmtime::Error| LoadError::Compile {
            path: path.to_owned(),
            reason: format!("{e:#}"),
        };
        // A pooling backend compiles with its on-demand twin (below); the
        // pool runs a copy of that code, and the twin what the pool cannot serve.
        let (engine, linker, component, fallback) = match &backend.fallback {
            Some(twin) => match pooled_copy(&backend.engine, &component) {
                Ok(pooled) => (
                    &backend.engine,
                    &backend.linker,
                    pooled,
                    Some(crate::pack::Fallback::new(
                        twin.clone(),
                        component,
                        abi.major,
                        abi.postprocessor,
                    )),
                ),
                Err(e) => {
                    tracing::debug!(path = %path.display(), "the pack does not fit an instance pool slot, every call is allocated on demand: {e:#}");
                    (&twin.engine, &twin.linker, component, None)
                }
            },
            None => (&backend.engine, &backend.linker, component, None),
        };
        let instance_pre = linker.instantiate_pre(&component).map_err(compile_err)?;
        let pre = PackPre::new(abi.major, instance_pre, abi.postprocessor).map_err(|e| {
            LoadError::ExportMismatch {
                path: path.to_owned(),
                supported: abi.version.clone(),
                reason: crate::text::cap(&format!("{e:#}"), self.config.limits.max_error_bytes),
            }
        })?;
        Pack::describe(
            path.to_owned(),
            sha256,
            crate::pack::Linked {
                pre,
                fallback,
                engine: engine.clone(),
            },
            abi.version,
            self.config.limits.clone(),
            self.threads.clone(),
            self.ticker.clone(),
        )
    }

    /// The compiled component, from the cache or compiled now by the
    /// backend for its size (Cranelift when Winch refuses it), and that backend.
    fn compile(
        &self,
        path: &Path,
        bytes: &[u8],
        sha256: &str,
    ) -> Result<(&Backend, Component), LoadError> {
        let chosen = self.backend_for(bytes.len());
        match self.compile_with(chosen, path, bytes, sha256) {
            Err(err) if chosen.compiler != Compiler::Cranelift => {
                tracing::debug!(path = %path.display(), "{} could not compile the pack, using cranelift: {err}", chosen.compiler.name());
                Ok((
                    &self.cranelift,
                    self.compile_with(&self.cranelift, path, bytes, sha256)?,
                ))
            }
            result => Ok((chosen, result?)),
        }
    }

    fn compile_with(
        &self,
        backend: &Backend,
        path: &Path,
        bytes: &[u8],
        sha256: &str,
    ) -> Result<Component, LoadError> {
        // The on-demand engine of a pooling backend: its artifacts always
        // load, whatever a pool slot holds.
        let engine = backend
            .fallback
            .as_ref()
            .map_or(&backend.engine, |twin| &twin.engine);
        if let Some(component) = self
            .cache
            .as_ref()
            .and_then(|c| c.load(engine, sha256, path))
        {
            tracing::debug!(path = %path.display(), "pack loaded from compile cache");
            return Ok(component);
        }
        let started = std::time::Instant::now();
        let component = Component::new(engine, bytes).map_err(|e| LoadError::Compile {
            path: path.to_owned(),
            reason: format!("{e:#}"),
        })?;
        tracing::debug!(path = %path.display(), compiler = backend.compiler.name(), elapsed = ?started.elapsed(), "pack compiled");
        if let Some(cache) = &self.cache {
            cache.store(engine, sha256, &component, path);
        }
        Ok(component)
    }
}

/// `component` (compiled by the on-demand twin of `pooled`) loaded into the
/// pooling engine `pooled`; fails when the pack needs more than a pool slot
/// holds (a memory or table larger, more of them, a bigger instance).
fn pooled_copy(pooled: &Engine, component: &Component) -> wasmtime::Result<Component> {
    let bytes = component.serialize()?;
    // SAFETY: the bytes were serialized just now by this wasmtime from a
    // component it compiled, with the same `Config` but the allocation
    // strategy; `deserialize` checks that the engine settings match.
    unsafe { Component::deserialize(pooled, &bytes) }
}

/// Advances the engine's epoch every [`EPOCH_TICK`] for as long as a runtime
/// or any pack loaded by it is alive (each holds an `Arc` of this).
pub(crate) struct EpochTicker(());

impl EpochTicker {
    fn start(engines: Vec<Engine>) -> Arc<Self> {
        let ticker = Arc::new(EpochTicker(()));
        let alive: Weak<EpochTicker> = Arc::downgrade(&ticker);
        std::thread::Builder::new()
            .name("wasm-epoch".into())
            .spawn(move || {
                while alive.strong_count() > 0 {
                    std::thread::sleep(EPOCH_TICK);
                    for engine in &engines {
                        engine.increment_epoch();
                    }
                }
            })
            .expect("spawning the epoch ticker thread");
        ticker
    }
}
