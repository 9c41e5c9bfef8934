//! The server side of the Raft peer network: checks who a request is for
//! and that it is signed, then hands it to the local node (`Raft`, or a
//! proposal forwarded to this leader).
//!
//! Every request names the node id it is meant for and the cluster name; a
//! node refuses traffic for another id or cluster, so a misrouted address
//! (a recycled IP, a wrong config) cannot join two clusters' logs.

use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use openraft::raft::{AppendEntriesRequest, InstallSnapshotRequest, VoteRequest};
use serde::de::DeserializeOwned;
use serde::Serialize;
use switchboard_storage::{decode, encode};
use tokio::sync::mpsc;

use crate::feed::{Down, Read, Session, Up, FEED_GATHER, FEED_HEARTBEAT, FEED_MESSAGE_BYTES, FEED_QUEUE};
use crate::network::PEER_MESSAGE_BYTES_MAX;
use crate::peer_proto::raft_peer_server::RaftPeer;
use crate::peer_proto::{PeerReply, PeerRequest};
use crate::write::Proposal;
use crate::{AbortOnDrop, Node, NodeId, Raft, TypeConfig};

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

    /// Raft itself: refused on an edge, which is no member.
    fn raft(&self) -> Result<&Raft, tonic::Status> {
        self.node.raft().ok_or_else(|| tonic::Status::failed_precondition(format!("node {} is an edge, not a Raft member", self.id)))
    }

    /// A message of a follow stream: signed, of this cluster, addressed to
    /// this node or to whoever serves the URL (0).
    fn check_feed(&self, req: &PeerRequest) -> Result<Up, tonic::Status> {
        self.node.peer_auth().verify(req)?;
        if req.cluster != self.cluster {
            return Err(tonic::Status::failed_precondition(format!(
                "this node belongs to cluster {:?}, not {:?}",
                self.cluster, req.cluster
            )));
        }
        if req.to != 0 && req.to != self.id {
            return Err(tonic::Status::failed_precondition(format!("this is node {}, not node {}", self.id, req.to)));
        }
        decode("feed message", &req.payload).map_err(|e| tonic::Status::invalid_argument(e.to_string()))
    }
}

impl PeerService {
    fn clone_ref(&self) -> PeerService {
        PeerService { id: self.id, cluster: self.cluster.clone(), node: self.node.clone() }
    }
}

/// Read a follower's progress reports into its session until its stream ends.
async fn take_reports(service: PeerService, session: Session, mut incoming: tonic::Streaming<PeerRequest>) {
    while let Ok(Some(message)) = incoming.message().await {
        match service.check_feed(&message) {
            Ok(Up::Progress(progress)) => session.report(progress),
            Ok(Up::Follow { .. }) => return,
            Err(e) => {
                tracing::warn!(follower = message.from, error = %e.message(), "refused a follower's report");
                return;
            }
        }
    }
}

/// Send a follower what it lacks after `sent`: entries from the tail, or
/// the state when the tail no longer reaches back that far, then each
/// entry as it applies, with a heartbeat every `FEED_HEARTBEAT`. Ends when
/// the follower goes (its stream or its reports).
async fn feed(
    node: Arc<Node>,
    to: NodeId,
    mut sent: u64,
    tx: mpsc::Sender<Result<PeerRequest, tonic::Status>>,
    reports: tokio::task::JoinHandle<()>,
) {
    let reports = AbortOnDrop(reports);
    let feed = node.feed();
    let mut last = feed.subscribe();
    let mut beat_at = Instant::now();
    // At most one message of entries per `FEED_GATHER`: an entry that
    // applies sooner after the last message waits for the rest of it.
    let mut entries_at = Instant::now();
    let send = |down: &Down| {
        let payload = encode("feed message", down).map_err(|e| tonic::Status::internal(e.to_string()))?;
        Ok(node.peer_auth().sign(PeerRequest { from: node.id(), to, cluster: node.cluster().to_string(), payload, mac: Vec::new() }))
    };
    loop {
        if reports.0.is_finished() {
            return;
        }
        if Instant::now() >= beat_at {
            beat_at = Instant::now() + FEED_HEARTBEAT;
            if tx.send(send(&Down::Heartbeat(node.fresh()))).await.is_err() {
                return;
            }
        }
        last.borrow_and_update();
        match feed.read(sent + 1) {
            Read::Entries(entries) => {
                entries_at = Instant::now() + FEED_GATHER;
                sent = entries.last().map_or(sent, |e| e.revision);
                let bytes: usize = entries.iter().map(|e| e.data.len()).sum();
                node.stats.feed_entries.fetch_add(entries.len() as u64, Ordering::Relaxed);
                node.stats.feed_bytes.fetch_add(bytes as u64, Ordering::Relaxed);
                let down = Down::Entries(entries.into_iter().map(|e| (e.revision, e.data.to_vec())).collect());
                if tx.send(send(&down)).await.is_err() {
                    return;
                }
            }
            Read::Gone => match send_state(&node, &tx, &send).await {
                Some(revision) => sent = revision,
                None => return,
            },
            Read::Wait => {
                tokio::select! {
                    _ = last.changed() => {
                        // Under load, let the entries applied meanwhile
                        // join this one: a follower applies, writes and
                        // reports once per message, not once per entry.
                        tokio::time::sleep_until(entries_at.into()).await;
                    }
                    _ = tokio::time::sleep_until(beat_at.into()) => {}
                }
            }
        }
    }
}

/// Stream the state this node serves now, in chunks of about
/// `FEED_MESSAGE_BYTES` encoded on a blocking thread two chunks ahead (so
/// a follower's snapshot costs this node a few MB, not a copy of the
/// state); its revision, or `None` when the follower went.
async fn send_state(
    node: &Node,
    tx: &mpsc::Sender<Result<PeerRequest, tonic::Status>>,
    send: &impl Fn(&Down) -> Result<PeerRequest, tonic::Status>,
) -> Option<u64> {
    let state = node.state();
    let (revision, marks) = (state.revision(), state.marks());
    tracing::info!(revision, "sending a follower the state");
    let (chunks_tx, mut chunks) = mpsc::channel::<Result<Vec<Vec<u8>>, String>>(2);
    tokio::task::spawn_blocking(move || {
        let mut chunk = Vec::new();
        let mut bytes = 0;
        for v in state.values() {
            match encode(v.kind().name(), &v) {
                Ok(b) => {
                    bytes += b.len();
                    chunk.push(b);
                }
                Err(e) => {
                    let _ = chunks_tx.blocking_send(Err(e.to_string()));
                    return;
                }
            }
            if bytes >= FEED_MESSAGE_BYTES {
                bytes = 0;
                if chunks_tx.blocking_send(Ok(std::mem::take(&mut chunk))).is_err() {
                    return;
                }
            }
        }
        let _ = chunks_tx.blocking_send(Ok(chunk));
    });
    let mut pending = chunks.recv().await?;
    loop {
        let next = chunks.recv().await;
        let values = match pending {
            Ok(values) => values,
            Err(e) => {
                let _ = tx.send(Err(tonic::Status::internal(format!("encoding the state: {e}")))).await;
                return None;
            }
        };
        let bytes: usize = values.iter().map(Vec::len).sum();
        node.stats.feed_bytes.fetch_add(bytes as u64, Ordering::Relaxed);
        let down = Down::Snapshot { revision, marks, values, last: next.is_none() };
        tx.send(send(&down)).await.ok()?;
        match next {
            Some(n) => pending = n,
            None => {
                node.stats.feed_states.fetch_add(1, Ordering::Relaxed);
                return Some(revision);
            }
        }
    }
}

fn reply<T: Serialize>(result: &T) -> Result<tonic::Response<PeerReply>, tonic::Status> {
    let payload = encode("peer reply", result).map_err(|e| tonic::Status::internal(e.to_string()))?;
    Ok(tonic::Response::new(PeerReply { payload }))
}

type FeedStream = Pin<Box<dyn futures::Stream<Item = Result<PeerRequest, tonic::Status>> + Send>>;

#[tonic::async_trait]
impl RaftPeer for PeerService {
    type FollowStream = FeedStream;

    async fn follow(&self, req: tonic::Request<tonic::Streaming<PeerRequest>>) -> Result<tonic::Response<FeedStream>, tonic::Status> {
        let mut incoming = req.into_inner();
        let first = incoming.message().await?.ok_or_else(|| tonic::Status::invalid_argument("the stream ended before a follow request"))?;
        let Up::Follow { after, info } = self.check_feed(&first)? else {
            return Err(tonic::Status::invalid_argument("a follow stream begins with a follow request"));
        };
        let follower = first.from;
        tracing::info!(follower, after, api = %info.api, "feeding a follower");
        let session = self.node.followers().join(follower, info, after);
        let (tx, rx) = mpsc::channel(FEED_QUEUE);
        let reports = tokio::spawn(take_reports(self.clone_ref(), session, incoming));
        tokio::spawn(feed(self.node.clone(), follower, after, tx, reports));
        Ok(tonic::Response::new(Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx))))
    }

    async fn append_entries(&self, req: tonic::Request<PeerRequest>) -> Result<tonic::Response<PeerReply>, tonic::Status> {
        let rpc: AppendEntriesRequest<TypeConfig> = self.check(req)?;
        let result = self.raft()?.append_entries(rpc).await;
        // Staleness is time since the leader last reached us: any
        // append-entries it sent that we accepted, heartbeats included.
        if matches!(&result, Ok(r) if r.is_success()) {
            self.node.note_leader_contact();
        }
        reply(&result)
    }

    async fn vote(&self, req: tonic::Request<PeerRequest>) -> Result<tonic::Response<PeerReply>, tonic::Status> {
        let rpc: VoteRequest<NodeId> = self.check(req)?;
        reply(&self.raft()?.vote(rpc).await)
    }

    async fn install_snapshot(&self, req: tonic::Request<PeerRequest>) -> Result<tonic::Response<PeerReply>, tonic::Status> {
        let rpc: InstallSnapshotRequest<TypeConfig> = self.check(req)?;
        let result = self.raft()?.install_snapshot(rpc).await;
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
        let ask: crate::feed::Ask = self.check(req)?;
        reply(&self.node.reach(ask))
    }

    async fn health(&self, req: tonic::Request<PeerRequest>) -> Result<tonic::Response<PeerReply>, tonic::Status> {
        let from = req.get_ref().from;
        let report: crate::health::Report = self.check(req)?;
        reply(&self.node.take_health_report(from, report))
    }
}
