//! RFC 2136 dynamic updates, as one replicated command: the prerequisites
//! and the changes of one UPDATE message, checked and applied together at
//! one revision, or refused with the RCODE the RFC gives and nothing changed.
//!
//! What an update may change: the zone's static records (RRs, RRsets,
//! names), its apex NS set (never emptied), and the ACME challenges of a
//! zone with an `acme` rule (`_acme-challenge` TXT records, with the default
//! expiry of `acme set`). Names the rules make (`{service}-{tenant}`,
//! `{tenant}` and below) are refused: their answers follow the tenant map,
//! not records. SOA changes are ignored (the serial is derived, RFC 2136
//! §3.4.2.2 lets a server ignore them).

use serde::{Deserialize, Serialize};

use crate::record::{RData, RType, Record};

/// Declared with the errors that carry it (`CommandError::Update`), so
/// that errors, which records use, need nothing of updates.
pub use crate::error::UpdateRcode;

/// One prerequisite (RFC 2136 §2.4).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Prerequisite {
    /// CLASS ANY, TYPE ANY: the name has at least one RR.
    NameInUse(String),
    /// CLASS NONE, TYPE ANY: the name has no RR.
    NameNotInUse(String),
    /// CLASS ANY, TYPE T: an RRset of type T exists at the name.
    RrsetExists(String, RType),
    /// CLASS NONE, TYPE T: no RRset of type T at the name.
    RrsetNotExists(String, RType),
    /// CLASS IN with data: the RRset is exactly these records.
    RrsetIs(String, RType, Vec<RData>),
}

impl Prerequisite {
    pub fn name(&self) -> &str {
        match self {
            Prerequisite::NameInUse(n)
            | Prerequisite::NameNotInUse(n)
            | Prerequisite::RrsetExists(n, _)
            | Prerequisite::RrsetNotExists(n, _)
            | Prerequisite::RrsetIs(n, _, _) => n,
        }
    }
}

/// One change of the update section (RFC 2136 §2.5).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum UpdateOp {
    /// CLASS IN: add the record to its RRset.
    Add(Record),
    /// CLASS ANY, TYPE T: delete the RRset.
    DeleteRrset(String, RType),
    /// CLASS ANY, TYPE ANY: delete every RRset at the name.
    DeleteName(String),
    /// CLASS NONE: delete the record from its RRset.
    DeleteRr(String, RData),
}

impl UpdateOp {
    pub fn name(&self) -> &str {
        match self {
            UpdateOp::Add(r) => &r.name,
            UpdateOp::DeleteRrset(n, _) | UpdateOp::DeleteName(n) | UpdateOp::DeleteRr(n, _) => n,
        }
    }

    /// The type it changes; `None` for a whole name.
    pub fn rtype(&self) -> Option<RType> {
        match self {
            UpdateOp::Add(r) => Some(r.rtype()),
            UpdateOp::DeleteRrset(_, t) => Some(*t),
            UpdateOp::DeleteName(_) => None,
            UpdateOp::DeleteRr(_, d) => Some(d.rtype()),
        }
    }
}

/// An UPDATE message as a command: its zone (apex), prerequisites and changes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Update {
    pub apex: String,
    pub prerequisites: Vec<Prerequisite>,
    pub ops: Vec<UpdateOp>,
}

/// Most prerequisites plus changes in one update.
pub const UPDATE_ITEMS_MAX: usize = 1_000;
