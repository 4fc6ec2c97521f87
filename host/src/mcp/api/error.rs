//! The errors of the plain HTTP API and the one table that gives each its HTTP status:
//! refused tool calls (typed [`Failure`]s from the shared dispatch), unknown tools and
//! routes, unreadable or oversized bodies, guard refusals and the API's own call limit.
//!
//! Every error answers `{"error": {"kind", "message", "details"?}}` with `Content-Type:
//! application/json`. Invariants: the status comes from the error's type (never from its
//! message), in [`ApiError::status`] alone; `busy`, `too_many_calls` and an unreachable
//! ComfyUI carry `Retry-After`; a 405 carries `Allow`, a 401 `WWW-Authenticate`, a 413
//! `Connection: close` (the rest of the body is not read).

use axum::Json;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use comfyui::{CancelError, ClientError};
use serde_json::{Value, json};

use super::super::guard::{BEARER_CHALLENGE, Refusal};
use super::super::outcome::{Failure, UnknownTool};
use super::route::ROUTES;
use crate::admission::AdmissionError;
use crate::error::AppError;
use crate::inputs::InputError;

/// `Retry-After` (seconds) when ComfyUI cannot be reached or did not answer in time.
pub const COMFYUI_RETRY_AFTER_SECS: u64 = 5;
/// `Retry-After` (seconds) when the API's own call limit is reached.
pub const CALLS_RETRY_AFTER_SECS: u64 = 1;

/// A request the API did not carry out.
#[derive(Debug)]
pub enum ApiError {
    /// The tool refused the call or its job failed.
    Tool(Failure),
    /// No tool of that name.
    UnknownTool(UnknownTool),
    /// No route at this path.
    NotFound {
        /// The path asked for.
        path: String,
    },
    /// The path is a route that takes another method.
    MethodNotAllowed {
        /// The method used.
        method: Method,
        /// The method the route takes.
        allow: Method,
    },
    /// The body is not JSON.
    InvalidJson(String),
    /// The body is JSON of the wrong shape.
    InvalidBody(String),
    /// The body broke off while being read.
    BrokenBody(String),
    /// The body did not arrive within its deadline.
    BodyTimedOut(crate::mcp::body_deadline::BodyTimedOut),
    /// The body is over the request size cap.
    TooLarge {
        /// The cap, in bytes.
        limit: usize,
    },
    /// The guard refused the request (`Host`, `Origin`, token).
    Refused(Refusal),
    /// The API's own limit of calls at once is reached.
    TooManyCalls {
        /// The limit.
        limit: usize,
    },
    /// An image of a job could not be read from disk.
    ImageUnreadable(String),
    /// A call's task ended without an answer (a panic or shutdown).
    Internal(String),
}

impl ApiError {
    /// The status table: one row per kind of error.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::Tool(failure) => failure_status(failure),
            ApiError::UnknownTool(_) | ApiError::NotFound { .. } => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::InvalidJson(_) | ApiError::InvalidBody(_) | ApiError::BrokenBody(_) => {
                StatusCode::BAD_REQUEST
            }
            ApiError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::BodyTimedOut(_) => StatusCode::REQUEST_TIMEOUT,
            ApiError::Refused(refusal) => refusal.status(),
            ApiError::TooManyCalls { .. } => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::ImageUnreadable(_) | ApiError::Internal(_) => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
        }
    }

    /// `Retry-After` in seconds, for errors that pass with time.
    pub fn retry_after(&self) -> Option<u64> {
        match self {
            ApiError::TooManyCalls { .. } => Some(CALLS_RETRY_AFTER_SECS),
            ApiError::Tool(Failure::App(AppError::Busy(busy))) => Some(match busy {
                AdmissionError::Busy { waited, .. } => busy_retry_after(*waited),
                _ => CALLS_RETRY_AFTER_SECS,
            }),
            ApiError::Tool(Failure::App(AppError::ComfyUi(e)))
            | ApiError::Tool(Failure::App(AppError::Cancel(CancelError::Client(e))))
            | ApiError::Tool(Failure::App(AppError::Input(InputError::Upload {
                source: e, ..
            }))) if comfyui_may_come_back(e) => Some(COMFYUI_RETRY_AFTER_SECS),
            _ => None,
        }
    }

    /// The machine-readable kind.
    pub fn kind(&self) -> &'static str {
        match self {
            ApiError::Tool(failure) => failure.kind(),
            ApiError::UnknownTool(_) => "unknown_tool",
            ApiError::NotFound { .. } => "not_found",
            ApiError::MethodNotAllowed { .. } => "method_not_allowed",
            ApiError::InvalidJson(_) => "invalid_json",
            ApiError::InvalidBody(_) => "invalid_body",
            ApiError::BrokenBody(_) => "broken_body",
            ApiError::TooLarge { .. } => "body_too_large",
            ApiError::BodyTimedOut(_) => "body_timeout",
            ApiError::Refused(refusal) => refusal.kind(),
            ApiError::TooManyCalls { .. } => "too_many_calls",
            ApiError::ImageUnreadable(_) => "image_unreadable",
            ApiError::Internal(_) => "internal",
        }
    }

    /// `{"kind", "message", "details"?}`.
    pub fn to_json(&self) -> Value {
        let (message, details) = match self {
            ApiError::Tool(failure) => return failure.to_json(),
            ApiError::UnknownTool(unknown) => (
                unknown.message(),
                Some(json!({"tool": unknown.name, "tools": unknown.available})),
            ),
            ApiError::NotFound { path } => (
                format!("no route `{path}`; this API serves {}", ROUTES.join(", ")),
                Some(json!({"routes": ROUTES})),
            ),
            ApiError::MethodNotAllowed { method, allow } => (
                format!("this route takes {allow}, not {method}"),
                Some(json!({"allow": allow.as_str()})),
            ),
            ApiError::InvalidJson(e) => (format!("the body is not valid JSON: {e}"), None),
            ApiError::InvalidBody(why) | ApiError::BrokenBody(why) => (why.clone(), None),
            ApiError::BodyTimedOut(late) => (
                late.to_string(),
                Some(json!({"limit_ms": late.after.as_millis() as u64})),
            ),
            ApiError::TooLarge { limit } => (
                format!(
                    "the body is over the limit of {limit} bytes; a server operator can raise it with --max-request-bytes or COMFYUI_MCP_MAX_REQUEST_BYTES"
                ),
                Some(json!({"limit": limit})),
            ),
            ApiError::Refused(refusal) => (refusal.to_string(), None),
            ApiError::TooManyCalls { limit } => (
                format!(
                    "{limit} API calls are already running, the limit; retry shortly, or a server operator can raise it with --api-max-calls or COMFYUI_MCP_API_MAX_CALLS"
                ),
                Some(json!({"limit": limit})),
            ),
            ApiError::ImageUnreadable(why) | ApiError::Internal(why) => (why.clone(), None),
        };
        let mut out = json!({"kind": self.kind(), "message": message});
        if let Some(details) = details {
            out["details"] = details;
        }
        out
    }
}

/// The status of a refused tool call.
fn failure_status(failure: &Failure) -> StatusCode {
    match failure {
        Failure::Arguments(_) => StatusCode::BAD_REQUEST,
        Failure::App(error) => app_status(error),
        Failure::Cancelled { .. } => StatusCode::CONFLICT,
        Failure::JobFailed { .. } => StatusCode::BAD_GATEWAY,
    }
}

/// The status of each [`AppError`].
fn app_status(error: &AppError) -> StatusCode {
    match error {
        AppError::UnknownTemplate { .. } | AppError::UnknownJob(_) => StatusCode::NOT_FOUND,
        AppError::UnknownImage { .. } | AppError::UnknownModelFolder { .. } => {
            StatusCode::NOT_FOUND
        }
        AppError::InvalidParams(_)
        | AppError::Pack { .. }
        | AppError::InvalidGraph(_)
        | AppError::MissingModel { .. }
        | AppError::WorkflowTooLarge { .. }
        | AppError::WorkflowTooManyNodes { .. }
        | AppError::Workflow(_) => StatusCode::UNPROCESSABLE_ENTITY,
        AppError::NodePolicy(_) | AppError::PathRefused { .. } => StatusCode::FORBIDDEN,
        AppError::Input(e) => input_status(e),
        AppError::NoBackend(_) => StatusCode::UNPROCESSABLE_ENTITY,
        AppError::ComfyUi(e) => comfyui_status(e),
        AppError::Cancel(e) => cancel_status(e),
        AppError::InvalidRequest(_) => StatusCode::BAD_REQUEST,
        AppError::Busy(_) => StatusCode::TOO_MANY_REQUESTS,
        AppError::JobStore(_) => StatusCode::SERVICE_UNAVAILABLE,
        AppError::Blocking(_) | AppError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// A refused image argument: too big is 413, not an image (or not the declared one) 415, a
/// path outside the input folders 403, an unknown earlier result as its lookup, a failed
/// upload as ComfyUI's answer; the rest is an unusable argument (422).
fn input_status(error: &InputError) -> StatusCode {
    match error {
        InputError::TooLarge { .. } | InputError::TooManyPixels { .. } => {
            StatusCode::PAYLOAD_TOO_LARGE
        }
        InputError::NotAnImage { .. } | InputError::TypeMismatch { .. } => {
            StatusCode::UNSUPPORTED_MEDIA_TYPE
        }
        InputError::PathRefused { .. } => StatusCode::FORBIDDEN,
        InputError::UnknownResult { source, .. } => app_status(source),
        InputError::Upload { source, .. } => comfyui_status(source),
        InputError::Renamed { .. } => StatusCode::CONFLICT,
        InputError::Malformed { .. }
        | InputError::Corrupt { .. }
        | InputError::NotFound { .. }
        | InputError::Unreadable { .. } => StatusCode::UNPROCESSABLE_ENTITY,
    }
}

/// ComfyUI's answer: a rejected graph is the caller's (422); no answer is 503 (it may come
/// back) or 504 (it was too slow); anything else it sent is 502.
fn comfyui_status(error: &ClientError) -> StatusCode {
    match error {
        ClientError::Rejected { .. } => StatusCode::UNPROCESSABLE_ENTITY,
        ClientError::Unreachable { .. } => StatusCode::SERVICE_UNAVAILABLE,
        ClientError::Timeout { .. } => StatusCode::GATEWAY_TIMEOUT,
        ClientError::Http { .. }
        | ClientError::Decode { .. }
        | ClientError::TooLarge { .. }
        | ClientError::Io { .. }
        | ClientError::Setup { .. } => StatusCode::BAD_GATEWAY,
    }
}

fn comfyui_may_come_back(error: &ClientError) -> bool {
    matches!(
        error,
        ClientError::Unreachable { .. } | ClientError::Timeout { .. }
    )
}

fn cancel_status(error: &CancelError) -> StatusCode {
    match error {
        CancelError::NotFound { .. } => StatusCode::NOT_FOUND,
        CancelError::NotOurs { .. } | CancelError::RunningNotOurs { .. } => StatusCode::FORBIDDEN,
        CancelError::AlreadyFinished { .. } | CancelError::NotConfirmed { .. } => {
            StatusCode::CONFLICT
        }
        CancelError::Client(e) => comfyui_status(e),
        CancelError::Store(_) => StatusCode::SERVICE_UNAVAILABLE,
    }
}

/// Seconds to wait after a busy answer: as long as the call waited for a permit, at least 1.
fn busy_retry_after(waited: std::time::Duration) -> u64 {
    waited.as_secs_f64().ceil().max(1.0) as u64
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status(), Json(json!({"error": self.to_json()}))).into_response();
        let headers = response.headers_mut();
        if let Some(secs) = self.retry_after() {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        match &self {
            ApiError::MethodNotAllowed { allow, .. } => {
                if let Ok(value) = HeaderValue::from_str(allow.as_str()) {
                    headers.insert(header::ALLOW, value);
                }
            }
            ApiError::Refused(Refusal::Token) => {
                headers.insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static(BEARER_CHALLENGE),
                );
            }
            ApiError::TooLarge { .. } => {
                headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            _ => {}
        }
        response
    }
}

/// A guard refusal in the API's error shape (the gate's renderer).
pub fn refusal_response(refusal: &Refusal) -> Response {
    ApiError::Refused(refusal.clone()).into_response()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::admission::BusyLimit;
    use crate::mcp::outcome::ArgumentError;

    fn unreachable() -> ClientError {
        ClientError::Unreachable {
            url: "http://127.0.0.1:1".into(),
            request: "POST /prompt".into(),
            source: "connection refused".into(),
        }
    }

    fn app(error: AppError) -> ApiError {
        ApiError::Tool(Failure::App(error))
    }

    #[test]
    fn the_table_gives_each_kind_its_status() {
        let rows: Vec<(ApiError, u16, &str)> = vec![
            (
                ApiError::Tool(Failure::Arguments(ArgumentError::new("t", "bad"))),
                400,
                "invalid_arguments",
            ),
            (
                app(AppError::UnknownTemplate {
                    id: "x".into(),
                    available: "a".into(),
                }),
                404,
                "unknown_template",
            ),
            (
                app(AppError::InvalidParams(vec![])),
                422,
                "invalid_parameters",
            ),
            (app(AppError::UnknownJob("p".into())), 404, "unknown_job"),
            (
                app(AppError::PathRefused {
                    path: "/x".into(),
                    allowed: "w".into(),
                }),
                403,
                "path_refused",
            ),
            (
                app(AppError::InvalidRequest("r".into())),
                400,
                "invalid_request",
            ),
            (
                app(AppError::ComfyUi(unreachable())),
                503,
                "comfyui_unavailable",
            ),
            (
                app(AppError::ComfyUi(ClientError::Timeout {
                    url: "u".into(),
                    request: "GET /queue".into(),
                    after: Duration::from_secs(1),
                })),
                504,
                "comfyui_unavailable",
            ),
            (
                app(AppError::ComfyUi(ClientError::Rejected {
                    url: "u".into(),
                    error: Box::new(json!({})),
                    node_errors: Box::new(json!({})),
                })),
                422,
                "comfyui_rejected",
            ),
            (
                app(AppError::Cancel(CancelError::AlreadyFinished {
                    prompt_id: "p".into(),
                    state: "completed".into(),
                })),
                409,
                "cancel_failed",
            ),
            (app(AppError::Internal("bug".into())), 500, "internal"),
            (
                ApiError::Tool(Failure::JobFailed {
                    message: "m".into(),
                    job: json!({}),
                }),
                502,
                "job_failed",
            ),
            (
                ApiError::Tool(Failure::Cancelled {
                    message: "m".into(),
                    job: json!({}),
                }),
                409,
                "cancelled",
            ),
            (
                ApiError::UnknownTool(UnknownTool {
                    name: "x".into(),
                    available: vec!["list_workflows".into()],
                }),
                404,
                "unknown_tool",
            ),
            (
                ApiError::NotFound {
                    path: "/api/x".into(),
                },
                404,
                "not_found",
            ),
            (
                ApiError::MethodNotAllowed {
                    method: Method::GET,
                    allow: Method::POST,
                },
                405,
                "method_not_allowed",
            ),
            (ApiError::InvalidJson("eof".into()), 400, "invalid_json"),
            (ApiError::InvalidBody("[]".into()), 400, "invalid_body"),
            (ApiError::TooLarge { limit: 10 }, 413, "body_too_large"),
            (ApiError::Refused(Refusal::Token), 401, "unauthorized"),
            (
                ApiError::Refused(Refusal::Host("e".into())),
                403,
                "host_refused",
            ),
            (
                ApiError::Refused(Refusal::SeveralHosts(2)),
                400,
                "several_hosts",
            ),
            (ApiError::TooManyCalls { limit: 1 }, 503, "too_many_calls"),
        ];
        for (error, status, kind) in rows {
            assert_eq!(error.status().as_u16(), status, "{error:?}");
            assert_eq!(error.kind(), kind, "{error:?}");
            assert_eq!(error.to_json()["kind"], kind, "{error:?}");
        }
    }

    #[test]
    fn responses_carry_their_headers() {
        let busy = app(AppError::Busy(AdmissionError::Busy {
            limit: BusyLimit::Server,
            pack: "p.wasm".into(),
            permits: 2,
            per_pack: 1,
            waited: Duration::from_millis(1500),
        }));
        assert_eq!(busy.status(), StatusCode::TOO_MANY_REQUESTS);
        let r = busy.into_response();
        assert_eq!(r.headers()[header::RETRY_AFTER], "2");
        let r = app(AppError::ComfyUi(unreachable())).into_response();
        assert_eq!(
            r.headers()[header::RETRY_AFTER],
            COMFYUI_RETRY_AFTER_SECS.to_string().as_str()
        );
        let r = ApiError::MethodNotAllowed {
            method: Method::GET,
            allow: Method::POST,
        }
        .into_response();
        assert_eq!(r.headers()[header::ALLOW], "POST");
        let r = ApiError::Refused(Refusal::Token).into_response();
        assert!(
            r.headers()[header::WWW_AUTHENTICATE]
                .to_str()
                .unwrap()
                .starts_with("Bearer")
        );
        let r = ApiError::TooLarge { limit: 1 }.into_response();
        assert_eq!(r.headers()[header::CONNECTION], "close");
        assert!(
            ApiError::InvalidJson("x".into())
                .into_response()
                .headers()
                .get(header::RETRY_AFTER)
                .is_none()
        );
    }
}
