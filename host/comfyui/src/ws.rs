//! The websocket task: keeps `/ws?clientId=<ours>` open, reconnects with backoff, forwards
//! parsed events.
//!
//! Invariants: at most one socket per client id is open at any time (the old one is fully
//! dropped, and a close handshake attempted, before a new one is dialled: ComfyUI keeps one
//! socket per clientId and a late close of the old one would orphan the new one); every
//! successful (re)connect is announced with [`WsSignal::Connected`] *before* any event of that
//! connection, and every loss with [`WsSignal::Disconnected`], so the consumer can reconcile
//! (ComfyUI does not replay missed events); unparseable frames are logged and skipped; the task
//! ends when the cancellation token fires or the receiver is dropped.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_util::sync::CancellationToken;

use crate::config::ComfyConfig;
use crate::events::{Event, parse_binary, parse_text};

/// What the websocket task reports.
#[derive(Debug, Clone, PartialEq)]
pub enum WsSignal {
    /// A socket is open; `first` is true only for the first successful connection.
    Connected {
        /// First connection of this task.
        first: bool,
    },
    /// The socket was lost (events may be missed until the next `Connected`).
    Disconnected {
        /// Why.
        reason: String,
    },
    /// A message from ComfyUI.
    Event(Event),
}

/// Tuning of the websocket task.
#[derive(Debug, Clone)]
pub struct WsOptions {
    /// First reconnect delay.
    pub backoff_min: Duration,
    /// Largest reconnect delay.
    pub backoff_max: Duration,
    /// Send a ping after this long without any frame.
    pub idle_ping: Duration,
    /// Give the connection up when nothing (not even a pong) arrives this long after a ping.
    pub ping_timeout: Duration,
    /// Bound on the TCP/TLS/upgrade handshake.
    pub connect_timeout: Duration,
    /// Capacity of the signal channel.
    pub channel_capacity: usize,
}

impl Default for WsOptions {
    fn default() -> Self {
        Self {
            backoff_min: Duration::from_millis(100),
            backoff_max: Duration::from_secs(5),
            idle_ping: Duration::from_secs(30),
            ping_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(30),
            channel_capacity: 1024,
        }
    }
}

/// Exponential backoff with jitter: `min`, doubling, capped at `max`; each delay is drawn
/// uniformly from [d/2, d].
#[derive(Debug, Clone)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    /// Starts at `min`.
    pub fn new(min: Duration, max: Duration) -> Self {
        Self {
            min,
            max: max.max(min),
            next: min,
        }
    }

    /// The next delay (with jitter), doubling the base for the one after.
    pub fn next_delay(&mut self) -> Duration {
        let base = self.next;
        self.next = (self.next * 2).min(self.max);
        let lo = base / 2;
        let span = (base - lo).as_millis() as u64;
        lo + Duration::from_millis(if span == 0 {
            0
        } else {
            rand::random_range(0..=span)
        })
    }

    /// Back to `min` (after a connection that worked).
    pub fn reset(&mut self) {
        self.next = self.min;
    }
}

/// Starts the websocket task for `cfg` (its `ws_url()`, bearer key and connect timeout).
/// Signals arrive on the returned receiver until `token` is cancelled or the receiver dropped.
pub fn spawn_event_stream(
    cfg: &ComfyConfig,
    options: WsOptions,
    token: CancellationToken,
) -> (mpsc::Receiver<WsSignal>, JoinHandle<()>) {
    crate::client::install_crypto_provider();
    let (tx, rx) = mpsc::channel(options.channel_capacity.max(1));
    let url = cfg.ws_url();
    let shown = crate::config::display_url(&url);
    let key = cfg.api_key.clone();
    let handle = tokio::spawn(async move {
        run(url, shown, key, options, tx, token).await;
    });
    (rx, handle)
}

enum End {
    /// Stop the task.
    Stop,
    /// Reconnect, for this reason.
    Lost(String),
}

async fn run(
    url: url::Url,
    shown: String,
    key: Option<String>,
    options: WsOptions,
    tx: mpsc::Sender<WsSignal>,
    token: CancellationToken,
) {
    let mut backoff = Backoff::new(options.backoff_min, options.backoff_max);
    let mut first = true;
    let mut last_failure: Option<String> = None;
    loop {
        let connect = connect(&url, key.as_deref(), options.connect_timeout);
        let result = tokio::select! {
            _ = token.cancelled() => return,
            r = connect => r,
        };
        match result {
            Ok(socket) => {
                tracing::info!(url = %shown, first, "websocket to ComfyUI connected");
                backoff.reset();
                last_failure = None;
                if tx.send(WsSignal::Connected { first }).await.is_err() {
                    return;
                }
                first = false;
                match pump(socket, &options, &tx, &token).await {
                    End::Stop => return,
                    End::Lost(reason) => {
                        tracing::warn!(url = %shown, %reason, "websocket to ComfyUI lost; reconnecting");
                        if tx.send(WsSignal::Disconnected { reason }).await.is_err() {
                            return;
                        }
                    }
                }
            }
            Err(reason) => {
                // Log each distinct failure once at warn level, repeats at debug.
                if last_failure.as_deref() != Some(reason.as_str()) {
                    tracing::warn!(url = %shown, %reason, "cannot open websocket to ComfyUI; retrying");
                    last_failure = Some(reason);
                } else {
                    tracing::debug!(url = %shown, %reason, "websocket retry failed");
                }
            }
        }
        let delay = backoff.next_delay();
        tokio::select! {
            _ = token.cancelled() => return,
            _ = tokio::time::sleep(delay) => {}
        }
    }
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn connect(url: &url::Url, key: Option<&str>, timeout: Duration) -> Result<Socket, String> {
    let mut request = url
        .as_str()
        .into_client_request()
        .map_err(|e| e.to_string())?;
    if let Some(key) = key {
        let mut v = HeaderValue::from_str(&format!("Bearer {key}"))
            .map_err(|_| "API key cannot be sent in an HTTP header".to_owned())?;
        v.set_sensitive(true);
        request.headers_mut().insert("authorization", v);
    }
    match tokio::time::timeout(timeout, tokio_tungstenite::connect_async(request)).await {
        Err(_) => Err(format!("no websocket handshake within {timeout:?}")),
        Ok(Err(e)) => Err(e.to_string()),
        Ok(Ok((socket, _response))) => Ok(socket),
    }
}

/// Reads one connection until it ends; always leaves the socket closed.
async fn pump(
    mut socket: Socket,
    options: &WsOptions,
    tx: &mpsc::Sender<WsSignal>,
    token: &CancellationToken,
) -> End {
    let mut ping_sent = false;
    let end = loop {
        let wait = if ping_sent {
            options.ping_timeout
        } else {
            options.idle_ping
        };
        let next = tokio::select! {
            _ = token.cancelled() => break End::Stop,
            r = tokio::time::timeout(wait, socket.next()) => r,
        };
        let msg = match next {
            Err(_) if !ping_sent => {
                ping_sent = true;
                if let Err(e) = socket.send(Message::Ping(Default::default())).await {
                    break End::Lost(format!("ping failed: {e}"));
                }
                continue;
            }
            Err(_) => break End::Lost(format!("no answer to ping within {wait:?}")),
            Ok(None) => break End::Lost("connection closed".into()),
            Ok(Some(Err(e))) => break End::Lost(e.to_string()),
            Ok(Some(Ok(msg))) => msg,
        };
        ping_sent = false;
        let event = match msg {
            Message::Text(text) => match parse_text(text.as_str()) {
                Ok(ev) => ev,
                Err(e) => {
                    tracing::warn!(error = %e, "skipping websocket frame");
                    continue;
                }
            },
            Message::Binary(bytes) => match parse_binary(&bytes) {
                Ok(ev) => ev,
                Err(e) => {
                    tracing::debug!(error = %e, "skipping binary websocket frame");
                    continue;
                }
            },
            Message::Close(frame) => {
                break End::Lost(match frame {
                    Some(f) => format!("closed by ComfyUI ({} {})", f.code, f.reason),
                    None => "closed by ComfyUI".into(),
                });
            }
            Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => continue,
        };
        if tx.send(WsSignal::Event(event)).await.is_err() {
            break End::Stop;
        }
    };
    // Close our side and wait (briefly) for the server to finish the handshake, so ComfyUI
    // has dropped this clientId's socket before a new one registers under the same id.
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        let _ = socket.close(None).await;
        while let Some(Ok(_)) = socket.next().await {}
    })
    .await;
    drop(socket);
    end
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_cap_with_jitter_and_resets() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
        let mut bases = Vec::new();
        for _ in 0..10 {
            let d = b.next_delay();
            bases.push(d);
        }
        assert!(bases[0] >= Duration::from_millis(50) && bases[0] <= Duration::from_millis(100));
        assert!(bases[1] >= Duration::from_millis(100) && bases[1] <= Duration::from_millis(200));
        for d in &bases[6..] {
            assert!(
                *d >= Duration::from_millis(2500) && *d <= Duration::from_secs(5),
                "{d:?}"
            );
        }
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(100));
    }
}
