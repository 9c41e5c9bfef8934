//! openraft's storage conformance suite against the real RocksDB log store
//! and state machine, each test in a fresh temp dir.

use openraft::testing::{StoreBuilder, Suite};
use openraft::StorageError;
use std::sync::Arc;

use switchboard_consensus::{Disk, LogStore, NodeId, StateMachine, TypeConfig};
use switchboard_storage::Store;

struct RocksBuilder;

impl StoreBuilder<TypeConfig, LogStore, StateMachine, tempfile::TempDir> for RocksBuilder {
    async fn build(&self) -> Result<(tempfile::TempDir, LogStore, StateMachine), StorageError<NodeId>> {
        let fail = |e: String| StorageError::from(openraft::StorageIOError::write(openraft::AnyError::error(e)));
        let dir = tempfile::tempdir().map_err(|e| fail(e.to_string()))?;
        let store = Store::open(dir.path()).map_err(|e| fail(e.to_string()))?;
        let disk = Arc::new(Disk::new(1, store.clone(), 0));
        let (sm, _published, _applied) = StateMachine::open(store.clone(), disk.clone()).map_err(|e| fail(e.to_string()))?;
        Ok((dir, LogStore::new(store, disk), sm))
    }
}

#[test]
fn rocksdb_store_passes_openraft_suite() {
    if let Err(e) = Suite::test_all(RocksBuilder) {
        panic!("storage suite failed: {e}");
    }
}
