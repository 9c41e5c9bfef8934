//! Edges fed through a relay tree, as separate processes on loopback: three
//! voters, a relay edge following voters 1 and 2, and an edge following
//! the relay (then voter 3). Checked through the public API and real DNS
//! packets: writes sent to an edge, `--wait everywhere` across the tree,
//! an edge answering exactly as a voter at one revision, failover when the
//! relay dies, kill -9 and restart of an edge, catch-up by tail and by a
//! streamed state, the tree in `status` and `member list`, leaving a relay
//! that lost the leader, a stream refused without the secret, and
//! readiness when the whole tree above is gone.

mod common;

use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use common::{answers, eventually, http_get, query, Node};
use hickory_proto::rr::RecordType;

/// Fast elections so the test does not wait on Raft.
const RAFT: &str = "[raft]\nheartbeat_ms = 50\nelection_timeout_min_ms = 300\nelection_timeout_max_ms = 600\n";
const SECRET: &str = "edge-test-cluster-secret-0123456789";

struct Tree {
    root: tempfile::TempDir,
    voters: Vec<Node>,
}

impl Tree {
    fn secret_file(&self, secret: &str) -> anyhow::Result<String> {
        let path = self.root.path().join(format!("secret-{}", secret.len()));
        std::fs::write(&path, secret)?;
        Ok(format!("secret_file = {path:?}\n"))
    }

    /// An edge `id` following `upstreams` (peer ports), not started.
    fn edge(&self, id: u64, upstreams: &[u16], secret: &str) -> anyhow::Result<Node> {
        let node = Node::prepare(self.root.path(), id)?;
        let urls: Vec<String> = upstreams.iter().map(|p| format!("\"http://127.0.0.1:{p}\"")).collect();
        let cluster = format!(
            "[cluster]\nname = \"test\"\nrole = \"edge\"\nmax_stale_ms = 2000\nupstreams = [{}]\n{}",
            urls.join(", "),
            self.secret_file(secret)?
        );
        node.write_config(id, &cluster)?;
        Ok(node)
    }
}

fn start_voters() -> anyhow::Result<Tree> {
    let root = tempfile::tempdir()?;
    let voters: Vec<Node> = (1..=3).map(|id| Node::prepare(root.path(), id)).collect::<anyhow::Result<_>>()?;
    let mut tree = Tree { root, voters };
    let table = common::voters_table(&tree.voters);
    let secret = tree.secret_file(SECRET)?;
    for (i, n) in tree.voters.iter().enumerate() {
        n.write_config(i as u64 + 1, &format!("{RAFT}[cluster]\nname = \"test\"\nrole = \"voter\"\n{secret}{table}"))?;
    }
    for n in &mut tree.voters {
        n.spawn()?;
    }
    for n in &mut tree.voters {
        n.wait_leader_known(Duration::from_secs(30))?;
    }
    Ok(tree)
}

fn cname(tenant: &str, cluster: &str) -> Vec<String> {
    vec![format!("ws-{tenant}.apps.example.test. CNAME ws-{cluster}.example.test.")]
}

fn wait_answer(node: &Node, name: &str, want: &[String], within: Duration) -> anyhow::Result<()> {
    let dns = node.dns();
    eventually(within, &format!("{} answering {name} with {want:?}", node.server()), || {
        query(dns, name, RecordType::CNAME).is_ok_and(|m| answers(&m) == want)
    })
}

fn applied(node: &Node) -> u64 {
    node.status().ok().and_then(|s| s["applied_revision"].as_u64()).unwrap_or(0)
}

/// What a node answers for `names`: response code and answer records.
fn answers_of(node: &Node, names: &[(String, RecordType)]) -> anyhow::Result<Vec<String>> {
    names
        .iter()
        .map(|(name, rtype)| {
            let m = query(node.dns(), name, *rtype)?;
            Ok(format!("{name} {rtype}: {} {:?}", m.response_code, answers(&m)))
        })
        .collect()
}

#[test]
fn edges_follow_a_relay_tree_fail_over_and_restart() -> anyhow::Result<()> {
    let mut t = start_voters()?;
    let peer = |i: usize| t.voters[i].ports.peer;
    let (p1, p2, p3) = (peer(0), peer(1), peer(2));
    let mut relay = t.edge(11, &[p1, p2], SECRET)?;
    relay.spawn()?;
    let mut edge = t.edge(21, &[relay.ports.peer, p3], SECRET)?;
    edge.spawn()?;

    eprintln!("--- writes sent to an edge are forwarded to the leader and waited for across the tree");
    let zone = t.root.path().join("zone.toml");
    std::fs::write(&zone, common::zone_file("apps.example.test.", "prod"))?;
    edge.wait_status(Duration::from_secs(20), "follows the relay", |s| s["upstream_id"] == 11)?;
    edge.cli(&["zone", "put", zone.to_str().unwrap_or_default()])?;
    edge.cli(&["cluster", "put", "mt1", "--ipv4", "198.51.100.1"])?;
    edge.cli(&["cluster", "put", "mt2", "--ipv4", "198.51.100.2"])?;
    for i in 0..10 {
        let cluster = if i % 2 == 0 { "mt1" } else { "mt2" };
        edge.cli(&["--wait", "everywhere", "tenant", "create", &format!("t{i}"), "--cluster", cluster])?;
        // Acknowledged everywhere: the edge two tiers down answers at once.
        let m = query(edge.dns(), &format!("ws-t{i}.apps.example.test."), RecordType::CNAME)?;
        assert_eq!(answers(&m), cname(&format!("t{i}"), cluster), "--wait everywhere returned before the edge applied");
    }

    eprintln!("--- the tree is visible from the leader and from the edge");
    let members = t.voters[0].json(&["member", "list"])?;
    let listed = members.as_array().cloned().unwrap_or_default();
    let feeds = |id: u64| listed.iter().find(|n| n["id"] == id).and_then(|n| n["edge"]["upstream_id"].as_u64());
    assert!(matches!(feeds(11), Some(1) | Some(2)), "relay fed by voter 1 or 2: {members}");
    assert_eq!(feeds(21), Some(11), "edge fed by the relay: {members}");
    let status = edge.status()?;
    assert_eq!(status["role"], "edge", "{status}");
    assert!(status["ready"].as_bool().unwrap_or(false), "{status}");
    assert!(http_get(edge.ports.http, "/readyz")?.contains("200 OK"));

    eprintln!("--- at one revision an edge answers exactly as a voter");
    let mut names: Vec<(String, RecordType)> = (0..10).map(|i| (format!("ws-t{i}.apps.example.test."), RecordType::CNAME)).collect();
    names.extend((0..10).map(|i| (format!("t{i}.apps.example.test."), RecordType::A)));
    names.push(("apps.example.test.".into(), RecordType::SOA));
    names.push(("apps.example.test.".into(), RecordType::NS));
    names.push(("ws-nobody.apps.example.test.".into(), RecordType::CNAME));
    let leader_applied = applied(&t.voters[0]);
    eventually(Duration::from_secs(10), "edge at the voter's revision", || applied(&edge) == leader_applied)?;
    assert_eq!(answers_of(&edge, &names)?, answers_of(&t.voters[0], &names)?);

    eprintln!("--- the relay dies: the edge fails over to voter 3 and resumes from its own revision");
    relay.kill9()?;
    for i in 10..30 {
        t.voters[0].cli(&["tenant", "create", &format!("t{i}"), "--cluster", "mt1"])?;
    }
    edge.wait_status(Duration::from_secs(20), "follows voter 3", |s| s["upstream_id"] == 3)?;
    wait_answer(&edge, "ws-t29.apps.example.test.", &cname("t29", "mt1"), Duration::from_secs(10))?;
    let leader_applied = applied(&t.voters[0]);
    eventually(Duration::from_secs(10), "edge at the leader's revision", || applied(&edge) == leader_applied)?;
    assert_eq!(answers_of(&edge, &names)?, answers_of(&t.voters[0], &names)?);

    eprintln!("--- kill -9 of the edge: it serves its last state at once, then catches up");
    let before = applied(&edge);
    edge.kill9()?;
    for i in 30..40 {
        t.voters[0].cli(&["tenant", "create", &format!("t{i}"), "--cluster", "mt2"])?;
    }
    let restarted = Instant::now();
    edge.spawn()?;
    eventually(Duration::from_secs(5), "the restarted edge answers from its own state", || {
        query(edge.dns(), "ws-t29.apps.example.test.", RecordType::CNAME).is_ok_and(|m| answers(&m) == cname("t29", "mt1"))
    })?;
    eprintln!("    answered {} ms after the restart, from revision {before}", restarted.elapsed().as_millis());
    wait_answer(&edge, "ws-t39.apps.example.test.", &cname("t39", "mt2"), Duration::from_secs(10))?;

    eprintln!("--- a new edge behind a restarted voter gets the state streamed, then the tail");
    t.voters[2].kill9()?;
    t.voters[2].spawn()?;
    t.voters[2].wait_leader_known(Duration::from_secs(30))?;
    let mut fresh = t.edge(22, &[p3], SECRET)?;
    fresh.spawn()?;
    wait_answer(&fresh, "ws-t39.apps.example.test.", &cname("t39", "mt2"), Duration::from_secs(20))?;
    if !fresh.log().contains("installed a state from upstream") {
        bail!("the new edge did not catch up from a streamed state; log:\n{}", fresh.log());
    }
    t.voters[0].cli(&["tenant", "create", "t40", "--cluster", "mt1"])?;
    wait_answer(&fresh, "ws-t40.apps.example.test.", &cname("t40", "mt1"), Duration::from_secs(10))?;
    let leader_applied = applied(&t.voters[0]);
    eventually(Duration::from_secs(10), "new edge at the leader's revision", || applied(&fresh) == leader_applied)?;
    assert_eq!(answers_of(&fresh, &names)?, answers_of(&t.voters[0], &names)?);

    eprintln!("--- a relay cut off from the leader keeps streaming, stale: its edge moves to the next upstream");
    let mut cut = t.edge(12, &[p2], SECRET)?;
    cut.spawn()?;
    let mut behind = t.edge(24, &[cut.ports.peer, p1], SECRET)?;
    behind.spawn()?;
    behind.wait_status(Duration::from_secs(20), "follows the relay", |s| s["upstream_id"] == 12)?;
    t.voters[1].kill9()?;
    let cut_at = Instant::now();
    behind.wait_status(Duration::from_secs(30), "follows voter 1", |s| s["upstream_id"] == 1)?;
    eprintln!("    moved {} ms after the relay's upstream died", cut_at.elapsed().as_millis());
    t.voters[0].cli(&["tenant", "create", "t41", "--cluster", "mt1"])?;
    wait_answer(&behind, "ws-t41.apps.example.test.", &cname("t41", "mt1"), Duration::from_secs(10))?;

    eprintln!("--- an edge without the cluster secret is refused and never serves the state");
    let mut stranger = t.edge(23, &[p1], "another-secret-entirely-0123456789")?;
    stranger.spawn()?;
    std::thread::sleep(Duration::from_secs(2));
    let s = stranger.status()?;
    assert_eq!(s["applied_revision"], 0, "{s}");
    assert!(!s["ready"].as_bool().unwrap_or(true), "{s}");
    let m = query(stranger.dns(), "ws-t0.apps.example.test.", RecordType::CNAME)?;
    assert!(answers(&m).is_empty(), "{m:?}");

    eprintln!("--- with every upstream gone, the edge withdraws (readyz) but keeps answering");
    for v in &mut t.voters {
        v.kill9()?;
    }
    eventually(Duration::from_secs(10), "edge not ready", || http_get(edge.ports.http, "/readyz").is_ok_and(|r| r.contains("503")))
        .context("an edge cut off from every upstream must withdraw")?;
    let m = query(edge.dns(), "ws-t0.apps.example.test.", RecordType::CNAME)?;
    assert_eq!(answers(&m), cname("t0", "mt1"));
    Ok(())
}
