//! The hostile-input suite: what an attacker and an unlucky operator did to
//! a node (issue 14), replayed against real processes on loopback, each
//! bounded in count and time. Runs with every other test (`./x test`, CI).
//!
//! 1. A scoped operator stepping out of its scope, and 2. a tenant squatting
//!    another tenant's future names: `auth.rs`,
//!    `each_role_and_scope_is_allowed_its_calls_and_denied_the_rest` (with
//!    the domain rules' unit tests in `crates/domain`).
//! 3. Descriptors: `held_tcp_connections_cannot_starve_the_node_of_descriptors`,
//!    `api_connections_past_the_limit_are_closed_at_once`,
//!    `idle_api_connections_are_closed_and_open_calls_are_not`,
//!    `the_open_files_limit_is_raised_to_the_hard_limit`.
//! 4. Watch memory: `watch_streams_that_never_read_are_bounded`.
//! 5. Large zones: `large_zones_list_in_pages_and_leave_the_history_resumable`.
//! 6. A full disk: `a_full_disk_refuses_writes_and_they_resume_without_a_restart`,
//!    `a_write_caught_by_enospc_waits_for_space_and_completes` (and the chaos
//!    suite's `diskfull` nemesis, with a cluster and a leader handover).
//! 7. The rest: `malformed_packets_do_not_stop_the_server`,
//!    `transfers_and_qtype_zero_are_refused_as_knot_refuses_them`,
//!    `udp_drops_responses_and_answers_garbage_with_formerr`,
//!    `tcp_drops_responses_and_answers_garbage_with_formerr`,
//!    `a_closed_stdout_ends_the_cli_quietly`, `a_busy_port_leaves_no_store_behind`;
//!    undecodable API messages and a second `authorization` header: `auth.rs`.
//!
//! The disk tests mount a small tmpfs as the data dir, so they need root, as
//! the chaos suite does; CI runs as root.

mod common;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use common::{answers, query, raw_udp, Node};
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;

/// A tmpfs of `mb` MiB mounted at a directory, unmounted when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path, mb: u64) -> anyhow::Result<Tmpfs> {
        std::fs::create_dir_all(at)?;
        let out = Command::new("mount").args(["-t", "tmpfs", "-o", &format!("size={mb}m"), "sbtest"]).arg(at).output()?;
        if !out.status.success() {
            bail!("mounting a tmpfs at {}: {}", at.display(), String::from_utf8_lossy(&out.stderr).trim());
        }
        Ok(Tmpfs(at.to_path_buf()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

fn is_root() -> bool {
    Command::new("id").arg("-u").output().is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// Write zeros to `path` until the file system is full.
fn fill(path: &Path) -> anyhow::Result<()> {
    let mut f = std::fs::File::create(path)?;
    for chunk in [1 << 20, 4096, 1] {
        let zeros = vec![0u8; chunk];
        while f.write_all(&zeros).is_ok() {}
    }
    Ok(())
}

fn http_get(port: u16, path: &str) -> anyhow::Result<String> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port))?;
    write!(s, "GET {path} HTTP/1.0\r\n\r\n")?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    Ok(out)
}

/// Node 1 with its data dir on a fresh tmpfs of `mb` MiB, refusing writes
/// below `min_free_mb`, with a zone and a cluster and tenant `acme` in it.
fn node_on_tmpfs(mb: u64, min_free_mb: u64) -> anyhow::Result<(tempfile::TempDir, Tmpfs, Node)> {
    let root = tempfile::tempdir()?;
    let mut node = Node::configured(root.path(), &format!("[storage]\nfree_space_min_mb = {min_free_mb}\n"))?;
    let tmpfs = Tmpfs::mount(&node.dir.join("data"), mb)?;
    node.spawn()?;
    node.wait_leader(Duration::from_secs(30))?;
    let zone = root.path().join("zone.toml");
    std::fs::write(&zone, common::zone_file("apps.example.test.", "prod"))?;
    node.cli(&["zone", "put", zone.to_str().unwrap_or_default()])?;
    node.cli(&["cluster", "put", "mt1", "--ipv4", "198.51.100.1"])?;
    node.cli(&["tenant", "create", "acme", "--cluster", "mt1"])?;
    Ok((root, tmpfs, node))
}

/// Below the configured free space, writes are refused with
/// RESOURCE_EXHAUSTED naming the node and its data dir, `/readyz` says
/// "disk full", DNS keeps answering; once space returns a write succeeds
/// within seconds, from the same process.
#[test]
fn a_full_disk_refuses_writes_and_they_resume_without_a_restart() -> anyhow::Result<()> {
    if !is_root() {
        eprintln!("skipped: mounting a tmpfs needs root");
        return Ok(());
    }
    let (_root, _tmpfs, mut node) = node_on_tmpfs(160, 32)?;
    let filler = node.dir.join("data").join("filler");
    fill(&filler)?;

    let data_dir = node.dir.join("data").join("db");
    let mut refused = String::new();
    common::eventually(Duration::from_secs(10), "a write is refused for the full disk", || {
        refused = node.cli(&["tenant", "create", "globex", "--cluster", "mt1"]).err().map(|e| e.to_string()).unwrap_or_default();
        refused.contains("ResourceExhausted")
    })?;
    assert!(refused.contains("node 1") && refused.contains(&data_dir.display().to_string()) && refused.contains("disk full"), "{refused}");
    let ready = http_get(node.ports.http, "/readyz")?;
    assert!(ready.starts_with("HTTP/1.0 503") && ready.contains("disk full"), "{ready}");
    assert!(http_get(node.ports.http, "/metrics")?.contains("switchboard_disk_full 1"));
    // The query path does not need the disk.
    let m = query(node.dns(), "acme.apps.example.test.", RecordType::A)?;
    assert_eq!(answers(&m), vec!["acme.apps.example.test. A 198.51.100.1"]);
    // Nothing refused was written.
    assert!(node.cli(&["tenant", "get", "globex"]).is_err());

    std::fs::remove_file(&filler)?;
    let freed = Instant::now();
    common::eventually(Duration::from_secs(30), "a write succeeds after space returns", || {
        node.cli(&["tenant", "create", "globex", "--cluster", "mt1"]).is_ok()
    })?;
    eprintln!("a write succeeded {:.1} s after space returned", freed.elapsed().as_secs_f64());
    assert!(node.is_running(), "the node restarted or exited:\n{}", node.log());
    assert!(http_get(node.ports.http, "/readyz")?.starts_with("HTTP/1.0 200"));
    let m = query(node.dns(), "globex.apps.example.test.", RecordType::A)?;
    assert_eq!(answers(&m), vec!["globex.apps.example.test. A 198.51.100.1"]);
    Ok(())
}

/// With no free-space margin, a write meets ENOSPC inside RocksDB itself.
/// The node must not stop Raft or fail that write: it waits for space,
/// says "disk full" meanwhile, and the write completes (and is answered as
/// done) once space returns.
#[test]
fn a_write_caught_by_enospc_waits_for_space_and_completes() -> anyhow::Result<()> {
    if !is_root() {
        eprintln!("skipped: mounting a tmpfs needs root");
        return Ok(());
    }
    let (root, _tmpfs, mut node) = node_on_tmpfs(160, 0)?;
    // Zones of about 3 MB: the preallocated write-ahead log runs out after a few.
    let txt = format!("\\\"{}\\\"", "x".repeat(250)).repeat(4);
    let mut text = String::from("apex = \"big.example.test.\"\nenvironment = \"prod\"\nns = [\"ns1.example.test.\"]\n");
    for i in 0..3_000 {
        text.push_str(&format!("[[records]]\nname = \"t{i}\"\ntype = \"TXT\"\ndata = \"{txt}\"\n"));
    }
    let big = root.path().join("big.toml");
    std::fs::write(&big, text)?;
    let filler = node.dir.join("data").join("filler");
    fill(&filler)?;

    let server = node.server();
    let big_arg = big.to_str().unwrap_or_default().to_string();
    let put_big = move || {
        Command::new(common::BIN).args(["--server", &server, "--json", "zone", "put", &big_arg]).output().context("running the CLI")
    };
    // Put the zone again and again until a put does not come back quickly:
    // that one waits for space.
    let mut waiting = None;
    for _ in 0..100 {
        let put = put_big.clone();
        let call = std::thread::spawn(put);
        let deadline = Instant::now() + Duration::from_secs(3);
        while !call.is_finished() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        if !call.is_finished() {
            waiting = Some(call);
            break;
        }
        let out = call.join().map_err(|_| anyhow::anyhow!("CLI thread panicked"))??;
        assert!(out.status.success(), "a put failed instead of waiting: {}", String::from_utf8_lossy(&out.stderr));
    }
    let Some(waiting) = waiting else { bail!("no write met the full disk") };
    common::eventually(Duration::from_secs(5), "/readyz says disk full", || {
        http_get(node.ports.http, "/readyz").is_ok_and(|r| r.contains("disk full"))
    })?;
    let dns = query(node.dns(), "acme.apps.example.test.", RecordType::A)?;
    assert_eq!(answers(&dns).len(), 1);

    std::fs::remove_file(&filler)?;
    let out = waiting.join().map_err(|_| anyhow::anyhow!("CLI thread panicked"))??;
    assert!(out.status.success(), "the write that met ENOSPC was answered as failed: {}", String::from_utf8_lossy(&out.stderr));
    let written: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    let revision = written["revision"].as_u64().unwrap_or(0);
    assert!(revision > 0, "{written}");
    assert!(node.is_running(), "the node exited:\n{}", node.log());
    common::eventually(Duration::from_secs(30), "the node takes writes again", || {
        node.cli(&["tenant", "create", "initech", "--cluster", "mt1"]).is_ok()
    })?;
    let zone = node.json(&["zone", "get", "big.example.test."])?;
    assert!(zone["revision"].as_u64().unwrap_or(0) >= revision, "{zone}");
    Ok(())
}

fn setup() -> anyhow::Result<(tempfile::TempDir, Node)> {
    common::standard()
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
        std::fs::write(&zone, common::ZONE)?;
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
    // The API connections the node counts open (its /metrics gauge).
    let open = || -> Option<u64> {
        let metrics = http_get(node.ports.http, "/metrics").ok()?;
        let line = metrics.lines().find(|l| l.starts_with("switchboard_grpc_connections_open{listener=\"api\"}"))?;
        line.rsplit(' ').next()?.parse().ok()
    };
    // The CLI's calls above may still hold a place until the node sees them
    // close: then one held below would be refused, and the extra admitted.
    common::eventually(std::time::Duration::from_secs(10), "the CLI's API connections closed", || open() == Some(0))?;
    let held: Vec<std::net::TcpStream> =
        (0..8).map(|_| std::net::TcpStream::connect(("127.0.0.1", node.ports.api))).collect::<Result<_, _>>()?;
    common::eventually(std::time::Duration::from_secs(10), "the 8 held connections admitted", || open() == Some(8))?;
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

/// 200 Watch streams that never read, on one HTTP/2 connection, over a
/// history of 30,000 changes: the node admits `api.watch_streams_max` of
/// them (RESOURCE_EXHAUSTED for the rest), each queues a bounded buffer, its
/// memory stays within 300 MB of where it started, and a stalled stream is
/// ended after `api.watch_send_timeout_ms` with a status saying where to
/// resume, which frees its place.
#[test]
fn watch_streams_that_never_read_are_bounded() -> anyhow::Result<()> {
    use switchboard_api::proto::{watch_client::WatchClient, WatchRequest};
    let dir = tempfile::tempdir()?;
    let mut node = Node::configured(dir.path(), "[api]\nwatch_streams_max = 128\nwatch_send_timeout_ms = 2000\n")?;
    node.spawn()?;
    node.wait_leader(std::time::Duration::from_secs(30))?;
    let zone = dir.path().join("zone.toml");
    std::fs::write(&zone, common::zone_file("apps.example.test.", "prod"))?;
    node.cli(&["zone", "put", zone.to_str().unwrap_or_default()])?;
    node.cli(&["cluster", "put", "mt1", "--ipv4", "198.51.100.1"])?;
    let import = dir.path().join("tenants.csv");
    std::fs::write(&import, (0..30_000).map(|i| format!("tenant-with-a-longer-id-{i:06},mt1\n")).collect::<String>())?;
    node.cli(&["tenant", "import", import.to_str().unwrap_or_default()])?;
    let before = node.rss_bytes()?;

    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let server = node.server();
    rt.block_on(async move {
        let channel = tonic::transport::Endpoint::from_shared(server)?.connect().await?;
        let (mut open, mut refused) = (Vec::new(), 0);
        for _ in 0..200 {
            let mut client = WatchClient::new(channel.clone()).max_decoding_message_size(64 * 1024 * 1024);
            // Bounded, so a stream the connection cannot open fails the test, not hangs it.
            let opened = tokio::time::timeout(std::time::Duration::from_secs(10), client.watch(WatchRequest::default())).await;
            match opened.map_err(|_| anyhow::anyhow!("opening watch stream {} took over 10 s", open.len() + refused))? {
                Ok(stream) => open.push(stream.into_inner()),
                Err(s) if s.code() == tonic::Code::ResourceExhausted && s.message().contains("api.watch_streams_max") => refused += 1,
                Err(s) => anyhow::bail!("watch: {s}"),
            }
        }
        assert_eq!((open.len(), refused), (128, 72));
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        let during = node.rss_bytes()?;
        eprintln!("RSS {} MB before, {} MB with 128 stalled watchers", before >> 20, during >> 20);
        assert!(during < before + 300 * 1024 * 1024, "RSS {before} -> {during} bytes with 128 stalled watchers");

        // Closed streams give their places back.
        drop(open);
        let connect = || tonic::transport::Endpoint::from_shared(node.server()).map(|e| e.connect_lazy());
        let mut client = WatchClient::new(connect()?);
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
        while let Err(s) = client.watch(WatchRequest { after_revision: 0, ..Default::default() }).await {
            anyhow::ensure!(tokio::time::Instant::now() < deadline, "places not given back: {s}");
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }

        // A stream whose reader takes nothing past the send timeout ends,
        // after what it queued, with a status saying where to resume. (On a
        // connection of its own: unread data of other streams would hold
        // the connection's HTTP/2 window.)
        let mut stalled = WatchClient::new(connect()?)
            .max_decoding_message_size(64 * 1024 * 1024)
            .watch(WatchRequest { after_revision: 0, ..Default::default() })
            .await?
            .into_inner();
        tokio::time::sleep(std::time::Duration::from_secs(4)).await;
        let ended = loop {
            match tokio::time::timeout(std::time::Duration::from_secs(10), stalled.message()).await? {
                Ok(Some(_)) => continue,
                Ok(None) => anyhow::bail!("the stalled stream ended without a status"),
                Err(s) => break s,
            }
        };
        assert!(ended.code() == tonic::Code::ResourceExhausted && ended.message().contains("watch again with after_revision"), "{ended}");
        Ok::<_, anyhow::Error>(())
    })?;
    Ok(())
}

/// Large zones cannot poison listing or the change history: a zone must fit
/// `ZONE_BYTES_MAX` (a larger one is refused, naming the limit), `zone list`
/// pages through zones whose sum is past one message, and a watch from
/// before them resumes, since zone events name the zone without its body.
#[test]
fn large_zones_list_in_pages_and_leave_the_history_resumable() -> anyhow::Result<()> {
    let (dir, node) = setup()?;
    let zone_file = |apex: &str, records: usize| {
        let txt = format!("\\\"{}\\\"", "x".repeat(250)).repeat(4);
        let mut text = format!("apex = \"{apex}\"\nenvironment = \"prod\"\nns = [\"ns1.example.test.\"]\n");
        for i in 0..records {
            text.push_str(&format!("[[records]]\nname = \"t{i}\"\ntype = \"TXT\"\ndata = \"{txt}\"\n"));
        }
        text
    };
    let too_large = dir.path().join("too-large.toml");
    std::fs::write(&too_large, zone_file("huge.example.test.", 5_000))?;
    let err = node.cli(&["zone", "put", too_large.to_str().unwrap_or_default()]).err().map(|e| e.to_string()).unwrap_or_default();
    // Refused before it is sent, naming the file, the field and the limit.
    assert!(err.contains("too-large.toml") && err.contains("zone.records") && err.contains("at most 4194304"), "{err}");

    // Four zones of about 3 MB: more than one page of zone list.
    for i in 0..4 {
        let file = dir.path().join(format!("big{i}.toml"));
        std::fs::write(&file, zone_file(&format!("big{i}.example.test."), 3_000))?;
        node.cli(&["zone", "put", file.to_str().unwrap_or_default()])?;
    }
    let zones = node.json(&["zone", "list"])?;
    let apexes: Vec<&str> = zones.as_array().map(|a| a.iter().filter_map(|z| z["apex"].as_str()).collect()).unwrap_or_default();
    for i in 0..4 {
        assert!(apexes.contains(&format!("big{i}.example.test.").as_str()), "{apexes:?}");
    }
    let deleted = node.json(&["zone", "delete", "big0.example.test."])?;
    let after_delete = deleted["revision"].as_u64().unwrap_or(0);

    let out = node.cli(&["watch", "--after", "0", "--kind", "zone", "--count", "6"])?;
    let events: Vec<serde_json::Value> = out.lines().map(serde_json::from_str).collect::<Result<_, _>>()?;
    let keys: Vec<&str> = events.iter().filter_map(|e| e["key"].as_str()).collect();
    assert_eq!(
        keys[keys.len() - 5..],
        ["big0.example.test.", "big1.example.test.", "big2.example.test.", "big3.example.test.", "big0.example.test."]
    );
    let last = &events[events.len() - 1];
    assert!(last["deleted"] == true && last["revision"].as_u64() == Some(after_delete), "{last}");
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
