//! Credentials: API tokens with a role and a scope, stored hashed in the
//! replicated state, and `authorize`, the one function that decides what a
//! credential may do. The API calls it before proposing a write (to refuse
//! early) and `State::apply` calls it again on the committed state, so a
//! token revoked or a tenant's alias removed a moment earlier is honoured
//! on every node at the same revision.
//!
//! Roles and scopes:
//! - `admin` (scope: all): everything, including credentials and membership.
//! - `operator` scoped to all: every data write (zones, clusters, tenants,
//!   ACME). Scoped to environments or zones: only zones in scope and ACME
//!   challenges inside them; tenants and clusters are shared by every zone,
//!   so changing them needs the unscoped operator. A scoped operator
//!   replaces a zone in its scope or creates one strictly inside a zone in
//!   its scope, never one that no served zone contains: names outside every
//!   zone may be what other environments' zones point at (their CNAME
//!   targets), and serving them would redirect those answers.
//! - `tenant` (scope: one tenant): its own aliases and the ACME challenges
//!   of names that belong to it, and reading itself.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::command::Command;
use crate::error::ValidationError;
use crate::model::{self, Rule, Tenant, Zone};
use crate::name;
use crate::state::State;

/// Most stored credentials.
pub const CREDENTIALS_MAX: usize = 10_000;
/// Longest credential name (a label for people: "ci-staging").
pub const CREDENTIAL_NAME_LEN_MAX: usize = 64;
/// Most environments or zones in one scope.
pub const SCOPE_ITEMS_MAX: usize = 64;
/// A credential id: this many lower-case hex digits.
pub const CREDENTIAL_ID_LEN: usize = 16;
/// Bytes of a SHA-256 digest.
pub const HASH_LEN: usize = 32;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Role {
    Admin,
    Operator,
    Tenant,
}

impl Role {
    pub fn parse(field: &str, text: &str) -> Result<Role, ValidationError> {
        match text {
            "admin" => Ok(Role::Admin),
            "operator" => Ok(Role::Operator),
            "tenant" => Ok(Role::Tenant),
            other => Err(ValidationError::new(field, format!("unknown role {other:?} (admin, operator or tenant)"))),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Operator => "operator",
            Role::Tenant => "tenant",
        }
    }
}

/// What a credential's role applies to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Scope {
    All,
    /// Zones whose environment label is one of these (lower-case, sorted).
    Environments(Vec<String>),
    /// These zones, by apex (absolute, lower-case, sorted).
    Zones(Vec<String>),
    /// One tenant, by id.
    Tenant(String),
}

impl Scope {
    /// Whether a zone lies in this scope.
    fn covers_zone(&self, zone: &Zone) -> bool {
        match self {
            Scope::All => true,
            Scope::Environments(envs) => envs.contains(&zone.spec.environment),
            Scope::Zones(apexes) => apexes.iter().any(|a| a == zone.apex()),
            Scope::Tenant(_) => false,
        }
    }

    /// For people and logs: `all`, `environments=prod,staging`, `tenant=123`.
    pub fn describe(&self) -> String {
        match self {
            Scope::All => "all".into(),
            Scope::Environments(e) => format!("environments={}", e.join(",")),
            Scope::Zones(z) => format!("zones={}", z.join(",")),
            Scope::Tenant(t) => format!("tenant={t}"),
        }
    }
}

/// A stored credential. The token itself is never stored: only the SHA-256
/// of its secret part, which the API compares in constant time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Credential {
    pub id: String,
    pub name: String,
    pub role: Role,
    pub scope: Scope,
    pub hash: Vec<u8>,
    /// Leader's clock when it was created.
    pub created_at_ms: u64,
    pub revision: u64,
}

impl Credential {
    /// Check and normalise; every error names its field.
    pub fn validate(mut self) -> Result<Credential, ValidationError> {
        if self.id.len() != CREDENTIAL_ID_LEN || !self.id.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
            return Err(ValidationError::new("id", format!("must be {CREDENTIAL_ID_LEN} lower-case hex digits")));
        }
        if self.name.is_empty() || self.name.len() > CREDENTIAL_NAME_LEN_MAX || !self.name.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(ValidationError::new(
                "name",
                format!("must be 1 to {CREDENTIAL_NAME_LEN_MAX} printable ASCII characters without spaces"),
            ));
        }
        if self.hash.len() != HASH_LEN {
            return Err(ValidationError::new("hash", format!("must be {HASH_LEN} bytes")));
        }
        self.scope = match (self.role, self.scope) {
            (Role::Admin, Scope::All) => Scope::All,
            (Role::Admin, _) => return Err(ValidationError::new("scope", "an admin credential has no scope: it may do everything")),
            (Role::Operator, Scope::All) => Scope::All,
            (Role::Operator, Scope::Environments(envs)) => Scope::Environments(scope_list("environments", envs, |f, e| {
                let e = name::label(f, e)?;
                if e.len() > model::ENVIRONMENT_LEN_MAX {
                    return Err(ValidationError::new(f, format!("longer than {} characters", model::ENVIRONMENT_LEN_MAX)));
                }
                Ok(e)
            })?),
            (Role::Operator, Scope::Zones(zones)) => Scope::Zones(scope_list("zones", zones, name::absolute)?),
            (Role::Operator, Scope::Tenant(_)) => {
                return Err(ValidationError::new("tenant", "an operator is scoped to environments or zones (or all), not a tenant"))
            }
            (Role::Tenant, Scope::Tenant(t)) => Scope::Tenant(name::label("tenant", &t)?),
            (Role::Tenant, _) => return Err(ValidationError::new("tenant", "a tenant credential needs the tenant it acts for")),
        };
        Ok(self)
    }
}

/// A non-empty list of scope items, each checked by `check`, sorted and
/// without duplicates.
pub(crate) fn scope_list(
    field: &str,
    items: Vec<String>,
    check: impl Fn(&str, &str) -> Result<String, ValidationError>,
) -> Result<Vec<String>, ValidationError> {
    if items.is_empty() || items.len() > SCOPE_ITEMS_MAX {
        return Err(ValidationError::new(field, format!("must list 1 to {SCOPE_ITEMS_MAX} items")));
    }
    let mut out = items.iter().enumerate().map(|(i, e)| check(&format!("{field}[{i}]"), e)).collect::<Result<Vec<_>, _>>()?;
    out.sort();
    out.dedup();
    Ok(out)
}

/// Who a replicated command acts for, as the node that received it
/// authenticated the caller.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Actor {
    /// Checked by the receiving node and not again: its API runs without
    /// auth, the caller presented the bootstrap admin token, or the node
    /// itself proposed the command (ACME expiry).
    #[default]
    Trusted,
    /// A stored credential, by id: looked up and authorised again on the
    /// committed state when the command applies.
    Credential(String),
    /// A TSIG key, by name: the signer of an RFC 2136 UPDATE, authorised
    /// again (key still there, zone and names in scope) when it applies.
    TsigKey(String),
}

/// What a caller asks to do.
#[derive(Debug, Clone, Copy)]
pub enum Access<'a> {
    Write(&'a Command),
    /// Read zones, clusters, tenants, challenges or the change stream.
    ReadData,
    /// Read one tenant, by id or alias.
    ReadTenant(&'a str),
    /// This node's status and the membership.
    ReadStatus,
    /// List, create or revoke credentials and TSIG keys.
    Credentials,
    /// Add, promote or remove cluster members.
    Membership,
}

/// Why a credential may not do something, for `PERMISSION_DENIED`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Denied(pub String);

/// Whether `credential` may do `access` on `state`.
pub fn authorize(state: &State, credential: &Credential, access: Access<'_>) -> Result<(), Denied> {
    let who = || format!("{} credential {:?} ({})", credential.role.as_str(), credential.name, credential.scope.describe());
    let deny = |what: &str| Err(Denied(format!("{} may not {what}", who())));
    match (credential.role, &credential.scope, access) {
        (Role::Admin, _, Access::Write(Command::ExpireAcme)) => deny("expire challenges: the leader does that"),
        (Role::Admin, _, Access::Write(Command::DnssecStep { .. })) => deny("step DNSSEC keys: the leader does that"),
        (Role::Admin, _, Access::Write(Command::SetHealth { .. })) => {
            deny("set address health: the leader does that, from its probers' verdicts")
        }
        (Role::Admin, _, _) => Ok(()),
        (_, _, Access::ReadStatus) => Ok(()),
        (_, _, Access::Credentials) => deny("manage credentials: that needs an admin"),
        (_, _, Access::Membership) => deny("change the membership: that needs an admin"),
        (Role::Operator, _, Access::ReadData | Access::ReadTenant(_)) => Ok(()),
        (Role::Operator, scope, Access::Write(command)) => operator_write(state, scope, command).or_else(|what| deny(&what)),
        (Role::Tenant, Scope::Tenant(own), Access::ReadTenant(key)) => {
            if is_tenant(state, own, key) {
                Ok(())
            } else {
                deny(&format!("read tenant {key:?}"))
            }
        }
        (Role::Tenant, _, Access::ReadData) => deny("read beyond its own tenant"),
        (Role::Tenant, Scope::Tenant(own), Access::Write(command)) => tenant_write(state, own, command).or_else(|what| deny(&what)),
        (Role::Tenant, _, _) => deny("act without its tenant"),
    }
}

/// An operator's writes: everything with scope `all`; zones in scope and
/// their challenges otherwise (a new zone only strictly inside a served zone
/// in scope). `Err` says what is refused.
fn operator_write(state: &State, scope: &Scope, command: &Command) -> Result<(), String> {
    match command {
        Command::CreateCredential { .. } | Command::RevokeCredential { .. } => Err("manage credentials: that needs an admin".into()),
        Command::CreateTsigKey { .. } | Command::DeleteTsigKey { .. } => Err("manage TSIG keys: that needs an admin".into()),
        Command::Update { .. } => Err("send RFC 2136 updates: they come over DNS, signed with a TSIG key".into()),
        Command::ExpireAcme => Err("expire challenges: the leader does that".into()),
        Command::DnssecStep { .. } => Err("step DNSSEC keys: the leader does that".into()),
        Command::SetHealth { .. } => Err("set address health: the leader does that, from its probers' verdicts".into()),
        Command::AdvanceMove { .. } => Err("advance a staged move: the leader does that when its step is due".into()),
        _ if *scope == Scope::All => Ok(()),
        Command::Batch { rows, .. } => rows
            .iter()
            .enumerate()
            .try_for_each(|(i, row)| operator_write(state, scope, &row.command).map_err(|what| format!("{what} (commands[{i}])"))),
        Command::DnssecRollover { apex, .. } => {
            let apex = name::absolute("apex", apex).map_err(|e| e.to_string())?;
            match state.zone(&apex) {
                Some(z) if !scope.covers_zone(z) => Err(format!("roll the keys of zone {apex} (environment {:?})", z.spec.environment)),
                _ => Ok(()),
            }
        }
        Command::PutZone { zone } => {
            let apex = name::absolute("apex", &zone.apex).map_err(|e| e.to_string())?;
            let environment = zone.environment.to_ascii_lowercase();
            let in_scope = match scope {
                Scope::Environments(envs) => envs.contains(&environment),
                Scope::Zones(apexes) => apexes.contains(&apex),
                Scope::All | Scope::Tenant(_) => false,
            };
            if !in_scope {
                return Err(format!("write zone {apex} in environment {environment:?}"));
            }
            // The zone that answers for the apex today (the zone itself, or
            // the one a new zone would be cut out of) must be in scope too:
            // otherwise a new zone could take names over from another
            // environment's zone. A name no zone serves is in nobody's
            // scope: another environment's zones may point at it (CNAME
            // targets, name servers), so only an operator scoped to all may
            // start serving it.
            match state.zone_for(&apex) {
                Some(z) if !scope.covers_zone(z) && z.apex() == apex => {
                    Err(format!("replace zone {apex}, now in environment {:?}", z.spec.environment))
                }
                Some(z) if !scope.covers_zone(z) => {
                    Err(format!("create zone {apex} inside zone {} (environment {:?})", z.apex(), z.spec.environment))
                }
                Some(_) => Ok(()),
                None => Err(format!("create zone {apex}, which no served zone contains: that needs an operator scoped to all")),
            }
        }
        Command::DeleteZone { apex } => {
            let apex = name::absolute("apex", apex).map_err(|e| e.to_string())?;
            match state.zone(&apex) {
                Some(z) if !scope.covers_zone(z) => Err(format!("delete zone {apex} (environment {:?})", z.spec.environment)),
                _ => Ok(()),
            }
        }
        Command::SetAcme { name, .. } | Command::ClearAcme { name, .. } => {
            let owner = model::acme_owner("name", name).map_err(|e| e.to_string())?;
            match state.zone_for(&owner) {
                Some(z) if scope.covers_zone(z) => Ok(()),
                Some(z) => Err(format!("change challenges in zone {} (environment {:?})", z.apex(), z.spec.environment)),
                None => Err(format!("change challenges outside every zone ({owner})")),
            }
        }
        Command::PutCluster { .. }
        | Command::DeleteCluster { .. }
        | Command::CreateTenant { .. }
        | Command::DeleteTenant { .. }
        | Command::PinTenant { .. }
        | Command::UnpinTenant { .. }
        | Command::MoveTenant { .. }
        | Command::StageMove { .. }
        | Command::CancelMove { .. }
        | Command::AddAlias { .. }
        | Command::RemoveAlias { .. } => {
            Err(format!("{}: clusters and tenants are shared by every zone, so that needs an operator scoped to all", command.kind()))
        }
    }
}

/// A tenant's writes: its own aliases and the challenges of its names.
fn tenant_write(state: &State, own: &str, command: &Command) -> Result<(), String> {
    match command {
        Command::AddAlias { tenant, .. } | Command::RemoveAlias { tenant, .. } => {
            if tenant.eq_ignore_ascii_case(own) {
                Ok(())
            } else {
                Err(format!("change the aliases of tenant {tenant:?}"))
            }
        }
        Command::SetAcme { name, .. } | Command::ClearAcme { name, .. } => match tenant_of_name(state, name) {
            Some(t) if t.id == own => Ok(()),
            // Not naming the owner: a tenant may not learn other tenants' keys.
            Some(_) | None => Err(format!("change challenges of {name:?}, which is not a name of tenant {own:?}")),
        },
        Command::Batch { rows, .. } => rows
            .iter()
            .enumerate()
            .try_for_each(|(i, row)| tenant_write(state, own, &row.command).map_err(|what| format!("{what} (commands[{i}])"))),
        other => Err(other.kind().replace('_', " ")),
    }
}

/// Whether `key` (an id or an alias) names the tenant `own`.
fn is_tenant(state: &State, own: &str, key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    key == own || state.tenant_by_key(&key).is_some_and(|t| t.id == own)
}

/// The tenant a name (or the name a challenge is for: `_acme-challenge.`
/// and `*.` are stripped) belongs to under its zone's rules: the label just
/// below the apex is the tenant's id or alias under a `tenant-host` rule
/// (the name and every name below it), or `{service}-{tenant}` under a
/// `service-tenant` rule (that name only). As in `resolve`, the rules give
/// way to the operator's static records: a name with static records (or
/// static names below it), below a delegation, or below a static name
/// between it and the tenant's label belongs to no tenant.
pub fn tenant_of_name<'s>(state: &'s State, name: &str) -> Option<&'s Arc<Tenant>> {
    let owner = model::acme_owner("name", name).ok()?;
    let base = &owner[model::ACME_LABEL.len() + 1..];
    let zone = state.zone_for(base)?;
    let labels = name::relative_labels(base, zone.apex())?;
    let key = *labels.last()?;
    if zone.delegation_for(base).is_some() {
        return None;
    }
    // From the name up to the tenant's own label (`key.<apex>`), every name
    // must be one the rules answer, not the operator's.
    let mut cur = base;
    for _ in 0..labels.len() {
        if zone.records_at(cur).is_some() || zone.has_descendants(cur) {
            return None;
        }
        cur = name::parent(cur)?;
    }
    zone.spec.rules.iter().find_map(|rule| match rule {
        Rule::TenantHost { .. } => state.tenant_by_key(key),
        Rule::ServiceTenant { services, .. } if labels.len() == 1 => {
            services.iter().filter_map(|s| model::service_key(key, s)).find_map(|k| state.tenant_by_key(k))
        }
        Rule::ServiceTenant { .. } | Rule::Acme { .. } => None,
    })
}
