//! The engine: one wasmtime `Engine` configured for the sandbox, the epoch
//! ticker that enforces call deadlines, the linker, and the compile cache.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Weak};
use std::time::Duration;

use sha2::{Digest, Sha256};
use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::{Config, Engine, OptLevel};

use crate::bindings::{WorkflowPack, WorkflowPackPre};
use crate::cache::{CacheError, CompileCache, DEFAULT_CACHE_MAX_MB};
use crate::error::LoadError;
use crate::limits::Limits;
use crate::pack::Pack;
use crate::sandbox::StoreState;

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
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        Self {
            limits: Limits::default(),
            cache_dir: None,
            cache_max_bytes: DEFAULT_CACHE_MAX_MB << 20,
        }
    }
}

/// Could not start the WebAssembly engine.
#[derive(Debug, thiserror::Error)]
#[error("cannot start the WebAssembly engine: {0}")]
pub struct EngineError(String);

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
    engine: Engine,
    linker: Linker<StoreState>,
    config: RuntimeConfig,
    cache: Option<CompileCache>,
    ticker: Arc<EpochTicker>,
}

impl Runtime {
    /// Creates the engine, links the host API and WASI, and starts the epoch ticker.
    ///
    /// Fails if the compile cache folder is not safe to load native code from.
    pub fn new(config: RuntimeConfig) -> Result<Self, StartError> {
        let mut wasm = Config::new();
        // Deadlines: the guest checks the epoch at loop headers and function
        // entries, so an endless loop is stopped within one tick of its limit.
        wasm.epoch_interruption(true);
        wasm.wasm_component_model(true);
        wasm.cranelift_opt_level(OptLevel::Speed);
        // Interpreters compiled to wasm (QuickJS, SpiderMonkey, CPython) recurse
        // deeply; wasmtime's 512 KiB default is too small for them. Every call
        // runs on a thread with `Limits::native_stack_bytes` of native stack
        // (`Pack::call`), so this limit is always hit before the native stack.
        wasm.max_wasm_stack(config.limits.wasm_stack_bytes);
        // Never used (calls are synchronous), but wasmtime refuses a wasm stack
        // larger than it; give it the same headroom as the call threads.
        wasm.async_stack_size(config.limits.native_stack_bytes());
        let engine = Engine::new(&wasm).map_err(|e| EngineError(e.to_string()))?;

        let mut linker = Linker::<StoreState>::new(&engine);
        // Synchronous WASI: calls run on a blocking thread, never inside a
        // future, so no async support is needed in the store.
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker)
            .map_err(|e| EngineError(e.to_string()))?;
        WorkflowPack::add_to_linker::<_, HasSelf<StoreState>>(&mut linker, |state| state)
            .map_err(|e| EngineError(e.to_string()))?;

        let cache = match &config.cache_dir {
            Some(dir) => Some(CompileCache::open(dir, config.cache_max_bytes)?),
            None => None,
        };
        let ticker = EpochTicker::start(engine.clone());
        Ok(Self {
            engine,
            linker,
            config,
            cache,
            ticker,
        })
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
    /// Checks the ABI version, compiles (or loads the cached compilation),
    /// links, pre-instantiates, then asks the pack for its identity and
    /// templates and validates them.
    pub fn load_bytes(&self, path: &Path, bytes: &[u8]) -> Result<Pack, LoadError> {
        crate::abi::check(path, bytes)?;
        let sha256 = hex::encode(Sha256::digest(bytes));
        let component = self.compile(path, bytes, &sha256)?;
        let compile_err = |e: wasmtime::Error| LoadError::Compile {
            path: path.to_owned(),
            reason: format!("{e:#}"),
        };
        let instance_pre = self
            .linker
            .instantiate_pre(&component)
            .map_err(compile_err)?;
        let pre = WorkflowPackPre::new(instance_pre).map_err(|e| LoadError::ExportMismatch {
            path: path.to_owned(),
            supported: crate::abi::ABI_VERSION.to_owned(),
            reason: crate::text::cap(&format!("{e:#}"), self.config.limits.max_error_bytes),
        })?;
        Pack::describe(
            path.to_owned(),
            sha256,
            pre,
            self.engine.clone(),
            self.config.limits.clone(),
            self.ticker.clone(),
        )
    }

    fn compile(&self, path: &Path, bytes: &[u8], sha256: &str) -> Result<Component, LoadError> {
        if let Some(component) = self
            .cache
            .as_ref()
            .and_then(|c| c.load(&self.engine, sha256))
        {
            tracing::debug!(path = %path.display(), "pack loaded from compile cache");
            return Ok(component);
        }
        let started = std::time::Instant::now();
        let component = Component::new(&self.engine, bytes).map_err(|e| LoadError::Compile {
            path: path.to_owned(),
            reason: format!("{e:#}"),
        })?;
        tracing::debug!(path = %path.display(), elapsed = ?started.elapsed(), "pack compiled");
        if let Some(cache) = &self.cache {
            cache.store(&self.engine, sha256, &component);
        }
        Ok(component)
    }
}

/// Advances the engine's epoch every [`EPOCH_TICK`] for as long as a runtime
/// or any pack loaded by it is alive (each holds an `Arc` of this).
pub(crate) struct EpochTicker(());

impl EpochTicker {
    fn start(engine: Engine) -> Arc<Self> {
        let ticker = Arc::new(EpochTicker(()));
        let alive: Weak<EpochTicker> = Arc::downgrade(&ticker);
        std::thread::Builder::new()
            .name("wasm-epoch".into())
            .spawn(move || {
                while alive.strong_count() > 0 {
                    std::thread::sleep(EPOCH_TICK);
                    engine.increment_epoch();
                }
            })
            .expect("spawning the epoch ticker thread");
        ticker
    }
}
