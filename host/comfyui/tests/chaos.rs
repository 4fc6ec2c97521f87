//! Chaos: ComfyUI blackholed (its port accepts TCP and never answers) while 50 clients call
//! at once. Every call ends within about one request timeout with a clear error (not 50
//! timeouts in a row), status and cancel of existing jobs keep answering, and when ComfyUI
//! is back the jobs reconcile and complete.
//!
//! The time bound is a bound (5 x the configured 1 s timeout, against 50 x for calls that
//! would queue behind each other), not a benchmark.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use comfyui::ws::WsOptions;
use comfyui::{ClientError, ComfyUi, JobSnapshot, JobState};
use common::*;
use simulator::SimConfig;

const TIMEOUT: Duration = Duration::from_secs(1);
const CLIENTS: usize = 50;

/// What `generate` does against ComfyUI: catalog and models (graph check), then submit.
async fn generate(comfy: &ComfyUi, i: usize) -> Result<JobSnapshot, ClientError> {
    comfy.node_catalog().await?;
    comfy.models_snapshot().await?;
    comfy
        .submit(request(empty_image_graph(1, &format!("chaos/g{i}"))))
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blackholed_comfyui_never_stalls_the_callers_and_jobs_reconcile() {
    let sim = sim(SimConfig {
        step_delay: std::time::Duration::from_millis(5),
        ..SimConfig::default()
    })
    .await;
    let front = Switch::forwarding(sim.addr()).await;
    let out = tempfile::tempdir().unwrap();
    let cfg = config(&front.base_url(), &out)
        .with_timeout(TIMEOUT)
        .unwrap();
    let mut options = fast_options();
    options.ws = WsOptions {
        connect_timeout: TIMEOUT,
        idle_ping: TIMEOUT,
        ping_timeout: TIMEOUT,
        ..options.ws
    };
    options.cancel_confirm_timeout = TIMEOUT;
    let comfy = ComfyUi::connect_with(cfg, options).unwrap();
    connected(&comfy).await;

    // Three jobs wait in ComfyUI's queue.
    sim.hold_queue(true);
    let mut existing = Vec::new();
    for i in 0..3 {
        let job = generate(&comfy, 1000 + i)
            .await
            .expect("submitted while up");
        existing.push(job.prompt_id);
    }

    // ComfyUI goes away; something that never answers holds its port.
    front.go_dark();
    let mut conn = comfy.connection();
    tokio::time::timeout(BOUND, conn.wait_for(|c| !c.connected))
        .await
        .expect("the websocket notices")
        .unwrap();

    let started = Instant::now();
    let mut calls = Vec::new();
    for i in 0..CLIENTS {
        let comfy = comfy.clone();
        let existing = existing.clone();
        calls.push(tokio::spawn(async move {
            let t0 = Instant::now();
            let outcome = match i % 5 {
                // Status of an existing job: answered from what is known.
                0 => match comfy.status(&existing[i % existing.len()]).await {
                    Ok(Some(s)) => Ok(format!("status {}", s.state)),
                    Ok(None) => Err("status lost the job".to_owned()),
                    Err(e) => Err(format!("unexpected: {e}")),
                },
                // Cancel of an existing job: a clear ComfyUI error, in time.
                1 => match comfy.cancel(&existing[i % existing.len()]).await {
                    Ok(o) => Ok(o.message()),
                    Err(comfyui::CancelError::Client(e)) => Err(e.to_string()),
                    Err(e) => Err(format!("unexpected: {e}")),
                },
                _ => generate(&comfy, i)
                    .await
                    .map(|s| format!("submitted {}", s.prompt_id))
                    .map_err(|e| e.to_string()),
            };
            (i, outcome, t0.elapsed())
        }));
    }
    let mut results = Vec::new();
    for c in calls {
        results.push(
            tokio::time::timeout(BOUND, c)
                .await
                .expect("bounded")
                .unwrap(),
        );
    }
    let total = started.elapsed();
    eprintln!("{CLIENTS} calls against a blackholed ComfyUI answered in {total:?}");

    for (i, outcome, _) in &results {
        match i % 5 {
            0 => assert!(outcome.is_ok(), "status {i}: {outcome:?}"),
            _ => {
                let err = outcome
                    .as_ref()
                    .expect_err("nothing can succeed while dark");
                assert!(
                    err.contains(&front.base_url()) && err.contains("did not answer"),
                    "call {i}: not a clear timeout error: {err}"
                );
            }
        }
    }
    // A bound, not a benchmark: calls that queued behind each other would take ~50 s.
    assert!(
        total < TIMEOUT * 5,
        "{CLIENTS} calls took {total:?}, more than 5 x the {TIMEOUT:?} timeout"
    );

    // ComfyUI comes back: the websocket reconnects, the jobs reconcile and run.
    front.forward_to(sim.addr());
    tokio::time::timeout(BOUND, conn.wait_for(|c| c.connected))
        .await
        .expect("reconnects")
        .unwrap();
    sim.hold_queue(false);
    for id in &existing {
        let done = comfy.wait(id, BOUND).await.unwrap().unwrap();
        assert!(done.state.is_terminal(), "{id}: {done:?}");
        assert_ne!(done.state, JobState::Failed, "{id}: {done:?}");
    }
    // And new calls work again.
    let again = generate(&comfy, 9999)
        .await
        .expect("submits after recovery");
    let done = comfy.wait(&again.prompt_id, BOUND).await.unwrap().unwrap();
    assert_eq!(done.state, JobState::Completed, "{done:?}");
    drop(Arc::clone(&comfy));
}
