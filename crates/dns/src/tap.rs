//! The query log's tap: copies of sampled queries and responses handed to
//! a writer off the query path (dnstap, written by the binary) through a
//! bounded queue. A full queue drops the copy and counts it: logging must
//! never make a query wait.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use tokio::sync::mpsc;

/// Which transport a tapped message came over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Udp,
    Tcp,
    /// DNS over TLS (RFC 7858).
    Dot,
    /// DNS over QUIC (RFC 9250).
    Doq,
}

impl Transport {
    /// Whether messages over it are encrypted (a zone's `[transfer] tls`).
    pub fn encrypted(self) -> bool {
        matches!(self, Transport::Dot | Transport::Doq)
    }
}

/// A query as received, or the response sent to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TapKind {
    Query,
    Response,
}

/// One tapped message (dnstap's AUTH_QUERY or AUTH_RESPONSE).
#[derive(Debug, Clone)]
pub struct TapMessage {
    pub kind: TapKind,
    pub transport: Transport,
    pub client: SocketAddr,
    /// The address the query was sent to (our listening address).
    pub server: SocketAddr,
    pub query_time: SystemTime,
    /// For a response: when it was sent.
    pub response_time: Option<SystemTime>,
    /// The message on the wire (over TCP, TLS and QUIC, without its length
    /// prefix).
    pub wire: Vec<u8>,
}

/// A query that was tapped: its response will be too.
#[derive(Debug, Clone)]
pub(crate) struct Tapped {
    pub tap: std::sync::Arc<Tap>,
    pub query_time: SystemTime,
    pub server: SocketAddr,
}

impl Tapped {
    /// Tap `wire`, a query from `client` over `transport`, if the sample
    /// takes it (`seen` counts the caller's queries).
    pub(crate) fn query(
        tap: Option<&std::sync::Arc<Tap>>,
        seen: &AtomicU64,
        transport: Transport,
        client: SocketAddr,
        server: SocketAddr,
        wire: &[u8],
    ) -> Option<Tapped> {
        let tap = tap.filter(|t| t.sample(seen))?;
        let query_time = SystemTime::now();
        tap.send(TapMessage::query(transport, client, server, query_time, wire.to_vec()));
        Some(Tapped { tap: tap.clone(), query_time, server })
    }

    /// Tap the response `wire` sent to `client`.
    pub(crate) fn response(self, transport: Transport, client: SocketAddr, wire: Vec<u8>) {
        self.tap.send(TapMessage::response(transport, client, self.server, self.query_time, wire));
    }
}

impl TapMessage {
    pub(crate) fn query(transport: Transport, client: SocketAddr, server: SocketAddr, query_time: SystemTime, wire: Vec<u8>) -> TapMessage {
        TapMessage { kind: TapKind::Query, transport, client, server, query_time, response_time: None, wire }
    }

    pub(crate) fn response(
        transport: Transport,
        client: SocketAddr,
        server: SocketAddr,
        query_time: SystemTime,
        wire: Vec<u8>,
    ) -> TapMessage {
        TapMessage { kind: TapKind::Response, transport, client, server, query_time, response_time: Some(SystemTime::now()), wire }
    }
}

/// The sending side: sampling and the bounded queue.
#[derive(Debug)]
pub struct Tap {
    queue: mpsc::Sender<TapMessage>,
    /// One query in `sample_every` is tapped (with its response), counted
    /// in each UDP loop's (or TCP's) own shard.
    sample_every: u64,
    /// Messages lost because the queue was full.
    pub dropped: AtomicU64,
    /// Messages handed to the writer.
    pub queued: AtomicU64,
}

impl Tap {
    /// A tap with a queue of `queue` messages, tapping one query (and its
    /// response) in `sample_every`; the writer reads the receiver.
    pub fn new(queue: usize, sample_every: u64) -> (Tap, mpsc::Receiver<TapMessage>) {
        let (tx, rx) = mpsc::channel(queue.max(1));
        let tap = Tap { queue: tx, sample_every: sample_every.max(1), dropped: AtomicU64::new(0), queued: AtomicU64::new(0) };
        (tap, rx)
    }

    /// Whether the next query is one of the sampled; `seen` counts the
    /// queries of the caller's shard.
    pub(crate) fn sample(&self, seen: &AtomicU64) -> bool {
        seen.fetch_add(1, Ordering::Relaxed) % self.sample_every == 0
    }

    /// Hand `message` to the writer, or count it dropped.
    pub(crate) fn send(&self, message: TapMessage) {
        match self.queue.try_send(message) {
            Ok(()) => self.queued.fetch_add(1, Ordering::Relaxed),
            Err(_) => self.dropped.fetch_add(1, Ordering::Relaxed),
        };
    }
}
