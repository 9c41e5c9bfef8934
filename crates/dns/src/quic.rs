//! DNS over QUIC (RFC 9250), on quinn with the TLS set-up of `tls`.
//!
//! One query per bidirectional stream, as the RFC has it: the client sends
//! a 2-byte length, the message (its ID 0) and FIN; we answer on the same
//! stream, length-prefixed, and finish it; a zone transfer's messages all
//! go on its stream. Anything else on a stream (a frame
//! whose length is not what came, bytes after the message, a non-zero ID)
//! is a protocol error that closes the connection with
//! DOQ_PROTOCOL_ERROR (§4.3.3). Each query is answered by the same handler,
//! fast path first, as over TCP.
//!
//! Bounds: the DoT listener's (connections in all and per source, the
//! handshake rate per source and its timeout, the idle timeout, enforced
//! by QUIC's own idle timer), plus streams open at once per connection.

use std::net::SocketAddr;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Instant;

use rustls::pki_types::CertificateDer;
use tokio::io::AsyncWriteExt;

use crate::tap::Transport;
use crate::tcp::{self, TcpCounters, Writer};
use crate::tls::{self, Admission, TlsLimits};
use crate::{fast, DnsError, Handler};

/// The application error code of a protocol error (RFC 9250 §4.3).
const DOQ_PROTOCOL_ERROR: u32 = 0x2;

/// Streams a client may have open at once on one connection.
const STREAMS_PER_CONNECTION_MAX: u32 = 100;

/// Why the bytes of a DoQ stream are not one query (RFC 9250 §4.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DoqFrameError {
    #[error("the stream ended before its 2-byte length")]
    NoLength,
    #[error("the length says {said} bytes and {came} came")]
    Length { said: usize, came: usize },
    #[error("the message ID is {0}, and must be 0 over QUIC")]
    MessageId(u16),
}

/// The DNS message in what a client sent on one stream: the 2-byte length
/// and exactly that many bytes, the ID 0 (a message too short to hold an
/// ID is left to the handler, which drops it).
pub fn doq_message(stream: &[u8]) -> Result<&[u8], DoqFrameError> {
    let [l0, l1, message @ ..] = stream else { return Err(DoqFrameError::NoLength) };
    let said = usize::from(u16::from_be_bytes([*l0, *l1]));
    if message.len() != said {
        return Err(DoqFrameError::Length { said, came: message.len() });
    }
    match message {
        [i0, i1, ..] if [*i0, *i1] != [0, 0] => Err(DoqFrameError::MessageId(u16::from_be_bytes([*i0, *i1]))),
        _ => Ok(message),
    }
}

/// A quinn endpoint on `socket` serving DoQ with `config` (ALPN "doq").
/// Call on the runtime that will serve it.
pub(crate) fn endpoint(
    socket: std::net::UdpSocket,
    config: Arc<rustls::ServerConfig>,
    limits: TlsLimits,
) -> Result<quinn::Endpoint, DnsError> {
    let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(config).map_err(|e| tls::TlsError::Setup(e.to_string()))?;
    let mut transport = quinn::TransportConfig::default();
    transport.max_concurrent_bidi_streams(STREAMS_PER_CONNECTION_MAX.into());
    transport.max_concurrent_uni_streams(0u32.into());
    let idle = quinn::IdleTimeout::try_from(limits.idle_timeout).map_err(|e| tls::TlsError::Setup(e.to_string()))?;
    transport.max_idle_timeout(Some(idle));
    let mut server = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    server.transport_config(Arc::new(transport));
    let addr = socket.local_addr().map_err(|source| DnsError::Bind { proto: "quic", addr: SocketAddr::from(([0, 0, 0, 0], 0)), source })?;
    socket.set_nonblocking(true).map_err(|source| DnsError::Bind { proto: "quic", addr, source })?;
    let runtime = Arc::new(quinn::TokioRuntime);
    quinn::Endpoint::new(quinn::EndpointConfig::default(), Some(server), socket, runtime).map_err(|source| DnsError::Bind {
        proto: "quic",
        addr,
        source,
    })
}

/// Accept and serve DoQ connections until the endpoint closes.
pub(crate) async fn serve(endpoint: quinn::Endpoint, handler: Handler, limits: TlsLimits, counters: Arc<TcpCounters>) {
    let admission = Admission::new(&limits, counters.clone());
    let server = endpoint.local_addr().unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
    while let Some(incoming) = endpoint.accept().await {
        let peer = incoming.remote_address();
        let Some(place) = admission.admit(peer.ip()) else {
            incoming.refuse();
            continue;
        };
        let (handler, counters) = (handler.clone(), counters.clone());
        tokio::spawn(async move {
            let connecting = async { incoming.accept()?.await };
            let Some(connection) = tls::handshake(&counters, limits.handshake_timeout, peer, "DoQ", connecting).await else { return };
            let presented = connection.peer_identity().and_then(|id| id.downcast::<Vec<CertificateDer<'static>>>().ok());
            let handler = handler.for_connection(Transport::Doq, tls::client_key(presented.as_deref().map(Vec::as_slice)));
            while let Ok((send, recv)) = connection.accept_bi().await {
                tokio::spawn(stream(handler.clone(), connection.clone(), send, recv, peer, server, limits));
            }
            drop(place);
        });
    }
}

/// Answer the query on one stream.
async fn stream(
    handler: Handler,
    connection: quinn::Connection,
    send: quinn::SendStream,
    mut recv: quinn::RecvStream,
    peer: SocketAddr,
    server: SocketAddr,
    limits: TlsLimits,
) {
    let bytes = match tokio::time::timeout(limits.idle_timeout, recv.read_to_end(2 + usize::from(u16::MAX))).await {
        Ok(Ok(bytes)) => bytes,
        Ok(Err(quinn::ReadToEndError::TooLong)) => {
            handler.shard().malformed();
            connection.close(DOQ_PROTOCOL_ERROR.into(), b"a query stream holds one message of at most 65535 bytes");
            return;
        }
        // Cancelled by the client, the connection gone, or never finished:
        // nothing to answer.
        Ok(Err(_)) | Err(_) => return,
    };
    let message = match doq_message(&bytes) {
        Ok(m) => m.to_vec(),
        Err(e) => {
            handler.shard().malformed();
            tracing::debug!(client = %peer, error = %e, "DoQ protocol error");
            connection.close(DOQ_PROTOCOL_ERROR.into(), e.to_string().as_bytes());
            return;
        }
    };
    let received = Instant::now();
    let half: tcp::Half = Arc::new(tokio::sync::Mutex::new(Box::new(send)));
    let writer = Writer {
        half: half.clone(),
        peer,
        transport: Transport::Doq,
        tapped: None,
        signer: None,
        closing: Arc::new(AtomicBool::new(false)),
    };
    let (mut scratch, mut out) = (fast::Scratch::default(), Vec::new());
    // A response that could not be written (the client cancelled the
    // stream) leaves the connection as it is.
    if tcp::answer(&handler, message, server, writer, &mut scratch, &mut out).await {
        // Shutting the stream down sends what was written and finishes the
        // stream: the client reads FIN.
        let _ = half.lock().await.shutdown().await;
        handler.shard().latency(received.elapsed());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stream_holds_one_length_prefixed_message_with_id_zero() {
        assert_eq!(doq_message(&[0, 3, 0, 0, 9]), Ok(&[0u8, 0, 9][..]));
        assert_eq!(doq_message(&[0, 0]), Ok(&[][..]));
        assert_eq!(doq_message(&[]), Err(DoqFrameError::NoLength));
        assert_eq!(doq_message(&[0]), Err(DoqFrameError::NoLength));
        assert_eq!(doq_message(&[0, 4, 0, 0, 9]), Err(DoqFrameError::Length { said: 4, came: 3 }));
        assert_eq!(doq_message(&[0, 2, 0, 0, 9]), Err(DoqFrameError::Length { said: 2, came: 3 }));
        assert_eq!(doq_message(&[0, 3, 0x12, 0x34, 9]), Err(DoqFrameError::MessageId(0x1234)));
    }
}
