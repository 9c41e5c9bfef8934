//! DNSSEC as a validating resolver sees it: answers of a signed zone
//! checked by BIND's `delv` against the zone's DS as trust anchor (every
//! kind of answer, and one changed by a tenant move a moment before), and
//! ZSK and KSK rollovers running by themselves on a 3-voter + 1-learner
//! cluster while every answer keeps validating and every node serves the
//! same DNSKEY set at each serial.

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, ensure, Context};
use common::{eventually, single_with, which, Node};

const APEX: &str = "apps.example.test.";

/// A zone with every kind of name, signed with `algorithm`; `timings` are
/// extra lines of its `[dnssec]` table.
fn signed_zone(ttl: u32, algorithm: &str, timings: &str) -> String {
    format!(
        r#"
apex = "{APEX}"
environment = "prod"
ttl = {ttl}
ns = ["ns1.example.test."]

[soa]
minimum = {ttl}

[[rules]]
kind = "service-tenant"
services = ["ws"]
target = "{{service}}-{{cluster}}.{APEX}"

[[rules]]
kind = "tenant-host"
ttl = {ttl}

[[rules]]
kind = "acme"

[[records]]
name = "www"
type = "A"
data = "192.0.2.80"

[[records]]
name = "ws-mt1"
type = "A"
data = "198.51.100.1"

[[records]]
name = "ws-mt2"
type = "A"
data = "198.51.100.2"

[dnssec]
algorithm = "{algorithm}"
{timings}
"#
    )
}

/// Run delv against `dns` with the anchors in `anchors`; its standard
/// output. delv exits 0 whatever the validation said: the first line says.
fn delv(dns: SocketAddr, anchors: &Path, name: &str, rtype: &str) -> anyhow::Result<String> {
    let out = Command::new("delv")
        .arg("-a")
        .arg(anchors)
        .arg(format!("+root={APEX}"))
        .arg(format!("@{}", dns.ip()))
        .args(["-p", &dns.port().to_string(), "+nosplit", name, rtype])
        .output()
        .context("running delv (bind9-dnsutils)")?;
    ensure!(out.status.success(), "delv {name} {rtype}: {}", String::from_utf8_lossy(&out.stderr));
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// delv's output for `name` `rtype` must say it validated: positively
/// with `want` in the answer, or (`want` empty) as a validated denial.
fn validated(dns: SocketAddr, anchors: &Path, name: &str, rtype: &str, want: &str) -> anyhow::Result<()> {
    let out = delv(dns, anchors, name, rtype)?;
    let first = out.lines().next().unwrap_or_default();
    let ok =
        if want.is_empty() { first == "; negative response, fully validated" } else { first == "; fully validated" && out.contains(want) };
    ensure!(ok, "{name} {rtype} at {dns}: not validated as expected ({want:?}):\n{out}");
    Ok(())
}

/// `dig +short` at `dns`, lines sorted.
fn dig(dns: SocketAddr, name: &str, rtype: &str) -> anyhow::Result<Vec<String>> {
    let out = Command::new("dig")
        .arg(format!("@{}", dns.ip()))
        .args(["-p", &dns.port().to_string(), "+short", "+norec", "+time=2", "+tries=2", name, rtype])
        .output()
        .context("running dig")?;
    ensure!(out.status.success(), "dig {name} {rtype}: {}", String::from_utf8_lossy(&out.stdout));
    let mut lines: Vec<String> = String::from_utf8_lossy(&out.stdout).lines().map(str::to_string).collect();
    lines.sort();
    Ok(lines)
}

/// A delv anchors file holding every DS that `ds` lists ("tag alg type hex").
fn write_anchors(path: &Path, ds: &[String]) -> anyhow::Result<()> {
    let mut text = String::from("trust-anchors {\n");
    for d in ds {
        let f: Vec<&str> = d.split_whitespace().collect();
        let [tag, alg, digest_type, digest @ ..] = f.as_slice() else { bail!("not a DS: {d:?}") };
        text.push_str(&format!("  \"{APEX}\" static-ds {tag} {alg} {digest_type} \"{}\";\n", digest.concat()));
    }
    text.push_str("};\n");
    std::fs::write(path, text)?;
    Ok(())
}

/// An AXFR of the zone with EDNS over TCP: its response's Extended DNS
/// Error option (RFC 8914), code and text.
fn axfr_refusal(dns: SocketAddr) -> anyhow::Result<Vec<u8>> {
    use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
    use hickory_proto::rr::rdata::opt::{EdnsCode, EdnsOption};
    use hickory_proto::rr::{Name, RecordType};
    use std::io::{Read, Write};
    let mut msg = Message::new(7, MessageType::Query, OpCode::Query);
    msg.add_query(Query::query(Name::from_ascii(APEX)?, RecordType::AXFR));
    msg.set_edns(Edns::new());
    let bytes = msg.to_vec()?;
    let mut s = std::net::TcpStream::connect_timeout(&dns, Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(2)))?;
    s.write_all(&u16::try_from(bytes.len())?.to_be_bytes())?;
    s.write_all(&bytes)?;
    let mut len = [0u8; 2];
    s.read_exact(&mut len)?;
    let mut buf = vec![0u8; usize::from(u16::from_be_bytes(len))];
    s.read_exact(&mut buf)?;
    let response = Message::from_vec(&buf)?;
    ensure!(response.metadata.response_code == ResponseCode::NotAuth, "refused NOTAUTH: {response:?}");
    match response.edns.as_ref().and_then(|e| e.option(EdnsCode::from(15))) {
        Some(EdnsOption::Unknown(15, data)) => Ok(data.clone()),
        other => bail!("no Extended DNS Error: {other:?}"),
    }
}

fn require_tools() -> anyhow::Result<()> {
    for tool in ["delv", "dig"] {
        which(tool).ok_or_else(|| anyhow!("{tool} is missing: ./x setup installs bind9-dnsutils"))?;
    }
    Ok(())
}

#[test]
fn delv_validates_every_kind_of_answer_from_a_signed_zone() -> anyhow::Result<()> {
    require_tools()?;
    let (dir, node) = single_with(
        &signed_zone(300, "ecdsap256sha256", ""),
        &[&["mt1", "--ipv4", "198.51.100.1", "--ipv6", "2001:db8::1"], &["mt2", "--ipv4", "198.51.100.2"]],
    )?;
    node.cli(&["tenant", "create", "acme1", "--cluster", "mt1"])?;
    node.cli(&["acme", "set", &format!("acme1.{APEX}"), "token-value"])?;
    // The leader makes the keys at its next tick.
    let mut ds = Vec::new();
    eventually(Duration::from_secs(20), "the zone's keys are made", || {
        ds = node.json(&["dnssec", "ds", APEX]).ok().and_then(|v| v["ds"].as_array().cloned()).unwrap_or_default();
        !ds.is_empty()
    })?;
    let status = node.json(&["dnssec", "status", APEX])?;
    ensure!(status["signing"] == true && status["keys"].as_array().map_or(0, Vec::len) == 2, "one KSK and one ZSK: {status}");
    let ds: Vec<String> = ds
        .iter()
        .map(|d| format!("{} {} {} {}", d["key_tag"], d["algorithm"], d["digest_type"], d["digest"].as_str().unwrap_or("")))
        .collect();
    let anchors = dir.path().join("anchors");
    write_anchors(&anchors, &ds)?;
    // The CDS the zone publishes is the DS the parent gets.
    ensure!(dig(node.dns(), APEX, "CDS")?.iter().map(|l| l.replace(' ', "")).eq(ds.iter().map(|l| l.replace(' ', ""))), "CDS as DS");

    let dns = node.dns();
    let name = |n: &str| format!("{n}.{APEX}");
    validated(dns, &anchors, &name("ws-acme1"), "CNAME", "CNAME\tws-mt1.apps.example.test.")?;
    // The CNAME and the A it leads to, both signed.
    validated(dns, &anchors, &name("ws-acme1"), "A", "198.51.100.1")?;
    validated(dns, &anchors, &name("acme1"), "A", "198.51.100.1")?;
    validated(dns, &anchors, &name("acme1"), "AAAA", "2001:db8::1")?;
    validated(dns, &anchors, &name("blog.acme1"), "A", "198.51.100.1")?;
    validated(dns, &anchors, &name("www"), "A", "192.0.2.80")?;
    validated(dns, &anchors, APEX, "SOA", "ns1.example.test.")?;
    validated(dns, &anchors, APEX, "NS", "ns1.example.test.")?;
    validated(dns, &anchors, APEX, "DNSKEY", "257 3 13")?;
    validated(dns, &anchors, &format!("_acme-challenge.acme1.{APEX}"), "TXT", "\"token-value\"")?;
    // NXDOMAIN, NODATA at a tenant, NODATA at the apex, below a tenant.
    validated(dns, &anchors, &name("nobody"), "A", "")?;
    validated(dns, &anchors, &name("www"), "AAAA", "")?;
    validated(dns, &anchors, APEX, "TXT", "")?;
    validated(dns, &anchors, &name("blog.acme1"), "MX", "")?;
    // A query for NSEC itself gets the NSEC as its answer.
    validated(dns, &anchors, &name("www"), "NSEC", "NSEC")?;
    // A DNS-01 challenge for a site (issue 27, item 1) adds its TXT and
    // takes nothing away: the site and the names below it still answer,
    // validated.
    node.cli(&["acme", "set", &name("blog.acme1"), "site-token"])?;
    validated(dns, &anchors, &format!("_acme-challenge.blog.acme1.{APEX}"), "TXT", "\"site-token\"")?;
    validated(dns, &anchors, &name("blog.acme1"), "A", "198.51.100.1")?;
    validated(dns, &anchors, &name("x.blog.acme1"), "A", "198.51.100.1")?;
    validated(dns, &anchors, &name("blog.acme1"), "MX", "")?;

    // A zone served here below the signed one, unsigned: the parent
    // proves it has no DS there, so a validator takes it as insecure.
    let child = dir.path().join("child.toml");
    std::fs::write(&child, format!("apex = \"staging.{APEX}\"\nenvironment = \"prod\"\nns = [\"ns1.example.test.\"]\n[[records]]\nname = \"www\"\ntype = \"A\"\ndata = \"192.0.2.7\"\n"))?;
    node.cli(&["zone", "put", child.to_str().unwrap_or_default()])?;
    let insecure = delv(dns, &anchors, &format!("www.staging.{APEX}"), "A")?;
    ensure!(insecure.starts_with("; unsigned answer") && insecure.contains("192.0.2.7"), "a provably unsigned child:\n{insecure}");

    // A move is signed the moment it is served.
    node.cli(&["tenant", "move", "acme1", "mt2"])?;
    validated(dns, &anchors, &name("acme1"), "A", "198.51.100.2")?;
    validated(dns, &anchors, &name("ws-acme1"), "A", "198.51.100.2")?;

    // Without DO nothing changes: NXDOMAIN stays NXDOMAIN, no signatures.
    let plain = Command::new("dig").arg(format!("@{}", dns.ip())).args(["-p", &dns.port().to_string(), &name("nobody"), "A"]).output()?;
    ensure!(String::from_utf8_lossy(&plain.stdout).contains("status: NXDOMAIN"), "DO=0 gets NXDOMAIN");
    let unsigned = dig(dns, &name("www"), "A")?;
    ensure!(unsigned == ["192.0.2.80"], "DO=0 answers unsigned: {unsigned:?}");

    // A hot RRset is signed once: ECDSA signatures are randomised, so the
    // same bytes twice come from the cache.
    let sig = || -> anyhow::Result<Vec<String>> {
        let out = Command::new("dig")
            .arg(format!("@{}", dns.ip()))
            .args(["-p", &dns.port().to_string(), "+dnssec", "+short", &name("www"), "A"])
            .output()?;
        Ok(String::from_utf8_lossy(&out.stdout).lines().filter(|l| l.starts_with("A 13")).map(str::to_string).collect())
    };
    let (first, second) = (sig()?, sig()?);
    ensure!(!first.is_empty() && first == second, "one cached signature: {first:?} then {second:?}");

    // Signed answers of the common kinds fit the UDP size we advertise.
    for (n, t) in [(name("ws-acme1"), "CNAME"), (name("blog.acme1"), "A"), (name("nobody"), "A")] {
        let out = Command::new("dig")
            .arg(format!("@{}", dns.ip()))
            .args(["-p", &dns.port().to_string(), "+dnssec", "+bufsize=1232", "+ignore", "+norec", &n, t])
            .output()?;
        let text = String::from_utf8_lossy(&out.stdout);
        let size = text.lines().find_map(|l| l.strip_prefix(";; MSG SIZE  rcvd: ")).and_then(|v| v.trim().parse::<usize>().ok());
        ensure!(
            !text.contains(" tc ") && text.contains("RRSIG") && size.is_some_and(|s| s <= 1232),
            "{n} {t} signed within 1232 bytes:\n{text}"
        );
    }
    // What the signer did shows in /metrics: signatures made, and reused.
    let metrics = common::http_get(node.ports.http, "/metrics")?;
    let count = |result: &str| {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(&format!("switchboard_dnssec_signatures_total{{result=\"{result}\"}} ")))
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or(0)
    };
    ensure!(count("made") > 0 && count("cached") > 0, "signatures made {} and cached {}", count("made"), count("cached"));

    // Signed zones are not transferred (answers are signed as served).
    let axfr = Command::new("dig").arg(format!("@{}", dns.ip())).args(["-p", &dns.port().to_string(), APEX, "AXFR"]).output()?;
    ensure!(!String::from_utf8_lossy(&axfr.stdout).contains("IN\tSOA"), "a signed zone is not transferred");
    // With EDNS, the refusal says why: Extended DNS Error 18 (Prohibited).
    let ede = axfr_refusal(dns)?;
    ensure!(ede.starts_with(&[0, 18]) && String::from_utf8_lossy(&ede[2..]).contains("signed online"), "EDE {ede:?}");
    ensure!(node.log().contains("transfers of signed zones are not served"), "the refusal says why, in the log");
    Ok(())
}

#[test]
fn an_ed25519_zone_validates_and_unsigning_asks_the_parent_to_delete_its_ds() -> anyhow::Result<()> {
    require_tools()?;
    let timings = "ksk_submission_delay_seconds = 2\npropagation_delay_seconds = 1\ndnskey_ttl = 1";
    let (dir, node) = single_with(&signed_zone(1, "ed25519", timings), &[&["mt1", "--ipv4", "198.51.100.1"]])?;
    let dns = node.dns();
    let mut cds = Vec::new();
    eventually(Duration::from_secs(20), "CDS published", || {
        cds = dig(dns, APEX, "CDS").unwrap_or_default();
        !cds.is_empty()
    })?;
    let anchors = dir.path().join("anchors");
    write_anchors(&anchors, &cds)?;
    validated(dns, &anchors, &format!("www.{APEX}"), "A", "192.0.2.80")?;
    validated(dns, &anchors, &format!("nobody.{APEX}"), "TXT", "")?;

    // Changing the algorithm is refused, saying what to do instead.
    let file = dir.path().join("zone.toml");
    std::fs::write(&file, signed_zone(1, "ecdsap256sha256", timings))?;
    let refused = node.cli(&["zone", "put", file.to_str().unwrap_or_default()]);
    ensure!(refused.as_ref().is_err_and(|e| format!("{e:#}").contains("algorithm rollover")), "algorithm change: {refused:?}");

    // [dnssec] removed: CDS and CDNSKEY ask for the DS to go (RFC 8078 §4),
    // answers stay signed meanwhile, and then the zone is served unsigned.
    let unsigned = signed_zone(1, "ed25519", "").replace("[dnssec]\nalgorithm = \"ed25519\"\n", "");
    std::fs::write(&file, unsigned)?;
    node.cli(&["zone", "put", file.to_str().unwrap_or_default()])?;
    ensure!(dig(dns, APEX, "CDS")? == ["0 0 0 00"], "CDS delete");
    ensure!(dig(dns, APEX, "CDNSKEY")? == ["0 3 0 AA=="], "CDNSKEY delete");
    validated(dns, &anchors, &format!("www.{APEX}"), "A", "192.0.2.80")?;
    eventually(Duration::from_secs(20), "the keys go", || dig(dns, APEX, "DNSKEY").is_ok_and(|k| k.is_empty()))?;
    let status = node.cli(&["dnssec", "status", APEX]);
    ensure!(status.as_ref().is_err_and(|e| format!("{e:#}").contains("not signed")), "unsigned: {status:?}");
    Ok(())
}

/// Fast elections; the cluster of `cluster.rs`, less a learner.
const RAFT: &str = "[raft]\nheartbeat_ms = 50\nelection_timeout_min_ms = 300\nelection_timeout_max_ms = 600\n";

#[test]
fn zsk_and_ksk_rollovers_run_by_themselves_while_every_answer_validates() -> anyhow::Result<()> {
    require_tools()?;
    let root = tempfile::tempdir()?;
    let mut nodes: Vec<Node> = (1..=4).map(|id| Node::prepare(root.path(), id)).collect::<anyhow::Result<_>>()?;
    common::write_cluster_configs(&nodes, 3, RAFT)?;
    for n in &mut nodes {
        n.spawn()?;
    }
    nodes[0].wait_leader_known(Duration::from_secs(30))?;
    // Timings in seconds: a ZSK lives 8 s, a KSK 14 s; TTLs of 1 s and a
    // propagation delay of 1 s make each step wait 2 s, the parent 3 s.
    let day = 86_400.0;
    let timings = format!(
        "zsk_lifetime_days = {}\nksk_lifetime_days = {}\ndnskey_ttl = 1\npropagation_delay_seconds = 1\nksk_submission_delay_seconds = 3",
        8.0 / day,
        14.0 / day
    );
    let file = root.path().join("zone.toml");
    std::fs::write(&file, signed_zone(1, "ecdsap256sha256", &timings))?;
    let zone_put =
        eventually(Duration::from_secs(20), "zone put", || nodes[0].cli(&["zone", "put", file.to_str().unwrap_or_default()]).is_ok());
    zone_put?;
    nodes[0].cli(&["cluster", "put", "mt1", "--ipv4", "198.51.100.1"])?;
    nodes[0].cli(&["tenant", "create", "t1", "--cluster", "mt1"])?;
    let dns: Vec<SocketAddr> = nodes.iter().map(Node::dns).collect();
    eventually(Duration::from_secs(30), "every node serves CDS", || dns.iter().all(|d| dig(*d, APEX, "CDS").is_ok_and(|c| !c.is_empty())))?;

    let anchors = root.path().join("anchors");
    let names = [("t1", "A", "198.51.100.1"), ("ws-t1", "A", "198.51.100.1"), ("www", "A", "192.0.2.80"), ("nobody", "A", "")];
    // Key sets seen per SOA serial, on any node: one set per serial.
    let mut seen: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let (mut validations, mut i) = (0, 0usize);
    let (mut zsks, mut ksks) = (std::collections::BTreeSet::new(), std::collections::BTreeSet::new());
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        // The resolver's anchor follows the CDS the zone publishes.
        let cds = dig(dns[i % 4], APEX, "CDS")?;
        write_anchors(&anchors, &cds)?;
        let (label, rtype, want) = names[i % names.len()];
        validated(dns[i % 4], &anchors, &format!("{label}.{APEX}"), rtype, want).with_context(|| format!("CDS {cds:?}"))?;
        validations += 1;
        for d in &dns {
            let before = dig(*d, APEX, "SOA")?;
            let keys = dig(*d, APEX, "DNSKEY")?;
            let after = dig(*d, APEX, "SOA")?;
            if before == after && !keys.is_empty() {
                let serial = before.first().and_then(|s| s.split_whitespace().nth(2)).unwrap_or_default().to_string();
                let known = seen.entry(serial.clone()).or_insert_with(|| keys.clone());
                ensure!(*known == keys, "serial {serial}: node {d} serves {keys:?}, another node {known:?}");
            }
        }
        let status = nodes[0].json(&["dnssec", "status", APEX])?;
        for k in status["keys"].as_array().cloned().unwrap_or_default() {
            let set = if k["role"] == "zsk" { &mut zsks } else { &mut ksks };
            set.insert(k["key_tag"].to_string());
        }
        // Done when a second ZSK and a second KSK have each been made and
        // the zone is back to one key of each.
        let keys = status["keys"].as_array().map_or(0, Vec::len);
        if zsks.len() >= 2 && ksks.len() >= 2 && keys == 2 {
            break;
        }
        ensure!(Instant::now() < deadline, "rollovers not done: {status}");
        i += 1;
        std::thread::sleep(Duration::from_millis(100));
    }
    ensure!(seen.len() >= 6, "every step moved the serial: {:?}", seen.keys());
    ensure!(validations > 20, "validated throughout ({validations} answers)");
    Ok(())
}
