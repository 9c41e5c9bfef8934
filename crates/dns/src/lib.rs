//! Switchboard's DNS front end: a hickory-server `RequestHandler` that answers
//! from the published in-memory `State`.
//!
//! The query path loads the current state with one atomic pointer read
//! (`ArcSwap::load`), resolves with the pure domain resolver, and encodes.
//! It never touches RocksDB, the network or consensus, and holds no lock an
//! apply could hold: a stream of writes cannot make a query wait.

mod convert;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use hickory_proto::op::{Edns, Header, HeaderCounts, Metadata, OpCode, ResponseCode};
use hickory_proto::rr::{DNSClass, Record};
use hickory_server::net::runtime::Time;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponseBuilder;
use hickory_server::Server;
use switchboard_domain::{resolve, RType, Rcode, State};
use tokio::net::{TcpListener, UdpSocket};

/// Largest UDP response we send, whatever the client offers (the DNS flag
/// day 2020 value, safe from IP fragmentation).
pub const UDP_PAYLOAD_MAX: u16 = 1232;
/// A TCP connection with no request for this long is closed.
pub const TCP_IDLE_TIMEOUT: Duration = Duration::from_secs(10);
/// Per-connection buffer of outgoing TCP responses.
const TCP_RESPONSE_BUFFER: usize = 32;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DnsError {
    #[error("binding DNS {proto} on {addr}: {source}")]
    Bind { proto: &'static str, addr: SocketAddr, source: std::io::Error },
}

/// Answers queries from the state published by the state machine.
#[derive(Clone)]
pub struct Handler {
    state: Arc<ArcSwap<State>>,
}

impl Handler {
    pub fn new(state: Arc<ArcSwap<State>>) -> Handler {
        Handler { state }
    }
}

/// Bind UDP and TCP on `addr` and serve until the server is dropped or shut down.
pub async fn serve(addr: SocketAddr, handler: Handler) -> Result<(Server<Handler>, SocketAddr), DnsError> {
    let udp = UdpSocket::bind(addr).await.map_err(|source| DnsError::Bind { proto: "udp", addr, source })?;
    let bound = udp.local_addr().map_err(|source| DnsError::Bind { proto: "udp", addr, source })?;
    // TCP on the same port as UDP, also when the caller asked for port 0.
    let tcp = TcpListener::bind(bound).await.map_err(|source| DnsError::Bind { proto: "tcp", addr: bound, source })?;
    let mut server = Server::new(handler);
    server.register_socket(udp);
    server.register_listener(tcp, TCP_IDLE_TIMEOUT, TCP_RESPONSE_BUFFER);
    Ok((server, bound))
}

fn info_for(request: &Request, rcode: ResponseCode) -> ResponseInfo {
    let mut metadata = Metadata::response_from_request(&request.metadata);
    metadata.response_code = rcode;
    ResponseInfo::from(Header { metadata, counts: HeaderCounts::default() })
}

#[async_trait::async_trait]
impl RequestHandler for Handler {
    async fn handle_request<R: ResponseHandler, T: Time>(&self, request: &Request, mut response: R) -> ResponseInfo {
        // Our OPT: version 0, our payload size capped by the client's, so the
        // encoder truncates (TC) at whichever is smaller (RFC 6891 §6.2.5).
        let edns = request.edns.as_ref().map(|req| {
            let mut e = Edns::new();
            e.set_version(0);
            e.set_max_payload(req.max_payload().clamp(512, UDP_PAYLOAD_MAX));
            e
        });
        let builder = MessageResponseBuilder::new(&request.queries, edns.as_ref());

        let error = if request.edns.as_ref().is_some_and(|e| e.version() > 0) {
            Some(ResponseCode::BADVERS)
        } else if request.metadata.op_code != OpCode::Query {
            Some(ResponseCode::NotImp)
        } else if request.queries.len() != 1 {
            Some(ResponseCode::FormErr)
        } else {
            None
        };
        if let Some(rcode) = error {
            let msg = builder.error_msg(&request.metadata, rcode);
            return response.send_response(msg).await.unwrap_or_else(|_| info_for(request, ResponseCode::ServFail));
        }

        let query = &request.queries.queries()[0];
        if query.query_class() != DNSClass::IN {
            let msg = builder.error_msg(&request.metadata, ResponseCode::Refused);
            return response.send_response(msg).await.unwrap_or_else(|_| info_for(request, ResponseCode::ServFail));
        }

        let qname = query.name().to_string().to_ascii_lowercase();
        let qtype = RType::from_code(u16::from(query.query_type()));
        let state = self.state.load();
        let answer = resolve(&state, &qname, qtype);
        drop(state);

        let mut metadata = Metadata::response_from_request(&request.metadata);
        metadata.authoritative = answer.authoritative;
        metadata.response_code = match answer.rcode {
            Rcode::NoError => ResponseCode::NoError,
            Rcode::NxDomain => ResponseCode::NXDomain,
            Rcode::Refused => ResponseCode::Refused,
        };
        let to_wire = |rs: &[switchboard_domain::Record]| -> Vec<Record> { rs.iter().filter_map(convert::record).collect() };
        let answers = to_wire(&answer.answers);
        let authority = to_wire(&answer.authority);
        let additional = to_wire(&answer.additional);
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
