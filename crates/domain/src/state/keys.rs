//! Tenant keys (ids and aliases) → tenant: the lookup behind every
//! synthesised answer, so the one the query path makes most.
//!
//! A persistent ordered map (`imbl`, so a published state still clones in
//! O(1) and a change copies one path) from a 64-bit hash of the key's bytes
//! to the tenant. Its keys are integers held in the B-tree's nodes, so a
//! lookup compares words instead of following a pointer to a string at
//! every step, as the table keyed by id must (a quarter of the query
//! path's CPU at 200,000 tenants before this index). It costs about 40
//! bytes per key; a HAMT (imbl's `HashMap`) answered no faster here and
//! cost 135. The key itself is not stored again: the entry holds the
//! table's own `Arc<Tenant>`, and a lookup checks the key against its id
//! and aliases. Two keys whose hashes agree share an entry (`Slot::Many`);
//! with 64 bits that is vanishingly rare but handled all the same. The
//! hash is seeded per process, so no one can aim names at one entry.
//!
//! Ids and aliases share one namespace (no alias is a tenant id, none
//! belongs to two tenants), so a key names at most one tenant.

use std::fmt;
use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;

use imbl::OrdMap;

use crate::model::Tenant;

#[derive(Clone, Default)]
pub(super) struct KeyIndex {
    map: OrdMap<u64, Slot>,
    seed: foldhash::fast::RandomState,
}

/// The tenants whose keys hash to one value: nearly always one.
#[derive(Clone)]
enum Slot {
    One(Arc<Tenant>),
    Many(Arc<Vec<Arc<Tenant>>>),
}

impl Slot {
    fn tenants(&self) -> &[Arc<Tenant>] {
        match self {
            Slot::One(t) => std::slice::from_ref(t),
            Slot::Many(ts) => ts,
        }
    }

    /// The tenants of this slot but the one `key` names.
    fn others(&self, key: &[u8]) -> Vec<Arc<Tenant>> {
        self.tenants().iter().filter(|t| !has_key(t, key)).cloned().collect()
    }
}

fn has_key(t: &Tenant, key: &[u8]) -> bool {
    t.id.as_bytes() == key || t.aliases.iter().any(|a| a.as_bytes() == key)
}

impl KeyIndex {
    fn hash(&self, key: &[u8]) -> u64 {
        let mut h = self.seed.build_hasher();
        h.write(key);
        h.finish()
    }

    /// The tenant whose id or alias is `key` (lower-case label bytes).
    pub(super) fn get(&self, key: &[u8]) -> Option<&Arc<Tenant>> {
        self.find(self.hash(key), key)
    }

    /// Index `t` under its id and each alias, replacing what those keys held.
    pub(super) fn insert(&mut self, t: &Arc<Tenant>) {
        for key in std::iter::once(&t.id).chain(&t.aliases) {
            let key = key.as_bytes();
            self.put(self.hash(key), key, t);
        }
    }

    /// Remove `t`'s id and aliases.
    pub(super) fn remove(&mut self, t: &Tenant) {
        for key in std::iter::once(&t.id).chain(&t.aliases) {
            let key = key.as_bytes();
            self.take(self.hash(key), key);
        }
    }

    fn find(&self, h: u64, key: &[u8]) -> Option<&Arc<Tenant>> {
        self.map.get(&h)?.tenants().iter().find(|t| has_key(t, key))
    }

    fn put(&mut self, h: u64, key: &[u8], t: &Arc<Tenant>) {
        let slot = match self.map.get(&h) {
            None => Slot::One(t.clone()),
            Some(Slot::One(other)) if has_key(other, key) => Slot::One(t.clone()),
            Some(slot) => {
                let mut ts = slot.others(key);
                ts.push(t.clone());
                Slot::Many(Arc::new(ts))
            }
        };
        self.map.insert(h, slot);
    }

    fn take(&mut self, h: u64, key: &[u8]) {
        let Some(slot) = self.map.get(&h) else { return };
        let rest = slot.others(key);
        match rest.as_slice() {
            [] => {
                self.map.remove(&h);
            }
            [one] => {
                let one = Slot::One(one.clone());
                self.map.insert(h, one);
            }
            _ => {
                self.map.insert(h, Slot::Many(Arc::new(rest)));
            }
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.map.len()
    }
}

impl fmt::Debug for KeyIndex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyIndex").field("keys", &self.map.len()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tenant(id: &str, aliases: &[&str]) -> Arc<Tenant> {
        Arc::new(Tenant {
            id: id.into(),
            cluster: "mt1".into(),
            pinned: false,
            aliases: aliases.iter().map(|a| a.to_string()).collect(),
            history: Vec::new(),
            revision: 1,
        })
    }

    #[test]
    fn keys_find_their_tenant_and_nothing_else() {
        let mut index = KeyIndex::default();
        let a = tenant("a", &["a1", "a2"]);
        index.insert(&a);
        index.insert(&tenant("b", &[]));
        assert_eq!(index.get(b"a1").map(|t| t.id.as_str()), Some("a"));
        assert_eq!(index.get(b"b").map(|t| t.id.as_str()), Some("b"));
        assert!(index.get(b"c").is_none());
        assert_eq!(index.len(), 4);
        // An alias dropped: the tenant is indexed again without it.
        index.remove(&a);
        index.insert(&tenant("a", &["a2"]));
        assert!(index.get(b"a1").is_none());
        assert_eq!(index.get(b"a2").map(|t| t.id.as_str()), Some("a"));
        assert_eq!(index.len(), 3);
    }

    #[test]
    fn keys_whose_hashes_collide_share_a_slot() {
        let mut index = KeyIndex::default();
        let (x, y) = (tenant("x", &[]), tenant("y", &[]));
        index.put(7, b"x", &x);
        index.put(7, b"y", &y);
        assert_eq!(index.map.get(&7).map(|s| s.tenants().len()), Some(2));
        assert_eq!(index.find(7, b"x").map(|t| t.id.as_str()), Some("x"));
        assert_eq!(index.find(7, b"y").map(|t| t.id.as_str()), Some("y"));
        assert!(index.find(7, b"z").is_none());
        // Replacing one keeps the other.
        index.put(7, b"y", &tenant("y", &["y1"]));
        assert_eq!(index.find(7, b"y").map(|t| t.aliases.len()), Some(1));
        assert_eq!(index.find(7, b"x").map(|t| t.id.as_str()), Some("x"));
        index.take(7, b"x");
        assert!(matches!(index.map.get(&7), Some(Slot::One(t)) if t.id == "y"));
        index.take(7, b"y");
        assert_eq!(index.len(), 0);
    }
}
