//! Switchboard's DNS front end: a `Handler` that answers from the published
//! in-memory `State`, behind our own UDP (`udp`) and TCP (`tcp`) loops;
//! hickory-proto parses and encodes the messages. TSIG (`tsig`) is checked
//! on the wire bytes, and zone transfers (`xfr`) stream from one state.
//!
//! The query path loads the current state with one atomic pointer read
//! (`ArcSwap::load`), resolves with the pure domain resolver, and encodes.
//! It never touches RocksDB, the network or consensus, and holds no lock an
//! apply could hold: a stream of writes cannot make a query wait.

mod convert;
mod cookie;
mod dnssec;
mod fast;
#[doc(hidden)]
pub mod fixture;
mod notify;
mod quic;
mod rrl;
mod stats;
mod tap;
mod tcp;
mod tls;
mod tsig;
mod udp;
mod update;
mod xfr;

pub use cookie::CookieSecret;
pub use dnssec::SIGNATURES_CACHED;
pub use notify::NOTIFY_INTERVAL;
pub use quic::{doq_message, DoqFrameError};
pub use rrl::RrlSettings;
pub use stats::DnsStats;
pub use tap::{Tap, TapKind, TapMessage, Transport};
pub use tcp::{accept, TcpCounters, TcpLimits};
pub use tls::{Certs, TlsError, TlsLimits};
pub use tsig::{TSIG_FUDGE_MAX_DEFAULT, TSIG_FUDGE_MAX_LIMIT};
pub use update::{
    Submit, Submitted, UpdateLimit, UPDATES_BURST_DEFAULT, UPDATES_PER_MINUTE_DEFAULT, UPDATE_REFUSAL_LOG_BURST,
    UPDATE_REFUSAL_LOG_INTERVAL_SECS,
};
pub use xfr::{History, TRANSFERS_MAX, TRANSFERS_PER_CLIENT_MAX};

use rrl::{AnswerClass, Rrl, Verdict};
use stats::{CookieSeen, Refused, RrlAction, Shard, TsigSeen, UpdateRefused, Xfr, XfrOutcome};

use std::net::SocketAddr;
use std::sync::Arc;

use arc_swap::ArcSwap;
use hickory_proto::op::{emit_message_parts, Edns, EmitAndCount, Header, HeaderCounts, Metadata, OpCode, ResponseCode};
use hickory_proto::rr::rdata::opt::{EdnsCode, EdnsOption};
use hickory_proto::rr::{DNSClass, Record};
use hickory_proto::serialize::binary::{BinDecoder, BinEncodable, BinEncoder, NameEncoding};
use hickory_proto::ProtoError;
use hickory_server::net::xfer::Protocol;
use hickory_server::server::{Request, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::{MessageResponseBuilder, Queries};
use switchboard_domain::model::{Arrival, CertKey};
use switchboard_domain::{resolve, RType, Rcode, State};
use tokio::net::TcpListener;

/// Largest UDP response we send, whatever the client offers (the DNS flag
/// day 2020 value, safe from IP fragmentation).
pub const UDP_PAYLOAD_MAX: u16 = 1232;
/// Most UPDATEs over UDP waiting for their commit at once.
pub const UPDATES_IN_FLIGHT_MAX: usize = 256;

/// The Extended DNS Error option (RFC 8914) and its "Prohibited" code.
const EDE_OPTION: u16 = 15;
const EDE_PROHIBITED: u16 = 18;

/// The transfer QTYPEs (RFC 1995, RFC 5936).
const QTYPE_IXFR: u16 = 251;
const QTYPE_AXFR: u16 = 252;

/// A response handler of ours: one that can sign what it sends.
pub(crate) trait Respond: ResponseHandler {
    /// Sign every message sent from now on with `signer` (TSIG): the
    /// first over the request's MAC, each later one over the one before.
    fn sign_with(&mut self, signer: tsig::Signer);
    /// Close the connection once this response is done (a transfer cut
    /// short); nothing to close over UDP.
    fn close(&mut self) {}
}

/// The UDP payload every client takes (RFC 1035 §4.2.1), and the least we send.
pub const UDP_PAYLOAD_MIN: u16 = 512;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DnsError {
    #[error("binding DNS {proto} on {addr}: {source}")]
    Bind { proto: &'static str, addr: SocketAddr, source: std::io::Error },
    #[error("starting the DNS UDP workers: {0}")]
    Workers(std::io::Error),
    #[error("DNS over {proto} is listened on, and there is no certificate ([tls] cert_file and key_file)")]
    NoCertificate { proto: &'static str },
    #[error(transparent)]
    Tls(#[from] TlsError),
}

/// What became of a query on the fast path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Step {
    /// The answer is in its buffer: send it.
    Send,
    /// Rate limiting withheld the answer.
    Withheld,
    /// The full path is to answer it.
    HandOver,
}

/// How a node's DNS front end behaves beyond answering: its limits, rate
/// limiting, cookies and query log.
#[derive(Debug, Default)]
pub struct Options {
    /// UDP workers (default: one per core).
    pub udp_loops: Option<usize>,
    /// Every UDP query takes the full path: for comparing the fast path's
    /// answers with it, or for a node that must not use the fast path.
    pub full_path_only: bool,
    /// Signatures kept for reuse (default `SIGNATURES_CACHED`).
    pub signatures_cached: Option<usize>,
    /// Response rate limiting (off unless `responses_per_second` > 0).
    pub rrl: RrlSettings,
    /// The server cookie secret; `None`: cookies are not answered.
    pub cookies: Option<CookieSecret>,
    /// Where sampled queries and responses go (dnstap).
    pub tap: Option<Arc<Tap>>,
    /// Where RFC 2136 updates are committed; `None`: UPDATE is NOTIMP.
    pub updates: Option<Arc<dyn Submit>>,
    /// Most seconds a TSIG-signed message's time may differ from ours,
    /// whatever fudge it asks for (default `TSIG_FUDGE_MAX_DEFAULT`).
    pub tsig_fudge_max_secs: Option<u16>,
    /// The rate UPDATEs are bounded to, per TSIG key and zone (default
    /// `UpdateLimit::default()`).
    pub update_limit: Option<UpdateLimit>,
    /// The change history, for incremental zone transfers; `None`: every
    /// IXFR from an older serial gets the whole zone.
    pub history: Option<Arc<dyn History>>,
    /// The address DNS is served on, as bound: NOTIFY leaves from its IP
    /// (when it is not 0.0.0.0 or ::) and is never sent to it.
    pub dns_address: Option<SocketAddr>,
    /// Where NOTIFY leaves from instead (`[dns] notify_source`).
    pub notify_source: Option<std::net::IpAddr>,
    /// The certificate DNS over TLS and QUIC serve; `None`: neither can be
    /// listened on.
    pub certs: Option<Arc<Certs>>,
}

/// What every copy of the handler shares.
#[derive(Debug)]
struct Shared {
    stats: Arc<DnsStats>,
    tcp: Arc<TcpCounters>,
    /// The DoT and DoQ listeners' counters.
    dot: Arc<TcpCounters>,
    doq: Arc<TcpCounters>,
    certs: Option<Arc<Certs>>,
    udp_loops: usize,
    full_path_only: bool,
    rrl: Option<Rrl>,
    cookies: Option<CookieSecret>,
    tap: Option<Arc<Tap>>,
    /// Places for zone transfers running at once, in all and per client.
    transfers: Arc<xfr::Slots>,
    updates: Option<Arc<dyn Submit>>,
    history: Option<Arc<dyn History>>,
    tsig_fudge_max_secs: u16,
    /// Rate limit of the "update refused" log line.
    refusal_log: update::RefusalLog,
    /// UPDATEs committed per TSIG key and zone.
    update_limiter: update::UpdateLimiter,
    /// Places for UPDATEs over UDP waiting for their commit, each on its
    /// own task; past them an UPDATE datagram is dropped (the client retries).
    updates_in_flight: Arc<tokio::sync::Semaphore>,
    /// Online DNSSEC signing, with its signature cache.
    signer: dnssec::Signer,
    /// Where NOTIFY leaves from, and where it must not go.
    notify: notify::Addresses,
}

/// Answers queries from the state published by the state machine. Each
/// UDP loop, and each stream transport, has its own copy
/// (`for_transport`), counting into its own shard; each DoT and DoQ
/// connection a copy that knows its client's certificate
/// (`for_connection`).
#[derive(Clone)]
pub struct Handler {
    state: Arc<ArcSwap<State>>,
    shared: Arc<Shared>,
    transport: Transport,
    shard: usize,
    /// The pin of the certificate the client presented (DoT and DoQ).
    client_key: Option<CertKey>,
}

impl Handler {
    /// A handler with the default options and a random cookie secret.
    pub fn new(state: Arc<ArcSwap<State>>) -> Handler {
        let cookies = CookieSecret::random().ok();
        Handler::with(state, Options { cookies, ..Options::default() })
    }

    pub fn with(state: Arc<ArcSwap<State>>, options: Options) -> Handler {
        let udp_loops = options.udp_loops.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, usize::from)).max(1);
        let tcp = Arc::new(TcpCounters::default());
        let (dot, doq) = (Arc::new(TcpCounters::default()), Arc::new(TcpCounters::default()));
        let signatures = Arc::new(dnssec::SignCounters::default());
        let stats = Arc::new(DnsStats::new(
            udp_loops,
            tcp.clone(),
            [dot.clone(), doq.clone()],
            options.certs.clone(),
            options.tap.clone(),
            signatures.clone(),
        ));
        let transfers = Arc::new(xfr::Slots::default());
        let shared = Shared {
            stats,
            tcp,
            dot,
            doq,
            certs: options.certs,
            udp_loops,
            full_path_only: options.full_path_only,
            rrl: Rrl::new(options.rrl),
            cookies: options.cookies,
            tap: options.tap,
            transfers,
            updates: options.updates,
            history: options.history,
            tsig_fudge_max_secs: options.tsig_fudge_max_secs.unwrap_or(TSIG_FUDGE_MAX_DEFAULT),
            refusal_log: update::RefusalLog::new(),
            update_limiter: update::UpdateLimiter::new(options.update_limit.unwrap_or_default()),
            updates_in_flight: Arc::new(tokio::sync::Semaphore::new(UPDATES_IN_FLIGHT_MAX)),
            signer: dnssec::Signer::new(signatures, options.signatures_cached.unwrap_or(SIGNATURES_CACHED)),
            notify: notify::Addresses { source: options.notify_source, dns: options.dns_address },
        };
        Handler { state, shared: Arc::new(shared), transport: Transport::Udp, shard: 0, client_key: None }
    }

    /// What this front end counts, for `/metrics`.
    pub fn stats(&self) -> Arc<DnsStats> {
        self.shared.stats.clone()
    }

    /// The copy for UDP loop `i`, or for a stream transport.
    pub(crate) fn for_transport(&self, transport: Transport, i: usize) -> Handler {
        Handler { transport, shard: i, ..self.clone() }
    }

    /// The copy for one DoT or DoQ connection whose client presented a
    /// certificate with the key `client_key` (or none).
    pub(crate) fn for_connection(&self, transport: Transport, client_key: Option<CertKey>) -> Handler {
        Handler { transport, shard: 0, client_key, ..self.clone() }
    }

    /// The transport this copy answers.
    pub(crate) fn transport(&self) -> Transport {
        self.transport
    }

    /// Answer `message` from `peer` (sent to `server`) on the fast path
    /// into `out`, counting and tapping it as every transport does: what to
    /// do next. Over a stream transport the answer is never truncated and
    /// never rate limited.
    pub(crate) fn answer_fast_counted(
        &self,
        message: &[u8],
        peer: SocketAddr,
        server: SocketAddr,
        scratch: &mut fast::Scratch,
        out: &mut Vec<u8>,
    ) -> Step {
        let done = self.answer_fast(message, peer, scratch, out);
        let shard = self.shard();
        if self.shared.cookies.is_some() && done != fast::Fast::HandOver {
            shard.cookie(CookieSeen::None);
        }
        let (answered, step) = match done {
            fast::Fast::Answered(a) => {
                if let Some(tapped) = tap::Tapped::query(self.tap(), &shard.tap_seen, self.transport, peer, server, message) {
                    tapped.response(self.transport, peer, out.clone());
                }
                if a.slipped {
                    shard.rrl(RrlAction::Slipped);
                }
                (a, Step::Send)
            }
            fast::Fast::Dropped(a) => {
                shard.rrl(RrlAction::Dropped);
                (a, Step::Withheld)
            }
            fast::Fast::HandOver => {
                shard.path(false);
                return Step::HandOver;
            }
        };
        shard.path(true);
        shard.query(answered.qtype, answered.rcode, answered.truncated);
        step
    }

    /// Answer one message as the UDP (or TCP) workers do, keeping the
    /// responses instead of sending them (every message of a transfer):
    /// for the fuzz targets and tests. Empty for what the workers drop.
    /// Over TCP as over TLS and QUIC, which answer as TCP does.
    pub async fn answer_message(&self, message: &[u8], src: SocketAddr, tcp: bool) -> Vec<Vec<u8>> {
        if message.len() >= 12 && message[2] & 0x80 == 0 {
            let transport = if tcp { Transport::Tcp } else { Transport::Udp };
            let mut out = Vec::new();
            match self.for_transport(transport, 0).answer_fast(message, src, &mut fast::Scratch::default(), &mut out) {
                fast::Fast::Answered(_) => return vec![out],
                fast::Fast::Dropped(_) => return Vec::new(),
                fast::Fast::HandOver => {}
            }
        }
        self.answer_message_full(message, src, tcp).await
    }

    /// The fast path's answer to a query over UDP (or a stream transport,
    /// `tcp`), or `None` when it hands the query over (or withholds the
    /// answer): for tests comparing the two paths.
    pub fn answer_message_fast(&self, message: &[u8], src: SocketAddr, tcp: bool) -> Option<Vec<u8>> {
        let transport = if tcp { Transport::Tcp } else { Transport::Udp };
        let mut out = Vec::new();
        match self.for_transport(transport, 0).answer_fast(message, src, &mut fast::Scratch::default(), &mut out) {
            fast::Fast::Answered(_) => Some(out),
            fast::Fast::Dropped(_) | fast::Fast::HandOver => None,
        }
    }

    /// Answer one message as `answer_message` does, on the full path only.
    pub async fn answer_message_full(&self, message: &[u8], src: SocketAddr, tcp: bool) -> Vec<Vec<u8>> {
        let (transport, protocol, max) =
            if tcp { (Transport::Tcp, Protocol::Tcp, u16::MAX) } else { (Transport::Udp, Protocol::Udp, UDP_PAYLOAD_MAX) };
        if message.len() < 12 || message[2] & 0x80 != 0 {
            return Vec::new();
        }
        let Ok(request) = Request::from_bytes(message.to_vec(), src, protocol) else {
            return vec![tcp::format_error([message[0], message[1], message[2]])];
        };
        let capture = Capture { sent: Arc::default(), max, signer: None };
        self.for_transport(transport, 0).answer(&request, capture.clone()).await;
        let sent = capture.sent.lock().map(|s| s.clone()).unwrap_or_default();
        sent
    }

    /// Answer a UDP query on the fast path into `out`, unless it is one
    /// for the full path (or this front end uses the full path only).
    pub(crate) fn answer_fast(&self, message: &[u8], src: SocketAddr, scratch: &mut fast::Scratch, out: &mut Vec<u8>) -> fast::Fast {
        if self.shared.full_path_only {
            return fast::Fast::HandOver;
        }
        let stream = self.transport != Transport::Udp;
        let rrl = self.shared.rrl.as_ref().filter(|_| !stream).map(|r| (r, src.ip()));
        fast::answer(message, &self.state.load(), rrl, stream, scratch, out)
    }

    /// Before a batch of datagrams: warm the tenants `hints` guesses at.
    pub(crate) fn warm(&self, hints: &fast::KeyHints) {
        if !self.shared.full_path_only {
            self.state.load().warm_tenants(hints.keys());
        }
    }

    pub(crate) fn shard(&self) -> &Shard {
        self.shared.stats.shard(self.transport, self.shard)
    }

    pub(crate) fn tap(&self) -> Option<&Arc<Tap>> {
        self.shared.tap.as_ref()
    }
}

/// Keeps the responses `answer_message` is given, encoded (and signed) as
/// the transports' own handlers do.
#[derive(Clone)]
struct Capture {
    sent: Arc<std::sync::Mutex<Vec<Vec<u8>>>>,
    max: u16,
    signer: Option<tsig::Signer>,
}

impl Respond for Capture {
    fn sign_with(&mut self, signer: tsig::Signer) {
        self.signer = Some(signer);
    }
}

#[async_trait::async_trait]
impl ResponseHandler for Capture {
    async fn send_response<'a>(
        &mut self,
        response: hickory_server::zone_handler::MessageResponse<
            '_,
            'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
        >,
    ) -> Result<ResponseInfo, hickory_server::net::NetError> {
        let (bytes, info) = emit(response, self.max, &mut self.signer)?;
        if let Ok(mut sent) = self.sent.lock() {
            sent.push(bytes);
        }
        Ok(info)
    }
}

/// The DNS sockets of a node: UDP and TCP on one port, and DNS over TLS
/// and QUIC on theirs when asked, bound before the node opens its store so
/// a busy port stops it before anything is written. Bind them on the
/// runtime that will serve them (their I/O belongs to it).
#[derive(Debug)]
pub struct Listeners {
    udp: std::net::UdpSocket,
    tcp: TcpListener,
    bound: SocketAddr,
    dot: Option<TcpListener>,
    doq: Option<std::net::UdpSocket>,
}

impl Listeners {
    pub async fn bind(addr: SocketAddr) -> Result<Listeners, DnsError> {
        let udp = udp::bind(addr).map_err(|source| DnsError::Bind { proto: "udp", addr, source })?;
        let bound = udp.local_addr().map_err(|source| DnsError::Bind { proto: "udp", addr, source })?;
        // TCP on the same port as UDP, also when the caller asked for port 0.
        let tcp = TcpListener::bind(bound).await.map_err(|source| DnsError::Bind { proto: "tcp", addr: bound, source })?;
        Ok(Listeners { udp, tcp, bound, dot: None, doq: None })
    }

    /// Listen for DNS over TLS on `addr` too.
    pub async fn bind_dot(&mut self, addr: SocketAddr) -> Result<SocketAddr, DnsError> {
        let dot = TcpListener::bind(addr).await.map_err(|source| DnsError::Bind { proto: "tls", addr, source })?;
        let bound = dot.local_addr().map_err(|source| DnsError::Bind { proto: "tls", addr, source })?;
        self.dot = Some(dot);
        Ok(bound)
    }

    /// Listen for DNS over QUIC on `addr` too.
    pub fn bind_doq(&mut self, addr: SocketAddr) -> Result<SocketAddr, DnsError> {
        let doq = std::net::UdpSocket::bind(addr).map_err(|source| DnsError::Bind { proto: "quic", addr, source })?;
        let bound = doq.local_addr().map_err(|source| DnsError::Bind { proto: "quic", addr, source })?;
        self.doq = Some(doq);
        Ok(bound)
    }

    /// The address bound (the port chosen when port 0 was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.bound
    }
}

/// DNS being served; dropping it stops every transport.
pub struct Serving {
    _udp: udp::Workers,
    tcp: tokio::task::JoinHandle<()>,
    dot: Option<tokio::task::JoinHandle<()>>,
    doq: Option<(quinn::Endpoint, tokio::task::JoinHandle<()>)>,
    /// What the TCP listener counted.
    pub tcp_counters: Arc<tcp::TcpCounters>,
    /// Every DNS counter.
    pub stats: Arc<DnsStats>,
}

impl Drop for Serving {
    fn drop(&mut self) {
        self.tcp.abort();
        if let Some(dot) = &self.dot {
            dot.abort();
        }
        if let Some((endpoint, task)) = &self.doq {
            endpoint.close(0u32.into(), b"shutting down");
            task.abort();
        }
    }
}

/// Serve DNS on `listeners` with `handler`: UDP on worker threads, one
/// per core unless told (`udp`), TCP on our own bounded listener (`tcp`),
/// and DoT (`tls`) and DoQ (`quic`) when they were bound, with `tls`'s
/// limits. Call on the runtime that bound them: the full path runs on it.
pub fn serve(listeners: Listeners, handler: Handler, limits: TcpLimits, tls: TlsLimits) -> Result<Serving, DnsError> {
    let tcp_counters = handler.shared.tcp.clone();
    let stats = handler.stats();
    let certs = handler.shared.certs.clone();
    let need_certs = |proto| certs.clone().ok_or(DnsError::NoCertificate { proto });
    // Set up before anything is spawned: an error leaves nothing running.
    let dot = match listeners.dot {
        Some(listener) => Some((listener, tls::server_config(&need_certs("TLS")?, tls::ALPN_DOT)?)),
        None => None,
    };
    let doq = match listeners.doq {
        Some(socket) => Some(quic::endpoint(socket, tls::server_config(&need_certs("QUIC")?, tls::ALPN_DOQ)?, tls)?),
        None => None,
    };
    let workers = handler.shared.udp_loops;
    let udp = udp::serve(listeners.udp, handler.clone(), workers).map_err(DnsError::Workers)?;
    let tcp = tokio::spawn(tcp::serve(listeners.tcp, handler.for_transport(Transport::Tcp, 0), limits, tcp_counters.clone()));
    let dot = dot.map(|(listener, config)| {
        tokio::spawn(tls::serve(listener, handler.for_transport(Transport::Dot, 0), config, tls, handler.shared.dot.clone()))
    });
    let doq = doq.map(|endpoint| {
        let task = tokio::spawn(quic::serve(endpoint.clone(), handler.for_transport(Transport::Doq, 0), tls, handler.shared.doq.clone()));
        (endpoint, task)
    });
    Ok(Serving { _udp: udp, tcp, dot, doq, tcp_counters, stats })
}

/// A response on the wire, at most `max_size` bytes before its TSIG record,
/// signed when `signer` is set: the one encoding every response handler uses.
pub(crate) fn emit<'a>(
    response: hickory_server::zone_handler::MessageResponse<
        '_,
        'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
    >,
    max_size: u16,
    signer: &mut Option<tsig::Signer>,
) -> Result<(Vec<u8>, ResponseInfo), hickory_server::net::NetError> {
    let mut bytes = Vec::with_capacity(512);
    let mut encoder = BinEncoder::new(&mut bytes);
    encoder.set_max_size(max_size);
    let info = response.destructive_emit(&mut encoder)?;
    if let Some(signer) = signer {
        signer.sign(&mut bytes, tsig::now());
    }
    Ok((bytes, info))
}

fn info_for(request: &Request, rcode: ResponseCode) -> ResponseInfo {
    let mut metadata = Metadata::response_from_request(&request.metadata);
    metadata.response_code = rcode;
    ResponseInfo::from(Header { metadata, counts: HeaderCounts::default() })
}

/// What one answer's sections become on the wire.
struct Sections {
    answers: Vec<Record>,
    authority: Vec<Record>,
    additional: Vec<Record>,
}

/// Whether the wire form of a question section uses a compression pointer.
/// Walks the labels of each name (the section was parsed already, so it is
/// well formed); stops at the first pointer.
fn has_pointer(question: &[u8]) -> bool {
    let mut i = 0;
    while i < question.len() {
        let len = question[i];
        if len & 0xc0 != 0 {
            return true;
        }
        i += 1 + usize::from(len);
        if len == 0 {
            i += 4; // type and class
        }
    }
    false
}

/// The parsed questions encoded again without compression (so lower-case:
/// hickory keeps questions lower-cased once parsed).
fn uncompressed(queries: &Queries) -> Option<Queries> {
    let mut bytes = Vec::new();
    let mut encoder = BinEncoder::new(&mut bytes);
    encoder.set_name_encoding(NameEncoding::Uncompressed);
    for q in queries.queries() {
        q.emit(&mut encoder).ok()?;
    }
    Queries::read(&mut BinDecoder::new(&bytes), queries.len()).ok()
}

/// The question section as the client sent it, emitted as hickory's own
/// response encoder does (so later names compress against it the same way).
struct Question<'a>(&'a Queries);

impl EmitAndCount for Question<'_> {
    fn emit(&mut self, encoder: &mut BinEncoder<'_>) -> Result<usize, ProtoError> {
        let start = encoder.offset();
        let bytes = self.0.as_bytes();
        encoder.emit_vec(bytes)?;
        if matches!(encoder.name_encoding(), NameEncoding::Compressed) && !self.0.is_empty() {
            encoder.store_label_pointer(start, start + bytes.len());
        }
        Ok(self.0.len())
    }
}

/// Whether `metadata` plus the sections and `edns` encode within `limit` bytes.
fn fits(queries: &Queries, metadata: &Metadata, s: &Sections, edns: Option<&Edns>, limit: u16) -> bool {
    let mut bytes = Vec::with_capacity(usize::from(limit));
    let mut encoder = BinEncoder::new(&mut bytes);
    encoder.set_max_size(limit);
    let emitted = emit_message_parts(
        metadata,
        &mut Question(queries),
        &mut s.answers.iter(),
        &mut s.authority.iter(),
        &mut s.additional.iter(),
        edns,
        None,
        &mut encoder,
    );
    emitted.is_ok_and(|h| !h.metadata.truncation)
}

/// An upper bound on a record's wire size: owner and names uncompressed.
pub(crate) fn wire_size_max(r: &switchboard_domain::Record) -> usize {
    use switchboard_domain::RData as D;
    // A name in presentation form with its trailing dot takes len + 1 bytes on the wire.
    let name = |n: &str| n.len() + 1;
    let rdata = match &r.data {
        D::A(_) => 4,
        D::Aaaa(_) => 16,
        D::Cname(n) | D::Ns(n) | D::Ptr(n) => name(n),
        D::Mx { exchange, .. } => 2 + name(exchange),
        D::Txt(strings) => strings.iter().map(|s| 1 + s.len()).sum(),
        D::Srv { target, .. } => 6 + name(target),
        D::Caa { tag, value, .. } => 2 + tag.len() + value.len(),
        D::Soa { mname, rname, .. } => name(mname) + name(rname) + 20,
        D::Key { public_key, .. } => 4 + public_key.len(),
        D::Cds { digest, .. } => 4 + digest.len(),
    };
    name(&r.name) + 10 + rdata
}

/// Fit an answer into a UDP response of `limit` bytes (RFC 2181 §9,
/// RFC 1035 §4.2.1): drop the additional section if that is enough, unless
/// it carries a referral's glue; otherwise send nothing but the header, the
/// question and the OPT with TC set, so the client asks again over TCP.
/// RRsets are never split, as Knot DNS does.
fn fit_udp(queries: &Queries, metadata: &mut Metadata, s: Sections, edns: Option<&Edns>, limit: u16, referral: bool) -> Sections {
    if fits(queries, metadata, &s, edns, limit) {
        return s;
    }
    let trimmed = Sections { additional: Vec::new(), ..s };
    if !referral && fits(queries, metadata, &trimmed, edns, limit) {
        return trimmed;
    }
    metadata.truncation = true;
    Sections { answers: Vec::new(), authority: Vec::new(), additional: Vec::new() }
}

/// The answer class of a resolved answer, for rate limiting.
fn class_of(answer: &switchboard_domain::Answer) -> AnswerClass {
    match answer.rcode {
        Rcode::NxDomain => AnswerClass::NxDomain,
        Rcode::Refused => AnswerClass::Error,
        Rcode::NoError if !answer.answers.is_empty() => AnswerClass::Positive,
        Rcode::NoError if !answer.authoritative => AnswerClass::Referral,
        Rcode::NoError => AnswerClass::NoData,
    }
}

impl Handler {
    /// Answer `request` through `response`, and count it.
    pub(crate) async fn answer<R: Respond>(&self, request: &Request, response: R) -> ResponseInfo {
        let qtype = request.queries.queries().first().map_or(0, |q| u16::from(q.query_type()));
        let info = self.respond(request, response).await;
        self.shard().query(qtype, info.response_code, info.truncation);
        info
    }

    /// Read, authorise and commit an RFC 2136 UPDATE signed by `signed`
    /// (its key and the request id made from its MAC); the RCODE to answer
    /// with. Every refusal is counted by reason; the log gets a line with
    /// the reason for the first few and then at most one an interval
    /// (`update::RefusalLog`), so a flood of forged UPDATEs is a counter,
    /// not gigabytes of log.
    async fn update(&self, request: &Request, signed: Option<(&Arc<switchboard_domain::TsigKey>, &str)>) -> ResponseCode {
        let apex = request.queries.queries().first().map(|q| convert::qname(q.name())).unwrap_or_default();
        let key = signed.map(|(k, _)| k);
        let refuse = |why: UpdateRefused, rcode: ResponseCode, reason: &str| {
            self.shard().update(rcode);
            self.shard().update_refused(why);
            if let Some(suppressed) = self.shared.refusal_log.admit() {
                let key = key.map_or("none", |k| k.name.as_str());
                tracing::info!(zone = %apex, client = %request.src(), key, %rcode, reason, suppressed, "update refused");
            }
            rcode
        };
        let state = self.state.load_full();
        let parsed = update::read(request, &apex);
        let Some(submit) = &self.shared.updates else {
            return refuse(UpdateRefused::NotServed, ResponseCode::NotImp, "updates are not served by this front end");
        };
        let update = match parsed {
            Ok(u) => u,
            Err(r) => return refuse(UpdateRefused::Malformed, r.rcode, &r.reason),
        };
        if state.zone(&apex).is_none() {
            return refuse(UpdateRefused::NotAZone, ResponseCode::NotAuth, "not a zone served here");
        }
        let Some((key, request_id)) = signed else {
            return refuse(UpdateRefused::Unsigned, ResponseCode::Refused, "unsigned: updates need a TSIG key with update in scope");
        };
        if let Err(r) = update::allowed(&state, key, &update) {
            return refuse(UpdateRefused::OutOfScope, r.rcode, &r.reason);
        }
        let command = switchboard_domain::Command::Update { update };
        // A replay this node already holds the outcome of is answered from
        // it, without a write: a captured UPDATE sent again and again costs
        // no log entries. (One not here yet is answered the same way by
        // apply, from the replicated dedup window.)
        let submitted = match state.recorded(request_id, &command) {
            Some((_, Ok(_))) => Submitted::Applied,
            Some((_, Err(e))) => Submitted::Refused(e),
            None => {
                drop(state);
                // Only what would be written is bounded: a replay answered
                // above costs nothing.
                if !self.shared.update_limiter.admit(&key.name, &apex, std::time::Instant::now()) {
                    let UpdateLimit { per_minute, burst } = self.shared.update_limiter.limit();
                    let why = format!("more than {per_minute} updates a minute (burst {burst}) for key {} and this zone", key.name);
                    return refuse(UpdateRefused::RateLimited, ResponseCode::Refused, &why);
                }
                submit.submit(command, switchboard_domain::Actor::TsigKey(key.name.clone()), request_id.to_string()).await
            }
        };
        match submitted {
            Submitted::Applied => {
                self.shard().update(ResponseCode::NoError);
                ResponseCode::NoError
            }
            Submitted::Refused(e) => refuse(UpdateRefused::Refused, update::rcode_of(&e), &e.to_string()),
            Submitted::Unavailable(why) => refuse(UpdateRefused::Unavailable, ResponseCode::ServFail, &why),
        }
    }

    /// What rate limiting says of a response of `class` to `request`. TCP
    /// is never limited (its source address is proven), nor is a client
    /// that returned a valid server cookie.
    fn limit(&self, request: &Request, class: AnswerClass, cookie: &cookie::Inspected) -> Verdict {
        match &self.shared.rrl {
            Some(rrl) if request.protocol() == Protocol::Udp && cookie.seen != CookieSeen::Valid => rrl.check(request.src().ip(), class),
            _ => Verdict::Send,
        }
    }

    /// Send instead of a limited response what `verdict` says: nothing, or
    /// (a slip) the header and question with TC=1 so the client retries over
    /// TCP, or BADCOOKIE with a fresh server cookie to a client that sent a
    /// client cookie, so it retries over UDP with it and is exempt.
    async fn withhold<R: ResponseHandler>(
        &self,
        verdict: Verdict,
        request: &Request,
        builder: MessageResponseBuilder<'_>,
        rcode: ResponseCode,
        cookie: &cookie::Inspected,
        mut response: R,
    ) -> ResponseInfo {
        if verdict == Verdict::Drop {
            self.shard().rrl(RrlAction::Dropped);
            return info_for(request, rcode);
        }
        self.shard().rrl(RrlAction::Slipped);
        let sent = if cookie.client.is_some() {
            response.send_response(builder.error_msg(&request.metadata, ResponseCode::BADCOOKIE)).await
        } else {
            let mut metadata = Metadata::response_from_request(&request.metadata);
            metadata.response_code = rcode;
            metadata.truncation = true;
            let none = std::iter::empty();
            response.send_response(builder.build(metadata, none.clone(), none.clone(), none.clone(), none)).await
        };
        sent.unwrap_or_else(|_| info_for(request, ResponseCode::ServFail))
    }

    async fn respond<R: Respond>(&self, request: &Request, mut response: R) -> ResponseInfo {
        // The client's COOKIE, checked against our secret (RFC 7873 §5.2).
        let cookie_option = request.edns.as_ref().and_then(|e| match e.option(EdnsCode::Cookie) {
            Some(EdnsOption::Unknown(_, data)) => Some(data.as_slice()),
            _ => None,
        });
        // The clock is read only for a query that has a cookie.
        let now = || std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as u32);
        let cookie = match (&self.shared.cookies, cookie_option) {
            (Some(secret), Some(_)) => secret.inspect(cookie_option, request.src().ip(), now()),
            _ => cookie::Inspected { seen: CookieSeen::None, client: None },
        };
        if self.shared.cookies.is_some() {
            self.shard().cookie(cookie.seen);
        }

        // Our OPT says what we accept (RFC 6891 §6.2.3); what we send over
        // UDP is limited by the smaller of that and the client's size. A
        // client cookie is echoed with a fresh server cookie (RFC 7873 §5.2.3-4).
        // DO is copied into the response (RFC 3225 §3).
        let dnssec_ok = request.edns.as_ref().is_some_and(|e| e.flags().dnssec_ok);
        let edns = request.edns.as_ref().map(|_| {
            let mut e = Edns::new();
            e.set_version(0);
            e.set_max_payload(UDP_PAYLOAD_MAX);
            e.set_dnssec_ok(dnssec_ok);
            if let (Some(secret), Some(client)) = (&self.shared.cookies, &cookie.client) {
                let server = secret.server_cookie(client, request.src().ip(), now());
                e.options_mut().insert(EdnsOption::Unknown(cookie::OPTION_CODE, [client.as_slice(), server.as_slice()].concat()));
            }
            e
        });
        // The question goes back as the client sent it, unless its names use
        // compression pointers: copied, they would point into our header.
        // A message with several questions is refused FORMERR without
        // them: echoed, they could make the error larger than the client
        // takes (RFC 1035 §4.1.2 leaves the count to the message).
        let rebuilt;
        let none = (request.queries.len() > 1).then(|| Queries::read(&mut BinDecoder::new(&[]), 0).ok()).flatten();
        let queries = if let Some(none) = &none {
            none
        } else {
            match has_pointer(request.queries.as_bytes()).then(|| uncompressed(&request.queries)) {
                Some(Some(q)) => {
                    rebuilt = q;
                    &rebuilt
                }
                _ => &request.queries,
            }
        };
        let builder = MessageResponseBuilder::new(queries, edns.as_ref());

        // TSIG (RFC 8945 §5.2): a signed message is verified before
        // anything else is done with it; from here on every response to
        // it is signed (or carries the error, unsigned).
        let fudge_max = self.shared.tsig_fudge_max_secs;
        let mut reserve = 0;
        let mut signed_by = None;
        // The request id an UPDATE in this message is committed under.
        let mut update_id = None;
        let tsig_error = match tsig::find(request.as_slice()) {
            tsig::Signature::Unsigned => None,
            tsig::Signature::Malformed => {
                self.shard().tsig(TsigSeen::Malformed);
                Some(ResponseCode::FormErr)
            }
            tsig::Signature::Signed(found) => match tsig::verify(&self.state.load(), request.as_slice(), &found, tsig::now(), fudge_max) {
                Ok(v) => {
                    self.shard().tsig(TsigSeen::Verified);
                    reserve = v.signer.reserve();
                    signed_by = Some(v.key);
                    update_id = Some(v.request_id);
                    response.sign_with(v.signer);
                    None
                }
                Err(failed) => {
                    self.shard().tsig(match failed.error {
                        tsig::TsigError::BadKey => TsigSeen::BadKey,
                        tsig::TsigError::BadSig => TsigSeen::BadSig,
                        tsig::TsigError::BadTime => TsigSeen::BadTime,
                        tsig::TsigError::BadTrunc => TsigSeen::BadTrunc,
                    });
                    tracing::debug!(client = %request.src(), error = ?failed.error, "TSIG check failed");
                    response.sign_with(failed.signer);
                    Some(ResponseCode::NotAuth)
                }
            },
        };

        let qtype_code = request.queries.queries().first().map_or(0, |q| u16::from(q.query_type()));
        let error = if request.edns.as_ref().is_some_and(|e| e.version() > 0) {
            Some(ResponseCode::BADVERS)
        } else if cookie.seen == CookieSeen::Malformed {
            // RFC 7873 §5.2.2.
            Some(ResponseCode::FormErr)
        } else if tsig_error.is_some() {
            tsig_error
        } else if request.metadata.op_code == OpCode::Update {
            // Answered below, once read and committed.
            None
        } else if request.metadata.op_code != OpCode::Query {
            if request.metadata.op_code == OpCode::Notify {
                self.shard().refused(Refused::Notify);
            }
            Some(ResponseCode::NotImp)
        } else if request.queries.len() != 1 {
            Some(ResponseCode::FormErr)
        } else if request.queries.queries()[0].query_class() != DNSClass::IN {
            Some(ResponseCode::Refused)
        } else if qtype_code == 0 {
            // QTYPE 0 is reserved and means nothing to answer (NOTIMP, as Knot says).
            Some(ResponseCode::NotImp)
        } else {
            None
        };
        if let Some(rcode) = error {
            let verdict = self.limit(request, AnswerClass::Error, &cookie);
            if verdict != Verdict::Send {
                return self.withhold(verdict, request, builder, rcode, &cookie, response).await;
            }
            let msg = builder.error_msg(&request.metadata, rcode);
            return response.send_response(msg).await.unwrap_or_else(|_| info_for(request, ResponseCode::ServFail));
        }
        if request.metadata.op_code == OpCode::Update {
            let signed = signed_by.as_ref().zip(update_id.as_deref());
            let rcode = self.update(request, signed).await;
            // Over UDP the answer is rate limited as a query's is: a forged
            // flood of UPDATEs must not make this node reflect a flood.
            let class = if rcode == ResponseCode::NoError { AnswerClass::Positive } else { AnswerClass::Error };
            let verdict = self.limit(request, class, &cookie);
            if verdict != Verdict::Send {
                return self.withhold(verdict, request, builder, rcode, &cookie, response).await;
            }
            let msg = builder.error_msg(&request.metadata, rcode);
            return response.send_response(msg).await.unwrap_or_else(|_| info_for(request, ResponseCode::ServFail));
        }
        if qtype_code == QTYPE_AXFR || qtype_code == QTYPE_IXFR {
            let xfr = if qtype_code == QTYPE_AXFR { Xfr::Axfr } else { Xfr::Ixfr };
            let apex = convert::qname(request.queries.queries()[0].name());
            let state = self.state.load_full();
            // Allowed by a key with `transfer` in its scope, or unsigned
            // from a prefix the zone's `[transfer] allow` lists; refused as
            // Knot DNS refuses a transfer it does not allow (NOTAUTH, RFC
            // 5936 §2.2.1), the reason in the log.
            // A zone may also ask that transfers come over TLS or QUIC, and
            // from a client certificate it pins (RFC 9103's mutual TLS).
            let arrival = Arrival { encrypted: self.transport.encrypted(), client_key: self.client_key.as_ref() };
            let transport_refusal = state.zone(&apex).and_then(|z| z.spec.transfer.transport_refusal(arrival));
            let refusal = match (state.zone(&apex), &signed_by) {
                (None, _) => Some("not a zone served here".to_string()),
                // Answers are signed when served; there is no signed zone
                // to hand a secondary (ARCHITECTURE.md, "Signing online").
                (Some(_), _) if state.signed_zone(&apex).is_some() => {
                    Some("the zone is signed online: transfers of signed zones are not served".to_string())
                }
                (Some(_), _) if transport_refusal.is_some() => transport_refusal.map(str::to_string),
                (Some(z), Some(key)) if !key.may_transfer(z) => Some(format!("TSIG key {} may not transfer it", key.name)),
                (Some(z), None) if !switchboard_domain::tsig::unsigned_transfer_allowed(z, request.src().ip()) => {
                    Some("unsigned, and the client is not in the zone's [transfer] allow".to_string())
                }
                _ => None,
            };
            if let Some(why) = refusal {
                self.shard().transfer(xfr, XfrOutcome::Refused);
                if request.protocol() == Protocol::Tcp {
                    tracing::info!(zone = %apex, client = %request.src(), transport = ?self.transport, reason = %why, "zone transfer refused");
                }
                // A signed zone's refusal says why in an Extended DNS Error
                // (RFC 8914: 18, Prohibited), which kdig and dig print.
                let explained = edns.clone().filter(|_| state.signed_zone(&apex).is_some()).map(|mut e| {
                    let text = [&EDE_PROHIBITED.to_be_bytes()[..], why.as_bytes()].concat();
                    e.options_mut().insert(EdnsOption::Unknown(EDE_OPTION, text));
                    e
                });
                let builder = match &explained {
                    Some(e) => MessageResponseBuilder::new(queries, Some(e)),
                    None => builder,
                };
                let msg = builder.error_msg(&request.metadata, ResponseCode::NotAuth);
                return response.send_response(msg).await.unwrap_or_else(|_| info_for(request, ResponseCode::ServFail));
            }
            if qtype_code == QTYPE_AXFR && request.protocol() == Protocol::Udp {
                // AXFR is a TCP protocol (RFC 5936 §4.2): NOTIMP, once the
                // client was found allowed (a refusal comes first, as above).
                let msg = builder.error_msg(&request.metadata, ResponseCode::NotImp);
                return response.send_response(msg).await.unwrap_or_else(|_| info_for(request, ResponseCode::ServFail));
            }
            return self.transfer(request, queries, edns.as_ref(), state, apex, xfr, reserve, signed_by.as_ref(), &mut response).await;
        }

        let query = &request.queries.queries()[0];
        let asked: &hickory_proto::rr::Name = query.name();
        let qname = convert::qname(asked);
        let qtype = RType::from_code(u16::from(query.query_type()));
        let state = self.state.load();
        let answer = resolve(&state, &qname, qtype);

        let mut metadata = Metadata::response_from_request(&request.metadata);
        metadata.authoritative = answer.authoritative;
        metadata.response_code = match answer.rcode {
            Rcode::NoError => ResponseCode::NoError,
            Rcode::NxDomain => ResponseCode::NXDomain,
            Rcode::Refused => ResponseCode::Refused,
        };
        let verdict = self.limit(request, class_of(&answer), &cookie);
        if verdict != Verdict::Send {
            return self.withhold(verdict, request, builder, metadata.response_code, &cookie, response).await;
        }
        let to_wire =
            |rs: &[switchboard_domain::Record]| -> Vec<Record> { rs.iter().filter_map(|r| convert::record(r, &qname, asked)).collect() };
        let mut sections =
            Sections { answers: to_wire(&answer.answers), authority: to_wire(&answer.authority), additional: to_wire(&answer.additional) };
        let signed = (dnssec_ok && state.signs_any())
            .then(|| {
                let question = dnssec::Asked { qname: &qname, name: asked, qtype };
                self.shared.signer.sign(&state, question, &answer, &mut sections.answers, &mut sections.authority)
            })
            .flatten();
        drop(state);
        if signed.as_ref().is_some_and(|s| s.nxdomain_denied) {
            metadata.response_code = ResponseCode::NoError;
        }
        // Room is left for the TSIG record of a signed response.
        let limit = request.edns.as_ref().map_or(UDP_PAYLOAD_MIN, |e| e.max_payload().clamp(UDP_PAYLOAD_MIN, UDP_PAYLOAD_MAX));
        let limit = limit.saturating_sub(u16::try_from(reserve).unwrap_or(u16::MAX));
        // Header, question, OPT (with a cookie) and uncompressed records:
        // most answers are certain to fit without encoding them twice.
        let opt_size = edns.as_ref().map_or(0, |e| 11 + e.options().as_ref().iter().map(|(_, o)| 4 + usize::from(o.len())).sum::<usize>());
        let bound = 12
            + queries.as_bytes().len()
            + opt_size
            + [&answer.answers, &answer.authority, &answer.additional].iter().flat_map(|rs| rs.iter()).map(wire_size_max).sum::<usize>()
            // Records owned by the question's name go out with the name as
            // asked: longer than its domain form when labels were masked.
            + if qname.contains('#') {
                let extra = (asked.len() + 1).saturating_sub(qname.len() + 1);
                [&answer.answers, &answer.authority, &answer.additional].iter().flat_map(|rs| rs.iter()).filter(|r| r.name == qname).count() * extra
            } else {
                0
            };
        // The records signing added (RRSIG, NSEC), at their exact
        // uncompressed size, so most signed answers are encoded once too.
        let bound =
            bound + if signed.is_some() { dnssec::added_size(&sections.answers) + dnssec::added_size(&sections.authority) } else { 0 };
        if request.protocol() == Protocol::Udp && bound > usize::from(limit) {
            let referral = !answer.authoritative && answer.rcode == Rcode::NoError;
            sections = fit_udp(queries, &mut metadata, sections, edns.as_ref(), limit, referral);
        }
        let Sections { answers, authority, additional } = &sections;
        let msg = builder.build(metadata, answers.iter(), authority.iter(), std::iter::empty(), additional.iter());
        match response.send_response(msg).await {
            Ok(info) => info,
            Err(e) => {
                tracing::debug!(error = %e, "sending DNS response");
                info_for(request, ResponseCode::ServFail)
            }
        }
    }
}
