//! Health and failover: one task per member follows its websocket state. A member that stays
//! unreachable for [`FarmOptions::failover_after`](super::FarmOptions) is out of rotation
//! (see [`super::route`]) and gives up its open jobs, again every `failover_after` while it
//! stays down; its websocket keeps probing it with backoff, and it takes work again as soon as
//! it answers.
//!
//! What happens to each open job of a silent member:
//! - queued, request retained: it moves to the least loaded other member that can run it,
//!   same prompt id, parameters and seed; its input images are uploaded there first. The new
//!   member holds the job before the old one lets it go, so a waiting client follows it;
//!   the job's warnings (and provenance) say where it came from;
//! - running, with retries left: the same, counting one retry;
//! - anything else (running without retries, a request over the retention budget, no other
//!   member able to run it, the resubmission refused): it fails with that reason.
//!
//! Nothing is left open on a dead member.

use std::future::Future;
use std::sync::{Arc, Weak};
use std::time::Duration;

use comfyui::{ConnectionState, JobFailure, JobState};
use tokio::sync::watch;

use super::retain::{self, Entry};
use super::{Farm, FarmOptions};

/// Exception type of failures caused by a member that stopped answering.
pub const BACKEND_LOST: &str = "BackendLost";

/// Starts the watch of every member.
pub fn spawn(farm: &Arc<Farm>) {
    for member in 0..farm.members.len() {
        let conn = farm.members[member].comfy.connection();
        tokio::spawn(watch_member(Arc::downgrade(farm), member, conn));
    }
}

async fn watch_member(farm: Weak<Farm>, member: usize, conn: watch::Receiver<ConnectionState>) {
    let Some(after) = farm.upgrade().map(|f| f.options.failover_after) else {
        return;
    };
    let silent = || {
        let farm = farm.clone();
        async move {
            match farm.upgrade() {
                Some(farm) => {
                    farm.evacuate(member).await;
                    true
                }
                None => false,
            }
        }
    };
    follow(conn, after, tokio::time::sleep, silent).await;
}

/// Follows one member's connection state: each time it has stayed unreachable for a whole
/// `after` (waited with `sleep`, so tests can hold the clock), `silent` runs, and runs again
/// every `after` while the member stays down; a reconnection before the wait ends starts
/// over. Ends when the connection's sender is gone or `silent` returns `false`.
async fn follow<S, Slept, E, Evacuated>(
    mut conn: watch::Receiver<ConnectionState>,
    after: Duration,
    mut sleep: S,
    mut silent: E,
) where
    S: FnMut(Duration) -> Slept,
    Slept: Future<Output = ()>,
    E: FnMut() -> Evacuated,
    Evacuated: Future<Output = bool>,
{
    loop {
        if conn.wait_for(|c| !c.connected).await.is_err() {
            return;
        }
        loop {
            // `Some(true)`: back; `Some(false)`: the sender is gone; `None`: a whole `after`.
            let back = tokio::select! {
                back = async { conn.wait_for(|c| c.connected).await.is_ok() } => Some(back),
                () = sleep(after) => None,
            };
            match back {
                Some(true) => break,
                Some(false) => return,
                None if !silent().await => return,
                None => {}
            }
        }
    }
}

impl Farm {
    /// Moves or fails every open job of `member` (see the module doc).
    pub async fn evacuate(self: &Arc<Self>, member: usize) {
        let comfy = &self.members[member].comfy;
        for prompt_id in comfy.open_job_ids() {
            let Some(snap) = comfy.snapshot(&prompt_id) else {
                continue;
            };
            if snap.state.is_terminal() {
                continue;
            }
            let running = snap.state == JobState::Running;
            let entry = self.retained.get(&prompt_id).filter(|e| e.member == member);
            match entry {
                Some(entry) if !running || entry.retries_left > 0 => {
                    self.move_job(member, &prompt_id, entry, running).await;
                }
                entry => {
                    let asked = snap.metadata["retries"].as_u64().unwrap_or(0);
                    let why = self.unmovable_reason(running, entry.is_some(), asked);
                    self.fail(member, &prompt_id, why);
                }
            }
        }
    }

    fn down_for(&self, member: usize) -> String {
        format!(
            "backend `{}` stopped answering (unreachable for {:.1} s)",
            self.members[member].name(),
            self.options.failover_after.as_secs_f64()
        )
    }

    fn unmovable_reason(&self, running: bool, retained: bool, asked: u64) -> String {
        let FarmOptions {
            retain_bytes,
            max_retries,
            ..
        } = self.options;
        match (running, retained, asked) {
            (true, _, 0) => format!(
                "while the job was running; it was not resubmitted: pass `retries` (up to {max_retries}) to have a job that was running resubmitted to another backend"
            ),
            (true, true, _) => "while the job was running, and its retries are used up".to_owned(),
            (_, _, _) => format!(
                "{}; the job could not move to another backend: its request (graph and input images) was over the failover retention budget of {} MiB (COMFYUI_MCP_FARM_RETAIN_MB)",
                if running {
                    "while the job was running"
                } else {
                    "while the job was queued"
                },
                retain_bytes >> 20
            ),
        }
    }

    fn fail(&self, member: usize, prompt_id: &str, why: String) {
        let message = format!("{} {why}", self.down_for(member));
        tracing::warn!(prompt_id, %message, "job failed with its backend");
        self.retained.release(prompt_id, Some(member));
        self.members[member]
            .comfy
            .fail(prompt_id, JobFailure::message(BACKEND_LOST, message));
    }

    async fn move_job(self: &Arc<Self>, from: usize, prompt_id: &str, entry: Entry, running: bool) {
        let targets = self.in_rotation(Some(from));
        let (views, unreachable) = self.views(&targets).await;
        let placed = self
            .place(&self.gate, entry.request.graph.clone(), &views, |e, _| e)
            .await;
        let placement = match placed {
            Ok(placement) => placement,
            Err(refused) => {
                let reasons: Vec<String> = refused
                    .iter()
                    .chain(&unreachable)
                    .map(|(i, e)| format!("`{}`: {e}", self.members[*i].name()))
                    .collect();
                let why = if reasons.is_empty() {
                    "and no other backend is up to take the job".to_owned()
                } else {
                    format!(
                        "and no other backend can take the job: {}",
                        reasons.join("; ")
                    )
                };
                return self.fail(from, prompt_id, why);
            }
        };
        let to = placement.member;
        let target = &self.members[to];
        if let Err(e) = entry.inputs.upload(target.comfy.client()).await {
            let why = format!(
                "and uploading its input images to `{}` failed: {e}",
                target.name()
            );
            return self.fail(from, prompt_id, why);
        }
        let mut moved = entry.clone();
        moved.member = to;
        if running {
            moved.retries_left -= 1;
        }
        let retries_left = moved.retries_left;
        self.retained.keep(prompt_id, moved);
        if let Err(e) = target
            .comfy
            .submit_as(prompt_id.to_owned(), entry.request.clone())
            .await
        {
            self.retained.keep(prompt_id, entry);
            let why = format!("and resubmitting it to `{}` failed: {e}", target.name());
            return self.fail(from, prompt_id, why);
        }
        let old = self.members[from].name();
        let when = if running {
            let asked = entry.request.metadata["retries"].as_u64().unwrap_or(0);
            let used = asked.saturating_sub(u64::from(retries_left));
            format!("while running it (retry {used} of {asked})")
        } else {
            "while it was queued".to_owned()
        };
        target.comfy.note(
            prompt_id,
            format!(
                "moved from backend `{old}` to `{}`: `{old}` stopped answering {when}",
                target.name()
            ),
        );
        self.members[from].comfy.release(prompt_id, running).await;
        tracing::info!(prompt_id, from = %old, to = %target.name(), running, "job moved to another backend");
        retain::watch_release(self, prompt_id, to, retries_left);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;
    use tokio::sync::mpsc;

    fn state(connected: bool) -> ConnectionState {
        ConnectionState {
            connected,
            ..ConnectionState::default()
        }
    }

    /// A watch whose clock the test holds: each `sleep` the watch asks for is announced
    /// (with its duration) and ends when the test says so.
    struct Rig {
        conn: watch::Sender<ConnectionState>,
        asked: mpsc::UnboundedReceiver<(Duration, tokio::sync::oneshot::Sender<()>)>,
        evacuations: Arc<Mutex<usize>>,
        watch: tokio::task::JoinHandle<()>,
    }

    const AFTER: Duration = Duration::from_millis(1234);

    fn rig() -> Rig {
        let (conn, rx) = watch::channel(state(true));
        let (ask, asked) = mpsc::unbounded_channel();
        let evacuations = Arc::new(Mutex::new(0));
        let counted = evacuations.clone();
        let sleep = move |d: Duration| {
            let (done, wait) = tokio::sync::oneshot::channel();
            ask.send((d, done)).unwrap();
            async move {
                // Ends only when the test says so (a dropped sender never ends it).
                if wait.await.is_err() {
                    std::future::pending::<()>().await;
                }
            }
        };
        let silent = move || {
            *counted.lock().unwrap() += 1;
            async { true }
        };
        let watch = tokio::spawn(follow(rx, AFTER, sleep, silent));
        Rig {
            conn,
            asked,
            evacuations,
            watch,
        }
    }

    impl Rig {
        async fn next_wait(&mut self) -> tokio::sync::oneshot::Sender<()> {
            let (duration, done) = self.asked.recv().await.expect("a wait is asked for");
            assert_eq!(duration, AFTER, "the wait is exactly the failover delay");
            done
        }
        fn evacuations(&self) -> usize {
            *self.evacuations.lock().unwrap()
        }
    }

    #[tokio::test]
    async fn a_member_back_before_the_delay_ends_keeps_its_jobs() {
        let mut rig = rig();
        rig.conn.send(state(false)).unwrap();
        let wait = rig.next_wait().await;
        // Reconnected just before the delay ran out: the watch goes back to waiting for a
        // disconnection, and the (now late) end of the wait moves nothing.
        rig.conn.send(state(true)).unwrap();
        tokio::task::yield_now().await;
        let _ = wait.send(());
        tokio::task::yield_now().await;
        assert_eq!(rig.evacuations(), 0);
        assert!(rig.asked.try_recv().is_err(), "no wait while connected");
        drop(rig.conn);
        rig.watch.await.unwrap();
        assert_eq!(*rig.evacuations.lock().unwrap(), 0);
    }

    #[tokio::test]
    async fn a_member_down_for_the_whole_delay_gives_up_its_jobs_and_again_each_delay() {
        let mut rig = rig();
        assert!(
            rig.asked.try_recv().is_err(),
            "nothing is timed while connected"
        );
        rig.conn.send(state(false)).unwrap();
        rig.next_wait().await.send(()).unwrap();
        let again = rig.next_wait().await;
        assert_eq!(rig.evacuations(), 1, "once the delay has passed");
        again.send(()).unwrap();
        let third = rig.next_wait().await;
        assert_eq!(rig.evacuations(), 2, "and again every delay while down");
        // Back: the next disconnection waits a whole delay again before anything moves.
        rig.conn.send(state(true)).unwrap();
        drop(third);
        tokio::task::yield_now().await;
        rig.conn.send(state(false)).unwrap();
        let wait = rig.next_wait().await;
        assert_eq!(rig.evacuations(), 2);
        wait.send(()).unwrap();
        let _next = rig.next_wait().await;
        assert_eq!(rig.evacuations(), 3);
    }
}
