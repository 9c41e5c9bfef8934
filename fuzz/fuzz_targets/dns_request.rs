//! Any bytes as a DNS request, over UDP and over TCP, into Switchboard's
//! real handler over a populated state: it answers or stays silent, never
//! panics, and every answer parses, carries the request's id, and fits the
//! UDP size the request allows.
#![no_main]

use std::net::SocketAddr;
use std::sync::{Arc, LazyLock, Mutex};

use arc_swap::ArcSwap;
use hickory_proto::op::{Message, MessageType};
use hickory_proto::rr::Record;
use hickory_proto::serialize::binary::BinEncoder;
use hickory_server::net::runtime::TokioTime;
use hickory_server::net::xfer::Protocol;
use hickory_server::net::NetError;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponse;
use libfuzzer_sys::fuzz_target;
use switchboard_dns::Handler;
use switchboard_domain::{Cluster, Command, Envelope, RecordSpec, Rule, Soa, State, ZoneSpec};

const APEX: &str = "apps.example.test.";

/// A zone with both rule kinds, static records of every type, a
/// delegation, a CNAME loop, and tenants on clusters with and without
/// addresses.
fn state() -> State {
    let record = |name: &str, rtype: &str, data: &str| RecordSpec { name: name.into(), rtype: rtype.into(), ttl: None, data: data.into() };
    let zone = ZoneSpec {
        apex: APEX.into(),
        environment: "prod".into(),
        ttl: 300,
        ns: vec![format!("ns1.{APEX}"), "ns2.example.net.".into()],
        soa: Soa {
            mname: format!("ns1.{APEX}"),
            rname: "hostmaster.example.test.".into(),
            refresh: 3600,
            retry: 600,
            expire: 604_800,
            minimum: 60,
        },
        rules: vec![
            Rule::ServiceTenant { services: vec!["ws".into(), "api".into()], target: format!("{{service}}-{{cluster}}.{APEX}"), ttl: None },
            Rule::TenantHost { ttl: Some(60) },
        ],
        records: vec![
            record("ns1", "A", "192.0.2.53"),
            record("@", "MX", "10 mail"),
            record("mail", "A", "192.0.2.25"),
            record("@", "TXT", "\"v=spf1 -all\""),
            record("@", "CAA", "0 issue \"ca.example\""),
            record("_sip._tcp", "SRV", "0 5 5060 mail"),
            record("ws-mt1", "A", "198.51.100.1"),
            record(
                "big",
                "TXT",
                &format!(
                    "\"{}\" \"{}\" \"{}\" \"{}\" \"{}\"",
                    "a".repeat(250),
                    "b".repeat(250),
                    "c".repeat(250),
                    "d".repeat(250),
                    "e".repeat(250)
                ),
            ),
            record("l1", "CNAME", "l2"),
            record("l2", "CNAME", "l1"),
            record("sub", "NS", "ns.sub"),
            record("ns.sub", "A", "192.0.2.99"),
            record("a.b.deep", "TXT", "x"),
        ],
    };
    let mut commands = vec![
        Command::PutZone { zone },
        Command::PutCluster {
            cluster: Cluster {
                ipv4: vec![[198, 51, 100, 1].into(), [198, 51, 100, 2].into()],
                ipv6: vec!["2001:db8::1".parse().unwrap()],
                ..Cluster::new("mt1")
            },
        },
        Command::PutCluster { cluster: Cluster { hostname: Some(format!("ws-mt1.{APEX}")), ..Cluster::new("mt2") } },
    ];
    for i in 0..50 {
        commands.push(Command::CreateTenant { id: format!("t{i}"), cluster: Some(if i % 2 == 0 { "mt1" } else { "mt2" }.into()) });
    }
    let mut state = State::default();
    for (i, command) in commands.into_iter().enumerate() {
        let (result, _) = state.apply(i as u64 + 1, &Envelope { at_ms: 0, command, guard: Default::default() });
        assert!(result.is_ok(), "fuzz state set-up: {result:?}");
    }
    state
}

static HANDLER: LazyLock<Handler> = LazyLock::new(|| Handler::new(Arc::new(ArcSwap::from_pointee(state()))));
static RUNTIME: LazyLock<tokio::runtime::Runtime> =
    LazyLock::new(|| tokio::runtime::Builder::new_current_thread().build().expect("a current-thread runtime"));

/// Keeps the encoded response instead of sending it, encoded as hickory's
/// own server does for the protocol.
#[derive(Clone)]
struct Capture {
    protocol: Protocol,
    sent: Arc<Mutex<Vec<Vec<u8>>>>,
}

#[async_trait::async_trait]
impl ResponseHandler for Capture {
    async fn send_response<'a>(
        &mut self,
        response: MessageResponse<
            '_,
            'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
        >,
    ) -> Result<ResponseInfo, NetError> {
        let mut bytes = Vec::new();
        let mut encoder = BinEncoder::new(&mut bytes);
        encoder.set_max_size(match self.protocol {
            Protocol::Udp => response.edns().map_or(512, |e| e.max_payload()),
            _ => u16::MAX,
        });
        let info = response.destructive_emit(&mut encoder).map_err(|e| NetError::from(e.to_string()))?;
        self.sent.lock().unwrap().push(bytes);
        Ok(info)
    }
}

fn run(data: &[u8], protocol: Protocol) {
    let src: SocketAddr = "192.0.2.1:5353".parse().unwrap();
    // What hickory's server does before a handler sees a request: bytes
    // that do not parse get FORMERR from hickory itself, responses are dropped.
    let Ok(request) = Request::from_bytes(data.to_vec(), src, protocol) else { return };
    if request.metadata.message_type == MessageType::Response {
        return;
    }
    let capture = Capture { protocol, sent: Arc::default() };
    RUNTIME.block_on(HANDLER.handle_request::<_, TokioTime>(&request, capture.clone()));
    let sent = capture.sent.lock().unwrap();
    assert!(sent.len() <= 1, "{} responses to one request", sent.len());
    for bytes in sent.iter() {
        let response = Message::from_vec(bytes).unwrap_or_else(|e| panic!("our response does not parse: {e}"));
        assert_eq!(response.metadata.id, request.metadata.id);
        assert_eq!(response.metadata.message_type, MessageType::Response);
        if protocol == Protocol::Udp {
            let limit = request.edns.as_ref().map_or(512, |e| usize::from(e.max_payload().clamp(512, switchboard_dns::UDP_PAYLOAD_MAX)));
            assert!(bytes.len() <= limit, "{} bytes over UDP, limit {limit}", bytes.len());
        }
    }
}

fuzz_target!(|data: &[u8]| {
    run(data, Protocol::Udp);
    run(data, Protocol::Tcp);
});
