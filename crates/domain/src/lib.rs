//! Switchboard's domain: the data model, validation, placement, the commands
//! that change state, `apply`, and name → answer resolution over the
//! in-memory state. Pure: no I/O, no clock, no async runtime. Every node runs
//! the same code on the same log and reaches the same state.

pub mod command;
pub mod credential;
pub mod dnssec;
pub mod error;
pub mod health;
pub mod ingress;
pub mod kind;
pub mod masterfile;
pub mod model;
pub mod name;
pub mod placement;
pub mod record;
pub mod resolve;
pub mod state;
pub mod tsig;
pub mod update;

#[cfg(test)]
mod tests;

pub use command::{BatchOutcome, BatchRow, Command, Envelope, Guard, Outcome, RequestRecord, RowError};
pub use credential::{Access, Actor, Credential, Role, Scope};
pub use error::{CommandError, ValidationError};
pub use kind::{Change, Effect, EntityId, History, Kind, Value};
pub use model::{Challenge, ChallengeValue, Cluster, ClusterState, RecordSpec, Rule, Soa, Tenant, Tombstone, Transfer, Zone, ZoneSpec};
pub use record::{RData, RType, Record};
pub use resolve::{resolve, zone_records, Answer, Rcode};
pub use state::State;
pub use tsig::TsigKey;
