//! The state both DNS targets answer from (`dns_request`, `doq_stream`).

use switchboard_dns::fixture::{self, record};
use switchboard_domain::dnssec::{Algorithm as DnssecAlgorithm, Policy};
use switchboard_domain::model::{Prefix, Transfer};
use switchboard_domain::tsig::{Algorithm, Allow};
use switchboard_domain::{Cluster, Command, Rule, State, ZoneSpec};

pub const APEX: &str = "apps.example.test.";

/// A zone with both rule kinds, static records of every type, a
/// delegation, a CNAME loop, and tenants on clusters with and without
/// addresses.
pub fn state() -> State {
    let zone = ZoneSpec {
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
        transfer: Transfer { allow: vec![Prefix::parse("allow", "192.0.2.0/24").unwrap()], ..Transfer::default() },
        ..fixture::zone(APEX)
    };
    let mut commands = vec![
        Command::PutZone { zone: zone.clone() },
        Command::PutCluster {
            cluster: Cluster {
                ipv4: vec![[198, 51, 100, 1].into(), [198, 51, 100, 2].into()],
                ipv6: vec!["2001:db8::1".parse().unwrap()],
                ..Cluster::new("mt1")
            },
        },
        Command::PutCluster { cluster: Cluster { hostname: Some(format!("ws-mt1.{APEX}")), ..Cluster::new("mt2") } },
    ];
    commands.push(Command::CreateTsigKey {
        key: fixture::tsig_key("fuzz-key.", Algorithm::HmacSha256, TSIG_SECRET, Allow { transfer: true, update: true }),
    });
    for i in 0..50 {
        commands.push(Command::CreateTenant { id: format!("t{i}"), cluster: Some(if i % 2 == 0 { "mt1" } else { "mt2" }.into()) });
    }
    // A second zone, signed online (Ed25519 keys made here): answers to
    // DO=1 queries for it are signed on the full path.
    let signed_apex = "signed.example.test.";
    let signed = ZoneSpec {
        apex: signed_apex.into(),
        rules: vec![Rule::ServiceTenant { services: vec!["ws".into()], target: format!("{{service}}-{{cluster}}.{APEX}"), ttl: None }, Rule::TenantHost { ttl: Some(60) }],
        records: vec![record("www", "A", "192.0.2.80"), record("sub", "NS", "ns.sub"), record("ns.sub", "A", "192.0.2.99"), record("a.b.deep", "TXT", "x")],
        transfer: Transfer::default(),
        dnssec: Some(Policy::new(DnssecAlgorithm::Ed25519)),
        ..zone.clone()
    };
    commands.push(Command::PutZone { zone: signed });
    commands.extend(fixture::signing_keys(signed_apex));
    fixture::state_of(commands)
}

/// The secret of the fuzz state's TSIG key `fuzz-key.` (hmac-sha256): the
/// seeds under `seeds/dns_request/` signed with it reach past the MAC check.
pub const TSIG_SECRET: &[u8] = b"switchboard-fuzz-tsig-secret-32b";

