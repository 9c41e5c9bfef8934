//! Tenant keys (ids and aliases) → tenant: the lookup behind every
//! synthesised answer, so the one the query path makes most.
//!
//! A persistent ordered map (`imbl`, so a published state still clones in
//! O(1) and a change copies one path) from a 64-bit hash of the key's bytes
//! to the tenant. Its keys are integers held in the B-tree's nodes, so a
//! lookup compares words instead of following a pointer to a string at
//! every step, as the table keyed by id must (a quarter of the query
//! path's CPU at 200,000 tenants before this index). An entry is the hash
//! and the table's own `Arc<Tenant>`, 16 bytes, about 26 in the tree; a
//! HAMT (imbl's `HashMap`) answered no faster here and cost 135. The key
//! itself is not stored again: a lookup checks the key against the
//! tenant's id and aliases. Two keys whose hashes agree are rare enough at
//! 64 bits that they live apart, in `shared`, which is nearly always
//! empty: the common entry pays nothing for them. The hash is seeded per
//! process, so no one can aim names at one entry.
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
    /// The hash of each key held by one key alone → its tenant.
    map: OrdMap<u64, Arc<Tenant>>,
    /// The hashes two or more keys share → their tenants (at least two).
    shared: OrdMap<u64, Arc<Vec<Arc<Tenant>>>>,
    seed: foldhash::fast::RandomState,
}

fn has_key(t: &Tenant, key: &[u8]) -> bool {
    t.keys().any(|k| k.as_bytes() == key)
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
        for key in t.keys() {
            let key = key.as_bytes();
            self.put(self.hash(key), key, t);
        }
    }

    /// The index of `tenants` (distinct ids), built from their keys sorted
    /// by hash: each insert lands beside the last and the tree's nodes end
    /// full (`fill_order`), where one insert per key in key order would
    /// touch the tree at random.
    pub(super) fn from_tenants(tenants: &[Arc<Tenant>]) -> KeyIndex {
        let mut index = KeyIndex::default();
        let mut entries: Vec<(u64, &str, &Arc<Tenant>)> = Vec::with_capacity(tenants.len());
        for t in tenants {
            for key in t.keys() {
                entries.push((index.hash(key.as_bytes()), key, t));
            }
        }
        entries.sort_by_key(|&(h, _, _)| h);
        let mut single = Vec::with_capacity(entries.len());
        for group in entries.chunk_by(|a, b| a.0 == b.0) {
            match group {
                [(h, _, t)] => single.push((*h, (*t).clone())),
                // A hash two keys share (or a key twice, which the
                // namespace rules out): as inserting one by one would.
                _ => {
                    for (h, key, t) in group {
                        index.put(*h, key.as_bytes(), t);
                    }
                }
            }
        }
        for (h, t) in crate::kind::fill_order(single) {
            index.map.insert(h, t);
        }
        index
    }

    /// Remove `t`'s id and aliases.
    pub(super) fn remove(&mut self, t: &Tenant) {
        for key in t.keys() {
            let key = key.as_bytes();
            self.take(self.hash(key), key);
        }
    }

    fn find(&self, h: u64, key: &[u8]) -> Option<&Arc<Tenant>> {
        match self.map.get(&h) {
            Some(t) => Some(t).filter(|t| has_key(t, key)),
            None => self.shared.get(&h)?.iter().find(|t| has_key(t, key)),
        }
    }

    /// The tenants at `h` but the one `key` names.
    fn others(&self, h: u64, key: &[u8]) -> Vec<Arc<Tenant>> {
        let all = match self.map.get(&h) {
            Some(t) => std::slice::from_ref(t),
            None => self.shared.get(&h).map_or(&[][..], |ts| ts.as_slice()),
        };
        all.iter().filter(|t| !has_key(t, key)).cloned().collect()
    }

    fn put(&mut self, h: u64, key: &[u8], t: &Arc<Tenant>) {
        // The common case, a hash no other key has: one insert.
        if !self.shared.contains_key(&h) && self.map.get(&h).is_none_or(|o| has_key(o, key)) {
            self.map.insert(h, t.clone());
            return;
        }
        let mut ts = self.others(h, key);
        ts.push(t.clone());
        self.store(h, ts);
    }

    fn take(&mut self, h: u64, key: &[u8]) {
        let rest = self.others(h, key);
        self.store(h, rest);
    }

    /// Make `ts` the tenants at `h`.
    fn store(&mut self, h: u64, mut ts: Vec<Arc<Tenant>>) {
        match ts.len() {
            0 => {
                self.map.remove(&h);
                self.shared.remove(&h);
            }
            1 => {
                self.shared.remove(&h);
                self.map.insert(h, ts.swap_remove(0));
            }
            _ => {
                self.map.remove(&h);
                self.shared.insert(h, Arc::new(ts));
            }
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.map.len() + self.shared.values().map(|ts| ts.len()).sum::<usize>()
    }
}

impl fmt::Debug for KeyIndex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyIndex").field("hashes", &(self.map.len() + self.shared.len())).finish()
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
            aliases: aliases.iter().map(|a| (*a).into()).collect(),
            history: Default::default(),
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
        assert!(index.map.get(&7).is_none());
        assert_eq!(index.shared.get(&7).map(|ts| ts.len()), Some(2));
        assert_eq!(index.find(7, b"x").map(|t| t.id.as_str()), Some("x"));
        assert_eq!(index.find(7, b"y").map(|t| t.id.as_str()), Some("y"));
        assert!(index.find(7, b"z").is_none());
        // Replacing one keeps the other.
        index.put(7, b"y", &tenant("y", &["y1"]));
        assert_eq!(index.find(7, b"y").map(|t| t.aliases.len()), Some(1));
        assert_eq!(index.find(7, b"x").map(|t| t.id.as_str()), Some("x"));
        index.take(7, b"x");
        assert!(index.shared.get(&7).is_none());
        assert!(matches!(index.map.get(&7), Some(t) if t.id == "y"));
        index.take(7, b"y");
        assert_eq!(index.len(), 0);
    }

    #[test]
    fn an_index_built_at_once_finds_what_one_built_key_by_key_does() {
        let tenants: Vec<Arc<Tenant>> = (0..5000)
            .map(|i| {
                let aliases: Vec<String> = (0..i % 3).map(|j| format!("a{i}-{j}")).collect();
                tenant(&format!("t{i}"), &aliases.iter().map(String::as_str).collect::<Vec<_>>())
            })
            .collect();
        let built = KeyIndex::from_tenants(&tenants);
        let mut one_by_one = KeyIndex::default();
        for t in &tenants {
            one_by_one.insert(t);
        }
        assert_eq!(built.len(), one_by_one.len());
        for t in &tenants {
            for key in t.keys() {
                assert_eq!(built.get(key.as_bytes()).map(|f| f.id.as_str()), Some(t.id.as_str()), "{key}");
            }
        }
        assert!(built.get(b"t5000").is_none());
        assert!(built.get(b"a1-1").is_none());
    }
}
