//! RFC 2136 UPDATE signed with TSIG (issue 12), driven by BIND's
//! `nsupdate -y`: static records and ACME challenges added and deleted,
//! prerequisites, names the rules make refused, unsigned and wrongly
//! signed updates refused, a tenant's key confined to its own challenges,
//! and every refusal leaving the zone as it was. Also issue 27: a captured
//! signed UPDATE sent again gets its first answer and changes nothing; a
//! flood of unsigned UPDATEs is counted, barely logged, and (with RRL)
//! barely answered.

mod common;

use std::io::Write;
use std::net::UdpSocket;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use common::{answers, query, raw_udp, Node};
use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{Name, RData, Record, RecordType};

const APEX: &str = "apps.example.test.";

/// Run `nsupdate` (with `-y KEY` when given) on `commands`, against `node`:
/// whether it succeeded, and what it printed.
fn nsupdate(node: &Node, key: Option<&str>, commands: &str) -> anyhow::Result<(bool, String)> {
    nsupdate_with(node, &[], key, commands)
}

/// `nsupdate` with extra flags (`-v`: over TCP).
fn nsupdate_with(node: &Node, flags: &[&str], key: Option<&str>, commands: &str) -> anyhow::Result<(bool, String)> {
    let mut cmd = Command::new("nsupdate");
    cmd.args(flags);
    if let Some(k) = key {
        cmd.args(["-y", k]);
    }
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("running nsupdate (Debian's bind9-dnsutils; ./x setup installs it)")?;
    let script = format!("server {} {}\nzone {APEX}\n{commands}\nsend\n", node.dns().ip(), node.dns().port());
    child.stdin.take().context("nsupdate stdin")?.write_all(script.as_bytes())?;
    let out = child.wait_with_output()?;
    Ok((out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))))
}

/// `nsupdate` through a UDP relay that keeps every message it sends: what
/// an attacker on the path captures. Whether it succeeded, what it
/// printed, and the messages.
fn nsupdate_captured(node: &Node, key: &str, commands: &str) -> anyhow::Result<(bool, String, Vec<Vec<u8>>)> {
    let relay = UdpSocket::bind("127.0.0.1:0")?;
    let relay_addr = relay.local_addr()?;
    // Polled, so the relay notices when nsupdate is done.
    relay.set_read_timeout(Some(Duration::from_millis(100)))?;
    let captured = Arc::new(Mutex::new(Vec::new()));
    let done = Arc::new(AtomicBool::new(false));
    let server = node.dns();
    let thread = {
        let (captured, done) = (captured.clone(), done.clone());
        std::thread::spawn(move || -> anyhow::Result<()> {
            let upstream = UdpSocket::bind("127.0.0.1:0")?;
            upstream.set_read_timeout(Some(Duration::from_secs(15)))?;
            let mut buf = [0u8; 65535];
            while !done.load(Ordering::Relaxed) {
                let Ok((n, client)) = relay.recv_from(&mut buf) else { continue };
                captured.lock().map_err(|_| anyhow::anyhow!("poisoned"))?.push(buf[..n].to_vec());
                upstream.send_to(&buf[..n], server)?;
                if let Ok((m, _)) = upstream.recv_from(&mut buf) {
                    relay.send_to(&buf[..m], client)?;
                }
            }
            Ok(())
        })
    };
    let mut cmd = Command::new("nsupdate");
    let mut child = cmd.args(["-y", key]).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn()?;
    let script = format!("server {} {}\nzone {APEX}\n{commands}\nsend\n", relay_addr.ip(), relay_addr.port());
    child.stdin.take().context("nsupdate stdin")?.write_all(script.as_bytes())?;
    let out = child.wait_with_output()?;
    done.store(true, Ordering::Relaxed);
    thread.join().map_err(|_| anyhow::anyhow!("the relay panicked"))??;
    let sent = captured.lock().map_err(|_| anyhow::anyhow!("poisoned"))?.clone();
    let printed = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    Ok((out.status.success(), printed, sent))
}

/// Send `message` again over UDP: the RCODE of the answer.
fn replay(node: &Node, message: &[u8]) -> anyhow::Result<ResponseCode> {
    let answer = raw_udp(node.dns(), message)?.context("no answer to the replayed UPDATE")?;
    let m = Message::from_vec(&answer).map_err(|e| anyhow::anyhow!("{e}"))?;
    assert_eq!(m.metadata.id, u16::from_be_bytes([message[0], message[1]]));
    Ok(m.metadata.response_code)
}

/// A counter of the node's `/metrics` (`series`: name and labels as
/// exported); 0 when absent.
fn metric(node: &Node, series: &str) -> anyhow::Result<f64> {
    let text = common::http_get(node.ports.http, "/metrics")?;
    Ok(text.lines().find_map(|l| l.strip_prefix(series).and_then(|rest| rest.trim().parse().ok())).unwrap_or(0.0))
}

/// An unsigned UPDATE adding an A record to the zone, with message id `id`.
fn unsigned_update(id: u16) -> anyhow::Result<Vec<u8>> {
    let mut m = Message::new(id, MessageType::Query, OpCode::Update);
    m.add_query(Query::query(Name::from_ascii(APEX)?, RecordType::SOA));
    m.add_authority(Record::from_rdata(Name::from_ascii("forged.apps.example.test.")?, 60, RData::A(A::new(192, 0, 2, 66))));
    Ok(m.to_vec()?)
}

/// The lines of the node's log about refused updates.
fn refusal_lines(node: &Node) -> usize {
    node.log().lines().filter(|l| l.contains("update refused")).count()
}

fn rrs(node: &Node, name: &str, rtype: RecordType) -> anyhow::Result<(ResponseCode, Vec<String>)> {
    let m = query(node.dns(), name, rtype)?;
    Ok((m.metadata.response_code, answers(&m)))
}

/// A single node in `root` with `config` added to its node config,
/// serving `common::ZONE`.
fn serving(root: &std::path::Path, config: &str) -> anyhow::Result<Node> {
    let mut node = Node::configured(root, config)?;
    node.spawn()?;
    node.wait_leader(Duration::from_secs(30))?;
    let zone = root.join("zone.toml");
    std::fs::write(&zone, common::ZONE)?;
    node.cli(&["zone", "put", zone.to_str().unwrap_or_default()])?;
    Ok(node)
}

#[test]
fn nsupdate_changes_static_records_and_challenges_and_nothing_it_may_not() -> anyhow::Result<()> {
    let zone = format!("{}\n[[rules]]\nkind = \"acme\"\n", common::ZONE);
    let (_dir, node) = common::single_with(&zone, &[&["mt1", "--ipv4", "198.51.100.1"], &["mt2", "--ipv4", "198.51.100.2"]])?;
    for t in ["t1", "t2"] {
        node.cli(&["tenant", "create", t, "--cluster", "mt1"])?;
    }
    let ops = node.cli(&["tsig", "create", "ops", "--algorithm", "hmac-sha256", "--zones", APEX, "--allow", "update"])?;
    let ops = ops.trim();
    let t1 = node.cli(&["tsig", "create", "t1-acme", "--algorithm", "hmac-md5", "--tenant", "t1", "--allow", "update"])?;
    let t1 = t1.trim();

    // A static record and a challenge, in one update.
    let (ok, out) = nsupdate(
        &node,
        Some(ops),
        "update add static.apps.example.test. 300 A 192.0.2.10\nupdate add _acme-challenge.www.apps.example.test. 60 TXT \"token-1\"",
    )?;
    assert!(ok, "{out}");
    assert_eq!(rrs(&node, "static.apps.example.test.", RecordType::A)?.1, vec!["static.apps.example.test. A 192.0.2.10"]);
    let (_, txt) = rrs(&node, "_acme-challenge.www.apps.example.test.", RecordType::TXT)?;
    assert!(txt.len() == 1 && txt[0].contains("token-1"), "{txt:?}");
    // The static record is part of the zone: `zone get` and `zone export` show it.
    let z = node.json(&["zone", "get", APEX])?;
    assert!(z["records"].as_array().is_some_and(|r| r.iter().any(|r| r["name"] == "static.apps.example.test.")), "{z}");
    assert!(node.cli(&["zone", "export", APEX])?.contains("static.apps.example.test."));
    let listed = node.cli(&["acme", "list", "--json"])?;
    assert!(listed.contains("token-1"), "{listed}");

    // Over TCP too (`nsupdate -v`), signed responses included.
    let (ok, out) = nsupdate_with(&node, &["-v"], Some(ops), "update add tcp.apps.example.test. 300 AAAA 2001:db8::10")?;
    assert!(ok, "{out}");
    assert_eq!(rrs(&node, "tcp.apps.example.test.", RecordType::AAAA)?.1, vec!["tcp.apps.example.test. AAAA 2001:db8::10"]);

    // Prerequisites: "nxdomain" holds once, then the name exists: YXDOMAIN, nothing changed.
    let (ok, out) =
        nsupdate(&node, Some(ops), "prereq nxdomain new.apps.example.test.\nupdate add new.apps.example.test. 60 A 192.0.2.11")?;
    assert!(ok, "{out}");
    let (ok, out) =
        nsupdate(&node, Some(ops), "prereq nxdomain new.apps.example.test.\nupdate add new.apps.example.test. 60 A 192.0.2.12")?;
    assert!(!ok && out.contains("YXDOMAIN"), "{out}");
    assert_eq!(rrs(&node, "new.apps.example.test.", RecordType::A)?.1.len(), 1);
    let (ok, out) = nsupdate(&node, Some(ops), "prereq yxrrset new.apps.example.test. AAAA\nupdate delete new.apps.example.test.")?;
    assert!(!ok && out.contains("NXRRSET"), "{out}");

    // All or nothing: a name the rules make refuses the whole update.
    let (ok, out) = nsupdate(
        &node,
        Some(ops),
        "update add other.apps.example.test. 60 A 192.0.2.13\nupdate add ws-t1.apps.example.test. 60 A 192.0.2.14",
    )?;
    assert!(!ok && out.contains("REFUSED"), "{out}");
    assert_eq!(rrs(&node, "other.apps.example.test.", RecordType::A)?.0, ResponseCode::NXDomain);
    assert!(node.log().contains("made by the zone's rules"), "the refusal is logged with its reason");

    // Unsigned: REFUSED; a wrong secret: NOTAUTH; neither changes anything.
    let (ok, out) = nsupdate(&node, None, "update add unsigned.apps.example.test. 60 A 192.0.2.15")?;
    assert!(!ok && out.contains("REFUSED"), "{out}");
    let wrong = format!("hmac-sha256:ops.:{}", "B".repeat(43) + "=");
    let (ok, out) = nsupdate(&node, Some(&wrong), "update add wrong.apps.example.test. 60 A 192.0.2.16")?;
    assert!(!ok, "{out}");
    for n in ["unsigned", "wrong"] {
        assert_eq!(rrs(&node, &format!("{n}.apps.example.test."), RecordType::A)?.0, ResponseCode::NXDomain);
    }

    // A tenant's key: its own challenges, nothing else.
    let (ok, out) = nsupdate(&node, Some(t1), "update add _acme-challenge.t1.apps.example.test. 60 TXT \"t1-token\"")?;
    assert!(ok, "{out}");
    assert_eq!(rrs(&node, "_acme-challenge.t1.apps.example.test.", RecordType::TXT)?.1.len(), 1);
    let (ok, out) = nsupdate(&node, Some(t1), "update add _acme-challenge.t2.apps.example.test. 60 TXT \"stolen\"")?;
    assert!(!ok && out.contains("REFUSED"), "{out}");
    let (ok, out) = nsupdate(&node, Some(t1), "update add t1-static.apps.example.test. 60 A 192.0.2.17")?;
    assert!(!ok && out.contains("REFUSED"), "{out}");
    assert_eq!(rrs(&node, "_acme-challenge.t2.apps.example.test.", RecordType::TXT)?.1.len(), 0);

    // Deletes: the record, the challenge value.
    let (ok, out) = nsupdate(
        &node,
        Some(ops),
        "update delete static.apps.example.test. A\nupdate delete _acme-challenge.www.apps.example.test. TXT \"token-1\"",
    )?;
    assert!(ok, "{out}");
    assert_eq!(rrs(&node, "static.apps.example.test.", RecordType::A)?.0, ResponseCode::NXDomain);
    assert!(rrs(&node, "_acme-challenge.www.apps.example.test.", RecordType::TXT)?.1.is_empty());
    let (ok, out) = nsupdate(&node, Some(t1), "update delete _acme-challenge.t1.apps.example.test. TXT")?;
    assert!(ok, "{out}");
    assert!(rrs(&node, "_acme-challenge.t1.apps.example.test.", RecordType::TXT)?.1.is_empty());

    // Counted by RCODE.
    let m = Command::new("curl").arg("-s").arg(format!("http://127.0.0.1:{}/metrics", node.ports.http)).output().context("curl")?;
    let text = String::from_utf8_lossy(&m.stdout);
    assert!(text.contains("switchboard_dns_updates_total{rcode=\"NOERROR\"}"), "{text}");
    assert!(text.contains("switchboard_dns_updates_total{rcode=\"REFUSED\"}"), "{text}");
    Ok(())
}

#[test]
fn a_replayed_signed_update_gets_its_first_answer_and_changes_nothing() -> anyhow::Result<()> {
    let zone = format!("{}\n[[rules]]\nkind = \"acme\"\n", common::ZONE);
    let (_dir, node) = common::single_with(&zone, &[&["mt1", "--ipv4", "198.51.100.1"]])?;
    let ops = node.cli(&["tsig", "create", "ops", "--algorithm", "hmac-sha256", "--zones", APEX, "--allow", "update"])?;
    let ops = ops.trim();

    // Applied: a static record and an ACME value, while the name is free.
    let (ok, out, sent) = nsupdate_captured(
        &node,
        ops,
        "prereq nxdomain gone.apps.example.test.\nupdate add gone.apps.example.test. 60 A 192.0.2.21\n\
         update add _acme-challenge.www.apps.example.test. 60 TXT \"acme-1\"",
    )?;
    assert!(ok, "{out}");
    let applied = sent.first().context("nsupdate sent nothing through the relay")?.clone();
    // Refused: its prerequisite (the name exists) does not hold yet.
    let (ok, out, sent) =
        nsupdate_captured(&node, ops, "prereq yxdomain later.apps.example.test.\nupdate add later.apps.example.test. 60 TXT \"late\"")?;
    assert!(!ok && out.contains("NXDOMAIN"), "{out}");
    let refused = sent.first().context("nsupdate sent nothing through the relay")?.clone();

    // The owner deletes the record and the value, and makes the name the
    // refused update wanted.
    let (ok, out) = nsupdate(
        &node,
        Some(ops),
        "update delete gone.apps.example.test. A\nupdate delete _acme-challenge.www.apps.example.test. TXT \"acme-1\"\n\
         update add later.apps.example.test. 60 A 192.0.2.22",
    )?;
    assert!(ok, "{out}");

    // Each captured message, sent again (twice): its first answer, and the
    // zone as the owner left it.
    for _ in 0..2 {
        assert_eq!(replay(&node, &applied)?, ResponseCode::NoError);
        assert_eq!(replay(&node, &refused)?, ResponseCode::NXDomain);
    }
    assert_eq!(rrs(&node, "gone.apps.example.test.", RecordType::A)?.0, ResponseCode::NXDomain);
    assert!(rrs(&node, "_acme-challenge.www.apps.example.test.", RecordType::TXT)?.1.is_empty());
    assert!(rrs(&node, "later.apps.example.test.", RecordType::TXT)?.1.is_empty());
    assert_eq!(rrs(&node, "later.apps.example.test.", RecordType::A)?.1.len(), 1);

    // Over TCP too (the same dedup, whatever the transport).
    let mut tcp = std::net::TcpStream::connect(node.dns())?;
    tcp.set_read_timeout(Some(Duration::from_secs(15)))?;
    tcp.write_all(&(applied.len() as u16).to_be_bytes())?;
    tcp.write_all(&applied)?;
    let mut len = [0u8; 2];
    std::io::Read::read_exact(&mut tcp, &mut len)?;
    let mut answer = vec![0u8; usize::from(u16::from_be_bytes(len))];
    std::io::Read::read_exact(&mut tcp, &mut answer)?;
    let m = Message::from_vec(&answer).map_err(|e| anyhow::anyhow!("{e}"))?;
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert_eq!(rrs(&node, "gone.apps.example.test.", RecordType::A)?.0, ResponseCode::NXDomain);
    Ok(())
}

/// How many unsigned UPDATEs the flood test sends, one after another...
const FLOOD: u16 = 2_000;
/// ...and the rate-limited one at once: fewer than the node takes in
/// flight (`UPDATES_IN_FLIGHT_MAX`), so none is dropped before RRL.
const BURST: u16 = 100;

#[test]
fn a_flood_of_unsigned_updates_is_counted_each_and_logged_a_few_times() -> anyhow::Result<()> {
    let (_dir, node) = common::standard()?;
    let before = refusal_lines(&node);
    let sock = UdpSocket::bind("127.0.0.1:0")?;
    sock.set_read_timeout(Some(Duration::from_secs(5)))?;
    let began = Instant::now();
    let mut buf = [0u8; 512];
    for id in 0..FLOOD {
        sock.send_to(&unsigned_update(id)?, node.dns())?;
        let (n, _) = sock.recv_from(&mut buf).context("an unsigned UPDATE went unanswered")?;
        let m = Message::from_vec(&buf[..n]).map_err(|e| anyhow::anyhow!("{e}"))?;
        assert_eq!(m.metadata.response_code, ResponseCode::Refused);
    }
    let took = began.elapsed();
    // Every one counted...
    assert_eq!(metric(&node, "switchboard_dns_updates_refused_total{reason=\"unsigned\"}")?, f64::from(FLOOD));
    // ...and logged at most in a burst and then a line an interval, with
    // the count of those left out.
    let interval = u64::from(switchboard_dns::UPDATE_REFUSAL_LOG_INTERVAL_SECS);
    let bound = switchboard_dns::UPDATE_REFUSAL_LOG_BURST as usize + (took.as_secs() / interval) as usize + 1;
    common::eventually(Duration::from_secs(10), "a refusal logged with its reason", || {
        node.log().contains("unsigned: updates need a TSIG key")
    })?;
    let lines = refusal_lines(&node) - before;
    assert!(lines <= bound, "{lines} lines about {FLOOD} refused updates (at most {bound})");
    assert_eq!(rrs(&node, "forged.apps.example.test.", RecordType::A)?.0, ResponseCode::NXDomain);
    Ok(())
}

#[test]
fn with_rrl_a_flood_of_unsigned_updates_is_barely_answered() -> anyhow::Result<()> {
    let root = tempfile::tempdir()?;
    let node = serving(root.path(), "[dns.rrl]\nresponses_per_second = 1\nslip = 0\n")?;
    // Sent at once, as a forged flood is, from one source.
    assert!(usize::from(BURST) < switchboard_dns::UPDATES_IN_FLIGHT_MAX);
    let sock = UdpSocket::bind("127.0.0.1:0")?;
    for id in 0..BURST {
        sock.send_to(&unsigned_update(id)?, node.dns())?;
    }
    // Every one read and refused...
    let series = "switchboard_dns_updates_refused_total{reason=\"unsigned\"}";
    common::eventually(Duration::from_secs(60), "every UPDATE counted", || metric(&node, series).is_ok_and(|v| v >= f64::from(BURST)))?;
    // ...but few answered: the rest dropped by rate limiting.
    sock.set_read_timeout(Some(Duration::from_millis(500)))?;
    let mut answered = 0;
    let mut buf = [0u8; 512];
    while sock.recv_from(&mut buf).is_ok() {
        answered += 1;
    }
    assert!(answered < BURST / 2, "{answered} of {BURST} answered");
    let dropped = metric(&node, "switchboard_dns_rrl_actions_total{action=\"dropped\"}")?;
    assert!(dropped >= f64::from(BURST / 2), "{dropped} dropped, {answered} answered");
    Ok(())
}

/// Issue 27, item 5: UPDATEs are bounded per TSIG key and zone, so a key
/// holder cannot keep the log busy with whole-zone writes; past the burst
/// the next is REFUSED (and counted) while another key still gets through.
#[test]
fn updates_past_a_keys_rate_for_a_zone_are_refused_and_counted() -> anyhow::Result<()> {
    let root = tempfile::tempdir()?;
    // One a minute after a burst of three: the test ends long before a
    // fourth token comes back.
    let node = serving(root.path(), "[dns]\nupdates_per_minute = 1\nupdates_burst = 3\n")?;
    let key = |name: &str| -> anyhow::Result<String> {
        Ok(node.cli(&["tsig", "create", name, "--algorithm", "hmac-sha256", "--zones", APEX, "--allow", "update"])?.trim().to_string())
    };
    let (busy, other) = (key("busy")?, key("other")?);
    for i in 0..3 {
        let (ok, out) = nsupdate(&node, Some(&busy), &format!("update add r{i}.apps.example.test. 300 A 192.0.2.{i}"))?;
        assert!(ok, "update {i} within the burst: {out}");
    }
    let (ok, out) = nsupdate(&node, Some(&busy), "update add r9.apps.example.test. 300 A 192.0.2.9")?;
    assert!(!ok && out.contains("REFUSED"), "past the burst: {out}");
    assert_eq!(rrs(&node, "r9.apps.example.test.", RecordType::A)?.0, ResponseCode::NXDomain, "nothing applied");
    assert_eq!(metric(&node, "switchboard_dns_updates_refused_total{reason=\"rate_limited\"}")?, 1.0);
    assert!(node.log().contains("updates a minute"), "the refusal says why in the log");
    // Another key has a bucket of its own.
    let (ok, out) = nsupdate(&node, Some(&other), "update add r8.apps.example.test. 300 A 192.0.2.8")?;
    assert!(ok, "{out}");
    Ok(())
}

/// The records of a `kdig` transfer (every line that is a record, TSIG
/// left out), each as `owner TTL class type data`.
fn transferred(node: &Node, key: &str, what: &str) -> anyhow::Result<Vec<String>> {
    let out = Command::new("kdig")
        .arg(format!("@{}", node.dns().ip()))
        .args(["-p", &node.dns().port().to_string(), "-y", key, what, APEX])
        .output()
        .context("running kdig (Debian's knot-dnsutils; ./x setup installs it)")?;
    let text = String::from_utf8_lossy(&out.stdout);
    Ok(text
        .lines()
        .filter(|l| !l.starts_with(';') && !l.trim().is_empty())
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .filter(|l| !l.contains(" TSIG "))
        .collect())
}

fn serial(node: &Node) -> anyhow::Result<u32> {
    let soa = query(node.dns(), APEX, RecordType::SOA)?;
    soa.answers
        .iter()
        .find_map(|r| match &r.data {
            RData::SOA(s) => Some(s.serial),
            _ => None,
        })
        .context("no SOA")
}

/// Issue 27, item 5: an UPDATE writes the names it changes, not its zone.
/// Seen from outside: in a zone of 9,999 static records, one UPDATE moves
/// the serial and an IXFR across it is that change (before, the update
/// rewrote the zone, and the IXFR was all of it); `zone get`
/// shows it; and it outlives a kill -9, the zone read back from storage
/// name by name.
#[test]
fn an_update_to_a_large_zone_is_its_own_difference_and_outlives_a_kill() -> anyhow::Result<()> {
    let mut zone = common::ZONE.to_string();
    for i in 0..9_998 {
        zone.push_str(&format!("\n[[records]]\nname = \"r{i}\"\ntype = \"A\"\ndata = \"192.0.2.{}\"\n", i % 250 + 1));
    }
    let (_dir, mut node) = common::single_with(&zone, &[&["mt1", "--ipv4", "198.51.100.1"]])?;
    let key = node.cli(&["tsig", "create", "ops", "--algorithm", "hmac-sha256", "--zones", APEX, "--allow", "update,transfer"])?;
    let key = key.trim().to_string();
    let whole = transferred(&node, &key, "AXFR")?.len();
    assert!(whole > 9_999, "{whole} records");
    let read = node.json(&["zone", "get", APEX])?["revision"].as_u64().context("revision")?;
    let s0 = serial(&node)?;

    let (ok, out) =
        nsupdate(&node, Some(&key), "update add r7.apps.example.test. 300 A 192.0.2.251\nupdate delete r8.apps.example.test. A")?;
    assert!(ok, "{out}");
    let s1 = serial(&node)?;
    assert!(s1 > s0, "the update moved the serial ({s0} → {s1})");
    let diff = transferred(&node, &key, &format!("IXFR={s0}"))?;
    assert_eq!(diff.iter().filter(|r| r.contains(" SOA ")).count(), 4, "{diff:?}");
    let changed: Vec<&String> = diff.iter().filter(|r| !r.contains(" SOA ")).collect();
    assert_eq!(changed, ["r8.apps.example.test. 300 IN A 192.0.2.9", "r7.apps.example.test. 300 IN A 192.0.2.251"], "{diff:?}");

    // `zone get` holds the change, and its revision moved with it: a put
    // of the zone as read before the update fails instead of undoing it.
    let z = node.json(&["zone", "get", APEX])?;
    let records = z["records"].as_array().context("records")?;
    assert_eq!(records.len(), 1 + 9_998 + 1 - 1, "www, 9,998, one added, one deleted");
    assert!(z["revision"].as_u64().context("revision")? > read);
    // Watchers of zones hear of it, once (two names changed), before the
    // writes of another zone that followed it.
    let other = node.dir.join("other.toml");
    std::fs::write(&other, common::zone_file("staging.example.test.", "staging"))?;
    let put = node.json(&["zone", "put", other.to_str().unwrap_or_default()])?;
    // (Written twice, so a watcher that missed the update still gets two events.)
    node.cli(&["zone", "put", other.to_str().unwrap_or_default()])?;
    let watched = node.cli(&["watch", "--after", &read.to_string(), "--kind", "zone", "--count", "2"])?;
    let events: Vec<(Option<String>, Option<u64>)> = watched
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).map(|e| (e["key"].as_str().map(str::to_string), e["revision"].as_u64())))
        .collect::<Result<_, _>>()?;
    assert_eq!(
        events,
        [(Some(APEX.to_string()), z["revision"].as_u64()), (Some("staging.example.test.".to_string()), put["revision"].as_u64())],
        "{watched}"
    );
    let file = node.dir.join("as-read.toml");
    std::fs::write(&file, &zone)?;
    let stale = node.cli(&["zone", "put", file.to_str().unwrap_or_default(), "--expect-revision", &read.to_string()]);
    assert!(stale.is_err_and(|e| e.to_string().contains("ABORTED") || e.to_string().contains("revision")), "a stale put applied");

    node.kill9()?;
    node.spawn()?;
    node.wait_leader(Duration::from_secs(30))?;
    assert_eq!(rrs(&node, "r7.apps.example.test.", RecordType::A)?.1.len(), 2);
    assert_eq!(rrs(&node, "r8.apps.example.test.", RecordType::A)?.0, ResponseCode::NXDomain);
    assert_eq!(rrs(&node, "r9.apps.example.test.", RecordType::A)?.1, vec!["r9.apps.example.test. A 192.0.2.10"]);
    assert_eq!(serial(&node)?, s1);
    assert_eq!(node.json(&["zone", "get", APEX])?["records"], z["records"]);
    Ok(())
}
