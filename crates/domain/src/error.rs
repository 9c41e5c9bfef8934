//! Errors of the domain: bad input (naming the field) and refused commands.

use std::fmt;

/// A field that failed validation, named as the API and the zone file name it
/// (`zone.records[3].data`, `tenant.id`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct ValidationError {
    pub field: String,
    pub reason: String,
}

impl ValidationError {
    pub fn new(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self { field: field.into(), reason: reason.into() }
    }

    /// Prefix the field with its parent (`records[3]` + `data` → `records[3].data`).
    #[must_use]
    pub fn within(mut self, parent: impl fmt::Display) -> Self {
        self.field = format!("{parent}.{}", self.field);
        self
    }
}

/// Why a command was refused when applied. Refused commands change nothing but
/// still consume their log index (every node refuses them identically).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, thiserror::Error)]
#[non_exhaustive]
pub enum CommandError {
    /// The command itself is malformed.
    #[error("invalid argument: {0}")]
    Invalid(ValidationError),
    /// The command names something that does not exist.
    #[error("{kind} {id:?} not found")]
    NotFound { kind: String, id: String, field: String },
    /// The command conflicts with existing state.
    #[error("{field}: {reason}")]
    FailedPrecondition { field: String, reason: String },
    /// Creating something that already exists.
    #[error("{kind} {id:?} already exists")]
    AlreadyExists { kind: String, id: String, field: String },
    /// Compare-and-set failed: the entity is not at the expected revision.
    #[error("expected_revision: expected {expected}, but it is at revision {current}")]
    Aborted { expected: u64, current: u64 },
    /// The credential the command was sent with no longer exists.
    #[error("{0}")]
    Unauthenticated(String),
    /// The credential may not do this.
    #[error("{0}")]
    PermissionDenied(String),
    /// An RFC 2136 update refused with `rcode` (a prerequisite not met, a
    /// name outside the zone, or policy).
    #[error("{reason}")]
    Update { rcode: UpdateRcode, reason: String },
}

/// The RCODEs an update is refused with besides FORMERR and NOTAUTH
/// (RFC 2136 §2.2, §3.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum UpdateRcode {
    /// A name that should not exist does.
    YxDomain,
    /// An RRset that should not exist does.
    YxRrset,
    /// A name that should exist does not.
    NxDomain,
    /// An RRset that should exist does not (or differs).
    NxRrset,
    /// A name outside the zone.
    NotZone,
    /// Policy: a name the rules make, a type not served, a key out of scope.
    Refused,
}

impl From<ValidationError> for CommandError {
    fn from(e: ValidationError) -> Self {
        CommandError::Invalid(e)
    }
}

impl CommandError {
    pub(crate) fn not_found(kind: &str, id: &str, field: &str) -> Self {
        CommandError::NotFound { kind: kind.into(), id: id.into(), field: field.into() }
    }

    pub(crate) fn precondition(field: &str, reason: impl Into<String>) -> Self {
        CommandError::FailedPrecondition { field: field.into(), reason: reason.into() }
    }

    pub(crate) fn exists(kind: &str, id: &str, field: &str) -> Self {
        CommandError::AlreadyExists { kind: kind.into(), id: id.into(), field: field.into() }
    }
}
