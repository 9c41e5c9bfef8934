//! Commands: the only way state changes. Each is replicated through the Raft
//! log inside an `Envelope` stamped by the leader, and applied by every node
//! with `State::apply`, a pure function of (state, revision, envelope).

use compact_str::CompactString;
use serde::{Deserialize, Serialize};

use crate::credential::{Actor, Credential};
use crate::error::ValidationError;
use crate::kind::{EntityId, Kind};
use crate::model::{Cluster, Tenant, ZoneSpec};
use crate::tsig::{self, TsigKey};
use crate::update::Update;

/// A command with what the leader stamped into it. Apply never reads the
/// clock: `at_ms` is the only time it knows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    /// Milliseconds since the Unix epoch at the leader when it proposed the command.
    pub at_ms: u64,
    pub command: Command,
    pub guard: Guard,
}

/// What a client may ask of a write besides the command itself.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Guard {
    /// Compare-and-set: apply only if the entity the command changes (zone,
    /// cluster or tenant) is at this revision now; 0 means "does not exist".
    pub expected_revision: Option<u64>,
    /// A retried call with the same id (within the dedup window) is not
    /// applied again: it gets the first call's result and revision.
    pub request_id: Option<String>,
    /// Whom the command acts for: a stored credential is authorised again
    /// when the command applies.
    pub actor: Actor,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// Create or replace a zone.
    PutZone {
        zone: ZoneSpec,
    },
    DeleteZone {
        apex: String,
    },
    /// Create or replace a cluster (its `revision` is ignored).
    PutCluster {
        cluster: Cluster,
    },
    /// The addresses of a checked cluster that a quorum of probers found
    /// down (all others are healthy), committed by the leader.
    SetHealth {
        cluster: String,
        down: Vec<std::net::IpAddr>,
    },
    /// Refused while the cluster holds tenants or is another's failover.
    DeleteCluster {
        id: String,
    },
    /// Create a tenant on `cluster` (pinned), or placed by hashing when `None`.
    CreateTenant {
        id: String,
        cluster: Option<String>,
    },
    DeleteTenant {
        id: String,
    },
    /// Set the tenant's cluster and its `pinned` flag.
    PinTenant {
        id: String,
        cluster: String,
    },
    /// Stage a move of the tenant to `cluster` that lowers its answers'
    /// TTL to `ttl` first (`StagedMove`); the leader takes the next steps.
    StageMove {
        id: String,
        cluster: String,
        ttl: u32,
    },
    /// The next step of the tenant's staged move, once due by the
    /// envelope's stamp: the move itself (with its tombstone), then the end
    /// of the lowered TTL. Proposed by the leader.
    AdvanceMove {
        id: String,
    },
    /// Stop the tenant's staged move where it is (a tenant already moved
    /// stays moved); its answers take their own TTL again.
    CancelMove {
        id: String,
    },
    /// Clear the `pinned` flag; the tenant stays where it is.
    UnpinTenant {
        id: String,
    },
    /// Move the tenant, recording a tombstone. The `pinned` flag is kept.
    MoveTenant {
        id: String,
        cluster: String,
    },
    AddAlias {
        tenant: String,
        alias: String,
    },
    RemoveAlias {
        tenant: String,
        alias: String,
    },
    /// Add (or refresh) a TXT value at `_acme-challenge.<name>`, expiring
    /// `expires_in_s` after the leader's stamp.
    SetAcme {
        name: String,
        value: String,
        ttl: Option<u32>,
        expires_in_s: Option<u64>,
    },
    /// Remove one value, or every value when `value` is `None`.
    ClearAcme {
        name: String,
        value: Option<String>,
    },
    /// Remove every value expired by the envelope's stamp. The leader
    /// proposes it when its clock passes the earliest expiry, so every node
    /// drops an expired value at the same revision.
    ExpireAcme,
    /// Store a credential (its `created_at_ms` and `revision` are stamped on apply).
    CreateCredential {
        credential: Credential,
    },
    /// Delete a credential: calls with its token fail from this revision on.
    RevokeCredential {
        id: String,
    },
    /// Store a TSIG key (its `created_at_ms` and `revision` are stamped on apply).
    CreateTsigKey {
        key: TsigKey,
    },
    /// Delete a TSIG key: messages signed with it fail from this revision on.
    DeleteTsigKey {
        name: String,
    },
    /// An RFC 2136 UPDATE: its prerequisites and changes, all or nothing.
    Update {
        update: Update,
    },
    /// One step of a signed zone's key life, planned by the leader
    /// (`SignedZone::plan`) and sent with the zone's revision as expected.
    DnssecStep {
        apex: String,
        step: crate::dnssec::Step,
    },
    /// Start a rollover of the zone's ZSK or KSK at the leader's next tick.
    DnssecRollover {
        apex: String,
        role: crate::dnssec::KeyRole,
    },
    /// Many changes in one command, applied in row order at one revision,
    /// each row with its own compare-and-set and its own result. `atomic`:
    /// all rows or none (the first refusal undoes the rows before it).
    /// Rows are the small writes (`Command::batchable`), each naming a
    /// different entity (`check_batch`).
    Batch {
        rows: Vec<BatchRow>,
        atomic: bool,
    },
}

/// One change of a batch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchRow {
    pub command: Command,
    /// Compare-and-set for this row's entity, as `Guard::expected_revision`.
    pub expected_revision: Option<u64>,
}

/// Most rows in one batch (Route 53 takes 1,000 changes per call). A full
/// batch fills one log entry (consensus `ENTRY_CHANGES_MAX`): a few hundred
/// KiB at most in a peer message, and one revision's changes, which a
/// Watch response carries whole. 512 rows made a bulk import a third slower.
pub const BATCH_ROWS_MAX: usize = 1024;

/// Check a batch's shape: 1 to `BATCH_ROWS_MAX` rows, each a command a
/// batch may carry, no two for the same entity (they would commit at one
/// revision, and a compare-and-set could not tell their results apart).
/// Fields are named `{field}[i]`.
pub fn check_batch(field: &str, rows: &[BatchRow]) -> Result<(), ValidationError> {
    if rows.is_empty() || rows.len() > BATCH_ROWS_MAX {
        return Err(ValidationError::new(field, format!("must hold 1 to {BATCH_ROWS_MAX} commands, not {}", rows.len())));
    }
    let mut seen = std::collections::HashMap::with_capacity(rows.len());
    for (i, row) in rows.iter().enumerate() {
        if !row.command.batchable() {
            let reason = format!("{} cannot be part of a batch (tenant, alias and challenge writes can)", row.command.kind());
            return Err(ValidationError::new(format!("{field}[{i}]"), reason));
        }
        if let Some(first) = seen.insert(row.command.entity(), i) {
            let reason = format!("changes {} again (first at {field}[{first}]): one row per entity", row.command.entity());
            return Err(ValidationError::new(format!("{field}[{i}]"), reason));
        }
    }
    Ok(())
}

impl Command {
    /// Whether group commit gives this command a log entry of its own. A
    /// zone put may be large, and an entry must fit a peer message; an
    /// RFC 2136 update and challenge expiry change entities beside the one
    /// they name (challenges, names' records), which another command of
    /// the entry could change too, leaving one revision for two versions;
    /// so does a staged move's step, which may move its tenant too.
    pub fn travels_alone(&self) -> bool {
        matches!(self, Command::PutZone { .. } | Command::Update { .. } | Command::ExpireAcme | Command::AdvanceMove { .. })
    }

    /// Whether a batch may carry this command: the writes of one tenant or
    /// one challenge, which change that entity alone (and the challenges
    /// whose owner it changes) and are small.
    pub fn batchable(&self) -> bool {
        matches!(
            self,
            Command::CreateTenant { .. }
                | Command::DeleteTenant { .. }
                | Command::PinTenant { .. }
                | Command::UnpinTenant { .. }
                | Command::MoveTenant { .. }
                | Command::AddAlias { .. }
                | Command::RemoveAlias { .. }
                | Command::SetAcme { .. }
                | Command::ClearAcme { .. }
        )
    }

    /// How many changes this command makes, as group commit counts them
    /// against an entry's size: a batch's rows, else one.
    pub fn changes(&self) -> usize {
        match self {
            Command::Batch { rows, .. } => rows.len(),
            _ => 1,
        }
    }

    /// Every entity this command changes, as group commit keeps entities
    /// apart between the commands of one entry: a batch's rows', else
    /// `entity()`.
    pub fn entities(&self) -> Vec<EntityId> {
        match self {
            Command::Batch { rows, .. } => rows.iter().map(|r| r.command.entity()).collect(),
            _ => vec![self.entity()],
        }
    }

    /// The entity this command changes, as compare-and-set, request ids and
    /// group commit see it: the same identity its effects carry.
    pub fn entity(&self) -> EntityId {
        let (kind, key) = match self {
            Command::PutZone { zone } => (Kind::Zone, zone.apex.to_ascii_lowercase()),
            Command::DeleteZone { apex } => (Kind::Zone, apex.to_ascii_lowercase()),
            Command::PutCluster { cluster } => (Kind::Cluster, cluster.id.to_ascii_lowercase()),
            Command::DeleteCluster { id } | Command::SetHealth { cluster: id, .. } => (Kind::Cluster, id.to_ascii_lowercase()),
            Command::CreateTenant { id, .. }
            | Command::DeleteTenant { id }
            | Command::PinTenant { id, .. }
            | Command::UnpinTenant { id }
            | Command::MoveTenant { id, .. }
            | Command::AddAlias { tenant: id, .. }
            | Command::RemoveAlias { tenant: id, .. } => (Kind::Tenant, id.to_ascii_lowercase()),
            Command::StageMove { id, .. } | Command::AdvanceMove { id } | Command::CancelMove { id } => {
                (Kind::Move, id.to_ascii_lowercase())
            }
            Command::SetAcme { name, .. } | Command::ClearAcme { name, .. } => {
                (Kind::Acme, crate::model::acme_owner("name", name).unwrap_or_else(|_| name.to_ascii_lowercase()))
            }
            // Every challenge: an empty key.
            Command::ExpireAcme => (Kind::Acme, String::new()),
            Command::CreateCredential { credential } => (Kind::Credential, credential.id.clone()),
            Command::RevokeCredential { id } => (Kind::Credential, id.to_ascii_lowercase()),
            Command::CreateTsigKey { key } => {
                (Kind::TsigKey, tsig::key_name("name", &key.name).unwrap_or_else(|_| key.name.to_ascii_lowercase()))
            }
            Command::DeleteTsigKey { name } => (Kind::TsigKey, tsig::key_name("name", name).unwrap_or_else(|_| name.to_ascii_lowercase())),
            Command::Update { update } => (Kind::Zone, update.apex.to_ascii_lowercase()),
            Command::DnssecStep { apex, .. } | Command::DnssecRollover { apex, .. } => {
                (Kind::Dnssec, crate::name::absolute("apex", apex).unwrap_or_else(|_| apex.to_ascii_lowercase()))
            }
            // A batch is named by its first row (its request id records the
            // row count too); its rows' own entities are `entities()`.
            Command::Batch { rows, .. } => {
                return rows.first().map_or_else(|| EntityId::new(Kind::Tenant, String::new()), |r| r.command.entity())
            }
        };
        EntityId::new(kind, key)
    }

    /// Short name for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Command::PutZone { .. } => "put_zone",
            Command::DeleteZone { .. } => "delete_zone",
            Command::PutCluster { .. } => "put_cluster",
            Command::DeleteCluster { .. } => "delete_cluster",
            Command::SetHealth { .. } => "set_health",
            Command::CreateTenant { .. } => "create_tenant",
            Command::DeleteTenant { .. } => "delete_tenant",
            Command::PinTenant { .. } => "pin_tenant",
            Command::UnpinTenant { .. } => "unpin_tenant",
            Command::StageMove { .. } => "stage_move",
            Command::AdvanceMove { .. } => "advance_move",
            Command::CancelMove { .. } => "cancel_move",
            Command::MoveTenant { .. } => "move_tenant",
            Command::AddAlias { .. } => "add_alias",
            Command::RemoveAlias { .. } => "remove_alias",
            Command::SetAcme { .. } => "set_acme",
            Command::ClearAcme { .. } => "clear_acme",
            Command::ExpireAcme => "expire_acme",
            Command::CreateCredential { .. } => "create_credential",
            Command::RevokeCredential { .. } => "revoke_credential",
            Command::CreateTsigKey { .. } => "create_tsig_key",
            Command::DeleteTsigKey { .. } => "delete_tsig_key",
            Command::Update { .. } => "update",
            Command::DnssecStep { .. } => "dnssec_step",
            Command::DnssecRollover { .. } => "dnssec_rollover",
            Command::Batch { .. } => "batch",
        }
    }
}

/// What a successful command produced, returned to the client with the revision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    Zone {
        apex: String,
    },
    // The larger values are boxed: every request id in the dedup window
    // keeps an outcome, most of them a tenant's.
    Cluster(Box<Cluster>),
    Tenant(Tenant),
    /// A staged move after the change (gone: `Deleted`).
    Move(Box<crate::model::StagedMove>),
    /// The challenge after the change (no values left: it is gone).
    Acme(Box<crate::model::Challenge>),
    /// Expiry: how many values were removed.
    Expired(usize),
    Credential(Box<Credential>),
    TsigKey(Box<TsigKey>),
    Deleted,
    /// A retry of a request id already applied, at `revision`, with this outcome.
    Replayed {
        revision: u64,
        outcome: Box<Outcome>,
    },
    /// What a batch did, row by row.
    Batch(Box<BatchOutcome>),
}

/// The result of a batch: which rows were refused and why; every other row
/// took effect at the batch's revision, unless the batch was atomic and a
/// row was refused, when none did. Kept compact (refusals only): the dedup
/// window holds it for a retry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchOutcome {
    pub rows: u32,
    /// Whether the rows not refused took effect (false only for an atomic
    /// batch with a refusal).
    pub applied: bool,
    /// Refused rows by index, in row order. An atomic batch stops at its
    /// first refusal, so it lists at most one.
    pub refused: Vec<(u32, crate::CommandError)>,
}

impl BatchOutcome {
    /// The result of row `i`: `Ok(())` when it took effect.
    pub fn row(&self, i: u32) -> Result<(), RowError<'_>> {
        match self.refused.binary_search_by_key(&i, |(at, _)| *at) {
            Ok(at) => Err(RowError::Refused(&self.refused[at].1)),
            Err(_) if !self.applied => Err(RowError::NotApplied { refused_row: self.refused.first().map_or(0, |(at, _)| *at) }),
            Err(_) => Ok(()),
        }
    }
}

/// Why a row of a batch did not take effect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RowError<'a> {
    /// The row itself was refused.
    Refused(&'a crate::CommandError),
    /// The batch was atomic and another row was refused.
    NotApplied { refused_row: u32 },
}

/// A request id seen within the dedup window, and what its call got.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestRecord {
    // Inline up to 24 bytes (a node's own ids, most calls): the window
    // holds up to `REQUEST_IDS_MAX` of these.
    pub id: CompactString,
    /// The call the id was first used for (kind and entity): the same id
    /// with another call is refused, not answered with this result.
    pub call: CompactString,
    pub revision: u64,
    pub at_ms: u64,
    pub result: Result<Outcome, crate::CommandError>,
}
