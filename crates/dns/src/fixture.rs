//! Test support, shared by this crate's unit tests and the fuzz targets
//! (not part of the API): states built the way a node builds them, by
//! applying commands in order, from a zone skeleton, records, Ed25519
//! signing keys made here and TSIG keys. Every function panics on a
//! refused set-up command: its input is the test's own.

use ring::rand::SystemRandom;
use ring::signature::{Ed25519KeyPair, KeyPair as _};
use switchboard_domain::dnssec::{KeyRole, KeyState, Secret, Step};
use switchboard_domain::tsig::{Algorithm, Allow};
use switchboard_domain::{Command, Envelope, RecordSpec, Scope, Soa, State, TsigKey, ZoneSpec};

/// The state after `commands`, applied at revisions 1, 2, … with the
/// leader's stamp 0.
pub fn state_of(commands: impl IntoIterator<Item = Command>) -> State {
    let mut state = State::default();
    for command in commands {
        apply(&mut state, command);
    }
    state
}

/// Apply `command` to `state` at the next revision.
pub fn apply(state: &mut State, command: Command) {
    let (revision, kind) = (state.revision() + 1, command.kind());
    let (result, _) = state.apply(revision, &Envelope { at_ms: 0, command, guard: Default::default() });
    if let Err(e) = result {
        panic!("set-up command at revision {revision} ({kind}) refused: {e}");
    }
}

/// A zone at `apex` in environment `prod`: TTL 300, `ns1.<apex>` and
/// `ns2.example.net.` as its name servers, an SOA of usual timers, no
/// rules, records or DNSSEC.
pub fn zone(apex: &str) -> ZoneSpec {
    ZoneSpec {
        apex: apex.into(),
        environment: "prod".into(),
        ttl: 300,
        ns: vec![format!("ns1.{apex}"), "ns2.example.net.".into()],
        soa: Soa {
            mname: format!("ns1.{apex}"),
            rname: "hostmaster.example.test.".into(),
            refresh: 3600,
            retry: 600,
            expire: 604_800,
            minimum: 60,
        },
        rules: Vec::new(),
        records: Vec::new(),
        transfer: Default::default(),
        catalog: false,
        dnssec: None,
    }
}

/// A static record of a zone, with the zone's TTL.
pub fn record(name: &str, rtype: &str, data: &str) -> RecordSpec {
    RecordSpec { name: name.into(), rtype: rtype.into(), ttl: None, data: data.into() }
}

/// The commands that give a zone with a `[dnssec]` policy an active
/// Ed25519 KSK and ZSK, made here (what the leader's key steps do).
pub fn signing_keys(apex: &str) -> Vec<Command> {
    [KeyRole::Ksk, KeyRole::Zsk]
        .into_iter()
        .map(|role| {
            let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).unwrap_or_else(|e| panic!("an Ed25519 key: {e}"));
            let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap_or_else(|e| panic!("the key parses: {e}"));
            let public_key = pair.public_key().as_ref().to_vec();
            let step = Step::Generate { role, state: KeyState::Active, public_key, private_key: Secret(pkcs8.as_ref().to_vec()) };
            Command::DnssecStep { apex: apex.into(), step }
        })
        .collect()
}

/// A TSIG key of every scope, allowed `allow`.
pub fn tsig_key(name: &str, algorithm: Algorithm, secret: &[u8], allow: Allow) -> TsigKey {
    TsigKey { name: name.into(), algorithm, secret: secret.to_vec(), scope: Scope::All, allow, created_at_ms: 0, revision: 0 }
}
