//! DNS over TLS (RFC 7858) and zone transfers over it (RFC 9103), and the
//! TLS set-up DNS over QUIC shares (`quic`).
//!
//! TLS 1.3 only (RFC 9103 requires it of XoT), rustls with ring. The node's
//! certificate is held in `Certs` and read at every handshake, so the
//! binary can replace it when its files change: connections already open
//! keep the session they made. A client may present a certificate
//! (offered, never required): it is not checked against any authority,
//! its key's pin is what a zone's `[transfer] cert_keys` trusts, as Knot
//! DNS's `cert-key` does. Queries are answered as over TCP, by the same
//! connection loop (`tcp::connection`) on the TLS stream.
//!
//! Bounds, as TCP's plus the handshake's: connections in all and per
//! source, a handshake that must finish within its timeout, a rate of new
//! handshakes per source address (`HandshakeGate`: a TLS handshake costs
//! the server far more than the client), and the idle timeout.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ClientHello, ParsedCertificate, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};
use switchboard_domain::model::CertKey;
use tokio::net::TcpListener;

use crate::tap::Transport;
use crate::tcp::{self, Places, TcpCounters};
use crate::Handler;

/// The ALPN tokens: "dot" for DNS over TLS (RFC 7858; RFC 9103 requires
/// it of XoT), "doq" for DNS over QUIC (RFC 9250).
pub(crate) const ALPN_DOT: &[u8] = b"dot";
pub(crate) const ALPN_DOQ: &[u8] = b"doq";

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    #[error("no certificate in the certificate file (PEM \"CERTIFICATE\" blocks expected)")]
    NoCertificate,
    #[error("no private key in the key file (PEM \"PRIVATE KEY\", \"EC PRIVATE KEY\" or \"RSA PRIVATE KEY\" expected)")]
    NoKey,
    #[error("reading the {what} file: {reason}")]
    Pem { what: &'static str, reason: String },
    #[error("the key does not fit the certificate, or is not one TLS can use: {0}")]
    Key(rustls::Error),
    #[error("setting up TLS: {0}")]
    Setup(String),
}

/// Limits of the DoT and DoQ listeners, from the node config (each
/// listener has its own places).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TlsLimits {
    /// Connections open at once.
    pub connections_max: usize,
    /// Connections open at once from one source address.
    pub connections_per_source_max: usize,
    /// A connection that sends nothing for this long is closed.
    pub idle_timeout: Duration,
    /// A handshake not done within this long is given up.
    pub handshake_timeout: Duration,
    /// New handshakes one source address may start a second; past them its
    /// connections are closed at accept, and counted.
    pub handshakes_per_source_per_second: u32,
}

impl Default for TlsLimits {
    fn default() -> Self {
        TlsLimits {
            connections_max: 16_384,
            connections_per_source_max: 64,
            idle_timeout: Duration::from_secs(30),
            handshake_timeout: Duration::from_secs(5),
            handshakes_per_source_per_second: 100,
        }
    }
}

/// The certificate chain and key DoT and DoQ serve, replaceable while
/// serving.
#[derive(Debug)]
pub struct Certs {
    current: ArcSwap<CertifiedKey>,
    /// Times a new pair replaced the old, and times a new pair was refused
    /// (the old one kept).
    pub reloads: AtomicU64,
    pub reload_failures: AtomicU64,
}

impl Certs {
    /// The pair in `chain` (PEM certificates, the end entity's first) and
    /// `key` (a PEM private key).
    pub fn from_pem(chain: &[u8], key: &[u8]) -> Result<Certs, TlsError> {
        Ok(Certs { current: ArcSwap::from_pointee(certified(chain, key)?), reloads: AtomicU64::new(0), reload_failures: AtomicU64::new(0) })
    }

    /// Serve `chain` and `key` from the next handshake on; on error the
    /// pair served stays, and the failure is counted.
    pub fn replace(&self, chain: &[u8], key: &[u8]) -> Result<(), TlsError> {
        match certified(chain, key) {
            Ok(pair) => {
                self.current.store(Arc::new(pair));
                self.reloads.fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
            Err(e) => {
                self.reload_failures.fetch_add(1, Ordering::Relaxed);
                Err(e)
            }
        }
    }

    /// The pin of the certificate served now (what a client's
    /// `+tls-pin` names).
    pub fn pin(&self) -> Option<CertKey> {
        self.current.load().cert.first().and_then(pin_of)
    }
}

/// rustls's ring provider: TLS 1.3 with X25519 and P-256 key exchange.
/// rustls marks it deprecated for lacking post-quantum key exchange, which
/// only its aws-lc-rs provider has; that one needs cmake and a C build of
/// its own, where ring is already in the tree (TSIG, DNSSEC). Revisit when
/// ring has ML-KEM or resolvers ask for it.
///
/// Key exchange prefers X25519, then P-256: ring's P-384, which this
/// rustls lists first, is generic big-number code that made three
/// quarters of a DoQ handshake's CPU (P-384 is still taken from a client
/// that offers nothing else).
#[allow(deprecated)]
fn provider() -> Arc<CryptoProvider> {
    use rustls::crypto::ring::kx_group::{SECP256R1, SECP384R1, X25519};
    Arc::new(CryptoProvider { kx_groups: vec![X25519, SECP256R1, SECP384R1], ..rustls::crypto::ring::default_provider() })
}

/// A certificate chain and its key, checked to belong together.
fn certified(chain: &[u8], key: &[u8]) -> Result<CertifiedKey, TlsError> {
    let certs = CertificateDer::pem_slice_iter(chain)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Pem { what: "certificate", reason: e.to_string() })?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate);
    }
    let key = PrivateKeyDer::from_pem_slice(key).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => TlsError::NoKey,
        e => TlsError::Pem { what: "key", reason: e.to_string() },
    })?;
    CertifiedKey::from_der(certs, key, &provider()).map_err(TlsError::Key)
}

/// The pin of a certificate's key: SHA-256 of its SubjectPublicKeyInfo.
pub(crate) fn pin_of(cert: &CertificateDer<'_>) -> Option<CertKey> {
    let parsed = ParsedCertificate::try_from(cert).ok()?;
    let digest = ring::digest::digest(&ring::digest::SHA256, parsed.subject_public_key_info().as_ref());
    <[u8; 32]>::try_from(digest.as_ref()).ok().map(CertKey)
}

/// The pin of the certificate a client presented, if it presented one.
pub(crate) fn client_key(presented: Option<&[CertificateDer<'_>]>) -> Option<CertKey> {
    presented.and_then(|chain| chain.first()).and_then(pin_of)
}

/// Hands every handshake the pair served now.
#[derive(Debug)]
struct Current(Arc<Certs>);

impl ResolvesServerCert for Current {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.current.load_full())
    }
}

/// Asks every client for a certificate and takes any, or none: the
/// handshake proves the client holds the key of what it presented, and a
/// zone's `cert_keys` decides what that key may do.
#[derive(Debug)]
struct AnyClientKey {
    algorithms: WebPkiSupportedAlgorithms,
}

impl ClientCertVerifier for AnyClientKey {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        // Parsed, so that what cannot be pinned is refused here.
        ParsedCertificate::try_from(end_entity)?;
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// A TLS 1.3 server config serving `certs`, speaking `alpn`, resuming
/// sessions by ticket.
pub(crate) fn server_config(certs: &Arc<Certs>, alpn: &[u8]) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let provider = provider();
    let verifier = Arc::new(AnyClientKey { algorithms: provider.signature_verification_algorithms });
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| TlsError::Setup(e.to_string()))?
        .with_client_cert_verifier(verifier)
        .with_cert_resolver(Arc::new(Current(certs.clone())));
    config.alpn_protocols = vec![alpn.to_vec()];
    config.ticketer = rustls::crypto::ring::Ticketer::new().map_err(|e| TlsError::Setup(e.to_string()))?;
    Ok(Arc::new(config))
}

/// New handshakes per source address in the current second.
#[derive(Debug)]
pub(crate) struct HandshakeGate {
    per_second: u32,
    window: Mutex<(Instant, HashMap<IpAddr, u32>)>,
}

/// Sources tracked in one second; past them a new source waits for the
/// next second (a spoofed QUIC flood must not grow the table without end).
const GATE_SOURCES_MAX: usize = 65_536;

impl HandshakeGate {
    pub(crate) fn new(per_second: u32) -> HandshakeGate {
        HandshakeGate { per_second: per_second.max(1), window: Mutex::new((Instant::now(), HashMap::new())) }
    }

    /// Whether `ip` may start one more handshake now.
    pub(crate) fn admit(&self, ip: IpAddr) -> bool {
        let Ok(mut window) = self.window.lock() else { return false };
        let (started, counts) = &mut *window;
        if started.elapsed() >= Duration::from_secs(1) {
            *started = Instant::now();
            counts.clear();
        }
        if counts.len() >= GATE_SOURCES_MAX && !counts.contains_key(&ip) {
            return false;
        }
        let n = counts.entry(ip).or_default();
        *n += 1;
        *n <= self.per_second
    }
}

/// Who may start a handshake on one listener (DoT or DoQ): its source's
/// rate first, so that a flood is refused as one whatever places are
/// left, then a place among its connections.
pub(crate) struct Admission {
    gate: HandshakeGate,
    places: Places,
    counters: Arc<TcpCounters>,
}

impl Admission {
    pub(crate) fn new(limits: &TlsLimits, counters: Arc<TcpCounters>) -> Admission {
        Admission {
            gate: HandshakeGate::new(limits.handshakes_per_source_per_second),
            places: Places::new(limits.connections_max, limits.connections_per_source_max, counters.clone()),
            counters,
        }
    }

    /// A place for a new connection from `ip`, or `None` (counted) past
    /// the source's rate or a connection limit.
    pub(crate) fn admit(&self, ip: IpAddr) -> Option<tcp::Place> {
        if !self.gate.admit(ip) {
            self.counters.rate_limited.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        let place = self.places.admit(ip);
        if place.is_none() {
            self.counters.refused.fetch_add(1, Ordering::Relaxed);
        }
        place
    }
}

/// Wait at most `timeout` for a `handshake` with `peer` over `what` (DoT,
/// DoQ), counting how it ended: the session, or `None`.
pub(crate) async fn handshake<T, E: std::fmt::Display>(
    counters: &TcpCounters,
    timeout: Duration,
    peer: SocketAddr,
    what: &str,
    handshake: impl std::future::Future<Output = Result<T, E>>,
) -> Option<T> {
    match tokio::time::timeout(timeout, handshake).await {
        Ok(Ok(session)) => {
            counters.handshakes_ok.fetch_add(1, Ordering::Relaxed);
            Some(session)
        }
        Ok(Err(e)) => {
            counters.handshakes_failed.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(client = %peer, error = %e, "{what} handshake failed");
            None
        }
        Err(_) => {
            counters.handshakes_timed_out.fetch_add(1, Ordering::Relaxed);
            None
        }
    }
}

/// Accept and serve DNS over TLS until the task is dropped.
pub(crate) async fn serve(
    listener: TcpListener,
    handler: Handler,
    config: Arc<rustls::ServerConfig>,
    limits: TlsLimits,
    counters: Arc<TcpCounters>,
) {
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    let admission = Admission::new(&limits, counters.clone());
    loop {
        let (stream, peer) = tcp::accept(&listener, "dot", &counters.accept_backoffs).await;
        let Some(place) = admission.admit(peer.ip()) else { continue };
        let _ = stream.set_nodelay(true);
        let server = stream.local_addr().unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
        let (acceptor, handler, counters) = (acceptor.clone(), handler.clone(), counters.clone());
        tokio::spawn(async move {
            let accepted = handshake(&counters, limits.handshake_timeout, peer, "DoT", acceptor.accept(stream)).await;
            let Some(session) = accepted else { return };
            let key = client_key(session.get_ref().1.peer_certificates());
            let handler = handler.for_connection(Transport::Dot, key);
            tcp::connection(session, peer, server, handler, limits.idle_timeout, place).await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gate_admits_a_rate_per_source_and_forgets_each_second() {
        let gate = HandshakeGate::new(3);
        let (a, b) = (IpAddr::from([192, 0, 2, 1]), IpAddr::from([192, 0, 2, 2]));
        assert!((0..3).all(|_| gate.admit(a)));
        assert!(!gate.admit(a), "the fourth in a second is refused");
        assert!(gate.admit(b), "another source has its own count");
        if let Ok(mut w) = gate.window.lock() {
            w.0 -= Duration::from_secs(1);
        }
        assert!(gate.admit(a), "a new second starts a new count");
    }

    #[test]
    fn a_pair_that_does_not_belong_together_or_is_not_pem_is_refused_precisely() {
        assert!(matches!(Certs::from_pem(b"", b""), Err(TlsError::NoCertificate)));
        assert!(matches!(
            Certs::from_pem(b"-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n", b""),
            Err(TlsError::Pem { .. })
        ));
    }
}
