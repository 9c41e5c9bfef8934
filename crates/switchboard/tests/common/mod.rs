//! Test harness: real `switchboard` processes on loopback with temp data
//! dirs, driven through the CLI, checked with real DNS packets.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query};
use hickory_proto::rr::{Name, RecordType};

pub const BIN: &str = env!("CARGO_BIN_EXE_switchboard");

/// Ports tests hand out: below the kernel's ephemeral range (32768 and up
/// here), where the client sockets of every test take their local ports.
const TEST_PORTS: std::ops::Range<u32> = 10_000..32_000;

/// A TCP and UDP port both free on 127.0.0.1 right now, and handed to no
/// other test: test processes run in parallel, so they take ports in turn
/// from a counter file, under a lock directory (`create_dir` is atomic).
/// Binding port 0 instead gave ephemeral ports, which a client connection
/// could take before the node bound them.
pub fn free_port() -> u16 {
    let root = std::env::temp_dir().join("switchboard-test-ports");
    let lock = root.join("lock");
    let counter = root.join("next");
    let take = || -> anyhow::Result<u16> {
        std::fs::create_dir_all(&root)?;
        let started = Instant::now();
        while let Err(e) = std::fs::create_dir(&lock) {
            if e.kind() != std::io::ErrorKind::AlreadyExists {
                return Err(e.into());
            }
            // A holder that died keeps it: take over a lock older than 10 s.
            let stale = std::fs::metadata(&lock)
                .and_then(|m| m.modified())
                .is_ok_and(|t| t.elapsed().unwrap_or_default() > Duration::from_secs(10));
            if stale || started.elapsed() > Duration::from_secs(30) {
                let _ = std::fs::remove_dir(&lock);
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        let found = (|| {
            let text = std::fs::read_to_string(&counter).unwrap_or_default();
            let mut next: u32 = text.trim().parse().unwrap_or(std::process::id());
            let span = TEST_PORTS.end - TEST_PORTS.start;
            for _ in 0..span {
                let port = (TEST_PORTS.start + next % span) as u16;
                next = next.wrapping_add(1);
                if TcpListener::bind(("127.0.0.1", port)).is_ok() && UdpSocket::bind(("127.0.0.1", port)).is_ok() {
                    std::fs::write(&counter, next.to_string())?;
                    return Ok(port);
                }
            }
            Err(anyhow!("no free port in {TEST_PORTS:?}"))
        })();
        std::fs::remove_dir(&lock)?;
        found
    };
    match take() {
        Ok(port) => port,
        Err(e) => panic!("allocating a test port: {e}"),
    }
}

pub struct Ports {
    pub dns: u16,
    pub api: u16,
    pub peer: u16,
    pub http: u16,
}

impl Ports {
    pub fn new() -> Ports {
        Ports { dns: free_port(), api: free_port(), peer: free_port(), http: free_port() }
    }
}

/// One node process and its files.
pub struct Node {
    pub dir: PathBuf,
    pub ports: Ports,
    pub config: PathBuf,
    /// Sent as `--token` by `cli` when set.
    pub token: Option<String>,
    child: Option<Child>,
}

impl Node {
    /// Write a single-voter config under `dir` and start the node.
    pub fn start_single(dir: &Path) -> anyhow::Result<Node> {
        let ports = Ports::new();
        let config = dir.join("node.toml");
        std::fs::write(
            &config,
            format!(
                "node_id = 1\ndata_dir = {data:?}\n[listen]\ndns = \"127.0.0.1:{}\"\napi = \"127.0.0.1:{}\"\npeer = \"127.0.0.1:{}\"\nhttp = \"127.0.0.1:{}\"\n",
                ports.dns,
                ports.api,
                ports.peer,
                ports.http,
                data = dir.join("data"),
            ),
        )?;
        let mut node = Node { dir: dir.to_path_buf(), ports, config, token: None, child: None };
        node.spawn()?;
        node.wait_leader(Duration::from_secs(30))?;
        Ok(node)
    }

    /// A node with its own ports and directory under `root`, not yet started.
    pub fn prepare(root: &Path, id: u64) -> anyhow::Result<Node> {
        let dir = root.join(format!("node{id}"));
        std::fs::create_dir_all(&dir)?;
        let config = dir.join("node.toml");
        Ok(Node { dir, ports: Ports::new(), config, token: None, child: None })
    }

    /// Node 1 of its own cluster under `root`, its config written with
    /// `rest` after the listen section, not started.
    pub fn configured(root: &Path, rest: &str) -> anyhow::Result<Node> {
        let node = Node::prepare(root, 1)?;
        node.write_config(1, rest)?;
        Ok(node)
    }

    /// `switchboard serve --config` with this node's config, not started.
    pub fn serve_command(&self) -> Command {
        let mut c = Command::new(BIN);
        c.args(["serve", "--config"]).arg(&self.config);
        c
    }

    /// The resident memory of the node's process, in bytes (from /proc).
    pub fn rss_bytes(&self) -> anyhow::Result<u64> {
        let pid = self.child.as_ref().map(Child::id).ok_or_else(|| anyhow!("node not running"))?;
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
        let kb = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .ok_or_else(|| anyhow!("no VmRSS in /proc/{pid}/status"))?;
        Ok(kb * 1024)
    }

    /// Write this node's config: the listen section from its ports, then `rest`.
    pub fn write_config(&self, id: u64, rest: &str) -> anyhow::Result<()> {
        self.write_config_at(id, SocketAddr::from(([127, 0, 0, 1], self.ports.dns)), rest)
    }

    /// `write_config`, with DNS served on `dns` instead of 127.0.0.1 (the
    /// other listeners stay there).
    pub fn write_config_at(&self, id: u64, dns: SocketAddr, rest: &str) -> anyhow::Result<()> {
        let p = &self.ports;
        std::fs::write(
            &self.config,
            format!(
                "node_id = {id}\ndata_dir = {data:?}\n[listen]\ndns = \"{dns}\"\napi = \"127.0.0.1:{}\"\npeer = \"127.0.0.1:{}\"\nhttp = \"127.0.0.1:{}\"\n{rest}",
                p.api,
                p.peer,
                p.http,
                data = self.dir.join("data"),
            ),
        )?;
        Ok(())
    }

    /// The node's status as JSON, if it answers.
    pub fn status(&self) -> anyhow::Result<serde_json::Value> {
        let out = self.cli(&["status", "--json"])?;
        Ok(serde_json::from_str(&out)?)
    }

    /// Poll the node's status until `ready` holds; fails early if the process exits.
    pub fn wait_status(
        &mut self,
        within: Duration,
        what: &str,
        ready: impl Fn(&serde_json::Value) -> bool,
    ) -> anyhow::Result<serde_json::Value> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(child) = &mut self.child {
                if let Some(status) = child.try_wait()? {
                    bail!("node exited with {status}; log:\n{}", self.log());
                }
            }
            if let Ok(v) = self.status() {
                if ready(&v) {
                    return Ok(v);
                }
            }
            if Instant::now() > deadline {
                bail!("node: {what} not within {within:?}; log:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Wait until the node answers status and knows a leader; returns its id.
    pub fn wait_leader_known(&mut self, within: Duration) -> anyhow::Result<u64> {
        let v = self.wait_status(within, "knows a leader", |v| v["leader_id"].as_u64().is_some_and(|l| l != 0))?;
        Ok(v["leader_id"].as_u64().unwrap_or(0))
    }

    /// Wait until the node reports itself leader through the API.
    pub fn wait_leader(&mut self, within: Duration) -> anyhow::Result<()> {
        self.wait_status(within, "becomes leader", |v| v["role"] == "leader").map(|_| ())
    }

    pub fn spawn(&mut self) -> anyhow::Result<()> {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(self.dir.join("node.log"))?;
        let child = Command::new(BIN)
            .args(["serve", "--config"])
            .arg(&self.config)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("spawning switchboard serve")?;
        self.child = Some(child);
        Ok(())
    }

    pub fn server(&self) -> String {
        format!("http://127.0.0.1:{}", self.ports.api)
    }

    pub fn dns(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.ports.dns))
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("node.log")).unwrap_or_default()
    }

    /// Run a CLI command against this node; Ok(stdout) on exit 0, Err(stderr) otherwise.
    pub fn cli(&self, args: &[&str]) -> anyhow::Result<String> {
        self.cli_as(self.token.as_deref(), args)
    }

    /// `cli` with another token (or none).
    pub fn cli_as(&self, token: Option<&str>, args: &[&str]) -> anyhow::Result<String> {
        let mut command = Command::new(BIN);
        command.arg("--server").arg(self.server()).env_remove("SWITCHBOARD_TOKEN");
        if let Some(t) = token {
            command.args(["--token", t]);
        }
        let out = command.args(args).output()?;
        if out.status.success() {
            Ok(String::from_utf8(out.stdout)?)
        } else {
            Err(anyhow!("{}", String::from_utf8_lossy(&out.stderr).trim()))
        }
    }

    /// `cli(args)` with `--json`, parsed.
    pub fn json(&self, args: &[&str]) -> anyhow::Result<serde_json::Value> {
        let mut a = args.to_vec();
        a.push("--json");
        Ok(serde_json::from_str(&self.cli(&a)?)?)
    }

    /// SIGKILL: no chance to flush or shut down.
    pub fn kill9(&mut self) -> anyhow::Result<()> {
        if let Some(mut child) = self.child.take() {
            child.kill()?;
            child.wait()?;
        }
        Ok(())
    }

    /// SIGTERM, as an operator stops a node, and wait up to `within` for it
    /// to exit (SIGKILL past that, and an error); its exit status.
    pub fn stop(&mut self, within: Duration) -> anyhow::Result<std::process::ExitStatus> {
        let Some(mut child) = self.child.take() else { bail!("node not running") };
        let sent = Command::new("kill").args(["-TERM", &child.id().to_string()]).status()?;
        let deadline = Instant::now() + within;
        while sent.success() && Instant::now() < deadline {
            if let Some(status) = child.try_wait()? {
                return Ok(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        child.kill()?;
        child.wait()?;
        bail!("node did not exit within {within:?} of SIGTERM; log:\n{}", self.log())
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.as_mut().map(|c| c.try_wait()), Some(Ok(None)))
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.kill9();
    }
}

/// The `[[cluster.voters]]` tables of `nodes`, their ids counted from 1.
pub fn voters_table(nodes: &[Node]) -> String {
    nodes
        .iter()
        .enumerate()
        .map(|(i, n)| {
            format!("[[cluster.voters]]\nid = {}\npeer = \"127.0.0.1:{}\"\napi = \"127.0.0.1:{}\"\n", i + 1, n.ports.peer, n.ports.api)
        })
        .collect()
}

/// Write every node's config for one cluster named "test": `raft` first,
/// then the first `voters` nodes as its initial voters and the rest as
/// learners that join through them.
pub fn write_cluster_configs(nodes: &[Node], voters: usize, raft: &str) -> anyhow::Result<()> {
    let table = voters_table(&nodes[..voters]);
    let join: Vec<String> = nodes[..voters].iter().map(|n| format!("\"{}\"", n.server())).collect();
    for (i, n) in nodes.iter().enumerate() {
        let cluster = if i < voters {
            format!("[cluster]\nname = \"test\"\nrole = \"voter\"\n{table}")
        } else {
            format!("[cluster]\nname = \"test\"\nrole = \"learner\"\njoin = [{}]\n", join.join(", "))
        };
        n.write_config(i as u64 + 1, &format!("{raft}{cluster}"))?;
    }
    Ok(())
}

/// A zone file at `apex` with the rules most tests use: `{service}-{tenant}`
/// CNAMEs for `ws`, tenant hosts (TTL 60) and ACME challenges.
pub fn zone_file(apex: &str, environment: &str) -> String {
    format!(
        r#"
apex = "{apex}"
environment = "{environment}"
ns = ["ns1.example.test."]

[[rules]]
kind = "service-tenant"
services = ["ws"]
target = "{{service}}-{{cluster}}.example.test."

[[rules]]
kind = "tenant-host"
ttl = 60

[[rules]]
kind = "acme"
"#
    )
}

/// A single node in a temp dir with `zone` (TOML) put and each cluster of
/// `clusters` (the arguments after `cluster put`) created.
pub fn single_with(zone: &str, clusters: &[&[&str]]) -> anyhow::Result<(tempfile::TempDir, Node)> {
    let dir = tempfile::tempdir()?;
    let node = Node::start_single(dir.path())?;
    let file = dir.path().join("zone.toml");
    std::fs::write(&file, zone)?;
    node.cli(&["zone", "put", file.to_str().unwrap_or_default()])?;
    for args in clusters {
        node.cli(&[&["cluster", "put"][..], args].concat())?;
    }
    Ok((dir, node))
}

/// Poll `check` every 50 ms until it returns true or `within` passes.
pub fn eventually(within: Duration, what: &str, mut check: impl FnMut() -> bool) -> anyhow::Result<()> {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if check() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    bail!("{what}: not within {within:?}")
}

/// Send one query over UDP and return the parsed response.
pub fn query(server: SocketAddr, name: &str, rtype: RecordType) -> anyhow::Result<Message> {
    query_with(server, name, rtype, None)
}

pub fn query_with(server: SocketAddr, name: &str, rtype: RecordType, edns_payload: Option<u16>) -> anyhow::Result<Message> {
    let mut msg = Message::new(rand_id(), MessageType::Query, OpCode::Query);
    msg.add_query(Query::query(Name::from_ascii(name)?, rtype));
    if let Some(size) = edns_payload {
        let mut e = Edns::new();
        e.set_max_payload(size);
        msg.set_edns(e);
    }
    let bytes = msg.to_vec()?;
    let sock = UdpSocket::bind("127.0.0.1:0")?;
    sock.set_read_timeout(Some(Duration::from_secs(2)))?;
    let mut buf = [0u8; 65535];
    // UDP may drop on a busy machine: retry a few times.
    for _ in 0..5 {
        sock.send_to(&bytes, server)?;
        if let Ok((n, _)) = sock.recv_from(&mut buf) {
            let resp = Message::from_vec(&buf[..n]).map_err(|e| anyhow!("{e}"))?;
            if resp.metadata.id == msg.metadata.id {
                return Ok(resp);
            }
        }
    }
    bail!("no DNS answer from {server} for {name} {rtype}")
}

/// `GET path` from the node's HTTP listener on `port`: the whole reply,
/// status line and headers included.
pub fn http_get(port: u16, path: &str) -> anyhow::Result<String> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(s, "GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    Ok(out)
}

/// Send one query over TCP (length-prefixed) and return the parsed response.
pub fn query_tcp(server: SocketAddr, name: &str, rtype: RecordType) -> anyhow::Result<Message> {
    use std::io::{Read, Write};
    let mut msg = Message::new(rand_id(), MessageType::Query, OpCode::Query);
    msg.add_query(Query::query(Name::from_ascii(name)?, rtype));
    let bytes = msg.to_vec()?;
    let mut s = std::net::TcpStream::connect_timeout(&server, Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(2)))?;
    s.write_all(&(bytes.len() as u16).to_be_bytes())?;
    s.write_all(&bytes)?;
    let mut len = [0u8; 2];
    s.read_exact(&mut len)?;
    let mut buf = vec![0u8; usize::from(u16::from_be_bytes(len))];
    s.read_exact(&mut buf)?;
    Message::from_vec(&buf).map_err(|e| anyhow!("{e}"))
}

/// Send raw bytes over UDP; the response bytes, or None if the server stayed silent.
pub fn raw_udp(server: SocketAddr, bytes: &[u8]) -> anyhow::Result<Option<Vec<u8>>> {
    let sock = UdpSocket::bind("127.0.0.1:0")?;
    sock.set_read_timeout(Some(Duration::from_millis(500)))?;
    sock.send_to(bytes, server)?;
    let mut buf = [0u8; 65535];
    match sock.recv_from(&mut buf) {
        Ok((n, _)) => Ok(Some(buf[..n].to_vec())),
        Err(_) => Ok(None),
    }
}

fn rand_id() -> u16 {
    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(7);
    (t ^ (t >> 16)) as u16
}

/// The answer section as "name type data" strings, sorted.
pub fn answers(m: &Message) -> Vec<String> {
    let mut v: Vec<String> = m.answers.iter().map(|r| format!("{} {} {}", r.name, r.record_type(), r.data)).collect();
    v.sort();
    v
}

/// A TCP proxy on loopback that holds every chunk for `delay` before passing
/// it on, each way: a long-distance link (the kernel here has no netem).
/// Its threads live as long as the test process.
pub struct DelayProxy {
    pub port: u16,
}

impl DelayProxy {
    pub fn start(target: SocketAddr, delay: Duration) -> anyhow::Result<DelayProxy> {
        let port = free_port();
        let listener = std::net::TcpListener::bind(("127.0.0.1", port))?;
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(client) = conn else { continue };
                let Ok(server) = std::net::TcpStream::connect(target) else { continue };
                let (Ok(client2), Ok(server2)) = (client.try_clone(), server.try_clone()) else { continue };
                delayed_pipe(client, server, delay);
                delayed_pipe(server2, client2, delay);
            }
        });
        Ok(DelayProxy { port })
    }
}

fn delayed_pipe(mut from: std::net::TcpStream, mut to: std::net::TcpStream, delay: Duration) {
    use std::io::{Read, Write};
    let (tx, rx) = std::sync::mpsc::channel::<(Instant, Vec<u8>)>();
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 64 * 1024];
        while let Ok(n) = from.read(&mut buf) {
            if n == 0 || tx.send((Instant::now() + delay, buf[..n].to_vec())).is_err() {
                break;
            }
        }
    });
    std::thread::spawn(move || {
        for (due, bytes) in rx {
            std::thread::sleep(due.saturating_duration_since(Instant::now()));
            if to.write_all(&bytes).is_err() {
                break;
            }
        }
        let _ = to.shutdown(std::net::Shutdown::Both);
    });
}

/// The zone most single-node tests serve: `{service}-{tenant}` CNAMEs for
/// `ws` and `api`, tenant hosts and a static `www`.
pub const ZONE: &str = r#"
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

/// A single node serving `ZONE`, with clusters mt1 (IPv4 and IPv6) and mt2.
pub fn standard() -> anyhow::Result<(tempfile::TempDir, Node)> {
    single_with(ZONE, &[&["mt1", "--ipv4", "198.51.100.1", "--ipv6", "2001:db8::1"], &["mt2", "--ipv4", "198.51.100.2"]])
}

/// A helper process (a reference server, a CA) killed and reaped on drop.
pub struct Killed(pub Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// How a BIND secondary reaches its primary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BindTransfer {
    /// AXFR/IXFR over TCP.
    Tcp,
    /// Over TLS (XoT, RFC 9103), the primary's certificate not checked
    /// (a `tls` statement without a CA).
    Tls,
}

/// `named` in the foreground on 127.0.0.1:`port`, its log in `dir`, a
/// secondary of `apex` whose primary is `primary`, transferring with the
/// TSIG key `key` (`ALG:NAME:SECRET`) over `transfer`; every option that
/// says who may NOTIFY left at its default.
pub fn start_bind_secondary(
    dir: &Path,
    port: u16,
    apex: &str,
    primary: SocketAddr,
    key: &str,
    transfer: BindTransfer,
) -> anyhow::Result<Killed> {
    let named = which("named").ok_or_else(|| anyhow!("named not found: install Debian's `bind9` package (./x setup does)"))?;
    let [alg, name, secret]: [&str; 3] = key.split(':').collect::<Vec<_>>().try_into().map_err(|_| anyhow!("key {key}"))?;
    let (tls_statement, tls_clause) = match transfer {
        BindTransfer::Tcp => ("", ""),
        BindTransfer::Tls => ("tls xot { protocols { TLSv1.3; }; };\n", " tls xot"),
    };
    let d = dir.display();
    let conf = dir.join("named.conf");
    std::fs::write(
        &conf,
        format!(
            "options {{\n  directory \"{d}\";\n  pid-file \"{d}/named.pid\";\n  session-keyfile \"{d}/session.key\";\n\
             \x20 listen-on port {port} {{ 127.0.0.1; }};\n  listen-on-v6 {{ none; }};\n\
             \x20 recursion no;\n  notify no;\n  dnssec-validation no;\n}};\n\
             controls {{ }};\n\
             {tls_statement}\
             key \"{name}\" {{ algorithm {alg}; secret \"{secret}\"; }};\n\
             zone \"{apex}\" {{\n  type secondary;\n  primaries {{ {ip} port {pport} key \"{name}\"{tls_clause}; }};\n  file \"{d}/zone.db\";\n}};\n",
            ip = primary.ip(),
            pport = primary.port(),
        ),
    )?;
    let log = std::fs::File::create(dir.join("named.log"))?;
    let child = Command::new(named)
        .args(["-g", "-u", "root", "-c"])
        .arg(&conf)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .context("starting named")?;
    Ok(Killed(child))
}

/// `cmd` on the PATH, or in /usr/sbin and /sbin (where Debian puts knotd and nsd).
pub fn which(cmd: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path).chain(["/usr/sbin".into(), "/sbin".into()]).map(|d| d.join(cmd)).find(|p| p.is_file())
}
