//! JSON-RPC and HTTP edges of the streamable HTTP transport, with raw TCP clients (to send
//! what well-behaved clients cannot: two `Host` headers, absolute-form targets, pipelined
//! requests behind a refused one).
//!
//! Every wait is bounded; nothing asserts on timings.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use comfyui_mcp::App;
use comfyui_mcp::mcp::McpOptions;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

/// Upper bound for any single wait (a bound, not an expectation).
const BOUND: Duration = Duration::from_secs(60);

struct Fixture {
    app: Arc<App>,
    sim: simulator::SimHandle,
    _out: tempfile::TempDir,
}

async fn fixture() -> Fixture {
    let sim = common::simulator_with(simulator::SimConfig::default()).await;
    let out = tempfile::tempdir().expect("temp dir");
    let cache = Path::new(env!("CARGO_TARGET_TMPDIR")).join("protocol-http-pack-cache");
    let app = common::shipped_app(&sim, out.path(), &cache, &[]).await;
    Fixture {
        app,
        sim,
        _out: out,
    }
}

struct Http {
    addr: SocketAddr,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Http {
    async fn start(app: Arc<App>, options: McpOptions) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(comfyui_mcp::mcp::serve_http_on(
            app,
            options,
            listener,
            shutdown.clone(),
        ));
        Self {
            addr,
            shutdown,
            task,
        }
    }

    async fn stop(self) {
        self.shutdown.cancel();
        let _ = tokio::time::timeout(BOUND, self.task).await;
    }
}

fn initialize() -> Vec<u8> {
    serde_json::to_vec(
        &json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {},
        "clientInfo": {"name": "protocol_http", "version": "0"}}}),
    )
    .unwrap()
}

/// A POST to `target` with the given extra header lines and body.
fn post(target: &str, headers: &[&str], body: &[u8]) -> Vec<u8> {
    let mut out = format!("POST {target} HTTP/1.1\r\n");
    for h in headers {
        out.push_str(h);
        out.push_str("\r\n");
    }
    out.push_str("Content-Type: application/json\r\n");
    out.push_str("Accept: application/json, text/event-stream\r\n");
    out.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    let mut out = out.into_bytes();
    out.extend_from_slice(body);
    out
}

struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Reads one HTTP/1.1 response with a `Content-Length` body (or the status line and
/// headers only, for a streamed body).
async fn read_answer(reader: &mut BufReader<TcpStream>) -> Option<Answer> {
    let read = async {
        let mut status_line = String::new();
        if reader.read_line(&mut status_line).await.ok()? == 0 {
            return None;
        }
        let status: u16 = status_line.split_whitespace().nth(1)?.parse().ok()?;
        let mut headers = Vec::new();
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).await.ok()?;
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            let (k, v) = line.split_once(':')?;
            headers.push((k.trim().to_owned(), v.trim().to_owned()));
        }
        let length = headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
            .and_then(|(_, v)| v.parse::<usize>().ok());
        let mut body = vec![0; length.unwrap_or(0)];
        reader.read_exact(&mut body).await.ok()?;
        Some(Answer {
            status,
            headers,
            body,
        })
    };
    tokio::time::timeout(BOUND, read)
        .await
        .expect("an answer (or a closed connection) in time")
}

async fn exchange(addr: SocketAddr, request: &[u8]) -> Answer {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(request).await.unwrap();
    let mut reader = BufReader::new(stream);
    read_answer(&mut reader).await.expect("an HTTP answer")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_json_is_400_with_a_parse_error() {
    let f = fixture().await;
    let http = Http::start(f.app.clone(), McpOptions::default()).await;
    let host = format!("Host: {}", http.addr);
    for body in [&b"{\"jsonrpc\": \"2.0\", \"id\": 1,"[..], b"not json"] {
        let answer = exchange(http.addr, &post("/mcp", &[&host], body)).await;
        assert_eq!(
            answer.status,
            400,
            "{}",
            String::from_utf8_lossy(&answer.body)
        );
        let error: Value = serde_json::from_slice(&answer.body).expect("a JSON-RPC body");
        assert_eq!(error["error"]["code"], -32700, "{error}");
        assert_eq!(error["id"], Value::Null, "{error}");
    }
    // A request of the wrong shape keeps its id.
    let body = br#"{"jsonrpc":"2.0","id":"x1","method":"tools/call","params":{"name":5}}"#;
    let answer = exchange(http.addr, &post("/mcp", &[&host], body)).await;
    assert_eq!(answer.status, 400);
    let error: Value = serde_json::from_slice(&answer.body).unwrap();
    assert_eq!(
        (error["id"].clone(), error["error"]["code"].clone()),
        (json!("x1"), json!(-32602)),
        "{error}"
    );
    http.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_host_header_is_refused() {
    let f = fixture().await;
    let http = Http::start(f.app.clone(), McpOptions::default()).await;
    let own = format!("Host: {}", http.addr);
    // Sanity: the same request with one loopback Host passes.
    let ok = exchange(http.addr, &post("/mcp", &[&own], &initialize())).await;
    assert_eq!(ok.status, 200);
    let two = exchange(
        http.addr,
        &post("/mcp", &[&own, "Host: evil.example"], &initialize()),
    )
    .await;
    assert!(matches!(two.status, 400 | 403), "status {}", two.status);
    http.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_absolute_form_target_naming_another_host_is_refused() {
    let f = fixture().await;
    let http = Http::start(f.app.clone(), McpOptions::default()).await;
    let own = format!("Host: {}", http.addr);
    let absolute = exchange(
        http.addr,
        &post("http://evil.example/mcp", &[&own], &initialize()),
    )
    .await;
    assert_eq!(absolute.status, 403);
    let own_absolute = exchange(
        http.addr,
        &post(&format!("http://{}/mcp", http.addr), &[&own], &initialize()),
    )
    .await;
    assert_eq!(own_absolute.status, 200);
    http.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_request_leaves_the_connection_usable() {
    let f = fixture().await;
    let options = McpOptions {
        http_token: Some("s3cret".into()),
        ..McpOptions::default()
    };
    let http = Http::start(f.app.clone(), options).await;
    let host = format!("Host: {}", http.addr);
    // A large body behind a refused request, then a second request on the same
    // connection (pipelined): both must be answered, in order.
    let mut big = b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\",\"pad\":\"".to_vec();
    big.extend(std::iter::repeat_n(b'x', 1 << 20));
    big.extend_from_slice(b"\"}");
    let mut wire = post("/mcp", &[&host], &big);
    wire.extend(post(
        "/mcp",
        &[
            &host,
            "Authorization: Bearer s3cret",
            "Origin: http://evil.example",
        ],
        &initialize(),
    ));
    let mut stream = TcpStream::connect(http.addr).await.unwrap();
    stream.write_all(&wire).await.unwrap();
    let mut reader = BufReader::new(stream);
    let first = read_answer(&mut reader).await.expect("the first answer");
    assert_eq!(first.status, 401);
    let second = read_answer(&mut reader)
        .await
        .expect("the connection still answers after a refusal");
    assert_eq!(second.status, 403);
    assert!(String::from_utf8_lossy(&second.body).contains("Origin"));
    http.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_over_the_size_limit_are_413_with_a_json_rpc_error() {
    let f = fixture().await;
    let limit = 1024;
    let options = McpOptions {
        max_request_bytes: limit,
        ..McpOptions::default()
    };
    let http = Http::start(f.app.clone(), options).await;
    let host = format!("Host: {}", http.addr);
    // At the limit: served.
    let mut at_limit = initialize();
    at_limit.pop();
    at_limit.resize(limit - 1, b' ');
    at_limit.push(b'}');
    assert_eq!(at_limit.len(), limit);
    let ok = exchange(http.addr, &post("/mcp", &[&host], &at_limit)).await;
    assert_eq!(ok.status, 200);
    // One byte over: refused, naming the limit and how to raise it.
    let mut over = at_limit.clone();
    over.insert(over.len() - 1, b' ');
    let refused = exchange(http.addr, &post("/mcp", &[&host], &over)).await;
    assert_eq!(refused.status, 413);
    assert_eq!(refused.header("connection"), Some("close"));
    let error: Value = serde_json::from_slice(&refused.body).unwrap();
    assert_eq!(error["error"]["code"], -32600, "{error}");
    let message = error["error"]["message"].as_str().unwrap();
    assert!(message.contains("1024-byte limit"), "{message}");
    assert!(
        message.contains("COMFYUI_MCP_MAX_REQUEST_BYTES"),
        "{message}"
    );
    http.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_duplicate_in_flight_id_in_a_session_is_refused_and_the_first_stream_ends() {
    let f = fixture().await;
    let http = Http::start(f.app.clone(), McpOptions::default()).await;
    let url = format!("http://{}/mcp", http.addr);
    let client = reqwest::Client::new();
    let post = |session: Option<&str>, body: Value| {
        let mut request = client
            .post(&url)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .header("mcp-protocol-version", "2025-06-18")
            .json(&body);
        if let Some(session) = session {
            request = request.header("mcp-session-id", session);
        }
        request.send()
    };
    let init: Value = serde_json::from_slice(&initialize()).unwrap();
    let answer = tokio::time::timeout(BOUND, post(None, init))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(answer.status(), 200);
    let session = answer.headers()["mcp-session-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let _ = tokio::time::timeout(BOUND, answer.text()).await.unwrap();
    let initialized = post(
        Some(&session),
        json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
    )
    .await
    .unwrap();
    assert!(initialized.status().is_success());
    f.sim.hold_queue(true);
    let call = json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {
        "name": "generate_image",
        "arguments": {"template": "item-icon", "prompt": "a green key", "wait": true, "timeout": 600}}});
    let first = {
        let request = post(Some(&session), call);
        tokio::spawn(async move {
            let response = request.await.unwrap();
            (response.status(), response.text().await.unwrap())
        })
    };
    common::wait_for_prompt(&f.sim, BOUND).await;
    let second = tokio::time::timeout(
        BOUND,
        post(
            Some(&session),
            json!({"jsonrpc": "2.0", "id": 7, "method": "ping"}),
        ),
    )
    .await
    .expect("the duplicate is answered")
    .unwrap();
    assert_eq!(second.status(), 400);
    let refusal: Value = serde_json::from_str(&second.text().await.unwrap()).unwrap();
    assert_eq!(refusal["id"], 7, "{refusal}");
    assert_eq!(refusal["error"]["code"], -32600, "{refusal}");
    f.sim.hold_queue(false);
    let (status, body) = tokio::time::timeout(BOUND, first)
        .await
        .expect("the first call's stream ends")
        .unwrap();
    assert_eq!(status, 200);
    assert!(
        body.contains("\"id\":7") && body.contains("completed"),
        "{body}"
    );
    // Once answered, the id may be used again.
    let again = tokio::time::timeout(
        BOUND,
        post(
            Some(&session),
            json!({"jsonrpc": "2.0", "id": 7, "method": "ping"}),
        ),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(again.status(), 200);
    http.stop().await;
}

/// Sends the headers and half the body of `request`, then nothing more.
async fn stall_half_way(addr: SocketAddr, request: &[u8]) -> BufReader<TcpStream> {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(&request[..request.len() - 8])
        .await
        .unwrap();
    BufReader::new(stream)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_stops_arriving_is_408_on_both_surfaces_and_others_are_served() {
    let f = fixture().await;
    let options = McpOptions {
        body_timeout: Duration::from_millis(300),
        ..McpOptions::default()
    };
    let http = Http::start(f.app.clone(), options).await;
    let host = format!("Host: {}", http.addr);
    let mut mcp = stall_half_way(http.addr, &post("/mcp", &[&host], &initialize())).await;
    let api_body = br#"{"tool": "list_workflows", "params": {}}"#;
    let mut api = stall_half_way(http.addr, &post("/api", &[&host], api_body)).await;
    // Meanwhile a whole request on another connection is answered at once.
    let served = exchange(http.addr, &post("/mcp", &[&host], &initialize())).await;
    assert_eq!(served.status, 200);

    let late = read_answer(&mut mcp)
        .await
        .expect("an answer to the stalled /mcp body");
    assert_eq!(late.status, 408);
    assert_eq!(late.header("connection"), Some("close"));
    let error: Value = serde_json::from_slice(&late.body).unwrap();
    assert_eq!(error["error"]["code"], -32600, "{error}");
    let message = error["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("300 ms") && message.contains("COMFYUI_MCP_HTTP_BODY_TIMEOUT_MS"),
        "{message}"
    );

    let late = read_answer(&mut api)
        .await
        .expect("an answer to the stalled /api body");
    assert_eq!(late.status, 408);
    let error: Value = serde_json::from_slice(&late.body).unwrap();
    assert_eq!(error["error"]["kind"], "body_timeout", "{error}");
    assert_eq!(error["error"]["details"]["limit_ms"], 300, "{error}");
    http.stop().await;
}
