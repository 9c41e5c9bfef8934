//! The registry of stored kinds: each kind of replicated entity is declared
//! once here, and storage, the snapshot image, the loader and the change
//! history follow the declaration without naming any kind themselves.
//!
//! A kind's declaration gives its key prefix in storage, its value type (whose
//! serde form is how it is encoded, on disk and in snapshots), the `State`
//! table that holds it, how it appears in the change history, and whether its
//! changes advance the serial of zones with rules. Adding a
//! kind is one line in `registry!` below plus the commands that change it.

use std::sync::Arc;

use imbl::OrdMap;
use serde::{Deserialize, Serialize};

use crate::command::RequestRecord;
use crate::credential::Credential;
use crate::dnssec::SignedZone;
use crate::model::{Challenge, Cluster, Tenant, Zone};
use crate::tsig::TsigKey;

/// What a value of a stored kind tells about itself (implemented by the
/// registry from the kind's `key` and its `revision` field).
pub trait Stored {
    /// Its key within its kind (apex, id, owner name…): unique per kind.
    fn key(&self) -> &str;
    /// The revision at which it was last written.
    fn revision(&self) -> u64;
}

/// How a kind's changes appear in the change history that watchers read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum History {
    /// Not at all: bookkeeping or secrets, not data for watchers.
    Omitted,
    /// Its key, and whether it was deleted, but no value: a value that may
    /// be large (a zone) would make a message of the history too big to
    /// send, so the watcher reads the entity itself.
    KeyOnly,
    /// The value after the change (none when deleted).
    After,
    /// The value before and after: a deleted or moved tenant's last value
    /// names the cluster it left, so that cluster's proxies learn of it,
    /// and an IXFR can take a change back (`State::undone`).
    BeforeAndAfter,
}

macro_rules! registry {
    ($( $(#[doc = $doc:literal])* $kind:ident($ty:ty) { prefix: $prefix:literal, key: $key:expr, table: $table:ident, history: $history:ident, serial: $serial:literal } )*) => {
        /// A stored kind.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        pub enum Kind {
            $( $(#[doc = $doc])* $kind, )*
        }

        impl Kind {
            /// Every kind, in declaration order.
            pub const ALL: &'static [Kind] = &[$(Kind::$kind),*];

            /// The byte that starts its keys in storage.
            pub const fn prefix(self) -> u8 {
                match self { $(Kind::$kind => $prefix,)* }
            }

            /// Its name in logs and errors.
            pub const fn name(self) -> &'static str {
                match self { $(Kind::$kind => stringify!($table),)* }
            }

            /// One of it, in errors ("tenant", "zone"): its table's name less the plural s.
            pub fn noun(self) -> &'static str {
                let name = self.name();
                name.strip_suffix('s').unwrap_or(name)
            }

            pub const fn history(self) -> History {
                match self { $(Kind::$kind => History::$history,)* }
            }

            /// Whether its changes can alter the answers of zones with rules,
            /// and so advance their SOA serial (`State::data_revision`).
            pub const fn moves_serial(self) -> bool {
                match self { $(Kind::$kind => $serial,)* }
            }

            /// The kind whose keys start with `prefix`; `None` for a byte no kind declares.
            pub fn from_prefix(prefix: u8) -> Option<Kind> {
                Kind::ALL.iter().copied().find(|k| k.prefix() == prefix)
            }
        }

        /// One stored value of any kind; its serde form is the stored form.
        #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
        pub enum Value {
            $( $kind(Arc<$ty>), )*
        }

        impl Value {
            pub fn kind(&self) -> Kind {
                match self { $(Value::$kind(_) => Kind::$kind,)* }
            }

            pub fn key(&self) -> &str {
                match self { $(Value::$kind(v) => v.key(),)* }
            }

            pub fn revision(&self) -> u64 {
                match self { $(Value::$kind(v) => v.revision(),)* }
            }
        }

        $(
            impl Stored for $ty {
                fn key(&self) -> &str {
                    let key: fn(&$ty) -> &str = $key;
                    key(self)
                }
                fn revision(&self) -> u64 {
                    self.revision
                }
            }

            impl From<$ty> for Value {
                fn from(v: $ty) -> Value {
                    Value::$kind(Arc::new(v))
                }
            }
        )*

        /// One table per kind, by key: the stored part of `State`.
        #[derive(Debug, Clone, Default)]
        pub(crate) struct Tables {
            $( pub(crate) $table: OrdMap<String, Arc<$ty>>, )*
        }

        impl Tables {
            pub(crate) fn get(&self, kind: Kind, key: &str) -> Option<Value> {
                match kind { $(Kind::$kind => self.$table.get(key).cloned().map(Value::$kind),)* }
            }

            /// Store `value` under its key; returns what was there.
            pub(crate) fn insert(&mut self, value: Value) -> Option<Value> {
                match value {
                    $(Value::$kind(v) => self.$table.insert(v.key().to_string(), v).map(Value::$kind),)*
                }
            }

            pub(crate) fn remove(&mut self, kind: Kind, key: &str) -> Option<Value> {
                match kind { $(Kind::$kind => self.$table.remove(key).map(Value::$kind),)* }
            }

            /// Every stored value, kind by kind in declaration order, each by key.
            pub(crate) fn values(&self) -> impl Iterator<Item = Value> + '_ {
                std::iter::empty()
                    $( .chain(self.$table.values().cloned().map(Value::$kind)) )*
            }

            pub(crate) fn len(&self, kind: Kind) -> usize {
                match kind { $(Kind::$kind => self.$table.len(),)* }
            }
        }
    };
}

registry! {
    /// A served zone, by apex (stored as its spec and revision, compiled on load).
    Zone(Zone) { prefix: b'z', key: |z| z.apex(), table: zones, history: KeyOnly, serial: true }
    /// A cluster (scale unit), by id.
    Cluster(Cluster) { prefix: b'c', key: |c| &c.id, table: clusters, history: BeforeAndAfter, serial: true }
    /// A tenant, by id.
    Tenant(Tenant) { prefix: b't', key: |t| &t.id, table: tenants, history: BeforeAndAfter, serial: true }
    /// A request id within the dedup window, by id.
    Request(RequestRecord) { prefix: b'r', key: |r| &r.id, table: requests, history: Omitted, serial: false }
    /// An ACME challenge, by its `_acme-challenge` owner name.
    Acme(Challenge) { prefix: b'a', key: |c| &c.name, table: challenges, history: BeforeAndAfter, serial: true }
    /// An API credential (only its hash), by id.
    Credential(Credential) { prefix: b'k', key: |c| &c.id, table: credentials, history: Omitted, serial: false }
    /// A TSIG key (with its secret, which HMACs need), by name.
    TsigKey(TsigKey) { prefix: b'g', key: |k| &k.name, table: tsig_keys, history: Omitted, serial: false }
    /// A signed zone's DNSSEC keys (private keys included) and rollover
    /// state, by apex. Its changes move only its own zone's serial (`State::serial`).
    Dnssec(SignedZone) { prefix: b'd', key: |z| &z.apex, table: signed_zones, history: Omitted, serial: false }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The identity of one stored entity: what compare-and-set compares, what
/// group commit keeps apart, and what an effect changed.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct EntityId {
    pub kind: Kind,
    /// Lower-case, as the command names it (not otherwise checked).
    pub key: String,
}

impl EntityId {
    pub fn new(kind: Kind, key: impl Into<String>) -> EntityId {
        EntityId { kind, key: key.into() }
    }
}

impl std::fmt::Display for EntityId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", char::from(self.kind.prefix()), self.key)
    }
}

/// What one command did to one entity, recorded where the change is made:
/// storage writes `after` (or deletes), the change history keeps it for
/// watchers, and nothing diffs states afterwards.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Effect {
    pub kind: Kind,
    pub key: String,
    pub before: Option<Value>,
    pub after: Option<Value>,
}

impl Effect {
    pub fn entity(&self) -> EntityId {
        EntityId::new(self.kind, self.key.clone())
    }

    /// The effect as the change history keeps it, or `None` for kinds the
    /// history omits.
    pub fn for_history(&self) -> Option<Change> {
        let (before, after) = match self.kind.history() {
            History::Omitted => return None,
            History::KeyOnly => (None, None),
            History::After => (None, self.after.clone()),
            History::BeforeAndAfter => (self.before.clone(), self.after.clone()),
        };
        Some(Change { kind: self.kind, key: self.key.clone(), deleted: self.after.is_none(), before, after })
    }
}

/// One entry of the change history that watchers read: an `Effect` with
/// the values its kind's `History` keeps.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    pub kind: Kind,
    pub key: String,
    pub deleted: bool,
    pub before: Option<Value>,
    pub after: Option<Value>,
}
