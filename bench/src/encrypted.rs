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

/// How a load over DoQ or DoT runs: queries for `names` to `server` for
/// `duration`, `clients` connections at a time, each asking
/// `per_connection` queries (`in_flight` at once) before it closes and a
/// new one takes its place.
#[derive(Debug, Clone)]
pub struct Shape {
    pub server: SocketAddr,
    pub names: Arc<Vec<Vec<u8>>>,
    pub clients: usize,
    pub per_connection: usize,
    pub in_flight: usize,
    pub duration: Duration,
}

/// What the clients of one load count, together.
#[derive(Debug, Default)]
struct Counters {
    queries: AtomicU64,
    errors: AtomicU64,
    connections: AtomicU64,
}

impl Counters {
    fn count(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// Run `client(c, deadline, counters)` for each of `clients` clients at
/// once, and report what they counted once all are done.
async fn run_clients<F, Fut>(clients: usize, duration: Duration, client: F) -> anyhow::Result<DoqReport>
where
    F: Fn(usize, Instant, Arc<Counters>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let counters = Arc::new(Counters::default());
    let start = Instant::now();
    let deadline = start + duration;
    let tasks: Vec<_> = (0..clients).map(|c| tokio::spawn(client(c, deadline, counters.clone()))).collect();
    for t in tasks {
        t.await?;
    }
    Ok(DoqReport {
        queries: counters.queries.load(Ordering::Relaxed),
        errors: counters.errors.load(Ordering::Relaxed),
        connections: counters.connections.load(Ordering::Relaxed),
        elapsed: start.elapsed(),
    })
}

/// A load over DoQ: one query per bidirectional stream, `in_flight`
/// streams at once.
pub async fn doq_load(shape: &Shape) -> anyhow::Result<DoqReport> {
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(client_config(b"doq")?)?;
    let mut endpoint = quinn::Endpoint::client(SocketAddr::from(([127, 0, 0, 1], 0)))?;
    endpoint.set_default_client_config(quinn::ClientConfig::new(Arc::new(crypto)));
    let report = run_clients(shape.clients, shape.duration, |c, deadline, counted| {
        let (endpoint, names, shape) = (endpoint.clone(), shape.names.clone(), shape.clone());
        async move {
            let mut next = c * 7919;
            while Instant::now() < deadline {
                let Ok(connecting) = endpoint.connect(shape.server, "switchboard") else { return };
                let Ok(connection) = connecting.await else {
                    Counters::count(&counted.errors);
                    continue;
                };
                Counters::count(&counted.connections);
                let mut asked = 0;
                while asked < shape.per_connection && Instant::now() < deadline {
                    let batch = shape.in_flight.min(shape.per_connection - asked);
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
                        Counters::count(if outcome.is_ok() { &counted.queries } else { &counted.errors });
                    }
                    asked += batch;
                }
                connection.close(0u32.into(), b"");
            }
        }
    })
    .await?;
    endpoint.wait_idle().await;
    Ok(report)
}

/// A load over DoT: `in_flight` queries written back to back, then their
/// answers read.
pub async fn dot_load(shape: &Shape) -> anyhow::Result<DoqReport> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let connector = tokio_rustls::TlsConnector::from(Arc::new(client_config(b"dot")?));
    let name = ServerName::try_from("switchboard")?;
    run_clients(shape.clients, shape.duration, |c, deadline, counted| {
        let (connector, name, names, shape) = (connector.clone(), name.clone(), shape.names.clone(), shape.clone());
        async move {
            let mut next = c * 7919;
            let mut batch = Vec::new();
            let mut answer = vec![0u8; 65_535];
            while Instant::now() < deadline {
                let session = async {
                    let tcp = tokio::net::TcpStream::connect(shape.server).await?;
                    tcp.set_nodelay(true)?;
                    connector.connect(name.clone(), tcp).await
                };
                let Ok(mut session) = session.await else {
                    Counters::count(&counted.errors);
                    continue;
                };
                Counters::count(&counted.connections);
                let mut asked = 0;
                let exchange: anyhow::Result<()> = async {
                    while asked < shape.per_connection && Instant::now() < deadline {
                        let n = shape.in_flight.min(shape.per_connection - asked);
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
                            Counters::count(&counted.queries);
                        }
                        asked += n;
                    }
                    session.shutdown().await?;
                    Ok(())
                }
                .await;
                if exchange.is_err() {
                    Counters::count(&counted.errors);
                }
            }
        }
    })
    .await
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
