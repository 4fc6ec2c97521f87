//! The streamable HTTP transport: rmcp's `StreamableHttpService` mounted at `/mcp` in an
//! axum router, behind a guard that checks `Host`, `Origin` and the bearer token.
//!
//! Invariants: a request whose `Host` is not a loopback name, the bound address or a
//! configured host, that carries more than one `Host`, whose absolute-form target names
//! any other host, or whose `Origin` (when present) is not allowed, gets 403 (400 for
//! several `Host`s) before anything else (DNS-rebinding protection); with a token
//! configured, a request without `Authorization: Bearer <token>` gets 401 with
//! `WWW-Authenticate: Bearer`, and the token comparison takes the same time whatever the
//! guess; the server refuses to start on a non-loopback address without a token.
//! A refused request's body is read (up to the message size limit) before the answer, so
//! a client reusing the connection finds it in a sane state; a larger body closes it.
//! A JSON body is read up to [`McpOptions::max_request_bytes`] (413 beyond, with a
//! JSON-RPC error) and checked by [`framing::inspect`] before rmcp sees it: invalid JSON
//! is 400 with `-32700`, an invalid request 400 with `-32600` (with its id when readable),
//! params of the wrong shape 400 with `-32602`. Exactly one line goes to stderr outside tracing:
//! `listening on http://ADDR/mcp`, with the real port.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use anyhow::Context as _;
use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::serve::ListenerExt as _;
use rmcp::model::RequestId;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::{StreamableHttpServerConfig, StreamableHttpService};
use sha2::{Digest, Sha256};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::framing::{self, Inspection, Rejection};
use super::options::McpOptions;
use super::server::McpServer;
use super::shared::Shared;
use crate::app::App;

/// The path the MCP endpoint is mounted at.
pub const MCP_PATH: &str = "/mcp";

/// Why the HTTP server will not start.
#[derive(Debug, thiserror::Error)]
pub enum HttpStartError {
    /// A non-loopback address without a token would expose generation to the network.
    #[error(
        "refusing to serve MCP over HTTP on {addr} without a token: that address is reachable from other machines. \
         Set COMFYUI_MCP_HTTP_TOKEN (or --http-token) to a secret clients send as `Authorization: Bearer <token>`, \
         or bind a loopback address such as 127.0.0.1"
    )]
    ExposedWithoutToken {
        /// The requested address.
        addr: SocketAddr,
    },
}

/// Checks that serving on `addr` is safe with these options.
pub fn check_exposure(addr: SocketAddr, options: &McpOptions) -> Result<(), HttpStartError> {
    let has_token = options.http_token.as_deref().is_some_and(|t| !t.is_empty());
    if !addr.ip().is_loopback() && !has_token {
        return Err(HttpStartError::ExposedWithoutToken { addr });
    }
    Ok(())
}

/// Binds `addr`, prints `listening on http://ADDR/mcp` to stderr, and serves MCP over
/// streamable HTTP until ctrl-c.
pub async fn serve_http(
    app: Arc<App>,
    options: McpOptions,
    addr: SocketAddr,
) -> anyhow::Result<()> {
    check_exposure(addr, &options)?;
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("could not listen on {addr}"))?;
    let local = listener.local_addr().context("bound address")?;
    // The one line on stderr that is not a log record: callers parse it for the port.
    eprintln!("listening on http://{local}{MCP_PATH}");
    let shutdown = CancellationToken::new();
    let on_signal = shutdown.clone();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            tracing::info!("ctrl-c: shutting the HTTP server down");
            on_signal.cancel();
        }
    });
    serve_http_on(app, options, listener, shutdown).await
}

/// Serves MCP over streamable HTTP on an already bound listener until `shutdown` fires;
/// open streams are closed and in-flight requests finish first.
pub async fn serve_http_on(
    app: Arc<App>,
    options: McpOptions,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let local = listener.local_addr().context("bound address")?;
    check_exposure(local, &options)?;
    let router = router(app, options, local, shutdown.clone());
    tracing::info!(addr = %local, "serving MCP over streamable HTTP at {MCP_PATH}");
    // Responses are streamed in small SSE chunks: without TCP_NODELAY, Nagle's algorithm
    // and delayed ACKs add ~40 ms to every call.
    let listener = listener.tap_io(|tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "could not set TCP_NODELAY");
        }
    });
    axum::serve(listener, router)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
        .context("the HTTP server failed")?;
    Ok(())
}

/// The axum router: `/mcp` behind the guard. `bound` is the listening address (its IP is
/// an accepted `Host`); cancelling `shutdown` ends every session and stream.
pub fn router(
    app: Arc<App>,
    options: McpOptions,
    bound: SocketAddr,
    shutdown: CancellationToken,
) -> Router {
    let guard = Arc::new(Guard::new(&options, bound));
    let checks = Arc::new(BodyChecks {
        limit: options.max_request_bytes,
        in_flight: Mutex::default(),
    });
    let shared = Shared::new(app, options);
    // Host and Origin are checked by the guard, in front of everything.
    let config = StreamableHttpServerConfig::default()
        .disable_allowed_hosts()
        .with_cancellation_token(shutdown.child_token());
    let service = StreamableHttpService::new(
        move || Ok(McpServer::with_shared(shared.clone())),
        Arc::new(LocalSessionManager::default()),
        config,
    );
    Router::new()
        .route_service(MCP_PATH, service)
        .layer(axum::middleware::from_fn_with_state(checks, check_bodies))
        .layer(axum::middleware::from_fn_with_state(guard, guard_requests))
}

/// Who may talk to the endpoint.
#[derive(Debug)]
pub struct Guard {
    token_digest: Option<[u8; 32]>,
    hosts: Vec<String>,
    origins: Vec<String>,
    bound: SocketAddr,
    /// How much of a refused request's body is read before answering.
    drain_limit: usize,
}

/// Why a request was turned away.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// More than one `Host` header (400).
    #[error("the request carries {0} Host headers; send exactly one")]
    SeveralHosts(usize),
    /// An absolute-form target naming a host that is not allowed (403).
    #[error(
        "the request target names host `{0}`, which is not allowed: this server answers to loopback names, its bound address and COMFYUI_MCP_ALLOWED_HOSTS"
    )]
    Target(String),
    /// Bad or missing `Host` (403).
    #[error(
        "Host `{0}` is not allowed: this server answers to loopback names, its bound address and COMFYUI_MCP_ALLOWED_HOSTS"
    )]
    Host(String),
    /// Bad `Origin` (403).
    #[error(
        "Origin `{0}` is not allowed: browser pages may only call this server from an allowed host"
    )]
    Origin(String),
    /// Missing or wrong token (401).
    #[error(
        "missing or wrong bearer token: send `Authorization: Bearer <token>` with the token the server was started with"
    )]
    Token,
}

const LOOPBACK_NAMES: [&str; 3] = ["localhost", "127.0.0.1", "::1"];

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// Splits `host[:port]` / `[v6][:port]` into a lower-case host (no brackets) and port.
fn split_authority(authority: &str) -> (String, Option<&str>) {
    let authority = authority.trim();
    if let Some(rest) = authority.strip_prefix('[') {
        if let Some((host, after)) = rest.split_once(']') {
            return (host.to_ascii_lowercase(), after.strip_prefix(':'));
        }
        return (rest.to_ascii_lowercase(), None);
    }
    match authority.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') => (host.to_ascii_lowercase(), Some(port)),
        _ => (authority.to_ascii_lowercase(), None),
    }
}

impl Guard {
    /// A guard for a server bound to `bound`.
    pub fn new(options: &McpOptions, bound: SocketAddr) -> Self {
        Self {
            token_digest: options
                .http_token
                .as_deref()
                .filter(|t| !t.is_empty())
                .map(digest),
            hosts: options
                .allowed_hosts
                .iter()
                .map(|h| h.trim().to_ascii_lowercase())
                .filter(|h| !h.is_empty())
                .collect(),
            origins: options
                .allowed_origins
                .iter()
                .map(|o| o.trim().trim_end_matches('/').to_ascii_lowercase())
                .filter(|o| !o.is_empty())
                .collect(),
            bound,
            drain_limit: options.max_request_bytes,
        }
    }

    fn host_name_allowed(&self, host: &str, port: Option<&str>) -> bool {
        if LOOPBACK_NAMES.contains(&host) || host == self.bound.ip().to_string() {
            return true;
        }
        self.hosts.iter().any(|entry| {
            let (name, entry_port) = split_authority(entry);
            name == host && (entry_port.is_none() || entry_port == port)
        })
    }

    /// Checks one request's target and headers.
    pub fn check(&self, uri: &Uri, headers: &HeaderMap) -> Result<(), Refusal> {
        let hosts = headers.get_all(header::HOST).iter().count();
        if hosts > 1 {
            return Err(Refusal::SeveralHosts(hosts));
        }
        // An absolute-form target (or HTTP/2 `:authority`) is the host the request is
        // for, whatever `Host` says: it must be allowed too.
        if let Some(authority) = uri.authority() {
            let (name, port) = split_authority(authority.as_str());
            if name.is_empty() || !self.host_name_allowed(&name, port) {
                return Err(Refusal::Target(authority.to_string()));
            }
        }
        match headers.get(header::HOST) {
            Some(host) => {
                let host = host.to_str().unwrap_or("<not text>");
                let (name, port) = split_authority(host);
                if name.is_empty() || !self.host_name_allowed(&name, port) {
                    return Err(Refusal::Host(host.to_owned()));
                }
            }
            None if uri.authority().is_some() => {}
            None => return Err(Refusal::Host(String::new())),
        }
        if let Some(origin) = headers.get(header::ORIGIN) {
            let origin = origin.to_str().unwrap_or("<not text>");
            if !self.origin_allowed(origin) {
                return Err(Refusal::Origin(origin.to_owned()));
            }
        }
        if let Some(expected) = &self.token_digest {
            let given = headers
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| {
                    let (scheme, token) = v.trim().split_once(' ')?;
                    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
                })
                .unwrap_or("");
            if !constant_time_eq(&digest(given), expected) {
                return Err(Refusal::Token);
            }
        }
        Ok(())
    }

    fn origin_allowed(&self, origin: &str) -> bool {
        let normalized = origin.trim().trim_end_matches('/').to_ascii_lowercase();
        if self.origins.contains(&normalized) {
            return true;
        }
        let Some((scheme, authority)) = normalized.split_once("://") else {
            return false;
        };
        if scheme != "http" && scheme != "https" {
            return false;
        }
        let (host, port) = split_authority(authority);
        !host.is_empty() && self.host_name_allowed(&host, port)
    }
}

fn constant_time_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn guard_requests(State(guard): State<Arc<Guard>>, request: Request, next: Next) -> Response {
    match guard.check(request.uri(), request.headers()) {
        Ok(()) => next.run(request).await,
        Err(refusal) => {
            tracing::warn!(method = %request.method(), uri = %request.uri(), %refusal, "HTTP request refused");
            let drained = drain(request.into_body(), guard.drain_limit).await;
            let mut response = refusal_response(&refusal);
            if !drained {
                response
                    .headers_mut()
                    .insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            response
        }
    }
}

/// Reads and drops a body of at most `limit` bytes; false when it is larger or broken (the
/// connection must then be closed).
async fn drain(body: Body, limit: usize) -> bool {
    use futures_util::StreamExt as _;
    let mut chunks = body.into_data_stream();
    let mut seen = 0usize;
    while let Some(chunk) = chunks.next().await {
        match chunk {
            Ok(data) => {
                seen = seen.saturating_add(data.len());
                if seen > limit {
                    return false;
                }
            }
            Err(_) => return false,
        }
    }
    true
}

/// The header naming a request's MCP session.
const SESSION_HEADER: &str = "mcp-session-id";

/// State of the body checks: the size limit, and the request ids of each session whose
/// response stream is still open.
#[derive(Debug)]
struct BodyChecks {
    limit: usize,
    in_flight: Mutex<HashSet<(String, RequestId)>>,
}

/// Frees a session's request id when its response stream ends (or is dropped).
struct InFlightEntry {
    checks: Arc<BodyChecks>,
    key: Option<(String, RequestId)>,
}

impl Drop for InFlightEntry {
    fn drop(&mut self) {
        if let Some(key) = self.key.take() {
            self.checks
                .in_flight
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&key);
        }
    }
}

/// Caps and checks JSON-RPC bodies of POST requests before rmcp reads them, and refuses a
/// request whose id is already in flight in the same session (the first one's stream
/// would otherwise never end).
async fn check_bodies(
    State(checks): State<Arc<BodyChecks>>,
    request: Request,
    next: Next,
) -> Response {
    let limit = checks.limit;
    let is_json = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(';')
                .next()
                .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"))
        });
    if request.method() != Method::POST || !is_json {
        return next.run(request).await;
    }
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return too_large(&[], limit);
    }
    let (parts, body) = request.into_parts();
    let bytes = match axum::body::to_bytes(body, limit).await {
        Ok(bytes) => bytes,
        Err(_) => return too_large(&[], limit),
    };
    let session = parts
        .headers
        .get(SESSION_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let mut entry = None;
    let answer = match framing::inspect(&bytes) {
        Inspection::Request(id) if session.is_some() => {
            let key = (session.unwrap_or_default(), id.clone());
            let fresh = checks
                .in_flight
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(key.clone());
            if fresh {
                entry = Some(InFlightEntry {
                    checks: checks.clone(),
                    key: Some(key),
                });
                None
            } else {
                tracing::debug!(%id, "refused an HTTP request whose id is already in flight in its session");
                Some(framing::duplicate(&id).to_json())
            }
        }
        Inspection::Reject(rejection) => Some(rejection.to_json()),
        // A batch of notifications only: nothing to answer (JSON-RPC §6).
        Inspection::Batch(rejections) if rejections.is_empty() => {
            return StatusCode::ACCEPTED.into_response();
        }
        Inspection::Batch(rejections) => Some(serde_json::Value::Array(
            rejections.iter().map(Rejection::to_json).collect(),
        )),
        Inspection::Request(_)
        | Inspection::Notification { .. }
        | Inspection::Response
        | Inspection::Drop(_) => None,
    };
    if let Some(body) = answer {
        tracing::debug!(%body, "HTTP JSON-RPC message refused");
        return json_response(StatusCode::BAD_REQUEST, body.to_string());
    }
    let response = next
        .run(Request::from_parts(parts, Body::from(bytes)))
        .await;
    match entry {
        None => response,
        // The id stays in flight until the response stream has ended.
        Some(entry) => {
            use futures_util::StreamExt as _;
            let (parts, body) = response.into_parts();
            let stream = body.into_data_stream().map(move |chunk| {
                let _held = &entry;
                chunk
            });
            Response::from_parts(parts, Body::from_stream(stream))
        }
    }
}

fn too_large(prefix: &[u8], limit: usize) -> Response {
    let mut response = json_response(
        StatusCode::PAYLOAD_TOO_LARGE,
        framing::oversized(prefix, limit).to_json().to_string(),
    );
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

fn json_response(status: StatusCode, body: String) -> Response {
    (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response()
}

fn refusal_response(refusal: &Refusal) -> Response {
    let status = match refusal {
        Refusal::Token => StatusCode::UNAUTHORIZED,
        Refusal::SeveralHosts(_) => StatusCode::BAD_REQUEST,
        Refusal::Host(_) | Refusal::Origin(_) | Refusal::Target(_) => StatusCode::FORBIDDEN,
    };
    let body = serde_json::json!({"error": refusal.to_string()}).to_string();
    let mut response = (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response();
    if status == StatusCode::UNAUTHORIZED {
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"comfyui-mcp\""),
        );
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guard(token: Option<&str>, hosts: &[&str], origins: &[&str]) -> Guard {
        let options = McpOptions {
            http_token: token.map(str::to_owned),
            allowed_hosts: hosts.iter().map(|s| s.to_string()).collect(),
            allowed_origins: origins.iter().map(|s| s.to_string()).collect(),
            ..McpOptions::default()
        };
        Guard::new(&options, "127.0.0.1:8765".parse().unwrap())
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn loopback_hosts_pass_and_foreign_hosts_are_refused() {
        let g = guard(None, &[], &[]);
        for host in [
            "127.0.0.1:8765",
            "localhost:8765",
            "[::1]:8765",
            "LOCALHOST",
        ] {
            assert_eq!(
                g.check(&Uri::from_static("/mcp"), &headers(&[("host", host)])),
                Ok(()),
                "{host}"
            );
        }
        for host in ["evil.example", "evil.example:8765", "127.0.0.2:8765", ""] {
            assert!(
                matches!(
                    g.check(&Uri::from_static("/mcp"), &headers(&[("host", host)])),
                    Err(Refusal::Host(_))
                ),
                "{host}"
            );
        }
        assert!(matches!(
            g.check(&Uri::from_static("/mcp"), &HeaderMap::new()),
            Err(Refusal::Host(_))
        ));
    }

    #[test]
    fn configured_hosts_match_with_or_without_port() {
        let g = guard(None, &["mcp.example.com", "box.lan:9000"], &[]);
        assert_eq!(
            g.check(
                &Uri::from_static("/mcp"),
                &headers(&[("host", "mcp.example.com:443")])
            ),
            Ok(())
        );
        assert_eq!(
            g.check(
                &Uri::from_static("/mcp"),
                &headers(&[("host", "box.lan:9000")])
            ),
            Ok(())
        );
        assert!(
            g.check(
                &Uri::from_static("/mcp"),
                &headers(&[("host", "box.lan:9001")])
            )
            .is_err()
        );
    }

    #[test]
    fn origins_must_be_on_an_allowed_host() {
        let g = guard(None, &[], &["https://app.example.com"]);
        let ok = |o: &str| {
            g.check(
                &Uri::from_static("/mcp"),
                &headers(&[("host", "127.0.0.1:8765"), ("origin", o)]),
            )
        };
        assert_eq!(ok("http://localhost:3000"), Ok(()));
        assert_eq!(ok("https://app.example.com/"), Ok(()));
        assert!(matches!(ok("http://evil.example"), Err(Refusal::Origin(_))));
        assert!(matches!(ok("null"), Err(Refusal::Origin(_))));
        assert!(matches!(ok("file://localhost"), Err(Refusal::Origin(_))));
    }

    #[test]
    fn token_is_required_when_configured() {
        let g = guard(Some("s3cret"), &[], &[]);
        let with = |auth: Option<&str>| {
            let mut h = headers(&[("host", "127.0.0.1:8765")]);
            if let Some(a) = auth {
                h.insert(header::AUTHORIZATION, HeaderValue::from_str(a).unwrap());
            }
            g.check(&Uri::from_static("/mcp"), &h)
        };
        assert_eq!(with(Some("Bearer s3cret")), Ok(()));
        assert_eq!(with(Some("bearer s3cret")), Ok(()));
        assert_eq!(with(Some("Bearer wrong")), Err(Refusal::Token));
        assert_eq!(with(Some("Basic s3cret")), Err(Refusal::Token));
        assert_eq!(with(None), Err(Refusal::Token));
        // Host is checked before the token.
        let h = headers(&[("host", "evil.example")]);
        assert!(matches!(
            g.check(&Uri::from_static("/mcp"), &h),
            Err(Refusal::Host(_))
        ));
    }

    #[test]
    fn several_hosts_and_foreign_absolute_targets_are_refused() {
        let g = guard(None, &[], &[]);
        let mut h = headers(&[("host", "127.0.0.1:8765")]);
        h.append(header::HOST, HeaderValue::from_static("evil.example"));
        let mcp = Uri::from_static("/mcp");
        assert_eq!(g.check(&mcp, &h), Err(Refusal::SeveralHosts(2)));
        let h = headers(&[("host", "127.0.0.1:8765")]);
        let foreign = Uri::from_static("http://evil.example/mcp");
        assert!(matches!(g.check(&foreign, &h), Err(Refusal::Target(_))));
        let own = Uri::from_static("http://127.0.0.1:8765/mcp");
        assert_eq!(g.check(&own, &h), Ok(()));
        assert_eq!(g.check(&own, &HeaderMap::new()), Ok(()));
    }

    #[test]
    fn refusals_map_to_401_and_403() {
        let r = refusal_response(&Refusal::Token);
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        assert!(
            r.headers()[header::WWW_AUTHENTICATE]
                .to_str()
                .unwrap()
                .starts_with("Bearer")
        );
        assert_eq!(
            refusal_response(&Refusal::Host("x".into())).status(),
            StatusCode::FORBIDDEN
        );
    }

    #[test]
    fn exposure_needs_a_token_off_loopback() {
        let open = McpOptions::default();
        let with_token = McpOptions {
            http_token: Some("t".into()),
            ..McpOptions::default()
        };
        assert!(check_exposure("127.0.0.1:0".parse().unwrap(), &open).is_ok());
        assert!(check_exposure("[::1]:0".parse().unwrap(), &open).is_ok());
        let e = check_exposure("0.0.0.0:0".parse().unwrap(), &open).unwrap_err();
        assert!(e.to_string().contains("COMFYUI_MCP_HTTP_TOKEN"), "{e}");
        assert!(check_exposure("0.0.0.0:0".parse().unwrap(), &with_token).is_ok());
    }
}
