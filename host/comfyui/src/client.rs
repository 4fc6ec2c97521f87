//! `ComfyClient`: ComfyUI's HTTP API (submit, queue, history, cancel, files, catalog), typed.
//!
//! Invariants: every request is joined under the configured base URL (path prefix kept),
//! carries `Authorization: Bearer <key>` when a key is configured, never sends an `Origin`
//! header (ComfyUI answers 403 to a foreign one) and is bounded by the configured timeout;
//! every failure becomes a [`ClientError`] naming the URL, the request and what came back.
//! Every body is read in chunks under a cap ([`BodyLimits`]): the read stops as soon as the
//! cap (or a larger `Content-Length`) is seen, with [`ClientError::TooLarge`] naming the
//! setting that raises it; nothing is buffered unbounded.
//! Shapes follow the recorded transcripts: `/history/{id}` answers `{}` for unknown ids,
//! `queue_pending` is a heap (sorted here by `number`), `/models/{unknown}` is a 404.

use std::path::Path;
use std::time::Duration;

use futures_util::StreamExt;
use reqwest::header::{AUTHORIZATION, HeaderMap, HeaderValue};
use reqwest::{Method, RequestBuilder, Response, StatusCode};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;
use url::Url;

use crate::config::{BodyLimits, ComfyConfig};
use crate::error::{ClientError, truncate_body};
use crate::events::{Event, ExecutionErrorInfo, parse_message};
use crate::types::ImageRef;

/// Which cap of [`BodyLimits`] a body falls under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BodyKind {
    /// `/object_info`, `/queue`.
    LargeJson,
    /// Every other JSON answer and error bodies.
    Json,
    /// One `/view` image.
    Image,
}

impl BodyKind {
    fn limit(self, limits: &BodyLimits) -> (u64, &'static str) {
        match self {
            BodyKind::LargeJson => (limits.large_json, "COMFYUI_MCP_MAX_COMFY_BODY_MB"),
            BodyKind::Json => (limits.json, "COMFYUI_MCP_MAX_COMFY_ANSWER_MB"),
            BodyKind::Image => (limits.image, "COMFYUI_MCP_MAX_IMAGE_MB"),
        }
    }
}

/// ComfyUI accepted a job (`POST /prompt` → 200).
#[derive(Debug, Clone, PartialEq)]
pub struct SubmitAccepted {
    /// The id ComfyUI uses for the job (ours, since we choose it).
    pub prompt_id: String,
    /// ComfyUI's global submission counter (queue priority).
    pub number: f64,
    /// Errors of output branches that were dropped (partial validity): `{}` when all is valid.
    pub node_errors: Value,
}

pub use crate::queue::{QueueEntry, QueueSnapshot};

/// One `/history/{id}` entry, typed.
#[derive(Debug, Clone, PartialEq)]
pub struct HistoryEntry {
    /// The job.
    pub prompt_id: String,
    /// Images per output node, in ComfyUI's order.
    pub outputs: Vec<(String, Vec<ImageRef>)>,
    /// `success` or `error`.
    pub status_str: Option<String>,
    /// ComfyUI's `completed` flag.
    pub completed: bool,
    /// The recorded messages (`execution_start`, `execution_cached`, and the outcome).
    pub messages: Vec<Event>,
}

/// How a finished job ended, according to its history entry.
#[derive(Debug, Clone, PartialEq)]
pub enum HistoryOutcome {
    /// Ran to the end.
    Success,
    /// A node raised an exception.
    Error(ExecutionErrorInfo),
    /// Stopped by `/interrupt`.
    Interrupted {
        /// The node it stopped at.
        node_id: Option<String>,
        /// Its class.
        node_type: Option<String>,
    },
}

impl HistoryEntry {
    /// Every image of every output node, every batch item, in order.
    pub fn images(&self) -> Vec<ImageRef> {
        self.outputs
            .iter()
            .flat_map(|(_, imgs)| imgs.iter().cloned())
            .collect()
    }

    /// The outcome: from the recorded messages, else from `status_str`.
    pub fn outcome(&self) -> HistoryOutcome {
        for m in self.messages.iter().rev() {
            match m {
                Event::ExecutionSuccess { .. } => return HistoryOutcome::Success,
                Event::ExecutionError(info) => return HistoryOutcome::Error(info.clone()),
                Event::ExecutionInterrupted {
                    node_id, node_type, ..
                } => {
                    return HistoryOutcome::Interrupted {
                        node_id: node_id.clone(),
                        node_type: node_type.clone(),
                    };
                }
                _ => {}
            }
        }
        if self.status_str.as_deref() == Some("error") || !self.completed {
            HistoryOutcome::Error(ExecutionErrorInfo {
                prompt_id: self.prompt_id.clone(),
                node_id: None,
                node_type: None,
                exception_message: "ComfyUI recorded the job as failed without details".into(),
                exception_type: String::new(),
                traceback: Vec::new(),
                timestamp: None,
            })
        } else {
            HistoryOutcome::Success
        }
    }

    /// `execution_start` timestamp (ComfyUI clock, ms since the epoch).
    pub fn start_timestamp(&self) -> Option<f64> {
        self.messages.iter().find_map(|m| match m {
            Event::ExecutionStart { timestamp, .. } => *timestamp,
            _ => None,
        })
    }

    /// Timestamp of the outcome message (ComfyUI clock, ms since the epoch).
    pub fn end_timestamp(&self) -> Option<f64> {
        self.messages.iter().rev().find_map(|m| match m {
            Event::ExecutionSuccess { timestamp, .. }
            | Event::ExecutionInterrupted { timestamp, .. } => *timestamp,
            Event::ExecutionError(info) => info.timestamp,
            _ => None,
        })
    }
}

#[derive(Deserialize)]
struct RawHistoryEntry {
    #[serde(default)]
    outputs: serde_json::Map<String, Value>,
    #[serde(default)]
    status: Option<RawStatus>,
}

#[derive(Deserialize)]
struct RawStatus {
    #[serde(default)]
    status_str: Option<String>,
    #[serde(default)]
    completed: bool,
    #[serde(default)]
    messages: Vec<Value>,
}

#[derive(Deserialize)]
struct RawAccepted {
    prompt_id: String,
    #[serde(default)]
    number: f64,
    #[serde(default)]
    node_errors: Value,
}

#[derive(Deserialize)]
struct RawUpload {
    name: String,
    #[serde(default)]
    subfolder: String,
    #[serde(rename = "type", default)]
    kind: String,
}

/// An error message built from a whole `source()` chain (reqwest's top level alone says only
/// "error sending request").
#[derive(Debug)]
struct Cause(String);

impl std::fmt::Display for Cause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Cause {}

fn chain(e: &(dyn std::error::Error + 'static)) -> Cause {
    let mut parts = vec![e.to_string()];
    let mut cur = e.source();
    while let Some(s) = cur {
        let text = s.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        cur = s.source();
    }
    Cause(parts.join(": "))
}

/// Installs rustls' ring crypto provider as the process default (once; "already installed"
/// is fine). Needed before any TLS client (reqwest, tungstenite) is built.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// HTTP client for one ComfyUI server. Cheap to clone (shares the connection pool).
#[derive(Clone)]
pub struct ComfyClient {
    http: reqwest::Client,
    base: Url,
    display: String,
    timeout: Duration,
    limits: BodyLimits,
}

impl std::fmt::Debug for ComfyClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ComfyClient")
            .field("url", &self.display)
            .finish()
    }
}

impl ComfyClient {
    /// Builds the client (TLS via rustls/ring, bearer header, per-request timeout).
    pub fn new(cfg: &ComfyConfig) -> Result<Self, ClientError> {
        install_crypto_provider();
        let display = cfg.display_url();
        let mut headers = HeaderMap::new();
        if let Some(key) = &cfg.api_key {
            let mut v = HeaderValue::from_str(&format!("Bearer {key}")).map_err(|_| {
                ClientError::Setup {
                    url: display.clone(),
                    reason: "the API key cannot be sent in an HTTP header".into(),
                }
            })?;
            v.set_sensitive(true);
            headers.insert(AUTHORIZATION, v);
        }
        let http = reqwest::Client::builder()
            .default_headers(headers)
            .timeout(cfg.timeout)
            .connect_timeout(cfg.timeout.min(Duration::from_secs(10)))
            .user_agent(concat!("comfyui-mcp/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ClientError::Setup {
                url: display.clone(),
                reason: chain(&e).0,
            })?;
        Ok(Self {
            http,
            base: cfg.base_url().clone(),
            display,
            timeout: cfg.timeout,
            limits: cfg.body_limits,
        })
    }

    /// The base URL without credentials.
    pub fn display_url(&self) -> &str {
        &self.display
    }

    /// `POST /prompt {"prompt": graph, "client_id": client_id, "prompt_id": prompt_id}`.
    /// A 400 with ComfyUI's validation payload becomes [`ClientError::Rejected`] (payload
    /// intact); a 200 may still carry `node_errors` (partial validity).
    pub async fn submit(
        &self,
        prompt_id: &str,
        graph: &Value,
        client_id: &str,
    ) -> Result<SubmitAccepted, ClientError> {
        let request = "POST /prompt";
        let body = json!({"prompt": graph, "client_id": client_id, "prompt_id": prompt_id});
        let resp = self
            .send(request, self.req(Method::POST, &["prompt"]).json(&body))
            .await?;
        let status = resp.status();
        let bytes = self.body(request, resp, BodyKind::Json).await?;
        if status == StatusCode::BAD_REQUEST
            && let Ok(v) = serde_json::from_slice::<Value>(&bytes)
            && v.get("error").is_some()
        {
            return Err(ClientError::Rejected {
                url: self.display.clone(),
                error: Box::new(v.get("error").cloned().unwrap_or(Value::Null)),
                node_errors: Box::new(v.get("node_errors").cloned().unwrap_or_else(|| json!({}))),
            });
        }
        self.check_status(request, status, &bytes)?;
        let raw: RawAccepted = self.decode(request, &bytes)?;
        Ok(SubmitAccepted {
            prompt_id: raw.prompt_id,
            number: raw.number,
            node_errors: if raw.node_errors.is_null() {
                json!({})
            } else {
                raw.node_errors
            },
        })
    }

    /// `GET /queue`, pending sorted by `number`.
    pub async fn queue(&self) -> Result<QueueSnapshot, ClientError> {
        self.get_json("GET /queue", &["queue"], BodyKind::LargeJson)
            .await
    }

    /// `GET /history/{id}`: `None` when ComfyUI does not know the id (or it has not finished).
    pub async fn history(&self, prompt_id: &str) -> Result<Option<HistoryEntry>, ClientError> {
        let request = format!("GET /history/{prompt_id}");
        let mut map: serde_json::Map<String, Value> = self
            .get_json(&request, &["history", prompt_id], BodyKind::Json)
            .await?;
        let Some(raw) = map.remove(prompt_id) else {
            return Ok(None);
        };
        let raw: RawHistoryEntry =
            serde_json::from_value(raw).map_err(|e| self.decode_err(&request, e))?;
        let outputs = raw
            .outputs
            .into_iter()
            .map(|(node, out)| {
                let images = out
                    .get("images")
                    .cloned()
                    .and_then(|v| serde_json::from_value::<Vec<ImageRef>>(v).ok())
                    .unwrap_or_default();
                (node, images)
            })
            .collect();
        let (status_str, completed, messages) = match raw.status {
            Some(s) => (
                s.status_str,
                s.completed,
                s.messages
                    .into_iter()
                    .filter_map(|m| {
                        let mut arr = match m {
                            Value::Array(a) if a.len() == 2 => a,
                            _ => return None,
                        };
                        let data = arr.pop()?;
                        let kind = arr.pop()?;
                        parse_message(kind.as_str()?, data).ok()
                    })
                    .collect(),
            ),
            None => (None, false, Vec::new()),
        };
        Ok(Some(HistoryEntry {
            prompt_id: prompt_id.to_owned(),
            outputs,
            status_str,
            completed,
            messages,
        }))
    }

    /// `POST /queue {"delete": ids}`: removes pending jobs (silently ignores unknown ids and
    /// the running job).
    pub async fn delete_queued(&self, prompt_ids: &[&str]) -> Result<(), ClientError> {
        let request = "POST /queue";
        let resp = self
            .send_repeatable(
                request,
                self.req(Method::POST, &["queue"])
                    .json(&json!({ "delete": prompt_ids })),
            )
            .await?;
        self.expect_success(request, resp).await
    }

    /// `POST /interrupt`: with an id, interrupts only that job if it is the running one
    /// (ComfyUI ignores it otherwise); with `None`, whatever runs (global).
    pub async fn interrupt(&self, prompt_id: Option<&str>) -> Result<(), ClientError> {
        let request = "POST /interrupt";
        let body = match prompt_id {
            Some(id) => json!({ "prompt_id": id }),
            None => json!({}),
        };
        let rb = self.req(Method::POST, &["interrupt"]).json(&body);
        // By id it is idempotent; a global interrupt could stop a job started since.
        let resp = match prompt_id {
            Some(_) => self.send_repeatable(request, rb).await?,
            None => self.send(request, rb).await?,
        };
        self.expect_success(request, resp).await
    }

    /// `GET /view?filename&subfolder&type`, streamed into `dest` (created or truncated).
    /// Returns the number of bytes written. Refuses (and stops reading) bodies over
    /// [`BodyLimits::image`]; a partial file is left for the caller to remove.
    pub async fn download_view(&self, image: &ImageRef, dest: &Path) -> Result<u64, ClientError> {
        let request = format!("GET /view?filename={}", image.filename);
        let rb = self.req(Method::GET, &["view"]).query(&[
            ("filename", image.filename.as_str()),
            ("subfolder", image.subfolder.as_str()),
            ("type", image.kind.as_str()),
        ]);
        let resp = self.send_repeatable(&request, rb).await?;
        let status = resp.status();
        if !status.is_success() {
            let bytes = self.body(&request, resp, BodyKind::Json).await?;
            return Err(self.status_err(&request, status, &bytes));
        }
        self.check_length(&request, &resp, BodyKind::Image)?;
        let io_err = |source| ClientError::Io {
            url: self.display.clone(),
            request: request.clone(),
            path: dest.to_owned(),
            source,
        };
        let mut file = tokio::fs::File::create(dest).await.map_err(io_err)?;
        let mut stream = resp.bytes_stream();
        let mut written: u64 = 0;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| self.transport_err(&request, e))?;
            written += chunk.len() as u64;
            if written > self.limits.image {
                return Err(self.too_large(&request, BodyKind::Image));
            }
            file.write_all(&chunk).await.map_err(io_err)?;
        }
        file.flush().await.map_err(io_err)?;
        file.sync_all().await.map_err(io_err)?;
        Ok(written)
    }

    /// `POST /upload/image` (multipart): stores `bytes` as `name` in ComfyUI's input folder.
    /// The returned reference is what `LoadImage` takes (`subfolder/name`).
    pub async fn upload_image(
        &self,
        bytes: impl Into<bytes::Bytes>,
        name: &str,
        subfolder: &str,
        overwrite: bool,
    ) -> Result<ImageRef, ClientError> {
        let request = "POST /upload/image";
        let form = reqwest::multipart::Form::new()
            .part("image", {
                let bytes: bytes::Bytes = bytes.into();
                let len = bytes.len() as u64;
                reqwest::multipart::Part::stream_with_length(reqwest::Body::from(bytes), len)
                    .file_name(name.to_owned())
            })
            .text("subfolder", subfolder.to_owned())
            .text("type", "input")
            .text("overwrite", if overwrite { "true" } else { "false" });
        let resp = self
            .send(
                request,
                self.req(Method::POST, &["upload", "image"]).multipart(form),
            )
            .await?;
        let status = resp.status();
        let bytes = self.body(request, resp, BodyKind::Json).await?;
        self.check_status(request, status, &bytes)?;
        let raw: RawUpload = self.decode(request, &bytes)?;
        Ok(ImageRef {
            filename: raw.name,
            subfolder: raw.subfolder,
            kind: if raw.kind.is_empty() {
                "input".into()
            } else {
                raw.kind
            },
        })
    }

    /// `GET /object_info`: the node catalog as ComfyUI sends it.
    pub async fn object_info(&self) -> Result<Value, ClientError> {
        let bytes = self.object_info_bytes().await?;
        self.decode("GET /object_info", &bytes)
    }

    /// `GET /object_info` as raw bytes (capped by [`BodyLimits::large_json`]), for callers
    /// that parse it off the async workers.
    pub async fn object_info_bytes(&self) -> Result<bytes::Bytes, ClientError> {
        let request = "GET /object_info";
        let resp = self
            .send_repeatable(request, self.req(Method::GET, &["object_info"]))
            .await?;
        let status = resp.status();
        let bytes = self.body(request, resp, BodyKind::LargeJson).await?;
        self.check_status(request, status, &bytes)?;
        Ok(bytes)
    }

    /// `GET /system_stats`.
    pub async fn system_stats(&self) -> Result<Value, ClientError> {
        self.get_json("GET /system_stats", &["system_stats"], BodyKind::Json)
            .await
    }

    /// `GET /models`: the model folder names.
    pub async fn model_folders(&self) -> Result<Vec<String>, ClientError> {
        self.get_json("GET /models", &["models"], BodyKind::Json)
            .await
    }

    /// `GET /models/{folder}`: file names, or `None` when ComfyUI has no such folder (404).
    pub async fn models(&self, folder: &str) -> Result<Option<Vec<String>>, ClientError> {
        let request = format!("GET /models/{folder}");
        let resp = self
            .send_repeatable(&request, self.req(Method::GET, &["models", folder]))
            .await?;
        let status = resp.status();
        let bytes = self.body(&request, resp, BodyKind::Json).await?;
        if status == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        self.check_status(&request, status, &bytes)?;
        self.decode(&request, &bytes).map(Some)
    }

    // ---- plumbing -------------------------------------------------------------------------

    fn url(&self, segments: &[&str]) -> Url {
        let mut url = self.base.clone();
        if let Ok(mut segs) = url.path_segments_mut() {
            segs.pop_if_empty();
            segs.extend(segments);
        }
        url
    }

    fn req(&self, method: Method, segments: &[&str]) -> RequestBuilder {
        self.http.request(method, self.url(segments))
    }

    /// Sends a request that must reach ComfyUI at most once (a submit, a global interrupt,
    /// an upload).
    async fn send(&self, request: &str, rb: RequestBuilder) -> Result<Response, ClientError> {
        rb.send().await.map_err(|e| self.transport_err(request, e))
    }

    /// Sends a request that is safe to repeat (a read, a delete or interrupt by id). When
    /// the pooled keep-alive connection it went out on turns out closed (ComfyUI or a proxy
    /// dropped it while idle: no response at all), it is repeated once on a fresh
    /// connection; any other failure, and a second one, is returned as it is.
    async fn send_repeatable(
        &self,
        request: &str,
        rb: RequestBuilder,
    ) -> Result<Response, ClientError> {
        let Some(again) = rb.try_clone() else {
            return self.send(request, rb).await;
        };
        match rb.send().await {
            Err(e) if stale_connection(&e) => {
                tracing::debug!(url = %self.display, request, "pooled connection was closed; repeating once");
                self.send(request, again).await
            }
            other => other.map_err(|e| self.transport_err(request, e)),
        }
    }

    /// The whole body, read chunk by chunk and refused as soon as it passes the cap of
    /// `kind` (a larger `Content-Length` is refused before reading anything).
    async fn body(
        &self,
        request: &str,
        mut resp: Response,
        kind: BodyKind,
    ) -> Result<bytes::Bytes, ClientError> {
        self.check_length(request, &resp, kind)?;
        let (limit, _) = kind.limit(&self.limits);
        let mut buf = bytes::BytesMut::new();
        while let Some(chunk) = resp
            .chunk()
            .await
            .map_err(|e| self.transport_err(request, e))?
        {
            if (buf.len() + chunk.len()) as u64 > limit {
                return Err(self.too_large(request, kind));
            }
            buf.extend_from_slice(&chunk);
        }
        Ok(buf.freeze())
    }

    fn check_length(
        &self,
        request: &str,
        resp: &Response,
        kind: BodyKind,
    ) -> Result<(), ClientError> {
        let (limit, _) = kind.limit(&self.limits);
        match resp.content_length() {
            Some(len) if len > limit => Err(self.too_large(request, kind)),
            _ => Ok(()),
        }
    }

    fn too_large(&self, request: &str, kind: BodyKind) -> ClientError {
        let (limit, setting) = kind.limit(&self.limits);
        ClientError::TooLarge {
            url: self.display.clone(),
            request: request.to_owned(),
            limit,
            limit_mib: limit >> 20,
            setting,
        }
    }

    async fn get_json<T: DeserializeOwned>(
        &self,
        request: &str,
        segments: &[&str],
        kind: BodyKind,
    ) -> Result<T, ClientError> {
        let resp = self
            .send_repeatable(request, self.req(Method::GET, segments))
            .await?;
        let status = resp.status();
        let bytes = self.body(request, resp, kind).await?;
        self.check_status(request, status, &bytes)?;
        self.decode(request, &bytes)
    }

    async fn expect_success(&self, request: &str, resp: Response) -> Result<(), ClientError> {
        let status = resp.status();
        let bytes = self.body(request, resp, BodyKind::Json).await?;
        self.check_status(request, status, &bytes)
    }

    fn check_status(
        &self,
        request: &str,
        status: StatusCode,
        bytes: &[u8],
    ) -> Result<(), ClientError> {
        if status.is_success() {
            return Ok(());
        }
        Err(self.status_err(request, status, bytes))
    }

    fn status_err(&self, request: &str, status: StatusCode, bytes: &[u8]) -> ClientError {
        ClientError::Http {
            url: self.display.clone(),
            request: request.to_owned(),
            status: status.as_u16(),
            body: truncate_body(&String::from_utf8_lossy(bytes)),
        }
    }

    fn decode<T: DeserializeOwned>(&self, request: &str, bytes: &[u8]) -> Result<T, ClientError> {
        serde_json::from_slice(bytes).map_err(|e| self.decode_err(request, e))
    }

    fn decode_err(
        &self,
        request: &str,
        e: impl std::error::Error + Send + Sync + 'static,
    ) -> ClientError {
        ClientError::Decode {
            url: self.display.clone(),
            request: request.to_owned(),
            source: Box::new(e),
        }
    }

    fn transport_err(&self, request: &str, e: reqwest::Error) -> ClientError {
        let e = e.without_url();
        if e.is_timeout() {
            ClientError::Timeout {
                url: self.display.clone(),
                request: request.to_owned(),
                after: self.timeout,
            }
        } else if e.is_decode() {
            ClientError::Decode {
                url: self.display.clone(),
                request: request.to_owned(),
                source: Box::new(chain(&e)),
            }
        } else {
            ClientError::Unreachable {
                url: self.display.clone(),
                request: request.to_owned(),
                source: Box::new(chain(&e)),
            }
        }
    }
}

/// Whether a failed request went out on a pooled connection that was already closed: the
/// connection ended before any response (hyper's "incomplete message"), or was reset.
/// Typed checks on the error chain, never its text.
fn stale_connection(e: &reqwest::Error) -> bool {
    if e.is_timeout() || e.is_connect() {
        return false;
    }
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    while let Some(err) = source {
        if let Some(h) = err.downcast_ref::<hyper::Error>()
            && h.is_incomplete_message()
        {
            return true;
        }
        if let Some(io) = err.downcast_ref::<std::io::Error>()
            && matches!(
                io.kind(),
                std::io::ErrorKind::ConnectionReset
                    | std::io::ErrorKind::ConnectionAborted
                    | std::io::ErrorKind::BrokenPipe
            )
        {
            return true;
        }
        source = err.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn transcript(name: &str) -> Value {
        let path = format!(
            "{}/../../tests/transcripts/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
    }

    #[test]
    fn url_segments_are_encoded_and_prefixed() {
        let cfg = ComfyConfig::new("http://127.0.0.1:1/pre/").unwrap();
        let c = ComfyClient::new(&cfg).unwrap();
        assert_eq!(
            c.url(&["history", "a/b?c"]).as_str(),
            "http://127.0.0.1:1/pre/history/a%2Fb%3Fc"
        );
        assert_eq!(c.url(&["prompt"]).as_str(), "http://127.0.0.1:1/pre/prompt");
    }

    #[test]
    fn history_outcomes_from_transcripts() {
        let cases = [
            ("history_success.json", "success"),
            ("history_execution_error.json", "error"),
            ("history_interrupt_during_sampling.json", "interrupted"),
        ];
        for (file, want) in cases {
            let t = transcript(file);
            let (id, raw) = t["response"]["json"]
                .as_object()
                .unwrap()
                .iter()
                .next()
                .map(|(k, v)| (k.clone(), v.clone()))
                .unwrap();
            let raw: RawHistoryEntry = serde_json::from_value(raw).unwrap();
            let status = raw.status.unwrap();
            let messages: Vec<Event> = status
                .messages
                .into_iter()
                .map(|m| {
                    let a = m.as_array().unwrap();
                    parse_message(a[0].as_str().unwrap(), a[1].clone()).unwrap()
                })
                .collect();
            let entry = HistoryEntry {
                prompt_id: id,
                outputs: raw
                    .outputs
                    .into_iter()
                    .map(|(k, v)| {
                        (
                            k,
                            serde_json::from_value(v["images"].clone()).unwrap_or_default(),
                        )
                    })
                    .collect(),
                status_str: status.status_str,
                completed: status.completed,
                messages,
            };
            let got = match entry.outcome() {
                HistoryOutcome::Success => "success",
                HistoryOutcome::Error(info) => {
                    assert_eq!(info.node_type.as_deref(), Some("ImageToMask"));
                    assert_eq!(info.exception_type, "IndexError");
                    "error"
                }
                HistoryOutcome::Interrupted { node_type, .. } => {
                    assert_eq!(node_type.as_deref(), Some("KSampler"));
                    "interrupted"
                }
            };
            assert_eq!(got, want, "{file}");
            assert!(entry.start_timestamp().is_some(), "{file}");
            assert!(entry.end_timestamp() >= entry.start_timestamp(), "{file}");
            if want == "success" {
                assert_eq!(
                    entry.images(),
                    vec![ImageRef::output("invert_00001_.png", "mcp_test")]
                );
            }
        }
    }

    #[test]
    fn queue_pending_heap_is_sorted_into_run_order() {
        let t = transcript("queue_snapshot_running_and_pending.json");
        let bytes = serde_json::to_vec(&t["response"]["json"]).unwrap();
        let q: QueueSnapshot = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(q.running().len(), 1);
        let numbers: Vec<f64> = q.pending().iter().map(|e| e.number).collect();
        assert_eq!(numbers, vec![-30.0, 26.0, 27.0, 28.0, 29.0]);
        assert_eq!(q.pending()[0].client_id.as_deref(), Some("queue-9cd422"));
        assert_eq!(q.position(&q.pending()[0].prompt_id.clone()), Some(1));
    }
}
