//! The folder policy shared by every file a client names by path: workflow files
//! (`COMFYUI_WORKFLOW_DIRS`) and input images (`COMFYUI_MCP_INPUT_DIRS`).
//!
//! Invariant: [`AllowedDirs::find`] returns a path only when, after resolving `..` and
//! symlinks, it lies inside one of the configured folders. A path outside them is refused
//! without saying whether it exists; a relative path is tried against the working folder and
//! then against each allowed folder. Folders that do not exist yet are kept and resolved
//! again on every lookup, so one created after start works.
//!
//! [`read_capped`] reads a found file under a byte cap: refused from its metadata before
//! reading, and the read stops one byte past the cap (a file growing meanwhile is refused
//! too). Both are blocking: callers run them on a bounded blocking pool.

use std::io::Read as _;
use std::path::{Component, Path, PathBuf};

/// A set of folders clients may name files in.
#[derive(Debug, Clone)]
pub struct AllowedDirs {
    /// As configured (for messages).
    configured: Vec<PathBuf>,
    /// Canonical forms of those that existed at start.
    canonical: Vec<PathBuf>,
}

/// Why [`AllowedDirs::find`] found no file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DirRefusal {
    /// The path is empty.
    Empty,
    /// The path is (or may be) outside every allowed folder.
    Outside,
    /// No such file inside the allowed folders.
    NotFound,
}

/// Why [`read_capped`] read nothing.
#[derive(Debug)]
pub enum ReadError {
    /// Over the cap: its size (or what was read of it).
    TooLarge(u64),
    /// Not a regular file.
    NotAFile,
    /// The system refused.
    Io(std::io::Error),
}

impl AllowedDirs {
    /// The allowed folders, as configured.
    pub fn new(dirs: Vec<PathBuf>) -> Self {
        let canonical = dirs.iter().filter_map(|d| d.canonicalize().ok()).collect();
        Self {
            configured: dirs,
            canonical,
        }
    }

    /// The folders as configured, comma-separated (for messages); `(none)` when empty.
    pub fn describe(&self) -> String {
        if self.configured.is_empty() {
            return "(none)".to_owned();
        }
        self.configured
            .iter()
            .map(|d| d.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    }

    fn roots(&self) -> Vec<PathBuf> {
        let mut roots = self.canonical.clone();
        for dir in &self.configured {
            if let Ok(c) = dir.canonicalize()
                && !roots.contains(&c)
            {
                roots.push(c);
            }
        }
        roots
    }

    /// The canonical path of `requested` (absolute, relative to the working folder, or
    /// relative to an allowed folder) if it lies inside an allowed folder. Blocking.
    pub fn find(&self, requested: &str) -> Result<PathBuf, DirRefusal> {
        if requested.trim().is_empty() {
            return Err(DirRefusal::Empty);
        }
        let roots = self.roots();
        let given = Path::new(requested);
        let mut candidates = vec![given.to_owned()];
        if given.is_relative() {
            candidates.extend(roots.iter().map(|r| r.join(given)));
        }
        let mut outside = false;
        for candidate in candidates {
            let Ok(real) = candidate.canonicalize() else {
                continue;
            };
            if roots.iter().any(|root| real.starts_with(root)) {
                return Ok(real);
            }
            outside = true;
        }
        let escapes = given.is_absolute()
            || given
                .components()
                .any(|c| matches!(c, Component::ParentDir));
        // Do not reveal whether files outside the folders exist.
        if outside || escapes {
            Err(DirRefusal::Outside)
        } else {
            Err(DirRefusal::NotFound)
        }
    }
}

/// Reads the regular file at `path` if it holds at most `max_bytes` bytes. Blocking.
pub fn read_capped(path: &Path, max_bytes: u64) -> Result<Vec<u8>, ReadError> {
    let file = std::fs::File::open(path).map_err(ReadError::Io)?;
    let meta = file.metadata().map_err(ReadError::Io)?;
    if !meta.is_file() {
        return Err(ReadError::NotAFile);
    }
    if meta.len() > max_bytes {
        return Err(ReadError::TooLarge(meta.len()));
    }
    let mut bytes = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
    file.take(max_bytes.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(ReadError::Io)?;
    if bytes.len() as u64 > max_bytes {
        return Err(ReadError::TooLarge(bytes.len() as u64));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_inside_and_refuses_outside_without_revealing_existence() {
        let root = tempfile::tempdir().unwrap();
        let allowed = root.path().join("in");
        std::fs::create_dir(&allowed).unwrap();
        std::fs::write(allowed.join("a.png"), b"x").unwrap();
        std::fs::write(root.path().join("secret.png"), b"x").unwrap();
        let dirs = AllowedDirs::new(vec![allowed.clone()]);
        assert_eq!(
            dirs.find("a.png").unwrap(),
            allowed.join("a.png").canonicalize().unwrap()
        );
        assert_eq!(dirs.find("../secret.png"), Err(DirRefusal::Outside));
        assert_eq!(dirs.find("../missing.png"), Err(DirRefusal::Outside));
        let outside = root.path().join("secret.png");
        assert_eq!(
            dirs.find(outside.to_str().unwrap()),
            Err(DirRefusal::Outside)
        );
        assert_eq!(dirs.find("nope.png"), Err(DirRefusal::NotFound));
        assert_eq!(dirs.find("  "), Err(DirRefusal::Empty));
    }

    #[cfg(unix)]
    #[test]
    fn a_symlink_out_of_the_folder_is_refused() {
        let root = tempfile::tempdir().unwrap();
        let allowed = root.path().join("in");
        std::fs::create_dir(&allowed).unwrap();
        std::fs::write(root.path().join("secret.png"), b"x").unwrap();
        std::os::unix::fs::symlink(root.path().join("secret.png"), allowed.join("link.png"))
            .unwrap();
        let dirs = AllowedDirs::new(vec![allowed]);
        assert_eq!(dirs.find("link.png"), Err(DirRefusal::Outside));
    }

    #[test]
    fn read_capped_at_and_over_the_cap() {
        let root = tempfile::tempdir().unwrap();
        let path = root.path().join("f");
        std::fs::write(&path, [7u8; 10]).unwrap();
        assert_eq!(read_capped(&path, 10).unwrap().len(), 10);
        assert!(matches!(
            read_capped(&path, 9),
            Err(ReadError::TooLarge(10))
        ));
        assert!(matches!(
            read_capped(root.path(), 9),
            Err(ReadError::NotAFile)
        ));
    }
}
