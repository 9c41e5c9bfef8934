//! Weighted rendezvous (highest-random-weight) placement of tenants on clusters.
//!
//! Every node computes placement while applying a command, so the result must
//! be bit-for-bit identical everywhere: the hash is our own (not `std`'s, whose
//! algorithm may change between releases) and the logarithm is computed with
//! IEEE-754 basic operations only, which are exactly rounded on every platform,
//! instead of `f64::ln`, whose last bit depends on the maths library.

use crate::model::Cluster;
use crate::State;

/// The cluster a tenant hashes to among `clusters`, or `None` when no
/// cluster is placeable (active and not dedicated).
pub fn place<'a>(tenant: &str, clusters: impl IntoIterator<Item = &'a Cluster>) -> Option<&'a Cluster> {
    let mut best: Option<(f64, &Cluster)> = None;
    for c in clusters.into_iter().filter(|c| c.placeable()) {
        let s = score(tenant, &c.id, c.weight);
        // Ties (practically impossible) go to the smaller id, independent of order.
        let better = match best {
            None => true,
            Some((bs, bc)) => s > bs || (s == bs && c.id < bc.id),
        };
        if better {
            best = Some((s, c));
        }
    }
    best.map(|(_, c)| c)
}

/// One tenant that today's hashed placement would put elsewhere.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Move {
    pub tenant: String,
    pub from: String,
    pub to: String,
    /// The tenant's revision when the plan was made: moving it with this
    /// expected revision leaves a tenant changed since then alone.
    pub revision: u64,
}

/// What `rebalance` found: every misplaced tenant counted, the first listed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    pub misplaced: u64,
    pub moves: Vec<Move>,
}

/// Which unpinned tenants would move to reach today's hashed placement over
/// `state`'s clusters (at most `limit` listed, in id order). Pinned tenants
/// never move. A walk over every tenant: run it off the async workers.
pub fn rebalance(state: &State, limit: usize) -> Plan {
    let clusters: Vec<&Cluster> = state.clusters().map(|c| &**c).collect();
    let mut plan = Plan::default();
    for t in state.tenants_after(None).filter(|t| !t.pinned) {
        let Some(c) = place(&t.id, clusters.iter().copied()) else { continue };
        if c.id != t.cluster {
            plan.misplaced += 1;
            if plan.moves.len() < limit {
                plan.moves.push(Move { tenant: t.id.to_string(), from: t.cluster.to_string(), to: c.id.clone(), revision: t.revision });
            }
        }
    }
    plan
}

/// Weighted HRW score: `w / -ln(u)` with `u` uniform in (0, 1) from the hash
/// of (cluster, tenant). The highest score wins; a cluster's share of tenants
/// is proportional to its weight.
pub fn score(tenant: &str, cluster: &str, weight: u32) -> f64 {
    let h = hash(cluster, tenant);
    // 53 random bits, centred in their interval so u is never 0 or 1.
    let u = ((h >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
    f64::from(weight) / -ln(u)
}

/// FNV-1a over `cluster 0xff tenant`, finished with the MurmurHash3 fmix64
/// avalanche so that similar ids give unrelated scores.
fn hash(cluster: &str, tenant: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in cluster.bytes().chain(std::iter::once(0xff)).chain(tenant.bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^= h >> 33;
    h
}

/// Natural logarithm of a positive, finite, normal `x` using only exactly
/// rounded operations: `x = m · 2^e` with `m` in [1, 2), then
/// `ln m = 2·atanh(t)`, `t = (m-1)/(m+1)` in [0, 1/3), summed as a series.
fn ln(x: f64) -> f64 {
    const LN_2: f64 = std::f64::consts::LN_2;
    let bits = x.to_bits();
    let e = ((bits >> 52) & 0x7ff) as i64 - 1023;
    let m = f64::from_bits((bits & 0x000f_ffff_ffff_ffff) | 0x3ff0_0000_0000_0000);
    let t = (m - 1.0) / (m + 1.0);
    let t2 = t * t;
    // t < 1/3, so t^(2k+1)/(2k+1) falls below 2^-53 relative well before k = 20.
    let mut term = t;
    let mut sum = 0.0;
    for k in 0..20 {
        sum += term / f64::from(2 * k + 1);
        term *= t2;
    }
    e as f64 * LN_2 + 2.0 * sum
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ClusterState;
    use proptest::prelude::*;

    fn cluster(id: &str, weight: u32) -> Cluster {
        Cluster { weight, ..Cluster::new(id) }
    }

    #[test]
    fn ln_matches_std_closely() {
        for x in [1e-16, 1e-9, 0.001, 0.25, 0.5, 0.75, 0.999_999, 1.0 - 1e-15] {
            let ours = ln(x);
            let std = x.ln();
            assert!((ours - std).abs() <= 1e-14 * std.abs().max(1.0), "ln({x}) = {ours}, std {std}");
        }
    }

    #[test]
    fn hash_is_stable_across_releases() {
        // Placement is stored, but a changed hash would change where every
        // future tenant lands and what `rebalance` proposes: pin the values.
        assert_eq!(hash("mt1", "123456"), PINNED_HASH);
        assert_eq!(score("123456", "mt1", 100).to_bits(), PINNED_SCORE_BITS);
        assert_eq!(place("123456", &[cluster("mt1", 100), cluster("mt2", 100)]).map(|c| c.id.as_str()), Some("mt2"));
    }
    // Recorded once from this implementation; see `hash_is_stable_across_releases`.
    const PINNED_HASH: u64 = 3_732_277_913_299_735_502;
    const PINNED_SCORE_BITS: u64 = 4_634_004_640_513_178_988;

    #[test]
    fn dedicated_draining_and_down_are_never_chosen() {
        let mut d = cluster("dedicated", 10_000);
        d.dedicated = true;
        let mut dr = cluster("draining", 10_000);
        dr.state = ClusterState::Draining;
        let mut dn = cluster("down", 10_000);
        dn.state = ClusterState::Down;
        let clusters = [d, dr, dn, cluster("shared", 1)];
        for i in 0..500 {
            assert_eq!(place(&format!("t{i}"), &clusters).map(|c| c.id.as_str()), Some("shared"));
        }
        assert!(place("t", &clusters[..3]).is_none());
    }

    #[test]
    fn weights_are_respected() {
        let clusters = [cluster("a", 100), cluster("b", 300)];
        let n = 20_000;
        let on_b = (0..n).filter(|i| place(&format!("tenant-{i}"), &clusters).map(|c| c.id.as_str()) == Some("b")).count();
        let share = on_b as f64 / n as f64;
        assert!((0.72..0.78).contains(&share), "b got {share}, expected about 0.75");
    }

    proptest! {
        #[test]
        fn adding_a_cluster_moves_tenants_only_onto_it(
            tenants in proptest::collection::vec("[a-z0-9]{1,12}", 1..200),
            weights in proptest::collection::vec(1u32..1000, 1..8),
            new_weight in 1u32..1000,
        ) {
            let before: Vec<Cluster> = weights.iter().enumerate().map(|(i, w)| cluster(&format!("c{i}"), *w)).collect();
            let mut after = before.clone();
            after.push(cluster("new", new_weight));
            for t in &tenants {
                let a = place(t, &before).map(|c| c.id.clone());
                let b = place(t, &after).map(|c| c.id.clone());
                prop_assert!(a == b || b.as_deref() == Some("new"), "{t} moved from {a:?} to {b:?}");
            }
        }

        #[test]
        fn placement_ignores_cluster_order(tenant in "[a-z0-9]{1,20}", n in 1usize..10) {
            let mut cs: Vec<Cluster> = (0..n).map(|i| cluster(&format!("c{i}"), 50 + i as u32)).collect();
            let a = place(&tenant, &cs).map(|c| c.id.clone());
            cs.reverse();
            prop_assert_eq!(a, place(&tenant, &cs).map(|c| c.id.clone()));
        }
    }
}
