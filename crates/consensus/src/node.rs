//! A running Raft node: openraft wired to the RocksDB log and state machine
//! and the peer network, plus the write path used by the API. A proposal made
//! on a node that is not the leader is forwarded to the leader once.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use backon::Retryable;
use base64::Engine;
use openraft::error::{ClientWriteError, RaftError};
use openraft::{ChangeMembers, Config, RaftMetrics, ServerState, SnapshotPolicy};
use switchboard_domain::{Command, Envelope, Guard, State};
use switchboard_storage::Store;
use tokio::sync::{mpsc, oneshot, watch, Semaphore};

use crate::disk::{self, Disk};
use crate::edge::{self, EdgeShared, Follow};
use crate::feed::{Ask, Feed, Followers, Fresh, Reach};
use crate::jobs;
use crate::network::{PeerAuth, PeerPool};
use crate::stats::{Stats, WriteOutcome};
use crate::status::{LogPositions, Member, NodeStatus, Role};
use crate::write::{NodeError, Proposal, Queued, Written};
use crate::{LogStore, NodeId, NodeInfo, PeerNetwork, Published, Raft, StateMachine};

/// Raft timing and log retention, from the node config.
#[derive(Debug, Clone)]
pub struct RaftSettings {
    /// Cluster name; peers of another cluster are refused.
    pub cluster_name: String,
    pub heartbeat_ms: u64,
    pub election_timeout_min_ms: u64,
    pub election_timeout_max_ms: u64,
    /// Build a snapshot after this many entries since the last one.
    pub snapshot_every_entries: u64,
    /// Entries kept after a snapshot, so lagging followers catch up from the
    /// log rather than a full snapshot.
    pub keep_entries_after_snapshot: u64,
    /// Time a follower may take to install a received snapshot chunk.
    pub install_snapshot_timeout_ms: u64,
    /// Signs and checks every peer message with the cluster secret.
    pub peer_auth: PeerAuth,
    /// Below this many free bytes on the data dir's file system, client
    /// writes are refused and the node steps back from leading (see `disk`).
    pub free_space_min_bytes: u64,
    /// The node's region (empty when none), which its health reports carry.
    pub region: String,
}

impl Default for RaftSettings {
    fn default() -> Self {
        RaftSettings {
            cluster_name: "switchboard".into(),
            // openraft 0.9 gives every append-entries request exactly the
            // heartbeat interval to be answered: it must exceed the round
            // trip to the farthest node (an edge learner on another
            // continent) plus its disk sync, or nothing replicates there.
            heartbeat_ms: 500,
            election_timeout_min_ms: 1_500,
            election_timeout_max_ms: 3_000,
            // A snapshot of a million tenants takes about a second to encode:
            // not more often than every 100k writes.
            snapshot_every_entries: 100_000,
            // Entries written while a follower receives and installs a
            // snapshot must still be in the leader's log afterwards, or the
            // follower needs another snapshot (openraft#1706). 100k entries
            // cover half a minute at 3k writes/s, for ~10 MB of log.
            keep_entries_after_snapshot: 100_000,
            // openraft's 200 ms default is far too short for a large state.
            install_snapshot_timeout_ms: 30_000,
            peer_auth: PeerAuth::default(),
            // Room for what is in flight when the line is crossed: a
            // memtable flush (RocksDB's default write buffer is 64 MiB) and
            // the entries replicated meanwhile.
            free_space_min_bytes: 128 * 1024 * 1024,
            region: String::new(),
        }
    }
}

/// What keeps a node's state current: Raft, as a voter or learner, or
/// the change stream of an upstream, as an edge.
enum Replication {
    Raft {
        raft: Raft,
        /// Commands for the group-commit batcher.
        queue: mpsc::Sender<Queued>,
    },
    Edge {
        shared: Arc<EdgeShared>,
        follow: tokio::task::JoinHandle<()>,
    },
}

pub struct Node {
    id: NodeId,
    cluster: String,
    store: Store,
    disk: Arc<Disk>,
    replication: Replication,
    published: Published,
    applied: watch::Receiver<u64>,
    peers: PeerPool,
    /// The entries this node applied, for the followers below it.
    feed: Arc<Feed>,
    /// Who follows this node's feed, and how far they are.
    followers: Arc<Followers>,
    /// The probers' health reports, weighed while this node leads.
    health: Arc<crate::health::Reports>,
    started: Instant,
    /// Milliseconds after `started` at which a leader last reached this node
    /// (set by the peer service on every append-entries, heartbeats included).
    leader_contact_ms: AtomicU64,
    /// Request ids this node gave to writes that came without one.
    auto_ids: AtomicU64,
    /// Wall-clock nanoseconds at start (base64url), so those ids differ
    /// across restarts; short, so that an id fits inline where the dedup
    /// window keeps it (24 bytes).
    boot_tag: String,
    pub(crate) stats: Arc<Stats>,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node").field("id", &self.id).finish()
    }
}

fn raft_err<E: std::fmt::Display>(e: E) -> NodeError {
    NodeError::Raft(e.to_string())
}

fn write_error(e: RaftError<NodeId, ClientWriteError<NodeId, NodeInfo>>) -> NodeError {
    match e {
        RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => NodeError::NotLeader { leader: f.leader_id.zip(f.leader_node) },
        RaftError::APIError(ClientWriteError::ChangeMembershipError(e)) => NodeError::Membership(e.to_string()),
        RaftError::Fatal(e) => NodeError::Unavailable(e.to_string()),
    }
}

/// Wall-clock nanoseconds now (base64url): a tag that differs across
/// restarts, for the request ids a node makes up.
fn boot_tag() -> String {
    let boot_nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(boot_nanos.to_be_bytes())
}

/// How long a write is retried while the leader is unknown or changing
/// (a few election timeouts): the shared retry policy's span.
pub const WRITE_RETRY_FOR: Duration = switchboard_proto::retry::RETRY_FOR;

/// Most commands queued for proposal; more wait for room (backpressure).
pub const WRITE_QUEUE_MAX: usize = 8192;
/// Most commands in one log entry.
pub const BATCH_COMMANDS_MAX: usize = 512;
/// Most changes in one log entry (`Command::changes`: a batch counts its
/// rows), so one batch of `BATCH_ROWS_MAX` fills it. Every change of an
/// entry shares its revision, and a Watch response carries a revision
/// whole: this bounds what a stalled watcher holds.
pub const ENTRY_CHANGES_MAX: usize = switchboard_domain::command::BATCH_ROWS_MAX;
/// Entries in flight at once. While they are, arriving commands gather in
/// the queue and go out together in the next entry: openraft appends (and
/// fsyncs) every client write as its own entry, so this group commit is
/// what lets many concurrent writers share one fsync and one replication.
const BATCHES_IN_FLIGHT: usize = 2;

/// Bytes of a snapshot sent per message: well below the peer message limit.
pub const SNAPSHOT_CHUNK_BYTES: u64 = 4 * 1024 * 1024;

/// How often `wait_applied_everywhere` asks the members again.
const POLL_APPLIED_EVERY: Duration = Duration::from_millis(10);

/// Group commit: take what is queued (up to `BATCH_COMMANDS_MAX` commands
/// and `ENTRY_CHANGES_MAX` changes), stamp
/// it with this node's clock and propose it as one entry, at most
/// `BATCHES_IN_FLIGHT` entries at a time. Entries are handed to Raft here,
/// in queue order (so stamps never go backwards); only the wait for their
/// commit runs apart.
///
/// Two commands that change the same zone, cluster or tenant (a batch
/// changes each of its rows' entities) never share an entry: they would
/// commit at one revision, and a later compare-and-set on that revision
/// could not tell their results apart; a command that says it travels
/// alone (`Command::travels_alone`) shares none.
async fn batcher(raft: Raft, mut rx: mpsc::Receiver<Queued>, stats: Arc<Stats>) {
    let slots = Arc::new(Semaphore::new(BATCHES_IN_FLIGHT));
    let mut carried: Option<Queued> = None;
    loop {
        let first = match carried.take() {
            Some(q) => q,
            None => match rx.recv().await {
                Some(q) => q,
                None => return,
            },
        };
        let Ok(slot) = slots.clone().acquire_owned().await else { return };
        let mut entities: HashSet<_> = first.0.entities().into_iter().collect();
        let mut changes = first.0.changes();
        let mut batch = vec![first];
        while batch.len() < BATCH_COMMANDS_MAX && !batch[0].0.travels_alone() {
            let Ok(q) = rx.try_recv() else { break };
            let theirs = q.0.entities();
            let fits = changes + q.0.changes() <= ENTRY_CHANGES_MAX;
            if q.0.travels_alone() || !fits || theirs.iter().any(|e| entities.contains(e)) {
                carried = Some(q);
                break;
            }
            changes += q.0.changes();
            entities.extend(theirs);
            batch.push(q);
        }
        let at_ms = jobs::now_ms();
        let (envelopes, replies): (Vec<Envelope>, Vec<_>) =
            batch.into_iter().map(|(command, guard, tx)| (Envelope { at_ms, command, guard }, tx)).unzip();
        let n = envelopes.len();
        stats.batch.observe(n as f64);
        let committed = match raft.client_write_ff(envelopes).await {
            Ok(committed) => committed,
            Err(fatal) => {
                let e = write_error(RaftError::Fatal(fatal));
                for tx in replies {
                    let _ = tx.send(Err(e.clone()));
                }
                continue;
            }
        };
        tokio::spawn(async move {
            let _slot = slot;
            let result = match committed.await {
                Ok(Ok(resp)) if resp.data.outcomes.len() == n => {
                    let revision = resp.log_id.index;
                    for (tx, outcome) in replies.into_iter().zip(resp.data.outcomes) {
                        let _ = tx.send(Ok(Written { revision, result: outcome.map(Some) }));
                    }
                    return;
                }
                Ok(Ok(resp)) => {
                    NodeError::Raft(format!("entry {} applied {} of {n} commands", resp.log_id.index, resp.data.outcomes.len()))
                }
                Ok(Err(e)) => write_error(RaftError::APIError(e)),
                Err(_) => NodeError::Unavailable("raft stopped before the write was decided".into()),
            };
            for tx in replies {
                let _ = tx.send(Err(result.clone()));
            }
        });
    }
}

/// The voters and learners of `m`'s membership.
fn members_of(m: &RaftMetrics<NodeId, NodeInfo>) -> Vec<Member> {
    let membership = m.membership_config.membership();
    let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
    membership.nodes().map(|(id, info)| Member { id: *id, info: info.clone(), voter: voters.contains(id) }).collect()
}

/// Count elections (terms this node moved to) and leader changes, from
/// Raft's metrics, until Raft stops.
async fn count_elections(mut metrics: watch::Receiver<RaftMetrics<NodeId, NodeInfo>>, stats: Arc<Stats>) {
    let (mut term, mut leader) = {
        let m = metrics.borrow();
        (m.current_term, m.current_leader)
    };
    while metrics.changed().await.is_ok() {
        let m = metrics.borrow();
        if m.current_term > term {
            stats.elections.fetch_add(m.current_term - term, Ordering::Relaxed);
            term = m.current_term;
        }
        if m.current_leader != leader {
            if m.current_leader.is_some() {
                stats.leader_changes.fetch_add(1, Ordering::Relaxed);
            }
            leader = m.current_leader;
        }
    }
}

impl Node {
    /// Open the state from `store`, publish it, and start Raft.
    pub async fn start(id: NodeId, settings: &RaftSettings, store: Store) -> Result<Node, NodeError> {
        if store.meta(switchboard_storage::keys::KEY_EDGE)?.is_some() {
            return Err(NodeError::Storage(format!(
                "{} holds an edge's data; a voter or learner needs a data dir of its own",
                store.path().display()
            )));
        }
        let disk = Arc::new(Disk::new(id, store.clone(), settings.free_space_min_bytes));
        let stats = Arc::new(Stats::default());
        let (sm, published, applied) = StateMachine::open(store.clone(), disk.clone())?;
        let sm = sm.with_stats(stats.clone());
        let feed = sm.feed();
        let config = Config {
            cluster_name: settings.cluster_name.clone(),
            heartbeat_interval: settings.heartbeat_ms,
            election_timeout_min: settings.election_timeout_min_ms,
            election_timeout_max: settings.election_timeout_max_ms,
            install_snapshot_timeout: settings.install_snapshot_timeout_ms,
            snapshot_policy: SnapshotPolicy::LogsSinceLast(settings.snapshot_every_entries),
            max_in_snapshot_log_to_keep: settings.keep_entries_after_snapshot,
            // Chunks well below the peer message limit.
            snapshot_max_chunk_size: SNAPSHOT_CHUNK_BYTES,
            ..Config::default()
        };
        let config = Arc::new(config.validate().map_err(raft_err)?);
        let peers = PeerPool::new(settings.peer_auth.clone());
        let network = PeerNetwork::new(id, settings.cluster_name.clone(), peers.clone());
        let raft = Raft::new(id, config, network, LogStore::new(store.clone(), disk.clone()).with_stats(stats.clone()), sm)
            .await
            .map_err(raft_err)?;
        let (queue, rx) = mpsc::channel(WRITE_QUEUE_MAX);
        tokio::spawn(batcher(raft.clone(), rx, stats.clone()));
        tokio::spawn(count_elections(raft.metrics(), stats.clone()));
        tokio::spawn(jobs::run(jobs::AcmeExpiry, raft.clone(), published.clone(), queue.clone(), disk.clone()));
        tokio::spawn(jobs::run(crate::dnssec::KeySteps, raft.clone(), published.clone(), queue.clone(), disk.clone()));
        tokio::spawn(jobs::run(jobs::MoveSteps, raft.clone(), published.clone(), queue.clone(), disk.clone()));
        tokio::spawn(disk::watch(disk.clone(), Some(raft.clone())));
        let health = Arc::<crate::health::Reports>::default();
        tokio::spawn(jobs::run(
            crate::health::Quorum::new(health.clone(), raft.clone()),
            raft.clone(),
            published.clone(),
            queue.clone(),
            disk.clone(),
        ));
        let deliver = crate::health::Deliver {
            id,
            cluster: settings.cluster_name.clone(),
            region: settings.region.clone(),
            raft: raft.clone(),
            peers: peers.clone(),
            reports: health.clone(),
            stats: stats.clone(),
        };
        tokio::spawn(crate::health::prober(deliver, published.clone()));
        let boot_tag = boot_tag();
        Ok(Node {
            id,
            cluster: settings.cluster_name.clone(),
            store,
            disk,
            replication: Replication::Raft { raft, queue },
            published,
            applied,
            peers,
            feed,
            followers: Arc::default(),
            health,
            started: Instant::now(),
            leader_contact_ms: AtomicU64::new(u64::MAX),
            auto_ids: AtomicU64::new(0),
            boot_tag,
            stats,
        })
    }

    /// Open the state from `store` (an edge's data dir, or a new one),
    /// publish it, and follow `upstreams` (peer URLs, in order of
    /// preference) from its revision: an edge, not a Raft member. `me` is
    /// what it tells its upstream (and the tree) of itself.
    pub async fn start_edge(
        id: NodeId,
        settings: &RaftSettings,
        store: Store,
        me: NodeInfo,
        upstreams: Vec<String>,
    ) -> Result<Node, NodeError> {
        if upstreams.is_empty() {
            return Err(NodeError::Raft("an edge needs at least one upstream".into()));
        }
        edge::check_edge_dir(&store)?;
        let disk = Arc::new(Disk::new(id, store.clone(), settings.free_space_min_bytes));
        let stats = Arc::new(Stats::default());
        let (state, _) = store.load_state(switchboard_storage::keys::KEY_EDGE)?;
        let revision = state.revision();
        let published: Published = Arc::new(arc_swap::ArcSwap::from_pointee(state.clone()));
        let (applied_tx, applied) = watch::channel(revision);
        let feed = Arc::new(Feed::new(revision));
        let followers = Arc::<Followers>::default();
        let shared = Arc::<EdgeShared>::default();
        let peers = PeerPool::new(settings.peer_auth.clone());
        let follow = Follow {
            id,
            me,
            cluster: settings.cluster_name.clone(),
            upstreams,
            auth: settings.peer_auth.clone(),
            store: store.clone(),
            disk: disk.clone(),
            stats: stats.clone(),
            state,
            published: published.clone(),
            applied: applied_tx,
            feed: feed.clone(),
            followers: followers.clone(),
            shared: shared.clone(),
        };
        let follow = tokio::spawn(follow.run());
        tokio::spawn(disk::watch(disk.clone(), None));
        let boot_tag = boot_tag();
        Ok(Node {
            id,
            cluster: settings.cluster_name.clone(),
            store,
            disk,
            replication: Replication::Edge { shared, follow },
            published,
            applied,
            peers,
            feed,
            followers,
            health: Arc::default(),
            started: Instant::now(),
            leader_contact_ms: AtomicU64::new(u64::MAX),
            auto_ids: AtomicU64::new(0),
            boot_tag,
            stats,
        })
    }

    pub fn id(&self) -> NodeId {
        self.id
    }

    /// The free space of the data dir, and whether writes are refused for want of it.
    pub fn disk(&self) -> &Disk {
        &self.disk
    }

    /// Raft, on a voter or learner; `None` on an edge.
    pub(crate) fn raft(&self) -> Option<&Raft> {
        match &self.replication {
            Replication::Raft { raft, .. } => Some(raft),
            Replication::Edge { .. } => None,
        }
    }

    fn edge(&self) -> Option<&EdgeShared> {
        match &self.replication {
            Replication::Raft { .. } => None,
            Replication::Edge { shared, .. } => Some(shared),
        }
    }

    /// The cluster's name, which every peer message carries.
    pub(crate) fn cluster(&self) -> &str {
        &self.cluster
    }

    pub(crate) fn feed(&self) -> &Feed {
        &self.feed
    }

    pub(crate) fn followers(&self) -> &Arc<Followers> {
        &self.followers
    }

    /// How fresh this node is, for the followers below it: a member says
    /// when a leader last reached it (the leader: when a quorum last
    /// acknowledged it) by its own clock; an edge passes on what its
    /// upstream said.
    pub(crate) fn fresh(&self) -> Fresh {
        let revision = self.applied_revision();
        if let Some(edge) = self.edge() {
            return Fresh { revision, ..edge.fresh() };
        }
        let Some(m) = self.metrics() else { return Fresh { revision, ..Fresh::default() } };
        let at_ms = self.staleness_from(&m).map(|ms| jobs::now_ms().saturating_sub(ms));
        let membership = m.membership_config.membership();
        let leader = m.current_leader.and_then(|id| membership.get_node(&id).map(|info| (id, info.clone())));
        Fresh { at_ms, leader, members: members_of(&m), revision }
    }

    /// Take a prober's report: only the leader weighs them.
    pub(crate) fn take_health_report(&self, from: NodeId, report: crate::health::Report) -> Result<(), String> {
        match self.metrics() {
            Some(m) if m.current_leader == Some(self.id) => {
                self.health.take(from, report);
                Ok(())
            }
            _ => Err(format!("node {} is not the leader", self.id)),
        }
    }

    /// Whether this node and the tree below it have applied `ask.revision`.
    pub(crate) fn reach(&self, ask: Ask) -> Reach {
        Reach {
            applied: self.applied_revision(),
            laggards: self.followers.laggards(ask.revision),
            tree: if ask.tree { self.followers.tree(self.id) } else { Vec::new() },
        }
    }

    /// The state the query path serves, shared with the DNS front end.
    pub fn published(&self) -> Published {
        self.published.clone()
    }

    /// The currently applied state.
    pub fn state(&self) -> Arc<State> {
        self.published.load_full()
    }

    /// Changes at revisions after `after` (see `Store::changes_after`).
    pub fn changes_after(&self, after: u64, limit: usize) -> Result<Vec<(u64, switchboard_domain::Change)>, NodeError> {
        Ok(self.store.changes_after(after, limit)?)
    }

    /// The first revision whose changes this node still holds.
    pub fn changes_from(&self) -> Result<u64, NodeError> {
        Ok(self.store.changes_from()?)
    }

    /// The cluster secret peer messages are signed and checked with.
    pub(crate) fn peer_auth(&self) -> &PeerAuth {
        self.peers.auth()
    }

    /// A linearizable read point: this node confirms with a quorum that it
    /// still leads, then waits until it has applied every entry committed
    /// before the call; a read of `state()` afterwards sees every write
    /// acknowledged before it. `NotLeader` on any other node (the read must
    /// go to the leader; a deposed leader cannot confirm).
    pub async fn read_barrier(&self) -> Result<u64, NodeError> {
        let Some(raft) = self.raft() else {
            return Err(NodeError::NotLeader { leader: self.leader_elsewhere() });
        };
        let read = raft.ensure_linearizable().await.map_err(|e| match e {
            RaftError::APIError(openraft::error::CheckIsLeaderError::ForwardToLeader(f)) => {
                NodeError::NotLeader { leader: f.leader_id.zip(f.leader_node) }
            }
            RaftError::APIError(other) => NodeError::Unavailable(other.to_string()),
            RaftError::Fatal(e) => NodeError::Unavailable(e.to_string()),
        })?;
        let index = read.map_or(0, |l| l.index);
        // openraft counts an entry applied when our state machine returns,
        // after it published the new state: this wait is for certainty only.
        let mut applied = self.applied();
        applied.wait_for(|a| *a >= index).await.map_err(|_| NodeError::Unavailable("shutting down".into()))?;
        Ok(index)
    }

    /// The revision applied on this node, as it changes.
    pub fn applied(&self) -> watch::Receiver<u64> {
        self.applied.clone()
    }

    /// Raft's metrics; `None` on an edge.
    fn metrics(&self) -> Option<RaftMetrics<NodeId, NodeInfo>> {
        self.raft().map(|r| r.metrics().borrow().clone())
    }

    /// The revision of the state this node serves.
    pub fn applied_revision(&self) -> u64 {
        *self.applied.borrow()
    }

    /// Role, term, leader, log positions, staleness and membership, in this
    /// crate's own types.
    pub fn status(&self) -> NodeStatus {
        let Some(m) = self.metrics() else { return self.edge_status() };
        let role = match m.state {
            ServerState::Leader => Role::Leader,
            ServerState::Follower => Role::Follower,
            ServerState::Candidate => Role::Candidate,
            ServerState::Learner => Role::Learner,
            ServerState::Shutdown => Role::Shutdown,
        };
        let membership = m.membership_config.membership();
        let members = members_of(&m);
        let last_log_index = m.last_log_index.unwrap_or(0);
        let lag = m
            .replication
            .as_ref()
            .map(|r| {
                r.iter().filter(|(id, _)| **id != self.id).map(|(id, l)| (*id, l.map(|l| last_log_index.saturating_sub(l.index)))).collect()
            })
            .unwrap_or_default();
        NodeStatus {
            id: self.id,
            role,
            term: m.current_term,
            leader: m.current_leader.map(|l| (l, membership.get_node(&l).cloned())),
            log: LogPositions {
                last: last_log_index,
                applied: self.applied_revision(),
                snapshot: m.snapshot.map_or(0, |l| l.index),
                purged: m.purged.map_or(0, |l| l.index),
            },
            staleness_ms: self.staleness_from(&m),
            members,
            lag,
            upstream: None,
            tree: self.followers.tree(self.id),
        }
    }

    fn edge_status(&self) -> NodeStatus {
        let (fresh, upstream, staleness_ms) = match self.edge() {
            Some(e) => (e.fresh(), e.upstream(), e.staleness_ms()),
            None => (Fresh::default(), None, None),
        };
        let applied = self.applied_revision();
        NodeStatus {
            id: self.id,
            role: Role::Edge,
            term: 0,
            leader: fresh.leader.map(|(id, info)| (id, Some(info))),
            log: LogPositions { last: applied, applied, snapshot: 0, purged: 0 },
            staleness_ms,
            members: fresh.members,
            lag: Vec::new(),
            upstream,
            tree: self.followers.tree(self.id),
        }
    }

    /// The leader and its addresses, when another node than this one leads
    /// (read from the metrics in place: this runs on every proposal).
    fn leader_elsewhere(&self) -> Option<(NodeId, NodeInfo)> {
        let Some(raft) = self.raft() else {
            return self.edge().and_then(|e| e.fresh().leader).filter(|(id, _)| *id != self.id);
        };
        let m = raft.metrics();
        let m = m.borrow();
        let id = m.current_leader.filter(|l| *l != self.id)?;
        m.membership_config.membership().get_node(&id).map(|info| (id, info.clone()))
    }

    /// Wait until every member (this node included) and every node of the
    /// relay tree below any of them that has reported in has applied
    /// `revision`, asking the members over the peer network (signed with
    /// the cluster secret, on the connections Raft uses) every
    /// `POLL_APPLIED_EVERY`; each answers for itself and the tree below it.
    /// An edge asks the members its upstream told it of. On timeout, the
    /// ids of the nodes that have not applied it.
    pub async fn wait_applied_everywhere(&self, revision: u64, timeout: Duration) -> Result<(), Vec<NodeId>> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut applied = self.applied();
        let here = tokio::time::timeout_at(deadline, applied.wait_for(|r| *r >= revision)).await.is_ok_and(|r| r.is_ok());
        if !here {
            return Err(vec![self.id]);
        }
        let ask = Ask { revision, tree: false };
        let mut pending = self.other_members();
        loop {
            let answers = self.ask_members(&pending, &ask).await;
            let lagging: Vec<Vec<NodeId>> = pending
                .iter()
                .zip(answers)
                .map(|(m, answer)| match answer {
                    Ok(r) if r.applied >= revision => r.laggards,
                    Ok(r) => [vec![m.id], r.laggards].concat(),
                    Err(_) => vec![m.id],
                })
                .collect();
            let below = self.followers.laggards(revision);
            let mut laggards: Vec<NodeId> = lagging.iter().flatten().copied().chain(below).collect();
            pending = pending.into_iter().zip(&lagging).filter(|(_, l)| !l.is_empty()).map(|(m, _)| m).collect();
            if laggards.is_empty() {
                return Ok(());
            }
            if tokio::time::Instant::now() + POLL_APPLIED_EVERY >= deadline {
                laggards.sort_unstable();
                laggards.dedup();
                return Err(laggards);
            }
            tokio::time::sleep(POLL_APPLIED_EVERY).await;
        }
    }

    /// Every node of the relay tree: the followers below this node and
    /// below each member (asked over the peer network, as
    /// `wait_applied_everywhere` does), each with the node that feeds it.
    pub async fn tree(&self) -> Vec<crate::TreeNode> {
        let answers = self.ask_members(&self.other_members(), &Ask { revision: 0, tree: true }).await;
        let mut tree = self.followers.tree(self.id);
        tree.extend(answers.into_iter().flat_map(|a| a.map(|r| r.tree).unwrap_or_default()));
        let mut seen = HashSet::new();
        tree.retain(|t| t.id != self.id && seen.insert(t.id));
        tree
    }

    /// The members but this node (on an edge: as its upstream told it).
    fn other_members(&self) -> Vec<Member> {
        self.status().members.into_iter().filter(|m| m.id != self.id).collect()
    }

    /// Ask `members`, all at once, over the signed peer connections, how
    /// far they and the trees below them are; their answers in order.
    async fn ask_members(&self, members: &[Member], ask: &Ask) -> Vec<Result<Reach, String>> {
        let asks = members.iter().map(|m| self.peers.applied(self.id, m.id, &m.info, &self.cluster, ask));
        futures::future::join_all(asks).await
    }

    pub(crate) fn note_leader_contact(&self) {
        self.leader_contact_ms.store(self.started.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    /// How long ago this node last heard from a leader: for the leader, since
    /// a quorum last acknowledged it; for others, since the leader's last
    /// append-entries or heartbeat. `None` if never.
    pub fn staleness_ms(&self) -> Option<u64> {
        match self.metrics() {
            Some(m) => self.staleness_from(&m),
            None => self.edge().and_then(EdgeShared::staleness_ms),
        }
    }

    fn staleness_from(&self, m: &RaftMetrics<NodeId, NodeInfo>) -> Option<u64> {
        if m.state == ServerState::Leader {
            return m.millis_since_quorum_ack;
        }
        match self.leader_contact_ms.load(Ordering::Relaxed) {
            u64::MAX => None,
            at => Some((self.started.elapsed().as_millis() as u64).saturating_sub(at)),
        }
    }

    /// Ready to announce its anycast route: a leader is known and this node
    /// heard from it (or, as leader, from a quorum) within `max_stale_ms`.
    /// DNS answers from the last state either way.
    pub fn ready(&self, max_stale_ms: u64) -> Result<(), String> {
        if let Some(why) = self.disk.why_full() {
            return Err(format!("disk full: {why}"));
        }
        if self.stats.installing() {
            return Err("installing a snapshot from the leader".into());
        }
        if let Some(edge) = self.edge() {
            if edge.upstream().is_none() {
                return Err("following no upstream".into());
            }
        } else if self.metrics().is_none_or(|m| m.current_leader.is_none()) {
            return Err("no known leader".into());
        }
        match self.staleness_ms() {
            Some(ms) if ms <= max_stale_ms => Ok(()),
            Some(ms) => Err(format!("last heard from a leader {ms} ms ago (max_stale_ms {max_stale_ms})")),
            None => Err("not yet heard from a leader".into()),
        }
    }

    /// Whether this node's membership includes it (as voter or learner).
    pub fn is_member(&self) -> bool {
        self.metrics().is_some_and(|m| m.membership_config.membership().get_node(&self.id).is_some())
    }

    /// Initialise a new cluster with `voters` unless this node already has
    /// Raft state (a restart needs no action).
    pub async fn initialize_if_new(&self, voters: BTreeMap<NodeId, NodeInfo>) -> Result<bool, NodeError> {
        let Some(raft) = self.raft() else { return Ok(false) };
        if raft.is_initialized().await.map_err(raft_err)? {
            return Ok(false);
        }
        match raft.initialize(voters).await {
            Ok(()) => Ok(true),
            // Another start of the same node got there first.
            Err(RaftError::APIError(openraft::error::InitializeError::NotAllowed(_))) => Ok(false),
            Err(e) => Err(raft_err(e)),
        }
    }

    /// Propose a command and wait until a quorum has committed it and the
    /// leader applied it. Forwarded to the leader when this node is not it.
    ///
    /// A leader that loses its office fails the writes it had in flight
    /// with "not the leader", even those already in its log, which the next
    /// leader may still commit. Retrying such a write is safe only because
    /// it carries a request id: one is made up here when the client sent
    /// none, and the write is retried (at the leader of the moment) for up
    /// to `WRITE_RETRY_FOR` while there is no leader or it changes. If it
    /// is still undecided then, the answer is `OutcomeUnknown` with the id.
    ///
    /// While this node's disk is full the write is refused (`DiskFull`)
    /// before anything is proposed, unless this node already holds the
    /// result of the same call under the same request id: a retry of a
    /// write that took effect is answered with its result, never refused.
    pub async fn write(&self, command: Command, guard: Guard) -> Result<Written, NodeError> {
        let began = Instant::now();
        let result = self.write_counted(command, guard).await;
        let outcome = match &result {
            Ok(Written { result: Ok(_), .. }) => WriteOutcome::Applied,
            Ok(Written { result: Err(_), .. }) => WriteOutcome::Refused,
            Err(_) => WriteOutcome::Failed,
        };
        // Latency of writes that were decided; failures have their own count.
        if !matches!(outcome, WriteOutcome::Failed) {
            self.stats.commit.observe(began.elapsed().as_secs_f64());
        }
        self.stats.write(outcome);
        result
    }

    async fn write_counted(&self, command: Command, mut guard: Guard) -> Result<Written, NodeError> {
        if guard.request_id.is_none() {
            let n = self.auto_ids.fetch_add(1, Ordering::Relaxed);
            guard.request_id = Some(format!("~{}.{}.{n:x}", self.id, self.boot_tag));
        }
        let request_id = guard.request_id.clone().unwrap_or_default();
        if let Err(full) = self.disk.check() {
            return match self.state().recorded(&request_id, &command) {
                Some((revision, result)) => Ok(Written { revision, result: result.map(Some) }),
                None => Err(full),
            };
        }
        let proposal = Proposal::Command(Box::new(command), guard);
        // The shared policy paces the retries; the deadline counts the
        // attempts as well as the pauses.
        let deadline = tokio::time::Instant::now() + WRITE_RETRY_FOR;
        let result = (|| self.propose(proposal.clone()))
            .retry(switchboard_proto::retry::policy())
            .sleep(tokio::time::sleep)
            .when(|e| matches!(e, NodeError::NotLeader { .. } | NodeError::Unavailable(_)) && tokio::time::Instant::now() < deadline)
            .notify(|e, _| tracing::debug!(error = %e, "retrying write"))
            .await;
        match result {
            Err(e @ NodeError::NotLeader { .. }) | Err(e @ NodeError::Unavailable(_)) => {
                let leader = match &e {
                    NodeError::NotLeader { leader } => leader.clone(),
                    _ => None,
                };
                Err(NodeError::OutcomeUnknown { request_id, cause: e.to_string(), leader })
            }
            other => other,
        }
    }

    /// Propose at the leader: a node that knows another node leads
    /// forwards the proposal there directly; otherwise it proposes here, and
    /// forwards once if that finds another leader after all.
    pub async fn propose(&self, proposal: Proposal) -> Result<Written, NodeError> {
        if let Some((id, info)) = self.leader_elsewhere() {
            tracing::debug!(leader = id, "forwarding proposal");
            self.stats.forwarded.fetch_add(1, Ordering::Relaxed);
            return self.peers.forward(self.id, id, &info, &self.cluster, &proposal).await;
        }
        match self.propose_local(proposal.clone()).await {
            Err(NodeError::NotLeader { leader: Some((id, info)) }) if id != self.id => {
                tracing::debug!(leader = id, "forwarding proposal");
                self.stats.forwarded.fetch_add(1, Ordering::Relaxed);
                self.peers.forward(self.id, id, &info, &self.cluster, &proposal).await
            }
            other => other,
        }
    }

    /// Propose on this node only; `NotLeader` when it is not the leader,
    /// `DiskFull` when its disk is. Commands go through the group-commit
    /// queue (see `batcher`).
    pub async fn propose_local(&self, proposal: Proposal) -> Result<Written, NodeError> {
        let Replication::Raft { raft, queue } = &self.replication else {
            return Err(NodeError::NotLeader { leader: self.leader_elsewhere() });
        };
        self.disk.check()?;
        let response = match proposal {
            Proposal::Command(command, guard) => {
                let (tx, rx) = oneshot::channel();
                queue.send((*command, guard, tx)).await.map_err(|_| NodeError::Unavailable("write queue closed".into()))?;
                return rx.await.map_err(|_| NodeError::Unavailable("write queue dropped the command".into()))?;
            }
            Proposal::AddLearner { id, info } => raft.add_learner(id, info, false).await,
            Proposal::Promote { id } => raft.change_membership(ChangeMembers::AddVoterIds(BTreeSet::from([id])), false).await,
            Proposal::Remove { id } => {
                let membership = raft.metrics().borrow().membership_config.membership().clone();
                if membership.voter_ids().any(|v| v == id) {
                    raft.change_membership(ChangeMembers::RemoveVoters(BTreeSet::from([id])), false).await
                } else if membership.get_node(&id).is_some() {
                    raft.change_membership(ChangeMembers::RemoveNodes(BTreeSet::from([id])), false).await
                } else {
                    return Err(NodeError::Membership(format!("node {id} is not a member")));
                }
            }
        };
        response.map(|resp| Written { revision: resp.log_id.index, result: Ok(None) }).map_err(write_error)
    }

    pub async fn shutdown(&self) {
        match &self.replication {
            Replication::Raft { raft, .. } => {
                if let Err(e) = raft.shutdown().await {
                    tracing::warn!(error = %e, "raft shutdown");
                }
            }
            Replication::Edge { follow, .. } => follow.abort(),
        }
    }
}
