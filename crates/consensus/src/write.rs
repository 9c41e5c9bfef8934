//! What the write path hands between its parts: a proposal (to the leader,
//! maybe forwarded over the peer network), its result, and its errors. Its
//! own module, so the node, the peer client and service, and the leader's
//! jobs all use these without depending on each other.

use serde::{Deserialize, Serialize};
use switchboard_domain::{Command, CommandError, Guard, Outcome};
use tokio::sync::oneshot;

use crate::{NodeId, NodeInfo};

/// Errors of the write path, split into what a client may retry elsewhere
/// and what it may not. Serialisable: a forwarded proposal returns it.
#[derive(Debug, Clone, Serialize, Deserialize, thiserror::Error)]
#[non_exhaustive]
pub enum NodeError {
    /// This node is not the leader; `leader` is who is, when known.
    #[error("not the leader{}", .leader.as_ref().map(|(id, n)| format!(" (leader is node {id} at {})", n.api)).unwrap_or_default())]
    NotLeader { leader: Option<(NodeId, NodeInfo)> },
    /// Consensus cannot make progress now (no quorum, shutting down, leader unreachable).
    #[error("consensus unavailable: {0}")]
    Unavailable(String),
    /// A membership change that cannot be made (unknown node, change in progress).
    #[error("membership: {0}")]
    Membership(String),
    #[error("storage: {0}")]
    Storage(String),
    #[error("raft: {0}")]
    Raft(String),
    // Variants below were added later: appended, so a forwarded error
    // (bincode, by variant index) reads the same on nodes of either build.
    /// The data dir of the node that would write is full: nothing was
    /// proposed. The message names the node and the dir.
    #[error("{0}")]
    DiskFull(String),
    /// The write was proposed but its fate is not known here (the leader
    /// changed or could not be reached while it was in flight): it may yet
    /// commit. Retrying with the same request id is safe and tells;
    /// `leader` is who leads, when known (a client may retry there).
    #[error("outcome unknown: {cause}; the write may have taken effect: retry it with request id {request_id:?} to learn its result")]
    OutcomeUnknown { request_id: String, cause: String, leader: Option<(NodeId, NodeInfo)> },
}

impl From<switchboard_storage::StorageError> for NodeError {
    fn from(e: switchboard_storage::StorageError) -> Self {
        NodeError::Storage(e.to_string())
    }
}

/// What the leader is asked to propose.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Proposal {
    /// A command, with the client's compare-and-set and request id (boxed:
    /// a zone spec is far larger than the other proposals).
    Command(Box<Command>, Guard),
    /// Add (or update the addresses of) a non-voting member.
    AddLearner { id: NodeId, info: NodeInfo },
    /// Make a learner a voter.
    Promote { id: NodeId },
    /// Remove a voter or learner from the membership.
    Remove { id: NodeId },
}

/// A committed and applied write.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Written {
    /// Log index of the write.
    pub revision: u64,
    /// What applying it did; `Err` when the command was refused (nothing
    /// changed). Membership changes have no outcome.
    pub result: Result<Option<Outcome>, CommandError>,
}

/// Commands waiting for the leader to propose them, each with its reply.
pub(crate) type Queued = (Command, Guard, oneshot::Sender<Result<Written, NodeError>>);
