//! The replicated state and `apply`, the pure function that changes it.
//!
//! `State` is built from persistent maps (`imbl`): cloning it is O(1) and
//! shares structure, so the state machine can publish a fresh immutable
//! snapshot to the DNS path after every batch of entries while it keeps
//! applying. Readers never wait for a writer.

use std::sync::Arc;

use imbl::{OrdMap, OrdSet};

use crate::command::{Command, Entity, Envelope, Outcome, RequestRecord, Touched};
use crate::credential::{self, Access, Actor, Credential};
use crate::error::{CommandError, ValidationError};
use crate::model::{self, Challenge, ChallengeValue, Cluster, Tenant, Tombstone, Zone};
use crate::name;
use crate::placement;
use crate::record;

#[derive(Debug, Clone, Default)]
pub struct State {
    /// Log index of the last applied entry (of any kind).
    revision: u64,
    /// Revision of the last change to any cluster or tenant; the SOA serial of
    /// a zone with rules follows it, since such changes alter its answers.
    data_revision: u64,
    zones: OrdMap<String, Arc<Zone>>,
    clusters: OrdMap<String, Arc<Cluster>>,
    tenants: OrdMap<String, Arc<Tenant>>,
    /// alias → tenant id. Aliases and tenant ids share one namespace.
    aliases: OrdMap<String, String>,
    /// Request ids within the dedup window, and their age order for eviction.
    requests: OrdMap<String, Arc<RequestRecord>>,
    request_order: OrdSet<(u64, String)>,
    /// ACME challenges by the tree key of their owner name (so the names
    /// below a name form one range).
    acme: OrdMap<String, Arc<Challenge>>,
    /// API credentials by id.
    credentials: OrdMap<String, Arc<Credential>>,
}

/// A state's parts as storage keeps them (restart, snapshot install).
#[derive(Debug, Default)]
pub struct Parts {
    pub revision: u64,
    pub data_revision: u64,
    pub zones: Vec<Zone>,
    pub clusters: Vec<Cluster>,
    pub tenants: Vec<Tenant>,
    pub requests: Vec<RequestRecord>,
    pub challenges: Vec<Challenge>,
    pub credentials: Vec<Credential>,
}

/// Most request ids remembered, and for how long (by the leader's clock
/// stamped in the entries): a retry later than that applies again.
pub const REQUEST_IDS_MAX: usize = 100_000;
pub const REQUEST_ID_WINDOW_MS: u64 = 60 * 60 * 1000;
/// Longest request id.
pub const REQUEST_ID_LEN_MAX: usize = 128;

/// What a request id remembers of its call: the kind and the entity.
fn call_of(command: &Command) -> String {
    format!("{} {}", command.kind(), command.entity())
}

/// Check a client's request id: 1 to 128 printable ASCII characters.
pub fn request_id(field: &str, id: &str) -> Result<(), ValidationError> {
    if id.is_empty() || id.len() > REQUEST_ID_LEN_MAX || !id.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(ValidationError::new(field, format!("must be 1 to {REQUEST_ID_LEN_MAX} printable ASCII characters")));
    }
    Ok(())
}

impl State {
    pub fn revision(&self) -> u64 {
        self.revision
    }

    pub fn data_revision(&self) -> u64 {
        self.data_revision
    }

    pub fn zone(&self, apex: &str) -> Option<&Arc<Zone>> {
        self.zones.get(apex)
    }

    pub fn zones(&self) -> impl Iterator<Item = &Arc<Zone>> {
        self.zones.values()
    }

    pub fn cluster(&self, id: &str) -> Option<&Arc<Cluster>> {
        self.clusters.get(id)
    }

    pub fn clusters(&self) -> impl Iterator<Item = &Arc<Cluster>> {
        self.clusters.values()
    }

    pub fn tenant(&self, id: &str) -> Option<&Arc<Tenant>> {
        self.tenants.get(id)
    }

    /// Tenants in id order, starting after `after` (for paging).
    pub fn tenants_after<'a>(&'a self, after: Option<&str>) -> Box<dyn Iterator<Item = &'a Arc<Tenant>> + 'a> {
        match after {
            None => Box::new(self.tenants.values()),
            Some(a) => Box::new(self.tenants.range::<_, str>((std::ops::Bound::Excluded(a), std::ops::Bound::Unbounded)).map(|(_, t)| t)),
        }
    }

    pub fn tenant_count(&self) -> usize {
        self.tenants.len()
    }

    /// A tenant by its id or one of its aliases.
    pub fn tenant_by_key(&self, key: &str) -> Option<&Arc<Tenant>> {
        self.tenants.get(key).or_else(|| self.aliases.get(key).and_then(|id| self.tenants.get(id)))
    }

    /// The served zone with the longest apex containing `qname` (lower-case, absolute).
    pub fn zone_for(&self, qname: &str) -> Option<&Arc<Zone>> {
        let mut cur = qname;
        loop {
            if let Some(z) = self.zones.get(cur) {
                return Some(z);
            }
            cur = name::parent(cur)?;
        }
    }

    /// SOA serial of a zone: the revision of the last change that can alter its answers.
    pub fn serial(&self, zone: &Zone) -> u32 {
        let rev = if zone.spec.rules.is_empty() { zone.revision } else { zone.revision.max(self.data_revision) };
        // RFC 1982 serial arithmetic tolerates the wrap at 2^32.
        rev as u32
    }

    /// Note an entry that carries no command (membership change, leader blank).
    pub fn advance(&mut self, revision: u64) {
        debug_assert!(revision > self.revision || revision == 0);
        self.revision = revision;
    }

    /// Apply one command at `revision`. On error nothing but the revision
    /// changes. Returns the outcome and the entities to persist.
    ///
    /// A request id already in the dedup window gets its first result again
    /// (as `Outcome::Replayed` with the first revision) and changes nothing;
    /// a new one is remembered with its result, refusals included. An
    /// expected revision that does not match refuses the command (`Aborted`).
    pub fn apply(&mut self, revision: u64, env: &Envelope) -> (Result<Outcome, CommandError>, Vec<Touched>) {
        self.revision = revision;
        if let Err(e) = self.check_actor(env) {
            return (Err(e), Vec::new());
        }
        let request = env.guard.request_id.as_deref();
        if let Some(id) = request {
            if let Err(e) = request_id("options.request_id", id) {
                return (Err(e.into()), Vec::new());
            }
            // Within the window (by this entry's stamp), the id answers again.
            if let Some(r) = self.requests.get(id).filter(|r| r.at_ms.saturating_add(REQUEST_ID_WINDOW_MS) >= env.at_ms) {
                if r.call != call_of(&env.command) {
                    let reason = format!("{id:?} was already used for another call ({})", r.call);
                    return (Err(ValidationError::new("options.request_id", reason).into()), Vec::new());
                }
                let replay = r.result.clone().map(|o| Outcome::Replayed { revision: r.revision, outcome: Box::new(o) });
                return (replay, Vec::new());
            }
        }
        let (result, mut touched) = match self.check_expected(env).and_then(|()| self.apply_inner(revision, env)) {
            Ok((outcome, touched)) => (Ok(outcome), touched),
            Err(e) => (Err(e), Vec::new()),
        };
        if let Some(id) = request {
            let record =
                RequestRecord { id: id.to_string(), call: call_of(&env.command), revision, at_ms: env.at_ms, result: result.clone() };
            touched.extend(self.remember(record));
        }
        (result, touched)
    }

    /// A command sent with a stored credential: the credential must still
    /// exist and be allowed the command on the state it applies to.
    fn check_actor(&self, env: &Envelope) -> Result<(), CommandError> {
        let Actor::Credential(id) = &env.guard.actor else { return Ok(()) };
        let Some(c) = self.credentials.get(id) else {
            return Err(CommandError::Unauthenticated(format!("credential {id} was revoked")));
        };
        credential::authorize(self, c, Access::Write(&env.command)).map_err(|d| CommandError::PermissionDenied(d.0))
    }

    /// Compare-and-set: the command's entity must be at the expected revision.
    fn check_expected(&self, env: &Envelope) -> Result<(), CommandError> {
        let Some(expected) = env.guard.expected_revision else { return Ok(()) };
        let current = self.entity_revision(&env.command);
        if current == expected {
            Ok(())
        } else {
            Err(CommandError::Aborted { expected, current })
        }
    }

    /// Revision of the zone, cluster or tenant a command changes; 0 when it
    /// does not exist (or the command names it invalidly).
    pub fn entity_revision(&self, command: &Command) -> u64 {
        let rev = match command.entity() {
            Entity::Zone(apex) => self.zones.get(&apex).map(|z| z.revision),
            Entity::Cluster(id) => self.clusters.get(&id).map(|c| c.revision),
            Entity::Tenant(id) => self.tenants.get(&id).map(|t| t.revision),
            Entity::Acme(owner) => self.challenge(&owner).map(|c| c.revision),
            Entity::Credential(id) => self.credentials.get(&id).map(|c| c.revision),
        };
        rev.unwrap_or(0)
    }

    /// Remember a request id and forget those past the window (by count and
    /// by the age the entries' stamps give): the same on every node.
    fn remember(&mut self, record: RequestRecord) -> Vec<Touched> {
        let mut touched = vec![Touched::Request(record.id.clone())];
        let now = record.at_ms;
        // An id past the window is used again: its old place in the order goes.
        if let Some(old) = self.requests.get(&record.id) {
            self.request_order.remove(&(old.at_ms, record.id.clone()));
        }
        self.request_order.insert((record.at_ms, record.id.clone()));
        self.requests.insert(record.id.clone(), Arc::new(record));
        while let Some((at, id)) = self.request_order.get_min().cloned() {
            if self.requests.len() <= REQUEST_IDS_MAX && at.saturating_add(REQUEST_ID_WINDOW_MS) >= now {
                break;
            }
            self.request_order.remove(&(at, id.clone()));
            self.requests.remove(&id);
            touched.push(Touched::Request(id));
        }
        touched
    }

    /// The challenge at `owner` (`_acme-challenge.…`, absolute, lower-case).
    pub fn challenge(&self, owner: &str) -> Option<&Arc<Challenge>> {
        self.acme.get(&name::tree_key(owner))
    }

    /// Every challenge, in tree order.
    pub fn challenges(&self) -> impl Iterator<Item = &Arc<Challenge>> {
        self.acme.values()
    }

    /// Whether some challenge is owned by a name below `name`.
    pub fn has_challenges_below(&self, name: &str) -> bool {
        let prefix = format!("{}.", name::tree_key(name));
        self.acme.range(prefix.clone()..).next().is_some_and(|(k, _)| k.starts_with(&prefix))
    }

    /// The earliest expiry of any challenge value (leader's clock, ms).
    pub fn next_acme_expiry(&self) -> Option<u64> {
        self.acme.values().flat_map(|c| c.values.iter().map(|v| v.expires_at_ms)).min()
    }

    pub fn credential(&self, id: &str) -> Option<&Arc<Credential>> {
        self.credentials.get(id)
    }

    /// Every credential, by id.
    pub fn credentials(&self) -> impl Iterator<Item = &Arc<Credential>> {
        self.credentials.values()
    }

    /// A request id in the dedup window.
    pub fn request(&self, id: &str) -> Option<&Arc<RequestRecord>> {
        self.requests.get(id)
    }

    pub fn requests(&self) -> impl Iterator<Item = &Arc<RequestRecord>> {
        self.requests.values()
    }

    fn apply_inner(&mut self, rev: u64, env: &Envelope) -> Result<(Outcome, Vec<Touched>), CommandError> {
        match &env.command {
            Command::PutZone { zone } => {
                let z = Zone::compile(zone, rev)?;
                let apex = z.apex().to_string();
                self.zones.insert(apex.clone(), Arc::new(z));
                Ok((Outcome::Zone { apex: apex.clone() }, vec![Touched::Zone(apex)]))
            }
            Command::DeleteZone { apex } => {
                let apex = name::absolute("apex", apex)?;
                if self.zones.remove(&apex).is_none() {
                    return Err(CommandError::not_found("zone", &apex, "apex"));
                }
                Ok((Outcome::Deleted, vec![Touched::Zone(apex)]))
            }
            Command::PutCluster { cluster } => {
                let mut c = cluster.clone().validate()?;
                c.revision = rev;
                let id = c.id.clone();
                self.clusters.insert(id.clone(), Arc::new(c.clone()));
                self.data_revision = rev;
                Ok((Outcome::Cluster(c), vec![Touched::Cluster(id)]))
            }
            Command::DeleteCluster { id } => {
                let id = name::label("id", id)?;
                if !self.clusters.contains_key(&id) {
                    return Err(CommandError::not_found("cluster", &id, "id"));
                }
                // A linear scan: deleting clusters is rare and never on the query path.
                let held = self.tenants.values().filter(|t| t.cluster == id).count();
                if held > 0 {
                    return Err(CommandError::precondition("id", format!("cluster {id:?} still holds {held} tenant(s); move them first")));
                }
                self.clusters.remove(&id);
                self.data_revision = rev;
                Ok((Outcome::Deleted, vec![Touched::Cluster(id)]))
            }
            Command::CreateTenant { id, cluster } => {
                let id = name::label("id", id)?;
                if self.tenants.contains_key(&id) {
                    return Err(CommandError::exists("tenant", &id, "id"));
                }
                if self.aliases.contains_key(&id) {
                    return Err(CommandError::precondition("id", format!("{id:?} is already an alias of tenant {:?}", self.aliases[&id])));
                }
                let (cluster, pinned) = match cluster {
                    Some(c) => {
                        let c = name::label("cluster", c)?;
                        self.check_target_cluster(&c, "cluster", true)?;
                        (c, true)
                    }
                    None => match placement::place(&id, self.clusters.values().map(|c| &**c)) {
                        Some(c) => (c.id.clone(), false),
                        None => return Err(CommandError::precondition("cluster", "no active, shared cluster to place the tenant on")),
                    },
                };
                let t = Tenant { id: id.clone(), cluster, pinned, aliases: Vec::new(), history: Vec::new(), revision: rev };
                self.tenants.insert(id.clone(), Arc::new(t.clone()));
                self.data_revision = rev;
                Ok((Outcome::Tenant(t), vec![Touched::Tenant(id)]))
            }
            Command::DeleteTenant { id } => {
                let id = name::label("id", id)?;
                let Some(t) = self.tenants.remove(&id) else {
                    return Err(CommandError::not_found("tenant", &id, "id"));
                };
                for a in &t.aliases {
                    self.aliases.remove(a);
                }
                self.data_revision = rev;
                let mut touched = vec![Touched::Tenant(id.clone())];
                // Its credentials go with it: a tenant created later under
                // the same id must not inherit them.
                let scope = credential::Scope::Tenant(id);
                let orphaned: Vec<String> = self.credentials.values().filter(|c| c.scope == scope).map(|c| c.id.clone()).collect();
                for c in orphaned {
                    self.credentials.remove(&c);
                    touched.push(Touched::Credential(c));
                }
                Ok((Outcome::Deleted, touched))
            }
            Command::PinTenant { id, cluster } => self.relocate(rev, env.at_ms, id, cluster, Some(true), true),
            Command::MoveTenant { id, cluster } => self.relocate(rev, env.at_ms, id, cluster, None, false),
            Command::UnpinTenant { id } => {
                let mut t = self.tenant_for_update(id)?;
                t.pinned = false;
                t.revision = rev;
                Ok(self.store_tenant(rev, t))
            }
            Command::AddAlias { tenant, alias } => {
                let mut t = self.tenant_for_update(tenant)?;
                let alias = name::label("alias", alias)?;
                if self.tenants.contains_key(&alias) {
                    return Err(CommandError::precondition("alias", format!("{alias:?} is a tenant id")));
                }
                match self.aliases.get(&alias) {
                    Some(owner) if *owner == t.id => return Ok((Outcome::Tenant((*self.tenants[&t.id]).clone()), Vec::new())),
                    Some(owner) => {
                        return Err(CommandError::precondition("alias", format!("{alias:?} is already an alias of tenant {owner:?}")))
                    }
                    None => {}
                }
                if t.aliases.len() >= model::ALIASES_MAX {
                    return Err(CommandError::precondition(
                        "alias",
                        format!("tenant already has {} aliases, the most allowed", model::ALIASES_MAX),
                    ));
                }
                t.aliases.push(alias.clone());
                t.aliases.sort();
                t.revision = rev;
                self.aliases.insert(alias, t.id.clone());
                Ok(self.store_tenant(rev, t))
            }
            Command::SetAcme { name, value, ttl, expires_in_s } => self.set_acme(rev, env.at_ms, name, value, *ttl, *expires_in_s),
            Command::ClearAcme { name, value } => self.clear_acme(rev, name, value.as_deref()),
            Command::ExpireAcme => Ok(self.expire_acme(rev, env.at_ms)),
            Command::CreateCredential { credential } => {
                let mut c = credential.clone().validate()?;
                if self.credentials.contains_key(&c.id) {
                    return Err(CommandError::exists("credential", &c.id, "id"));
                }
                if self.credentials.len() >= credential::CREDENTIALS_MAX {
                    return Err(CommandError::precondition(
                        "id",
                        format!("{} credentials are stored, the most allowed: revoke some first", credential::CREDENTIALS_MAX),
                    ));
                }
                if let credential::Scope::Tenant(t) = &c.scope {
                    if !self.tenants.contains_key(t) {
                        return Err(CommandError::not_found("tenant", t, "tenant"));
                    }
                }
                c.created_at_ms = env.at_ms;
                c.revision = rev;
                let id = c.id.clone();
                self.credentials.insert(id.clone(), Arc::new(c.clone()));
                Ok((Outcome::Credential(c), vec![Touched::Credential(id)]))
            }
            Command::RevokeCredential { id } => {
                let id = id.to_ascii_lowercase();
                if self.credentials.remove(&id).is_none() {
                    return Err(CommandError::not_found("credential", &id, "id"));
                }
                Ok((Outcome::Deleted, vec![Touched::Credential(id)]))
            }
            Command::RemoveAlias { tenant, alias } => {
                let mut t = self.tenant_for_update(tenant)?;
                let alias = name::label("alias", alias)?;
                let Some(pos) = t.aliases.iter().position(|a| *a == alias) else {
                    return Err(CommandError::not_found("alias", &alias, "alias"));
                };
                t.aliases.remove(pos);
                t.revision = rev;
                self.aliases.remove(&alias);
                Ok(self.store_tenant(rev, t))
            }
        }
    }

    fn set_acme(
        &mut self,
        rev: u64,
        at_ms: u64,
        name: &str,
        value: &str,
        ttl: Option<u32>,
        expires_in_s: Option<u64>,
    ) -> Result<(Outcome, Vec<Touched>), CommandError> {
        let owner = self.acme_zone_check(name)?;
        model::acme_value("value", value)?;
        let ttl = record::ttl("ttl", ttl.unwrap_or(model::ACME_TTL_DEFAULT))?;
        let expires_in = expires_in_s.unwrap_or(model::ACME_EXPIRES_IN_DEFAULT_S);
        if expires_in == 0 || expires_in > model::ACME_EXPIRES_IN_MAX_S {
            return Err(ValidationError::new("expires_in_s", format!("must be 1 to {} seconds", model::ACME_EXPIRES_IN_MAX_S)).into());
        }
        let mut c =
            self.challenge(&owner).map_or_else(|| Challenge { name: owner.clone(), values: Vec::new(), revision: rev }, |c| (**c).clone());
        let v = ChallengeValue { value: value.to_string(), ttl, expires_at_ms: at_ms.saturating_add(expires_in.saturating_mul(1000)) };
        let full = c.values.len() >= model::ACME_VALUES_MAX;
        match c.values.iter_mut().find(|x| x.value == value) {
            Some(x) => *x = v,
            None if full => {
                return Err(CommandError::precondition(
                    "value",
                    format!("{owner} already has {} values, the most allowed", model::ACME_VALUES_MAX),
                ));
            }
            None => c.values.push(v),
        }
        // One TTL per RRset (RFC 2181 §5.2): the latest set decides.
        for x in &mut c.values {
            x.ttl = ttl;
        }
        c.revision = rev;
        Ok(self.store_challenge(rev, c))
    }

    fn clear_acme(&mut self, rev: u64, name: &str, value: Option<&str>) -> Result<(Outcome, Vec<Touched>), CommandError> {
        let owner = model::acme_owner("name", name)?;
        let Some(c) = self.challenge(&owner) else {
            return Err(CommandError::not_found("challenge", &owner, "name"));
        };
        let mut c = (**c).clone();
        match value {
            Some(v) => {
                let Some(pos) = c.values.iter().position(|x| x.value == v) else {
                    return Err(CommandError::not_found("challenge value", v, "value"));
                };
                c.values.remove(pos);
            }
            None => c.values.clear(),
        }
        c.revision = rev;
        Ok(self.store_challenge(rev, c))
    }

    fn expire_acme(&mut self, rev: u64, at_ms: u64) -> (Outcome, Vec<Touched>) {
        let expired: Vec<Arc<Challenge>> =
            self.acme.values().filter(|c| c.values.iter().any(|v| v.expires_at_ms <= at_ms)).cloned().collect();
        let mut removed = 0;
        let mut touched = Vec::new();
        for c in expired {
            let mut c = (*c).clone();
            let before = c.values.len();
            c.values.retain(|v| v.expires_at_ms > at_ms);
            removed += before - c.values.len();
            c.revision = rev;
            touched.extend(self.store_challenge(rev, c).1);
        }
        (Outcome::Expired(removed), touched)
    }

    /// Store a challenge, or drop it when it has no values left.
    fn store_challenge(&mut self, rev: u64, c: Challenge) -> (Outcome, Vec<Touched>) {
        let key = name::tree_key(&c.name);
        let owner = c.name.clone();
        if c.values.is_empty() {
            self.acme.remove(&key);
        } else {
            self.acme.insert(key, Arc::new(c.clone()));
        }
        self.data_revision = rev;
        (Outcome::Acme(c), vec![Touched::Acme(owner)])
    }

    /// The owner name for a challenge at `name`, if a served zone answers
    /// it from stored challenges.
    fn acme_zone_check(&self, name: &str) -> Result<String, CommandError> {
        let owner = model::acme_owner("name", name)?;
        let Some(zone) = self.zone_for(&owner) else {
            return Err(CommandError::precondition("name", format!("no served zone holds {owner}")));
        };
        let apex = zone.apex();
        match zone.acme_rule() {
            None => Err(CommandError::precondition("name", format!("zone {apex} has no acme rule"))),
            Some(Some(vz)) => {
                Err(CommandError::precondition("name", format!("zone {apex} delegates challenges to {vz}: set it at {owner}{vz} instead")))
            }
            Some(None) if zone.delegation_for(&owner).is_some() => {
                Err(CommandError::precondition("name", format!("{owner} is below a delegation of zone {apex}")))
            }
            Some(None) if zone.records_at(&owner).is_some() => {
                Err(CommandError::precondition("name", format!("{owner} has static records, which take precedence")))
            }
            Some(None) => Ok(owner),
        }
    }

    fn tenant_for_update(&self, id: &str) -> Result<Tenant, CommandError> {
        let id = name::label("id", id)?;
        self.tenants.get(&id).map(|t| (**t).clone()).ok_or_else(|| CommandError::not_found("tenant", &id, "id"))
    }

    fn store_tenant(&mut self, rev: u64, t: Tenant) -> (Outcome, Vec<Touched>) {
        let id = t.id.clone();
        self.tenants.insert(id.clone(), Arc::new(t.clone()));
        self.data_revision = rev;
        (Outcome::Tenant(t), vec![Touched::Tenant(id)])
    }

    /// Can a tenant be put on `id` by an operator? Dedicated clusters take
    /// tenants only by pin; draining and down clusters take none.
    fn check_target_cluster(&self, id: &str, field: &str, pin: bool) -> Result<(), CommandError> {
        let Some(c) = self.clusters.get(id) else {
            return Err(CommandError::not_found("cluster", id, field));
        };
        if c.state != model::ClusterState::Active {
            return Err(CommandError::precondition(field, format!("cluster {id:?} is {} and takes no new tenants", c.state.as_str())));
        }
        if c.dedicated && !pin {
            return Err(CommandError::precondition(field, format!("cluster {id:?} is dedicated: use pin to place a tenant there")));
        }
        Ok(())
    }

    fn relocate(
        &mut self,
        rev: u64,
        at_ms: u64,
        id: &str,
        cluster: &str,
        pinned: Option<bool>,
        pin: bool,
    ) -> Result<(Outcome, Vec<Touched>), CommandError> {
        let mut t = self.tenant_for_update(id)?;
        let cluster = name::label("cluster", cluster)?;
        if t.cluster != cluster {
            self.check_target_cluster(&cluster, "cluster", pin)?;
            t.history.push(Tombstone { from: t.cluster.clone(), to: cluster.clone(), revision: rev, at_ms });
            if t.history.len() > model::TOMBSTONES_MAX {
                let excess = t.history.len() - model::TOMBSTONES_MAX;
                t.history.drain(..excess);
            }
            t.cluster = cluster;
        } else if !self.clusters.contains_key(&cluster) {
            return Err(CommandError::not_found("cluster", &cluster, "cluster"));
        }
        if let Some(p) = pinned {
            t.pinned = p;
        }
        t.revision = rev;
        Ok(self.store_tenant(rev, t))
    }

    /// Rebuild a state from persisted parts (restart, snapshot install).
    pub fn from_parts(parts: Parts) -> State {
        let Parts { revision, data_revision, zones, clusters, tenants, requests, challenges, credentials } = parts;
        let mut s = State { revision, data_revision, ..State::default() };
        for c in challenges {
            s.acme.insert(name::tree_key(&c.name), Arc::new(c));
        }
        for c in credentials {
            s.credentials.insert(c.id.clone(), Arc::new(c));
        }
        for r in requests {
            s.request_order.insert((r.at_ms, r.id.clone()));
            s.requests.insert(r.id.clone(), Arc::new(r));
        }
        for z in zones {
            s.zones.insert(z.apex().to_string(), Arc::new(z));
        }
        for c in clusters {
            s.clusters.insert(c.id.clone(), Arc::new(c));
        }
        for t in tenants {
            for a in &t.aliases {
                s.aliases.insert(a.clone(), t.id.clone());
            }
            s.tenants.insert(t.id.clone(), Arc::new(t));
        }
        s
    }
}
