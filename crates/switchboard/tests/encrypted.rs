//! Encrypted DNS (issue 31) with clients nobody here wrote: `kdig +tls`
//! (Knot's, GnuTLS), `dig +tls` (BIND's, OpenSSL), dnspython's DNS over
//! QUIC client (aioquic), and BIND 9 as a secondary transferring over TLS
//! (RFC 9103). Debian's kdig is built without QUIC, hence dnspython.
//! Certificates are made by `openssl` for each test.

mod common;

use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use common::{eventually, free_port, http_get, Node};

const APEX: &str = "apps.example.test.";

/// A self-signed P-256 certificate for `cn` in `dir` as `{stem}.pem` and
/// `{stem}.key`, and the pin of its key (base64 SHA-256 of its SPKI).
fn certificate(dir: &Path, stem: &str, cn: &str) -> anyhow::Result<(PathBuf, PathBuf, String)> {
    let (cert, key) = (dir.join(format!("{stem}.pem")), dir.join(format!("{stem}.key")));
    let status = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "2"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .args(["-subj", &format!("/CN={cn}"), "-addext", &format!("subjectAltName=DNS:{cn}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .context("running openssl (./x setup installs it)")?;
    if !status.success() {
        bail!("openssl req failed: {status}");
    }
    let pin = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "openssl x509 -in {} -pubkey -noout | openssl pkey -pubin -outform der | openssl dgst -sha256 -binary | base64",
            cert.display()
        ))
        .output()?;
    Ok((cert, key, String::from_utf8(pin.stdout)?.trim().to_string()))
}

/// A node serving DoT and DoQ on ports of their own with `cert` and `key`,
/// and `extra` in its `[tls]` table.
fn start(dir: &Path, cert: &Path, key: &Path, extra: &str, ip: Option<Ipv4Addr>) -> anyhow::Result<(Node, u16, u16)> {
    let mut node = Node::prepare(dir, 1)?;
    let (dot, doq) = (free_port(), free_port());
    let ip = ip.unwrap_or(Ipv4Addr::LOCALHOST);
    let rest = format!(
        "dot = \"{ip}:{dot}\"\ndoq = \"{ip}:{doq}\"\n[tls]\ncert_file = {:?}\nkey_file = {:?}\n{extra}\n",
        cert.display().to_string(),
        key.display().to_string()
    );
    node.write_config_at(1, SocketAddr::new(IpAddr::V4(ip), node.ports.dns), &rest)?;
    node.spawn()?;
    node.wait_leader(Duration::from_secs(30))?;
    Ok((node, dot, doq))
}

/// Put `zone` (TOML) and a cluster with two tenants.
fn populate(node: &Node, dir: &Path, zone: &str) -> anyhow::Result<()> {
    let file = dir.join("zone.toml");
    std::fs::write(&file, zone)?;
    node.cli(&["zone", "put", file.to_str().unwrap_or_default()])?;
    node.cli(&["cluster", "put", "mt1", "--ipv4", "198.51.100.1", "--ipv6", "2001:db8::1"])?;
    node.cli(&["tenant", "create", "acme", "--cluster", "mt1"])?;
    node.cli(&["tenant", "create", "globex", "--cluster", "mt1"])?;
    Ok(())
}

fn run(program: &str, args: &[String]) -> anyhow::Result<String> {
    let out = Command::new(program).args(args).output().with_context(|| format!("running {program}"))?;
    Ok(format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

/// kdig at `server`, `args` after it: its output.
fn kdig(server: SocketAddr, args: &[&str]) -> anyhow::Result<String> {
    let mut all = vec![format!("@{}", server.ip()), "-p".into(), server.port().to_string(), "+time=5".into(), "+retry=0".into()];
    all.extend(args.iter().map(|a| a.to_string()));
    run("kdig", &all)
}

/// The sections of a kdig or dig answer that say what was answered: the
/// status and every record line, whitespace squeezed.
fn answer_lines(output: &str) -> Vec<String> {
    output
        .lines()
        .filter_map(|l| {
            let l = l.trim();
            if let Some(i) = l.find("status: ") {
                return Some(l[i..].split([',', ';']).next().unwrap_or_default().to_string());
            }
            (!l.is_empty() && !l.starts_with(';')).then(|| l.split_whitespace().collect::<Vec<_>>().join(" "))
        })
        .collect()
}

/// dnspython over QUIC (or UDP, for `port` = None on `udp`): rcode and
/// records, one per line; with `cert`, the client presents it.
const DOQ_CLIENT: &str = r#"
import ssl, sys
import dns.message, dns.query, dns.quic, dns.rcode, dns.tsigkeyring
mode, host, port, qname, qtype, cert, key, tsig = sys.argv[1:9]
q = dns.message.make_query(qname, qtype)
if tsig != "-":
    alg, name, secret = tsig.split(":")
    q.use_tsig(dns.tsigkeyring.from_text({name: (alg, secret)}), keyname=name, algorithm=alg)
if mode == "udp":
    r = dns.query.udp(q, host, port=int(port), timeout=5)
else:
    manager = dns.quic.SyncQuicManager(verify_mode=ssl.CERT_NONE)
    if cert != "-":
        manager._conf.load_cert_chain(cert, key)
    connection = manager.connect(host, int(port))
    r = dns.query.quic(q, host, port=int(port), connection=connection, timeout=5)
    connection.close()
print("status: " + dns.rcode.to_text(r.rcode()))
for section in (r.answer, r.authority):
    for rrset in section:
        for line in rrset.to_text().splitlines():
            print(" ".join(line.split()))
"#;

fn dnspython(
    mode: &str,
    server: SocketAddr,
    qname: &str,
    qtype: &str,
    cert: Option<(&Path, &Path)>,
    tsig: Option<&str>,
) -> anyhow::Result<String> {
    let (c, k) = cert.map_or(("-".to_string(), "-".to_string()), |(c, k)| (c.display().to_string(), k.display().to_string()));
    let out = Command::new("python3")
        .args(["-c", DOQ_CLIENT, mode, &server.ip().to_string(), &server.port().to_string(), qname, qtype, &c, &k, tsig.unwrap_or("-")])
        .output()
        .context("running python3 with dnspython and aioquic (./x setup installs them)")?;
    if !out.status.success() {
        bail!("dnspython {mode} {qname} {qtype}: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The value of the first `/metrics` line starting with `prefix`, or 0.
fn metric(node: &Node, prefix: &str) -> f64 {
    let text = http_get(node.ports.http, "/metrics").unwrap_or_default();
    text.lines().find(|l| l.starts_with(prefix)).and_then(|l| l.rsplit(' ').next()).and_then(|v| v.parse().ok()).unwrap_or(0.0)
}

const QUESTIONS: [(&str, &str); 7] = [
    ("acme.apps.example.test.", "A"),
    ("acme.apps.example.test.", "AAAA"),
    ("ws.globex.apps.example.test.", "CNAME"),
    ("www.apps.example.test.", "A"),
    ("apps.example.test.", "SOA"),
    ("apps.example.test.", "NS"),
    ("nobody.nowhere.apps.example.test.", "A"),
];

#[test]
fn kdig_dig_and_dnspython_get_over_tls_and_quic_what_they_get_over_udp() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let (cert, key, _) = certificate(dir.path(), "server", "ns1.example.test")?;
    let (node, dot, doq) = start(dir.path(), &cert, &key, "", None)?;
    populate(&node, dir.path(), common::ZONE)?;
    let (dns, dot, doq) = (node.dns(), SocketAddr::new(node.dns().ip(), dot), SocketAddr::new(node.dns().ip(), doq));
    for (name, rtype) in QUESTIONS {
        let udp = answer_lines(&kdig(dns, &[name, rtype])?);
        assert!(udp.iter().any(|l| l.starts_with("status: ")), "{udp:?}");
        let tls = kdig(dot, &["+tls", name, rtype])?;
        assert!(tls.contains("TLS1.3"), "kdig +tls negotiates TLS 1.3: {tls}");
        assert_eq!(answer_lines(&tls), udp, "kdig +tls {name} {rtype}");
        let dig_udp =
            answer_lines(&run("dig", &[format!("@{}", dns.ip()), "-p".into(), dns.port().to_string(), name.into(), rtype.into()])?);
        let dig_tls =
            run("dig", &[format!("@{}", dot.ip()), "-p".into(), dot.port().to_string(), "+tls".into(), name.into(), rtype.into()])?;
        assert_eq!(answer_lines(&dig_tls), dig_udp, "dig +tls {name} {rtype}: {dig_tls}");
        let quic = dnspython("quic", doq, name, rtype, None, None)?;
        assert_eq!(quic, dnspython("udp", dns, name, rtype, None, None)?, "dnspython over QUIC {name} {rtype}");
    }
    // Many queries on one connection, pipelined (kdig sends them in turn).
    let many: Vec<&str> = QUESTIONS.iter().flat_map(|(n, t)| [*n, *t]).collect();
    let out = kdig(dot, &[&["+tls", "+keepopen"][..], &many].concat())?;
    assert_eq!(out.matches("status: ").count(), QUESTIONS.len(), "{out}");

    // Counted per transport, and the handshakes.
    let text = http_get(node.ports.http, "/metrics")?;
    for transport in ["dot", "doq"] {
        assert!(
            text.contains(&format!("switchboard_dns_queries_total{{transport=\"{transport}\",qtype=\"A\",rcode=\"NOERROR\"}}")),
            "{text}"
        );
        assert!(metric(&node, &format!("switchboard_dns_tls_handshakes_total{{transport=\"{transport}\",outcome=\"ok\"}}")) >= 1.0);
    }
    Ok(())
}

#[test]
fn a_certificate_changed_on_disk_is_served_without_a_restart_and_a_broken_one_is_not() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let (cert, key, old_pin) = certificate(dir.path(), "server", "ns1.example.test")?;
    let (node, dot, _) = start(dir.path(), &cert, &key, "", None)?;
    let dot = SocketAddr::new(node.dns().ip(), dot);
    let pinned = |pin: &str| kdig(dot, &[&format!("+tls-pin={pin}"), APEX, "SOA"]).map(|o| o.contains("status: "));
    assert!(pinned(&old_pin)?, "the first certificate is served");

    // A broken pair (a key of another certificate): refused, the old pair kept.
    let (_, other_key, _) = certificate(dir.path(), "other", "ns1.example.test")?;
    std::fs::copy(&other_key, &key)?;
    eventually(Duration::from_secs(20), "a failed reload counted", || {
        metric(&node, "switchboard_dns_tls_certificate_reloads_total{outcome=\"failed\"}") >= 1.0
    })?;
    assert!(pinned(&old_pin)?, "the old certificate is still served after a broken reload");

    // A new pair, written file by file as a renewal does.
    let (new_cert, new_key, new_pin) = certificate(dir.path(), "renewed", "ns1.example.test")?;
    std::fs::copy(&new_cert, &cert)?;
    std::fs::copy(&new_key, &key)?;
    eventually(Duration::from_secs(20), "the renewed certificate served", || pinned(&new_pin).unwrap_or(false))?;
    assert!(!pinned(&old_pin)?, "the old certificate is no longer served");
    assert!(metric(&node, "switchboard_dns_tls_certificate_reloads_total{outcome=\"ok\"}") >= 1.0);
    assert!(node.log().contains("TLS certificate reloaded"), "{}", node.log());
    Ok(())
}

/// The zone with transport rules for its transfers.
fn zone_with_transfer(table: &str) -> String {
    format!("{}\n[transfer]\nallow = [\"127.0.0.0/8\"]\n{table}\n", common::ZONE)
}

/// Whether an AXFR answer (kdig's or dnspython's) holds the zone: the SOA
/// and the static record.
fn transferred(output: &str) -> bool {
    output.contains("SOA") && output.contains("192.0.2.80") && !output.contains("NOTAUTH") && !output.contains("REFUSED")
}

#[test]
fn a_zone_that_requires_tls_or_a_client_certificate_is_refused_on_every_other_port() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let (cert, key, _) = certificate(dir.path(), "server", "ns1.example.test")?;
    let (client_cert, client_key, client_pin) = certificate(dir.path(), "client", "secondary.example.test")?;
    let (stranger_cert, stranger_key, _) = certificate(dir.path(), "stranger", "stranger.example.test")?;
    let (node, dot, doq) = start(dir.path(), &cert, &key, "", None)?;
    let (dns, dot, doq) = (node.dns(), SocketAddr::new(node.dns().ip(), dot), SocketAddr::new(node.dns().ip(), doq));
    let (cc, ck) = (client_cert.to_str().unwrap_or_default(), client_key.to_str().unwrap_or_default());
    let (sc, sk) = (stranger_cert.to_str().unwrap_or_default(), stranger_key.to_str().unwrap_or_default());

    // A pin that is not one is refused, naming the field.
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, zone_with_transfer("cert_keys = [\"not a pin\"]"))?;
    let e = node.cli(&["zone", "put", bad.to_str().unwrap_or_default()]).unwrap_err().to_string();
    assert!(e.contains("transfer.cert_keys[0]"), "{e}");

    // Without rules: every transport transfers (the allowed prefix).
    populate(&node, dir.path(), &zone_with_transfer(""))?;
    assert!(transferred(&kdig(dns, &["+tcp", "AXFR", APEX])?));
    assert!(transferred(&kdig(dot, &["+tls", "AXFR", APEX])?));

    // TLS required: plain TCP and UDP refused; TLS and QUIC served.
    let file = dir.path().join("zone.toml");
    std::fs::write(&file, zone_with_transfer("tls = true"))?;
    node.cli(&["zone", "put", file.to_str().unwrap_or_default()])?;
    let tcp = kdig(dns, &["+tcp", "AXFR", APEX])?;
    assert!(tcp.contains("NOTAUTH") && !transferred(&tcp), "AXFR over TCP: {tcp}");
    let udp = kdig(dns, &["+notcp", "IXFR=1", APEX])?;
    assert!(udp.contains("NOTAUTH"), "IXFR over UDP: {udp}");
    assert!(transferred(&kdig(dot, &["+tls", "AXFR", APEX])?));
    assert!(transferred(&kdig(dot, &["+tls", "IXFR=1", APEX])?));
    assert!(transferred(&dnspython("quic", doq, APEX, "AXFR", None, None)?));
    assert!(node.log().contains("must come over TLS or QUIC"), "the refusal is logged with its reason");

    // A client certificate required: only with the pinned key, on TLS or QUIC.
    std::fs::write(&file, zone_with_transfer(&format!("cert_keys = [\"{client_pin}\"]")))?;
    node.cli(&["zone", "put", file.to_str().unwrap_or_default()])?;
    let shown = node.cli(&["zone", "get", APEX, "--json"])?;
    assert!(shown.contains(&client_pin), "zone get shows the pin: {shown}");
    for (what, out) in [
        ("TCP", kdig(dns, &["+tcp", "AXFR", APEX])?),
        ("UDP", kdig(dns, &["+notcp", "IXFR=1", APEX])?),
        ("TLS without a certificate", kdig(dot, &["+tls", "AXFR", APEX])?),
        (
            "TLS with another certificate",
            kdig(dot, &["+tls", &format!("+tls-certfile={sc}"), &format!("+tls-keyfile={sk}"), "AXFR", APEX])?,
        ),
        ("QUIC without a certificate", dnspython("quic", doq, APEX, "AXFR", None, None)?),
        ("QUIC with another certificate", dnspython("quic", doq, APEX, "AXFR", Some((&stranger_cert, &stranger_key)), None)?),
    ] {
        assert!(out.contains("NOTAUTH") && !transferred(&out), "{what}: {out}");
    }
    let tls = kdig(dot, &["+tls", &format!("+tls-certfile={cc}"), &format!("+tls-keyfile={ck}"), "AXFR", APEX])?;
    assert!(transferred(&tls), "TLS with the pinned certificate: {tls}");
    assert!(transferred(&dnspython("quic", doq, APEX, "AXFR", Some((&client_cert, &client_key)), None)?));
    // Queries are not transfers: answered on every port.
    assert!(kdig(dns, &["www.apps.example.test.", "A"])?.contains("192.0.2.80"));
    assert!(metric(&node, "switchboard_dns_transfers_total{qtype=\"AXFR\",outcome=\"refused\"}") >= 6.0);
    Ok(())
}

/// The SOA serial `server` answers for the zone, if it serves it.
fn serial(server: SocketAddr) -> Option<u32> {
    common::query(server, APEX, hickory_proto::rr::RecordType::SOA).ok().and_then(|m| {
        m.answers.iter().find_map(|r| match &r.data {
            hickory_proto::rr::RData::SOA(s) => Some(s.serial),
            _ => None,
        })
    })
}

#[test]
fn bind_transfers_a_zone_over_tls_with_tsig_and_keeps_it_current_through_notify() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let (cert, key, _) = certificate(dir.path(), "server", "ns1.example.test")?;
    // The node on 127.0.0.2, so NOTIFY leaves from the address BIND lists.
    let ip = Ipv4Addr::new(127, 0, 0, 2);
    let (node, dot, _) = start(dir.path(), &cert, &key, "", Some(ip))?;
    let (dns, dot) = (SocketAddr::from((ip, node.ports.dns)), SocketAddr::from((ip, dot)));
    let bind_port = free_port();
    let bind = SocketAddr::from(([127, 0, 0, 1], bind_port));
    // TLS required, and no unsigned transfer: BIND must use TLS and TSIG.
    let zone = format!("{}\n[transfer]\nnotify = [\"{bind}\"]\ntls = true\n", common::ZONE);
    populate(&node, dir.path(), &zone)?;
    let tsig = node.cli(&["tsig", "create", "bind-xot", "--algorithm", "hmac-sha256", "--zones", APEX, "--allow", "transfer"])?;
    let bind_dir = dir.path().join("bind");
    std::fs::create_dir_all(&bind_dir)?;
    let _bind = common::start_bind_secondary(&bind_dir, bind_port, APEX, dot, tsig.trim(), common::BindTransfer::Tls)?;
    let logs =
        || format!("named log:\n{}\nnode log:\n{}", std::fs::read_to_string(bind_dir.join("named.log")).unwrap_or_default(), node.log());
    let follow = |what: &str| -> anyhow::Result<()> {
        let target = serial(dns).ok_or_else(|| anyhow!("the node serves no SOA"))?;
        eventually(Duration::from_secs(30), &format!("BIND at serial {target} {what}"), || serial(bind) == Some(target))
            .map_err(|e| anyhow!("{e}\n{}", logs()))
    };
    follow("after its first transfer")?;
    node.cli(&["tenant", "create", "initech", "--cluster", "mt1"])?;
    follow("after a change, by NOTIFY")?;
    let out = kdig(bind, &["+short", "initech.apps.example.test.", "A"])?;
    assert!(out.contains("198.51.100.1"), "{out}\n{}", logs());
    // The zone refuses transfers over plain TCP: BIND's came over TLS, and
    // it never tried another way.
    for qtype in ["AXFR", "IXFR"] {
        let refused = metric(&node, &format!("switchboard_dns_transfers_total{{qtype=\"{qtype}\",outcome=\"refused\"}}"));
        assert_eq!(refused, 0.0, "{qtype}\n{}", logs());
    }
    Ok(())
}

#[test]
fn connections_past_the_limits_and_a_handshake_flood_from_one_source_are_refused() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let (cert, key, _) = certificate(dir.path(), "server", "ns1.example.test")?;
    let limits = "connections_per_source_max = 4\nhandshakes_per_source_per_second = 5\nhandshake_timeout_ms = 3000";
    let (node, dot, _) = start(dir.path(), &cert, &key, limits, None)?;
    let dot = SocketAddr::new(node.dns().ip(), dot);
    populate(&node, dir.path(), common::ZONE)?;
    std::thread::sleep(Duration::from_millis(1100));

    // Four connections that never say hello hold the source's places; a
    // fifth is closed at accept.
    let held: Vec<TcpStream> = (0..4).map(|_| TcpStream::connect(dot)).collect::<Result<_, _>>()?;
    let fifth = TcpStream::connect(dot)?;
    fifth.set_read_timeout(Some(Duration::from_secs(2)))?;
    let mut buf = [0u8; 1];
    assert!(matches!(std::io::Read::read(&mut &fifth, &mut buf), Ok(0)), "the fifth connection is closed at once");
    assert!(metric(&node, "switchboard_dns_encrypted_connections_refused_total{transport=\"dot\",reason=\"limit\"}") >= 1.0);
    // The silent ones are given up after the handshake timeout.
    eventually(Duration::from_secs(10), "silent handshakes timed out", || {
        metric(&node, "switchboard_dns_tls_handshakes_total{transport=\"dot\",outcome=\"timed_out\"}") >= 4.0
    })?;
    drop(held);
    std::thread::sleep(Duration::from_millis(1100));

    // A flood of new connections from one source: past 5 a second, closed at accept.
    for _ in 0..30 {
        drop(TcpStream::connect(dot)?);
    }
    eventually(Duration::from_secs(5), "the flood counted", || {
        metric(&node, "switchboard_dns_encrypted_connections_refused_total{transport=\"dot\",reason=\"handshake_rate\"}") >= 15.0
    })?;
    // UDP answers throughout, and TLS again once the second is over.
    assert!(kdig(node.dns(), &["www.apps.example.test.", "A"])?.contains("192.0.2.80"));
    std::thread::sleep(Duration::from_millis(1100));
    assert!(kdig(dot, &["+tls", "www.apps.example.test.", "A"])?.contains("192.0.2.80"));
    Ok(())
}

#[test]
fn a_listener_without_a_certificate_or_with_a_bad_one_stops_the_node_naming_the_key() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let node = Node::prepare(dir.path(), 1)?;
    node.write_config(1, &format!("dot = \"127.0.0.1:{}\"\n", free_port()))?;
    let out = node.serve_command().output()?;
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("listen.dot") && err.contains("tls.cert_file"), "{err}");

    let (cert, _, _) = certificate(dir.path(), "server", "ns1.example.test")?;
    let (_, other_key, _) = certificate(dir.path(), "other", "ns1.example.test")?;
    let rest = format!(
        "doq = \"127.0.0.1:{}\"\n[tls]\ncert_file = {:?}\nkey_file = {:?}\n",
        free_port(),
        cert.display().to_string(),
        other_key.display().to_string()
    );
    node.write_config(1, &rest)?;
    let out = node.serve_command().output()?;
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("tls.cert_file") && err.contains("does not fit"), "{err}");
    Ok(())
}
