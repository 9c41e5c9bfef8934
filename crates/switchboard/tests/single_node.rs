//! One real node: writes through the CLI, answers checked with DNS packets,
//! state checked across kill -9 and restart.

mod common;

use common::{answers, query, Node, ZONE};
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;

fn setup() -> anyhow::Result<(tempfile::TempDir, Node)> {
    common::standard()
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
