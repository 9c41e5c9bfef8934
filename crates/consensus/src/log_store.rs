//! openraft's log storage on RocksDB. Appends, truncations, purges and votes
//! are fsynced before they are reported durable: that is the Raft contract.
//! A write that finds the disk full waits for space (see `disk`) rather
//! than fail: a storage error stops openraft's core for good.
//!
//! Learners fsync their appends as voters do. A learner is in no quorum,
//! so its fsync protects no commit today, but it can be promoted, and a
//! log kept unsynced until then would make its first acknowledgements as
//! a voter not durable; measured, the fsync is not what a learner's apply
//! costs (bench/README.md, 3 voters + 100 learners).

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::sync::Arc;

use openraft::storage::{LogFlushed, LogState, RaftLogReader, RaftLogStorage};
use openraft::{Entry, ErrorSubject, ErrorVerb, LogId, OptionalSend, StorageError, Vote};
use switchboard_storage::keys::{KEY_COMMITTED, KEY_PURGED, KEY_VOTE};
use switchboard_storage::{decode, encode, Store};

use crate::disk::Disk;
use crate::stats::Stats;
use crate::{io_err, NodeId, TypeConfig};

#[derive(Debug, Clone)]
pub struct LogStore {
    store: Store,
    disk: Arc<Disk>,
    stats: Arc<Stats>,
}

impl LogStore {
    pub fn new(store: Store, disk: Arc<Disk>) -> LogStore {
        LogStore { store, disk, stats: Arc::default() }
    }

    /// Report the commit index in `stats`.
    pub(crate) fn with_stats(self, stats: Arc<Stats>) -> LogStore {
        LogStore { stats, ..self }
    }

    fn read_meta<T: serde::de::DeserializeOwned>(
        &self,
        key: &str,
        subject: ErrorSubject<NodeId>,
    ) -> Result<Option<T>, StorageError<NodeId>> {
        let bytes = self.store.meta(key).map_err(|e| io_err(subject.clone(), ErrorVerb::Read, &e))?;
        bytes.map(|b| decode(key, &b)).transpose().map_err(|e| io_err(subject, ErrorVerb::Read, &e))
    }

    async fn write_meta<T: serde::Serialize>(
        &self,
        key: &str,
        value: &T,
        subject: ErrorSubject<NodeId>,
    ) -> Result<(), StorageError<NodeId>> {
        let bytes = encode(key, value).map_err(|e| io_err(subject.clone(), ErrorVerb::Write, &e))?;
        self.disk.durable(key, || self.store.put_meta_synced(key, &bytes)).await.map_err(|e| io_err(subject, ErrorVerb::Write, &e))
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry<TypeConfig>>, StorageError<NodeId>> {
        let start = match range.start_bound() {
            Bound::Included(x) => *x,
            Bound::Excluded(x) => x.saturating_add(1),
            Bound::Unbounded => 0,
        };
        let end = match range.end_bound() {
            Bound::Included(x) => x.saturating_add(1),
            Bound::Excluded(x) => *x,
            Bound::Unbounded => u64::MAX,
        };
        let raw = self.store.log_range(start, end).map_err(|e| io_err(ErrorSubject::Logs, ErrorVerb::Read, &e))?;
        raw.into_iter()
            .map(|(i, bytes)| {
                let entry: Entry<TypeConfig> = decode("log entry", &bytes).map_err(|e| io_err(ErrorSubject::Logs, ErrorVerb::Read, &e))?;
                if entry.log_id.index != i {
                    let msg = std::io::Error::other(format!("log key {i} holds entry {}", entry.log_id.index));
                    return Err(io_err(ErrorSubject::Logs, ErrorVerb::Read, &msg));
                }
                Ok(entry)
            })
            .collect()
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError<NodeId>> {
        let last_purged_log_id: Option<LogId<NodeId>> = self.read_meta(KEY_PURGED, ErrorSubject::Store)?;
        let last = self.store.last_log().map_err(|e| io_err(ErrorSubject::Logs, ErrorVerb::Read, &e))?;
        let last_log_id = match last {
            Some((_, bytes)) => {
                let e: Entry<TypeConfig> = decode("log entry", &bytes).map_err(|e| io_err(ErrorSubject::Logs, ErrorVerb::Read, &e))?;
                Some(e.log_id)
            }
            None => last_purged_log_id,
        };
        Ok(LogState { last_purged_log_id, last_log_id })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<(), StorageError<NodeId>> {
        self.write_meta(KEY_VOTE, vote, ErrorSubject::Vote).await
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, StorageError<NodeId>> {
        self.read_meta(KEY_VOTE, ErrorSubject::Vote)
    }

    async fn save_committed(&mut self, committed: Option<LogId<NodeId>>) -> Result<(), StorageError<NodeId>> {
        if let Some(c) = committed {
            self.stats.committed.fetch_max(c.index, std::sync::atomic::Ordering::Relaxed);
        }
        // Not fsynced: losing it only means re-learning the commit index from
        // the leader; it lets a restarted node re-apply its committed tail sooner.
        let bytes = encode(KEY_COMMITTED, &committed).map_err(|e| io_err(ErrorSubject::Store, ErrorVerb::Write, &e))?;
        self.disk
            .durable(KEY_COMMITTED, || self.store.put_meta(KEY_COMMITTED, &bytes))
            .await
            .map_err(|e| io_err(ErrorSubject::Store, ErrorVerb::Write, &e))
    }

    async fn read_committed(&mut self) -> Result<Option<LogId<NodeId>>, StorageError<NodeId>> {
        let committed = self.read_meta::<Option<LogId<NodeId>>>(KEY_COMMITTED, ErrorSubject::Store)?.flatten();
        if let Some(c) = committed {
            self.stats.committed.fetch_max(c.index, std::sync::atomic::Ordering::Relaxed);
        }
        Ok(committed)
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> Result<(), StorageError<NodeId>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let encoded = entries
            .into_iter()
            .map(|e| encode("log entry", &e).map(|b| (e.log_id.index, b)))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| io_err(ErrorSubject::Logs, ErrorVerb::Write, &e))?;
        // Synced: the entries are on disk when the callback says so.
        let result = self.disk.durable("appending to the log", || self.store.append_log(&encoded)).await;
        match result {
            Ok(()) => {
                callback.log_io_completed(Ok(()));
                Ok(())
            }
            Err(e) => {
                callback.log_io_completed(Err(std::io::Error::other(e.to_string())));
                Err(io_err(ErrorSubject::Logs, ErrorVerb::Write, &e))
            }
        }
    }

    async fn truncate(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError<NodeId>> {
        self.disk
            .durable("truncating the log", || self.store.truncate_log(log_id.index))
            .await
            .map_err(|e| io_err(ErrorSubject::Logs, ErrorVerb::Delete, &e))
    }

    async fn purge(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError<NodeId>> {
        let bytes = encode(KEY_PURGED, &log_id).map_err(|e| io_err(ErrorSubject::Store, ErrorVerb::Write, &e))?;
        self.disk
            .durable("purging the log", || self.store.purge_log(log_id.index, KEY_PURGED, &bytes))
            .await
            .map_err(|e| io_err(ErrorSubject::Logs, ErrorVerb::Delete, &e))
    }
}
