//! Which addresses a cluster's tenants are answered with, from the
//! committed health verdicts (`serving`), and when probers' verdicts make
//! a change the leader commits (`quorum_changes`).
//!
//! Nodes chosen as probers check every address and report their own
//! verdicts to the leader; the leader commits a change of an address's
//! health (`Command::SetHealth`) only when a quorum of probers agrees.
//! Answers read only what committed, so every node answers alike at a
//! revision, and one prober cut off from the addresses changes nothing.

use std::net::IpAddr;

use crate::health::{AllDown, Verdict, FAILOVER_HOPS};
use crate::model::Cluster;

/// Which of the serving cluster's addresses are answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answered {
    /// Those not down.
    Healthy,
    /// Every one (fail open).
    All,
    /// None (fail closed).
    Nothing,
}

impl Answered {
    /// Whether address `a` of `c` is answered.
    pub fn includes(self, c: &Cluster, a: IpAddr) -> bool {
        match self {
            Answered::Healthy => !c.is_down(a),
            Answered::All => true,
            Answered::Nothing => false,
        }
    }
}

/// Which cluster's addresses the tenants of `c` are answered with, and
/// which of them: `c`'s healthy ones while it is `answerable`; else those
/// of the first answerable cluster of its failover chain; else `c`'s, all
/// of them (fail open) or none (fail closed). A cluster the operator
/// marked `down` fails over as one whose addresses are all down (and, with
/// no failover, fails open as before). `cluster` looks a cluster up by id.
pub fn serving<'a>(c: &'a Cluster, cluster: impl Fn(&str) -> Option<&'a Cluster>) -> (&'a Cluster, Answered) {
    if c.answerable() {
        return (c, Answered::Healthy);
    }
    let mut at = c;
    for _ in 0..FAILOVER_HOPS {
        match at.failover.as_deref().and_then(&cluster) {
            Some(f) if f.answerable() => return (f, Answered::Healthy),
            Some(f) => at = f,
            None => break,
        }
    }
    match c.all_down {
        AllDown::FailOpen => (c, Answered::All),
        AllDown::FailClosed => (c, Answered::Nothing),
    }
}

/// The changes a quorum of probers asks for: for each checked cluster
/// whose committed down set differs from what a quorum says, the new down
/// set. An address changes only when at least `quorum` of the `probers`
/// agree on the other verdict; a prober with no verdict on an address
/// (just started, just added, not heard from) counts for neither side.
/// `vote(i, cluster, address)` is prober `i`'s verdict.
pub fn quorum_changes<'a>(
    clusters: impl Iterator<Item = &'a Cluster>,
    probers: usize,
    quorum: usize,
    vote: impl Fn(usize, &str, IpAddr) -> Option<Verdict>,
) -> Vec<(String, Vec<IpAddr>)> {
    let mut out = Vec::new();
    for c in clusters.filter(|c| c.check.is_some()) {
        let mut down = Vec::new();
        for a in c.addresses() {
            let count = |v: Verdict| (0..probers).filter(|&i| vote(i, &c.id, a) == Some(v)).count();
            let now_down = c.is_down(a);
            let flip = if now_down { count(Verdict::Up) >= quorum } else { count(Verdict::Down) >= quorum };
            if now_down != flip {
                down.push(a);
            }
        }
        down.sort();
        if down != c.down {
            out.push((c.id.clone(), down));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn checked(id: &str, addrs: &[&str]) -> Cluster {
        let mut c = Cluster::new(id);
        for a in addrs {
            match a.parse::<IpAddr>() {
                Ok(IpAddr::V4(v4)) => c.ipv4.push(v4),
                Ok(IpAddr::V6(v6)) => c.ipv6.push(v6),
                Err(e) => panic!("{a}: {e}"),
            }
        }
        c.check = Some(crate::health::Check::new(crate::health::Probe::Tcp { port: 80 }));
        c
    }

    type Votes = BTreeMap<(String, IpAddr), Verdict>;

    fn votes(c: &str, list: &[(&str, Verdict)]) -> Votes {
        list.iter().map(|(a, v)| ((c.to_string(), a.parse().unwrap()), *v)).collect()
    }

    fn changes(c: &Cluster, probers: &[&Votes], quorum: usize) -> Vec<(String, Vec<IpAddr>)> {
        quorum_changes([c].into_iter(), probers.len(), quorum, |i, id, a| probers[i].get(&(id.to_string(), a)).copied())
    }

    #[test]
    fn one_prober_of_three_changes_nothing() {
        let c = checked("a", &["192.0.2.1", "192.0.2.2"]);
        let cut_off = votes("a", &[("192.0.2.1", Verdict::Down), ("192.0.2.2", Verdict::Down)]);
        let fine = votes("a", &[("192.0.2.1", Verdict::Up), ("192.0.2.2", Verdict::Up)]);
        assert!(changes(&c, &[&cut_off, &fine, &fine], 2).is_empty());
        // Two probers that have not reported yet count for neither side.
        assert!(changes(&c, &[&cut_off], 2).is_empty());
    }

    #[test]
    fn a_quorum_takes_an_address_down_and_back() {
        let mut c = checked("a", &["192.0.2.1", "192.0.2.2"]);
        let down = votes("a", &[("192.0.2.1", Verdict::Down), ("192.0.2.2", Verdict::Up)]);
        let up = votes("a", &[("192.0.2.1", Verdict::Up), ("192.0.2.2", Verdict::Up)]);
        let first = changes(&c, &[&down, &down, &up], 2);
        assert_eq!(first, vec![("a".to_string(), vec!["192.0.2.1".parse().unwrap()])]);
        c.down = first[0].1.clone();
        assert!(changes(&c, &[&down, &down, &up], 2).is_empty(), "settled");
        // One prober still says down: not enough to keep it down against a quorum.
        let back = changes(&c, &[&down, &up, &up], 2);
        assert_eq!(back, vec![("a".to_string(), vec![])]);
    }

    #[test]
    fn serving_follows_the_failover_chain() {
        let mut a = checked("a", &["192.0.2.1"]);
        let mut b = checked("b", &["192.0.2.2"]);
        a.failover = Some("b".into());
        a.down = vec!["192.0.2.1".parse().unwrap()];
        let look = |id: &str| [&a, &b].into_iter().find(|c| c.id == id);
        assert_eq!(serving(&a, look).0.id, "b");
        b.down = vec!["192.0.2.2".parse().unwrap()];
        b.failover = Some("a".into());
        let look = |id: &str| [&a, &b].into_iter().find(|c| c.id == id);
        let (s, answered) = serving(&a, look);
        assert_eq!((s.id.as_str(), answered), ("a", Answered::All), "a loop ends, failing open");
        a.all_down = AllDown::FailClosed;
        let look = |id: &str| [&a, &b].into_iter().find(|c| c.id == id);
        assert_eq!(serving(&a, look), (&a, Answered::Nothing));
        // Marked down by the operator: fails over too.
        b.down.clear();
        a.down.clear();
        a.state = crate::model::ClusterState::Down;
        let look = |id: &str| [&a, &b].into_iter().find(|c| c.id == id);
        assert_eq!(serving(&a, look).0.id, "b");
    }
}
