//! What the DNS front end counts, for `/metrics`: plain atomic counters in
//! one shard per UDP receive loop and one for each stream transport (TCP,
//! TLS, QUIC), so the query path takes
//! no lock and allocates nothing to count, and two cores never write the
//! same cache line. A scrape sums the shards (`Collector`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hickory_proto::op::ResponseCode;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;

use crate::tap::{Tap, Transport};
use crate::tcp::TcpCounters;

/// The QTYPEs counted by name; every other is `other`.
const QTYPES: [(u16, &str); 17] = [
    (1, "A"),
    (28, "AAAA"),
    (5, "CNAME"),
    (15, "MX"),
    (16, "TXT"),
    (2, "NS"),
    (6, "SOA"),
    (33, "SRV"),
    (257, "CAA"),
    (12, "PTR"),
    (65, "HTTPS"),
    (64, "SVCB"),
    (43, "DS"),
    (48, "DNSKEY"),
    (255, "ANY"),
    (252, "AXFR"),
    (251, "IXFR"),
];
const QTYPE_OTHER: usize = QTYPES.len();
const QTYPE_SLOTS: usize = QTYPES.len() + 1;

/// The RCODEs counted by name; every other is `other`.
const RCODES: [(ResponseCode, &str); 9] = [
    (ResponseCode::NoError, "NOERROR"),
    (ResponseCode::FormErr, "FORMERR"),
    (ResponseCode::ServFail, "SERVFAIL"),
    (ResponseCode::NXDomain, "NXDOMAIN"),
    (ResponseCode::NotImp, "NOTIMP"),
    (ResponseCode::Refused, "REFUSED"),
    (ResponseCode::NotAuth, "NOTAUTH"),
    (ResponseCode::BADVERS, "BADVERS"),
    (ResponseCode::BADCOOKIE, "BADCOOKIE"),
];
const RCODE_OTHER: usize = RCODES.len();
const RCODE_SLOTS: usize = RCODES.len() + 1;

/// Upper bounds of the answer latency histogram's buckets, in nanoseconds.
const LATENCY_BOUNDS_NS: [u64; 12] =
    [10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000, 2_500_000, 5_000_000, 10_000_000, 50_000_000, 100_000_000];

/// What a query's COOKIE option was (RFC 7873 §5.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CookieSeen {
    None,
    ClientOnly,
    Valid,
    Invalid,
    Malformed,
}
const COOKIE_RESULTS: [&str; 5] = ["none", "client_only", "valid", "invalid", "malformed"];

/// What response rate limiting did to a response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RrlAction {
    Dropped,
    Slipped,
}

/// Requests of protocols not served, refused.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Refused {
    Notify,
}

/// UPDATE outcomes counted, by the RCODE answered.
const UPDATE_RCODES: [(ResponseCode, &str); 11] = [
    (ResponseCode::NoError, "NOERROR"),
    (ResponseCode::FormErr, "FORMERR"),
    (ResponseCode::ServFail, "SERVFAIL"),
    (ResponseCode::NXDomain, "NXDOMAIN"),
    (ResponseCode::NotImp, "NOTIMP"),
    (ResponseCode::Refused, "REFUSED"),
    (ResponseCode::YXDomain, "YXDOMAIN"),
    (ResponseCode::YXRRSet, "YXRRSET"),
    (ResponseCode::NXRRSet, "NXRRSET"),
    (ResponseCode::NotAuth, "NOTAUTH"),
    (ResponseCode::NotZone, "NOTZONE"),
];

/// Why an UPDATE was not applied, as counted (every one, logged or not).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum UpdateRefused {
    /// This front end takes no updates (NOTIMP).
    NotServed,
    /// The message could not be read as an update.
    Malformed,
    /// Its zone is not one served here.
    NotAZone,
    /// Not signed: updates need a TSIG key.
    Unsigned,
    /// Signed with a key that may not make it.
    OutOfScope,
    /// Committed and refused by apply (prerequisites, names the rules
    /// make, a replay of a refused update).
    Refused,
    /// Not decided in time (no leader, no quorum).
    Unavailable,
    /// Past the key's rate for the zone (`update::UpdateLimit`).
    RateLimited,
}

const UPDATE_REFUSED: [&str; 8] =
    ["not_served", "malformed", "not_a_zone", "unsigned", "out_of_scope", "refused", "unavailable", "rate_limited"];

/// A zone transfer's QTYPE, as counted.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Xfr {
    Axfr,
    Ixfr,
}

/// How a zone transfer request ended.
#[derive(Debug, Clone, Copy)]
pub(crate) enum XfrOutcome {
    /// The whole zone sent.
    Complete,
    /// An IXFR answered with the difference since the client's serial.
    Incremental,
    /// An IXFR from a client already at the current serial: one SOA.
    UpToDate,
    /// Not allowed (no key in scope, prefix not listed), not a zone we
    /// serve, or too many transfers running.
    Refused,
    /// Started but not finished: the client went away or stalled.
    Failed,
}

const XFR_OUTCOMES: [&str; 5] = ["complete", "incremental", "up_to_date", "refused", "failed"];

/// How a NOTIFY this node sent ended (one per attempt; retries follow
/// all but an acknowledgement).
#[derive(Debug, Clone, Copy)]
pub(crate) enum NotifySent {
    Acknowledged,
    Timeout,
    Rejected,
    Error,
}

const NOTIFY_SENT: [&str; 4] = ["acknowledged", "timeout", "rejected", "error"];

/// What a TSIG-signed message's check found.
#[derive(Debug, Clone, Copy)]
pub(crate) enum TsigSeen {
    Verified,
    BadKey,
    BadSig,
    BadTime,
    BadTrunc,
    Malformed,
}

const TSIG_SEEN: [&str; 6] = ["verified", "badkey", "badsig", "badtime", "badtrunc", "malformed"];

/// One shard of counters. Aligned so that two shards never share a cache line.
#[repr(align(128))]
#[derive(Debug)]
pub(crate) struct Shard {
    queries: [[AtomicU64; RCODE_SLOTS]; QTYPE_SLOTS],
    truncated: AtomicU64,
    malformed: AtomicU64,
    dropped_short: AtomicU64,
    dropped_response: AtomicU64,
    rrl: [AtomicU64; 2],
    cookies: [AtomicU64; 5],
    /// UDP queries answered by the fast path, and handed to the full path.
    paths: [AtomicU64; 2],
    refused: [AtomicU64; 1],
    updates: [AtomicU64; UPDATE_RCODES.len()],
    updates_refused: [AtomicU64; UPDATE_REFUSED.len()],
    transfers: [[AtomicU64; XFR_OUTCOMES.len()]; 2],
    tsig: [AtomicU64; TSIG_SEEN.len()],
    notify_sent: [AtomicU64; NOTIFY_SENT.len()],
    /// Per bucket (not cumulative), the last slot is above every bound.
    latency: [AtomicU64; LATENCY_BOUNDS_NS.len() + 1],
    latency_sum_ns: AtomicU64,
    /// Queries seen by the dnstap sampler.
    pub(crate) tap_seen: AtomicU64,
}

fn zeros<const N: usize>() -> [AtomicU64; N] {
    std::array::from_fn(|_| AtomicU64::new(0))
}

impl Default for Shard {
    fn default() -> Self {
        Shard {
            queries: std::array::from_fn(|_| zeros()),
            truncated: AtomicU64::new(0),
            malformed: AtomicU64::new(0),
            dropped_short: AtomicU64::new(0),
            dropped_response: AtomicU64::new(0),
            rrl: zeros(),
            cookies: zeros(),
            paths: zeros(),
            refused: zeros(),
            updates: zeros(),
            updates_refused: zeros(),
            transfers: std::array::from_fn(|_| zeros()),
            tsig: zeros(),
            notify_sent: zeros(),
            latency: zeros(),
            latency_sum_ns: AtomicU64::new(0),
            tap_seen: AtomicU64::new(0),
        }
    }
}

fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

impl Shard {
    /// A query answered (or limited) with `rcode`.
    pub(crate) fn query(&self, qtype: u16, rcode: ResponseCode, truncated: bool) {
        let t = QTYPES.iter().position(|(code, _)| *code == qtype).unwrap_or(QTYPE_OTHER);
        let r = RCODES.iter().position(|(code, _)| *code == rcode).unwrap_or(RCODE_OTHER);
        bump(&self.queries[t][r]);
        if truncated {
            bump(&self.truncated);
        }
    }

    /// A UDP query answered (or limited) by the fast path (`fast`), or
    /// handed to the full path.
    pub(crate) fn path(&self, fast: bool) {
        bump(&self.paths[usize::from(!fast)]);
    }

    /// A message that could not be parsed (answered FORMERR).
    pub(crate) fn malformed(&self) {
        bump(&self.malformed);
    }

    /// A datagram dropped unread: shorter than a header, or a response.
    pub(crate) fn dropped(&self, short: bool) {
        bump(if short { &self.dropped_short } else { &self.dropped_response });
    }

    pub(crate) fn rrl(&self, action: RrlAction) {
        bump(&self.rrl[action as usize]);
    }

    pub(crate) fn refused(&self, what: Refused) {
        bump(&self.refused[what as usize]);
    }

    pub(crate) fn transfer(&self, qtype: Xfr, outcome: XfrOutcome) {
        bump(&self.transfers[qtype as usize][outcome as usize]);
    }

    /// An UPDATE answered with `rcode`.
    pub(crate) fn update(&self, rcode: ResponseCode) {
        if let Some(i) = UPDATE_RCODES.iter().position(|(c, _)| *c == rcode) {
            bump(&self.updates[i]);
        }
    }

    /// An UPDATE not applied, and why.
    pub(crate) fn update_refused(&self, why: UpdateRefused) {
        bump(&self.updates_refused[why as usize]);
    }

    pub(crate) fn notify_sent(&self, outcome: NotifySent) {
        bump(&self.notify_sent[outcome as usize]);
    }

    pub(crate) fn tsig(&self, seen: TsigSeen) {
        bump(&self.tsig[seen as usize]);
    }

    pub(crate) fn cookie(&self, seen: CookieSeen) {
        bump(&self.cookies[seen as usize]);
    }

    /// The time from receiving a query to its response sent.
    pub(crate) fn latency(&self, took: Duration) {
        let ns = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
        let slot = LATENCY_BOUNDS_NS.iter().position(|b| ns <= *b).unwrap_or(LATENCY_BOUNDS_NS.len());
        bump(&self.latency[slot]);
        self.latency_sum_ns.fetch_add(ns, Ordering::Relaxed);
    }
}

/// Every DNS counter of a node: a shard per UDP loop, then TCP's, DoT's
/// and DoQ's.
#[derive(Debug)]
pub struct DnsStats {
    shards: Box<[Shard]>,
    udp_loops: usize,
    tcp: Arc<TcpCounters>,
    /// The DoT and DoQ listeners' connections and handshakes.
    encrypted: [(&'static str, Arc<TcpCounters>); 2],
    /// The certificate the encrypted listeners serve, when they are on.
    certs: Option<Arc<crate::tls::Certs>>,
    tap: Option<Arc<Tap>>,
    signatures: Arc<crate::dnssec::SignCounters>,
}

impl DnsStats {
    pub(crate) fn new(
        udp_loops: usize,
        tcp: Arc<TcpCounters>,
        encrypted: [Arc<TcpCounters>; 2],
        certs: Option<Arc<crate::tls::Certs>>,
        tap: Option<Arc<Tap>>,
        signatures: Arc<crate::dnssec::SignCounters>,
    ) -> DnsStats {
        let udp_loops = udp_loops.max(1);
        let [dot, doq] = encrypted;
        DnsStats {
            shards: (0..udp_loops + 3).map(|_| Shard::default()).collect(),
            udp_loops,
            tcp,
            encrypted: [("dot", dot), ("doq", doq)],
            certs,
            tap,
            signatures,
        }
    }

    /// The shard of UDP loop `i` (wrapping), or a stream transport's.
    pub(crate) fn shard(&self, transport: Transport, i: usize) -> &Shard {
        match transport {
            Transport::Udp => &self.shards[i % self.udp_loops],
            Transport::Tcp => &self.shards[self.udp_loops],
            Transport::Dot => &self.shards[self.udp_loops + 1],
            Transport::Doq => &self.shards[self.udp_loops + 2],
        }
    }

    fn transport_shards(&self) -> [(&'static str, &[Shard]); 4] {
        let (udp, streams) = self.shards.split_at(self.udp_loops);
        [("udp", udp), ("tcp", &streams[0..1]), ("dot", &streams[1..2]), ("doq", &streams[2..3])]
    }

    fn sum(shards: &[Shard], f: impl Fn(&Shard) -> &AtomicU64) -> u64 {
        shards.iter().map(|s| f(s).load(Ordering::Relaxed)).sum()
    }

    fn all(&self, f: impl Fn(&Shard) -> &AtomicU64) -> u64 {
        Self::sum(&self.shards, f)
    }
}

/// Write one counter family of labelled values; label sets are
/// `[(name, value)]`. Zero-valued series are left out (`keep_zero` false)
/// so the dense query table does not export hundreds of zeros.
fn counters(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    series: &[(Vec<(&'static str, &str)>, u64)],
    keep_zero: bool,
) -> Result<(), std::fmt::Error> {
    let mut family = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (labels, value) in series {
        if *value == 0 && !keep_zero {
            continue;
        }
        ConstCounter::new(*value).encode(family.encode_family(labels)?)?;
    }
    Ok(())
}

impl Collector for DnsStats {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let e = &mut encoder;
        let mut queries = Vec::new();
        for (transport, shards) in self.transport_shards() {
            for (t, (_, qtype)) in QTYPES.iter().map(|(c, n)| (*c, *n)).chain([(0, "other")]).enumerate() {
                for (r, rcode) in RCODES.iter().map(|(_, n)| *n).chain(["other"]).enumerate() {
                    let v = Self::sum(shards, |s| &s.queries[t][r]);
                    queries.push((vec![("transport", transport), ("qtype", qtype), ("rcode", rcode)], v));
                }
            }
        }
        counters(
            e,
            "switchboard_dns_queries",
            "DNS queries answered or limited, by transport, QTYPE and the RCODE of the answer.",
            &queries,
            false,
        )?;
        let per_transport = |f: fn(&Shard) -> &AtomicU64| -> Vec<(Vec<(&'static str, &str)>, u64)> {
            self.transport_shards().iter().map(|(t, shards)| (vec![("transport", *t)], Self::sum(shards, f))).collect()
        };
        counters(e, "switchboard_dns_responses_truncated", "Responses sent with TC=1.", &per_transport(|s| &s.truncated), true)?;
        counters(
            e,
            "switchboard_dns_packets_malformed",
            "Messages that could not be parsed, answered FORMERR.",
            &per_transport(|s| &s.malformed),
            true,
        )?;
        counters(
            e,
            "switchboard_dns_packets_dropped",
            "Datagrams dropped unanswered: shorter than a header, or a response (QR=1).",
            &[
                (vec![("reason", "short")], self.all(|s| &s.dropped_short)),
                (vec![("reason", "response")], self.all(|s| &s.dropped_response)),
            ],
            true,
        )?;
        counters(
            e,
            "switchboard_dns_rrl_actions",
            "Responses withheld by response rate limiting: dropped, or slipped (sent truncated, or BADCOOKIE).",
            &[
                (vec![("action", "dropped")], self.all(|s| &s.rrl[RrlAction::Dropped as usize])),
                (vec![("action", "slipped")], self.all(|s| &s.rrl[RrlAction::Slipped as usize])),
            ],
            true,
        )?;
        let cookies: Vec<_> = COOKIE_RESULTS.iter().enumerate().map(|(i, r)| (vec![("result", *r)], self.all(|s| &s.cookies[i]))).collect();
        counters(e, "switchboard_dns_cookies", "Queries by what their DNS COOKIE option was (RFC 7873).", &cookies, true)?;
        let [(_, udp), streams @ ..] = self.transport_shards();
        counters(
            e,
            "switchboard_dns_udp_path",
            "UDP queries by the path that answered them: fast (from the wire bytes) or full (parsed and encoded by hickory).",
            &[(vec![("path", "fast")], Self::sum(udp, |s| &s.paths[0])), (vec![("path", "full")], Self::sum(udp, |s| &s.paths[1]))],
            true,
        )?;
        let mut paths = Vec::new();
        for (transport, shards) in streams {
            paths.push((vec![("transport", transport), ("path", "fast")], Self::sum(shards, |s| &s.paths[0])));
            paths.push((vec![("transport", transport), ("path", "full")], Self::sum(shards, |s| &s.paths[1])));
        }
        counters(
            e,
            "switchboard_dns_stream_path",
            "Queries over TCP, TLS (dot) and QUIC (doq) by the path that answered them, as switchboard_dns_udp_path.",
            &paths,
            true,
        )?;

        {
            let mut family = e.encode_descriptor(
                "switchboard_dns_answer_duration_seconds",
                "Time from a query received to its response sent.",
                None,
                MetricType::Histogram,
            )?;
            for (transport, shards) in self.transport_shards() {
                // Per bucket, not cumulative: the encoder accumulates.
                let mut count = 0;
                let mut buckets = Vec::with_capacity(LATENCY_BOUNDS_NS.len() + 1);
                for (i, bound) in LATENCY_BOUNDS_NS.iter().map(|ns| *ns as f64 / 1e9).chain([f64::MAX]).enumerate() {
                    let n = Self::sum(shards, |s| &s.latency[i]);
                    count += n;
                    buckets.push((bound, n));
                }
                let sum = Self::sum(shards, |s| &s.latency_sum_ns) as f64 / 1e9;
                let labels = [("transport", transport)];
                family.encode_family(&labels)?.encode_histogram::<prometheus_client::encoding::NoLabelSet>(sum, count, &buckets, None)?;
            }
        }

        let tcp = &self.tcp;
        let open = tcp.open.load(Ordering::Relaxed);
        ConstGauge::new(i64::try_from(open).unwrap_or(i64::MAX)).encode(e.encode_descriptor(
            "switchboard_dns_tcp_connections_open",
            "DNS TCP connections open.",
            None,
            MetricType::Gauge,
        )?)?;
        ConstCounter::new(tcp.refused.load(Ordering::Relaxed)).encode(e.encode_descriptor(
            "switchboard_dns_tcp_connections_refused",
            "DNS TCP connections closed at accept: a connection limit was reached.",
            None,
            MetricType::Counter,
        )?)?;
        ConstCounter::new(tcp.accept_backoffs.load(Ordering::Relaxed)).encode(e.encode_descriptor(
            "switchboard_dns_tcp_accept_backoffs",
            "Times accepting a DNS TCP connection waited for want of file descriptors.",
            None,
            MetricType::Counter,
        )?)?;

        // DoT and DoQ: their connections, and the TLS handshakes made.
        {
            let mut open = e.encode_descriptor(
                "switchboard_dns_encrypted_connections_open",
                "DNS over TLS (dot) and QUIC (doq) connections open.",
                None,
                MetricType::Gauge,
            )?;
            for (transport, c) in &self.encrypted {
                let n = i64::try_from(c.open.load(Ordering::Relaxed)).unwrap_or(i64::MAX);
                ConstGauge::new(n).encode(open.encode_family(&[("transport", *transport)])?)?;
            }
        }
        let mut refused = Vec::new();
        let mut handshakes = Vec::new();
        for (transport, c) in &self.encrypted {
            let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
            refused.push((vec![("transport", *transport), ("reason", "limit")], load(&c.refused)));
            refused.push((vec![("transport", *transport), ("reason", "handshake_rate")], load(&c.rate_limited)));
            handshakes.push((vec![("transport", *transport), ("outcome", "ok")], load(&c.handshakes_ok)));
            handshakes.push((vec![("transport", *transport), ("outcome", "failed")], load(&c.handshakes_failed)));
            handshakes.push((vec![("transport", *transport), ("outcome", "timed_out")], load(&c.handshakes_timed_out)));
        }
        counters(
            e,
            "switchboard_dns_encrypted_connections_refused",
            "DoT and DoQ connections refused at accept: a connection limit, or the source's handshake rate, was reached.",
            &refused,
            true,
        )?;
        counters(e, "switchboard_dns_tls_handshakes", "TLS handshakes of DoT and DoQ connections, by outcome.", &handshakes, true)?;
        if let Some(certs) = &self.certs {
            counters(
                e,
                "switchboard_dns_tls_certificate_reloads",
                "Times the TLS certificate and key were read again after they changed on disk, by outcome (a failed reload keeps the old pair).",
                &[
                    (vec![("outcome", "ok")], certs.reloads.load(Ordering::Relaxed)),
                    (vec![("outcome", "failed")], certs.reload_failures.load(Ordering::Relaxed)),
                ],
                true,
            )?;
        }

        let mut transfers = Vec::new();
        for (q, qtype) in ["AXFR", "IXFR"].into_iter().enumerate() {
            for (o, outcome) in XFR_OUTCOMES.into_iter().enumerate() {
                transfers.push((vec![("qtype", qtype), ("outcome", outcome)], self.all(|s| &s.transfers[q][o])));
            }
        }
        counters(e, "switchboard_dns_transfers", "Zone transfer requests, by QTYPE and outcome.", &transfers, true)?;
        let tsig: Vec<_> = TSIG_SEEN.iter().enumerate().map(|(i, r)| (vec![("result", *r)], self.all(|s| &s.tsig[i]))).collect();
        counters(e, "switchboard_dns_tsig", "TSIG-signed messages received, by the result of their check.", &tsig, true)?;
        let sent: Vec<_> = NOTIFY_SENT.iter().enumerate().map(|(i, o)| (vec![("outcome", *o)], self.all(|s| &s.notify_sent[i]))).collect();
        counters(e, "switchboard_dns_notifies_sent", "NOTIFY messages sent to secondaries, by outcome (every attempt).", &sent, true)?;
        // NOTIFY to us is not served (we are the primary): refused, and counted.
        let refused = |i: usize| self.all(|s| &s.refused[i]);
        counters(
            e,
            "switchboard_dns_notifies",
            "NOTIFY messages received, by outcome.",
            &[(vec![("outcome", "refused")], refused(Refused::Notify as usize))],
            true,
        )?;
        let updates: Vec<_> =
            UPDATE_RCODES.iter().enumerate().map(|(i, (_, name))| (vec![("rcode", *name)], self.all(|s| &s.updates[i]))).collect();
        counters(e, "switchboard_dns_updates", "RFC 2136 UPDATE messages answered, by RCODE.", &updates, true)?;
        let refused: Vec<_> =
            UPDATE_REFUSED.iter().enumerate().map(|(i, r)| (vec![("reason", *r)], self.all(|s| &s.updates_refused[i]))).collect();
        counters(
            e,
            "switchboard_dns_updates_refused",
            "RFC 2136 UPDATE messages not applied, by reason (each counted; the log has at most a line a second of them).",
            &refused,
            true,
        )?;
        counters(
            e,
            "switchboard_dnssec_signatures",
            "RRSIGs put in answers: made for them, or taken from the signature cache.",
            &[
                (vec![("result", "made")], self.signatures.made.load(Ordering::Relaxed)),
                (vec![("result", "cached")], self.signatures.cached.load(Ordering::Relaxed)),
            ],
            true,
        )?;

        if let Some(tap) = &self.tap {
            counters(
                e,
                "switchboard_dnstap_queue",
                "dnstap messages handed to the writer (queued) or dropped because its queue was full.",
                &[
                    (vec![("outcome", "queued")], tap.queued.load(Ordering::Relaxed)),
                    (vec![("outcome", "dropped")], tap.dropped.load(Ordering::Relaxed)),
                ],
                true,
            )?;
        }
        Ok(())
    }
}
