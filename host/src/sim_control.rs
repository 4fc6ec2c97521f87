//! HTTP control API of the `simulate` command (`/__sim/...` on its own
//! loopback port), so tests in other languages can steer the simulator the
//! way Rust tests do through `SimHandle`: hold the queue, restart, inject
//! faults, change the speed, read the recorded requests and interrupts.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};
use simulator::SimHandle;

type Sim = State<Arc<SimHandle>>;

/// The control routes.
pub fn router(sim: Arc<SimHandle>) -> Router {
    Router::new()
        .route("/__sim/hold", post(hold))
        .route("/__sim/restart", post(restart))
        .route("/__sim/faults", post(faults))
        .route("/__sim/step_delay", post(step_delay))
        .route("/__sim/interrupts", get(interrupts))
        .route("/__sim/requests", get(requests))
        .route("/__sim/object_info", post(object_info))
        .with_state(sim)
}

#[derive(Deserialize)]
struct Hold {
    on: bool,
}

async fn hold(State(sim): Sim, Json(body): Json<Hold>) -> Json<Value> {
    sim.hold_queue(body.on);
    Json(json!({"held": body.on}))
}

async fn restart(State(sim): Sim) -> Json<Value> {
    sim.restart().await;
    Json(json!({"restarted": true}))
}

#[derive(Deserialize)]
struct FailHttp {
    count: usize,
    status: u16,
}

#[derive(Deserialize)]
struct FailNode {
    class: String,
    message: String,
}

#[derive(Deserialize, Default)]
struct FaultRequest {
    fail_http: Option<FailHttp>,
    drop_websockets: Option<bool>,
    refuse_websockets: Option<bool>,
    http_delay_ms: Option<u64>,
    fail_node_class: Option<FailNode>,
    clear: Option<bool>,
}

async fn faults(State(sim): Sim, Json(body): Json<FaultRequest>) -> Json<Value> {
    let faults = sim.faults();
    if body.clear == Some(true) {
        faults.clear();
    }
    if let Some(f) = body.fail_http {
        faults.fail_http(f.count, f.status);
    }
    if body.drop_websockets == Some(true) {
        faults.drop_websockets();
    }
    if let Some(on) = body.refuse_websockets {
        faults.refuse_websockets(on);
    }
    if let Some(ms) = body.http_delay_ms {
        faults.http_delay(Duration::from_millis(ms));
    }
    if let Some(f) = body.fail_node_class {
        faults.fail_node_class(&f.class, &f.message);
    }
    Json(json!({"ok": true}))
}

#[derive(Deserialize)]
struct StepDelay {
    ms: u64,
}

async fn step_delay(State(sim): Sim, Json(body): Json<StepDelay>) -> Json<Value> {
    sim.set_step_delay(Duration::from_millis(body.ms));
    Json(json!({"step_delay_ms": body.ms}))
}

async fn interrupts(State(sim): Sim) -> Json<Value> {
    Json(json!(sim.interrupts()))
}

async fn requests(State(sim): Sim) -> Json<Value> {
    let list: Vec<Value> = sim
        .requests()
        .into_iter()
        .map(|r| json!({"method": r.method, "path": r.path, "query": r.query, "authorization": r.authorization}))
        .collect();
    Json(Value::Array(list))
}

/// Stages a new `/object_info` document, seen after the next restart.
async fn object_info(State(sim): Sim, Json(body): Json<Value>) -> Json<Value> {
    sim.set_object_info(body);
    Json(json!({"staged": true}))
}
