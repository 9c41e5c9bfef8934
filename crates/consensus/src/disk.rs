//! The data dir's free space. A full disk is an outage of this node's
//! writes, not of the node: client writes are refused up front, Raft's own
//! storage writes wait for space instead of failing (a failed one would stop
//! openraft's core for good, and a write whose entry had committed would be
//! reported failed), and everything resumes by itself once space returns.
//!
//! Two signals make the disk full: the last look (`statvfs`, every
//! `LOOK_EVERY`) found less than the configured minimum free, or a storage
//! write is waiting because RocksDB answered "no space". RocksDB refuses all
//! writes after such an error until its file manager has seen free space
//! again and resumed the database (it polls every 5 s), so the waiting write
//! retries, paced, until it goes through.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use switchboard_storage::{StorageError, Store};

use crate::{NodeError, NodeId, Raft};

/// How often the free space is looked at.
pub const LOOK_EVERY: Duration = Duration::from_millis(500);
/// Pause between attempts of a storage write that found the disk full.
const RETRY_FIRST: Duration = Duration::from_millis(50);
const RETRY_MAX: Duration = Duration::from_secs(1);

#[derive(Debug)]
pub struct Disk {
    node: NodeId,
    store: Store,
    /// Below this many free bytes, client writes are refused.
    min_free: u64,
    /// Free bytes at the last look (`u64::MAX` if it could not be read).
    free: AtomicU64,
    /// The last look found less than `min_free`.
    low: AtomicBool,
    /// Storage writes waiting for space now.
    waiting: AtomicUsize,
}

impl Disk {
    /// `min_free` is the free space below which client writes are refused:
    /// what is left is for the entries already in flight, replication from
    /// the leader and RocksDB's flushes.
    pub fn new(node: NodeId, store: Store, min_free: u64) -> Disk {
        let disk =
            Disk { node, store, min_free, free: AtomicU64::new(u64::MAX), low: AtomicBool::new(false), waiting: AtomicUsize::new(0) };
        disk.look();
        disk
    }

    /// Read the free space now; whether the disk is full afterwards.
    pub fn look(&self) -> bool {
        match self.store.free_bytes() {
            Ok(free) => {
                self.free.store(free, Ordering::Relaxed);
                self.low.store(free < self.min_free, Ordering::Relaxed);
            }
            // Not knowing is not full: the storage writes still tell.
            Err(e) => tracing::debug!(error = %e, dir = %self.store.path().display(), "reading free space"),
        }
        self.full()
    }

    pub fn full(&self) -> bool {
        self.low.load(Ordering::Relaxed) || self.waiting.load(Ordering::Relaxed) > 0
    }

    /// Free bytes at the last look.
    pub fn free_bytes(&self) -> u64 {
        self.free.load(Ordering::Relaxed)
    }

    /// Why writes are refused here, if they are.
    pub fn why_full(&self) -> Option<String> {
        if !self.full() {
            return None;
        }
        let dir = self.store.path().display();
        let free = self.free_bytes();
        Some(if self.low.load(Ordering::Relaxed) {
            format!("data dir {dir} has {} free, less than storage.free_space_min_mb ({})", mb(free), mb(self.min_free))
        } else {
            format!("data dir {dir} ran out of space (a write waits for it; {} free)", mb(free))
        })
    }

    /// `DiskFull` naming this node and its data dir while the disk is full,
    /// looked at afresh (one `statvfs`, a microsecond next to a write).
    pub fn check(&self) -> Result<(), NodeError> {
        self.look();
        match self.why_full() {
            None => Ok(()),
            Some(why) => Err(NodeError::DiskFull(format!("node {}: disk full: {why}; writes are refused until space returns", self.node))),
        }
    }

    /// Run a storage write; while it fails for want of space, keep the disk
    /// marked full and try again, paced, until it goes through. Other
    /// errors are returned at once.
    pub(crate) async fn durable<T>(&self, what: &str, mut write: impl FnMut() -> Result<T, StorageError>) -> Result<T, StorageError> {
        let mut waiting: Option<(Waiting<'_>, Instant)> = None;
        let mut pause = RETRY_FIRST;
        loop {
            match write() {
                Err(e) if e.is_no_space() => {
                    if waiting.is_none() {
                        tracing::warn!(node = self.node, dir = %self.store.path().display(), error = %e, "disk full while {what}: waiting for space");
                        waiting = Some((Waiting::new(&self.waiting), Instant::now()));
                    }
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(RETRY_MAX);
                }
                other => {
                    if let Some((_, since)) = &waiting {
                        tracing::info!(node = self.node, "space returned: {what} done after {:.1} s", since.elapsed().as_secs_f64());
                    }
                    return other;
                }
            }
        }
    }
}

/// One write waiting for space, counted while it lives.
struct Waiting<'a>(&'a AtomicUsize);

impl<'a> Waiting<'a> {
    fn new(count: &'a AtomicUsize) -> Self {
        count.fetch_add(1, Ordering::Relaxed);
        Waiting(count)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

fn mb(bytes: u64) -> String {
    if bytes == u64::MAX {
        return "unknown".into();
    }
    format!("{:.1} MB", bytes as f64 / 1e6)
}

/// Look at the free space every `LOOK_EVERY`. While the disk is full a
/// member (`raft`) neither campaigns nor, as leader, sends heartbeats: the
/// followers' leases run out and one of them, with a disk that can take
/// the writes, is elected. Both come back when space does. An edge (no
/// `raft`) only refuses writes meanwhile.
pub(crate) async fn watch(disk: std::sync::Arc<Disk>, raft: Option<Raft>) {
    let mut tick = tokio::time::interval(LOOK_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut was_full = false;
    loop {
        tick.tick().await;
        let full = disk.look();
        if full == was_full {
            continue;
        }
        was_full = full;
        if let Some(raft) = &raft {
            raft.runtime_config().elect(!full);
            raft.runtime_config().heartbeat(!full);
        }
        match disk.why_full() {
            Some(why) => {
                tracing::warn!(node = disk.node, "disk full: {why}; refusing writes{}", if raft.is_some() { ", not leading" } else { "" })
            }
            None => tracing::info!(node = disk.node, free = %mb(disk.free_bytes()), "disk has space again: taking writes"),
        }
    }
}
