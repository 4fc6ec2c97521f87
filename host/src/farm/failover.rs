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

use std::sync::{Arc, Weak};

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

async fn watch_member(farm: Weak<Farm>, member: usize, mut conn: watch::Receiver<ConnectionState>) {
    let Some(after) = farm.upgrade().map(|f| f.options.failover_after) else {
        return;
    };
    loop {
        let down = async { conn.wait_for(|c| !c.connected).await.map(|_| ()) };
        if down.await.is_err() {
            return;
        }
        // Down: every `after` it stays down, its open jobs leave it.
        loop {
            let back = async { conn.wait_for(|c| c.connected).await.map(|_| ()) };
            match tokio::time::timeout(after, back).await {
                Ok(Ok(())) => break,
                Ok(Err(_)) => return,
                Err(_) => match farm.upgrade() {
                    Some(farm) => farm.evacuate(member).await,
                    None => return,
                },
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
