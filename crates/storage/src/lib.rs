//! RocksDB persistence for Switchboard: the Raft log, Raft metadata (vote,
//! purge point, snapshot) and the applied state, in one database so that a
//! synced write also makes every earlier write durable (one shared WAL).
//!
//! Raft types are opaque bytes here; the consensus crate encodes them. The
//! applied state is stored one entity per key so that applying a command
//! writes only what it changed.

mod image;
pub mod keys;

use std::path::Path;
use std::sync::Arc;

use rocksdb::{ColumnFamilyDescriptor, Direction, IteratorMode, Options, ReadOptions, WriteBatch, WriteOptions, DB};
use serde::de::DeserializeOwned;
use serde::Serialize;
use switchboard_domain::state::Marks;
use switchboard_domain::{Change, Effect, Kind, State, Value};

pub use image::{decode_state, encode_state};
use keys::{KEY_CHANGES_FROM, KEY_FORMAT, KEY_REVISIONS};

const CF_META: &str = "meta";
const CF_LOG: &str = "log";
const CF_STATE: &str = "state";
/// Recent changes for watchers, by (revision, sequence in the revision).
const CF_CHANGES: &str = "changes";
/// Changes kept for watchers to resume from, counted in revisions; older
/// ones are pruned every `CHANGES_PRUNE_EVERY` revisions.
pub const CHANGES_KEEP: u64 = 100_000;
const CHANGES_PRUNE_EVERY: u64 = 4096;

/// Most bytes of write-ahead log kept. A WAL file is deleted only once every
/// column family with data in it has flushed; `meta` takes a few bytes per
/// batch and would not fill a memtable for hours, pinning every WAL written
/// meanwhile (the chaos disk-full nemesis found 244 MB of them on one node).
/// Past this size RocksDB flushes the column families holding the oldest.
pub const WAL_BYTES_MAX: u64 = 64 * 1024 * 1024;

/// Most bytes the memtables of all column families hold together; past
/// it RocksDB flushes the largest. Each column family would otherwise keep
/// up to two 64 MiB memtables: after a bulk import (state, log and change
/// history each written a gigabyte's worth) a node held some 300 MiB more
/// than after a restart, until enough later writes flushed them.
pub const MEMTABLE_BYTES_MAX: usize = 32 * 1024 * 1024;

/// The data format this build writes and reads (kept under
/// `keys::KEY_FORMAT`): 2 = log entries hold batches of guarded commands,
/// state holds the request-id window (`r/`); 3 = ACME challenges (`a/`,
/// commands, snapshot image v3) and the `changes` history; 4 = credentials
/// (`k/`, image v4) and the caller in every command's guard; 5 = every state
/// value and snapshot record is a registry `Value` (tagged with its kind) and
/// the history holds `Effect`s (image v5), and every ACME challenge carries
/// the tenant that owned its name when it was set (`Challenge::tenant`);
/// 6 = TSIG keys (`g/`) and every zone's `[transfer]` table (image v6);
/// 7 = DNSSEC keys of signed zones (`d/`), every zone's `[dnssec]` table,
/// and the DNSSEC commands (image v7); 8 = serials per zone: the revisions
/// key holds the marks every zone with rules follows (`state::Marks`)
/// instead of one data revision, and each zone's own serial-moving
/// changes are kept as `s/` (`ZoneSerial`, image v8); 9 = a zone's static
/// records are stored name by name (`n/`, `ZoneNode`), apart from the zone
/// (image v9); 10 = a zone's `[transfer]` table holds its transport rules
/// (`tls`, `cert_keys`; image v10); 11 = a cluster's health check, failover
/// and down addresses, and the `SetHealth` command (image v11); 12 = staged
/// moves (`m/`, `StagedMove`) and their commands (image v12).
/// Bump on any change to what is stored.
pub const FORMAT: u32 = 12;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StorageError {
    #[error("rocksdb: {0}")]
    Rocks(#[from] rocksdb::Error),
    #[error("encoding {what}: {source}")]
    Encode { what: String, source: bincode::error::EncodeError },
    #[error("decoding {what}: {source}")]
    Decode { what: String, source: bincode::error::DecodeError },
    #[error("corrupt store: {0}")]
    Corrupt(String),
    #[error("data dir is in format {found}, this build reads format {FORMAT}: move it aside, start empty and let the node catch up from its peers")]
    Format { found: String },
}

impl StorageError {
    /// The file system of the data dir is full. RocksDB then refuses every
    /// write until it has recovered by itself (its file manager polls for
    /// free space and resumes the database), so the write may be retried.
    pub fn is_no_space(&self) -> bool {
        match self {
            StorageError::Rocks(e) => e.kind() == rocksdb::ErrorKind::IOError && e.as_ref().contains(NO_SPACE),
            _ => false,
        }
    }
}

/// How RocksDB words ENOSPC (`IOStatus::NoSpace`, from the OS's strerror).
const NO_SPACE: &str = "No space left on device";

pub type Result<T, E = StorageError> = std::result::Result<T, E>;

fn config() -> bincode::config::Configuration {
    bincode::config::standard()
}

/// Encode a value with the store's encoding (bincode, standard config).
pub fn encode<T: Serialize>(what: &str, value: &T) -> Result<Vec<u8>> {
    bincode::serde::encode_to_vec(value, config()).map_err(|source| StorageError::Encode { what: what.into(), source })
}

/// Decode a value written by `encode`; trailing bytes are corruption.
pub fn decode<T: DeserializeOwned>(what: &str, bytes: &[u8]) -> Result<T> {
    let (v, n) = bincode::serde::decode_from_slice(bytes, config()).map_err(|source| StorageError::Decode { what: what.into(), source })?;
    if n != bytes.len() {
        return Err(StorageError::Corrupt(format!("{what}: {} trailing bytes", bytes.len() - n)));
    }
    Ok(v)
}

/// The database. Cheap to clone; all handles share one RocksDB instance.
#[derive(Clone)]
pub struct Store {
    db: Arc<DB>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("path", &self.db.path()).finish()
    }
}

fn log_key(index: u64) -> [u8; 8] {
    index.to_be_bytes()
}

/// The key of a stored entity in `CF_STATE`: its kind's prefix, `/`, its key.
fn state_key(kind: Kind, key: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(key.len() + 2);
    k.push(kind.prefix());
    k.push(b'/');
    k.extend_from_slice(key.as_bytes());
    k
}

impl Store {
    /// Open (creating if needed) the database in `dir`.
    pub fn open(dir: &Path) -> Result<Store> {
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.create_missing_column_families(true);
        // Durability comes from synced WAL writes; keep the WAL on.
        opts.set_manual_wal_flush(false);
        opts.set_max_total_wal_size(WAL_BYTES_MAX);
        opts.set_db_write_buffer_size(MEMTABLE_BYTES_MAX);
        let cfs = [CF_META, CF_LOG, CF_STATE, CF_CHANGES].map(|n| ColumnFamilyDescriptor::new(n, Options::default()));
        let db = DB::open_cf_descriptors(&opts, dir, cfs)?;
        let store = Store { db: Arc::new(db) };
        store.check_format()?;
        if store.meta(KEY_CHANGES_FROM)?.is_none() {
            // A new data dir: its change history starts with its first revision.
            let from = store.revisions()?.0 + 1;
            store.put_meta_synced(KEY_CHANGES_FROM, &from.to_be_bytes())?;
        }
        Ok(store)
    }

    /// Mark a new data dir with `FORMAT`; refuse one written in another format
    /// (or before formats were marked) instead of misreading it.
    fn check_format(&self) -> Result<()> {
        match self.meta(KEY_FORMAT)? {
            Some(v) if v == FORMAT.to_be_bytes() => Ok(()),
            Some(v) => {
                let found = <[u8; 4]>::try_from(v.as_slice()).map_or_else(|_| format!("{v:?}"), |b| u32::from_be_bytes(b).to_string());
                Err(StorageError::Format { found })
            }
            None => {
                let empty = [CF_META, CF_LOG, CF_STATE]
                    .into_iter()
                    .map(|cf| Ok(self.db.iterator_cf(self.cf(cf)?, IteratorMode::Start).next().is_none()))
                    .collect::<Result<Vec<bool>>>()?
                    .into_iter()
                    .all(|e| e);
                if !empty {
                    return Err(StorageError::Format { found: "1 (unmarked)".into() });
                }
                self.put_meta_synced(KEY_FORMAT, &FORMAT.to_be_bytes())
            }
        }
    }

    /// The database directory.
    pub fn path(&self) -> &Path {
        self.db.path()
    }

    /// Bytes an unprivileged process may still write to the file system of
    /// the database directory.
    pub fn free_bytes(&self) -> std::io::Result<u64> {
        let st = rustix::fs::statvfs(self.db.path())?;
        Ok(st.f_bavail.saturating_mul(st.f_frsize))
    }

    fn cf(&self, name: &str) -> Result<&rocksdb::ColumnFamily> {
        self.db.cf_handle(name).ok_or_else(|| StorageError::Corrupt(format!("column family {name} missing")))
    }

    fn synced() -> WriteOptions {
        let mut w = WriteOptions::default();
        w.set_sync(true);
        w
    }

    // --- Raft metadata -------------------------------------------------------

    pub fn meta(&self, key: &str) -> Result<Option<Vec<u8>>> {
        Ok(self.db.get_cf(self.cf(CF_META)?, key)?)
    }

    /// Write a metadata value without waiting for the disk.
    pub fn put_meta(&self, key: &str, value: &[u8]) -> Result<()> {
        self.db.put_cf(self.cf(CF_META)?, key, value)?;
        Ok(())
    }

    /// Write a metadata value and fsync before returning (votes, snapshots).
    pub fn put_meta_synced(&self, key: &str, value: &[u8]) -> Result<()> {
        let mut b = WriteBatch::default();
        b.put_cf(self.cf(CF_META)?, key, value);
        self.db.write_opt(b, &Self::synced())?;
        Ok(())
    }

    // --- Log ------------------------------------------------------------------

    /// Append entries (index, bytes) in one batch, fsynced before returning.
    pub fn append_log(&self, entries: &[(u64, Vec<u8>)]) -> Result<()> {
        let cf = self.cf(CF_LOG)?;
        let mut b = WriteBatch::default();
        for (i, bytes) in entries {
            b.put_cf(cf, log_key(*i), bytes);
        }
        self.db.write_opt(b, &Self::synced())?;
        Ok(())
    }

    /// Entries with index in `[start, end)`, in order.
    pub fn log_range(&self, start: u64, end: u64) -> Result<Vec<(u64, Vec<u8>)>> {
        let mut out = Vec::new();
        if start >= end {
            return Ok(out);
        }
        let it = self.db.iterator_cf(self.cf(CF_LOG)?, IteratorMode::From(&log_key(start), Direction::Forward));
        for item in it {
            let (k, v) = item?;
            let i = index_of(&k)?;
            if i >= end {
                break;
            }
            out.push((i, v.to_vec()));
        }
        Ok(out)
    }

    /// The entry with the highest index.
    pub fn last_log(&self) -> Result<Option<(u64, Vec<u8>)>> {
        match self.db.iterator_cf(self.cf(CF_LOG)?, IteratorMode::End).next() {
            None => Ok(None),
            Some(item) => {
                let (k, v) = item?;
                Ok(Some((index_of(&k)?, v.to_vec())))
            }
        }
    }

    /// Delete entries with index ≥ `from`, fsynced.
    pub fn truncate_log(&self, from: u64) -> Result<()> {
        let mut b = WriteBatch::default();
        b.delete_range_cf(self.cf(CF_LOG)?, log_key(from), log_key(u64::MAX));
        b.delete_cf(self.cf(CF_LOG)?, log_key(u64::MAX));
        self.db.write_opt(b, &Self::synced())?;
        Ok(())
    }

    /// Delete entries with index ≤ `upto` and record the purge point in the
    /// same synced batch.
    pub fn purge_log(&self, upto: u64, meta_key: &str, meta_value: &[u8]) -> Result<()> {
        let mut b = WriteBatch::default();
        b.put_cf(self.cf(CF_META)?, meta_key, meta_value);
        b.delete_range_cf(self.cf(CF_LOG)?, log_key(0), log_key(upto.saturating_add(1)));
        self.db.write_opt(b, &Self::synced())?;
        Ok(())
    }

    // --- Applied state ----------------------------------------------------------

    /// Persist what a batch of applied entries changed, with the state
    /// machine's own metadata (`sm_meta` under `sm_key`), atomically. Not
    /// fsynced: the log is, and a lost tail of applies is replayed from it
    /// (writing the same values again under the same keys).
    ///
    /// `effects` are the changes in apply order, each with its revision:
    /// the state is written from them (a later effect on a key wins), and
    /// so is the watchers' history (see `changes_after`), in the same batch,
    /// so the history never runs ahead of or behind the state.
    pub fn write_applied(&self, revisions: (u64, Marks), effects: &[(u64, Effect)], sm_key: &str, sm_meta: &[u8]) -> Result<()> {
        let cf = self.cf(CF_STATE)?;
        let changes_cf = self.cf(CF_CHANGES)?;
        let mut b = WriteBatch::default();
        let mut seq = 0u32;
        let mut last = None;
        for (rev, effect) in effects {
            let key = state_key(effect.kind, &effect.key);
            match &effect.after {
                Some(v) => b.put_cf(cf, key, encode(effect.kind.name(), v)?),
                None => b.delete_cf(cf, key),
            }
            if let Some(h) = effect.for_history() {
                seq = if last == Some(*rev) { seq + 1 } else { 0 };
                last = Some(*rev);
                b.put_cf(changes_cf, change_key(*rev, seq), encode("change", &h)?);
            }
        }
        let (before, _) = self.revisions()?;
        let now = revisions.0;
        if now / CHANGES_PRUNE_EVERY != before / CHANGES_PRUNE_EVERY && now > CHANGES_KEEP {
            let from = (now - CHANGES_KEEP).max(self.changes_from()?);
            b.delete_range_cf(changes_cf, change_key(0, 0), change_key(from, 0));
            b.put_cf(self.cf(CF_META)?, KEY_CHANGES_FROM, from.to_be_bytes());
        }
        b.put_cf(self.cf(CF_META)?, KEY_REVISIONS, encode("revisions", &revisions)?);
        b.put_cf(self.cf(CF_META)?, sm_key, sm_meta);
        self.db.write(b)?;
        Ok(())
    }

    /// Replace the whole applied state (snapshot install) in one synced batch:
    /// a crash leaves either the old state or the new one, never a mix.
    pub fn replace_state(&self, state: &State, sm_key: &str, sm_meta: &[u8], extra_meta: &[(&str, &[u8])]) -> Result<()> {
        let cf = self.cf(CF_STATE)?;
        let mut b = WriteBatch::default();
        b.delete_range_cf(cf, b"".as_slice(), &[0xffu8; 1][..]);
        for v in state.values() {
            b.put_cf(cf, state_key(v.kind(), v.key()), encode(v.kind().name(), &v)?);
        }
        let meta = self.cf(CF_META)?;
        b.put_cf(meta, KEY_REVISIONS, encode("revisions", &(state.revision(), state.marks()))?);
        b.put_cf(meta, sm_key, sm_meta);
        for (k, v) in extra_meta {
            b.put_cf(meta, k, v);
        }
        // The changes before a snapshot are not known here: history restarts.
        b.delete_range_cf(self.cf(CF_CHANGES)?, change_key(0, 0), change_key(u64::MAX, u32::MAX));
        b.put_cf(meta, KEY_CHANGES_FROM, (state.revision() + 1).to_be_bytes());
        self.db.write_opt(b, &Self::synced())?;
        Ok(())
    }

    /// Applied revision and data revision as persisted.
    fn revisions(&self) -> Result<(u64, Marks)> {
        match self.db.get_cf(self.cf(CF_META)?, KEY_REVISIONS)? {
            Some(v) => decode("revisions", &v),
            None => Ok((0, Marks::default())),
        }
    }

    /// The first revision whose changes are all held; a watcher that
    /// needs older ones must re-list.
    pub fn changes_from(&self) -> Result<u64> {
        let v = self.meta(KEY_CHANGES_FROM)?.unwrap_or_default();
        let bytes: [u8; 8] =
            v.as_slice().try_into().map_err(|_| StorageError::Corrupt(format!("{KEY_CHANGES_FROM} of {} bytes", v.len())))?;
        Ok(u64::from_be_bytes(bytes))
    }

    /// Changes at revisions after `after`, oldest first, at most `limit`
    /// (a revision's changes are never split across calls).
    pub fn changes_after(&self, after: u64, limit: usize) -> Result<Vec<(u64, Change)>> {
        let mut out: Vec<(u64, Change)> = Vec::new();
        let start = change_key(after.saturating_add(1), 0);
        for item in self.db.iterator_cf(self.cf(CF_CHANGES)?, IteratorMode::From(&start, Direction::Forward)) {
            let (k, v) = item?;
            let rev = k.get(..8).and_then(|b| <[u8; 8]>::try_from(b).ok()).map(u64::from_be_bytes);
            let rev = rev.ok_or_else(|| StorageError::Corrupt(format!("change key of {} bytes", k.len())))?;
            if out.len() >= limit && out.last().is_some_and(|(r, _)| *r != rev) {
                break;
            }
            out.push((rev, decode("change", &v)?));
        }
        Ok(out)
    }

    /// Load the applied state and the state machine's metadata. Every key
    /// must start with the prefix of the kind its value is: a key no kind
    /// of the registry declares is corruption, not data to skip.
    ///
    /// A thread of its own scans the table (RocksDB's reads and
    /// decompression) and hands the raw pairs over in chunks while this
    /// one decodes them, so the two run side by side on two cores.
    pub fn load_state(&self, sm_key: &str) -> Result<(State, Option<Vec<u8>>)> {
        let (revision, marks) = self.revisions()?;
        let cf = self.cf(CF_STATE)?;
        let mut values = Vec::new();
        std::thread::scope(|scope| -> Result<()> {
            let (tx, rx) = std::sync::mpsc::sync_channel::<Result<Vec<(Box<[u8]>, Box<[u8]>)>>>(LOAD_CHUNKS_QUEUED);
            scope.spawn(move || {
                // Read once, front to back: leave the block cache to later reads.
                let mut once = ReadOptions::default();
                once.fill_cache(false);
                let mut chunk = Vec::with_capacity(LOAD_CHUNK);
                for item in self.db.iterator_cf_opt(cf, once, IteratorMode::Start) {
                    match item {
                        Ok(pair) => chunk.push(pair),
                        Err(e) => {
                            let _ = tx.send(Err(e.into()));
                            return;
                        }
                    }
                    if chunk.len() == LOAD_CHUNK && tx.send(Ok(std::mem::replace(&mut chunk, Vec::with_capacity(LOAD_CHUNK)))).is_err() {
                        return;
                    }
                }
                let _ = tx.send(Ok(chunk));
            });
            // Returning early (corruption) drops `rx`, which stops the scan.
            for chunk in rx {
                for (k, v) in chunk? {
                    values.push(decode_state_value(&k, &v)?);
                }
            }
            Ok(())
        })?;
        let state = State::restore(revision, marks, values);
        let sm_meta = self.db.get_cf(self.cf(CF_META)?, sm_key)?;
        Ok((state, sm_meta))
    }
}

/// Raw pairs per chunk the scanner of `load_state` hands over, and chunks
/// it may run ahead.
const LOAD_CHUNK: usize = 4096;
const LOAD_CHUNKS_QUEUED: usize = 8;

/// A stored state value, checked against its key: the key must be its
/// kind's prefix, `/` and its own key.
fn decode_state_value(k: &[u8], v: &[u8]) -> Result<Value> {
    let Some(kind) = k.first().copied().and_then(Kind::from_prefix).filter(|_| k.get(1) == Some(&b'/')) else {
        return Err(StorageError::Corrupt(format!("unknown state key {:?}", String::from_utf8_lossy(k))));
    };
    let value: Value = decode(kind.name(), v)?;
    if value.kind() != kind || k.get(2..) != Some(value.key().as_bytes()) {
        return Err(StorageError::Corrupt(format!("state key {:?} holds {} {:?}", String::from_utf8_lossy(k), value.kind(), value.key())));
    }
    Ok(value)
}

fn change_key(revision: u64, seq: u32) -> [u8; 12] {
    let mut k = [0u8; 12];
    k[..8].copy_from_slice(&revision.to_be_bytes());
    k[8..].copy_from_slice(&seq.to_be_bytes());
    k
}

fn index_of(key: &[u8]) -> Result<u64> {
    let bytes: [u8; 8] = key.try_into().map_err(|_| StorageError::Corrupt(format!("log key of {} bytes", key.len())))?;
    Ok(u64::from_be_bytes(bytes))
}

#[cfg(test)]
mod tests;
