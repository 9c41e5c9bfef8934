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
                    c.move_tenant(proto::MoveTenantRequest { id: "hot".into(), cluster: to.into(), ttl_first: None, options: None }).await
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

/// `switchboard batch FILE`: rows commit at one revision with a result
/// each (a refused row refused alone, naming its reason), answered by DNS
/// at once; `--atomic` with a refused row changes nothing; each row's
/// compare-and-set is its own; a retried call with the same request id is
/// answered with the first call's results and applies nothing again.
#[test]
fn a_batch_call_applies_row_by_row_or_all_or_nothing() -> anyhow::Result<()> {
    let (dir, node) = setup()?;
    node.cli(&["tenant", "create", "old", "--cluster", "mt1"])?;
    let old_rev = node.json(&["tenant", "get", "old"])?["revision"].as_u64().unwrap_or(0);
    let file = dir.path().join("batch.jsonl");
    let write = |lines: &[&str]| std::fs::write(&file, lines.join("\n"));
    let run = |args: &[&str]| {
        let mut a = vec!["--server".to_string(), node.server(), "--json".into(), "batch".into(), file.display().to_string()];
        a.extend(args.iter().map(|s| s.to_string()));
        let out = std::process::Command::new(common::BIN).args(&a).output()?;
        let view: serde_json::Value = if out.stdout.is_empty() { serde_json::Value::Null } else { serde_json::from_slice(&out.stdout)? };
        Ok::<_, anyhow::Error>((out.status.success(), view, String::from_utf8_lossy(&out.stderr).to_string()))
    };

    write(&[
        r#"{"create_tenant": {"id": "b1", "cluster": "mt2"}}"#,
        r#"{"create_tenant": {"id": "old"}}"#,
        r#"{"move_tenant": {"id": "old", "cluster": "mt2"}, "expected_revision": 1}"#,
        r#"{"create_tenant": {"id": "b2", "cluster": "nope"}}"#,
        r#"{"add_alias": {"tenant": "b1", "alias": "b1-alias"}}"#,
    ])?;
    let (ok, view, stderr) = run(&[])?;
    // Two rows for "old" (line 2 and 3): refused before anything is proposed.
    assert!(!ok);
    assert!(stderr.contains("InvalidArgument") || stderr.contains("INVALID_ARGUMENT"), "{stderr}");
    assert!(stderr.contains("commands[2]"), "names the row: {stderr}");
    assert!(view.is_null(), "{view}");

    write(&[
        r#"{"create_tenant": {"id": "b1", "cluster": "mt2"}}"#,
        r#"{"move_tenant": {"id": "old", "cluster": "mt2"}, "expected_revision": 1}"#,
        r#"{"create_tenant": {"id": "b2", "cluster": "nope"}}"#,
        r#"{"add_alias": {"tenant": "b1x", "alias": "b1-alias"}}"#,
        r#"{"create_tenant": {"id": "b3"}}"#,
    ])?;
    let (ok, view, stderr) = run(&[])?;
    assert!(!ok, "a refused row fails the command");
    assert!(stderr.contains("3 of 5 commands refused"), "{stderr}");
    let rows = view["rows"].as_array().cloned().unwrap_or_default();
    assert_eq!(rows.len(), 5, "{view}");
    let codes: Vec<&str> = rows.iter().map(|r| r["code"].as_str().unwrap_or("")).collect();
    assert_eq!(codes, ["", "ABORTED", "NOT_FOUND", "NOT_FOUND", ""], "{view}");
    let revision = rows[0]["revision"].as_u64().unwrap_or(0);
    assert!(revision > old_rev && rows[4]["revision"].as_u64() == Some(revision), "one revision: {view}");
    assert_eq!(rows[1]["revision"], 0);
    assert!(rows[1]["message"].as_str().unwrap_or("").contains(&format!("at revision {old_rev}")), "{view}");
    let a = answers(&query(node.dns(), "b1.apps.example.test.", RecordType::A)?);
    assert!(a.len() == 1 && a[0].ends_with("198.51.100.2"), "{a:?}");
    assert_eq!(node.json(&["tenant", "get", "old"])?["cluster"], "mt1", "the stale move was refused");

    // All or nothing: the refused row undoes the others.
    write(&[
        r#"{"create_tenant": {"id": "c1"}}"#,
        &format!(r#"{{"move_tenant": {{"id": "old", "cluster": "mt2"}}, "expected_revision": {old_rev}}}"#),
        r#"{"delete_tenant": {"id": "never-was"}}"#,
    ])?;
    let (ok, view, _) = run(&["--atomic"])?;
    assert!(!ok);
    let codes: Vec<&str> =
        view["rows"].as_array().map(|r| r.iter().map(|r| r["code"].as_str().unwrap_or("")).collect()).unwrap_or_default();
    assert_eq!(codes, ["ABORTED", "ABORTED", "NOT_FOUND"], "{view}");
    assert!(view["rows"][0]["message"].as_str().unwrap_or("").contains("commands[2] was refused"), "{view}");
    assert!(node.cli(&["tenant", "get", "c1"]).is_err(), "nothing of an atomic batch with a refusal takes effect");
    assert_eq!(node.json(&["tenant", "get", "old"])?["cluster"], "mt1");

    // Without the bad row, atomically, and retried with the same request id.
    write(&[
        r#"{"create_tenant": {"id": "c1"}}"#,
        &format!(r#"{{"move_tenant": {{"id": "old", "cluster": "mt2"}}, "expected_revision": {old_rev}}}"#),
    ])?;
    let (ok, first, stderr) = run(&["--atomic", "--request-id", "batch-retry-1"])?;
    assert!(ok, "{stderr}");
    let (ok, again, stderr) = run(&["--atomic", "--request-id", "batch-retry-1"])?;
    assert!(ok, "a replay reports the first results, not ALREADY_EXISTS: {stderr}");
    assert_eq!(first["rows"], again["rows"], "same rows, same revision");
    let moved = node.json(&["tenant", "get", "old"])?;
    assert_eq!(moved["cluster"], "mt2");
    assert_eq!(moved["history"].as_array().map(Vec::len), Some(1), "moved once: {moved}");
    Ok(())
}

/// An import whose client is killed halfway leaves the batches that
/// committed; run again, it creates the rest, counts the others as
/// existing (not rejected) and succeeds. A record that conflicts with what
/// exists (pinned elsewhere) is still rejected.
#[test]
fn an_import_killed_halfway_finishes_when_run_again() -> anyhow::Result<()> {
    let (dir, node) = setup()?;
    const N: u32 = 200_000;
    let text: String = (0..N).map(|i| if i % 2 == 0 { format!("k{i},mt1\n") } else { format!("k{i}\n") }).collect();
    let file = dir.path().join("tenants.csv");
    std::fs::write(&file, text)?;
    let import = || {
        std::process::Command::new(common::BIN)
            .args(["--server", &node.server(), "--json", "tenant", "import", file.to_str().unwrap_or_default()])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
    };
    let mut first = import()?;
    common::eventually(std::time::Duration::from_secs(60), "part of the import committed", || {
        node.status().ok().and_then(|s| s["tenants"].as_u64()).is_some_and(|n| n >= 2_048)
    })?;
    first.kill()?;
    first.wait()?;
    let part = node.status()?["tenants"].as_u64().unwrap_or(0);
    eprintln!("{part} of {N} tenants when the import was killed");
    assert!(part < u64::from(N), "killed before the end ({part})");

    // One record now conflicts: k1 pinned elsewhere than the file asks.
    node.cli(&["tenant", "pin", "k1", "mt2"]).or_else(|_| node.cli(&["tenant", "create", "k1", "--cluster", "mt2"]))?;
    let out = import()?.wait_with_output()?;
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    let (created, existing, rejected) =
        (summary["created"].as_u64().unwrap_or(0), summary["existing"].as_u64().unwrap_or(0), summary["rejected"].as_u64().unwrap_or(0));
    assert_eq!(rejected, 1, "only the conflicting record: {}", summary["errors"]);
    assert!(summary["errors"][0]["error"].as_str().is_some_and(|e| e.starts_with("AlreadyExists")), "{summary}");
    assert!(existing >= part.saturating_sub(1) && existing > 0, "{summary}");
    assert_eq!(created + existing + rejected, u64::from(N), "{summary}");
    assert!(!out.status.success(), "the conflicting record fails the run");
    assert_eq!(node.status()?["tenants"], N);
    let t = node.json(&["tenant", "get", "k199998"])?;
    assert_eq!((t["cluster"].as_str(), t["pinned"].as_bool()), (Some("mt1"), Some(true)), "{t}");
    Ok(())
}
