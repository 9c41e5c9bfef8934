//! Behaviour of apply and resolve together: what a client writes, what DNS answers.

use std::net::Ipv4Addr;

use crate::command::{Command, Envelope, Guard, Outcome};
use crate::error::CommandError;
use crate::model::{Cluster, RecordSpec, Rule, Soa, ZoneSpec};
use crate::record::{RData, RType};
use crate::resolve::{resolve, Rcode};
use crate::state::State;

const APEX: &str = "apps.example.test.";

fn zone() -> ZoneSpec {
    ZoneSpec {
        apex: APEX.into(),
        environment: "prod".into(),
        ttl: 300,
        ns: vec!["ns1.apps.example.test.".into(), "ns2.example.test.".into()],
        soa: Soa {
            mname: "ns1.example.test.".into(),
            rname: "hostmaster.example.test.".into(),
            refresh: 3600,
            retry: 600,
            expire: 604_800,
            minimum: 60,
        },
        rules: vec![
            Rule::ServiceTenant {
                services: vec!["ws".into(), "api".into()],
                target: "{service}-{cluster}.example.test.".into(),
                ttl: Some(300),
            },
            Rule::TenantHost { ttl: Some(60) },
        ],
        records: vec![
            RecordSpec { name: "www".into(), rtype: "A".into(), ttl: None, data: "192.0.2.80".into() },
            RecordSpec { name: "ns1".into(), rtype: "A".into(), ttl: None, data: "192.0.2.53".into() },
            RecordSpec { name: "a.b.deep".into(), rtype: "TXT".into(), ttl: None, data: "\"x\"".into() },
            RecordSpec { name: "alias-www".into(), rtype: "CNAME".into(), ttl: None, data: "www".into() },
            RecordSpec { name: "sub".into(), rtype: "NS".into(), ttl: None, data: "ns.sub".into() },
            RecordSpec { name: "ns.sub".into(), rtype: "A".into(), ttl: None, data: "192.0.2.99".into() },
        ],
        transfer: Default::default(),
        catalog: false,
        dnssec: None,
    }
}

fn cluster(id: &str, last_octet: u8) -> Cluster {
    Cluster { ipv4: vec![Ipv4Addr::new(198, 51, 100, last_octet)], ..Cluster::new(id) }
}

struct World {
    state: State,
    rev: u64,
}

impl World {
    fn new() -> World {
        let mut w = World { state: State::default(), rev: 0 };
        w.ok(Command::PutZone { zone: zone() });
        w.ok(Command::PutCluster { cluster: cluster("mt1", 1) });
        w.ok(Command::PutCluster { cluster: cluster("mt2", 2) });
        w
    }

    fn run(&mut self, command: Command) -> Result<Outcome, CommandError> {
        self.rev += 1;
        self.state.apply(self.rev, &Envelope { at_ms: 1_000 * self.rev, command, guard: Guard::default() }).0
    }

    fn ok(&mut self, command: Command) -> Outcome {
        match self.run(command.clone()) {
            Ok(o) => o,
            Err(e) => panic!("{command:?} failed: {e}"),
        }
    }
}

fn cname_target(a: &crate::resolve::Answer) -> Option<String> {
    a.answers.iter().find_map(|r| match &r.data {
        RData::Cname(t) => Some(t.clone()),
        _ => None,
    })
}

#[test]
fn service_tenant_answers_cname_with_rule_ttl() {
    let mut w = World::new();
    w.ok(Command::CreateTenant { id: "123456".into(), cluster: Some("mt1".into()) });
    let a = resolve(&w.state, "ws-123456.apps.example.test.", RType::Cname);
    assert_eq!(a.rcode, Rcode::NoError);
    assert!(a.authoritative);
    assert_eq!(cname_target(&a).as_deref(), Some("ws-mt1.example.test."));
    assert_eq!(a.answers[0].ttl, 300);
    let a = resolve(&w.state, "api-123456.apps.example.test.", RType::A);
    assert_eq!(cname_target(&a).as_deref(), Some("api-mt1.example.test."));
}

#[test]
fn tenant_host_answers_for_tenant_and_any_name_below() {
    let mut w = World::new();
    w.ok(Command::CreateTenant { id: "replbot".into(), cluster: Some("mt2".into()) });
    for q in ["replbot.apps.example.test.", "blog.replbot.apps.example.test.", "a.b.replbot.apps.example.test."] {
        let a = resolve(&w.state, q, RType::A);
        assert_eq!(a.rcode, Rcode::NoError, "{q}");
        assert_eq!(a.answers.len(), 1, "{q}");
        assert_eq!(a.answers[0].data, RData::A(Ipv4Addr::new(198, 51, 100, 2)));
        assert_eq!(a.answers[0].ttl, 60);
        assert_eq!(a.answers[0].name, q);
    }
    // No IPv6 ingress: NODATA with the SOA, negative TTL = min(300, 60).
    let a = resolve(&w.state, "replbot.apps.example.test.", RType::Aaaa);
    assert_eq!(a.rcode, Rcode::NoError);
    assert!(a.answers.is_empty());
    assert_eq!(a.authority[0].rtype(), RType::Soa);
    assert_eq!(a.authority[0].ttl, 60);
}

#[test]
fn aliases_resolve_as_the_tenant() {
    let mut w = World::new();
    w.ok(Command::CreateTenant { id: "replbot".into(), cluster: Some("mt2".into()) });
    w.ok(Command::AddAlias { tenant: "replbot".into(), alias: "rb".into() });
    let a = resolve(&w.state, "www.rb.apps.example.test.", RType::A);
    assert_eq!(a.answers[0].data, RData::A(Ipv4Addr::new(198, 51, 100, 2)));
    w.ok(Command::RemoveAlias { tenant: "replbot".into(), alias: "rb".into() });
    assert_eq!(resolve(&w.state, "rb.apps.example.test.", RType::A).rcode, Rcode::NxDomain);
}

#[test]
fn unknown_names_are_nxdomain_with_soa_and_outside_names_refused() {
    let w = World::new();
    let a = resolve(&w.state, "nobody.apps.example.test.", RType::A);
    assert_eq!(a.rcode, Rcode::NxDomain);
    assert_eq!(a.authority.len(), 1);
    assert_eq!(a.authority[0].rtype(), RType::Soa);
    assert_eq!(a.authority[0].ttl, 60);
    let a = resolve(&w.state, "example.org.", RType::A);
    assert_eq!(a.rcode, Rcode::Refused);
    assert!(!a.authoritative);
}

#[test]
fn static_records_win_and_empty_non_terminals_are_nodata() {
    let mut w = World::new();
    w.ok(Command::CreateTenant { id: "www".into(), cluster: Some("mt1".into()) });
    let a = resolve(&w.state, "www.apps.example.test.", RType::A);
    assert_eq!(a.answers[0].data, RData::A(Ipv4Addr::new(192, 0, 2, 80)));
    let a = resolve(&w.state, "b.deep.apps.example.test.", RType::A);
    assert_eq!((a.rcode, a.answers.len(), a.authority.len()), (Rcode::NoError, 0, 1));
    assert_eq!(resolve(&w.state, "c.deep.apps.example.test.", RType::A).rcode, Rcode::NxDomain);
}

#[test]
fn apex_has_soa_and_ns_with_glue() {
    let w = World::new();
    let a = resolve(&w.state, APEX, RType::Soa);
    assert_eq!(a.answers.len(), 1);
    let a = resolve(&w.state, APEX, RType::Ns);
    assert_eq!(a.answers.len(), 2);
    assert_eq!(a.additional.len(), 1, "glue only for the in-zone name server");
}

#[test]
fn static_cname_is_chased_within_served_zones() {
    let w = World::new();
    let a = resolve(&w.state, "alias-www.apps.example.test.", RType::A);
    assert_eq!(a.answers.len(), 2);
    assert_eq!(a.answers[1].data, RData::A(Ipv4Addr::new(192, 0, 2, 80)));
    let a = resolve(&w.state, "alias-www.apps.example.test.", RType::Cname);
    assert_eq!(a.answers.len(), 1);
}

#[test]
fn delegations_refer_without_aa() {
    let w = World::new();
    let a = resolve(&w.state, "host.sub.apps.example.test.", RType::A);
    assert!(!a.authoritative);
    assert!(a.answers.is_empty());
    assert_eq!(a.authority[0].rtype(), RType::Ns);
    assert_eq!(a.additional[0].data, RData::A(Ipv4Addr::new(192, 0, 2, 99)));
}

#[test]
fn move_changes_answer_and_records_tombstone() {
    let mut w = World::new();
    w.ok(Command::CreateTenant { id: "123456".into(), cluster: Some("mt1".into()) });
    let serial_before = w.state.serial(w.state.zone(APEX).unwrap());
    let Outcome::Tenant(t) = w.ok(Command::MoveTenant { id: "123456".into(), cluster: "mt2".into() }) else { panic!() };
    assert_eq!(t.cluster, "mt2");
    assert_eq!(t.history.len(), 1);
    assert_eq!((t.history[0].from.as_str(), t.history[0].to.as_str(), t.history[0].revision), ("mt1", "mt2", w.rev));
    assert_eq!(t.history[0].at_ms, 1_000 * w.rev, "time comes from the envelope, not the clock");
    let a = resolve(&w.state, "ws-123456.apps.example.test.", RType::Cname);
    assert_eq!(cname_target(&a).as_deref(), Some("ws-mt2.example.test."));
    assert!(w.state.serial(w.state.zone(APEX).unwrap()) > serial_before, "serial advances with the change");
}

/// Issue 27, item 2: a zone's serial moves when its own answers change,
/// and for nothing else (another zone's write, a cluster without tenants,
/// a cluster's weight), so its secondaries are not told of a change that
/// is none; an IXFR across other zones' changes is the difference.
#[test]
fn a_zone_serial_moves_only_with_its_own_answers() {
    let mut w = acme_world();
    let other = || ZoneSpec {
        apex: "other.test.".into(),
        environment: "staging".into(),
        rules: vec![Rule::Acme { validation_zone: None }],
        ..zone()
    };
    w.ok(Command::PutZone { zone: other() });
    w.ok(Command::PutZone { zone: ZoneSpec { apex: "catalog.test.".into(), rules: vec![], records: vec![], catalog: true, ..zone() } });
    let serials = |w: &World| ["apps.example.test.", "other.test.", "catalog.test."].map(|a| w.state.serial(w.state.zone(a).unwrap()));
    let moved = |w: &mut World, command: Command| {
        let before = serials(w);
        w.ok(command);
        let after = serials(w);
        [0, 1, 2].map(|i| after[i] != before[i])
    };
    // Another zone's write, its challenges, a cluster without tenants, a cluster's weight: apps does not move.
    let mut o = other();
    o.records.push(RecordSpec { name: "x".into(), rtype: "A".into(), ttl: None, data: "192.0.2.1".into() });
    assert_eq!(moved(&mut w, Command::PutZone { zone: o }), [false, true, false]);
    assert_eq!(moved(&mut w, set_acme("x.other.test.", "v", 600)), [false, true, false]);
    assert_eq!(moved(&mut w, Command::PutCluster { cluster: cluster("mt9", 9) }), [false, false, false]);
    assert_eq!(moved(&mut w, Command::PutCluster { cluster: Cluster { weight: 7, ..cluster("mt1", 1) } }), [false, false, false]);
    // What changes apps' answers moves apps alone.
    assert_eq!(moved(&mut w, Command::PutCluster { cluster: cluster("mt1", 11) }), [true, false, false]);
    assert_eq!(moved(&mut w, Command::CreateTenant { id: "t2".into(), cluster: Some("mt2".into()) }), [true, false, false]);
    assert_eq!(moved(&mut w, set_acme("blog.t2.apps.example.test.", "v", 600)), [true, false, false]);
    assert_eq!(moved(&mut w, Command::ClearAcme { name: "blog.t2.apps.example.test.".into(), value: None }), [true, false, false]);
    // A zone made or dropped: the catalog lists it; the zone it is inside loses names to it.
    let inside = ZoneSpec { apex: "in.other.test.".into(), rules: vec![], records: vec![], ..zone() };
    assert_eq!(moved(&mut w, Command::PutZone { zone: inside }), [false, true, true]);
    assert_eq!(moved(&mut w, Command::DeleteZone { apex: "in.other.test.".into() }), [false, true, true]);
    // The per-zone serial survives a restart, and goes with its zone.
    let restored = State::restore(w.state.revision(), w.state.marks(), w.state.values());
    let apexes = ["apps.example.test.", "other.test.", "catalog.test."];
    assert_eq!(apexes.map(|a| restored.serial(restored.zone(a).unwrap())), serials(&w));
    w.ok(Command::DeleteZone { apex: "other.test.".into() });
    assert!(w.state.values().all(|v| v.key() != "other.test."), "its serial goes with it");

    // An IXFR of apps from before another zone's writes: nothing to send but the SOA.
    let zone_at = w.state.zone(APEX).unwrap().clone();
    let at = w.state.revision();
    let mut changes = Vec::new();
    for command in
        [Command::PutZone { zone: other() }, set_acme("y.other.test.", "v", 600), Command::PutCluster { cluster: cluster("mt9", 19) }]
    {
        w.rev += 1;
        let (r, fx) = w.state.apply(w.rev, &Envelope { at_ms: 1_000 * w.rev, command, guard: Guard::default() });
        assert!(r.is_ok(), "{r:?}");
        changes.extend(fx.iter().filter_map(|e| e.for_history()));
    }
    assert_eq!(w.state.serial(&zone_at), w.state.serial(w.state.zone(APEX).unwrap()));
    let old = w.state.undone(at, &changes).unwrap();
    let zone = w.state.zone(APEX).unwrap().clone();
    assert_eq!(crate::resolve::zone_difference(&old, &w.state, &zone, &changes), Some((vec![], vec![])));
}

#[test]
fn rejected_commands_change_nothing() {
    let mut w = World::new();
    w.ok(Command::CreateTenant { id: "t1".into(), cluster: Some("mt1".into()) });
    let before = format!("{:?}", w.state.tenant("t1"));
    let marks = w.state.marks();
    let cases = [
        Command::CreateTenant { id: "t1".into(), cluster: None },
        Command::CreateTenant { id: "bad id".into(), cluster: None },
        Command::CreateTenant { id: "t2".into(), cluster: Some("nope".into()) },
        Command::MoveTenant { id: "t1".into(), cluster: "nope".into() },
        Command::DeleteCluster { id: "mt1".into() },
        Command::AddAlias { tenant: "t1".into(), alias: "mt1-".into() },
        Command::PutCluster { cluster: Cluster { weight: 0, ..cluster("mt3", 3) } },
    ];
    for c in cases {
        assert!(w.run(c.clone()).is_err(), "{c:?} should fail");
    }
    assert_eq!(format!("{:?}", w.state.tenant("t1")), before);
    assert_eq!(w.state.marks(), marks);
    assert!(w.state.cluster("mt3").is_none());
    assert!(w.state.tenant("t2").is_none());
}

#[test]
fn dedicated_clusters_take_tenants_only_by_pin() {
    let mut w = World::new();
    w.ok(Command::PutCluster { cluster: Cluster { dedicated: true, ..cluster("iso", 9) } });
    w.ok(Command::CreateTenant { id: "noisy".into(), cluster: Some("mt1".into()) });
    assert!(matches!(
        w.run(Command::MoveTenant { id: "noisy".into(), cluster: "iso".into() }),
        Err(CommandError::FailedPrecondition { .. })
    ));
    let Outcome::Tenant(t) = w.ok(Command::PinTenant { id: "noisy".into(), cluster: "iso".into() }) else { panic!() };
    assert!(t.pinned);
    assert_eq!(t.cluster, "iso");
    for i in 0..200 {
        let Outcome::Tenant(t) = w.ok(Command::CreateTenant { id: format!("auto{i}"), cluster: None }) else { panic!() };
        assert!(!t.pinned);
        assert_ne!(t.cluster, "iso");
    }
}

#[test]
fn zone_validation_names_the_field() {
    let mut w = World::new();
    let mut z = zone();
    z.records[2].data = "\"unterminated".into();
    match w.run(Command::PutZone { zone: z }) {
        Err(CommandError::Invalid(e)) => assert_eq!(e.field, "records[2].data"),
        other => panic!("{other:?}"),
    }
    let mut z = zone();
    z.rules[0] = Rule::ServiceTenant { services: vec!["ws".into()], target: "{service}-{nope}.example.test.".into(), ttl: None };
    match w.run(Command::PutZone { zone: z }) {
        Err(CommandError::Invalid(e)) => assert_eq!(e.field, "rules[0].target"),
        other => panic!("{other:?}"),
    }
}

/// A zone must fit every message that carries it whole: past
/// `ZONE_BYTES_MAX` it is refused, however few records it has.
#[test]
fn a_zone_too_large_for_its_messages_is_refused() {
    let mut w = World::new();
    let txt = format!("\"{}\"", "x".repeat(250)).repeat(4);
    let mut z = zone();
    let n = crate::model::ZONE_BYTES_MAX / txt.len() + 1;
    z.records = (0..n).map(|i| RecordSpec { name: format!("t{i}"), rtype: "TXT".into(), ttl: None, data: txt.clone() }).collect();
    assert!(n <= crate::model::RECORDS_MAX, "the size must be what refuses it, not the count");
    match w.run(Command::PutZone { zone: z.clone() }) {
        Err(CommandError::Invalid(e)) => assert!(e.field == "records" && e.reason.contains("bytes"), "{e}"),
        other => panic!("{other:?}"),
    }
    z.records.truncate(n / 2);
    assert!(w.run(Command::PutZone { zone: z }).is_ok());
}

#[test]
fn names_match_case_insensitively_via_lowercase_input() {
    let mut w = World::new();
    w.ok(Command::CreateTenant { id: "ReplBot".into(), cluster: Some("MT1".into()) });
    assert!(w.state.tenant("replbot").is_some());
}

#[test]
fn names_below_a_tenant_behave_like_a_wildcard() {
    let mut w = World::new();
    w.ok(Command::CreateTenant { id: "deep".into(), cluster: Some("mt1".into()) });
    // `a.b.deep` is a static TXT record: `b.deep` exists (empty non-terminal)
    // and hides `*.deep` for the names below it, as in a zone file.
    let a = resolve(&w.state, "deep.apps.example.test.", RType::A);
    assert_eq!(a.answers.len(), 1, "the tenant's own name still answers");
    let a = resolve(&w.state, "b.deep.apps.example.test.", RType::A);
    assert_eq!((a.rcode, a.answers.len()), (Rcode::NoError, 0), "empty non-terminal is NODATA");
    assert_eq!(resolve(&w.state, "x.b.deep.apps.example.test.", RType::A).rcode, Rcode::NxDomain);
    let a = resolve(&w.state, "x.c.deep.apps.example.test.", RType::A);
    assert_eq!(a.answers.len(), 1, "the wildcard still covers other branches");
}

#[test]
fn a_tenant_whose_cluster_has_no_ingress_has_no_name() {
    let mut w = World::new();
    w.ok(Command::PutCluster { cluster: Cluster::new("bare") });
    w.ok(Command::CreateTenant { id: "t1".into(), cluster: Some("bare".into()) });
    assert_eq!(resolve(&w.state, "t1.apps.example.test.", RType::A).rcode, Rcode::NxDomain);
}

#[test]
fn zone_records_answer_as_resolve_does() {
    let mut w = World::new();
    w.ok(Command::CreateTenant { id: "123456".into(), cluster: Some("mt1".into()) });
    w.ok(Command::CreateTenant { id: "www".into(), cluster: Some("mt2".into()) });
    w.ok(Command::AddAlias { tenant: "123456".into(), alias: "shop".into() });
    let zone = w.state.zone(APEX).unwrap().clone();
    let mut records = Vec::new();
    let _ = crate::resolve::zone_records(&w.state, &zone, &mut |r| {
        records.push(r);
        std::ops::ControlFlow::Continue(())
    });
    let owners = |t: RType| -> Vec<&str> { records.iter().filter(|r| r.rtype() == t).map(|r| r.name.as_str()).collect() };
    assert_eq!(owners(RType::Soa), vec![APEX]);
    assert!(owners(RType::Cname).contains(&"ws-123456.apps.example.test."));
    assert!(owners(RType::Cname).contains(&"api-shop.apps.example.test."));
    let a = owners(RType::A);
    for name in ["123456.apps.example.test.", "*.123456.apps.example.test.", "shop.apps.example.test.", "*.shop.apps.example.test."] {
        assert!(a.contains(&name), "{name} in {a:?}");
    }
    // The static `www` wins over the tenant `www`; its wildcard stays.
    let www: Vec<_> = records.iter().filter(|r| r.name == "www.apps.example.test.").collect();
    assert_eq!(www.len(), 1);
    assert_eq!(www[0].data, RData::A(Ipv4Addr::new(192, 0, 2, 80)));
    assert!(a.contains(&"*.www.apps.example.test."));
    // Every synthesised record is what resolve answers for its owner.
    // (Glue below a delegation is referred, not answered.)
    for r in records.iter().filter(|r| !r.name.starts_with('*') && zone.delegation_for(&r.name).is_none() && r.rtype() != RType::Ns) {
        let got = resolve(&w.state, &r.name, r.rtype());
        assert!(got.answers.contains(r), "{r:?} vs {got:?}");
    }
}

#[test]
fn ds_at_a_delegation_point_is_the_parents_nodata() {
    let w = World::new();
    let a = resolve(&w.state, "sub.apps.example.test.", RType::from_code(43));
    assert!(a.authoritative);
    assert_eq!((a.rcode, a.answers.len()), (Rcode::NoError, 0));
    assert_eq!(a.authority[0].rtype(), RType::Soa);
    let a = resolve(&w.state, "x.sub.apps.example.test.", RType::from_code(43));
    assert!(!a.authoritative, "below the cut: a referral");
}

#[test]
fn expected_revision_is_compare_and_set() {
    let mut w = World::new();
    let guarded = |expected: u64, cluster: &str| Envelope {
        at_ms: 0,
        command: Command::MoveTenant { id: "t1".into(), cluster: cluster.into() },
        guard: Guard { expected_revision: Some(expected), request_id: None, ..Guard::default() },
    };
    // 0 means "does not exist": a guarded create.
    let create = Envelope {
        at_ms: 0,
        command: Command::CreateTenant { id: "t1".into(), cluster: Some("mt1".into()) },
        guard: Guard { expected_revision: Some(0), request_id: None, ..Guard::default() },
    };
    w.rev += 1;
    assert!(w.state.apply(w.rev, &create).0.is_ok());
    let created_at = w.rev;
    w.rev += 1;
    assert_eq!(w.state.apply(w.rev, &create).0, Err(CommandError::Aborted { expected: 0, current: created_at }));
    // Two writers read revision `created_at`; the first move wins, the second is refused.
    w.rev += 1;
    assert!(w.state.apply(w.rev, &guarded(created_at, "mt2")).0.is_ok());
    let moved_at = w.rev;
    w.rev += 1;
    assert_eq!(w.state.apply(w.rev, &guarded(created_at, "mt1")).0, Err(CommandError::Aborted { expected: created_at, current: moved_at }));
    assert_eq!(w.state.tenant("t1").unwrap().cluster, "mt2");
}

#[test]
fn a_retried_request_id_applies_once() {
    let mut w = World::new();
    let call = |at_ms: u64| Envelope {
        at_ms,
        command: Command::CreateTenant { id: "t1".into(), cluster: Some("mt1".into()) },
        guard: Guard { expected_revision: None, request_id: Some("req-1".into()), ..Guard::default() },
    };
    w.rev += 1;
    let first = w.rev;
    let (r, touched) = w.state.apply(first, &call(1_000));
    assert!(matches!(r, Ok(Outcome::Tenant(_))));
    assert!(touched.iter().any(|e| e.kind == crate::Kind::Request && e.key == "req-1"));
    w.rev += 1;
    let (r, touched) = w.state.apply(w.rev, &call(2_000));
    assert!(matches!(r, Ok(Outcome::Replayed { revision, .. }) if revision == first), "{r:?}");
    assert!(touched.is_empty(), "a replay changes nothing");
    // A later request past the window evicts req-1; retried then, req-1
    // applies again (and is refused: the tenant exists).
    let late = 1_000 + crate::state::REQUEST_ID_WINDOW_MS + 1;
    w.rev += 1;
    let (r, _) = w.state.apply(
        w.rev,
        &Envelope { guard: Guard { expected_revision: None, request_id: Some("req-2".into()), ..Guard::default() }, ..call(late) },
    );
    assert!(matches!(r, Err(CommandError::AlreadyExists { .. })), "{r:?}");
    assert!(w.state.request("req-1").is_none(), "req-1 left the window");
    w.rev += 1;
    let (r, _) = w.state.apply(w.rev, &call(late + 1));
    assert!(matches!(r, Err(CommandError::AlreadyExists { .. })), "applied again, not replayed: {r:?}");
    // An id reused for another call is refused, naming the field.
    w.rev += 1;
    let other = Envelope { command: Command::CreateTenant { id: "t2".into(), cluster: None }, ..call(late + 2) };
    let (r, _) = w.state.apply(w.rev, &other);
    assert!(matches!(r, Err(CommandError::Invalid(ref v)) if v.field == "options.request_id"), "{r:?}");
    // Malformed ids are refused.
    w.rev += 1;
    let (r, _) = w.state.apply(
        w.rev,
        &Envelope { guard: Guard { expected_revision: None, request_id: Some("a b".into()), ..Guard::default() }, ..call(0) },
    );
    assert!(matches!(r, Err(CommandError::Invalid(ref v)) if v.field == "options.request_id"), "{r:?}");
}

fn txt_values(a: &crate::resolve::Answer) -> Vec<String> {
    let mut v: Vec<String> = a
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::Txt(s) => Some(s.join("")),
            _ => None,
        })
        .collect();
    v.sort();
    v
}

/// A world whose zone serves stored challenges.
fn acme_world() -> World {
    let mut w = World::new();
    let mut z = zone();
    z.rules.push(Rule::Acme { validation_zone: None });
    w.ok(Command::PutZone { zone: z });
    w.ok(Command::CreateTenant { id: "t1".into(), cluster: Some("mt1".into()) });
    w
}

fn set_acme(name: &str, value: &str, expires_in_s: u64) -> Command {
    Command::SetAcme { name: name.into(), value: value.into(), ttl: None, expires_in_s: Some(expires_in_s) }
}

#[test]
fn acme_challenges_answer_txt_beside_the_tenant_wildcard() {
    let mut w = acme_world();
    let owner = "_acme-challenge.t1.apps.example.test.";
    // Before any challenge, the name is below tenant t1: its wildcard answers.
    assert!(txt_values(&resolve(&w.state, owner, RType::Txt)).is_empty());
    assert_eq!(resolve(&w.state, owner, RType::A).answers.len(), 1);
    // A wildcard certificate and the apex one share the name.
    w.ok(set_acme("*.t1.apps.example.test", "wild", 600));
    w.ok(set_acme("T1.apps.example.test.", "apex", 600));
    let a = resolve(&w.state, owner, RType::Txt);
    assert_eq!((a.rcode, txt_values(&a)), (Rcode::NoError, vec!["apex".to_string(), "wild".to_string()]));
    assert!(a.answers.iter().all(|r| r.ttl == 60));
    // The challenge name now exists: it hides the wildcard for other types.
    let a = resolve(&w.state, owner, RType::A);
    assert!(a.answers.is_empty() && a.rcode == Rcode::NoError);
    // A challenge below a name that does not exist makes it an empty non-terminal.
    w.ok(set_acme("nothere.apps.example.test", "v", 600));
    assert_eq!(resolve(&w.state, "nothere.apps.example.test.", RType::A).rcode, Rcode::NoError);
    // Clear one value, then the rest.
    w.ok(Command::ClearAcme { name: owner.into(), value: Some("wild".into()) });
    assert_eq!(txt_values(&resolve(&w.state, owner, RType::Txt)), vec!["apex".to_string()]);
    w.ok(Command::ClearAcme { name: "t1.apps.example.test".into(), value: None });
    assert!(w.state.challenge(owner).is_none());
    assert_eq!(resolve(&w.state, owner, RType::A).answers.len(), 1);
}

/// Issue 27, item 1: a DNS-01 challenge for a tenant's site adds its TXT
/// and takes nothing away from the site or the names below it, and the
/// exported zone (a master file, where the challenge's empty non-terminals
/// would hide the tenant's wildcard) holds those names explicitly.
#[test]
fn a_challenge_for_a_site_takes_nothing_from_it() {
    let mut w = acme_world();
    let a_of = |w: &World, n: &str| {
        let a = resolve(&w.state, n, RType::A);
        (a.rcode, a.answers.iter().filter(|r| r.rtype() == RType::A).count())
    };
    let site = "blog.t1.apps.example.test.";
    assert_eq!(a_of(&w, site), (Rcode::NoError, 1));
    w.ok(set_acme("blog.t1.apps.example.test", "token", 600));
    w.ok(set_acme("a.b.t1.apps.example.test", "deep", 600));
    assert_eq!(txt_values(&resolve(&w.state, "_acme-challenge.blog.t1.apps.example.test.", RType::Txt)), vec!["token".to_string()]);
    for name in
        [site, "x.blog.t1.apps.example.test.", "y.x.blog.t1.apps.example.test.", "b.t1.apps.example.test.", "a.b.t1.apps.example.test."]
    {
        assert_eq!(a_of(&w, name), (Rcode::NoError, 1), "{name}");
    }
    // The challenge's own name holds its TXT alone, and hides the wildcard
    // below it, as a master file's name would.
    assert_eq!(a_of(&w, "_acme-challenge.blog.t1.apps.example.test."), (Rcode::NoError, 0));
    assert_eq!(a_of(&w, "x._acme-challenge.blog.t1.apps.example.test.").0, Rcode::NxDomain);

    let zone = w.state.zone(APEX).unwrap().clone();
    let mut records = Vec::new();
    let _ = crate::resolve::zone_records(&w.state, &zone, &mut |r| {
        records.push(r);
        std::ops::ControlFlow::Continue(())
    });
    let a_owners: Vec<&str> = records.iter().filter(|r| r.rtype() == RType::A).map(|r| r.name.as_str()).collect();
    for name in [site, "*.blog.t1.apps.example.test.", "b.t1.apps.example.test.", "*.b.t1.apps.example.test.", "a.b.t1.apps.example.test."]
    {
        assert_eq!(a_owners.iter().filter(|n| **n == name).count(), 1, "{name} once in {a_owners:?}");
    }
    // Once the challenges go, so do the explicit names: the wildcard covers them again.
    w.ok(Command::ClearAcme { name: "blog.t1.apps.example.test".into(), value: None });
    w.ok(Command::ClearAcme { name: "a.b.t1.apps.example.test".into(), value: None });
    let mut records = Vec::new();
    let _ = crate::resolve::zone_records(&w.state, &zone, &mut |r| {
        records.push(r);
        std::ops::ControlFlow::Continue(())
    });
    assert!(!records.iter().any(|r| r.name.ends_with(".t1.apps.example.test.") && !r.name.starts_with("*.t1.")), "{records:?}");
    assert_eq!(a_of(&w, site), (Rcode::NoError, 1));
}

#[test]
fn acme_expiry_follows_the_leaders_stamp_only() {
    let mut w = acme_world();
    // World stamps entries at 1000 ms × revision.
    w.ok(set_acme("a.apps.example.test", "short", 2));
    w.ok(set_acme("b.apps.example.test", "long", 3600));
    let due = w.state.next_acme_expiry();
    assert_eq!(due, Some(1_000 * w.rev - 1_000 + 2_000));
    // Nothing expires until an ExpireAcme entry is applied, whatever the time.
    assert!(w.state.challenge("_acme-challenge.a.apps.example.test.").is_some());
    let mut other = w.state.clone();
    let at = w.rev + 1;
    assert_eq!(w.ok(Command::ExpireAcme), Outcome::Expired(1));
    assert!(w.state.challenge("_acme-challenge.a.apps.example.test.").is_none());
    assert!(w.state.challenge("_acme-challenge.b.apps.example.test.").is_some());
    // Another node applying the same entry reaches the same state.
    let env = Envelope { at_ms: 1_000 * at, command: Command::ExpireAcme, guard: Guard::default() };
    assert_eq!(other.apply(at, &env).0, Ok(Outcome::Expired(1)));
    assert_eq!(other.challenges().count(), w.state.challenges().count());
}

#[test]
fn acme_refusals_name_the_reason() {
    let mut w = World::new();
    // No acme rule in the zone.
    let e = w.run(set_acme("t1.apps.example.test", "v", 60)).unwrap_err().to_string();
    assert!(e.contains("no acme rule"), "{e}");
    // Delegated to a validation zone: the CNAME answers, and a set there is refused with where to go.
    let mut z = zone();
    z.rules.insert(0, Rule::Acme { validation_zone: Some("acme.example.net.".into()) });
    w.ok(Command::PutZone { zone: z });
    let e = w.run(set_acme("t1.apps.example.test", "v", 60)).unwrap_err().to_string();
    assert!(e.contains("_acme-challenge.t1.apps.example.test.acme.example.net."), "{e}");
    let a = resolve(&w.state, "_acme-challenge.x.apps.example.test.", RType::Txt);
    assert_eq!(cname_target(&a).as_deref(), Some("_acme-challenge.x.apps.example.test.acme.example.net."));
    // Outside every zone, bad values, bad lifetimes.
    let mut w = acme_world();
    assert!(w.run(set_acme("other.test", "v", 60)).unwrap_err().to_string().contains("no served zone"));
    assert!(w.run(set_acme("t1.apps.example.test", "", 60)).unwrap_err().to_string().contains("value"));
    assert!(w.run(set_acme("t1.apps.example.test", "v", 0)).unwrap_err().to_string().contains("expires_in_s"));
    // Static records at the name take precedence, so a set there is refused.
    assert!(w.run(set_acme("_acme-challenge.www.apps.example.test", "v", 60)).is_ok());
    let mut z = zone();
    z.rules.push(Rule::Acme { validation_zone: None });
    z.records.push(RecordSpec { name: "_acme-challenge.static".into(), rtype: "TXT".into(), ttl: None, data: "\"s\"".into() });
    w.ok(Command::PutZone { zone: z });
    assert!(w.run(set_acme("static.apps.example.test", "v", 60)).unwrap_err().to_string().contains("static records"));
}

// --- Credentials -------------------------------------------------------------

use crate::credential::{authorize, tenant_of_name, Access, Actor, Credential, Role, Scope};

fn credential(id: &str, role: Role, scope: Scope) -> Credential {
    Credential { id: id.into(), name: format!("test-{id}"), role, scope, hash: vec![7; 32], created_at_ms: 0, revision: 0 }
}

/// Two zones (prod and staging, both with acme rules), tenants t1 (alias
/// a1) and t2, and one credential of each role and scope.
fn credentials_world() -> World {
    let mut w = acme_world();
    let mut staging = zone();
    staging.apex = "apps.staging.example.test.".into();
    staging.environment = "staging".into();
    staging.records.clear();
    staging.ns = vec!["ns1.example.test.".into()];
    w.ok(Command::PutZone { zone: staging });
    w.ok(Command::CreateTenant { id: "t2".into(), cluster: Some("mt2".into()) });
    w.ok(Command::AddAlias { tenant: "t1".into(), alias: "a1".into() });
    for c in [
        credential("00000000000000a0", Role::Admin, Scope::All),
        credential("00000000000000b0", Role::Operator, Scope::All),
        credential("00000000000000b1", Role::Operator, Scope::Environments(vec!["staging".into()])),
        credential("00000000000000b2", Role::Operator, Scope::Zones(vec!["apps.staging.example.test.".into()])),
        credential("00000000000000c1", Role::Tenant, Scope::Tenant("t1".into())),
    ] {
        w.ok(Command::CreateCredential { credential: c });
    }
    w
}

const ADMIN: &str = "00000000000000a0";
const OPERATOR: &str = "00000000000000b0";
const STAGING: &str = "00000000000000b1";
const STAGING_ZONE: &str = "00000000000000b2";
const TENANT_T1: &str = "00000000000000c1";

impl World {
    /// Run a command as a stored credential.
    fn run_as(&mut self, id: &str, command: Command) -> Result<Outcome, CommandError> {
        self.rev += 1;
        let guard = Guard { actor: Actor::Credential(id.into()), ..Guard::default() };
        self.state.apply(self.rev, &Envelope { at_ms: 1_000 * self.rev, command, guard }).0
    }
}

/// Each role and scope against each kind of write: allowed or denied, as
/// `authorize` decides and as `apply` enforces (a denied command changes nothing).
#[test]
fn each_role_and_scope_is_allowed_exactly_its_writes() {
    let mut staging_zone = zone();
    staging_zone.apex = "apps.staging.example.test.".into();
    staging_zone.environment = "staging".into();
    staging_zone.records.clear();
    let mut staging_to_prod = staging_zone.clone();
    staging_to_prod.environment = "prod".into();
    let mut prod_to_staging = zone();
    prod_to_staging.environment = "staging".into();
    let subzone = |apex: &str| {
        let mut z = staging_zone.clone();
        z.apex = apex.into();
        z
    };
    let alias = |tenant: &str, alias: &str| Command::AddAlias { tenant: tenant.into(), alias: alias.into() };
    // (command, [admin, operator, staging operator, staging-zone operator, tenant t1])
    let cases: Vec<(Command, [bool; 5])> = vec![
        (Command::PutZone { zone: staging_zone.clone() }, [true, true, true, true, false]),
        (Command::PutZone { zone: zone() }, [true, true, false, false, false]),
        // A zone-scoped operator owns its zones whatever their environment label.
        (Command::PutZone { zone: staging_to_prod }, [true, true, false, true, false]),
        (Command::PutZone { zone: prod_to_staging }, [true, true, false, false, false]),
        // A zone cut out of another takes its names: only within scope.
        (Command::PutZone { zone: subzone("t1.apps.example.test.") }, [true, true, false, false, false]),
        (Command::PutZone { zone: subzone("sub.apps.staging.example.test.") }, [true, true, true, false, false]),
        // A zone no served zone contains is cut out of nobody's scope: only an
        // operator scoped to all may create it (prod's CNAME targets live in
        // `example.test.`, which no zone serves yet).
        (Command::PutZone { zone: subzone("example.test.") }, [true, true, false, false, false]),
        (Command::PutZone { zone: subzone("staging.other.test.") }, [true, true, false, false, false]),
        (Command::DeleteZone { apex: APEX.into() }, [true, true, false, false, false]),
        (Command::PutCluster { cluster: cluster("mt3", 3) }, [true, true, false, false, false]),
        (Command::CreateTenant { id: "t9".into(), cluster: None }, [true, true, false, false, false]),
        (Command::MoveTenant { id: "t1".into(), cluster: "mt2".into() }, [true, true, false, false, false]),
        (alias("t1", "a2"), [true, true, false, false, true]),
        (alias("t2", "a3"), [true, true, false, false, false]),
        (set_acme("t1.apps.example.test", "v", 60), [true, true, false, false, true]),
        (set_acme("*.a1.apps.example.test", "v", 60), [true, true, false, false, true]),
        (set_acme("ws-t1.apps.example.test", "v", 60), [true, true, false, false, true]),
        (set_acme("deep.t1.apps.example.test", "v", 60), [true, true, false, false, true]),
        (set_acme("t2.apps.example.test", "v", 60), [true, true, false, false, false]),
        (set_acme("t1.apps.staging.example.test", "v", 60), [true, true, true, true, true]),
        (set_acme("www.apps.example.test", "v", 60), [true, true, false, false, false]),
        (Command::ClearAcme { name: "t2.apps.example.test".into(), value: None }, [true, true, false, false, false]),
        (
            Command::CreateCredential { credential: credential("00000000000000d0", Role::Operator, Scope::All) },
            [true, false, false, false, false],
        ),
        (Command::RevokeCredential { id: TENANT_T1.into() }, [true, false, false, false, false]),
        (Command::ExpireAcme, [false, false, false, false, false]),
    ];
    for (command, allowed) in cases {
        for (id, allow) in [ADMIN, OPERATOR, STAGING, STAGING_ZONE, TENANT_T1].into_iter().zip(allowed) {
            // A fresh world each time: an allowed command must not change what the next one sees.
            let mut w = credentials_world();
            let c = w.state.credential(id).cloned().unwrap();
            let decided = authorize(&w.state, &c, Access::Write(&command));
            assert_eq!(decided.is_ok(), allow, "{} {:?}: {decided:?}", c.name, command);
            let zones = |s: &State| s.zones().map(|z| (z.apex().to_string(), z.revision)).collect::<Vec<_>>();
            let before = (w.state.marks(), w.state.credentials().count(), w.state.challenges().count(), zones(&w.state));
            match w.run_as(id, command.clone()) {
                Err(CommandError::PermissionDenied(why)) => {
                    assert!(!allow, "{} {command:?} denied on apply: {why}", c.name);
                    assert!(why.contains(&c.name), "{why}");
                    let after = (w.state.marks(), w.state.credentials().count(), w.state.challenges().count(), zones(&w.state));
                    assert_eq!(before, after, "a denied command changed state");
                }
                other => assert!(allow, "{} {command:?} should be denied, got {other:?}", c.name),
            }
        }
    }
}

#[test]
fn reads_follow_the_role() {
    let w = credentials_world();
    let get = |id: &str| w.state.credential(id).cloned().unwrap();
    for id in [ADMIN, OPERATOR, STAGING, STAGING_ZONE] {
        assert!(authorize(&w.state, &get(id), Access::ReadData).is_ok());
        assert!(authorize(&w.state, &get(id), Access::ReadTenant("t2")).is_ok());
    }
    let t1 = get(TENANT_T1);
    assert!(authorize(&w.state, &t1, Access::ReadTenant("t1")).is_ok());
    assert!(authorize(&w.state, &t1, Access::ReadTenant("A1")).is_ok(), "by alias, any case");
    assert!(authorize(&w.state, &t1, Access::ReadTenant("t2")).is_err());
    assert!(authorize(&w.state, &t1, Access::ReadData).is_err());
    for id in [OPERATOR, STAGING, TENANT_T1] {
        assert!(authorize(&w.state, &get(id), Access::ReadStatus).is_ok());
        assert!(authorize(&w.state, &get(id), Access::Credentials).is_err());
        assert!(authorize(&w.state, &get(id), Access::Membership).is_err());
    }
    assert!(authorize(&w.state, &get(ADMIN), Access::Membership).is_ok());
}

#[test]
fn a_revoked_credential_is_refused_when_its_command_applies() {
    let mut w = credentials_world();
    w.ok(Command::RevokeCredential { id: TENANT_T1.into() });
    let r = w.run_as(TENANT_T1, Command::AddAlias { tenant: "t1".into(), alias: "late".into() });
    assert!(matches!(r, Err(CommandError::Unauthenticated(_))), "{r:?}");
    assert_eq!(w.state.tenant("t1").unwrap().aliases, vec!["a1".to_string()]);
    // Ownership is decided on the committed state: an alias removed just
    // before takes the name away from the tenant.
    let mut w = credentials_world();
    w.ok(Command::RemoveAlias { tenant: "t1".into(), alias: "a1".into() });
    let r = w.run_as(TENANT_T1, set_acme("a1.apps.example.test", "v", 60));
    assert!(matches!(r, Err(CommandError::PermissionDenied(_))), "{r:?}");
    // A deleted tenant takes its credentials along: a tenant created later
    // under the same id does not inherit them.
    let mut w = credentials_world();
    w.ok(Command::DeleteTenant { id: "t1".into() });
    assert!(w.state.credential(TENANT_T1).is_none());
    w.ok(Command::CreateTenant { id: "t1".into(), cluster: Some("mt1".into()) });
    let r = w.run_as(TENANT_T1, Command::AddAlias { tenant: "t1".into(), alias: "mine".into() });
    assert!(matches!(r, Err(CommandError::Unauthenticated(_))), "{r:?}");
}

#[test]
fn credentials_are_validated_and_scoped_to_their_role() {
    let mut w = credentials_world();
    let bad = [
        (credential("xyz", Role::Admin, Scope::All), "id"),
        (credential("00000000000000e0", Role::Admin, Scope::Environments(vec!["prod".into()])), "scope"),
        (credential("00000000000000e1", Role::Operator, Scope::Tenant("t1".into())), "tenant"),
        (credential("00000000000000e2", Role::Tenant, Scope::All), "tenant"),
        (credential("00000000000000e3", Role::Operator, Scope::Environments(vec![])), "environments"),
        (credential("00000000000000e4", Role::Operator, Scope::Zones(vec!["bad..name".into()])), "zones[0]"),
        (Credential { hash: vec![1; 3], ..credential("00000000000000e5", Role::Admin, Scope::All) }, "hash"),
    ];
    for (c, field) in bad {
        match w.run(Command::CreateCredential { credential: c.clone() }) {
            Err(CommandError::Invalid(e)) => assert!(e.field.starts_with(field), "{c:?}: {e}"),
            other => panic!("{c:?}: {other:?}"),
        }
    }
    let r = w.run(Command::CreateCredential { credential: credential("00000000000000e6", Role::Tenant, Scope::Tenant("nobody".into())) });
    assert!(matches!(r, Err(CommandError::NotFound { .. })), "{r:?}");
    let r = w.run(Command::CreateCredential { credential: credential(ADMIN, Role::Admin, Scope::All) });
    assert!(matches!(r, Err(CommandError::AlreadyExists { .. })), "{r:?}");
}

#[test]
fn names_belong_to_the_tenant_the_rules_give_them() {
    let w = credentials_world();
    let owner = |n: &str| tenant_of_name(&w.state, n).map(|t| t.id.clone());
    assert_eq!(owner("t1.apps.example.test"), Some("t1".into()));
    assert_eq!(owner("_acme-challenge.x.y.a1.apps.example.test."), Some("t1".into()));
    assert_eq!(owner("api-t2.apps.example.test"), Some("t2".into()));
    assert_eq!(owner("x.api-t2.apps.example.test"), None, "service names have nothing below them");
    assert_eq!(owner("www.apps.example.test"), None);
    assert_eq!(owner("apps.example.test"), None);
    assert_eq!(owner("t1.elsewhere.test"), None);
    // The operator's static names and delegations are nobody's, even when
    // a tenant has their label as its alias. An alias may no longer take
    // such a label, but it can have taken it before the operator put the
    // static records there: the aliases come first here, then the records.
    let mut w = credentials_world();
    let mut bare = credentials_zone();
    bare.records.clear();
    w.ok(Command::PutZone { zone: bare });
    w.ok(Command::AddAlias { tenant: "t1".into(), alias: "www".into() });
    w.ok(Command::AddAlias { tenant: "t1".into(), alias: "sub".into() });
    w.ok(Command::AddAlias { tenant: "t1".into(), alias: "deep".into() });
    w.ok(Command::PutZone { zone: credentials_zone() });
    let owner = |n: &str| tenant_of_name(&w.state, n).map(|t| t.id.clone());
    assert_eq!(owner("www.apps.example.test"), None, "static records");
    assert_eq!(owner("x.sub.apps.example.test"), None, "below a delegation");
    assert_eq!(owner("b.deep.apps.example.test"), None, "a static name below it (a.b.deep)");
    assert_eq!(owner("zz.deep.apps.example.test"), None, "deep has static names below it");
    assert_eq!(owner("t1.apps.example.test"), Some("t1".into()));
}

// --- The kind registry and effects ---------------------------------------------

use crate::kind::{Effect, Kind, Value};

/// A state holding at least one entity of every registered kind.
fn every_kind_world() -> World {
    let mut w = credentials_world();
    w.ok(set_acme("t1.apps.example.test.", "token-1", 600));
    w.ok(Command::CreateTsigKey { key: tsig_key("xfr", Scope::All, TRANSFER) });
    let mut signed = zone();
    signed.apex = "signed.example.test.".into();
    signed.dnssec = Some(crate::dnssec::Policy::new(crate::dnssec::Algorithm::Ed25519));
    w.ok(Command::PutZone { zone: signed });
    let guard = Guard { request_id: Some("req-every".into()), ..Guard::default() };
    w.rev += 1;
    let env = Envelope { at_ms: 1_000 * w.rev, command: Command::CreateTenant { id: "t3".into(), cluster: None }, guard };
    assert!(w.state.apply(w.rev, &env).0.is_ok());
    let on = w.state.tenant("t1").map(|t| t.cluster.to_string());
    let to = if on.as_deref() == Some("mt1") { "mt2" } else { "mt1" };
    w.ok(Command::StageMove { id: "t1".into(), cluster: to.into(), ttl: 5 });
    w
}

#[test]
fn every_registered_kind_round_trips_through_its_stored_values() {
    let w = every_kind_world();
    let values: Vec<Value> = w.state.values().collect();
    let kinds: std::collections::BTreeSet<Kind> = values.iter().map(Value::kind).collect();
    assert_eq!(kinds.into_iter().collect::<Vec<_>>(), Kind::ALL, "the world must hold every kind");

    let restored = State::restore(w.state.revision(), w.state.marks(), values.clone());
    assert_eq!(restored.values().collect::<Vec<_>>(), values);
    // In any order: storage reads a zone's names (`n/`) before the zone (`z/`).
    let reversed = State::restore(w.state.revision(), w.state.marks(), values.iter().rev().cloned());
    assert_eq!(reversed.values().collect::<Vec<_>>(), values);
    assert_eq!(reversed.zone(APEX).map(|z| z.full_spec()), w.state.zone(APEX).map(|z| z.full_spec()));
    assert_eq!(resolve(&reversed, "www.apps.example.test.", RType::A), resolve(&w.state, "www.apps.example.test.", RType::A));
    // The derived indexes follow from the values alone.
    assert_eq!(restored.tenant_by_key("a1").map(|t| t.id.clone()), Some("t1".into()));
    assert_eq!(restored.tenants_on("mt1"), w.state.tenants_on("mt1"));
    assert!(restored.has_challenges_below("apps.example.test."));
    assert!(restored.request("req-every").is_some());
    let q = "ws-t1.apps.example.test.";
    assert_eq!(resolve(&restored, q, RType::Cname), resolve(&w.state, q, RType::Cname));
}

#[test]
fn a_prefix_no_kind_declares_names_no_kind() {
    let mut prefixes: Vec<u8> = Kind::ALL.iter().map(|k| k.prefix()).collect();
    prefixes.sort_unstable();
    prefixes.dedup();
    assert_eq!(prefixes.len(), Kind::ALL.len(), "two kinds share a key prefix");
    for k in Kind::ALL {
        assert_eq!(Kind::from_prefix(k.prefix()), Some(*k));
    }
    for b in 0..=u8::MAX {
        assert_eq!(Kind::from_prefix(b).is_some(), prefixes.contains(&b), "prefix {b}");
    }
}

#[test]
fn apply_returns_each_change_where_it_is_made() {
    let mut w = credentials_world();
    let run = |w: &mut World, command: Command| -> Vec<Effect> {
        w.rev += 1;
        let (r, effects) = w.state.apply(w.rev, &Envelope { at_ms: 1_000 * w.rev, command, guard: Guard::default() });
        assert!(r.is_ok(), "{r:?}");
        effects
    };
    let tenant = |v: &Option<Value>| match v {
        Some(Value::Tenant(t)) => Some(t.cluster.clone()),
        _ => None,
    };

    let fx = run(&mut w, Command::MoveTenant { id: "t1".into(), cluster: "mt2".into() });
    assert_eq!(fx.len(), 1);
    assert_eq!((fx[0].kind, fx[0].key.as_str()), (Kind::Tenant, "t1"));
    assert_eq!((tenant(&fx[0].before), tenant(&fx[0].after)), (Some("mt1".into()), Some("mt2".into())));
    assert_eq!(w.state.tenants_on("mt1"), 0);
    assert_eq!(w.state.tenants_on("mt2"), 2);
    assert_eq!(w.state.marks().tenants, w.rev, "a tenant change moves the serial of zones with rules");

    // Deleting a tenant deletes its credentials in the same command.
    let fx = run(&mut w, Command::DeleteTenant { id: "t1".into() });
    let ids: Vec<(Kind, &str, bool)> = fx.iter().map(|e| (e.kind, e.key.as_str(), e.after.is_none())).collect();
    assert_eq!(ids, [(Kind::Tenant, "t1", true), (Kind::Credential, TENANT_T1, true)]);
    assert!(fx[0].for_history().is_some_and(|h| h.before.is_some()), "a deleted tenant's last value is kept for watchers");
    assert!(fx[1].for_history().is_none(), "credentials stay out of the change history");
    assert!(w.state.tenant_by_key("a1").is_none(), "its aliases go with it");

    // A refused command has no effects; a zone write moves that zone's
    // revision, and no mark (catalogs follow zones made and dropped only).
    let marks = w.state.marks();
    w.rev += 1;
    let (r, fx) =
        w.state.apply(w.rev, &Envelope { at_ms: 0, command: Command::DeleteCluster { id: "mt2".into() }, guard: Guard::default() });
    assert!(r.is_err() && fx.is_empty());
    let fx = run(&mut w, Command::PutZone { zone: zone() });
    assert!(fx[0].before.is_some(), "the zone was there before");
    assert!(
        fx[0].for_history().is_some_and(|h| h.before.is_none() && h.after.is_none() && !h.deleted),
        "a zone's history entry names it without its (possibly large) value"
    );
    assert_eq!(w.state.marks(), marks);
    assert_eq!(w.state.zone(APEX).map(|z| z.revision), Some(w.rev));
}

// --- Scopes that cannot be stepped around (issue 14) ---------------------------

/// A zone `example.test.` of `environment` holding an address at the prod
/// rule's CNAME target `ws-mt1.example.test.`.
fn target_zone(environment: &str) -> ZoneSpec {
    let mut z = zone();
    z.apex = "example.test.".into();
    z.environment = environment.into();
    z.rules.clear();
    z.records = vec![
        RecordSpec { name: "ns2".into(), rtype: "A".into(), ttl: None, data: "192.0.2.54".into() },
        RecordSpec { name: "ws-mt1".into(), rtype: "A".into(), ttl: None, data: "203.0.113.66".into() },
    ];
    z
}

#[test]
fn a_cname_is_not_chased_into_a_zone_of_another_environment() {
    let mut w = World::new();
    w.ok(Command::CreateTenant { id: "123".into(), cluster: Some("mt1".into()) });
    // The target's zone is staging: the CNAME is answered, the chase stops
    // there, as when the target lies outside every zone.
    w.ok(Command::PutZone { zone: target_zone("staging") });
    let a = resolve(&w.state, "ws-123.apps.example.test.", RType::A);
    assert_eq!((a.rcode, a.authoritative), (Rcode::NoError, true));
    assert_eq!(a.answers.len(), 1, "{a:?}");
    assert_eq!(cname_target(&a).as_deref(), Some("ws-mt1.example.test."));
    assert!(a.authority.is_empty() && a.additional.is_empty(), "{a:?}");
    // The same zone in prod: the chase goes on into it.
    w.ok(Command::PutZone { zone: target_zone("prod") });
    let a = resolve(&w.state, "ws-123.apps.example.test.", RType::A);
    assert_eq!(a.answers.len(), 2, "{a:?}");
    assert_eq!(a.answers[1].data, RData::A(Ipv4Addr::new(203, 0, 113, 66)));
}

#[test]
fn an_alias_may_not_take_a_label_the_zones_give_a_meaning() {
    let mut w = credentials_world();
    let refused = |r: Result<Outcome, CommandError>, what: &str| match r {
        Err(CommandError::FailedPrecondition { field, reason }) => {
            assert_eq!(field, "alias", "{what}: {reason}");
            reason
        }
        other => panic!("{what}: {other:?}"),
    };
    // `ws-newco` is service `ws` of a tenant `newco` (not created yet), in any case.
    for alias in ["ws-newco", "API-x", "ws-t2"] {
        let why = refused(w.run(Command::AddAlias { tenant: "t1".into(), alias: alias.into() }), alias);
        assert!(why.contains("service"), "{why}");
    }
    // Static records, static names below, a delegation: the operator's names.
    for alias in ["www", "deep", "sub"] {
        let why = refused(w.run(Command::AddAlias { tenant: "t1".into(), alias: alias.into() }), alias);
        assert!(why.contains("apps.example.test."), "{why}");
    }
    // The tenant's own credential is refused the same way, not denied.
    refused(w.run_as(TENANT_T1, Command::AddAlias { tenant: "t1".into(), alias: "ws-newco".into() }), "as t1");
    assert_eq!(w.state.tenant("t1").unwrap().aliases, vec!["a1".to_string()]);
    // A label no zone gives a meaning is fine, `ws` alone included.
    w.ok(Command::AddAlias { tenant: "t1".into(), alias: "ws".into() });
    w.ok(Command::AddAlias { tenant: "t1".into(), alias: "shop".into() });
}

/// Apply `command` as trusted and return its effects on challenges:
/// (owner name, removed).
fn challenge_effects(w: &mut World, command: Command) -> Vec<(String, bool)> {
    w.rev += 1;
    let (r, fx) = w.state.apply(w.rev, &Envelope { at_ms: 1_000 * w.rev, command: command.clone(), guard: Guard::default() });
    assert!(r.is_ok(), "{command:?}: {r:?}");
    fx.iter().filter(|e| e.kind == Kind::Acme).map(|e| (e.key.clone(), e.after.is_none())).collect()
}

#[test]
fn a_challenge_goes_when_a_new_tenant_takes_its_name() {
    // `ws-newco` is t1's alias from before the zone had a `ws` service.
    let mut w = credentials_world();
    w.ok(Command::DeleteZone { apex: "apps.staging.example.test.".into() });
    let mut no_ws = zone();
    no_ws.rules = vec![
        Rule::ServiceTenant { services: vec!["api".into()], target: "{service}-{cluster}.example.test.".into(), ttl: None },
        Rule::TenantHost { ttl: None },
        Rule::Acme { validation_zone: None },
    ];
    w.ok(Command::PutZone { zone: no_ws });
    w.ok(Command::AddAlias { tenant: "t1".into(), alias: "ws-newco".into() });
    let owner = "_acme-challenge.ws-newco.apps.example.test.";
    w.run_as(TENANT_T1, set_acme("ws-newco.apps.example.test", "squat", 3600)).unwrap();
    w.run_as(TENANT_T1, set_acme("t1.apps.example.test", "mine", 3600)).unwrap();
    // The zone gets its `ws` service back: no tenant newco yet, so the name is still t1's.
    assert_eq!(challenge_effects(&mut w, Command::PutZone { zone: credentials_zone() }), vec![]);
    assert!(w.state.challenge(owner).is_some());
    // newco is created and owns `ws-newco` through the service rule: t1's
    // challenge goes in that same command, and t1's other challenge stays.
    let fx = challenge_effects(&mut w, Command::CreateTenant { id: "newco".into(), cluster: Some("mt2".into()) });
    assert_eq!(fx, vec![(owner.to_string(), true)]);
    assert!(w.state.challenge(owner).is_none());
    assert!(txt_values(&resolve(&w.state, owner, RType::Txt)).is_empty());
    assert!(w.state.challenge("_acme-challenge.t1.apps.example.test.").is_some());
    assert_eq!(w.state.marks().tenants, w.rev);
}

#[test]
fn a_challenge_goes_when_its_alias_changes_hands() {
    let mut w = credentials_world();
    w.ok(Command::AddAlias { tenant: "t1".into(), alias: "shop".into() });
    for name in ["shop.apps.example.test", "*.deep.shop.apps.example.test", "t1.apps.example.test"] {
        w.run_as(TENANT_T1, set_acme(name, "v", 3600)).unwrap();
    }
    // A challenge an operator set at a name of nobody's survives tenant changes.
    w.ok(set_acme("www.apps.example.test", "ops", 3600));
    // Each records the tenant that owned its name when set, whoever set it.
    let tenant_at = |w: &World, owner: &str| w.state.challenge(owner).and_then(|c| c.tenant.clone());
    assert_eq!(tenant_at(&w, "_acme-challenge.www.apps.example.test."), None);
    assert_eq!(tenant_at(&w, "_acme-challenge.shop.apps.example.test."), Some("t1".into()));
    w.ok(set_acme("t1.apps.example.test", "ops", 3600));
    assert_eq!(tenant_at(&w, "_acme-challenge.t1.apps.example.test."), Some("t1".into()));
    let fx = challenge_effects(&mut w, Command::RemoveAlias { tenant: "t1".into(), alias: "shop".into() });
    assert_eq!(
        fx,
        vec![
            ("_acme-challenge.deep.shop.apps.example.test.".to_string(), true),
            ("_acme-challenge.shop.apps.example.test.".to_string(), true)
        ]
    );
    // Given to t2, the name carries nothing of t1's.
    assert_eq!(challenge_effects(&mut w, Command::AddAlias { tenant: "t2".into(), alias: "shop".into() }), vec![]);
    assert!(w.state.challenge("_acme-challenge.shop.apps.example.test.").is_none());
    assert!(w.state.challenge("_acme-challenge.t1.apps.example.test.").is_some());
    assert!(w.state.challenge("_acme-challenge.www.apps.example.test.").is_some());
    // Deleting t1 takes the challenges of its names (id and alias) along.
    w.run_as(TENANT_T1, set_acme("a1.apps.example.test", "v", 3600)).unwrap();
    let fx = challenge_effects(&mut w, Command::DeleteTenant { id: "t1".into() });
    assert_eq!(
        fx,
        vec![("_acme-challenge.a1.apps.example.test.".to_string(), true), ("_acme-challenge.t1.apps.example.test.".to_string(), true)]
    );
    assert!(w.state.challenge("_acme-challenge.www.apps.example.test.").is_some());
}

#[test]
fn a_challenge_goes_when_a_zone_write_changes_its_names_owner() {
    let mut w = credentials_world();
    w.run_as(TENANT_T1, set_acme("x.t1.apps.example.test", "v", 3600)).unwrap();
    w.ok(set_acme("t2.apps.example.test", "v", 3600));
    // A static name between the challenge and the tenant's label makes the
    // name the operator's: that challenge goes, t2's stays.
    let mut z = credentials_zone();
    z.records.push(RecordSpec { name: "x.t1".into(), rtype: "A".into(), ttl: None, data: "192.0.2.1".into() });
    let fx = challenge_effects(&mut w, Command::PutZone { zone: z });
    assert_eq!(fx, vec![("_acme-challenge.x.t1.apps.example.test.".to_string(), true)]);
    // The zone goes: its names are no tenant's any more.
    let fx = challenge_effects(&mut w, Command::DeleteZone { apex: APEX.into() });
    assert_eq!(fx, vec![("_acme-challenge.t2.apps.example.test.".to_string(), true)]);
}

/// The prod zone as `credentials_world` serves it (with its acme rule).
fn credentials_zone() -> ZoneSpec {
    let mut z = zone();
    z.rules.push(Rule::Acme { validation_zone: None });
    z
}

fn tsig_key(name: &str, scope: Scope, allow: crate::tsig::Allow) -> crate::TsigKey {
    crate::TsigKey {
        name: name.into(),
        algorithm: crate::tsig::Algorithm::HmacSha256,
        secret: vec![7; 32],
        scope,
        allow,
        created_at_ms: 0,
        revision: 0,
    }
}

const TRANSFER: crate::tsig::Allow = crate::tsig::Allow { transfer: true, update: false };
const UPDATE: crate::tsig::Allow = crate::tsig::Allow { transfer: false, update: true };

#[test]
fn tsig_keys_are_created_once_scoped_and_go_with_their_tenant() {
    let mut w = credentials_world();
    // The name is normalised: absolute, lower-case.
    match w.ok(Command::CreateTsigKey { key: tsig_key("Xfr-Key", Scope::All, TRANSFER) }) {
        Outcome::TsigKey(k) => {
            assert_eq!(k.name, "xfr-key.");
            assert_eq!(k.revision, w.rev);
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        w.run(Command::CreateTsigKey { key: tsig_key("xfr-key.", Scope::All, UPDATE) }),
        Err(CommandError::AlreadyExists { .. })
    ));
    // A tenant key transfers nothing: the zone holds every tenant's names.
    let e = w.run(Command::CreateTsigKey { key: tsig_key("t1", Scope::Tenant("t1".into()), TRANSFER) }).unwrap_err();
    assert!(e.to_string().contains("allow"), "{e}");
    let e = w.run(Command::CreateTsigKey { key: tsig_key("nobody", Scope::Tenant("nobody".into()), UPDATE) }).unwrap_err();
    assert!(matches!(e, CommandError::NotFound { .. }), "{e}");
    let mut short = tsig_key("short", Scope::All, UPDATE);
    short.secret = vec![1; 8];
    assert!(w.run(Command::CreateTsigKey { key: short }).unwrap_err().to_string().starts_with("invalid argument: secret"));
    w.ok(Command::CreateTsigKey { key: tsig_key("t1-acme", Scope::Tenant("t1".into()), UPDATE) });

    // Only an admin manages keys.
    for id in [OPERATOR, STAGING, TENANT_T1] {
        let e = w.run_as(id, Command::CreateTsigKey { key: tsig_key("k", Scope::All, UPDATE) }).unwrap_err();
        assert!(matches!(e, CommandError::PermissionDenied(_)), "{id}: {e}");
        assert!(w.run_as(id, Command::DeleteTsigKey { name: "xfr-key".into() }).is_err());
    }
    assert!(w.state.tsig_key("xfr-key.").is_some());

    // Scopes decide which zones a key transfers.
    let prod = w.state.zone(APEX).unwrap().clone();
    let staging = w.state.zone("apps.staging.example.test.").unwrap().clone();
    assert!(w.state.tsig_key("xfr-key.").unwrap().may_transfer(&prod));
    let staging_key = tsig_key("staging", Scope::Environments(vec!["staging".into()]), TRANSFER).validate().unwrap();
    assert!(staging_key.may_transfer(&staging) && !staging_key.may_transfer(&prod));
    assert!(!w.state.tsig_key("t1-acme.").unwrap().may_transfer(&prod));

    // The tenant goes, and its keys with it.
    w.ok(Command::DeleteTenant { id: "t1".into() });
    assert!(w.state.tsig_key("t1-acme.").is_none());
    w.ok(Command::DeleteTsigKey { name: "XFR-key.".into() });
    assert!(w.state.tsig_keys().next().is_none());
    // The secret never shows in Debug output (logs, error messages).
    let shown = format!("{:?}", Command::CreateTsigKey { key: tsig_key("k", Scope::All, UPDATE) });
    assert!(shown.contains("<32 bytes>") && !shown.contains("7, 7"), "{shown}");
}

#[test]
fn transfer_prefixes_parse_strictly_and_match_their_addresses() {
    use crate::model::Prefix;
    let p = Prefix::parse("allow", "192.0.2.0/24").unwrap();
    assert!(p.contains("192.0.2.77".parse().unwrap()));
    assert!(p.contains("::ffff:192.0.2.1".parse().unwrap()));
    assert!(!p.contains("192.0.3.1".parse().unwrap()));
    assert!(!p.contains("2001:db8::1".parse().unwrap()));
    let host = Prefix::parse("allow", "127.0.0.1").unwrap();
    assert_eq!(host.to_string(), "127.0.0.1/32");
    assert!(host.contains("127.0.0.1".parse().unwrap()) && !host.contains("127.0.0.2".parse().unwrap()));
    let v6 = Prefix::parse("allow", "2001:db8::/32").unwrap();
    assert!(v6.contains("2001:db8:1::5".parse().unwrap()));
    assert!(Prefix::parse("allow", "0.0.0.0/0").unwrap().contains("203.0.113.9".parse().unwrap()));
    for bad in ["192.0.2.1/24", "192.0.2.0/33", "example", "10.0.0.0/x"] {
        let e = Prefix::parse("transfer.allow[0]", bad).unwrap_err();
        assert_eq!(e.field, "transfer.allow[0]", "{bad}");
    }
}

// --- RFC 2136 updates ----------------------------------------------------------

use crate::update::{Prerequisite, Update, UpdateOp, UpdateRcode};

fn upd(prerequisites: Vec<Prerequisite>, ops: Vec<UpdateOp>) -> Command {
    Command::Update { update: Update { apex: APEX.into(), prerequisites, ops } }
}

fn a(name: &str, last: u8) -> UpdateOp {
    UpdateOp::Add(crate::Record { name: name.into(), ttl: 60, data: RData::A(Ipv4Addr::new(192, 0, 2, last)) })
}

fn rcode(r: Result<Outcome, CommandError>) -> Option<UpdateRcode> {
    match r {
        Err(CommandError::Update { rcode, .. }) => Some(rcode),
        other => panic!("expected an update refusal, got {other:?}"),
    }
}

#[test]
fn an_update_applies_all_of_itself_or_nothing() {
    let mut w = acme_world();
    let n = "x.apps.example.test.";
    w.ok(upd(vec![Prerequisite::NameNotInUse(n.into())], vec![a(n, 1), a(n, 2)]));
    assert_eq!(resolve(&w.state, n, RType::A).answers.len(), 2);
    // The prerequisite fails now: nothing of it happens.
    let before = w.state.zone(APEX).unwrap().full_spec();
    assert_eq!(
        rcode(w.run(upd(vec![Prerequisite::NameNotInUse(n.into())], vec![a("y.apps.example.test.", 3)]))),
        Some(UpdateRcode::YxDomain)
    );
    // A name the rules make (tenant t1's host) refuses the whole update.
    assert_eq!(rcode(w.run(upd(vec![], vec![a("y.apps.example.test.", 3), a("t1.apps.example.test.", 4)]))), Some(UpdateRcode::Refused));
    assert_eq!(rcode(w.run(upd(vec![], vec![a("ws-t1.apps.example.test.", 4)]))), Some(UpdateRcode::Refused));
    assert_eq!(rcode(w.run(upd(vec![], vec![a("www.example.org.", 4)]))), Some(UpdateRcode::NotZone));
    assert_eq!(w.state.zone(APEX).unwrap().full_spec(), before);
    // RRset prerequisites, value dependent and not.
    let two = vec![RData::A(Ipv4Addr::new(192, 0, 2, 2)), RData::A(Ipv4Addr::new(192, 0, 2, 1))];
    w.ok(upd(
        vec![Prerequisite::RrsetIs(n.into(), RType::A, two)],
        vec![UpdateOp::DeleteRr(n.into(), RData::A(Ipv4Addr::new(192, 0, 2, 1)))],
    ));
    assert_eq!(rcode(w.run(upd(vec![Prerequisite::RrsetExists(n.into(), RType::Txt)], vec![]))), Some(UpdateRcode::NxRrset));
    assert_eq!(rcode(w.run(upd(vec![Prerequisite::RrsetNotExists(n.into(), RType::A)], vec![]))), Some(UpdateRcode::YxRrset));
    w.ok(upd(vec![Prerequisite::NameInUse(n.into())], vec![UpdateOp::DeleteName(n.into())]));
    assert_eq!(resolve(&w.state, n, RType::A).rcode, Rcode::NxDomain);
}

#[test]
fn update_makes_challenges_keeps_the_apex_ns_and_ignores_soa() {
    let mut w = acme_world();
    let owner = "_acme-challenge.t1.apps.example.test.";
    let txt = |v: &str| UpdateOp::Add(crate::Record { name: owner.into(), ttl: 60, data: RData::Txt(vec![v.into()]) });
    w.ok(upd(vec![], vec![txt("one"), txt("two")]));
    let c = w.state.challenge(owner).unwrap();
    assert_eq!(c.values.len(), 2);
    assert_eq!(c.tenant.as_deref(), Some("t1"));
    // Deleting what is not there is no change; deleting the RRset clears it.
    w.ok(upd(vec![], vec![UpdateOp::DeleteRr(owner.into(), RData::Txt(vec!["nope".into()]))]));
    w.ok(upd(vec![], vec![UpdateOp::DeleteRrset(owner.into(), RType::Txt)]));
    assert!(w.state.challenge(owner).is_none_or(|c| c.values.is_empty()));
    // Apex NS: added, removed, never emptied; SOA ignored.
    let ns = |n: &str| RData::Ns(n.into());
    w.ok(upd(vec![], vec![UpdateOp::Add(crate::Record { name: APEX.into(), ttl: 300, data: ns("ns3.example.test.") })]));
    assert_eq!(w.state.zone(APEX).unwrap().spec.ns.len(), 3);
    let all: Vec<UpdateOp> = w.state.zone(APEX).unwrap().spec.ns.iter().map(|n| UpdateOp::DeleteRr(APEX.into(), ns(n))).collect();
    w.ok(upd(vec![], all));
    assert_eq!(w.state.zone(APEX).unwrap().spec.ns.len(), 1);
    w.ok(upd(vec![], vec![UpdateOp::DeleteRrset(APEX.into(), RType::Soa), UpdateOp::DeleteRrset(APEX.into(), RType::Ns)]));
    assert_eq!(resolve(&w.state, APEX, RType::Soa).answers.len(), 1);
}

#[test]
fn a_cname_beside_other_data_is_ignored_as_rfc_2136_says() {
    let mut w = acme_world();
    let cname = |n: &str, target: &str| UpdateOp::Add(crate::Record { name: n.into(), ttl: 60, data: RData::Cname(target.into()) });
    let cnames = |w: &World, n: &str| -> Vec<RData> {
        resolve(&w.state, n, RType::Cname).answers.into_iter().filter(|r| r.name == n).map(|r| r.data).collect()
    };
    // www has an A: the CNAME is ignored, the rest of the update applies.
    let www = "www.apps.example.test.";
    w.ok(upd(vec![], vec![cname(www, "elsewhere.example.test."), a("other.apps.example.test.", 5)]));
    assert!(cnames(&w, www).is_empty());
    assert_eq!(resolve(&w.state, www, RType::A).answers.len(), 1);
    assert_eq!(resolve(&w.state, "other.apps.example.test.", RType::A).answers.len(), 1);
    // alias-www has a CNAME: an A beside it is ignored, a CNAME replaces it.
    let alias = "alias-www.apps.example.test.";
    w.ok(upd(vec![], vec![a(alias, 6)]));
    assert_eq!(cnames(&w, alias), vec![RData::Cname(www.into())]);
    w.ok(upd(vec![], vec![cname(alias, "ns1.apps.example.test.")]));
    assert_eq!(cnames(&w, alias), vec![RData::Cname("ns1.apps.example.test.".into())]);
    // A name with a challenge, and the apex (SOA, NS): ignored too.
    w.ok(set_acme("www.apps.example.test.", "token", 600));
    let before = w.state.zone(APEX).unwrap().full_spec();
    w.ok(upd(vec![], vec![cname("_acme-challenge.www.apps.example.test.", www), cname(APEX, www)]));
    assert_eq!(w.state.zone(APEX).unwrap().full_spec(), before);
    assert_eq!(txt_values(&resolve(&w.state, "_acme-challenge.www.apps.example.test.", RType::Txt)), vec!["token".to_string()]);
}

#[test]
fn a_name_below_a_rule_made_name_is_refused_and_the_tenants_challenge_stays() {
    let mut w = acme_world();
    let owner = "_acme-challenge.ws-t1.apps.example.test.";
    w.ok(set_acme("ws-t1.apps.example.test.", "token", 600));
    let before = w.state.zone(APEX).unwrap().full_spec();
    for n in ["x.ws-t1.apps.example.test.", "a.b.ws-t1.apps.example.test.", "x.t1.apps.example.test."] {
        assert_eq!(rcode(w.run(upd(vec![], vec![a(n, 7)]))), Some(UpdateRcode::Refused), "{n}");
        assert_eq!(rcode(w.run(upd(vec![], vec![UpdateOp::DeleteName(n.into())]))), Some(UpdateRcode::Refused), "{n}");
    }
    assert_eq!(w.state.zone(APEX).unwrap().full_spec(), before);
    assert_eq!(txt_values(&resolve(&w.state, owner, RType::Txt)), vec!["token".to_string()]);
    // Below a name no rule makes (no tenant "nobody"): applied.
    w.ok(upd(vec![], vec![a("x.ws-nobody.apps.example.test.", 7)]));
    assert_eq!(resolve(&w.state, "x.ws-nobody.apps.example.test.", RType::A).answers.len(), 1);
}

#[test]
fn a_tenant_tsig_key_updates_only_its_own_challenges() {
    let mut w = credentials_world();
    w.ok(Command::CreateTsigKey { key: tsig_key("t1", Scope::Tenant("t1".into()), UPDATE) });
    w.ok(Command::CreateTsigKey { key: tsig_key("xfr-only", Scope::All, TRANSFER) });
    let as_key = |w: &mut World, key: &str, command: Command| {
        w.rev += 1;
        let guard = Guard { actor: Actor::TsigKey(key.into()), ..Guard::default() };
        w.state.apply(w.rev, &Envelope { at_ms: 1_000 * w.rev, command, guard }).0
    };
    let txt = |owner: &str| UpdateOp::Add(crate::Record { name: owner.into(), ttl: 60, data: RData::Txt(vec!["v".into()]) });
    assert!(as_key(&mut w, "t1.", upd(vec![], vec![txt("_acme-challenge.t1.apps.example.test.")])).is_ok());
    assert!(as_key(&mut w, "t1.", upd(vec![], vec![txt("_acme-challenge.a1.apps.example.test.")])).is_ok(), "its alias is its own");
    for bad in [txt("_acme-challenge.t2.apps.example.test."), a("t1-static.apps.example.test.", 9)] {
        assert_eq!(rcode(as_key(&mut w, "t1.", upd(vec![], vec![bad]))), Some(UpdateRcode::Refused));
    }
    assert_eq!(rcode(as_key(&mut w, "xfr-only.", upd(vec![], vec![a("z.apps.example.test.", 1)]))), Some(UpdateRcode::Refused));
    assert!(matches!(as_key(&mut w, "gone.", upd(vec![], vec![])), Err(CommandError::Unauthenticated(_))));
    // A TSIG key acts for updates only.
    assert!(matches!(as_key(&mut w, "t1.", Command::DeleteTenant { id: "t2".into() }), Err(CommandError::PermissionDenied(_))));
}

/// An IXFR's difference, from the history, is exactly what changed in the
/// exported zone; undoing the history gives back the old state.
#[test]
fn the_history_undone_gives_the_old_state_and_the_zone_difference() {
    let mut w = acme_world();
    w.ok(Command::CreateTenant { id: "t2".into(), cluster: Some("mt2".into()) });
    w.ok(Command::AddAlias { tenant: "t2".into(), alias: "a2".into() });
    let old = w.state.clone();
    let mut changes = Vec::new();
    for command in [
        Command::MoveTenant { id: "t1".into(), cluster: "mt2".into() },
        Command::DeleteTenant { id: "t2".into() },
        Command::CreateTenant { id: "t3".into(), cluster: Some("mt1".into()) },
        Command::AddAlias { tenant: "t3".into(), alias: "a2".into() },
        set_acme("t3.apps.example.test.", "v", 600),
        set_acme("blog.t3.apps.example.test.", "v", 600),
        set_acme("a.b.t1.apps.example.test.", "v", 600),
        Command::MoveTenant { id: "t1".into(), cluster: "mt1".into() },
        // Static records changed name by name: added beside others, at a
        // new name, at the apex, and a name removed.
        upd(vec![], vec![a("www.apps.example.test.", 81), a("new.apps.example.test.", 1), a(APEX, 9)]),
        upd(vec![], vec![UpdateOp::DeleteName("a.b.deep.apps.example.test.".into())]),
        upd(
            vec![],
            vec![
                UpdateOp::DeleteRr("new.apps.example.test.".into(), RData::A(Ipv4Addr::new(192, 0, 2, 1))),
                a("new.apps.example.test.", 2),
            ],
        ),
    ] {
        w.rev += 1;
        let (r, fx) = w.state.apply(w.rev, &Envelope { at_ms: 1_000 * w.rev, command, guard: Guard::default() });
        assert!(r.is_ok(), "{r:?}");
        changes.extend(fx.iter().filter_map(|e| e.for_history()));
    }
    let undone = w.state.undone(old.revision(), &changes).unwrap();
    // The per-zone serial is bookkeeping the history omits: it is not taken back.
    let kept = |s: &State| s.values().filter(|v| v.kind() != Kind::ZoneSerial).collect::<Vec<_>>();
    assert_eq!(kept(&undone), kept(&old));
    let zone = w.state.zone(APEX).unwrap().clone();
    let all = |s: &State| {
        let mut v = Vec::new();
        let _ = crate::resolve::zone_records(s, s.zone(APEX).unwrap(), &mut |r| {
            if r.rtype() != RType::Soa {
                v.push(r);
            }
            std::ops::ControlFlow::Continue(())
        });
        v
    };
    let (before, after) = (all(&undone), all(&w.state));
    let mut removed: Vec<_> = before.iter().filter(|r| !after.contains(r)).cloned().collect();
    let mut added: Vec<_> = after.iter().filter(|r| !before.contains(r)).cloned().collect();
    let (mut r, mut a) = crate::resolve::zone_difference(&undone, &w.state, &zone, &changes).unwrap();
    for v in [&mut removed, &mut added, &mut r, &mut a] {
        v.sort_by_key(|x| format!("{x:?}"));
    }
    assert!(!added.is_empty() && !removed.is_empty());
    for static_name in ["www.apps.example.test.", "new.apps.example.test.", "a.b.deep.apps.example.test.", APEX] {
        assert!(added.iter().chain(&removed).any(|x| x.name == static_name && x.rtype() != RType::Ns), "{static_name}");
    }
    assert_eq!((r, a), (removed, added));
}

/// RFC 2136 updates at a large zone write the names they change, not the
/// zone: the zone's own value is not among the effects, its serial and
/// revision move all the same, and a compare-and-set of the zone made
/// before the update fails.
#[test]
fn an_update_writes_the_names_it_changes_and_not_its_zone() {
    let mut w = World::new();
    let mut big = zone();
    big.records.extend((0..5_000).map(|i| RecordSpec { name: format!("r{i}"), rtype: "A".into(), ttl: None, data: "192.0.2.1".into() }));
    w.ok(Command::PutZone { zone: big.clone() });
    let read = w.state.zone_revision(w.state.zone(APEX).unwrap());
    let count = w.state.zone(APEX).unwrap().record_count();

    w.rev += 1;
    let command = upd(vec![], vec![a("r7.apps.example.test.", 2), UpdateOp::DeleteName("r8.apps.example.test.".into())]);
    let (r, fx) = w.state.apply(w.rev, &Envelope { at_ms: 1_000 * w.rev, command, guard: Guard::default() });
    assert!(r.is_ok(), "{r:?}");
    let written: Vec<(Kind, &str)> = fx.iter().map(|e| (e.kind, e.key.as_str())).collect();
    assert_eq!(
        written,
        [
            (Kind::ZoneNode, "apps.example.test. r7.apps.example.test."),
            (Kind::ZoneNode, "apps.example.test. r8.apps.example.test."),
            (Kind::ZoneSerial, APEX)
        ]
    );
    let zone = w.state.zone(APEX).unwrap().clone();
    assert_eq!(zone.record_count(), count);
    assert_eq!(resolve(&w.state, "r7.apps.example.test.", RType::A).answers.len(), 2);
    assert_eq!(resolve(&w.state, "r8.apps.example.test.", RType::A).rcode, Rcode::NxDomain);
    assert_eq!((w.state.serial_revision(&zone), w.state.zone_revision(&zone)), (w.rev, w.rev));

    // The zone as read before the update is not written over it.
    w.rev += 1;
    let guard = Guard { expected_revision: Some(read), ..Guard::default() };
    let (r, _) = w.state.apply(w.rev, &Envelope { at_ms: 1_000 * w.rev, command: Command::PutZone { zone: big.clone() }, guard });
    assert!(matches!(r, Err(CommandError::Aborted { .. })), "{r:?}");
    // Written whole again with one record changed, one name is written.
    let mut again = w.state.zone(APEX).unwrap().full_spec();
    again.records.retain(|r| r.name != "r9.apps.example.test.");
    w.rev += 1;
    let (r, fx) =
        w.state.apply(w.rev, &Envelope { at_ms: 1_000 * w.rev, command: Command::PutZone { zone: again }, guard: Guard::default() });
    assert!(r.is_ok(), "{r:?}");
    assert_eq!(fx.iter().filter(|e| e.kind == Kind::ZoneNode).count(), 1);

    // An update that would pass the zone's record limit is refused whole.
    let count = w.state.zone(APEX).unwrap().record_count();
    assert!(count > 5_000);
    let fill: Vec<UpdateOp> = (count..crate::model::RECORDS_MAX).map(|i| a(&format!("f{i}.apps.example.test."), 1)).collect();
    for chunk in fill.chunks(crate::update::UPDATE_ITEMS_MAX) {
        w.ok(upd(vec![], chunk.to_vec()));
    }
    assert_eq!(w.state.zone(APEX).unwrap().record_count(), crate::model::RECORDS_MAX);
    let before = w.state.zone(APEX).unwrap().full_spec();
    assert_eq!(rcode(w.run(upd(vec![], vec![a("r7.apps.example.test.", 3)]))), Some(UpdateRcode::Refused));
    assert_eq!(w.state.zone(APEX).unwrap().full_spec(), before);
    // Changing a record in place is not more of them.
    w.ok(upd(vec![], vec![UpdateOp::DeleteRrset("r7.apps.example.test.".into(), RType::A), a("r7.apps.example.test.", 3)]));
}

// --- DNSSEC ------------------------------------------------------------------

mod dnssec {
    use super::*;
    use crate::dnssec::{Algorithm, KeyRole, KeyState, Policy, Secret, Step};

    fn generate(w: &mut World, role: KeyRole, state: KeyState, byte: u8) -> Result<Outcome, CommandError> {
        let step = Step::Generate { role, state, public_key: vec![byte; 32], private_key: Secret(vec![1, 2, 3]) };
        w.run(Command::DnssecStep { apex: APEX.into(), step })
    }

    fn types_at_apex(w: &World, rtype: RType) -> usize {
        resolve(&w.state, APEX, rtype).answers.len()
    }

    #[test]
    fn a_signed_zone_publishes_its_keys_and_cds_and_unsigns_through_cds_delete() {
        let mut w = World::new();
        let mut spec = zone();
        spec.dnssec = Some(Policy::new(Algorithm::Ed25519));
        w.ok(Command::PutZone { zone: spec.clone() });
        assert!(w.state.signed_zone(APEX).is_some_and(|s| s.keys.is_empty()), "signing starts with no keys");
        let serial = w.state.serial(w.state.zone(APEX).unwrap());
        generate(&mut w, KeyRole::Ksk, KeyState::Active, 1).unwrap();
        generate(&mut w, KeyRole::Zsk, KeyState::Active, 2).unwrap();
        assert!(w.state.serial(w.state.zone(APEX).unwrap()) > serial, "key steps move the serial");
        assert_eq!(types_at_apex(&w, RType::DNSKEY), 2);
        assert_eq!(types_at_apex(&w, RType::CDS), 1, "CDS names the active KSK only");
        assert_eq!(types_at_apex(&w, RType::CDNSKEY), 1);
        let types = crate::resolve::types_at(&w.state, w.state.zone(APEX).unwrap(), APEX).unwrap();
        assert!(types.contains(&RType::DNSKEY) && types.contains(&RType::Soa));
        assert!(generate(&mut w, KeyRole::Zsk, KeyState::Active, 3).is_err(), "two active ZSKs are refused");

        // Changing the algorithm is refused and changes nothing.
        let mut other = spec.clone();
        other.dnssec = Some(Policy::new(Algorithm::EcdsaP256Sha256));
        let err = w.run(Command::PutZone { zone: other }).unwrap_err();
        assert!(err.to_string().contains("algorithm rollover"), "{err}");

        // Without [dnssec]: CDS and CDNSKEY ask for the DS to go; keys stay.
        let mut unsigned = spec.clone();
        unsigned.dnssec = None;
        w.ok(Command::PutZone { zone: unsigned });
        let cds = resolve(&w.state, APEX, RType::CDS).answers;
        assert_eq!(cds.len(), 1);
        assert_eq!(cds[0].data, RData::Cds { key_tag: 0, algorithm: 0, digest_type: 0, digest: vec![0] });
        assert_eq!(types_at_apex(&w, RType::DNSKEY), 2, "still signed while the parent follows");
        assert!(w.run(Command::DnssecRollover { apex: APEX.into(), role: KeyRole::Zsk }).is_err(), "no rollover while unsigning");
        let serial = w.state.serial(w.state.zone(APEX).unwrap());
        w.ok(Command::DnssecStep { apex: APEX.into(), step: Step::Finish });
        assert!(w.state.signed_zone(APEX).is_none());
        assert!(w.state.serial(w.state.zone(APEX).unwrap()) > serial, "the keys' going moves the serial");
        assert_eq!(types_at_apex(&w, RType::DNSKEY), 0);
    }

    #[test]
    fn key_steps_are_the_leaders_and_rollovers_need_the_zone_in_scope() {
        let mut w = credentials_world();
        let mut spec = credentials_zone();
        spec.dnssec = Some(Policy::new(Algorithm::Ed25519));
        w.ok(Command::PutZone { zone: spec });
        let step = Command::DnssecStep { apex: APEX.into(), step: Step::Finish };
        let rollover = Command::DnssecRollover { apex: APEX.into(), role: KeyRole::Ksk };
        let admin = credential("admin", Role::Admin, Scope::All);
        let staging = credential("stg", Role::Operator, Scope::Environments(vec!["staging".into()]));
        let prod = credential("prod", Role::Operator, Scope::Environments(vec!["prod".into()]));
        assert!(authorize(&w.state, &admin, Access::Write(&step)).is_err(), "not even an admin steps keys");
        assert!(authorize(&w.state, &prod, Access::Write(&rollover)).is_ok());
        assert!(authorize(&w.state, &staging, Access::Write(&rollover)).is_err());
    }
}

/// Every node holds every tenant: its size is the per-tenant memory
/// budget (bench/compare measures the whole node's).
#[test]
fn a_tenant_stays_small() {
    use crate::model::Tenant;
    assert!(std::mem::size_of::<Tenant>() <= 72, "Tenant is {} bytes", std::mem::size_of::<Tenant>());
    let t = Tenant {
        id: "tenant-id-of-24-bytes-xx".into(),
        cluster: "cluster-15-byte".into(),
        pinned: false,
        aliases: Default::default(),
        history: Default::default(),
        revision: 1,
    };
    // Ids that short, no aliases, no moves: nothing on the heap.
    assert!(!t.id.is_heap_allocated());
    assert!(t.cluster.len() <= 15 && t.aliases.capacity() == 0 && t.history.capacity() == 0);
}

#[test]
fn a_target_is_expanded_as_the_three_replacements_in_turn() {
    let chained = |t: &str, s: &str, c: &str, n: &str| t.replace("{service}", s).replace("{cluster}", c).replace("{tenant}", n);
    for template in [
        "{service}-{tenant}.{cluster}.example.test.",
        "{cluster}.example.test.",
        "x{cluster}{cluster}y.",
        "{clu{cluster}ster}.",
        "{{cluster}}.",
        "{}{tenant",
        "",
    ] {
        assert_eq!(crate::model::expand_target(template, "ws", "mt-1", "t42"), chained(template, "ws", "mt-1", "t42"), "{template}");
    }
}

// --- Catalog zones answered from an index (issue 27) ---------------------------

mod catalog {
    use std::collections::BTreeSet;
    use std::ops::ControlFlow;

    use super::*;
    use crate::record::Record;
    use crate::resolve::{catalog_member_label, zone_records};

    const CATALOG: &str = "catalog.example.net.";

    fn plain_zone(apex: &str, catalog: bool) -> ZoneSpec {
        ZoneSpec { apex: apex.into(), rules: vec![], records: vec![], catalog, ..zone() }
    }

    /// The catalog's records below its apex, as a transfer sends them.
    fn transferred(state: &State) -> Vec<Record> {
        let Some(zone) = state.zone(CATALOG).cloned() else { panic!("no catalog") };
        let mut out = Vec::new();
        let _ = zone_records(state, &zone, &mut |r| {
            if r.name != CATALOG {
                out.push(r);
            }
            ControlFlow::Continue(())
        });
        out
    }

    /// Every name the catalog's transfer holds is answered with exactly its
    /// records there, `zones.<apex>` exists while any member does, and the
    /// names of `gone` (deleted or no longer members) do not exist.
    fn assert_answers_match_the_transfer(state: &State, gone: &[String]) {
        let records = transferred(state);
        let names: BTreeSet<&str> = records.iter().map(|r| r.name.as_str()).collect();
        for name in &names {
            let want: Vec<&Record> = records.iter().filter(|r| r.name == *name).collect();
            let got = resolve(state, name, want[0].rtype());
            assert_eq!((got.rcode, got.authoritative), (Rcode::NoError, true), "{name}");
            assert_eq!(got.answers.iter().collect::<Vec<_>>(), want, "{name}");
        }
        let members = records.iter().filter(|r| r.rtype() == RType::Ptr).count();
        let zones = resolve(state, &format!("zones.{CATALOG}"), RType::Ptr);
        assert_eq!(zones.rcode, if members > 0 { Rcode::NoError } else { Rcode::NxDomain });
        assert!(zones.answers.is_empty(), "an empty non-terminal: {zones:?}");
        let label = catalog_member_label("apps.example.test.");
        let missing = [
            format!("nosuch.zones.{CATALOG}"),
            format!("0000000000000000.zones.{CATALOG}"),
            format!("x.{label}.zones.{CATALOG}"),
            format!("{label}.x.zones.{CATALOG}"),
            format!("x.version.{CATALOG}"),
            format!("{label}.{CATALOG}"),
        ];
        let gone = gone.iter().map(|apex| format!("{}.zones.{CATALOG}", catalog_member_label(apex)));
        for name in missing.into_iter().chain(gone) {
            let got = resolve(state, &name, RType::Ptr);
            assert_eq!((got.rcode, got.answers.len()), (Rcode::NxDomain, 0), "{name}: {got:?}");
        }
    }

    #[test]
    fn names_below_a_catalog_answer_as_its_transfer_through_zone_writes_and_restores() {
        let mut w = World::new();
        w.ok(Command::PutZone { zone: plain_zone(CATALOG, true) });
        let apexes: Vec<String> = (0..300).map(|i| format!("z{i}.example.net.")).collect();
        for apex in &apexes {
            w.ok(Command::PutZone { zone: plain_zone(apex, false) });
        }
        assert_eq!(transferred(&w.state).len(), 1 + 301, "version and every zone but the catalog");
        assert_answers_match_the_transfer(&w.state, &[]);

        // Deletes, rewrites, a second catalog, and a member made a catalog.
        let mut gone = Vec::new();
        for apex in apexes.iter().step_by(3) {
            w.ok(Command::DeleteZone { apex: apex.clone() });
            gone.push(apex.clone());
        }
        for apex in apexes.iter().enumerate().filter(|(i, _)| i % 3 != 0 && i % 5 == 1).map(|(_, a)| a) {
            w.ok(Command::PutZone { zone: plain_zone(apex, false) });
        }
        w.ok(Command::PutZone { zone: plain_zone("catalog2.example.org.", true) });
        w.ok(Command::PutZone { zone: plain_zone(&apexes[1], true) });
        gone.extend(["catalog2.example.org.".to_string(), apexes[1].clone()]);
        assert_eq!(transferred(&w.state).len(), 1 + 301 - 100 - 1);
        assert_answers_match_the_transfer(&w.state, &gone);

        // A restarted node (or one installing a snapshot) answers the same.
        let restored = State::restore(w.state.revision(), w.state.marks(), w.state.values());
        assert_eq!(transferred(&restored), transferred(&w.state));
        assert_answers_match_the_transfer(&restored, &gone);
        for apex in &apexes {
            let label = catalog_member_label(apex);
            assert_eq!(restored.catalog_members(&label), w.state.catalog_members(&label), "{apex}");
        }

        // With no member left, `zones.<apex>` is gone too.
        let members: Vec<String> = w.state.zones().filter(|z| !z.spec.catalog).map(|z| z.apex().to_string()).collect();
        for apex in &members {
            w.ok(Command::DeleteZone { apex: apex.clone() });
        }
        gone.extend(members);
        assert_eq!(transferred(&w.state).len(), 1);
        assert_answers_match_the_transfer(&w.state, &gone);
    }
}

// --- Batches ------------------------------------------------------------------

use crate::command::{BatchOutcome, BatchRow, RowError};

fn row(command: Command) -> BatchRow {
    BatchRow { command, expected_revision: None }
}

fn create(id: &str, cluster: &str) -> Command {
    Command::CreateTenant { id: id.into(), cluster: Some(cluster.into()) }
}

fn batch_outcome(r: Result<Outcome, CommandError>) -> BatchOutcome {
    match r {
        Ok(Outcome::Batch(b)) => *b,
        other => panic!("not a batch outcome: {other:?}"),
    }
}

#[test]
fn a_batch_applies_its_rows_at_one_revision_and_refuses_each_bad_row_alone() {
    let mut w = World::new();
    w.ok(create("t0", "mt1"));
    let rows = vec![row(create("t1", "mt1")), row(create("t0", "mt2")), row(create("t2", "nope")), row(create("t3", "mt2"))];
    let b = batch_outcome(w.run(Command::Batch { rows, atomic: false }));
    let at = w.rev;
    assert!(b.applied);
    assert_eq!(b.refused.iter().map(|(i, _)| *i).collect::<Vec<_>>(), vec![1, 2]);
    assert!(matches!(b.refused[0].1, CommandError::AlreadyExists { .. }), "{:?}", b.refused[0]);
    assert!(matches!(b.refused[1].1, CommandError::NotFound { .. }), "{:?}", b.refused[1]);
    assert_eq!(b.row(0), Ok(()));
    assert!(matches!(b.row(1), Err(RowError::Refused(CommandError::AlreadyExists { .. }))));
    for (id, cluster) in [("t1", "mt1"), ("t3", "mt2"), ("t0", "mt1")] {
        assert_eq!(w.state.tenant(id).unwrap().cluster, cluster, "{id}");
    }
    assert_eq!(w.state.tenant("t1").unwrap().revision, at);
    assert_eq!(w.state.tenant("t3").unwrap().revision, at);
    assert!(w.state.tenant("t2").is_none());
    // Answered at once.
    assert_eq!(cname_target(&resolve(&w.state, &format!("ws-t3.{APEX}"), RType::Cname)).as_deref(), Some("ws-mt2.example.test."));
}

#[test]
fn an_atomic_batch_with_a_refused_row_changes_nothing() {
    let mut w = World::new();
    w.ok(create("t0", "mt1"));
    let before = w.state.clone();
    let rows = vec![
        row(create("t1", "mt1")),
        row(Command::MoveTenant { id: "t0".into(), cluster: "mt2".into() }),
        row(create("t2", "nope")),
        row(create("t3", "mt2")),
    ];
    w.rev += 1;
    let env = Envelope { at_ms: 1_000 * w.rev, command: Command::Batch { rows, atomic: true }, guard: Guard::default() };
    let (r, effects) = w.state.apply(w.rev, &env);
    let b = batch_outcome(r);
    assert!(!b.applied);
    assert_eq!(b.refused.len(), 1, "stops at the first refusal");
    assert_eq!(b.refused[0].0, 2);
    assert_eq!(b.row(0), Err(RowError::NotApplied { refused_row: 2 }));
    assert_eq!(b.row(3), Err(RowError::NotApplied { refused_row: 2 }));
    assert!(effects.is_empty(), "{effects:?}");
    assert!(w.state.tenant("t1").is_none());
    assert_eq!(w.state.tenant("t0").unwrap().cluster, "mt1");
    assert_eq!(w.state.marks(), before.marks());
    assert_eq!(w.state.tenant_count(), before.tenant_count());
    // The same rows without the bad one commit together.
    let rows = vec![row(create("t1", "mt1")), row(Command::MoveTenant { id: "t0".into(), cluster: "mt2".into() })];
    let b = batch_outcome(w.run(Command::Batch { rows, atomic: true }));
    assert!(b.applied && b.refused.is_empty());
    assert_eq!(w.state.tenant("t0").unwrap().cluster, "mt2");
    assert_eq!(w.state.tenant("t0").unwrap().revision, w.state.tenant("t1").unwrap().revision);
}

#[test]
fn each_row_of_a_batch_has_its_own_compare_and_set() {
    let mut w = World::new();
    w.ok(create("t0", "mt1"));
    let t0 = w.rev;
    w.ok(create("t1", "mt1"));
    let t1 = w.rev;
    let guarded = |command: Command, expected: u64| BatchRow { command, expected_revision: Some(expected) };
    let rows = vec![
        guarded(Command::MoveTenant { id: "t0".into(), cluster: "mt2".into() }, t0),
        // Stale: t1 is at t1, not t0.
        guarded(Command::MoveTenant { id: "t1".into(), cluster: "mt2".into() }, t0),
        // 0: must not exist.
        guarded(create("t2", "mt2"), 0),
        guarded(create("t0x", "mt2"), 5),
    ];
    let b = batch_outcome(w.run(Command::Batch { rows, atomic: false }));
    assert_eq!(
        b.refused,
        vec![(1, CommandError::Aborted { expected: t0, current: t1 }), (3, CommandError::Aborted { expected: 5, current: 0 })]
    );
    assert_eq!(w.state.tenant("t0").unwrap().cluster, "mt2");
    assert_eq!(w.state.tenant("t1").unwrap().cluster, "mt1");
    assert!(w.state.tenant("t2").is_some() && w.state.tenant("t0x").is_none());
    // A batch-wide expected revision means nothing: refused, naming the field.
    w.rev += 1;
    let env = Envelope {
        at_ms: 1_000 * w.rev,
        command: Command::Batch { rows: vec![row(create("t9", "mt1"))], atomic: false },
        guard: Guard { expected_revision: Some(1), ..Guard::default() },
    };
    let r = w.state.apply(w.rev, &env).0;
    assert!(matches!(r, Err(CommandError::Invalid(ref v)) if v.field == "options.expected_revision"), "{r:?}");
}

#[test]
fn a_batch_names_its_bad_rows() {
    let mut w = World::new();
    let refused = |w: &mut World, rows: Vec<BatchRow>| match w.run(Command::Batch { rows, atomic: false }) {
        Err(CommandError::Invalid(v)) => v,
        other => panic!("not refused: {other:?}"),
    };
    let v = refused(&mut w, vec![]);
    assert_eq!(v.field, "commands");
    let v = refused(&mut w, vec![row(create("t1", "mt1")), row(create("T1", "mt2"))]);
    assert_eq!(v.field, "commands[1]", "{v}");
    let v = refused(&mut w, vec![row(create("t1", "mt1")), row(Command::DeleteCluster { id: "mt2".into() })]);
    assert_eq!(v.field, "commands[1]", "{v}");
    let nested = Command::Batch { rows: vec![row(create("t2", "mt1"))], atomic: false };
    let v = refused(&mut w, vec![row(nested)]);
    assert_eq!(v.field, "commands[0]", "{v}");
    let many = (0..=crate::command::BATCH_ROWS_MAX).map(|i| row(create(&format!("t{i}"), "mt1"))).collect();
    assert_eq!(refused(&mut w, many).field, "commands");
    assert_eq!(w.state.tenant_count(), 0);
}

#[test]
fn a_retried_batch_applies_once() {
    let mut w = World::new();
    w.ok(create("t0", "mt1"));
    let rows: Vec<BatchRow> = vec![row(create("t1", "mt1")), row(create("t0", "mt2"))];
    let call = |at_ms: u64, rows: Vec<BatchRow>| Envelope {
        at_ms,
        command: Command::Batch { rows, atomic: false },
        guard: Guard { request_id: Some("chunk-1".into()), ..Guard::default() },
    };
    w.rev += 1;
    let first = w.rev;
    let b = batch_outcome(w.state.apply(first, &call(1_000, rows.clone())).0);
    assert_eq!(b.refused.len(), 1);
    w.rev += 1;
    let (r, effects) = w.state.apply(w.rev, &call(2_000, rows.clone()));
    match r {
        Ok(Outcome::Replayed { revision, outcome }) => {
            assert_eq!(revision, first);
            assert_eq!(*outcome, Outcome::Batch(Box::new(b)));
        }
        other => panic!("not replayed: {other:?}"),
    }
    assert!(effects.is_empty());
    // The same id for a batch of other rows is refused.
    w.rev += 1;
    let r = w.state.apply(w.rev, &call(3_000, vec![row(create("t5", "mt1"))])).0;
    assert!(matches!(r, Err(CommandError::Invalid(ref v)) if v.field == "options.request_id"), "{r:?}");
    assert!(w.state.tenant("t5").is_none());
}

#[test]
fn health_verdicts_shape_answers_and_fail_over() {
    use crate::health::{AllDown, Check, Probe};
    use std::net::IpAddr;
    let mut w = World::new();
    let a1: IpAddr = "198.51.100.11".parse().unwrap();
    let a2: IpAddr = "198.51.100.12".parse().unwrap();
    let checked = Cluster {
        ipv4: vec![Ipv4Addr::new(198, 51, 100, 11), Ipv4Addr::new(198, 51, 100, 12)],
        check: Some(Check::new(Probe::Tcp { port: 443 })),
        failover: Some("mt2".into()),
        ..Cluster::new("mt3")
    };
    // Health is the leader's to set, and only on a checked cluster's own addresses.
    assert!(w.run(Command::SetHealth { cluster: "mt1".into(), down: vec![] }).is_err());
    w.ok(Command::PutCluster { cluster: checked.clone() });
    w.ok(Command::CreateTenant { id: "replbot".into(), cluster: Some("mt3".into()) });
    let e = w.run(Command::SetHealth { cluster: "mt3".into(), down: vec!["192.0.2.1".parse().unwrap()] }).unwrap_err();
    assert!(e.to_string().starts_with("down[0]: "), "{e}");
    let addresses = |w: &World| -> Vec<RData> {
        resolve(&w.state, "replbot.apps.example.test.", RType::A).answers.into_iter().map(|r| r.data).collect()
    };
    let cname = |w: &World| cname_target(&resolve(&w.state, "ws-replbot.apps.example.test.", RType::Cname));
    assert_eq!(addresses(&w).len(), 2);
    let serial = w.state.serial_revision(w.state.zone(APEX).unwrap());

    // One address down: left out of answers, the zone's serial moves.
    w.ok(Command::SetHealth { cluster: "mt3".into(), down: vec![a1] });
    assert_eq!(addresses(&w), vec![RData::A(Ipv4Addr::new(198, 51, 100, 12))]);
    assert!(w.state.serial_revision(w.state.zone(APEX).unwrap()) > serial);
    assert_eq!(cname(&w).as_deref(), Some("ws-mt3.example.test."));
    // A put keeps the verdicts of the addresses that stay.
    w.ok(Command::PutCluster { cluster: Cluster { weight: 50, ..checked.clone() } });
    assert_eq!(w.state.cluster("mt3").unwrap().down, vec![a1]);

    // Every address down: the failover cluster answers, service CNAMEs too.
    w.ok(Command::SetHealth { cluster: "mt3".into(), down: vec![a2, a1] });
    assert_eq!(w.state.cluster("mt3").unwrap().health(), crate::health::Health::Down);
    assert_eq!(addresses(&w), vec![RData::A(Ipv4Addr::new(198, 51, 100, 2))]);
    assert_eq!(cname(&w).as_deref(), Some("ws-mt2.example.test."));
    let e = w.run(Command::DeleteCluster { id: "mt2".into() }).unwrap_err();
    assert!(e.to_string().contains("fails over"), "{e}");

    // No failover: fail open (every address), or closed (none: NXDOMAIN, as
    // for a cluster without ingress).
    w.ok(Command::PutCluster { cluster: Cluster { failover: None, ..checked.clone() } });
    assert_eq!(addresses(&w).len(), 2);
    w.ok(Command::PutCluster { cluster: Cluster { failover: None, all_down: AllDown::FailClosed, ..checked.clone() } });
    assert_eq!(resolve(&w.state, "replbot.apps.example.test.", RType::A).rcode, Rcode::NxDomain);
    // Back up.
    w.ok(Command::SetHealth { cluster: "mt3".into(), down: vec![] });
    assert_eq!(addresses(&w).len(), 2);
    // A failover that does not exist is refused, by field.
    let e = w.run(Command::PutCluster { cluster: Cluster { failover: Some("nope".into()), ..checked } }).unwrap_err();
    assert!(e.to_string().starts_with("cluster.failover: "), "{e}");
}

#[test]
fn a_staged_move_lowers_ttls_then_moves_then_restores() {
    use crate::model::MoveStep;
    let mut w = World::new();
    w.ok(Command::CreateTenant { id: "replbot".into(), cluster: Some("mt1".into()) });
    w.ok(Command::AddAlias { tenant: "replbot".into(), alias: "rb".into() });
    let ttls = |w: &World| -> Vec<(String, u32)> {
        ["ws-replbot.apps.example.test.", "replbot.apps.example.test.", "x.rb.apps.example.test."]
            .iter()
            .map(|q| {
                let a = resolve(&w.state, q, RType::A);
                (format!("{:?}", a.answers[0].data), a.answers[0].ttl)
            })
            .collect()
    };
    let before = ttls(&w);
    assert_eq!(before.iter().map(|(_, t)| *t).collect::<Vec<_>>(), vec![300, 60, 60]);
    // Refused: nothing to lower, the cluster it is on, an unknown cluster, a TTL of 0.
    for (cluster, ttl) in [("mt2", 300), ("mt1", 5), ("nope", 5), ("mt2", 0)] {
        assert!(w.run(Command::StageMove { id: "replbot".into(), cluster: cluster.into(), ttl }).is_err(), "{cluster} {ttl}");
    }
    let serial = w.state.serial_revision(w.state.zone(APEX).unwrap());
    let Outcome::Move(m) = w.ok(Command::StageMove { id: "replbot".into(), cluster: "mt2".into(), ttl: 5 }) else { panic!() };
    assert_eq!((m.old_ttl, m.step, m.from.as_str()), (300, MoveStep::Lowered, "mt1"));
    assert!(w.state.serial_revision(w.state.zone(APEX).unwrap()) > serial, "the serial moves with the TTL");
    // Still the old cluster, every answer at the lowered TTL (aliases too).
    let lowered = ttls(&w);
    assert_eq!(lowered.iter().map(|(d, _)| d.clone()).collect::<Vec<_>>(), before.iter().map(|(d, _)| d.clone()).collect::<Vec<_>>());
    assert!(lowered.iter().all(|(_, t)| *t == 5), "{lowered:?}");
    assert!(w.run(Command::StageMove { id: "replbot".into(), cluster: "mt2".into(), ttl: 5 }).is_err(), "one at a time");
    // Too early (stamps advance 1 s a revision here; the old TTL is 300 s).
    assert!(w.run(Command::AdvanceMove { id: "replbot".into() }).is_err());
    w.rev += 300;
    let Outcome::Move(m) = w.ok(Command::AdvanceMove { id: "replbot".into() }) else { panic!() };
    assert_eq!(m.step, MoveStep::Moved);
    let t = w.state.tenant("replbot").unwrap();
    assert_eq!((t.cluster.as_str(), t.history.len()), ("mt2", 1), "moved, with a tombstone");
    let moved = ttls(&w);
    assert_eq!(moved[0], (format!("{:?}", RData::Cname("ws-mt2.example.test.".into())), 5));
    assert_eq!(moved[1], (format!("{:?}", RData::A(Ipv4Addr::new(198, 51, 100, 2))), 5));
    w.rev += 300;
    assert_eq!(w.ok(Command::AdvanceMove { id: "replbot".into() }), Outcome::Deleted);
    assert!(w.state.staged_move("replbot").is_none());
    assert_eq!(ttls(&w).iter().map(|(_, t)| *t).collect::<Vec<_>>(), vec![300, 60, 60], "TTLs restored");

    // Cancelled while lowered: nothing moved, TTLs back; a deleted tenant takes its move along.
    w.ok(Command::StageMove { id: "replbot".into(), cluster: "mt1".into(), ttl: 5 });
    assert_eq!(w.ok(Command::CancelMove { id: "replbot".into() }), Outcome::Deleted);
    assert_eq!(w.state.tenant("replbot").unwrap().cluster.as_str(), "mt2");
    assert!(w.run(Command::CancelMove { id: "replbot".into() }).is_err());
    w.ok(Command::StageMove { id: "replbot".into(), cluster: "mt1".into(), ttl: 5 });
    w.ok(Command::DeleteTenant { id: "replbot".into() });
    assert!(w.state.staged_move("replbot").is_none());
}
