//! The dnstap query log, read by the reference tools: `fstrm_capture`
//! (Debian's fstrm-bin) as the Frame Streams reader on a Unix socket, and
//! `dnstap-ldns` decoding what it captured, or the file a node wrote.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{bail, Context};
use common::{query, query_tcp, Node, ZONE};
use hickory_proto::op::{Message, MessageType, OpCode, Query};
use hickory_proto::rr::{Name, RecordType};
use switchboard::dnstap::{Settings, Sink};
use switchboard_dns::{TapKind, TapMessage, Transport};

/// The Frame Streams content type of dnstap.
const CONTENT_TYPE: &str = "protobuf:dnstap.Dnstap";
/// A Frame Streams STOP control frame: escape, length 4, type 3.
const STOP_FRAME: [u8; 12] = [0, 0, 0, 0, 0, 0, 0, 4, 0, 0, 0, 3];

/// `fstrm_capture` reading dnstap on a Unix socket into a file.
struct Capture {
    child: Child,
    out: PathBuf,
    log: PathBuf,
}

impl Capture {
    /// Start it on `sock`, writing `out`; returns once the socket is there.
    fn start(dir: &Path, sock: &Path, out: &Path) -> anyhow::Result<Capture> {
        let log = dir.join("fstrm_capture.log");
        let child = Command::new("fstrm_capture")
            .args(["-t", CONTENT_TYPE, "-u"])
            .arg(sock)
            .arg("-w")
            .arg(out)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log)?)
            .spawn()
            .context("spawning fstrm_capture (Debian package fstrm-bin)")?;
        let mut capture = Capture { child, out: out.to_path_buf(), log };
        let deadline = Instant::now() + Duration::from_secs(10);
        while !sock.exists() {
            if let Some(status) = capture.child.try_wait()? {
                bail!("fstrm_capture exited with {status}: {}", capture.log());
            }
            if Instant::now() > deadline {
                bail!("fstrm_capture made no socket at {}: {}", sock.display(), capture.log());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(capture)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn signal(&self, signal: &str) -> anyhow::Result<()> {
        let status = Command::new("kill").args([signal, &self.child.id().to_string()]).status()?;
        anyhow::ensure!(status.success(), "kill {signal} fstrm_capture: {status}");
        Ok(())
    }

    /// Poll (SIGHUP flushes its output file) until `names` are all in it as
    /// queries and responses; the decoded text.
    fn wait_for(&self, names: &[String], within: Duration) -> anyhow::Result<String> {
        let deadline = Instant::now() + within;
        loop {
            self.signal("-HUP")?;
            std::thread::sleep(Duration::from_millis(50));
            if let Ok(text) = dnstap_ldns(&self.out) {
                if missing(&text, names).is_empty() {
                    return Ok(text);
                }
                if Instant::now() > deadline {
                    bail!("not captured within {within:?}: {:?}\n{text}\nfstrm_capture: {}", missing(&text, names), self.log());
                }
            } else if Instant::now() > deadline {
                bail!("nothing decodable captured within {within:?}; fstrm_capture: {}", self.log());
            }
        }
    }

    /// SIGTERM: it writes STOP to its file and exits.
    fn stop(mut self) -> anyhow::Result<String> {
        self.signal("-TERM")?;
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = self.child.try_wait()? {
                anyhow::ensure!(status.success(), "fstrm_capture exited with {status}: {}", self.log());
                return Ok(self.log());
            }
            if Instant::now() > deadline {
                bail!("fstrm_capture did not exit on SIGTERM: {}", self.log());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `dnstap-ldns -q -r FILE`: one line per message, `AQ`/`AR` and the
/// question among its fields.
fn dnstap_ldns(file: &Path) -> anyhow::Result<String> {
    dnstap_ldns_with("-q", file)
}

fn dnstap_ldns_with(format: &str, file: &Path) -> anyhow::Result<String> {
    let out =
        Command::new("dnstap-ldns").arg(format).arg("-r").arg(file).output().context("running dnstap-ldns (Debian package dnstap-ldns)")?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    anyhow::ensure!(out.status.success(), "dnstap-ldns -r {}: {}\n{text}", file.display(), String::from_utf8_lossy(&out.stderr));
    Ok(text)
}

/// The names of `names` not in `text` both as an AUTH_QUERY and as an
/// AUTH_RESPONSE line.
fn missing(text: &str, names: &[String]) -> Vec<String> {
    let has = |kind: &str, name: &str| {
        let quoted = format!("\"{name}\"");
        text.lines().any(|l| l.split_whitespace().any(|w| w == kind) && l.contains(&quoted))
    };
    names.iter().filter(|n| !(has("AQ", n) && has("AR", n))).cloned().collect()
}

/// Distinct names in the served zone (none exists: NXDOMAIN answers them).
fn names(tag: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{tag}{i}.apps.example.test.")).collect()
}

/// Query each name, every third over TCP.
fn ask(node: &Node, names: &[String]) -> anyhow::Result<()> {
    for (i, name) in names.iter().enumerate() {
        if i % 3 == 2 {
            query_tcp(node.dns(), name, RecordType::A)?;
        } else {
            query(node.dns(), name, RecordType::A)?;
        }
    }
    Ok(())
}

/// A node under `dir` serving `ZONE`, with `[dns.dnstap]` set to `sink`.
fn tapped_node(dir: &Path, sink: &str) -> anyhow::Result<Node> {
    let mut node = Node::configured(dir, &format!("[dns.dnstap]\n{sink}\nsample = 1\nqueue = 4096\nidentity = \"tap-test\"\n"))?;
    node.spawn()?;
    node.wait_leader(Duration::from_secs(30))?;
    let zone = dir.join("zone.toml");
    std::fs::write(&zone, ZONE)?;
    node.cli(&["zone", "put", &zone.to_string_lossy()])?;
    Ok(node)
}

/// Every query a node answers while `fstrm_capture` listens reaches it,
/// promptly, as an AUTH_QUERY and an AUTH_RESPONSE, UDP and TCP alike.
#[test]
fn a_node_taps_every_query_to_fstrm_capture_over_its_socket() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let sock = dir.path().join("tap.sock");
    let out = dir.path().join("captured.fstrm");
    let capture = Capture::start(dir.path(), &sock, &out)?;
    let mut node = tapped_node(dir.path(), &format!("socket = {:?}", sock.to_string_lossy()))?;

    eprintln!("--- queries while the node runs reach the reader without a restart or stop");
    let asked = names("live", 12);
    ask(&node, &asked)?;
    let text = capture.wait_for(&asked, Duration::from_secs(10))?;
    assert!(text.lines().any(|l| l.contains(" TCP ")), "TCP queries are tapped as TCP:\n{text}");
    assert!(text.lines().any(|l| l.contains(" UDP ")), "UDP queries are tapped as UDP:\n{text}");

    eprintln!("--- the node stops: STOP, FINISH; the reader's file decodes whole");
    node.stop(Duration::from_secs(20))?;
    let log = capture.stop()?;
    let text = dnstap_ldns(&out)?;
    assert_eq!(missing(&text, &asked), Vec::<String>::new(), "{text}\nfstrm_capture: {log}");
    let yaml = dnstap_ldns_with("-y", &out)?;
    assert!(yaml.contains("identity: \"tap-test\""), "identity from the config:\n{yaml}");
    Ok(())
}

/// A node writing to a file leaves a complete Frame Streams file on
/// SIGTERM: every query in it, STOP at the end.
#[test]
fn a_node_taps_to_a_file_that_sigterm_leaves_complete() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("tap.fstrm");
    let mut node = tapped_node(dir.path(), &format!("file = {:?}", file.to_string_lossy()))?;
    let asked = names("file", 9);
    ask(&node, &asked)?;
    node.stop(Duration::from_secs(20))?;

    let text = dnstap_ldns(&file)?;
    assert_eq!(missing(&text, &asked), Vec::<String>::new(), "{text}");
    assert!(text.lines().any(|l| l.contains(" TCP ")) && text.lines().any(|l| l.contains(" UDP ")), "{text}");
    let bytes = std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
    assert!(bytes.ends_with(&STOP_FRAME), "the file ends with STOP ({} bytes): was the writer finished at shutdown?", bytes.len());
    Ok(())
}

/// The writer alone, with no node: it shakes hands with `fstrm_capture`
/// (READY, ACCEPT, START), and what it sends decodes with `dnstap-ldns`
/// into the DNS messages given, their addresses and the identity.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_writer_speaks_frame_streams_to_fstrm_capture() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let sock = dir.path().join("tap.sock");
    let out = dir.path().join("captured.fstrm");
    let capture = Capture::start(dir.path(), &sock, &out)?;
    let settings = Settings { sink: Sink::Socket(sock), identity: "ns-writer".into(), version: "test 1".into() };
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    let writer = switchboard::dnstap::start(settings, rx);
    let counters = writer.counters();

    let asked = names("writer", 4);
    let server = std::net::SocketAddr::from(([127, 0, 0, 1], 53));
    for (i, name) in asked.iter().enumerate() {
        let mut q = Message::new(4000 + i as u16, MessageType::Query, OpCode::Query);
        q.add_query(Query::query(Name::from_ascii(name)?, RecordType::AAAA));
        let mut r = q.clone();
        r.metadata.message_type = MessageType::Response;
        let client =
            if i % 2 == 0 { std::net::SocketAddr::from(([192, 0, 2, 10], 40000 + i as u16)) } else { "[2001:db8::10]:40001".parse()? };
        let server = if client.is_ipv4() { server } else { "[2001:db8::53]:53".parse()? };
        let transport = if i < 2 { Transport::Udp } else { Transport::Tcp };
        let now = SystemTime::now();
        let base = TapMessage { kind: TapKind::Query, transport, client, server, query_time: now, response_time: None, wire: q.to_vec()? };
        tx.send(base.clone()).await?;
        tx.send(TapMessage { kind: TapKind::Response, response_time: Some(now), wire: r.to_vec()?, ..base }).await?;
    }
    let waiting = asked.clone();
    let (text, capture) = tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
        let text = capture.wait_for(&waiting, Duration::from_secs(10))?;
        Ok((text, capture))
    })
    .await??;
    assert!(text.contains("192.0.2.10") && text.contains("2001:db8::10"), "client addresses:\n{text}");

    tokio::time::timeout(Duration::from_secs(10), writer.finish()).await?;
    drop(tx);
    let log = tokio::task::spawn_blocking(move || capture.stop()).await??;
    let yaml = dnstap_ldns_with("-y", &out)?;
    assert!(yaml.contains("identity: \"ns-writer\"") && yaml.contains("version: \"test 1\""), "{yaml}");
    assert_eq!(yaml.matches("type: AUTH_QUERY").count(), 4, "{yaml}");
    assert_eq!(yaml.matches("type: AUTH_RESPONSE").count(), 4, "{yaml}");
    assert!(log.contains("wrote 10 frames"), "START, 8 data frames, STOP: {log}");
    assert_eq!(counters.written.load(Ordering::Relaxed), 8);
    assert_eq!(counters.lost.load(Ordering::Relaxed), 0);
    assert_eq!(counters.connects.load(Ordering::Relaxed), 1);
    Ok(())
}
