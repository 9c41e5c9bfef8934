//! The change stream of the relay tree: what every node (voter, learner or
//! edge) serves to the followers below it, and what they report back.
//!
//! A node keeps the tail of the entries it applied (`Feed`: each entry's
//! revision and its commands, encoded once), so a follower that asks to
//! continue after revision R gets R+1, R+2, … from memory; one that asks
//! for a revision the tail no longer holds gets the whole state instead,
//! streamed in chunks from one published `State`. Entries reach the feed
//! only once applied, and only committed entries are ever applied, so a
//! follower can never be ahead of what committed.
//!
//! Followers report their progress (applied revision, staleness, and the
//! tree below them) up the same stream (`Followers`), so any node can tell
//! who it feeds, directly or through relays, and how far each is, without
//! the leader keeping every PoP in its Raft membership.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use switchboard_domain::state::Marks;
use switchboard_storage::{decode, encode, StorageError};
use tokio::sync::watch;

use crate::{Batch, Member, NodeId, NodeInfo, TreeNode};

/// Most entries a node keeps for its followers to catch up from.
pub const FEED_TAIL_ENTRIES_MAX: usize = 100_000;
/// Most bytes of entries a node keeps for its followers: some 100,000 single
/// writes, or some 300 full import batches (50 KB each; a follower that
/// falls further behind a bulk import gets the state instead). It is
/// memory every node holds, followers or not.
pub const FEED_TAIL_BYTES_MAX: usize = 16 * 1024 * 1024;
/// Bytes of entries (or of a snapshot's values) sent in one message at most
/// (a single larger entry goes alone).
pub const FEED_MESSAGE_BYTES: usize = 1024 * 1024;
/// An upstream sends a follower at most one message of entries per this
/// long: an entry that applies sooner after the last message waits for
/// more to go with it. Idle, nothing waits; under load a follower applies,
/// writes, publishes and reports once per message (at most 100 a second),
/// not once per entry, for at most this much more latency per tier.
pub const FEED_GATHER: Duration = Duration::from_millis(25);
/// How often an upstream tells its followers how fresh it is, entries or not.
pub const FEED_HEARTBEAT: Duration = Duration::from_millis(250);
/// A follower that hears nothing from its upstream for this long drops it
/// and turns to the next: many heartbeats, so a slow WAN link is not a
/// dead one.
pub const FEED_SILENCE_MAX: Duration = Duration::from_secs(3);
/// Messages queued towards one follower (or one upstream) at most.
pub(crate) const FEED_QUEUE: usize = 4;

/// One applied log entry as the stream carries it: its revision and its
/// commands encoded once (`encode_entry`), shared by every follower and
/// passed on unchanged by relays.
#[derive(Debug, Clone)]
pub(crate) struct FeedEntry {
    pub revision: u64,
    pub data: Arc<Vec<u8>>,
}

/// An entry's commands as the stream carries them; `None` for an entry
/// with none (blank, membership), which only advances the revision.
pub(crate) fn encode_entry(batch: Option<&Batch>) -> Result<Vec<u8>, StorageError> {
    encode("feed entry", &batch)
}

pub(crate) fn decode_entry(bytes: &[u8]) -> Result<Option<Batch>, StorageError> {
    decode("feed entry", bytes)
}

/// What a follower asks for next, as the tail can answer it.
#[derive(Debug)]
pub(crate) enum Read {
    /// The next entries, in order, at most `FEED_MESSAGE_BYTES` (at least one).
    Entries(Vec<FeedEntry>),
    /// Nothing yet: the follower is at (or, after a failover, ahead of)
    /// this node's revision.
    Wait,
    /// The tail no longer holds the next revision: send the state.
    Gone,
}

#[derive(Debug)]
struct Tail {
    /// The revision just before `entries[0]` (the last one when empty).
    base: u64,
    entries: VecDeque<FeedEntry>,
    bytes: usize,
}

impl Tail {
    fn last(&self) -> u64 {
        self.base + self.entries.len() as u64
    }
}

/// The tail of applied entries a node serves its followers from.
#[derive(Debug)]
pub(crate) struct Feed {
    tail: Mutex<Tail>,
    /// The last revision in the tail, for followers waiting on it.
    last: watch::Sender<u64>,
}

impl Feed {
    /// An empty tail after `revision`: the state this node starts from.
    pub fn new(revision: u64) -> Feed {
        Feed { tail: Mutex::new(Tail { base: revision, entries: VecDeque::new(), bytes: 0 }), last: watch::channel(revision).0 }
    }

    /// Append an applied entry. One the tail already covers (the initial
    /// membership, at revision 0) is left out; one that does not follow it
    /// (the state was replaced meanwhile) starts a new tail.
    pub fn push(&self, entry: FeedEntry) {
        let last = {
            let Ok(mut t) = self.tail.lock() else { return };
            if entry.revision <= t.last() {
                return;
            }
            if entry.revision != t.last() + 1 {
                *t = Tail { base: entry.revision - 1, entries: VecDeque::new(), bytes: 0 };
            }
            t.bytes += entry.data.len();
            t.entries.push_back(entry);
            while t.entries.len() > FEED_TAIL_ENTRIES_MAX || (t.bytes > FEED_TAIL_BYTES_MAX && t.entries.len() > 1) {
                if let Some(old) = t.entries.pop_front() {
                    t.bytes -= old.data.len();
                    t.base = old.revision;
                }
            }
            t.last()
        };
        self.last.send_replace(last);
    }

    /// The state was replaced by one at `revision` (a snapshot installed):
    /// the tail restarts after it, and followers behind it get the state.
    pub fn reset(&self, revision: u64) {
        if let Ok(mut t) = self.tail.lock() {
            *t = Tail { base: revision, entries: VecDeque::new(), bytes: 0 };
        }
        self.last.send_replace(revision);
    }

    /// The entries from revision `next` on.
    pub fn read(&self, next: u64) -> Read {
        let Ok(t) = self.tail.lock() else { return Read::Wait };
        if next > t.last() {
            return Read::Wait;
        }
        if next <= t.base {
            return Read::Gone;
        }
        let mut out = Vec::new();
        let mut bytes = 0;
        for e in t.entries.range((next - t.base - 1) as usize..) {
            if !out.is_empty() && bytes + e.data.len() > FEED_MESSAGE_BYTES {
                break;
            }
            bytes += e.data.len();
            out.push(e.clone());
        }
        Read::Entries(out)
    }

    /// The last revision in the tail, as it changes.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.last.subscribe()
    }
}

/// What a follower sends up its stream.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) enum Up {
    /// The first message: follow from the revision after `after`.
    Follow { after: u64, info: NodeInfo },
    /// How far the follower and the tree below it are.
    Progress(Progress),
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct Progress {
    pub applied: u64,
    pub staleness_ms: Option<u64>,
    /// The lowest revision applied anywhere below the follower; `None`
    /// when nothing follows it.
    pub below_min: Option<u64>,
    /// The tree below the follower, sent at most every 250 ms (`None`:
    /// unchanged since the last one sent).
    pub tree: Option<Vec<TreeNode>>,
}

/// What an upstream sends down its stream.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) enum Down {
    /// Applied entries, in revision order, with no gap.
    Entries(Vec<(u64, Vec<u8>)>),
    /// A chunk of the whole state at `revision` (the follower was behind
    /// the tail); the follower replaces its state once `last` arrives.
    Snapshot { revision: u64, marks: Marks, values: Vec<Vec<u8>>, last: bool },
    /// How fresh the upstream is, every `FEED_HEARTBEAT`.
    Heartbeat(Fresh),
}

/// How fresh an upstream is, carried down the tree unchanged, so a PoP
/// however deep measures its staleness against the leader's time.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Fresh {
    /// Wall-clock milliseconds (since the Unix epoch) at which the leader
    /// last reached the Raft member at the top of this branch (for the
    /// leader: at which a quorum last acknowledged it); `None` if never.
    pub at_ms: Option<u64>,
    /// The leader, as the top of the branch knows it.
    pub leader: Option<(NodeId, NodeInfo)>,
    /// The Raft membership, as the top of the branch knows it.
    pub members: Vec<Member>,
    /// The revision the sender has applied.
    pub revision: u64,
}

/// What `--wait everywhere` and the tree view ask a node over the peer
/// network: has it, and has everything below it, applied `revision`?
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Ask {
    pub revision: u64,
    /// Send the tree below too.
    pub tree: bool,
}

/// A node's answer to `Ask`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct Reach {
    pub applied: u64,
    /// The nodes below it that have not applied the revision asked about.
    pub laggards: Vec<NodeId>,
    /// The tree below it, when asked.
    pub tree: Vec<TreeNode>,
}

#[derive(Debug)]
struct Follower {
    id: NodeId,
    info: NodeInfo,
    progress: Progress,
    tree: Vec<TreeNode>,
}

/// The followers a node feeds, with what they last reported.
#[derive(Debug)]
pub(crate) struct Followers {
    by_session: Mutex<BTreeMap<u64, Follower>>,
    sessions: AtomicU64,
    changed: watch::Sender<u64>,
}

impl Default for Followers {
    fn default() -> Self {
        Followers { by_session: Mutex::default(), sessions: AtomicU64::new(0), changed: watch::channel(0).0 }
    }
}

/// A follower's place in `Followers`, given up when its stream ends.
pub(crate) struct Session {
    followers: Arc<Followers>,
    key: u64,
}

impl Drop for Session {
    fn drop(&mut self) {
        if let Ok(mut m) = self.followers.by_session.lock() {
            m.remove(&self.key);
        }
        self.followers.changed.send_modify(|v| *v += 1);
    }
}

impl Session {
    pub fn report(&self, progress: Progress) {
        if let Ok(mut m) = self.followers.by_session.lock() {
            if let Some(f) = m.get_mut(&self.key) {
                if let Some(tree) = &progress.tree {
                    f.tree = tree.clone();
                }
                f.progress = Progress { tree: None, ..progress };
            }
        }
        self.followers.changed.send_modify(|v| *v += 1);
    }
}

impl Followers {
    /// A follower `id` begins a stream from `after`.
    pub fn join(self: &Arc<Self>, id: NodeId, info: NodeInfo, after: u64) -> Session {
        let key = self.sessions.fetch_add(1, Ordering::Relaxed);
        let progress = Progress { applied: after, ..Progress::default() };
        if let Ok(mut m) = self.by_session.lock() {
            m.insert(key, Follower { id, info, progress, tree: Vec::new() });
        }
        self.changed.send_modify(|v| *v += 1);
        Session { followers: self.clone(), key }
    }

    /// Changes whenever a follower joins, leaves or reports.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    /// Every node below `me`, direct followers first, each with its feeder.
    pub fn tree(&self, me: NodeId) -> Vec<TreeNode> {
        let Ok(m) = self.by_session.lock() else { return Vec::new() };
        let mut out: Vec<TreeNode> = m
            .values()
            .map(|f| TreeNode {
                id: f.id,
                info: f.info.clone(),
                upstream: me,
                applied: f.progress.applied,
                staleness_ms: f.progress.staleness_ms,
            })
            .collect();
        out.extend(m.values().flat_map(|f| f.tree.iter().cloned()));
        out
    }

    /// The lowest revision applied anywhere below; `None` when nothing follows.
    pub fn min_applied(&self) -> Option<u64> {
        let m = self.by_session.lock().ok()?;
        m.values().map(|f| f.progress.below_min.map_or(f.progress.applied, |b| b.min(f.progress.applied))).min()
    }

    /// The nodes below that have not applied `revision`: a direct follower
    /// by its report, one further down by the last tree its relay sent (or
    /// the relay itself, when that tree does not show the laggard yet).
    pub fn laggards(&self, revision: u64) -> Vec<NodeId> {
        let Ok(m) = self.by_session.lock() else { return Vec::new() };
        let mut out = Vec::new();
        for f in m.values() {
            if f.progress.applied < revision {
                out.push(f.id);
            }
            if f.progress.below_min.is_some_and(|b| b < revision) {
                let below: Vec<NodeId> = f.tree.iter().filter(|t| t.applied < revision).map(|t| t.id).collect();
                if below.is_empty() && f.progress.applied >= revision {
                    out.push(f.id);
                }
                out.extend(below);
            }
        }
        out.sort_unstable();
        out.dedup();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(revision: u64, bytes: usize) -> FeedEntry {
        FeedEntry { revision, data: Arc::new(vec![0; bytes]) }
    }

    fn revisions(read: Read) -> Vec<u64> {
        match read {
            Read::Entries(v) => v.iter().map(|e| e.revision).collect(),
            other => panic!("expected entries, got {other:?}"),
        }
    }

    #[test]
    fn the_tail_answers_in_order_waits_at_its_end_and_sends_the_state_before_it() {
        let feed = Feed::new(10);
        assert!(matches!(feed.read(11), Read::Wait), "nothing after the start yet");
        assert!(matches!(feed.read(10), Read::Gone), "before the start: the state");
        for r in 11..=15 {
            feed.push(entry(r, 10));
        }
        assert_eq!(revisions(feed.read(11)), vec![11, 12, 13, 14, 15]);
        assert_eq!(revisions(feed.read(14)), vec![14, 15]);
        assert!(matches!(feed.read(16), Read::Wait));
        assert!(matches!(feed.read(20), Read::Wait), "a follower ahead (after a failover) waits");
        assert_eq!(*feed.subscribe().borrow(), 15);
    }

    #[test]
    fn the_tail_is_bounded_and_a_message_by_bytes() {
        let feed = Feed::new(0);
        let big = FEED_MESSAGE_BYTES / 2 + 1;
        for r in 1..=3 {
            feed.push(entry(r, big));
        }
        assert_eq!(revisions(feed.read(1)), vec![1], "two would pass the message size");
        let feed = Feed::new(0);
        for r in 1..=(FEED_TAIL_ENTRIES_MAX as u64 + 5) {
            feed.push(entry(r, 1));
        }
        assert!(matches!(feed.read(5), Read::Gone), "the oldest entries are dropped");
        assert_eq!(revisions(feed.read(6))[0], 6);
        let huge = FEED_TAIL_BYTES_MAX / 2 + 1;
        let feed = Feed::new(0);
        for r in 1..=3 {
            feed.push(entry(r, huge));
        }
        assert!(matches!(feed.read(2), Read::Gone), "bytes bound the tail too");
        assert_eq!(revisions(feed.read(3)), vec![3], "the newest entry is always kept");
    }

    #[test]
    fn a_reset_or_a_jump_restarts_the_tail() {
        let feed = Feed::new(0);
        feed.push(entry(1, 1));
        feed.reset(50);
        assert!(matches!(feed.read(2), Read::Gone));
        assert!(matches!(feed.read(51), Read::Wait));
        feed.push(entry(60, 1));
        assert!(matches!(feed.read(51), Read::Gone), "a gap in what was pushed is never served");
        assert_eq!(revisions(feed.read(60)), vec![60]);
    }

    #[test]
    fn followers_report_the_tree_below_and_who_lags() {
        let followers = Arc::new(Followers::default());
        let info = |n: u64| NodeInfo { peer: format!("p{n}"), api: format!("a{n}") };
        let relay = followers.join(10, info(10), 5);
        let edge = followers.join(11, info(11), 7);
        assert_eq!(followers.min_applied(), Some(5));
        let below = vec![TreeNode { id: 20, info: info(20), upstream: 10, applied: 8, staleness_ms: Some(3) }];
        relay.report(Progress { applied: 9, staleness_ms: Some(1), below_min: Some(8), tree: Some(below.clone()) });
        edge.report(Progress { applied: 9, staleness_ms: Some(2), below_min: None, tree: None });
        assert_eq!(followers.min_applied(), Some(8));
        assert_eq!(followers.laggards(9), vec![20]);
        assert!(followers.laggards(8).is_empty());
        let tree = followers.tree(1);
        assert_eq!(tree.iter().map(|t| (t.id, t.upstream)).collect::<Vec<_>>(), vec![(10, 1), (11, 1), (20, 10)]);
        relay.report(Progress { applied: 9, staleness_ms: Some(1), below_min: Some(8), tree: None });
        assert_eq!(followers.tree(1).len(), 3, "a report without a tree keeps the last one");
        drop(relay);
        assert_eq!(followers.tree(1).iter().map(|t| t.id).collect::<Vec<_>>(), vec![11], "a stream that ends leaves");
        assert_eq!(followers.min_applied(), Some(9));
    }
}
