//! DNS over TCP (RFC 7766), served by us rather than hickory-server's
//! listener so that every resource is bounded: connections in total and
//! per source address (past either, a new connection is closed at once and
//! counted), an idle timeout, and an accept loop that backs off when the
//! process is out of file descriptors instead of spinning on EMFILE.
//! Each message is answered by the same `Handler` as UDP, on the fast path
//! when it takes the query. The connection loop serves DNS over TLS too
//! (`tls`), over the TLS stream instead of the TCP one.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hickory_server::net::xfer::Protocol;
use hickory_server::net::NetError;
use hickory_server::server::{Request, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponse;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::tap::{Tapped, Transport};
use crate::tsig::Signer;
use crate::{fast, Handler, Respond, Step};

/// Limits of the TCP listener, from the node config.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpLimits {
    /// Connections open at once.
    pub connections_max: usize,
    /// Connections open at once from one source address.
    pub connections_per_source_max: usize,
    /// A connection that sends nothing for this long is closed.
    pub idle_timeout: Duration,
}

impl Default for TcpLimits {
    fn default() -> Self {
        TcpLimits { connections_max: 512, connections_per_source_max: 64, idle_timeout: Duration::from_secs(10) }
    }
}

/// What a stream listener (TCP, DoT, DoQ) counted, for logs and metrics.
#[derive(Debug, Default)]
pub struct TcpCounters {
    /// Connections open now.
    pub open: AtomicU64,
    /// Connections closed at accept because a limit was reached.
    pub refused: AtomicU64,
    /// Times accept failed for want of file descriptors (and waited).
    pub accept_backoffs: AtomicU64,
    /// DoT and DoQ: connections closed at accept because their source
    /// was past its rate of handshakes.
    pub rate_limited: AtomicU64,
    /// DoT and DoQ: TLS handshakes completed, failed, and given up.
    pub handshakes_ok: AtomicU64,
    pub handshakes_failed: AtomicU64,
    pub handshakes_timed_out: AtomicU64,
}

/// The first and the longest wait after accept fails for want of descriptors.
const ACCEPT_BACKOFF_FIRST: Duration = Duration::from_millis(10);
const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);

/// The next connection on `listener` (`what` names it in logs). When the
/// process is out of descriptors it waits, 10 ms doubling to 1 s, counting
/// each wait in `backoffs`: retrying at once would spin a core while
/// nothing can change, and descriptors come back as connections close.
/// Every listener of the node accepts through this.
pub async fn accept(listener: &TcpListener, what: &'static str, backoffs: &AtomicU64) -> (TcpStream, SocketAddr) {
    let mut backoff = ACCEPT_BACKOFF_FIRST;
    loop {
        match listener.accept().await {
            Ok(accepted) => return accepted,
            Err(e) if out_of_descriptors(&e) => {
                backoffs.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(error = %e, listener = what, wait_ms = backoff.as_millis() as u64, "accept: out of file descriptors");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(ACCEPT_BACKOFF_MAX);
            }
            Err(e) => tracing::debug!(error = %e, listener = what, "accept"),
        }
    }
}

/// Open connections per source address.
type Sources = Arc<Mutex<HashMap<IpAddr, usize>>>;

/// Accept and serve connections until the task is dropped.
pub(crate) async fn serve(listener: TcpListener, handler: Handler, limits: TcpLimits, counters: Arc<TcpCounters>) {
    let places = Places::new(limits.connections_max, limits.connections_per_source_max, counters.clone());
    loop {
        let (stream, peer) = accept(&listener, "dns", &counters.accept_backoffs).await;
        let Some(place) = places.admit(peer.ip()) else {
            // Closing it now gives its descriptor back; the client retries or goes.
            counters.refused.fetch_add(1, Ordering::Relaxed);
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let server = stream.local_addr().unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
        tokio::spawn(connection(stream, peer, server, handler.clone(), limits.idle_timeout, place));
    }
}

/// The places of a listener: connections in all and per source address.
#[derive(Clone)]
pub(crate) struct Places {
    open: Arc<Semaphore>,
    sources: Sources,
    per_source_max: usize,
    counters: Arc<TcpCounters>,
}

impl Places {
    pub(crate) fn new(connections_max: usize, per_source_max: usize, counters: Arc<TcpCounters>) -> Places {
        Places { open: Arc::new(Semaphore::new(connections_max)), sources: Arc::default(), per_source_max, counters }
    }

    /// A place for one more connection from `ip`, or `None` past a limit.
    pub(crate) fn admit(&self, ip: IpAddr) -> Option<Place> {
        let permit = self.open.clone().try_acquire_owned().ok()?;
        let mut held = self.sources.lock().ok()?;
        if held.get(&ip).is_some_and(|n| *n >= self.per_source_max) {
            return None;
        }
        *held.entry(ip).or_default() += 1;
        self.counters.open.fetch_add(1, Ordering::Relaxed);
        Some(Place { _permit: permit, sources: self.sources.clone(), ip, counters: self.counters.clone() })
    }
}

/// One admitted connection; dropping it gives its places back.
pub(crate) struct Place {
    _permit: OwnedSemaphorePermit,
    sources: Sources,
    ip: IpAddr,
    counters: Arc<TcpCounters>,
}

impl Drop for Place {
    fn drop(&mut self) {
        self.counters.open.fetch_sub(1, Ordering::Relaxed);
        let Ok(mut held) = self.sources.lock() else { return };
        if let Some(n) = held.get_mut(&self.ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                held.remove(&self.ip);
            }
        }
    }
}

/// Whether accept failed for want of descriptors or buffers.
fn out_of_descriptors(e: &std::io::Error) -> bool {
    // EMFILE (24), ENFILE (23), ENOBUFS (105), ENOMEM (12) on Linux.
    matches!(e.raw_os_error(), Some(24 | 23 | 105 | 12))
}

/// Read length-prefixed messages (RFC 1035 §4.2.2) and answer each in turn,
/// until the client closes, sends nothing for `idle`, or sends a frame that
/// cannot be a DNS message. `stream` is a TCP connection, or a TLS session
/// over one (the handler's transport says which); `server` is our address.
pub(crate) async fn connection<S>(stream: S, peer: SocketAddr, server: SocketAddr, handler: Handler, idle: Duration, _place: Place)
where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let (rd, wr) = tokio::io::split(stream);
    // Buffered both ways, so that queries a client sends back to back are
    // answered with one write (one TLS record, one syscall) rather than
    // one each: what was written is flushed once no whole query waits.
    let mut rd = tokio::io::BufReader::with_capacity(STREAM_BUFFER, rd);
    let half: Half = Arc::new(tokio::sync::Mutex::new(Box::new(tokio::io::BufWriter::with_capacity(STREAM_BUFFER, wr))));
    // Set by a response that must be the last on this connection.
    let closing = Arc::new(AtomicBool::new(false));
    let mut scratch = fast::Scratch::default();
    let mut out = Vec::with_capacity(512);
    loop {
        let mut len = [0u8; 2];
        if !matches!(tokio::time::timeout(idle, rd.read_exact(&mut len)).await, Ok(Ok(_))) {
            return;
        }
        let mut message = vec![0u8; usize::from(u16::from_be_bytes(len))];
        if !matches!(tokio::time::timeout(idle, rd.read_exact(&mut message)).await, Ok(Ok(_))) {
            return;
        }
        let received = Instant::now();
        let writer =
            Writer { half: half.clone(), peer, transport: handler.transport(), tapped: None, signer: None, closing: closing.clone() };
        if !answer(&handler, message, server, writer, &mut scratch, &mut out).await {
            return;
        }
        if !whole_message(rd.buffer()) && !flush(&half).await {
            return;
        }
        handler.shard().latency(received.elapsed());
        if closing.load(Ordering::Relaxed) {
            return;
        }
    }
}

/// Bytes read ahead of, and written behind, a stream connection's messages.
const STREAM_BUFFER: usize = 4 * 1024;

/// Whether `buffered` starts with a whole length-prefixed message.
fn whole_message(buffered: &[u8]) -> bool {
    match buffered {
        [l0, l1, rest @ ..] => rest.len() >= usize::from(u16::from_be_bytes([*l0, *l1])),
        _ => false,
    }
}

/// Send what was written to `half`; `false` when the connection is to go.
async fn flush(half: &Half) -> bool {
    let flush = async { half.lock().await.flush().await };
    matches!(tokio::time::timeout(WRITE_TIMEOUT, flush).await, Ok(Ok(())))
}

/// Answer one message that came over a stream transport through `writer`:
/// on the fast path when it takes it, else the full path. `false` when the
/// connection is to be closed (the response could not be written).
pub(crate) async fn answer(
    handler: &Handler,
    message: Vec<u8>,
    server: SocketAddr,
    mut writer: Writer,
    scratch: &mut fast::Scratch,
    out: &mut Vec<u8>,
) -> bool {
    let peer = writer.peer;
    // Shorter than a header: nothing to answer; a response (QR=1):
    // never answered, so no one can reflect traffic through us.
    if message.len() < 12 || message[2] & 0x80 != 0 {
        handler.shard().dropped(message.len() < 12);
        return true;
    }
    match handler.answer_fast_counted(&message, peer, server, scratch, out) {
        // Sent with the caller's next flush.
        Step::Send => return writer.write(out).await.is_ok(),
        Step::Withheld => return true,
        Step::HandOver => {}
    }
    let header = [message[0], message[1], message[2]];
    match Request::from_bytes(message, peer, Protocol::Tcp) {
        Ok(request) => {
            writer.tapped = Tapped::query(handler.tap(), &handler.shard().tap_seen, writer.transport, peer, server, request.as_slice());
            // Boxed: the full path's future is large, and every query on
            // a QUIC stream is a task of its own, moved at each spawn.
            Box::pin(handler.answer(&request, writer)).await;
            true
        }
        Err(_) => {
            handler.shard().malformed();
            writer.send(&format_error(header)).await.is_ok()
        }
    }
}

/// FORMERR for a message whose header was read but not the rest, from its
/// first three bytes: its id and opcode, QR set, no sections (RFC 1035 §4.1.1).
pub(crate) fn format_error(first: [u8; 3]) -> Vec<u8> {
    let mut header = [0u8; 12];
    header[..2].copy_from_slice(&first[..2]);
    header[2] = 0x80 | (first[2] & 0x78);
    header[3] = 1;
    header.to_vec()
}

/// The write half of a connection (TCP, TLS, or one QUIC stream).
pub(crate) type Half = Arc<tokio::sync::Mutex<Box<dyn AsyncWrite + Send + Unpin>>>;

#[derive(Clone)]
/// The write half of a connection, shared by the responses to its
/// messages, for the response to one message.
pub(crate) struct Writer {
    pub(crate) half: Half,
    pub(crate) peer: SocketAddr,
    pub(crate) transport: Transport,
    /// Set when the query was tapped: the response is too.
    pub(crate) tapped: Option<Tapped>,
    /// Set when the query was signed (TSIG): every response message is too.
    pub(crate) signer: Option<Signer>,
    /// Set to close the connection after this response.
    pub(crate) closing: Arc<AtomicBool>,
}

/// A response the client does not read within this long is given up, and
/// the connection with it (a stalled secondary must not hold a transfer's
/// place for ever).
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);

impl Writer {
    /// Send one message with its length prefix.
    pub(crate) async fn send(&self, bytes: &[u8]) -> std::io::Result<()> {
        self.put(bytes, true).await
    }

    /// Write one message with its length prefix, to be sent with the next
    /// flush (TCP and TLS buffer what is written; a QUIC stream does not).
    pub(crate) async fn write(&self, bytes: &[u8]) -> std::io::Result<()> {
        self.put(bytes, false).await
    }

    async fn put(&self, bytes: &[u8], flush: bool) -> std::io::Result<()> {
        let len = u16::try_from(bytes.len()).map_err(|_| std::io::Error::other("a DNS message over 65535 bytes"))?;
        let mut framed = Vec::with_capacity(bytes.len() + 2);
        framed.extend_from_slice(&len.to_be_bytes());
        framed.extend_from_slice(bytes);
        let write = async {
            let mut half = self.half.lock().await;
            half.write_all(&framed).await?;
            if flush {
                half.flush().await?;
            }
            Ok(())
        };
        tokio::time::timeout(WRITE_TIMEOUT, write)
            .await
            .unwrap_or_else(|_| Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "the client read nothing for 30 s")))
    }
}

impl Respond for Writer {
    fn sign_with(&mut self, signer: Signer) {
        self.signer = Some(signer);
    }

    fn close(&mut self) {
        self.closing.store(true, Ordering::Relaxed);
    }
}

#[async_trait::async_trait]
impl ResponseHandler for Writer {
    async fn send_response<'a>(
        &mut self,
        response: MessageResponse<
            '_,
            'a,
            impl Iterator<Item = &'a hickory_proto::rr::Record> + Send + 'a,
            impl Iterator<Item = &'a hickory_proto::rr::Record> + Send + 'a,
            impl Iterator<Item = &'a hickory_proto::rr::Record> + Send + 'a,
            impl Iterator<Item = &'a hickory_proto::rr::Record> + Send + 'a,
        >,
    ) -> Result<ResponseInfo, NetError> {
        let (bytes, info) = crate::emit(response, u16::MAX, &mut self.signer)?;
        self.send(&bytes).await.map_err(NetError::from)?;
        if let Some(tapped) = self.tapped.take() {
            tapped.response(self.transport, self.peer, bytes);
        }
        Ok(info)
    }
}
