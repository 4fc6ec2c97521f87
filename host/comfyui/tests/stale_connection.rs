//! A pooled keep-alive connection that ComfyUI (or a proxy in front of it) closed while it
//! sat idle: the next request on it reads no response at all. For a request that is safe
//! to repeat (a read, or a delete by id) the client repeats it once on a fresh connection,
//! so a restart of ComfyUI between two calls is not a failed call. A submit is never
//! repeated (it could queue the prompt twice): it fails with the transport error.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use comfyui::{ClientError, ComfyClient, ComfyConfig};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Reads one HTTP/1.1 request (headers plus a `Content-Length` body); `None` at EOF.
async fn read_request(stream: &mut TcpStream) -> Option<String> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_string();
            let len = head
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse::<usize>().ok())?
                })
                .unwrap_or(0);
            while buf.len() < end + 4 + len {
                let n = stream.read(&mut chunk).await.ok()?;
                if n == 0 {
                    return None;
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            return Some(head);
        }
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// A server whose every connection answers its first request (keep-alive) and then, on
/// the second request, reads it and closes without a byte of response: what a pooled
/// connection to a restarted ComfyUI looks like. Counts the requests it read.
async fn one_shot_connections(body: &'static str) -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/", listener.local_addr().unwrap());
    let seen = Arc::new(AtomicUsize::new(0));
    let counter = seen.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                return;
            };
            let counter = counter.clone();
            tokio::spawn(async move {
                if read_request(&mut stream).await.is_none() {
                    return;
                }
                counter.fetch_add(1, Ordering::SeqCst);
                let response = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
                    body.len()
                );
                if stream.write_all(response.as_bytes()).await.is_err() {
                    return;
                }
                if read_request(&mut stream).await.is_some() {
                    counter.fetch_add(1, Ordering::SeqCst);
                }
                // Dropped here: closed without answering the second request.
            });
        }
    });
    (url, seen)
}

fn client(url: &str) -> ComfyClient {
    let cfg = ComfyConfig::new(url)
        .unwrap()
        .with_timeout(Duration::from_secs(10))
        .unwrap();
    ComfyClient::new(&cfg).unwrap()
}

#[tokio::test]
async fn a_read_on_a_connection_closed_while_idle_is_repeated_once() {
    let (url, seen) = one_shot_connections(r#"{"queue_running": [], "queue_pending": []}"#).await;
    let client = client(&url);
    client.queue().await.expect("first read");
    // The pooled connection is reused, read, and closed without an answer.
    let again = client.queue().await;
    assert!(
        again.is_ok(),
        "a read on a stale pooled connection failed: {again:?}"
    );
    assert_eq!(seen.load(Ordering::SeqCst), 3, "first, stale, repeated");
}

#[tokio::test]
async fn a_submit_on_a_connection_closed_while_idle_is_not_repeated() {
    let (url, seen) =
        one_shot_connections(r#"{"prompt_id": "p1", "number": 0, "node_errors": {}}"#).await;
    let client = client(&url);
    let graph = json!({"1": {"class_type": "EmptyImage", "inputs": {}}});
    client
        .submit("p1", &graph, "client-1")
        .await
        .expect("first submit");
    let again = client.submit("p2", &graph, "client-1").await;
    assert!(
        matches!(again, Err(ClientError::Unreachable { .. })),
        "a submit must not be repeated: {again:?}"
    );
    assert_eq!(
        seen.load(Ordering::SeqCst),
        2,
        "the prompt reached ComfyUI once more, not twice"
    );
}
