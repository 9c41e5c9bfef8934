//! DNS over UDP, served by us rather than hickory-server's loop.
//!
//! Worker threads (one per core by default), each owning a socket of its
//! own bound to the DNS port with `SO_REUSEPORT`, so the kernel spreads
//! clients over them and no two workers contend for one receive queue.
//! Each worker takes what has arrived in one `recvmmsg` (up to `BATCH`
//! datagrams, blocking only for the first), answers each, and sends the
//! fast path's answers together with one `sendmmsg`: under load, two
//! system calls serve a batch; idle, a query is answered as soon as it
//! comes. No task or lock per query. Before answering a batch the worker
//! warms the tenants its questions probably name (`KeyHints`,
//! `State::warm_tenants`), so their cache misses overlap instead of
//! coming one query at a time.
//!
//! What is never answered is decided before any parsing: a datagram
//! shorter than a header, or a response (QR=1), is dropped unread, so no
//! one can bounce traffic off us with forged responses. The common query
//! is answered by the fast path (`fast`), straight from its bytes; every
//! other message goes to the full path (`Handler::answer`, hickory-proto
//! parsing and encoding) on the same thread, through the DNS runtime's
//! handle: its answers come from the same state and never wait for I/O,
//! save an UPDATE, which waits for its commit on a task of its own.

use std::io::{IoSlice, IoSliceMut};
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::socket::{recvmmsg, sendmmsg, MsgFlags, MultiHeaders, SockaddrStorage};

use hickory_proto::op::OpCode;
use hickory_server::net::xfer::Protocol;
use hickory_server::net::NetError;
use hickory_server::server::{Request, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponse;

use crate::fast::{KeyHints, Scratch};
use crate::tap::{Tapped, Transport};
use crate::tcp::format_error;
use crate::tsig::Signer;
use crate::Step;
use crate::{Handler, Respond, UDP_PAYLOAD_MAX};

/// Largest datagram read: a query is far smaller, and a longer one is not
/// a query we could answer.
const DATAGRAM_BYTES_MAX: usize = 4096;
/// Most datagrams taken (and answers sent) in one system call.
const BATCH: usize = 32;
/// How often a worker blocked on an idle socket looks whether to stop.
const STOP_CHECK: Duration = Duration::from_millis(200);
/// A send that cannot go out within this long is given up (the socket's
/// buffer is full: the client will retry).
const SEND_TIMEOUT: Duration = Duration::from_millis(100);

/// A UDP socket bound to `addr` with `SO_REUSEPORT`, so that more can share
/// the port (one per worker).
pub(crate) fn bind(addr: SocketAddr) -> std::io::Result<UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    socket.set_reuse_port(true)?;
    socket.bind(&addr.into())?;
    socket.set_read_timeout(Some(STOP_CHECK))?;
    socket.set_write_timeout(Some(SEND_TIMEOUT))?;
    Ok(socket.into())
}

/// The running workers; dropping it stops them (each within `STOP_CHECK`).
pub(crate) struct Workers {
    stop: Arc<AtomicBool>,
}

impl Drop for Workers {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Answer queries arriving at `first`'s address with `workers` threads:
/// the first on `first`, each other on a socket of its own bound to the
/// same address (or, should that bind fail, a handle of `first`). Call on
/// the runtime the full path is to run on.
pub(crate) fn serve(first: UdpSocket, handler: Handler, workers: usize) -> std::io::Result<Workers> {
    let runtime = tokio::runtime::Handle::current();
    let addr = first.local_addr()?;
    let stop = Arc::new(AtomicBool::new(false));
    let mut sockets = vec![first];
    for i in 1..workers.max(1) {
        let socket = match bind(addr) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, worker = i, "binding a UDP socket of its own: sharing the first");
                sockets[0].try_clone()?
            }
        };
        sockets.push(socket);
    }
    for (i, socket) in sockets.into_iter().enumerate() {
        let worker = Worker {
            socket: Arc::new(socket),
            handler: handler.for_transport(Transport::Udp, i),
            runtime: runtime.clone(),
            stop: stop.clone(),
            server: addr,
        };
        std::thread::Builder::new().name(format!("dns-udp-{i}")).spawn(move || worker.run())?;
    }
    Ok(Workers { stop })
}

struct Worker {
    socket: Arc<UdpSocket>,
    handler: Handler,
    runtime: tokio::runtime::Handle,
    stop: Arc<AtomicBool>,
    server: SocketAddr,
}

/// A worker's buffers, allocated once: the datagrams of a batch, their
/// senders, and the answers to send.
struct Batch {
    datagrams: Box<[[u8; DATAGRAM_BYTES_MAX]; BATCH]>,
    received: [(usize, Option<SocketAddr>); BATCH],
    receive_headers: MultiHeaders<SockaddrStorage>,
    answers: Vec<Vec<u8>>,
    /// The clients of `answers[..n]`.
    to: [Option<SockaddrStorage>; BATCH],
    send_headers: MultiHeaders<SockaddrStorage>,
    scratch: Scratch,
    hints: KeyHints,
}

impl Batch {
    fn new() -> Batch {
        Batch {
            datagrams: Box::new([[0; DATAGRAM_BYTES_MAX]; BATCH]),
            received: [(0, None); BATCH],
            receive_headers: MultiHeaders::preallocate(BATCH, None),
            answers: (0..BATCH).map(|_| Vec::with_capacity(usize::from(UDP_PAYLOAD_MAX))).collect(),
            to: [None; BATCH],
            send_headers: MultiHeaders::preallocate(BATCH, None),
            scratch: Scratch::default(),
            hints: KeyHints::default(),
        }
    }
}

/// The `std` form of an address `recvmmsg` filled in (none for a family
/// other than IPv4 and IPv6, which a UDP socket of ours never sees).
fn socket_addr(a: &SockaddrStorage) -> Option<SocketAddr> {
    a.as_sockaddr_in().map(|a| SocketAddr::from(*a)).or_else(|| a.as_sockaddr_in6().map(|a| SocketAddr::from(*a)))
}

impl Worker {
    fn run(self) {
        let mut batch = Batch::new();
        while !self.stop.load(Ordering::Relaxed) {
            let n = match self.receive(&mut batch) {
                Ok(n) => n,
                Err(Errno::EAGAIN | Errno::EINTR) => continue,
                // ICMP errors of earlier sends and the like: nothing to do
                // with the next datagram. A lasting error must not spin.
                Err(e) => {
                    tracing::debug!(error = %e, "dns udp receive");
                    std::thread::sleep(Duration::from_millis(1));
                    continue;
                }
            };
            let received = Instant::now();
            let mut answers = 0;
            let Batch { datagrams, received: senders, answers: outs, to, scratch, hints, .. } = &mut batch;
            if n > 1 {
                hints.clear();
                for (datagram, &(len, _)) in datagrams.iter().zip(senders.iter()).take(n) {
                    hints.guess(datagram.get(..len).unwrap_or_default());
                }
                self.handler.warm(hints);
            }
            for (datagram, &(len, peer)) in datagrams.iter().zip(senders.iter()).take(n) {
                let (Some(message), Some(peer)) = (datagram.get(..len), peer) else { continue };
                if message.len() < 12 || message[2] & 0x80 != 0 {
                    self.handler.shard().dropped(message.len() < 12);
                    continue;
                }
                let (Some(out), Some(slot)) = (outs.get_mut(answers), to.get_mut(answers)) else { continue };
                match self.handler.answer_fast_counted(message, peer, self.server, scratch, out) {
                    Step::Send => {
                        *slot = Some(SockaddrStorage::from(peer));
                        answers += 1;
                    }
                    Step::Withheld => self.handler.shard().latency(received.elapsed()),
                    Step::HandOver => {
                        self.runtime.block_on(self.answer_full(message, peer));
                        self.handler.shard().latency(received.elapsed());
                    }
                }
            }
            self.send(&mut batch, answers);
            for _ in 0..answers {
                self.handler.shard().latency(received.elapsed());
            }
        }
    }

    /// Take what has arrived, blocking (up to `STOP_CHECK`) for the first
    /// datagram only; the lengths and senders go to `batch.received`.
    fn receive(&self, batch: &mut Batch) -> Result<usize, Errno> {
        let mut slices = batch.datagrams.each_mut().map(|d| [IoSliceMut::new(d)]);
        let results = recvmmsg(self.socket.as_raw_fd(), &mut batch.receive_headers, slices.iter_mut(), MsgFlags::MSG_WAITFORONE, None)?;
        let mut n = 0;
        for (message, slot) in results.zip(batch.received.iter_mut()) {
            *slot = (message.bytes, message.address.as_ref().and_then(socket_addr));
            n += 1;
        }
        Ok(n)
    }

    /// Send `batch.answers[..n]` to their clients, as few calls as the
    /// socket takes. An answer the socket refuses is given up (the
    /// client will retry); the rest still go.
    fn send(&self, batch: &mut Batch, n: usize) {
        let slices: [[IoSlice<'_>; 1]; BATCH] =
            std::array::from_fn(|i| [IoSlice::new(batch.answers.get(i).map_or(&[][..], Vec::as_slice))]);
        let mut start = 0;
        while start < n {
            let (Some(slices), Some(to)) = (slices.get(start..n), batch.to.get(start..n)) else { return };
            match sendmmsg(self.socket.as_raw_fd(), &mut batch.send_headers, slices, to, [], MsgFlags::empty()) {
                Ok(sent) => start += sent.count().max(1),
                Err(Errno::EINTR) => {}
                Err(e) => {
                    tracing::debug!(error = %e, client = ?to.first().and_then(|a| a.as_ref()).and_then(socket_addr), "sending DNS response");
                    start += 1;
                }
            }
        }
    }

    /// Answer `message` on the full path.
    async fn answer_full(&self, message: &[u8], peer: SocketAddr) {
        let handler = &self.handler;
        let header = [message[0], message[1], message[2]];
        let request = match Request::from_bytes(message.to_vec(), peer, Protocol::Udp) {
            Ok(r) => r,
            Err(_) => {
                handler.shard().malformed();
                let _ = self.socket.send_to(&format_error(header), peer);
                return;
            }
        };
        let tapped = Tapped::query(handler.tap(), &handler.shard().tap_seen, Transport::Udp, peer, self.server, request.as_slice());
        let reply = Reply { socket: self.socket.clone(), peer, tapped, signer: None };
        if request.metadata.op_code == OpCode::Update {
            // An UPDATE is answered once it commits: on a task of its own,
            // so the queries behind it never wait for consensus.
            match handler.shared.updates_in_flight.clone().try_acquire_owned() {
                Ok(permit) => {
                    let handler = handler.clone();
                    tokio::spawn(async move {
                        handler.answer(&request, reply).await;
                        drop(permit);
                    });
                }
                Err(_) => tracing::debug!(client = %peer, "UPDATE dropped: too many in flight"),
            }
            return;
        }
        handler.answer(&request, reply).await;
    }
}

/// Sends one response datagram to the querier. The handler has already
/// fitted the response to the querier's payload size (truncating it with
/// TC=1 when needed); the encoder refuses anything above our maximum. The
/// socket is the worker's own (blocking; a send waits at most
/// `SEND_TIMEOUT`).
#[derive(Clone)]
struct Reply {
    socket: Arc<UdpSocket>,
    peer: SocketAddr,
    /// Set when the query was tapped: the response is too.
    tapped: Option<Tapped>,
    /// Set when the query was signed (TSIG): the response is too.
    signer: Option<Signer>,
}

impl Respond for Reply {
    fn sign_with(&mut self, signer: Signer) {
        self.signer = Some(signer);
    }
}

#[async_trait::async_trait]
impl ResponseHandler for Reply {
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
        let (bytes, info) = crate::emit(response, UDP_PAYLOAD_MAX, &mut self.signer)?;
        self.socket.send_to(&bytes, self.peer).map_err(NetError::from)?;
        if let Some(tapped) = self.tapped.take() {
            tapped.response(Transport::Udp, self.peer, bytes);
        }
        Ok(info)
    }
}
