//! `switchboard serve`: open storage, start Raft, then serve DNS, the API,
//! peer traffic and HTTP until SIGINT or SIGTERM.
//!
//! DNS runs on its own Tokio runtime so that applying a burst of writes or a
//! slow API call cannot take worker threads from queries.

use std::collections::BTreeMap;
use std::sync::Arc;

use anyhow::Context;
use switchboard_api::Api;
use switchboard_consensus::{Node, NodeInfo, PeerService};
use switchboard_storage::Store;
use tokio::net::TcpListener;

use crate::config::{Config, Role};
use crate::http;

/// How long a stopping node waits for the dnstap writer to drain.
const DNSTAP_FINISH_WITHIN: std::time::Duration = std::time::Duration::from_secs(10);

/// Worker threads of the DNS runtime.
const DNS_THREADS: usize = 2;

pub fn run(config: Config) -> anyhow::Result<()> {
    let open_files = raise_open_files_limit();
    let dns_runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(DNS_THREADS)
        .thread_name("dns")
        .enable_all()
        .build()
        .context("starting the DNS runtime")?;
    let control =
        tokio::runtime::Builder::new_multi_thread().thread_name("control").enable_all().build().context("starting the control runtime")?;
    let result = control.block_on(serve(config, dns_runtime.handle().clone(), open_files));
    // Dropping the runtimes stops every task; Raft has been shut down by then.
    drop(control);
    dns_runtime.shutdown_background();
    result
}

/// Raise the soft limit on open files to the hard limit, and say what it is:
/// every DNS TCP connection, gRPC connection and RocksDB file takes one,
/// and the common soft default (1024) is far below what a node under load
/// holds, while the hard limit is the administrator's real bound.
fn raise_open_files_limit() -> Option<u64> {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => {
            tracing::info!(nofile = limit, "open files: soft limit raised to the hard limit");
            Some(limit)
        }
        Err(e) => {
            tracing::warn!(error = %e, "open files: could not raise the soft limit");
            None
        }
    }
}

/// Peer connections open at once: a cluster's members (3 voters and 100
/// edge learners, say), with room for reconnects.
const PEER_CONNECTIONS_MAX: usize = 256;
/// HTTP/2 pings on gRPC connections, and how long one may go unanswered
/// before the connection is closed, so dead clients' and peers' connections
/// give their places back. (tonic's TCP keepalive applies only to its own
/// listener, not to the bounded one these servers accept through.)
const KEEPALIVE_EVERY: std::time::Duration = std::time::Duration::from_secs(60);
const KEEPALIVE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(20);

/// Descriptors kept for what is not a listener's connection: RocksDB's
/// files, HTTP, the runtimes.
const OPEN_FILES_RESERVED: u64 = 128;
/// The fewest DNS TCP connections a node accepts, however low the limit.
const DNS_TCP_CONNECTIONS_MIN: usize = 16;

/// `connections_max` (the setting `key`) lowered to fit the open-files
/// limit beside `others` (the other listeners' connection caps), so that
/// DNS clients can never take the descriptors the rest of the node needs.
fn fit_connections(connections_max: usize, open_files: Option<u64>, others: usize, key: &str) -> usize {
    let Some(nofile) = open_files else { return connections_max };
    let kept = OPEN_FILES_RESERVED.saturating_add(others as u64);
    let room = usize::try_from(nofile.saturating_sub(kept)).unwrap_or(usize::MAX).max(DNS_TCP_CONNECTIONS_MIN);
    if connections_max > room {
        tracing::warn!(configured = connections_max, nofile, used = room, "{key} does not fit the open-files limit: lowered");
        return room;
    }
    connections_max
}

/// The DNS TCP limits, the total lowered to fit the open-files limit beside
/// `others` (the API's and the peers' connection caps).
fn fit_tcp_limits(mut limits: switchboard_dns::TcpLimits, open_files: Option<u64>, others: usize) -> switchboard_dns::TcpLimits {
    limits.connections_max = fit_connections(limits.connections_max, open_files, others, "dns.tcp_connections_max");
    limits
}

/// The DoT and DoQ limits, the total lowered as TCP's is, beside `others`
/// (TCP's cap among them).
fn fit_tls_limits(mut limits: switchboard_dns::TlsLimits, open_files: Option<u64>, others: usize) -> switchboard_dns::TlsLimits {
    limits.connections_max = fit_connections(limits.connections_max, open_files, others, "tls.connections_max");
    limits
}

async fn serve(config: Config, dns_runtime: tokio::runtime::Handle, open_files: Option<u64>) -> anyhow::Result<()> {
    let (auth, bootstrap_token) = config.api_auth()?;
    // Every port first: a busy one stops the node before its store exists.
    let dns_addr = config.listen.dns;
    let (dot_addr, doq_addr) = (config.listen.dot, config.listen.doq);
    let (dns_listeners, dot_bound, doq_bound) = dns_runtime
        .spawn(async move {
            let mut listeners = switchboard_dns::Listeners::bind(dns_addr).await?;
            let dot = match dot_addr {
                Some(addr) => Some(listeners.bind_dot(addr).await?),
                None => None,
            };
            let doq = doq_addr.map(|addr| listeners.bind_doq(addr)).transpose()?;
            Ok::<_, switchboard_dns::DnsError>((listeners, dot, doq))
        })
        .await??;
    let dns_bound = dns_listeners.local_addr();
    // The certificate before the store: a bad one stops the node at once.
    let certs = match config.tls.files() {
        Some((cert, key)) => Some(crate::certs::load(cert, key).with_context(|| config.origin())?),
        None => None,
    };
    let peer_listener = TcpListener::bind(config.listen.peer).await.with_context(|| format!("binding peer on {}", config.listen.peer))?;
    let api_listener = TcpListener::bind(config.listen.api).await.with_context(|| format!("binding API on {}", config.listen.api))?;
    let http_listener = http::bind(config.listen.http).await?;
    // HTTP from the start: /healthz answers and /readyz says why not ready
    // while the state loads.
    let health = http::Health::new(config.cluster.max_stale_ms);
    let http_task = tokio::spawn(http::serve(http_listener, health.clone()));

    std::fs::create_dir_all(&config.data_dir).with_context(|| format!("creating data_dir {}", config.data_dir.display()))?;
    let store = Store::open(&config.data_dir.join("db")).with_context(|| format!("opening the store in {}", config.data_dir.display()))?;
    let peer_auth = switchboard_consensus::PeerAuth::new(config.cluster_secret()?.as_deref());
    let settings = config.raft_settings(peer_auth);
    let me = NodeInfo { peer: config.listen.peer.to_string(), api: config.listen.api.to_string() };
    let node = match config.cluster.role {
        Role::Edge => Node::start_edge(config.node_id, &settings, store, me.clone(), config.cluster.upstreams.clone())
            .await
            .context("starting the edge")?,
        Role::Voter | Role::Learner => Node::start(config.node_id, &settings, store).await.context("starting raft")?,
    };
    let node = Arc::new(node);
    tracing::info!(node_id = config.node_id, revision = node.state().revision(), "state loaded");
    health.node_started(node.clone());

    // DNS first: it answers from the state on disk before consensus is up.
    let (tap, dnstap_writer) = match &config.dns.dnstap {
        Some(c) => {
            let (tap, rx) = switchboard_dns::Tap::new(c.queue, c.sample);
            let sink = match (&c.socket, &c.file) {
                (Some(socket), _) => crate::dnstap::Sink::Socket(socket.clone()),
                (None, Some(file)) => crate::dnstap::Sink::File(file.clone()),
                (None, None) => anyhow::bail!("dns.dnstap: set one of socket and file"),
            };
            let identity = c.identity.clone().unwrap_or_else(|| host_name(config.node_id));
            let settings = crate::dnstap::Settings { sink, identity, version: format!("switchboard {}", env!("CARGO_PKG_VERSION")) };
            (Some(Arc::new(tap)), Some(crate::dnstap::start(settings, rx)))
        }
        None => (None, None),
    };
    let updates: Arc<dyn switchboard_dns::Submit> = Arc::new(Updates(node.clone()));
    let options = switchboard_dns::Options {
        updates: Some(updates),
        history: Some(Arc::new(Changes(node.clone()))),
        udp_loops: config.dns.udp_workers,
        full_path_only: config.dns.full_path_only,
        signatures_cached: config.dns.signatures_cached,
        tsig_fudge_max_secs: config.dns.tsig_fudge_max_secs,
        update_limit: Some(switchboard_dns::UpdateLimit {
            per_minute: config.dns.updates_per_minute.unwrap_or(switchboard_dns::UPDATES_PER_MINUTE_DEFAULT),
            burst: config.dns.updates_burst.unwrap_or(switchboard_dns::UPDATES_BURST_DEFAULT),
        }),
        rrl: config.dns.rrl.settings(),
        cookies: config.cookie_secret()?,
        tap,
        dns_address: Some(dns_bound),
        notify_source: config.dns.notify_source,
        certs: certs.clone(),
    };
    let handler = switchboard_dns::Handler::with(node.published(), options);
    let dns_stats = handler.stats();
    // NOTIFY to secondaries comes from the leader alone (see dns::notify),
    // on this runtime: it is control plane, not the query path.
    let leads = {
        let node = node.clone();
        Arc::new(move || node.status().role == switchboard_consensus::Role::Leader)
    };
    let _notifier = AbortOnDrop(handler.notifier(leads));
    let api_limits = config.api.connection_limits();
    let tcp_limits = fit_tcp_limits(config.dns.tcp_limits(), open_files, api_limits.connections_max + PEER_CONNECTIONS_MAX);
    let tls_limits =
        fit_tls_limits(config.tls.limits(), open_files, api_limits.connections_max + PEER_CONNECTIONS_MAX + tcp_limits.connections_max);
    let dns_server = dns_runtime.spawn(async move { switchboard_dns::serve(dns_listeners, handler, tcp_limits, tls_limits) }).await??;
    let _certs_watch = match (&certs, config.tls.files()) {
        (Some(certs), Some((cert, key))) => {
            Some(AbortOnDrop(tokio::spawn(crate::certs::watch(certs.clone(), cert.to_path_buf(), key.to_path_buf()))))
        }
        _ => None,
    };
    health.dns_listening();
    let api_calls = crate::metrics::ApiCalls::default();
    let api_counters = Arc::<crate::listen::ListenerCounters>::default();
    let peer_counters = Arc::<crate::listen::ListenerCounters>::default();
    health.metrics(crate::metrics::registry(crate::metrics::Sources {
        node: node.clone(),
        dns: dns_stats,
        api_calls: api_calls.clone(),
        listeners: vec![("api", api_counters.clone()), ("peer", peer_counters.clone())],
        dnstap: dnstap_writer.as_ref().map(|w| w.counters()),
        health: Arc::downgrade(&health),
    }));
    tracing::info!(
        dns = %dns_bound,
        dot = ?dot_bound,
        doq = ?doq_bound,
        api = %config.listen.api,
        peer = %config.listen.peer,
        http = %config.listen.http,
        "listening"
    );

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };

    let peer = PeerService::new(config.cluster.name.clone(), node.clone()).into_server();
    let peer_task = tokio::spawn(
        tonic::transport::Server::builder()
            .http2_keepalive_interval(Some(KEEPALIVE_EVERY))
            .http2_keepalive_timeout(Some(KEEPALIVE_TIMEOUT))
            .add_service(peer)
            .serve_with_incoming_shutdown(
                crate::listen::bounded(peer_listener, PEER_CONNECTIONS_MAX, "peer", None, peer_counters.clone()),
                stopped(stop_rx.clone()),
            ),
    );

    if auth.enforced() && bootstrap_token.is_none() {
        tracing::warn!("API calls need a token and there is no bootstrap token: only stored credentials are accepted");
    } else if auth.enforced() {
        tracing::info!("API calls need a token");
    } else {
        tracing::warn!(api = %config.listen.api, "API calls need no token (api.auth)");
    }
    let api = Api::new(node.clone(), config.cluster.max_stale_ms, auth, config.api.watch_limits());
    let services = api.services();
    // Standard tooling on the same listener: grpc.health.v1 following this
    // node's readiness, and server reflection.
    let (health_service, follow_readiness) = switchboard_api::health(node.clone(), config.cluster.max_stale_ms);
    let health_task = tokio::spawn(follow_readiness);
    let (reflection_v1, reflection_v1alpha) = switchboard_api::reflection().context("building gRPC reflection")?;
    let idle = crate::listen::Idle::new(api_limits.idle_timeout);
    let api_task = tokio::spawn(
        tonic::transport::Server::builder()
            .max_concurrent_streams(Some(api_limits.streams_per_connection_max))
            .http2_keepalive_interval(Some(KEEPALIVE_EVERY))
            .http2_keepalive_timeout(Some(KEEPALIVE_TIMEOUT))
            .layer(idle.layer())
            .layer(crate::metrics::ApiCallsLayer(api_calls))
            .layer(switchboard_api::decode_failure_layer())
            .add_service(services.zones)
            .add_service(services.clusters)
            .add_service(services.tenants)
            .add_service(services.node)
            .add_service(services.membership)
            .add_service(services.acme)
            .add_service(services.watch)
            .add_service(services.credentials)
            .add_service(services.tsig_keys)
            .add_service(services.dnssec_keys)
            .add_service(services.writes)
            .add_service(health_service)
            .add_service(reflection_v1)
            .add_service(reflection_v1alpha)
            .serve_with_incoming_shutdown(
                crate::listen::bounded(api_listener, api_limits.connections_max, "api", Some(idle), api_counters.clone()),
                stopped(stop_rx.clone()),
            ),
    );

    // First start of a new cluster: the lowest-id voter initialises it.
    let me_for_join = me.clone();
    let voters: BTreeMap<u64, NodeInfo> = if config.cluster.voters.is_empty() {
        BTreeMap::from([(config.node_id, me)])
    } else {
        config.cluster.voters.iter().map(|v| (v.id, NodeInfo { peer: v.peer.clone(), api: v.api.clone() })).collect()
    };
    let join_task = match config.cluster.role {
        Role::Voter => {
            if voters.keys().next() == Some(&config.node_id) && node.initialize_if_new(voters).await.context("initialising the cluster")? {
                tracing::info!("initialised a new cluster");
            }
            None
        }
        Role::Learner => Some(tokio::spawn(join(node.clone(), config.node_id, me_for_join, config.cluster.join.clone(), bootstrap_token))),
        Role::Edge => None,
    };

    shutdown_signal().await?;
    tracing::info!("shutting down");
    let _ = stop_tx.send(true);
    if let Some(t) = join_task {
        t.abort();
    }
    node.shutdown().await;
    http_task.abort();
    health_task.abort();
    for task in [peer_task, api_task] {
        if let Ok(Err(e)) = task.await {
            tracing::warn!(error = %e, "server stopped with an error");
        }
    }
    drop(dns_server);
    // What the query log holds goes out, then STOP, so the file or the
    // reader ends with a complete stream.
    if let Some(writer) = dnstap_writer {
        if tokio::time::timeout(DNSTAP_FINISH_WITHIN, writer.finish()).await.is_err() {
            tracing::warn!("dnstap: the writer did not finish in time");
        }
    }
    Ok(())
}

/// A learner adds itself through any reachable voter, retrying until the
/// membership includes it, with the bootstrap admin token when it has one
/// (voters that need a token share it). A restarted learner is already a member.
async fn join(node: Arc<Node>, id: u64, me: NodeInfo, urls: Vec<String>, token: Option<String>) {
    use switchboard_api::proto::{membership_client::MembershipClient, AddLearnerRequest};
    let mut delay = std::time::Duration::from_millis(200);
    loop {
        if node.is_member() {
            tracing::info!("member of the cluster");
            return;
        }
        for url in &urls {
            let mut request = tonic::Request::new(AddLearnerRequest { id, peer: me.peer.clone(), api: me.api.clone() });
            if let Some(t) = &token {
                match format!("Bearer {t}").parse() {
                    Ok(v) => {
                        request.metadata_mut().insert("authorization", v);
                    }
                    Err(_) => tracing::warn!("the bootstrap token cannot be sent as metadata"),
                }
            }
            let result = async {
                let mut client = MembershipClient::connect(url.clone()).await.map_err(|e| e.to_string())?;
                client.add_learner(request).await.map_err(|s| s.message().to_string())
            }
            .await;
            match result {
                Ok(r) => {
                    tracing::info!(via = %url, revision = r.into_inner().revision, "joined as a learner");
                    return;
                }
                Err(e) => tracing::warn!(via = %url, error = %e, "join failed; retrying"),
            }
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(std::time::Duration::from_secs(5));
    }
}

/// This host's name, for dnstap's identity field.
fn host_name(node_id: u64) -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| format!("switchboard-node-{node_id}"))
}

async fn shutdown_signal() -> anyhow::Result<()> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).context("installing SIGTERM handler")?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r.context("waiting for SIGINT")?,
        _ = term.recv() => {}
    }
    Ok(())
}

/// Most time an RFC 2136 UPDATE may take to commit and apply here before
/// it is answered SERVFAIL (the client retries; the request id keeps a
/// retry that reaches the leader from applying twice within the window).
const UPDATE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// The DNS front end's way into consensus, for RFC 2136 UPDATE: a write
/// like any API write (forwarded to the leader, group-committed, retried
/// across a change of leader), answered once it is applied on this node.
#[derive(Debug)]
struct Updates(Arc<Node>);

#[async_trait::async_trait]
impl switchboard_dns::Submit for Updates {
    async fn submit(
        &self,
        command: switchboard_domain::Command,
        actor: switchboard_domain::Actor,
        request_id: String,
    ) -> switchboard_dns::Submitted {
        use switchboard_dns::Submitted;
        // The id made from the message's key and MAC: a replayed UPDATE is
        // answered with the first one's outcome and changes nothing.
        let guard = switchboard_domain::Guard { actor, request_id: Some(request_id), ..switchboard_domain::Guard::default() };
        let write = async {
            let written = match self.0.write(command, guard).await {
                Ok(w) => w,
                Err(e) => return Submitted::Unavailable(e.to_string()),
            };
            // Applied here too, so the client reads its change from this node.
            let mut applied = self.0.applied();
            let _ = applied.wait_for(|r| *r >= written.revision).await;
            match written.result {
                Ok(_) => Submitted::Applied,
                Err(e) => Submitted::Refused(e),
            }
        };
        tokio::time::timeout(UPDATE_TIMEOUT, write)
            .await
            .unwrap_or_else(|_| Submitted::Unavailable(format!("not committed within {} s", UPDATE_TIMEOUT.as_secs())))
    }
}

/// The node's change history, for incremental zone transfers.
#[derive(Debug)]
struct Changes(Arc<Node>);

/// Changes read from the store per call, while an IXFR gathers them.
const CHANGES_PAGE: usize = 1_000;

impl switchboard_dns::History for Changes {
    fn changes(&self, after: u64, upto: u64, limit: usize) -> Option<Vec<switchboard_domain::Change>> {
        // The history must still hold every revision after `after`.
        if self.0.changes_from().ok()? > after.saturating_add(1) {
            return None;
        }
        let mut out = Vec::new();
        let mut cursor = after;
        loop {
            let page = self.0.changes_after(cursor, CHANGES_PAGE).ok()?;
            if page.is_empty() {
                return Some(out);
            }
            for (revision, change) in page {
                if revision > upto {
                    return Some(out);
                }
                cursor = revision;
                out.push(change);
                if out.len() > limit {
                    return None;
                }
            }
        }
    }
}

/// Aborts its task when dropped: a background task ends with the server.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_tcp_connections_are_fitted_to_the_open_files_limit() {
        let limits = switchboard_dns::TcpLimits { connections_max: 512, ..switchboard_dns::TcpLimits::default() };
        assert_eq!(fit_tcp_limits(limits, Some(1 << 20), 512).connections_max, 512, "fits: kept");
        assert_eq!(fit_tcp_limits(limits, Some(1024), 512).connections_max, 1024 - 512 - OPEN_FILES_RESERVED as usize);
        assert_eq!(fit_tcp_limits(limits, Some(100), 512).connections_max, DNS_TCP_CONNECTIONS_MIN);
        assert_eq!(fit_tcp_limits(limits, None, 512).connections_max, 512, "limit unknown: kept");
    }
}
