//! The execution timeout against the simulator: a job executing past
//! `ComfyConfig::execution_timeout` is interrupted in ComfyUI (targeted, by prompt id) and fails
//! with the typed `ExecutionTimeout` kind; a job waiting in the queue behind a long one is not
//! timed out by its wait. Wall time only bounds the waits; nothing asserts a duration.

mod common;

use std::time::Duration;

use comfyui::{FailureKind, JobState};
use common::{BOUND, Backend, backend_with, connected, request, sim, t2i_graph};
use simulator::SimConfig;

const STEP: Duration = Duration::from_millis(50);

/// A simulator taking [`STEP`] per step and node, and a connected backend with `limit`.
async fn slow_sim_and_backend(limit: Duration) -> (simulator::SimHandle, Backend) {
    let sim = sim(SimConfig {
        step_delay: STEP,
        ..SimConfig::default()
    })
    .await;
    let b = backend_with(&sim.base_url(), |c| {
        c.with_execution_timeout(limit).unwrap()
    });
    connected(&b.comfy).await;
    (sim, b)
}

async fn finished(comfy: &comfyui::ComfyUi, prompt_id: &str) -> comfyui::JobSnapshot {
    let snap = comfy
        .wait(prompt_id, BOUND)
        .await
        .unwrap()
        .expect("known job");
    assert!(
        snap.state.is_terminal(),
        "{prompt_id} did not finish: {snap:?}"
    );
    snap
}

#[tokio::test]
async fn a_job_executing_past_the_limit_is_interrupted_and_fails_typed() {
    let (sim, b) = slow_sim_and_backend(Duration::from_millis(400)).await;
    // 200 steps of 50 ms: ten seconds of work, far past the limit.
    let job = b.comfy.submit(request(t2i_graph(200, 1))).await.unwrap();
    let snap = finished(&b.comfy, &job.prompt_id).await;
    assert_eq!(snap.state, JobState::Failed, "{snap:?}");
    let error = snap.error.expect("a failure");
    assert_eq!(error.kind, FailureKind::ExecutionTimeout, "{error:?}");
    assert!(
        error.message.starts_with("Workflow execution timeout"),
        "{}",
        error.message
    );
    assert!(error.message.contains("0.4 s"), "{}", error.message);
    assert_eq!(
        sim.interrupts(),
        vec![Some(job.prompt_id.clone())],
        "one targeted interrupt"
    );
    // ComfyUI is free again: the next job runs to completion.
    sim.set_step_delay(Duration::from_millis(1));
    let next = b.comfy.submit(request(t2i_graph(2, 2))).await.unwrap();
    assert_eq!(
        finished(&b.comfy, &next.prompt_id).await.state,
        JobState::Completed
    );
}

#[tokio::test]
async fn waiting_in_the_queue_does_not_count() {
    let limit = Duration::from_millis(1500);
    let (sim, b) = slow_sim_and_backend(limit).await;
    // Held queue: both jobs wait longer than the limit before either starts.
    sim.hold_queue(true);
    let first = b.comfy.submit(request(t2i_graph(10, 1))).await.unwrap();
    let second = b.comfy.submit(request(t2i_graph(10, 2))).await.unwrap();
    tokio::time::sleep(limit * 2).await;
    assert_eq!(
        b.comfy.snapshot(&first.prompt_id).unwrap().state,
        JobState::Queued
    );
    sim.hold_queue(false);
    for id in [&first.prompt_id, &second.prompt_id] {
        let snap = finished(&b.comfy, id).await;
        assert_eq!(snap.state, JobState::Completed, "{snap:?}");
    }
    assert!(sim.interrupts().is_empty(), "nothing was interrupted");
}
