//! A full disk is an outage of writes, not of the node: a real node on a
//! small tmpfs whose space is taken by a filler file, as an unlucky
//! operator's would be. Needs root (to mount the tmpfs), as the chaos suite
//! does; CI runs as root.

mod common;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use common::{answers, query, Node};
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
