//! The simulator's in-memory `input/`, `output/` and `temp/` folders.
//!
//! Files live in memory only, bounded by a byte budget (oldest files are evicted first, so a
//! long session cannot grow without limit). Paths follow ComfyUI's rules: a subfolder is
//! normalised like `os.path.normpath`, and anything that would leave its root folder is
//! refused. `SaveImage` counters never go backwards, even when an old file was evicted.

use bytes::Bytes;
use std::collections::{HashMap, VecDeque};

/// One of ComfyUI's three file roots.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Dir {
    /// `input/`: uploads, read by `LoadImage`.
    Input,
    /// `output/`: `SaveImage` results.
    Output,
    /// `temp/`: `PreviewImage` results, wiped on restart.
    Temp,
}

impl Dir {
    /// The folder type as the API names it (`type=` in `/view`, `/upload/image`).
    pub fn from_type(t: &str) -> Option<Dir> {
        match t {
            "input" => Some(Dir::Input),
            "output" => Some(Dir::Output),
            "temp" => Some(Dir::Temp),
            _ => None,
        }
    }

    /// The API name of the folder type.
    pub fn as_type(self) -> &'static str {
        match self {
            Dir::Input => "input",
            Dir::Output => "output",
            Dir::Temp => "temp",
        }
    }
}

/// Normalises a relative path like `os.path.normpath`, returning its segments, or `None` if
/// it is absolute or climbs out of its root with `..`.
pub(crate) fn normalize(path: &str) -> Option<Vec<String>> {
    if path.starts_with('/') {
        return None;
    }
    let mut out: Vec<String> = Vec::new();
    for seg in path.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                out.pop()?;
            }
            s => out.push(s.to_string()),
        }
    }
    Some(out)
}

/// Joins a folder (`a/b`, may be empty) and a file name into a stored path, or `None` when the
/// result would leave the root.
pub(crate) fn join(folder: &str, name: &str) -> Option<String> {
    let mut segs = normalize(folder)?;
    let name_segs = normalize(name)?;
    if name_segs.is_empty() {
        return None;
    }
    segs.extend(name_segs);
    Some(segs.join("/"))
}

/// ComfyUI's "annotated" file names: `name.png [output]` points into another root.
pub(crate) fn split_annotation(name: &str) -> (&str, Option<Dir>) {
    for (suffix, dir) in [
        ("[output]", Dir::Output),
        ("[input]", Dir::Input),
        ("[temp]", Dir::Temp),
    ] {
        if let Some(stripped) = name.strip_suffix(suffix) {
            return (stripped.trim_end(), Some(dir));
        }
    }
    (name, None)
}

/// The in-memory file store.
#[derive(Debug)]
pub(crate) struct FileStore {
    files: HashMap<(Dir, String), Bytes>,
    order: VecDeque<(Dir, String)>,
    total: usize,
    max_total: usize,
    counters: HashMap<(Dir, String, String), u32>,
}

impl FileStore {
    /// An empty store that keeps at most `max_total` bytes.
    pub fn new(max_total: usize) -> Self {
        Self {
            files: HashMap::new(),
            order: VecDeque::new(),
            total: 0,
            max_total,
            counters: HashMap::new(),
        }
    }

    /// The bytes of a stored file (`path` as returned by [`join`]).
    pub fn get(&self, dir: Dir, path: &str) -> Option<Bytes> {
        self.files.get(&(dir, path.to_string())).cloned()
    }

    /// Whether a file or a folder with that path exists.
    pub fn exists(&self, dir: Dir, path: &str) -> bool {
        if self.files.contains_key(&(dir, path.to_string())) {
            return true;
        }
        let prefix = format!("{path}/");
        path.is_empty()
            || self
                .files
                .keys()
                .any(|(d, p)| *d == dir && p.starts_with(&prefix))
    }

    /// Stores a file, replacing an older one with the same path, then evicts the oldest files
    /// until the store fits its budget (the new file itself is always kept).
    pub fn put(&mut self, dir: Dir, path: String, bytes: Bytes) {
        let key = (dir, path);
        if let Some(old) = self.files.remove(&key) {
            self.total -= old.len();
            self.order.retain(|k| k != &key);
        }
        self.total += bytes.len();
        self.files.insert(key.clone(), bytes);
        self.order.push_back(key.clone());
        while self.total > self.max_total && self.order.len() > 1 {
            let Some(oldest) = self.order.pop_front() else {
                break;
            };
            if oldest == key {
                self.order.push_back(oldest);
                continue;
            }
            if let Some(b) = self.files.remove(&oldest) {
                self.total -= b.len();
                tracing::debug!(dir = oldest.0.as_type(), path = %oldest.1, "evicted stored file");
            }
        }
    }

    /// Forgets every file of one root (and its counters).
    pub fn clear_dir(&mut self, dir: Dir) {
        let removed: Vec<(Dir, String)> =
            self.files.keys().filter(|k| k.0 == dir).cloned().collect();
        for key in removed {
            if let Some(b) = self.files.remove(&key) {
                self.total -= b.len();
            }
        }
        self.order.retain(|k| k.0 != dir);
        self.counters.retain(|k, _| k.0 != dir);
    }

    /// Names of the files directly in a root folder (not in subfolders), sorted.
    pub fn top_level_files(&self, dir: Dir) -> Vec<String> {
        let mut names: Vec<String> = self
            .files
            .keys()
            .filter(|(d, p)| *d == dir && !p.contains('/'))
            .map(|(_, p)| p.clone())
            .collect();
        names.sort();
        names
    }

    /// Names of the files directly in `folder` (a normalised path, may be empty).
    fn files_in(&self, dir: Dir, folder: &str) -> Vec<String> {
        self.files
            .keys()
            .filter(|(d, _)| *d == dir)
            .filter_map(|(_, p)| {
                let rest = if folder.is_empty() {
                    p.as_str()
                } else {
                    p.strip_prefix(folder)?.strip_prefix('/')?
                };
                (!rest.contains('/')).then(|| rest.to_string())
            })
            .collect()
    }

    /// Reserves `count` consecutive `SaveImage` counters for `basename` in `folder`, returning
    /// the first. Like ComfyUI's `get_save_image_path`, it continues after the highest counter
    /// of an existing `<basename>_<digits>_...` file; it also never reuses a counter it handed
    /// out before, even if that file was evicted since.
    pub fn reserve_counters(&mut self, dir: Dir, folder: &str, basename: &str, count: u32) -> u32 {
        let prefix_len = basename.chars().count();
        let lower = basename.to_lowercase();
        let from_files = self
            .files_in(dir, folder)
            .iter()
            .filter_map(|name| {
                let chars: Vec<char> = name.chars().collect();
                if chars.len() <= prefix_len {
                    return None;
                }
                let prefix: String = chars[..prefix_len].iter().collect();
                if prefix.to_lowercase() != lower || chars[prefix_len] != '_' {
                    return None;
                }
                let rest: String = chars[prefix_len + 1..].iter().collect();
                let digits = rest.split('_').next().unwrap_or("");
                Some(digits.parse::<u32>().unwrap_or(0))
            })
            .max()
            .unwrap_or(0);
        let key = (dir, folder.to_string(), lower);
        let used = self.counters.get(&key).copied().unwrap_or(0);
        let first = from_files.max(used) + 1;
        self.counters.insert(key, first + count.saturating_sub(1));
        first
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalize_refuses_escapes() {
        assert_eq!(normalize("a/./b//c").unwrap(), vec!["a", "b", "c"]);
        assert_eq!(normalize("a/../b").unwrap(), vec!["b"]);
        assert!(normalize("../x").is_none());
        assert!(normalize("/etc").is_none());
        assert_eq!(join("", "x.png").as_deref(), Some("x.png"));
        assert!(join("a", "").is_none());
        assert_eq!(
            split_annotation("x.png [output]"),
            ("x.png", Some(Dir::Output))
        );
    }

    #[test]
    fn counters_continue_after_existing_files() {
        let mut s = FileStore::new(1 << 20);
        assert_eq!(s.reserve_counters(Dir::Output, "mcp", "invert", 1), 1);
        s.put(
            Dir::Output,
            "mcp/invert_00001_.png".into(),
            Bytes::from_static(b"x"),
        );
        assert_eq!(s.reserve_counters(Dir::Output, "mcp", "invert", 2), 2);
        assert_eq!(s.reserve_counters(Dir::Output, "mcp", "invert", 1), 4);
        assert_eq!(s.reserve_counters(Dir::Output, "", "invert", 1), 1);
        s.put(
            Dir::Output,
            "other_00041_.png".into(),
            Bytes::from_static(b"x"),
        );
        assert_eq!(s.reserve_counters(Dir::Output, "", "OTHER", 1), 42);
    }

    #[test]
    fn eviction_keeps_the_budget() {
        let mut s = FileStore::new(10);
        s.put(Dir::Output, "a".into(), Bytes::from(vec![0u8; 6]));
        s.put(Dir::Output, "b".into(), Bytes::from(vec![0u8; 6]));
        assert!(s.get(Dir::Output, "a").is_none());
        assert!(s.get(Dir::Output, "b").is_some());
        assert!(s.exists(Dir::Output, ""));
        s.clear_dir(Dir::Output);
        assert!(s.get(Dir::Output, "b").is_none());
    }
}
