//! Connection settings for one ComfyUI backend (`ComfyConfig`) and the URL arithmetic built on them.
//!
//! Invariants: the base URL is `http` or `https`, has no query or fragment and always ends with
//! `/`, so every endpoint is joined *under* it (a reverse-proxy prefix such as
//! `https://host/comfy/` is kept); the websocket URL is derived from it (`http`→`ws`,
//! `https`→`wss`, same prefix). The API key is never printed (`Debug` redacts it) and
//! [`ComfyConfig::display_url`] never contains credentials.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use url::Url;

use crate::error::ConfigError;

/// Default per-request HTTP timeout (`COMFYUI_MCP_REQUEST_TIMEOUT`).
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// Default longest execution of one job in ComfyUI (`COMFYUI_TIMEOUT`); time in the queue
/// does not count.
pub const DEFAULT_EXECUTION_TIMEOUT: Duration = Duration::from_secs(120);
/// Default folder for downloaded images (`COMFYUI_OUTPUT_DIR`).
pub const DEFAULT_OUTPUT_DIR: &str = "./generated_images";
/// Default number of finished jobs kept in memory before the oldest are evicted.
pub const DEFAULT_MAX_FINISHED_JOBS: usize = 1000;

/// Size caps on what ComfyUI may send us. Every body is read in chunks and the read stops
/// (with [`ClientError::TooLarge`](crate::error::ClientError::TooLarge)) as soon as a cap is
/// passed, so a broken or hostile server can neither exhaust memory nor fill the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BodyLimits {
    /// The documents that grow with the installation or the queue: `GET /object_info` (several
    /// MB with many custom nodes) and `GET /queue` (holds every pending graph). Default 64 MiB
    /// (`COMFYUI_MCP_MAX_COMFY_BODY_MB`).
    pub large_json: u64,
    /// Every other JSON answer (`/prompt`, `/history/{id}`, `/models`, `/system_stats`, …) and
    /// every error body. Default 8 MiB (`COMFYUI_MCP_MAX_COMFY_ANSWER_MB`).
    pub json: u64,
    /// One image downloaded from `/view`. Default 512 MiB (`COMFYUI_MCP_MAX_IMAGE_MB`).
    pub image: u64,
}

impl BodyLimits {
    /// Default cap of `/object_info` and `/queue` bodies.
    pub const DEFAULT_LARGE_JSON: u64 = 64 << 20;
    /// Default cap of every other JSON body.
    pub const DEFAULT_JSON: u64 = 8 << 20;
    /// Default cap of one downloaded image.
    pub const DEFAULT_IMAGE: u64 = 512 << 20;
}

impl Default for BodyLimits {
    fn default() -> Self {
        Self {
            large_json: Self::DEFAULT_LARGE_JSON,
            json: Self::DEFAULT_JSON,
            image: Self::DEFAULT_IMAGE,
        }
    }
}

/// Everything needed to talk to one ComfyUI server. Plain data; build it with
/// [`ComfyConfig::new`] and the `with_*` setters.
#[derive(Clone)]
pub struct ComfyConfig {
    base: Url,
    /// Bearer token sent on every HTTP request and on the websocket upgrade.
    pub api_key: Option<String>,
    /// Timeout of each HTTP request (the `/view` download included).
    pub timeout: Duration,
    /// Longest a job may execute in ComfyUI, from its execution start (queue time does not
    /// count); past it the job is interrupted and fails (see [`crate::watchdog`]).
    pub execution_timeout: Duration,
    /// Where job images are written (`<output_dir>/<prompt_id>/…`).
    pub output_dir: PathBuf,
    /// Finished jobs kept for `status` look-ups; the oldest are evicted beyond this.
    pub max_finished_jobs: usize,
    /// The websocket `clientId` and the `client_id` of every submitted job (one per process).
    pub client_id: String,
    /// Size caps on ComfyUI's answers and downloads.
    pub body_limits: BodyLimits,
    /// The backend's name in job snapshots, the job store and messages (a farm of several
    /// ComfyUIs tells them apart by it); `None`: the display URL.
    pub name: Option<String>,
}

impl ComfyConfig {
    /// Parses and checks `url` (http or https, optional path prefix) and fills in the
    /// defaults: no API key, 60 s request timeout, 120 s execution timeout, `./generated_images`, 1000 finished jobs and a
    /// fresh random client id.
    pub fn new(url: &str) -> Result<Self, ConfigError> {
        let base = normalize_base(url)?;
        Ok(Self {
            base,
            api_key: None,
            timeout: DEFAULT_REQUEST_TIMEOUT,
            execution_timeout: DEFAULT_EXECUTION_TIMEOUT,
            output_dir: PathBuf::from(DEFAULT_OUTPUT_DIR),
            max_finished_jobs: DEFAULT_MAX_FINISHED_JOBS,
            client_id: uuid::Uuid::new_v4().to_string(),
            body_limits: BodyLimits::default(),
            name: None,
        })
    }

    /// Names the backend (trimmed; empty means the display URL).
    pub fn with_name(mut self, name: Option<String>) -> Self {
        self.name = name.map(|n| n.trim().to_owned()).filter(|n| !n.is_empty());
        self
    }

    /// The backend's name: as configured, else the display URL.
    pub fn name(&self) -> String {
        self.name.clone().unwrap_or_else(|| self.display_url())
    }

    /// Sets the bearer token. An empty or whitespace-only key means "no key"; a key with
    /// characters that cannot go into an HTTP header is refused.
    pub fn with_api_key(mut self, key: Option<String>) -> Result<Self, ConfigError> {
        let key = key.map(|k| k.trim().to_owned()).filter(|k| !k.is_empty());
        if let Some(k) = &key
            && k.chars().any(|c| !(' '..='~').contains(&c))
        {
            return Err(ConfigError::BadApiKey);
        }
        self.api_key = key;
        Ok(self)
    }

    /// Sets the per-request timeout; zero is refused (it would fail every request).
    pub fn with_timeout(mut self, timeout: Duration) -> Result<Self, ConfigError> {
        if timeout.is_zero() {
            return Err(ConfigError::BadTimeout);
        }
        self.timeout = timeout;
        Ok(self)
    }

    /// Sets the longest execution of one job; zero is refused (every job would fail).
    pub fn with_execution_timeout(mut self, timeout: Duration) -> Result<Self, ConfigError> {
        if timeout.is_zero() {
            return Err(ConfigError::BadExecutionTimeout);
        }
        self.execution_timeout = timeout;
        Ok(self)
    }

    /// Sets the folder that receives job images.
    pub fn with_output_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.output_dir = dir.into();
        self
    }

    /// Sets how many finished jobs are remembered (at least 1).
    pub fn with_max_finished_jobs(mut self, n: usize) -> Self {
        self.max_finished_jobs = n.max(1);
        self
    }

    /// Sets the size caps on ComfyUI's answers (each at least 1 KiB, so an error body fits).
    pub fn with_body_limits(mut self, limits: BodyLimits) -> Self {
        self.body_limits = BodyLimits {
            large_json: limits.large_json.max(1024),
            json: limits.json.max(1024),
            image: limits.image.max(1024),
        };
        self
    }

    /// Sets the client id (normally left at its random default).
    pub fn with_client_id(mut self, id: impl Into<String>) -> Self {
        self.client_id = id.into();
        self
    }

    /// The normalised base URL (ends with `/`). May carry credentials; do not print it,
    /// use [`ComfyConfig::display_url`].
    pub fn base_url(&self) -> &Url {
        &self.base
    }

    /// The base URL without user name or password, for messages, logs and provenance.
    pub fn display_url(&self) -> String {
        display_url(&self.base)
    }

    /// `path` (relative, e.g. `"prompt"` or `"history/abc"`) joined under the base URL.
    pub fn endpoint(&self, path: &str) -> Url {
        join_under(&self.base, path)
    }

    /// The websocket URL `…/ws?clientId=<client_id>` (ws for http, wss for https).
    pub fn ws_url(&self) -> Url {
        let mut url = join_under(&self.base, "ws");
        let scheme = if url.scheme() == "https" { "wss" } else { "ws" };
        // http→ws and https→wss are both "special" schemes, so the change is always allowed.
        let _ = url.set_scheme(scheme);
        url.query_pairs_mut()
            .clear()
            .append_pair("clientId", &self.client_id);
        url
    }
}

impl fmt::Debug for ComfyConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ComfyConfig")
            .field("url", &self.display_url())
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .field("timeout", &self.timeout)
            .field("execution_timeout", &self.execution_timeout)
            .field("output_dir", &self.output_dir)
            .field("max_finished_jobs", &self.max_finished_jobs)
            .field("client_id", &self.client_id)
            .field("name", &self.name)
            .field("body_limits", &self.body_limits)
            .finish()
    }
}

fn normalize_base(raw: &str) -> Result<Url, ConfigError> {
    let raw = raw.trim();
    let mut url = Url::parse(raw).map_err(|e| ConfigError::BadUrl {
        url: raw.to_owned(),
        reason: e.to_string(),
    })?;
    if url.scheme() != "http" && url.scheme() != "https" {
        return Err(ConfigError::BadUrl {
            url: display_url(&url),
            reason: format!(
                "scheme `{}` is not supported; use http:// or https://",
                url.scheme()
            ),
        });
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(ConfigError::BadUrl {
            url: display_url(&url),
            reason: "the URL has no host".into(),
        });
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(ConfigError::BadUrl {
            url: display_url(&url),
            reason: "the URL must not carry a query (?…) or fragment (#…)".into(),
        });
    }
    if !url.path().ends_with('/') {
        let path = format!("{}/", url.path());
        url.set_path(&path);
    }
    Ok(url)
}

fn join_under(base: &Url, path: &str) -> Url {
    let mut url = base.clone();
    let joined = format!("{}{}", base.path(), path.trim_start_matches('/'));
    url.set_path(&joined);
    url
}

/// `url` without user name and password.
pub(crate) fn display_url(url: &Url) -> String {
    let mut u = url.clone();
    let _ = u.set_username("");
    let _ = u.set_password(None);
    u.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_url_gets_trailing_slash_and_endpoints() {
        let c = ComfyConfig::new("http://127.0.0.1:8188").unwrap();
        assert_eq!(c.base_url().as_str(), "http://127.0.0.1:8188/");
        assert_eq!(
            c.endpoint("prompt").as_str(),
            "http://127.0.0.1:8188/prompt"
        );
        assert_eq!(
            c.endpoint("/history/x").as_str(),
            "http://127.0.0.1:8188/history/x"
        );
    }

    #[test]
    fn prefix_is_kept_for_http_and_ws() {
        let c = ComfyConfig::new("https://example.org/comfy")
            .unwrap()
            .with_client_id("abc");
        assert_eq!(
            c.endpoint("queue").as_str(),
            "https://example.org/comfy/queue"
        );
        assert_eq!(
            c.ws_url().as_str(),
            "wss://example.org/comfy/ws?clientId=abc"
        );
        let c = ComfyConfig::new("http://h:1/a/b/")
            .unwrap()
            .with_client_id("z");
        assert_eq!(c.ws_url().as_str(), "ws://h:1/a/b/ws?clientId=z");
        assert_eq!(c.endpoint("view").as_str(), "http://h:1/a/b/view");
    }

    #[test]
    fn bad_urls_are_refused_with_reason() {
        for bad in [
            "ftp://x/",
            "not a url",
            "http://h/?a=1",
            "http://h/#f",
            "file:///tmp",
        ] {
            let err = ComfyConfig::new(bad).unwrap_err().to_string();
            assert!(err.contains("COMFYUI_URL"), "{err}");
        }
    }

    #[test]
    fn credentials_never_displayed() {
        let c = ComfyConfig::new("http://user:secret@h:1/p/")
            .unwrap()
            .with_api_key(Some("topsecret".into()))
            .unwrap();
        assert_eq!(c.display_url(), "http://h:1/p/");
        let dbg = format!("{c:?}");
        assert!(!dbg.contains("secret"), "{dbg}");
    }

    #[test]
    fn api_key_rules() {
        let c = ComfyConfig::new("http://h/").unwrap();
        assert!(
            c.clone()
                .with_api_key(Some("  ".into()))
                .unwrap()
                .api_key
                .is_none()
        );
        assert!(c.clone().with_api_key(Some("a\nb".into())).is_err());
        assert_eq!(
            c.with_api_key(Some(" k ".into()))
                .unwrap()
                .api_key
                .as_deref(),
            Some("k")
        );
    }
}
