//! Work only the leader does, behind one seam. A job is asked, on its tick
//! while this node leads and its data dir has room, which commands are due
//! given the published state and the leader's clock; `run` proposes them
//! one after another through the write queue (so the batcher stamps them
//! with that clock, and every node applies them alike) and tells what became
//! of each. ACME expiry, DNSSEC key steps, health verdicts
//! (`health::Quorum`) and staged moves' steps are jobs.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use openraft::ServerState;
use switchboard_domain::{Command, Guard, State};
use tokio::sync::{mpsc, oneshot};

use crate::disk::Disk;
use crate::write::Queued;
use crate::{Published, Raft};

/// A command a job wants proposed, with its guard (a job that plans from
/// a state sets the revision it planned from as expected, so a plan made
/// on a state that moved on is refused, not doubled) and what it is about,
/// for the log.
pub(crate) struct Due {
    pub command: Command,
    pub guard: Guard,
    pub about: String,
}

/// One kind of leader-only work.
pub(crate) trait LeaderJob: Send + 'static {
    /// Its name in logs.
    fn name(&self) -> &'static str;
    /// How often it is asked.
    fn every(&self) -> Duration;
    /// The commands due now, given the state and the leader's clock (ms
    /// since the epoch).
    fn due(&mut self, state: &State, now_ms: u64) -> Vec<Due>;
    /// Whether to ask again at once, not a tick later, when a command of it
    /// applied: for steps that follow one another (a new zone's KSK, then
    /// its ZSK). A refused command waits for the next tick (and is logged),
    /// so one that can never apply never loops.
    fn again_after_applied(&self) -> bool {
        false
    }
}

/// The leader's clock, in ms since the epoch: what jobs plan with and what
/// the batcher stamps into every entry, so a job's command applies at the
/// time it was planned for or later.
pub(crate) fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// Run `job` for as long as the write queue is open.
pub(crate) async fn run(mut job: impl LeaderJob, raft: Raft, published: Published, queue: mpsc::Sender<Queued>, disk: Arc<Disk>) {
    let mut tick = tokio::time::interval(job.every());
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut again = false;
    loop {
        if !again {
            tick.tick().await;
        }
        again = false;
        if raft.metrics().borrow().state != ServerState::Leader || disk.full() {
            continue;
        }
        let due = job.due(&published.load(), now_ms());
        for Due { command, guard, about } in due {
            let (tx, rx) = oneshot::channel();
            if queue.send((command, guard, tx)).await.is_err() {
                return;
            }
            match rx.await {
                Ok(Ok(written)) => match written.result {
                    Ok(_) => again |= job.again_after_applied(),
                    Err(e) => tracing::warn!(job = job.name(), about, error = %e, "leader job's command refused"),
                },
                // Not written (leadership lost, no quorum): asked again next tick.
                Ok(Err(e)) => tracing::debug!(job = job.name(), about, error = %e, "leader job's command not written"),
                Err(_) => {}
            }
        }
    }
}

/// Expired ACME challenges: `ExpireAcme` once the leader's clock passes
/// the earliest expiry. The batcher stamps the entry with the same clock
/// and every node removes exactly the values expired by that stamp, at the
/// same revision; nodes never consult their own clocks.
pub(crate) struct AcmeExpiry;

impl LeaderJob for AcmeExpiry {
    fn name(&self) -> &'static str {
        "acme expiry"
    }

    fn every(&self) -> Duration {
        Duration::from_millis(500)
    }

    fn due(&mut self, state: &State, now_ms: u64) -> Vec<Due> {
        if state.next_acme_expiry().is_none_or(|at| at > now_ms) {
            return Vec::new();
        }
        vec![Due { command: Command::ExpireAcme, guard: Guard::default(), about: "expired challenges".into() }]
    }
}

/// Staged moves: each step (`AdvanceMove`) once the leader's clock passes
/// its due time, compare-and-set on the move, so a step planned from a
/// state that moved on is refused rather than taken twice. A move whose
/// tenant left its cluster meanwhile (moved or pinned by an operator), or
/// whose target cluster went away or stopped taking tenants, is cancelled
/// rather than retried forever.
pub(crate) struct MoveSteps;

impl LeaderJob for MoveSteps {
    fn name(&self) -> &'static str {
        "staged moves"
    }

    fn every(&self) -> Duration {
        Duration::from_millis(250)
    }

    fn due(&mut self, state: &State, now_ms: u64) -> Vec<Due> {
        state
            .staged_moves()
            .filter_map(|m| {
                let guard = Guard { expected_revision: Some(m.revision), ..Guard::default() };
                let stranded = m.step == switchboard_domain::model::MoveStep::Lowered
                    && (state.tenant(&m.tenant).is_none_or(|t| t.cluster != m.from)
                        || state.cluster(&m.to).is_none_or(|c| c.state != switchboard_domain::ClusterState::Active || c.dedicated));
                let command = if stranded {
                    tracing::warn!(tenant = %m.tenant, to = %m.to, "staged move cancelled: its tenant or target cluster changed meanwhile");
                    Command::CancelMove { id: m.tenant.clone() }
                } else if now_ms >= m.due_ms() {
                    Command::AdvanceMove { id: m.tenant.clone() }
                } else {
                    return None;
                };
                Some(Due { command, guard, about: m.tenant.clone() })
            })
            .collect()
    }
}
