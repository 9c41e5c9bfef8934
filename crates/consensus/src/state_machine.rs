//! openraft's state machine: applies committed entries to the domain `State`,
//! persists what changed to RocksDB, and publishes the new state to readers.

use std::io::Cursor;
use std::sync::Arc;

use openraft::storage::{RaftStateMachine, Snapshot, SnapshotMeta};
use openraft::{Entry, EntryPayload, ErrorSubject, ErrorVerb, LogId, OptionalSend, RaftSnapshotBuilder, StorageError, StoredMembership};
use serde::{Deserialize, Serialize};
use switchboard_domain::State;
use switchboard_storage::keys::{KEY_SM, KEY_SNAPSHOT};
use switchboard_storage::{decode, decode_state, encode, encode_state, Store};
use tokio::sync::watch;

use crate::disk::Disk;
use crate::feed::{self, Feed, FeedEntry};
use crate::stats::Stats;
use crate::{io_err, NodeId, NodeInfo, Published, Response, TypeConfig};

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
struct SmMeta {
    last_applied: Option<LogId<NodeId>>,
    membership: StoredMembership<NodeId, NodeInfo>,
}

#[derive(Serialize, Deserialize)]
struct StoredSnapshot {
    meta: SnapshotMeta<NodeId, NodeInfo>,
    data: Vec<u8>,
}

pub struct StateMachine {
    store: Store,
    /// Writes wait here for space when the disk is full.
    disk: Arc<Disk>,
    state: State,
    meta: SmMeta,
    published: Published,
    applied_tx: watch::Sender<u64>,
    stats: Arc<Stats>,
    /// Where applied entries go for the followers below this node.
    feed: Arc<Feed>,
}

impl std::fmt::Debug for StateMachine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateMachine").field("last_applied", &self.meta.last_applied).finish()
    }
}

impl StateMachine {
    /// Load the applied state from `store` and publish it, so DNS answers
    /// from the last state before Raft has even started.
    pub fn open(
        store: Store,
        disk: Arc<Disk>,
    ) -> Result<(StateMachine, Published, watch::Receiver<u64>), switchboard_storage::StorageError> {
        let (state, meta) = store.load_state(KEY_SM)?;
        let meta: SmMeta = meta.map(|b| decode("state machine meta", &b)).transpose()?.unwrap_or_default();
        let published: Published = Arc::new(arc_swap::ArcSwap::from_pointee(state.clone()));
        let (applied_tx, applied_rx) = watch::channel(state.revision());
        let feed = Arc::new(Feed::new(state.revision()));
        let sm = StateMachine { store, disk, state, meta, published: published.clone(), applied_tx, stats: Arc::default(), feed };
        Ok((sm, published, applied_rx))
    }

    /// Count snapshot builds and installs in `stats`.
    pub(crate) fn with_stats(self, stats: Arc<Stats>) -> StateMachine {
        StateMachine { stats, ..self }
    }

    /// Where applied entries go for the followers below this node.
    pub(crate) fn feed(&self) -> Arc<Feed> {
        self.feed.clone()
    }

    fn publish(&self) {
        self.published.store(Arc::new(self.state.clone()));
        self.applied_tx.send_replace(self.state.revision());
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(&mut self) -> Result<(Option<LogId<NodeId>>, StoredMembership<NodeId, NodeInfo>), StorageError<NodeId>> {
        Ok((self.meta.last_applied, self.meta.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Response>, StorageError<NodeId>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        self.stats.applying();
        let mut responses = Vec::new();
        // What every command changed, in order: storage and the change
        // history are written from these, nothing is read back or diffed.
        let mut effects = Vec::new();
        // What goes down the relay tree: each entry's commands, encoded once.
        let mut passed = Vec::new();
        for entry in entries {
            let index = entry.log_id.index;
            self.meta.last_applied = Some(entry.log_id);
            let mut outcomes = Vec::new();
            let commands = match &entry.payload {
                EntryPayload::Normal(batch) => Some(batch),
                _ => None,
            };
            let data = feed::encode_entry(commands).map_err(|e| io_err(ErrorSubject::StateMachine, ErrorVerb::Write, &e))?;
            passed.push(FeedEntry { revision: index, data: Arc::new(data) });
            match entry.payload {
                EntryPayload::Blank => self.state.advance(index),
                EntryPayload::Membership(m) => {
                    self.meta.membership = StoredMembership::new(Some(entry.log_id), m);
                    self.state.advance(index);
                }
                EntryPayload::Normal(batch) => {
                    if batch.is_empty() {
                        self.state.advance(index);
                    }
                    for envelope in &batch {
                        let (result, fx) = self.state.apply(index, envelope);
                        let by = match &envelope.guard.actor {
                            switchboard_domain::Actor::Trusted => "trusted",
                            switchboard_domain::Actor::Credential(id) => id.as_str(),
                            switchboard_domain::Actor::TsigKey(name) => name.as_str(),
                        };
                        match &result {
                            Ok(_) => tracing::info!(revision = index, command = envelope.command.kind(), credential = by, "applied"),
                            Err(e) => {
                                tracing::info!(revision = index, command = envelope.command.kind(), credential = by, error = %e, "refused")
                            }
                        }
                        effects.extend(fx.into_iter().map(|e| (index, e)));
                        outcomes.push(result);
                    }
                }
            }
            responses.push(Response { revision: index, outcomes });
        }
        let meta = encode("state machine meta", &self.meta).map_err(|e| io_err(ErrorSubject::StateMachine, ErrorVerb::Write, &e))?;
        let revisions = (self.state.revision(), self.state.marks());
        self.disk
            .durable("writing the applied state", || self.store.write_applied(revisions, &effects, KEY_SM, &meta))
            .await
            .map_err(|e| io_err(ErrorSubject::StateMachine, ErrorVerb::Write, &e))?;
        self.publish();
        for entry in passed {
            self.feed.push(entry);
        }
        Ok(responses)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        SnapshotBuilder {
            store: self.store.clone(),
            disk: self.disk.clone(),
            state: self.state.clone(),
            meta: self.meta.clone(),
            stats: self.stats.clone(),
        }
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError<NodeId>> {
        self.stats.receiving_snapshot();
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, NodeInfo>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError<NodeId>> {
        let began = std::time::Instant::now();
        let sig = Some(meta.signature());
        let data = snapshot.into_inner();
        let state = decode_state(&data).map_err(|e| io_err(ErrorSubject::Snapshot(sig.clone()), ErrorVerb::Read, &e))?;
        let sm_meta = SmMeta { last_applied: meta.last_log_id, membership: meta.last_membership.clone() };
        let sm_bytes = encode("state machine meta", &sm_meta).map_err(|e| io_err(ErrorSubject::StateMachine, ErrorVerb::Write, &e))?;
        let stored = encode("snapshot", &StoredSnapshot { meta: meta.clone(), data })
            .map_err(|e| io_err(ErrorSubject::Snapshot(sig.clone()), ErrorVerb::Write, &e))?;
        // One synced batch: the state, its Raft metadata and the snapshot itself.
        self.disk
            .durable("installing a snapshot", || self.store.replace_state(&state, KEY_SM, &sm_bytes, &[(KEY_SNAPSHOT, &stored)]))
            .await
            .map_err(|e| io_err(ErrorSubject::Snapshot(sig), ErrorVerb::Write, &e))?;
        self.state = state;
        self.meta = sm_meta;
        self.publish();
        self.feed.reset(self.state.revision());
        self.stats.installed_snapshot(began);
        tracing::info!(revision = self.state.revision(), took_ms = began.elapsed().as_millis() as u64, "installed a snapshot");
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError<NodeId>> {
        let Some(bytes) = self.store.meta(KEY_SNAPSHOT).map_err(|e| io_err(ErrorSubject::Snapshot(None), ErrorVerb::Read, &e))? else {
            return Ok(None);
        };
        let s: StoredSnapshot = decode("snapshot", &bytes).map_err(|e| io_err(ErrorSubject::Snapshot(None), ErrorVerb::Read, &e))?;
        Ok(Some(Snapshot { meta: s.meta, snapshot: Box::new(Cursor::new(s.data)) }))
    }
}

/// Builds a snapshot from a state cloned at one applied index: the clone is
/// O(1) and immutable, so applies go on while the image is encoded.
pub struct SnapshotBuilder {
    store: Store,
    disk: Arc<Disk>,
    state: State,
    meta: SmMeta,
    stats: Arc<Stats>,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError<NodeId>> {
        let began = std::time::Instant::now();
        let state = self.state.clone();
        let data = tokio::task::spawn_blocking(move || encode_state(&state))
            .await
            .map_err(|e| io_err(ErrorSubject::Snapshot(None), ErrorVerb::Read, &e))?
            .map_err(|e| io_err(ErrorSubject::Snapshot(None), ErrorVerb::Read, &e))?;
        let snapshot_id = match self.meta.last_applied {
            Some(l) => format!("{}-{}-{}", l.leader_id, l.index, data.len()),
            None => format!("empty-{}", data.len()),
        };
        let meta = SnapshotMeta { last_log_id: self.meta.last_applied, last_membership: self.meta.membership.clone(), snapshot_id };
        let sig = Some(meta.signature());
        let stored = encode("snapshot", &StoredSnapshot { meta: meta.clone(), data: data.clone() })
            .map_err(|e| io_err(ErrorSubject::Snapshot(sig.clone()), ErrorVerb::Write, &e))?;
        // Synced: logs up to this snapshot may be purged once it is reported built.
        self.disk
            .durable("storing a snapshot", || self.store.put_meta_synced(KEY_SNAPSHOT, &stored))
            .await
            .map_err(|e| io_err(ErrorSubject::Snapshot(sig), ErrorVerb::Write, &e))?;
        self.stats.snapshot_builds.observe(began.elapsed().as_secs_f64());
        Ok(Snapshot { meta, snapshot: Box::new(Cursor::new(data)) })
    }
}
