//! The RFC 2136 UPDATE and TSIG path, past the MAC check: any bytes, signed
//! by the target with the state's key at the current time (as a client with
//! the key would), into Switchboard's real handler, whose control plane here
//! applies the update to the state it serves. It never panics; a refused
//! update leaves the state exactly as it was (but for the request-id window);
//! every response parses, carries the request's id and a TSIG record. Each
//! message is sent twice (UDP, then TCP): the second is a replay, and gets
//! the first one's RCODE without changing anything.
#![no_main]

use std::net::SocketAddr;
use std::sync::{Arc, LazyLock, Mutex};

use arc_swap::ArcSwap;
use hickory_proto::op::{Message, MessageType};
use hmac::{Hmac, Mac};
use libfuzzer_sys::fuzz_target;
use switchboard_dns::{Handler, Options, Submit, Submitted, UpdateLimit};
use switchboard_domain::model::Transfer;
use switchboard_domain::tsig::{Algorithm, Allow};
use switchboard_domain::{Actor, Cluster, Command, Envelope, Guard, Kind, RecordSpec, Rule, Scope, Soa, State, TsigKey, Value, ZoneSpec};

const APEX: &str = "apps.example.test.";
const SECRET: &[u8] = b"switchboard-fuzz-update-secret!!";

fn state() -> State {
    let zone = ZoneSpec {
        apex: APEX.into(),
        environment: "prod".into(),
        ttl: 300,
        ns: vec![format!("ns1.{APEX}")],
        soa: Soa { mname: format!("ns1.{APEX}"), rname: "h.example.test.".into(), refresh: 3600, retry: 600, expire: 604_800, minimum: 60 },
        rules: vec![
            Rule::ServiceTenant { services: vec!["ws".into()], target: "{service}-{cluster}.example.test.".into(), ttl: None },
            Rule::TenantHost { ttl: Some(60) },
            Rule::Acme { validation_zone: None },
        ],
        records: vec![RecordSpec { name: "www".into(), rtype: "A".into(), ttl: None, data: "192.0.2.80".into() }],
        transfer: Transfer::default(),
        catalog: false,
        dnssec: None,
    };
    let key = |name: &str, scope: Scope| TsigKey {
        name: name.into(),
        algorithm: Algorithm::HmacSha256,
        secret: SECRET.to_vec(),
        scope,
        allow: Allow { transfer: false, update: true },
        created_at_ms: 0,
        revision: 0,
    };
    let mut commands = vec![
        Command::PutZone { zone },
        Command::PutCluster { cluster: Cluster { ipv4: vec![[198, 51, 100, 1].into()], ..Cluster::new("mt1") } },
    ];
    for i in 0..10 {
        commands.push(Command::CreateTenant { id: format!("t{i}"), cluster: Some("mt1".into()) });
    }
    commands.push(Command::CreateTsigKey { key: key("fuzz-key.", Scope::All) });
    commands.push(Command::CreateTsigKey { key: key("fuzz-t1.", Scope::Tenant("t1".into())) });
    let mut state = State::default();
    for (i, command) in commands.into_iter().enumerate() {
        let (result, _) = state.apply(i as u64 + 1, &Envelope { at_ms: 0, command, guard: Guard::default() });
        assert!(result.is_ok(), "fuzz state set-up: {result:?}");
    }
    state
}

/// Applies what the handler submits to the state it serves, under the
/// request id the handler made from the message's MAC (as the node does),
/// and checks that a refused update changed nothing but that window.
#[derive(Debug)]
struct Apply {
    published: Arc<ArcSwap<State>>,
    lock: Mutex<()>,
}

#[async_trait::async_trait]
impl Submit for Apply {
    async fn submit(&self, command: Command, actor: Actor, request_id: String) -> Submitted {
        let _one_at_a_time = self.lock.lock().unwrap();
        let mut state = (*self.published.load_full()).clone();
        let not_window = |v: &Value| !matches!(v, Value::Request(_));
        let before: Vec<Value> = state.values().filter(not_window).collect();
        let revision = state.revision() + 1;
        let guard = Guard { actor, request_id: Some(request_id), ..Guard::default() };
        let (result, effects) = state.apply(revision, &Envelope { at_ms: 0, command, guard });
        let changed: Vec<_> = effects.iter().filter(|e| e.kind != Kind::Request).collect();
        let submitted = match result {
            Ok(switchboard_domain::Outcome::Replayed { .. }) => {
                assert!(changed.is_empty(), "a replayed update has effects: {changed:?}");
                Submitted::Applied
            }
            Ok(_) => Submitted::Applied,
            Err(e) => {
                assert!(changed.is_empty(), "a refused update has effects: {changed:?}");
                assert!(state.values().filter(not_window).eq(before.into_iter()), "a refused update changed the state: {e}");
                Submitted::Refused(e)
            }
        };
        self.published.store(Arc::new(state));
        submitted
    }
}

static HANDLER: LazyLock<Handler> = LazyLock::new(|| {
    // A fresh state for every run would be slow; the one state drifts as
    // updates apply, as a real zone does.
    let published = Arc::new(ArcSwap::from_pointee(state()));
    let apply = Arc::new(Apply { published: published.clone(), lock: Mutex::new(()) });
    // No rate bound: every input should reach apply, however many came before.
    let update_limit = Some(UpdateLimit { per_minute: 0, burst: 0 });
    Handler::with(published, Options { updates: Some(apply), update_limit, ..Options::default() })
});
static RUNTIME: LazyLock<tokio::runtime::Runtime> =
    LazyLock::new(|| tokio::runtime::Builder::new_current_thread().enable_time().build().expect("a current-thread runtime"));

fn wire(name: &str) -> Vec<u8> {
    let mut w = Vec::new();
    for l in name.trim_end_matches('.').split('.') {
        w.push(l.len() as u8);
        w.extend_from_slice(l.as_bytes());
    }
    w.push(0);
    w
}

/// `msg` with a TSIG record signed by `key` now (RFC 8945 §4.3).
fn sign(msg: &[u8], key: &str) -> Vec<u8> {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (key, alg) = (wire(key), wire("hmac-sha256."));
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(SECRET).unwrap();
    mac.update(msg);
    mac.update(&key);
    mac.update(&[0, 255, 0, 0, 0, 0]);
    mac.update(&alg);
    mac.update(&now.to_be_bytes()[2..]);
    mac.update(&[1, 44, 0, 0, 0, 0]);
    let mac = mac.finalize().into_bytes();
    let mut rdata = alg;
    rdata.extend_from_slice(&now.to_be_bytes()[2..]);
    rdata.extend_from_slice(&[1, 44, 0, mac.len() as u8]);
    rdata.extend_from_slice(&mac);
    rdata.extend_from_slice(&msg[..2]);
    rdata.extend_from_slice(&[0, 0, 0, 0]);
    let mut out = msg.to_vec();
    out.extend_from_slice(&key);
    out.extend_from_slice(&[0, 250, 0, 255, 0, 0, 0, 0]);
    out.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
    out.extend_from_slice(&rdata);
    let ar = u16::from_be_bytes([out[10], out[11]]).wrapping_add(1);
    out[10..12].copy_from_slice(&ar.to_be_bytes());
    out
}

fuzz_target!(|data: &[u8]| {
    // The first byte picks the key (every zone, or tenant t1's); the rest is the message.
    let Some((&pick, body)) = data.split_first() else { return };
    if body.len() < 12 || body[2] & 0x80 != 0 {
        return;
    }
    let signed = sign(body, if pick & 1 == 0 { "fuzz-key." } else { "fuzz-t1." });
    let src: SocketAddr = "192.0.2.1:5353".parse().unwrap();
    let mut rcodes = Vec::new();
    for tcp in [false, true] {
        let sent = RUNTIME.block_on(HANDLER.answer_message(&signed, src, tcp));
        let Ok(request) = Message::from_vec(&signed) else { continue };
        assert!(sent.len() <= 1, "{} responses to one update", sent.len());
        if request.metadata.op_code == hickory_proto::op::OpCode::Update {
            rcodes.extend(sent.iter().filter_map(|b| Message::from_vec(b).ok()).map(|m| m.metadata.response_code));
        }
        for bytes in &sent {
            let response = Message::from_vec(bytes).unwrap_or_else(|e| panic!("our response does not parse: {e}"));
            assert_eq!(response.metadata.id, request.metadata.id);
            assert_eq!(response.metadata.message_type, MessageType::Response);
            // Verified (the target signed it as a client would): signed back,
            // unless the message around the signature could not be read.
            // (Bytes past the counted records are not part of the message:
            // a signature there is none, and the message unsigned.)
            let tsig = |m: &Message| m.signature().is_some() || m.additionals.last().is_some_and(|r| r.record_type() == hickory_proto::rr::RecordType::TSIG);
            if tsig(&request) && response.metadata.response_code != hickory_proto::op::ResponseCode::FormErr {
                assert!(tsig(&response), "an answer to a signed message went unsigned: {response:?}");
            }
        }
    }
    // The TCP copy is a replay of the UDP one: the same answer.
    if let [first, replayed] = rcodes[..] {
        assert_eq!(first, replayed, "a replayed update was answered otherwise");
    }
});
