//! An edge: a node that is not a Raft member and follows the applied change
//! stream of an upstream (a voter, a learner or another edge) instead,
//! serving DNS from its own state as every node does, and feeding the
//! followers below it in turn.
//!
//! It applies entries with the same `State::apply` as the members, in
//! revision order, refusing a gap or a revision twice, so at one revision
//! it holds exactly the state a voter holds. It persists what it applied
//! (the state keys and the change history, as a state machine does) but
//! syncs nothing per entry: what committed can always be fetched again, so
//! a crash loses at most a tail it catches up on; only a replaced state
//! (a snapshot from upstream) is synced, in one batch.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use switchboard_domain::{State, Value};
use switchboard_storage::keys::KEY_EDGE;
use switchboard_storage::{decode, encode, StorageError, Store};
use tokio::sync::{mpsc, watch};
use tonic::transport::Endpoint;

use crate::disk::Disk;
use crate::feed::{self, Down, Feed, FeedEntry, Followers, Fresh, Progress, Up, FEED_QUEUE, FEED_SILENCE_MAX};
use crate::network::{PeerAuth, PEER_MESSAGE_BYTES_MAX};
use crate::peer_proto::raft_peer_client::RaftPeerClient;
use crate::peer_proto::PeerRequest;
use crate::stats::Stats;
use crate::{AbortOnDrop, NodeId, NodeInfo, Published};

/// What an edge's data dir holds under `KEY_EDGE`: that it is an edge's.
pub(crate) const EDGE_MARK: &[u8] = b"edge";
/// How long connecting to an upstream may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// An upstream that has not heard from a leader for this long is left for
/// the next one (when there is another): it may be cut off while another
/// is current.
const UPSTREAM_STALE_MAX: Duration = Duration::from_secs(10);
/// Pause after every upstream failed once, doubling up to `RETRY_MAX`.
const RETRY_FIRST: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_secs(5);
/// A follower reports its progress at most this often (it reports every
/// change of its revision or of the tree below it, gathered over this).
const REPORT_PAUSE: Duration = Duration::from_millis(100);
/// The tree below a follower goes up at most this often (its revision and
/// the lowest below it go up with every report).
const TREE_EVERY: Duration = Duration::from_millis(250);

#[derive(Debug, thiserror::Error)]
pub(crate) enum EdgeError {
    #[error("upstream {0}: {1}")]
    Connect(String, String),
    #[error("upstream stream: {0}")]
    Stream(String),
    #[error("upstream sent revision {got} after {have}: not the next one")]
    Gap { have: u64, got: u64 },
    #[error("upstream sent a state at revision {got}, older than ours ({have})")]
    Backwards { have: u64, got: u64 },
    #[error("upstream silent for {} s", FEED_SILENCE_MAX.as_secs())]
    Silent,
    #[error("upstream has not heard from a leader for {0} ms")]
    Stale(u64),
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// What the edge's follower task shares with the node: the upstream it
/// follows and how fresh that is.
#[derive(Debug, Default)]
pub(crate) struct EdgeShared {
    fresh: Mutex<Fresh>,
    upstream: Mutex<Option<(NodeId, String)>>,
}

impl EdgeShared {
    /// What the last heartbeat said (leader, membership, freshness).
    pub fn fresh(&self) -> Fresh {
        self.fresh.lock().map(|f| f.clone()).unwrap_or_default()
    }

    /// The upstream followed now: its node id and URL.
    pub fn upstream(&self) -> Option<(NodeId, String)> {
        self.upstream.lock().ok().and_then(|u| u.clone())
    }

    /// Milliseconds since the leader last reached the top of this branch.
    pub fn staleness_ms(&self) -> Option<u64> {
        let at = self.fresh.lock().ok()?.at_ms?;
        Some(crate::jobs::now_ms().saturating_sub(at))
    }
}

/// The follower task's own parts.
pub(crate) struct Follow {
    pub id: NodeId,
    pub me: NodeInfo,
    pub cluster: String,
    pub upstreams: Vec<String>,
    pub auth: PeerAuth,
    pub store: Store,
    pub disk: Arc<Disk>,
    pub stats: Arc<Stats>,
    pub state: State,
    pub published: Published,
    pub applied: watch::Sender<u64>,
    pub feed: Arc<Feed>,
    pub followers: Arc<Followers>,
    pub shared: Arc<EdgeShared>,
}

/// A state arriving in chunks.
struct Incoming {
    revision: u64,
    marks: switchboard_domain::state::Marks,
    values: Vec<Value>,
}

impl Follow {
    /// Follow the upstreams, in order of preference, for ever: on losing
    /// one, the next, resuming from this node's own revision.
    pub async fn run(mut self) {
        let mut next = 0;
        let mut pause = RETRY_FIRST;
        loop {
            let url = self.upstreams[next].clone();
            let began = Instant::now();
            let result = self.session(&url).await;
            self.stats.applying();
            if let Ok(mut u) = self.shared.upstream.lock() {
                *u = None;
            }
            let stale = matches!(result, Err(EdgeError::Stale(_)));
            match result {
                Ok(()) => tracing::info!(upstream = %url, "upstream ended the stream"),
                Err(e) => tracing::warn!(upstream = %url, error = %e, revision = self.state.revision(), "lost the upstream"),
            }
            // A stream that ran a while and was lost: start again from the
            // preferred one. One left for being cut off from the leader
            // moves on, or a stale first upstream would be taken again.
            if began.elapsed() > UPSTREAM_STALE_MAX && !stale {
                next = 0;
                pause = RETRY_FIRST;
                continue;
            }
            next = (next + 1) % self.upstreams.len();
            if next == 0 {
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(RETRY_MAX);
            }
        }
    }

    fn sign(&self, to: NodeId, message: &Up) -> Result<PeerRequest, StorageError> {
        let payload = encode("feed message", message)?;
        Ok(self.auth.sign(PeerRequest { from: self.id, to, cluster: self.cluster.clone(), payload, mac: Vec::new() }))
    }

    async fn session(&mut self, url: &str) -> Result<(), EdgeError> {
        let connect = |e: &dyn std::fmt::Display| EdgeError::Connect(url.to_string(), e.to_string());
        let channel = Endpoint::from_shared(url.to_string())
            .map_err(|e| connect(&e))?
            .connect_timeout(CONNECT_TIMEOUT)
            .tcp_nodelay(true)
            .connect()
            .await
            .map_err(|e| connect(&e))?;
        let mut client = RaftPeerClient::new(channel)
            .max_decoding_message_size(PEER_MESSAGE_BYTES_MAX)
            .max_encoding_message_size(PEER_MESSAGE_BYTES_MAX);
        let (tx, rx) = mpsc::channel(FEED_QUEUE);
        let first = self.sign(0, &Up::Follow { after: self.state.revision(), info: self.me.clone() })?;
        tx.send(first).await.map_err(|_| EdgeError::Stream("closed before the first message".into()))?;
        let mut stream =
            client.follow(tokio_stream::wrappers::ReceiverStream::new(rx)).await.map_err(|s| connect(&s.message()))?.into_inner();
        tracing::info!(upstream = %url, revision = self.state.revision(), "following");
        self.stats.upstream_streams.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let reporter = tokio::spawn(report(tx, self.reporter()));
        let _reporter = AbortOnDrop(reporter);
        let began = Instant::now();
        let mut incoming: Option<Incoming> = None;
        loop {
            let message = match tokio::time::timeout(FEED_SILENCE_MAX, stream.message()).await {
                Err(_) => return Err(EdgeError::Silent),
                Ok(Err(s)) => return Err(EdgeError::Stream(s.message().to_string())),
                Ok(Ok(None)) => return Ok(()),
                Ok(Ok(Some(m))) => m,
            };
            self.auth.verify(&message).map_err(|s| EdgeError::Stream(s.message().to_string()))?;
            if message.cluster != self.cluster {
                return Err(EdgeError::Stream(format!("upstream belongs to cluster {:?}, not {:?}", message.cluster, self.cluster)));
            }
            match decode::<Down>("feed message", &message.payload)? {
                Down::Heartbeat(fresh) => {
                    self.heard(message.from, url, fresh);
                    let stale = self.shared.staleness_ms();
                    let too_stale = stale.is_none_or(|ms| ms > UPSTREAM_STALE_MAX.as_millis() as u64);
                    if self.upstreams.len() > 1 && too_stale && began.elapsed() > UPSTREAM_STALE_MAX {
                        return Err(EdgeError::Stale(stale.unwrap_or(u64::MAX)));
                    }
                }
                Down::Entries(entries) => self.apply(entries).await?,
                Down::Snapshot { revision, marks, values, last } => {
                    if revision < self.state.revision() {
                        return Err(EdgeError::Backwards { have: self.state.revision(), got: revision });
                    }
                    let into = incoming.get_or_insert_with(|| {
                        self.stats.receiving_snapshot();
                        Incoming { revision, marks, values: Vec::new() }
                    });
                    if into.revision != revision {
                        return Err(EdgeError::Stream(format!("a state at {revision} began inside one at {}", into.revision)));
                    }
                    for v in &values {
                        into.values.push(decode("snapshot value", v)?);
                    }
                    if last {
                        if let Some(done) = incoming.take() {
                            self.install(done).await?;
                        }
                    }
                }
            }
        }
    }

    fn heard(&self, from: NodeId, url: &str, fresh: Fresh) {
        if let Ok(mut f) = self.shared.fresh.lock() {
            // Freshness never goes backwards on a failover to a staler branch.
            let at_ms = match (f.at_ms, fresh.at_ms) {
                (Some(a), Some(b)) => Some(a.max(b)),
                (a, b) => a.or(b),
            };
            *f = Fresh { at_ms, ..fresh };
        }
        if let Ok(mut u) = self.shared.upstream.lock() {
            *u = Some((from, url.to_string()));
        }
    }

    /// Apply entries that follow this node's revision, persist what they
    /// changed in one unsynced batch, publish, and pass them on.
    async fn apply(&mut self, entries: Vec<(u64, Vec<u8>)>) -> Result<(), EdgeError> {
        let mut effects = Vec::new();
        let mut passed = Vec::with_capacity(entries.len());
        for (revision, data) in entries {
            let have = self.state.revision();
            if revision <= have {
                continue;
            }
            if revision != have + 1 {
                return Err(EdgeError::Gap { have, got: revision });
            }
            match feed::decode_entry(&data)? {
                Some(batch) if !batch.is_empty() => {
                    for envelope in &batch {
                        let (_, fx) = self.state.apply(revision, envelope);
                        effects.extend(fx.into_iter().map(|e| (revision, e)));
                    }
                }
                _ => self.state.advance(revision),
            }
            passed.push(FeedEntry { revision, data: Arc::new(data) });
        }
        if passed.is_empty() {
            return Ok(());
        }
        self.stats.applying();
        self.stats.upstream_entries.fetch_add(passed.len() as u64, std::sync::atomic::Ordering::Relaxed);
        let revisions = (self.state.revision(), self.state.marks());
        self.disk.durable("writing the applied state", || self.store.write_applied(revisions, &effects, KEY_EDGE, EDGE_MARK)).await?;
        self.publish();
        for entry in passed {
            self.feed.push(entry);
        }
        Ok(())
    }

    /// Replace the state with one received whole, synced, and start the
    /// tail again after it.
    async fn install(&mut self, incoming: Incoming) -> Result<(), EdgeError> {
        let began = Instant::now();
        let state = State::restore(incoming.revision, incoming.marks, incoming.values);
        self.disk.durable("installing a state from upstream", || self.store.replace_state(&state, KEY_EDGE, EDGE_MARK, &[])).await?;
        self.state = state;
        self.publish();
        self.feed.reset(self.state.revision());
        self.stats.installed_snapshot(began);
        tracing::info!(revision = self.state.revision(), took_ms = began.elapsed().as_millis() as u64, "installed a state from upstream");
        Ok(())
    }

    fn publish(&self) {
        self.published.store(Arc::new(self.state.clone()));
        self.applied.send_replace(self.state.revision());
    }

    fn reporter(&self) -> Reporter {
        Reporter {
            id: self.id,
            cluster: self.cluster.clone(),
            auth: self.auth.clone(),
            applied: self.applied.subscribe(),
            followers: self.followers.clone(),
            shared: self.shared.clone(),
        }
    }
}

/// What the progress reporter of one stream reads.
struct Reporter {
    id: NodeId,
    cluster: String,
    auth: PeerAuth,
    applied: watch::Receiver<u64>,
    followers: Arc<Followers>,
    shared: Arc<EdgeShared>,
}

/// Report this node's progress, and the tree below it, up the stream
/// whenever either changes (gathered over `REPORT_PAUSE`), and every
/// `TREE_EVERY` regardless, until the stream ends.
async fn report(tx: mpsc::Sender<PeerRequest>, mut r: Reporter) {
    let mut below = r.followers.subscribe();
    let mut tree_sent: Option<Instant> = None;
    loop {
        let tree = tree_sent.is_none_or(|t| t.elapsed() >= TREE_EVERY);
        let progress = Progress {
            applied: *r.applied.borrow_and_update(),
            staleness_ms: r.shared.staleness_ms(),
            below_min: r.followers.min_applied(),
            tree: tree.then(|| r.followers.tree(r.id)),
        };
        below.borrow_and_update();
        if tree {
            tree_sent = Some(Instant::now());
        }
        let Ok(payload) = encode("feed message", &Up::Progress(progress)) else { return };
        let message = r.auth.sign(PeerRequest { from: r.id, to: 0, cluster: r.cluster.clone(), payload, mac: Vec::new() });
        if tx.send(message).await.is_err() {
            return;
        }
        tokio::time::sleep(REPORT_PAUSE).await;
        tokio::select! {
            _ = r.applied.changed() => {}
            _ = below.changed() => {}
            _ = tokio::time::sleep(TREE_EVERY) => {}
        }
    }
}

/// Whether `store` may be opened as an edge's: it is one already, or new.
pub(crate) fn check_edge_dir(store: &Store) -> Result<(), StorageError> {
    if store.meta(switchboard_storage::keys::KEY_SM)?.is_some() || store.last_log()?.is_some() {
        return Err(StorageError::Corrupt(format!(
            "{} holds a Raft member's data; an edge needs a data dir of its own",
            store.path().display()
        )));
    }
    Ok(())
}
