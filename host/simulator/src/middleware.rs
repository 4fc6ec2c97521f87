//! The request pipeline in front of the simulated ComfyUI routes, in order:
//! 1. buffer the body (100 MiB limit) and record the request;
//! 2. injected faults: delay, then failing status;
//! 3. the optional bearer-token check (an authenticating proxy in front of ComfyUI);
//! 4. ComfyUI's own origin check: a request whose `Origin` host differs from `Host` (when
//!    `Host` is loopback) gets 403 with an empty body, websocket upgrades included; `OPTIONS`
//!    is answered 200 here;
//! 5. the routes, then a `Server` header naming the simulator on every answer.

use axum::body::{Body, to_bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::Value;
use std::net::IpAddr;
use std::sync::Arc;

use crate::config::MAX_UPLOAD_BYTES;
use crate::faults::lock;
use crate::state::Shared;

/// One HTTP request as the simulator received it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RecordedRequest {
    /// `GET`, `POST`, ...
    pub method: String,
    /// The path as sent, including any configured prefix (e.g. `/comfy/api/prompt`).
    pub path: String,
    /// The raw query string, if any.
    pub query: Option<String>,
    /// The `Authorization` header, if any.
    pub authorization: Option<String>,
    /// The body parsed as JSON, if it was JSON.
    pub body: Option<Value>,
    /// When the request arrived (for latency benchmarks).
    #[serde(skip)]
    pub received_at: std::time::Instant,
}

/// A `text/plain; charset=utf-8` response.
pub(crate) fn text_response(status: StatusCode, body: impl Into<String>) -> Response {
    let mut resp = (status, body.into()).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

/// aiohttp's answer to an unknown route.
pub(crate) async fn not_found() -> Response {
    text_response(StatusCode::NOT_FOUND, "404: Not Found")
}

/// The whole pipeline as one axum middleware.
pub(crate) async fn pipeline(
    State(shared): State<Arc<Shared>>,
    req: Request,
    next: Next,
) -> Response {
    let (parts, body) = req.into_parts();
    let Ok(bytes) = to_bytes(body, MAX_UPLOAD_BYTES).await else {
        return text_response(
            StatusCode::PAYLOAD_TOO_LARGE,
            "413: Request Entity Too Large",
        );
    };
    let header_str = |name: header::HeaderName| {
        parts
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let authorization = header_str(header::AUTHORIZATION);
    lock(&shared.recorder).requests.push(RecordedRequest {
        method: parts.method.to_string(),
        path: parts.uri.path().to_string(),
        query: parts.uri.query().map(str::to_string),
        authorization: authorization.clone(),
        body: serde_json::from_slice(&bytes).ok(),
        received_at: std::time::Instant::now(),
    });
    tracing::debug!(method = %parts.method, uri = %parts.uri, "request");

    let (delay, failure) = {
        let mut f = lock(&shared.faults);
        (f.http_delay, f.take_http_failure())
    };
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    if let Some(code) = failure {
        let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let reason = status.canonical_reason().unwrap_or("Error");
        return text_response(
            status,
            format!(
                "{} {reason}\n\nInjected fault (comfyui-mcp simulator)",
                status.as_u16()
            ),
        );
    }

    if let Some(key) = &shared.api_key
        && authorization.as_deref() != Some(format!("Bearer {key}").as_str())
    {
        let mut resp = text_response(StatusCode::UNAUTHORIZED, "401: Unauthorized");
        resp.headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        return with_server_header(resp);
    }

    if origin_rejected(&parts.headers) {
        return with_server_header(StatusCode::FORBIDDEN.into_response());
    }
    if parts.method == Method::OPTIONS {
        return with_server_header(StatusCode::OK.into_response());
    }
    let resp = next
        .run(Request::from_parts(parts, Body::from(bytes)))
        .await;
    with_server_header(resp)
}

fn with_server_header(mut resp: Response) -> Response {
    resp.headers_mut().insert(
        header::SERVER,
        HeaderValue::from_static(concat!("comfyui-mcp-simulator/", env!("CARGO_PKG_VERSION"))),
    );
    resp
}

/// ComfyUI's `origin_only_middleware` decision.
fn origin_rejected(headers: &HeaderMap) -> bool {
    let get = |name| {
        headers
            .get(name)
            .and_then(|v: &HeaderValue| v.to_str().ok())
    };
    let (Some(host), Some(origin)) = (get(header::HOST), get(header::ORIGIN)) else {
        return false;
    };
    let host_domain = host.to_lowercase();
    let origin_netloc = netloc_of_url(origin).to_lowercase();
    let (origin_host, origin_port) = split_netloc(&origin_netloc);
    let (host_host, host_port) = split_netloc(&host_domain);
    let loopback = host_host.as_deref().is_some_and(is_loopback);
    let host_cmp = if origin_port.is_none() {
        host_host.clone()
    } else {
        Some(host_domain.clone())
    };
    let origin_cmp = if host_port.is_none() {
        origin_host
    } else {
        Some(origin_netloc)
    };
    match (host_cmp, origin_cmp) {
        (Some(h), Some(o)) if loopback && !h.is_empty() && !o.is_empty() => h != o,
        _ => false,
    }
}

/// `urllib.parse.urlparse(url).netloc`.
fn netloc_of_url(url: &str) -> &str {
    let Some(pos) = url.find("//") else { return "" };
    let scheme = &url[..pos];
    if !(scheme.is_empty() || scheme.ends_with(':')) {
        return "";
    }
    let rest = &url[pos + 2..];
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    &rest[..end]
}

/// Host name and port of a netloc, like `urlsplit('//' + netloc).hostname / .port`.
fn split_netloc(netloc: &str) -> (Option<String>, Option<u16>) {
    let hostport = netloc.rsplit_once('@').map_or(netloc, |(_, h)| h);
    if hostport.is_empty() {
        return (None, None);
    }
    if let Some(rest) = hostport.strip_prefix('[') {
        let Some((host, after)) = rest.split_once(']') else {
            return (Some(rest.to_string()), None);
        };
        let port = after.strip_prefix(':').and_then(|p| p.parse().ok());
        return (Some(host.to_string()), port);
    }
    match hostport.rsplit_once(':') {
        Some((host, port)) => (Some(host.to_string()), port.parse().ok()),
        None => (Some(hostport.to_string()), None),
    }
}

fn is_loopback(host: &str) -> bool {
    match host.parse::<IpAddr>() {
        Ok(ip) => ip.is_loopback(),
        Err(_) => host == "localhost" || host.ends_with(".localhost"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(host: &str, origin: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, host.parse().unwrap());
        h.insert(header::ORIGIN, origin.parse().unwrap());
        h
    }

    #[test]
    fn origin_check_matches_the_recordings() {
        assert!(origin_rejected(&headers(
            "127.0.0.1:8188",
            "http://example.com"
        )));
        assert!(origin_rejected(&headers(
            "127.0.0.1:8188",
            "http://localhost:8188"
        )));
        assert!(!origin_rejected(&headers(
            "127.0.0.1:8188",
            "http://127.0.0.1:8188"
        )));
        assert!(!origin_rejected(&headers(
            "comfy.example.org",
            "http://evil.test"
        )));
        assert!(!origin_rejected(&headers("127.0.0.1:8188", "null")));
        assert!(!origin_rejected(&headers(
            "localhost",
            "http://localhost:3000"
        )));
        assert!(origin_rejected(&headers(
            "[::1]:8188",
            "http://example.com:8188"
        )));
    }
}
