//! The streamable HTTP transport: rmcp's `StreamableHttpService` mounted at `/mcp` in an
//! axum router, beside the plain HTTP API at `/api` ([`super::api`]), both behind the same
//! [`Guard`] (`Host`, `Origin`, bearer token; see [`super::guard`]).
//!
//! Invariants: a request the guard refuses gets 403 (400 for several `Host`s, 401 with
//! `WWW-Authenticate: Bearer` for a missing or wrong token) before anything else; `/mcp`
//! answers it as `{"error": "<message>"}`, `/api` in its own error shape; the server
//! refuses to start on a non-loopback address without a token.
//! A JSON body sent to `/mcp` is read up to [`McpOptions::max_request_bytes`] (413 beyond, with a
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
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::serve::ListenerExt as _;
use rmcp::model::RequestId;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::{StreamableHttpServerConfig, StreamableHttpService};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::api;
use super::body_deadline;
use super::framing::{self, Inspection, Rejection};
use super::guard::{BEARER_CHALLENGE, Gate, gate_requests};
pub use super::guard::{Guard, Refusal};
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

/// The axum router: `/mcp` and `/api` behind the guard. `bound` is the listening address
/// (its IP is an accepted `Host`); cancelling `shutdown` ends every session and stream.
pub fn router(
    app: Arc<App>,
    options: McpOptions,
    bound: SocketAddr,
    shutdown: CancellationToken,
) -> Router {
    let body_timeout = options.body_timeout;
    let guard = Arc::new(Guard::new(&options, bound));
    let checks = Arc::new(BodyChecks {
        limit: options.max_request_bytes,
        in_flight: Mutex::default(),
    });
    let shared = Shared::new(app, options);
    let api = api::router(shared.clone(), guard.clone());
    let gate = Arc::new(Gate {
        guard,
        render: refusal_response,
    });
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
        .layer(axum::middleware::from_fn_with_state(gate, gate_requests))
        .merge(api)
        // Outermost: every body of both surfaces, the guard's drain included, is timed.
        .layer(axum::middleware::from_fn_with_state(
            body_timeout,
            body_deadline::bound_bodies,
        ))
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
        Err(e) => match body_deadline::timed_out(&e) {
            Some(late) => return too_slow(late),
            None => return too_large(&[], limit),
        },
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

/// 408 with a JSON-RPC error naming the deadline; the connection is closed (the rest of the
/// body is not waited for).
fn too_slow(late: body_deadline::BodyTimedOut) -> Response {
    let mut response = json_response(
        StatusCode::REQUEST_TIMEOUT,
        framing::body_timed_out(late).to_json().to_string(),
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
    let status = refusal.status();
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
            HeaderValue::from_static(BEARER_CHALLENGE),
        );
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

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
