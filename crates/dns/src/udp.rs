//! DNS over UDP, served by us rather than hickory-server's loop so that what
//! is never answered is decided before any parsing: a datagram shorter than
//! a header, or a response (QR=1), is dropped unread, so no one can bounce
//! traffic off us with forged responses. A query that cannot be parsed gets
//! FORMERR with its id. One receive loop per core shares the socket; each
//! answers from the same `Handler` as TCP, without spawning a task per query.

use std::net::SocketAddr;
use std::sync::Arc;

use std::time::Instant;

use hickory_proto::op::OpCode;
use hickory_server::net::xfer::Protocol;
use hickory_server::net::NetError;
use hickory_server::server::{Request, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponse;
use tokio::net::UdpSocket;

use crate::tap::{Tapped, Transport};
use crate::tcp::format_error;
use crate::tsig::Signer;
use crate::{Handler, Respond, UDP_PAYLOAD_MAX};

/// Largest datagram read: a query is far smaller, and a longer one is not
/// a query we could answer.
const DATAGRAM_BYTES_MAX: usize = 4096;

/// Answer queries on `socket` with `loops` receive loops until aborted.
pub(crate) async fn serve(socket: UdpSocket, handler: Handler, loops: usize) {
    let socket = Arc::new(socket);
    let tasks: Vec<_> =
        (0..loops.max(1)).map(|i| tokio::spawn(receive(socket.clone(), handler.for_transport(Transport::Udp, i)))).collect();
    let _abort_all = AbortOnDrop(tasks);
    std::future::pending::<()>().await;
}

struct AbortOnDrop(Vec<tokio::task::JoinHandle<()>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        for t in &self.0 {
            t.abort();
        }
    }
}

async fn receive(socket: Arc<UdpSocket>, handler: Handler) {
    let mut buf = vec![0u8; DATAGRAM_BYTES_MAX];
    let server = socket.local_addr().unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
    loop {
        let (n, peer) = match socket.recv_from(&mut buf).await {
            Ok(r) => r,
            // ICMP errors of earlier sends and the like: nothing to do with
            // the next datagram.
            // A lasting error must not spin: pause a moment.
            Err(e) => {
                tracing::debug!(error = %e, "dns udp receive");
                tokio::time::sleep(std::time::Duration::from_millis(1)).await;
                continue;
            }
        };
        let received = Instant::now();
        let Some(message) = buf.get(..n) else { continue };
        if message.len() < 12 || message[2] & 0x80 != 0 {
            handler.shard().dropped(message.len() < 12);
            continue;
        }
        let header = [message[0], message[1], message[2]];
        match Request::from_bytes(message.to_vec(), peer, Protocol::Udp) {
            Ok(request) => {
                let tapped = Tapped::query(handler.tap(), &handler.shard().tap_seen, Transport::Udp, peer, server, request.as_slice());
                let reply = Reply { socket: socket.clone(), peer, tapped, signer: None };
                if request.metadata.op_code == OpCode::Update {
                    // An UPDATE is answered once it commits: on a task of its
                    // own, so the queries behind it never wait for consensus.
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
                    continue;
                }
                handler.answer(&request, reply).await;
            }
            Err(_) => {
                handler.shard().malformed();
                let _ = socket.send_to(&format_error(header), peer).await;
            }
        }
        handler.shard().latency(received.elapsed());
    }
}

/// Sends one response datagram to the querier. The handler has already
/// fitted the response to the querier's payload size (truncating it with
/// TC=1 when needed); the encoder refuses anything above our maximum.
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
        self.socket.send_to(&bytes, self.peer).await.map_err(NetError::from)?;
        if let Some(tapped) = self.tapped.take() {
            tapped.response(Transport::Udp, self.peer, bytes);
        }
        Ok(info)
    }
}
