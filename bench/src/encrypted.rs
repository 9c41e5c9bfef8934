//! Load for the encrypted transports, where Debian has no tool: DNS over
//! QUIC queries (dnsperf speaks UDP, TCP and DoT, not DoQ), DoT queries
//! from a rustls client (dnsperf's OpenSSL one costs more CPU per query
//! than the server it measures, on two shared cores), and many idle TLS
//! connections held open.
//!
//! Neither checks the server's certificate: they measure a server, they do
//! not protect a client.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use hickory_proto::op::{Message, MessageType, OpCode, Query};
use hickory_proto::rr::{Name, RecordType};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

/// Takes any certificate: a load generator, not a client to trust.
#[derive(Debug)]
struct AnyServer(rustls::crypto::WebPkiSupportedAlgorithms);

impl ServerCertVerifier for AnyServer {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_schemes()
    }
}

#[allow(deprecated)] // ring's provider, as the server's (crates/dns/src/tls.rs says why)
fn client_config(alpn: &[u8]) -> anyhow::Result<rustls::ClientConfig> {
    use rustls::crypto::ring::kx_group::{SECP256R1, X25519};
    // As a resolver's TLS stack offers (and the server prefers).
    let provider =
        Arc::new(rustls::crypto::CryptoProvider { kx_groups: vec![X25519, SECP256R1], ..rustls::crypto::ring::default_provider() });
    let verifier = Arc::new(AnyServer(provider.signature_verification_algorithms));
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    config.alpn_protocols = vec![alpn.to_vec()];
    Ok(config)
}

/// What a DoQ or DoT run did.
pub struct DoqReport {
    pub queries: u64,
    pub errors: u64,
    pub connections: u64,
    pub elapsed: Duration,
}

/// Queries for `names` (A) over DoQ to `server` for `duration`: `clients`
/// connections at a time, each asking `per_connection` queries (`in_flight`
/// streams at once) before it closes and a new one takes its place.
pub async fn doq_load(
    server: SocketAddr,
    names: Arc<Vec<Vec<u8>>>,
    clients: usize,
    per_connection: usize,
    in_flight: usize,
    duration: Duration,
) -> anyhow::Result<DoqReport> {
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(client_config(b"doq")?)?;
    let mut endpoint = quinn::Endpoint::client(SocketAddr::from(([127, 0, 0, 1], 0)))?;
    endpoint.set_default_client_config(quinn::ClientConfig::new(Arc::new(crypto)));
    let (queries, errors, connections) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let start = Instant::now();
    let deadline = start + duration;
    let mut tasks = Vec::new();
    for c in 0..clients {
        let (endpoint, names, queries, errors, connections) =
            (endpoint.clone(), names.clone(), queries.clone(), errors.clone(), connections.clone());
        tasks.push(tokio::spawn(async move {
            let mut next = c * 7919;
            while Instant::now() < deadline {
                let Ok(connecting) = endpoint.connect(server, "switchboard") else { return };
                let Ok(connection) = connecting.await else {
                    errors.fetch_add(1, Ordering::Relaxed);
                    continue;
                };
                connections.fetch_add(1, Ordering::Relaxed);
                let mut asked = 0;
                while asked < per_connection && Instant::now() < deadline {
                    let batch = in_flight.min(per_connection - asked);
                    let mut streams = Vec::with_capacity(batch);
                    for _ in 0..batch {
                        let query = names[next % names.len()].clone();
                        next += 1;
                        let connection = connection.clone();
                        streams.push(async move {
                            let (mut send, mut recv) = connection.open_bi().await?;
                            send.write_all(&query).await?;
                            send.finish()?;
                            let answer = recv.read_to_end(65_537).await?;
                            anyhow::ensure!(answer.len() > 14, "a short answer");
                            Ok::<_, anyhow::Error>(())
                        });
                    }
                    for outcome in futures::future::join_all(streams).await {
                        match outcome {
                            Ok(()) => queries.fetch_add(1, Ordering::Relaxed),
                            Err(_) => errors.fetch_add(1, Ordering::Relaxed),
                        };
                    }
                    asked += batch;
                }
                connection.close(0u32.into(), b"");
            }
        }));
    }
    for t in tasks {
        t.await?;
    }
    let elapsed = start.elapsed();
    endpoint.wait_idle().await;
    Ok(DoqReport {
        queries: queries.load(Ordering::Relaxed),
        errors: errors.load(Ordering::Relaxed),
        connections: connections.load(Ordering::Relaxed),
        elapsed,
    })
}

/// Queries for `names` over DoT to `server` for `duration`, as `doq_load`
/// does: `clients` connections at a time, each asking `per_connection`
/// queries, `in_flight` written back to back and then their answers read,
/// before it closes and a new one takes its place.
pub async fn dot_load(
    server: SocketAddr,
    names: Arc<Vec<Vec<u8>>>,
    clients: usize,
    per_connection: usize,
    in_flight: usize,
    duration: Duration,
) -> anyhow::Result<DoqReport> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let connector = tokio_rustls::TlsConnector::from(Arc::new(client_config(b"dot")?));
    let name = ServerName::try_from("switchboard")?;
    let (queries, errors, connections) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let start = Instant::now();
    let deadline = start + duration;
    let mut tasks = Vec::new();
    for c in 0..clients {
        let (connector, name, names) = (connector.clone(), name.clone(), names.clone());
        let (queries, errors, connections) = (queries.clone(), errors.clone(), connections.clone());
        tasks.push(tokio::spawn(async move {
            let mut next = c * 7919;
            let mut batch = Vec::new();
            let mut answer = vec![0u8; 65_535];
            while Instant::now() < deadline {
                let session = async {
                    let tcp = tokio::net::TcpStream::connect(server).await?;
                    tcp.set_nodelay(true)?;
                    connector.connect(name.clone(), tcp).await
                };
                let Ok(mut session) = session.await else {
                    errors.fetch_add(1, Ordering::Relaxed);
                    continue;
                };
                connections.fetch_add(1, Ordering::Relaxed);
                let mut asked = 0;
                let exchange: anyhow::Result<()> = async {
                    while asked < per_connection && Instant::now() < deadline {
                        let n = in_flight.min(per_connection - asked);
                        batch.clear();
                        for _ in 0..n {
                            batch.extend_from_slice(&names[next % names.len()]);
                            next += 1;
                        }
                        session.write_all(&batch).await?;
                        session.flush().await?;
                        for _ in 0..n {
                            let mut len = [0u8; 2];
                            session.read_exact(&mut len).await?;
                            let len = usize::from(u16::from_be_bytes(len));
                            session.read_exact(&mut answer[..len]).await?;
                            queries.fetch_add(1, Ordering::Relaxed);
                        }
                        asked += n;
                    }
                    session.shutdown().await?;
                    Ok(())
                }
                .await;
                if exchange.is_err() {
                    errors.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    for t in tasks {
        t.await?;
    }
    Ok(DoqReport {
        queries: queries.load(Ordering::Relaxed),
        errors: errors.load(Ordering::Relaxed),
        connections: connections.load(Ordering::Relaxed),
        elapsed: start.elapsed(),
    })
}

/// A query for `name` A, length-prefixed, with ID 0 (as DoQ requires; over
/// TLS any ID does).
pub fn framed_query(name: &str) -> anyhow::Result<Vec<u8>> {
    let mut m = Message::new(0, MessageType::Query, OpCode::Query);
    m.add_query(Query::query(Name::from_ascii(name)?, RecordType::A));
    let wire = m.to_vec()?;
    let mut framed = u16::try_from(wire.len())?.to_be_bytes().to_vec();
    framed.extend_from_slice(&wire);
    Ok(framed)
}

/// Open `count` DoT connections to `server`, complete each handshake, and
/// hold them all for `hold`; prints when they are all open.
pub async fn hold_tls(server: SocketAddr, count: usize, hold: Duration) -> anyhow::Result<()> {
    let connector = tokio_rustls::TlsConnector::from(Arc::new(client_config(b"dot")?));
    let name = ServerName::try_from("switchboard")?;
    let mut held = Vec::with_capacity(count);
    let start = Instant::now();
    for i in 0..count {
        let tcp = tokio::net::TcpStream::connect(server).await.with_context(|| format!("connection {i}"))?;
        let session = connector.connect(name.clone(), tcp).await.with_context(|| format!("handshake {i}"))?;
        held.push(session);
    }
    println!("holding {count} TLS connections (opened in {:.1} s)", start.elapsed().as_secs_f64());
    tokio::time::sleep(hold).await;
    drop(held);
    Ok(())
}
