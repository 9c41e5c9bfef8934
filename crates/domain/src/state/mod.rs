//! The replicated state and `apply`, the pure function that changes it.
//!
//! `State` is built from persistent maps (`imbl`): cloning it is O(1) and
//! shares structure, so the state machine can publish a fresh immutable
//! snapshot to the DNS path after every batch of entries while it keeps
//! applying. Readers never wait for a writer.
//!
//! The stored part is one table per kind (`kind::Tables`, from the
//! registry); every change to it goes through `State::set`, which keeps the
//! derived indexes and returns the `Effect`. The commands live with their
//! concern: zones, clusters and tenants, ACME challenges, credentials, and
//! the request-id dedup window.

mod acme;
mod batch;
mod credentials;
mod dedup;
mod dnssec;
mod keys;
mod moves;
mod tenants;
mod update;
mod zones;

use std::sync::Arc;

use imbl::{OrdMap, OrdSet};
use serde::{Deserialize, Serialize};

pub use dedup::{request_id, REQUEST_IDS_MAX, REQUEST_ID_LEN_MAX, REQUEST_ID_WINDOW_MS};

use crate::command::{Command, Envelope, Outcome, RequestRecord};
use crate::credential::{self, Access, Actor, Credential};
use crate::dnssec::SignedZone;
use crate::error::CommandError;
use crate::kind::{ByKey, Effect, EntityId, Kind, Tables, Value};
use crate::model::{Challenge, Cluster, Tenant, Zone};
use crate::name;
use crate::tsig::TsigKey;

/// Most changes `State::undone` takes back: past it a transfer sends the
/// whole zone instead.
pub const UNDO_CHANGES_MAX: usize = 10_000;

/// The revisions of the last changes that move the SOA serial of every zone
/// that depends on them, kept beside the revision (in storage and in
/// snapshots). What moves one zone's serial alone is kept per zone
/// (`ZoneSerial`), so a change to one zone never moves another's serial
/// (a NOTIFY and an IXFR to every secondary of every zone).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Marks {
    /// A tenant created, changed or deleted: zones with tenant rules.
    pub tenants: u64,
    /// The ingress (addresses or host name) of a cluster that holds
    /// tenants changed: zones with `tenant-host` rules.
    pub ingress: u64,
    /// A zone created or deleted: catalog zones, which list every zone.
    pub zones: u64,
}

impl Marks {
    /// These marks as they can have been at revision `at`: none later.
    pub fn at_most(self, at: u64) -> Marks {
        Marks { tenants: self.tenants.min(at), ingress: self.ingress.min(at), zones: self.zones.min(at) }
    }
}

#[derive(Debug, Clone, Default)]
pub struct State {
    /// Log index of the last applied entry (of any kind).
    revision: u64,
    /// What moves the serials of many zones at once (see `serial`).
    marks: Marks,
    tables: Tables,
    // Derived indexes, kept by `set` from the tables alone.
    /// Tenant id or alias → tenant, by hash: the query path's lookup.
    /// Aliases and tenant ids share one namespace.
    keys: keys::KeyIndex,
    /// Tenants per cluster id, so cluster reads and deletes walk no tenants.
    tenants_per_cluster: OrdMap<String, u64>,
    /// Request ids in the order of their stamps, for eviction.
    /// (The record itself, ordered by its id, not a copy of the id.)
    request_order: OrdSet<(u64, ByKey<RequestRecord>)>,
    /// The request records' total `dedup::weight`, which the window bounds.
    request_weight: u64,
    /// Challenge owner names by `name::tree_key`, so the names below a name
    /// form one range.
    acme_tree: OrdMap<String, String>,
    /// Catalog member label (`resolve::catalog_member_label`) → the apexes
    /// of the zones (not catalogs) that have it, in apex order: a name below
    /// a catalog zone is one lookup here, not a walk of every zone. Two
    /// apexes may share a label (a 64-bit hash), so a label holds a list.
    catalog_members: OrdMap<String, Vec<String>>,
}

impl State {
    pub fn revision(&self) -> u64 {
        self.revision
    }

    pub fn marks(&self) -> Marks {
        self.marks
    }

    pub fn zone(&self, apex: &str) -> Option<&Arc<Zone>> {
        self.tables.zones.get(apex)
    }

    pub fn zones(&self) -> impl Iterator<Item = &Arc<Zone>> {
        self.tables.zones.values()
    }

    pub fn cluster(&self, id: &str) -> Option<&Arc<Cluster>> {
        self.tables.clusters.get(id)
    }

    pub fn clusters(&self) -> impl Iterator<Item = &Arc<Cluster>> {
        self.tables.clusters.values()
    }

    /// Which cluster's addresses the tenants of `c` are answered with, and
    /// which of them (`ingress::serving`).
    pub fn serving<'a>(&'a self, c: &'a Cluster) -> (&'a Cluster, crate::ingress::Answered) {
        crate::ingress::serving(c, |id| self.cluster(id).map(|c| &**c))
    }

    /// Whether a change of cluster `id`'s answers changes some tenant's:
    /// it holds tenants, or is the failover of a cluster that does.
    pub fn answers_tenants(&self, id: &str) -> bool {
        self.tenants_on(id) > 0 || self.clusters().any(|c| c.failover.as_deref() == Some(id) && self.tenants_on(&c.id) > 0)
    }

    /// How many tenants live on cluster `id`.
    pub fn tenants_on(&self, id: &str) -> u64 {
        self.tenants_per_cluster.get(id).copied().unwrap_or(0)
    }

    pub fn tenant(&self, id: &str) -> Option<&Arc<Tenant>> {
        self.tables.tenants.get(id)
    }

    /// Tenants in id order, starting after `after` (for paging).
    pub fn tenants_after<'a>(&'a self, after: Option<&'a str>) -> Box<dyn Iterator<Item = &'a Arc<Tenant>> + 'a> {
        match after {
            None => Box::new(self.tables.tenants.values()),
            Some(a) => Box::new(self.tables.tenants.after(a)),
        }
    }

    pub fn tenant_count(&self) -> usize {
        self.tables.len(Kind::Tenant)
    }

    /// A tenant by its id or one of its aliases.
    pub fn tenant_by_key(&self, key: &str) -> Option<&Arc<Tenant>> {
        self.keys.get(key.as_bytes())
    }

    /// A hint before answering a batch of queries: bring the tenants that
    /// `keys` (lower-case ids or aliases, found or not) would look up into
    /// the cache together (`KeyIndex::warm`). Answers never depend on it.
    pub fn warm_tenants<'k>(&self, keys: impl Iterator<Item = &'k [u8]>) {
        self.keys.warm(keys);
    }

    /// The served zone with the longest apex containing `qname` (lower-case, absolute).
    pub fn zone_for(&self, qname: &str) -> Option<&Arc<Zone>> {
        let mut cur = qname;
        loop {
            if let Some(z) = self.tables.zones.get(cur) {
                return Some(z);
            }
            cur = name::parent(cur)?;
        }
    }

    /// SOA serial of a zone: the revision of the last change that can alter
    /// its answers (its keys' included: they are its DNSKEY set), and no
    /// other. RFC 1982 serial arithmetic tolerates the wrap at 2^32.
    pub fn serial(&self, zone: &Zone) -> u32 {
        self.serial_revision(zone) as u32
    }

    /// The revision `serial` is taken from: the latest of the zone's own
    /// writes, its keys, what changed inside it alone (`ZoneSerial`), and
    /// of the marks it depends on: the tenants for a zone with tenant
    /// rules, the clusters' ingress for one with `tenant-host` rules, the
    /// zone set for a catalog.
    pub fn serial_revision(&self, zone: &Zone) -> u64 {
        let mut rev = zone.revision;
        let (mut tenants, mut ingress) = (false, false);
        for rule in &zone.spec.rules {
            match rule {
                crate::model::Rule::ServiceTenant { .. } => tenants = true,
                crate::model::Rule::TenantHost { .. } => (tenants, ingress) = (true, true),
                crate::model::Rule::Acme { .. } => {}
            }
        }
        if tenants {
            rev = rev.max(self.marks.tenants);
        }
        if ingress {
            rev = rev.max(self.marks.ingress);
        }
        if zone.spec.catalog {
            rev = rev.max(self.marks.zones);
        }
        if let Some(own) = self.tables.zone_serials.get(zone.apex()) {
            rev = rev.max(own.revision);
        }
        self.signed_zone(zone.apex()).map_or(rev, |s| rev.max(s.revision))
    }

    /// The challenge at `owner` (`_acme-challenge.…`, absolute, lower-case).
    pub fn challenge(&self, owner: &str) -> Option<&Arc<Challenge>> {
        self.tables.challenges.get(owner)
    }

    /// Every challenge, in tree order.
    pub fn challenges(&self) -> impl Iterator<Item = &Arc<Challenge>> {
        self.acme_tree.values().filter_map(|owner| self.tables.challenges.get(owner))
    }

    /// Whether some challenge is owned by a name below `name`.
    pub fn has_challenges_below(&self, name: &str) -> bool {
        if self.acme_tree.is_empty() {
            return false;
        }
        use std::ops::Bound;
        name::with_tree_key(name, ".", |prefix| {
            self.acme_tree.range::<_, str>((Bound::Included(prefix), Bound::Unbounded)).next().is_some_and(|(k, _)| k.starts_with(prefix))
        })
    }

    /// The owner names of the challenges below `name` (not at it), in tree
    /// order: one range of the tree-ordered index, so a check of one
    /// tenant's names costs what they hold, not what every tenant holds.
    pub fn challenges_below(&self, name: &str) -> impl Iterator<Item = String> + '_ {
        let prefix = format!("{}.", name::tree_key(name));
        self.acme_tree.range(prefix.clone()..).take_while(move |(k, _)| k.starts_with(&prefix)).map(|(_, owner)| owner.clone())
    }

    /// The apexes of the zones whose catalog member label is `label`, in
    /// apex order (empty when none: catalogs list every zone but catalogs).
    pub fn catalog_members(&self, label: &str) -> &[String] {
        self.catalog_members.get(label).map_or(&[], Vec::as_slice)
    }

    /// Whether any zone is a catalog member (one that is not a catalog itself).
    pub fn has_catalog_members(&self) -> bool {
        !self.catalog_members.is_empty()
    }

    /// The earliest expiry of any challenge value (leader's clock, ms).
    pub fn next_acme_expiry(&self) -> Option<u64> {
        self.tables.challenges.values().flat_map(|c| c.values.iter().map(|v| v.expires_at_ms)).min()
    }

    pub fn credential(&self, id: &str) -> Option<&Arc<Credential>> {
        self.tables.credentials.get(id)
    }

    /// Every credential, by id.
    pub fn credentials(&self) -> impl Iterator<Item = &Arc<Credential>> {
        self.tables.credentials.values()
    }

    /// A TSIG key by name (absolute, lower-case).
    pub fn tsig_key(&self, name: &str) -> Option<&Arc<TsigKey>> {
        self.tables.tsig_keys.get(name)
    }

    /// Every TSIG key, by name.
    pub fn tsig_keys(&self) -> impl Iterator<Item = &Arc<TsigKey>> {
        self.tables.tsig_keys.values()
    }

    /// A signed zone's keys and rollover state, by apex.
    pub fn signed_zone(&self, apex: &str) -> Option<&Arc<SignedZone>> {
        self.tables.signed_zones.get(apex)
    }

    /// Every signed zone (or zone being unsigned), by apex.
    pub fn signed_zones(&self) -> impl Iterator<Item = &Arc<SignedZone>> {
        self.tables.signed_zones.values()
    }

    /// Whether any zone's answers are signed (the fast path reads DO only then).
    pub fn signs_any(&self) -> bool {
        !self.tables.signed_zones.is_empty()
    }

    /// A request id in the dedup window.
    pub fn request(&self, id: &str) -> Option<&Arc<RequestRecord>> {
        self.tables.requests.get(id)
    }

    /// The stored entity `id`, of whichever kind.
    pub fn get(&self, id: &EntityId) -> Option<Value> {
        self.tables.get(id.kind, &id.key)
    }

    /// Every stored value, kind by kind (what storage and snapshots hold).
    pub fn values(&self) -> impl Iterator<Item = Value> + '_ {
        self.tables.values()
    }

    /// Rebuild a state from stored values (restart, snapshot install). The
    /// derived indexes follow from the values.
    pub fn restore(revision: u64, marks: Marks, values: impl IntoIterator<Item = Value>) -> State {
        let mut s = State { revision, marks, ..State::default() };
        let mut tenants = Vec::new();
        for v in values {
            match v {
                Value::Tenant(t) => tenants.push(t),
                v => {
                    let (kind, key) = (v.kind(), v.key().to_string());
                    s.set(kind, &key, Some(v));
                }
            }
        }
        s.restore_tenants(tenants);
        s
    }

    /// The tenants of a state being restored, all at once: what `set` does
    /// one by one, with the table and key index built from sorted input
    /// (full tree nodes, and each insert near the last one). The last of
    /// two values with one id wins, as it would by `set`.
    fn restore_tenants(&mut self, mut tenants: Vec<Arc<Tenant>>) {
        debug_assert!(self.tables.tenants.is_empty());
        // Stable, and linear on the sorted order storage reads them in.
        tenants.sort_by(|a, b| a.id.cmp(&b.id));
        let mut unique: Vec<Arc<Tenant>> = Vec::with_capacity(tenants.len());
        for t in tenants {
            match unique.last_mut() {
                Some(last) if last.id == t.id => *last = t,
                _ => unique.push(t),
            }
        }
        for t in &unique {
            self.count_on_cluster(&t.cluster, true);
        }
        self.keys = keys::KeyIndex::from_tenants(&unique);
        self.tables.tenants = crate::kind::Table::from_sorted(unique);
    }

    /// This state with `changes` undone, newest first: the state as of
    /// revision `at`, as far as the kinds the change history keeps with
    /// their values reach (tenants, clusters, challenges, the static
    /// records of zones' names). Zones, which it keeps by key only, and the
    /// kinds it omits (the per-zone serials and DNSSEC keys among them)
    /// are left as they are now, and the marks only held to
    /// `at`: a caller comparing one zone's records (`zone_difference`)
    /// gives up when that zone or one inside it changed, and the serials
    /// of the state returned are no guide to the serials at `at`. `None`
    /// when more than `UNDO_CHANGES_MAX` changes are given.
    pub fn undone(&self, at: u64, changes: &[crate::Change]) -> Option<State> {
        if changes.len() > UNDO_CHANGES_MAX {
            return None;
        }
        let mut old = self.clone();
        for c in changes.iter().rev() {
            match c.kind.history() {
                crate::kind::History::BeforeAndAfter => {
                    old.set(c.kind, &c.key, c.before.clone());
                }
                crate::kind::History::Omitted | crate::kind::History::KeyOnly => {}
                crate::kind::History::After => return None,
            }
        }
        old.revision = at;
        old.marks = self.marks.at_most(at);
        Some(old)
    }

    /// Note an entry that carries no command (membership change, leader blank).
    pub fn advance(&mut self, revision: u64) {
        debug_assert!(revision > self.revision || revision == 0);
        self.revision = revision;
    }

    /// Apply one command at `revision`. On error nothing but the revision
    /// changes (and the dedup window, which remembers refusals too).
    /// Returns the outcome and every entity change it made, as `Effect`s.
    ///
    /// A request id already in the dedup window gets its first result again
    /// (as `Outcome::Replayed` with the first revision) and changes nothing;
    /// a new one is remembered with its result, refusals included. An
    /// expected revision that does not match refuses the command (`Aborted`).
    pub fn apply(&mut self, revision: u64, env: &Envelope) -> (Result<Outcome, CommandError>, Vec<Effect>) {
        self.revision = revision;
        if let Err(e) = self.check_actor(env) {
            return (Err(e), Vec::new());
        }
        let request = env.guard.request_id.as_deref();
        if let Some(id) = request {
            if let Some(replay) = self.replay(id, env) {
                return (replay, Vec::new());
            }
        }
        let mut effects = Vec::new();
        let result = self.check_expected(env).and_then(|()| self.dispatch(revision, env.at_ms, &env.command, &mut effects));
        if result.is_err() {
            debug_assert!(effects.is_empty(), "a refused command changed state");
            effects.clear();
        }
        self.mark(revision, &mut effects);
        if let Some(id) = request {
            effects.extend(self.remember(id, revision, env, result.clone()));
        }
        (result, effects)
    }

    fn dispatch(&mut self, rev: u64, at_ms: u64, command: &Command, fx: &mut Vec<Effect>) -> Result<Outcome, CommandError> {
        match command {
            Command::PutZone { zone } => self.put_zone(rev, at_ms, zone, fx),
            Command::DeleteZone { apex } => self.delete_zone(apex, fx),
            Command::PutCluster { cluster } => self.put_cluster(rev, cluster, fx),
            Command::DeleteCluster { id } => self.delete_cluster(id, fx),
            Command::CreateTenant { id, cluster } => self.create_tenant(rev, id, cluster.as_deref(), fx),
            Command::DeleteTenant { id } => self.delete_tenant(id, fx),
            Command::PinTenant { id, cluster } => self.relocate(rev, at_ms, id, cluster, Some(true), true, fx),
            Command::MoveTenant { id, cluster } => self.relocate(rev, at_ms, id, cluster, None, false, fx),
            Command::UnpinTenant { id } => self.unpin_tenant(rev, id, fx),
            Command::StageMove { id, cluster, ttl } => self.stage_move(rev, at_ms, id, cluster, *ttl, fx),
            Command::AdvanceMove { id } => self.advance_move(rev, at_ms, id, fx),
            Command::CancelMove { id } => self.cancel_move(id, fx),
            Command::AddAlias { tenant, alias } => self.add_alias(rev, tenant, alias, fx),
            Command::RemoveAlias { tenant, alias } => self.remove_alias(rev, tenant, alias, fx),
            Command::SetAcme { name, value, ttl, expires_in_s } => self.set_acme(rev, at_ms, name, value, *ttl, *expires_in_s, fx),
            Command::ClearAcme { name, value } => self.clear_acme(rev, name, value.as_deref(), fx),
            Command::ExpireAcme => Ok(self.expire_acme(rev, at_ms, fx)),
            Command::SetHealth { cluster, down } => self.set_health(rev, cluster, down, fx),
            Command::CreateCredential { credential } => self.create_credential(rev, at_ms, credential, fx),
            Command::RevokeCredential { id } => self.revoke_credential(id, fx),
            Command::CreateTsigKey { key } => self.create_tsig_key(rev, at_ms, key, fx),
            Command::DeleteTsigKey { name } => self.delete_tsig_key(name, fx),
            Command::Update { update } => self.update(rev, at_ms, update, fx),
            Command::DnssecStep { apex, step } => self.dnssec_step(rev, at_ms, apex, step, fx),
            Command::DnssecRollover { apex, role } => self.dnssec_rollover(rev, apex, *role, fx),
            Command::Batch { rows, atomic } => self.batch(rev, at_ms, rows, *atomic, fx),
        }
    }

    /// Note what `effects` (one command's) change for the zones' serials:
    /// the marks every zone with rules (or every catalog) follows, and the
    /// `ZoneSerial` of each zone whose answers changed alone, as effects of
    /// the same command (so on every node at the same revision).
    fn mark(&mut self, revision: u64, effects: &mut Vec<Effect>) {
        let mut zones = std::collections::BTreeSet::new();
        let mut gone = Vec::new();
        for e in effects.iter() {
            match (&e.before, &e.after) {
                // A staged move changes the TTL of the tenant's answers.
                (_, Some(Value::Tenant(_) | Value::Move(_))) | (Some(Value::Tenant(_) | Value::Move(_)), _) => {
                    self.marks.tenants = revision
                }
                (Some(Value::Cluster(b)), Some(Value::Cluster(a)))
                    if !(b.same_ingress(a) && b.same_health(a)) && self.answers_tenants(&a.id) =>
                {
                    self.marks.ingress = revision;
                    if !b.same_health(a) {
                        // The serving cluster, which service CNAMEs name, may change.
                        self.marks.tenants = revision;
                    }
                }
                // A zone that becomes a catalog, or stops being one, joins or leaves the catalogs.
                (Some(Value::Zone(b)), Some(Value::Zone(a))) if b.spec.catalog != a.spec.catalog => self.marks.zones = revision,
                (before @ Some(Value::Zone(_)), None) | (before @ None, Some(Value::Zone(_))) => {
                    self.marks.zones = revision;
                    // A zone made or dropped inside another takes names from it or gives them back.
                    if let Some(parent) = name::parent(&e.key).and_then(|p| self.zone_for(p)) {
                        zones.insert(parent.apex().to_string());
                    }
                    if before.is_some() {
                        gone.push(e.key.clone());
                    }
                }
                (_, Some(Value::Acme(_))) | (Some(Value::Acme(_)), _) => {
                    if let Some(z) = self.zone_for(&e.key) {
                        zones.insert(z.apex().to_string());
                    }
                }
                // A name's static records written without their zone (an UPDATE).
                (_, Some(Value::ZoneNode(n))) | (Some(Value::ZoneNode(n)), _) => {
                    zones.insert(n.apex().to_string());
                }
                _ => {}
            }
        }
        // A zone written by this command has its serial already.
        zones.retain(|apex| self.zone(apex).is_some_and(|z| z.revision != revision));
        for apex in gone {
            zones.remove(&apex);
            if self.tables.zone_serials.get(&apex).is_some() {
                effects.push(self.set(Kind::ZoneSerial, &apex, None));
            }
        }
        for apex in zones {
            effects.push(self.put(crate::model::ZoneSerial { apex, revision }));
        }
    }

    /// A command sent with a stored credential: the credential must still
    /// exist and be allowed the command on the state it applies to.
    fn check_actor(&self, env: &Envelope) -> Result<(), CommandError> {
        if let Actor::TsigKey(name) = &env.guard.actor {
            let Some(key) = self.tsig_key(name) else {
                return Err(CommandError::Unauthenticated(format!("TSIG key {name} was deleted")));
            };
            return match &env.command {
                Command::Update { update } => crate::tsig::update_allowed(self, key, update)
                    .map_err(|why| CommandError::Update { rcode: crate::update::UpdateRcode::Refused, reason: why }),
                other => Err(CommandError::PermissionDenied(format!("TSIG key {name} may not {}", other.kind()))),
            };
        }
        let Actor::Credential(id) = &env.guard.actor else { return Ok(()) };
        let Some(c) = self.credential(id) else {
            return Err(CommandError::Unauthenticated(format!("credential {id} was revoked")));
        };
        credential::authorize(self, c, Access::Write(&env.command)).map_err(|d| CommandError::PermissionDenied(d.0))
    }

    /// Compare-and-set: the command's entity must be at the expected
    /// revision. A batch has one per row instead.
    fn check_expected(&self, env: &Envelope) -> Result<(), CommandError> {
        let Some(expected) = env.guard.expected_revision else { return Ok(()) };
        if let Command::Batch { .. } = env.command {
            let reason = "a batch has no revision of its own: set expected_revision per command";
            return Err(crate::ValidationError::new("options.expected_revision", reason).into());
        }
        self.check_revision(&env.command, expected)
    }

    /// Compare-and-set of one command: its entity must be at `expected`.
    fn check_revision(&self, command: &Command, expected: u64) -> Result<(), CommandError> {
        let current = self.entity_revision(command);
        if current == expected {
            Ok(())
        } else {
            Err(CommandError::Aborted { expected, current })
        }
    }

    /// Revision of the entity a command changes; 0 when it does not exist
    /// (or the command names it invalidly).
    pub fn entity_revision(&self, command: &Command) -> u64 {
        match self.get(&command.entity()) {
            Some(Value::Zone(z)) => self.zone_revision(&z),
            v => v.map_or(0, |v| v.revision()),
        }
    }

    /// The revision of a zone's last change of its own: a write of it, of
    /// one of its names' records (an UPDATE), or of what else moves its
    /// serial alone (`ZoneSerial`). What `zone get` shows and a
    /// compare-and-set of the zone compares, so an UPDATE between a read
    /// and a write of the zone is not lost.
    pub fn zone_revision(&self, zone: &Zone) -> u64 {
        zone.revision.max(self.tables.zone_serials.get(zone.apex()).map_or(0, |s| s.revision))
    }

    /// Store `after` under `kind`/`key`, or remove the entity when `None`:
    /// the one place the tables change. Keeps the derived indexes and
    /// returns what changed.
    fn set(&mut self, kind: Kind, key: &str, after: Option<Value>) -> Effect {
        debug_assert!(after.as_ref().is_none_or(|v| v.kind() == kind && v.key() == key));
        let after = match after {
            Some(Value::Zone(z)) => Some(Value::Zone(self.with_nodes(z))),
            after => after,
        };
        let before = match &after {
            Some(v) => self.tables.insert(v.clone()),
            None => self.tables.remove(kind, key),
        };
        if let Some(b) = &before {
            self.index(b, false);
        }
        if let Some(a) = &after {
            self.index(a, true);
        }
        Effect { kind, key: key.to_string(), before, after }
    }

    /// Remove an entity that must exist: `NotFound`, naming `field`, if it does not.
    fn remove_existing(&mut self, kind: Kind, key: &str, field: &str) -> Result<Effect, CommandError> {
        if self.tables.get(kind, key).is_none() {
            return Err(CommandError::not_found(kind.noun(), key, field));
        }
        Ok(self.set(kind, key, None))
    }

    /// Store a value (of any kind) under its own key.
    fn put(&mut self, value: impl Into<Value>) -> Effect {
        let value = value.into();
        let (kind, key) = (value.kind(), value.key().to_string());
        self.set(kind, &key, Some(value))
    }

    /// One tenant more (`present`) or fewer on `cluster`; a cluster with
    /// none is not listed.
    fn count_on_cluster(&mut self, cluster: &str, present: bool) {
        match self.tenants_per_cluster.get_mut(cluster) {
            Some(n) if present => *n += 1,
            Some(n) if *n > 1 => *n -= 1,
            Some(_) => {
                self.tenants_per_cluster.remove(cluster);
            }
            None if present => {
                self.tenants_per_cluster.insert(cluster.to_string(), 1);
            }
            None => {}
        }
    }

    /// `zone` (a zone written, or read from storage, with no nodes or with
    /// those it was compiled with) holding the nodes the state has for its
    /// apex: a zone's nodes change only as `ZoneNode`s (`index`), so a
    /// zone written again keeps them, and one restored finds those loaded
    /// before it.
    fn with_nodes(&self, zone: Arc<Zone>) -> Arc<Zone> {
        let apex = zone.apex();
        if let Some(old) = self.zone(apex) {
            return Arc::new(Arc::unwrap_or_clone(zone).with_nodes_of(old));
        }
        let prefix = crate::model::ZoneNode::key_of(apex, "");
        let mut nodes = self.tables.zone_nodes.after(&prefix).take_while(|n| n.key.starts_with(&prefix)).peekable();
        if nodes.peek().is_none() && zone.nodes().is_empty() {
            return zone;
        }
        let mut joined = (*zone).clone();
        joined.clear_nodes();
        for n in nodes {
            joined.set_node(name::tree_key(n.owner()), Some(n.clone()));
        }
        Arc::new(joined)
    }

    /// Put `node` into its zone's lookup form (`present`), or take it out.
    fn index_zone_node(&mut self, node: &Arc<crate::model::ZoneNode>, present: bool) {
        let Some(zone) = self.tables.zones.get(node.apex()) else { return };
        let mut zone = (**zone).clone();
        zone.set_node(name::tree_key(node.owner()), present.then(|| node.clone()));
        self.tables.zones.insert(Arc::new(zone));
    }

    /// Add (`present`) or remove a zone's entry in the catalog member index.
    fn index_catalog_member(&mut self, apex: &str, present: bool) {
        let label = crate::resolve::catalog_member_label(apex);
        let apexes = self.catalog_members.entry(label.clone()).or_default();
        // Apex order, as the zone table iterates, so answers and transfers agree.
        match (apexes.binary_search_by(|a| a.as_str().cmp(apex)), present) {
            (Err(at), true) => apexes.insert(at, apex.to_string()),
            (Ok(at), false) => {
                apexes.remove(at);
            }
            _ => {}
        }
        if apexes.is_empty() {
            self.catalog_members.remove(&label);
        }
    }

    /// Add (`present`) or remove a stored value's entries in the derived indexes.
    fn index(&mut self, value: &Value, present: bool) {
        match value {
            Value::Tenant(t) => {
                if present {
                    self.keys.insert(t);
                } else {
                    self.keys.remove(t);
                }
                self.count_on_cluster(&t.cluster, present);
            }
            Value::Request(r) => {
                if present {
                    self.request_order.insert((r.at_ms, ByKey(r.clone())));
                    self.request_weight += dedup::weight(r);
                } else {
                    self.request_order.remove(&(r.at_ms, ByKey(r.clone())));
                    self.request_weight = self.request_weight.saturating_sub(dedup::weight(r));
                }
            }
            Value::Acme(c) => {
                if present {
                    self.acme_tree.insert(name::tree_key(&c.name), c.name.clone());
                } else {
                    self.acme_tree.remove(&name::tree_key(&c.name));
                }
            }
            Value::Zone(z) if !z.spec.catalog => self.index_catalog_member(z.apex(), present),
            Value::ZoneNode(n) => self.index_zone_node(n, present),
            // Kinds without derived indexes.
            _ => {}
        }
    }
}
