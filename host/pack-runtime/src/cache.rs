//! On-disk cache of compiled packs.
//!
//! Compiling a pack with Cranelift costs tens to hundreds of milliseconds;
//! loading the compiled artifact costs well under one. Artifacts are keyed by
//! the SHA-256 of the pack's bytes and by the engine's compatibility hash
//! (wasmtime version and every setting that affects code generation), so a
//! changed pack or a different host build never picks up a stale artifact.
//! The cache is an optimisation only: every failure falls back to compiling.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

use wasmtime::Engine;
use wasmtime::component::Component;

/// A directory of compiled pack artifacts (`<sha256>-<engine hash>.cwasm`).
#[derive(Debug, Clone)]
pub(crate) struct CompileCache {
    dir: PathBuf,
}

impl CompileCache {
    pub(crate) fn new(dir: PathBuf) -> Self {
        Self { dir }
    }

    fn artifact(&self, engine: &Engine, sha256: &str) -> PathBuf {
        let mut hasher = DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        self.dir
            .join(format!("{sha256}-{:016x}.cwasm", hasher.finish()))
    }

    /// The cached compiled form of the pack with this hash, if any.
    pub(crate) fn load(&self, engine: &Engine, sha256: &str) -> Option<Component> {
        let path = self.artifact(engine, sha256);
        if !path.is_file() {
            return None;
        }
        // SAFETY: `deserialize_file` trusts the artifact to be machine code
        // produced by a compatible wasmtime. Artifacts in this directory are
        // only ever written by `store` below, from bytes we compiled ourselves,
        // named by content hash and engine hash; wasmtime additionally checks
        // the header for engine compatibility. The cache directory must not
        // be writable by untrusted users (documented in the README).
        match unsafe { Component::deserialize_file(engine, &path) } {
            Ok(component) => Some(component),
            Err(err) => {
                tracing::warn!(path = %path.display(), "discarding unusable compile cache entry: {err}");
                let _ = std::fs::remove_file(&path);
                None
            }
        }
    }

    /// Saves a compiled pack; failures are logged and otherwise ignored.
    pub(crate) fn store(&self, engine: &Engine, sha256: &str, component: &Component) {
        let path = self.artifact(engine, sha256);
        if let Err(err) = write_atomically(&self.dir, &path, component) {
            tracing::warn!(dir = %self.dir.display(), "cannot write compile cache: {err}");
        }
    }
}

fn write_atomically(dir: &Path, path: &Path, component: &Component) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    let bytes = component.serialize().map_err(|e| e.to_string())?;
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, bytes).map_err(|e| e.to_string())?;
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        e.to_string()
    })
}
