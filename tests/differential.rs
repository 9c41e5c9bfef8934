//! Differential test: Switchboard and Knot DNS answer the same queries for
//! the same zone identically.
//!
//! A real node is given a zone with many clusters, tenants, aliases, static
//! records and delegations; `switchboard zone export` writes it as a master
//! file, `kzonecheck` must find it clean, and `knotd` serves that file on
//! loopback. A generated query set (every common type, existing and unknown
//! names, mixed case, names below tenants, the apex, delegations, names
//! outside the zone, EDNS sizes 512/1232/4096 and none, UDP and TCP) goes to
//! both servers as the same bytes, and the responses must agree in rcode,
//! flags, question, EDNS and every section compared as a set.
//!
//! Deliberate differences, each with its reason, are in `EXCEPTIONS`: one,
//! a query with two questions.
//!
//! The node is then restarted with `dns.full_path_only`, and every UDP
//! query asked again: the full path's answers must be the fast path's,
//! byte for byte. Knot is a test dependency: `./x test` installs it.
//!
//! Another test serves the zone signed and sends every query with DO=1:
//! once RRSIGs and NSECs are set aside (and a Compact Denial NXNAME read as
//! NXDOMAIN) each answer must be Knot's, and every RRset signed.
//!
//! A further test sends TSIG-signed queries and RFC 2136 updates (with
//! `kdig -y` and `nsupdate -y`) to both, Knot holding the same key.

#[path = "../crates/switchboard/tests/common/mod.rs"]
mod common;

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use common::{http_get, which, Killed, Node};
use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query};
use hickory_proto::rr::{Name, RecordType};
use switchboard_api::proto::{self, tenants_client::TenantsClient};

const APEX: &str = "diff.example.test.";
const TENANTS: usize = 1200;
const CLUSTERS: usize = 10;

/// Differences we keep on purpose: (query name suffix or raw case, reason).
const EXCEPTIONS: &[(&str, &str)] = &[(
    "two questions",
    "Knot drops a query with QDCOUNT > 1; we answer FORMERR (RFC 1035 §4.1.1 \
     format error) so the client learns why instead of timing out",
)];

const ZONE: &str = r#"
apex = "diff.example.test."
environment = "prod"
ttl = 300
ns = ["ns1.diff.example.test.", "ns2.example.net."]

[soa]
mname = "ns1.diff.example.test."
rname = "hostmaster.example.test."
minimum = 60

[[rules]]
kind = "service-tenant"
services = ["ws", "api", "git"]
target = "{service}-{cluster}.diff.example.test."
ttl = 120

[[rules]]
kind = "tenant-host"
ttl = 60

[[rules]]
kind = "acme"

[[records]]
name = "@"
type = "MX"
data = "10 mail"
[[records]]
name = "@"
type = "MX"
data = "20 mx.example.net."
[[records]]
name = "@"
type = "TXT"
data = "\"v=spf1 mx -all\""
[[records]]
name = "@"
type = "CAA"
data = "0 issue \"letsencrypt.org\""
[[records]]
name = "@"
type = "A"
data = "192.0.2.1"
[[records]]
name = "ns1"
type = "A"
data = "192.0.2.53"
[[records]]
name = "ns1"
type = "AAAA"
data = "2001:db8::53"
[[records]]
name = "mail"
type = "A"
data = "192.0.2.25"
[[records]]
name = "www"
type = "A"
data = "192.0.2.80"
[[records]]
name = "www"
type = "AAAA"
data = "2001:db8::80"
[[records]]
name = "_sip._tcp"
type = "SRV"
data = "0 5 5060 sip"
[[records]]
name = "sip"
type = "A"
data = "192.0.2.60"
[[records]]
name = "c1"
type = "CNAME"
data = "c2"
[[records]]
name = "c2"
type = "CNAME"
data = "www"
[[records]]
name = "loop1"
type = "CNAME"
data = "loop2"
[[records]]
name = "loop2"
type = "CNAME"
data = "loop1"
[[records]]
name = "dangling"
type = "CNAME"
data = "nothing-here"
[[records]]
name = "outside"
type = "CNAME"
data = "www.example.org."
[[records]]
name = "a.b.deep"
type = "TXT"
data = "\"deep\" \"two strings\""
[[records]]
name = "sub"
type = "NS"
data = "ns.sub"
[[records]]
name = "sub"
type = "NS"
data = "ns.example.net."
[[records]]
name = "ns.sub"
type = "A"
data = "192.0.2.99"
[[records]]
name = "ext"
type = "NS"
data = "ns1.example.net."
[[records]]
name = "ws-mt1"
type = "A"
data = "198.51.100.1"
[[records]]
name = "ws-mt2"
type = "A"
data = "198.51.100.2"
[[records]]
name = "api-mt1"
type = "CNAME"
data = "ws-mt1"
[[records]]
name = "lb"
type = "A"
data = "192.0.2.200"
[[records]]
name = "blog.t0005"
type = "TXT"
data = "\"a static name below a tenant\""
[[records]]
name = "x.y.t0007"
type = "A"
data = "192.0.2.7"
[[records]]
name = "big"
type = "TXT"
data = "\"{a}\" \"{b}\" \"{c}\" \"{d}\" \"{e}\""
[[records]]
name = "medium"
type = "TXT"
data = "\"{a}\" \"{b}\" \"{c}\""
[[records]]
name = "t0009"
type = "TXT"
data = "\"static wins over the rule\""
"#;

/// Deterministic pseudo-random numbers (xorshift64*), so a failure replays.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

fn tenant_id(i: usize) -> String {
    format!("t{i:04}")
}

/// Clusters: addresses of one or both families, several addresses, one with
/// only an out-of-zone ingress host name and one with an in-zone one.
fn cluster_args(i: usize) -> Vec<String> {
    let id = format!("mt{}", i + 1);
    let mut a = vec!["cluster".to_string(), "put".to_string(), id.clone()];
    match i {
        0 => a.extend(["--hostname".into(), "ingress.mt1.example.net.".into()]),
        1 => a.extend(["--hostname".into(), "lb.diff.example.test.".into()]),
        _ => {
            for k in 0..(1 + i % 4) {
                a.extend(["--ipv4".into(), format!("198.51.{}.{}", 100 + i, 10 + k)]);
            }
            if i % 2 == 0 {
                a.extend(["--ipv6".into(), format!("2001:db8:{i:x}::1")]);
            }
        }
    }
    a
}

async fn create_tenants(server: String) -> anyhow::Result<()> {
    let channel = tonic::transport::Endpoint::from_shared(server)?.connect().await?;
    let mut tasks = tokio::task::JoinSet::new();
    for chunk in (0..TENANTS).collect::<Vec<_>>().chunks(TENANTS / 24 + 1) {
        let mut client = TenantsClient::new(channel.clone());
        let chunk = chunk.to_vec();
        tasks.spawn(async move {
            for i in chunk {
                // Every fifth tenant is pinned to a cluster, the rest placed by hashing.
                let cluster = if i % 5 == 0 { format!("mt{}", 1 + i % CLUSTERS) } else { String::new() };
                client.create_tenant(proto::CreateTenantRequest { id: tenant_id(i), cluster, ..Default::default() }).await?;
                if i % 12 == 0 {
                    let alias = format!("shop{i}");
                    client.add_alias(proto::AliasRequest { tenant: tenant_id(i), alias, ..Default::default() }).await?;
                }
            }
            Ok::<_, tonic::Status>(())
        });
    }
    // A tenant whose id reads as `{service}-{tenant}` of another: the rule
    // order decides, in Switchboard and in the export alike.
    let mut client = TenantsClient::new(channel);
    client.create_tenant(proto::CreateTenantRequest { id: "ws-t0001".into(), cluster: "mt3".into(), ..Default::default() }).await?;
    while let Some(r) = tasks.join_next().await {
        r??;
    }
    Ok(())
}

fn start_knot(dir: &Path, zonefile: &Path, port: u16) -> anyhow::Result<Killed> {
    let knotd = which("knotd").ok_or_else(|| anyhow!("knotd not found: install Debian's `knot` package (./x setup does)"))?;
    for d in ["run", "db"] {
        std::fs::create_dir_all(dir.join(d))?;
    }
    let conf = dir.join("knot.conf");
    std::fs::write(
        &conf,
        format!(
            "server:\n  rundir: {run:?}\n  listen: 127.0.0.1@{port}\n  udp-max-payload: 1232\n\
             database:\n  storage: {db:?}\n\
             log:\n  - target: stderr\n    any: warning\n\
             zone:\n  - domain: {APEX}\n    file: {zonefile:?}\n    journal-content: none\n    zonefile-sync: -1\n    zonefile-load: whole\n    semantic-checks: on\n",
            run = dir.join("run"),
            db = dir.join("db"),
        ),
    )?;
    let log = std::fs::File::create(dir.join("knot.log"))?;
    let child = Command::new(knotd).arg("-c").arg(&conf).stdout(Stdio::null()).stderr(log).spawn().context("starting knotd")?;
    Ok(Killed(child))
}

/// One query as bytes: name (as asked, mixed case allowed), type, EDNS size.
fn query_bytes(id: u16, name: &str, rtype: RecordType, edns: Option<u16>) -> anyhow::Result<Vec<u8>> {
    let mut msg = Message::new(id, MessageType::Query, OpCode::Query);
    msg.add_query(Query::query(Name::from_ascii(name)?, rtype));
    if let Some(size) = edns {
        let mut e = Edns::new();
        e.set_max_payload(size);
        msg.set_edns(e);
    }
    Ok(msg.to_vec()?)
}

fn ask_udp(server: SocketAddr, bytes: &[u8]) -> anyhow::Result<Vec<u8>> {
    ask_udp_tries(server, bytes, 5)
}

/// UDP may drop on a busy machine: ask up to `tries` times.
fn ask_udp_tries(server: SocketAddr, bytes: &[u8], tries: usize) -> anyhow::Result<Vec<u8>> {
    let sock = UdpSocket::bind("127.0.0.1:0")?;
    sock.set_read_timeout(Some(Duration::from_secs(2)))?;
    let mut buf = [0u8; 65535];
    for _ in 0..tries {
        sock.send_to(bytes, server)?;
        if let Ok((n, _)) = sock.recv_from(&mut buf) {
            if buf[..n].get(..2) == bytes.get(..2) {
                return Ok(buf[..n].to_vec());
            }
        }
    }
    bail!("no UDP answer from {server}")
}

fn ask_tcp(server: SocketAddr, bytes: &[u8]) -> anyhow::Result<Vec<u8>> {
    let mut s = TcpStream::connect_timeout(&server, Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    let len = u16::try_from(bytes.len())?;
    s.write_all(&len.to_be_bytes())?;
    s.write_all(bytes)?;
    let mut len = [0u8; 2];
    s.read_exact(&mut len)?;
    let mut buf = vec![0u8; usize::from(u16::from_be_bytes(len))];
    s.read_exact(&mut buf)?;
    Ok(buf)
}

/// What is compared of a response. Sections are sets of lower-cased
/// presentation lines: RRset order is not significant (RFC 2181 §5).
#[derive(Debug, PartialEq, Eq)]
struct Seen {
    rcode: String,
    flags: String,
    question: Vec<String>,
    edns: Option<(u8, u16)>,
    answer: BTreeSet<String>,
    authority: BTreeSet<String>,
    additional: BTreeSet<String>,
}

fn seen(bytes: &[u8]) -> anyhow::Result<Seen> {
    let m = Message::from_vec(bytes).map_err(|e| anyhow!("unparseable response: {e}"))?;
    let set = |rs: &[hickory_proto::rr::Record]| -> BTreeSet<String> {
        rs.iter().map(|r| format!("{} {} {} {}", r.name, r.ttl, r.record_type(), r.data).to_ascii_lowercase()).collect()
    };
    let md = &m.metadata;
    Ok(Seen {
        rcode: format!("{:?}", md.response_code),
        flags: format!(
            "qr={} aa={} tc={} rd={} ra={} ad={} cd={}",
            md.message_type == MessageType::Response,
            md.authoritative,
            md.truncation,
            md.recursion_desired,
            md.recursion_available,
            md.authentic_data,
            md.checking_disabled
        ),
        question: m.queries.iter().map(|q| format!("{} {} {}", q.name(), q.query_class(), q.query_type())).collect(),
        edns: m.edns.as_ref().map(|e| (e.version(), e.max_payload())),
        answer: set(&m.answers),
        authority: set(&m.authorities),
        additional: set(&m.additionals),
    })
}

/// Flip the case of some letters, as resolvers doing 0x20 randomisation do.
fn mixed_case(name: &str, rng: &mut Rng) -> String {
    name.chars().map(|c| if rng.below(2) == 0 { c.to_ascii_uppercase() } else { c }).collect()
}

/// The query set: (name as asked, type).
fn queries(rng: &mut Rng, aliases: &[String]) -> Vec<(String, RecordType)> {
    use RecordType::*;
    let all = [A, AAAA, NS, SOA, MX, TXT, SRV, CAA, CNAME, ANY, DS, PTR, HTTPS];
    let host = [A, AAAA, ANY, TXT, CNAME, MX];
    let mut q: Vec<(String, RecordType)> = Vec::new();
    let rel = |n: &str| if n.is_empty() { APEX.to_string() } else { format!("{n}.{APEX}") };
    let fixed = [
        "",
        "ns1",
        "mail",
        "www",
        "_sip._tcp",
        "_tcp",
        "sip",
        "c1",
        "c2",
        "loop1",
        "dangling",
        "outside",
        "deep",
        "b.deep",
        "a.b.deep",
        "c.deep",
        "x.a.b.deep",
        "sub",
        "ns.sub",
        "host.sub",
        "a.b.sub",
        "ext",
        "x.ext",
        "ws-mt1",
        "ws-mt2",
        "api-mt1",
        "lb",
        "nope",
        "x.nope",
        "ws-nobody",
        "ws--t0001",
        "_x",
        "t0005",
        "blog.t0005",
        "x.blog.t0005",
        "other.t0005",
        "t0007",
        "y.t0007",
        "x.y.t0007",
        "z.y.t0007",
        "w.t0007",
        "big",
        "medium",
        "t0009",
        "x.t0009",
        "ws-t0001",
        "x.ws-t0001",
        "t0001",
        "ws-t0009",
        "*",
        "*.t0003",
        // DNS-01 challenges for a tenant's sites (set in `serve_both`): the
        // sites keep answering, in the export as explicit names.
        "_acme-challenge.blog.t0005",
        "x._acme-challenge.blog.t0005",
        "y.x.blog.t0005",
        "t0008",
        "b.t0008",
        "a.b.t0008",
        "x.a.b.t0008",
        "x.b.t0008",
        "_acme-challenge.a.b.t0008",
        "x._acme-challenge.a.b.t0008",
        "_acme-challenge.t0008",
        "x._acme-challenge.t0008",
    ];
    for n in fixed {
        for t in all {
            q.push((rel(n), t));
        }
    }
    for n in ["example.org.", "test.", "example.test.", "xdiff.example.test.", "org."] {
        q.push((n.to_string(), A));
    }
    while q.len() < 6000 {
        let i = rng.below(TENANTS);
        let id = tenant_id(i);
        let name = match rng.below(9) {
            0 => id.clone(),
            1 => format!("{}-{id}", rng.pick(&["ws", "api", "git"])),
            2 => format!("www.{id}"),
            3 => format!("a.b.{id}"),
            4 => rng.pick(aliases).clone(),
            5 => format!("x.{}", rng.pick(aliases)),
            6 => format!("n{}", rng.next() % 100_000),
            7 => format!("{}-n{}", rng.pick(&["ws", "api"]), rng.next() % 1000),
            _ => format!("{}.{id}", rng.pick(&["_acme-challenge", "mail", "deep.er"])),
        };
        let name = if rng.below(4) == 0 { mixed_case(&rel(&name), rng) } else { rel(&name) };
        q.push((name, *rng.pick(&host)));
    }
    q
}

/// A node serving `ZONE` (with `extra` added to its zone file) and every
/// tenant, and Knot serving the node's export of it.
fn serve_both(extra: &str) -> anyhow::Result<(tempfile::TempDir, Node, Killed, SocketAddr)> {
    let dir = tempfile::tempdir()?;
    let node = Node::start_single(dir.path())?;
    let zone = dir.path().join("zone.toml");
    let filled = ["a", "b", "c", "d", "e"].iter().fold(ZONE.to_string(), |z, l| z.replace(&format!("{{{l}}}"), &l.repeat(240)));
    std::fs::write(&zone, filled + extra)?;
    for i in 0..CLUSTERS {
        let args = cluster_args(i);
        node.cli(&args.iter().map(String::as_str).collect::<Vec<_>>())?;
    }
    node.cli(&["zone", "put", zone.to_str().unwrap_or_default()])?;
    tokio::runtime::Runtime::new()?.block_on(create_tenants(node.server()))?;
    for site in ["blog.t0005", "a.b.t0008", "t0008", "nobody-here"] {
        node.cli(&["acme", "set", &format!("{site}.{APEX}"), &format!("token-for-{site}")])?;
    }
    if !extra.is_empty() {
        // A signed zone: its keys are in the export once the leader made them.
        common::eventually(Duration::from_secs(20), "the zone's keys", || node.cli(&["dnssec", "ds", APEX]).is_ok())?;
    }

    let exported = dir.path().join("diff.zone");
    node.cli(&["zone", "export", APEX, "--output", exported.to_str().unwrap_or_default()])?;
    let text = std::fs::read_to_string(&exported)?;
    assert!(text.lines().count() > 4 * TENANTS, "export has {} lines", text.lines().count());

    // Knot's own checker finds the file clean.
    let kzonecheck = which("kzonecheck").ok_or_else(|| anyhow!("kzonecheck not found: install Debian's `knot-dnssecutils`"))?;
    let check = Command::new(kzonecheck).arg("-o").arg(APEX).arg(&exported).output()?;
    let said = format!("{}{}", String::from_utf8_lossy(&check.stdout), String::from_utf8_lossy(&check.stderr));
    assert!(check.status.success() && said.trim().is_empty(), "kzonecheck: {said}");

    let knot_port = common::free_port();
    let knot = start_knot(dir.path(), &exported, knot_port)?;
    let knot_addr: SocketAddr = format!("127.0.0.1:{knot_port}").parse()?;
    common::eventually(Duration::from_secs(20), "knotd serving the zone", || {
        query_bytes(1, APEX, RecordType::SOA, None)
            .and_then(|b| ask_udp(knot_addr, &b))
            .and_then(|r| seen(&r))
            .is_ok_and(|s| s.rcode == "NoError")
    })
    .with_context(|| std::fs::read_to_string(dir.path().join("knot.log")).unwrap_or_default())?;
    Ok((dir, node, knot, knot_addr))
}

#[test]
fn switchboard_answers_as_knot_does() -> anyhow::Result<()> {
    let (_dir, mut node, knot, knot_addr) = serve_both("")?;

    let aliases: Vec<String> = (0..TENANTS).step_by(12).map(|i| format!("shop{i}")).collect();
    let mut rng = Rng(0x5eed_2026);
    let set = queries(&mut rng, &aliases);
    let (mut compared, mut excepted, mut truncated, mut differences) = (0usize, 0usize, 0usize, Vec::new());
    // Every UDP exchange with Switchboard, to ask again of the full path.
    let mut udp_seen: Vec<(String, Vec<u8>, Vec<u8>)> = Vec::new();
    for (n, (name, rtype)) in set.iter().enumerate() {
        let edns = [None, Some(512), Some(1232), Some(4096)][n % 4];
        let tcp = n % 7 == 0;
        let bytes = query_bytes((n % 65536) as u16, name, *rtype, edns)?;
        let ask = |server| if tcp { ask_tcp(server, &bytes) } else { ask_udp(server, &bytes) };
        let ours_bytes = ask(node.dns())?;
        let ours = seen(&ours_bytes)?;
        if !tcp {
            udp_seen.push((format!("{name} {rtype} edns={edns:?}"), bytes.clone(), ours_bytes));
        }
        let theirs = seen(&ask(knot_addr)?)?;
        compared += 1;
        truncated += usize::from(ours.flags.contains("tc=true"));
        if ours != theirs {
            let lower = name.to_ascii_lowercase();
            if EXCEPTIONS.iter().any(|(suffix, _)| lower.ends_with(suffix)) {
                excepted += 1;
                continue;
            }
            differences.push(format!("{name} {rtype} edns={edns:?} tcp={tcp}\n  switchboard: {ours:?}\n  knot:        {theirs:?}"));
        }
    }
    // Malformed and unusual requests, as raw bytes: (what, bytes).
    let question = query_bytes(0x4242, &format!("www.{APEX}"), RecordType::A, None)?;
    let with_opt = query_bytes(0x4343, &format!("www.{APEX}"), RecordType::A, Some(1232))?;
    let mut raw: Vec<(&str, Vec<u8>)> = Vec::new();
    let mut no_question = question[..12].to_vec();
    no_question[5] = 0; // QDCOUNT = 0
    raw.push(("no question", no_question));
    let mut two = question.clone();
    two[5] = 2;
    two.extend_from_slice(&question[12..]);
    raw.push(("two questions", two));
    for opcode in [1u8, 2, 3, 6] {
        let mut q = question.clone();
        q[2] = (q[2] & 0x87) | (opcode << 3);
        raw.push(("opcode", q));
    }
    // EDNS version 1 (BADVERS) and an unknown EDNS option (ignored).
    let mut v1 = with_opt.clone();
    let n = v1.len();
    v1[n - 5] = 1; // the OPT's TTL: ext-rcode, version, flags
    raw.push(("EDNS version 1", v1));
    let mut unknown_option = with_opt.clone();
    let n = unknown_option.len();
    unknown_option[n - 2..].copy_from_slice(&[0, 6]); // RDLENGTH 6
    unknown_option.extend_from_slice(&[0xfd, 0xe9, 0, 2, 0xab, 0xcd]); // option 65001, 2 bytes
    raw.push(("unknown EDNS option", unknown_option));
    let mut chaos = question.clone();
    let n = chaos.len();
    chaos[n - 1] = 3; // QCLASS CH
    raw.push(("class CH", chaos));
    for (what, bytes) in &raw {
        // Silence is a possible answer here: ask twice, not five times.
        let ours = ask_udp_tries(node.dns(), bytes, 2).and_then(|r| seen(&r));
        let theirs = ask_udp_tries(knot_addr, bytes, 2).and_then(|r| seen(&r));
        compared += 1;
        match (ours, theirs) {
            (Ok(a), Ok(b)) if a == b => {}
            (Err(_), Err(_)) => {}
            _ if EXCEPTIONS.iter().any(|(case, _)| case == what) => excepted += 1,
            (a, b) => differences.push(format!("{what}\n  switchboard: {a:?}\n  knot:        {b:?}")),
        }
    }
    drop(knot);
    for (what, bytes) in &raw {
        if let Ok(r) = ask_udp_tries(node.dns(), bytes, 2) {
            udp_seen.push((what.to_string(), bytes.clone(), r));
        }
    }

    // The same node restarted on its full path only: every UDP answer,
    // most of which came from the fast path, must be the same bytes.
    let fast = udp_answered_by(&node, "fast")?;
    eprintln!("the fast path answered {fast} of {} UDP queries", udp_seen.len());
    assert!(fast * 2 >= udp_seen.len() as u64, "the fast path answered only {fast} of {} UDP queries", udp_seen.len());
    node.stop(Duration::from_secs(20))?;
    let mut config = std::fs::read_to_string(&node.config)?;
    config.push_str("[dns]\nfull_path_only = true\n");
    std::fs::write(&node.config, config)?;
    node.spawn()?;
    node.wait_leader(Duration::from_secs(30))?;
    let mut paths_differ = Vec::new();
    for (what, bytes, fast) in &udp_seen {
        let full = ask_udp(node.dns(), bytes)?;
        if &full != fast {
            paths_differ.push(format!("{what}\n  fast path: {fast:?}\n  full path: {full:?}"));
        }
    }
    eprintln!("compared {} UDP answers of the fast path and the full path: {} differ", udp_seen.len(), paths_differ.len());
    assert_eq!(udp_answered_by(&node, "fast")?, 0, "dns.full_path_only left the fast path on");
    assert!(udp_seen.len() >= 4000);
    assert!(
        paths_differ.is_empty(),
        "{} UDP answers differ between the fast and the full path:\n{}",
        paths_differ.len(),
        paths_differ.iter().take(10).cloned().collect::<Vec<_>>().join("\n")
    );
    eprintln!(
        "compared {compared} queries over {} tenants ({truncated} truncated over UDP): {} differences, {excepted} excepted",
        TENANTS + 1,
        differences.len()
    );
    assert!(compared >= 5000);
    assert!(truncated > 0, "no query exercised truncation");
    assert!(
        differences.is_empty(),
        "{} of {compared} answers differ from Knot's:\n{}",
        differences.len(),
        differences.iter().take(25).cloned().collect::<Vec<_>>().join("\n")
    );
    Ok(())
}

/// One query with DO=1 (and EDNS `size`).
fn query_bytes_do(id: u16, name: &str, rtype: RecordType, size: u16) -> anyhow::Result<Vec<u8>> {
    let mut msg = Message::new(id, MessageType::Query, OpCode::Query);
    msg.add_query(Query::query(Name::from_ascii(name)?, rtype));
    let mut e = Edns::new();
    e.set_max_payload(size);
    e.set_dnssec_ok(true);
    msg.set_edns(e);
    Ok(msg.to_vec()?)
}

/// What a signed response says once its DNSSEC records are set aside: its
/// `Seen` without RRSIG and NSEC records, NXDOMAIN where a Compact Denial
/// NSEC says NXNAME (RFC 9824); and the RRsets of its answer section no
/// RRSIG covers.
fn unsigned_view(bytes: &[u8]) -> anyhow::Result<(Seen, Vec<String>)> {
    let mut m = Message::from_vec(bytes).map_err(|e| anyhow!("unparseable response: {e}"))?;
    let code = |r: &hickory_proto::rr::Record| u16::from(r.record_type());
    let raw = |r: &hickory_proto::rr::Record| match &r.data {
        hickory_proto::rr::RData::Unknown { rdata, .. } => rdata.anything.clone(),
        _ => Vec::new(),
    };
    // NXNAME (128) is bit 0x80 of the 17th byte of window 0.
    let nxname = m.authorities.iter().filter(|r| code(r) == 47).any(|r| {
        let data = raw(r);
        let mut i = 0;
        while i < data.len() && data[i] != 0 {
            i += 1 + usize::from(data[i]);
        }
        let bitmap = data.get(i + 1..).unwrap_or_default();
        bitmap.first() == Some(&0) && bitmap.get(1).is_some_and(|l| *l >= 17) && bitmap.get(2 + 16).is_some_and(|b| b & 0x80 != 0)
    });
    let covered: BTreeSet<(String, u16)> = m
        .answers
        .iter()
        .filter(|r| code(r) == 46)
        .filter_map(|r| raw(r).get(..2).map(|t| (r.name.to_string().to_ascii_lowercase(), u16::from_be_bytes([t[0], t[1]]))))
        .collect();
    let unsigned: Vec<String> = m
        .answers
        .iter()
        .filter(|r| code(r) != 46 && !covered.contains(&(r.name.to_string().to_ascii_lowercase(), code(r))))
        .map(|r| format!("{} {}", r.name, r.record_type()))
        .collect();
    for section in [&mut m.answers, &mut m.authorities, &mut m.additionals] {
        section.retain(|r| !matches!(code(r), 46 | 47));
    }
    if nxname {
        m.metadata.response_code = hickory_proto::op::ResponseCode::NXDomain;
    }
    Ok((seen(&m.to_vec()?)?, unsigned))
}

/// The same zone signed: every answer to a DO=1 query carries Knot's data
/// (serving the export unsigned) once its RRSIGs and NSECs are set aside,
/// and every RRset of its answer section is signed.
#[test]
fn signed_answers_carry_what_knot_serves_unsigned() -> anyhow::Result<()> {
    let (_dir, node, knot, knot_addr) = serve_both("\n[dnssec]\nalgorithm = \"ecdsap256sha256\"\n")?;
    let aliases: Vec<String> = (0..TENANTS).step_by(12).map(|i| format!("shop{i}")).collect();
    let mut rng = Rng(0x5eed_2027);
    let set = queries(&mut rng, &aliases);
    let (mut compared, mut truncated, mut signed) = (0usize, 0usize, 0usize);
    let (mut differences, mut unsigned_sets) = (Vec::new(), Vec::new());
    for (n, (name, rtype)) in set.iter().enumerate() {
        let tcp = n % 2 == 0;
        let bytes = query_bytes_do((n % 65536) as u16, name, *rtype, 1232)?;
        let ask = |server| if tcp { ask_tcp(server, &bytes) } else { ask_udp(server, &bytes) };
        let ours_bytes = ask(node.dns())?;
        let (ours, unsigned) = unsigned_view(&ours_bytes)?;
        let theirs = seen(&ask(knot_addr)?)?;
        compared += 1;
        signed += usize::from(
            Message::from_vec(&ours_bytes).is_ok_and(|m| m.answers.iter().chain(&m.authorities).any(|r| u16::from(r.record_type()) == 46)),
        );
        // Signatures make some answers too large for UDP where Knot's fit.
        if ours.flags.contains("tc=true") && !theirs.flags.contains("tc=true") {
            truncated += 1;
            continue;
        }
        let in_zone = name.to_ascii_lowercase().ends_with(APEX);
        if in_zone && !unsigned.is_empty() {
            unsigned_sets.push(format!("{name} {rtype}: {unsigned:?}"));
        }
        if ours != theirs {
            differences.push(format!("{name} {rtype} tcp={tcp}\n  switchboard: {ours:?}\n  knot:        {theirs:?}"));
        }
    }
    drop(knot);
    eprintln!(
        "compared {compared} DO=1 queries ({signed} signed, {truncated} truncated by their signatures): {} differences",
        differences.len()
    );
    assert!(compared >= 5000 && signed * 2 >= compared, "{signed} of {compared} signed");
    assert!(
        unsigned_sets.is_empty(),
        "RRsets without an RRSIG:\n{}",
        unsigned_sets.iter().take(10).cloned().collect::<Vec<_>>().join("\n")
    );
    assert!(
        differences.is_empty(),
        "{} of {compared} signed answers differ from Knot's:\n{}",
        differences.len(),
        differences.iter().take(25).cloned().collect::<Vec<_>>().join("\n")
    );
    Ok(())
}

/// How many UDP queries `node` has answered on `path` (fast or full),
/// from its `/metrics`.
fn udp_answered_by(node: &Node, path: &str) -> anyhow::Result<u64> {
    let out = http_get(node.ports.http, "/metrics")?;
    let series = format!("switchboard_dns_udp_path_total{{path=\"{path}\"}} ");
    let line = out.lines().find_map(|l| l.strip_prefix(&series)).ok_or_else(|| anyhow!("no {series} in /metrics"))?;
    Ok(line.trim().parse()?)
}

/// kdig's view of one exchange: the status, whether it warned (a TSIG it
/// could not verify), and the answer section as sorted lines.
fn kdig_view(server: SocketAddr, args: &[&str]) -> anyhow::Result<(String, bool, Vec<String>)> {
    let out = Command::new("kdig")
        .arg(format!("@{}", server.ip()))
        .args(["-p", &server.port().to_string(), "+tcp"])
        .args(args)
        .output()
        .context("running kdig")?;
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    let status = text
        .split("status: ")
        .nth(1)
        .map(|s| s.split(|c: char| c == ',' || c == ';' || c.is_whitespace()).next().unwrap_or_default().to_string())
        .or_else(|| text.split("replied with error '").nth(1).map(|s| s.split('\'').next().unwrap_or_default().to_string()))
        .unwrap_or_else(|| "none".into());
    let mut answers: Vec<String> = text
        .split(";; ANSWER SECTION:")
        .nth(1)
        .map(|s| {
            s.lines().skip(1).take_while(|l| !l.trim().is_empty()).map(|l| l.split_whitespace().collect::<Vec<_>>().join(" ")).collect()
        })
        .unwrap_or_default();
    answers.sort();
    Ok((status, text.contains("WARNING"), answers))
}

/// `nsupdate -y KEY` with `commands` against `server`: success and the
/// RCODE it reports on failure.
fn nsupdate_at(server: SocketAddr, key: &str, commands: &str) -> anyhow::Result<String> {
    let mut child = Command::new("nsupdate")
        .args(["-y", key])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("running nsupdate")?;
    let script = format!("server {} {}\nzone {APEX}\n{commands}\nsend\n", server.ip(), server.port());
    child.stdin.take().context("stdin")?.write_all(script.as_bytes())?;
    let out = child.wait_with_output()?;
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    Ok(if out.status.success() {
        "NOERROR".into()
    } else {
        text.split("update failed: ").nth(1).map(|s| s.split_whitespace().next().unwrap_or_default().to_string()).unwrap_or(text)
    })
}

/// TSIG-signed queries and RFC 2136 updates, the same to Switchboard and to
/// Knot DNS serving the exported zone with the same key: the same status,
/// the same answers, verified signatures both ways, the same refusals, and
/// the same records afterwards. Names the rules make are left out: Knot
/// holds them as records, Switchboard refuses to change them (by design,
/// README "RFC 2136 UPDATE").
#[test]
fn signed_queries_and_updates_answer_as_knot_does() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let node = Node::start_single(dir.path())?;
    let zone = format!(
        "apex = \"{APEX}\"\nenvironment = \"prod\"\nns = [\"ns1.{APEX}\"]\n[[rules]]\nkind = \"service-tenant\"\nservices = [\"ws\"]\ntarget = \"{{service}}-{{cluster}}.example.test.\"\n[[rules]]\nkind = \"tenant-host\"\nttl = 60\n[[records]]\nname = \"ns1\"\ntype = \"A\"\ndata = \"192.0.2.53\"\n[[records]]\nname = \"www\"\ntype = \"A\"\ndata = \"192.0.2.80\"\n"
    );
    let file = dir.path().join("zone.toml");
    std::fs::write(&file, zone)?;
    node.cli(&["zone", "put", file.to_str().unwrap_or_default()])?;
    node.cli(&["cluster", "put", "mt1", "--ipv4", "198.51.100.1"])?;
    for t in ["t1", "t2"] {
        node.cli(&["tenant", "create", t, "--cluster", "mt1"])?;
    }
    let key = node.cli(&["tsig", "create", "diff-key", "--algorithm", "hmac-sha256", "--allow", "update"])?;
    let key = key.trim().to_string();
    let [alg, name, secret]: [&str; 3] = key.split(':').collect::<Vec<_>>().try_into().map_err(|_| anyhow!("key {key}"))?;

    // Knot serves the export, with the key, updates allowed with it.
    let exported = dir.path().join("diff.zone");
    node.cli(&["zone", "export", APEX, "--output", exported.to_str().unwrap_or_default()])?;
    let knot_dir = dir.path().join("knot");
    for d in ["run", "db"] {
        std::fs::create_dir_all(knot_dir.join(d))?;
    }
    let port = common::free_port();
    let conf = knot_dir.join("knot.conf");
    std::fs::write(
        &conf,
        format!(
            "server:\n  rundir: {run:?}\n  listen: 127.0.0.1@{port}\n\
             database:\n  storage: {db:?}\n\
             log:\n  - target: stderr\n    any: warning\n\
             key:\n  - id: {name}\n    algorithm: {alg}\n    secret: {secret}\n\
             acl:\n  - id: update\n    key: {name}\n    action: update\n\
             zone:\n  - domain: {APEX}\n    file: {exported:?}\n    acl: update\n    zonefile-sync: -1\n    zonefile-load: whole\n",
            run = knot_dir.join("run"),
            db = knot_dir.join("db"),
        ),
    )?;
    let knotd = which("knotd").ok_or_else(|| anyhow!("knotd not found: install Debian's `knot` package (./x setup does)"))?;
    let log = std::fs::File::create(knot_dir.join("knot.log"))?;
    let _knot = Killed(Command::new(knotd).arg("-c").arg(&conf).stdout(Stdio::null()).stderr(log).spawn().context("starting knotd")?);
    let knot = SocketAddr::from(([127, 0, 0, 1], port));
    common::eventually(Duration::from_secs(20), "knotd serving the zone", || {
        kdig_view(knot, &["SOA", APEX]).is_ok_and(|(s, _, a)| s == "NOERROR" && !a.is_empty())
    })
    .map_err(|e| anyhow!("{e}: {}", std::fs::read_to_string(knot_dir.join("knot.log")).unwrap_or_default()))?;
    let sb = node.dns();
    let same = |args: &[&str]| -> anyhow::Result<()> {
        let (a, b) = (kdig_view(sb, args)?, kdig_view(knot, args)?);
        if a != b {
            bail!("{args:?}: switchboard {a:?}, knot {b:?}");
        }
        Ok(())
    };
    let wrong = format!("{alg}:{name}:{}", "A".repeat(43) + "=");
    let unknown = format!("{alg}:nobody.:{secret}");
    for k in [key.as_str(), wrong.as_str(), unknown.as_str()] {
        for (t, q) in [("SOA", APEX.to_string()), ("A", format!("www.{APEX}")), ("A", format!("t1.{APEX}")), ("A", format!("nope.{APEX}"))]
        {
            same(&["-y", k, t, &q])?;
        }
    }

    // Not alike by accident: signed answers verify, bad keys are told apart.
    let (status, warned, answers) = kdig_view(sb, &["-y", &key, "A", &format!("t1.{APEX}")])?;
    assert!(status == "NOERROR" && !warned && answers.len() == 1, "{status} {warned} {answers:?}");
    assert_eq!(kdig_view(sb, &["-y", &wrong, "SOA", APEX])?.0, "BADSIG");
    assert_eq!(kdig_view(sb, &["-y", &unknown, "SOA", APEX])?.0, "BADKEY");

    // The same updates to both: the same RCODEs, the same records after.
    let steps = [
        "update add static.diff.example.test. 300 A 192.0.2.10\nupdate add static.diff.example.test. 300 TXT \"one\" \"two\"",
        "prereq nxdomain static.diff.example.test.\nupdate add other.diff.example.test. 60 A 192.0.2.11",
        "prereq yxdomain static.diff.example.test.\nupdate add other.diff.example.test. 60 MX 10 www.diff.example.test.",
        "prereq yxrrset static.diff.example.test. AAAA\nupdate delete static.diff.example.test.",
        "prereq nxrrset static.diff.example.test. AAAA\nupdate delete static.diff.example.test. A 192.0.2.10",
        "update delete other.diff.example.test. A\nupdate add srv.diff.example.test. 60 SRV 0 5 5060 www.diff.example.test.",
        "update add www.diff.example.test. 300 A 192.0.2.81",
        // RFC 2136 §3.4.2.2: a CNAME beside other data is ignored, other
        // data beside a CNAME too, and a CNAME replaces a CNAME.
        "update add www.diff.example.test. 300 CNAME static.diff.example.test.\nupdate add other.diff.example.test. 60 A 192.0.2.12",
        "update add alias.diff.example.test. 300 CNAME www.diff.example.test.\nupdate add alias.diff.example.test. 300 A 192.0.2.82",
        "update add alias.diff.example.test. 300 CNAME static.diff.example.test.",
        "update delete www.diff.example.test.",
    ];
    for step in steps {
        let (a, b) = (nsupdate_at(sb, &key, step)?, nsupdate_at(knot, &key, step)?);
        if a != b {
            bail!("update {step:?}: switchboard {a}, knot {b}");
        }
        for (t, q) in [
            ("ANY", "static"),
            ("A", "static"),
            ("TXT", "static"),
            ("A", "other"),
            ("MX", "other"),
            ("SRV", "srv"),
            ("A", "www"),
            ("CNAME", "www"),
            ("CNAME", "alias"),
        ] {
            same(&["-y", &key, t, &format!("{q}.{APEX}")])?;
        }
    }
    assert_eq!(kdig_view(sb, &["-y", &key, "SRV", &format!("srv.{APEX}")])?.2.len(), 1);
    assert_eq!(kdig_view(sb, &["-y", &key, "A", &format!("www.{APEX}")])?.0, "NXDOMAIN");
    // A wrongly signed update changes neither, and both say so alike.
    let (a, b) = (
        nsupdate_at(sb, &wrong, "update add bad.diff.example.test. 60 A 192.0.2.1")?,
        nsupdate_at(knot, &wrong, "update add bad.diff.example.test. 60 A 192.0.2.1")?,
    );
    assert_eq!(a, b, "a wrongly signed update");
    same(&["A", &format!("bad.{APEX}")])?;
    Ok(())
}
