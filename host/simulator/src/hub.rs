//! The websocket registry and message routing (ComfyUI's `sockets` dict and `send`).
//!
//! Faithful to the server's bookkeeping, quirks included:
//! - one entry per clientId: a second socket with the same id replaces the first in the
//!   table, and when *either* closes the entry is removed, leaving the other socket open but
//!   deaf (it receives nothing, not even broadcasts);
//! - a message with a target id goes to that id's socket only (dropped if none: no replay);
//!   a message without one goes to every socket in the table.
//!
//! Every live connection, orphaned or not, is also tracked by a connection id so that a
//! simulated restart or network fault can close all of them. Messages are queued on
//! unbounded per-connection channels while the state lock is held, which keeps the order of
//! events identical for every socket.

use bytes::Bytes;
use serde_json::{Value, json};
use std::collections::HashMap;
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};

use crate::pyjson;

/// What the connection task should do next.
#[derive(Debug)]
pub(crate) enum WsOut {
    /// Send a text frame.
    Text(String),
    /// Send a binary frame.
    Binary(Bytes),
    /// Drop the connection without a close handshake (restart, network fault).
    Abort,
}

#[derive(Debug)]
struct Conn {
    tx: UnboundedSender<WsOut>,
}

/// The registry of websocket connections.
#[derive(Debug, Default)]
pub(crate) struct Hub {
    conns: HashMap<u64, Conn>,
    /// clientId → connection id (ComfyUI's `sockets`).
    sockets: HashMap<String, u64>,
    /// clientId → feature flags the client announced (ComfyUI's `sockets_metadata`).
    flags: HashMap<String, Value>,
    next_id: u64,
}

impl Hub {
    /// Registers a new connection for `sid`, replacing any socket registered under it.
    pub fn register(&mut self, sid: &str) -> (u64, UnboundedReceiver<WsOut>) {
        let (tx, rx) = unbounded_channel();
        self.next_id += 1;
        let id = self.next_id;
        self.conns.insert(id, Conn { tx });
        self.sockets.insert(sid.to_string(), id);
        self.flags.insert(sid.to_string(), json!({}));
        (id, rx)
    }

    /// Forgets a connection that ended. Like ComfyUI it removes the *clientId* entry even if
    /// it now belongs to another socket.
    pub fn unregister(&mut self, conn: u64, sid: &str) {
        self.conns.remove(&conn);
        self.sockets.remove(sid);
        self.flags.remove(sid);
    }

    /// Stores the feature flags a client sent as its first message.
    pub fn set_flags(&mut self, sid: &str, flags: Value) {
        if self.sockets.contains_key(sid) {
            self.flags.insert(sid.to_string(), flags);
        }
    }

    /// Whether `sid` announced `supports_preview_metadata`.
    pub fn supports_preview_metadata(&self, sid: Option<&str>) -> bool {
        sid.and_then(|s| self.flags.get(s))
            .and_then(|f| f.get("supports_preview_metadata"))
            .is_some_and(crate::pyval::truthy)
    }

    /// Sends `{"type": event, "data": data}` to `sid`'s socket, or to every registered socket
    /// when `sid` is `None`.
    pub fn send_json(&self, event: &str, data: Value, sid: Option<&str>) {
        let text = pyjson::dumps(&json!({"type": event, "data": data}));
        for tx in self.targets(sid) {
            let _ = tx.send(WsOut::Text(text.clone()));
        }
    }

    /// Sends a binary frame (event type, then payload) like `send_bytes`.
    pub fn send_bytes(&self, event_type: u32, payload: &[u8], sid: Option<&str>) {
        let mut frame = Vec::with_capacity(4 + payload.len());
        frame.extend_from_slice(&event_type.to_be_bytes());
        frame.extend_from_slice(payload);
        let frame = Bytes::from(frame);
        for tx in self.targets(sid) {
            let _ = tx.send(WsOut::Binary(frame.clone()));
        }
    }

    fn targets(&self, sid: Option<&str>) -> Vec<&UnboundedSender<WsOut>> {
        match sid {
            Some(s) => self
                .sockets
                .get(s)
                .and_then(|id| self.conns.get(id))
                .map(|c| vec![&c.tx])
                .unwrap_or_default(),
            None => self
                .sockets
                .values()
                .filter_map(|id| self.conns.get(id))
                .map(|c| &c.tx)
                .collect(),
        }
    }

    /// Drops every connection, registered or orphaned, after the frames already queued.
    pub fn abort_all(&mut self) {
        for c in self.conns.values() {
            let _ = c.tx.send(WsOut::Abort);
        }
        self.conns.clear();
        self.sockets.clear();
        self.flags.clear();
    }

    /// The clientIds that currently have a registered socket, sorted.
    pub fn client_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self.sockets.keys().cloned().collect();
        ids.sort();
        ids
    }

    /// Number of live connections (registered or orphaned).
    #[cfg(test)]
    pub fn connection_count(&self) -> usize {
        self.conns.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicate_client_ids_orphan_the_second_socket() {
        let mut hub = Hub::default();
        let (c1, mut r1) = hub.register("dup");
        let (_c2, mut r2) = hub.register("dup");
        hub.unregister(c1, "dup");
        hub.send_json("status", json!({}), None);
        hub.send_json("executing", json!({}), Some("dup"));
        assert!(r1.try_recv().is_err());
        assert!(r2.try_recv().is_err());
        assert_eq!(hub.connection_count(), 1);
        hub.abort_all();
        assert!(matches!(r2.try_recv(), Ok(WsOut::Abort)));
    }

    #[test]
    fn targeted_and_broadcast() {
        let mut hub = Hub::default();
        let (_a, mut ra) = hub.register("a");
        let (_b, mut rb) = hub.register("b");
        hub.send_json("x", json!({"k": 1}), Some("a"));
        hub.send_json("y", json!({}), None);
        assert!(
            matches!(ra.try_recv(), Ok(WsOut::Text(t)) if t == r#"{"type": "x", "data": {"k": 1}}"#)
        );
        assert!(matches!(ra.try_recv(), Ok(WsOut::Text(_))));
        assert!(matches!(rb.try_recv(), Ok(WsOut::Text(t)) if t.contains("\"y\"")));
        assert!(rb.try_recv().is_err());
    }
}
