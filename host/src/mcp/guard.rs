//! Who may talk to the HTTP endpoints (`/mcp` and the plain HTTP API): the [`Guard`]
//! checks `Host`, `Origin` and the bearer token of every request, and [`gate_requests`]
//! puts it in front of a set of routes with their own way of answering a refusal.
//!
//! Invariants: a request whose `Host` is not a loopback name, the bound address or a
//! configured host, that carries more than one `Host`, whose absolute-form target names
//! any other host, or whose `Origin` (when present) is not allowed, is refused before
//! anything else (DNS-rebinding protection); with a token configured, a request without
//! `Authorization: Bearer <token>` is refused, and the token comparison takes the same time
//! whatever the guess. A refused request's body is read (up to the message size limit)
//! before the answer, so a client reusing the connection finds it in a sane state; a
//! larger body closes it.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::middleware::Next;
use axum::response::Response;
use sha2::{Digest, Sha256};

use super::options::McpOptions;

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

impl Refusal {
    /// The HTTP status of this refusal: 401 (token, with `WWW-Authenticate`), 400 (several
    /// `Host`s) or 403.
    pub fn status(&self) -> StatusCode {
        match self {
            Refusal::Token => StatusCode::UNAUTHORIZED,
            Refusal::SeveralHosts(_) => StatusCode::BAD_REQUEST,
            Refusal::Host(_) | Refusal::Origin(_) | Refusal::Target(_) => StatusCode::FORBIDDEN,
        }
    }

    /// A short machine-readable kind.
    pub fn kind(&self) -> &'static str {
        match self {
            Refusal::Token => "unauthorized",
            Refusal::SeveralHosts(_) => "several_hosts",
            Refusal::Target(_) => "target_refused",
            Refusal::Host(_) => "host_refused",
            Refusal::Origin(_) => "origin_refused",
        }
    }
}

/// `WWW-Authenticate` of a 401.
pub const BEARER_CHALLENGE: &str = "Bearer realm=\"comfyui-mcp\"";

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

/// A [`Guard`] in front of some routes, with how those routes answer a refusal.
#[derive(Debug, Clone)]
pub struct Gate {
    /// The checks.
    pub guard: Arc<Guard>,
    /// The response for a refusal (the routes' own error shape; status from
    /// [`Refusal::status`]).
    pub render: fn(&Refusal) -> Response,
}

/// Middleware: lets a request through its gate's guard or answers the refusal.
pub async fn gate_requests(
    State(gate): State<Arc<Gate>>,
    request: Request,
    next: Next,
) -> Response {
    match gate.guard.check(request.uri(), request.headers()) {
        Ok(()) => next.run(request).await,
        Err(refusal) => {
            tracing::warn!(method = %request.method(), uri = %request.uri(), %refusal, "HTTP request refused");
            let drained = drain(request.into_body(), gate.guard.drain_limit).await;
            let mut response = (gate.render)(&refusal);
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
pub async fn drain(body: Body, limit: usize) -> bool {
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
}
