//! Shared helpers for the end-to-end tests: a simulator, a backend pointed at it, graphs.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use comfyui::jobs::BackendOptions;
use comfyui::ws::WsOptions;
use comfyui::{ComfyConfig, ComfyUi, JobOrigin, JobRequest};
use serde_json::{Value, json};
use simulator::{SimConfig, SimHandle};

/// Upper bound for any wait in these tests (never asserted on; only to avoid hanging).
pub const BOUND: Duration = Duration::from_secs(60);

pub fn transcripts() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/transcripts")
}

pub fn transcript(name: &str) -> Value {
    serde_json::from_str(&std::fs::read_to_string(transcripts().join(name)).unwrap()).unwrap()
}

pub async fn sim(cfg: SimConfig) -> SimHandle {
    simulator::start("127.0.0.1:0".parse().unwrap(), cfg)
        .await
        .expect("simulator starts")
}

/// Fast reconnects and reconciliation for tests.
pub fn fast_options() -> BackendOptions {
    BackendOptions {
        ws: WsOptions {
            backoff_min: Duration::from_millis(20),
            backoff_max: Duration::from_millis(200),
            ..WsOptions::default()
        },
        reconcile_interval: Duration::from_millis(200),
        cancel_confirm_timeout: BOUND,
        ..BackendOptions::for_config(&ComfyConfig::new("http://127.0.0.1:1/").unwrap())
    }
}

pub struct Backend {
    pub comfy: Arc<ComfyUi>,
    pub out: tempfile::TempDir,
}

pub fn config(url: &str, out: &tempfile::TempDir) -> ComfyConfig {
    ComfyConfig::new(url)
        .unwrap()
        .with_output_dir(out.path())
        .with_timeout(Duration::from_secs(30))
        .unwrap()
}

pub fn backend_with(url: &str, tweak: impl FnOnce(ComfyConfig) -> ComfyConfig) -> Backend {
    let out = tempfile::tempdir().unwrap();
    let cfg = tweak(config(url, &out));
    let options = fast_options();
    let comfy = ComfyUi::connect_with(cfg, options).unwrap();
    Backend { comfy, out }
}

pub fn backend(url: &str) -> Backend {
    backend_with(url, |c| c)
}

/// The job's snapshot once it is finished or [`BOUND`] passed (the store readable, the job known).
pub async fn wait_done(comfy: &ComfyUi, prompt_id: &str) -> comfyui::JobSnapshot {
    comfy
        .wait(prompt_id, BOUND)
        .await
        .expect("store readable")
        .expect("known job")
}

/// Waits until the backend's websocket is open.
pub async fn connected(comfy: &ComfyUi) {
    let mut rx = comfy.connection();
    tokio::time::timeout(BOUND, rx.wait_for(|c| c.connected))
        .await
        .expect("websocket connects within the bound")
        .unwrap();
}

/// EmptyImage (64×64, `batch`) → SaveImage(prefix): runs without any model.
pub fn empty_image_graph(batch: u32, prefix: &str) -> Value {
    json!({
        "1": {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 64, "batch_size": batch, "color": 0}},
        "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": prefix}}
    })
}

/// EmptyImage → ImageInvert → SaveImage.
pub fn invert_graph(prefix: &str) -> Value {
    json!({
        "1": {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 64, "batch_size": 1, "color": 0}},
        "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
        "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": prefix}}
    })
}

/// The recorded tiny text-to-image graph with `steps` sampler steps and `seed`.
pub fn t2i_graph(steps: u32, seed: u64) -> Value {
    let mut g = transcript("prompt_t2i_tiny.json")["request"]["json_body"]["prompt"].clone();
    g["3"]["inputs"]["steps"] = json!(steps);
    g["3"]["inputs"]["seed"] = json!(seed);
    g
}

pub fn request(graph: Value) -> JobRequest {
    JobRequest {
        graph,
        origin: JobOrigin::Template {
            template_id: "test-template".into(),
            pack_name: "test-pack".into(),
            pack_version: "1.2.3".into(),
            pack_sha256: "ab".repeat(32),
        },
        parameters: json!({"seed": 42, "width": 64}),
        metadata: json!({"caller": "tests"}),
        postprocess: None,
    }
}

/// A TCP front that either forwards to a target (a simulator) or blackholes: accepts every
/// connection, reads what comes and never answers. Switching to blackhole also cuts the
/// connections it was forwarding (ComfyUI went away; something that never answers took its
/// port). Counts the connections it blackholed.
pub struct Switch {
    addr: SocketAddr,
    blackhole: Arc<AtomicBool>,
    target: Arc<Mutex<Option<SocketAddr>>>,
    forwarded: Arc<Mutex<Vec<JoinHandle<()>>>>,
    swallowed: Arc<AtomicUsize>,
    request_lines: Arc<Mutex<Vec<String>>>,
    accept: JoinHandle<()>,
}

impl Drop for Switch {
    fn drop(&mut self) {
        self.accept.abort();
        for t in self.forwarded.lock().unwrap().drain(..) {
            t.abort();
        }
    }
}

impl Switch {
    /// A front that blackholes from the start.
    pub async fn blackhole() -> Switch {
        Self::start(None).await
    }

    /// A front that forwards to `target`.
    pub async fn forwarding(target: SocketAddr) -> Switch {
        Self::start(Some(target)).await
    }

    async fn start(target: Option<SocketAddr>) -> Switch {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let blackhole = Arc::new(AtomicBool::new(target.is_none()));
        let target = Arc::new(Mutex::new(target));
        let forwarded: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let swallowed = Arc::new(AtomicUsize::new(0));
        let request_lines: Arc<Mutex<Vec<String>>> = Arc::default();
        let accept = {
            let (blackhole, target, forwarded, swallowed, lines) = (
                blackhole.clone(),
                target.clone(),
                forwarded.clone(),
                swallowed.clone(),
                request_lines.clone(),
            );
            tokio::spawn(async move {
                loop {
                    let Ok((mut sock, _)) = listener.accept().await else {
                        continue;
                    };
                    let to = *target.lock().unwrap();
                    match to.filter(|_| !blackhole.load(Ordering::SeqCst)) {
                        None => {
                            swallowed.fetch_add(1, Ordering::SeqCst);
                            let lines = lines.clone();
                            tokio::spawn(async move {
                                let mut buf = vec![0u8; 64 * 1024];
                                let mut head = Vec::new();
                                let mut recorded = false;
                                while let Ok(n) = sock.read(&mut buf).await {
                                    if n == 0 {
                                        break; // the peer closed: hold nothing more
                                    }
                                    if !recorded {
                                        head.extend_from_slice(&buf[..n]);
                                        if let Some(end) = head.iter().position(|b| *b == b'\r') {
                                            let line = String::from_utf8_lossy(&head[..end]);
                                            lines.lock().unwrap().push(line.into_owned());
                                            recorded = true;
                                        }
                                    }
                                }
                            });
                        }
                        Some(to) => {
                            let task = tokio::spawn(async move {
                                if let Ok(mut up) = TcpStream::connect(to).await {
                                    let _ = tokio::io::copy_bidirectional(&mut sock, &mut up).await;
                                }
                            });
                            forwarded.lock().unwrap().push(task);
                        }
                    }
                }
            })
        };
        Switch {
            addr,
            blackhole,
            target,
            forwarded,
            swallowed,
            request_lines,
            accept,
        }
    }

    /// `http://127.0.0.1:<port>`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// From now on, blackhole; cut the forwarded connections.
    pub fn go_dark(&self) {
        self.blackhole.store(true, Ordering::SeqCst);
        for t in self.forwarded.lock().unwrap().drain(..) {
            t.abort();
        }
    }

    /// From now on, forward new connections to `target`.
    pub fn forward_to(&self, target: SocketAddr) {
        *self.target.lock().unwrap() = Some(target);
        self.blackhole.store(false, Ordering::SeqCst);
    }

    /// How many blackholed requests had a request line starting with `prefix`
    /// (e.g. `GET /object_info`).
    pub fn requests_starting(&self, prefix: &str) -> usize {
        self.request_lines
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.starts_with(prefix))
            .count()
    }

    /// Connections accepted and never answered so far.
    pub fn swallowed(&self) -> usize {
        self.swallowed.load(Ordering::SeqCst)
    }
}
