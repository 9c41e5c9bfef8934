//! Round trips through a real RocksDB in a temp dir.

use switchboard_domain::{Change, Cluster, Command, Effect, Envelope, Kind, State, Value};

use super::*;

#[test]
fn log_append_range_truncate_purge() -> Result<()> {
    let dir = tempfile::tempdir().map_err(|e| StorageError::Corrupt(e.to_string()))?;
    let s = Store::open(dir.path())?;
    s.append_log(&(1..=10).map(|i| (i, vec![i as u8])).collect::<Vec<_>>())?;
    assert_eq!(s.log_range(3, 6)?.iter().map(|(i, _)| *i).collect::<Vec<_>>(), vec![3, 4, 5]);
    assert_eq!(s.last_log()?.map(|(i, _)| i), Some(10));
    s.truncate_log(8)?;
    assert_eq!(s.last_log()?.map(|(i, _)| i), Some(7));
    s.purge_log(4, "purged", b"4")?;
    assert_eq!(s.log_range(0, 100)?.first().map(|(i, _)| *i), Some(5));
    assert_eq!(s.meta("purged")?.as_deref(), Some(b"4".as_slice()));
    Ok(())
}

#[test]
fn applied_state_survives_reopen() -> Result<()> {
    let dir = tempfile::tempdir().map_err(|e| StorageError::Corrupt(e.to_string()))?;
    let mut state = State::default();
    {
        let s = Store::open(dir.path())?;
        for (rev, cmd) in [
            (1, Command::PutCluster { cluster: Cluster::new("mt1") }),
            (2, Command::CreateTenant { id: "t1".into(), cluster: None }),
            (3, Command::AddAlias { tenant: "t1".into(), alias: "one".into() }),
        ] {
            let (r, effects) = state.apply(rev, &Envelope { at_ms: 0, command: cmd, guard: Default::default() });
            assert!(r.is_ok());
            let effects: Vec<(u64, Effect)> = effects.into_iter().map(|e| (rev, e)).collect();
            s.write_applied((state.revision(), state.marks()), &effects, "sm", &[rev as u8])?;
        }
    }
    let s = Store::open(dir.path())?;
    // The change history survives too, in revision order.
    assert_eq!(s.changes_from()?, 1);
    let changes = s.changes_after(1, 100)?;
    assert_eq!(changes.iter().map(|(r, _)| *r).collect::<Vec<_>>(), vec![2, 3]);
    assert!(
        matches!(&changes[1].1, Change { kind: Kind::Tenant, before: Some(Value::Tenant(p)), after: Some(Value::Tenant(t)), .. } if t.aliases == ["one"] && p.aliases.is_empty())
    );
    let (loaded, meta) = s.load_state("sm")?;
    assert_eq!(meta.as_deref(), Some([3u8].as_slice()));
    assert_eq!(loaded.revision(), 3);
    assert_eq!(loaded.tenant_by_key("one").map(|t| t.id.clone()), Some("t1".into()));
    assert_eq!(encode_state(&loaded)?, encode_state(&state)?);

    let image = encode_state(&state)?;
    let back = decode_state(&image)?;
    s.replace_state(&back, "sm", b"x", &[])?;
    let (again, _) = s.load_state("sm")?;
    assert_eq!(encode_state(&again)?, image);
    // Installing a snapshot restarts the history after it.
    assert_eq!(s.changes_from()?, 4);
    assert!(s.changes_after(0, 100)?.is_empty());
    Ok(())
}

#[test]
fn a_data_dir_of_another_format_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open(dir.path()).unwrap();
        store.put_meta_synced("format", &1u32.to_be_bytes()).unwrap();
    }
    let e = Store::open(dir.path()).unwrap_err().to_string();
    assert!(e.contains("format") && e.contains(&format!("this build reads format {}", crate::FORMAT)), "{e}");
    // A fresh dir is marked and opens again.
    let fresh = tempfile::tempdir().unwrap();
    drop(Store::open(fresh.path()).unwrap());
    assert!(Store::open(fresh.path()).is_ok());
}

/// Sum of the sizes of the write-ahead log files in `dir`.
fn wal_bytes(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| e.path().extension().is_some_and(|x| x == "log"))
        .map(|e| e.metadata().map(|m| m.len()).unwrap_or(0))
        .sum()
}

/// The log column family takes most writes and `meta` a few bytes with each;
/// old WAL files must still go (without a bound on the WAL, `meta` pinned
/// every one of them and a node filled its disk with WAL).
#[test]
fn the_write_ahead_log_stays_bounded_when_one_column_family_is_written_rarely() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let entry = vec![7u8; 4096];
    let mut index = 0u64;
    // Four times the bound, in synced batches as Raft appends them.
    while index * entry.len() as u64 <= 4 * crate::WAL_BYTES_MAX {
        store.append_log(&(0..256).map(|i| (index + i, entry.clone())).collect::<Vec<_>>()).unwrap();
        store.put_meta("vote", &index.to_be_bytes()).unwrap();
        index += 256;
    }
    let wal = wal_bytes(dir.path());
    assert!(wal <= 2 * crate::WAL_BYTES_MAX, "{wal} bytes of WAL after writing {} bytes", index * entry.len() as u64);
}

/// Only kinds of the registry are stored: a key under a prefix no kind
/// declares, or a value of another kind than its key says, is refused on
/// load as corruption instead of being skipped or misread.
#[test]
fn a_kind_missing_from_the_registry_cannot_be_stored() -> Result<()> {
    let dir = tempfile::tempdir().map_err(|e| StorageError::Corrupt(e.to_string()))?;
    let s = Store::open(dir.path())?;
    let cluster = Value::from(Cluster::new("mt1"));
    s.db.put_cf(s.cf(CF_STATE)?, b"c/mt1", encode("cluster", &cluster)?)?;
    assert_eq!(s.load_state("sm")?.0.cluster("mt1").map(|c| c.id.clone()), Some("mt1".into()));

    let undeclared = (0..=u8::MAX).find(|b| Kind::from_prefix(*b).is_none() && b.is_ascii_lowercase()).unwrap_or(b'x');
    s.db.put_cf(s.cf(CF_STATE)?, [undeclared, b'/', b'q'], encode("cluster", &cluster)?)?;
    let e = s.load_state("sm").map(|_| ()).unwrap_err().to_string();
    assert!(e.contains("unknown state key"), "{e}");
    s.db.delete_cf(s.cf(CF_STATE)?, [undeclared, b'/', b'q'])?;

    // A cluster stored under a tenant's key.
    s.db.put_cf(s.cf(CF_STATE)?, b"t/mt1", encode("cluster", &cluster)?)?;
    let e = s.load_state("sm").map(|_| ()).unwrap_err().to_string();
    assert!(e.contains("holds"), "{e}");
    Ok(())
}

/// The compact `Tenant` (inline ids, `ThinVec`s) keeps the stored form of
/// the one it replaced (`String`s and `Vec`s), so `FORMAT` did not move:
/// a value written by the old shape reads back as the new one.
#[test]
fn a_tenant_stored_in_the_old_shape_reads_back() -> Result<()> {
    #[derive(serde::Serialize)]
    struct OldTombstone {
        from: String,
        to: String,
        revision: u64,
        at_ms: u64,
    }
    #[derive(serde::Serialize)]
    struct OldTenant {
        id: String,
        cluster: String,
        pinned: bool,
        aliases: Vec<String>,
        history: Vec<OldTombstone>,
        revision: u64,
    }
    let old = OldTenant {
        id: "a-tenant-id-longer-than-twenty-four-bytes".into(),
        cluster: "mt1".into(),
        pinned: true,
        aliases: vec!["one".into(), "two".into()],
        history: vec![OldTombstone { from: "mt0".into(), to: "mt1".into(), revision: 3, at_ms: 9 }],
        revision: 4,
    };
    let t: switchboard_domain::Tenant = decode("tenant", &encode("tenant", &old)?)?;
    assert_eq!((t.id.as_str(), t.cluster.as_str(), t.pinned, t.revision), (old.id.as_str(), "mt1", true, 4));
    assert!(t.aliases.iter().map(|a| a.as_str()).eq(["one", "two"]));
    assert_eq!((t.history.len(), t.history[0].from.as_str(), t.history[0].revision), (1, "mt0", 3));
    Ok(())
}
