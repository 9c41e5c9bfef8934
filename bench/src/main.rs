//! `sb-bench`: load generators that measure a running Switchboard node from
//! the outside, through its gRPC API and real DNS packets.
//!
//! `sb-bench dns` loads a zone, clusters and tenants, then measures DNS
//! queries per second and latency with no writes, and again while a writer
//! moves tenants as fast as the node commits, to show whether writes make
//! queries wait. `sb-bench moves` moves tenants at a set rate, for another
//! query benchmark to run beside (`bench/compare --writes-per-second`).

mod encrypted;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context};
use clap::{Parser, Subcommand};
use hickory_proto::op::{Message, MessageType, OpCode, Query};
use hickory_proto::rr::{Name, RecordType};
use switchboard_proto::v1 as proto;
use switchboard_proto::v1::{clusters_client::ClustersClient, tenants_client::TenantsClient, zones_client::ZonesClient};
use tokio::net::UdpSocket;
use tonic::transport::Channel;

const APEX: &str = "bench.test.";
const CLUSTERS: usize = 4;

#[derive(Parser)]
#[command(name = "sb-bench")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Query throughput and latency, without and with concurrent writes.
    Dns {
        /// API of the node under test.
        #[arg(long, default_value = "http://127.0.0.1:50051")]
        api: String,
        /// DNS address of the node under test.
        #[arg(long, default_value = "127.0.0.1:1053")]
        dns: SocketAddr,
        /// Tenants to create before measuring.
        #[arg(long, default_value_t = 10_000)]
        tenants: usize,
        /// Seconds per measured phase.
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        /// Queries in flight at once (one UDP socket each).
        #[arg(long, default_value_t = 16)]
        concurrency: usize,
        /// Concurrent clients creating tenants during setup.
        #[arg(long, default_value_t = 64)]
        setup_clients: usize,
    },
    /// Move tenants at a steady rate for a while (others set up the data),
    /// then say how many moves committed: the writes a query benchmark runs
    /// beside (`bench/compare --writes-per-second`).
    Moves {
        /// API of the node writes are sent to.
        #[arg(long)]
        api: String,
        /// Moves committed per second, spread evenly.
        #[arg(long)]
        rate: u64,
        /// Seconds to keep moving.
        #[arg(long)]
        seconds: u64,
        /// Tenants `<prefix>0` .. `<prefix>{tenants - 1}` exist; each move
        /// takes the next one (cycling) to the next of `clusters`.
        #[arg(long)]
        tenants: usize,
        #[arg(long, default_value = "t")]
        prefix: String,
        /// Where in the cycle to start: runs one after another pass the
        /// moves already made, so each move changes its tenant's cluster.
        #[arg(long, default_value_t = 0)]
        from: u64,
        /// Clusters to move between (repeat; at least two).
        #[arg(long = "cluster", required = true, num_args = 1)]
        clusters: Vec<String>,
        /// Moves in flight at once, so a slow commit does not hold the rate back.
        #[arg(long, default_value_t = 8)]
        clients: usize,
    },
    /// On a running cluster: time from write acknowledgement until every
    /// node's DNS gives the new answer, and committed writes per second.
    Cluster {
        /// API of the node writes are sent to.
        #[arg(long)]
        api: String,
        /// DNS address of every node (repeat).
        #[arg(long, required = true)]
        dns: Vec<SocketAddr>,
        /// Writes whose propagation is timed, one after another.
        #[arg(long, default_value_t = 1_000)]
        writes: usize,
        /// Seconds of the throughput phase.
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        /// Concurrent writers in the throughput phase.
        #[arg(long, default_value_t = 64)]
        clients: usize,
    },
    /// DNS over QUIC queries (A for each name of a file, one per line) for
    /// a while: qps and errors. dnsperf has no DoQ.
    Doq(Load),
    /// DNS over TLS queries as `doq` asks them (rustls, queries written
    /// back to back in windows of `in_flight`).
    Dot(Load),
    /// Open this many DNS over TLS connections, handshake each, and hold
    /// them idle (for measuring UDP beside them).
    HoldTls {
        #[arg(long)]
        server: SocketAddr,
        #[arg(long, default_value_t = 10_000)]
        count: usize,
        #[arg(long, default_value_t = 60)]
        seconds: u64,
    },
}

/// How `doq` and `dot` load a server.
#[derive(clap::Args)]
struct Load {
    #[arg(long)]
    server: SocketAddr,
    /// Names to ask for, one per line (the first word of each line).
    #[arg(long)]
    names: std::path::PathBuf,
    /// Connections at a time.
    #[arg(long, default_value_t = 20)]
    clients: usize,
    /// Queries per connection before it is closed and another opened.
    #[arg(long, default_value_t = 100)]
    per_connection: usize,
    /// Queries in flight per connection.
    #[arg(long, default_value_t = 10)]
    in_flight: usize,
    #[arg(long, default_value_t = 8)]
    seconds: u64,
}

/// Run `doq` or `dot` (`transport`) with the names in `names`, and print
/// what was done.
async fn encrypted_queries(transport: &str, l: Load) -> anyhow::Result<()> {
    let names = &l.names;
    let text = std::fs::read_to_string(names).with_context(|| format!("reading {}", names.display()))?;
    let queries =
        text.lines().filter_map(|l| l.split_whitespace().next()).map(encrypted::framed_query).collect::<anyhow::Result<Vec<_>>>()?;
    anyhow::ensure!(!queries.is_empty(), "no names in {}", names.display());
    let shape = encrypted::Shape {
        server: l.server,
        names: Arc::new(queries),
        clients: l.clients,
        per_connection: l.per_connection,
        in_flight: l.in_flight,
        duration: Duration::from_secs(l.seconds),
    };
    let r = if transport == "dot" { encrypted::dot_load(&shape).await? } else { encrypted::doq_load(&shape).await? };
    let seconds = r.elapsed.as_secs_f64();
    println!(
        "{transport}: {} queries in {seconds:.2} s = {:.0} qps, {} errors, {} connections",
        r.queries,
        r.queries as f64 / seconds,
        r.errors,
        r.connections
    );
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().cmd {
        Cmd::Doq(load) => encrypted_queries("doq", load).await,
        Cmd::Dot(load) => encrypted_queries("dot", load).await,
        Cmd::HoldTls { server, count, seconds } => {
            if let Ok((_, hard)) = rlimit::Resource::NOFILE.get() {
                let _ = rlimit::Resource::NOFILE.set(hard, hard);
            }
            encrypted::hold_tls(server, count, Duration::from_secs(seconds)).await
        }
        Cmd::Dns { api, dns, tenants, seconds, concurrency, setup_clients } => {
            let channel = Channel::from_shared(api.clone())?.connect().await.with_context(|| format!("connecting to {api}"))?;
            let setup = setup(channel.clone(), tenants, setup_clients).await?;
            println!(
                "setup: {tenants} tenants created in {:.1} s ({:.0} writes/s with {setup_clients} clients)",
                setup.as_secs_f64(),
                tenants as f64 / setup.as_secs_f64()
            );
            let duration = Duration::from_secs(seconds);
            let quiet = measure(dns, tenants, concurrency, duration, None).await?;
            let busy = measure(dns, tenants, concurrency, duration, Some((channel, tenants))).await?;
            println!();
            println!(
                "{:<22} {:>10} {:>8} {:>8} {:>9} {:>8} {:>9} {:>13}",
                "phase", "queries/s", "p50 us", "p99 us", "p99.9 us", "lost", "writes/s", "write p99 ms"
            );
            for (label, r) in [("queries only", quiet), ("queries + moves", busy)] {
                println!(
                    "{:<22} {:>10.0} {:>8} {:>8} {:>9} {:>8} {:>9} {:>13}",
                    label,
                    r.queries as f64 / r.elapsed.as_secs_f64(),
                    r.p50_us,
                    r.p99_us,
                    r.p999_us,
                    r.lost,
                    r.writes.map(|w| format!("{:.0}", w as f64 / r.elapsed.as_secs_f64())).unwrap_or_else(|| "-".into()),
                    r.write_p99_ms.map(|w| format!("{w:.1}")).unwrap_or_else(|| "-".into()),
                );
            }
            Ok(())
        }
        Cmd::Moves { api, rate, seconds, tenants, prefix, from, clusters, clients } => {
            let channel = Channel::from_shared(api.clone())?.connect().await.with_context(|| format!("connecting to {api}"))?;
            let (done, elapsed, p99) = moves(channel, rate, seconds, tenants, &prefix, from, &clusters, clients).await?;
            println!(
                "moves: {done} committed in {:.1} s = {:.0} writes/s (asked {rate}/s; p99 latency {p99:.1} ms)",
                elapsed.as_secs_f64(),
                done as f64 / elapsed.as_secs_f64()
            );
            Ok(())
        }
        Cmd::Cluster { api, dns, writes, seconds, clients } => {
            let channel = Channel::from_shared(api.clone())?.connect().await.with_context(|| format!("connecting to {api}"))?;
            setup(channel.clone(), 1, 1).await?;
            let (per_node, slowest) = propagation(channel.clone(), &dns, 0..writes, None).await?;
            // The same measure while the writers run: one move at a time,
            // each node asked every millisecond, until the writers stop.
            let until = Instant::now() + Duration::from_secs(seconds);
            let ((count, elapsed, p99), (_, loaded)) = tokio::try_join!(
                throughput(channel.clone(), seconds, clients),
                propagation(channel, &dns, writes..2 * writes, Some(until))
            )?;
            println!("{:<34} {:>8} {:>8} {:>8} {:>8}", "propagation (ack -> new answer)", "p50 ms", "p99 ms", "max ms", "samples");
            let row = |label: &str, v: &[f64]| {
                println!("{:<34} {:>8.2} {:>8.2} {:>8.2} {:>8}", label, pctf(v, 0.50), pctf(v, 0.99), pctf(v, 1.0), v.len());
            };
            // Node by node while the list is short; past that, every sample
            // of every node together.
            if per_node.len() <= PER_NODE_ROWS_MAX {
                for (i, v) in per_node.iter().enumerate() {
                    row(&format!("  node {} ({})", i + 1, dns[i]), v);
                }
            } else {
                row(&format!("  any of the {} nodes", per_node.len()), &per_node.concat());
            }
            row("  slowest node per write", &slowest);
            row("  slowest node, under the writers", &loaded);
            println!();
            println!(
                "throughput: {count} creates committed in {:.1} s with {clients} clients = {:.0} writes/s (p99 latency {p99:.1} ms)",
                elapsed.as_secs_f64(),
                count as f64 / elapsed.as_secs_f64()
            );
            println!("total {} writes", count as usize + slowest.len() + loaded.len());
            Ok(())
        }
    }
}

/// Nodes shown one row each in `cluster`'s propagation table.
const PER_NODE_ROWS_MAX: usize = 10;

/// Percentile of unsorted samples (0.0..=1.0).
fn pctf(v: &[f64], p: f64) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    s.get(((s.len() as f64 * p) as usize).min(s.len().saturating_sub(1))).copied().unwrap_or(f64::NAN)
}

/// Move tenant t0 back and forth; after each acknowledgement, query every
/// node until it answers with the new cluster. Milliseconds per node and the
/// slowest node per write. Move `i` goes to `cluster(i + 1)`, so a range
/// that continues the last one moves the tenant every time. With `until`,
/// stop there (the range is then a bound) and pause between queries, so
/// the asking does not crowd out the load it measures: each node is asked
/// every millisecond, or every 0.2 ms times the number of nodes when that
/// is longer (about 5,000 queries a second in all, whatever the size).
async fn propagation(
    channel: Channel,
    dns: &[SocketAddr],
    moves: std::ops::Range<usize>,
    until: Option<Instant>,
) -> anyhow::Result<(Vec<Vec<f64>>, Vec<f64>)> {
    let mut client = TenantsClient::new(channel);
    let writes = moves.len();
    let pause = Duration::from_micros(200 * dns.len() as u64).max(Duration::from_millis(1));
    let mut per_node = vec![Vec::with_capacity(writes); dns.len()];
    let mut slowest = Vec::with_capacity(writes);
    let name = format!("ws-{}.{APEX}", tenant(0));
    let mut q = Message::new(0, MessageType::Query, OpCode::Query);
    q.add_query(Query::query(Name::from_ascii(&name)?, RecordType::CNAME));
    let query = Arc::new(q.to_vec()?);
    for i in moves {
        if until.is_some_and(|u| Instant::now() >= u) {
            break;
        }
        let target = cluster(i + 1);
        let want = format!("ws-{target}.example.test");
        client.move_tenant(proto::MoveTenantRequest { id: tenant(0), cluster: target.clone(), ttl_first: None, options: None }).await?;
        let acked = Instant::now();
        let mut tasks = Vec::new();
        for addr in dns {
            let (addr, query, want) = (*addr, query.clone(), want.clone());
            tasks.push(tokio::spawn(async move {
                let sock = UdpSocket::bind("127.0.0.1:0").await?;
                sock.connect(addr).await?;
                let mut buf = vec![0u8; 1500];
                let deadline = acked + Duration::from_secs(10);
                loop {
                    if until.is_some() {
                        tokio::time::sleep(pause).await;
                    }
                    sock.send(&query).await?;
                    if let Ok(Ok(n)) = tokio::time::timeout(Duration::from_millis(200), sock.recv(&mut buf)).await {
                        let m = Message::from_vec(&buf[..n]).map_err(|e| anyhow!("{e}"))?;
                        if m.answers.iter().any(|r| r.data.to_string().trim_end_matches('.') == want) {
                            return Ok::<_, anyhow::Error>(acked.elapsed().as_secs_f64() * 1000.0);
                        }
                    }
                    if Instant::now() > deadline {
                        return Err(anyhow!("{addr} did not answer {want} within 10 s"));
                    }
                }
            }));
        }
        let mut worst: f64 = 0.0;
        for (k, t) in tasks.into_iter().enumerate() {
            let ms = t.await??;
            per_node[k].push(ms);
            worst = worst.max(ms);
        }
        slowest.push(worst);
    }
    Ok((per_node, slowest))
}

/// Concurrent creates for `seconds`: how many committed, and the p99 latency.
async fn throughput(channel: Channel, seconds: u64, clients: usize) -> anyhow::Result<(u64, Duration, f64)> {
    let stop = Arc::new(AtomicBool::new(false));
    let next = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (stop, next, mut client) = (stop.clone(), next.clone(), TenantsClient::new(channel.clone()));
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let t0 = Instant::now();
                let req = proto::CreateTenantRequest {
                    id: format!("tp{}-{i}", start.elapsed().as_nanos() % 1_000_000),
                    cluster: cluster(i as usize),
                    options: None,
                };
                client.create_tenant(req).await?;
                lat.push(t0.elapsed().as_secs_f64() * 1000.0);
            }
            Ok::<_, anyhow::Error>(lat)
        }));
    }
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    stop.store(true, Ordering::Relaxed);
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await??);
    }
    let elapsed = start.elapsed();
    Ok((all.len() as u64, elapsed, pctf(&all, 0.99)))
}

/// `rate` moves a second for `seconds`: move `i` is due at `i / rate` s
/// from the start and taken by whichever of `clients` is free; one that
/// falls behind catches up without sleeping. Move `i` is the cycle's move
/// `from + i`. Returns moves committed, time taken and p99 latency (ms).
#[allow(clippy::too_many_arguments)]
async fn moves(
    channel: Channel,
    rate: u64,
    seconds: u64,
    tenants: usize,
    prefix: &str,
    from: u64,
    clusters: &[String],
    clients: usize,
) -> anyhow::Result<(u64, Duration, f64)> {
    if rate == 0 || tenants == 0 || clusters.len() < 2 {
        return Err(anyhow!("--rate and --tenants must be positive, and two clusters at least given"));
    }
    let total = rate * seconds;
    let next = Arc::new(AtomicU64::new(0));
    let clusters = Arc::new(clusters.to_vec());
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..clients.max(1) {
        let (next, clusters, prefix, mut client) =
            (next.clone(), clusters.clone(), prefix.to_string(), TenantsClient::new(channel.clone()));
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= total {
                    break;
                }
                tokio::time::sleep_until((start + Duration::from_secs_f64(i as f64 / rate as f64)).into()).await;
                let at = (from + i) as usize;
                let t = at % tenants;
                // Round r of the cycle puts tenant t on cluster t + r + 1
                // (mod n), where it was set up on cluster t: each move changes it.
                let round = at / tenants;
                let cluster = clusters[(t + round + 1) % clusters.len()].clone();
                let t0 = Instant::now();
                client
                    .move_tenant(proto::MoveTenantRequest { id: format!("{prefix}{t}"), cluster, ttl_first: None, options: None })
                    .await?;
                lat.push(t0.elapsed().as_secs_f64() * 1000.0);
            }
            Ok::<_, anyhow::Error>(lat)
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await??);
    }
    Ok((all.len() as u64, start.elapsed(), pctf(&all, 0.99)))
}

fn tenant(i: usize) -> String {
    format!("t{i}")
}

fn cluster(i: usize) -> String {
    format!("c{}", i % CLUSTERS)
}

async fn setup(channel: Channel, tenants: usize, clients: usize) -> anyhow::Result<Duration> {
    let zone = proto::Zone {
        apex: APEX.into(),
        environment: "bench".into(),
        ttl: Some(300),
        ns: vec![format!("ns1.{APEX}")],
        rules: vec![
            proto::Rule {
                kind: Some(proto::rule::Kind::ServiceTenant(proto::ServiceTenantRule {
                    services: vec!["ws".into(), "api".into()],
                    target: "{service}-{cluster}.example.test.".into(),
                    ttl: Some(300),
                })),
            },
            proto::Rule { kind: Some(proto::rule::Kind::TenantHost(proto::TenantHostRule { ttl: Some(60) })) },
        ],
        records: vec![proto::StaticRecord { name: "ns1".into(), r#type: "A".into(), ttl: None, data: "192.0.2.53".into() }],
        ..Default::default()
    };
    ZonesClient::new(channel.clone()).put_zone(proto::PutZoneRequest { zone: Some(zone), options: None }).await?;
    for i in 0..CLUSTERS {
        let c = proto::Cluster { id: cluster(i), ipv4: vec![format!("198.51.100.{}", i + 1)], ..Default::default() };
        ClustersClient::new(channel.clone()).put_cluster(proto::PutClusterRequest { cluster: Some(c), options: None }).await?;
    }
    let next = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (next, mut client) = (next.clone(), TenantsClient::new(channel.clone()));
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed) as usize;
                if i >= tenants {
                    return Ok::<_, anyhow::Error>(());
                }
                let req = proto::CreateTenantRequest { id: tenant(i), cluster: cluster(i), options: None };
                match client.create_tenant(req).await {
                    Ok(_) => {}
                    Err(s) if s.code() == tonic::Code::AlreadyExists => {}
                    Err(s) => return Err(anyhow!("creating {}: {s}", tenant(i))),
                }
            }
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok(start.elapsed())
}

struct Result {
    queries: u64,
    lost: u64,
    elapsed: Duration,
    p50_us: u64,
    p99_us: u64,
    p999_us: u64,
    writes: Option<u64>,
    write_p99_ms: Option<f64>,
}

/// Pre-encoded queries (a mix of CNAME, A below a tenant, apex-level A and
/// NXDOMAIN names); the id is patched per send.
fn query_pool(tenants: usize) -> anyhow::Result<Vec<Vec<u8>>> {
    let mut pool = Vec::new();
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for n in 0..4096 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let t = tenant(x as usize % tenants.max(1));
        let (name, rtype) = match n % 4 {
            0 => (format!("ws-{t}.{APEX}"), RecordType::CNAME),
            1 => (format!("www.{t}.{APEX}"), RecordType::A),
            2 => (format!("{t}.{APEX}"), RecordType::A),
            _ => (format!("missing-{n}.{APEX}"), RecordType::A),
        };
        let mut m = Message::new(0, MessageType::Query, OpCode::Query);
        m.add_query(Query::query(Name::from_ascii(&name)?, rtype));
        pool.push(m.to_vec()?);
    }
    Ok(pool)
}

async fn measure(
    dns: SocketAddr,
    tenants: usize,
    concurrency: usize,
    duration: Duration,
    writer: Option<(Channel, usize)>,
) -> anyhow::Result<Result> {
    let pool = Arc::new(query_pool(tenants)?);
    let stop = Arc::new(AtomicBool::new(false));
    let start = Instant::now();

    let write_task = writer.map(|(channel, tenants)| {
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut client = TenantsClient::new(channel);
            let mut latencies = Vec::new();
            let mut i = 0usize;
            while !stop.load(Ordering::Relaxed) {
                let t0 = Instant::now();
                client
                    .move_tenant(proto::MoveTenantRequest {
                        id: tenant(i % tenants),
                        cluster: cluster(i / tenants + i + 1),
                        ttl_first: None,
                        options: None,
                    })
                    .await?;
                latencies.push(t0.elapsed().as_secs_f64() * 1000.0);
                i += 1;
            }
            Ok::<_, anyhow::Error>(latencies)
        })
    });

    let mut tasks = Vec::new();
    for k in 0..concurrency {
        let (pool, stop) = (pool.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let sock = UdpSocket::bind("127.0.0.1:0").await?;
            sock.connect(dns).await?;
            let mut buf = vec![0u8; 4096];
            let mut lat = Vec::new();
            let mut lost = 0u64;
            let mut id: u16 = (k as u16).wrapping_mul(7919);
            let mut n = k;
            while !stop.load(Ordering::Relaxed) {
                let mut q = pool[n % pool.len()].clone();
                n += concurrency;
                id = id.wrapping_add(1);
                q[..2].copy_from_slice(&id.to_be_bytes());
                let t0 = Instant::now();
                sock.send(&q).await?;
                // Read until our id comes back: late answers to lost queries are skipped.
                let got = tokio::time::timeout(Duration::from_secs(1), async {
                    loop {
                        let len = sock.recv(&mut buf).await?;
                        if len >= 2 && buf[..2] == id.to_be_bytes() {
                            return Ok::<_, std::io::Error>(());
                        }
                    }
                })
                .await;
                match got {
                    Ok(Ok(())) => lat.push(t0.elapsed().as_micros() as u64),
                    Ok(Err(e)) => return Err(anyhow::Error::from(e)),
                    Err(_) => lost += 1,
                }
            }
            Ok::<_, anyhow::Error>((lat, lost))
        }));
    }
    tokio::time::sleep(duration).await;
    stop.store(true, Ordering::Relaxed);
    let elapsed = start.elapsed();
    let mut all = Vec::new();
    let mut lost = 0;
    for t in tasks {
        let (lat, l) = t.await??;
        all.extend(lat);
        lost += l;
    }
    all.sort_unstable();
    let pct = |p: f64| all.get(((all.len() as f64 * p) as usize).min(all.len().saturating_sub(1))).copied().unwrap_or(0);
    let (writes, write_p99_ms) = match write_task {
        Some(t) => {
            let mut w = t.await??;
            w.sort_by(f64::total_cmp);
            let p99 = w.get(((w.len() as f64 * 0.99) as usize).min(w.len().saturating_sub(1))).copied();
            (Some(w.len() as u64), p99)
        }
        None => (None, None),
    };
    Ok(Result { queries: all.len() as u64, lost, elapsed, p50_us: pct(0.50), p99_us: pct(0.99), p999_us: pct(0.999), writes, write_p99_ms })
}
