//! TSIG keys and zone transfers out (issue 12), with clients nobody here
//! wrote: `kdig` (Knot's) signs and verifies TSIG, asks AXFR and IXFR; a
//! Knot DNS secondary (`knotd`) keeps a copy of a Switchboard zone with a
//! key made by `switchboard tsig create`, and serves what Switchboard serves.

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use common::{eventually, free_port, query, standard, which, Killed, Node};
use hickory_proto::rr::RecordType;

const APEX: &str = "apps.example.test.";

fn kdig(node: &Node, args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new("kdig")
        .arg(format!("@{}", node.dns().ip()))
        .args(["-p", &node.dns().port().to_string()])
        .args(args)
        .output()
        .context("running kdig (Debian's knot-dnsutils; ./x setup installs it)")?;
    Ok(format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

/// The records of a kdig transfer's output (`+noall +answer`-like: every
/// line that is a record), each as `owner TTL class type data`, with
/// whitespace squeezed and owners lower-cased.
fn records(output: &str) -> Vec<String> {
    output
        .lines()
        .filter(|l| !l.starts_with(';') && !l.trim().is_empty())
        .map(|l| {
            let mut f: Vec<String> = l.split_whitespace().map(str::to_string).collect();
            if let Some(o) = f.first_mut() {
                *o = o.to_ascii_lowercase();
            }
            f.join(" ")
        })
        .filter(|l| !l.contains(" TSIG "))
        .collect()
}

/// The zone's records as `zone export` writes them, in the same form.
fn exported(node: &Node) -> anyhow::Result<BTreeSet<String>> {
    let text = node.cli(&["zone", "export", APEX])?;
    Ok(text
        .lines()
        .filter(|l| !l.starts_with(';') && !l.starts_with('$') && !l.trim().is_empty())
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect())
}

/// The zone's serial just after tenant `id` was created (its revision).
fn serial_after_tenant(node: &Node, id: &str) -> anyhow::Result<u32> {
    let t = node.json(&["tenant", "get", id])?;
    t["revision"].as_u64().map(|r| r as u32).ok_or_else(|| anyhow!("tenant {id}: {t}"))
}

fn serial(node: &Node) -> anyhow::Result<u32> {
    let soa = query(node.dns(), APEX, RecordType::SOA)?;
    soa.answers
        .iter()
        .find_map(|r| match &r.data {
            hickory_proto::rr::RData::SOA(s) => Some(s.serial),
            _ => None,
        })
        .ok_or_else(|| anyhow!("no SOA"))
}

#[test]
fn tsig_keys_sign_transfers_and_queries_as_kdig_expects() -> anyhow::Result<()> {
    let (_dir, node) = standard()?;
    for i in 0..20 {
        node.cli(&["tenant", "create", &format!("t{i}"), "--cluster", if i % 2 == 0 { "mt1" } else { "mt2" }])?;
    }

    // `tsig create` prints ALG:NAME:SECRET, once; --json the same parts.
    let line = node.cli(&["tsig", "create", "xfr-key", "--algorithm", "hmac-sha256", "--allow", "transfer"])?;
    let line = line.trim().to_string();
    let parts: Vec<&str> = line.split(':').collect();
    assert_eq!(parts.len(), 3, "{line}");
    assert_eq!((parts[0], parts[1]), ("hmac-sha256", "xfr-key."));
    let created = node.json(&["tsig", "create", "acme-t1", "--algorithm", "hmac-md5", "--tenant", "t1", "--allow", "update"])?;
    assert_eq!(created["name"], "acme-t1.");
    assert_eq!(created["algorithm"], "hmac-md5");
    assert_eq!(created["secret"].as_str().map(str::len), Some(24), "16 bytes in base64: {created}");
    // A tenant key transfers nothing; an unknown algorithm names the field.
    let e = node.cli(&["tsig", "create", "bad", "--algorithm", "hmac-sha256", "--tenant", "t1", "--allow", "transfer"]).unwrap_err();
    assert!(e.to_string().contains("allow"), "{e}");
    let e = node.cli(&["tsig", "create", "bad", "--algorithm", "hmac-sha3", "--allow", "update"]).unwrap_err();
    assert!(e.to_string().contains("algorithm"), "{e}");
    // The list never shows a secret.
    let list = node.json(&["tsig", "list"])?;
    let keys = list["keys"].as_array().cloned().unwrap_or_default();
    assert_eq!(keys.len(), 2, "{list}");
    assert!(!list.to_string().contains(parts[2]) && !list.to_string().contains("secret"), "{list}");

    // A signed AXFR: the whole zone, as `zone export` has it, every message
    // verified by kdig (it reports a TSIG failure otherwise).
    let out = kdig(&node, &["-y", &line, "AXFR", APEX])?;
    assert!(!out.contains("failed") && !out.contains("TSIG error"), "{out}");
    let got: Vec<String> = records(&out);
    assert!(got.first().is_some_and(|r| r.contains(" SOA ")) && got.last().is_some_and(|r| r.contains(" SOA ")), "{out}");
    let body: BTreeSet<String> = got[..got.len() - 1].iter().cloned().collect();
    assert_eq!(body, exported(&node)?, "AXFR and zone export differ");
    assert!(body.iter().any(|r| r.starts_with("ws-t7.apps.example.test.")), "{out}");

    // Unsigned, from an address the zone does not list: NOTAUTH.
    let out = kdig(&node, &["AXFR", APEX])?;
    assert!(out.contains("NOTAUTH"), "{out}");
    // A wrong secret: NOTAUTH with BADSIG, and no records.
    let wrong = format!("hmac-sha256:xfr-key.:{}", "A".repeat(43) + "=");
    let out = kdig(&node, &["-y", &wrong, "AXFR", APEX])?;
    assert!(out.contains("BADSIG"), "{out}");
    assert!(records(&out).is_empty(), "{out}");
    // An unknown key: BADKEY.
    let out = kdig(&node, &["-y", &format!("hmac-sha256:nobody.:{}", parts[2]), "SOA", APEX])?;
    assert!(out.contains("BADKEY"), "{out}");
    // A key allowed only updates may not transfer.
    let md5 = format!("hmac-md5:acme-t1.:{}", created["secret"].as_str().unwrap_or_default());
    let out = kdig(&node, &["-y", &md5, "AXFR", APEX])?;
    assert!(out.contains("NOTAUTH") && !out.contains("BADSIG"), "{out}");
    // A signed query gets a signed answer kdig verifies.
    let out = kdig(&node, &["-y", &line, "+tcp", "A", "t3.apps.example.test."])?;
    assert!(out.contains("NOERROR") && out.contains("198.51.100.2") && !out.contains("WARNING"), "{out}");
    let out = kdig(&node, &["-y", &md5, "A", "t3.apps.example.test."])?;
    assert!(out.contains("NOERROR") && !out.contains("WARNING"), "{out}");

    // IXFR at the current serial: the one SOA; from an older one: the zone.
    let now = serial(&node)?;
    let out = kdig(&node, &["-y", &line, &format!("IXFR={now}"), APEX])?;
    assert_eq!(records(&out).len(), 1, "{out}");
    // From a few tenants ago: the difference, condensed (RFC 1995 §4): the
    // current SOA, the old one, what went, the current SOA, what came, and
    // the current SOA again. Tenants t17..t19 were created since.
    let before = serial_after_tenant(&node, "t16")?;
    let out = kdig(&node, &["-y", &line, &format!("IXFR={before}"), APEX])?;
    let diff = records(&out);
    let soas: Vec<&String> = diff.iter().filter(|r| r.contains(" SOA ")).collect();
    assert_eq!(soas.len(), 4, "{out}");
    assert!(soas[1].contains(&format!(" {before} ")), "{out}");
    assert!(diff.iter().any(|r| r.starts_with("ws-t19.apps.example.test.")), "{out}");
    assert!(!diff.iter().any(|r| r.starts_with("ws-t3.apps.example.test.")), "only what changed: {out}");
    assert!(diff.len() < got.len(), "{out}");
    // From before the zone was last written: the history cannot tell it
    // name by name, so the whole zone comes, in AXFR form.
    let out = kdig(&node, &["-y", &line, "IXFR=1", APEX])?;
    assert_eq!(records(&out).len(), got.len(), "{out}");
    // Over UDP, IXFR is the current SOA alone.
    let out = kdig(&node, &["-y", &line, "+notcp", &format!("IXFR={}", now - 5), APEX])?;
    assert_eq!(records(&out).len(), 1, "{out}");

    // Listed in the zone's [transfer] allow: unsigned transfers go.
    let zone = format!("{}\n[transfer]\nallow = [\"127.0.0.0/8\"]\n", common::ZONE);
    let file = node.dir.join("allow.toml");
    std::fs::write(&file, zone)?;
    node.cli(&["zone", "put", file.to_str().unwrap_or_default()])?;
    let out = kdig(&node, &["AXFR", APEX])?;
    assert_eq!(records(&out).len(), got.len(), "{out}");
    let z = node.json(&["zone", "get", APEX])?;
    assert_eq!(z["transfer"]["allow"][0], "127.0.0.0/8", "{z}");

    // Deleting the key: refused from that revision on.
    node.cli(&["tsig", "delete", "xfr-key"])?;
    let out = kdig(&node, &["-y", &line, "AXFR", APEX])?;
    assert!(out.contains("BADKEY"), "{out}");
    Ok(())
}

/// Issue 27, item 2: a zone's serial moves only when its own answers
/// change, not for another zone's writes or a cluster no tenant uses, and
/// an IXFR across such writes is the difference, not the whole zone.
#[test]
fn a_zone_serial_moves_only_with_its_own_answers() -> anyhow::Result<()> {
    let (_dir, node) = standard()?;
    for i in 0..5 {
        node.cli(&["tenant", "create", &format!("t{i}"), "--cluster", "mt1"])?;
    }
    let line = node.cli(&["tsig", "create", "xfr-key", "--algorithm", "hmac-sha256", "--allow", "transfer"])?;
    let line = line.trim().to_string();
    let whole = records(&kdig(&node, &["-y", &line, "AXFR", APEX])?).len();
    let s0 = serial(&node)?;

    // Another environment's zone written twice, a cluster without tenants,
    // a cluster's weight: not this zone's answers.
    let other = node.dir.join("other.toml");
    std::fs::write(&other, common::zone_file("staging.example.test.", "staging"))?;
    node.cli(&["zone", "put", other.to_str().unwrap_or_default()])?;
    node.cli(&["zone", "put", other.to_str().unwrap_or_default()])?;
    node.cli(&["cluster", "put", "mt9", "--ipv4", "198.51.100.9"])?;
    node.cli(&["cluster", "put", "mt2", "--ipv4", "198.51.100.2", "--weight", "5"])?;
    node.cli(&["acme", "set", "x.staging.example.test", "token"])?;
    assert_eq!(serial(&node)?, s0, "other zones' writes moved this zone's serial");

    // A tenant made: the serial moves, and an IXFR from before it is the
    // difference, though other zones were written in between.
    node.cli(&["tenant", "create", "t5", "--cluster", "mt1"])?;
    node.cli(&["zone", "put", other.to_str().unwrap_or_default()])?;
    let s1 = serial(&node)?;
    assert!(s1 > s0, "a tenant made moves the serial ({s0} → {s1})");
    let out = kdig(&node, &["-y", &line, &format!("IXFR={s0}"), APEX])?;
    let diff = records(&out);
    assert_eq!(diff.iter().filter(|r| r.contains(" SOA ")).count(), 4, "{out}");
    assert!(diff.iter().any(|r| r.starts_with("ws-t5.apps.example.test.")), "{out}");
    assert!(diff.len() < whole, "only what changed ({} of {whole}): {out}", diff.len());
    Ok(())
}

fn start_knot_secondary(dir: &Path, port: u16, primary: std::net::SocketAddr, key: &str) -> anyhow::Result<Killed> {
    let knotd = which("knotd").ok_or_else(|| anyhow!("knotd not found: install Debian's `knot` package (./x setup does)"))?;
    let [alg, name, secret]: [&str; 3] = key.split(':').collect::<Vec<_>>().try_into().map_err(|_| anyhow!("key {key}"))?;
    for d in ["run", "db"] {
        std::fs::create_dir_all(dir.join(d))?;
    }
    let conf = dir.join("knot.conf");
    std::fs::write(
        &conf,
        format!(
            "server:\n  rundir: {run:?}\n  listen: 127.0.0.1@{port}\n\
             database:\n  storage: {db:?}\n\
             log:\n  - target: stderr\n    any: info\n\
             key:\n  - id: {name}\n    algorithm: {alg}\n    secret: {secret}\n\
             remote:\n  - id: primary\n    address: {ip}@{pport}\n    key: {name}\n\
             acl:\n  - id: notify\n    address: {ip}\n    action: notify\n\
             zone:\n  - domain: {APEX}\n    master: primary\n    acl: notify\n    storage: {db:?}\n    zonefile-sync: -1\n    journal-content: none\n",
            run = dir.join("run"),
            db = dir.join("db"),
            ip = primary.ip(),
            pport = primary.port(),
        ),
    )?;
    let log = std::fs::File::create(dir.join("knot.log"))?;
    let child = Command::new(knotd).arg("-c").arg(&conf).stdout(Stdio::null()).stderr(log).spawn().context("starting knotd")?;
    Ok(Killed(child))
}

/// NSD as a secondary of the Switchboard node, in the foreground, killed on drop.
fn start_nsd_secondary(dir: &Path, port: u16, primary: std::net::SocketAddr, key: &str) -> anyhow::Result<Killed> {
    let nsd = which("nsd").ok_or_else(|| anyhow!("nsd not found: install Debian's `nsd` package (./x setup does)"))?;
    let [alg, name, secret]: [&str; 3] = key.split(':').collect::<Vec<_>>().try_into().map_err(|_| anyhow!("key {key}"))?;
    let conf = dir.join("nsd.conf");
    let d = dir.display();
    std::fs::write(
        &conf,
        format!(
            "server:\n  ip-address: 127.0.0.1@{port}\n  username: \"\"\n  chroot: \"\"\n  zonesdir: \"{d}\"\n  database: \"\"\n\
             \x20 zonelistfile: \"{d}/zone.list\"\n  pidfile: \"{d}/nsd.pid\"\n  xfrdfile: \"{d}/xfrd.state\"\n  xfrdir: \"{d}\"\n\
             \x20 logfile: \"{d}/nsd.log\"\n  verbosity: 2\n  rrl-ratelimit: 0\n\
             remote-control:\n  control-enable: no\n\
             key:\n  name: {name}\n  algorithm: {alg}\n  secret: \"{secret}\"\n\
             zone:\n  name: {APEX}\n  zonefile: \"{d}/zone.db\"\n  request-xfr: {ip}@{pport} {name}\n  allow-notify: {ip} NOKEY\n",
            ip = primary.ip(),
            pport = primary.port(),
        ),
    )?;
    let log = std::fs::File::create(dir.join("nsd.stderr"))?;
    let child = Command::new(nsd).arg("-d").arg("-c").arg(&conf).stdout(Stdio::null()).stderr(log).spawn().context("starting nsd")?;
    Ok(Killed(child))
}

/// The answers of `server` for every tenant name of `tenants`, as text.
fn answers_for(server: std::net::SocketAddr, tenants: &[String]) -> anyhow::Result<Vec<String>> {
    let mut out = Vec::new();
    for t in tenants {
        for (name, rtype) in [(format!("ws-{t}.{APEX}"), RecordType::CNAME), (format!("{t}.{APEX}"), RecordType::A)] {
            let m = query(server, &name, rtype)?;
            out.push(format!("{name} {:?} {:?}", m.metadata.response_code, common::answers(&m)));
        }
    }
    Ok(out)
}

fn knot_serial(knot: std::net::SocketAddr) -> Option<u32> {
    query(knot, APEX, RecordType::SOA).ok().and_then(|m| {
        m.answers.iter().find_map(|r| match &r.data {
            hickory_proto::rr::RData::SOA(s) => Some(s.serial),
            _ => None,
        })
    })
}

#[test]
fn knot_and_nsd_secondaries_follow_the_zone_by_notify_and_ixfr_across_a_restart() -> anyhow::Result<()> {
    let (port, nsd_port) = (free_port(), free_port());
    // The default SOA refresh (an hour): the secondaries learn of changes
    // only by NOTIFY.
    let zone = format!("{}\n[transfer]\nnotify = [\"127.0.0.1:{port}\", \"127.0.0.1:{nsd_port}\"]\n", common::ZONE);
    let (dir, mut node) = common::single_with(&zone, &[&["mt1", "--ipv4", "198.51.100.1"], &["mt2", "--ipv4", "198.51.100.2"]])?;
    let mut tenants: Vec<String> = (0..30).map(|i| format!("k{i}")).collect();
    for (i, t) in tenants.iter().enumerate() {
        node.cli(&["tenant", "create", t, "--cluster", if i % 2 == 0 { "mt1" } else { "mt2" }])?;
    }
    let key = node.cli(&["tsig", "create", "knot-secondary", "--algorithm", "hmac-sha512", "--zones", APEX, "--allow", "transfer"])?;
    let knot_dir = dir.path().join("knot");
    std::fs::create_dir_all(&knot_dir)?;
    let _knot = start_knot_secondary(&knot_dir, port, node.dns(), key.trim())?;
    let knot = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let knot_log = || std::fs::read_to_string(knot_dir.join("knot.log")).unwrap_or_default();
    let nsd_key = node.cli(&["tsig", "create", "nsd-secondary", "--algorithm", "hmac-sha256", "--zones", APEX, "--allow", "transfer"])?;
    let nsd_dir = dir.path().join("nsd");
    std::fs::create_dir_all(&nsd_dir)?;
    let _nsd = start_nsd_secondary(&nsd_dir, nsd_port, node.dns(), nsd_key.trim())?;
    let nsd = std::net::SocketAddr::from(([127, 0, 0, 1], nsd_port));
    let nsd_log = || {
        std::fs::read_to_string(nsd_dir.join("nsd.log")).unwrap_or_default()
            + &std::fs::read_to_string(nsd_dir.join("nsd.stderr")).unwrap_or_default()
    };
    let follows = |node: &Node, tenants: &[String]| -> anyhow::Result<()> {
        let target = serial(node)?;
        for (who, secondary) in [("Knot", knot), ("NSD", nsd)] {
            eventually(Duration::from_secs(30), &format!("{who} at Switchboard's serial with the same answers"), || {
                knot_serial(secondary) == Some(target)
                    && matches!((answers_for(node.dns(), tenants), answers_for(secondary, tenants)), (Ok(a), Ok(b)) if a == b)
            })
            .map_err(|e| anyhow!("{e}; knot log:\n{}\nnsd log:\n{}", knot_log(), nsd_log()))?;
        }
        Ok(())
    };
    follows(&node, &tenants)?;

    // 100 tenant changes: moves, deletions and new tenants.
    let mut changes = 0;
    for (i, t) in tenants.iter().enumerate() {
        node.cli(&["tenant", "move", t, if i % 2 == 0 { "mt2" } else { "mt1" }])?;
        changes += 1;
    }
    for t in tenants.drain(20..) {
        node.cli(&["tenant", "delete", &t])?;
        changes += 1;
    }
    while changes < 100 {
        let t = format!("new{changes}");
        node.cli(&["tenant", "create", &t, "--cluster", "mt1"])?;
        tenants.push(t);
        changes += 1;
    }
    follows(&node, &tenants)?;

    // Killed and restarted: nothing acknowledged is lost, and the next
    // change reaches Knot too.
    node.kill9()?;
    node.spawn()?;
    node.wait_leader(Duration::from_secs(30))?;
    node.cli(&["tenant", "move", &tenants[0], "mt1"])?;
    node.cli(&["tenant", "create", "after-restart", "--cluster", "mt2"])?;
    tenants.push("after-restart".into());
    follows(&node, &tenants)?;

    // Knot's own account: NOTIFY received, the zone taken again each time,
    // no errors.
    let log = knot_log();
    // After the first AXFR, every change came by IXFR proper, not AXFR-style.
    let incremental = log.lines().filter(|l| l.contains("IXFR, incoming") && l.contains("finished")).count();
    if log.contains("error")
        || log.matches("zone updated").count() < 3
        || !log.contains("notify, incoming")
        || incremental < 2
        || log.contains("AXFR-style")
    {
        bail!("knot did not follow the zone as expected:\n{log}");
    }
    // NSD's account: TSIG-verified updates; the last, one tenant moved and
    // one created, is far smaller than the whole zone was: an increment.
    let log = nsd_log();
    let sizes: Vec<u64> = log
        .lines()
        .filter(|l| l.contains("received update to serial") && l.contains("TSIG verified with key nsd-secondary"))
        .filter_map(|l| l.split(" of ").nth(1)?.split(' ').next()?.parse().ok())
        .collect();
    if sizes.len() < 3 || sizes.last() >= sizes.first() {
        bail!("nsd did not follow the zone by increments:\n{log}");
    }
    // And the node's: increments sent (to Knot and to NSD).
    let incremental = node.log().lines().filter(|l| l.contains("zone transfer sent") && l.contains("incremental")).count();
    assert!(incremental >= 4, "{}", node.log());
    Ok(())
}

/// A catalog zone (RFC 9432): a Knot secondary configured with nothing but
/// the catalog adds every zone it lists, and adds and drops zones as
/// Switchboard starts and stops serving them.
#[test]
fn a_knot_catalog_consumer_follows_the_zones_served() -> anyhow::Result<()> {
    let port = free_port();
    let (dir, node) = common::single_with(common::ZONE, &[&["mt1", "--ipv4", "198.51.100.1"]])?;
    node.cli(&["tenant", "create", "c1", "--cluster", "mt1"])?;
    let put = |name: &str, text: &str| -> anyhow::Result<()> {
        let file = dir.path().join(name);
        std::fs::write(&file, text)?;
        node.cli(&["zone", "put", file.to_str().unwrap_or_default()]).map(|_| ())
    };
    put("other.toml", &common::zone_file("other.example.test.", "prod"))?;
    put(
        "catalog.toml",
        &format!("apex = \"catalog.example.test.\"\nenvironment = \"prod\"\nns = [\"invalid.\"]\ncatalog = true\n[transfer]\nnotify = [\"127.0.0.1:{port}\"]\n"),
    )?;
    // The catalog's own records: version "2", a PTR per member.
    let out = kdig(&node, &["TXT", "version.catalog.example.test."])?;
    assert!(out.contains("\"2\""), "{out}");
    let label = node.json(&["zone", "list"])?;
    assert!(label.to_string().contains("\"catalog\":true"), "{label}");

    let key = node.cli(&["tsig", "create", "catalog-consumer", "--algorithm", "hmac-sha256", "--allow", "transfer"])?;
    let [alg, name, secret]: [&str; 3] = key.trim().split(':').collect::<Vec<_>>().try_into().map_err(|_| anyhow!("key {key}"))?;
    let knot_dir = dir.path().join("knot");
    for d in ["run", "db"] {
        std::fs::create_dir_all(knot_dir.join(d))?;
    }
    let conf = knot_dir.join("knot.conf");
    std::fs::write(
        &conf,
        format!(
            "server:\n  rundir: {run:?}\n  listen: 127.0.0.1@{port}\n\
             database:\n  storage: {db:?}\n\
             log:\n  - target: stderr\n    any: info\n\
             key:\n  - id: {name}\n    algorithm: {alg}\n    secret: {secret}\n\
             remote:\n  - id: primary\n    address: {ip}@{pport}\n    key: {name}\n\
             acl:\n  - id: notify\n    address: {ip}\n    action: notify\n\
             template:\n  - id: default\n    storage: {db:?}\n  - id: members\n    master: primary\n    acl: notify\n    storage: {db:?}\n    zonefile-sync: -1\n\
             zone:\n  - domain: catalog.example.test.\n    master: primary\n    acl: notify\n    catalog-role: interpret\n    catalog-template: members\n    zonefile-sync: -1\n",
            run = knot_dir.join("run"),
            db = knot_dir.join("db"),
            ip = node.dns().ip(),
            pport = node.dns().port(),
        ),
    )?;
    let knotd = which("knotd").ok_or_else(|| anyhow!("knotd not found: install Debian's `knot` package (./x setup does)"))?;
    let log = std::fs::File::create(knot_dir.join("knot.log"))?;
    let _knot = Killed(Command::new(knotd).arg("-c").arg(&conf).stdout(Stdio::null()).stderr(log).spawn().context("starting knotd")?);
    let knot = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let knot_log = || std::fs::read_to_string(knot_dir.join("knot.log")).unwrap_or_default();
    let serves = |apex: &str| {
        query(knot, apex, RecordType::SOA)
            .is_ok_and(|m| m.metadata.response_code == hickory_proto::op::ResponseCode::NoError && !m.answers.is_empty())
    };
    for apex in [APEX, "other.example.test."] {
        eventually(Duration::from_secs(30), &format!("Knot serving {apex} from the catalog"), || serves(apex))
            .map_err(|e| anyhow!("{e}; knot log:\n{}", knot_log()))?;
    }
    // A new zone: the catalog changes, NOTIFY tells Knot, Knot adds it.
    put("late.toml", &common::zone_file("late.example.test.", "prod"))?;
    eventually(Duration::from_secs(30), "Knot serving the new zone", || serves("late.example.test."))
        .map_err(|e| anyhow!("{e}; knot log:\n{}", knot_log()))?;
    // A zone no longer served: Knot drops it.
    node.cli(&["zone", "delete", "other.example.test."])?;
    eventually(Duration::from_secs(30), "Knot dropping the deleted zone", || !serves("other.example.test."))
        .map_err(|e| anyhow!("{e}; knot log:\n{}", knot_log()))?;
    assert!(serves(APEX), "{}", knot_log());
    Ok(())
}
