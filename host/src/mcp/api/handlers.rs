//! The handler behind every API route: parses the route, reads the body, runs tool calls
//! through the same dispatch as MCP `tools/call` ([`tools::call`]) and streams images.
//!
//! Lifecycle of a call: it takes one of the API's call permits (none free: 503
//! `too_many_calls`), runs on its own task with a [`CallContext`] whose cancellation fires
//! when the HTTP exchange is dropped (the client disconnected), and gives the permit back
//! when that task ends. A dropped waiting call therefore cancels its job (as an MCP
//! `notifications/cancelled` does) and ends at once; nothing outlives it for nobody. An
//! image answer holds its permit until the last byte is sent.

use std::sync::Arc;

use axum::Json;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

use super::super::definitions::GET_WORKFLOW_STATUS;
use super::super::progress::NoProgress;
use super::super::shared::Shared;
use super::super::tools::{self, CallContext, Outcome};
use super::body;
use super::error::ApiError;
use super::route::{Route, RouteError};

/// What every API request shares: the MCP layer's state and the call permits.
#[derive(Debug)]
pub struct ApiState {
    /// The state shared with the MCP sessions (app, tool list, thumbnails).
    pub shared: Arc<Shared>,
    /// One permit per call running at once.
    pub calls: Arc<Semaphore>,
    /// The size of `calls`.
    pub max_calls: usize,
}

/// Every `/api` request.
pub async fn handle(State(state): State<Arc<ApiState>>, request: Request) -> Response {
    answer(&state, request)
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

async fn answer(state: &Arc<ApiState>, request: Request) -> Result<Response, ApiError> {
    let route = Route::parse(request.method(), request.uri().path()).map_err(|e| match e {
        RouteError::NotFound => ApiError::NotFound {
            path: request.uri().path().to_owned(),
        },
        RouteError::MethodNotAllowed { allow } => ApiError::MethodNotAllowed {
            method: request.method().clone(),
            allow,
        },
    })?;
    let limit = state.shared.options.max_request_bytes;
    match route {
        Route::ListTools => Ok(list_tools(state)),
        Route::CallTool(name) => {
            let (parts, body) = request.into_parts();
            let arguments = body::read_object(&parts.headers, body, limit).await?;
            call(state, name, arguments).await
        }
        Route::Envelope => {
            let (parts, body) = request.into_parts();
            let envelope = body::read_object(&parts.headers, body, limit).await?;
            let (name, arguments) = body::envelope(envelope)?;
            call(state, name, arguments).await
        }
        Route::Job(prompt_id) => {
            let mut arguments = Map::new();
            arguments.insert("prompt_id".into(), Value::String(prompt_id));
            call(state, GET_WORKFLOW_STATUS.to_owned(), arguments).await
        }
        Route::Image {
            prompt_id,
            filename,
        } => image(state, &prompt_id, &filename).await,
    }
}

/// `GET /api/tools`: the definitions `tools/list` gives.
fn list_tools(state: &ApiState) -> Response {
    let tools = state.shared.tools();
    json_ok(&json!({ "tools": tools.as_ref() }))
}

fn permit(state: &ApiState) -> Result<OwnedSemaphorePermit, ApiError> {
    state
        .calls
        .clone()
        .try_acquire_owned()
        .map_err(|_| ApiError::TooManyCalls {
            limit: state.max_calls,
        })
}

/// Runs one tool call on its own task; dropping this future cancels the call.
async fn call(
    state: &Arc<ApiState>,
    name: String,
    arguments: Map<String, Value>,
) -> Result<Response, ApiError> {
    let permit = permit(state)?;
    let cancel = CancellationToken::new();
    let context = CallContext::new(cancel.clone(), NoProgress);
    let shared = state.shared.clone();
    // Cancels the call when the client goes away (this future is dropped mid-await).
    let on_drop = cancel.drop_guard();
    let task = tokio::spawn(async move {
        let _permit = permit;
        tools::call(&shared, &name, Some(arguments), context).await
    });
    let joined = task.await;
    on_drop.disarm();
    match joined {
        Ok(Ok(Outcome::Success { value, .. })) => Ok(json_ok(&value)),
        Ok(Ok(Outcome::Failure(failure))) => Err(ApiError::Tool(failure)),
        Ok(Err(unknown)) => Err(ApiError::UnknownTool(unknown)),
        Err(e) => Err(ApiError::Internal(format!("the call's task ended: {e}"))),
    }
}

/// `GET /api/images/{prompt_id}/{filename}`: the PNG of one of our jobs, streamed.
async fn image(state: &ApiState, prompt_id: &str, filename: &str) -> Result<Response, ApiError> {
    let permit = permit(state)?;
    let path = state
        .shared
        .app
        .image_path(prompt_id, filename)
        .await
        .map_err(|e| ApiError::Tool(e.into()))?;
    let unreadable = |e: std::io::Error| {
        ApiError::ImageUnreadable(format!("could not read image {}: {e}", path.display()))
    };
    let file = tokio::fs::File::open(&path).await.map_err(unreadable)?;
    let length = file.metadata().await.map_err(unreadable)?.len();
    let stream = tokio_util::io::ReaderStream::new(file);
    let body = Body::from_stream(futures_util::StreamExt::map(stream, move |chunk| {
        let _held = &permit;
        chunk
    }));
    let mut response = (StatusCode::OK, body).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("image/png"));
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
    Ok(response)
}

fn json_ok(value: &impl serde::Serialize) -> Response {
    Json(value).into_response()
}
