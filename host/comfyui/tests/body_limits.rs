//! Every body ComfyUI sends is size-capped and read in chunks: a declared `Content-Length`
//! over the cap is refused before reading, an endless chunked body is cut at the cap, and a
//! body exactly at the cap passes. Served by a raw TCP stub so the bodies can be hostile.

use std::net::SocketAddr;
use std::time::Duration;

use comfyui::{BodyLimits, ClientError, ComfyClient, ComfyConfig, ImageRef};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// How the stub answers every request.
#[derive(Clone)]
enum Answer {
    /// `Content-Length` body.
    Fixed(Vec<u8>),
    /// Claims this length and sends nothing more.
    Claims(u64),
    /// Chunked, never ending (1 KiB chunks of `x`).
    Endless,
}

async fn stub(answer: Answer) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let answer = answer.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 16 * 1024];
                let mut head = Vec::new();
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match sock.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                match answer {
                    Answer::Fixed(body) => {
                        let head = format!(
                            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
                            body.len()
                        );
                        let _ = sock.write_all(head.as_bytes()).await;
                        let _ = sock.write_all(&body).await;
                    }
                    Answer::Claims(len) => {
                        let head = format!(
                            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {len}\r\n\r\n"
                        );
                        let _ = sock.write_all(head.as_bytes()).await;
                        tokio::time::sleep(Duration::from_secs(60)).await;
                    }
                    Answer::Endless => {
                        let _ = sock
                            .write_all(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n")
                            .await;
                        let chunk = format!("400\r\n{}\r\n", "x".repeat(1024));
                        while sock.write_all(chunk.as_bytes()).await.is_ok() {}
                    }
                }
            });
        }
    });
    addr
}

fn client(addr: SocketAddr, limits: BodyLimits) -> ComfyClient {
    let cfg = ComfyConfig::new(&format!("http://{addr}"))
        .unwrap()
        .with_timeout(Duration::from_secs(30))
        .unwrap()
        .with_body_limits(limits);
    ComfyClient::new(&cfg).unwrap()
}

const LIMITS: BodyLimits = BodyLimits {
    large_json: 64 * 1024,
    json: 4 * 1024,
    image: 16 * 1024,
};

fn assert_too_large(err: &ClientError, request: &str, limit: u64, setting: &str) {
    match err {
        ClientError::TooLarge {
            request: r,
            limit: l,
            setting: s,
            ..
        } => {
            assert_eq!(r, request);
            assert_eq!(*l, limit);
            assert_eq!(*s, setting);
        }
        other => panic!("expected TooLarge for {request}, got {other}"),
    }
    let text = err.to_string();
    assert!(
        text.contains(&limit.to_string()) && text.contains(setting),
        "{text}"
    );
}

/// A JSON body of exactly the cap passes: `{"k":"xxx…"}` padded to `len` bytes.
fn json_of_len(len: usize) -> Vec<u8> {
    let pad = len - r#"{"k":""}"#.len();
    format!(r#"{{"k":"{}"}}"#, "x".repeat(pad)).into_bytes()
}

#[tokio::test]
async fn object_info_at_the_cap_passes_and_one_byte_more_is_refused() {
    let at = stub(Answer::Fixed(json_of_len(64 * 1024))).await;
    let info = client(at, LIMITS).object_info().await.unwrap();
    assert!(info.get("k").is_some());
    let over = stub(Answer::Fixed(json_of_len(64 * 1024 + 1))).await;
    let Err(err) = client(over, LIMITS).object_info().await else {
        panic!("one byte over the cap was accepted");
    };
    assert_too_large(
        &err,
        "GET /object_info",
        64 * 1024,
        "COMFYUI_MCP_MAX_COMFY_BODY_MB",
    );
}

#[tokio::test]
async fn endless_chunked_bodies_are_cut_at_the_cap() {
    let addr = stub(Answer::Endless).await;
    let c = client(addr, LIMITS);
    let err = c.object_info().await.unwrap_err();
    assert_too_large(
        &err,
        "GET /object_info",
        64 * 1024,
        "COMFYUI_MCP_MAX_COMFY_BODY_MB",
    );
    let err = c.queue().await.unwrap_err();
    assert_too_large(
        &err,
        "GET /queue",
        64 * 1024,
        "COMFYUI_MCP_MAX_COMFY_BODY_MB",
    );
    let err = c.system_stats().await.unwrap_err();
    assert_too_large(
        &err,
        "GET /system_stats",
        4 * 1024,
        "COMFYUI_MCP_MAX_COMFY_ANSWER_MB",
    );
    let err = c.history("abc").await.unwrap_err();
    assert_too_large(
        &err,
        "GET /history/abc",
        4 * 1024,
        "COMFYUI_MCP_MAX_COMFY_ANSWER_MB",
    );
    let err = c.model_folders().await.unwrap_err();
    assert_too_large(
        &err,
        "GET /models",
        4 * 1024,
        "COMFYUI_MCP_MAX_COMFY_ANSWER_MB",
    );
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("img.png");
    let image = ImageRef::output("a.png", "");
    let err = c.download_view(&image, &dest).await.unwrap_err();
    assert_too_large(
        &err,
        "GET /view?filename=a.png",
        16 * 1024,
        "COMFYUI_MCP_MAX_IMAGE_MB",
    );
    let written = std::fs::metadata(&dest).map(|m| m.len()).unwrap_or(0);
    assert!(written <= 16 * 1024, "wrote {written} bytes past the cap");
}

#[tokio::test]
async fn a_declared_length_over_the_cap_is_refused_before_reading() {
    let addr = stub(Answer::Claims(10 << 30)).await;
    let c = client(addr, LIMITS);
    // The stub never sends the body: only the header check can end this call in time.
    let err = tokio::time::timeout(Duration::from_secs(20), c.object_info())
        .await
        .expect("refused from the header, without waiting for the body")
        .unwrap_err();
    assert_too_large(
        &err,
        "GET /object_info",
        64 * 1024,
        "COMFYUI_MCP_MAX_COMFY_BODY_MB",
    );
}

#[test]
fn default_caps_are_documented_values() {
    let d = BodyLimits::default();
    assert_eq!(d.large_json, 64 << 20);
    assert_eq!(d.json, 8 << 20);
    assert_eq!(d.image, 512 << 20);
}
