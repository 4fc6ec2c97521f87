//! A job store that cannot be read never makes a job "unknown": status, wait and cancel of a
//! job this process does not hold answer with the store's error, and jobs it holds are
//! answered from memory as before.

mod common;

use std::sync::Arc;

use comfyui::store::{Heartbeat, JobPage, JobQuery, JobStore, StoreError, StoredJob, Update};
use comfyui::{CancelError, ComfyUi, JobSnapshot, JobState};
use common::{BOUND, config, connected, empty_image_graph, fast_options, request, sim};
use simulator::SimConfig;

/// Accepts writes; every read fails (a locked or corrupted file, a full disk).
#[derive(Debug)]
struct Unreadable;

fn broken() -> StoreError {
    StoreError("database disk image is malformed".into())
}

impl JobStore for Unreadable {
    fn insert(&self, _job: &StoredJob) -> Result<(), StoreError> {
        Ok(())
    }
    fn update(&self, _snapshot: &JobSnapshot) -> Result<Update, StoreError> {
        Ok(Update::Applied)
    }
    fn get(&self, _prompt_id: &str) -> Result<Option<StoredJob>, StoreError> {
        Err(broken())
    }
    fn list(&self, _query: &JobQuery) -> Result<JobPage, StoreError> {
        Err(broken())
    }
    fn cancel(&self, _snapshot: &JobSnapshot) -> Result<Update, StoreError> {
        Err(broken())
    }
    fn heartbeat(
        &self,
        _open: &[String],
        _limit: usize,
        _backend: &str,
    ) -> Result<Heartbeat, StoreError> {
        Ok(Heartbeat::default())
    }
    fn prune(&self) -> Result<Vec<String>, StoreError> {
        Ok(vec![])
    }
}

#[tokio::test]
async fn an_unreadable_store_is_reported_as_such_never_as_an_unknown_job() {
    let sim = sim(SimConfig::default()).await;
    let out = tempfile::tempdir().unwrap();
    let options = comfyui::jobs::BackendOptions {
        job_store: Some(Arc::new(Unreadable)),
        ..fast_options()
    };
    let comfy: Arc<ComfyUi> =
        ComfyUi::connect_with(config(&sim.base_url(), &out), options).unwrap();
    connected(&comfy).await;
    let elsewhere = "0b7c9a52-5f07-4d4e-9d3c-2a9e8f0c1d11";
    let status = comfy.status(elsewhere).await;
    assert!(
        matches!(&status, Err(e) if e.to_string() == "job store: database disk image is malformed"),
        "{status:?}"
    );
    let waited = comfy.wait(elsewhere, BOUND).await;
    assert!(waited.is_err(), "{waited:?}");
    let cancel = comfy.cancel(elsewhere).await;
    assert!(matches!(cancel, Err(CancelError::Store(_))), "{cancel:?}");
    let statuses = comfy.statuses(&[elsewhere]).await;
    assert!(statuses[0].is_err(), "{statuses:?}");
    // A job this process holds is answered from memory.
    let job = comfy
        .submit(request(empty_image_graph(1, "s")))
        .await
        .unwrap();
    let done = comfy.wait(&job.prompt_id, BOUND).await.unwrap().unwrap();
    assert_eq!(done.state, JobState::Completed, "{done:?}");
    let now = comfy.status(&job.prompt_id).await.unwrap().unwrap();
    assert_eq!(now.state, JobState::Completed);
}
