//! The plain HTTP API beside `/mcp`, for game engines, scripts and anything without an MCP
//! client: JSON in, JSON out, the same tools through the same dispatch as MCP `tools/call`.
//!
//! Routes ([`route`]): `GET /api/tools`, `POST /api/tools/{name}` (the body is the
//! arguments), `POST /api` (`{"tool", "params"}`), `GET /api/jobs/{prompt_id}`,
//! `GET /api/images/{prompt_id}/{filename}`. A success is `200` with the tool's structured
//! result, exactly as MCP's `structuredContent`; an error is `{"error": {kind, message,
//! details?}}` with the status of [`error::ApiError::status`].
//!
//! Module map (a DAG): `route` (path parsing) and `body` (capped JSON bodies) are leaves
//! under `error` (the status table); `handlers` uses all three.
//!
//! Invariants: every request passes the same [`Guard`] as `/mcp` first (same token,
//! `Host` and `Origin` rules, answered in this API's error shape); bodies are capped at
//! the same `max_request_bytes`; at most `api_max_calls` calls (tool calls and image
//! downloads) run at once; a call whose client disconnects is cancelled (see
//! [`handlers`]).

mod body;
pub mod error;
mod handlers;
pub mod route;

use std::sync::Arc;

use axum::Router;
use axum::routing::any;
use tokio::sync::Semaphore;

use super::guard::{Gate, Guard, gate_requests};
use super::shared::Shared;
pub use error::ApiError;
use handlers::ApiState;
pub use route::{API_PATH, Route, RouteError};

/// The `/api` routes over `shared`, behind `guard`.
pub fn router(shared: Arc<Shared>, guard: Arc<Guard>) -> Router {
    let max_calls = shared.options.api_max_calls;
    let state = Arc::new(ApiState {
        shared,
        calls: Arc::new(Semaphore::new(max_calls)),
        max_calls,
    });
    let gate = Arc::new(Gate {
        guard,
        render: error::refusal_response,
    });
    Router::new()
        .route(API_PATH, any(handlers::handle))
        .route(&format!("{API_PATH}/"), any(handlers::handle))
        .route(&format!("{API_PATH}/{{*rest}}"), any(handlers::handle))
        .with_state(state)
        .layer(axum::middleware::from_fn_with_state(gate, gate_requests))
}
