//! What an operator at an anycast edge watches and relies on (issue 13),
//! against real node processes on loopback:
//!
//! - `/metrics` parsed by the Prometheus project's own Python parser: DNS
//!   counters move by exactly the queries sent, by transport, QTYPE and
//!   RCODE; the latency histogram is there; every metric the Grafana
//!   dashboard (`config/grafana/switchboard.json`) queries exists.
//! - `/readyz` on a learner cut off from its voter turns 503 after
//!   `max_stale_ms` while its DNS keeps answering, and 200 once it hears
//!   from a leader again.
//! - Response rate limiting caps full answers to one /24 near the rate,
//!   slips truncated answers, answers another /24 every time, and exempts a
//!   client with a valid server cookie.
//! - DNS cookies with `dig +cookie`, a wrong server cookie, a malformed one.
//! - HTTP clients trickling a byte at a time are cut off by the request
//!   head deadline and do not keep `/readyz` from answering.
//! - `--log-format json`: one JSON line per applied write, with its
//!   revision, command and credential.
//!
//! dnstap is checked with `fstrm_capture` and `dnstap-ldns` in `dnstap.rs`.

mod common;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, UdpSocket};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use common::{eventually, http_get, query, query_tcp, Node, ZONE};
use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::opt::{EdnsCode, EdnsOption};
use hickory_proto::rr::{Name, RecordType};

/// A single node configured with `rest`, serving `ZONE` with cluster mt1.
fn node_with(rest: &str) -> anyhow::Result<(tempfile::TempDir, Node)> {
    let root = tempfile::tempdir()?;
    let mut node = Node::configured(root.path(), rest)?;
    node.spawn()?;
    node.wait_leader(Duration::from_secs(30))?;
    let zone = root.path().join("zone.toml");
    std::fs::write(&zone, ZONE)?;
    node.cli(&["zone", "put", zone.to_str().unwrap_or_default()])?;
    node.cli(&["cluster", "put", "mt1", "--ipv4", "198.51.100.1"])?;
    node.cli(&["tenant", "create", "alpha", "--cluster", "mt1"])?;
    Ok((root, node))
}

/// One sample of a scrape, as the Python parser read it.
#[derive(Debug)]
struct Sample {
    family: String,
    /// The family's type: counter, gauge, histogram...
    kind: String,
    name: Option<String>,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// `/metrics` of `node`, parsed by prometheus_client's OpenMetrics parser
/// (`tests/metrics_parse.py`), which rejects any malformed line.
fn scrape(node: &Node) -> anyhow::Result<Vec<Sample>> {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/metrics_parse.py");
    let url = format!("http://127.0.0.1:{}/metrics", node.ports.http);
    let out = Command::new("python3").arg(script).arg(&url).output().context("running tests/metrics_parse.py")?;
    if !out.status.success() {
        bail!("the Prometheus parser refused /metrics: {}", String::from_utf8_lossy(&out.stderr));
    }
    let mut samples = Vec::new();
    for line in String::from_utf8(out.stdout)?.lines() {
        let v: serde_json::Value = serde_json::from_str(line)?;
        let labels = v["labels"].as_object().map(|m| m.iter().map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_string())).collect());
        samples.push(Sample {
            family: v["family"].as_str().unwrap_or("").to_string(),
            kind: v["type"].as_str().unwrap_or("").to_string(),
            name: v["name"].as_str().map(str::to_string),
            labels: labels.unwrap_or_default(),
            value: v["value"].as_f64().unwrap_or(0.0),
        });
    }
    Ok(samples)
}

/// The sum of the samples named `name` whose labels include `labels`.
fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
    samples
        .iter()
        .filter(|s| s.name.as_deref() == Some(name) && labels.iter().all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v)))
        .map(|s| s.value)
        .sum()
}

#[test]
fn metrics_count_each_query_by_transport_qtype_and_rcode() -> anyhow::Result<()> {
    let (root, node) =
        node_with(&format!("[dns.dnstap]\nfile = {:?}\n", std::env::temp_dir().join(format!("sb-obs-{}.fstrm", std::process::id()))))?;
    let before = scrape(&node)?;
    let dns = node.dns();
    for _ in 0..5 {
        assert_eq!(query(dns, "www.apps.example.test.", RecordType::A)?.metadata.response_code, ResponseCode::NoError);
    }
    for _ in 0..3 {
        assert_eq!(query(dns, "nosuch.apps.example.test.", RecordType::AAAA)?.metadata.response_code, ResponseCode::NXDomain);
    }
    for _ in 0..2 {
        assert_eq!(query(dns, "example.org.", RecordType::A)?.metadata.response_code, ResponseCode::Refused);
    }
    for _ in 0..4 {
        assert_eq!(query_tcp(dns, "ws-alpha.apps.example.test.", RecordType::CNAME)?.metadata.response_code, ResponseCode::NoError);
    }
    let after = scrape(&node)?;
    let moved = |labels: &[(&str, &str)]| {
        value(&after, "switchboard_dns_queries_total", labels) - value(&before, "switchboard_dns_queries_total", labels)
    };
    assert_eq!(moved(&[("transport", "udp"), ("qtype", "A"), ("rcode", "NOERROR")]), 5.0);
    assert_eq!(moved(&[("transport", "udp"), ("qtype", "AAAA"), ("rcode", "NXDOMAIN")]), 3.0);
    assert_eq!(moved(&[("transport", "udp"), ("qtype", "A"), ("rcode", "REFUSED")]), 2.0);
    assert_eq!(moved(&[("transport", "tcp"), ("qtype", "CNAME"), ("rcode", "NOERROR")]), 4.0);
    assert_eq!(moved(&[]), 14.0, "nothing else was counted");

    // The latency histogram: each UDP answer observed once.
    let moved_by = |name: &str, labels: &[(&str, &str)]| value(&after, name, labels) - value(&before, name, labels);
    assert_eq!(moved_by("switchboard_dns_answer_duration_seconds_count", &[("transport", "udp")]), 10.0, "the 10 UDP answers observed");
    assert_eq!(
        moved_by("switchboard_dns_answer_duration_seconds_bucket", &[("transport", "udp"), ("le", "0.1")]),
        10.0,
        "each under 100 ms on loopback, in the cumulative bucket"
    );
    assert!(value(&after, "switchboard_dns_answer_duration_seconds_sum", &[("transport", "udp")]) > 0.0);
    // Plain queries (no EDNS options, ordinary names): all on the fast path.
    assert_eq!(moved_by("switchboard_dns_udp_path_total", &[("path", "fast")]), 10.0);
    assert_eq!(moved_by("switchboard_dns_udp_path_total", &[("path", "full")]), 0.0);
    // A resolver's query with a client subnet (dig +subnet) is answered on
    // the fast path too, as without it; one with a cookie on the full path.
    for args in [&["+nocookie", "+subnet=192.0.2.0/24"][..], &["+nocookie", "+subnet=2001:db8:1::/56"], &["+cookie"]] {
        let out = std::process::Command::new("dig")
            .args([&format!("@{}", dns.ip()), "-p", &dns.port().to_string(), "www.apps.example.test.", "A", "+short"])
            .args(args)
            .output()?;
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "192.0.2.80", "dig {args:?}");
    }
    let last = scrape(&node)?;
    let paths = |path: &str| {
        value(&last, "switchboard_dns_udp_path_total", &[("path", path)])
            - value(&after, "switchboard_dns_udp_path_total", &[("path", path)])
    };
    assert_eq!((paths("fast"), paths("full")), (2.0, 1.0), "the two subnet queries fast, the cookie full");
    // Writes and API calls were counted too.
    assert!(value(&after, "switchboard_api_requests_total", &[("method", "/switchboard.v1.Tenants/CreateTenant"), ("code", "OK")]) == 1.0);
    assert!(value(&after, "switchboard_writes_total", &[("outcome", "applied")]) >= 3.0);
    assert_eq!(value(&after, "switchboard_cluster_tenants", &[("cluster", "mt1")]), 1.0);
    assert_eq!(value(&after, "switchboard_raft_role", &[("role", "leader")]), 1.0);
    // The connection limits' counters are exported for each listener.
    for listener in ["api", "peer"] {
        assert_eq!(value(&after, "switchboard_grpc_connections_refused_total", &[("listener", listener)]), 0.0);
        let open = after.iter().any(|s| {
            s.name.as_deref() == Some("switchboard_grpc_connections_open") && s.labels.get("listener").map(String::as_str) == Some(listener)
        });
        assert!(open, "switchboard_grpc_connections_open{{listener={listener:?}}}");
    }
    assert_eq!(value(&after, "switchboard_dns_tcp_connections_open", &[]), 0.0, "the TCP queries' connections are closed");

    // Every metric the Grafana dashboard queries exists on a live node.
    let dashboard = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../config/grafana/switchboard.json"))?;
    let dashboard: serde_json::Value = serde_json::from_str(&dashboard)?;
    let mut exprs = Vec::new();
    collect_exprs(&dashboard, &mut exprs);
    assert!(exprs.len() > 20, "the dashboard has its queries: {}", exprs.len());
    // A query names a gauge by its family, a counter with `_total`, a
    // histogram's series with `_bucket`, `_sum` or `_count`.
    let types: BTreeMap<&str, &str> = after.iter().map(|s| (s.family.as_str(), s.kind.as_str())).collect();
    let exists = |m: &str| match types.get(m) {
        Some(kind) => *kind == "gauge",
        None => {
            let typed = |suffix: &str, kind: &str| m.strip_suffix(suffix).is_some_and(|f| types.get(f) == Some(&kind));
            typed("_total", "counter") || ["_bucket", "_sum", "_count"].iter().any(|s| typed(s, "histogram"))
        }
    };
    let mut missing = Vec::new();
    for expr in &exprs {
        for metric in metric_names(expr) {
            if !exists(&metric) {
                missing.push(metric);
            }
        }
    }
    missing.sort();
    missing.dedup();
    assert!(missing.is_empty(), "queried by the dashboard, absent from /metrics: {missing:?}");
    drop(root);
    Ok(())
}

fn collect_exprs(v: &serde_json::Value, out: &mut Vec<String>) {
    match v {
        serde_json::Value::Object(m) => {
            for (k, v) in m {
                match (k.as_str(), v) {
                    ("expr" | "query", serde_json::Value::String(s)) => out.push(s.clone()),
                    (_, v) => collect_exprs(v, out),
                }
            }
        }
        serde_json::Value::Array(a) => a.iter().for_each(|v| collect_exprs(v, out)),
        _ => {}
    }
}

/// The `switchboard_*` identifiers in a PromQL expression.
fn metric_names(expr: &str) -> Vec<String> {
    let mut names = Vec::new();
    let bytes = expr.as_bytes();
    let mut i = 0;
    while let Some(at) = expr[i..].find("switchboard_") {
        let start = i + at;
        let mut end = start;
        while end < bytes.len() && (bytes[end].is_ascii_alphanumeric() || bytes[end] == b'_') {
            end += 1;
        }
        names.push(expr[start..end].to_string());
        i = end;
    }
    names
}

#[test]
fn a_learner_cut_off_from_its_voter_turns_unready_and_keeps_answering() -> anyhow::Result<()> {
    let root = tempfile::tempdir()?;
    let (mut voter, mut learner) = (Node::prepare(root.path(), 1)?, Node::prepare(root.path(), 2)?);
    let raft = "[raft]\nheartbeat_ms = 50\nelection_timeout_min_ms = 300\nelection_timeout_max_ms = 600\n";
    let voters =
        format!("[[cluster.voters]]\nid = 1\npeer = \"127.0.0.1:{}\"\napi = \"127.0.0.1:{}\"\n", voter.ports.peer, voter.ports.api);
    voter.write_config(1, &format!("{raft}[cluster]\nname = \"r\"\nrole = \"voter\"\n{voters}"))?;
    learner.write_config(
        2,
        &format!("{raft}[cluster]\nname = \"r\"\nrole = \"learner\"\nmax_stale_ms = 1500\njoin = [\"{}\"]\n", voter.server()),
    )?;
    voter.spawn()?;
    voter.wait_leader(Duration::from_secs(30))?;
    learner.spawn()?;
    let zone = root.path().join("zone.toml");
    std::fs::write(&zone, ZONE)?;
    voter.cli(&["zone", "put", zone.to_str().unwrap_or_default()])?;
    let ready = |n: &Node| http_get(n.ports.http, "/readyz").unwrap_or_default();
    eventually(Duration::from_secs(30), "the learner is ready", || ready(&learner).starts_with("HTTP/1.1 200"))
        .with_context(|| format!("learner: {}\n{}", ready(&learner), learner.log()))?;

    voter.kill9()?;
    let cut = Instant::now();
    eventually(Duration::from_secs(10), "the learner's /readyz turns 503", || ready(&learner).starts_with("HTTP/1.1 503"))?;
    let took = cut.elapsed();
    let body = ready(&learner);
    assert!(body.contains("not ready: last heard from a leader"), "{body}");
    assert!(took >= Duration::from_millis(1000), "not before max_stale_ms (1500 ms, less the last heartbeat's age): {took:?}");
    let m = query(learner.dns(), "apps.example.test.", RecordType::SOA)?;
    assert_eq!(m.metadata.response_code, ResponseCode::NoError, "DNS answers while unready");
    let metrics = http_get(learner.ports.http, "/metrics")?;
    assert!(metrics.contains("switchboard_ready 0"), "{metrics}");

    voter.spawn()?;
    eventually(Duration::from_secs(30), "the learner is ready again", || ready(&learner).starts_with("HTTP/1.1 200"))
        .with_context(|| format!("learner: {}\n{}", ready(&learner), learner.log()))?;
    Ok(())
}

/// A query for `name` A with a COOKIE option of `cookie`, if any.
fn cookie_query(id: u16, name: &str, cookie: Option<&[u8]>) -> anyhow::Result<Vec<u8>> {
    let mut msg = Message::new(id, MessageType::Query, OpCode::Query);
    msg.add_query(Query::query(Name::from_ascii(name)?, RecordType::A));
    let mut edns = Edns::new();
    edns.set_max_payload(1232);
    if let Some(c) = cookie {
        edns.options_mut().insert(EdnsOption::Unknown(10, c.to_vec()));
    }
    msg.set_edns(edns);
    Ok(msg.to_vec()?)
}

/// The COOKIE option of a response.
fn cookie_of(m: &Message) -> Option<Vec<u8>> {
    match m.edns.as_ref()?.option(EdnsCode::Cookie)? {
        EdnsOption::Unknown(_, data) => Some(data.clone()),
        _ => None,
    }
}

/// Send one datagram from `sock` and wait for the answer with its id.
fn exchange(sock: &UdpSocket, to: SocketAddr, bytes: &[u8]) -> anyhow::Result<Message> {
    sock.send_to(bytes, to)?;
    let mut buf = [0u8; 4096];
    loop {
        let (n, _) = sock.recv_from(&mut buf)?;
        let m = Message::from_vec(&buf[..n]).map_err(|e| anyhow!("{e}"))?;
        if m.metadata.id == u16::from_be_bytes([bytes[0], bytes[1]]) {
            return Ok(m);
        }
    }
}

#[test]
fn rate_limiting_caps_a_flooding_prefix_and_spares_others_and_cookie_holders() -> anyhow::Result<()> {
    let (_root, node) = node_with("[dns.rrl]\nresponses_per_second = 20\nslip = 2\nwindow_secs = 1\n")?;
    let dns = node.dns();
    let flooder = UdpSocket::bind("127.0.4.1:0")?;
    flooder.set_read_timeout(Some(Duration::from_millis(500)))?;
    // Before the flood, the flooding address learns a server cookie.
    let client = [7u8; 8];
    let first = exchange(&flooder, dns, &cookie_query(1, "www.apps.example.test.", Some(&client))?)?;
    let cookie = cookie_of(&first).ok_or_else(|| anyhow!("no cookie in {first:?}"))?;
    assert_eq!(cookie.len(), 24, "client cookie and a 16-byte server cookie");

    // 1500 queries in about three seconds from 127.0.4.1, the answers read
    // as they come (a socket buffer holds only a few hundred). The window
    // is one second: a bucket banks one second's worth.
    let reader = flooder.try_clone()?;
    reader.set_read_timeout(Some(Duration::from_millis(500)))?;
    let counting = std::thread::spawn(move || -> anyhow::Result<(u32, u32)> {
        let (mut full, mut truncated) = (0, 0);
        let mut buf = [0u8; 4096];
        while let Ok((n, _)) = reader.recv_from(&mut buf) {
            let m = Message::from_vec(&buf[..n]).map_err(|e| anyhow!("{e}"))?;
            if m.metadata.truncation {
                anyhow::ensure!(m.answers.is_empty(), "a slipped answer is empty");
                truncated += 1;
            } else if m.answers.len() == 1 {
                full += 1;
            }
        }
        Ok((full, truncated))
    });
    let started = Instant::now();
    let sent = 1500u16;
    for id in 0..sent {
        flooder.send_to(&cookie_query(1000 + id, "www.apps.example.test.", None)?, dns)?;
        if id % 50 == 49 {
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    let (full, truncated) = counting.join().map_err(|_| anyhow!("the reader panicked"))??;
    let mut buf = [0u8; 4096];
    let secs = started.elapsed().as_secs_f64();
    eprintln!("flood: {sent} queries in {secs:.2} s: {full} full answers, {truncated} truncated");
    // 20 a second over the flood's seconds (and the one it started in).
    let rate = f64::from(full) / secs.ceil();
    assert!((12.0..=30.0).contains(&rate), "full answers {full} in {secs:.2} s: {rate:.1} a second");
    let limited = f64::from(sent) - f64::from(full);
    assert!(
        (f64::from(truncated) - limited / 2.0).abs() <= limited * 0.05 + 2.0,
        "every second limited answer slips: {truncated} of {limited}"
    );

    // A client in another /24 (asking at a normal rate) is answered every
    // time, while the first is still limited.
    let other = UdpSocket::bind("127.0.5.1:0")?;
    other.set_read_timeout(Some(Duration::from_secs(2)))?;
    for id in 0..15 {
        let m = exchange(&other, dns, &cookie_query(5000 + id, "www.apps.example.test.", None)?)?;
        assert!(!m.metadata.truncation && m.answers.len() == 1, "another /24, answer {id}: {m:?}");
    }
    // The flooder with its valid server cookie is exempt...
    flooder.set_read_timeout(Some(Duration::from_secs(2)))?;
    for id in 0..30 {
        let m = exchange(&flooder, dns, &cookie_query(7000 + id, "www.apps.example.test.", Some(&cookie))?)?;
        assert!(!m.metadata.truncation && m.answers.len() == 1, "valid cookie, answer {id}: {m:?}");
    }
    // ...and with only a client cookie it is still limited: a slip is then
    // BADCOOKIE carrying a fresh server cookie to retry with.
    flooder.set_read_timeout(Some(Duration::from_millis(300)))?;
    let mut badcookie = 0;
    // (More than the second's worth of credit it may have earned since.)
    for id in 0..100 {
        flooder.send_to(&cookie_query(9000 + id, "www.apps.example.test.", Some(&client))?, dns)?;
    }
    while let Ok((n, _)) = flooder.recv_from(&mut buf) {
        let m = Message::from_vec(&buf[..n]).map_err(|e| anyhow!("{e}"))?;
        if m.metadata.response_code == ResponseCode::BADCOOKIE {
            assert_eq!(cookie_of(&m).map(|c| c.len()), Some(24));
            badcookie += 1;
        }
    }
    assert!(badcookie >= 20, "BADCOOKIE slips: {badcookie}");
    let metrics = scrape(&node)?;
    assert!(value(&metrics, "switchboard_dns_rrl_actions_total", &[("action", "dropped")]) >= limited / 2.0 - limited * 0.1 - 2.0);
    assert!(value(&metrics, "switchboard_dns_rrl_actions_total", &[("action", "slipped")]) >= f64::from(truncated));
    Ok(())
}

#[test]
fn cookies_are_returned_renewed_and_malformed_ones_refused() -> anyhow::Result<()> {
    let (_root, node) = node_with("[dns.cookies]\nsecret = \"000102030405060708090a0b0c0d0e0f\"\n")?;
    let dns = node.dns();
    let dig = |args: &[&str]| -> anyhow::Result<String> {
        let out = Command::new("dig")
            .args(["@127.0.0.1", "-p", &dns.port().to_string(), "+tries=3", "+time=2"])
            .args(args)
            .stderr(Stdio::inherit())
            .output()
            .context("running dig")?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    };
    // dig +cookie sends a client cookie; it checks the echo and says "good".
    let out = dig(&["+cookie", "www.apps.example.test", "A"])?;
    assert!(out.contains("status: NOERROR"), "{out}");
    let line = out.lines().find(|l| l.contains("COOKIE:")).ok_or_else(|| anyhow!("no COOKIE in\n{out}"))?;
    assert!(line.contains("(good)"), "{line}");
    let cookie = line.split_whitespace().nth(2).unwrap_or_default().to_string();
    assert_eq!(cookie.len(), 48, "8 + 16 bytes in hex: {line}");
    // Sent back, it is valid: answered, and a cookie comes back again.
    let out = dig(&[&format!("+cookie={cookie}"), "www.apps.example.test", "A"])?;
    assert!(out.contains("status: NOERROR") && out.contains("COOKIE:"), "{out}");
    // A wrong server cookie is treated as none (RFC 7873 §5.2.4): a normal
    // answer, with a new server cookie for the same client cookie.
    let wrong = format!("{}{}", &cookie[..16], "01000000aaaaaaaabbbbbbbbcccccccc");
    let out = dig(&[&format!("+cookie={wrong}"), "www.apps.example.test", "A"])?;
    assert!(out.contains("status: NOERROR"), "{out}");
    let line = out.lines().find(|l| l.contains("COOKIE:")).ok_or_else(|| anyhow!("no COOKIE in\n{out}"))?;
    let renewed = line.split_whitespace().nth(2).unwrap_or_default();
    assert!(renewed.starts_with(&cookie[..16]) && !renewed.ends_with("cccccccc"), "{line}");
    // A COOKIE option of a length no cookie has is FORMERR (RFC 7873 §5.2.2).
    let sock = UdpSocket::bind("127.0.0.1:0")?;
    sock.set_read_timeout(Some(Duration::from_secs(2)))?;
    for len in [5usize, 12, 41] {
        let m = exchange(&sock, dns, &cookie_query(100 + len as u16, "www.apps.example.test.", Some(&vec![1u8; len]))?)?;
        assert_eq!(m.metadata.response_code, ResponseCode::FormErr, "cookie of {len} bytes");
    }
    let metrics = scrape(&node)?;
    assert!(value(&metrics, "switchboard_dns_cookies_total", &[("result", "malformed")]) == 3.0);
    assert!(value(&metrics, "switchboard_dns_cookies_total", &[("result", "valid")]) >= 1.0);
    assert!(value(&metrics, "switchboard_dns_cookies_total", &[("result", "invalid")]) >= 1.0);
    Ok(())
}

#[test]
fn http_clients_that_trickle_are_cut_off_and_readyz_keeps_answering() -> anyhow::Result<()> {
    let (_root, node) = node_with("")?;
    let port = node.ports.http;
    // From five addresses (one address may hold 32 connections at most).
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let connect_from = |from: &str| -> anyhow::Result<std::net::TcpStream> {
        let from: SocketAddr = format!("{from}:0").parse()?;
        let s = rt.block_on(async {
            let socket = tokio::net::TcpSocket::new_v4()?;
            socket.bind(from)?;
            socket.connect(SocketAddr::from(([127, 0, 0, 1], port))).await
        })?;
        let s = s.into_std()?;
        s.set_nonblocking(false)?;
        Ok(s)
    };
    let mut tricklers = Vec::new();
    for i in 0..70 {
        let mut s = connect_from(&format!("127.0.6.{}", 1 + i % 5))?;
        s.write_all(b"GET /rea")?;
        tricklers.push(s);
    }
    let started = Instant::now();
    let mut closed = vec![false; tricklers.len()];
    while started.elapsed() < Duration::from_secs(12) && closed.iter().any(|c| !c) {
        // /readyz answers within a second, whatever the tricklers hold.
        let asked = Instant::now();
        let answer = http_get(port, "/readyz")?;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert!(asked.elapsed() < Duration::from_secs(1), "/readyz took {:?}", asked.elapsed());
        for (s, closed) in tricklers.iter_mut().zip(closed.iter_mut()) {
            if !*closed && s.write_all(b"d").is_err() {
                *closed = true;
            }
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    // A write can still succeed after the server's close; a read tells.
    let mut still_open = 0;
    for (mut s, was_closed) in tricklers.into_iter().zip(closed) {
        if was_closed {
            continue;
        }
        s.set_read_timeout(Some(Duration::from_millis(200)))?;
        let mut buf = [0u8; 512];
        match s.read(&mut buf) {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
            Err(_) => still_open += 1,
        }
    }
    assert_eq!(still_open, 0, "connections still held open past the request head deadline");
    assert!(started.elapsed() >= switchboard::http::REQUEST_HEAD_TIMEOUT, "cut off by the deadline, not at once");

    // One address past its 32 connections is closed at once.
    let held: Vec<_> = (0..40).map(|_| connect_from("127.0.7.1")).collect::<anyhow::Result<_>>()?;
    // Read well within the 5 s head deadline, which closes the rest.
    std::thread::sleep(Duration::from_millis(500));
    let mut closed_at_once = 0;
    for mut s in held {
        s.set_read_timeout(Some(Duration::from_millis(20)))?;
        let mut buf = [0u8; 16];
        if matches!(s.read(&mut buf), Ok(0)) || matches!(s.read(&mut buf), Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset) {
            closed_at_once += 1;
        }
    }
    assert_eq!(closed_at_once, 8, "40 connections from one address, 32 kept");
    Ok(())
}

#[test]
fn json_logs_have_one_line_per_applied_write() -> anyhow::Result<()> {
    let root = tempfile::tempdir()?;
    let node = Node::configured(root.path(), "")?;
    let log = std::fs::File::create(root.path().join("json.log"))?;
    let mut child = node.serve_command().args(["--log-format", "json"]).stderr(log).stdout(Stdio::null()).spawn()?;
    let result = (|| -> anyhow::Result<()> {
        eventually(Duration::from_secs(30), "the node leads", || node.status().is_ok_and(|s| s["role"] == "leader"))?;
        let zone = root.path().join("zone.toml");
        std::fs::write(&zone, ZONE)?;
        node.cli(&["zone", "put", zone.to_str().unwrap_or_default()])?;
        let put = node.json(&["cluster", "put", "mt9", "--ipv4", "198.51.100.9"])?;
        let revision = put["revision"].as_u64().ok_or_else(|| anyhow!("no revision in {put}"))?;
        node.cli(&["tenant", "create", "beta", "--cluster", "mt9"])?;
        anyhow::ensure!(node.cli(&["tenant", "create", "beta", "--cluster", "mt9"]).is_err(), "a second create is refused");
        eventually(Duration::from_secs(5), "the log has the writes", || {
            std::fs::read_to_string(root.path().join("json.log")).is_ok_and(|l| l.contains("\"refused\""))
        })?;
        let text = std::fs::read_to_string(root.path().join("json.log"))?;
        let lines: Vec<serde_json::Value> =
            text.lines().map(serde_json::from_str).collect::<Result<_, _>>().with_context(|| format!("not JSON lines:\n{text}"))?;
        let applied: Vec<&serde_json::Value> = lines.iter().filter(|l| l["message"] == "applied").collect();
        assert_eq!(applied.iter().filter(|l| l["command"] == "put_zone").count(), 1, "{text}");
        let cluster = applied.iter().find(|l| l["command"] == "put_cluster").ok_or_else(|| anyhow!("no put_cluster line:\n{text}"))?;
        assert_eq!(cluster["revision"].as_u64(), Some(revision));
        assert_eq!(cluster["credential"], "trusted", "no auth: the node trusts the caller");
        assert_eq!(cluster["level"], "INFO");
        assert!(lines.iter().any(|l| l["message"] == "refused" && l["command"] == "create_tenant"), "{text}");
        Ok(())
    })();
    let _ = child.kill();
    let _ = child.wait();
    result
}
