//! Conversions between generated API types and domain types, one family per
//! section. Inbound conversions validate and name the field at fault.

use switchboard_domain::health::{self, AllDown, Check, Probe};
use switchboard_domain::model::{StagedMove, WEIGHT_DEFAULT};
use switchboard_domain::{name, Challenge, Cluster, ClusterState, Credential, Role, Rule, Scope, State, Tenant, ValidationError, Zone};

use crate::proto;

// --- zones ---------------------------------------------------------------------

/// Inbound zones are converted in the `proto` crate, so the CLI checks a
/// zone file with exactly this conversion.
pub use switchboard_proto::convert::{
    zone_in, SOA_EXPIRE_DEFAULT, SOA_MINIMUM_DEFAULT, SOA_REFRESH_DEFAULT, SOA_RETRY_DEFAULT, ZONE_TTL_DEFAULT,
};

pub fn zone_out(state: &State, z: &Zone) -> proto::Zone {
    let s = &z.spec;
    proto::Zone {
        apex: s.apex.clone(),
        environment: s.environment.clone(),
        ttl: Some(s.ttl),
        ns: s.ns.clone(),
        soa: Some(proto::Soa {
            mname: s.soa.mname.clone(),
            rname: s.soa.rname.clone(),
            refresh: Some(s.soa.refresh),
            retry: Some(s.soa.retry),
            expire: Some(s.soa.expire),
            minimum: Some(s.soa.minimum),
        }),
        rules: s
            .rules
            .iter()
            .map(|r| proto::Rule {
                kind: Some(match r {
                    Rule::ServiceTenant { services, target, ttl } => proto::rule::Kind::ServiceTenant(proto::ServiceTenantRule {
                        services: services.clone(),
                        target: target.clone(),
                        ttl: *ttl,
                    }),
                    Rule::TenantHost { ttl } => proto::rule::Kind::TenantHost(proto::TenantHostRule { ttl: *ttl }),
                    Rule::Acme { validation_zone } => {
                        proto::rule::Kind::Acme(proto::AcmeRule { validation_zone: validation_zone.clone().unwrap_or_default() })
                    }
                }),
            })
            .collect(),
        records: z
            .full_spec()
            .records
            .into_iter()
            .map(|r| proto::StaticRecord { name: r.name, r#type: r.rtype, ttl: r.ttl, data: r.data })
            .collect(),
        revision: state.zone_revision(z),
        serial: state.serial(z),
        transfer: switchboard_proto::convert::transfer_out(&s.transfer),
        catalog: s.catalog,
        dnssec: s.dnssec.as_ref().map(switchboard_proto::convert::dnssec_out),
    }
}

// --- clusters ------------------------------------------------------------------

/// Parse every address of a list, naming the one at fault (`field[i]`).
fn addresses<A: std::str::FromStr>(field: &str, list: &[String], family: &str) -> Result<Vec<A>, ValidationError> {
    list.iter()
        .enumerate()
        .map(|(i, a)| a.parse().map_err(|_| ValidationError::new(format!("{field}[{i}]"), format!("{a:?} is not an {family} address"))))
        .collect()
}

pub fn cluster_in(c: proto::Cluster) -> Result<Cluster, ValidationError> {
    let ipv4 = addresses("cluster.ipv4", &c.ipv4, "IPv4")?;
    let ipv6 = addresses("cluster.ipv6", &c.ipv6, "IPv6")?;
    let state = match proto::ClusterState::try_from(c.state) {
        Ok(proto::ClusterState::Unspecified | proto::ClusterState::Active) => ClusterState::Active,
        Ok(proto::ClusterState::Draining) => ClusterState::Draining,
        Ok(proto::ClusterState::Down) => ClusterState::Down,
        Err(_) => return Err(ValidationError::new("cluster.state", format!("{} is not a cluster state", c.state))),
    };
    Cluster {
        id: c.id,
        ipv4,
        ipv6,
        hostname: (!c.hostname.is_empty()).then_some(c.hostname),
        dedicated: c.dedicated,
        weight: c.weight.unwrap_or(WEIGHT_DEFAULT),
        state,
        check: c.check.map(check_in).transpose()?,
        failover: (!c.failover.is_empty()).then_some(c.failover),
        all_down: if c.fail_closed { AllDown::FailClosed } else { AllDown::FailOpen },
        down: Vec::new(),
        revision: 0,
    }
    .validate()
}

/// A cluster as `get`, `list` and `put` show it: with its tenant count and
/// the cluster that serves its tenants now.
pub fn cluster_view(state: &State, c: &Cluster) -> proto::Cluster {
    let mut out = cluster_out(c, state.tenants_on(&c.id));
    out.serving = state.serving(c).0.id.clone();
    out
}

fn check_in(c: proto::HealthCheck) -> Result<Check, ValidationError> {
    let port = u16::try_from(c.port).map_err(|_| ValidationError::new("cluster.check.port", format!("{} is not a port", c.port)))?;
    let probe = match c.protocol.as_str() {
        "tcp" => Probe::Tcp { port },
        "http" | "https" => Probe::Http {
            port,
            tls: c.protocol == "https",
            path: if c.path.is_empty() { "/".into() } else { c.path },
            host: (!c.host.is_empty()).then_some(c.host),
            status: match c.status {
                0 => None,
                s => {
                    Some(u16::try_from(s).map_err(|_| ValidationError::new("cluster.check.status", format!("{s} is not an HTTP status")))?)
                }
            },
        },
        other => return Err(ValidationError::new("cluster.check.protocol", format!("{other:?} is not tcp, http or https"))),
    };
    let or = |v: u32, default: u32| if v == 0 { default } else { v };
    let interval_ms = or(c.interval_ms, health::INTERVAL_MS_DEFAULT);
    Ok(Check {
        probe,
        interval_ms,
        timeout_ms: or(c.timeout_ms, health::TIMEOUT_MS_DEFAULT.min(interval_ms)),
        failures: or(c.failures, health::FAILURES_DEFAULT),
        successes: or(c.successes, health::SUCCESSES_DEFAULT),
    })
}

fn check_out(c: &Check) -> proto::HealthCheck {
    let (path, host, status) = match &c.probe {
        Probe::Tcp { .. } => (String::new(), String::new(), 0),
        Probe::Http { path, host, status, .. } => (path.clone(), host.clone().unwrap_or_default(), status.map_or(0, u32::from)),
    };
    proto::HealthCheck {
        protocol: c.probe.scheme().into(),
        port: u32::from(c.probe.port()),
        path,
        host,
        status,
        interval_ms: c.interval_ms,
        timeout_ms: c.timeout_ms,
        failures: c.failures,
        successes: c.successes,
    }
}

pub fn cluster_out(c: &Cluster, tenants: u64) -> proto::Cluster {
    proto::Cluster {
        id: c.id.clone(),
        ipv4: c.ipv4.iter().map(ToString::to_string).collect(),
        ipv6: c.ipv6.iter().map(ToString::to_string).collect(),
        hostname: c.hostname.clone().unwrap_or_default(),
        dedicated: c.dedicated,
        weight: Some(c.weight),
        state: match c.state {
            ClusterState::Active => proto::ClusterState::Active,
            ClusterState::Draining => proto::ClusterState::Draining,
            ClusterState::Down => proto::ClusterState::Down,
        } as i32,
        revision: c.revision,
        tenants,
        check: c.check.as_ref().map(check_out),
        failover: c.failover.clone().unwrap_or_default(),
        fail_closed: c.all_down == AllDown::FailClosed,
        down: c.down.iter().map(ToString::to_string).collect(),
        health: c.health().as_str().into(),
        serving: String::new(),
    }
}

// --- tenants -------------------------------------------------------------------

pub fn tenant_out(t: &Tenant) -> proto::Tenant {
    proto::Tenant {
        id: t.id.to_string(),
        cluster: t.cluster.to_string(),
        pinned: t.pinned,
        aliases: t.aliases.iter().map(|a| a.to_string()).collect(),
        history: t
            .history
            .iter()
            .map(|h| proto::Tombstone { from: h.from.clone(), to: h.to.clone(), revision: h.revision, at_ms: h.at_ms })
            .collect(),
        revision: t.revision,
        staged: None,
    }
}

/// A staged move as the API shows it.
pub fn staged_out(m: &StagedMove) -> proto::StagedMove {
    proto::StagedMove {
        tenant: m.tenant.clone(),
        from: m.from.clone(),
        to: m.to.clone(),
        ttl: m.ttl,
        old_ttl: m.old_ttl,
        step: m.step.as_str().into(),
        since_ms: m.since_ms,
        due_ms: m.due_ms(),
        revision: m.revision,
    }
}

/// A tenant as `get` shows it: with its staged move, while one runs.
pub fn tenant_view(state: &State, t: &Tenant) -> proto::Tenant {
    proto::Tenant { staged: state.staged_move(&t.id).map(|m| staged_out(m)), ..tenant_out(t) }
}

/// An identifier field that must be one DNS label.
pub fn label(field: &str, value: &str) -> Result<String, ValidationError> {
    name::label(field, value)
}

// --- acme ----------------------------------------------------------------------

pub fn challenge_out(c: &Challenge) -> proto::Challenge {
    proto::Challenge {
        name: c.name.clone(),
        values: c
            .values
            .iter()
            .map(|v| proto::ChallengeValue { value: v.value.clone(), ttl: v.ttl, expires_at_ms: v.expires_at_ms })
            .collect(),
        revision: c.revision,
    }
}

/// A credential as the API shows it: never its hash.
pub fn credential_out(c: &Credential) -> proto::Credential {
    let (environments, zones, tenant) = match &c.scope {
        Scope::All => (Vec::new(), Vec::new(), String::new()),
        Scope::Environments(e) => (e.clone(), Vec::new(), String::new()),
        Scope::Zones(z) => (Vec::new(), z.clone(), String::new()),
        Scope::Tenant(t) => (Vec::new(), Vec::new(), t.clone()),
    };
    proto::Credential {
        id: c.id.clone(),
        name: c.name.clone(),
        role: c.role.as_str().into(),
        environments,
        zones,
        tenant,
        created_at_ms: c.created_at_ms,
        revision: c.revision,
    }
}

/// The role and scope of a new credential; the fields of the scope that
/// do not fit the role are refused, not ignored.
pub fn credential_scope(r: &proto::CreateCredentialRequest) -> Result<(Role, Scope), ValidationError> {
    let role = Role::parse("role", &r.role)?;
    Ok((role, scope_in(&r.environments, &r.zones, &r.tenant)?))
}

/// The scope a request names (a credential's or a TSIG key's): at most one
/// of environments, zones and tenant; none is all.
pub fn scope_in(environments: &[String], zones: &[String], tenant: &str) -> Result<Scope, ValidationError> {
    let set = [!environments.is_empty(), !zones.is_empty(), !tenant.is_empty()];
    if set.iter().filter(|s| **s).count() > 1 {
        return Err(ValidationError::new("environments", "give one scope: environments, zones or tenant"));
    }
    Ok(if !environments.is_empty() {
        Scope::Environments(environments.to_vec())
    } else if !zones.is_empty() {
        Scope::Zones(zones.to_vec())
    } else if !tenant.is_empty() {
        Scope::Tenant(tenant.to_string())
    } else {
        Scope::All
    })
}
