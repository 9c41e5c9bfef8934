//! The zone file of `switchboard zone put FILE` (TOML; `config/zones/`
//! has examples, README's CLI section the commands), read here and sent as
//! an API `Zone`, and the RFC 1035 master file of `zone import`. Errors
//! name the file, line and key.

use std::path::Path;

use serde::Deserialize;
use switchboard_proto::v1 as proto;

use crate::error::{CliError, Result};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ZoneFile {
    apex: String,
    environment: String,
    ttl: Option<u32>,
    ns: Vec<String>,
    #[serde(default)]
    soa: SoaFile,
    #[serde(default)]
    rules: Vec<RuleFile>,
    #[serde(default)]
    records: Vec<RecordFile>,
    transfer: Option<TransferFile>,
    /// A catalog zone (RFC 9432): lists every other zone served.
    #[serde(default)]
    catalog: bool,
    dnssec: Option<DnssecFile>,
}

/// `[dnssec]`: sign every answer online. Timings as Knot DNS's defaults
/// when absent; the `_days` ones take fractions (tests shorten them to seconds).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DnssecFile {
    algorithm: String,
    rrsig_validity_days: Option<f64>,
    rrsig_refresh_days: Option<f64>,
    zsk_lifetime_days: Option<f64>,
    ksk_lifetime_days: Option<f64>,
    dnskey_ttl: Option<u32>,
    propagation_delay_seconds: Option<u64>,
    ksk_submission_delay_seconds: Option<u64>,
}

/// Days (fractions allowed) as whole seconds; `key` names it in the error.
fn days(key: &str, value: Option<f64>) -> Result<Option<u64>> {
    match value {
        None => Ok(None),
        Some(d) if d.is_finite() && (0.0..=36_500.0).contains(&d) => Ok(Some((d * 86_400.0).round() as u64)),
        Some(d) => Err(CliError::input(format!("dnssec.{key}: {d} is not a number of days from 0 to 36500"))),
    }
}

fn dnssec(d: DnssecFile) -> Result<proto::Dnssec> {
    Ok(proto::Dnssec {
        algorithm: d.algorithm,
        rrsig_validity_seconds: days("rrsig_validity_days", d.rrsig_validity_days)?,
        rrsig_refresh_seconds: days("rrsig_refresh_days", d.rrsig_refresh_days)?,
        zsk_lifetime_seconds: days("zsk_lifetime_days", d.zsk_lifetime_days)?,
        ksk_lifetime_seconds: days("ksk_lifetime_days", d.ksk_lifetime_days)?,
        dnskey_ttl: d.dnskey_ttl,
        propagation_delay_seconds: d.propagation_delay_seconds,
        ksk_submission_delay_seconds: d.ksk_submission_delay_seconds,
    })
}

/// `[transfer]`: secondaries told of new serials, prefixes allowed unsigned
/// transfers, and the transport transfers must come over (TLS, or TLS with
/// a client certificate whose key is pinned).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct TransferFile {
    #[serde(default)]
    notify: Vec<String>,
    #[serde(default)]
    allow: Vec<String>,
    #[serde(default)]
    tls: bool,
    #[serde(default)]
    cert_keys: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct SoaFile {
    mname: Option<String>,
    rname: Option<String>,
    refresh: Option<u32>,
    retry: Option<u32>,
    expire: Option<u32>,
    minimum: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
enum RuleFile {
    ServiceTenant { services: Vec<String>, target: String, ttl: Option<u32> },
    TenantHost { ttl: Option<u32> },
    Acme { validation_zone: Option<String> },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RecordFile {
    name: String,
    #[serde(rename = "type")]
    rtype: String,
    ttl: Option<u32>,
    data: String,
}

/// Read a zone file and check it as the server will.
pub fn load(path: &Path) -> Result<proto::Zone> {
    let text = std::fs::read_to_string(path).map_err(CliError::io(format!("reading zone file {}", path.display())))?;
    parse(&text).map_err(CliError::within(format!("zone file {}", path.display())))
}

pub fn parse(text: &str) -> Result<proto::Zone> {
    let f: ZoneFile = toml::from_str(text).map_err(|e| CliError::input(e.to_string().trim_end()))?;
    let zone = proto::Zone {
        apex: f.apex,
        environment: f.environment,
        ttl: f.ttl,
        ns: f.ns,
        soa: Some(proto::Soa {
            mname: f.soa.mname.unwrap_or_default(),
            rname: f.soa.rname.unwrap_or_default(),
            refresh: f.soa.refresh,
            retry: f.soa.retry,
            expire: f.soa.expire,
            minimum: f.soa.minimum,
        }),
        rules: f
            .rules
            .into_iter()
            .map(|r| proto::Rule {
                kind: Some(match r {
                    RuleFile::ServiceTenant { services, target, ttl } => {
                        proto::rule::Kind::ServiceTenant(proto::ServiceTenantRule { services, target, ttl })
                    }
                    RuleFile::TenantHost { ttl } => proto::rule::Kind::TenantHost(proto::TenantHostRule { ttl }),
                    RuleFile::Acme { validation_zone } => {
                        proto::rule::Kind::Acme(proto::AcmeRule { validation_zone: validation_zone.unwrap_or_default() })
                    }
                }),
            })
            .collect(),
        records: f.records.into_iter().map(|r| proto::StaticRecord { name: r.name, r#type: r.rtype, ttl: r.ttl, data: r.data }).collect(),
        revision: 0,
        serial: 0,
        transfer: f.transfer.map(|t| proto::Transfer { notify: t.notify, allow: t.allow, tls: t.tls, cert_keys: t.cert_keys }),
        catalog: f.catalog,
        dnssec: f.dnssec.map(dnssec).transpose()?,
    };
    // The same checks the server makes, so mistakes show before any network call.
    switchboard_proto::convert::zone_in(zone.clone())?;
    Ok(zone)
}

/// Read an RFC 1035 master file as a zone: its SOA gives the apex and SOA
/// fields (not the serial, which Switchboard derives), the apex NS set gives
/// the name servers and every other record becomes a static record. The
/// result has no environment and no rules: the caller fills them in.
pub fn master(text: &str, apex: Option<&str>) -> Result<proto::Zone> {
    use switchboard_domain::{masterfile, RData, RType};
    let origin = apex.map(|a| if a.ends_with('.') { a.to_ascii_lowercase() } else { format!("{}.", a.to_ascii_lowercase()) });
    let records = masterfile::parse(text, origin.as_deref())?;
    let mut soas = records.iter().filter(|r| r.rtype() == RType::Soa);
    let (Some(soa), None) = (soas.next(), soas.next()) else {
        return Err(CliError::input("a master file needs exactly one SOA record, at the zone's apex"));
    };
    let apex = soa.name.clone();
    if let Some(o) = &origin {
        if *o != apex {
            return Err(CliError::input(format!("the SOA is at {apex}, not at --apex {o}")));
        }
    }
    let RData::Soa { mname, rname, refresh, retry, expire, minimum, .. } = &soa.data else {
        return Err(CliError::input("the SOA record has no SOA data"));
    };
    let mut zone = proto::Zone {
        apex: apex.clone(),
        ttl: Some(soa.ttl),
        soa: Some(proto::Soa {
            mname: mname.clone(),
            rname: rname.clone(),
            refresh: Some(*refresh),
            retry: Some(*retry),
            expire: Some(*expire),
            minimum: Some(*minimum),
        }),
        ..proto::Zone::default()
    };
    for r in &records {
        match &r.data {
            RData::Soa { .. } => {}
            RData::Ns(n) if r.name == apex => zone.ns.push(n.clone()),
            data => zone.records.push(proto::StaticRecord {
                name: r.name.clone(),
                r#type: r.rtype().to_string(),
                ttl: Some(r.ttl),
                data: masterfile::rdata_text(data),
            }),
        }
    }
    // The checks the server makes (environment aside), before any network call.
    switchboard_proto::convert::zone_in(proto::Zone { environment: "prod".into(), ..zone.clone() })?;
    Ok(zone)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_rule_kind_names_line() {
        let e = parse("apex = \"a.test.\"\nenvironment = \"prod\"\nns = [\"ns.a.test.\"]\n[[rules]]\nkind = \"nope\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 4") || e.contains("line 5"), "{e}");
    }

    #[test]
    fn invalid_record_names_field() {
        let text = "apex = \"a.test.\"\nenvironment = \"prod\"\nns = [\"ns.a.test.\"]\n[[records]]\nname = \"www\"\ntype = \"A\"\ndata = \"999.1.1.1\"\n";
        let e = parse(text).unwrap_err().to_string();
        assert!(e.contains("zone.records[0].data"), "{e}");
    }
}

#[cfg(test)]
mod master_tests {
    use super::*;

    const FILE: &str = "$ORIGIN apps.example.test.\n$TTL 300\n@ IN SOA ns1 hostmaster 1 3600 600 604800 60\n@ NS ns1\n@ NS ns2.example.test.\nns1 A 192.0.2.53\nwww 60 A 192.0.2.80\n";

    #[test]
    fn soa_ns_and_statics() {
        let z = master(FILE, None).unwrap();
        assert_eq!(z.apex, "apps.example.test.");
        assert_eq!(z.ns, vec!["ns1.apps.example.test.", "ns2.example.test."]);
        assert_eq!(z.records.len(), 2);
        assert_eq!(z.records[1].ttl, Some(60));
        assert_eq!(z.soa.unwrap().minimum, Some(60));
    }

    #[test]
    fn needs_one_soa_at_the_given_apex() {
        assert!(master("$ORIGIN a.test.\nwww 60 A 192.0.2.1\n", None).unwrap_err().to_string().contains("SOA"));
        assert!(master(FILE, Some("other.test")).is_err());
        let e = master("$ORIGIN a.test.\n@ 60 SOA ns h 1 2 3 4 5\n@ 60 NS ns\nwww 60 A 999.1.1.1\n", None).unwrap_err();
        assert!(format!("{e:#}").contains("line 4"), "{e:#}");
    }
}
