//! The server side of the Raft peer network: checks who a request is for
//! and that it is signed, then hands it to the local node (`Raft`, or a
//! proposal forwarded to this leader).
//!
//! Every request names the node id it is meant for and the cluster name; a
//! node refuses traffic for another id or cluster, so a misrouted address
//! (a recycled IP, a wrong config) cannot join two clusters' logs.

use std::sync::Arc;

use openraft::raft::{AppendEntriesRequest, InstallSnapshotRequest, VoteRequest};
use serde::de::DeserializeOwned;
use serde::Serialize;
use switchboard_storage::{decode, encode};

use crate::network::PEER_MESSAGE_BYTES_MAX;
use crate::peer_proto::raft_peer_server::RaftPeer;
use crate::peer_proto::{PeerReply, PeerRequest};
use crate::write::Proposal;
use crate::{Node, NodeId, TypeConfig};

/// The server side of the peer protocol.
pub struct PeerService {
    id: NodeId,
    cluster: String,
    node: Arc<Node>,
}

impl PeerService {
    pub fn new(cluster: String, node: Arc<Node>) -> PeerService {
        PeerService { id: node.id(), cluster, node }
    }

    /// The tonic service, with the message limits set.
    pub fn into_server(self) -> crate::peer_proto::raft_peer_server::RaftPeerServer<PeerService> {
        crate::peer_proto::raft_peer_server::RaftPeerServer::new(self)
            .max_decoding_message_size(PEER_MESSAGE_BYTES_MAX)
            .max_encoding_message_size(PEER_MESSAGE_BYTES_MAX)
    }

    fn check<T: DeserializeOwned>(&self, req: tonic::Request<PeerRequest>) -> Result<T, tonic::Status> {
        let req = req.into_inner();
        self.node.peer_auth().verify(&req)?;
        if req.to != self.id {
            return Err(tonic::Status::failed_precondition(format!(
                "this is node {}, not node {} (from node {})",
                self.id, req.to, req.from
            )));
        }
        if req.cluster != self.cluster {
            return Err(tonic::Status::failed_precondition(format!(
                "this node belongs to cluster {:?}, not {:?}",
                self.cluster, req.cluster
            )));
        }
        decode("peer request", &req.payload).map_err(|e| tonic::Status::invalid_argument(e.to_string()))
    }
}

fn reply<T: Serialize>(result: &T) -> Result<tonic::Response<PeerReply>, tonic::Status> {
    let payload = encode("peer reply", result).map_err(|e| tonic::Status::internal(e.to_string()))?;
    Ok(tonic::Response::new(PeerReply { payload }))
}

#[tonic::async_trait]
impl RaftPeer for PeerService {
    async fn append_entries(&self, req: tonic::Request<PeerRequest>) -> Result<tonic::Response<PeerReply>, tonic::Status> {
        let rpc: AppendEntriesRequest<TypeConfig> = self.check(req)?;
        let result = self.node.raft().append_entries(rpc).await;
        // Staleness is time since the leader last reached us: any
        // append-entries it sent that we accepted, heartbeats included.
        if matches!(&result, Ok(r) if r.is_success()) {
            self.node.note_leader_contact();
        }
        reply(&result)
    }

    async fn vote(&self, req: tonic::Request<PeerRequest>) -> Result<tonic::Response<PeerReply>, tonic::Status> {
        let rpc: VoteRequest<NodeId> = self.check(req)?;
        reply(&self.node.raft().vote(rpc).await)
    }

    async fn install_snapshot(&self, req: tonic::Request<PeerRequest>) -> Result<tonic::Response<PeerReply>, tonic::Status> {
        let rpc: InstallSnapshotRequest<TypeConfig> = self.check(req)?;
        let result = self.node.raft().install_snapshot(rpc).await;
        if result.is_ok() {
            self.node.note_leader_contact();
        }
        reply(&result)
    }

    async fn forward(&self, req: tonic::Request<PeerRequest>) -> Result<tonic::Response<PeerReply>, tonic::Status> {
        let proposal: Proposal = self.check(req)?;
        // Propose here only: a proposal is forwarded at most once, so two
        // nodes that each think the other leads cannot bounce it forever.
        reply(&self.node.propose_local(proposal).await)
    }

    async fn applied(&self, req: tonic::Request<PeerRequest>) -> Result<tonic::Response<PeerReply>, tonic::Status> {
        let () = self.check(req)?;
        reply(&self.node.applied_revision())
    }
}
