//! Who owns an open job: a process, named by a random owner id, with its process id, host
//! name and a lease renewed by every heartbeat.
//!
//! Invariant: an owner is gone when its lease expired, or — faster, when it ran on this host —
//! when its process id no longer exists (checked through `/proc` where there is one; elsewhere
//! only the lease counts). A live owner is never declared gone by the process check: a reused
//! process id only delays adoption until the lease runs out.

use std::time::Duration;

/// This process as an owner.
#[derive(Debug, Clone)]
pub struct Me {
    /// Random per process.
    pub id: String,
    /// `std::process::id()`.
    pub pid: u32,
    /// Host name (empty when unknown).
    pub host: String,
}

impl Me {
    /// A new identity for this process.
    pub fn new() -> Self {
        Self {
            id: uuid::Uuid::new_v4().to_string(),
            pid: std::process::id(),
            host: host_name(),
        }
    }
}

impl Default for Me {
    fn default() -> Self {
        Self::new()
    }
}

/// What the store knows of another owner.
#[derive(Debug, Clone)]
pub struct OwnerRow {
    /// Its process id.
    pub pid: u32,
    /// Its host.
    pub host: String,
    /// Its last heartbeat (unix seconds).
    pub heartbeat_at: f64,
}

impl OwnerRow {
    /// Whether the owner is gone, seen from `me` at `now` with leases of `lease`.
    pub fn is_gone(&self, me: &Me, now: f64, lease: Duration) -> bool {
        if now - self.heartbeat_at > lease.as_secs_f64() {
            return true;
        }
        !me.host.is_empty() && self.host == me.host && !process_exists(self.pid)
    }
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_owned())
        .unwrap_or_default()
}

/// False only when `/proc` exists and has no entry for `pid`.
fn process_exists(pid: u32) -> bool {
    let proc = std::path::Path::new("/proc");
    if !proc.join("self").exists() {
        return true;
    }
    proc.join(pid.to_string()).exists()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expired_lease_or_dead_local_process_means_gone() {
        let me = Me::new();
        let live = OwnerRow {
            pid: std::process::id(),
            host: me.host.clone(),
            heartbeat_at: 100.0,
        };
        let lease = Duration::from_secs(30);
        assert!(!live.is_gone(&me, 110.0, lease));
        assert!(live.is_gone(&me, 131.0, lease));
        if std::path::Path::new("/proc/self").exists() {
            let dead = OwnerRow {
                pid: u32::MAX - 1,
                ..live.clone()
            };
            assert!(dead.is_gone(&me, 110.0, lease));
            let elsewhere = OwnerRow {
                host: format!("{}-other", me.host),
                ..dead
            };
            assert!(!elsewhere.is_gone(&me, 110.0, lease));
        }
    }
}
