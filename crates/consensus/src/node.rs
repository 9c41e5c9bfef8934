//! A running Raft node: openraft wired to the RocksDB log and state machine
//! and the peer network, plus the write path used by the API.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use openraft::error::{ClientWriteError, RaftError};
use openraft::{Config, RaftMetrics, SnapshotPolicy};
use switchboard_domain::{Command, CommandError, Envelope, Outcome, State};
use switchboard_storage::Store;
use tokio::sync::watch;

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
}

impl Default for RaftSettings {
    fn default() -> Self {
        RaftSettings {
            cluster_name: "switchboard".into(),
            heartbeat_ms: 100,
            election_timeout_min_ms: 500,
            election_timeout_max_ms: 1000,
            snapshot_every_entries: 10_000,
            keep_entries_after_snapshot: 1_000,
            // openraft's 200 ms default is far too short for a large state.
            install_snapshot_timeout_ms: 30_000,
        }
    }
}

/// Errors of the write path, split into what a client may retry elsewhere
/// and what it may not.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NodeError {
    /// This node is not the leader; `leader` is who is, when known.
    #[error("not the leader{}", .leader.as_ref().map(|(id, n)| format!(" (leader is node {id} at {})", n.api)).unwrap_or_default())]
    NotLeader { leader: Option<(NodeId, NodeInfo)> },
    /// Consensus cannot make progress now (no quorum, shutting down).
    #[error("consensus unavailable: {0}")]
    Unavailable(String),
    #[error("storage: {0}")]
    Storage(#[from] switchboard_storage::StorageError),
    #[error("raft: {0}")]
    Raft(String),
}

/// A committed and applied write.
#[derive(Debug, Clone)]
pub struct Written {
    /// Log index of the write.
    pub revision: u64,
    /// What applying it did; `Err` when the command was refused (nothing changed).
    pub result: Result<Outcome, CommandError>,
}

pub struct Node {
    id: NodeId,
    raft: Raft,
    published: Published,
    applied: watch::Receiver<u64>,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node").field("id", &self.id).finish()
    }
}

impl Node {
    /// Open the state from `store`, publish it, and start Raft.
    pub async fn start(id: NodeId, settings: &RaftSettings, store: Store) -> Result<Node, NodeError> {
        let (sm, published, applied) = StateMachine::open(store.clone())?;
        let config = Config {
            cluster_name: settings.cluster_name.clone(),
            heartbeat_interval: settings.heartbeat_ms,
            election_timeout_min: settings.election_timeout_min_ms,
            election_timeout_max: settings.election_timeout_max_ms,
            install_snapshot_timeout: settings.install_snapshot_timeout_ms,
            snapshot_policy: SnapshotPolicy::LogsSinceLast(settings.snapshot_every_entries),
            max_in_snapshot_log_to_keep: settings.keep_entries_after_snapshot,
            // Chunks well below the peer message limit.
            snapshot_max_chunk_size: 4 * 1024 * 1024,
            ..Config::default()
        };
        let config = Arc::new(config.validate().map_err(|e| NodeError::Raft(e.to_string()))?);
        let network = PeerNetwork::new(id, settings.cluster_name.clone());
        let raft = Raft::new(id, config, network, LogStore::new(store), sm).await.map_err(|e| NodeError::Raft(e.to_string()))?;
        Ok(Node { id, raft, published, applied })
    }

    pub fn id(&self) -> NodeId {
        self.id
    }

    pub fn raft(&self) -> &Raft {
        &self.raft
    }

    /// The state the query path serves, shared with the DNS front end.
    pub fn published(&self) -> Published {
        self.published.clone()
    }

    /// The currently applied state.
    pub fn state(&self) -> Arc<State> {
        self.published.load_full()
    }

    /// The revision applied on this node, as it changes.
    pub fn applied(&self) -> watch::Receiver<u64> {
        self.applied.clone()
    }

    pub fn metrics(&self) -> RaftMetrics<NodeId, NodeInfo> {
        self.raft.metrics().borrow().clone()
    }

    /// Initialise a new cluster with `voters` unless this node already has
    /// Raft state (a restart needs no action).
    pub async fn initialize_if_new(&self, voters: BTreeMap<NodeId, NodeInfo>) -> Result<bool, NodeError> {
        if self.raft.is_initialized().await.map_err(|e| NodeError::Raft(e.to_string()))? {
            return Ok(false);
        }
        match self.raft.initialize(voters).await {
            Ok(()) => Ok(true),
            // Another start of the same node got there first.
            Err(RaftError::APIError(openraft::error::InitializeError::NotAllowed(_))) => Ok(false),
            Err(e) => Err(NodeError::Raft(e.to_string())),
        }
    }

    /// Propose a command, stamped with this (leader) node's clock, and wait
    /// until it is committed by a quorum and applied here.
    pub async fn write(&self, command: Command) -> Result<Written, NodeError> {
        let at_ms = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0);
        match self.raft.client_write(Envelope { at_ms, command }).await {
            Ok(resp) => {
                let result = resp.data.outcome.ok_or_else(|| NodeError::Raft("a command entry produced no outcome".into()))?;
                Ok(Written { revision: resp.log_id.index, result })
            }
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => {
                let leader = f.leader_id.zip(f.leader_node);
                Err(NodeError::NotLeader { leader })
            }
            Err(RaftError::APIError(e)) => Err(NodeError::Raft(e.to_string())),
            Err(RaftError::Fatal(e)) => Err(NodeError::Unavailable(e.to_string())),
        }
    }

    pub async fn shutdown(&self) {
        if let Err(e) = self.raft.shutdown().await {
            tracing::warn!(error = %e, "raft shutdown");
        }
    }
}
