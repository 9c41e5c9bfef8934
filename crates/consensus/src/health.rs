//! Health checks of ingress addresses: the probers and the leader's quorum.
//!
//! Every voter is a prober. It checks each checked address once per
//! interval of its cluster's check (one probe per address and check, however
//! many clusters list it), keeps its own verdict per address with the
//! check's consecutive-failure and -success thresholds, and reports its
//! verdicts to the leader over the peer network: within `REPORT_GAP` of a
//! change, and every `REPORT_EVERY` so that a new leader learns them. The leader
//! (`Quorum`, a leader job) commits `SetHealth` for a cluster only when a
//! quorum of the voters' fresh reports disagrees with what is committed
//! (`ingress::quorum_changes`). Answers read only the committed verdicts,
//! so every node answers alike, and one prober cut off from the addresses
//! (or from the leader) changes nothing.

use std::collections::{HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use switchboard_domain::health::{Check, Probe, Verdict};
use switchboard_domain::ingress::quorum_changes;
use switchboard_domain::{Command, Guard, State};
use tokio::net::TcpStream;

use crate::jobs::{Due, LeaderJob};
use crate::network::PeerPool;
use crate::stats::Stats;
use crate::{AbortOnDrop, NodeId, Published, Raft};
use futures::stream::{FuturesUnordered, StreamExt};

/// How often a prober reports all its verdicts (besides after changes).
pub(crate) const REPORT_EVERY: Duration = Duration::from_secs(1);
/// How soon after a verdict changes it is reported, at most: changes that
/// come together (thousands of addresses behind one failed link) go in
/// one report, not one report each.
const REPORT_GAP: Duration = Duration::from_millis(100);
/// A report not renewed within this counts for neither side: its prober
/// is gone or cut off from the leader.
pub(crate) const REPORT_STALE: Duration = Duration::from_secs(5);
/// How often the leader weighs the reports.
const QUORUM_EVERY: Duration = Duration::from_millis(200);
/// How often a prober starts the probes that are due: a probe starts up to
/// this late.
const PROBE_SLOT: Duration = Duration::from_millis(50);
/// How often a prober looks for checks added, changed or removed.
const RESYNC_EVERY: Duration = Duration::from_millis(500);

/// What a prober tells the leader: its verdicts, as the addresses it
/// finds down and those it has no verdict on yet; every other checked
/// address it finds healthy.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Report {
    pub region: String,
    /// (cluster, address), sorted.
    pub down: Vec<(String, IpAddr)>,
    pub unknown: Vec<(String, IpAddr)>,
}

impl Report {
    fn vote(&self, cluster: &str, a: IpAddr) -> Option<Verdict> {
        let has = |list: &[(String, IpAddr)]| list.binary_search_by(|(c, b)| (c.as_str(), *b).cmp(&(cluster, a))).is_ok();
        if has(&self.down) {
            Some(Verdict::Down)
        } else if has(&self.unknown) {
            None
        } else {
            Some(Verdict::Up)
        }
    }
}

/// The reports a node received, weighed while it leads.
#[derive(Debug, Default)]
pub(crate) struct Reports {
    held: Mutex<Held>,
}

#[derive(Debug, Default)]
struct Held {
    by_prober: HashMap<NodeId, (Instant, Report)>,
    /// Bumped when a report says something new.
    generation: u64,
}

impl Reports {
    pub(crate) fn take(&self, from: NodeId, report: Report) {
        let Ok(mut held) = self.held.lock() else { return };
        let same = held.by_prober.get(&from).is_some_and(|(_, r)| *r == report);
        if !same {
            held.generation += 1;
        }
        held.by_prober.insert(from, (Instant::now(), report));
    }
}

/// The leader job that commits what a quorum of probers says.
pub(crate) struct Quorum {
    pub reports: Arc<Reports>,
    pub raft: Raft,
    /// What the last weighing saw (report generation, state revision,
    /// fresh probers): nothing to weigh again until it changes.
    seen: Option<(u64, u64, Vec<NodeId>)>,
    /// Whether the probers' lack of regions was logged.
    warned: bool,
}

impl Quorum {
    pub(crate) fn new(reports: Arc<Reports>, raft: Raft) -> Quorum {
        Quorum { reports, raft, seen: None, warned: false }
    }
}

impl LeaderJob for Quorum {
    fn name(&self) -> &'static str {
        "health verdicts"
    }

    fn every(&self) -> Duration {
        QUORUM_EVERY
    }

    fn due(&mut self, state: &State, _now_ms: u64) -> Vec<Due> {
        if !state.clusters().any(|c| c.check.is_some()) {
            return Vec::new();
        }
        let voters: Vec<NodeId> = self.raft.metrics().borrow().membership_config.membership().voter_ids().collect();
        let Ok(held) = self.reports.held.lock() else { return Vec::new() };
        let fresh: Vec<Option<&Report>> =
            voters.iter().map(|id| held.by_prober.get(id).filter(|(at, _)| at.elapsed() < REPORT_STALE).map(|(_, r)| r)).collect();
        let heard: Vec<NodeId> = voters.iter().zip(&fresh).filter(|(_, r)| r.is_some()).map(|(id, _)| *id).collect();
        let seen = (held.generation, state.revision(), heard);
        if self.seen.as_ref() == Some(&seen) {
            return Vec::new();
        }
        self.seen = Some(seen);
        let regions: std::collections::BTreeSet<&str> = fresh.iter().flatten().map(|r| r.region.as_str()).collect();
        if !self.warned && voters.len() > 1 && fresh.iter().all(Option::is_some) && regions.len() < 2 {
            tracing::warn!(
                ?regions,
                "every prober is in one region (set `region` in the voters' configs): a fault of that region's network looks like every address failing"
            );
            self.warned = true;
        }
        let quorum = voters.len() / 2 + 1;
        let changes = quorum_changes(state.clusters().map(|c| &**c), voters.len(), quorum, |i, c, a| fresh[i].and_then(|r| r.vote(c, a)));
        changes
            .into_iter()
            .filter_map(|(id, down)| {
                let c = state.cluster(&id)?;
                let went: Vec<String> = down.iter().filter(|a| !c.is_down(**a)).map(ToString::to_string).collect();
                let back: Vec<String> = c.down.iter().filter(|a| !down.contains(a)).map(ToString::to_string).collect();
                tracing::info!(cluster = %id, down = ?went, healthy = ?back, quorum, probers = voters.len(), "address health changes");
                Some(Due {
                    command: Command::SetHealth { cluster: id.clone(), down },
                    guard: Guard { expected_revision: Some(c.revision), ..Guard::default() },
                    about: id,
                })
            })
            .collect()
    }
}

/// One probe target: an address and how it is probed. Clusters that list
/// the same address with the same check share its probes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Target {
    address: IpAddr,
    probe: Probe,
    interval_ms: u32,
    timeout_ms: u32,
}

impl Target {
    fn of(address: IpAddr, check: &Check) -> Target {
        Target { address, probe: check.probe.clone(), interval_ms: check.interval_ms, timeout_ms: check.timeout_ms }
    }
}

/// A target's next probe and its latest streak.
struct Probing {
    /// When its next probe starts.
    next: tokio::time::Instant,
    /// A probe of it is under way (a slow one is not started twice).
    running: bool,
    ok: u32,
    failed: u32,
    /// (cluster, failures, successes) of the clusters that use it.
    users: Vec<(String, u32, u32)>,
}

/// What a prober needs of its node to send a report where it counts.
pub(crate) struct Deliver {
    pub id: NodeId,
    pub cluster: String,
    pub region: String,
    pub raft: Raft,
    pub peers: PeerPool,
    pub reports: Arc<Reports>,
    pub stats: Arc<Stats>,
}

impl Deliver {
    fn is_voter(&self) -> bool {
        self.raft.metrics().borrow().membership_config.membership().voter_ids().any(|v| v == self.id)
    }

    /// Hand the report to the leader (this node's own registry when it leads).
    async fn send(&self, report: &Report) {
        let leader = {
            let m = self.raft.metrics();
            let m = m.borrow();
            m.current_leader.map(|id| (id, m.membership_config.membership().get_node(&id).cloned()))
        };
        match leader {
            Some((id, _)) if id == self.id => self.reports.take(self.id, report.clone()),
            Some((id, Some(info))) => match self.peers.health(self.id, id, &info, &self.cluster, report).await {
                Ok(()) => {}
                Err(e) => {
                    self.stats.health_reports_failed.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(leader = id, error = %e, "health report not delivered");
                    return;
                }
            },
            _ => return,
        }
        self.stats.health_reports.fetch_add(1, Ordering::Relaxed);
    }
}

/// Probe every checked address for as long as the node runs, reporting
/// to the leader while this node is a voter.
///
/// One task does it all: every `PROBE_SLOT` it starts the probes that are
/// due and polls those under way, so ten thousand addresses cost twenty
/// wake-ups a second rather than one per probe (a task and a timer per
/// address spent most of the prober's CPU switching threads).
pub(crate) async fn prober(deliver: Deliver, published: Published) {
    let mut running = FuturesUnordered::new();
    let mut slot = tokio::time::interval(PROBE_SLOT);
    slot.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut targets: HashMap<Target, Probing> = HashMap::new();
    let mut verdicts: HashMap<(String, IpAddr), Verdict> = HashMap::new();
    let mut resync = tokio::time::interval(RESYNC_EVERY);
    let mut report = tokio::time::interval(REPORT_EVERY);
    let mut flush = tokio::time::interval(REPORT_GAP);
    let mut seen_revision = None;
    let mut voter = false;
    // A verdict changed since the last report.
    let mut dirty = false;
    let mut sending: Option<tokio::task::JoinHandle<()>> = None;
    let deliver = Arc::new(deliver);
    loop {
        let send = tokio::select! {
            _ = resync.tick() => {
                let now_voter = deliver.is_voter();
                let state = published.load();
                if now_voter != voter || seen_revision != Some(state.revision()) {
                    voter = now_voter;
                    seen_revision = Some(state.revision());
                    sync(&deliver, &state, voter, &mut targets, &mut verdicts);
                }
                false
            }
            // Idle (no checks, or no voter) it wakes only to resync and report.
            now = slot.tick(), if !targets.is_empty() => {
                for (target, p) in targets.iter_mut().filter(|(_, p)| p.next <= now && !p.running) {
                    let interval = Duration::from_millis(u64::from(target.interval_ms));
                    // Past a stall, start again from now rather than in a burst.
                    p.next = (p.next + interval).max(now);
                    p.running = true;
                    running.push(probe(target.clone()));
                }
                false
            }
            Some((target, ok)) = running.next(), if !running.is_empty() => {
                dirty |= observe(&deliver, &mut targets, &mut verdicts, target, ok);
                false
            }
            _ = flush.tick(), if dirty => true,
            _ = report.tick() => true,
        };
        // One report in flight at a time, sent beside the loop so that the
        // probes under way are polled meanwhile; one due while another is in
        // flight goes at the next slot.
        if send && voter && sending.as_ref().is_none_or(tokio::task::JoinHandle::is_finished) {
            dirty = false;
            let (deliver, report) = (deliver.clone(), report_of(&deliver.region, &targets, &verdicts));
            sending = Some(tokio::spawn(async move { deliver.send(&report).await }));
        } else if send && voter {
            dirty = true;
        }
    }
}

/// Start probing what the state checks now, stop probing what it no
/// longer does (everything, when this node is no voter), and forget the
/// verdicts of addresses no longer checked.
fn sync(
    deliver: &Deliver,
    state: &State,
    voter: bool,
    targets: &mut HashMap<Target, Probing>,
    verdicts: &mut HashMap<(String, IpAddr), Verdict>,
) {
    let mut wanted: HashMap<Target, Vec<(String, u32, u32)>> = HashMap::new();
    if voter {
        for c in state.clusters() {
            let Some(check) = &c.check else { continue };
            for a in c.addresses() {
                wanted.entry(Target::of(a, check)).or_default().push((c.id.clone(), check.failures, check.successes));
            }
        }
    }
    targets.retain(|t, _| wanted.contains_key(t));
    let checked: HashSet<(String, IpAddr)> =
        wanted.iter().flat_map(|(t, users)| users.iter().map(|(c, _, _)| (c.clone(), t.address))).collect();
    verdicts.retain(|k, _| checked.contains(k));
    for (target, users) in wanted {
        match targets.get_mut(&target) {
            Some(p) => p.users = users,
            None => {
                // A phase of its own within the interval, from the prober and
                // the target: probers and addresses spread out, not in bursts.
                let mut h = std::collections::hash_map::DefaultHasher::new();
                (deliver.id, &target).hash(&mut h);
                let phase = Duration::from_millis(h.finish() % u64::from(target.interval_ms));
                let next = tokio::time::Instant::now() + phase;
                targets.insert(target, Probing { next, running: false, ok: 0, failed: 0, users });
            }
        }
    }
}

/// Count one probe's result; whether a verdict changed.
fn observe(
    deliver: &Deliver,
    targets: &mut HashMap<Target, Probing>,
    verdicts: &mut HashMap<(String, IpAddr), Verdict>,
    target: Target,
    ok: bool,
) -> bool {
    let counter = if ok { &deliver.stats.health_probes_ok } else { &deliver.stats.health_probes_failed };
    counter.fetch_add(1, Ordering::Relaxed);
    let Some(p) = targets.get_mut(&target) else { return false };
    p.running = false;
    if ok {
        (p.ok, p.failed) = (p.ok.saturating_add(1), 0);
    } else {
        (p.ok, p.failed) = (0, p.failed.saturating_add(1));
    }
    let mut changed = false;
    for (cluster, failures, successes) in &p.users {
        let key = (cluster.clone(), target.address);
        let old = verdicts.get(&key).copied();
        let new = match old {
            Some(Verdict::Up) | None if p.failed >= *failures => Some(Verdict::Down),
            Some(Verdict::Down) | None if p.ok >= *successes => Some(Verdict::Up),
            v => v,
        };
        if new != old {
            if let Some(v) = new {
                tracing::debug!(cluster, address = %target.address, probe = %target.probe, verdict = ?v, "prober's verdict changes");
                verdicts.insert(key, v);
                changed = true;
            }
        }
    }
    changed
}

fn report_of(region: &str, targets: &HashMap<Target, Probing>, verdicts: &HashMap<(String, IpAddr), Verdict>) -> Report {
    let mut r = Report { region: region.to_string(), ..Report::default() };
    for (t, p) in targets {
        for (cluster, _, _) in &p.users {
            let key = (cluster.clone(), t.address);
            match verdicts.get(&key) {
                Some(Verdict::Down) => r.down.push(key),
                None => r.unknown.push(key),
                Some(Verdict::Up) => {}
            }
        }
    }
    r.down.sort();
    r.down.dedup();
    r.unknown.sort();
    r.unknown.dedup();
    r
}

/// Probe `target` once, within its timeout: the target and whether it passed.
async fn probe(target: Target) -> (Target, bool) {
    let timeout = Duration::from_millis(u64::from(target.timeout_ms));
    let ok = matches!(tokio::time::timeout(timeout, probe_once(&target)).await, Ok(Ok(())));
    (target, ok)
}

/// One probe: `Ok` when the address passes.
async fn probe_once(target: &Target) -> Result<(), String> {
    let at = SocketAddr::new(target.address, target.probe.port());
    let stream = TcpStream::connect(at).await.map_err(|e| e.to_string())?;
    match &target.probe {
        Probe::Tcp { .. } => Ok(()),
        Probe::Http { tls: false, path, host, status, .. } => http_get(stream, target.address, path, host.as_deref(), *status).await,
        Probe::Http { tls: true, path, host, status, .. } => {
            let name = match host {
                Some(h) => rustls::pki_types::ServerName::try_from(h.clone()).map_err(|e| e.to_string())?,
                None => rustls::pki_types::ServerName::IpAddress(target.address.into()),
            };
            let stream = tls_connector()?.connect(name, stream).await.map_err(|e| e.to_string())?;
            http_get(stream, target.address, path, host.as_deref(), *status).await
        }
    }
}

/// GET `path` over `io`; `Ok` when the status is `expect`, or any 2xx or
/// 3xx when none is expected.
async fn http_get<IO>(io: IO, address: IpAddr, path: &str, host: Option<&str>, expect: Option<u16>) -> Result<(), String>
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake::<_, String>(hyper_util::rt::TokioIo::new(io)).await.map_err(|e| e.to_string())?;
    let conn = AbortOnDrop(tokio::spawn(async move {
        let _ = conn.await;
    }));
    let host = host.map_or_else(|| if address.is_ipv6() { format!("[{address}]") } else { address.to_string() }, str::to_string);
    let request = http::Request::get(path)
        .header(http::header::HOST, host)
        .header(http::header::USER_AGENT, "switchboard-health-check")
        .header(http::header::CONNECTION, "close")
        .body(String::new())
        .map_err(|e| e.to_string())?;
    let response = sender.send_request(request).await.map_err(|e| e.to_string())?;
    drop(conn);
    let status = response.status();
    let passed = match expect {
        Some(code) => status.as_u16() == code,
        None => status.is_success() || status.is_redirection(),
    };
    if passed {
        Ok(())
    } else {
        Err(format!("HTTP status {status}"))
    }
}

/// TLS for HTTPS checks: the address is probed, not a name, so its
/// certificate is not verified (as Route 53's and load balancers' HTTPS
/// checks do); the handshake must still complete. ring's provider (the
/// one the DNS listeners use) has no post-quantum key exchange, which a
/// probe does not need.
#[allow(deprecated)]
fn tls_connector() -> Result<tokio_rustls::TlsConnector, String> {
    static CONNECTOR: std::sync::OnceLock<Result<tokio_rustls::TlsConnector, String>> = std::sync::OnceLock::new();
    CONNECTOR
        .get_or_init(|| {
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            rustls::ClientConfig::builder_with_provider(provider.clone())
                .with_safe_default_protocol_versions()
                .map(|b| b.dangerous().with_custom_certificate_verifier(Arc::new(AnyCertificate(provider))).with_no_client_auth())
                .map(|c| tokio_rustls::TlsConnector::from(Arc::new(c)))
                .map_err(|e| format!("TLS client: {e}"))
        })
        .clone()
}

/// Accepts any certificate, still checking the handshake's signatures.
#[derive(Debug)]
struct AnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_report_votes_down_unknown_or_up() {
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let r = Report { region: "eu".into(), down: vec![("c".into(), a)], unknown: vec![("c".into(), b)] };
        assert_eq!(r.vote("c", a), Some(Verdict::Down));
        assert_eq!(r.vote("c", b), None);
        assert_eq!(r.vote("d", a), Some(Verdict::Up));
    }
}
