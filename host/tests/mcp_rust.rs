//! The MCP layer end to end, in process: a real `App` (the shipped packs, the ComfyUI
//! simulator on loopback) behind `McpServer`, spoken to with raw JSON-RPC over an in-memory
//! pipe (stdio framing: one JSON message per line), and the streamable HTTP guard over a
//! real socket.
//!
//! Every wait is bounded; nothing asserts on timings.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use comfyui_mcp::App;
use comfyui_mcp::catalog::Catalog;
use comfyui_mcp::mcp::McpOptions;
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;
use tokio_util::sync::CancellationToken;

/// Upper bound for any single wait in these tests (a bound, not an expectation).
const BOUND: Duration = Duration::from_secs(120);

struct Fixture {
    app: Arc<App>,
    sim: simulator::SimHandle,
    _out: tempfile::TempDir,
}

async fn fixture(step_delay: Duration) -> Fixture {
    let sim = common::simulator(step_delay).await;
    let out = tempfile::tempdir().expect("temp dir");
    let workflows: PathBuf = common::repo().join("examples/workflows");
    let cache = Path::new(env!("CARGO_TARGET_TMPDIR")).join("mcp-rust-pack-cache");
    let workflow_dir = workflows.display().to_string();
    let app =
        common::shipped_app(&sim, out.path(), &cache, &["--workflow-dir", &workflow_dir]).await;
    common::assert_templates(&app, 6, "the shipped pack");
    Fixture {
        app,
        sim,
        _out: out,
    }
}

/// A raw JSON-RPC client on one end of an in-memory pipe.
struct RawClient {
    write: common::PipeWrite,
    lines: common::PipeLines,
    notifications: Vec<Value>,
    next_id: u64,
}

impl RawClient {
    /// Serves a fresh `McpServer` on a pipe and initializes the session.
    async fn connect(app: Arc<App>) -> Self {
        let mut client = Self::open(app).await;
        client.notify("notifications/initialized", json!({})).await;
        client
    }

    /// Serves a fresh `McpServer` on a pipe and answers `initialize`, without `initialized`.
    async fn open(app: Arc<App>) -> Self {
        let (write, lines) = common::serve_pipe(app);
        let mut client = Self {
            write,
            lines,
            notifications: Vec::new(),
            next_id: 1,
        };
        let init = client
            .request(
                "initialize",
                json!({"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "mcp_rust", "version": "0"}}),
            )
            .await;
        assert_eq!(init["result"]["serverInfo"]["name"], "comfyui-mcp");
        assert_eq!(init["result"]["capabilities"]["tools"]["listChanged"], true);
        assert_eq!(
            init["result"]["capabilities"]["resources"]["listChanged"],
            true
        );
        client
    }

    async fn send(&mut self, message: Value) {
        let mut line = serde_json::to_vec(&message).unwrap();
        line.push(b'\n');
        self.write.write_all(&line).await.unwrap();
        self.write.flush().await.unwrap();
    }

    async fn notify(&mut self, method: &str, params: Value) {
        self.send(json!({"jsonrpc": "2.0", "method": method, "params": params}))
            .await;
    }

    /// Sends a request without waiting for its answer; returns its id.
    async fn start(&mut self, method: &str, params: Value) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        self.send(json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}))
            .await;
        id
    }

    /// Reads messages until the response to `id`, keeping notifications.
    async fn response(&mut self, id: u64) -> Value {
        loop {
            let message = self.next_message().await;
            if message.get("id") == Some(&json!(id)) && message.get("method").is_none() {
                return message;
            }
            if message.get("method").is_some() && message.get("id").is_none() {
                self.notifications.push(message);
            }
        }
    }

    async fn next_message(&mut self) -> Value {
        let line = tokio::time::timeout(BOUND, self.lines.next_line())
            .await
            .expect("the server answers within the bound")
            .expect("pipe readable")
            .expect("server still connected");
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"))
    }

    async fn request(&mut self, method: &str, params: Value) -> Value {
        let id = self.start(method, params).await;
        self.response(id).await
    }

    /// `tools/call`, returning the `result` object.
    async fn call(&mut self, tool: &str, arguments: Value) -> Value {
        let response = self
            .request("tools/call", json!({"name": tool, "arguments": arguments}))
            .await;
        response
            .get("result")
            .cloned()
            .unwrap_or_else(|| panic!("tools/call {tool} failed at protocol level: {response}"))
    }
}

fn text_json(result: &Value) -> Value {
    let text = result["content"][0]["text"]
        .as_str()
        .expect("first block is text");
    serde_json::from_str(text).expect("the text block holds JSON")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tools_are_listed_with_schemas_from_the_packs() {
    let f = fixture(Duration::ZERO).await;
    let mut c = RawClient::connect(f.app.clone()).await;
    let tools = c.request("tools/list", json!({})).await["result"]["tools"].clone();
    let names: Vec<&str> = tools
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    for expected in [
        "generate_image",
        "list_workflows",
        "get_workflow_status",
        "cancel_workflow",
        "load_workflow",
        "character-portrait",
        "item-icon",
        "environment-texture",
        "pixel-art",
    ] {
        assert!(
            names.contains(&expected),
            "{expected} missing from {names:?}"
        );
    }
    for t in tools.as_array().unwrap() {
        assert!(
            t["description"].as_str().is_some_and(|d| !d.is_empty()),
            "{}",
            t["name"]
        );
        assert_eq!(t["inputSchema"]["type"], "object", "{}", t["name"]);
        assert_eq!(t["outputSchema"]["type"], "object", "{}", t["name"]);
    }
    let generate = tools
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "generate_image")
        .unwrap();
    let props = &generate["inputSchema"]["properties"];
    assert_eq!(props["steps"]["minimum"], 1);
    assert_eq!(props["steps"]["maximum"], 150);
    assert_eq!(props["cfg_scale"]["minimum"], 1.0);
    assert_eq!(props["cfg_scale"]["maximum"], 30.0);
    assert_eq!(props["batch_size"]["maximum"], 4);
    assert_eq!(props["width"]["multipleOf"], 8);
    let samplers = props["sampler"]["enum"].as_array().unwrap();
    assert!(samplers.contains(&json!("euler")) && samplers.contains(&json!("dpm++")));
    assert_eq!(props["template"]["enum"].as_array().unwrap().len(), 6);
    // A template or a custom workflow: the schema requires neither, the server one of them.
    assert_eq!(generate["inputSchema"]["required"], Value::Null);
    assert_eq!(props["workflow"]["type"], "object");
    assert_eq!(props["workflow_path"]["type"], "string");
    let pixel = tools
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "pixel-art")
        .unwrap();
    assert_eq!(
        pixel["inputSchema"]["properties"]["wait"]["type"],
        "boolean"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_generation_reports_progress_and_returns_images() {
    let f = fixture(Duration::from_millis(5)).await;
    let mut c = RawClient::connect(f.app.clone()).await;
    let response = c
        .request(
            "tools/call",
            json!({
                "name": "item-icon",
                "arguments": {"prompt": "a glowing sword", "seed": 7, "wait": true, "timeout": 100},
                "_meta": {"progressToken": "p1"},
            }),
        )
        .await;
    let result = &response["result"];
    assert_eq!(result["isError"], false, "{result}");
    let structured = &result["structuredContent"];
    assert_eq!(text_json(result), *structured);
    assert_eq!(structured["status"], "completed");
    assert_eq!(structured["metadata"]["seed"], 7);
    let image = &structured["images"][0];
    let path = PathBuf::from(image["path"].as_str().unwrap());
    assert!(path.is_absolute() && path.exists(), "{path:?}");

    let progress: Vec<f64> = c
        .notifications
        .iter()
        .filter(|n| n["method"] == "notifications/progress" && n["params"]["progressToken"] == "p1")
        .map(|n| n["params"]["progress"].as_f64().unwrap())
        .collect();
    assert!(!progress.is_empty(), "no progress notifications");
    assert!(
        progress.windows(2).all(|w| w[1] > w[0]),
        "not strictly increasing: {progress:?}"
    );
    assert_eq!(*progress.last().unwrap(), 100.0);

    let blocks = result["content"].as_array().unwrap();
    let inline = blocks
        .iter()
        .find(|b| b["type"] == "image")
        .expect("an image block");
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(inline["data"].as_str().unwrap())
        .unwrap();
    assert!(bytes.len() <= 1_000_000);
    let thumb = image::load_from_memory(&bytes).expect("thumbnail decodes");
    assert!(thumb.width().max(thumb.height()) <= 512);
    let link = blocks
        .iter()
        .find(|b| b["type"] == "resource_link")
        .expect("a resource link");
    assert_eq!(link["uri"], image["uri"]);

    let read = c
        .request("resources/read", json!({"uri": link["uri"]}))
        .await;
    let blob = read["result"]["contents"][0]["blob"]
        .as_str()
        .expect("blob");
    assert_eq!(read["result"]["contents"][0]["mimeType"], "image/png");
    let full = base64::engine::general_purpose::STANDARD
        .decode(blob)
        .unwrap();
    assert_eq!(full, std::fs::read(&path).unwrap());

    let status = c
        .call(
            "get_workflow_status",
            json!({"prompt_id": structured["prompt_id"]}),
        )
        .await;
    assert_eq!(status["structuredContent"]["state"], "completed");
    let job = c
        .request(
            "resources/read",
            json!({"uri": format!("comfyui://jobs/{}", structured["prompt_id"].as_str().unwrap())}),
        )
        .await;
    let job: Value =
        serde_json::from_str(job["result"]["contents"][0]["text"].as_str().unwrap()).unwrap();
    assert_eq!(job["state"], "completed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mistakes_are_tool_errors_naming_the_problem() {
    let f = fixture(Duration::ZERO).await;
    let mut c = RawClient::connect(f.app.clone()).await;
    for (args, needle) in [
        (
            json!({"template": "item-icon", "prompt": "x", "steps": 151}),
            "steps",
        ),
        (
            json!({"template": "item-icon", "prompt": "x", "width": 513}),
            "multiple of 8",
        ),
        (
            json!({"template": "nope", "prompt": "x"}),
            "character-portrait",
        ),
        (json!({"prompt": "x"}), "template"),
        (
            json!({"template": "item-icon", "prompt": "x", "wait": true, "timeout": 4000}),
            "3600",
        ),
    ] {
        let result = c.call("generate_image", args.clone()).await;
        assert_eq!(result["isError"], true, "{args} -> {result}");
        let text = result["content"][0]["text"].as_str().unwrap();
        assert!(text.contains(needle), "{args}: {text:?} lacks {needle:?}");
        assert!(result["structuredContent"]["error"]["message"].is_string());
    }
    let result = c.call("cancel_workflow", json!({})).await;
    assert_eq!(result["isError"], true);
    let result = c
        .call("get_workflow_status", json!({"prompt_id": "not-ours"}))
        .await;
    assert_eq!(result["isError"], true);
    let unknown = c
        .request(
            "tools/call",
            json!({"name": "no_such_tool", "arguments": {}}),
        )
        .await;
    assert!(
        unknown["error"]["message"]
            .as_str()
            .unwrap()
            .contains("generate_image"),
        "{unknown}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_cancellation_cancels_the_job() {
    let f = fixture(Duration::ZERO).await;
    f.sim.hold_queue(true);
    let mut c = RawClient::connect(f.app.clone()).await;
    let id = c
        .start(
            "tools/call",
            json!({"name": "generate_image", "arguments": {"template": "pixel-art", "prompt": "x", "wait": true}, "_meta": {"progressToken": 9}}),
        )
        .await;
    // The job exists once the first progress notification (state queued) arrives.
    let prompt_id = loop {
        let m = c.next_message().await;
        if m["method"] == "notifications/progress" {
            let listed = c.request("resources/list", json!({})).await;
            let job = listed["result"]["resources"]
                .as_array()
                .unwrap()
                .iter()
                .find_map(|r| {
                    r["uri"]
                        .as_str()?
                        .strip_prefix("comfyui://jobs/")
                        .map(str::to_owned)
                });
            break job.expect("the waiting job is listed");
        }
    };
    c.notify(
        "notifications/cancelled",
        json!({"requestId": id, "reason": "test"}),
    )
    .await;
    let deadline = tokio::time::Instant::now() + BOUND;
    loop {
        let status = c
            .call("get_workflow_status", json!({"prompt_id": prompt_id}))
            .await;
        if status["structuredContent"]["state"] == "cancelled" {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "job never cancelled: {status}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    f.sim.hold_queue(false);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catalog_swaps_notify_list_changed() {
    let f = fixture(Duration::ZERO).await;
    let mut c = RawClient::connect(f.app.clone()).await;
    // A round trip after `initialized` so the session's watcher is running.
    c.request("tools/list", json!({})).await;
    republish(&f.app);
    c.expect_list_changed().await;
}

/// rmcp runs `notifications/initialized` as its own task, so the session's watcher may start
/// after the client has listed the tools and the catalog has changed again: a change after
/// `initialize` was answered must still reach the client (it was lost before: the watcher
/// started from whatever generation was current when it got to run).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catalog_swap_before_the_watcher_runs_is_notified() {
    let f = fixture(Duration::ZERO).await;
    let mut c = RawClient::open(f.app.clone()).await;
    republish(&f.app);
    c.notify("notifications/initialized", json!({})).await;
    c.expect_list_changed().await;
}

/// Publishes the current catalog again under the next generation (a hot-reload swap).
fn republish(app: &App) {
    let store = app.catalog_store();
    let old = store.load();
    store.publish(Catalog::assemble(
        old.generation() + 1,
        0,
        old.packs()
            .iter()
            .map(|(path, pack)| {
                let candidate = comfyui_mcp::catalog::Candidate {
                    pack: pack.clone(),
                    seen_in_scan: 0,
                };
                (path.clone(), candidate)
            })
            .collect(),
        Vec::new(),
        Some(&old),
    ));
}

impl RawClient {
    /// Reads messages until both list_changed notifications have arrived.
    async fn expect_list_changed(&mut self) {
        let mut seen = Vec::new();
        while !(seen.contains(&"notifications/tools/list_changed".to_owned())
            && seen.contains(&"notifications/resources/list_changed".to_owned()))
        {
            let m = self.next_message().await;
            if let Some(method) = m["method"].as_str() {
                seen.push(method.to_owned());
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_guard_checks_host_origin_and_token() {
    let f = fixture(Duration::ZERO).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let options = McpOptions {
        http_token: Some("s3cret".into()),
        ..McpOptions::default()
    };
    let shutdown = CancellationToken::new();
    let server = tokio::spawn(comfyui_mcp::mcp::serve_http_on(
        f.app.clone(),
        options,
        listener,
        shutdown.clone(),
    ));
    let url = format!("http://{addr}/mcp");
    let http = reqwest::Client::new();
    let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}}});
    let post = |token: Option<&str>, extra: Option<(&'static str, &'static str)>| {
        let mut req = http
            .post(&url)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .json(&init);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some((k, v)) = extra {
            req = req.header(k, v);
        }
        req.send()
    };
    let r = post(None, None).await.unwrap();
    assert_eq!(r.status(), 401);
    assert!(
        r.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Bearer")
    );
    assert_eq!(post(Some("wrong"), None).await.unwrap().status(), 401);
    assert_eq!(
        post(Some("s3cret"), Some(("origin", "http://evil.example")))
            .await
            .unwrap()
            .status(),
        403
    );
    assert_eq!(
        post(Some("s3cret"), Some(("host", "evil.example")))
            .await
            .unwrap()
            .status(),
        403
    );
    let ok = post(Some("s3cret"), None).await.unwrap();
    assert_eq!(ok.status(), 200);
    let body = ok.text().await.unwrap();
    assert!(body.contains("\"comfyui-mcp\""), "{body}");
    shutdown.cancel();
    tokio::time::timeout(BOUND, server)
        .await
        .expect("the server shuts down")
        .unwrap()
        .unwrap();
}
