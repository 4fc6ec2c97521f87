//! JSON-RPC edges over stdio, against the real binary: raw lines written to its stdin,
//! answers read from its stdout. Every request whose id can be read must be answered with
//! that id, and the session must keep serving afterwards.
//!
//! Every wait is bounded (a missing answer fails the test instead of hanging it); nothing
//! asserts on timings.

mod common;

use std::io::{BufRead as _, Write as _};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::mpsc;

/// Upper bound for any single wait (a bound, not an expectation).
const BOUND: Duration = Duration::from_secs(60);

struct Server {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::UnboundedReceiver<String>,
    _out: tempfile::TempDir,
}

impl Server {
    /// Starts the binary on `comfyui_url` with extra environment variables, and
    /// initializes the session.
    async fn start(comfyui_url: &str, env: &[(&str, &str)]) -> Self {
        let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
        let out = tempfile::tempdir().expect("temp dir");
        let cache = Path::new(env!("CARGO_TARGET_TMPDIR")).join("protocol-stdio-pack-cache");
        let mut command = Command::new(env!("CARGO_BIN_EXE_comfyui-mcp"));
        command
            .env("COMFYUI_URL", comfyui_url)
            .env("COMFYUI_TEMPLATES_DIR", manifest.join("../templates"))
            .env(
                "COMFYUI_WORKFLOW_DIRS",
                manifest.join("../examples/workflows"),
            )
            .env("COMFYUI_OUTPUT_DIR", out.path())
            .env("COMFYUI_MCP_CACHE_DIR", &cache)
            .env("COMFYUI_MCP_NO_WATCH", "true")
            .env("COMFYUI_MCP_LOG", "warn")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        for (k, v) in env {
            command.env(k, v);
        }
        let mut child = command.spawn().expect("the server starts");
        let stdin = child.stdin.take().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::unbounded_channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut server = Self {
            child,
            stdin: Some(stdin),
            lines,
            _out: out,
        };
        server
            .send_json(
                &json!({"jsonrpc": "2.0", "id": "init", "method": "initialize", "params": {
                "protocolVersion": "2025-06-18", "capabilities": {},
                "clientInfo": {"name": "protocol_stdio", "version": "0"}}}),
            )
            .await;
        let init = server.next_with_id(&json!("init")).await;
        assert_eq!(
            init["result"]["serverInfo"]["name"], "comfyui-mcp",
            "{init}"
        );
        server
            .send_json(&json!({"jsonrpc": "2.0", "method": "notifications/initialized"}))
            .await;
        server
    }

    async fn send_raw(&mut self, bytes: &[u8]) {
        let mut stdin = self.stdin.take().expect("stdin is open");
        let bytes = bytes.to_vec();
        // A large line blocks until the server reads it: write on a blocking thread.
        let stdin = tokio::task::spawn_blocking(move || {
            stdin.write_all(&bytes).expect("stdin takes the line");
            stdin.flush().unwrap();
            stdin
        })
        .await
        .unwrap();
        self.stdin = Some(stdin);
    }

    async fn send_json(&mut self, message: &Value) {
        let mut line = serde_json::to_vec(message).unwrap();
        line.push(b'\n');
        self.send_raw(&line).await;
    }

    /// The next message that is not a notification.
    async fn next_answer(&mut self) -> Value {
        loop {
            let line = tokio::time::timeout(BOUND, self.lines.recv())
                .await
                .expect("an answer arrives in time")
                .expect("the server is still running");
            let value: Value = serde_json::from_str(&line)
                .unwrap_or_else(|e| panic!("stdout holds only JSON-RPC ({e}): {line}"));
            if value.get("method").is_some() && value.get("id").is_none() {
                continue;
            }
            return value;
        }
    }

    /// Skips answers until the one with `id`.
    async fn next_with_id(&mut self, id: &Value) -> Value {
        loop {
            let answer = self.next_answer().await;
            if &answer["id"] == id {
                return answer;
            }
        }
    }

    /// A ping answers: the session still serves.
    /// Packs load in the background after `initialize`: polls `tools/list` until `tool`
    /// is served (bounded).
    async fn wait_for_tool(&mut self, tool: &str) {
        let deadline = tokio::time::Instant::now() + BOUND;
        for n in 0.. {
            let id = json!(format!("tools-{n}"));
            self.send_json(&json!({"jsonrpc": "2.0", "id": id, "method": "tools/list"}))
                .await;
            let list = self.next_with_id(&id).await;
            let served = list["result"]["tools"]
                .as_array()
                .is_some_and(|tools| tools.iter().any(|t| t["name"] == tool));
            if served {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "tool {tool} was never served"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn still_serves(&mut self, id: u64) {
        self.send_json(&json!({"jsonrpc": "2.0", "id": id, "method": "ping"}))
            .await;
        let pong = self.next_answer().await;
        assert_eq!(pong["id"], id, "{pong}");
        assert!(pong.get("result").is_some(), "{pong}");
    }

    async fn close(mut self) {
        drop(self.stdin.take());
        let mut child = self.child;
        let _ = tokio::task::spawn_blocking(move || {
            let deadline = std::time::Instant::now() + BOUND;
            while std::time::Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        })
        .await;
    }
}

fn error_code(answer: &Value) -> i64 {
    answer["error"]["code"]
        .as_i64()
        .unwrap_or_else(|| panic!("an error answer: {answer}"))
}

#[tokio::test]
async fn invalid_json_is_answered_with_a_parse_error() {
    let mut server = Server::start("sim", &[]).await;
    server
        .send_raw(b"{\"jsonrpc\": \"2.0\", \"id\": 7, \n")
        .await;
    let answer = server.next_answer().await;
    assert_eq!(error_code(&answer), -32700, "{answer}");
    assert_eq!(answer["id"], Value::Null, "{answer}");
    server.send_raw(b"not json at all\n").await;
    let answer = server.next_answer().await;
    assert_eq!(error_code(&answer), -32700, "{answer}");
    server.still_serves(1).await;
    server.close().await;
}

#[tokio::test]
async fn invalid_requests_are_answered_with_their_id() {
    let mut server = Server::start("sim", &[]).await;
    let cases = [
        (json!({"jsonrpc": "2.0", "id": 41}), json!(41)),
        (
            json!({"jsonrpc": "1.0", "id": "v1", "method": "ping"}),
            json!("v1"),
        ),
        (json!({"jsonrpc": "2.0", "id": 43, "method": 12}), json!(43)),
        (
            json!({"jsonrpc": "2.0", "id": 44, "method": "ping", "params": "x"}),
            json!(44),
        ),
        (
            json!({"jsonrpc": "2.0", "id": 45.5, "method": "ping"}),
            json!(45.5),
        ),
        (json!(42), Value::Null),
    ];
    for (message, id) in cases {
        server.send_json(&message).await;
        let answer = server.next_answer().await;
        assert_eq!(answer["id"], id, "{message} -> {answer}");
        let code = error_code(&answer);
        assert_eq!(code, -32600, "{message} -> {answer}");
    }
    server.still_serves(2).await;
    server.close().await;
}

#[tokio::test]
async fn numbers_out_of_range_are_answered() {
    let mut server = Server::start("sim", &[]).await;
    server
        .send_raw(
            br#"{"jsonrpc":"2.0","id":42,"method":"tools/call","params":{"name":"generate_image","arguments":{"template":"item-icon","prompt":"x","seed":1e999}}}
"#,
        )
        .await;
    let answer = server.next_answer().await;
    assert_eq!(answer["id"], 42, "{answer}");
    assert_eq!(error_code(&answer), -32602, "{answer}");
    server.still_serves(3).await;
    server.close().await;
}

#[tokio::test]
async fn badly_shaped_tool_call_params_are_invalid_params() {
    let mut server = Server::start("sim", &[]).await;
    for (id, params) in [
        (51, json!({"name": 5})),
        (52, json!({"arguments": {}})),
        (53, json!({"name": "list_workflows", "arguments": "all"})),
    ] {
        server
            .send_json(
                &json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": params}),
            )
            .await;
        let answer = server.next_answer().await;
        assert_eq!(answer["id"], id, "{answer}");
        assert_eq!(error_code(&answer), -32602, "{params} -> {answer}");
    }
    server.still_serves(4).await;
    server.close().await;
}

#[tokio::test]
async fn batches_get_an_answer_per_request() {
    let mut server = Server::start("sim", &[]).await;
    server
        .send_json(&json!([
            {"jsonrpc": "2.0", "id": 61, "method": "ping"},
            {"jsonrpc": "2.0", "method": "notifications/initialized"},
            {"jsonrpc": "2.0", "id": "b", "method": "tools/list"}
        ]))
        .await;
    let answer = server.next_answer().await;
    let items = answer
        .as_array()
        .unwrap_or_else(|| panic!("an array: {answer}"));
    let ids: Vec<&Value> = items.iter().map(|a| &a["id"]).collect();
    assert_eq!(ids, [&json!(61), &json!("b")], "{answer}");
    assert!(items.iter().all(|a| error_code(a) == -32600), "{answer}");
    // Elements that are not messages are answered with a null id each.
    server.send_json(&json!([1, "two"])).await;
    let answer = server.next_answer().await;
    let items = answer
        .as_array()
        .unwrap_or_else(|| panic!("an array: {answer}"));
    assert_eq!(items.len(), 2, "{answer}");
    assert!(
        items
            .iter()
            .all(|a| a["id"].is_null() && error_code(a) == -32600),
        "{answer}"
    );
    server.still_serves(5).await;
    server.close().await;
}

/// A `ping` padded with whitespace to exactly `len` bytes (newline excluded).
fn padded_ping(id: u64, len: usize) -> Vec<u8> {
    let head = format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"ping""#);
    let mut line = head.into_bytes();
    line.resize(len - 1, b' ');
    line.push(b'}');
    assert_eq!(line.len(), len);
    line.push(b'\n');
    line
}

#[tokio::test]
async fn lines_over_the_size_limit_are_answered_and_the_session_goes_on() {
    let limit = 4096;
    let mut server = Server::start(
        "sim",
        &[("COMFYUI_MCP_MAX_REQUEST_BYTES", &limit.to_string())],
    )
    .await;
    // At the limit: served.
    server.send_raw(&padded_ping(70, limit)).await;
    let answer = server.next_answer().await;
    assert_eq!(answer["id"], 70, "{answer}");
    assert!(answer.get("result").is_some(), "{answer}");
    // One byte over: refused with the id read from the line's beginning.
    server.send_raw(&padded_ping(71, limit + 1)).await;
    let answer = server.next_answer().await;
    assert_eq!(answer["id"], 71, "{answer}");
    assert_eq!(error_code(&answer), -32600, "{answer}");
    let message = answer["error"]["message"].as_str().unwrap();
    assert!(message.contains("4096-byte limit"), "{message}");
    assert!(
        message.contains("COMFYUI_MCP_MAX_REQUEST_BYTES"),
        "{message}"
    );
    // Far over, id after the long part: refused with a null id.
    let mut big = br#"{"jsonrpc":"2.0","method":"tools/call","params":{"name":""#.to_vec();
    big.extend(std::iter::repeat_n(b'x', 20 * limit));
    big.extend_from_slice(br#""},"id":72}"#);
    big.push(b'\n');
    server.send_raw(&big).await;
    let answer = server.next_answer().await;
    assert_eq!(answer["id"], Value::Null, "{answer}");
    assert_eq!(error_code(&answer), -32600, "{answer}");
    server.still_serves(6).await;
    server.close().await;
}

#[tokio::test]
async fn the_default_limit_answers_a_line_over_16_mib() {
    let mut server = Server::start("sim", &[]).await;
    let mut big = br#"{"jsonrpc":"2.0","id":80,"method":"tools/call","params":{"name":"list_workflows","arguments":{"category":""#.to_vec();
    big.extend(std::iter::repeat_n(b'x', 17 << 20));
    big.extend_from_slice(b"\"}}}\n");
    server.send_raw(&big).await;
    let answer = server.next_answer().await;
    assert_eq!(answer["id"], 80, "{answer}");
    assert_eq!(error_code(&answer), -32600, "{answer}");
    server.still_serves(7).await;
    server.close().await;
}

/// A server on a simulator whose queue is held, with a waiting `generate_image` call of
/// request `id` in flight (its job queued).
async fn held_call(id: u64, prompt: &str) -> (simulator::SimHandle, Server) {
    let sim = common::simulator_with(simulator::SimConfig::default()).await;
    let mut server = Server::start(&sim.base_url(), &[]).await;
    server.wait_for_tool("item-icon").await;
    // Held queue: the waiting call stays in flight until released.
    sim.hold_queue(true);
    server
        .send_json(&json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {
            "name": "generate_image",
            "arguments": {"template": "item-icon", "prompt": prompt, "wait": true, "timeout": 600}}}))
        .await;
    // Wait until the job is queued (the call is certainly in flight).
    common::wait_for_prompt(&sim, BOUND).await;
    (sim, server)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_duplicate_in_flight_id_is_refused_and_the_first_call_still_answers() {
    let (sim, mut server) = held_call(90, "a red potion").await;
    server
        .send_json(&json!({"jsonrpc": "2.0", "id": 90, "method": "ping"}))
        .await;
    let refusal = server.next_answer().await;
    assert_eq!(refusal["id"], 90, "{refusal}");
    assert_eq!(error_code(&refusal), -32600, "{refusal}");
    assert!(
        refusal["error"]["message"]
            .as_str()
            .unwrap()
            .contains("already used"),
        "{refusal}"
    );
    sim.hold_queue(false);
    let result = server.next_with_id(&json!(90)).await;
    assert_eq!(
        result["result"]["structuredContent"]["status"], "completed",
        "{result}"
    );
    // The id is free again once answered.
    server.still_serves(90).await;
    server.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_request_frees_its_id() {
    let (sim, mut server) = held_call(95, "a blue gem").await;
    // rmcp sends no response to a cancelled request, so the id must be free at once.
    server
        .send_json(
            &json!({"jsonrpc": "2.0", "method": "notifications/cancelled",
            "params": {"requestId": 95, "reason": "test"}}),
        )
        .await;
    server.still_serves(95).await;
    sim.hold_queue(false);
    server.close().await;
}
