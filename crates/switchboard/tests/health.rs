//! Health-checked ingress with real processes: three voters probing from
//! two regions, TCP and HTTP listeners on loopback addresses started and
//! killed, answers checked with real DNS packets on every node.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, AtomicU16, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::{answers, eventually, query, Node};
use hickory_proto::rr::RecordType;

const RAFT: &str = "[raft]\nheartbeat_ms = 50\nelection_timeout_min_ms = 300\nelection_timeout_max_ms = 600\n";

/// A listener on `address` that accepts and answers until dropped (then
/// the port refuses connections). With `status`, it answers every request
/// with that HTTP status; without, it closes every connection at once.
struct Listener {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    status: Arc<AtomicU16>,
}

impl Listener {
    fn start(address: SocketAddr, http: bool) -> anyhow::Result<Listener> {
        let socket = TcpListener::bind(address)?;
        socket.set_nonblocking(true)?;
        let stop = Arc::new(AtomicBool::new(false));
        let status = Arc::new(AtomicU16::new(200));
        let (s, st) = (stop.clone(), status.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                match socket.accept() {
                    Ok((mut conn, _)) if http => {
                        let _ = conn.set_nonblocking(false);
                        let _ = conn.set_read_timeout(Some(Duration::from_secs(1)));
                        let mut buf = [0u8; 2048];
                        let _ = conn.read(&mut buf);
                        let code = st.load(Ordering::Relaxed);
                        let _ = write!(conn, "HTTP/1.1 {code} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
                    }
                    Ok(_) => {}
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Ok(Listener { stop, thread: Some(thread), status })
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A child process killed when dropped.
struct Server(std::process::Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn a(name: &str, addresses: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = addresses.iter().map(|x| format!("{name} A {x}")).collect();
    v.sort();
    v
}

/// Wait until every node answers `name`/`rtype` with `want`; how long it took.
fn everywhere(nodes: &[Node], name: &str, rtype: RecordType, want: &[String], within: Duration) -> anyhow::Result<Duration> {
    let start = Instant::now();
    for (i, n) in nodes.iter().enumerate() {
        let dns = n.dns();
        eventually(within, &format!("node {} answering {name} {rtype} with {want:?}", i + 1), || {
            query(dns, name, rtype).is_ok_and(|m| answers(&m) == want)
        })?;
    }
    Ok(start.elapsed())
}

#[test]
fn unhealthy_addresses_leave_answers_and_clusters_fail_over() -> anyhow::Result<()> {
    let root = tempfile::tempdir()?;
    let mut nodes: Vec<Node> = (1..=3).map(|id| Node::prepare(root.path(), id)).collect::<anyhow::Result<_>>()?;
    common::write_cluster_configs(&nodes, 3, RAFT)?;
    // Probers in two regions: `region` is a top-level key.
    for (n, region) in nodes.iter().zip(["eu-west", "eu-west", "us-east"]) {
        let config = std::fs::read_to_string(&n.config)?;
        std::fs::write(&n.config, format!("region = \"{region}\"\n{config}"))?;
    }
    for n in &mut nodes {
        n.spawn()?;
    }
    for n in &mut nodes {
        n.wait_leader_known(Duration::from_secs(30))?;
    }
    let port = common::free_port();
    let at = |last: u8| SocketAddr::from(([127, 0, 0, last], port));
    let mut first = Some(Listener::start(at(2), false)?);
    let mut second = Some(Listener::start(at(3), false)?);

    let n1 = &nodes[0];
    let zone = n1.dir.join("zone.toml");
    std::fs::write(&zone, common::zone_file("apps.example.test.", "prod"))?;
    n1.cli(&["zone", "put", zone.to_str().unwrap_or_default()])?;
    n1.cli(&["cluster", "put", "spare", "--ipv4", "198.51.100.9"])?;
    let check = format!("tcp:{port}");
    #[rustfmt::skip]
    let put = ["cluster", "put", "mt1", "--ipv4", "127.0.0.2", "--ipv4", "127.0.0.3", "--check", &check,
        "--check-interval-ms", "1000", "--check-failures", "2", "--check-successes", "2", "--failover", "spare"];
    n1.cli(&put)?;
    n1.cli(&["tenant", "create", "alpha", "--cluster", "mt1"])?;
    let host = "alpha.apps.example.test.";
    let cname = |cluster: &str| vec![format!("ws-alpha.apps.example.test. CNAME ws-{cluster}.example.test.")];
    everywhere(&nodes, host, RecordType::A, &a(host, &["127.0.0.2", "127.0.0.3"]), Duration::from_secs(10))?;
    let got = n1.json(&["cluster", "get", "mt1"])?;
    assert_eq!(got["health"], "healthy", "{got}");
    assert_eq!(got["check"]["protocol"], "tcp", "{got}");

    eprintln!("--- one address's listener killed: every node leaves it out");
    let killed = Instant::now();
    drop(second.take());
    everywhere(&nodes, host, RecordType::A, &a(host, &["127.0.0.2"]), Duration::from_secs(20))?;
    eprintln!("left out of every node's answers {:?} after its listener was killed", killed.elapsed());
    let got = n1.json(&["cluster", "get", "mt1"])?;
    assert_eq!(got["health"], "degraded", "{got}");
    assert_eq!(got["down"], serde_json::json!(["127.0.0.3"]), "{got}");
    assert_eq!(got["serving"], "mt1", "{got}");
    let table = n1.cli(&["cluster", "list"])?;
    assert!(table.contains("127.0.0.3 (down)") && table.contains("degraded"), "{table}");

    eprintln!("--- it comes back: answered again");
    let back = Instant::now();
    second = Some(Listener::start(at(3), false)?);
    everywhere(&nodes, host, RecordType::A, &a(host, &["127.0.0.2", "127.0.0.3"]), Duration::from_secs(20))?;
    eprintln!("answered again {:?} after its listener returned", back.elapsed());

    eprintln!("--- every address down: the failover cluster answers, service CNAMEs follow");
    drop((first.take(), second.take()));
    everywhere(&nodes, host, RecordType::A, &a(host, &["198.51.100.9"]), Duration::from_secs(20))?;
    everywhere(&nodes, "ws-alpha.apps.example.test.", RecordType::CNAME, &cname("spare"), Duration::from_secs(5))?;
    let got = n1.json(&["cluster", "get", "mt1"])?;
    assert_eq!((got["health"].as_str(), got["serving"].as_str()), (Some("down"), Some("spare")), "{got}");
    first = Some(Listener::start(at(2), false)?);
    everywhere(&nodes, host, RecordType::A, &a(host, &["127.0.0.2"]), Duration::from_secs(20))?;
    everywhere(&nodes, "ws-alpha.apps.example.test.", RecordType::CNAME, &cname("mt1"), Duration::from_secs(5))?;

    eprintln!("--- an HTTP check: a 503 is a failure; all down with no failover fails open");
    let web = [Listener::start(at(4), true)?, Listener::start(at(5), true)?];
    let check = format!("http:{port}/healthz");
    #[rustfmt::skip]
    let put = ["cluster", "put", "web", "--ipv4", "127.0.0.4", "--ipv4", "127.0.0.5", "--check", &check,
        "--check-interval-ms", "1000", "--check-failures", "2", "--check-host", "web.example.test"];
    n1.cli(&put)?;
    n1.cli(&["tenant", "create", "beta", "--cluster", "web"])?;
    let host = "beta.apps.example.test.";
    everywhere(&nodes, host, RecordType::A, &a(host, &["127.0.0.4", "127.0.0.5"]), Duration::from_secs(10))?;
    web[1].status.store(503, Ordering::Relaxed);
    everywhere(&nodes, host, RecordType::A, &a(host, &["127.0.0.4"]), Duration::from_secs(20))?;
    web[0].status.store(500, Ordering::Relaxed);
    eventually(Duration::from_secs(20), "cluster web down", || n1.json(&["cluster", "get", "web"]).is_ok_and(|c| c["health"] == "down"))?;
    everywhere(&nodes, host, RecordType::A, &a(host, &["127.0.0.4", "127.0.0.5"]), Duration::from_secs(5))?;
    // Fail closed: no address, and (no host name) no name.
    let put_closed: Vec<&str> = put.iter().copied().chain(["--fail-closed"]).collect();
    n1.cli(&put_closed)?;
    for n in &nodes {
        let dns = n.dns();
        eventually(Duration::from_secs(5), "fail closed", || {
            query(dns, host, RecordType::A).is_ok_and(|m| m.response_code == hickory_proto::op::ResponseCode::NXDomain)
        })?;
    }

    eprintln!("--- an HTTPS check against OpenSSL's s_server (certificate self-signed, not verified)");
    let (cert, key) = (root.path().join("web.pem"), root.path().join("web.key"));
    let made = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=web.example.test",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()?;
    assert!(made.success(), "openssl req: {made}");
    let tls_port = common::free_port();
    let mut server = Server(
        std::process::Command::new("openssl")
            .args(["s_server", "-quiet", "-www", "-accept", &format!("127.0.0.6:{tls_port}")])
            .arg("-cert")
            .arg(&cert)
            .arg("-key")
            .arg(&key)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()?,
    );
    let check = format!("https:{tls_port}/");
    // 127.0.0.7 has no server: it goes down while 127.0.0.6 passes.
    #[rustfmt::skip]
    let put = ["cluster", "put", "secure", "--ipv4", "127.0.0.6", "--ipv4", "127.0.0.7", "--check", &check,
        "--check-interval-ms", "1000", "--check-failures", "2", "--check-status", "200"];
    n1.cli(&put)?;
    n1.cli(&["tenant", "create", "gamma", "--cluster", "secure"])?;
    let host = "gamma.apps.example.test.";
    everywhere(&nodes, host, RecordType::A, &a(host, &["127.0.0.6"]), Duration::from_secs(20))?;
    let _ = server.0.kill();
    let _ = server.0.wait();

    eprintln!("--- the probers' counters");
    let metrics = common::http_get(n1.ports.http, "/metrics")?;
    assert!(metrics.contains("switchboard_health_probes_failed"), "{metrics}");
    drop((first, second));
    Ok(())
}
