//! The control plane as platforms drive it: bulk import and rebalance,
//! through the CLI against a real node.

mod common;

use common::{answers, query, Node};
use hickory_proto::rr::RecordType;

const ZONE: &str = r#"
apex = "apps.example.test."
environment = "prod"
ns = ["ns1.example.test."]

[[rules]]
kind = "tenant-host"
"#;

fn setup() -> anyhow::Result<(tempfile::TempDir, Node)> {
    common::single_with(ZONE, &[&["mt1", "--ipv4", "198.51.100.1"], &["mt2", "--ipv4", "198.51.100.2"]])
}

/// 100,000 tenants with 1% invalid rows: the invalid ones are reported by
/// line, every valid one is created and answered.
#[test]
fn bulk_import_reports_invalid_rows_and_creates_the_rest() -> anyhow::Result<()> {
    let (dir, node) = setup()?;
    let mut text = String::new();
    for i in 0..100_000u32 {
        let line = match i % 100 {
            // 1%: half bad ids, half unknown clusters.
            99 if i % 200 == 99 => format!("{{\"id\": \"bad_id_{i}\"}}\n"),
            99 => format!("{{\"id\": \"t{i}\", \"cluster\": \"nope\"}}\n"),
            n if n % 3 == 0 => format!("{{\"id\": \"t{i}\", \"cluster\": \"mt1\"}}\n"),
            _ => format!("{{\"id\": \"t{i}\"}}\n"),
        };
        text.push_str(&line);
    }
    let file = dir.path().join("tenants.jsonl");
    std::fs::write(&file, text)?;
    let started = std::time::Instant::now();
    let out = std::process::Command::new(common::BIN)
        .args(["--server", &node.server(), "--json", "tenant", "import", file.to_str().unwrap_or_default()])
        .output()?;
    eprintln!("imported 100,000 records in {:?}", started.elapsed());
    assert!(!out.status.success(), "rejected rows make the import fail after its summary");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("1000 of 100000 records rejected"), "{stderr}");
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    assert_eq!(summary["created"], 99_000, "{}", summary["created"]);
    assert_eq!(summary["rejected"], 1_000);
    let errors = summary["errors"].as_array().cloned().unwrap_or_default();
    assert_eq!(errors.len(), 1_000);
    assert_eq!(errors[0]["line"], 100, "errors name their line, in order: {}", errors[0]);
    assert!(errors.iter().any(|e| e["error"].as_str().is_some_and(|s| s.starts_with("InvalidArgument") && s.contains("id"))));
    assert!(errors.iter().any(|e| e["error"].as_str().is_some_and(|s| s.starts_with("NotFound") && s.contains("nope"))));

    assert_eq!(node.status()?["tenants"], 99_000);
    for (name, want) in [("t0", "198.51.100.1"), ("x.t99998", "")] {
        let m = query(node.dns(), &format!("{name}.apps.example.test."), RecordType::A)?;
        let got = answers(&m);
        assert_eq!(got.len(), 1, "{name}: {got:?}");
        assert!(got[0].ends_with(want), "{name}: {got:?}");
    }
    let m = query(node.dns(), "t99.apps.example.test.", RecordType::A)?;
    assert!(answers(&m).is_empty(), "the rejected row was not created");
    Ok(())
}

/// After a cluster is added, `rebalance --dry-run` lists the unpinned
/// tenants hashing now puts there; `--apply --max N` moves N of them, with
/// tombstones; pinned tenants never move.
#[test]
fn rebalance_moves_unpinned_tenants_to_todays_placement() -> anyhow::Result<()> {
    let (_dir, node) = setup()?;
    for i in 0..200 {
        node.cli(&["tenant", "create", &format!("r{i}")])?;
    }
    node.cli(&["tenant", "create", "pinned1", "--cluster", "mt1"])?;
    let nothing = node.json(&["rebalance", "--dry-run"])?;
    assert_eq!(nothing["misplaced"], 0, "{nothing}");

    node.cli(&["cluster", "put", "mt3", "--ipv4", "198.51.100.3"])?;
    let plan = node.json(&["rebalance", "--dry-run"])?;
    let misplaced = plan["misplaced"].as_u64().unwrap_or(0);
    assert!((30..=110).contains(&misplaced), "about a third of 200 now hash to mt3: {plan}");
    let moves = plan["moves"].as_array().cloned().unwrap_or_default();
    assert!(moves.iter().all(|m| m["to"] == "mt3" && m["id"] != "pinned1"), "{plan}");

    let applied = node.json(&["rebalance", "--apply", "--max", "10"])?;
    let done = applied["moves"].as_array().cloned().unwrap_or_default();
    assert_eq!(done.len(), 10);
    assert!(done.iter().all(|m| m["revision"].as_u64().unwrap_or(0) > 0 && m["error"] == ""), "{applied}");
    let moved = done[0]["id"].as_str().unwrap_or_default();
    let t = node.json(&["tenant", "get", moved])?;
    assert_eq!(t["cluster"], "mt3");
    assert_eq!(t["history"][0]["to"], "mt3", "a move leaves a tombstone: {t}");
    let after = node.json(&["rebalance", "--dry-run"])?;
    assert_eq!(after["misplaced"].as_u64(), Some(misplaced - 10));

    let e = node.cli(&["rebalance", "--apply"]).unwrap_err().to_string();
    assert!(e.contains("--max"), "{e}");
    Ok(())
}

/// Concurrent writes to one tenant never share a revision (group commit
/// keeps them in separate log entries), so a revision names one version of
/// the tenant and compare-and-set on it is sound. Writes to other tenants
/// still share entries.
#[test]
fn concurrent_writes_to_one_tenant_get_distinct_revisions() -> anyhow::Result<()> {
    use switchboard_api::proto::{self, tenants_client::TenantsClient};
    let (_dir, node) = setup()?;
    node.cli(&["tenant", "create", "hot", "--cluster", "mt1"])?;
    let server = node.server();
    let (hot, others) = tokio::runtime::Runtime::new()?.block_on(async move {
        let channel = tonic::transport::Endpoint::from_shared(server)?.connect().await?;
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..64u32 {
            let mut c = TenantsClient::new(channel.clone());
            tasks.spawn(async move {
                let r = if i % 2 == 0 {
                    let to = if i % 4 == 0 { "mt2" } else { "mt1" };
                    c.move_tenant(proto::MoveTenantRequest { id: "hot".into(), cluster: to.into(), options: None }).await
                } else {
                    c.create_tenant(proto::CreateTenantRequest { id: format!("cold{i}"), cluster: "mt1".into(), options: None }).await
                };
                (i % 2 == 0, r.map(|r| r.into_inner().revision))
            });
        }
        let (mut hot, mut others) = (Vec::new(), Vec::new());
        while let Some(done) = tasks.join_next().await {
            let (is_hot, revision) = done?;
            if is_hot {
                hot.push(revision?)
            } else {
                others.push(revision?)
            }
        }
        Ok::<_, anyhow::Error>((hot, others))
    })?;
    let mut unique = hot.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(unique.len(), hot.len(), "writes to one tenant share no revision: {hot:?}");
    let mut shared = others.clone();
    shared.sort_unstable();
    shared.dedup();
    eprintln!("32 creates of distinct tenants committed in {} entries", shared.len());
    Ok(())
}

/// Watch from a revision: every tenant change exactly once, in order,
/// across a kill -9 and restart of the node; a cluster filter sees the
/// tenants that left it (tombstones).
#[test]
fn watch_resumes_after_a_restart_with_every_change_once_in_order() -> anyhow::Result<()> {
    let (_dir, mut node) = setup()?;
    let mut written: Vec<(u64, String)> = Vec::new();
    for i in 0..5 {
        let r = node.json(&["tenant", "create", &format!("t{i}"), "--cluster", "mt1"])?;
        written.push((r["revision"].as_u64().unwrap_or(0), format!("t{i}")));
    }
    let events = |out: &str| -> anyhow::Result<Vec<serde_json::Value>> {
        out.lines().map(|l| serde_json::from_str(l).map_err(anyhow::Error::from)).collect()
    };
    let first = events(&node.cli(&["watch", "--after", "0", "--kind", "tenant", "--count", "5"])?)?;
    let seen_first: Vec<(u64, String)> =
        first.iter().map(|e| (e["revision"].as_u64().unwrap_or(0), e["key"].as_str().unwrap_or("").to_string())).collect();
    assert_eq!(seen_first, written);
    let resume = seen_first.last().map(|(r, _)| *r).unwrap_or(0);

    node.kill9()?;
    node.spawn()?;
    node.wait_leader(std::time::Duration::from_secs(30))?;

    // Resume while writes are going on: half before the stream opens, half after.
    let mut then: Vec<(u64, String)> = Vec::new();
    for i in 0..5 {
        let r = node.json(&["tenant", "move", &format!("t{i}"), "mt2"])?;
        then.push((r["revision"].as_u64().unwrap_or(0), format!("t{i}")));
    }
    let watcher = std::process::Command::new(common::BIN)
        .args(["--server", &node.server(), "watch", "--after", &resume.to_string(), "--kind", "tenant", "--count", "10"])
        .stdout(std::process::Stdio::piped())
        .spawn()?;
    let by_cluster = std::process::Command::new(common::BIN)
        .args(["--server", &node.server(), "watch", "--after", &resume.to_string(), "--cluster", "mt1", "--count", "5"])
        .stdout(std::process::Stdio::piped())
        .spawn()?;
    for i in 5..10 {
        let r = node.json(&["tenant", "create", &format!("t{i}"), "--cluster", "mt2"])?;
        then.push((r["revision"].as_u64().unwrap_or(0), format!("t{i}")));
    }
    let out = watcher.wait_with_output()?;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let second = events(&String::from_utf8_lossy(&out.stdout))?;
    let seen: Vec<(u64, String)> =
        second.iter().map(|e| (e["revision"].as_u64().unwrap_or(0), e["key"].as_str().unwrap_or("").to_string())).collect();
    assert_eq!(seen, then, "every change after the resume point, once, in commit order");

    let moved = events(&String::from_utf8_lossy(&by_cluster.wait_with_output()?.stdout))?;
    assert_eq!(moved.len(), 5);
    for (e, i) in moved.iter().zip(0..) {
        assert_eq!(e["key"], format!("t{i}"));
        assert_eq!((e["previous_cluster"].as_str(), e["value"]["cluster"].as_str()), (Some("mt1"), Some("mt2")), "{e}");
        assert_eq!(e["value"]["history"][0]["from"], "mt1", "the tombstone travels with the event: {e}");
    }
    Ok(())
}

/// Large zones cannot poison listing or the change history: a zone must fit
/// `ZONE_BYTES_MAX` (a larger one is refused, naming the limit), `zone list`
/// pages through zones whose sum is past one message, and a watch from
/// before them resumes, since zone events name the zone without its body.
#[test]
fn large_zones_list_in_pages_and_leave_the_history_resumable() -> anyhow::Result<()> {
    let (dir, node) = setup()?;
    let zone_file = |apex: &str, records: usize| {
        let txt = format!("\\\"{}\\\"", "x".repeat(250)).repeat(4);
        let mut text = format!("apex = \"{apex}\"\nenvironment = \"prod\"\nns = [\"ns1.example.test.\"]\n");
        for i in 0..records {
            text.push_str(&format!("[[records]]\nname = \"t{i}\"\ntype = \"TXT\"\ndata = \"{txt}\"\n"));
        }
        text
    };
    let too_large = dir.path().join("too-large.toml");
    std::fs::write(&too_large, zone_file("huge.example.test.", 5_000))?;
    let err = node.cli(&["zone", "put", too_large.to_str().unwrap_or_default()]).err().map(|e| e.to_string()).unwrap_or_default();
    // Refused before it is sent, naming the file, the field and the limit.
    assert!(err.contains("too-large.toml") && err.contains("zone.records") && err.contains("at most 4194304"), "{err}");

    // Four zones of about 3 MB: more than one page of zone list.
    for i in 0..4 {
        let file = dir.path().join(format!("big{i}.toml"));
        std::fs::write(&file, zone_file(&format!("big{i}.example.test."), 3_000))?;
        node.cli(&["zone", "put", file.to_str().unwrap_or_default()])?;
    }
    let zones = node.json(&["zone", "list"])?;
    let apexes: Vec<&str> = zones.as_array().map(|a| a.iter().filter_map(|z| z["apex"].as_str()).collect()).unwrap_or_default();
    for i in 0..4 {
        assert!(apexes.contains(&format!("big{i}.example.test.").as_str()), "{apexes:?}");
    }
    let deleted = node.json(&["zone", "delete", "big0.example.test."])?;
    let after_delete = deleted["revision"].as_u64().unwrap_or(0);

    let out = node.cli(&["watch", "--after", "0", "--kind", "zone", "--count", "6"])?;
    let events: Vec<serde_json::Value> = out.lines().map(serde_json::from_str).collect::<Result<_, _>>()?;
    let keys: Vec<&str> = events.iter().filter_map(|e| e["key"].as_str()).collect();
    assert_eq!(
        keys[keys.len() - 5..],
        ["big0.example.test.", "big1.example.test.", "big2.example.test.", "big3.example.test.", "big0.example.test."]
    );
    let last = &events[events.len() - 1];
    assert!(last["deleted"] == true && last["revision"].as_u64() == Some(after_delete), "{last}");
    Ok(())
}

/// 200 Watch streams that never read, on one HTTP/2 connection, over a
/// history of 30,000 changes: the node admits `api.watch_streams_max` of
/// them (RESOURCE_EXHAUSTED for the rest), each queues a bounded buffer, its
/// memory stays within 300 MB of where it started, and a stalled stream is
/// ended after `api.watch_send_timeout_ms` with a status saying where to
/// resume, which frees its place.
#[test]
fn watch_streams_that_never_read_are_bounded() -> anyhow::Result<()> {
    use switchboard_api::proto::{watch_client::WatchClient, WatchRequest};
    let dir = tempfile::tempdir()?;
    let mut node = Node::configured(dir.path(), "[api]\nwatch_streams_max = 128\nwatch_send_timeout_ms = 2000\n")?;
    node.spawn()?;
    node.wait_leader(std::time::Duration::from_secs(30))?;
    let zone = dir.path().join("zone.toml");
    std::fs::write(&zone, ZONE)?;
    node.cli(&["zone", "put", zone.to_str().unwrap_or_default()])?;
    node.cli(&["cluster", "put", "mt1", "--ipv4", "198.51.100.1"])?;
    let import = dir.path().join("tenants.csv");
    std::fs::write(&import, (0..30_000).map(|i| format!("tenant-with-a-longer-id-{i:06},mt1\n")).collect::<String>())?;
    node.cli(&["tenant", "import", import.to_str().unwrap_or_default()])?;
    let before = node.rss_bytes()?;

    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let server = node.server();
    rt.block_on(async move {
        let channel = tonic::transport::Endpoint::from_shared(server)?.connect().await?;
        let (mut open, mut refused) = (Vec::new(), 0);
        for _ in 0..200 {
            let mut client = WatchClient::new(channel.clone()).max_decoding_message_size(64 * 1024 * 1024);
            // Bounded, so a stream the connection cannot open fails the test, not hangs it.
            let opened = tokio::time::timeout(std::time::Duration::from_secs(10), client.watch(WatchRequest::default())).await;
            match opened.map_err(|_| anyhow::anyhow!("opening watch stream {} took over 10 s", open.len() + refused))? {
                Ok(stream) => open.push(stream.into_inner()),
                Err(s) if s.code() == tonic::Code::ResourceExhausted && s.message().contains("api.watch_streams_max") => refused += 1,
                Err(s) => anyhow::bail!("watch: {s}"),
            }
        }
        assert_eq!((open.len(), refused), (128, 72));
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        let during = node.rss_bytes()?;
        eprintln!("RSS {} MB before, {} MB with 128 stalled watchers", before >> 20, during >> 20);
        assert!(during < before + 300 * 1024 * 1024, "RSS {before} -> {during} bytes with 128 stalled watchers");

        // Closed streams give their places back.
        drop(open);
        let connect = || tonic::transport::Endpoint::from_shared(node.server()).map(|e| e.connect_lazy());
        let mut client = WatchClient::new(connect()?);
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
        while let Err(s) = client.watch(WatchRequest { after_revision: 0, ..Default::default() }).await {
            anyhow::ensure!(tokio::time::Instant::now() < deadline, "places not given back: {s}");
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }

        // A stream whose reader takes nothing past the send timeout ends,
        // after what it queued, with a status saying where to resume. (On a
        // connection of its own: unread data of other streams would hold
        // the connection's HTTP/2 window.)
        let mut stalled = WatchClient::new(connect()?)
            .max_decoding_message_size(64 * 1024 * 1024)
            .watch(WatchRequest { after_revision: 0, ..Default::default() })
            .await?
            .into_inner();
        tokio::time::sleep(std::time::Duration::from_secs(4)).await;
        let ended = loop {
            match tokio::time::timeout(std::time::Duration::from_secs(10), stalled.message()).await? {
                Ok(Some(_)) => continue,
                Ok(None) => anyhow::bail!("the stalled stream ended without a status"),
                Err(s) => break s,
            }
        };
        assert!(ended.code() == tonic::Code::ResourceExhausted && ended.message().contains("watch again with after_revision"), "{ended}");
        Ok::<_, anyhow::Error>(())
    })?;
    Ok(())
}
