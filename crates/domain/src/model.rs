//! The replicated data model: zones (with their rules and static records),
//! clusters and tenants. Specs are what clients send; `Zone` is a spec compiled
//! into the form the resolver reads.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use compact_str::CompactString;
use ecow::EcoString;
use imbl::OrdMap;
use serde::{Deserialize, Serialize};
use thin_vec::ThinVec;

use crate::error::ValidationError;
use crate::name;
use crate::record::{self, RData, RType, Record};

/// Most rules in one zone.
pub const RULES_MAX: usize = 16;
/// Most services in one `service-tenant` rule.
pub const SERVICES_MAX: usize = 64;
/// Most static records in one zone.
pub const RECORDS_MAX: usize = 10_000;
/// Most bytes a zone's spec may take, counted by `ZoneSpec::size_bytes`: a
/// zone must fit every message that carries it whole (a 16 MiB API message,
/// a ListZones page, a log entry, a peer message), with room to spare.
pub const ZONE_BYTES_MAX: usize = 4 * 1024 * 1024;
/// Most name servers at a zone apex.
pub const NS_MAX: usize = 16;
/// Most ingress addresses of each family per cluster.
pub const INGRESS_ADDRESSES_MAX: usize = 16;
/// Most aliases per tenant.
pub const ALIASES_MAX: usize = 32;
/// Placement history kept per tenant; older tombstones are dropped.
pub const TOMBSTONES_MAX: usize = 16;
/// Cluster weights for placement.
pub const WEIGHT_MIN: u32 = 1;
pub const WEIGHT_MAX: u32 = 10_000;
pub const WEIGHT_DEFAULT: u32 = 100;
/// Longest environment label.
pub const ENVIRONMENT_LEN_MAX: usize = 32;

/// SOA fields of a zone other than the serial, which Switchboard derives.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Soa {
    pub mname: String,
    pub rname: String,
    pub refresh: u32,
    pub retry: u32,
    pub expire: u32,
    pub minimum: u32,
}

/// How names under a zone apex map to tenants.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Rule {
    /// `{service}-{tenant}.<apex>` → CNAME to `target` with `{service}`,
    /// `{cluster}` and `{tenant}` substituted.
    ServiceTenant { services: Vec<String>, target: String, ttl: Option<u32> },
    /// `{tenant}.<apex>` and every name below it → the cluster's ingress.
    TenantHost { ttl: Option<u32> },
    /// `_acme-challenge.*` names answer TXT from stored challenges or, with
    /// a validation zone, CNAME to `<name>.<validation_zone>`.
    Acme { validation_zone: Option<String> },
}

/// A static record as written by the operator (text data, names possibly relative).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordSpec {
    pub name: String,
    pub rtype: String,
    pub ttl: Option<u32>,
    pub data: String,
}

/// A zone as clients write it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ZoneSpec {
    pub apex: String,
    pub environment: String,
    pub ttl: u32,
    pub ns: Vec<String>,
    pub soa: Soa,
    pub rules: Vec<Rule>,
    pub records: Vec<RecordSpec>,
    /// Who is told of new serials, and who may transfer the zone unsigned.
    pub transfer: Transfer,
    /// A catalog zone (RFC 9432): its content is the list of every other
    /// zone served, made from the state; it has no rules or records.
    pub catalog: bool,
    /// Signed online with these settings (`[dnssec]`); unsigned when `None`.
    pub dnssec: Option<crate::dnssec::Policy>,
}

/// Most secondaries told of a zone's new serials, most prefixes allowed
/// unsigned transfers, and most client certificate keys allowed.
pub const TRANSFER_PEERS_MAX: usize = 64;

/// A zone's `[transfer]` table: the secondaries sent NOTIFY (RFC 1996)
/// when its serial advances, the client prefixes that may transfer it
/// without a TSIG key (none by default), and what transport a transfer
/// must come over (RFC 9103): any by default, only an encrypted one
/// (`tls`: DNS over TLS or QUIC), or one whose client presented a
/// certificate with one of `cert_keys` (mutual TLS; implies `tls`).
/// Transport rules add to who may transfer, they replace nothing: a
/// transfer still needs a TSIG key or an allowed prefix.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transfer {
    pub notify: Vec<std::net::SocketAddr>,
    pub allow: Vec<Prefix>,
    pub tls: bool,
    /// A thin vector (one pointer while empty, as it nearly always is):
    /// every command carries a zone's size.
    pub cert_keys: ThinVec<CertKey>,
}

/// The pin of a client certificate's key: SHA-256 of its
/// SubjectPublicKeyInfo, written in base64 as Knot DNS's `cert-key` and
/// kdig's `+tls-pin` write it (RFC 7858 §4.2's SPKI pin).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct CertKey(pub [u8; 32]);

impl CertKey {
    /// Read a pin from its base64 text; `field` names it in the error.
    pub fn parse(field: &str, text: &str) -> Result<CertKey, ValidationError> {
        use base64::Engine;
        let bytes = base64::engine::general_purpose::STANDARD.decode(text.trim()).map_err(|_| {
            ValidationError::new(field, format!("{text:?} is not base64 (the SHA-256 of a certificate's key, as kdig +tls-pin takes)"))
        })?;
        let pin = <[u8; 32]>::try_from(bytes.as_slice())
            .map_err(|_| ValidationError::new(field, format!("{text:?} is {} bytes, a SHA-256 pin is 32", bytes.len())))?;
        Ok(CertKey(pin))
    }
}

impl std::fmt::Display for CertKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use base64::Engine;
        f.write_str(&base64::engine::general_purpose::STANDARD.encode(self.0))
    }
}

/// How a transfer request reached this node, for a zone's transport rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Arrival<'a> {
    /// Over DNS over TLS or QUIC.
    pub encrypted: bool,
    /// The pin of the client certificate presented, if one was.
    pub client_key: Option<&'a CertKey>,
}

impl Transfer {
    /// Why a transfer that arrived as `arrival` is refused by the zone's
    /// transport rules, or `None` when they allow it.
    pub fn transport_refusal(&self, arrival: Arrival<'_>) -> Option<&'static str> {
        if (self.tls || !self.cert_keys.is_empty()) && !arrival.encrypted {
            return Some("the zone's transfers must come over TLS or QUIC ([transfer] tls)");
        }
        if self.cert_keys.is_empty() {
            return None;
        }
        match arrival.client_key {
            None => Some("no client certificate, and the zone's [transfer] cert_keys asks for one"),
            Some(key) if !self.cert_keys.contains(key) => Some("the client certificate's key is not in the zone's [transfer] cert_keys"),
            Some(_) => None,
        }
    }
}

/// Why `target` cannot be a secondary to send NOTIFY to, or `None` when it
/// can. No secondary listens on these: the unspecified address reaches
/// whatever the sender's kernel makes of it (this host), and multicast or
/// broadcast would make the leader a reflector towards many hosts.
///
/// Checked where a zone comes in through the API (`proto::convert`), not in
/// `Zone::compile`: compiling runs again when stored zones load and when
/// old log entries apply, which must keep succeeding as they did. The
/// sender checks again (`dns::notify`), for zones stored before this check.
pub fn notify_target_refusal(target: std::net::SocketAddr) -> Option<&'static str> {
    let ip = target.ip().to_canonical();
    if target.port() == 0 {
        Some("port 0 reaches no server")
    } else if ip.is_unspecified() {
        Some("the unspecified address is not a secondary")
    } else if ip.is_multicast() {
        Some("a multicast address is not a secondary")
    } else if matches!(ip, IpAddr::V4(v4) if v4.is_broadcast()) {
        Some("the broadcast address is not a secondary")
    } else {
        None
    }
}

/// An address prefix (`192.0.2.0/24`, `2001:db8::/32`), its host bits zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Prefix {
    addr: IpAddr,
    len: u8,
}

impl Prefix {
    /// From `ADDR/LEN` or a bare address (a host); host bits must be zero.
    pub fn parse(field: &str, text: &str) -> Result<Prefix, ValidationError> {
        let err = |reason: String| ValidationError::new(field, reason);
        let (addr, len) = match text.split_once('/') {
            Some((a, l)) => (a, Some(l)),
            None => (text, None),
        };
        let addr: IpAddr =
            addr.trim().parse().map_err(|_| err(format!("{text:?} is not an address prefix (192.0.2.0/24, 2001:db8::/32)")))?;
        let bits = if addr.is_ipv4() { 32 } else { 128 };
        let len = match len {
            None => bits,
            Some(l) => {
                l.trim().parse::<u8>().ok().filter(|l| *l <= bits).ok_or_else(|| err(format!("prefix length {l:?} is not 0 to {bits}")))?
            }
        };
        let p = Prefix { addr, len };
        if p.network() != addr {
            return Err(err(format!("{text:?} has host bits set (did you mean {}?)", Prefix { addr: p.network(), len })));
        }
        Ok(p)
    }

    /// The address with the bits past the prefix cleared.
    fn network(&self) -> IpAddr {
        match self.addr {
            IpAddr::V4(a) => IpAddr::V4(Ipv4Addr::from(u32::from(a) & u32::MAX.checked_shl(32 - u32::from(self.len)).unwrap_or(0))),
            IpAddr::V6(a) => IpAddr::V6(Ipv6Addr::from(u128::from(a) & u128::MAX.checked_shl(128 - u32::from(self.len)).unwrap_or(0))),
        }
    }

    /// Whether `ip` lies in the prefix (an IPv4-mapped IPv6 address counts as IPv4).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        Prefix { addr: ip, len: self.len }.network() == self.addr && ip.is_ipv4() == self.addr.is_ipv4()
    }
}

impl std::fmt::Display for Prefix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

impl ZoneSpec {
    /// The bytes the spec's text takes, with 16 for each record's and
    /// rule's framing: an upper bound, near enough, of its size in any
    /// encoding we use (bincode, protobuf, the master file).
    pub fn size_bytes(&self) -> usize {
        let names = self.apex.len() + self.environment.len() + self.ns.iter().map(|n| n.len() + 16).sum::<usize>();
        let soa = self.soa.mname.len() + self.soa.rname.len() + 16;
        let rules: usize = self
            .rules
            .iter()
            .map(|r| match r {
                Rule::ServiceTenant { services, target, .. } => target.len() + services.iter().map(|s| s.len() + 16).sum::<usize>(),
                Rule::TenantHost { .. } => 0,
                Rule::Acme { validation_zone } => validation_zone.as_ref().map_or(0, String::len),
            } + 16)
            .sum();
        let records: usize = self.records.iter().map(|r| r.name.len() + r.rtype.len() + r.data.len() + 16).sum();
        let transfer = (self.transfer.notify.len() + self.transfer.allow.len() + self.transfer.cert_keys.len()) * 64;
        names + soa + rules + records + transfer
    }
}

/// A validated zone ready for lookups.
///
/// Its static records are not part of it as stored: each name's records
/// are a `ZoneNode` of their own, so that a change to one name (an RFC
/// 2136 UPDATE) writes that name and nothing else. Stored, a zone is its
/// spec without records and its revision; in memory it holds its nodes
/// (shared with the state's `ZoneNode` table, kept in step by `State::set`)
/// in a persistent map, so a change to one node copies one path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Zone {
    /// The spec, normalised (names lower-case and absolute). Its `records`
    /// are always empty: they are in `nodes` (`Zone::full_spec` puts them back).
    pub spec: ZoneSpec,
    /// Revision at which the zone itself (not one of its nodes) was last written.
    pub revision: u64,
    /// Static records by owner, keyed by `name::tree_key` so that a name's
    /// descendants follow it (empty non-terminals and delegations are range scans).
    pub(crate) nodes: OrdMap<String, Arc<ZoneNode>>,
    /// What the nodes add up to, kept as they change.
    tally: Tally,
    /// The largest TTL of its answers (`max_ttl`), kept as nodes change.
    max_ttl: u32,
}

/// Sums over a zone's nodes that a node change adjusts rather than recounts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Tally {
    records: usize,
    /// `record_bytes` of every record.
    bytes: usize,
    /// How many records have each TTL, so the largest is known after a removal.
    ttls: OrdMap<u32, usize>,
    /// Nodes below the apex holding an NS set: a zone with none (the common
    /// one) looks for no delegation on any query.
    delegations: usize,
}

/// The static records one name owns in one zone: stored apart from its
/// zone, one value per name, so that a write touching a few names writes
/// those names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ZoneNode {
    /// `"{apex} {owner}"` (`ZoneNode::key_of`): unique across zones, since
    /// a delegation's NS set and the child zone's apex share an owner.
    pub key: String,
    /// In the order they were added; one TTL per RRset; never empty.
    pub records: Vec<Record>,
    pub revision: u64,
}

impl ZoneNode {
    pub fn key_of(apex: &str, owner: &str) -> String {
        format!("{apex} {owner}")
    }

    /// The apex of its zone (names hold no space).
    pub fn apex(&self) -> &str {
        self.key.split_once(' ').map_or(&self.key, |(apex, _)| apex)
    }

    pub fn owner(&self) -> &str {
        self.key.split_once(' ').map_or(&self.key, |(_, owner)| owner)
    }

    fn has_ns(&self) -> bool {
        self.records.iter().any(|r| r.rtype() == RType::Ns)
    }
}

/// What a record counts towards `ZONE_BYTES_MAX`, as `ZoneSpec::size_bytes` counts it.
fn record_bytes(r: &Record) -> usize {
    r.name.len() + r.rtype().to_string().len() + crate::masterfile::rdata_text(&r.data).len() + 16
}

/// Add `record` to the records `node` holds at its owner, as a zone holds
/// them: no CNAME or NS at the apex (its NS set comes from `ns`), a CNAME
/// alone at its name (RFC 2181 §10.1), no record twice, and one TTL per
/// RRset (RFC 2181 §5.2: the first record's). On refusal, the field of
/// the record at fault (`name` or `data`) and why.
fn admit(node: &mut Vec<Record>, mut record: Record, apex: &str) -> Result<(), (&'static str, String)> {
    let (owner, rtype) = (&record.name, record.rtype());
    if owner == apex && matches!(rtype, RType::Cname | RType::Ns) {
        return Err(("name", format!("{rtype} at the apex is not allowed (the apex NS set comes from `ns`)")));
    }
    if rtype == RType::Cname && !node.is_empty() || node.iter().any(|x| x.rtype() == RType::Cname) {
        return Err(("name", format!("{owner} has a CNAME and other records")));
    }
    if node.iter().any(|x| x.data == record.data) {
        return Err(("data", format!("duplicate {rtype} record at {owner}")));
    }
    if let Some(first) = node.iter().find(|x| x.rtype() == rtype) {
        record.ttl = first.ttl;
    }
    node.push(record);
    Ok(())
}

/// A zone is stored as its spec without records (they are its nodes,
/// stored one by one) and its revision, and compiled again on load; a
/// stored zone that no longer compiles is corruption.
impl Serialize for Zone {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        (&self.spec, self.revision).serialize(s)
    }
}

impl<'de> Deserialize<'de> for Zone {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Zone, D::Error> {
        let (spec, revision): (ZoneSpec, u64) = Deserialize::deserialize(d)?;
        Zone::compile(&spec, revision).map_err(|e| serde::de::Error::custom(format!("stored zone {}: {e}", spec.apex)))
    }
}

impl Zone {
    /// Validate a spec and build its lookup form. Every error names its field.
    pub fn compile(spec: &ZoneSpec, revision: u64) -> Result<Zone, ValidationError> {
        let apex = name::absolute("apex", &spec.apex)?;
        let environment = spec.environment.to_ascii_lowercase();
        name::label("environment", &environment)?;
        if environment.len() > ENVIRONMENT_LEN_MAX {
            return Err(ValidationError::new("environment", format!("longer than {ENVIRONMENT_LEN_MAX} characters")));
        }
        let ttl = record::ttl("ttl", spec.ttl)?;

        if spec.ns.is_empty() {
            return Err(ValidationError::new("ns", "a zone needs at least one name server"));
        }
        if spec.ns.len() > NS_MAX {
            return Err(ValidationError::new("ns", format!("{} name servers, at most {NS_MAX}", spec.ns.len())));
        }
        let ns = spec.ns.iter().enumerate().map(|(i, n)| name::target(&format!("ns[{i}]"), n, &apex)).collect::<Result<Vec<_>, _>>()?;

        let soa = Soa {
            mname: name::target("soa.mname", &spec.soa.mname, &apex)?,
            rname: name::target("soa.rname", &spec.soa.rname, &apex)?,
            refresh: record::ttl("soa.refresh", spec.soa.refresh)?,
            retry: record::ttl("soa.retry", spec.soa.retry)?,
            expire: record::ttl("soa.expire", spec.soa.expire)?,
            minimum: record::ttl("soa.minimum", spec.soa.minimum)?,
        };

        if spec.rules.len() > RULES_MAX {
            return Err(ValidationError::new("rules", format!("{} rules, at most {RULES_MAX}", spec.rules.len())));
        }
        let rules = spec
            .rules
            .iter()
            .enumerate()
            .map(|(i, r)| compile_rule(r).map_err(|e| e.within(format!("rules[{i}]"))))
            .collect::<Result<Vec<_>, _>>()?;

        let size = spec.size_bytes();
        if size > ZONE_BYTES_MAX {
            return Err(ValidationError::new("records", format!("the zone takes {size} bytes, at most {ZONE_BYTES_MAX}")));
        }
        if spec.records.len() > RECORDS_MAX {
            return Err(ValidationError::new("records", format!("{} records, at most {RECORDS_MAX}", spec.records.len())));
        }
        let mut owners: BTreeMap<String, Vec<Record>> = BTreeMap::new();
        for (i, r) in spec.records.iter().enumerate() {
            let at = |f: &str| format!("records[{i}].{f}");
            let owner = name::in_zone(&at("name"), &r.name, &apex)?;
            let rtype = RType::parse_static(&at("type"), &r.rtype)?;
            let rttl = record::ttl(&at("ttl"), r.ttl.unwrap_or(ttl))?;
            let data = RData::parse(&at("data"), rtype, &r.data, &apex)?;
            let node = owners.entry(name::tree_key(&owner)).or_default();
            admit(node, Record { name: owner, ttl: rttl, data }, &apex)
                .map_err(|(field, reason)| ValidationError::new(at(field), reason))?;
        }

        if spec.transfer.notify.len() > TRANSFER_PEERS_MAX {
            return Err(ValidationError::new(
                "transfer.notify",
                format!("{} secondaries, at most {TRANSFER_PEERS_MAX}", spec.transfer.notify.len()),
            ));
        }
        if spec.transfer.allow.len() > TRANSFER_PEERS_MAX {
            return Err(ValidationError::new(
                "transfer.allow",
                format!("{} prefixes, at most {TRANSFER_PEERS_MAX}", spec.transfer.allow.len()),
            ));
        }
        if spec.transfer.cert_keys.len() > TRANSFER_PEERS_MAX {
            return Err(ValidationError::new(
                "transfer.cert_keys",
                format!("{} certificate keys, at most {TRANSFER_PEERS_MAX}", spec.transfer.cert_keys.len()),
            ));
        }
        let mut transfer = spec.transfer.clone();
        transfer.notify.sort();
        transfer.notify.dedup();
        transfer.allow.sort();
        transfer.allow.dedup();
        transfer.cert_keys.sort();
        transfer.cert_keys.dedup();

        if spec.catalog && (!spec.rules.is_empty() || !spec.records.is_empty()) {
            return Err(ValidationError::new("catalog", "a catalog zone lists the zones served: it has no rules or records of its own"));
        }
        if let Some(policy) = &spec.dnssec {
            policy.validate()?;
            if spec.catalog {
                return Err(ValidationError::new("dnssec", "a catalog zone is read by secondaries, not resolvers: it is not signed"));
            }
        }
        let dnssec = spec.dnssec.clone();
        let spec = ZoneSpec { apex, environment, ttl, ns, soa, rules, records: Vec::new(), transfer, catalog: spec.catalog, dnssec };
        let mut zone = Zone { spec, revision, nodes: OrdMap::new(), tally: Tally::default(), max_ttl: 0 };
        zone.max_ttl = zone.compute_max_ttl();
        for (tree_key, records) in owners {
            let Some(owner) = records.first().map(|r| r.name.clone()) else { continue };
            let key = ZoneNode::key_of(&zone.spec.apex, &owner);
            zone.set_node(tree_key, Some(Arc::new(ZoneNode { key, records, revision })));
        }
        Ok(zone)
    }

    /// The spec as clients read and write it: with its static records,
    /// name by name in tree order, each with its TTL and its data as text.
    pub fn full_spec(&self) -> ZoneSpec {
        let records = self
            .nodes
            .values()
            .flat_map(|n| &n.records)
            .map(|r| RecordSpec {
                name: r.name.clone(),
                rtype: r.rtype().to_string(),
                ttl: Some(r.ttl),
                data: crate::masterfile::rdata_text(&r.data),
            })
            .collect();
        ZoneSpec { records, ..self.spec.clone() }
    }

    /// Its nodes, by `name::tree_key` of their owner.
    pub fn nodes(&self) -> &OrdMap<String, Arc<ZoneNode>> {
        &self.nodes
    }

    /// This zone holding `other`'s nodes (the same zone as written before):
    /// the map and its sums are shared, not rebuilt.
    pub(crate) fn with_nodes_of(mut self, other: &Zone) -> Zone {
        self.nodes = other.nodes.clone();
        self.tally = other.tally.clone();
        self.max_ttl = self.compute_max_ttl();
        self
    }

    /// Drop its nodes (`State::set` joins a zone with the state's own).
    pub(crate) fn clear_nodes(&mut self) {
        self.nodes = OrdMap::new();
        self.tally = Tally::default();
        self.max_ttl = self.compute_max_ttl();
    }

    /// How many static records it holds.
    pub fn record_count(&self) -> usize {
        self.tally.records
    }

    /// Put `node` at `tree_key` (`None`: remove what is there), adjusting
    /// what the nodes add up to; returns what was there. The node is
    /// taken as it is: `Zone::node` and `Zone::compile` check it.
    pub(crate) fn set_node(&mut self, tree_key: String, node: Option<Arc<ZoneNode>>) -> Option<Arc<ZoneNode>> {
        let before = match node {
            Some(n) => {
                self.tally(&n, true);
                self.nodes.insert(tree_key, n)
            }
            None => self.nodes.remove(&tree_key),
        };
        if let Some(b) = &before {
            self.tally(b, false);
        }
        self.max_ttl = self.compute_max_ttl();
        before
    }

    fn tally(&mut self, node: &ZoneNode, present: bool) {
        let t = &mut self.tally;
        let delegation = node.has_ns() && node.owner() != self.spec.apex;
        for r in &node.records {
            let n = t.ttls.entry(r.ttl).or_insert(0);
            if present {
                *n += 1;
            } else {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    t.ttls.remove(&r.ttl);
                }
            }
        }
        let bytes: usize = node.records.iter().map(record_bytes).sum();
        if present {
            t.records += node.records.len();
            t.bytes += bytes;
            t.delegations += usize::from(delegation);
        } else {
            t.records = t.records.saturating_sub(node.records.len());
            t.bytes = t.bytes.saturating_sub(bytes);
            t.delegations = t.delegations.saturating_sub(usize::from(delegation));
        }
    }

    /// The node `owner` would hold with `records` (written at `revision`),
    /// checked as `compile` checks a zone's records, and with the zone's
    /// limits as they would be after it: `None` for no records. Errors
    /// name the field of the record at fault (`records[i].name`), `i`
    /// counting the records given.
    pub fn node(&self, owner: &str, records: Vec<Record>, revision: u64) -> Result<Option<ZoneNode>, ValidationError> {
        let apex = self.apex();
        let mut node = Vec::with_capacity(records.len());
        for (i, r) in records.into_iter().enumerate() {
            if r.name != owner {
                return Err(ValidationError::new(format!("records[{i}].name"), format!("{} is not {owner}", r.name)));
            }
            admit(&mut node, r, apex).map_err(|(field, reason)| ValidationError::new(format!("records[{i}].{field}"), reason))?;
        }
        let before = self.records_at(owner).unwrap_or(&[]);
        let count = self.tally.records.saturating_sub(before.len()) + node.len();
        if count > RECORDS_MAX {
            return Err(ValidationError::new("records", format!("{count} records, at most {RECORDS_MAX}")));
        }
        let bytes = self.spec.size_bytes()
            + self.tally.bytes.saturating_sub(before.iter().map(record_bytes).sum())
            + node.iter().map(record_bytes).sum::<usize>();
        if bytes > ZONE_BYTES_MAX {
            return Err(ValidationError::new("records", format!("the zone takes {bytes} bytes, at most {ZONE_BYTES_MAX}")));
        }
        Ok((!node.is_empty()).then(|| ZoneNode { key: ZoneNode::key_of(apex, owner), records: node, revision }))
    }

    pub fn apex(&self) -> &str {
        &self.spec.apex
    }

    /// The largest TTL an answer from this zone carries (what caches may
    /// hold a signature for): its default, its rules', its records', and
    /// its negative TTL.
    pub fn max_ttl(&self) -> u32 {
        self.max_ttl
    }

    fn compute_max_ttl(&self) -> u32 {
        let rules = self.spec.rules.iter().filter_map(|r| match r {
            Rule::ServiceTenant { ttl, .. } | Rule::TenantHost { ttl } => *ttl,
            Rule::Acme { .. } => None,
        });
        let records = self.tally.ttls.get_max().map(|(ttl, _)| *ttl);
        rules.chain(records).chain([self.spec.ttl, self.spec.soa.minimum]).max().unwrap_or(self.spec.ttl)
    }

    /// The zone's `acme` rule: `Some(None)` when it serves stored
    /// challenges, `Some(Some(zone))` when it delegates them to a
    /// validation zone, `None` without one.
    pub fn acme_rule(&self) -> Option<&Option<String>> {
        self.spec.rules.iter().find_map(|r| match r {
            Rule::Acme { validation_zone } => Some(validation_zone),
            _ => None,
        })
    }

    /// Static records owned by `name`.
    pub fn records_at(&self, name: &str) -> Option<&[Record]> {
        if self.nodes.is_empty() {
            return None;
        }
        name::with_tree_key(name, "", |key| self.nodes.get(key)).map(|n| n.records.as_slice())
    }

    /// `name` has no records of its own but static records exist below it
    /// (an empty non-terminal, RFC 8020).
    pub fn has_descendants(&self, name: &str) -> bool {
        use std::ops::Bound;
        name::with_tree_key(name, ".", |prefix| {
            self.nodes.range::<_, str>((Bound::Included(prefix), Bound::Unbounded)).next().is_some_and(|(k, _)| k.starts_with(prefix))
        })
    }

    /// The closest delegation (static NS set below the apex) at or above `name`.
    pub fn delegation_for(&self, name: &str) -> Option<&[Record]> {
        if self.tally.delegations == 0 {
            return None;
        }
        let mut cur = name;
        while cur != self.apex() {
            if let Some(node) = self.records_at(cur) {
                if node.iter().any(|r| r.rtype() == RType::Ns) {
                    return Some(node);
                }
            }
            cur = name::parent(cur)?;
        }
        None
    }
}

fn compile_rule(rule: &Rule) -> Result<Rule, ValidationError> {
    match rule {
        Rule::ServiceTenant { services, target, ttl } => {
            if services.is_empty() {
                return Err(ValidationError::new("services", "at least one service is needed"));
            }
            if services.len() > SERVICES_MAX {
                return Err(ValidationError::new("services", format!("{} services, at most {SERVICES_MAX}", services.len())));
            }
            let services =
                services.iter().enumerate().map(|(i, s)| name::label(&format!("services[{i}]"), s)).collect::<Result<Vec<_>, _>>()?;
            let target = target.to_ascii_lowercase();
            if !target.contains("{cluster}") {
                return Err(ValidationError::new("target", "must contain {cluster}"));
            }
            let sample = expand_target(&target, "s", "c", "t");
            if sample.contains('{') || sample.contains('}') {
                return Err(ValidationError::new("target", "unknown placeholder (only {service}, {cluster} and {tenant} are allowed)"));
            }
            // Long ids can still make a too-long name; such tenants get no
            // answer from this rule (see `resolve`), the template itself is fine.
            name::absolute("target", &sample).map_err(|e| ValidationError::new("target", e.reason))?;
            let ttl = ttl.map(|t| record::ttl("ttl", t)).transpose()?;
            Ok(Rule::ServiceTenant { services, target, ttl })
        }
        Rule::TenantHost { ttl } => Ok(Rule::TenantHost { ttl: ttl.map(|t| record::ttl("ttl", t)).transpose()? }),
        Rule::Acme { validation_zone } => {
            Ok(Rule::Acme { validation_zone: validation_zone.as_deref().map(|z| name::absolute("validation_zone", z)).transpose()? })
        }
    }
}

/// An ACME DNS-01 challenge: the TXT values at one `_acme-challenge` name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Challenge {
    /// `_acme-challenge.<name>`, absolute, lower-case.
    pub name: String,
    /// Several at once: a wildcard and an apex certificate share one name.
    pub values: Vec<ChallengeValue>,
    /// The tenant (by id) that owned the name (`credential::tenant_of_name`)
    /// when the challenge was set; `None` for a name of no tenant (an
    /// operator's challenge at a static name). A challenge belongs to that
    /// owner only: the command that gives its name another owner (a tenant
    /// created or deleted, an alias added or removed, a zone put or deleted)
    /// removes it at its own revision, so nobody passes DNS-01 for a name
    /// with a value set while the name was someone else's.
    pub tenant: Option<String>,
    pub revision: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChallengeValue {
    pub value: String,
    pub ttl: u32,
    /// Leader's clock (ms since the epoch) at the set, plus its lifetime.
    pub expires_at_ms: u64,
}

pub const ACME_LABEL: &str = "_acme-challenge";
pub const ACME_VALUES_MAX: usize = 16;
pub const ACME_TTL_DEFAULT: u32 = 60;
pub const ACME_EXPIRES_IN_DEFAULT_S: u64 = 3600;
pub const ACME_EXPIRES_IN_MAX_S: u64 = 7 * 24 * 3600;

/// The challenge owner for a name to validate: `foo.example.` and
/// `*.foo.example` (wildcard certificates) both give
/// `_acme-challenge.foo.example.` (the root dot is optional); a name already starting with the
/// `_acme-challenge` label is kept.
pub fn acme_owner(field: &str, text: &str) -> Result<String, ValidationError> {
    let text = text.strip_prefix("*.").unwrap_or(text);
    // Certificate names are written without the root dot: take both.
    let mut lower = text.to_ascii_lowercase();
    if !lower.ends_with('.') {
        lower.push('.');
    }
    let full = if lower.starts_with(&format!("{ACME_LABEL}.")) { lower } else { format!("{ACME_LABEL}.{lower}") };
    // `_` is not a host-name character: check the rest as a name.
    let rest = &full[ACME_LABEL.len() + 1..];
    let rest = name::absolute(field, rest)?;
    let owner = format!("{ACME_LABEL}.{rest}");
    if owner.len() > 254 {
        return Err(ValidationError::new(field, "name too long with the _acme-challenge label"));
    }
    Ok(owner)
}

/// A challenge value: what a TXT character-string holds, 1 to 255
/// printable ASCII characters (ACME values are 43 base64url characters).
pub fn acme_value(field: &str, value: &str) -> Result<(), ValidationError> {
    if value.is_empty() || value.len() > 255 || !value.bytes().all(|b| (0x20..0x7f).contains(&b)) {
        return Err(ValidationError::new(field, "must be 1 to 255 printable ASCII characters"));
    }
    Ok(())
}

/// The tenant key (id or alias) in a `service-tenant` owner label
/// `{service}-{key}`, if the label starts with `service`.
pub fn service_key<'a>(label: &'a str, service: &str) -> Option<&'a str> {
    label.strip_prefix(service).and_then(|r| r.strip_prefix('-'))
}

/// Fill a `service-tenant` target template.
/// (One pass: the values are validated labels, which hold no braces, so
/// this is the three replacements in turn, without their three strings.)
pub fn expand_target(template: &str, service: &str, cluster: &str, tenant: &str) -> String {
    let mut out = String::with_capacity(template.len() + cluster.len() + tenant.len());
    let mut rest = template;
    while let Some(at) = rest.find('{') {
        out.push_str(&rest[..at]);
        rest = &rest[at..];
        let placeholders = [("{service}", service), ("{cluster}", cluster), ("{tenant}", tenant)];
        match placeholders.iter().find(|(p, _)| rest.starts_with(p)) {
            Some((p, value)) => {
                out.push_str(value);
                rest = &rest[p.len()..];
            }
            None => {
                out.push('{');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// Whether a cluster takes traffic and new tenants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ClusterState {
    /// Serves its tenants and receives new ones.
    Active,
    /// Serves its tenants, receives no new ones.
    Draining,
    /// Receives no new tenants; its tenants are still answered with its ingress.
    Down,
}

impl ClusterState {
    pub fn parse(field: &str, text: &str) -> Result<Self, ValidationError> {
        match text.to_ascii_lowercase().as_str() {
            "active" => Ok(ClusterState::Active),
            "draining" => Ok(ClusterState::Draining),
            "down" => Ok(ClusterState::Down),
            _ => Err(ValidationError::new(field, format!("{text:?} is not one of active, draining, down"))),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ClusterState::Active => "active",
            ClusterState::Draining => "draining",
            ClusterState::Down => "down",
        }
    }
}

/// The revision of the last change to a zone's answers that is neither a
/// write of the zone itself nor one every zone with rules follows (see
/// `state::Marks`): a challenge set, cleared or expired in it, a zone
/// created or deleted inside it. With it a zone's SOA serial moves for
/// what changes its own answers and for nothing else.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ZoneSerial {
    pub apex: String,
    pub revision: u64,
}

/// A scale unit tenants are placed on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cluster {
    pub id: String,
    pub ipv4: Vec<Ipv4Addr>,
    pub ipv6: Vec<Ipv6Addr>,
    /// Ingress host name; answered as a CNAME by `tenant-host` rules when the
    /// cluster has no addresses.
    pub hostname: Option<String>,
    pub dedicated: bool,
    pub weight: u32,
    pub state: ClusterState,
    /// How its addresses are checked; unchecked addresses are always answered.
    pub check: Option<crate::health::Check>,
    /// The cluster whose addresses its tenants are answered with while
    /// every address of this one is down.
    pub failover: Option<String>,
    /// What is answered when every address is down and no failover
    /// cluster has a healthy one.
    pub all_down: crate::health::AllDown,
    /// The addresses a quorum of probers found down, sorted: set only by
    /// `Command::SetHealth` (a put keeps those of its addresses that stay).
    pub down: Vec<std::net::IpAddr>,
    /// Revision of the last change.
    pub revision: u64,
}

impl Cluster {
    /// An active, shared cluster of default weight with no ingress yet.
    pub fn new(id: &str) -> Cluster {
        Cluster {
            id: id.to_string(),
            ipv4: Vec::new(),
            ipv6: Vec::new(),
            hostname: None,
            dedicated: false,
            weight: WEIGHT_DEFAULT,
            state: ClusterState::Active,
            check: None,
            failover: None,
            all_down: crate::health::AllDown::FailOpen,
            down: Vec::new(),
            revision: 0,
        }
    }

    /// Validate and normalise a cluster as a client sent it.
    pub fn validate(mut self) -> Result<Cluster, ValidationError> {
        self.id = name::label("cluster.id", &self.id)?;
        if self.ipv4.len() > INGRESS_ADDRESSES_MAX {
            return Err(ValidationError::new("cluster.ipv4", format!("at most {INGRESS_ADDRESSES_MAX} addresses")));
        }
        if self.ipv6.len() > INGRESS_ADDRESSES_MAX {
            return Err(ValidationError::new("cluster.ipv6", format!("at most {INGRESS_ADDRESSES_MAX} addresses")));
        }
        for (i, a) in self.ipv4.iter().enumerate() {
            if a.is_unspecified() || a.is_broadcast() || a.is_multicast() {
                return Err(ValidationError::new(format!("cluster.ipv4[{i}]"), format!("{a} is not a unicast address")));
            }
        }
        for (i, a) in self.ipv6.iter().enumerate() {
            if a.is_unspecified() || a.is_multicast() {
                return Err(ValidationError::new(format!("cluster.ipv6[{i}]"), format!("{a} is not a unicast address")));
            }
        }
        self.ipv4.sort();
        self.ipv4.dedup();
        self.ipv6.sort();
        self.ipv6.dedup();
        if let Some(h) = &self.hostname {
            self.hostname = Some(name::absolute("cluster.hostname", h)?);
        }
        if !(WEIGHT_MIN..=WEIGHT_MAX).contains(&self.weight) {
            return Err(ValidationError::new("cluster.weight", format!("{} is outside {WEIGHT_MIN}..={WEIGHT_MAX}", self.weight)));
        }
        if let Some(check) = self.check.take() {
            if self.ipv4.is_empty() && self.ipv6.is_empty() {
                return Err(ValidationError::new("cluster.check", "a cluster without ingress addresses has nothing to check"));
            }
            self.check = Some(check.validate()?);
        }
        if let Some(f) = self.failover.take() {
            let f = name::label("cluster.failover", &f)?;
            if f == self.id {
                return Err(ValidationError::new("cluster.failover", "a cluster cannot fail over to itself"));
            }
            self.failover = Some(f);
        }
        // Health is the probers' to say, not the client's.
        self.down.clear();
        Ok(self)
    }

    /// Can receive tenants by hashed placement.
    pub fn placeable(&self) -> bool {
        self.state == ClusterState::Active && !self.dedicated
    }
}

/// Its addresses and their committed health.
impl Cluster {
    /// Every ingress address, IPv4 first.
    pub fn addresses(&self) -> impl Iterator<Item = std::net::IpAddr> + '_ {
        self.ipv4.iter().map(|a| std::net::IpAddr::V4(*a)).chain(self.ipv6.iter().map(|a| std::net::IpAddr::V6(*a)))
    }

    /// Whether a quorum of probers found `a` down (as committed).
    pub fn is_down(&self, a: std::net::IpAddr) -> bool {
        !self.down.is_empty() && self.down.binary_search(&a).is_ok()
    }

    /// Whether its tenants may be answered with its addresses: some are
    /// healthy and the operator has not marked it `down`.
    pub fn answerable(&self) -> bool {
        self.state != ClusterState::Down && self.health() != crate::health::Health::Down
    }

    pub fn health(&self) -> crate::health::Health {
        if self.down.is_empty() {
            crate::health::Health::Healthy
        } else if self.down.len() >= self.ipv4.len() + self.ipv6.len() {
            crate::health::Health::Down
        } else {
            crate::health::Health::Degraded
        }
    }

    /// Whether `other` has the same addresses and host name.
    pub fn same_ingress(&self, other: &Cluster) -> bool {
        self.ipv4 == other.ipv4 && self.ipv6 == other.ipv6 && self.hostname == other.hostname
    }

    /// Whether `other` has the same verdicts and the same answer when all
    /// are down: what decides which cluster serves its tenants, so the
    /// `service-tenant` CNAMEs as well as the addresses.
    pub fn same_health(&self, other: &Cluster) -> bool {
        self.down == other.down && self.failover == other.failover && self.all_down == other.all_down && self.state == other.state
    }
}

/// A tenant move that lowers its answers' TTL first, so resolvers follow
/// within the lowered TTL: staged (`Lowered`: answers go out with `ttl`,
/// still naming `from`), moved once the longest old TTL has passed since
/// (`Moved`: the tenant is on `to`, answers still at `ttl`), and gone once
/// another old TTL has passed (answers at their own TTL again). Each step
/// is a command the leader proposes when it is due; stored by tenant id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StagedMove {
    pub tenant: String,
    pub from: String,
    pub to: String,
    /// The TTL of every answer naming the tenant while the move is staged.
    pub ttl: u32,
    /// The longest TTL its answers had when the move was staged: how long a
    /// resolver may hold an answer given before.
    pub old_ttl: u32,
    pub step: MoveStep,
    /// The leader's stamp when the step began (ms since the epoch).
    pub since_ms: u64,
    pub revision: u64,
}

/// How far a staged move is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum MoveStep {
    /// Answers lowered, the tenant still on `from`.
    Lowered,
    /// The tenant on `to`, answers still lowered.
    Moved,
}

impl MoveStep {
    pub fn as_str(self) -> &'static str {
        match self {
            MoveStep::Lowered => "lowered",
            MoveStep::Moved => "moved",
        }
    }
}

impl StagedMove {
    /// When its next step is due: one old TTL after this one began.
    pub fn due_ms(&self) -> u64 {
        self.since_ms.saturating_add(u64::from(self.old_ttl) * 1000)
    }
}

/// Bounds of a move's lowered TTL.
pub const MOVE_TTL_MAX: u32 = 86_400;

/// One move of a tenant, kept so the old cluster's proxies can forward
/// traffic that still arrives there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tombstone {
    pub from: String,
    pub to: String,
    pub revision: u64,
    /// Milliseconds since the Unix epoch, stamped by the leader.
    pub at_ms: u64,
}

/// A tenant and where it lives.
///
/// Held once per tenant in every node's memory, so laid out for size: 72
/// bytes and no further allocation for an id of up to 24 bytes, a cluster
/// id of up to 15 and a tenant without aliases or moves (ids inline,
/// aliases and tombstones one pointer while empty). The serde form is that
/// of strings and sequences, as before.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tenant {
    pub id: CompactString,
    pub cluster: EcoString,
    pub pinned: bool,
    pub aliases: ThinVec<CompactString>,
    /// Newest last; at most `TOMBSTONES_MAX`.
    pub history: ThinVec<Tombstone>,
    pub revision: u64,
}

impl Tenant {
    /// Its keys: the id, then each alias (one namespace, see `KeyIndex`).
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.id.as_str()).chain(self.aliases.iter().map(CompactString::as_str))
    }
}
