//! The streamable HTTP transport: rmcp's `StreamableHttpService` mounted at `/mcp` in an
//! axum router, behind a guard that checks `Host`, `Origin` and the bearer token.
//!
//! Invariants: a request whose `Host` is not a loopback name, the bound address or a
//! configured host, or whose `Origin` (when present) is not allowed, gets 403 before
//! anything else (DNS-rebinding protection); with a token configured, a request without
//! `Authorization: Bearer <token>` gets 401 with `WWW-Authenticate: Bearer`, and the token
//! comparison takes the same time whatever the guess; the server refuses to start on a
//! non-loopback address without a token. Exactly one line goes to stderr outside tracing:
//! `listening on http://ADDR/mcp`, with the real port.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context as _;
use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::serve::ListenerExt as _;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::{StreamableHttpServerConfig, StreamableHttpService};
use sha2::{Digest, Sha256};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::server::Shared;
use super::{McpOptions, McpServer};
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
        .layer(axum::middleware::from_fn_with_state(guard, guard_requests))
}

/// Who may talk to the endpoint.
#[derive(Debug)]
pub struct Guard {
    token_digest: Option<[u8; 32]>,
    hosts: Vec<String>,
    origins: Vec<String>,
    bound: SocketAddr,
}

/// Why a request was turned away.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
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

    /// Checks one request's headers.
    pub fn check(&self, headers: &HeaderMap) -> Result<(), Refusal> {
        let host = headers
            .get(header::HOST)
            .map(|h| h.to_str().unwrap_or("<not text>"))
            .unwrap_or("");
        let (name, port) = split_authority(host);
        if name.is_empty() || !self.host_name_allowed(&name, port) {
            return Err(Refusal::Host(host.to_owned()));
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
    match guard.check(request.headers()) {
        Ok(()) => next.run(request).await,
        Err(refusal) => {
            tracing::warn!(method = %request.method(), uri = %request.uri(), %refusal, "HTTP request refused");
            refusal_response(&refusal)
        }
    }
}

fn refusal_response(refusal: &Refusal) -> Response {
    let status = match refusal {
        Refusal::Token => StatusCode::UNAUTHORIZED,
        Refusal::Host(_) | Refusal::Origin(_) => StatusCode::FORBIDDEN,
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
            assert_eq!(g.check(&headers(&[("host", host)])), Ok(()), "{host}");
        }
        for host in ["evil.example", "evil.example:8765", "127.0.0.2:8765", ""] {
            assert!(
                matches!(g.check(&headers(&[("host", host)])), Err(Refusal::Host(_))),
                "{host}"
            );
        }
        assert!(matches!(g.check(&HeaderMap::new()), Err(Refusal::Host(_))));
    }

    #[test]
    fn configured_hosts_match_with_or_without_port() {
        let g = guard(None, &["mcp.example.com", "box.lan:9000"], &[]);
        assert_eq!(
            g.check(&headers(&[("host", "mcp.example.com:443")])),
            Ok(())
        );
        assert_eq!(g.check(&headers(&[("host", "box.lan:9000")])), Ok(()));
        assert!(g.check(&headers(&[("host", "box.lan:9001")])).is_err());
    }

    #[test]
    fn origins_must_be_on_an_allowed_host() {
        let g = guard(None, &[], &["https://app.example.com"]);
        let ok = |o: &str| g.check(&headers(&[("host", "127.0.0.1:8765"), ("origin", o)]));
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
            g.check(&h)
        };
        assert_eq!(with(Some("Bearer s3cret")), Ok(()));
        assert_eq!(with(Some("bearer s3cret")), Ok(()));
        assert_eq!(with(Some("Bearer wrong")), Err(Refusal::Token));
        assert_eq!(with(Some("Basic s3cret")), Err(Refusal::Token));
        assert_eq!(with(None), Err(Refusal::Token));
        // Host is checked before the token.
        let h = headers(&[("host", "evil.example")]);
        assert!(matches!(g.check(&h), Err(Refusal::Host(_))));
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
