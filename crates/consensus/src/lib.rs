//! Consensus for Switchboard: openraft's type configuration, the log and
//! state machine stored in RocksDB, and the peer network over tonic.
//!
//! The state machine publishes an immutable `State` after every applied
//! batch through an `ArcSwap` (`Published`); the DNS front end and API reads
//! load it without locks and never wait for consensus.

// openraft's trait signatures fix `StorageError` (over 200 bytes) as the error
// type; our helpers return what the traits must.
#![allow(clippy::result_large_err)]

mod disk;
mod dnssec;
mod edge;
mod feed;
mod health;
mod jobs;
mod log_store;
mod metrics;
mod network;
mod node;
mod peer_service;
mod state_machine;
mod stats;
mod status;
mod write;

/// The generated peer protocol (`proto/switchboard/raft/v1`, from the `proto` crate).
pub use switchboard_proto::peer as peer_proto;

use std::io::Cursor;
use std::sync::Arc;

use arc_swap::ArcSwap;
use serde::{Deserialize, Serialize};
use switchboard_domain::{CommandError, Envelope, Outcome, State};

pub use disk::Disk;
pub use feed::{FEED_HEARTBEAT, FEED_SILENCE_MAX};
pub use log_store::LogStore;
pub use metrics::NodeMetrics;
pub use network::{PeerAuth, PeerNetwork, PeerPool, CLUSTER_SECRET_LEN_MIN};
pub use node::{Node, RaftSettings};
pub use peer_service::PeerService;
pub use state_machine::StateMachine;
pub use status::{LogPositions, Member, NodeStatus, Role, TreeNode};
pub use write::{NodeError, Proposal, Written};

/// Where a node can be reached.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeInfo {
    /// Peer (Raft) address, `host:port`.
    pub peer: String,
    /// Public gRPC API address, `host:port`.
    pub api: String,
}

impl std::fmt::Display for NodeInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "peer={} api={}", self.peer, self.api)
    }
}

/// The application data of one log entry: the commands the leader gathered
/// while earlier entries were in flight (group commit), applied in order.
pub type Batch = Vec<Envelope>;

/// The result of applying one log entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Response {
    /// The log index of the entry: the revision of every write in it.
    pub revision: u64,
    /// One per command of the batch, in order; empty for entries that carry
    /// no command (blank, membership).
    pub outcomes: Vec<Result<Outcome, CommandError>>,
}

pub type NodeId = u64;

openraft::declare_raft_types!(
    /// Switchboard's Raft types: batches of commands, responses with revisions.
    pub TypeConfig:
        D = Batch,
        R = Response,
        NodeId = NodeId,
        Node = NodeInfo,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = openraft::TokioRuntime,
);

pub(crate) type Raft = openraft::Raft<TypeConfig>;

/// The state the query path reads: swapped whole after each applied batch.
pub type Published = Arc<ArcSwap<State>>;

/// A background task that ends with its owner: aborted when dropped.
pub(crate) struct AbortOnDrop(pub tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Map any displayable error into openraft's storage error for `subject`.
fn io_err(
    subject: openraft::ErrorSubject<NodeId>,
    verb: openraft::ErrorVerb,
    e: &(impl std::error::Error + 'static),
) -> openraft::StorageError<NodeId> {
    openraft::StorageIOError::new(subject, verb, openraft::AnyError::new(e)).into()
}
