//! On-disk cache of compiled packs.
//!
//! Compiling a pack with Cranelift costs tens to hundreds of milliseconds;
//! loading the compiled artifact costs well under one. An artifact is native
//! machine code that wasmtime maps and runs without re-validating it, so
//! whoever can write into the cache folder can run code inside the server.
//! The cache therefore guards the folder and every file it touches.
//!
//! Invariants:
//! * **Trusted folder, checked at start-up.** [`CompileCache::open`] creates
//!   missing components of the folder with mode 0700, resolves symlinks once,
//!   and refuses (a [`CacheError`], so the server does not start) a folder not
//!   owned by the server's user or writable by group or others, and a folder
//!   below a parent another user could rename it in (a parent not owned by
//!   the server's user or root, or writable by others without the sticky
//!   bit). The only way to run without a trusted folder is to switch the cache
//!   off (`COMFYUI_MCP_CACHE_DIR=off`); a world-writable folder is never used.
//! * **Exclusive writes.** An artifact is written to a fresh temporary file
//!   with a random name, created with `O_CREAT | O_EXCL | O_NOFOLLOW` and mode
//!   0600, synced, then renamed over the final name. A planted symlink is
//!   never written through: `O_EXCL` refuses it for the temporary file and
//!   `rename` replaces a symlink at the final name instead of following it.
//! * **Checked reads.** An artifact is opened with `O_NOFOLLOW` and used only
//!   if the opened file is a regular file owned by the server's user and not
//!   writable by group or others; anything else is ignored and recompiled.
//! * **Bounded size.** After every write (and at start-up) the least recently
//!   used artifacts are deleted until the total is at most the cap
//!   ([`DEFAULT_CACHE_MAX_MB`] by default). A hit sets the artifact's mtime to
//!   now, so mtime order is use order. An artifact larger than the cap on its
//!   own is not stored.
//! * **Stable key.** The file name is the SHA-256 of a format tag, the pack's
//!   SHA-256 and wasmtime's `precompile_compatibility_hash` (its version and
//!   every code-generation setting), fed through [`Sha256Hasher`], whose byte
//!   encoding is fixed (little-endian integers) rather than `DefaultHasher`,
//!   whose algorithm may change with any Rust release.
//! * **Superseded artifacts go at once.** Each pack file path has a marker
//!   `<sha256 of the path>.src` holding the key of the artifact last stored
//!   or loaded for it. Using another artifact for a path (a rebuilt pack: no
//!   toolchain builds reproducibly, so every rebuild is a new 12–37 MB
//!   artifact) deletes the one its marker named, unless another path's
//!   marker still names it. A marker whose artifact is gone is deleted by the next trim,
//!   so markers never outnumber artifacts for long.
//! * The cache is an optimisation only: once the folder is accepted, every
//!   failure to read or write an artifact is logged and falls back to
//!   compiling.
//!
//! Only files named like this cache's own files are ever deleted, so pointing
//! the cache at a folder that holds other files does not lose them.

use std::fs::OpenOptions;
use std::hash::{Hash, Hasher};
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

/// Default size cap of the compile cache, in MiB.
pub const DEFAULT_CACHE_MAX_MB: u64 = 512;

/// Bumped whenever the artifact naming or content format changes.
const FORMAT_TAG: &str = "comfyui-mcp compile cache v1";
const ARTIFACT_EXT: &str = ".cwasm";
const MARKER_EXT: &str = ".src";
const TEMP_EXT: &str = ".tmp";
/// A temporary file older than this was left by a crashed writer.
const STALE_TEMP_AGE: Duration = Duration::from_secs(3600);

/// Why the compile cache folder cannot be used. The server refuses to start
/// with this error; every message names the folder, the cause and the fix.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// The folder could not be created or inspected.
    #[error(
        "compile cache folder {}: {action}: {source}; fix the folder, point COMFYUI_MCP_CACHE_DIR (--cache-dir) elsewhere, or set COMFYUI_MCP_CACHE_DIR=off",
        .dir.display()
    )]
    Io {
        /// The folder (or the component of it that failed).
        dir: PathBuf,
        /// What was being done.
        action: &'static str,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The path exists but is not a directory.
    #[error(
        "compile cache folder {} is not a directory; remove it, point COMFYUI_MCP_CACHE_DIR (--cache-dir) elsewhere, or set COMFYUI_MCP_CACHE_DIR=off",
        .dir.display()
    )]
    NotADirectory {
        /// The path.
        dir: PathBuf,
    },
    /// The folder belongs to another user, who could plant native code in it.
    #[error(
        "refusing compile cache folder {}: it is owned by uid {owner} (mode {mode:04o}), not by this server's user (uid {uid}); compiled packs are native code the server runs, so only the server's user may own the folder. Fix: `chown {uid} {}`, point COMFYUI_MCP_CACHE_DIR (--cache-dir) at a folder of your own, or set COMFYUI_MCP_CACHE_DIR=off",
        .dir.display(), .dir.display()
    )]
    NotOwned {
        /// The folder.
        dir: PathBuf,
        /// Its owner.
        owner: u32,
        /// Its permission bits.
        mode: u32,
        /// The server's effective user.
        uid: u32,
    },
    /// Group or others may write into the folder and plant native code.
    #[error(
        "refusing compile cache folder {}: mode {mode:04o} (owner uid {owner}) lets {who} write to it, and compiled packs are native code the server runs. Fix: `chmod 700 {}`, point COMFYUI_MCP_CACHE_DIR (--cache-dir) at a private folder, or set COMFYUI_MCP_CACHE_DIR=off",
        .dir.display(), .dir.display()
    )]
    Writable {
        /// The folder.
        dir: PathBuf,
        /// Its owner.
        owner: u32,
        /// Its permission bits.
        mode: u32,
        /// "group", "others" or "group and others".
        who: &'static str,
    },
    /// A parent folder lets another user rename or replace the cache folder.
    #[error(
        "refusing compile cache folder {}: its parent {} (owner uid {owner}, mode {mode:04o}) lets another user replace the cache folder, and compiled packs are native code the server runs. Fix: `chmod go-w {}` (or `chmod +t` for a shared folder like /tmp), point COMFYUI_MCP_CACHE_DIR (--cache-dir) at a folder under your home, or set COMFYUI_MCP_CACHE_DIR=off",
        .dir.display(), .parent.display(), .parent.display()
    )]
    UnsafeParent {
        /// The cache folder.
        dir: PathBuf,
        /// The offending parent.
        parent: PathBuf,
        /// The parent's owner.
        owner: u32,
        /// The parent's permission bits.
        mode: u32,
    },
}

/// A checked directory of compiled pack artifacts (`<key>.cwasm`).
#[derive(Debug, Clone)]
pub(crate) struct CompileCache {
    /// Canonical (symlink-free) path of the accepted folder.
    dir: PathBuf,
    max_bytes: u64,
    uid: u32,
}

impl CompileCache {
    /// Creates (mode 0700) and checks the folder, then trims it to the cap.
    pub(crate) fn open(dir: &Path, max_bytes: u64) -> Result<Self, CacheError> {
        let uid = effective_uid();
        let dir = prepare_dir(dir, uid)?;
        let cache = Self {
            dir,
            max_bytes,
            uid,
        };
        cache.evict(None);
        Ok(cache)
    }

    fn artifact(&self, engine: &Engine, pack_sha256: &str) -> (String, PathBuf) {
        let key = artifact_key(pack_sha256, &engine.precompile_compatibility_hash());
        let path = self.dir.join(format!("{key}{ARTIFACT_EXT}"));
        (key, path)
    }

    /// The cached compiled form of the pack with this hash, if any. A hit
    /// also becomes the artifact `source` uses (superseding its previous one).
    pub(crate) fn load(
        &self,
        engine: &Engine,
        pack_sha256: &str,
        source: &Path,
    ) -> Option<Component> {
        let (key, path) = self.artifact(engine, pack_sha256);
        let bytes = match self.read_artifact(&path) {
            Ok(Some(bytes)) => bytes,
            Ok(None) => return None,
            Err(reason) => {
                tracing::warn!(path = %path.display(), "ignoring compile cache entry: {reason}");
                return None;
            }
        };
        // SAFETY: `deserialize` trusts the bytes to be machine code produced
        // by a compatible wasmtime. They come from a regular file, opened
        // without following links, owned by this user and writable by no one
        // else, in a folder checked at start-up to be writable only by this
        // user; files in it are only ever written by `store` below from bytes
        // we compiled ourselves, named by content and engine hash. wasmtime
        // additionally checks the header for engine compatibility.
        match unsafe { Component::deserialize(engine, &bytes) } {
            Ok(component) => {
                self.supersede(source, &key);
                Some(component)
            }
            Err(err) => {
                tracing::warn!(path = %path.display(), "discarding unusable compile cache entry: {err}");
                let _ = std::fs::remove_file(&path);
                None
            }
        }
    }

    /// Reads an artifact if it is one we can trust; `Ok(None)` when absent.
    fn read_artifact(&self, path: &Path) -> Result<Option<Vec<u8>>, String> {
        let mut file = match OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NONBLOCK)
            .open(path)
        {
            Ok(file) => file,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(err) if err.raw_os_error() == Some(libc::ELOOP) => {
                return Err("it is a symbolic link; not following it".into());
            }
            Err(err) => return Err(format!("cannot open it: {err}")),
        };
        let meta = file
            .metadata()
            .map_err(|e| format!("cannot stat it: {e}"))?;
        if !meta.file_type().is_file() {
            return Err("it is not a regular file".into());
        }
        if meta.uid() != self.uid {
            return Err(format!(
                "it is owned by uid {}, not by this server's user (uid {})",
                meta.uid(),
                self.uid
            ));
        }
        if meta.mode() & 0o022 != 0 {
            return Err(format!(
                "its mode {:04o} lets group or others write to it",
                meta.mode() & 0o7777
            ));
        }
        let mut bytes = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
        file.read_to_end(&mut bytes)
            .map_err(|e| format!("cannot read it: {e}"))?;
        // A hit makes the artifact the most recently used one.
        if let Err(err) = file.set_modified(SystemTime::now()) {
            tracing::debug!(path = %path.display(), "cannot touch compile cache entry: {err}");
        }
        Ok(Some(bytes))
    }

    /// Saves a compiled pack loaded from `source`, deletes the artifact it
    /// supersedes (the last one stored for `source`), then trims the cache to
    /// its cap. Failures are logged and otherwise ignored.
    pub(crate) fn store(
        &self,
        engine: &Engine,
        pack_sha256: &str,
        component: &Component,
        source: &Path,
    ) {
        let (key, path) = self.artifact(engine, pack_sha256);
        let bytes = match component.serialize() {
            Ok(bytes) => bytes,
            Err(err) => {
                tracing::warn!("cannot serialise a compiled pack for the cache: {err}");
                return;
            }
        };
        if bytes.len() as u64 > self.max_bytes {
            tracing::info!(
                size = bytes.len(),
                max_bytes = self.max_bytes,
                "compiled pack is larger than the compile cache cap on its own; not cached (raise COMFYUI_MCP_CACHE_MAX_MB to cache it)"
            );
            return;
        }
        if let Err(err) = self.write_exclusively(&key, &path, &bytes) {
            tracing::warn!(dir = %self.dir.display(), "cannot write compile cache: {err}");
            return;
        }
        self.supersede(source, &key);
        self.evict(Some(&path));
    }

    /// Points `source`'s marker at `key` and deletes the artifact it named
    /// before, unless another source's marker still names that one.
    fn supersede(&self, source: &Path, key: &str) {
        let source = source.canonicalize().unwrap_or_else(|_| source.to_owned());
        let mut hasher = Sha256::new();
        hasher.update(FORMAT_TAG.as_bytes());
        hasher.update(source.as_os_str().as_encoded_bytes());
        let marker_key = hex::encode(hasher.finalize());
        let marker = self.dir.join(format!("{marker_key}{MARKER_EXT}"));
        let previous = read_marker(&marker);
        if previous.as_deref() == Some(key) {
            return;
        }
        if let Err(err) = self.write_exclusively(&marker_key, &marker, key.as_bytes()) {
            tracing::warn!(dir = %self.dir.display(), "cannot write compile cache marker: {err}");
            return;
        }
        let Some(previous) = previous else {
            return;
        };
        if self.markers().iter().any(|(_, named)| *named == previous) {
            return;
        }
        tracing::debug!(source = %source.display(), "compile cache: the pack was rebuilt; removing its superseded artifact");
        remove(&self.dir.join(format!("{previous}{ARTIFACT_EXT}")));
    }

    /// Every marker: its path and the artifact key it names.
    fn markers(&self) -> Vec<(PathBuf, String)> {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        entries
            .flatten()
            .filter(|e| e.file_name().to_str().map(classify) == Some(Kind::Marker))
            .filter_map(|e| read_marker(&e.path()).map(|key| (e.path(), key)))
            .collect()
    }

    fn write_exclusively(&self, key: &str, path: &Path, bytes: &[u8]) -> std::io::Result<()> {
        let tmp = self
            .dir
            .join(format!(".{key}.{:016x}{TEMP_EXT}", rand::random::<u64>()));
        let written = (|| {
            let mut file = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
                .open(&tmp)?;
            file.write_all(bytes)?;
            file.sync_data()?;
            std::fs::rename(&tmp, path)
        })();
        if written.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        written
    }

    /// Deletes least recently used artifacts until the total is at most the
    /// cap (never `keep`, the one just written), artifacts of an older
    /// naming scheme, and temporary files left by crashed writers.
    fn evict(&self, keep: Option<&Path>) {
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(err) => {
                tracing::warn!(dir = %self.dir.display(), "cannot list compile cache: {err}");
                return;
            }
        };
        let now = SystemTime::now();
        let mut artifacts = Vec::new();
        let mut markers = Vec::new();
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            let kind = classify(name);
            if kind == Kind::Foreign {
                continue;
            }
            let path = entry.path();
            // `DirEntry::metadata` does not follow symlinks.
            let Ok(meta) = entry.metadata() else { continue };
            let modified = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
            match kind {
                Kind::Artifact if meta.file_type().is_file() => {
                    artifacts.push((modified, meta.len(), path));
                }
                Kind::Temp if now.duration_since(modified).unwrap_or_default() < STALE_TEMP_AGE => {
                }
                Kind::Marker if meta.file_type().is_file() => markers.push(path),
                // Stale temporaries, legacy artifacts, and anything planted
                // under one of our names that is not a regular file.
                _ => remove(&path),
            }
        }
        let total: u64 = artifacts.iter().map(|(_, len, _)| len).sum();
        if total > self.max_bytes {
            self.trim(artifacts, total, keep);
        }
        // A marker is kept while the artifact it names is.
        for marker in markers {
            let named =
                read_marker(&marker).map(|key| self.dir.join(format!("{key}{ARTIFACT_EXT}")));
            if !named.is_some_and(|artifact| artifact.is_file()) {
                remove(&marker);
            }
        }
    }

    /// Deletes the least recently used `artifacts` (never `keep`) until
    /// `total` is at most the cap.
    fn trim(
        &self,
        mut artifacts: Vec<(SystemTime, u64, PathBuf)>,
        mut total: u64,
        keep: Option<&Path>,
    ) {
        artifacts.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| a.2.cmp(&b.2)));
        for (_, len, path) in artifacts {
            if total <= self.max_bytes {
                break;
            }
            if Some(path.as_path()) == keep {
                continue;
            }
            remove(&path);
            total = total.saturating_sub(len);
        }
        tracing::debug!(dir = %self.dir.display(), total, max_bytes = self.max_bytes, "compile cache trimmed");
    }
}

/// The artifact key a marker names: its first 64 bytes when they are hex,
/// read without following a link.
fn read_marker(path: &Path) -> Option<String> {
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NONBLOCK)
        .open(path)
        .ok()?;
    let mut key = String::new();
    file.take(65).read_to_string(&mut key).ok()?;
    (key.len() == 64 && key.bytes().all(|b| b.is_ascii_hexdigit())).then_some(key)
}

fn remove(path: &Path) {
    match std::fs::remove_file(path) {
        Ok(()) => tracing::debug!(path = %path.display(), "removed compile cache entry"),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
        Err(err) => {
            tracing::warn!(path = %path.display(), "cannot remove compile cache entry: {err}")
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Kind {
    /// `<64 hex>.cwasm`
    Artifact,
    /// `<64 hex>.src`: which artifact a pack path last stored.
    Marker,
    /// `.<64 hex>.<16 hex>.tmp`
    Temp,
    /// `<64 hex>-<16 hex>.cwasm`, the naming before keys were stable.
    Legacy,
    /// Not ours: never touched.
    Foreign,
}

fn classify(name: &str) -> Kind {
    let hex = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_hexdigit());
    if let Some(stem) = name.strip_suffix(MARKER_EXT) {
        if hex(stem, 64) {
            return Kind::Marker;
        }
    } else if let Some(stem) = name.strip_suffix(ARTIFACT_EXT) {
        if hex(stem, 64) {
            return Kind::Artifact;
        }
        if let Some((sha, engine)) = stem.split_once('-')
            && hex(sha, 64)
            && hex(engine, 16)
        {
            return Kind::Legacy;
        }
    } else if let Some(stem) = name
        .strip_prefix('.')
        .and_then(|n| n.strip_suffix(TEMP_EXT))
        && let Some((key, random)) = stem.split_once('.')
        && hex(key, 64)
        && hex(random, 16)
    {
        return Kind::Temp;
    }
    Kind::Foreign
}

/// Creates the missing components of `dir` with mode 0700, resolves it, and
/// checks it and its parents. Returns the canonical path.
fn prepare_dir(dir: &Path, uid: u32) -> Result<PathBuf, CacheError> {
    let io = |dir: &Path, action, source| CacheError::Io {
        dir: dir.to_owned(),
        action,
        source,
    };
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| io(dir, "cannot create it", e))?;
    let dir = dir
        .canonicalize()
        .map_err(|e| io(dir, "cannot resolve it", e))?;
    let meta = std::fs::metadata(&dir).map_err(|e| io(&dir, "cannot inspect it", e))?;
    if !meta.is_dir() {
        return Err(CacheError::NotADirectory { dir });
    }
    let mode = meta.mode() & 0o7777;
    if meta.uid() != uid {
        return Err(CacheError::NotOwned {
            dir,
            owner: meta.uid(),
            mode,
            uid,
        });
    }
    let who = match (mode & 0o020 != 0, mode & 0o002 != 0) {
        (true, true) => Some("group and others"),
        (true, false) => Some("group"),
        (false, true) => Some("others"),
        (false, false) => None,
    };
    if let Some(who) = who {
        return Err(CacheError::Writable {
            dir,
            owner: meta.uid(),
            mode,
            who,
        });
    }
    for parent in dir.ancestors().skip(1) {
        let meta = std::fs::metadata(parent).map_err(|e| io(parent, "cannot inspect it", e))?;
        let mode = meta.mode() & 0o7777;
        let trusted_owner = meta.uid() == uid || meta.uid() == 0;
        let sticky = mode & 0o1000 != 0;
        if !trusted_owner || (mode & 0o022 != 0 && !sticky) {
            return Err(CacheError::UnsafeParent {
                parent: parent.to_owned(),
                owner: meta.uid(),
                mode,
                dir,
            });
        }
    }
    Ok(dir)
}

fn effective_uid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// The artifact name for a pack: hex SHA-256 over the format tag, the pack's
/// hex SHA-256 and the engine's compatibility hash, all through
/// [`Sha256Hasher`].
pub(crate) fn artifact_key(pack_sha256: &str, engine_hash: &impl Hash) -> String {
    let mut hasher = Sha256Hasher::default();
    FORMAT_TAG.hash(&mut hasher);
    pack_sha256.hash(&mut hasher);
    engine_hash.hash(&mut hasher);
    hasher.hex()
}

/// A `Hasher` that feeds SHA-256 with a fixed encoding: bytes as given,
/// every integer as its little-endian bytes (`usize`/`isize` widened to 64
/// bits), so the digest does not depend on the platform or the Rust release.
#[derive(Default)]
pub(crate) struct Sha256Hasher(Sha256);

impl Sha256Hasher {
    /// The full digest, in lowercase hex.
    pub(crate) fn hex(self) -> String {
        hex::encode(self.0.finalize())
    }
}

/// `Hasher` integer writes as little-endian bytes (the same on every machine; a signed
/// value hashes as its two's-complement bytes, like the unsigned of its width).
macro_rules! le_writes {
    ($($name:ident: $int:ty),* $(,)?) => {
        $(fn $name(&mut self, i: $int) {
            self.0.update(i.to_le_bytes());
        })*
    };
}

impl Hasher for Sha256Hasher {
    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
    le_writes!(
        write_u8: u8,
        write_u16: u16,
        write_u32: u32,
        write_u64: u64,
        write_u128: u128,
        write_i8: i8,
        write_i16: i16,
        write_i32: i32,
        write_i64: i64,
        write_i128: i128,
    );
    fn write_usize(&mut self, i: usize) {
        self.write_u64(i as u64);
    }
    fn write_isize(&mut self, i: isize) {
        self.write_i64(i as i64);
    }
    /// Only a digest prefix; use [`Sha256Hasher::hex`] for the key.
    fn finish(&self) -> u64 {
        let digest = self.0.clone().finalize();
        u64::from_le_bytes(digest[..8].try_into().expect("8 bytes"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Test vectors computed outside Rust (Python `hashlib`), from the byte
    /// encoding documented on `Sha256Hasher`: a change of toolchain, platform
    /// or `DefaultHasher` cannot change them.
    #[test]
    fn the_key_is_a_fixed_function_of_its_inputs() {
        // sha256(b"") - nothing hashed.
        assert_eq!(
            Sha256Hasher::default().hex(),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        // Integers are little-endian, usize is 8 bytes:
        // sha256(bytes([1]) + (2).to_bytes(4,'little') + (3).to_bytes(8,'little') + (4).to_bytes(8,'little'))
        let mut h = Sha256Hasher::default();
        1u8.hash(&mut h);
        2u32.hash(&mut h);
        3u64.hash(&mut h);
        4usize.hash(&mut h);
        assert_eq!(
            h.hex(),
            "861b3e7a75d443d260700782cc95cf2474158aa5bc8a5423171d43a703992fa9"
        );
        // The whole key: tag, pack hash, and an engine hash stand-in. A `str`
        // hashes as its bytes then 0xff, a `bool` as one byte:
        // sha256(tag + b"\xff" + b"ab"*32 + b"\xff" + (7).to_bytes(8,'little') + b"\x01")
        assert_eq!(
            artifact_key(&"ab".repeat(32), &(7u64, true)),
            "88f35122e62da4e23be9bd4565d8c4cfce7b6236ccfee19ee768cdb5d2b72b7d"
        );
    }

    #[test]
    fn only_our_own_file_names_are_recognised() {
        let key = "0123456789abcdef".repeat(4);
        assert_eq!(classify(&format!("{key}.cwasm")), Kind::Artifact);
        assert_eq!(
            classify(&format!(".{key}.00112233aabbccdd.tmp")),
            Kind::Temp
        );
        assert_eq!(
            classify(&format!("{key}-00112233aabbccdd.cwasm")),
            Kind::Legacy
        );
        for foreign in ["notes.txt", "x.cwasm", &format!("{key}.cwasm.bak"), ".tmp"] {
            assert_eq!(classify(foreign), Kind::Foreign, "{foreign}");
        }
    }
}
