//! The client side of the Raft peer network over tonic: one HTTP/2 channel
//! per peer address, shared by every replication stream and forwarded
//! proposal to that peer and reconnected by tonic on failure (openraft backs
//! off between failed RPCs), and the cluster secret requests are signed
//! with. The server side is `peer_service`: the node uses this one, and that
//! one uses the node.
//!
//! Every request names the node id it is meant for and the cluster name; a
//! node refuses traffic for another id or cluster, so a misrouted address
//! (a recycled IP, a wrong config) cannot join two clusters' logs.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use openraft::error::{InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse, VoteRequest, VoteResponse,
};
use serde::de::DeserializeOwned;
use serde::Serialize;
use switchboard_storage::{decode, encode};
use tonic::transport::{Channel, Endpoint};

use crate::feed::{Ask, Reach};
use crate::peer_proto::raft_peer_client::RaftPeerClient;
use crate::peer_proto::PeerRequest;
use crate::write::{NodeError, Proposal, Written};
use crate::{NodeId, NodeInfo, TypeConfig};

/// Largest peer message, either way. Snapshot chunks and append batches are
/// sized well below it (see `RaftSettings`).
pub const PEER_MESSAGE_BYTES_MAX: usize = 64 * 1024 * 1024;
/// Time to establish a connection to a peer.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// Time a forwarded proposal may take at the leader.
const FORWARD_TIMEOUT: Duration = Duration::from_secs(30);

/// Time a member may take to say which revision it has applied.
const APPLIED_TIMEOUT: Duration = Duration::from_secs(1);

/// Shortest cluster secret accepted.
pub const CLUSTER_SECRET_LEN_MIN: usize = 16;

/// Peer message authentication with the cluster secret: every request
/// carries an HMAC-SHA256 of (from, to, cluster, payload), and a node with
/// a secret refuses requests without the right one. Without a secret,
/// nothing is signed or checked.
#[derive(Clone, Default)]
pub struct PeerAuth {
    key: Option<Arc<ring::hmac::Key>>,
}

impl std::fmt::Debug for PeerAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.key.is_some() { "PeerAuth(secret)" } else { "PeerAuth(none)" })
    }
}

impl PeerAuth {
    pub fn new(secret: Option<&[u8]>) -> PeerAuth {
        PeerAuth { key: secret.map(|s| Arc::new(ring::hmac::Key::new(ring::hmac::HMAC_SHA256, s))) }
    }

    /// The signed bytes: from, to, the cluster name (length first) and the payload.
    fn message(r: &PeerRequest) -> Vec<u8> {
        let mut m = Vec::with_capacity(24 + r.cluster.len() + r.payload.len());
        m.extend_from_slice(&r.from.to_be_bytes());
        m.extend_from_slice(&r.to.to_be_bytes());
        m.extend_from_slice(&(r.cluster.len() as u64).to_be_bytes());
        m.extend_from_slice(r.cluster.as_bytes());
        m.extend_from_slice(&r.payload);
        m
    }

    pub(crate) fn sign(&self, mut r: PeerRequest) -> PeerRequest {
        if let Some(key) = &self.key {
            r.mac = ring::hmac::sign(key, &Self::message(&r)).as_ref().to_vec();
        }
        r
    }

    pub(crate) fn verify(&self, r: &PeerRequest) -> Result<(), tonic::Status> {
        let Some(key) = &self.key else { return Ok(()) };
        // ring compares the tags in constant time.
        ring::hmac::verify(key, &Self::message(r), &r.mac).map_err(|_| {
            tonic::Status::unauthenticated(format!("peer message from node {} is not signed with this cluster's secret", r.from))
        })
    }
}

/// Channels to peers by address, so connections are reused across
/// replication sessions and forwarded proposals; and the cluster secret
/// every request is signed with.
#[derive(Debug, Clone, Default)]
pub struct PeerPool {
    channels: Arc<Mutex<HashMap<String, Channel>>>,
    auth: PeerAuth,
}

impl PeerPool {
    pub fn new(auth: PeerAuth) -> PeerPool {
        PeerPool { channels: Arc::default(), auth }
    }

    pub(crate) fn auth(&self) -> &PeerAuth {
        &self.auth
    }

    /// A client for `addr` (`host:port`), on a cached channel.
    fn client(&self, addr: &str) -> Result<RaftPeerClient<Channel>, String> {
        let channel = {
            let mut map = self.channels.lock().map_err(|_| "peer pool lock poisoned".to_string())?;
            match map.get(addr) {
                Some(c) => c.clone(),
                None => {
                    let endpoint =
                        Endpoint::from_shared(format!("http://{addr}")).map_err(|e| format!("bad peer address {addr:?}: {e}"))?;
                    let c = endpoint.connect_timeout(CONNECT_TIMEOUT).tcp_nodelay(true).connect_lazy();
                    map.insert(addr.to_string(), c.clone());
                    c
                }
            }
        };
        Ok(RaftPeerClient::new(channel).max_decoding_message_size(PEER_MESSAGE_BYTES_MAX).max_encoding_message_size(PEER_MESSAGE_BYTES_MAX))
    }

    /// Send a proposal to the leader `to` and return its result.
    pub(crate) async fn forward(
        &self,
        from: NodeId,
        to: NodeId,
        leader: &NodeInfo,
        cluster: &str,
        proposal: &Proposal,
    ) -> Result<Written, NodeError> {
        let mut client = self.client(&leader.peer).map_err(NodeError::Unavailable)?;
        let payload = encode("forwarded proposal", proposal).map_err(|e| NodeError::Raft(e.to_string()))?;
        let mut request =
            tonic::Request::new(self.auth.sign(PeerRequest { from, to, cluster: cluster.to_string(), payload, mac: Vec::new() }));
        request.set_timeout(FORWARD_TIMEOUT);
        let reply = client.forward(request).await.map_err(|s| match s.code() {
            // The leader could not be reached, so the proposal was not
            // delivered: the client may take it to the leader itself.
            tonic::Code::Unavailable => NodeError::NotLeader { leader: Some((to, leader.clone())) },
            _ => NodeError::Unavailable(format!("forwarding to leader {to} at {}: {}", leader.peer, s.message())),
        })?;
        decode::<Result<Written, NodeError>>("forward reply", &reply.into_inner().payload).map_err(|e| NodeError::Raft(e.to_string()))?
    }
}

impl PeerPool {
    /// Ask node `to` (at `info`) how far it and the tree below it are.
    pub(crate) async fn applied(&self, from: NodeId, to: NodeId, info: &NodeInfo, cluster: &str, ask: &Ask) -> Result<Reach, String> {
        let mut client = self.client(&info.peer)?;
        let payload = encode("applied request", ask).map_err(|e| e.to_string())?;
        let mut request =
            tonic::Request::new(self.auth.sign(PeerRequest { from, to, cluster: cluster.to_string(), payload, mac: Vec::new() }));
        request.set_timeout(APPLIED_TIMEOUT);
        let reply = client.applied(request).await.map_err(|s| format!("node {to} at {}: {}", info.peer, s.message()))?;
        decode::<Reach>("applied reply", &reply.into_inner().payload).map_err(|e| e.to_string())
    }
}

impl PeerPool {
    /// Hand a prober's report (a `health::Report`) to the leader `to` (at `info`).
    pub(crate) async fn health(
        &self,
        from: NodeId,
        to: NodeId,
        info: &NodeInfo,
        cluster: &str,
        report: &impl Serialize,
    ) -> Result<(), String> {
        let mut client = self.client(&info.peer)?;
        let payload = encode("health report", report).map_err(|e| e.to_string())?;
        let mut request =
            tonic::Request::new(self.auth.sign(PeerRequest { from, to, cluster: cluster.to_string(), payload, mac: Vec::new() }));
        request.set_timeout(APPLIED_TIMEOUT);
        let reply = client.health(request).await.map_err(|s| format!("node {to} at {}: {}", info.peer, s.message()))?;
        decode::<Result<(), String>>("health reply", &reply.into_inner().payload).map_err(|e| e.to_string())?
    }
}

/// Creates peer clients for openraft.
#[derive(Debug, Clone)]
pub struct PeerNetwork {
    id: NodeId,
    cluster: String,
    pool: PeerPool,
}

impl PeerNetwork {
    pub fn new(id: NodeId, cluster: String, pool: PeerPool) -> PeerNetwork {
        PeerNetwork { id, cluster, pool }
    }
}

impl RaftNetworkFactory<TypeConfig> for PeerNetwork {
    type Network = PeerClient;

    async fn new_client(&mut self, target: NodeId, node: &NodeInfo) -> PeerClient {
        PeerClient {
            from: self.id,
            target,
            node: node.clone(),
            cluster: self.cluster.clone(),
            client: self.pool.client(&node.peer),
            auth: self.pool.auth.clone(),
            overrun_warned: Arc::default(),
        }
    }
}

/// One target node.
pub struct PeerClient {
    from: NodeId,
    target: NodeId,
    node: NodeInfo,
    cluster: String,
    /// `Err` when the node's peer address is not a valid URI.
    client: Result<RaftPeerClient<Channel>, String>,
    auth: PeerAuth,
    /// When an overrun was last logged (see `Overrun`).
    overrun_warned: Arc<Mutex<Option<Instant>>>,
}

/// At most one overrun warning per peer this often.
const OVERRUN_WARN_EVERY: Duration = Duration::from_secs(10);

/// Watches one RPC: dropped unanswered at openraft's deadline, it logs a
/// warning. openraft 0.9 gives every append-entries exactly
/// `raft.heartbeat_ms`, so a peer whose round trip (plus its disk sync) is
/// longer never acknowledges anything: replication to it stalls, silently
/// but for this.
struct Overrun {
    target: NodeId,
    addr: String,
    call: &'static str,
    deadline: Duration,
    started: Instant,
    warned: Arc<Mutex<Option<Instant>>>,
    answered: bool,
}

impl Drop for Overrun {
    fn drop(&mut self) {
        // Dropped early: a replication stream was cancelled, not a deadline.
        if self.answered || self.started.elapsed() < self.deadline * 9 / 10 {
            return;
        }
        let Ok(mut last) = self.warned.lock() else { return };
        if last.is_some_and(|t| t.elapsed() < OVERRUN_WARN_EVERY) {
            return;
        }
        *last = Some(Instant::now());
        tracing::warn!(
            peer = self.target,
            addr = %self.addr,
            call = self.call,
            deadline_ms = self.deadline.as_millis() as u64,
            "peer did not answer within the deadline (raft.heartbeat_ms for append-entries): it is down, unreachable or \
             too far; if the round trip to it is longer than that, nothing replicates to it: raise raft.heartbeat_ms \
             and the election timeouts on every node"
        );
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct PeerFailure(String);

enum Call {
    Append,
    Vote,
    Snapshot,
}

impl PeerClient {
    async fn call<Req, Resp, E>(
        &mut self,
        call: Call,
        req: &Req,
        option: &RPCOption,
    ) -> Result<Resp, RPCError<NodeId, NodeInfo, RaftError<NodeId, E>>>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let client = match &mut self.client {
            Ok(c) => c,
            Err(e) => {
                return Err(RPCError::Unreachable(Unreachable::new(&PeerFailure(format!("bad peer address {:?}: {e}", self.node.peer)))))
            }
        };
        let payload = encode("peer request", req).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        let request = PeerRequest { from: self.from, to: self.target, cluster: self.cluster.clone(), payload, mac: Vec::new() };
        let mut request = tonic::Request::new(self.auth.sign(request));
        // Honour openraft's deadline on the wire too, so the server can give up.
        request.set_timeout(option.hard_ttl());
        let mut overrun = Overrun {
            target: self.target,
            addr: self.node.peer.clone(),
            call: match call {
                Call::Append => "append-entries",
                Call::Vote => "vote",
                Call::Snapshot => "install-snapshot",
            },
            deadline: option.hard_ttl(),
            started: Instant::now(),
            warned: self.overrun_warned.clone(),
            answered: false,
        };
        let reply = match call {
            Call::Append => client.append_entries(request).await,
            Call::Vote => client.vote(request).await,
            Call::Snapshot => client.install_snapshot(request).await,
        };
        // A deadline the server enforced (grpc-timeout) is an overrun too.
        overrun.answered = !matches!(&reply, Err(s) if matches!(s.code(), tonic::Code::DeadlineExceeded | tonic::Code::Cancelled));
        let reply = reply.map_err(|status| match status.code() {
            tonic::Code::Unavailable | tonic::Code::Unknown => RPCError::Unreachable(Unreachable::new(&PeerFailure(status.to_string()))),
            _ => RPCError::Network(NetworkError::new(&PeerFailure(status.to_string()))),
        })?;
        let result: Result<Resp, RaftError<NodeId, E>> =
            decode("peer reply", &reply.into_inner().payload).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        result.map_err(|e| RPCError::RemoteError(RemoteError::new_with_node(self.target, self.node.clone(), e)))
    }
}

impl RaftNetwork<TypeConfig> for PeerClient {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, NodeInfo, RaftError<NodeId>>> {
        self.call(Call::Append, &rpc, &option).await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<InstallSnapshotResponse<NodeId>, RPCError<NodeId, NodeInfo, RaftError<NodeId, InstallSnapshotError>>> {
        self.call(Call::Snapshot, &rpc, &option).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, NodeInfo, RaftError<NodeId>>> {
        self.call(Call::Vote, &rpc, &option).await
    }
}
