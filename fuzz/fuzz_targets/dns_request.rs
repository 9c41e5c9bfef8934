//! Any bytes as a DNS request, over UDP and over TCP, into Switchboard's
//! real handler over a populated state (with a TSIG key and a zone the
//! fuzzer's address may transfer): it answers or stays silent, never
//! panics, and every answer parses, carries the request's id, and fits the
//! UDP size the request allows; only a transfer over TCP has several.
//! Over UDP and over TCP (as TLS and QUIC answer), whatever the fast path
//! answers must be the full path's answer byte for byte. A second zone is signed, so DO=1 queries reach the signer.
#![no_main]

use std::net::SocketAddr;
use std::sync::{Arc, LazyLock};

use arc_swap::ArcSwap;
use hickory_proto::op::{Message, MessageType};
use libfuzzer_sys::fuzz_target;
use switchboard_dns::Handler;

mod state;
use state::state;

static HANDLER: LazyLock<Handler> = LazyLock::new(|| Handler::new(Arc::new(ArcSwap::from_pointee(state()))));
static RUNTIME: LazyLock<tokio::runtime::Runtime> =
    LazyLock::new(|| tokio::runtime::Builder::new_current_thread().build().expect("a current-thread runtime"));

fn run(data: &[u8], tcp: bool) {
    // From inside the zone's [transfer] allow: transfers run too.
    let src: SocketAddr = "192.0.2.1:5353".parse().unwrap();
    let Ok(request) = Message::from_vec(data) else {
        // Unparseable: FORMERR with the id, or silence for what is not a query.
        let sent = RUNTIME.block_on(HANDLER.answer_message(data, src, tcp));
        assert!(sent.len() <= 1);
        return;
    };
    let sent = RUNTIME.block_on(HANDLER.answer_message(data, src, tcp));
    // What the fast path answers, the full path answers byte for byte,
    // over UDP and over a stream (TCP, TLS, QUIC).
    if let Some(fast) = HANDLER.answer_message_fast(data, src, tcp) {
        let full = RUNTIME.block_on(HANDLER.answer_message_full(data, src, tcp));
        assert_eq!(full, vec![fast], "the fast path's answer differs from the full path's (tcp: {tcp})");
    }
    if request.metadata.message_type == MessageType::Response {
        assert!(sent.is_empty(), "a response was answered");
        return;
    }
    let transfer = request.queries.first().is_some_and(|q| matches!(u16::from(q.query_type()), 251 | 252));
    assert!(sent.len() <= 1 || (tcp && transfer), "{} responses to one request", sent.len());
    for bytes in sent.iter() {
        let response = Message::from_vec(bytes).unwrap_or_else(|e| panic!("our response does not parse: {e}"));
        assert_eq!(response.metadata.id, request.metadata.id);
        assert_eq!(response.metadata.message_type, MessageType::Response);
        if !tcp {
            let limit = request.edns.as_ref().map_or(512, |e| usize::from(e.max_payload().clamp(512, switchboard_dns::UDP_PAYLOAD_MAX)));
            assert!(bytes.len() <= limit, "{} bytes over UDP, limit {limit}", bytes.len());
        } else {
            assert!(bytes.len() <= usize::from(u16::MAX), "{} bytes over TCP", bytes.len());
        }
    }
}

fuzz_target!(|data: &[u8]| {
    run(data, false);
    run(data, true);
});
