//! Shared helpers for the simulator's integration tests: starting a simulator, an HTTP client,
//! a websocket client, transcript loading and the JSON "shape" comparison.

#![allow(dead_code)]

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use simulator::{SimConfig, SimHandle};
use std::path::PathBuf;
use std::sync::Once;
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

/// Upper bound for waits on the simulator (a hang guard, never asserted on).
pub const HANG_GUARD: Duration = Duration::from_secs(60);

/// The recorded transcripts folder.
pub fn transcripts_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/transcripts")
}

/// A transcript file parsed as JSON.
pub fn load(name: &str) -> Value {
    let path = transcripts_dir().join(name);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("parsing {name}: {e}"))
}

/// The lines of a `.jsonl` transcript.
pub fn load_jsonl(name: &str) -> Vec<Value> {
    let path = transcripts_dir().join(name);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("parsing {name}: {e}")))
        .collect()
}

/// A config with no artificial delay.
pub fn fast() -> SimConfig {
    SimConfig {
        step_delay: Duration::ZERO,
        ..SimConfig::default()
    }
}

static TLS: Once = Once::new();

/// An HTTP answer.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub content_type: String,
    pub headers: reqwest::header::HeaderMap,
    pub bytes: Vec<u8>,
}

impl Resp {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.bytes)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.bytes)))
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.bytes).into_owned()
    }

    /// The media type without parameters (`application/json`), or `""`.
    pub fn media_type(&self) -> String {
        media_type(&self.content_type)
    }
}

/// The media type of a `Content-Type` value, without parameters.
pub fn media_type(ct: &str) -> String {
    ct.split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

/// A simulator plus an HTTP client pointed at it.
pub struct Sim {
    pub handle: SimHandle,
    pub http: reqwest::Client,
    pub base: String,
}

impl Sim {
    pub async fn start(cfg: SimConfig) -> Sim {
        TLS.call_once(|| {
            let _ = rustls::crypto::ring::default_provider().install_default();
        });
        let handle = simulator::start("127.0.0.1:0".parse().unwrap(), cfg)
            .await
            .expect("simulator starts");
        let base = handle.base_url();
        let http = reqwest::Client::builder().build().expect("http client");
        Sim { handle, http, base }
    }

    pub fn url(&self, path_and_query: &str) -> String {
        format!("{}{path_and_query}", self.base)
    }

    pub async fn send(&self, req: reqwest::RequestBuilder) -> Resp {
        let resp = req.send().await.expect("request reaches the simulator");
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let content_type = headers
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let bytes = resp.bytes().await.expect("body").to_vec();
        Resp {
            status,
            content_type,
            headers,
            bytes,
        }
    }

    pub async fn get(&self, path: &str) -> Resp {
        self.send(self.http.get(self.url(path))).await
    }

    pub async fn post_json(&self, path: &str, body: &Value) -> Resp {
        self.send(self.http.post(self.url(path)).body(body.to_string()))
            .await
    }

    pub async fn post_raw(&self, path: &str, body: &str) -> Resp {
        self.send(self.http.post(self.url(path)).body(body.to_string()))
            .await
    }

    /// Replays a recorded request (`method`, `url`, `json_body` / `raw_body`).
    pub async fn replay(&self, request: &Value) -> Resp {
        let method = request["method"].as_str().unwrap_or("GET");
        let url = self.url(request["url"].as_str().unwrap_or("/"));
        let mut req = match method {
            "POST" => self.http.post(url),
            "HEAD" => self.http.head(url),
            _ => self.http.get(url),
        };
        if let Some(body) = request.get("json_body") {
            req = req.body(body.to_string());
        } else if let Some(raw) = request.get("raw_body").and_then(Value::as_str) {
            req = req.body(raw.to_string());
        }
        self.send(req).await
    }

    /// Posts a prompt body (adding `prompt_id` if given) and returns the answer.
    pub async fn submit(&self, body: &Value, prompt_id: Option<&str>) -> Resp {
        let mut body = body.clone();
        if let Some(id) = prompt_id {
            body["prompt_id"] = json!(id);
        }
        self.post_json("/prompt", &body).await
    }

    /// Waits until `/history/{id}` holds the prompt, returning the entry.
    pub async fn wait_history(&self, id: &str) -> Value {
        let deadline = tokio::time::Instant::now() + HANG_GUARD;
        loop {
            let h = self.get(&format!("/history/{id}")).await.json();
            if let Some(entry) = h.get(id) {
                return entry.clone();
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "prompt {id} never finished"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Submits and waits for completion; returns the history entry.
    pub async fn run(&self, body: &Value, prompt_id: &str) -> Value {
        let r = self.submit(body, Some(prompt_id)).await;
        assert_eq!(r.status, 200, "submit failed: {}", r.text());
        self.wait_history(prompt_id).await
    }

    /// Waits until `/queue` shows `id` running.
    pub async fn wait_running(&self, id: &str) {
        let deadline = tokio::time::Instant::now() + HANG_GUARD;
        loop {
            let q = self.get("/queue").await.json();
            if q["queue_running"]
                .as_array()
                .is_some_and(|r| r.iter().any(|i| i[1] == id))
            {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "prompt {id} never started"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Uploads bytes as `POST /upload/image`.
    pub async fn upload(
        &self,
        name: &str,
        subfolder: &str,
        bytes: Vec<u8>,
        extra: &[(&str, &str)],
    ) -> Resp {
        let part = reqwest::multipart::Part::bytes(bytes).file_name(name.to_string());
        let mut form = reqwest::multipart::Form::new()
            .part("image", part)
            .text("subfolder", subfolder.to_string());
        for (k, v) in extra {
            form = form.text(k.to_string(), v.to_string());
        }
        self.send(self.http.post(self.url("/upload/image")).multipart(form))
            .await
    }

    /// Waits until the server no longer has a socket registered for `client_id`.
    pub async fn wait_socket_gone(&self, client_id: &str) {
        let deadline = tokio::time::Instant::now() + HANG_GUARD;
        while self
            .handle
            .websocket_clients()
            .iter()
            .any(|c| c == client_id)
        {
            assert!(
                tokio::time::Instant::now() < deadline,
                "socket {client_id} never went away"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    pub fn ws_url(&self, client_id: Option<&str>) -> String {
        self.handle.ws_url(client_id)
    }

    pub async fn ws(&self, client_id: Option<&str>) -> Ws {
        Ws::connect(&self.ws_url(client_id), &[])
            .await
            .expect("websocket connects")
    }
}

/// A received websocket frame.
#[derive(Debug, Clone)]
pub enum Frame {
    Text(Value),
    Binary(Vec<u8>),
}

impl Frame {
    pub fn msg_type(&self) -> String {
        match self {
            Frame::Text(v) => v["type"].as_str().unwrap_or("?").to_string(),
            Frame::Binary(b) => {
                let t = b
                    .get(..4)
                    .map(|h| u32::from_be_bytes([h[0], h[1], h[2], h[3]]))
                    .unwrap_or(0);
                format!("binary:{t}")
            }
        }
    }

    pub fn data(&self) -> &Value {
        match self {
            Frame::Text(v) => &v["data"],
            Frame::Binary(_) => &Value::Null,
        }
    }
}

/// A websocket client.
pub struct Ws {
    stream: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
}

impl Ws {
    /// Connects with extra request headers; the error is the HTTP status of a refused upgrade.
    pub async fn connect(url: &str, headers: &[(&str, &str)]) -> Result<Ws, u16> {
        let mut req = url.into_client_request().expect("valid ws url");
        for (k, v) in headers {
            req.headers_mut().insert(
                reqwest::header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        match tokio_tungstenite::connect_async(req).await {
            Ok((stream, _)) => Ok(Ws { stream }),
            Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => Err(resp.status().as_u16()),
            Err(e) => panic!("websocket error: {e}"),
        }
    }

    /// The next data frame, or `None` when the connection ended.
    pub async fn next(&mut self) -> Option<Frame> {
        loop {
            let msg = tokio::time::timeout(HANG_GUARD, self.stream.next())
                .await
                .expect("websocket frame within the hang guard");
            match msg {
                Some(Ok(Message::Text(t))) => {
                    return Some(Frame::Text(
                        serde_json::from_str(&t).expect("JSON text frame"),
                    ));
                }
                Some(Ok(Message::Binary(b))) => return Some(Frame::Binary(b.to_vec())),
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return None,
                Some(Ok(_)) => {}
            }
        }
    }

    /// The next frame, which must exist.
    pub async fn expect(&mut self) -> Frame {
        self.next().await.expect("a websocket frame")
    }

    /// Reads frames until one satisfies `pred` (returned with everything before it).
    pub async fn until(&mut self, pred: impl Fn(&Frame) -> bool) -> Vec<Frame> {
        let mut out = Vec::new();
        loop {
            let f = self.expect().await;
            let done = pred(&f);
            out.push(f);
            if done {
                return out;
            }
        }
    }

    /// Every frame until the server closes the connection.
    pub async fn drain(&mut self) -> Vec<Frame> {
        let mut out = Vec::new();
        while let Some(f) = self.next().await {
            out.push(f);
        }
        out
    }

    pub async fn send_json(&mut self, v: &Value) {
        self.stream
            .send(Message::Text(v.to_string().into()))
            .await
            .expect("send");
    }

    pub async fn close(mut self) {
        let _ = self.stream.close(None).await;
        // Wait for the server's side of the close so it has unregistered the socket.
        while let Some(Ok(_)) = self.stream.next().await {}
    }
}

/// Compares JSON shapes: same value kinds (int and float told apart), same object keys,
/// lists compared element by element when the lengths agree, else by first element (a
/// recorded empty list accepts any list). Returns the differences.
pub fn shape_diff(recorded: &Value, actual: &Value) -> Vec<String> {
    let mut out = Vec::new();
    diff_at("$", recorded, actual, &mut out);
    out
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(n) if n.is_f64() => "float",
        Value::Number(_) => "int",
        Value::String(_) => "string",
        Value::Array(_) => "list",
        Value::Object(_) => "object",
    }
}

fn diff_at(path: &str, rec: &Value, act: &Value, out: &mut Vec<String>) {
    match (rec, act) {
        (Value::Array(r), Value::Array(a)) => {
            if r.is_empty() {
                return;
            }
            if a.is_empty() {
                out.push(format!("{path}: recorded a non-empty list, got []"));
                return;
            }
            if r.len() == a.len() {
                for (i, (x, y)) in r.iter().zip(a).enumerate() {
                    diff_at(&format!("{path}[{i}]"), x, y, out);
                }
            } else {
                diff_at(&format!("{path}[0]"), &r[0], &a[0], out);
            }
        }
        (Value::Object(r), Value::Object(a)) => {
            for k in r.keys() {
                match a.get(k) {
                    Some(v) => diff_at(&format!("{path}.{k}"), &r[k], v, out),
                    None => out.push(format!("{path}: missing key {k:?}")),
                }
            }
            for k in a.keys().filter(|k| !r.contains_key(*k)) {
                out.push(format!("{path}: unexpected key {k:?}"));
            }
        }
        _ if kind(rec) != kind(act) => {
            out.push(format!(
                "{path}: recorded {} ({rec}), got {} ({act})",
                kind(rec),
                kind(act)
            ));
        }
        _ => {}
    }
}

/// Asserts equal shapes, printing both values on failure.
pub fn assert_shape(what: &str, recorded: &Value, actual: &Value) {
    let d = shape_diff(recorded, actual);
    assert!(
        d.is_empty(),
        "{what}: shape differs:\n  {}\nactual: {actual}",
        d.join("\n  ")
    );
}

/// The server frames of a ws transcript: text messages as `Frame::Text`, binary frames as a
/// 4-byte event type header only.
pub fn recorded_frames(name: &str) -> Vec<Frame> {
    load_jsonl(name)
        .into_iter()
        .filter_map(|l| match l["frame"].as_str() {
            Some("text") => Some(Frame::Text(l["msg"].clone())),
            Some("binary") => {
                let t = l["event_type"].as_u64().unwrap_or(0) as u32;
                Some(Frame::Binary(t.to_be_bytes().to_vec()))
            }
            _ => None,
        })
        .collect()
}

/// The header line of a ws transcript.
pub fn recorded_header(name: &str) -> Value {
    load_jsonl(name)
        .into_iter()
        .find(|l| l["frame"] == "header")
        .unwrap_or(Value::Null)
}

/// The request body stored in a ws transcript header (`"POST /prompt {json}"`).
pub fn header_request_body(name: &str) -> Value {
    let h = recorded_header(name);
    let req = h["request"].as_str().expect("header has a request");
    let json = req
        .strip_prefix("POST /prompt ")
        .expect("request is a POST /prompt");
    serde_json::from_str(json).expect("request body is JSON")
}

/// A small RGB PNG of `w`×`h` for uploads.
pub fn png(w: u32, h: u32) -> Vec<u8> {
    let mut out = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut out, w, h);
        enc.set_color(png::ColorType::Rgb);
        enc.set_depth(png::BitDepth::Eight);
        let mut writer = enc.write_header().unwrap();
        let data: Vec<u8> = (0..w * h * 3).map(|i| (i % 251) as u8).collect();
        writer.write_image_data(&data).unwrap();
    }
    out
}

/// Width and height of a PNG.
pub fn png_size(bytes: &[u8]) -> (u32, u32) {
    let decoder = png::Decoder::new(std::io::Cursor::new(bytes));
    let reader = decoder.read_info().expect("a valid PNG");
    let info = reader.info();
    (info.width, info.height)
}
