//! The JSON shape of every view, pinned: each is compared with a literal
//! (what `--json` printed before the views existed) and with the old
//! hand-written encoders of `client.rs`, kept here as the oracle.

use serde_json::{json, Value};
use switchboard_proto::v1 as proto;

use super::*;

fn as_json(view: &impl Serialize) -> String {
    serde_json::to_value(view).unwrap().to_string()
}

// --- the encoders of client.rs, verbatim ---------------------------------------

fn old_members_json(members: &[proto::Member]) -> Value {
    Value::Array(members.iter().map(|m| json!({"id": m.id, "peer": m.peer, "api": m.api, "voter": m.voter})).collect())
}

fn old_status_json(s: &proto::StatusResponse) -> Value {
    json!({
        "node_id": s.node_id, "role": s.role, "leader_id": s.leader_id, "leader_api": s.leader_api, "term": s.term,
        "last_log_index": s.last_log_index, "applied_revision": s.applied_revision, "staleness_ms": s.staleness_ms, "ready": s.ready,
        "snapshot_revision": s.snapshot_revision, "purged_revision": s.purged_revision,
        "zones": s.zones, "clusters": s.clusters, "tenants": s.tenants,
    })
}

fn old_zone_json(z: &proto::Zone) -> Value {
    let soa = z.soa.clone().unwrap_or_default();
    json!({
        "apex": z.apex, "environment": z.environment, "ttl": z.ttl, "ns": z.ns, "serial": z.serial, "revision": z.revision,
        "soa": {"mname": soa.mname, "rname": soa.rname, "refresh": soa.refresh, "retry": soa.retry, "expire": soa.expire, "minimum": soa.minimum},
        "rules": z.rules.iter().map(|r| match &r.kind {
            Some(proto::rule::Kind::ServiceTenant(s)) => json!({"kind": "service-tenant", "services": s.services, "target": s.target, "ttl": s.ttl}),
            Some(proto::rule::Kind::TenantHost(h)) => json!({"kind": "tenant-host", "ttl": h.ttl}),
            Some(proto::rule::Kind::Acme(a)) => json!({"kind": "acme", "validation_zone": a.validation_zone}),
            None => Value::Null,
        }).collect::<Vec<_>>(),
        "records": z.records.iter().map(|r| json!({"name": r.name, "type": r.r#type, "ttl": r.ttl, "data": r.data})).collect::<Vec<_>>(),
        "transfer": z.transfer.as_ref().map(|t| json!({"notify": t.notify, "allow": t.allow, "tls": t.tls, "cert_keys": t.cert_keys})),
        "catalog": z.catalog,
        // Added with signed zones; null for the unsigned zone pinned here.
        "dnssec": Value::Null,
    })
}

fn old_state_name(s: i32) -> &'static str {
    match proto::ClusterState::try_from(s) {
        Ok(proto::ClusterState::Draining) => "draining",
        Ok(proto::ClusterState::Down) => "down",
        _ => "active",
    }
}

fn old_cluster_json(c: &proto::Cluster) -> Value {
    // With what health checks added (the sample has no check, failover or serving cluster).
    json!({"id": c.id, "ipv4": c.ipv4, "ipv6": c.ipv6, "hostname": c.hostname, "dedicated": c.dedicated, "weight": c.weight, "state": old_state_name(c.state), "tenants": c.tenants, "revision": c.revision,
        "health": c.health, "down": c.down, "fail_closed": c.fail_closed})
}

fn old_tenant_json(t: &proto::Tenant) -> Value {
    json!({
        "id": t.id, "cluster": t.cluster, "pinned": t.pinned, "aliases": t.aliases, "revision": t.revision,
        "history": t.history.iter().map(|h| json!({"from": h.from, "to": h.to, "revision": h.revision, "at_ms": h.at_ms})).collect::<Vec<_>>(),
    })
}

fn old_challenge_json(c: &proto::Challenge) -> Value {
    json!({
        "name": c.name, "revision": c.revision,
        "values": c.values.iter().map(|v| json!({"value": v.value, "ttl": v.ttl, "expires_at_ms": v.expires_at_ms})).collect::<Vec<_>>(),
    })
}

fn old_credential_json(c: &proto::Credential) -> Value {
    json!({
        "id": c.id, "name": c.name, "role": c.role, "environments": c.environments, "zones": c.zones, "tenant": c.tenant,
        "created_at_ms": c.created_at_ms, "revision": c.revision,
    })
}

const KINDS: [(&str, proto::Kind); 5] = [
    ("zone", proto::Kind::Zone),
    ("cluster", proto::Kind::Cluster),
    ("tenant", proto::Kind::Tenant),
    ("acme", proto::Kind::Acme),
    ("move", proto::Kind::Move),
];

fn old_event_json(e: &proto::Event) -> Value {
    use proto::event::Value as V;
    let kind = KINDS.iter().find(|(_, k)| *k as i32 == e.kind).map_or("unknown", |(name, _)| name);
    let value = match &e.value {
        Some(V::Zone(z)) => old_zone_json(z),
        Some(V::Cluster(c)) => {
            json!({"id": c.id, "ipv4": c.ipv4, "ipv6": c.ipv6, "hostname": c.hostname, "revision": c.revision, "health": c.health})
        }
        Some(V::Tenant(t)) => old_tenant_json(t),
        Some(V::Challenge(c)) => old_challenge_json(c),
        // Staged moves came after the old encoders: shown as they are.
        Some(V::Move(m)) => json!({
            "tenant": m.tenant, "from": m.from, "to": m.to, "ttl": m.ttl, "old_ttl": m.old_ttl, "step": m.step,
            "since_ms": m.since_ms, "due_ms": m.due_ms, "revision": m.revision,
        }),
        None => Value::Null,
    };
    json!({"revision": e.revision, "kind": kind, "key": e.key, "deleted": e.deleted, "previous_cluster": e.previous_cluster, "value": value})
}

// --- sample messages -----------------------------------------------------------

fn zone() -> proto::Zone {
    proto::Zone {
        apex: "apps.example.test.".into(),
        environment: "prod".into(),
        ttl: Some(300),
        ns: vec!["ns1.example.test.".into()],
        soa: Some(proto::Soa {
            mname: "ns1.example.test.".into(),
            rname: "h.example.test.".into(),
            refresh: Some(3600),
            ..Default::default()
        }),
        rules: vec![
            proto::Rule {
                kind: Some(proto::rule::Kind::ServiceTenant(proto::ServiceTenantRule {
                    services: vec!["ws".into()],
                    target: "{service}-{cluster}.example.test.".into(),
                    ttl: None,
                })),
            },
            proto::Rule { kind: Some(proto::rule::Kind::TenantHost(proto::TenantHostRule { ttl: Some(60) })) },
            proto::Rule { kind: Some(proto::rule::Kind::Acme(proto::AcmeRule { validation_zone: String::new() })) },
            proto::Rule { kind: None },
        ],
        records: vec![proto::StaticRecord { name: "www".into(), r#type: "A".into(), ttl: None, data: "192.0.2.80".into() }],
        revision: 7,
        serial: 2024,
        transfer: None,
        catalog: false,
        dnssec: None,
    }
}

fn cluster() -> proto::Cluster {
    proto::Cluster {
        id: "mt1".into(),
        ipv4: vec!["198.51.100.1".into()],
        ipv6: vec![],
        hostname: String::new(),
        dedicated: true,
        weight: None,
        state: proto::ClusterState::Draining as i32,
        revision: 3,
        tenants: 12,
        health: "healthy".into(),
        ..Default::default()
    }
}

fn tenant() -> proto::Tenant {
    proto::Tenant {
        id: "t1".into(),
        cluster: "mt2".into(),
        pinned: false,
        aliases: vec!["t1-alias".into()],
        history: vec![proto::Tombstone { from: "mt1".into(), to: "mt2".into(), revision: 9, at_ms: 1_700_000_000_000 }],
        revision: 9,
        staged: None,
    }
}

fn challenge() -> proto::Challenge {
    proto::Challenge {
        name: "_acme-challenge.t1.apps.example.test.".into(),
        values: vec![proto::ChallengeValue { value: "tok".into(), ttl: 60, expires_at_ms: 5 }],
        revision: 11,
    }
}

fn credential() -> proto::Credential {
    proto::Credential {
        id: "c1".into(),
        name: "ops".into(),
        role: "operator".into(),
        environments: vec!["staging".into()],
        zones: vec![],
        tenant: String::new(),
        created_at_ms: 42,
        revision: 4,
    }
}

fn status(id: u64, staleness_ms: Option<u64>) -> proto::StatusResponse {
    proto::StatusResponse {
        node_id: id,
        role: "leader".into(),
        leader_id: 1,
        leader_api: "127.0.0.1:50051".into(),
        term: 2,
        last_log_index: 20,
        applied_revision: 18,
        zones: 1,
        clusters: 2,
        tenants: 3,
        staleness_ms,
        ready: true,
        snapshot_revision: 10,
        purged_revision: 5,
        upstream: String::new(),
        upstream_id: 0,
        tree: vec![],
        members: vec![
            proto::Member { id: 1, peer: "127.0.0.1:7001".into(), api: "127.0.0.1:50051".into(), voter: true },
            proto::Member { id: 2, peer: "127.0.0.1:7002".into(), api: "127.0.0.1:50052".into(), voter: false },
        ],
    }
}

// --- literals --------------------------------------------------------------------

#[test]
fn zone_json_is_pinned() {
    assert_eq!(
        as_json(&ZoneView::from(&zone())),
        concat!(
            r#"{"apex":"apps.example.test.","catalog":false,"dnssec":null,"environment":"prod","ns":["ns1.example.test."],"#,
            r#""records":[{"data":"192.0.2.80","name":"www","ttl":null,"type":"A"}],"revision":7,"#,
            r#""rules":[{"kind":"service-tenant","services":["ws"],"target":"{service}-{cluster}.example.test.","ttl":null},"#,
            r#"{"kind":"tenant-host","ttl":60},{"kind":"acme","validation_zone":""},null],"#,
            r#""serial":2024,"soa":{"expire":null,"minimum":null,"mname":"ns1.example.test.","refresh":3600,"retry":null,"rname":"h.example.test."},"#,
            r#""transfer":null,"ttl":300}"#
        )
    );
    // A zone without a SOA still prints one, empty.
    let bare = as_json(&ZoneView::from(&proto::Zone::default()));
    assert!(bare.contains(r#""soa":{"expire":null,"minimum":null,"mname":"","refresh":null,"retry":null,"rname":""}"#), "{bare}");
}

#[test]
fn cluster_and_tenant_json_are_pinned() {
    assert_eq!(
        as_json(&ClusterWritten { revision: 4, cluster: (&cluster()).into() }),
        r#"{"cluster":{"dedicated":true,"down":[],"fail_closed":false,"health":"healthy","hostname":"","id":"mt1","ipv4":["198.51.100.1"],"ipv6":[],"revision":3,"state":"draining","tenants":12,"weight":null},"revision":4}"#
    );
    assert_eq!(
        as_json(&TenantWritten { revision: 9, tenant: (&tenant()).into() }),
        r#"{"revision":9,"tenant":{"aliases":["t1-alias"],"cluster":"mt2","history":[{"at_ms":1700000000000,"from":"mt1","revision":9,"to":"mt2"}],"id":"t1","pinned":false,"revision":9}}"#
    );
    assert_eq!(as_json(&Deleted { deleted: "t1".into(), revision: 12 }), r#"{"deleted":"t1","revision":12}"#);
}

#[test]
fn tenant_get_shows_a_tombstones_time_as_rfc3339_and_json_keeps_ms() {
    let t = tenant();
    assert_eq!(tombstone_line(&t.history[0]), "mt1 -> mt2 at revision 9 (2023-11-14T22:13:20.000Z)");
    assert!(as_json(&TenantView::from(&t)).contains(r#""at_ms":1700000000000"#));
    assert_eq!(rfc3339_ms(0), "1970-01-01T00:00:00.000Z");
    assert_eq!(rfc3339_ms(253_402_300_799_999), "9999-12-31T23:59:59.999Z");
    // Past what RFC 3339 can write, a server's value is printed, not a panic.
    assert_eq!(rfc3339_ms(u64::MAX), "18446744073709551615 ms since the epoch");
}

#[test]
fn status_json_is_pinned() {
    let s = status(1, None);
    let view = NodeStatus {
        node: (&s).into(),
        members: members(&s.members),
        member_status: vec![
            MemberStatus::Reached { status: (&status(1, Some(3))).into(), lag: 2 },
            MemberStatus::Unreachable { node_id: 2, error: "connection refused".into() },
        ],
        tree: vec![],
    };
    let expected = concat!(
        r#"{"applied_revision":18,"clusters":2,"last_log_index":20,"leader_api":"127.0.0.1:50051","leader_id":1,"#,
        r#""member_status":[{"applied_revision":18,"clusters":2,"lag":2,"last_log_index":20,"leader_api":"127.0.0.1:50051","#,
        r#""leader_id":1,"node_id":1,"purged_revision":5,"ready":true,"role":"leader","snapshot_revision":10,"staleness_ms":3,"#,
        r#""tenants":3,"term":2,"zones":1},{"error":"connection refused","node_id":2}],"#,
        r#""members":[{"api":"127.0.0.1:50051","id":1,"peer":"127.0.0.1:7001","voter":true},"#,
        r#"{"api":"127.0.0.1:50052","id":2,"peer":"127.0.0.1:7002","voter":false}],"#,
        r#""node_id":1,"purged_revision":5,"ready":true,"role":"leader","snapshot_revision":10,"staleness_ms":null,"#,
        r#""tenants":3,"term":2,"zones":1}"#
    );
    assert_eq!(as_json(&view), expected);
    // bench/run-cluster and run-dns grep these out of the compact output.
    assert!(as_json(&members(&s.members)).contains(r#""id":2"#));
    assert!(as_json(&view).contains(r#""role":"leader""#));
}

#[test]
fn watch_event_json_is_pinned() {
    let e = proto::Event {
        revision: 5,
        kind: proto::Kind::Cluster as i32,
        key: "mt1".into(),
        deleted: false,
        previous_cluster: String::new(),
        value: Some(proto::event::Value::Cluster(cluster())),
    };
    assert_eq!(
        as_json(&EventView::from(&e)),
        r#"{"deleted":false,"key":"mt1","kind":"cluster","previous_cluster":"","revision":5,"value":{"health":"healthy","hostname":"","id":"mt1","ipv4":["198.51.100.1"],"ipv6":[],"revision":3}}"#
    );
    let gone = proto::Event { kind: 99, value: None, deleted: true, ..e };
    assert_eq!(
        as_json(&EventView::from(&gone)),
        r#"{"deleted":true,"key":"mt1","kind":"unknown","previous_cluster":"","revision":5,"value":null}"#
    );
    assert_eq!(as_json(&Compacted { compacted: true, revision: 8 }), r#"{"compacted":true,"revision":8}"#);
}

#[test]
fn acme_token_import_and_rebalance_json_are_pinned() {
    assert_eq!(
        as_json(&ChallengeWritten { revision: 11, challenge: Some((&challenge()).into()) }),
        r#"{"challenge":{"name":"_acme-challenge.t1.apps.example.test.","revision":11,"values":[{"expires_at_ms":5,"ttl":60,"value":"tok"}]},"revision":11}"#
    );
    assert_eq!(as_json(&ChallengeWritten { revision: 12, challenge: None }), r#"{"challenge":null,"revision":12}"#);
    assert_eq!(
        as_json(&CredentialCreated { revision: 4, credential: (&credential()).into(), token: "sbt_x".into() }),
        r#"{"credential":{"created_at_ms":42,"environments":["staging"],"id":"c1","name":"ops","revision":4,"role":"operator","tenant":"","zones":[]},"revision":4,"token":"sbt_x"}"#
    );
    let summary = ImportSummary {
        created: 2,
        existing: 5,
        rejected: 1,
        revision: 30,
        errors: vec![ImportErrorView { line: 3, id: "b_3".into(), error: "InvalidArgument: id".into() }],
    };
    assert_eq!(
        as_json(&summary),
        r#"{"created":2,"errors":[{"error":"InvalidArgument: id","id":"b_3","line":3}],"existing":5,"rejected":1,"revision":30}"#
    );
    let r = proto::RebalanceResponse {
        misplaced: 3,
        moves: vec![proto::Move { id: "t1".into(), from: "mt1".into(), to: "mt3".into(), revision: 0, error: String::new() }],
    };
    assert_eq!(
        as_json(&RebalanceView::from(&r)),
        r#"{"misplaced":3,"moves":[{"error":"","from":"mt1","id":"t1","revision":0,"to":"mt3"}]}"#
    );
    assert_eq!(
        as_json(&ZoneExported { apex: "a.test.".into(), revision: 2, bytes: 10, file: "/tmp/a.zone".into() }),
        r#"{"apex":"a.test.","bytes":10,"file":"/tmp/a.zone","revision":2}"#
    );
}

// --- against the old encoders ----------------------------------------------------

#[test]
fn views_match_the_old_encoders() {
    for z in [zone(), proto::Zone::default()] {
        assert_eq!(serde_json::to_value(ZoneView::from(&z)).unwrap(), old_zone_json(&z));
        let imported = ZoneImported { revision: 3, records: z.records.len(), zone: (&z).into() };
        assert_eq!(serde_json::to_value(imported).unwrap(), json!({"revision": 3, "records": z.records.len(), "zone": old_zone_json(&z)}));
    }
    for state in [0, 1, 2, 3, 42] {
        let c = proto::Cluster { state, ..cluster() };
        assert_eq!(serde_json::to_value(ClusterView::from(&c)).unwrap(), old_cluster_json(&c));
    }
    for t in [tenant(), proto::Tenant::default()] {
        assert_eq!(serde_json::to_value(TenantView::from(&t)).unwrap(), old_tenant_json(&t));
    }
    let c = challenge();
    let list = ChallengeList { revision: 11, challenges: vec![(&c).into()] };
    assert_eq!(serde_json::to_value(list).unwrap(), json!({"revision": 11, "challenges": [old_challenge_json(&c)]}));
    let cred = credential();
    let list = CredentialList { revision: 4, credentials: vec![(&cred).into()] };
    assert_eq!(serde_json::to_value(list).unwrap(), json!({"revision": 4, "credentials": [old_credential_json(&cred)]}));

    let s = status(1, Some(7));
    let written = MembersWritten { revision: 6, members: members(&s.members) };
    assert_eq!(serde_json::to_value(written).unwrap(), json!({"revision": 6, "members": old_members_json(&s.members)}));
    let mut old = old_status_json(&s);
    old["members"] = old_members_json(&s.members);
    let mut reached = old_status_json(&status(2, None));
    reached["lag"] = json!(4);
    old["member_status"] = json!([reached, {"node_id": 3, "error": "refused"}]);
    let view = NodeStatus {
        node: (&s).into(),
        members: members(&s.members),
        member_status: vec![
            MemberStatus::Reached { status: (&status(2, None)).into(), lag: 4 },
            MemberStatus::Unreachable { node_id: 3, error: "refused".into() },
        ],
        tree: vec![],
    };
    assert_eq!(serde_json::to_value(view).unwrap(), old);

    use proto::event::Value as V;
    let values = [None, Some(V::Zone(zone())), Some(V::Cluster(cluster())), Some(V::Tenant(tenant())), Some(V::Challenge(challenge()))];
    for (i, value) in values.into_iter().enumerate() {
        let e = proto::Event {
            revision: 40 + i as u64,
            kind: i as i32,
            key: "k".into(),
            deleted: i == 0,
            previous_cluster: "mt1".into(),
            value,
        };
        assert_eq!(serde_json::to_value(EventView::from(&e)).unwrap(), old_event_json(&e));
    }
}
