//! Every key of the `meta` column family, in one place: the data format,
//! the applied state's revisions, the change history's start, and the Raft
//! metadata the consensus crate keeps here (vote, purge point, committed
//! index, state-machine metadata, the last snapshot).

/// The data format of the directory (`FORMAT`), big-endian u32.
pub const KEY_FORMAT: &str = "format";
/// The applied state's (revision, data revision).
pub const KEY_REVISIONS: &str = "sm/revisions";
/// The first revision whose changes the `changes` column family holds completely.
pub const KEY_CHANGES_FROM: &str = "changes/from";
/// The Raft vote (fsynced).
pub const KEY_VOTE: &str = "raft/vote";
/// The last purged log id.
pub const KEY_PURGED: &str = "raft/purged";
/// The last committed log id (a hint; not fsynced).
pub const KEY_COMMITTED: &str = "raft/committed";
/// The state machine's Raft metadata: last applied log id and membership.
pub const KEY_SM: &str = "sm/raft";
/// The last snapshot, meta and body.
pub const KEY_SNAPSHOT: &str = "raft/snapshot";
/// Present in an edge's data dir (which holds no Raft log): the applied
/// state's metadata there.
pub const KEY_EDGE: &str = "edge/meta";
