//! The registry of stored kinds: each kind of replicated entity is declared
//! once here, and storage, the snapshot image, the loader and the change
//! history follow the declaration without naming any kind themselves.
//!
//! A kind's declaration gives its key prefix in storage, its value type (whose
//! serde form is how it is encoded, on disk and in snapshots), the `State`
//! table that holds it, and how it appears in the change history. Adding a
//! kind is one line in `registry!` below plus the commands that change it.

use std::borrow::Borrow;
use std::cmp::Ordering;
use std::fmt;
use std::ops::Bound;
use std::sync::Arc;

use imbl::OrdSet;
use serde::{Deserialize, Serialize};

use crate::command::RequestRecord;
use crate::credential::Credential;
use crate::dnssec::SignedZone;
use crate::model::{Challenge, Cluster, StagedMove, Tenant, Zone, ZoneNode, ZoneSerial};
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
    ($( $(#[doc = $doc:literal])* $kind:ident($ty:ty) { prefix: $prefix:literal, key: $key:expr, table: $table:ident, history: $history:ident } )*) => {
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
            $( pub(crate) $table: Table<$ty>, )*
        }

        impl Tables {
            pub(crate) fn get(&self, kind: Kind, key: &str) -> Option<Value> {
                match kind { $(Kind::$kind => self.$table.get(key).cloned().map(Value::$kind),)* }
            }

            /// Store `value` under its key; returns what was there.
            pub(crate) fn insert(&mut self, value: Value) -> Option<Value> {
                match value {
                    $(Value::$kind(v) => self.$table.insert(v).map(Value::$kind),)*
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
    /// A served zone, by apex (stored as its spec without records and its
    /// revision, compiled on load, its nodes joined to it by `State::set`).
    Zone(Zone) { prefix: b'z', key: |z| z.apex(), table: zones, history: KeyOnly }
    /// The static records of one name in one zone, by `"{apex} {owner}"`:
    /// a change to one name writes that name alone, and an IXFR can take it back.
    ZoneNode(ZoneNode) { prefix: b'n', key: |n| &n.key, table: zone_nodes, history: BeforeAndAfter }
    /// A cluster (scale unit), by id.
    Cluster(Cluster) { prefix: b'c', key: |c| &c.id, table: clusters, history: BeforeAndAfter }
    /// A tenant, by id.
    Tenant(Tenant) { prefix: b't', key: |t| t.id.as_str(), table: tenants, history: BeforeAndAfter }
    /// A tenant move that lowers TTLs first, by tenant id, while it runs.
    Move(StagedMove) { prefix: b'm', key: |m| &m.tenant, table: moves, history: BeforeAndAfter }
    /// A request id within the dedup window, by id.
    Request(RequestRecord) { prefix: b'r', key: |r| &r.id, table: requests, history: Omitted }
    /// An ACME challenge, by its `_acme-challenge` owner name.
    Acme(Challenge) { prefix: b'a', key: |c| &c.name, table: challenges, history: BeforeAndAfter }
    /// An API credential (only its hash), by id.
    Credential(Credential) { prefix: b'k', key: |c| &c.id, table: credentials, history: Omitted }
    /// A TSIG key (with its secret, which HMACs need), by name.
    TsigKey(TsigKey) { prefix: b'g', key: |k| &k.name, table: tsig_keys, history: Omitted }
    /// A signed zone's DNSSEC keys (private keys included) and rollover
    /// state, by apex. Its changes move only its own zone's serial (`State::serial`).
    Dnssec(SignedZone) { prefix: b'd', key: |z| &z.apex, table: signed_zones, history: Omitted }
    /// The revision of the last change to a zone's answers beyond its own
    /// writes and the tenants and clusters (`State::serial`), by apex.
    ZoneSerial(ZoneSerial) { prefix: b's', key: |z| &z.apex, table: zone_serials, history: Omitted }
}

/// One kind's values, ordered by their key: a persistent ordered set (so a
/// published state still clones in O(1) and a change copies one path) of
/// the shared values themselves. The key is read from the value, not held
/// beside it a second time: at a million tenants that copy, a `String` in
/// every leaf and again in the branches above it, was a fifth of the
/// state's memory. A lookup follows the pointer to the value's key at each
/// comparison; the query path finds tenants through `KeyIndex` instead.
pub(crate) struct Table<T>(OrdSet<ByKey<T>>);

impl<T: Stored> Table<T> {
    pub(crate) fn get(&self, key: &str) -> Option<&Arc<T>> {
        self.0.get(key).map(|e| &e.0)
    }

    /// Store `value` under its key; returns what was there.
    pub(crate) fn insert(&mut self, value: Arc<T>) -> Option<Arc<T>> {
        self.0.insert(ByKey(value)).map(|e| e.0)
    }

    /// A table of `values`, in key order with no key twice.
    pub(crate) fn from_sorted(values: Vec<Arc<T>>) -> Table<T> {
        debug_assert!(values.windows(2).all(|w| w[0].key() < w[1].key()));
        let mut table = Table::default();
        for v in fill_order(values) {
            table.0.insert(ByKey(v));
        }
        table
    }

    pub(crate) fn remove(&mut self, key: &str) -> Option<Arc<T>> {
        self.0.remove(key).map(|e| e.0)
    }

    /// Every value, by key.
    pub(crate) fn values(&self) -> impl DoubleEndedIterator<Item = &Arc<T>> + '_ {
        self.0.iter().map(|e| &e.0)
    }

    /// The values whose keys sort after `key`, by key.
    pub(crate) fn after<'a>(&'a self, key: &'a str) -> impl Iterator<Item = &'a Arc<T>> + 'a {
        self.0.range::<_, str>((Bound::Excluded(key), Bound::Unbounded)).map(|e| &e.0)
    }

    pub(crate) fn len(&self) -> usize {
        self.0.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl<T> Clone for Table<T> {
    fn clone(&self) -> Self {
        Table(self.0.clone())
    }
}

impl<T> Default for Table<T> {
    fn default() -> Self {
        Table(OrdSet::new())
    }
}

impl<T> fmt::Debug for Table<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Table").field("len", &self.0.len()).finish()
    }
}

/// The items of `sorted` (ascending, no two equal) in the order that fills
/// the leaves of imbl's B+tree: every other item first, then the rest.
/// Inserted in plain ascending order, each full leaf is split at its median
/// as the next item arrives and never receives another, so a tree built
/// from sorted input (a restart, a snapshot) ends half empty. Inserted this
/// way, the first pass leaves half-full leaves and the second fills each
/// one's gaps exactly, without a split. Only memory depends on this (imbl
/// splitting at the median), never a result.
pub(crate) fn fill_order<T>(sorted: Vec<T>) -> impl Iterator<Item = T> {
    let (mut first, mut second) = (Vec::with_capacity(sorted.len().div_ceil(2)), Vec::with_capacity(sorted.len() / 2));
    for (i, x) in sorted.into_iter().enumerate() {
        if i % 2 == 0 {
            first.push(x);
        } else {
            second.push(x);
        }
    }
    first.into_iter().chain(second)
}

/// A table's element: a value, compared by its key alone (one value per
/// key), and borrowable as that key so the set is searched by `&str`.
pub(crate) struct ByKey<T>(pub(crate) Arc<T>);

impl<T> Clone for ByKey<T> {
    fn clone(&self) -> Self {
        ByKey(self.0.clone())
    }
}

impl<T: Stored> fmt::Debug for ByKey<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.0.key(), f)
    }
}

impl<T: Stored> Borrow<str> for ByKey<T> {
    fn borrow(&self) -> &str {
        self.0.key()
    }
}

impl<T: Stored> PartialEq for ByKey<T> {
    fn eq(&self, other: &Self) -> bool {
        self.0.key() == other.0.key()
    }
}

impl<T: Stored> Eq for ByKey<T> {}

impl<T: Stored> PartialOrd for ByKey<T> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl<T: Stored> Ord for ByKey<T> {
    fn cmp(&self, other: &Self) -> Ordering {
        self.0.key().cmp(other.0.key())
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fill_order_yields_every_item_once() {
        for n in [0usize, 1, 2, 7, 16, 33] {
            let mut out: Vec<usize> = fill_order((0..n).collect()).collect();
            out.sort();
            assert_eq!(out, (0..n).collect::<Vec<_>>());
        }
    }

    #[test]
    fn a_table_built_from_sorted_values_finds_each_and_keeps_the_order() {
        let clusters: Vec<Arc<Cluster>> = (0..1000).map(|i| Arc::new(Cluster::new(&format!("c{i:04}")))).collect();
        let table = Table::from_sorted(clusters.clone());
        assert_eq!(table.len(), 1000);
        assert!(table.values().map(|c| &c.id).eq(clusters.iter().map(|c| &c.id)));
        assert_eq!(table.get("c0500").map(|c| c.id.as_str()), Some("c0500"));
        assert!(table.get("c1000").is_none());
        assert_eq!(table.after("c0997").map(|c| c.id.as_str()).collect::<Vec<_>>(), ["c0998", "c0999"]);
    }
}
