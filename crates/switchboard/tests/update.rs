//! RFC 2136 UPDATE signed with TSIG (issue 12), driven by BIND's
//! `nsupdate -y`: static records and ACME challenges added and deleted,
//! prerequisites, names the rules make refused, unsigned and wrongly
//! signed updates refused, a tenant's key confined to its own challenges,
//! and every refusal leaving the zone as it was.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};

use anyhow::Context;
use common::{answers, query, Node};
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;

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

fn rrs(node: &Node, name: &str, rtype: RecordType) -> anyhow::Result<(ResponseCode, Vec<String>)> {
    let m = query(node.dns(), name, rtype)?;
    Ok((m.metadata.response_code, answers(&m)))
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
