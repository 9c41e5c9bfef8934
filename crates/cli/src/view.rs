//! The CLI's output model: one serde view per thing a command prints,
//! built from the API's messages. `--json` prints these (keys sorted, see
//! `output`), and scripts, the integration tests, chaos/ and bench/ parse
//! them, so a field here is a promise: rename or drop none.

use serde::Serialize;
use switchboard_proto::v1;

use crate::args::Kind;

// --- zones ---------------------------------------------------------------------

#[derive(Debug, Serialize)]
pub struct ZoneView {
    pub apex: String,
    pub environment: String,
    pub ttl: Option<u32>,
    pub ns: Vec<String>,
    pub serial: u32,
    pub revision: u64,
    pub soa: SoaView,
    /// `null` for a rule without a kind.
    pub rules: Vec<Option<RuleView>>,
    pub records: Vec<RecordView>,
    /// `null` when the zone has no `[transfer]` table.
    pub transfer: Option<TransferView>,
    /// A catalog zone (RFC 9432).
    pub catalog: bool,
    /// `null` when the zone is not signed; timings in seconds.
    pub dnssec: Option<Box<DnssecView>>,
}

/// A zone's `[dnssec]` table, as the API holds it (timings in seconds).
#[derive(Debug, Serialize)]
pub struct DnssecView {
    pub algorithm: String,
    pub rrsig_validity_seconds: Option<u64>,
    pub rrsig_refresh_seconds: Option<u64>,
    pub zsk_lifetime_seconds: Option<u64>,
    pub ksk_lifetime_seconds: Option<u64>,
    pub dnskey_ttl: Option<u32>,
    pub propagation_delay_seconds: Option<u64>,
    pub ksk_submission_delay_seconds: Option<u64>,
}

#[derive(Debug, Serialize)]
pub struct TransferView {
    pub notify: Vec<String>,
    pub allow: Vec<String>,
    pub tls: bool,
    pub cert_keys: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct SoaView {
    pub mname: String,
    pub rname: String,
    pub refresh: Option<u32>,
    pub retry: Option<u32>,
    pub expire: Option<u32>,
    pub minimum: Option<u32>,
}

/// A rule, tagged with its `kind` as zone files spell it.
#[derive(Debug, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum RuleView {
    ServiceTenant { services: Vec<String>, target: String, ttl: Option<u32> },
    TenantHost { ttl: Option<u32> },
    Acme { validation_zone: String },
}

#[derive(Debug, Serialize)]
pub struct RecordView {
    pub name: String,
    #[serde(rename = "type")]
    pub rtype: String,
    pub ttl: Option<u32>,
    pub data: String,
}

impl From<&v1::Zone> for ZoneView {
    fn from(z: &v1::Zone) -> Self {
        let soa = z.soa.clone().unwrap_or_default();
        ZoneView {
            apex: z.apex.clone(),
            environment: z.environment.clone(),
            ttl: z.ttl,
            ns: z.ns.clone(),
            serial: z.serial,
            revision: z.revision,
            soa: SoaView {
                mname: soa.mname,
                rname: soa.rname,
                refresh: soa.refresh,
                retry: soa.retry,
                expire: soa.expire,
                minimum: soa.minimum,
            },
            rules: z
                .rules
                .iter()
                .map(|r| {
                    r.kind.as_ref().map(|k| match k {
                        v1::rule::Kind::ServiceTenant(s) => {
                            RuleView::ServiceTenant { services: s.services.clone(), target: s.target.clone(), ttl: s.ttl }
                        }
                        v1::rule::Kind::TenantHost(h) => RuleView::TenantHost { ttl: h.ttl },
                        v1::rule::Kind::Acme(a) => RuleView::Acme { validation_zone: a.validation_zone.clone() },
                    })
                })
                .collect(),
            records: z
                .records
                .iter()
                .map(|r| RecordView { name: r.name.clone(), rtype: r.r#type.clone(), ttl: r.ttl, data: r.data.clone() })
                .collect(),
            transfer: z.transfer.as_ref().map(|t| TransferView {
                notify: t.notify.clone(),
                allow: t.allow.clone(),
                tls: t.tls,
                cert_keys: t.cert_keys.clone(),
            }),
            catalog: z.catalog,
            dnssec: z.dnssec.as_ref().map(|d| {
                Box::new(DnssecView {
                    algorithm: d.algorithm.clone(),
                    rrsig_validity_seconds: d.rrsig_validity_seconds,
                    rrsig_refresh_seconds: d.rrsig_refresh_seconds,
                    zsk_lifetime_seconds: d.zsk_lifetime_seconds,
                    ksk_lifetime_seconds: d.ksk_lifetime_seconds,
                    dnskey_ttl: d.dnskey_ttl,
                    propagation_delay_seconds: d.propagation_delay_seconds,
                    ksk_submission_delay_seconds: d.ksk_submission_delay_seconds,
                })
            }),
        }
    }
}

/// `zone put`.
#[derive(Debug, Serialize)]
pub struct ZoneWritten {
    pub revision: u64,
    pub zone: ZoneView,
}

/// `zone import`: also how many static records the file gave.
#[derive(Debug, Serialize)]
pub struct ZoneImported {
    pub revision: u64,
    pub records: usize,
    pub zone: ZoneView,
}

/// `zone export --output FILE`.
#[derive(Debug, Serialize)]
pub struct ZoneExported {
    pub apex: String,
    pub revision: u64,
    pub bytes: usize,
    pub file: String,
}

// --- clusters ------------------------------------------------------------------

#[derive(Debug, Serialize)]
pub struct ClusterView {
    pub id: String,
    pub ipv4: Vec<String>,
    pub ipv6: Vec<String>,
    pub hostname: String,
    pub dedicated: bool,
    pub weight: Option<u32>,
    /// active, draining or down.
    pub state: &'static str,
    pub tenants: u64,
    pub revision: u64,
    /// healthy, degraded or down (as committed from the probers' verdicts).
    pub health: String,
    pub down: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub check: Option<CheckView>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub failover: String,
    pub fail_closed: bool,
    /// The cluster its tenants are answered with now.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub serving: String,
}

/// A cluster's health check.
#[derive(Debug, Serialize)]
pub struct CheckView {
    pub protocol: String,
    pub port: u32,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub path: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub host: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<u32>,
    pub interval_ms: u32,
    pub timeout_ms: u32,
    pub failures: u32,
    pub successes: u32,
}

impl From<&v1::HealthCheck> for CheckView {
    fn from(c: &v1::HealthCheck) -> Self {
        CheckView {
            protocol: c.protocol.clone(),
            port: c.port,
            path: c.path.clone(),
            host: c.host.clone(),
            status: (c.status != 0).then_some(c.status),
            interval_ms: c.interval_ms,
            timeout_ms: c.timeout_ms,
            failures: c.failures,
            successes: c.successes,
        }
    }
}

/// A cluster's state by name; an unknown number reads as active, as the
/// server takes it.
pub fn state_name(s: i32) -> &'static str {
    match v1::ClusterState::try_from(s) {
        Ok(v1::ClusterState::Draining) => "draining",
        Ok(v1::ClusterState::Down) => "down",
        _ => "active",
    }
}

impl From<&v1::Cluster> for ClusterView {
    fn from(c: &v1::Cluster) -> Self {
        ClusterView {
            id: c.id.clone(),
            ipv4: c.ipv4.clone(),
            ipv6: c.ipv6.clone(),
            hostname: c.hostname.clone(),
            dedicated: c.dedicated,
            weight: c.weight,
            state: state_name(c.state),
            tenants: c.tenants,
            revision: c.revision,
            health: c.health.clone(),
            down: c.down.clone(),
            check: c.check.as_ref().map(CheckView::from),
            failover: c.failover.clone(),
            fail_closed: c.fail_closed,
            serving: c.serving.clone(),
        }
    }
}

/// `cluster put`.
#[derive(Debug, Serialize)]
pub struct ClusterWritten {
    pub revision: u64,
    pub cluster: ClusterView,
}

// --- tenants -------------------------------------------------------------------

#[derive(Debug, Serialize)]
pub struct TenantView {
    pub id: String,
    pub cluster: String,
    pub pinned: bool,
    pub aliases: Vec<String>,
    pub revision: u64,
    pub history: Vec<TombstoneView>,
    /// Its staged move (`tenant move --ttl-first`), while one runs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub staged: Option<StagedView>,
}

/// A staged move.
#[derive(Debug, Serialize)]
pub struct StagedView {
    pub tenant: String,
    pub from: String,
    pub to: String,
    pub ttl: u32,
    pub old_ttl: u32,
    /// lowered (still on `from`) or moved (on `to`, TTL still lowered).
    pub step: String,
    pub since_ms: u64,
    pub due_ms: u64,
    pub revision: u64,
}

impl From<&v1::StagedMove> for StagedView {
    fn from(m: &v1::StagedMove) -> Self {
        StagedView {
            tenant: m.tenant.clone(),
            from: m.from.clone(),
            to: m.to.clone(),
            ttl: m.ttl,
            old_ttl: m.old_ttl,
            step: m.step.clone(),
            since_ms: m.since_ms,
            due_ms: m.due_ms,
            revision: m.revision,
        }
    }
}

/// A staged move as `tenant get` prints it for people.
pub fn staged_line(m: &v1::StagedMove) -> String {
    match m.step.as_str() {
        "lowered" => format!(
            "{} -> {}: answers at TTL {} s since {}; moves at {} (once the old TTL of {} s has passed)",
            m.from,
            m.to,
            m.ttl,
            rfc3339_ms(m.since_ms),
            rfc3339_ms(m.due_ms),
            m.old_ttl
        ),
        _ => format!(
            "{} -> {}: moved at {}; answers at TTL {} s until {}",
            m.from,
            m.to,
            rfc3339_ms(m.since_ms),
            m.ttl,
            rfc3339_ms(m.due_ms)
        ),
    }
}

/// `tenant cancel-move`.
#[derive(Debug, Serialize)]
pub struct MoveCancelled {
    pub cancelled: String,
    pub revision: u64,
}

#[derive(Debug, Serialize)]
pub struct TombstoneView {
    pub from: String,
    pub to: String,
    pub revision: u64,
    pub at_ms: u64,
}

/// A tombstone as `tenant get` prints it for people: when as RFC 3339 UTC
/// (`--json` keeps `at_ms`, the number).
pub fn tombstone_line(h: &v1::Tombstone) -> String {
    format!("{} -> {} at revision {} ({})", h.from, h.to, h.revision, rfc3339_ms(h.at_ms))
}

/// A time in ms since the epoch as RFC 3339 UTC, to the millisecond. From
/// year 10000 on, which RFC 3339 cannot write (humantime would fail), the
/// number itself: the value comes from a server and must not panic here.
pub fn rfc3339_ms(ms: u64) -> String {
    const YEAR_10000_S: u64 = 253_402_300_800;
    if ms / 1000 >= YEAR_10000_S {
        return format!("{ms} ms since the epoch");
    }
    humantime::format_rfc3339_millis(std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms)).to_string()
}

impl From<&v1::Tenant> for TenantView {
    fn from(t: &v1::Tenant) -> Self {
        TenantView {
            id: t.id.clone(),
            cluster: t.cluster.clone(),
            pinned: t.pinned,
            aliases: t.aliases.clone(),
            revision: t.revision,
            history: t
                .history
                .iter()
                .map(|h| TombstoneView { from: h.from.clone(), to: h.to.clone(), revision: h.revision, at_ms: h.at_ms })
                .collect(),
            staged: t.staged.as_ref().map(StagedView::from),
        }
    }
}

/// Every tenant write (create, pin, unpin, move, alias add and remove).
#[derive(Debug, Serialize)]
pub struct TenantWritten {
    pub revision: u64,
    pub tenant: TenantView,
}

/// `tenant import`: the server's counts, with the lines that did not parse
/// counted as rejected and listed among the errors, in line order.
#[derive(Debug, Serialize)]
pub struct ImportSummary {
    pub created: u64,
    /// Tenants that already existed as their record asks (an import run again).
    pub existing: u64,
    pub rejected: u64,
    pub revision: u64,
    pub errors: Vec<ImportErrorView>,
}

#[derive(Debug, Serialize)]
pub struct ImportErrorView {
    pub line: u64,
    pub id: String,
    pub error: String,
}

/// `rebalance`.
#[derive(Debug, Serialize)]
pub struct RebalanceView {
    pub misplaced: u64,
    pub moves: Vec<MoveView>,
}

#[derive(Debug, Serialize)]
pub struct MoveView {
    pub id: String,
    pub from: String,
    pub to: String,
    pub revision: u64,
    /// Empty when the move applied.
    pub error: String,
}

impl From<&v1::RebalanceResponse> for RebalanceView {
    fn from(r: &v1::RebalanceResponse) -> Self {
        RebalanceView {
            misplaced: r.misplaced,
            moves: r
                .moves
                .iter()
                .map(|m| MoveView {
                    id: m.id.clone(),
                    from: m.from.clone(),
                    to: m.to.clone(),
                    revision: m.revision,
                    error: m.error.clone(),
                })
                .collect(),
        }
    }
}

/// Every deletion (zone, cluster, tenant, token revoke).
#[derive(Debug, Serialize)]
pub struct Deleted {
    pub deleted: String,
    pub revision: u64,
}

// --- node and membership -------------------------------------------------------

#[derive(Debug, Serialize)]
pub struct MemberView {
    pub id: u64,
    pub peer: String,
    pub api: String,
    pub voter: bool,
    /// Set for an edge of the relay tree (not a Raft member): who feeds it
    /// and how far it is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub edge: Option<EdgeView>,
}

#[derive(Debug, Serialize)]
pub struct EdgeView {
    pub upstream_id: u64,
    pub applied_revision: u64,
    pub staleness_ms: Option<u64>,
}

impl From<&v1::Member> for MemberView {
    fn from(m: &v1::Member) -> Self {
        MemberView { id: m.id, peer: m.peer.clone(), api: m.api.clone(), voter: m.voter, edge: None }
    }
}

impl From<&v1::TreeNode> for MemberView {
    fn from(t: &v1::TreeNode) -> Self {
        let edge = EdgeView { upstream_id: t.upstream_id, applied_revision: t.applied_revision, staleness_ms: t.staleness_ms };
        MemberView { id: t.id, peer: t.peer.clone(), api: t.api.clone(), voter: false, edge: Some(edge) }
    }
}

pub fn members(ms: &[v1::Member]) -> Vec<MemberView> {
    ms.iter().map(MemberView::from).collect()
}

/// A node of the relay tree, as the node feeding it last heard.
#[derive(Debug, Clone, Serialize)]
pub struct TreeView {
    pub id: u64,
    pub peer: String,
    pub api: String,
    pub upstream_id: u64,
    pub applied_revision: u64,
    /// `null`: its branch never heard from a leader.
    pub staleness_ms: Option<u64>,
}

impl From<&v1::TreeNode> for TreeView {
    fn from(t: &v1::TreeNode) -> Self {
        TreeView {
            id: t.id,
            peer: t.peer.clone(),
            api: t.api.clone(),
            upstream_id: t.upstream_id,
            applied_revision: t.applied_revision,
            staleness_ms: t.staleness_ms,
        }
    }
}

/// `member add-learner`, `promote`, `remove` (`member list` prints the bare list).
#[derive(Debug, Serialize)]
pub struct MembersWritten {
    pub revision: u64,
    pub members: Vec<MemberView>,
}

/// One node's own status.
#[derive(Debug, Serialize)]
pub struct StatusView {
    pub node_id: u64,
    pub role: String,
    pub leader_id: u64,
    pub leader_api: String,
    pub term: u64,
    pub last_log_index: u64,
    pub applied_revision: u64,
    /// `null`: it never heard from a leader (or, on the leader, a quorum).
    pub staleness_ms: Option<u64>,
    pub ready: bool,
    pub snapshot_revision: u64,
    pub purged_revision: u64,
    /// On an edge: the peer URL and id of the node it follows.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub upstream: String,
    #[serde(skip_serializing_if = "is_zero")]
    pub upstream_id: u64,
    pub zones: u64,
    pub clusters: u64,
    pub tenants: u64,
}

impl From<&v1::StatusResponse> for StatusView {
    fn from(s: &v1::StatusResponse) -> Self {
        StatusView {
            node_id: s.node_id,
            role: s.role.clone(),
            leader_id: s.leader_id,
            leader_api: s.leader_api.clone(),
            term: s.term,
            last_log_index: s.last_log_index,
            applied_revision: s.applied_revision,
            staleness_ms: s.staleness_ms,
            ready: s.ready,
            snapshot_revision: s.snapshot_revision,
            purged_revision: s.purged_revision,
            upstream: s.upstream.clone(),
            upstream_id: s.upstream_id,
            zones: s.zones,
            clusters: s.clusters,
            tenants: s.tenants,
        }
    }
}

/// `status`: the node asked, its members, and each member as it answered
/// when asked directly.
#[derive(Debug, Serialize)]
pub struct NodeStatus {
    #[serde(flatten)]
    pub node: StatusView,
    pub members: Vec<MemberView>,
    pub member_status: Vec<MemberStatus>,
    /// The relay tree below the node asked and below every member reached.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tree: Vec<TreeView>,
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum MemberStatus {
    /// Its status, and how far its applied revision trails the most
    /// advanced log any member reports.
    Reached {
        #[serde(flatten)]
        status: StatusView,
        lag: u64,
    },
    Unreachable {
        node_id: u64,
        error: String,
    },
}

// --- acme ----------------------------------------------------------------------

#[derive(Debug, Serialize)]
pub struct ChallengeView {
    pub name: String,
    pub revision: u64,
    pub values: Vec<ChallengeValueView>,
}

#[derive(Debug, Serialize)]
pub struct ChallengeValueView {
    pub value: String,
    pub ttl: u32,
    pub expires_at_ms: u64,
}

impl From<&v1::Challenge> for ChallengeView {
    fn from(c: &v1::Challenge) -> Self {
        ChallengeView {
            name: c.name.clone(),
            revision: c.revision,
            values: c
                .values
                .iter()
                .map(|v| ChallengeValueView { value: v.value.clone(), ttl: v.ttl, expires_at_ms: v.expires_at_ms })
                .collect(),
        }
    }
}

/// `acme set` and `acme clear`: the challenge after the write (`null` when
/// no value is left).
#[derive(Debug, Serialize)]
pub struct ChallengeWritten {
    pub revision: u64,
    pub challenge: Option<ChallengeView>,
}

/// `acme list`.
#[derive(Debug, Serialize)]
pub struct ChallengeList {
    pub revision: u64,
    pub challenges: Vec<ChallengeView>,
}

// --- credentials ---------------------------------------------------------------

#[derive(Debug, Serialize)]
pub struct CredentialView {
    pub id: String,
    pub name: String,
    pub role: String,
    pub environments: Vec<String>,
    pub zones: Vec<String>,
    pub tenant: String,
    pub created_at_ms: u64,
    pub revision: u64,
}

impl From<&v1::Credential> for CredentialView {
    fn from(c: &v1::Credential) -> Self {
        CredentialView {
            id: c.id.clone(),
            name: c.name.clone(),
            role: c.role.clone(),
            environments: c.environments.clone(),
            zones: c.zones.clone(),
            tenant: c.tenant.clone(),
            created_at_ms: c.created_at_ms,
            revision: c.revision,
        }
    }
}

/// `token create`: the only time the token is shown.
#[derive(Debug, Serialize)]
pub struct CredentialCreated {
    pub revision: u64,
    pub credential: CredentialView,
    pub token: String,
}

/// A TSIG key, as `tsig list` shows it (never its secret).
#[derive(Debug, Serialize)]
pub struct TsigKeyView {
    pub name: String,
    pub algorithm: String,
    /// `all`, `environments=…`, `zones=…` or `tenant=…`.
    pub scope: String,
    pub allow: Vec<String>,
    pub created_at_ms: u64,
    pub revision: u64,
}

impl From<&v1::TsigKey> for TsigKeyView {
    fn from(k: &v1::TsigKey) -> Self {
        let scope = if !k.environments.is_empty() {
            format!("environments={}", k.environments.join(","))
        } else if !k.zones.is_empty() {
            format!("zones={}", k.zones.join(","))
        } else if !k.tenant.is_empty() {
            format!("tenant={}", k.tenant)
        } else {
            "all".into()
        };
        TsigKeyView {
            name: k.name.clone(),
            algorithm: k.algorithm.clone(),
            scope,
            allow: k.allow.clone(),
            created_at_ms: k.created_at_ms,
            revision: k.revision,
        }
    }
}

/// `tsig create`: the key and its secret (base64), shown this once.
#[derive(Debug, Serialize)]
pub struct TsigKeyCreated {
    pub revision: u64,
    pub name: String,
    pub algorithm: String,
    pub secret: String,
    pub key: TsigKeyView,
}

/// `tsig list`.
#[derive(Debug, Serialize)]
pub struct TsigKeyList {
    pub revision: u64,
    pub keys: Vec<TsigKeyView>,
}

/// `token list`.
#[derive(Debug, Serialize)]
pub struct CredentialList {
    pub revision: u64,
    pub credentials: Vec<CredentialView>,
}

// --- watch ---------------------------------------------------------------------

/// One change, as `watch` prints it (one JSON line each, `--json` or not).
#[derive(Debug, Serialize)]
pub struct EventView {
    pub revision: u64,
    /// zone, cluster, tenant, acme, or unknown (a kind newer than this CLI).
    pub kind: &'static str,
    pub key: String,
    pub deleted: bool,
    pub previous_cluster: String,
    /// `null` when the event carries no value.
    pub value: Option<EventValue>,
}

#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum EventValue {
    Zone(ZoneView),
    Cluster(EventCluster),
    Tenant(TenantView),
    Challenge(ChallengeView),
    Move(StagedView),
}

/// A cluster in an event: its identity, ingress and health (what DNS
/// answers with).
#[derive(Debug, Serialize)]
pub struct EventCluster {
    pub id: String,
    pub ipv4: Vec<String>,
    pub ipv6: Vec<String>,
    pub hostname: String,
    pub revision: u64,
    pub health: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub down: Vec<String>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub failover: String,
}

impl From<&v1::Event> for EventView {
    fn from(e: &v1::Event) -> Self {
        use v1::event::Value as V;
        EventView {
            revision: e.revision,
            kind: Kind::from_wire(e.kind).map_or("unknown", Kind::as_str),
            key: e.key.clone(),
            deleted: e.deleted,
            previous_cluster: e.previous_cluster.clone(),
            value: e.value.as_ref().map(|v| match v {
                V::Zone(z) => EventValue::Zone(z.into()),
                V::Cluster(c) => EventValue::Cluster(EventCluster {
                    id: c.id.clone(),
                    ipv4: c.ipv4.clone(),
                    ipv6: c.ipv6.clone(),
                    hostname: c.hostname.clone(),
                    revision: c.revision,
                    health: c.health.clone(),
                    down: c.down.clone(),
                    failover: c.failover.clone(),
                }),
                V::Tenant(t) => EventValue::Tenant(t.into()),
                V::Challenge(c) => EventValue::Challenge(c.into()),
                V::Move(m) => EventValue::Move(m.into()),
            }),
        }
    }
}

/// `watch` from a revision the node no longer holds.
#[derive(Debug, Serialize)]
pub struct Compacted {
    pub compacted: bool,
    pub revision: u64,
}

#[cfg(test)]
mod tests;
