//! TSIG keys (RFC 8945): shared secrets that sign DNS messages, stored in
//! the replicated state so every node verifies and signs with the same
//! keys, with the scopes of API credentials and what they allow (zone
//! transfers, dynamic updates).
//!
//! Unlike an API token, a TSIG secret cannot be kept as a hash: every HMAC
//! is computed with it. It is in the replicated state (the Raft log,
//! snapshots and every node's RocksDB) and no API returns it after the
//! call that created it; `Debug` never prints it.

use serde::{Deserialize, Serialize};

use crate::credential::{scope_list, Scope};
use crate::error::ValidationError;
use crate::model::Zone;
use crate::name;

/// Most stored TSIG keys.
pub const TSIG_KEYS_MAX: usize = 10_000;
/// The shortest secret accepted: RFC 8945 §6 asks for at least the output
/// size of the hash; 16 bytes is MD5's, the shortest of ours.
pub const SECRET_LEN_MIN: usize = 16;
/// The longest secret accepted (HMAC hashes a longer one first anyway).
pub const SECRET_LEN_MAX: usize = 128;

/// The HMAC algorithms of RFC 8945 §6 (hmac-md5 is cert-manager's default).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Algorithm {
    HmacMd5,
    HmacSha1,
    HmacSha224,
    HmacSha256,
    HmacSha384,
    HmacSha512,
}

impl Algorithm {
    pub const ALL: [Algorithm; 6] = [
        Algorithm::HmacMd5,
        Algorithm::HmacSha1,
        Algorithm::HmacSha224,
        Algorithm::HmacSha256,
        Algorithm::HmacSha384,
        Algorithm::HmacSha512,
    ];

    /// From the short form people and tools write (`hmac-sha256`), or the
    /// algorithm's domain name (`hmac-md5.sig-alg.reg.int.`, `hmac-sha256.`),
    /// in any case.
    pub fn parse(field: &str, text: &str) -> Result<Algorithm, ValidationError> {
        let t = text.to_ascii_lowercase();
        let t = t.strip_suffix('.').unwrap_or(&t);
        let t = t.strip_suffix(".sig-alg.reg.int").unwrap_or(t);
        Algorithm::ALL.into_iter().find(|a| a.as_str() == t).ok_or_else(|| {
            let names: Vec<&str> = Algorithm::ALL.iter().map(|a| a.as_str()).collect();
            ValidationError::new(field, format!("unknown algorithm {text:?} ({})", names.join(", ")))
        })
    }

    /// The short form: `hmac-sha256`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Algorithm::HmacMd5 => "hmac-md5",
            Algorithm::HmacSha1 => "hmac-sha1",
            Algorithm::HmacSha224 => "hmac-sha224",
            Algorithm::HmacSha256 => "hmac-sha256",
            Algorithm::HmacSha384 => "hmac-sha384",
            Algorithm::HmacSha512 => "hmac-sha512",
        }
    }

    /// The algorithm's name in a TSIG record (RFC 8945 §6), lower-case, absolute.
    pub const fn wire_name(self) -> &'static str {
        match self {
            Algorithm::HmacMd5 => "hmac-md5.sig-alg.reg.int.",
            Algorithm::HmacSha1 => "hmac-sha1.",
            Algorithm::HmacSha224 => "hmac-sha224.",
            Algorithm::HmacSha256 => "hmac-sha256.",
            Algorithm::HmacSha384 => "hmac-sha384.",
            Algorithm::HmacSha512 => "hmac-sha512.",
        }
    }

    /// Bytes of the full MAC: the hash's output size.
    pub const fn mac_len(self) -> usize {
        match self {
            Algorithm::HmacMd5 => 16,
            Algorithm::HmacSha1 => 20,
            Algorithm::HmacSha224 => 28,
            Algorithm::HmacSha256 => 32,
            Algorithm::HmacSha384 => 48,
            Algorithm::HmacSha512 => 64,
        }
    }
}

/// What a key may be used for besides signing queries.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Allow {
    /// AXFR and IXFR of the zones in scope.
    pub transfer: bool,
    /// RFC 2136 UPDATE of the zones in scope (a tenant's: its own
    /// `_acme-challenge` names only).
    pub update: bool,
}

impl Allow {
    /// From `transfer,update` (either or both).
    pub fn parse(field: &str, items: &[String]) -> Result<Allow, ValidationError> {
        let mut allow = Allow::default();
        for (i, item) in items.iter().enumerate() {
            match item.trim().to_ascii_lowercase().as_str() {
                "transfer" => allow.transfer = true,
                "update" => allow.update = true,
                other => return Err(ValidationError::new(format!("{field}[{i}]"), format!("unknown use {other:?} (transfer or update)"))),
            }
        }
        if !allow.transfer && !allow.update {
            return Err(ValidationError::new(field, "must allow transfer, update or both"));
        }
        Ok(allow)
    }

    /// `transfer,update`, as `parse` takes it.
    pub fn names(self) -> Vec<&'static str> {
        [(self.transfer, "transfer"), (self.update, "update")].into_iter().filter_map(|(on, n)| on.then_some(n)).collect()
    }
}

/// A stored TSIG key, by its name.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TsigKey {
    /// A domain name, absolute and lower-case (`acme-key.`).
    pub name: String,
    pub algorithm: Algorithm,
    pub secret: Vec<u8>,
    /// All, environments, zones or one tenant, as API credentials.
    pub scope: Scope,
    pub allow: Allow,
    /// Leader's clock when it was created.
    pub created_at_ms: u64,
    pub revision: u64,
}

impl std::fmt::Debug for TsigKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TsigKey")
            .field("name", &self.name)
            .field("algorithm", &self.algorithm)
            .field("secret", &format_args!("<{} bytes>", self.secret.len()))
            .field("scope", &self.scope)
            .field("allow", &self.allow)
            .field("created_at_ms", &self.created_at_ms)
            .field("revision", &self.revision)
            .finish()
    }
}

/// A key name as people write it: absolute or not, any case.
pub fn key_name(field: &str, text: &str) -> Result<String, ValidationError> {
    let absolute = if text.ends_with('.') { text.to_string() } else { format!("{text}.") };
    name::absolute(field, &absolute)
}

impl TsigKey {
    /// Check and normalise; every error names its field.
    pub fn validate(mut self) -> Result<TsigKey, ValidationError> {
        self.name = key_name("name", &self.name)?;
        if !(SECRET_LEN_MIN..=SECRET_LEN_MAX).contains(&self.secret.len()) {
            return Err(ValidationError::new("secret", format!("must be {SECRET_LEN_MIN} to {SECRET_LEN_MAX} bytes")));
        }
        if !self.allow.transfer && !self.allow.update {
            return Err(ValidationError::new("allow", "must allow transfer, update or both"));
        }
        self.scope = match self.scope {
            Scope::All => Scope::All,
            Scope::Environments(e) => Scope::Environments(scope_list("environments", e, name::label)?),
            Scope::Zones(z) => Scope::Zones(scope_list("zones", z, name::absolute)?),
            Scope::Tenant(t) => {
                if self.allow.transfer {
                    // A transfer is the whole zone: every other tenant's names.
                    return Err(ValidationError::new("allow", "a key scoped to a tenant may not transfer zones: allow update only"));
                }
                Scope::Tenant(name::label("tenant", &t)?)
            }
        };
        Ok(self)
    }

    /// Whether this key may transfer `zone`.
    pub fn may_transfer(&self, zone: &Zone) -> bool {
        self.allow.transfer && self.covers(zone)
    }

    /// Whether this key may update `zone` at all (a tenant key: only its
    /// own `_acme-challenge` names, checked name by name).
    pub fn may_update(&self, zone: &Zone) -> bool {
        self.allow.update && (matches!(self.scope, Scope::Tenant(_)) || self.covers(zone))
    }

    fn covers(&self, zone: &Zone) -> bool {
        match &self.scope {
            Scope::All => true,
            Scope::Environments(envs) => envs.contains(&zone.spec.environment),
            Scope::Zones(apexes) => apexes.iter().any(|a| a == zone.apex()),
            Scope::Tenant(_) => false,
        }
    }
}

/// Whether `zone` may be transferred without a key to a client at `ip`:
/// its `[transfer] allow` lists a prefix containing it.
pub fn unsigned_transfer_allowed(zone: &Zone, ip: std::net::IpAddr) -> bool {
    zone.spec.transfer.allow.iter().any(|p| p.contains(ip))
}

/// Whether `key` may make `update`: `update` allowed, the zone in its
/// scope; a tenant's key only TXT changes (and prerequisites) at the
/// `_acme-challenge` names of its own tenant. `Err` says why not.
pub fn update_allowed(state: &crate::State, key: &TsigKey, update: &crate::update::Update) -> Result<(), String> {
    let who = || format!("TSIG key {} ({})", key.name, key.scope.describe());
    let Some(zone) = state.zone(&update.apex.to_ascii_lowercase()) else { return Ok(()) };
    if !key.may_update(zone) {
        return Err(format!("{} may not update zone {}", who(), zone.apex()));
    }
    let Scope::Tenant(own) = &key.scope else { return Ok(()) };
    let owns = |n: &str| {
        n.starts_with(&format!("{}.", crate::model::ACME_LABEL))
            && crate::credential::tenant_of_name(state, n).is_some_and(|t| t.id == *own)
    };
    for n in update.prerequisites.iter().map(|p| p.name()) {
        if !owns(n) {
            return Err(format!("{} may not look at {n}, which is not an _acme-challenge name of tenant {own}", who()));
        }
    }
    for op in &update.ops {
        if !owns(op.name()) || !matches!(op.rtype(), Some(crate::record::RType::Txt) | None) {
            return Err(format!(
                "{} may not change {} {}: only TXT at the _acme-challenge names of tenant {own}",
                who(),
                op.name(),
                op.rtype().map_or("ANY".to_string(), |t| t.to_string())
            ));
        }
    }
    Ok(())
}
