//! `GET /ws?clientId=X`: ComfyUI's websocket endpoint.
//!
//! On connect the client is registered under its clientId (or a fresh hex id), gets
//! `status {status, sid}`, and, if it is the client of the prompt being executed, a bare
//! `executing {"node": id}` (no prompt_id), as ComfyUI re-sends on reconnect. A first text
//! frame `{"type": "feature_flags", ...}` stores the client's flags and is answered with the
//! server's. When the socket ends its clientId entry is removed (see `hub` for the quirks).

use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{Value, json};
use std::sync::Arc;

use crate::config::MAX_UPLOAD_BYTES;
use crate::faults::lock;
use crate::hub::WsOut;
use crate::middleware::text_response;
use crate::state::Shared;

/// The `/ws` route.
pub(crate) async fn ws_handler(
    State(shared): State<Arc<Shared>>,
    Query(query): Query<Vec<(String, String)>>,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    if lock(&shared.faults).refuse_websockets {
        return text_response(
            StatusCode::SERVICE_UNAVAILABLE,
            "503 Service Unavailable\n\nWebsocket refused (injected fault, comfyui-mcp simulator)",
        );
    }
    let upgrade = match upgrade {
        Ok(u) => u,
        Err(rejection) => {
            return text_response(
                StatusCode::BAD_REQUEST,
                format!("No WebSocket UPGRADE hdr: {rejection}"),
            );
        }
    };
    let sid = query
        .iter()
        .find(|(k, _)| k == "clientId")
        .map(|(_, v)| v.clone())
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string());
    upgrade.on_upgrade(move |socket| serve_socket(shared, socket, sid))
}

async fn serve_socket(shared: Arc<Shared>, mut socket: WebSocket, sid: String) {
    let (conn, mut rx) = {
        let mut st = shared.lock();
        let (conn, rx) = st.hub.register(&sid);
        let status = json!({"status": st.queue_info(), "sid": sid});
        st.hub.send_json("status", status, Some(&sid));
        if st.client_sid().as_deref() == Some(sid.as_str())
            && let Some(node) = &st.last_node_id
        {
            st.hub
                .send_json("executing", json!({"node": node}), Some(&sid));
        }
        (conn, rx)
    };
    tracing::debug!(%sid, conn, "websocket connected");
    let mut first_message = true;
    let mut aborted = false;
    loop {
        tokio::select! {
            out = rx.recv() => {
                let msg = match out {
                    Some(WsOut::Text(t)) => Message::Text(t.into()),
                    Some(WsOut::Binary(b)) => Message::Binary(b),
                    Some(WsOut::Abort) | None => {
                        aborted = true;
                        break;
                    }
                };
                if socket.send(msg).await.is_err() {
                    break;
                }
            }
            incoming = socket.recv() => match incoming {
                Some(Ok(Message::Text(text))) => {
                    let Ok(data) = serde_json::from_str::<Value>(&text) else { continue };
                    if first_message && data.get("type").and_then(Value::as_str) == Some("feature_flags") {
                        let flags = data.get("data").cloned().unwrap_or_else(|| json!({}));
                        let mut guard = shared.lock();
                        guard.hub.set_flags(&sid, flags);
                        let server = json!({"supports_preview_metadata": true, "max_upload_size": MAX_UPLOAD_BYTES});
                        guard.hub.send_json("feature_flags", server, Some(&sid));
                    }
                    first_message = false;
                }
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                Some(Ok(_)) => {}
            }
        }
    }
    // After an abort the registry is already empty; removing `sid` again could remove a
    // newer socket that reconnected in the meantime.
    if !aborted {
        shared.lock().hub.unregister(conn, &sid);
    }
    tracing::debug!(%sid, conn, aborted, "websocket closed");
}
