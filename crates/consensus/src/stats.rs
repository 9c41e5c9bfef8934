//! What consensus counts, for `/metrics`: elections and leader changes
//! seen, snapshots built and installed (with their durations), writes by
//! outcome with their commit latency, group-commit batch sizes and
//! forwarded writes. `metrics::NodeMetrics` reads these and the node's
//! status at each scrape.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};

#[derive(Debug)]
pub(crate) struct Stats {
    pub elections: AtomicU64,
    pub leader_changes: AtomicU64,
    /// The last commit index this node learnt.
    pub committed: AtomicU64,
    pub snapshot_builds: Histogram,
    pub snapshot_installs: Histogram,
    /// When a snapshot began arriving, until it is installed or entries
    /// apply again (a transfer its leader abandoned).
    receiving: Mutex<Option<Instant>>,
    /// Seconds from a write proposed to its result (applied or refused by
    /// the state), on the node that proposed it.
    pub commit: Histogram,
    /// Commands per group-commit entry.
    pub batch: Histogram,
    pub forwarded: AtomicU64,
    /// Writes answered: applied, refused by the state (a command error),
    /// failed (no leader, disk full, timeouts).
    pub writes: [AtomicU64; 3],
    /// The change stream this node served its followers: entries, bytes
    /// (of entries and states) and whole states sent.
    pub feed_entries: AtomicU64,
    pub feed_bytes: AtomicU64,
    pub feed_states: AtomicU64,
    /// On an edge: streams opened to an upstream, and entries applied from them.
    pub upstream_streams: AtomicU64,
    pub upstream_entries: AtomicU64,
    /// Health probes this node made, passed and failed, and the reports
    /// of its verdicts delivered to the leader (or not).
    pub health_probes_ok: AtomicU64,
    pub health_probes_failed: AtomicU64,
    pub health_reports: AtomicU64,
    pub health_reports_failed: AtomicU64,
}

#[derive(Debug, Clone, Copy)]
pub(crate) enum WriteOutcome {
    Applied,
    Refused,
    Failed,
}

impl Default for Stats {
    fn default() -> Self {
        Stats {
            elections: AtomicU64::new(0),
            leader_changes: AtomicU64::new(0),
            committed: AtomicU64::new(0),
            snapshot_builds: Histogram::new(exponential_buckets(0.001, 4.0, 10)),
            snapshot_installs: Histogram::new(exponential_buckets(0.001, 4.0, 10)),
            receiving: Mutex::new(None),
            commit: Histogram::new(exponential_buckets(0.0005, 2.0, 14)),
            batch: Histogram::new(exponential_buckets(1.0, 2.0, 12)),
            forwarded: AtomicU64::new(0),
            writes: std::array::from_fn(|_| AtomicU64::new(0)),
            feed_entries: AtomicU64::new(0),
            feed_bytes: AtomicU64::new(0),
            feed_states: AtomicU64::new(0),
            upstream_streams: AtomicU64::new(0),
            upstream_entries: AtomicU64::new(0),
            health_probes_ok: AtomicU64::new(0),
            health_probes_failed: AtomicU64::new(0),
            health_reports: AtomicU64::new(0),
            health_reports_failed: AtomicU64::new(0),
        }
    }
}

impl Stats {
    pub(crate) fn write(&self, outcome: WriteOutcome) {
        self.writes[outcome as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// A snapshot began arriving from the leader.
    pub(crate) fn receiving_snapshot(&self) {
        if let Ok(mut r) = self.receiving.lock() {
            *r = Some(Instant::now());
        }
    }

    /// A snapshot was installed `took` after it began arriving (or, if
    /// that is not known, after its install began).
    pub(crate) fn installed_snapshot(&self, install_began: Instant) {
        let began = self.receiving.lock().ok().and_then(|mut r| r.take()).unwrap_or(install_began);
        self.snapshot_installs.observe(began.elapsed().as_secs_f64());
    }

    /// Entries applied: no snapshot is being installed.
    pub(crate) fn applying(&self) {
        if let Ok(mut r) = self.receiving.lock() {
            *r = None;
        }
    }

    /// Whether a snapshot is arriving or being installed now.
    pub(crate) fn installing(&self) -> bool {
        self.receiving.lock().ok().is_some_and(|r| r.is_some())
    }
}
