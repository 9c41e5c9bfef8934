//! Tenant keys (ids and aliases) → tenant: the lookup behind every
//! synthesised answer, so the one the query path makes most.
//!
//! A 64-bit hash of the key's bytes → the tenant, in a copy-on-write radix
//! of fixed shape (`Slots`): the hash's top four nibbles pick one of
//! 65,536 leaves through four levels of 16-way nodes, and a leaf is the
//! entries of its hashes, sorted (about 15 a leaf at 1M keys, 150 at 10M).
//! A lookup is four array indexes and a step or two from where the hash
//! falls in its leaf: a cache miss for the lowest node, the leaf and the
//! tenant, where the
//! persistent B-tree before it (`imbl::OrdMap`) walked four levels of
//! 64-key nodes. With `warm`, which lets a batch of queries wait for
//! their misses together, the key lookups went from 17% of the UDP path's
//! CPU at 1M tenants to 9% (`perf record`, bench/README.md). A published
//! state still clones in O(1) (one `Arc`); a change copies four nodes of
//! 16 pointers and one leaf at most, once per published state. An entry
//! is the hash and the table's own `Arc<Tenant>`, 16 bytes (in the B-tree
//! about 26).
//!
//! The key itself is not stored again: a lookup checks the key against the
//! tenant's id and aliases. Two keys whose hashes agree are rare enough at
//! 64 bits that they live apart, in `shared`, which is nearly always
//! empty: the common entry pays nothing for them. The hash is seeded per
//! process, so no one can aim names at one leaf.
//!
//! Ids and aliases share one namespace (no alias is a tenant id, none
//! belongs to two tenants), so a key names at most one tenant.

use std::fmt;
use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;

use imbl::OrdMap;

use crate::model::Tenant;

/// Hash → tenant: a radix of four levels of 16-way nodes chosen by the
/// hash's top four nibbles, above 65,536 leaves, each sorted by hash. The
/// lowest nodes hold their leaves' lengths beside their pointers
/// (`Arc<[Entry]>`), so a lookup goes from one straight to the entry it
/// wants, and finds it by where its hash falls between the leaf's bounds
/// (`find`): the upper levels (34 KB) stay in cache, so a lookup costs
/// one cache miss for the lowest node, one for the leaf, one for the
/// tenant. Narrow nodes make a change cheap after a publish: it copies
/// four nodes of 16 pointers and the leaf (where 256-wide nodes copied,
/// and bumped the counts of, 256 pointers per change). Untouched nodes
/// share one empty node per level, so an empty index is a few small
/// allocations.
#[derive(Clone)]
struct Slots {
    root: Arc<Node<Arc<L1>>>,
    len: usize,
}

type Entry = (u64, Arc<Tenant>);
type Leaf = Arc<[Entry]>;
type L3 = Node<Leaf>;
type L2 = Node<Arc<L3>>;
type L1 = Node<Arc<L2>>;
const FAN: usize = 16;

/// One radix node: its children by one nibble of the hash.
#[derive(Clone)]
struct Node<T>([T; FAN]);

impl<T: Clone> Node<T> {
    fn filled(child: T) -> Node<T> {
        Node(std::array::from_fn(|_| child.clone()))
    }
}

/// The nibble of `h` that picks a child at `level` (0: the root's).
#[inline]
fn nibble(h: u64, level: u32) -> usize {
    (h >> (60 - 4 * level)) as usize & (FAN - 1)
}

/// Where `h` is in `leaf` (sorted, of one 16-bit prefix), as
/// `binary_search` says it. Hashes are uniform (and seeded, so no one can
/// bunch them), so an entry sits near its share of the prefix's range:
/// start there and step to it, a step or two at the sizes we hold.
#[inline]
fn find(leaf: &[Entry], h: u64) -> Result<usize, usize> {
    let len = leaf.len();
    let guess = ((u128::from(h << 16) * len as u128) >> 64) as usize;
    let mut i = guess.min(len);
    while i < len && leaf[i].0 < h {
        i += 1;
    }
    while i > 0 && leaf[i - 1].0 >= h {
        i -= 1;
    }
    match leaf.get(i) {
        Some(e) if e.0 == h => Ok(i),
        _ => Err(i),
    }
}

impl Default for Slots {
    fn default() -> Slots {
        let empty: Leaf = Arc::new([]);
        let l3 = Arc::new(Node::filled(empty));
        let l2 = Arc::new(Node::filled(l3));
        let l1 = Arc::new(Node::filled(l2));
        Slots { root: Arc::new(Node::filled(l1)), len: 0 }
    }
}

impl Slots {
    #[inline]
    fn leaf(&self, h: u64) -> &[Entry] {
        let l1 = &self.root.0[nibble(h, 0)];
        let l2 = &l1.0[nibble(h, 1)];
        let l3 = &l2.0[nibble(h, 2)];
        &l3.0[nibble(h, 3)]
    }

    /// The place of `h`'s leaf, its nodes copied on the way down where a
    /// published state shares them.
    fn leaf_mut(&mut self, h: u64) -> &mut Leaf {
        let l1 = Arc::make_mut(&mut Arc::make_mut(&mut self.root).0[nibble(h, 0)]);
        let l2 = Arc::make_mut(&mut l1.0[nibble(h, 1)]);
        let l3 = Arc::make_mut(&mut l2.0[nibble(h, 2)]);
        &mut l3.0[nibble(h, 3)]
    }

    fn get(&self, h: u64) -> Option<&Arc<Tenant>> {
        let leaf = self.leaf(h);
        leaf.get(find(leaf, h).ok()?).map(|e| &e.1)
    }

    /// Replace `h`'s leaf by `edit` of a copy of it.
    fn rebuild(&mut self, h: u64, edit: impl FnOnce(&mut Vec<Entry>)) {
        let leaf = self.leaf_mut(h);
        let mut copy = Vec::with_capacity(leaf.len() + 1);
        copy.extend(leaf.iter().cloned());
        edit(&mut copy);
        *leaf = copy.into();
    }

    fn insert(&mut self, h: u64, t: Arc<Tenant>) {
        let mut added = false;
        self.rebuild(h, |leaf| match find(leaf, h) {
            Ok(at) => leaf[at].1 = t,
            Err(at) => {
                leaf.insert(at, (h, t));
                added = true;
            }
        });
        self.len += usize::from(added);
    }

    fn remove(&mut self, h: u64) {
        if self.get(h).is_none() {
            return;
        }
        self.rebuild(h, |leaf| {
            if let Ok(at) = find(leaf, h) {
                leaf.remove(at);
            }
        });
        self.len -= 1;
    }

    /// The slots of `entries`, sorted by hash with no hash twice: each
    /// leaf allocated once, at its size.
    fn from_sorted(entries: Vec<Entry>) -> Slots {
        let mut slots = Slots { len: entries.len(), ..Slots::default() };
        let mut entries = entries.into_iter().peekable();
        let mut leaf = Vec::new();
        while let Some(first) = entries.next() {
            let h = first.0;
            leaf.push(first);
            while let Some(e) = entries.next_if(|e| e.0 >> 48 == h >> 48) {
                leaf.push(e);
            }
            *slots.leaf_mut(h) = leaf.drain(..).collect();
        }
        slots
    }
}

#[derive(Clone, Default)]
pub(super) struct KeyIndex {
    /// The hash of each key held by one key alone → its tenant.
    map: Slots,
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

    /// Bring the entries and tenants of `keys` into the cache, all at
    /// once: a hint, changing nothing. A lookup costs two cache misses
    /// one after the other (the leaf, then the tenant); for a batch of
    /// queries these are independent, so walking the batch's leaves first
    /// and its tenants next lets the processor wait for them together,
    /// where the lookups one by one wait for each in turn.
    pub(super) fn warm<'k>(&self, keys: impl Iterator<Item = &'k [u8]>) {
        const KEYS_MAX: usize = 128;
        let mut tenants: [Option<&Tenant>; KEYS_MAX] = [None; KEYS_MAX];
        for (key, slot) in keys.zip(tenants.iter_mut()) {
            let h = self.hash(key);
            let leaf = self.map.leaf(h);
            *slot = find(leaf, h).ok().and_then(|at| leaf.get(at)).map(|e| &*e.1);
        }
        let touched = tenants.iter().flatten().fold(0usize, |sum, t| sum.wrapping_add(t.id.len()));
        std::hint::black_box(touched);
    }

    /// Index `t` under its id and each alias, replacing what those keys held.
    pub(super) fn insert(&mut self, t: &Arc<Tenant>) {
        for key in t.keys() {
            let key = key.as_bytes();
            self.put(self.hash(key), key, t);
        }
    }

    /// The index of `tenants` (distinct ids), built from their keys sorted
    /// by hash: each leaf is made once, at its size. An entry while
    /// sorting is the hash and the tenant's place, 16 bytes (at 10M
    /// tenants the sort's memory is what a restart peaks at).
    pub(super) fn from_tenants(tenants: &[Arc<Tenant>]) -> KeyIndex {
        let mut index = KeyIndex::default();
        let mut entries: Vec<(u64, usize)> = Vec::with_capacity(tenants.len());
        for (i, t) in tenants.iter().enumerate() {
            entries.extend(t.keys().map(|key| (index.hash(key.as_bytes()), i)));
        }
        // By hash, then by place: the order inserting one by one would take.
        entries.sort_unstable();
        let mut single = Vec::with_capacity(entries.len());
        for group in entries.chunk_by(|a, b| a.0 == b.0) {
            match group {
                [(h, i)] => single.extend(tenants.get(*i).map(|t| (*h, t.clone()))),
                // A hash two keys share (or a key twice, which the
                // namespace rules out): as inserting one by one would.
                _ => {
                    for (h, t) in group.iter().filter_map(|&(h, i)| Some((h, tenants.get(i)?))) {
                        let keys: Vec<&str> = t.keys().filter(|k| index.hash(k.as_bytes()) == h).collect();
                        for key in keys {
                            index.put(h, key.as_bytes(), t);
                        }
                    }
                }
            }
        }
        index.map = Slots::from_sorted(single);
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
        match self.map.get(h) {
            Some(t) => Some(t).filter(|t| has_key(t, key)),
            None => self.shared.get(&h)?.iter().find(|t| has_key(t, key)),
        }
    }

    /// The tenants at `h` but the one `key` names.
    fn others(&self, h: u64, key: &[u8]) -> Vec<Arc<Tenant>> {
        let all = match self.map.get(h) {
            Some(t) => std::slice::from_ref(t),
            None => self.shared.get(&h).map_or(&[][..], |ts| ts.as_slice()),
        };
        all.iter().filter(|t| !has_key(t, key)).cloned().collect()
    }

    fn put(&mut self, h: u64, key: &[u8], t: &Arc<Tenant>) {
        // The common case, a hash no other key has: one insert.
        if !self.shared.contains_key(&h) && self.map.get(h).is_none_or(|o| has_key(o, key)) {
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
                self.map.remove(h);
                self.shared.remove(&h);
            }
            1 => {
                self.shared.remove(&h);
                self.map.insert(h, ts.swap_remove(0));
            }
            _ => {
                self.map.remove(h);
                self.shared.insert(h, Arc::new(ts));
            }
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.map.len + self.shared.values().map(|ts| ts.len()).sum::<usize>()
    }
}

impl fmt::Debug for KeyIndex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyIndex").field("hashes", &(self.map.len + self.shared.len())).finish()
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
        assert!(index.map.get(7).is_none());
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
        assert!(matches!(index.map.get(7), Some(t) if t.id == "y"));
        index.take(7, b"y");
        assert_eq!(index.len(), 0);
    }

    #[test]
    fn find_agrees_with_a_binary_search() {
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let t = tenant("t", &[]);
        for len in [0, 1, 2, 5, 15, 150, 1000] {
            // One 16-bit prefix, as in a leaf; bunched at one end too.
            for spread in [u64::MAX >> 16, 0xffff] {
                let mut leaf: Vec<Entry> = (0..len).map(|_| ((0xabcd << 48) | (next() & spread), t.clone())).collect();
                leaf.sort_by_key(|e| e.0);
                leaf.dedup_by_key(|e| e.0);
                let probes = leaf
                    .iter()
                    .map(|e| e.0)
                    .chain((0..50).map(|_| (0xabcd << 48) | (next() & spread)))
                    .chain([0xabcd << 48, (0xabcd << 48) | (u64::MAX >> 16)]);
                for h in probes {
                    assert_eq!(find(&leaf, h), leaf.binary_search_by_key(&h, |e| e.0), "{len} {h:x}");
                }
            }
        }
    }

    #[test]
    fn a_clone_keeps_its_slots_while_the_original_changes() {
        // Hashes chosen to share a leaf, a middle node, or neither.
        let hashes = [0x0101_0000_0000_0001, 0x0101_0000_0000_0002, 0x0102_0000_0000_0000, 0xff00_0000_0000_0000];
        let mut slots = Slots::default();
        for (i, h) in hashes.iter().enumerate() {
            slots.insert(*h, tenant(&format!("t{i}"), &[]));
        }
        let published = slots.clone();
        slots.remove(hashes[0]);
        slots.insert(hashes[1], tenant("replaced", &[]));
        slots.insert(0x0101_0000_0000_0000, tenant("new", &[]));
        slots.remove(0x1234);
        let id = |s: &Slots, h: u64| s.get(h).map(|t| t.id.to_string());
        assert_eq!(id(&published, hashes[0]).as_deref(), Some("t0"));
        assert_eq!(id(&published, hashes[1]).as_deref(), Some("t1"));
        assert_eq!(id(&published, 0x0101_0000_0000_0000), None);
        assert_eq!(published.len, 4);
        assert_eq!(id(&slots, hashes[0]), None);
        assert_eq!(id(&slots, hashes[1]).as_deref(), Some("replaced"));
        assert_eq!(id(&slots, 0x0101_0000_0000_0000).as_deref(), Some("new"));
        assert_eq!(id(&slots, hashes[3]).as_deref(), Some("t3"));
        assert_eq!(slots.len, 4);
        // Built at once from the same entries, the same answers.
        let mut entries: Vec<Entry> = hashes.iter().filter_map(|&h| slots.get(h).map(|t| (h, t.clone()))).collect();
        entries.push((0x0101_0000_0000_0000, tenant("new", &[])));
        entries.sort_by_key(|e| e.0);
        let built = Slots::from_sorted(entries);
        for h in hashes.into_iter().chain([0x0101_0000_0000_0000, 0x1234]) {
            assert_eq!(id(&built, h), id(&slots, h), "{h:x}");
        }
        assert_eq!(built.len, slots.len);
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
