//! Conversions from API types to domain types that a client makes too
//! (feature `domain`): the CLI checks a zone file exactly as the server
//! will, before any network call. Inbound conversions validate and name
//! the field at fault.

use switchboard_domain::dnssec::{Algorithm, Policy};
use switchboard_domain::model::{CertKey, Prefix, Transfer, ZoneSpec};
use switchboard_domain::{name, RecordSpec, Rule, Soa, ValidationError, Zone};

use crate::v1;

/// Zone TTL when a request leaves it out.
pub const ZONE_TTL_DEFAULT: u32 = 300;
pub const SOA_REFRESH_DEFAULT: u32 = 3600;
pub const SOA_RETRY_DEFAULT: u32 = 600;
pub const SOA_EXPIRE_DEFAULT: u32 = 604_800;
pub const SOA_MINIMUM_DEFAULT: u32 = 60;

/// A zone from the API, validated as the state machine will (so bad input is
/// refused before it reaches the log).
pub fn zone_in(z: v1::Zone) -> Result<ZoneSpec, ValidationError> {
    let apex = name::absolute("zone.apex", &z.apex)?;
    let soa = z.soa.unwrap_or_default();
    let mname = if soa.mname.is_empty() {
        z.ns.first().cloned().ok_or_else(|| ValidationError::new("zone.ns", "a zone needs at least one name server"))?
    } else {
        soa.mname
    };
    let rname = if soa.rname.is_empty() { format!("hostmaster.{apex}") } else { soa.rname };
    let rules = z
        .rules
        .into_iter()
        .enumerate()
        .map(|(i, r)| match r.kind {
            Some(v1::rule::Kind::ServiceTenant(s)) => Ok(Rule::ServiceTenant { services: s.services, target: s.target, ttl: s.ttl }),
            Some(v1::rule::Kind::TenantHost(h)) => Ok(Rule::TenantHost { ttl: h.ttl }),
            Some(v1::rule::Kind::Acme(a)) => {
                Ok(Rule::Acme { validation_zone: (!a.validation_zone.is_empty()).then_some(a.validation_zone) })
            }
            None => Err(ValidationError::new(format!("zone.rules[{i}]"), "a rule needs a kind (service_tenant, tenant_host or acme)")),
        })
        .collect::<Result<Vec<_>, _>>()?;
    let spec = ZoneSpec {
        apex,
        environment: z.environment,
        ttl: z.ttl.unwrap_or(ZONE_TTL_DEFAULT),
        ns: z.ns,
        soa: Soa {
            mname,
            rname,
            refresh: soa.refresh.unwrap_or(SOA_REFRESH_DEFAULT),
            retry: soa.retry.unwrap_or(SOA_RETRY_DEFAULT),
            expire: soa.expire.unwrap_or(SOA_EXPIRE_DEFAULT),
            minimum: soa.minimum.unwrap_or(SOA_MINIMUM_DEFAULT),
        },
        rules,
        records: z.records.into_iter().map(|r| RecordSpec { name: r.name, rtype: r.r#type, ttl: r.ttl, data: r.data }).collect(),
        transfer: transfer_in(z.transfer.unwrap_or_default())?,
        catalog: z.catalog,
        dnssec: z.dnssec.map(dnssec_in).transpose()?,
    };
    // Compile once here to report errors as INVALID_ARGUMENT; apply compiles again.
    let compiled = Zone::compile(&spec, 0).map_err(|e| e.within("zone"))?;
    Ok(compiled.full_spec())
}

/// A zone's `transfer` table: NOTIFY targets (port 53 when not given) and
/// the prefixes allowed unsigned transfers.
fn transfer_in(t: v1::Transfer) -> Result<Transfer, ValidationError> {
    let notify = t
        .notify
        .iter()
        .enumerate()
        .map(|(i, n)| {
            let text = n.trim();
            text.parse::<std::net::SocketAddr>()
                .or_else(|_| text.parse::<std::net::IpAddr>().map(|ip| std::net::SocketAddr::new(ip, 53)))
                .map_err(|_| {
                    ValidationError::new(
                        format!("zone.transfer.notify[{i}]"),
                        format!("{n:?} is not an address with an optional port (192.0.2.53:53, [2001:db8::53]:53)"),
                    )
                })
                .and_then(|target| match switchboard_domain::model::notify_target_refusal(target) {
                    None => Ok(target),
                    Some(why) => Err(ValidationError::new(format!("zone.transfer.notify[{i}]"), format!("{n:?}: {why}"))),
                })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let allow =
        t.allow.iter().enumerate().map(|(i, p)| Prefix::parse(&format!("zone.transfer.allow[{i}]"), p)).collect::<Result<Vec<_>, _>>()?;
    let cert_keys = t
        .cert_keys
        .iter()
        .enumerate()
        .map(|(i, k)| CertKey::parse(&format!("zone.transfer.cert_keys[{i}]"), k))
        .collect::<Result<_, _>>()?;
    Ok(Transfer { notify, allow, tls: t.tls, cert_keys })
}

/// A zone's `dnssec` table; each timing absent takes Knot DNS's default.
fn dnssec_in(d: v1::Dnssec) -> Result<Policy, ValidationError> {
    let algorithm = Algorithm::parse("zone.dnssec.algorithm", &d.algorithm)?;
    let default = Policy::new(algorithm);
    Ok(Policy {
        algorithm,
        rrsig_validity_s: d.rrsig_validity_seconds.unwrap_or(default.rrsig_validity_s),
        rrsig_refresh_s: d.rrsig_refresh_seconds.or(default.rrsig_refresh_s),
        zsk_lifetime_s: d.zsk_lifetime_seconds.unwrap_or(default.zsk_lifetime_s),
        ksk_lifetime_s: d.ksk_lifetime_seconds.unwrap_or(default.ksk_lifetime_s),
        dnskey_ttl: d.dnskey_ttl.or(default.dnskey_ttl),
        propagation_delay_s: d.propagation_delay_seconds.unwrap_or(default.propagation_delay_s),
        ksk_submission_delay_s: d.ksk_submission_delay_seconds.unwrap_or(default.ksk_submission_delay_s),
    })
}

/// A zone's `dnssec` table as the API shows it.
pub fn dnssec_out(p: &Policy) -> v1::Dnssec {
    v1::Dnssec {
        algorithm: p.algorithm.name().to_string(),
        rrsig_validity_seconds: Some(p.rrsig_validity_s),
        rrsig_refresh_seconds: p.rrsig_refresh_s,
        zsk_lifetime_seconds: Some(p.zsk_lifetime_s),
        ksk_lifetime_seconds: Some(p.ksk_lifetime_s),
        dnskey_ttl: p.dnskey_ttl,
        propagation_delay_seconds: Some(p.propagation_delay_s),
        ksk_submission_delay_seconds: Some(p.ksk_submission_delay_s),
    }
}

/// A zone's `transfer` table as the API shows it.
pub fn transfer_out(t: &Transfer) -> Option<v1::Transfer> {
    if *t == Transfer::default() {
        return None;
    }
    Some(v1::Transfer {
        notify: t.notify.iter().map(ToString::to_string).collect(),
        allow: t.allow.iter().map(ToString::to_string).collect(),
        tls: t.tls,
        cert_keys: t.cert_keys.iter().map(ToString::to_string).collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn notify(targets: &[&str]) -> Result<Transfer, ValidationError> {
        transfer_in(v1::Transfer { notify: targets.iter().map(|t| t.to_string()).collect(), ..Default::default() })
    }

    #[test]
    fn notify_targets_that_reach_no_secondary_are_refused_naming_the_field() {
        let ok = notify(&["192.0.2.53", "[2001:db8::53]:5353"]).map(|t| t.notify);
        assert_eq!(ok, Ok(vec!["192.0.2.53:53".parse().unwrap(), "[2001:db8::53]:5353".parse().unwrap()]));
        for (bad, why) in [
            ("0.0.0.0:53", "unspecified"),
            ("[::]:53", "unspecified"),
            ("[::ffff:0.0.0.0]:53", "unspecified"),
            ("224.0.0.251:5353", "multicast"),
            ("[ff02::1]:53", "multicast"),
            ("255.255.255.255:53", "broadcast"),
            ("192.0.2.53:0", "port 0"),
        ] {
            let e = notify(&["192.0.2.1:53", bad]).unwrap_err();
            assert_eq!(e.field, "zone.transfer.notify[1]", "{bad}: {e}");
            assert!(e.reason.contains(why) && e.reason.contains(bad), "{bad}: {e}");
        }
    }
}
