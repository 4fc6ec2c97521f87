//! A stand-in for ComfyUI 0.3.75 that speaks its HTTP and websocket protocol on loopback.
//!
//! It validates graphs against a node catalog (by default the bundled `object_info` recorded
//! from a real ComfyUI, with two checkpoints) exactly like the server does, queues prompts,
//! "executes" them with ComfyUI's message sequence, caching and interrupts, and writes
//! deterministic placeholder PNGs for output nodes. It never generates images and never
//! claims to: `system_stats` names it, and every PNG carries a `Software` tag saying so.
//!
//! Behaviour follows the transcripts recorded from the real server (`tests/transcripts/` in
//! the repository); `tests/fidelity.rs` replays them against the simulator.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! let sim = simulator::start("127.0.0.1:0".parse().unwrap(), simulator::SimConfig::default()).await?;
//! let url = sim.base_url(); // e.g. http://127.0.0.1:40123
//! # let _ = url;
//! sim.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! Lifecycle: [`start`] binds and spawns the HTTP server and the worker; [`SimHandle::restart`]
//! behaves like a ComfyUI restart (sockets closed, queue, history, cache and temp files
//! gone); [`SimHandle::shutdown`] (or dropping the handle) stops everything.

mod catalog;
mod config;
mod execute;
mod faults;
mod files;
mod graph;
mod hub;
mod images;
mod machine;
mod middleware;
mod nodes;
mod pyjson;
mod pyval;
mod queue;
mod routes;
mod state;
mod traceback;
mod validate;
mod ws;

pub use catalog::CatalogError;
pub use config::{DEFAULT_STEP_DELAY, SimConfig};
pub use faults::Faults;
pub use machine::Machine;
pub use middleware::RecordedRequest;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::catalog::Catalog;
use crate::faults::lock;
use crate::state::Shared;

/// A running simulator. Dropping it stops the server (like [`SimHandle::shutdown`], without
/// waiting).
pub struct SimHandle {
    shared: Arc<Shared>,
    addr: SocketAddr,
    worker: Mutex<Option<JoinHandle<()>>>,
    server: Option<JoinHandle<()>>,
    stop: Option<oneshot::Sender<()>>,
}

impl std::fmt::Debug for SimHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimHandle")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

fn invalid_input(e: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidInput, e.to_string())
}

/// Binds `addr` (port 0 picks a free port) and starts a simulator.
///
/// Fails if the address cannot be bound, or if `cfg.object_info` is not a JSON object of node
/// classes (`InvalidInput`).
pub async fn start(addr: SocketAddr, cfg: SimConfig) -> std::io::Result<SimHandle> {
    let doc = match cfg.object_info {
        Some(doc) => doc,
        None => Catalog::bundled_document().map_err(invalid_input)?,
    };
    let catalog = Catalog::from_value(cfg.machine.apply(doc)).map_err(invalid_input)?;
    let listener = TcpListener::bind(addr).await?;
    let addr = listener.local_addr()?;
    let shared = Arc::new(Shared::new(
        catalog,
        config::normalize_prefix(&cfg.path_prefix),
        cfg.require_api_key,
        cfg.preview_images,
        cfg.max_stored_bytes,
        cfg.step_delay,
    ));
    let app = routes::app(shared.clone());
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        let serve = axum::serve(listener, app).with_graceful_shutdown(async {
            let _ = stopped.await;
        });
        if let Err(e) = serve.await {
            tracing::warn!(error = %e, "simulator HTTP server stopped with an error");
        }
    });
    let worker = tokio::spawn(execute::worker(shared.clone()));
    tracing::info!(%addr, prefix = %shared.prefix, "ComfyUI simulator listening");
    Ok(SimHandle {
        shared,
        addr,
        worker: Mutex::new(Some(worker)),
        server: Some(server),
        stop: Some(stop),
    })
}

/// Runs a simulator until ctrl-c (for the `simulate` command), logging its URL.
pub async fn serve_forever(addr: SocketAddr, cfg: SimConfig) -> std::io::Result<()> {
    let sim = start(addr, cfg).await?;
    tracing::info!(url = %sim.base_url(), "ComfyUI simulator ready (stand-in, generates no images); ctrl-c stops it");
    tokio::signal::ctrl_c().await?;
    sim.shutdown().await;
    Ok(())
}

impl SimHandle {
    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://HOST:PORT{prefix}` (loopback when bound to an unspecified address).
    pub fn base_url(&self) -> String {
        let ip = match self.addr.ip() {
            IpAddr::V4(v4) if v4.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(v6) if v6.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
            ip => ip,
        };
        let host = match ip {
            IpAddr::V4(v4) => v4.to_string(),
            IpAddr::V6(v6) => format!("[{v6}]"),
        };
        format!("http://{host}:{}{}", self.addr.port(), self.shared.prefix)
    }

    /// The websocket URL for a client id (`ws://.../ws?clientId=...`), or without one.
    pub fn ws_url(&self, client_id: Option<&str>) -> String {
        let base = self.base_url().replacen("http://", "ws://", 1);
        match client_id {
            Some(id) => format!("{base}/ws?clientId={id}"),
            None => format!("{base}/ws"),
        }
    }

    /// A handle to inject faults.
    pub fn faults(&self) -> Faults {
        Faults {
            shared: self.shared.clone(),
        }
    }

    /// Behaves like a ComfyUI restart: closes every websocket, stops the running prompt,
    /// empties queue, history and cache, forgets temp files, resets the prompt counter, and
    /// switches to a catalog staged with [`SimHandle::set_object_info`]. Output and input
    /// files survive, as on disk. Faults and recorded requests are kept.
    pub async fn restart(&self) {
        let old = lock(&self.worker).take();
        if let Some(w) = old {
            w.abort();
            let _ = w.await;
        }
        self.shared.reset_for_restart();
        let worker = tokio::spawn(execute::worker(self.shared.clone()));
        *lock(&self.worker) = Some(worker);
        tracing::info!(addr = %self.addr, "simulator restarted");
    }

    /// Stages a new catalog (`GET /object_info` document), e.g. with a new checkpoint. Like
    /// ComfyUI, the running server keeps its catalog; the new one is seen after
    /// [`SimHandle::restart`]. A document that is not an object of classes is ignored (and
    /// logged).
    pub fn set_object_info(&self, value: serde_json::Value) {
        match Catalog::from_value(value) {
            Ok(c) => self.shared.lock().staged_catalog = Some(Arc::new(c)),
            Err(e) => tracing::warn!(error = %e, "set_object_info ignored"),
        }
    }

    /// While on, the worker starts no pending prompt (the running one continues), so tests
    /// can act on queued prompts deterministically.
    pub fn hold_queue(&self, on: bool) {
        self.shared.lock().held = on;
        if !on {
            self.shared.worker_wake.notify_one();
        }
    }

    /// Changes the per-node / per-step delay; a node already waiting re-checks at once (so
    /// setting zero lets a slow prompt finish immediately).
    pub fn set_step_delay(&self, delay: Duration) {
        self.shared.set_step_delay(delay);
    }

    /// The clientIds with a registered websocket (sorted). A socket closed by its client
    /// disappears from this list once the server has processed the close.
    pub fn websocket_clients(&self) -> Vec<String> {
        self.shared.lock().hub.client_ids()
    }

    /// Every HTTP request received so far, in order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        lock(&self.shared.recorder).requests.clone()
    }

    /// Forgets the recorded requests and interrupts.
    pub fn clear_requests(&self) {
        let mut r = lock(&self.shared.recorder);
        r.requests.clear();
        r.interrupts.clear();
    }

    /// The `prompt_id` of every `POST /interrupt` so far (`None` for a global interrupt).
    pub fn interrupts(&self) -> Vec<Option<String>> {
        lock(&self.shared.recorder).interrupts.clone()
    }

    /// Stops the server, the worker and every websocket, and waits for the server task.
    pub async fn shutdown(mut self) {
        self.stop_tasks();
        if let Some(server) = self.server.take() {
            let _ = server.await;
        }
        tracing::info!(addr = %self.addr, "simulator stopped");
    }

    fn stop_tasks(&mut self) {
        if let Some(w) = lock(&self.worker).take() {
            w.abort();
        }
        self.shared.drop_all_sockets();
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

impl Drop for SimHandle {
    fn drop(&mut self) {
        self.stop_tasks();
    }
}
