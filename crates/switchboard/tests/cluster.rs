//! Three voters and two learners as separate processes on loopback: writes
//! anywhere, leader failure, catch-up from the log and from a snapshot,
//! membership changes, and a full restart, all checked through the public
//! API and real DNS packets.

mod common;

use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use common::{answers, eventually, query, Node};
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;
use switchboard_api::proto::{self, tenants_client::TenantsClient};

/// Fast elections so failover fits a test; small snapshots so a late
/// learner must catch up from one.
const RAFT: &str = "[raft]\nheartbeat_ms = 50\nelection_timeout_min_ms = 300\nelection_timeout_max_ms = 600\nsnapshot_every_entries = 100\nkeep_entries_after_snapshot = 20\n";

struct Cluster {
    _root: tempfile::TempDir,
    nodes: Vec<Node>,
}

impl Cluster {
    fn node(&self, id: u64) -> &Node {
        &self.nodes[(id - 1) as usize]
    }

    fn node_mut(&mut self, id: u64) -> &mut Node {
        &mut self.nodes[(id - 1) as usize]
    }

    /// Nodes 1-3 vote; 4 and 5 are learners that join through the voters.
    fn prepare() -> anyhow::Result<Cluster> {
        let root = tempfile::tempdir()?;
        let nodes: Vec<Node> = (1..=5).map(|id| Node::prepare(root.path(), id)).collect::<anyhow::Result<_>>()?;
        common::write_cluster_configs(&nodes, 3, RAFT)?;
        Ok(Cluster { _root: root, nodes })
    }

    fn start(&mut self, id: u64) -> anyhow::Result<()> {
        self.node_mut(id).spawn()
    }

    fn leader(&mut self, among: &[u64]) -> anyhow::Result<u64> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            for id in among {
                if let Ok(s) = self.node(*id).status() {
                    if s["role"] == "leader" {
                        return Ok(*id);
                    }
                }
            }
            if Instant::now() > deadline {
                bail!("no leader among {among:?}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Wait until node `id` answers `name` with exactly `want`.
    fn wait_answer(&self, id: u64, name: &str, rtype: RecordType, want: &[String], within: Duration) -> anyhow::Result<()> {
        let dns = self.node(id).dns();
        eventually(within, &format!("node {id} answering {name} with {want:?}"), || {
            query(dns, name, rtype).is_ok_and(|m| answers(&m) == want)
        })
    }
}

fn cname(tenant: &str, cluster: &str) -> Vec<String> {
    vec![format!("ws-{tenant}.apps.example.test. CNAME ws-{cluster}.example.test.")]
}

/// Create tenants `prefix0..prefix{n}` on `cluster` through `api`, `clients` at a time.
fn create_tenants(api: &str, prefix: &str, n: usize, clients: usize, cluster: &str) -> anyhow::Result<Duration> {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    rt.block_on(async {
        let channel = tonic::transport::Endpoint::from_shared(api.to_string())?.connect().await?;
        let next = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let start = Instant::now();
        let mut tasks = Vec::new();
        for _ in 0..clients {
            let (next, mut client, prefix, cluster) =
                (next.clone(), TenantsClient::new(channel.clone()), prefix.to_string(), cluster.to_string());
            tasks.push(tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if i >= n {
                        return Ok::<_, anyhow::Error>(());
                    }
                    client
                        .create_tenant(proto::CreateTenantRequest { id: format!("{prefix}{i}"), cluster: cluster.clone(), options: None })
                        .await
                        .map_err(|s| anyhow!("creating {prefix}{i}: {s}"))?;
                }
            }));
        }
        for t in tasks {
            t.await??;
        }
        Ok(start.elapsed())
    })
}

#[test]
fn three_voters_two_learners_survive_failures_and_restarts() -> anyhow::Result<()> {
    let mut c = Cluster::prepare()?;
    eprintln!("--- start three voters and one learner");
    for id in 1..=4 {
        c.start(id)?;
    }
    for id in 1..=4 {
        c.node_mut(id).wait_leader_known(Duration::from_secs(30))?;
    }
    eventually(Duration::from_secs(20), "learner 4 joins", || {
        c.node(1).cli(&["member", "list", "--json"]).is_ok_and(|o| o.contains("\"id\":4"))
    })?;

    eprintln!("--- writes sent to a learner are forwarded, acknowledged and answered everywhere");
    let zone = c.node(1).dir.join("zone.toml");
    std::fs::write(&zone, common::zone_file("apps.example.test.", "prod"))?;
    let learner = c.node(4);
    learner.cli(&["zone", "put", zone.to_str().unwrap_or_default()])?;
    learner.cli(&["cluster", "put", "mt1", "--ipv4", "198.51.100.1"])?;
    learner.cli(&["cluster", "put", "mt2", "--ipv4", "198.51.100.2"])?;
    let created = learner.json(&["tenant", "create", "alpha", "--cluster", "mt1"])?;
    assert!(created["revision"].as_u64().unwrap_or(0) > 0);
    for id in 1..=4 {
        c.wait_answer(id, "ws-alpha.apps.example.test.", RecordType::CNAME, &cname("alpha", "mt1"), Duration::from_secs(5))?;
    }

    eprintln!("--- an ACME challenge is served by every node, and expires on every node by itself");
    learner.cli(&["acme", "set", "*.alpha.apps.example.test", "token-wild", "--expires-in", "2"])?;
    let set = learner.json(&["acme", "set", "alpha.apps.example.test", "token-apex", "--expires-in", "3600"])?;
    assert_eq!(set["challenge"]["values"].as_array().map(Vec::len), Some(2), "{set}");
    let owner = "_acme-challenge.alpha.apps.example.test.";
    let txt = |v: &str| format!("{owner} TXT {v}");
    for id in 1..=4 {
        c.wait_answer(id, owner, RecordType::TXT, &[txt("token-apex"), txt("token-wild")], Duration::from_secs(5))?;
    }
    for id in 1..=4 {
        c.wait_answer(id, owner, RecordType::TXT, &[txt("token-apex")], Duration::from_secs(15))?;
    }
    // Every node dropped it in the same entry: their challenge lists agree.
    let lists: Vec<String> =
        (1..=4).map(|id| c.node(id).json(&["acme", "list"]).map(|v| v["challenges"].to_string())).collect::<anyhow::Result<_>>()?;
    assert!(lists.iter().all(|l| *l == lists[0] && !l.contains("token-wild")), "{lists:?}");

    eprintln!("--- --wait everywhere returns only once every node answers with the write");
    c.node(2).cli(&["--wait", "everywhere", "tenant", "create", "beta", "--cluster", "mt2"])?;
    for id in 1..=4 {
        let m = query(c.node(id).dns(), "ws-beta.apps.example.test.", RecordType::CNAME)?;
        assert_eq!(answers(&m), cname("beta", "mt2"), "node {id} right after the acknowledgement");
    }

    eprintln!("--- kill -9 the leader; survivors keep answering DNS and elect a new leader");
    let old = c.leader(&[1, 2, 3])?;
    c.node_mut(old).kill9()?;
    let survivors: Vec<u64> = (1..=4).filter(|id| *id != old).collect();
    let killed_at = Instant::now();
    let mut new_leader = None;
    let mut queries = 0;
    while killed_at.elapsed() < Duration::from_secs(15) {
        for id in &survivors {
            let m = query(c.node(*id).dns(), "ws-alpha.apps.example.test.", RecordType::CNAME)
                .with_context(|| format!("node {id} during failover"))?;
            assert_eq!(answers(&m), cname("alpha", "mt1"), "node {id} answers during failover");
            queries += 1;
        }
        let voters: Vec<u64> = survivors.iter().copied().filter(|id| *id <= 3).collect();
        if let Some(l) = voters.iter().find(|id| c.node(**id).status().is_ok_and(|s| s["role"] == "leader")) {
            new_leader = Some(*l);
            break;
        }
    }
    let new_leader = new_leader.ok_or_else(|| anyhow!("no new leader within 15 s"))?;
    eprintln!("new leader {new_leader} after {:?}, {queries} queries answered meanwhile", killed_at.elapsed());
    // A write through any survivor is accepted (retrying while the election settles).
    eventually(Duration::from_secs(10), "write after failover", || c.node(survivors[0]).cli(&["tenant", "move", "alpha", "mt2"]).is_ok())?;
    for id in &survivors {
        c.wait_answer(*id, "ws-alpha.apps.example.test.", RecordType::CNAME, &cname("alpha", "mt2"), Duration::from_secs(5))?;
    }

    eprintln!("--- with a node down, --wait everywhere times out naming it; the write stands");
    let err = c
        .node(survivors[0])
        .cli(&["--wait", "everywhere", "--wait-timeout-ms", "1000", "tenant", "create", "gamma", "--cluster", "mt1"])
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(err.contains("DeadlineExceeded") && err.contains(&format!("node(s) {old}")), "{err}");
    for id in &survivors {
        c.wait_answer(*id, "ws-gamma.apps.example.test.", RecordType::CNAME, &cname("gamma", "mt1"), Duration::from_secs(5))?;
    }

    eprintln!("--- the killed node restarts and catches up");
    c.start(old)?;
    c.wait_answer(old, "ws-alpha.apps.example.test.", RecordType::CNAME, &cname("alpha", "mt2"), Duration::from_secs(20))?;

    eprintln!("--- 10,000 writes, then a new learner catches up from a snapshot");
    let before = c.node(new_leader).status()?["applied_revision"].as_u64().unwrap_or(0);
    let took = create_tenants(&c.node(new_leader).server(), "bulk", 10_000, 32, "mt1")?;
    let after = c.node(new_leader).status()?["applied_revision"].as_u64().unwrap_or(0);
    // Concurrent writes share log entries (group commit): fewer entries than writes.
    eprintln!("10,000 creates in {took:?} ({:.0}/s), {} log entries", 10_000.0 / took.as_secs_f64(), after - before);
    let leader_id = new_leader;
    eventually(Duration::from_secs(20), "leader purges its log past a snapshot", || {
        c.node(leader_id).status().is_ok_and(|s| s["purged_revision"].as_u64().unwrap_or(0) > before)
    })?;
    c.start(5)?;
    c.node_mut(5).wait_leader_known(Duration::from_secs(30))?;
    eventually(Duration::from_secs(60), "learner 5 holds all tenants", || {
        c.node(5).status().is_ok_and(|s| s["tenants"].as_u64() == Some(10_003))
    })
    .with_context(|| format!("node 5: {:?}\nlog:\n{}", c.node(5).status().ok(), c.node(5).log()))?;
    for t in ["bulk0", "bulk4999", "bulk9999"] {
        let m = query(c.node(5).dns(), &format!("{t}.apps.example.test."), RecordType::A)?;
        assert_eq!(answers(&m), vec![format!("{t}.apps.example.test. A 198.51.100.1")]);
    }
    let s5 = c.node(5).status()?;
    assert!(s5["snapshot_revision"].as_u64().unwrap_or(0) > before, "learner 5 installed a snapshot: {s5}");
    let log5 = c.node(5).log();
    assert!(!log5.contains("panicked"), "{log5}");
    // Its change history starts at the snapshot: a watch from before it is told to re-list.
    let err = c.node(5).cli(&["watch", "--after", "1", "--count", "1"]).err().map(|e| e.to_string()).unwrap_or_default();
    assert!(err.contains("compacted"), "{err}");

    eprintln!("--- remove a learner and add it back");
    let via = c.node(new_leader);
    via.cli(&["member", "remove", "5"])?;
    assert!(!via.cli(&["member", "list", "--json"])?.contains("\"id\":5"));
    let p5 = &c.node(5).ports;
    via.cli(&["member", "add-learner", "5", "--peer", &format!("127.0.0.1:{}", p5.peer), "--api", &format!("127.0.0.1:{}", p5.api)])?;
    via.cli(&["tenant", "create", "after-readd", "--cluster", "mt2"])?;
    c.wait_answer(
        5,
        "after-readd.apps.example.test.",
        RecordType::A,
        &["after-readd.apps.example.test. A 198.51.100.2".to_string()],
        Duration::from_secs(20),
    )?;

    eprintln!("--- full stop (kill -9 every node) and restart: nothing acknowledged is lost");
    for id in 1..=5 {
        c.node_mut(id).kill9()?;
    }
    for id in 1..=5 {
        c.start(id)?;
    }
    c.leader(&[1, 2, 3])?;
    for id in 1..=5 {
        c.wait_answer(
            id,
            "after-readd.apps.example.test.",
            RecordType::A,
            &["after-readd.apps.example.test. A 198.51.100.2".to_string()],
            Duration::from_secs(30),
        )?;
        c.wait_answer(id, "ws-alpha.apps.example.test.", RecordType::CNAME, &cname("alpha", "mt2"), Duration::from_secs(5))?;
        let s = c.node(id).status()?;
        assert_eq!(s["tenants"].as_u64(), Some(10_004), "node {id} holds every tenant");
        let m = query(c.node(id).dns(), "bulk1234.apps.example.test.", RecordType::A)?;
        assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    }
    Ok(())
}

/// Peer (Raft) messages are signed with the cluster secret: a node with
/// another secret gets nothing replicated and says why; with the right
/// one it catches up.
#[test]
fn peers_without_the_cluster_secret_are_refused() -> anyhow::Result<()> {
    let root = tempfile::tempdir()?;
    let (mut voter, mut learner) = (Node::prepare(root.path(), 1)?, Node::prepare(root.path(), 2)?);
    let secret = root.path().join("secret");
    let wrong = root.path().join("wrong");
    std::fs::write(&secret, "0123456789abcdef-the-right-one\n")?;
    std::fs::write(&wrong, "0123456789abcdef-another-one\n")?;
    let voters =
        format!("[[cluster.voters]]\nid = 1\npeer = \"127.0.0.1:{}\"\napi = \"127.0.0.1:{}\"\n", voter.ports.peer, voter.ports.api);
    voter.write_config(1, &format!("{RAFT}[cluster]\nname = \"s\"\nsecret_file = {secret:?}\n{voters}"))?;
    let join = voter.server();
    let learner_config = |file: &std::path::Path| {
        format!("{RAFT}[cluster]\nname = \"s\"\nrole = \"learner\"\nsecret_file = {file:?}\njoin = [\"{join}\"]\n")
    };
    learner.write_config(2, &learner_config(&wrong))?;
    voter.spawn()?;
    voter.wait_leader(Duration::from_secs(30))?;
    let zone = voter.dir.join("zone.toml");
    std::fs::write(&zone, common::zone_file("apps.example.test.", "prod"))?;
    voter.cli(&["zone", "put", zone.to_str().unwrap_or_default()])?;

    learner.spawn()?;
    eventually(Duration::from_secs(20), "the voter refuses to hear from the learner", || {
        voter.log().contains("not signed with this cluster's secret") || learner.log().contains("not signed with this cluster's secret")
    })
    .with_context(|| format!("voter log:\n{}\nlearner log:\n{}", voter.log(), learner.log()))?;
    let m = query(learner.dns(), "apps.example.test.", RecordType::SOA)?;
    assert_eq!(m.metadata.response_code, ResponseCode::Refused, "the learner got no zone");

    learner.kill9()?;
    learner.write_config(2, &learner_config(&secret))?;
    learner.spawn()?;
    eventually(Duration::from_secs(20), "the learner with the right secret catches up", || {
        query(learner.dns(), "apps.example.test.", RecordType::SOA).is_ok_and(|m| m.metadata.response_code == ResponseCode::NoError)
    })
    .with_context(|| format!("learner log:\n{}", learner.log()))?;
    // A secret that is too short is a config error naming its source.
    std::fs::write(&wrong, "short")?;
    learner.kill9()?;
    learner.write_config(2, &learner_config(&wrong))?;
    let out = std::process::Command::new(common::BIN).args(["serve", "--config"]).arg(&learner.config).output()?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("cluster.secret_file") && stderr.contains("at least 16"), "{stderr}");
    Ok(())
}

/// Three voters whose peer links all have a 250 ms round trip (voters in
/// distant datacenters). openraft 0.9 gives every append-entries exactly
/// `raft.heartbeat_ms` to be answered, so with a shorter heartbeat the
/// leader never learns that a follower has an entry and no write ever
/// commits (the old default of 100 ms did that; the chaos proxy nemesis
/// found it). With the default timings writes commit; with a 100 ms
/// heartbeat the leader says why they cannot.
#[test]
fn voters_a_long_round_trip_apart_commit_with_the_default_timings() -> anyhow::Result<()> {
    let root = tempfile::tempdir()?;
    let short = "[raft]\nheartbeat_ms = 100\nelection_timeout_min_ms = 500\nelection_timeout_max_ms = 1000\n";
    for (case, raft) in [("default", ""), ("short", short)] {
        let dir = root.path().join(case);
        let mut nodes = (1..=3).map(|id| Node::prepare(&dir, id)).collect::<anyhow::Result<Vec<_>>>()?;
        // Every peer message goes through a link that holds it 125 ms.
        let links = nodes
            .iter()
            .map(|n| common::DelayProxy::start(std::net::SocketAddr::from(([127, 0, 0, 1], n.ports.peer)), Duration::from_millis(125)))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let mut voters = format!("{raft}[cluster]\n");
        for (i, (n, link)) in nodes.iter().zip(&links).enumerate() {
            voters +=
                &format!("[[cluster.voters]]\nid = {}\npeer = \"127.0.0.1:{}\"\napi = \"127.0.0.1:{}\"\n", i + 1, link.port, n.ports.api);
        }
        for (i, n) in nodes.iter_mut().enumerate() {
            n.write_config(i as u64 + 1, &voters)?;
            n.spawn()?;
        }
        let leader = nodes[0].wait_leader_known(Duration::from_secs(30))?;
        let leader = &nodes[leader as usize - 1];
        if case == "default" {
            leader.cli(&["--wait", "everywhere", "cluster", "put", "mt1", "--ipv4", "198.51.100.1"])?;
            for n in &nodes {
                assert!(n.json(&["cluster", "list"])?.to_string().contains("198.51.100.1"));
            }
        } else {
            // No write can commit here: the leader's log must say why.
            eventually(Duration::from_secs(20), "the leader logs the overrun", || {
                leader.log().contains("did not answer within the deadline")
            })?;
        }
    }
    Ok(())
}

/// A learner 1.5 s behind its leader (a slow link) answers `tenant get`
/// from its own replica, so it misses a write just acknowledged;
/// `tenant get --consistent` through the same learner is answered by the
/// leader after it confirmed its leadership, and sees the write.
#[test]
fn consistent_reads_see_every_acknowledged_write_even_through_a_lagging_node() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    // A heartbeat longer than the 3 s round trip, so the learner's acks count.
    let raft = "[raft]\nheartbeat_ms = 5000\nelection_timeout_min_ms = 15000\nelection_timeout_max_ms = 30000\n";
    let mut voter = Node::prepare(dir.path(), 1)?;
    voter.write_config(1, raft)?;
    voter.spawn()?;
    voter.wait_leader(Duration::from_secs(40))?;
    let mut learner = Node::prepare(dir.path(), 2)?;
    learner.write_config(2, &format!("{raft}[cluster]\nrole = \"learner\"\njoin = [\"http://127.0.0.1:9\"]\n"))?;
    learner.spawn()?;
    let link = common::DelayProxy::start(std::net::SocketAddr::from(([127, 0, 0, 1], learner.ports.peer)), Duration::from_millis(1500))?;
    voter.cli(&["cluster", "put", "mt1", "--ipv4", "198.51.100.1"])?;
    voter.cli(&["cluster", "put", "mt2", "--ipv4", "198.51.100.2"])?;
    voter.cli(&["tenant", "create", "t1", "--cluster", "mt1"])?;
    let (peer, api) = (format!("127.0.0.1:{}", link.port), format!("127.0.0.1:{}", learner.ports.api));
    voter.cli(&["member", "add-learner", "2", "--peer", &peer, "--api", &api])?;
    eventually(Duration::from_secs(20), "the learner has t1", || learner.json(&["tenant", "get", "t1"]).is_ok())?;

    let moved = voter.json(&["tenant", "move", "t1", "mt2"])?;
    let local = learner.json(&["tenant", "get", "t1"])?;
    let consistent = learner.json(&["tenant", "get", "t1", "--consistent"])?;
    assert_eq!(local["cluster"], "mt1", "the learner lags 1.5 s behind: {local}");
    assert_eq!(consistent["cluster"], "mt2", "{consistent}");
    assert_eq!(consistent["revision"], moved["tenant"]["revision"], "{consistent} after {moved}");
    Ok(())
}

/// `--wait everywhere` on a cluster with tokens on the API and a cluster
/// secret: the write returns once every member has applied it (each
/// answers it at once), and with a member down it fails naming that
/// member. The members are asked over the signed peer network; they were
/// once asked over the public API without a token, and every such write
/// failed with DEADLINE_EXCEEDED although all had applied it.
#[test]
fn wait_everywhere_works_with_api_tokens_and_a_cluster_secret() -> anyhow::Result<()> {
    const BOOTSTRAP: &str = "bootstrap-admin-0123456789abcdef";
    let root = tempfile::tempdir()?;
    let token_file = root.path().join("bootstrap.token");
    let secret = root.path().join("secret");
    std::fs::write(&token_file, format!("{BOOTSTRAP}\n"))?;
    std::fs::write(&secret, "0123456789abcdef-cluster-secret\n")?;
    let mut nodes: Vec<Node> = (1..=3).map(|id| Node::prepare(root.path(), id)).collect::<anyhow::Result<_>>()?;
    let voters = common::voters_table(&nodes);
    for (i, n) in nodes.iter_mut().enumerate() {
        n.write_config(
            i as u64 + 1,
            &format!("{RAFT}[api]\nbootstrap_token_file = {token_file:?}\n[cluster]\nname = \"t\"\nsecret_file = {secret:?}\n{voters}"),
        )?;
        n.token = Some(BOOTSTRAP.into());
        n.spawn()?;
    }
    let zone = root.path().join("zone.toml");
    std::fs::write(&zone, common::zone_file("apps.example.test.", "prod"))?;
    let mut c = Cluster { _root: root, nodes };
    let leader = c.leader(&[1, 2, 3])?;
    c.node(leader).cli(&["--wait", "everywhere", "zone", "put", zone.to_str().unwrap_or_default()])?;
    c.node(leader).cli(&["--wait", "everywhere", "cluster", "put", "mt1", "--ipv4", "198.51.100.1"])?;

    eprintln!("--- a write through a follower with --wait everywhere is answered at once by every node");
    let follower = (1..=3).find(|id| *id != leader).unwrap_or(1);
    for t in ["alpha", "beta", "gamma"] {
        c.node(follower).cli(&["--wait", "everywhere", "tenant", "create", t, "--cluster", "mt1"])?;
        for id in 1..=3 {
            let m = query(c.node(id).dns(), &format!("ws-{t}.apps.example.test."), RecordType::CNAME)?;
            assert_eq!(answers(&m), cname(t, "mt1"), "node {id} had not applied the write when it returned");
        }
    }

    eprintln!("--- with a member down, the wait fails naming it; the write stands");
    let down = (1..=3).find(|id| *id != leader && *id != follower).unwrap_or(3);
    c.node_mut(down).kill9()?;
    let err = c
        .node(leader)
        .cli(&["--wait", "everywhere", "--wait-timeout-ms", "1000", "tenant", "create", "delta", "--cluster", "mt1"])
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(err.contains("DeadlineExceeded") && err.contains(&format!("node(s) {down}")), "{err}");
    let m = query(c.node(leader).dns(), "ws-delta.apps.example.test.", RecordType::CNAME)?;
    assert_eq!(answers(&m), cname("delta", "mt1"));
    Ok(())
}
