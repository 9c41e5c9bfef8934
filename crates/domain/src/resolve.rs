//! Name → answer: what an authoritative server says for (qname, qtype),
//! computed from one immutable `State`. No I/O, no locks, no clock.
//!
//! Precedence inside a zone (README.md, "DNS semantics"): static records, then ACME
//! challenges, then rules in their order. A CNAME whose target lies in a
//! served zone of the same environment is followed, at most
//! `CNAME_CHAIN_MAX` links and never around a loop. A target in another
//! environment's zone is treated as one outside every zone: the CNAME is
//! answered and the chase stops, so no environment's zone ever supplies
//! another environment's answers (a staging zone cannot redirect prod
//! through prod's CNAME targets). `zone_records` exports one zone and
//! holds no chased records, so the rule does not change it.

use std::ops::ControlFlow;
use std::sync::Arc;

use crate::dnssec::{DnssecKey, SignedZone};
use crate::model::{self, expand_target, Rule, Zone};
use crate::name;
use crate::record::{RData, RType, Record};
use crate::state::State;

/// Longest CNAME chain followed within served zones (of one environment).
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
    // The DS set of a zone served here lives in its parent, when the parent
    // is served here too (RFC 4035 §3.1.4.1): Switchboard holds no DS
    // records, so the parent says NODATA (and, signed, proves the cut has none).
    if qtype == DS && state.zone(qname).is_some() {
        if let Some(parent) = name::parent(qname).and_then(|p| state.zone_for(p)) {
            let authority = vec![negative_soa(state, parent)];
            return Answer { rcode: Rcode::NoError, authoritative: true, answers: vec![], authority, additional: vec![] };
        }
    }
    let Some(zone) = state.zone_for(qname) else {
        return Answer::refused();
    };
    let mut answer = Answer { rcode: Rcode::NoError, authoritative: true, answers: vec![], authority: vec![], additional: vec![] };
    let mut name = qname.to_string();
    // A reference, not a clone: the workers answering at once would all
    // write the one zone's reference count.
    let mut zone: &Arc<Zone> = zone;
    let mut seen: Vec<String> = Vec::new();
    loop {
        match lookup(state, zone, &name, qtype) {
            Node::Records(mut rrs) => {
                let cname = rrs.iter().position(|r| r.rtype() == RType::Cname);
                match (cname, qtype) {
                    (Some(at), t) if t != RType::Cname && t != RType::Any => {
                        let c = rrs.swap_remove(at);
                        let target = c.data.target().map(str::to_string);
                        answer.answers.push(c);
                        seen.push(std::mem::take(&mut name));
                        let Some(target) = target else { break };
                        // Follow only into served zones of the same environment,
                        // within the limit, never in a loop.
                        let next = state.zone_for(&target);
                        match next {
                            Some(z)
                                if z.spec.environment == zone.spec.environment
                                    && seen.len() < CNAME_CHAIN_MAX
                                    && !seen.contains(&target) =>
                            {
                                zone = z;
                                name = target;
                                continue;
                            }
                            _ => break,
                        }
                    }
                    (_, RType::Any) => {
                        // RFC 8482: answer one RRset, not all of them; the one
                        // of the lowest type code, as Knot DNS does.
                        if let Some(t) = rrs.iter().map(Record::rtype).min_by_key(|t| t.code()) {
                            rrs.retain(|r| r.rtype() == t);
                            add_glue(zone, &rrs, &mut answer.additional);
                            answer.answers.extend(rrs);
                        }
                        break;
                    }
                    _ => {
                        rrs.retain(|r| r.rtype() == qtype);
                        if rrs.is_empty() {
                            // NODATA, also at the end of a CNAME chain (RFC 2308 §2.2).
                            answer.authority.push(negative_soa(state, zone));
                        } else {
                            add_glue(zone, &rrs, &mut answer.additional);
                            answer.answers.extend(rrs);
                        }
                        break;
                    }
                }
            }
            Node::EmptyNonTerminal => {
                answer.authority.push(negative_soa(state, zone));
                break;
            }
            Node::Missing => {
                answer.rcode = Rcode::NxDomain;
                answer.authority.push(negative_soa(state, zone));
                break;
            }
            Node::Referral(ns) => {
                if answer.answers.is_empty() {
                    answer.authoritative = false;
                }
                add_glue(zone, &ns, &mut answer.additional);
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

/// DS, the one type a parent answers for at a delegation point (RFC 4035 §3.1.4.1).
const DS: RType = RType::DS;

fn lookup(state: &State, zone: &Zone, qname: &str, qtype: RType) -> Node {
    let apex = zone.apex();
    if qname == apex {
        let mut rrs = vec![soa(state, zone)];
        rrs.extend(zone.spec.ns.iter().map(|n| Record { name: apex.to_string(), ttl: zone.spec.ttl, data: RData::Ns(n.clone()) }));
        if let Some(statics) = zone.records_at(qname) {
            rrs.extend(statics.iter().cloned());
        }
        if let Some(signed) = state.signed_zone(apex) {
            rrs.extend(dnssec_records(signed, zone));
        }
        return Node::Records(rrs);
    }
    if zone.spec.catalog {
        return catalog_node(state, zone, qname);
    }
    if let Some(ns) = zone.delegation_for(qname) {
        // The DS set of a delegation lives in the parent: a DS query at the
        // cut is answered here (NODATA: Switchboard holds no DS records),
        // every other query at or below it is referred.
        let at_cut = ns.first().is_some_and(|r| r.name == qname);
        if !(at_cut && qtype == DS) {
            return Node::Referral(ns.iter().filter(|r| r.rtype() == RType::Ns).cloned().collect());
        }
    }
    if let Some(statics) = zone.records_at(qname) {
        return Node::Records(statics.to_vec());
    }
    if let Some(rrs) = acme_answer(state, zone, qname) {
        return Node::Records(rrs);
    }
    let Some(labels) = name::relative_labels(qname, apex) else {
        return Node::Missing;
    };
    if let [label] = labels.as_slice() {
        if let Some(rrs) = synthesise_owner(state, zone, qname, label) {
            return Node::Records(rrs);
        }
    }
    if zone.has_descendants(qname) {
        return Node::EmptyNonTerminal;
    }
    // A name that exists only because a challenge lies below it keeps what
    // the tenant's wildcard gives it: a DNS-01 challenge for `blog.t1`
    // adds its TXT at `_acme-challenge.blog.t1` and takes nothing away from
    // `blog.t1` or the names below it. (The exported zone holds such names
    // explicitly, since in a master file they would hide the wildcard.)
    if let Some(rrs) = synthesise_below(state, zone, qname, &labels) {
        return Node::Records(rrs);
    }
    if serves_stored_challenges(zone) && state.has_challenges_below(qname) {
        return Node::EmptyNonTerminal;
    }
    Node::Missing
}

/// A signed zone's DNSKEY set (every key it holds), and the CDS and
/// CDNSKEY sets naming the KSKs the parent should have DS records for, or
/// asking it to delete them while the zone is being unsigned (RFC 8078 §4).
fn dnssec_records(signed: &SignedZone, zone: &Zone) -> Vec<Record> {
    let apex = zone.apex();
    let ttl = signed.dnskey_ttl(zone.spec.ttl);
    let record = |data| Record { name: apex.to_string(), ttl, data };
    let key = |cdnskey, k: &DnssecKey| {
        record(RData::Key { cdnskey, flags: k.flags(), algorithm: k.algorithm.number(), public_key: k.public_key.clone() })
    };
    let mut rrs: Vec<Record> = signed.keys.iter().map(|k| key(false, k)).collect();
    if signed.keys.is_empty() {
        return rrs;
    }
    if signed.unsigning_since_ms.is_some() {
        rrs.push(record(RData::Cds { key_tag: 0, algorithm: 0, digest_type: 0, digest: vec![0] }));
        rrs.push(record(RData::Key { cdnskey: true, flags: 0, algorithm: 0, public_key: vec![0] }));
        return rrs;
    }
    let cds: Vec<&DnssecKey> = signed.keys.iter().filter(|k| k.in_cds()).collect();
    rrs.extend(cds.iter().map(|k| {
        record(RData::Cds {
            key_tag: k.key_tag(),
            algorithm: k.algorithm.number(),
            digest_type: crate::dnssec::DIGEST_SHA256,
            digest: k.ds_digest(apex),
        })
    }));
    rrs.extend(cds.iter().map(|k| key(true, k)));
    rrs
}

/// The types at `name` in `zone`, for a denial of existence (the NSEC type
/// bitmap of RFC 9824): `None` when the name does not exist, no types for
/// an empty non-terminal, NS alone at a delegation.
pub fn types_at(state: &State, zone: &Zone, name: &str) -> Option<Vec<RType>> {
    // The apex of a zone served here, seen from its parent: a cut.
    if name != zone.apex() && state.zone(name).is_some() {
        return Some(vec![RType::Ns]);
    }
    match lookup(state, zone, name, RType::Any) {
        Node::Records(rrs) => {
            let mut types: Vec<RType> = rrs.iter().map(Record::rtype).collect();
            types.sort_by_key(|t| t.code());
            types.dedup();
            Some(types)
        }
        Node::EmptyNonTerminal => Some(Vec::new()),
        Node::Missing => None,
        Node::Referral(ns) => ns.first().is_some_and(|r| r.name == name).then(|| vec![RType::Ns]),
    }
}

/// Whether the zone answers `_acme-challenge` names from stored challenges
/// (rather than with CNAMEs into a validation zone, or not at all).
fn serves_stored_challenges(zone: &Zone) -> bool {
    matches!(zone.acme_rule(), Some(None))
}

/// Whether `name` is the owner of a stored challenge the zone serves.
fn is_challenge(state: &State, zone: &Zone, name: &str) -> bool {
    serves_stored_challenges(zone) && state.challenge(name).is_some()
}

/// An `_acme-challenge` name: the stored TXT values, or a CNAME into the
/// validation zone the zone delegates challenges to.
fn acme_answer(state: &State, zone: &Zone, qname: &str) -> Option<Vec<Record>> {
    if !qname.strip_prefix(model::ACME_LABEL).is_some_and(|rest| rest.starts_with('.')) {
        return None;
    }
    match zone.acme_rule()? {
        Some(validation_zone) => {
            let target = name::absolute("target", &format!("{qname}{validation_zone}")).ok()?;
            Some(vec![Record { name: qname.to_string(), ttl: zone.spec.ttl, data: RData::Cname(target) }])
        }
        None => {
            let c = state.challenge(qname)?;
            Some(c.values.iter().map(|v| Record { name: qname.to_string(), ttl: v.ttl, data: RData::Txt(vec![v.value.clone()]) }).collect())
        }
    }
}

/// The records rules give the one-label name `qname` (= `label.<apex>`):
/// the first rule that matches wins. These are the names a zone file would
/// hold as `{service}-{tenant}` and `{tenant}` (see `zone_records`).
fn synthesise_owner(state: &State, zone: &Zone, qname: &str, label: &str) -> Option<Vec<Record>> {
    owner_answer(state, zone, qname, label).map(|(rrs, _)| rrs)
}

/// `synthesise_owner`, also saying which rule answered: its index and, for
/// a `service-tenant` rule, the index of the service (else 0).
fn owner_answer(state: &State, zone: &Zone, qname: &str, label: &str) -> Option<(Vec<Record>, (usize, usize))> {
    for (i, rule) in zone.spec.rules.iter().enumerate() {
        match rule {
            Rule::ServiceTenant { services, target, ttl } => {
                for (j, s) in services.iter().enumerate() {
                    let Some(key) = model::service_key(label, s) else { continue };
                    if let Some(t) = state.tenant_by_key(key) {
                        // While every address of its cluster is down, the
                        // cluster that answers for it instead.
                        let cluster = state.cluster(&t.cluster).map_or(t.cluster.as_str(), |c| state.serving(c).0.id.as_str());
                        let cname = expand_target(target, s, cluster, &t.id);
                        // Ids near the length limit can overflow a label of the
                        // template: such a name has no answer rather than a broken one.
                        if !name::is_absolute(&cname) {
                            continue;
                        }
                        let ttl = tenant_ttl(state, &t.id, ttl.unwrap_or(zone.spec.ttl));
                        let record = Record { name: qname.to_string(), ttl, data: RData::Cname(cname) };
                        return Some((vec![record], (i, j)));
                    }
                }
            }
            Rule::TenantHost { ttl } => {
                if let Some(rrs) = tenant_host(state, zone, *ttl, label, qname) {
                    return Some((rrs, (i, 0)));
                }
            }
            Rule::Acme { .. } => {}
        }
    }
    None
}

/// The records for a name two or more labels below the apex: what a zone
/// file's `*.{tenant}` wildcard gives. As with a real wildcard (RFC 4592),
/// it applies only when the closest existing ancestor is `{tenant}` itself:
/// a static name or a challenge in between hides it (the caller has
/// already answered names that exist). A name that exists only because a
/// challenge lies below it does not: it answers as the wildcard does (see
/// `fill_records`).
fn synthesise_below(state: &State, zone: &Zone, qname: &str, labels: &[&str]) -> Option<Vec<Record>> {
    let (key, between) = labels.split_last()?;
    let ttl = tenant_host_ttl(zone)?;
    let mut ancestor = name::parent(qname)?;
    for _ in 1..between.len() {
        if zone.records_at(ancestor).is_some() || zone.has_descendants(ancestor) || is_challenge(state, zone, ancestor) {
            return None;
        }
        ancestor = name::parent(ancestor)?;
    }
    tenant_host(state, zone, ttl, key, qname)
}

/// The names that exist only because of the challenge at `owner` and that
/// the tenant's wildcard answers, with those answers: its ancestors below
/// a tenant key (not the key itself, which has records of its own), up to
/// the nearest static name or other challenge. A master file needs these
/// records at each such name, and again at a wildcard below it, to answer
/// as `resolve` does: an empty non-terminal would hide the `*.{tenant}`
/// wildcard there (RFC 4592 §2.2.2).
fn fill_records(state: &State, zone: &Zone, owner: &str, out: &mut Vec<Record>) {
    if !serves_stored_challenges(zone) {
        return;
    }
    let apex = zone.apex();
    let mut ancestor = name::parent(owner);
    while let Some(at) = ancestor {
        let Some(labels) = name::relative_labels(at, apex) else { break };
        if labels.len() < 2
            || zone.records_at(at).is_some()
            || zone.has_descendants(at)
            || zone.delegation_for(at).is_some()
            || is_challenge(state, zone, at)
        {
            break;
        }
        // Only while some challenge makes the name exist (an IXFR asks
        // what the fill was before the challenge came, or after it went).
        if !state.has_challenges_below(at) {
            break;
        }
        if let Some(rrs) = synthesise_below(state, zone, at, &labels) {
            // `x` stands in for `*`, which `absolute` does not take: same length.
            if let Ok(w) = name::absolute("owner", &format!("x.{at}")).map(|n| format!("*{}", &n[1..])) {
                out.extend(rrs.iter().map(|r| Record { name: w.clone(), ..r.clone() }));
            }
            out.extend(rrs);
        }
        ancestor = name::parent(at);
    }
}

/// The TTL setting of the zone's first `tenant-host` rule (the one that
/// answers names below a tenant), or `None` when it has no such rule.
fn tenant_host_ttl(zone: &Zone) -> Option<Option<u32>> {
    zone.spec.rules.iter().find_map(|r| match r {
        Rule::TenantHost { ttl } => Some(*ttl),
        Rule::ServiceTenant { .. } | Rule::Acme { .. } => None,
    })
}

/// The TTL of an answer naming tenant `id` that a rule gives `ttl`: the
/// lowered TTL of its staged move while one runs (never higher).
fn tenant_ttl(state: &State, id: &str, ttl: u32) -> u32 {
    state.staged_move(id).map_or(ttl, |m| ttl.min(m.ttl))
}

/// A `tenant-host` answer for the tenant (or alias) `key`, owned by `owner`:
/// the serving cluster's answered addresses (`ingress::serving`: its own
/// healthy ones, or its failover's), or a CNAME to its ingress host name.
/// `None` when the tenant is unknown or its cluster has no ingress.
fn tenant_host(state: &State, zone: &Zone, ttl: Option<u32>, key: &str, owner: &str) -> Option<Vec<Record>> {
    let t = state.tenant_by_key(key)?;
    let (c, answered) = state.serving(state.cluster(&t.cluster)?);
    let ttl = tenant_ttl(state, &t.id, ttl.unwrap_or(zone.spec.ttl));
    let record = |data| Record { name: owner.to_string(), ttl, data };
    let mut rrs: Vec<Record> = c.ipv4.iter().filter(|a| answered.includes(c, (**a).into())).map(|a| record(RData::A(*a))).collect();
    rrs.extend(c.ipv6.iter().filter(|a| answered.includes(c, (**a).into())).map(|a| record(RData::Aaaa(*a))));
    if rrs.is_empty() {
        rrs.extend(c.hostname.clone().map(|h| record(RData::Cname(h))));
    }
    (!rrs.is_empty()).then_some(rrs)
}

/// Every record of `zone` as a zone file would hold it: SOA and NS at the
/// apex, the static records, and what the rules synthesise for every tenant
/// and alias (`{service}-{key}` CNAMEs, `{key}` and `*.{key}` ingress
/// records). A server loading them answers every query as `resolve` does.
/// Records go to `emit` one at a time (a zone of a million tenants is never
/// held twice); `emit` stops the walk with `Break`.
pub fn zone_records(state: &State, zone: &Zone, emit: &mut dyn FnMut(Record) -> ControlFlow<()>) -> ControlFlow<()> {
    let apex = zone.apex();
    if let Node::Records(rrs) = lookup(state, zone, apex, RType::Soa) {
        rrs.into_iter().try_for_each(&mut *emit)?;
    }
    if zone.spec.catalog {
        return catalog_records(state, zone).into_iter().try_for_each(&mut *emit);
    }
    for node in zone.nodes.values() {
        node.records.iter().filter(|r| r.name != apex).cloned().try_for_each(&mut *emit)?;
    }
    // Stored challenges (a delegation to a validation zone is a CNAME at
    // every `_acme-challenge` name, which a zone file cannot hold).
    if serves_stored_challenges(zone) {
        // Names the challenges make exist, filled in once each (challenges
        // may share ancestors).
        let mut fill = Vec::new();
        for c in state.challenges() {
            let served = state.zone_for(&c.name).is_some_and(|z| z.apex() == apex);
            if served && zone.records_at(&c.name).is_none() && zone.delegation_for(&c.name).is_none() {
                acme_answer(state, zone, &c.name).unwrap_or_default().into_iter().try_for_each(&mut *emit)?;
                fill_records(state, zone, &c.name, &mut fill);
            }
        }
        dedup(fill).into_iter().try_for_each(&mut *emit)?;
    }
    let host_ttl = tenant_host_ttl(zone);
    for tenant in state.tenants_after(None) {
        for key in tenant.keys() {
            // Each owner name is written once, by the rule that answers it:
            // `ws-a-b` may read as service `ws` of tenant `a-b` or as tenant
            // `ws-a-b`; only the reading `resolve` uses is exported.
            for (i, rule) in zone.spec.rules.iter().enumerate() {
                let labels: Vec<(usize, String)> = match rule {
                    Rule::ServiceTenant { services, .. } => services.iter().enumerate().map(|(j, s)| (j, format!("{s}-{key}"))).collect(),
                    Rule::TenantHost { .. } => vec![(0, key.to_string())],
                    Rule::Acme { .. } => Vec::new(),
                };
                for (j, label) in labels {
                    let Ok(owner) = name::absolute("owner", &format!("{label}.{apex}")) else { continue };
                    if zone.records_at(&owner).is_some() || zone.delegation_for(&owner).is_some() {
                        continue;
                    }
                    if let Some((rrs, by)) = owner_answer(state, zone, &owner, &label) {
                        if by == (i, j) {
                            rrs.into_iter().try_for_each(&mut *emit)?;
                        }
                    }
                }
            }
            // Keys (ids and aliases) are unique, so each wildcard is too.
            if let Some(ttl) = host_ttl {
                // `x` stands in for `*`, which `absolute` does not take: same length.
                let Ok(owner) = name::absolute("owner", &format!("x.{key}.{apex}")).map(|n| format!("*{}", &n[1..])) else { continue };
                if zone.delegation_for(&owner).is_none() {
                    tenant_host(state, zone, ttl, key, &owner).unwrap_or_default().into_iter().try_for_each(&mut *emit)?;
                }
            }
        }
    }
    ControlFlow::Continue(())
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

/// The records `zone_records` writes at the owner names a tenant key
/// (an id or alias) gives the zone: `{service}-{key}` under each
/// service-tenant rule, `{key}` and `*.{key}` under a tenant-host rule.
fn key_records(state: &State, zone: &Zone, key: &str, out: &mut Vec<Record>) {
    let apex = zone.apex();
    let mut labels = vec![key.to_string()];
    for rule in &zone.spec.rules {
        if let Rule::ServiceTenant { services, .. } = rule {
            labels.extend(services.iter().map(|s| format!("{s}-{key}")));
        }
    }
    for label in labels {
        let Ok(owner) = name::absolute("owner", &format!("{label}.{apex}")) else { continue };
        if zone.records_at(&owner).is_some() || zone.delegation_for(&owner).is_some() {
            continue;
        }
        if let Some((rrs, _)) = owner_answer(state, zone, &owner, &label) {
            out.extend(rrs);
        }
    }
    if let Some(ttl) = tenant_host_ttl(zone) {
        let Ok(owner) = name::absolute("owner", &format!("x.{key}.{apex}")).map(|n| format!("*{}", &n[1..])) else { return };
        if zone.delegation_for(&owner).is_none() {
            out.extend(tenant_host(state, zone, ttl, key, &owner).unwrap_or_default());
        }
        // The names challenges make exist below the key answer as it does.
        if serves_stored_challenges(zone) {
            for c in state.challenges_below(&format!("{key}.{apex}")) {
                fill_records(state, zone, &c, out);
            }
        }
    }
}

/// The challenge records `zone_records` writes at `owner`, and the records
/// it fills in at the names the challenge makes exist.
fn challenge_records(state: &State, zone: &Zone, owner: &str, out: &mut Vec<Record>) {
    let served = state.zone_for(owner).is_some_and(|z| z.apex() == zone.apex());
    if serves_stored_challenges(zone) && served && zone.records_at(owner).is_none() && zone.delegation_for(owner).is_none() {
        out.extend(acme_answer(state, zone, owner).unwrap_or_default());
        fill_records(state, zone, owner, out);
    }
}

/// `records` without repeats, in first-seen order.
fn dedup(records: Vec<Record>) -> Vec<Record> {
    records.into_iter().fold(Vec::new(), |mut acc: Vec<Record>, r| {
        if !acc.contains(&r) {
            acc.push(r);
        }
        acc
    })
}

/// What `changes` (the history between `old` and `new`, `old` being `new`
/// with them undone) did to `zone`'s records: (removed, added), each
/// record once, as an IXFR carries them. `None` when the changes reach
/// beyond what can be told name by name: the zone itself, a zone inside
/// it or (for a catalog) the zone set changed, the ingress of a cluster
/// holding tenants (whose every tenant's records follow), or a name's
/// static records where they delegate or lie above a challenge. Changes
/// to other zones and to clusters that change none of its answers are
/// nothing to it; a name's static records written alone (an UPDATE) are
/// told name by name.
pub fn zone_difference(old: &State, new: &State, zone: &Zone, changes: &[crate::Change]) -> Option<(Vec<Record>, Vec<Record>)> {
    use crate::kind::{Kind, Value};
    let mut keys = std::collections::BTreeSet::new();
    let mut challenges = std::collections::BTreeSet::new();
    let mut owners = std::collections::BTreeSet::new();
    for c in changes {
        match c.kind {
            Kind::Zone if zone.spec.catalog || name::is_within(&c.key, zone.apex()) => return None,
            Kind::Zone => {}
            Kind::Cluster => {
                let (ingress, health) = match (&c.before, &c.after) {
                    (Some(Value::Cluster(b)), Some(Value::Cluster(a))) => (b.same_ingress(a), b.same_health(a)),
                    _ => (false, false),
                };
                // Health decides the serving cluster, which service CNAMEs name too.
                let changes = !health || (!ingress && tenant_host_ttl(zone).is_some());
                if changes && (old.answers_tenants(&c.key) || new.answers_tenants(&c.key)) {
                    return None;
                }
            }
            Kind::Tenant => {
                for v in [&c.before, &c.after].into_iter().flatten() {
                    if let Value::Tenant(t) = v {
                        keys.insert(t.id.clone());
                        keys.extend(t.aliases.iter().cloned());
                    }
                }
            }
            // A staged move's TTL is on every answer naming its tenant.
            Kind::Move => {
                for t in [old.tenant(&c.key), new.tenant(&c.key)].into_iter().flatten() {
                    keys.insert(t.id.clone());
                    keys.extend(t.aliases.iter().cloned());
                }
            }
            Kind::Acme => {
                challenges.insert(c.key.clone());
            }
            Kind::ZoneNode => {
                let nodes = || {
                    [&c.before, &c.after].into_iter().flatten().filter_map(|v| match v {
                        Value::ZoneNode(n) => Some(n),
                        _ => None,
                    })
                };
                let Some(owner) = nodes().next().map(|n| n.owner().to_string()) else { continue };
                if nodes().any(|n| n.apex() != zone.apex()) {
                    continue;
                }
                // A delegation made or undone hides or shows everything below
                // it. Records two labels or more below the apex may change
                // what fills the names between a challenge and its tenant
                // (`fill_records` stops at a name with records or names
                // below it): told name by name only with no challenge under
                // the same first label.
                let delegates = nodes().any(|n| n.records.iter().any(|r| r.rtype() == RType::Ns));
                let top = name::relative_labels(&owner, zone.apex())
                    .filter(|labels| labels.len() >= 2)
                    .and_then(|labels| labels.last().map(|l| format!("{l}.{}", zone.apex())));
                let fills = top.is_some_and(|t| old.has_challenges_below(&t) || new.has_challenges_below(&t));
                if delegates || fills {
                    return None;
                }
                owners.insert(owner);
            }
            _ => {}
        }
    }
    let records = |state: &State| {
        // The zone as it was in `state`: its nodes are part of the history.
        let zone = state.zone(zone.apex()).map_or(zone, |z| &**z);
        let mut out = Vec::new();
        for k in &keys {
            key_records(state, zone, k, &mut out);
        }
        for c in &challenges {
            challenge_records(state, zone, c, &mut out);
        }
        for o in &owners {
            out.extend(zone.records_at(o).unwrap_or_default().iter().cloned());
            // A challenge at the name shows only while no records do.
            challenge_records(state, zone, o, &mut out);
        }
        out
    };
    let (before, after) = (records(old), records(new));
    let removed: Vec<Record> = before.iter().filter(|r| !after.contains(r)).cloned().collect();
    let added: Vec<Record> = after.iter().filter(|r| !before.contains(r)).cloned().collect();
    Some((dedup(removed), dedup(added)))
}

/// The member label of a zone in a catalog (RFC 9432 §4.1: unique, and
/// stable while the zone is served): 16 hex digits of the FNV-1a hash of
/// its apex.
pub fn catalog_member_label(apex: &str) -> String {
    let hash = apex.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3));
    format!("{hash:016x}")
}

/// A catalog zone's records below its apex (RFC 9432 §4): `version` TXT
/// "2", and a PTR at `<member>.zones` for every other zone served.
fn catalog_records(state: &State, catalog: &Zone) -> Vec<Record> {
    let apex = catalog.apex();
    let ttl = catalog.spec.ttl;
    let mut out = vec![Record { name: format!("version.{apex}"), ttl, data: RData::Txt(vec!["2".into()]) }];
    for z in state.zones().filter(|z| !z.spec.catalog) {
        out.push(Record { name: format!("{}.zones.{apex}", catalog_member_label(z.apex())), ttl, data: RData::Ptr(z.apex().to_string()) });
    }
    out
}

/// A name below a catalog zone's apex: the names `catalog_records` holds,
/// found through the state's member index (one lookup, however many zones
/// are served; this path is open to anyone who can send a query).
fn catalog_node(state: &State, catalog: &Zone, qname: &str) -> Node {
    let apex = catalog.apex();
    let ttl = catalog.spec.ttl;
    let Some(relative) = qname.strip_suffix(apex).and_then(|r| r.strip_suffix('.')).filter(|r| !r.is_empty()) else {
        // Not below the apex: only an ancestor of it has names below it.
        return if qname != apex && name::is_within(apex, qname) { Node::EmptyNonTerminal } else { Node::Missing };
    };
    if relative == "version" {
        return Node::Records(vec![Record { name: qname.to_string(), ttl, data: RData::Txt(vec!["2".into()]) }]);
    }
    if relative == "zones" {
        return if state.has_catalog_members() { Node::EmptyNonTerminal } else { Node::Missing };
    }
    let members = relative.strip_suffix(".zones").map_or(&[][..], |label| state.catalog_members(label));
    if members.is_empty() {
        return Node::Missing;
    }
    Node::Records(members.iter().map(|m| Record { name: qname.to_string(), ttl, data: RData::Ptr(m.clone()) }).collect())
}
