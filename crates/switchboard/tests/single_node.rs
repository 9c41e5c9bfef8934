//! One real node: writes through the CLI, answers checked with DNS packets,
//! state checked across kill -9 and restart.

mod common;

use common::{answers, query, raw_udp, Node};
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;

const ZONE: &str = r#"
apex = "apps.example.test."
environment = "prod"
ttl = 300
ns = ["ns1.example.test.", "ns2.example.test."]

[soa]
mname = "ns1.example.test."
rname = "hostmaster.example.test."
minimum = 60

[[rules]]
kind = "service-tenant"
services = ["ws", "api"]
target = "{service}-{cluster}.example.test."
ttl = 300

[[rules]]
kind = "tenant-host"
ttl = 60

[[records]]
name = "www"
type = "A"
data = "192.0.2.80"
"#;

fn setup() -> anyhow::Result<(tempfile::TempDir, Node)> {
    common::single_with(ZONE, &[&["mt1", "--ipv4", "198.51.100.1", "--ipv6", "2001:db8::1"], &["mt2", "--ipv4", "198.51.100.2"]])
}

/// Everything the vertical slice promises, in one life of a node and a restart.
#[test]
fn writes_are_answered_by_dns_and_survive_kill_9() -> anyhow::Result<()> {
    let (_dir, mut node) = setup()?;

    // --- create a tenant pinned to mt1
    let created = node.json(&["tenant", "create", "123456", "--cluster", "mt1"])?;
    assert_eq!(created["tenant"]["cluster"], "mt1");
    assert!(created["revision"].as_u64().unwrap_or(0) > 0, "every write returns its revision");
    node.cli(&["tenant", "create", "replbot", "--cluster", "mt2"])?;

    // --- service-tenant: CNAME with the rule's TTL
    let m = query(node.dns(), "ws-123456.apps.example.test.", RecordType::CNAME)?;
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert!(m.metadata.authoritative);
    assert_eq!(answers(&m), vec!["ws-123456.apps.example.test. CNAME ws-mt1.example.test."]);
    assert_eq!(m.answers[0].ttl, 300);

    // --- tenant-host: the tenant and any name below it get the ingress addresses
    for name in ["123456.apps.example.test.", "x.123456.apps.example.test."] {
        let m = query(node.dns(), name, RecordType::A)?;
        assert_eq!(answers(&m), vec![format!("{name} A 198.51.100.1")]);
        assert_eq!(m.answers[0].ttl, 60);
        let m = query(node.dns(), name, RecordType::AAAA)?;
        assert_eq!(answers(&m), vec![format!("{name} AAAA 2001:db8::1")]);
    }

    // --- unknown tenant: NXDOMAIN with the SOA; outside every zone: REFUSED
    let m = query(node.dns(), "nobody.apps.example.test.", RecordType::A)?;
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
    assert!(m.metadata.authoritative);
    assert_eq!(m.authorities.len(), 1);
    assert_eq!(m.authorities[0].record_type(), RecordType::SOA);
    assert_eq!(m.authorities[0].ttl, 60, "negative TTL = min(SOA TTL, minimum)");
    let m = query(node.dns(), "www.example.org.", RecordType::A)?;
    assert_eq!(m.metadata.response_code, ResponseCode::Refused);

    // --- static records win, apex answers SOA and NS
    assert_eq!(answers(&query(node.dns(), "www.apps.example.test.", RecordType::A)?), vec!["www.apps.example.test. A 192.0.2.80"]);
    assert_eq!(query(node.dns(), "apps.example.test.", RecordType::NS)?.answers.len(), 2);
    let soa_before = query(node.dns(), "apps.example.test.", RecordType::SOA)?;

    // --- move: the answer changes and the tombstone is recorded
    let moved = node.json(&["tenant", "move", "123456", "mt2"])?;
    let move_revision = moved["revision"].as_u64().unwrap_or(0);
    let m = query(node.dns(), "ws-123456.apps.example.test.", RecordType::CNAME)?;
    assert_eq!(answers(&m), vec!["ws-123456.apps.example.test. CNAME ws-mt2.example.test."]);
    let t = node.json(&["tenant", "get", "123456"])?;
    assert_eq!(t["cluster"], "mt2");
    assert_eq!(t["history"][0]["from"], "mt1");
    assert_eq!(t["history"][0]["to"], "mt2");
    assert_eq!(t["history"][0]["revision"].as_u64(), Some(move_revision));
    let soa_after = query(node.dns(), "apps.example.test.", RecordType::SOA)?;
    assert_ne!(format!("{:?}", soa_before.answers[0].data), format!("{:?}", soa_after.answers[0].data), "serial advances");

    // --- kill -9 and restart: the same answers come back
    let before: Vec<Vec<String>> = ["ws-123456.apps.example.test.", "blog.replbot.apps.example.test.", "www.apps.example.test."]
        .iter()
        .map(|n| query(node.dns(), n, RecordType::A).map(|m| answers(&m)))
        .collect::<anyhow::Result<_>>()?;
    node.kill9()?;
    node.spawn()?;
    node.wait_leader(std::time::Duration::from_secs(30))?;
    let after: Vec<Vec<String>> = ["ws-123456.apps.example.test.", "blog.replbot.apps.example.test.", "www.apps.example.test."]
        .iter()
        .map(|n| query(node.dns(), n, RecordType::A).map(|m| answers(&m)))
        .collect::<anyhow::Result<_>>()?;
    assert_eq!(before, after);
    assert_eq!(node.json(&["tenant", "get", "123456"])?["history"][0]["to"], "mt2");

    // --- and it keeps taking writes
    node.cli(&["tenant", "pin", "replbot", "mt1"])?;
    assert_eq!(
        answers(&query(node.dns(), "replbot.apps.example.test.", RecordType::A)?),
        vec!["replbot.apps.example.test. A 198.51.100.1"]
    );
    assert!(node.is_running());
    Ok(())
}

/// Every refused call says which field is wrong and leaves the state as it was.
#[test]
fn rejected_calls_change_nothing() -> anyhow::Result<()> {
    let (dir, node) = setup()?;
    node.cli(&["tenant", "create", "t1", "--cluster", "mt1"])?;
    let tenants_before = node.cli(&["tenant", "list", "--json"])?;
    let clusters_before = node.cli(&["cluster", "list", "--json"])?;
    let zones_before = node.cli(&["zone", "list", "--json"])?;

    let bad_zone = dir.path().join("bad.toml");
    std::fs::write(&bad_zone, ZONE.replace("192.0.2.80", "192.0.2.300"))?;
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["tenant", "create", "bad_id"], "id"),
        (vec!["tenant", "create", "t2", "--cluster", "nope"], "NotFound"),
        (vec!["tenant", "create", "t1"], "AlreadyExists"),
        (vec!["tenant", "move", "t1", "nope"], "NotFound"),
        (vec!["tenant", "pin", "ghost", "mt1"], "NotFound"),
        (vec!["cluster", "delete", "mt1"], "FailedPrecondition"),
        (vec!["cluster", "put", "mt3", "--ipv4", "not-an-ip"], "cluster.ipv4[0]"),
        (vec!["cluster", "put", "mt3", "--weight", "0"], "cluster.weight"),
        (vec!["cluster", "put", "bad_id"], "cluster.id"),
        (vec!["zone", "put", bad_zone.to_str().unwrap_or_default()], "records[0].data"),
        (vec!["zone", "delete", "nothere.test."], "NotFound"),
        (vec!["tenant", "alias", "add", "t1", "t1"], "FailedPrecondition"),
    ];
    for (args, expect) in cases {
        let err = node.cli(&args).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.starts_with("error:") && err.contains(expect), "{args:?}: expected an error naming {expect:?}, got {err:?}");
        assert_eq!(err.lines().count(), 1, "one-line error: {err}");
    }
    assert_eq!(node.cli(&["tenant", "list", "--json"])?, tenants_before);
    assert_eq!(node.cli(&["cluster", "list", "--json"])?, clusters_before);
    assert_eq!(node.cli(&["zone", "list", "--json"])?, zones_before);
    Ok(())
}

/// Garbage and odd packets neither crash the server nor stop it answering.
#[test]
fn malformed_packets_do_not_stop_the_server() -> anyhow::Result<()> {
    let (_dir, mut node) = setup()?;
    let junk: Vec<Vec<u8>> = vec![
        vec![],
        vec![0u8; 5],
        vec![0xff; 12],
        vec![0xff; 512],
        // Header claiming 1 question with no question bytes.
        vec![0x12, 0x34, 0x01, 0x00, 0x00, 0x01, 0, 0, 0, 0, 0, 0],
        // A name with a compression pointer to itself.
        vec![0x12, 0x34, 0x01, 0x00, 0x00, 0x01, 0, 0, 0, 0, 0, 0, 0xc0, 0x0c, 0, 1, 0, 1],
    ];
    for j in &junk {
        let _ = raw_udp(node.dns(), j)?;
    }
    // Two questions: FORMERR.
    let two =
        [0x12, 0x34, 0x01, 0x00, 0x00, 0x02, 0, 0, 0, 0, 0, 0, 3, b'w', b'w', b'w', 0, 0, 1, 0, 1, 3, b'w', b'w', b'w', 0, 0, 1, 0, 1];
    if let Some(resp) = raw_udp(node.dns(), &two)? {
        assert_eq!(resp[3] & 0x0f, 1, "FORMERR for two questions");
    }
    // Found by fuzzing: question names with compression pointers into the
    // header. Echoed as sent, they pointed into our (different) header; the
    // answer must be a well-formed message.
    for seed in [
        &include_bytes!("../../../fuzz/seeds/dns_request/regression-pointer-into-header-1")[..],
        &include_bytes!("../../../fuzz/seeds/dns_request/regression-pointer-into-header-2")[..],
    ] {
        if let Some(resp) = raw_udp(node.dns(), seed)? {
            hickory_proto::op::Message::from_vec(&resp).map_err(|e| anyhow::anyhow!("unparseable answer: {e}"))?;
        }
    }
    assert!(node.is_running());
    assert_eq!(query(node.dns(), "www.apps.example.test.", RecordType::A)?.metadata.response_code, ResponseCode::NoError);
    Ok(())
}

/// Zone transfers are refused as Knot DNS refuses one it does not allow
/// (NOTAUTH), and QTYPE 0 is NOTIMP as Knot says; neither gets the NODATA
/// answer a plain query would.
#[test]
fn transfers_and_qtype_zero_are_refused_as_knot_refuses_them() -> anyhow::Result<()> {
    let (_dir, node) = setup()?;
    let question = |qtype: u16| {
        let mut q = vec![0x12, 0x34, 0x01, 0x00, 0x00, 0x01, 0, 0, 0, 0, 0, 0];
        for label in ["apps", "example", "test"] {
            q.push(label.len() as u8);
            q.extend_from_slice(label.as_bytes());
        }
        q.push(0);
        q.extend_from_slice(&qtype.to_be_bytes());
        q.extend_from_slice(&1u16.to_be_bytes());
        q
    };
    for (qtype, rcode, what) in [(252u16, 9u8, "AXFR: NOTAUTH"), (251, 9, "IXFR: NOTAUTH"), (0, 4, "QTYPE 0: NOTIMP")] {
        let resp = raw_udp(node.dns(), &question(qtype))?.ok_or_else(|| anyhow::anyhow!("{what}: no answer"))?;
        assert_eq!(resp[3] & 0x0f, rcode, "{what}");
        assert_eq!(u16::from_be_bytes([resp[6], resp[7]]), 0, "{what}: no answer records");
    }
    Ok(())
}

/// A busy port stops the node before it creates its store: no empty data
/// dir is left behind to be mistaken for a node's state later.
#[test]
fn a_busy_port_leaves_no_store_behind() -> anyhow::Result<()> {
    let root = tempfile::tempdir()?;
    let node = Node::configured(root.path(), "")?;
    for busy in [node.ports.api, node.ports.dns] {
        let _held = std::net::TcpListener::bind(("127.0.0.1", busy))?;
        let out = node.serve_command().output()?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && stderr.contains(&busy.to_string()), "port {busy}: {stderr}");
        assert!(!node.dir.join("data").exists(), "port {busy}: a data dir was created");
    }
    Ok(())
}

/// `switchboard zone list | head -1`: a reader that goes away ends the
/// CLI quietly, without a panic and its backtrace.
#[test]
fn a_closed_stdout_ends_the_cli_quietly() -> anyhow::Result<()> {
    let (_dir, node) = setup()?;
    let mut child = std::process::Command::new(common::BIN)
        .args(["--server", &node.server(), "zone", "list"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()?;
    // Close the read end before the CLI has connected, let alone written.
    drop(child.stdout.take());
    let out = child.wait_with_output()?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && !stderr.contains("panicked"), "{:?}: {stderr}", out.status);
    Ok(())
}

/// A node raises its soft limit on open files to the hard limit at start
/// and logs what it got (under `prlimit --nofile=256:2048`: 2048).
#[test]
fn the_open_files_limit_is_raised_to_the_hard_limit() -> anyhow::Result<()> {
    let root = tempfile::tempdir()?;
    let node = Node::configured(root.path(), "")?;
    let log = root.path().join("node.log");
    let serve = node.serve_command();
    let mut child = std::process::Command::new("prlimit")
        .arg("--nofile=256:2048")
        .arg(serve.get_program())
        .args(serve.get_args())
        .stderr(std::fs::File::create(&log)?)
        .spawn()?;
    let seen = common::eventually(std::time::Duration::from_secs(20), "the limit logged", || {
        std::fs::read_to_string(&log).is_ok_and(|l| l.contains("nofile=2048") && l.contains("soft limit raised"))
    });
    child.kill()?;
    child.wait()?;
    seen.map_err(|e| anyhow::anyhow!("{e}: {}", std::fs::read_to_string(&log).unwrap_or_default()))
}

/// /healthz, /readyz and /metrics answer on the HTTP listener.
#[test]
fn health_and_metrics_endpoints() -> anyhow::Result<()> {
    use std::io::{Read, Write};
    let (_dir, node) = setup()?;
    let get = |path: &str| -> anyhow::Result<String> {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", node.ports.http))?;
        write!(s, "GET {path} HTTP/1.0\r\n\r\n")?;
        let mut out = String::new();
        s.read_to_string(&mut out)?;
        Ok(out)
    };
    assert!(get("/healthz")?.starts_with("HTTP/1.0 200"));
    assert!(get("/readyz")?.starts_with("HTTP/1.0 200"));
    let metrics = get("/metrics")?;
    assert!(metrics.contains("switchboard_clusters 2"), "{metrics}");
    assert!(get("/nope")?.starts_with("HTTP/1.0 404"));
    Ok(())
}

/// `zone import` reads an RFC 1035 master file into a zone; `zone export`
/// writes the zone back out with its synthesised records; a bad file is
/// refused naming its line and changes nothing.
#[test]
fn master_files_import_and_export() -> anyhow::Result<()> {
    let (dir, node) = setup()?;
    let file = dir.path().join("static.zone");
    std::fs::write(
        &file,
        "$ORIGIN static.example.test.\n$TTL 600\n@ SOA ns1 hostmaster ( 7 3600 600 1w 30 )\n  NS ns1\nns1 A 192.0.2.53\nwww 60 A 192.0.2.80\n@ MX 10 www\n",
    )?;
    let missing_env = node.cli(&["zone", "import", file.to_str().unwrap_or_default()]).unwrap_err().to_string();
    assert!(missing_env.contains("--environment"), "{missing_env}");
    node.cli(&["zone", "import", file.to_str().unwrap_or_default(), "--environment", "staging"])?;
    let m = query(node.dns(), "www.static.example.test.", RecordType::A)?;
    assert_eq!(answers(&m), vec!["www.static.example.test. A 192.0.2.80"]);
    assert_eq!(m.answers[0].ttl, 60);

    let bad = dir.path().join("bad.zone");
    std::fs::write(&bad, "$ORIGIN static.example.test.\n@ 60 SOA ns1 h 1 2 3 4 5\n@ 60 NS ns1\nwww 60 A 192.0.2.999\n")?;
    let e = node.cli(&["zone", "import", bad.to_str().unwrap_or_default()]).unwrap_err().to_string();
    assert!(e.contains("line 4"), "{e}");
    assert_eq!(answers(&query(node.dns(), "www.static.example.test.", RecordType::A)?), vec!["www.static.example.test. A 192.0.2.80"]);

    node.cli(&["tenant", "create", "replbot", "--cluster", "mt2"])?;
    let text = node.cli(&["zone", "export", "apps.example.test."])?;
    for line in [
        "ws-replbot.apps.example.test. 300 IN CNAME ws-mt2.example.test.",
        "replbot.apps.example.test. 60 IN A 198.51.100.2",
        "*.replbot.apps.example.test. 60 IN A 198.51.100.2",
        "www.apps.example.test. 300 IN A 192.0.2.80",
    ] {
        assert!(text.lines().any(|l| l == line), "{line:?} not in export:\n{text}");
    }
    assert!(text.starts_with("$ORIGIN apps.example.test.\n"), "{text}");
    Ok(())
}

/// Compare-and-set: two clients race to move a tenant from the same
/// revision; exactly one wins, the other gets ABORTED with the current
/// revision and changes nothing.
#[test]
fn compare_and_set_race_has_one_winner() -> anyhow::Result<()> {
    let (_dir, node) = setup()?;
    for round in 0..5 {
        let id = format!("race{round}");
        let created = node.json(&["tenant", "create", &id, "--cluster", "mt1"])?;
        let rev = created["revision"].as_u64().unwrap_or(0).to_string();
        // Both start before either finishes: real processes, real race.
        let racers: Vec<_> = ["mt2", "mt1"]
            .iter()
            .map(|to| {
                std::process::Command::new(common::BIN)
                    .args(["--server", &node.server(), "--expect-revision", &rev, "tenant", "move", &id, to])
                    .stdout(std::process::Stdio::piped())
                    .stderr(std::process::Stdio::piped())
                    .spawn()
            })
            .collect::<Result<_, _>>()?;
        let outputs: Vec<_> = racers.into_iter().map(|c| c.wait_with_output()).collect::<Result<_, _>>()?;
        let winners: Vec<_> = outputs.iter().filter(|o| o.status.success()).collect();
        assert_eq!(winners.len(), 1, "round {round}: exactly one of two CAS writes wins: {outputs:?}");
        let loser =
            outputs.iter().find(|o| !o.status.success()).map(|o| String::from_utf8_lossy(&o.stderr).to_string()).unwrap_or_default();
        assert!(loser.contains("Aborted") && loser.contains("expected_revision"), "{loser}");
        let t = node.json(&["tenant", "get", &id])?;
        assert_eq!(t["history"].as_array().map(Vec::len), Some(usize::from(t["cluster"] == "mt2")), "the loser changed nothing: {t}");
    }
    // 0 means "must not exist".
    let e = node.cli(&["--expect-revision", "0", "tenant", "create", "race0"]).unwrap_err().to_string();
    assert!(e.contains("Aborted"), "{e}");
    Ok(())
}

/// A retried request id is applied once, also after a kill -9 and restart:
/// the retry gets the first call's revision and result.
#[test]
fn a_retried_request_id_applies_once() -> anyhow::Result<()> {
    let (_dir, mut node) = setup()?;
    let create = ["--request-id", "provision-42", "tenant", "create", "once", "--cluster", "mt1"];
    let first = node.json(&create)?;
    let again = node.json(&create)?;
    assert_eq!(first["revision"], again["revision"], "{first} vs {again}");
    // The same id with another call is answered from the window too: ids are per call.
    node.cli(&["--request-id", "move-1", "tenant", "move", "once", "mt2"])?;
    node.cli(&["tenant", "move", "once", "mt1"])?;
    node.cli(&["--request-id", "move-1", "tenant", "move", "once", "mt2"])?;
    let t = node.json(&["tenant", "get", "once"])?;
    assert_eq!(t["cluster"], "mt1", "the retried move did not apply again: {t}");
    assert_eq!(t["history"].as_array().map(Vec::len), Some(2));

    node.kill9()?;
    node.spawn()?;
    node.wait_leader(std::time::Duration::from_secs(30))?;
    let after_restart = node.json(&create)?;
    assert_eq!(first["revision"], after_restart["revision"], "the window survives a restart");
    let bad = node.cli(&["--request-id", "has space", "tenant", "create", "x1"]).unwrap_err().to_string();
    assert!(bad.contains("options.request_id"), "{bad}");
    Ok(())
}

/// A standard client with no Switchboard code (Python grpcio) lists the
/// services by reflection, calls them by name, and sees the server SERVING
/// in grpc.health.v1.
#[test]
fn standard_grpc_tooling_reflection_and_health() -> anyhow::Result<()> {
    let (_dir, node) = setup()?;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/reflection_client.py");
    let out = std::process::Command::new("python3").arg(script).arg(format!("127.0.0.1:{}", node.ports.api)).output()?;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    for s in ["switchboard.v1.Zones", "switchboard.v1.Tenants", "switchboard.v1.Node", "grpc.health.v1.Health"] {
        assert!(v["services"].as_array().is_some_and(|a| a.iter().any(|x| x == s)), "{s} listed: {v}");
    }
    assert!(v["created_revision"].as_u64().unwrap_or(0) > 0, "{v}");
    assert_eq!(v["tenant"]["cluster"], "mt1", "{v}");
    assert_eq!(v["health"], "SERVING", "{v}");
    assert_eq!(v["garbage_code"], "INVALID_ARGUMENT", "an undecodable request is the caller's fault: {v}");
    assert_eq!(node.json(&["tenant", "get", "via-reflection"])?["cluster"], "mt1");
    Ok(())
}

/// Under `prlimit --nofile=1024`, 1,100 DNS TCP connections held open (from
/// 20 loopback addresses) cannot take the descriptors the rest of the node
/// needs: past `dns.tcp_connections_max` (fitted to the limit) a connection
/// is closed at once, while UDP answers, /readyz answers and an API write
/// commits. TCP itself answers again once the holders let go.
#[test]
fn held_tcp_connections_cannot_starve_the_node_of_descriptors() -> anyhow::Result<()> {
    use std::io::{Read, Write};
    rlimit::increase_nofile_limit(8192)?;
    let root = tempfile::tempdir()?;
    let mut node = Node::configured(root.path(), "")?;
    let log = root.path().join("node.log");
    let serve = node.serve_command();
    let mut child = std::process::Command::new("prlimit")
        .arg("--nofile=1024:1024")
        .arg(serve.get_program())
        .args(serve.get_args())
        .stderr(std::fs::File::create(&log)?)
        .spawn()?;
    let result = (|| -> anyhow::Result<()> {
        node.wait_leader(std::time::Duration::from_secs(30))?;
        let zone = root.path().join("zone.toml");
        std::fs::write(&zone, ZONE)?;
        node.cli(&["zone", "put", zone.to_str().unwrap_or_default()])?;
        anyhow::ensure!(common::query_tcp(node.dns(), "www.apps.example.test.", RecordType::A).is_ok(), "TCP answers");
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        let mut held = Vec::new();
        for i in 0..1_100u32 {
            let sock = bound_socket(std::net::Ipv4Addr::new(127, 0, 3, 1 + (i % 20) as u8))?;
            if let Ok(s) = rt.block_on(sock.connect(std::net::SocketAddr::from(([127, 0, 0, 1], node.ports.dns)))) {
                held.push(s);
            }
        }
        anyhow::ensure!(held.len() >= 1_000, "only {} connections opened", held.len());
        let udp = query(node.dns(), "www.apps.example.test.", RecordType::A)?.metadata.response_code;
        anyhow::ensure!(udp == ResponseCode::NoError, "UDP answered {udp:?}");
        let mut s = std::net::TcpStream::connect(("127.0.0.1", node.ports.http))?;
        s.set_read_timeout(Some(std::time::Duration::from_secs(1)))?;
        write!(s, "GET /readyz HTTP/1.0\r\n\r\n")?;
        let mut out = String::new();
        s.read_to_string(&mut out)?;
        anyhow::ensure!(out.starts_with("HTTP/1.0 200"), "/readyz: {out}");
        node.cli(&["cluster", "put", "mt9", "--ipv4", "198.51.100.9"])?;
        drop(held);
        common::eventually(std::time::Duration::from_secs(10), "TCP answers again", || {
            common::query_tcp(node.dns(), "www.apps.example.test.", RecordType::A).is_ok()
        })
    })();
    child.kill()?;
    child.wait()?;
    result.map_err(|e| anyhow::anyhow!("{e}; node log:\n{}", std::fs::read_to_string(&log).unwrap_or_default()))
}

/// A TCP socket bound to `ip` (any port), ready to connect.
fn bound_socket(ip: std::net::Ipv4Addr) -> anyhow::Result<tokio::net::TcpSocket> {
    let s = tokio::net::TcpSocket::new_v4()?;
    s.bind(std::net::SocketAddr::from((ip, 0)))?;
    Ok(s)
}

/// The API admits at most `api.connections_max` connections: past it a new
/// one is closed at once (the node does not run out of descriptors for
/// them), and calls work again as soon as the holders let go.
#[test]
fn api_connections_past_the_limit_are_closed_at_once() -> anyhow::Result<()> {
    use std::io::Read;
    let root = tempfile::tempdir()?;
    let mut node = Node::configured(root.path(), "[api]\nconnections_max = 8\n")?;
    node.spawn()?;
    node.wait_leader(std::time::Duration::from_secs(30))?;
    let held: Vec<std::net::TcpStream> =
        (0..8).map(|_| std::net::TcpStream::connect(("127.0.0.1", node.ports.api))).collect::<Result<_, _>>()?;
    // Each held one is admitted before the next connects.
    std::thread::sleep(std::time::Duration::from_millis(300));
    let mut extra = std::net::TcpStream::connect(("127.0.0.1", node.ports.api))?;
    extra.set_read_timeout(Some(std::time::Duration::from_secs(5)))?;
    let mut buf = [0u8; 16];
    let n = extra.read(&mut buf).unwrap_or(usize::MAX);
    assert_eq!(n, 0, "the connection past the limit is closed at once");
    assert!(node.cli(&["status"]).is_err(), "no room for the CLI while 8 are held");
    drop(held);
    common::eventually(std::time::Duration::from_secs(10), "the API answers again", || node.cli(&["status"]).is_ok())?;
    // DNS never depended on it.
    assert_eq!(query(node.dns(), "apps.example.test.", RecordType::SOA)?.metadata.response_code, ResponseCode::Refused);
    Ok(())
}

/// Over TCP, a message with QR set (a response) is never answered, and one
/// whose header reads but whose question does not gets FORMERR with its id;
/// the connection serves the next query either way.
#[test]
fn tcp_drops_responses_and_answers_garbage_with_formerr() -> anyhow::Result<()> {
    use std::io::{Read, Write};
    let (_dir, node) = setup()?;
    let mut s = std::net::TcpStream::connect(node.dns())?;
    s.set_read_timeout(Some(std::time::Duration::from_millis(700)))?;
    let frame = |m: &[u8]| [&(m.len() as u16).to_be_bytes()[..], m].concat();
    // A response (QR=1) to nothing: silence.
    s.write_all(&frame(&[0x12, 0x34, 0x81, 0x80, 0, 0, 0, 0, 0, 0, 0, 0]))?;
    let mut len = [0u8; 2];
    assert!(s.read_exact(&mut len).is_err(), "a response must not be answered");
    // A header that promises a question that is not there: FORMERR, same id.
    s.write_all(&frame(&[0xab, 0xcd, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, 0xff]))?;
    s.read_exact(&mut len)?;
    let mut resp = vec![0u8; usize::from(u16::from_be_bytes(len))];
    s.read_exact(&mut resp)?;
    assert_eq!((resp[0], resp[1], resp[2] & 0x80, resp[3] & 0x0f), (0xab, 0xcd, 0x80, 1), "FORMERR with the query's id");
    Ok(())
}

/// Over UDP as over TCP: a response (QR=1), well formed or garbage, is
/// never answered (no reflection through us), and a query that cannot be
/// parsed gets FORMERR with its id.
#[test]
fn udp_drops_responses_and_answers_garbage_with_formerr() -> anyhow::Result<()> {
    let (_dir, node) = setup()?;
    // A well-formed response, and garbage with QR set: silence.
    let response = [0x12, 0x34, 0x81, 0x80, 0, 0, 0, 0, 0, 0, 0, 0];
    assert_eq!(raw_udp(node.dns(), &response)?, None, "a response must not be answered");
    let garbage = [0x12, 0x34, 0x81, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, 0xff, 0xff];
    assert_eq!(raw_udp(node.dns(), &garbage)?, None, "garbage with QR=1 must not be answered");
    // A query header that promises a question that is not there: FORMERR, same id.
    let resp = raw_udp(node.dns(), &[0xab, 0xcd, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, 0xff])?
        .ok_or_else(|| anyhow::anyhow!("no FORMERR for an unparseable query"))?;
    assert_eq!((resp[0], resp[1], resp[2] & 0x80, resp[3] & 0x0f), (0xab, 0xcd, 0x80, 1), "FORMERR with the query's id");
    assert_eq!(query(node.dns(), "www.apps.example.test.", RecordType::A)?.metadata.response_code, ResponseCode::NoError);
    Ok(())
}

/// An API connection with no call open for `api.idle_timeout_ms` is closed
/// (HTTP/2 keepalive alone keeps an idle client's connection forever); a
/// connection with a call open, a Watch stream here, is not.
#[test]
fn idle_api_connections_are_closed_and_open_calls_are_not() -> anyhow::Result<()> {
    use std::io::{Read, Write};
    let root = tempfile::tempdir()?;
    let mut node = Node::configured(root.path(), "[api]\nidle_timeout_ms = 1000\n")?;
    node.spawn()?;
    node.wait_leader(std::time::Duration::from_secs(30))?;

    let mut s = std::net::TcpStream::connect(("127.0.0.1", node.ports.api))?;
    s.set_read_timeout(Some(std::time::Duration::from_secs(10)))?;
    // The HTTP/2 preface and an empty SETTINGS frame: a connection, no call.
    s.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")?;
    let opened = std::time::Instant::now();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
            Err(e) => anyhow::bail!("the idle connection was not closed: {e}"),
        }
    }
    let after = opened.elapsed();
    assert!(after >= std::time::Duration::from_millis(900) && after < std::time::Duration::from_secs(5), "closed after {after:?}");

    let mut watch = std::process::Command::new(common::BIN)
        .args(["--server", &node.server(), "watch"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()?;
    std::thread::sleep(std::time::Duration::from_millis(2500));
    let still_running = watch.try_wait()?.is_none();
    let _ = watch.kill();
    let out = watch.wait_with_output()?;
    assert!(still_running, "the watch ended: {}", String::from_utf8_lossy(&out.stderr));
    Ok(())
}
