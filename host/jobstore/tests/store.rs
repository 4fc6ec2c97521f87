//! The SQLite job store on real files: migrations from version 1, forward-only transitions,
//! concurrent writers on two connections, adoption of a gone owner's jobs, the open-job
//! bound, retention, listing, and the start-up errors (corrupt, locked, newer schema).

use std::path::Path;
use std::sync::{Arc, Barrier};
use std::time::Duration;

use comfyui::snapshot::now_unix;
use comfyui::store::{Cursor, JobQuery, JobStore, StoredJob, Update};
use comfyui::{JobFailure, JobOrigin, JobSnapshot, JobState};
use jobstore::{SqliteJobStore, StoreError, StoreOptions, schema};
use rusqlite::Connection;
use serde_json::json;

fn snapshot(id: &str, template: &str, submitted_at: f64) -> JobSnapshot {
    JobSnapshot {
        prompt_id: id.into(),
        state: JobState::Queued,
        progress: 0.0,
        queue_position: None,
        execution_time: None,
        postprocess_ms: None,
        postprocessing: None,
        images: vec![],
        files: vec![],
        error: None,
        node_errors: json!({}),
        submitted_at,
        started_at: None,
        finished_at: None,
        origin: JobOrigin::Template {
            template_id: template.into(),
            pack_name: "pack".into(),
            pack_version: "1.0.0".into(),
            pack_sha256: "ab".repeat(32),
        },
        parameters: json!({"seed": 42, "prompt": "a cat"}),
        metadata: json!({"seed": 42}),
        backend: "http://127.0.0.1:8188".into(),
        warnings: vec![],
    }
}

fn job(id: &str, template: &str, submitted_at: f64) -> StoredJob {
    StoredJob {
        snapshot: snapshot(id, template, submitted_at),
        backend: "http://127.0.0.1:8188".into(),
        graph_sha256: "cd".repeat(32),
        graph_nodes: vec!["1".into(), "2".into()],
        cancel_requested: false,
    }
}

fn with_state(mut s: JobSnapshot, state: JobState) -> JobSnapshot {
    s.state = state;
    if state.is_terminal() {
        s.finished_at = Some(now_unix());
        s.queue_position = Some(0);
    }
    s
}

fn open(path: &Path) -> SqliteJobStore {
    SqliteJobStore::open(path, StoreOptions::default()).expect("store opens")
}

#[test]
fn a_version_1_file_is_migrated_with_its_jobs() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("jobs.sqlite3");
    {
        let mut conn = Connection::open(&path).unwrap();
        schema::migrate_to(&mut conn, 1).unwrap();
        assert_eq!(schema::version(&conn).unwrap(), 1);
        conn.execute(
            "INSERT INTO jobs VALUES ('old', ?1, 'portrait', '{\"seed\":7}', '{}', 'ff', '[\"1\"]',
                'completed', 2, 1.0, 0, 100.0, 101.0, 103.0, 2.0, NULL, '{}', '[]', '[]', '[]', 103.0)",
            [serde_json::to_string(&snapshot("old", "portrait", 100.0).origin).unwrap()],
        )
        .unwrap();
    }
    let store = open(&path);
    let conn = Connection::open(&path).unwrap();
    assert_eq!(schema::version(&conn).unwrap(), schema::CURRENT_VERSION);
    let old = store.get("old").unwrap().expect("the v1 job survives");
    assert_eq!(old.snapshot.state, JobState::Completed);
    assert_eq!(old.snapshot.parameters, json!({"seed": 7}));
    assert_eq!(old.backend, "");
    let states: Vec<JobState> = store
        .transitions("old")
        .unwrap()
        .into_iter()
        .map(|t| t.0)
        .collect();
    assert_eq!(states, [JobState::Queued, JobState::Completed]);
    // Reopening a current file changes nothing.
    drop(store);
    assert!(open(&path).get("old").unwrap().is_some());
}

#[test]
fn states_only_move_forward_and_every_transition_is_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir.path().join("s.sqlite3"));
    let j = job("a", "t", now_unix());
    store.insert(&j).unwrap();
    let mut running = with_state(j.snapshot.clone(), JobState::Running);
    running.progress = 0.5;
    assert_eq!(store.update(&running).unwrap(), Update::Applied);
    let mut lower = running.clone();
    lower.progress = 0.2;
    assert_eq!(store.update(&lower).unwrap(), Update::Applied);
    assert_eq!(store.get("a").unwrap().unwrap().snapshot.progress, 0.5);
    assert!(matches!(
        store.update(&j.snapshot).unwrap(),
        Update::Stale(s) if s.state == JobState::Running
    ));
    let done = with_state(running.clone(), JobState::Completed);
    assert_eq!(store.update(&done).unwrap(), Update::Applied);
    for later in [JobState::Failed, JobState::Cancelled, JobState::Running] {
        let refused = store.update(&with_state(running.clone(), later)).unwrap();
        assert!(
            matches!(&refused, Update::Stale(s) if s.state == JobState::Completed),
            "{later}: {refused:?}"
        );
    }
    let states: Vec<JobState> = store
        .transitions("a")
        .unwrap()
        .into_iter()
        .map(|t| t.0)
        .collect();
    assert_eq!(
        states,
        [JobState::Queued, JobState::Running, JobState::Completed]
    );
    assert_eq!(
        store.update(&snapshot("nope", "t", 1.0)).unwrap(),
        Update::Missing
    );
}

#[test]
fn two_connections_writing_at_once_lose_no_update() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.sqlite3");
    let a = Arc::new(open(&path));
    let b = Arc::new(open(&path));
    const N: usize = 150;
    let barrier = Arc::new(Barrier::new(2));
    let insert = |store: Arc<SqliteJobStore>, prefix: &'static str, barrier: Arc<Barrier>| {
        std::thread::spawn(move || {
            barrier.wait();
            for i in 0..N {
                store
                    .insert(&job(&format!("{prefix}{i}"), prefix, i as f64))
                    .unwrap();
            }
        })
    };
    let ta = insert(a.clone(), "a", barrier.clone());
    let tb = insert(b.clone(), "b", barrier.clone());
    ta.join().unwrap();
    tb.join().unwrap();
    assert_eq!(a.count().unwrap(), 2 * N as u64);
    // Every job of `a`: one connection completes it while the other cancels it.
    let race = |store: Arc<SqliteJobStore>, end: JobState, barrier: Arc<Barrier>| {
        std::thread::spawn(move || {
            barrier.wait();
            (0..N)
                .map(|i| {
                    let snap = with_state(snapshot(&format!("a{i}"), "a", i as f64), end);
                    let out = match end {
                        JobState::Cancelled => store.cancel(&snap),
                        _ => store.update(&snap),
                    };
                    out.unwrap() == Update::Applied
                })
                .collect::<Vec<bool>>()
        })
    };
    let done = race(a.clone(), JobState::Completed, barrier.clone());
    let cancelled = race(b.clone(), JobState::Cancelled, barrier);
    let (done, cancelled) = (done.join().unwrap(), cancelled.join().unwrap());
    for i in 0..N {
        assert!(done[i] ^ cancelled[i], "job a{i}: exactly one ending wins");
        let stored = a.get(&format!("a{i}")).unwrap().unwrap();
        let winner = if done[i] {
            JobState::Completed
        } else {
            JobState::Cancelled
        };
        assert_eq!(stored.snapshot.state, winner);
        assert_eq!(stored.cancel_requested, !done[i]);
        let endings = a
            .transitions(&format!("a{i}"))
            .unwrap()
            .into_iter()
            .filter(|t| t.0.is_terminal())
            .count();
        assert_eq!(endings, 1);
    }
}

/// Makes `owner` look gone: its heartbeat far in the past.
fn expire_lease(path: &Path, owner: &str) {
    Connection::open(path)
        .unwrap()
        .execute(
            "UPDATE owners SET heartbeat_at = 0 WHERE owner_id = ?1",
            [owner],
        )
        .unwrap();
}

#[test]
fn open_jobs_of_a_gone_owner_are_adopted_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("o.sqlite3");
    let gone = open(&path);
    for i in 0..5 {
        gone.insert(&job(&format!("j{i}"), "t", i as f64 + now_unix()))
            .unwrap();
    }
    gone.update(&with_state(snapshot("j4", "t", 0.0), JobState::Failed))
        .unwrap();
    let b = open(&path);
    let c = open(&path);
    assert!(
        b.heartbeat(&[], 100, "").unwrap().adopted.is_empty(),
        "a live owner keeps its jobs"
    );
    expire_lease(&path, gone.owner_id());
    let (tb, tc) = std::thread::scope(|s| {
        let tb = s.spawn(|| b.heartbeat(&[], 100, "").unwrap());
        let tc = s.spawn(|| c.heartbeat(&[], 100, "").unwrap());
        (tb.join().unwrap(), tc.join().unwrap())
    });
    let mut adopted: Vec<String> = tb
        .adopted
        .iter()
        .chain(&tc.adopted)
        .map(|j| j.snapshot.prompt_id.clone())
        .collect();
    adopted.sort();
    assert_eq!(
        adopted,
        ["j0", "j1", "j2", "j3"],
        "each open job exactly once"
    );
    let adopted_by_b = tb.adopted.len();
    let owners = b.owners_of_open().unwrap();
    assert_eq!(
        owners
            .iter()
            .filter(|(_, o)| o.as_deref() == Some(b.owner_id()))
            .count(),
        adopted_by_b
    );
}

#[test]
fn the_adoption_limit_bounds_one_heartbeat() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("l.sqlite3");
    let gone = open(&path);
    for i in 0..7 {
        gone.insert(&job(&format!("j{i}"), "t", now_unix()))
            .unwrap();
    }
    expire_lease(&path, gone.owner_id());
    let b = open(&path);
    assert_eq!(b.heartbeat(&[], 3, "").unwrap().adopted.len(), 3);
    assert_eq!(b.heartbeat(&[], 3, "").unwrap().adopted.len(), 3);
    assert_eq!(b.heartbeat(&[], 3, "").unwrap().adopted.len(), 1);
}

#[test]
fn jobs_open_beyond_the_bound_fail_and_their_owner_hears_of_it() {
    let dir = tempfile::tempdir().unwrap();
    let options = StoreOptions {
        max_open: Duration::from_secs(60),
        ..StoreOptions::default()
    };
    let store = SqliteJobStore::open(&dir.path().join("e.sqlite3"), options).unwrap();
    store.insert(&job("old", "t", now_unix() - 120.0)).unwrap();
    store.insert(&job("new", "t", now_unix())).unwrap();
    let beat = store
        .heartbeat(&["old".into(), "new".into()], 10, "")
        .unwrap();
    assert_eq!(beat.ended.len(), 1);
    let ended = &beat.ended[0];
    assert_eq!(
        (ended.prompt_id.as_str(), ended.state),
        ("old", JobState::Failed)
    );
    let error: &JobFailure = ended.error.as_ref().unwrap();
    assert_eq!(error.exception_type.as_deref(), Some("JobExpired"));
    assert!(error.message.contains("more than 60s"), "{}", error.message);
    assert_eq!(
        store.get("new").unwrap().unwrap().snapshot.state,
        JobState::Queued
    );
}

#[test]
fn retention_prunes_by_age_and_count_but_never_open_jobs() {
    let dir = tempfile::tempdir().unwrap();
    let options = StoreOptions {
        retention_age: Duration::from_secs(3600),
        retention_count: 4,
        ..StoreOptions::default()
    };
    let store = SqliteJobStore::open(&dir.path().join("r.sqlite3"), options).unwrap();
    let now = now_unix();
    for i in 0..3 {
        let id = format!("old{i}");
        store.insert(&job(&id, "t", now - 7200.0)).unwrap();
        let mut s = with_state(snapshot(&id, "t", now - 7200.0), JobState::Completed);
        s.finished_at = Some(now - 7000.0);
        store.update(&s).unwrap();
    }
    for i in 0..6 {
        let id = format!("new{i}");
        store.insert(&job(&id, "t", now + i as f64)).unwrap();
        let mut s = with_state(snapshot(&id, "t", now + i as f64), JobState::Failed);
        s.finished_at = Some(now + i as f64);
        store.update(&s).unwrap();
    }
    store.insert(&job("open", "t", now - 7200.0)).unwrap();
    let mut pruned = store.prune().unwrap();
    pruned.sort();
    assert_eq!(pruned, ["new0", "new1", "old0", "old1", "old2"]);
    assert!(store.prune().unwrap().is_empty());
    assert_eq!(store.count().unwrap(), 5);
    assert!(store.get("open").unwrap().is_some());
    assert!(store.transitions("old0").unwrap().is_empty(), "cascade");
}

#[test]
fn listing_filters_and_pages_without_repeats() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir.path().join("p.sqlite3"));
    for i in 0..25 {
        let template = if i % 2 == 0 { "even" } else { "odd" };
        store
            .insert(&job(&format!("j{i:02}"), template, 1000.0 + i as f64))
            .unwrap();
    }
    store
        .update(&with_state(
            snapshot("j03", "odd", 1003.0),
            JobState::Completed,
        ))
        .unwrap();
    let mut seen = Vec::new();
    let mut query = JobQuery {
        limit: 10,
        ..JobQuery::default()
    };
    loop {
        let page = store.list(&query).unwrap();
        seen.extend(page.jobs.iter().map(|j| j.prompt_id.clone()));
        match page.next {
            Some(c) => query.cursor = Some(Cursor::decode(&c.encode()).unwrap()),
            None => break,
        }
    }
    let expected: Vec<String> = (0..25).rev().map(|i| format!("j{i:02}")).collect();
    assert_eq!(seen, expected);
    let even = store
        .list(&JobQuery {
            template: Some("even".into()),
            since: Some(1010.0),
            ..JobQuery::default()
        })
        .unwrap();
    assert_eq!(even.jobs.len(), 8);
    assert!(even.jobs.iter().all(|j| j.submitted_at >= 1010.0));
    let done = store
        .list(&JobQuery {
            state: Some(JobState::Completed),
            ..JobQuery::default()
        })
        .unwrap();
    assert_eq!(done.jobs.len(), 1);
    assert_eq!(done.jobs[0].prompt_id, "j03");
    assert!(done.next.is_none());
}

#[test]
fn a_corrupt_file_is_refused_and_left_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.sqlite3");
    let garbage = b"this is not a database, it is a shopping list\n".repeat(100);
    std::fs::write(&path, &garbage).unwrap();
    let err = SqliteJobStore::open(&path, StoreOptions::default()).unwrap_err();
    assert!(matches!(err, StoreError::Corrupt { .. }), "{err:?}");
    let text = err.to_string();
    assert!(text.contains(&path.display().to_string()), "{text}");
    assert!(text.contains("corrupt or not a SQLite database"), "{text}");
    assert_eq!(
        std::fs::read(&path).unwrap(),
        garbage,
        "nothing was written"
    );
}

#[test]
fn a_lock_held_beyond_the_busy_timeout_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("locked.sqlite3");
    drop(open(&path));
    let holder = Connection::open(&path).unwrap();
    holder.execute_batch("BEGIN IMMEDIATE").unwrap();
    let options = StoreOptions {
        busy_timeout: Duration::from_millis(200),
        ..StoreOptions::default()
    };
    let err = SqliteJobStore::open(&path, options).unwrap_err();
    assert!(matches!(err, StoreError::Locked { .. }), "{err:?}");
    let text = err.to_string();
    assert!(text.contains(&path.display().to_string()), "{text}");
    assert!(
        text.contains("is locked") && text.contains("200ms"),
        "{text}"
    );
    holder.execute_batch("ROLLBACK").unwrap();
    drop(holder);
    assert!(SqliteJobStore::open(&path, StoreOptions::default()).is_ok());
}

#[test]
fn a_newer_schema_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("new.sqlite3");
    drop(open(&path));
    Connection::open(&path)
        .unwrap()
        .pragma_update(None, "user_version", 99)
        .unwrap();
    let err = SqliteJobStore::open(&path, StoreOptions::default()).unwrap_err();
    assert!(matches!(err, StoreError::Schema { .. }), "{err:?}");
    assert!(err.to_string().contains("schema version 99"), "{err}");
}

#[test]
fn post_processing_records_survive_the_store_and_a_version_2_file_gains_them() {
    use comfyui::postprocess::{ImagePostprocess, PostprocessProgress, PostprocessStep};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p.sqlite3");
    {
        // A version-2 file, migrated on open.
        let mut conn = Connection::open(&path).unwrap();
        schema::migrate_to(&mut conn, 2).unwrap();
    }
    let store = open(&path);
    let plain = job("plain", "t", now_unix());
    store.insert(&plain).unwrap();
    let got = store.get("plain").unwrap().unwrap().snapshot;
    assert_eq!((got.postprocess_ms, got.postprocessing), (None, None));
    // A post-processing job: the phase while it runs, the times and steps once completed.
    let mut j = job("post", "t", now_unix());
    j.snapshot.postprocessing = Some(PostprocessProgress::default());
    store.insert(&j).unwrap();
    assert_eq!(
        store.get("post").unwrap().unwrap().snapshot.postprocessing,
        Some(PostprocessProgress { done: 0, total: 0 })
    );
    let mut running = with_state(j.snapshot.clone(), JobState::Running);
    running.postprocessing = Some(PostprocessProgress { done: 1, total: 2 });
    store.update(&running).unwrap();
    assert_eq!(
        store.get("post").unwrap().unwrap().snapshot.postprocessing,
        Some(PostprocessProgress { done: 1, total: 2 })
    );
    let mut done = with_state(running, JobState::Completed);
    done.postprocessing = Some(PostprocessProgress { done: 2, total: 2 });
    done.postprocess_ms = Some(12.5);
    done.files.push(comfyui::SavedImage {
        path: "/out/post/a.png".into(),
        filename: "a.png".into(),
        width: 32,
        height: 16,
        bytes: 99,
        postprocess: Some(ImagePostprocess {
            steps: vec![PostprocessStep {
                name: "palette".into(),
                detail: "16 colours".into(),
            }],
            ms: 6.0,
            processor_ms: 4.0,
            source_width: 64,
            source_height: 64,
            raw_filename: Some("a.orig.png".into()),
        }),
    });
    store.update(&done).unwrap();
    let back = store.get("post").unwrap().unwrap().snapshot;
    assert_eq!(back.postprocess_ms, Some(12.5));
    assert_eq!(back.postprocessing, done.postprocessing);
    assert_eq!(back.files, done.files);
    let conn = Connection::open(&path).unwrap();
    assert_eq!(schema::version(&conn).unwrap(), 3);
}

#[test]
fn a_heartbeat_adopts_only_the_jobs_of_its_backend() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("b.sqlite3");
    let gone = open(&path);
    let mut on_a = job("on-a", "t", now_unix());
    on_a.backend = "gpu-a".into();
    let mut on_b = job("on-b", "t", now_unix());
    on_b.backend = "gpu-b".into();
    gone.insert(&on_a).unwrap();
    gone.insert(&on_b).unwrap();
    expire_lease(&path, gone.owner_id());
    let a = open(&path);
    let beat = a.heartbeat(&[], 100, "gpu-a").unwrap();
    let ids: Vec<_> = beat
        .adopted
        .iter()
        .map(|j| j.snapshot.prompt_id.as_str())
        .collect();
    assert_eq!(ids, ["on-a"], "a job of another backend is not adopted");
    let b = open(&path);
    let beat = b.heartbeat(&[], 100, "gpu-b").unwrap();
    assert_eq!(beat.adopted.len(), 1);
    assert_eq!(beat.adopted[0].backend, "gpu-b");
}

#[test]
fn recording_an_open_job_again_moves_it_and_an_ended_one_stays() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir.path().join("m.sqlite3"));
    let mut moving = job("moving", "t", now_unix());
    moving.backend = "gpu-a".into();
    store.insert(&moving).unwrap();
    moving.backend = "gpu-b".into();
    store.insert(&moving).unwrap();
    let held = store.get("moving").unwrap().unwrap();
    assert_eq!(
        (held.backend.as_str(), held.snapshot.state),
        ("gpu-b", JobState::Queued)
    );
    assert_eq!(held.snapshot.backend, "gpu-b");

    let mut ended = job("ended", "t", now_unix());
    ended.backend = "gpu-a".into();
    store.insert(&ended).unwrap();
    store
        .update(&with_state(ended.snapshot.clone(), JobState::Completed))
        .unwrap();
    ended.backend = "gpu-b".into();
    store.insert(&ended).unwrap();
    let held = store.get("ended").unwrap().unwrap();
    assert_eq!(
        (held.backend.as_str(), held.snapshot.state),
        ("gpu-a", JobState::Completed)
    );
}

/// Writers of many threads at once (a burst of submissions and their updates): group
/// commit shares transactions among them (`group.rs`, where the batching itself is tested
/// deterministically), and every job with its transitions is stored, whatever shared whose
/// transaction. A second process's writes get through between the batches.
#[test]
fn concurrent_writers_lose_nothing_and_another_process_gets_its_turn() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("g.sqlite3");
    let store = Arc::new(open(&path));
    let other = open(&path);
    let writers: Vec<_> = (0..8)
        .map(|t| {
            let store = store.clone();
            std::thread::spawn(move || {
                for i in 0..25 {
                    let id = format!("t{t}-{i}");
                    store.insert(&job(&id, "t", now_unix())).unwrap();
                    let running = with_state(snapshot(&id, "t", now_unix()), JobState::Running);
                    assert_eq!(store.update(&running).unwrap(), Update::Applied);
                }
            })
        })
        .collect();
    for i in 0..10 {
        other
            .insert(&job(&format!("other-{i}"), "t", now_unix()))
            .unwrap();
    }
    for w in writers {
        w.join().unwrap();
    }
    assert_eq!(store.count().unwrap(), 210);
    for t in 0..8 {
        for i in 0..25 {
            let id = format!("t{t}-{i}");
            let states: Vec<JobState> = store
                .transitions(&id)
                .unwrap()
                .into_iter()
                .map(|(s, _)| s)
                .collect();
            assert_eq!(states, [JobState::Queued, JobState::Running], "{id}");
        }
    }
}
