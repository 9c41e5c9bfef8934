//! The HTTP endpoint for operators and route controllers: `/healthz` (the
//! process runs), `/readyz` (this node's state is fresh enough to announce
//! its anycast route) and `/metrics` (Prometheus text).
//!
//! A deliberately small HTTP/1.0 responder: one request per connection,
//! bounded request size, bounded connections, a read deadline.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use switchboard_consensus::Node;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

/// Largest request head read.
const REQUEST_BYTES_MAX: usize = 8 * 1024;
/// Connections served at once; more wait in the accept queue.
const CONNECTIONS_MAX: usize = 64;
/// Time a client has to send its request.
const READ_TIMEOUT: Duration = Duration::from_secs(5);

pub struct Health {
    pub node: Arc<Node>,
    pub max_stale_ms: u64,
}

impl Health {
    fn ready(&self) -> Result<(), String> {
        self.node.ready(self.max_stale_ms)
    }

    fn metrics(&self) -> String {
        let st = self.node.status();
        let state = self.node.state();
        let mut out = String::new();
        let mut gauge = |name: &str, help: &str, v: u64| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}");
        };
        gauge("switchboard_applied_revision", "Revision of the state this node serves.", state.revision());
        gauge("switchboard_raft_term", "Current Raft term.", st.term);
        gauge("switchboard_raft_last_log_index", "Index of the last entry in the local log.", st.log.last);
        gauge("switchboard_raft_is_leader", "1 when this node is the leader.", u64::from(st.role == switchboard_consensus::Role::Leader));
        gauge("switchboard_ready", "1 when /readyz reports ready.", u64::from(self.ready().is_ok()));
        if let Some(ms) = st.staleness_ms {
            gauge("switchboard_staleness_ms", "Milliseconds since this node last heard from a leader.", ms);
        }
        let disk = self.node.disk();
        if disk.free_bytes() != u64::MAX {
            gauge("switchboard_disk_free_bytes", "Free bytes on the data dir's file system at the last look.", disk.free_bytes());
        }
        gauge("switchboard_disk_full", "1 while writes are refused for want of disk space.", u64::from(disk.full()));
        gauge("switchboard_zones", "Zones served.", state.zones().count() as u64);
        gauge("switchboard_clusters", "Clusters known.", state.clusters().count() as u64);
        gauge("switchboard_tenants", "Tenants known.", state.tenant_count() as u64);
        out
    }

    fn respond(&self, path: &str) -> (u16, String) {
        match path {
            "/healthz" => (200, "ok\n".into()),
            "/readyz" => match self.ready() {
                Ok(()) => (200, "ready\n".into()),
                Err(why) => (503, format!("not ready: {why}\n")),
            },
            "/metrics" => (200, self.metrics()),
            _ => (404, "not found\n".into()),
        }
    }
}

pub async fn serve(listener: TcpListener, health: Arc<Health>) {
    let permits = Arc::new(Semaphore::new(CONNECTIONS_MAX));
    loop {
        let Ok(permit) = permits.clone().acquire_owned().await else { return };
        let (mut stream, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "http accept");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let health = health.clone();
        tokio::spawn(async move {
            let _permit = permit;
            if let Err(e) = handle(&mut stream, &health).await {
                tracing::debug!(%peer, error = %e, "http request");
            }
        });
    }
}

async fn handle(stream: &mut tokio::net::TcpStream, health: &Health) -> std::io::Result<()> {
    let mut buf = vec![0u8; REQUEST_BYTES_MAX];
    let mut len = 0;
    let head_end = loop {
        let n =
            tokio::time::timeout(READ_TIMEOUT, stream.read(&mut buf[len..])).await.map_err(|_| std::io::Error::other("read timeout"))??;
        if n == 0 {
            return Ok(());
        }
        len += n;
        if let Some(pos) = buf[..len].windows(4).position(|w| w == b"\r\n\r\n") {
            break pos;
        }
        if len == buf.len() {
            return write(stream, 431, "request header too large\n").await;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]);
    let mut parts = head.lines().next().unwrap_or("").split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    if method != "GET" && method != "HEAD" {
        return write(stream, 405, "only GET\n").await;
    }
    let path = target.split('?').next().unwrap_or("");
    let (status, body) = health.respond(path);
    write(stream, status, &body).await
}

async fn write(stream: &mut tokio::net::TcpStream, status: u16, body: &str) -> std::io::Result<()> {
    let reason = match status {
        200 => "OK",
        404 => "Not Found",
        405 => "Method Not Allowed",
        431 => "Request Header Fields Too Large",
        _ => "Service Unavailable",
    };
    let content_type = if body.starts_with("# HELP") { "text/plain; version=0.0.4" } else { "text/plain" };
    let msg = format!(
        "HTTP/1.0 {status} {reason}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(msg.as_bytes()).await?;
    stream.shutdown().await
}

pub async fn bind(addr: SocketAddr) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr).await.map_err(|e| anyhow::anyhow!("binding HTTP on {addr}: {e}"))
}
