//! Commands: the only way state changes. Each is replicated through the Raft
//! log inside an `Envelope` stamped by the leader, and applied by every node
//! with `State::apply`, a pure function of (state, revision, envelope).

use serde::{Deserialize, Serialize};

use crate::model::{Cluster, Tenant, ZoneSpec};

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
    /// Refused while the cluster holds tenants.
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
}

impl Command {
    /// The zone, cluster or tenant this command changes, as compare-and-set,
    /// request ids and group commit see it.
    pub fn entity(&self) -> Entity {
        match self {
            Command::PutZone { zone } => Entity::Zone(zone.apex.to_ascii_lowercase()),
            Command::DeleteZone { apex } => Entity::Zone(apex.to_ascii_lowercase()),
            Command::PutCluster { cluster } => Entity::Cluster(cluster.id.to_ascii_lowercase()),
            Command::DeleteCluster { id } => Entity::Cluster(id.to_ascii_lowercase()),
            Command::CreateTenant { id, .. }
            | Command::DeleteTenant { id }
            | Command::PinTenant { id, .. }
            | Command::UnpinTenant { id }
            | Command::MoveTenant { id, .. }
            | Command::AddAlias { tenant: id, .. }
            | Command::RemoveAlias { tenant: id, .. } => Entity::Tenant(id.to_ascii_lowercase()),
        }
    }

    /// Short name for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Command::PutZone { .. } => "put_zone",
            Command::DeleteZone { .. } => "delete_zone",
            Command::PutCluster { .. } => "put_cluster",
            Command::DeleteCluster { .. } => "delete_cluster",
            Command::CreateTenant { .. } => "create_tenant",
            Command::DeleteTenant { .. } => "delete_tenant",
            Command::PinTenant { .. } => "pin_tenant",
            Command::UnpinTenant { .. } => "unpin_tenant",
            Command::MoveTenant { .. } => "move_tenant",
            Command::AddAlias { .. } => "add_alias",
            Command::RemoveAlias { .. } => "remove_alias",
        }
    }
}

/// What a command changes: one zone, cluster or tenant, by its name as the
/// command gives it (lower-case, not otherwise checked).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Entity {
    Zone(String),
    Cluster(String),
    Tenant(String),
}

impl std::fmt::Display for Entity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Entity::Zone(apex) => write!(f, "z/{apex}"),
            Entity::Cluster(id) => write!(f, "c/{id}"),
            Entity::Tenant(id) => write!(f, "t/{id}"),
        }
    }
}

/// What a successful command produced, returned to the client with the revision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    Zone {
        apex: String,
    },
    Cluster(Cluster),
    Tenant(Tenant),
    Deleted,
    /// A retry of a request id already applied, at `revision`, with this outcome.
    Replayed {
        revision: u64,
        outcome: Box<Outcome>,
    },
}

/// A request id seen within the dedup window, and what its call got.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestRecord {
    pub id: String,
    /// The call the id was first used for (kind and entity): the same id
    /// with another call is refused, not answered with this result.
    pub call: String,
    pub revision: u64,
    pub at_ms: u64,
    pub result: Result<Outcome, crate::CommandError>,
}

/// Which stored entities a command changed, so storage can persist exactly those.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Touched {
    Zone(String),
    Cluster(String),
    Tenant(String),
    /// A request id remembered or forgotten (dedup window).
    Request(String),
}
