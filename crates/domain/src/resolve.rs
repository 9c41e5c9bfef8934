//! Name → answer: what an authoritative server says for (qname, qtype),
//! computed from one immutable `State`. No I/O, no locks, no clock.
//!
//! Precedence inside a zone (SPEC §2): static records, then rules in their
//! order. A CNAME whose target lies in a served zone is followed, at most
//! `CNAME_CHAIN_MAX` links and never around a loop.

use crate::model::{expand_target, Rule, Zone};
use crate::name;
use crate::record::{RData, RType, Record};
use crate::state::State;

/// Longest CNAME chain followed within served zones.
pub const CNAME_CHAIN_MAX: usize = 8;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rcode {
    NoError,
    NxDomain,
    Refused,
}

/// The sections of an answer, in domain terms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub rcode: Rcode,
    /// Authoritative answer (false for referrals and REFUSED).
    pub authoritative: bool,
    pub answers: Vec<Record>,
    pub authority: Vec<Record>,
    pub additional: Vec<Record>,
}

impl Answer {
    fn refused() -> Answer {
        Answer { rcode: Rcode::Refused, authoritative: false, answers: vec![], authority: vec![], additional: vec![] }
    }
}

/// Answer `qname` (lower-case, absolute) for `qtype`.
pub fn resolve(state: &State, qname: &str, qtype: RType) -> Answer {
    let Some(zone) = state.zone_for(qname) else {
        return Answer::refused();
    };
    let mut answer = Answer { rcode: Rcode::NoError, authoritative: true, answers: vec![], authority: vec![], additional: vec![] };
    let mut name = qname.to_string();
    let mut zone = zone.clone();
    let mut seen: Vec<String> = Vec::new();
    loop {
        match lookup(state, &zone, &name) {
            Node::Records(rrs) => {
                let cname = rrs.iter().find(|r| r.rtype() == RType::Cname).cloned();
                match (cname, qtype) {
                    (Some(c), t) if t != RType::Cname && t != RType::Any => {
                        answer.answers.push(c.clone());
                        seen.push(name.clone());
                        let Some(target) = c.data.target().map(str::to_string) else { break };
                        // Follow only into served zones, within the limit, never in a loop.
                        let next = state.zone_for(&target);
                        match next {
                            Some(z) if seen.len() < CNAME_CHAIN_MAX && !seen.contains(&target) => {
                                zone = z.clone();
                                name = target;
                                continue;
                            }
                            _ => break,
                        }
                    }
                    (_, RType::Any) => {
                        // RFC 8482: answer one RRset, not all of them.
                        if let Some(first) = rrs.first() {
                            let t = first.rtype();
                            answer.answers.extend(rrs.iter().filter(|r| r.rtype() == t).cloned());
                        }
                        break;
                    }
                    _ => {
                        let matching: Vec<Record> = rrs.into_iter().filter(|r| r.rtype() == qtype).collect();
                        if matching.is_empty() {
                            // NODATA, also at the end of a CNAME chain (RFC 2308 §2.2).
                            answer.authority.push(negative_soa(state, &zone));
                        } else {
                            add_glue(&zone, &matching, &mut answer.additional);
                            answer.answers.extend(matching);
                        }
                        break;
                    }
                }
            }
            Node::EmptyNonTerminal => {
                answer.authority.push(negative_soa(state, &zone));
                break;
            }
            Node::Missing => {
                answer.rcode = Rcode::NxDomain;
                answer.authority.push(negative_soa(state, &zone));
                break;
            }
            Node::Referral(ns) => {
                if answer.answers.is_empty() {
                    answer.authoritative = false;
                }
                add_glue(&zone, &ns, &mut answer.additional);
                answer.authority.extend(ns);
                break;
            }
        }
    }
    answer
}

enum Node {
    /// The name exists with these records (possibly none of the asked type).
    Records(Vec<Record>),
    /// The name exists only as an ancestor of other names.
    EmptyNonTerminal,
    Missing,
    /// The name is at or below a delegation: the NS set.
    Referral(Vec<Record>),
}

fn lookup(state: &State, zone: &Zone, qname: &str) -> Node {
    let apex = zone.apex();
    if qname == apex {
        let mut rrs = vec![soa(state, zone)];
        rrs.extend(zone.spec.ns.iter().map(|n| Record { name: apex.to_string(), ttl: zone.spec.ttl, data: RData::Ns(n.clone()) }));
        if let Some(statics) = zone.records_at(qname) {
            rrs.extend(statics.iter().cloned());
        }
        return Node::Records(rrs);
    }
    if let Some(ns) = zone.delegation_for(qname) {
        // Every query at or below a delegation point is referred, DS included:
        // Switchboard serves no DNSSEC, so it holds no DS sets to answer with.
        return Node::Referral(ns.iter().filter(|r| r.rtype() == RType::Ns).cloned().collect());
    }
    if let Some(statics) = zone.records_at(qname) {
        return Node::Records(statics.to_vec());
    }
    if let Some(rrs) = synthesise(state, zone, qname) {
        return Node::Records(rrs);
    }
    if zone.has_descendants(qname) {
        return Node::EmptyNonTerminal;
    }
    Node::Missing
}

/// Records the zone's rules produce for `qname`, first matching rule wins.
fn synthesise(state: &State, zone: &Zone, qname: &str) -> Option<Vec<Record>> {
    let labels = name::relative_labels(qname, zone.apex())?;
    for rule in &zone.spec.rules {
        match rule {
            Rule::ServiceTenant { services, target, ttl } => {
                let [label] = labels.as_slice() else { continue };
                for s in services {
                    let Some(key) = label.strip_prefix(s.as_str()).and_then(|r| r.strip_prefix('-')) else { continue };
                    if let Some(t) = state.tenant_by_key(key) {
                        let cname = expand_target(target, s, &t.cluster, &t.id);
                        // Ids near the length limit can overflow a label of the
                        // template: such a name has no answer rather than a broken one.
                        if name::absolute("target", &cname).is_err() {
                            continue;
                        }
                        return Some(vec![Record {
                            name: qname.to_string(),
                            ttl: ttl.unwrap_or(zone.spec.ttl),
                            data: RData::Cname(cname),
                        }]);
                    }
                }
            }
            Rule::TenantHost { ttl } => {
                let Some(key) = labels.last() else { continue };
                let Some(t) = state.tenant_by_key(key) else { continue };
                let Some(c) = state.cluster(&t.cluster) else { continue };
                let ttl = ttl.unwrap_or(zone.spec.ttl);
                let owner = || qname.to_string();
                let mut rrs: Vec<Record> = c.ipv4.iter().map(|a| Record { name: owner(), ttl, data: RData::A(*a) }).collect();
                rrs.extend(c.ipv6.iter().map(|a| Record { name: owner(), ttl, data: RData::Aaaa(*a) }));
                if rrs.is_empty() {
                    if let Some(h) = &c.hostname {
                        rrs.push(Record { name: owner(), ttl, data: RData::Cname(h.clone()) });
                    }
                }
                return Some(rrs);
            }
        }
    }
    None
}

fn soa(state: &State, zone: &Zone) -> Record {
    let s = &zone.spec.soa;
    Record {
        name: zone.apex().to_string(),
        ttl: zone.spec.ttl,
        data: RData::Soa {
            mname: s.mname.clone(),
            rname: s.rname.clone(),
            serial: state.serial(zone),
            refresh: s.refresh,
            retry: s.retry,
            expire: s.expire,
            minimum: s.minimum,
        },
    }
}

/// The SOA for the authority section of a negative answer; its TTL is the
/// negative-caching TTL, min(SOA TTL, SOA minimum) (RFC 2308 §5).
fn negative_soa(state: &State, zone: &Zone) -> Record {
    let mut r = soa(state, zone);
    r.ttl = r.ttl.min(zone.spec.soa.minimum);
    r
}

/// In-zone address records for the targets of NS, MX and SRV records.
fn add_glue(zone: &Zone, rrs: &[Record], additional: &mut Vec<Record>) {
    for r in rrs {
        let target = match &r.data {
            RData::Ns(n) | RData::Mx { exchange: n, .. } | RData::Srv { target: n, .. } => n,
            _ => continue,
        };
        if !name::is_within(target, zone.apex()) {
            continue;
        }
        if let Some(node) = zone.records_at(target) {
            for a in node.iter().filter(|x| matches!(x.rtype(), RType::A | RType::Aaaa)) {
                if !additional.contains(a) {
                    additional.push(a.clone());
                }
            }
        }
    }
}
