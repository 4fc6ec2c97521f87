//! Which ComfyUI machines the server fronts: `COMFYUI_URL` (one URL, or several separated by
//! commas) or, for anything beyond the URL, a backends file (`COMFYUI_MCP_BACKENDS_FILE`):
//!
//! ```json
//! [
//!   {"name": "gpu-a", "url": "http://10.0.0.5:8188", "capacity": 2},
//!   {"name": "gpu-b", "url": "https://render.example/comfy/", "api_key": "…"}
//! ]
//! ```
//!
//! Invariants: names are unique (a backend without one is named by its display URL); URLs
//! are unique; capacity is a finite number > 0 (default 1); at least one backend and at most
//! [`MAX_BACKENDS`]. A member without its own `api_key` gets `COMFYUI_API_KEY`.

use std::path::Path;

use serde::Deserialize;

/// Most backends one server fronts.
pub const MAX_BACKENDS: usize = 64;
/// Capacity of a backend that does not say (one job at a time).
pub const DEFAULT_CAPACITY: f64 = 1.0;

/// One ComfyUI machine.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackendSpec {
    /// Its name in job snapshots, the job store and messages (default: its display URL).
    #[serde(default)]
    pub name: Option<String>,
    /// Base URL, http or https, optionally with a path prefix.
    pub url: String,
    /// Bearer token for this machine (default: `COMFYUI_API_KEY`).
    #[serde(default)]
    pub api_key: Option<String>,
    /// Relative throughput: load is (queued + running jobs) / capacity (default 1).
    #[serde(default = "default_capacity")]
    pub capacity: f64,
}

fn default_capacity() -> f64 {
    DEFAULT_CAPACITY
}

/// Why the backends could not be read.
#[derive(Debug, thiserror::Error)]
pub enum BackendsError {
    /// The file could not be read.
    #[error("cannot read the backends file {path}: {source}")]
    Unreadable {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not the expected JSON.
    #[error(
        "the backends file {path} is not a JSON list of {{\"url\", \"name\"?, \"api_key\"?, \"capacity\"?}}: {detail}"
    )]
    Malformed {
        /// The file.
        path: String,
        /// The parser's message.
        detail: String,
    },
    /// The list breaks a rule.
    #[error("{0}")]
    Invalid(String),
}

/// The backends of `COMFYUI_URL` (comma-separated; empty entries ignored).
pub fn from_url_list(list: &str) -> Result<Vec<BackendSpec>, BackendsError> {
    let specs = list
        .split(',')
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .map(|url| BackendSpec {
            name: None,
            url: url.to_owned(),
            api_key: None,
            capacity: DEFAULT_CAPACITY,
        })
        .collect();
    validate(specs)
}

/// The backends of a backends file. Blocking (a small file read at start).
pub fn from_file(path: &Path) -> Result<Vec<BackendSpec>, BackendsError> {
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| BackendsError::Unreadable {
        path: shown.clone(),
        source,
    })?;
    let specs: Vec<BackendSpec> =
        serde_json::from_str(&text).map_err(|e| BackendsError::Malformed {
            path: shown,
            detail: e.to_string(),
        })?;
    validate(specs)
}

fn validate(specs: Vec<BackendSpec>) -> Result<Vec<BackendSpec>, BackendsError> {
    if specs.is_empty() {
        return Err(BackendsError::Invalid(
            "no ComfyUI backend is configured (COMFYUI_URL or the backends file is empty)".into(),
        ));
    }
    if specs.len() > MAX_BACKENDS {
        return Err(BackendsError::Invalid(format!(
            "{} backends are configured, more than the limit of {MAX_BACKENDS}",
            specs.len()
        )));
    }
    for (i, spec) in specs.iter().enumerate() {
        if !(spec.capacity.is_finite() && spec.capacity > 0.0) {
            return Err(BackendsError::Invalid(format!(
                "backend {} has capacity {}; it must be a number above 0",
                spec.url, spec.capacity
            )));
        }
        if specs[..i]
            .iter()
            .any(|other| other.url.trim() == spec.url.trim())
        {
            return Err(BackendsError::Invalid(format!(
                "backend {} is listed twice",
                spec.url
            )));
        }
        if let Some(name) = spec.name.as_deref().map(str::trim)
            && specs[..i]
                .iter()
                .any(|other| other.name.as_deref().map(str::trim) == Some(name))
        {
            return Err(BackendsError::Invalid(format!(
                "two backends are named `{name}`; names must be unique"
            )));
        }
    }
    Ok(specs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_url_list_gives_one_backend_each() {
        let specs = from_url_list("http://a:8188, http://b:8188/comfy/ ,").unwrap();
        assert_eq!(specs.len(), 2);
        assert_eq!(specs[1].url, "http://b:8188/comfy/");
        assert_eq!(specs[0].capacity, DEFAULT_CAPACITY);
        assert!(from_url_list(" , ").is_err());
        assert!(
            from_url_list("http://a:1,http://a:1")
                .unwrap_err()
                .to_string()
                .contains("listed twice")
        );
    }

    #[test]
    fn at_most_max_backends_are_accepted() {
        let list = |n: usize| {
            (0..n)
                .map(|i| format!("http://gpu-{i}:8188"))
                .collect::<Vec<_>>()
                .join(",")
        };
        assert_eq!(
            from_url_list(&list(MAX_BACKENDS)).unwrap().len(),
            MAX_BACKENDS
        );
        let err = from_url_list(&list(MAX_BACKENDS + 1))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("65 backends are configured, more than the limit of 64"),
            "{err}"
        );
    }

    #[test]
    fn a_backends_file_is_checked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("b.json");
        std::fs::write(
            &path,
            r#"[{"name": "gpu-a", "url": "http://a:1", "capacity": 2},
                {"url": "http://b:1", "api_key": "k"}]"#,
        )
        .unwrap();
        let specs = from_file(&path).unwrap();
        assert_eq!(specs[0].name.as_deref(), Some("gpu-a"));
        assert_eq!((specs[0].capacity, specs[1].capacity), (2.0, 1.0));
        assert_eq!(specs[1].api_key.as_deref(), Some("k"));
        for (bad, message) in [
            (r#"[{"url": "http://a:1", "capacity": 0}]"#, "above 0"),
            (
                r#"[{"url": "http://a:1", "colour": 1}]"#,
                "unknown field `colour`",
            ),
            (
                r#"[{"name": "x", "url": "http://a:1"}, {"name": "x", "url": "http://b:1"}]"#,
                "named `x`",
            ),
            ("[]", "no ComfyUI backend"),
        ] {
            std::fs::write(&path, bad).unwrap();
            let err = from_file(&path).unwrap_err().to_string();
            assert!(err.contains(message), "{bad}: {err}");
        }
    }
}
