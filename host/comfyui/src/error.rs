//! Error types of the ComfyUI client side: configuration, HTTP calls, cancellation.
//!
//! Invariant: every message names the ComfyUI URL (never with credentials), the request that
//! failed ("POST /prompt") and what came back, so a user can act on it without logs.
//! ComfyUI's own validation payload (`Rejected`) is kept intact as JSON.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;

/// Largest response body quoted in an error message.
pub const MAX_ERROR_BODY: usize = 2048;

/// A configuration value that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The ComfyUI URL cannot be parsed or uses an unsupported form.
    #[error(
        "invalid ComfyUI URL (COMFYUI_URL) `{url}`: {reason}; expected e.g. http://127.0.0.1:8188 or https://host/comfy/"
    )]
    BadUrl {
        /// The URL as given (credentials removed when parseable).
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The API key contains characters that cannot be sent in an HTTP header.
    #[error(
        "the ComfyUI API key (COMFYUI_API_KEY) contains characters that cannot be sent in an HTTP header; only printable ASCII is allowed"
    )]
    BadApiKey,
    /// A zero request timeout.
    #[error(
        "the ComfyUI request timeout (COMFYUI_MCP_REQUEST_TIMEOUT) must be greater than zero seconds"
    )]
    BadTimeout,
    /// A zero execution timeout.
    #[error("the execution timeout (COMFYUI_TIMEOUT) must be greater than zero seconds")]
    BadExecutionTimeout,
}

/// A failed call to ComfyUI.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// No connection could be made, or it broke before an answer came.
    #[error("ComfyUI at {url} is unreachable ({request}): {source}")]
    Unreachable {
        /// ComfyUI base URL.
        url: String,
        /// E.g. `POST /prompt`.
        request: String,
        /// The transport error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// No answer within the configured timeout.
    #[error(
        "ComfyUI at {url} did not answer {request} within {after:?} (raise COMFYUI_MCP_REQUEST_TIMEOUT if it is just slow)"
    )]
    Timeout {
        /// ComfyUI base URL.
        url: String,
        /// E.g. `GET /view`.
        request: String,
        /// The timeout that ran out.
        after: Duration,
    },
    /// An HTTP status other than success (and not a validation answer).
    #[error("ComfyUI at {url} answered {request} with HTTP {status}: {body}")]
    Http {
        /// ComfyUI base URL.
        url: String,
        /// E.g. `GET /queue`.
        request: String,
        /// HTTP status code.
        status: u16,
        /// Response body, truncated to [`MAX_ERROR_BODY`] bytes (`<empty>` when empty).
        body: String,
    },
    /// ComfyUI refused the workflow (`POST /prompt` → 400 with `error` and `node_errors`).
    #[error("{}", render_rejected(url, error, node_errors))]
    Rejected {
        /// ComfyUI base URL.
        url: String,
        /// ComfyUI's `error` object (`type`, `message`, `details`, `extra_info`), intact.
        error: Box<Value>,
        /// ComfyUI's `node_errors` object, intact.
        node_errors: Box<Value>,
    },
    /// The answer did not have the documented shape.
    #[error("ComfyUI at {url} sent an answer to {request} that could not be read: {source}")]
    Decode {
        /// ComfyUI base URL.
        url: String,
        /// E.g. `GET /history/{id}`.
        request: String,
        /// The parse error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// ComfyUI sent more than the configured cap for this kind of answer; the read stopped
    /// there.
    #[error(
        "ComfyUI at {url} sent more than {limit} bytes ({limit_mib} MiB) in answer to {request}; the read was stopped. Raise {setting} if this server legitimately sends more"
    )]
    TooLarge {
        /// ComfyUI base URL.
        url: String,
        /// E.g. `GET /object_info`.
        request: String,
        /// The cap, in bytes.
        limit: u64,
        /// The cap in MiB, for the message.
        limit_mib: u64,
        /// The setting that raises it (e.g. `COMFYUI_MCP_MAX_COMFY_BODY_MB`).
        setting: &'static str,
    },
    /// Writing a downloaded file failed.
    #[error("could not write {} while downloading from ComfyUI at {url} ({request}): {source}", path.display())]
    Io {
        /// ComfyUI base URL.
        url: String,
        /// E.g. `GET /view`.
        request: String,
        /// The local file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The HTTP client itself could not be built (TLS setup).
    #[error("could not set up the HTTP client for ComfyUI at {url}: {reason}")]
    Setup {
        /// ComfyUI base URL.
        url: String,
        /// What failed.
        reason: String,
    },
}

/// A cloned error keeps its variant and every field; a boxed `source` becomes its message
/// chain as text (a shared cache hands one failure to every waiter, see [`crate::cache`]).
impl Clone for ClientError {
    fn clone(&self) -> Self {
        fn text(
            e: &(dyn std::error::Error + Send + Sync),
        ) -> Box<dyn std::error::Error + Send + Sync> {
            let mut parts = vec![e.to_string()];
            let mut cur = e.source();
            while let Some(s) = cur {
                parts.push(s.to_string());
                cur = s.source();
            }
            parts.join(": ").into()
        }
        match self {
            ClientError::Unreachable {
                url,
                request,
                source,
            } => ClientError::Unreachable {
                url: url.clone(),
                request: request.clone(),
                source: text(source.as_ref()),
            },
            ClientError::Timeout {
                url,
                request,
                after,
            } => ClientError::Timeout {
                url: url.clone(),
                request: request.clone(),
                after: *after,
            },
            ClientError::Http {
                url,
                request,
                status,
                body,
            } => ClientError::Http {
                url: url.clone(),
                request: request.clone(),
                status: *status,
                body: body.clone(),
            },
            ClientError::Rejected {
                url,
                error,
                node_errors,
            } => ClientError::Rejected {
                url: url.clone(),
                error: error.clone(),
                node_errors: node_errors.clone(),
            },
            ClientError::Decode {
                url,
                request,
                source,
            } => ClientError::Decode {
                url: url.clone(),
                request: request.clone(),
                source: text(source.as_ref()),
            },
            ClientError::TooLarge {
                url,
                request,
                limit,
                limit_mib,
                setting,
            } => ClientError::TooLarge {
                url: url.clone(),
                request: request.clone(),
                limit: *limit,
                limit_mib: *limit_mib,
                setting,
            },
            ClientError::Io {
                url,
                request,
                path,
                source,
            } => ClientError::Io {
                url: url.clone(),
                request: request.clone(),
                path: path.clone(),
                source: std::io::Error::new(source.kind(), source.to_string()),
            },
            ClientError::Setup { url, reason } => ClientError::Setup {
                url: url.clone(),
                reason: reason.clone(),
            },
        }
    }
}

impl ClientError {
    /// True when ComfyUI could not be reached at all (connection refused, DNS, reset).
    pub fn is_unreachable(&self) -> bool {
        matches!(self, ClientError::Unreachable { .. })
    }
}

/// Why a cancel or interrupt request was not carried out.
#[derive(Debug, thiserror::Error)]
pub enum CancelError {
    /// The id is not a job this server submitted (nor one ComfyUI knows).
    #[error(
        "no job with prompt id {prompt_id} was submitted through this server (finished jobs are remembered only for a while)"
    )]
    NotFound {
        /// The id asked for.
        prompt_id: String,
    },
    /// The id is in ComfyUI's queue but was submitted by someone else: not touched.
    #[error(
        "job {prompt_id} is in ComfyUI's queue but was not submitted through this server; it was left untouched"
    )]
    NotOurs {
        /// The foreign job's id.
        prompt_id: String,
    },
    /// ComfyUI is running a job that someone else submitted: not touched.
    #[error(
        "ComfyUI is running job {prompt_id}, which was not submitted through this server; it was left untouched"
    )]
    RunningNotOurs {
        /// The foreign running job's id.
        prompt_id: String,
    },
    /// The job already reached a final state.
    #[error("job {prompt_id} cannot be cancelled: it has already {state}")]
    AlreadyFinished {
        /// The job.
        prompt_id: String,
        /// `completed`, `failed` or `cancelled`.
        state: String,
    },
    /// The interrupt was sent but ComfyUI did not confirm it in time.
    #[error(
        "asked ComfyUI to interrupt job {prompt_id}, but it was still running after {waited:?}; ComfyUI only stops between nodes and sampler steps, so a long node may finish first"
    )]
    NotConfirmed {
        /// The job.
        prompt_id: String,
        /// How long we waited for confirmation.
        waited: Duration,
    },
    /// Talking to ComfyUI failed.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// The job store, which holds jobs other servers submitted, could not be read: whether
    /// the job exists is not known.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

/// Renders ComfyUI's validation answer readably: the graph-level message, then each node's
/// errors with class type, input name and details.
pub fn render_rejected(url: &str, error: &Value, node_errors: &Value) -> String {
    let mut out = format!("ComfyUI at {url} rejected the workflow");
    let message = error.get("message").and_then(Value::as_str).unwrap_or("");
    let kind = error.get("type").and_then(Value::as_str).unwrap_or("");
    let details = error.get("details").and_then(Value::as_str).unwrap_or("");
    if !message.is_empty() {
        out.push_str(": ");
        out.push_str(message);
    }
    if !details.is_empty() {
        out.push_str(&format!(" ({details})"));
    }
    if !kind.is_empty() {
        out.push_str(&format!(" [{kind}]"));
    }
    for (node_id, class, e) in rejected_node_errors(node_errors) {
        let msg = e.get("message").and_then(Value::as_str).unwrap_or("error");
        let det = e.get("details").and_then(Value::as_str).unwrap_or("");
        let ty = e.get("type").and_then(Value::as_str).unwrap_or("");
        let input = e
            .get("extra_info")
            .and_then(|x| x.get("input_name"))
            .and_then(Value::as_str);
        out.push_str(&format!("\n  node {node_id} ({class})"));
        if let Some(input) = input {
            out.push_str(&format!(", input `{input}`"));
        }
        out.push_str(&format!(": {msg}"));
        if !det.is_empty() && Some(det) != input {
            out.push_str(&format!(" — {det}"));
        }
        if !ty.is_empty() {
            out.push_str(&format!(" [{ty}]"));
        }
    }
    out
}

/// Every error of ComfyUI's `node_errors` object as `(node id, class type, error)`, in the
/// answer's order (`?` for a node without a class type).
pub fn rejected_node_errors(node_errors: &Value) -> impl Iterator<Item = (&str, &str, &Value)> {
    node_errors
        .as_object()
        .into_iter()
        .flatten()
        .flat_map(|(node_id, node)| {
            let class = node
                .get("class_type")
                .and_then(Value::as_str)
                .unwrap_or("?");
            node.get("errors")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .map(move |e| (node_id.as_str(), class, e))
        })
}

/// `body` cut to at most [`MAX_ERROR_BODY`] bytes on a character boundary.
pub(crate) fn truncate_body(body: &str) -> String {
    let body = body.trim();
    if body.is_empty() {
        return "<empty>".into();
    }
    if body.len() <= MAX_ERROR_BODY {
        return body.to_owned();
    }
    let mut end = MAX_ERROR_BODY;
    while !body.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} bytes in all)", &body[..end], body.len())
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
    fn two_errors_on_one_node_render_both() {
        let t = transcript("error_two_errors_one_node.json");
        let body = &t["response"]["json"];
        let s = render_rejected("http://h/", &body["error"], &body["node_errors"]);
        assert!(s.contains("Prompt outputs failed validation"), "{s}");
        assert!(s.contains("node 3 (KSampler), input `cfg`: Value 1000.0 bigger than max of 100.0 [value_bigger_than_max]"), "{s}");
        assert!(
            s.contains("node 3 (KSampler), input `seed`: Value -5 smaller than min"),
            "{s}"
        );
    }

    #[test]
    fn graph_level_error_renders_details() {
        let t = transcript("error_unknown_class.json");
        let body = &t["response"]["json"];
        let s = render_rejected("http://h/", &body["error"], &body["node_errors"]);
        assert!(s.contains("[invalid_prompt]"), "{s}");
        assert!(s.contains("does not exist"), "{s}");
    }

    #[test]
    fn custom_validation_details_are_shown() {
        let t = transcript("error_loadimage_missing_file.json");
        let body = &t["response"]["json"];
        let s = render_rejected("http://h/", &body["error"], &body["node_errors"]);
        assert!(
            s.contains("node 1 (LoadImage), input `image`: Custom validation failed for node — image - Invalid image file: mcp_test/missing.png"),
            "{s}"
        );
    }

    #[test]
    fn truncation_keeps_char_boundaries() {
        let long = "é".repeat(3000);
        let t = truncate_body(&long);
        assert!(t.len() < 2100 && t.contains("bytes in all"));
        assert_eq!(truncate_body("  "), "<empty>");
    }
}
