//! Any bytes as what a DNS over QUIC client sent on one stream (RFC 9250
//! §4.2), into the real framing and handler over the `dns_request` state:
//! what is not one length-prefixed message with ID 0 is a protocol error
//! (nothing answered); a message is answered as over TCP, every response
//! parses and carries ID 0, and what the fast path answers the full path
//! answers byte for byte.
#![no_main]

use std::net::SocketAddr;
use std::sync::{Arc, LazyLock};

use arc_swap::ArcSwap;
use hickory_proto::op::{Message, MessageType};
use libfuzzer_sys::fuzz_target;
use switchboard_dns::Handler;

#[allow(dead_code)]
mod state;

static HANDLER: LazyLock<Handler> = LazyLock::new(|| Handler::new(Arc::new(ArcSwap::from_pointee(state::state()))));
static RUNTIME: LazyLock<tokio::runtime::Runtime> =
    LazyLock::new(|| tokio::runtime::Builder::new_current_thread().build().expect("a current-thread runtime"));

fuzz_target!(|data: &[u8]| {
    let src: SocketAddr = "192.0.2.1:5353".parse().unwrap();
    let Ok(message) = switchboard_dns::doq_message(data) else { return };
    assert_eq!(usize::from(u16::from_be_bytes([data[0], data[1]])), message.len());
    assert!(message.len() < 2 || message[..2] == [0, 0], "a message with a non-zero ID was taken");
    let sent = RUNTIME.block_on(HANDLER.answer_message(message, src, true));
    if let Some(fast) = HANDLER.answer_message_fast(message, src, true) {
        let full = RUNTIME.block_on(HANDLER.answer_message_full(message, src, true));
        assert_eq!(full, vec![fast], "the fast path's answer differs from the full path's over a stream");
    }
    for bytes in &sent {
        let response = Message::from_vec(bytes).unwrap_or_else(|e| panic!("our response does not parse: {e}"));
        assert_eq!(response.metadata.id, 0, "a DoQ response carries the query's ID 0");
        assert_eq!(response.metadata.message_type, MessageType::Response);
    }
});
