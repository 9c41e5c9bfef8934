//! What a node tells about itself, in this crate's own types: role, term,
//! leader, log and applied positions, staleness and membership. Callers
//! (API, HTTP, the wait for `--wait everywhere`) read this, never openraft's
//! metrics.

use serde::{Deserialize, Serialize};

use crate::{NodeId, NodeInfo};

/// A node's part in consensus right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Role {
    Leader,
    Follower,
    Candidate,
    /// A non-voting member, or a node not yet in any membership.
    Learner,
    /// Not a Raft member: follows an upstream's change stream.
    Edge,
    /// Raft has stopped on this node.
    Shutdown,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Leader => "leader",
            Role::Follower => "follower",
            Role::Candidate => "candidate",
            Role::Learner => "learner",
            Role::Edge => "edge",
            Role::Shutdown => "shutdown",
        }
    }
}

/// One member of the cluster's membership.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    pub id: NodeId,
    pub info: NodeInfo,
    pub voter: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeStatus {
    pub id: NodeId,
    pub role: Role,
    pub term: u64,
    /// The leader this node knows of, with its addresses when the
    /// membership lists it.
    pub leader: Option<(NodeId, Option<NodeInfo>)>,
    pub log: LogPositions,
    /// Milliseconds since this node last heard from a leader (the leader:
    /// since a quorum last acknowledged it); `None` if never.
    pub staleness_ms: Option<u64>,
    /// Voters and learners, by id.
    pub members: Vec<Member>,
    /// On the leader only: how many entries each other member's log is
    /// behind the leader's (`None` for a member not yet replicated to).
    pub lag: Vec<(NodeId, Option<u64>)>,
    /// On an edge: the node it follows now (id, URL).
    pub upstream: Option<(NodeId, String)>,
    /// The relay tree below this node: who follows it, directly or
    /// through relays, and how far each is.
    pub tree: Vec<TreeNode>,
}

/// Where a node's log and state stand, as log indexes (0: none yet).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogPositions {
    /// The last entry in its log; the revision of the state it serves; the
    /// last entry in its latest snapshot; the last entry purged.
    pub last: u64,
    pub applied: u64,
    pub snapshot: u64,
    pub purged: u64,
}

/// One node of the relay tree below some node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TreeNode {
    pub id: NodeId,
    pub info: NodeInfo,
    /// The node that feeds it.
    pub upstream: NodeId,
    pub applied: u64,
    pub staleness_ms: Option<u64>,
}
