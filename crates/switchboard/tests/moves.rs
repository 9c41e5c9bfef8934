//! Moves that lower TTLs first, seen through a real caching resolver
//! (Debian's unbound) in front of a real node: without `--ttl-first` the
//! resolver keeps answering the old cluster for up to the rule's TTL after
//! the move; with it, for at most the lowered TTL after the move commits.

mod common;

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context};
use common::{eventually, query, Node};
use hickory_proto::rr::RecordType;

/// The rules' TTL: the longest an answer may be held before a move.
const TTL: u32 = 10;
/// The lowered TTL.
const TTL_FIRST: u32 = 2;

struct Unbound(Child);

impl Drop for Unbound {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// unbound on 127.0.0.1:`port`, caching, sending every query for the zone
/// to the node at `upstream`.
fn unbound(dir: &std::path::Path, port: u16, upstream: SocketAddr) -> anyhow::Result<Unbound> {
    let bin = common::which("unbound").ok_or_else(|| anyhow!("unbound is not installed (./x setup installs it)"))?;
    let conf = dir.join("unbound.conf");
    std::fs::write(
        &conf,
        format!(
            "server:\n  interface: 127.0.0.1@{port}\n  port: {port}\n  do-ip6: no\n  do-not-query-localhost: no\n  username: \"\"\n  chroot: \"\"\n  directory: \"{dir}\"\n  pidfile: \"{dir}/unbound.pid\"\n  use-syslog: no\n  logfile: \"\"\n  verbosity: 0\n  module-config: \"iterator\"\n  access-control: 127.0.0.0/8 allow\n  num-threads: 1\n  local-zone: \"test.\" nodefault\n  prefetch: no\n  qname-minimisation: no\n  target-fetch-policy: \"0 0 0 0 0\"\nstub-zone:\n  name: \"apps.example.test.\"\n  stub-addr: {}@{}\n",
            upstream.ip(),
            upstream.port(),
            dir = dir.display(),
        ),
    )?;
    let child =
        Command::new(bin).args(["-d", "-c"]).arg(&conf).stdout(Stdio::null()).stderr(Stdio::null()).spawn().context("starting unbound")?;
    Ok(Unbound(child))
}

/// The A answer and its TTL from the authoritative node.
fn a(server: SocketAddr, name: &str) -> Option<(String, u32)> {
    let m = query(server, name, RecordType::A).ok()?;
    m.answers.iter().find(|r| r.record_type() == RecordType::A).map(|r| (r.data.to_string(), r.ttl))
}

/// The A answer and its TTL through the resolver, asked as a stub
/// resolver asks (recursion desired), by dig.
fn via(resolver: SocketAddr, name: &str) -> Option<(String, u32)> {
    let out = Command::new("dig")
        .args(["+noall", "+answer", "+tries=1", "+time=1", "-p", &resolver.port().to_string()])
        .arg(format!("@{}", resolver.ip()))
        .args([name, "A"])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let fields: Vec<&str> =
        text.lines().find(|l| l.contains("\tA\t") || l.split_whitespace().nth(3) == Some("A"))?.split_whitespace().collect();
    Some((fields.get(4)?.to_string(), fields.get(1)?.parse().ok()?))
}

#[test]
fn a_resolver_follows_a_staged_move_within_the_lowered_ttl() -> anyhow::Result<()> {
    let zone = format!(
        "apex = \"apps.example.test.\"\nenvironment = \"prod\"\nns = [\"ns1.example.test.\"]\n\
         [[rules]]\nkind = \"service-tenant\"\nservices = [\"ws\"]\ntarget = \"{{service}}-{{cluster}}.example.test.\"\nttl = {TTL}\n\
         [[rules]]\nkind = \"tenant-host\"\nttl = {TTL}\n"
    );
    let (dir, node): (tempfile::TempDir, Node) =
        common::single_with(&zone, &[&["mt1", "--ipv4", "198.51.100.1"], &["mt2", "--ipv4", "198.51.100.2"]])?;
    for t in ["alpha", "beta"] {
        node.cli(&["tenant", "create", t, "--cluster", "mt1"])?;
    }
    let port = common::free_port();
    let resolver = SocketAddr::from(([127, 0, 0, 1], port));
    let _unbound = unbound(dir.path(), port, node.dns())?;
    let (alpha, beta) = ("alpha.apps.example.test.", "beta.apps.example.test.");
    eventually(Duration::from_secs(10), "unbound answering", || via(resolver, alpha).is_some())?;
    let old = "198.51.100.1".to_string();
    let new = "198.51.100.2".to_string();
    assert_eq!(via(resolver, beta).map(|(d, _)| d), Some(old.clone()));

    eprintln!("--- a plain move: the resolver keeps the old cluster while its answer lives");
    node.cli(&["tenant", "move", "beta", "mt2"])?;
    assert_eq!(a(node.dns(), beta).map(|(d, _)| d), Some(new.clone()), "the node answers the move at once");
    assert_eq!(via(resolver, beta).map(|(d, _)| d), Some(old.clone()), "the resolver still holds the old answer");

    eprintln!("--- a staged move: answers lowered at once, the move after the old TTL");
    let staged = node.json(&["tenant", "move", "alpha", "mt2", "--ttl-first", &TTL_FIRST.to_string()])?;
    assert_eq!(staged["tenant"]["staged"]["step"], "lowered", "{staged}");
    assert_eq!(staged["tenant"]["staged"]["old_ttl"], TTL, "{staged}");
    assert_eq!(a(node.dns(), alpha), Some((old.clone(), TTL_FIRST)), "still the old cluster, at the lowered TTL");
    let got = node.json(&["tenant", "get", "alpha"])?;
    assert_eq!(got["staged"]["to"], "mt2", "{got}");
    let revision = staged["revision"].as_u64().unwrap_or(0);
    let events = node.cli(&["watch", "--after", &(revision - 1).to_string(), "--kind", "move", "--count", "1"])?;
    assert!(events.contains("\"step\":\"lowered\""), "{events}");
    // Clients keep asking through the resolver; the move commits when the
    // node starts answering the new cluster.
    let committed = loop {
        let _ = via(resolver, alpha);
        if a(node.dns(), alpha).is_some_and(|(d, _)| d == new) {
            break Instant::now();
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(a(node.dns(), alpha), Some((new.clone(), TTL_FIRST)), "moved, the TTL still lowered");
    eventually(Duration::from_secs(u64::from(TTL)), "the resolver following the move", || {
        via(resolver, alpha).is_some_and(|(d, _)| d == new)
    })?;
    let followed = committed.elapsed();
    eprintln!("the resolver followed {followed:?} after the move committed (lowered TTL {TTL_FIRST} s, rule TTL {TTL} s)");
    assert!(followed <= Duration::from_secs(u64::from(TTL_FIRST) + 1), "the resolver held the old answer {followed:?}");
    let tombstones = node.json(&["tenant", "get", "alpha"])?;
    assert_eq!(tombstones["history"][0]["to"], "mt2", "{tombstones}");

    eprintln!("--- after another old TTL the rule's TTL returns");
    eventually(Duration::from_secs(u64::from(TTL) * 3), "the TTL restored", || a(node.dns(), alpha) == Some((new.clone(), TTL)))?;
    let done = node.json(&["tenant", "get", "alpha"])?;
    assert!(done.get("staged").is_none(), "{done}");

    eprintln!("--- a staged move cancelled while lowered stays where it was");
    node.cli(&["tenant", "move", "alpha", "mt1", "--ttl-first", "1"])?;
    assert_eq!(a(node.dns(), alpha), Some((new.clone(), 1)));
    node.cli(&["tenant", "cancel-move", "alpha"])?;
    assert_eq!(a(node.dns(), alpha), Some((new, TTL)));
    let e = node.cli(&["tenant", "move", "alpha", "mt1", "--ttl-first", &TTL.to_string()]).unwrap_err().to_string();
    assert!(e.contains("ttl_first"), "{e}");
    Ok(())
}

/// The leader that staged a move dies while the TTL is lowered: the new
/// leader takes the remaining steps, at the same revisions on every node.
#[test]
fn a_new_leader_finishes_a_staged_move() -> anyhow::Result<()> {
    const RAFT: &str = "[raft]\nheartbeat_ms = 50\nelection_timeout_min_ms = 300\nelection_timeout_max_ms = 600\n";
    let root = tempfile::tempdir()?;
    let mut nodes: Vec<Node> = (1..=3).map(|id| Node::prepare(root.path(), id)).collect::<anyhow::Result<_>>()?;
    common::write_cluster_configs(&nodes, 3, RAFT)?;
    for n in &mut nodes {
        n.spawn()?;
    }
    let mut leader = 0;
    for n in &mut nodes {
        leader = n.wait_leader_known(Duration::from_secs(30))?;
    }
    let zone = format!(
        "apex = \"apps.example.test.\"\nenvironment = \"prod\"\nns = [\"ns1.example.test.\"]\n[[rules]]\nkind = \"tenant-host\"\nttl = {TTL}\n"
    );
    let other = nodes.iter().position(|n| n.status().is_ok_and(|s| s["node_id"].as_u64() != Some(leader))).unwrap_or(0);
    let n = &nodes[other];
    let file = n.dir.join("zone.toml");
    std::fs::write(&file, zone)?;
    n.cli(&["zone", "put", file.to_str().unwrap_or_default()])?;
    n.cli(&["cluster", "put", "mt1", "--ipv4", "198.51.100.1"])?;
    n.cli(&["cluster", "put", "mt2", "--ipv4", "198.51.100.2"])?;
    n.cli(&["tenant", "create", "alpha", "--cluster", "mt1"])?;
    n.cli(&["tenant", "move", "alpha", "mt2", "--ttl-first", "1", "--wait", "everywhere"])?;
    let name = "alpha.apps.example.test.";
    eprintln!("--- the leader (node {leader}) killed while the TTL is lowered");
    nodes[(leader - 1) as usize].kill9()?;
    let alive: Vec<&Node> = nodes.iter().enumerate().filter(|(i, _)| *i as u64 != leader - 1).map(|(_, n)| n).collect();
    for n in &alive {
        let dns = n.dns();
        eventually(Duration::from_secs(u64::from(TTL) * 3), "the move taken by the new leader", || {
            a(dns, name) == Some(("198.51.100.2".into(), 1))
        })?;
    }
    for n in &alive {
        let dns = n.dns();
        eventually(Duration::from_secs(u64::from(TTL) * 3), "the TTL restored", || a(dns, name) == Some(("198.51.100.2".into(), TTL)))?;
    }
    let revisions: Vec<u64> = alive
        .iter()
        .map(|n| n.json(&["tenant", "get", "alpha"]).map(|t| t["history"][0]["revision"].as_u64().unwrap_or(0)))
        .collect::<anyhow::Result<_>>()?;
    assert!(revisions.iter().all(|r| *r == revisions[0] && *r > 0), "the move's revision on each node: {revisions:?}");
    Ok(())
}
