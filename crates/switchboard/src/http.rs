//! The HTTP endpoint for operators and route controllers, on axum and
//! hyper: `/healthz` (the process runs), `/readyz` (this node may announce
//! its anycast route: see `Health::ready`) and `/metrics` (Prometheus).
//!
//! It listens from the first moment of a start, before the state is
//! loaded, so a route controller sees "not ready: loading the state"
//! rather than a refused connection. Every resource is bounded: connections
//! at once (and from one address), a deadline for a request's head (a client trickling bytes is
//! cut off), a lifetime per connection, and bodies are not read.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use prometheus_client::registry::Registry;
use switchboard_consensus::Node;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

/// Connections served at once; more wait in the accept queue.
const CONNECTIONS_MAX: usize = 256;
/// Connections one address may hold open; past it a new one is closed at
/// once, so one client cannot take every place from the health checker.
const CONNECTIONS_PER_SOURCE_MAX: usize = 32;
/// Time a client has to send a request's head, from when the server starts
/// reading it (at accept, or after the previous response).
pub const REQUEST_HEAD_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest a connection stays open, keep-alive included.
const CONNECTION_LIFETIME: Duration = Duration::from_secs(60);

/// What the endpoint answers from; filled in as the node starts.
#[derive(Debug)]
pub struct Health {
    max_stale_ms: u64,
    node: OnceLock<Arc<Node>>,
    registry: OnceLock<Registry>,
    dns_listening: AtomicBool,
}

impl Health {
    pub fn new(max_stale_ms: u64) -> Arc<Health> {
        Arc::new(Health { max_stale_ms, node: OnceLock::new(), registry: OnceLock::new(), dns_listening: AtomicBool::new(false) })
    }

    /// The state is loaded and Raft started.
    pub fn node_started(&self, node: Arc<Node>) {
        let _ = self.node.set(node);
    }

    /// DNS is being served on its sockets.
    pub fn dns_listening(&self) {
        self.dns_listening.store(true, Ordering::Release);
    }

    pub fn metrics(&self, registry: Registry) {
        let _ = self.registry.set(registry);
    }

    /// Ready when DNS is listening, the state is loaded, no snapshot is
    /// being installed, the disk has room, and a leader was heard from
    /// within `max_stale_ms`; otherwise why not.
    pub fn ready(&self) -> Result<(), String> {
        let Some(node) = self.node.get() else { return Err("loading the state".into()) };
        if !self.dns_listening.load(Ordering::Acquire) {
            return Err("DNS is not listening yet".into());
        }
        node.ready(self.max_stale_ms)
    }
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(health): State<Arc<Health>>) -> Response {
    match health.ready() {
        Ok(()) => (StatusCode::OK, "ready\n").into_response(),
        Err(why) => (StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {why}\n")).into_response(),
    }
}

async fn metrics(State(health): State<Arc<Health>>) -> Response {
    let Some(registry) = health.registry.get() else {
        return (StatusCode::SERVICE_UNAVAILABLE, "not ready: loading the state\n").into_response();
    };
    let mut text = String::new();
    if let Err(e) = prometheus_client::encoding::text::encode(&mut text, registry) {
        return (StatusCode::INTERNAL_SERVER_ERROR, format!("encoding metrics: {e}\n")).into_response();
    }
    ([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], text).into_response()
}

fn router(health: Arc<Health>) -> Router {
    Router::new().route("/healthz", get(healthz)).route("/readyz", get(readyz)).route("/metrics", get(metrics)).with_state(health)
}

/// Serve `listener` until the task is dropped.
pub async fn serve(listener: TcpListener, health: Arc<Health>) {
    let app = router(health);
    let permits = Arc::new(Semaphore::new(CONNECTIONS_MAX));
    let sources: Arc<Mutex<HashMap<IpAddr, usize>>> = Arc::default();
    let backoffs = std::sync::atomic::AtomicU64::new(0);
    loop {
        let Ok(permit) = permits.clone().acquire_owned().await else { return };
        let (stream, peer) = switchboard_dns::accept(&listener, "http", &backoffs).await;
        let Some(source) = Source::admit(&sources, peer.ip()) else {
            tracing::debug!(%peer, "http connection refused: too many from this address");
            continue;
        };
        let service = hyper_util::service::TowerToHyperService::new(app.clone());
        tokio::spawn(async move {
            let _places = (permit, source);
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder.timer(TokioTimer::new()).header_read_timeout(REQUEST_HEAD_TIMEOUT).max_buf_size(16 * 1024);
            let connection = builder.serve_connection(TokioIo::new(stream), service);
            match tokio::time::timeout(CONNECTION_LIFETIME, connection).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::debug!(%peer, error = %e, "http connection"),
                Err(_) => tracing::debug!(%peer, "http connection: lifetime over, closed"),
            }
        });
    }
}

/// One connection's place among its address's.
struct Source {
    sources: Arc<Mutex<HashMap<IpAddr, usize>>>,
    ip: IpAddr,
}

impl Source {
    fn admit(sources: &Arc<Mutex<HashMap<IpAddr, usize>>>, ip: IpAddr) -> Option<Source> {
        let mut held = sources.lock().ok()?;
        let n = held.entry(ip).or_default();
        if *n >= CONNECTIONS_PER_SOURCE_MAX {
            return None;
        }
        *n += 1;
        Some(Source { sources: sources.clone(), ip })
    }
}

impl Drop for Source {
    fn drop(&mut self) {
        let Ok(mut held) = self.sources.lock() else { return };
        if let Some(n) = held.get_mut(&self.ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                held.remove(&self.ip);
            }
        }
    }
}

pub async fn bind(addr: SocketAddr) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr).await.map_err(|e| anyhow::anyhow!("binding HTTP on {addr}: {e}"))
}
