//! RFC 2136 UPDATE on the DNS port: the message is checked (TSIG first,
//! by the handler), read into one `Update` command, authorised against the
//! key's scope, and handed to the control plane (`Submit`), which commits
//! it through consensus (forwarded to the leader from any node). The
//! response goes out only once the command is applied here, or SERVFAIL
//! when it could not be decided in time. The command carries a request id
//! made from the message's key and MAC, so a replayed message gets the
//! first one's answer and applies nothing; refusals are counted, and
//! logged through `RefusalLog`.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{DNSClass, RData as W, Record, RecordType};
use hickory_server::server::Request;
use switchboard_domain::update::{Prerequisite, Update, UpdateOp, UpdateRcode};
use switchboard_domain::{Actor, Command, CommandError, RData, RType, State, TsigKey};

use crate::convert;

/// What the control plane made of a submitted command.
#[derive(Debug)]
pub enum Submitted {
    /// Committed, and applied on this node.
    Applied,
    /// Committed and refused (nothing changed), with why.
    Refused(CommandError),
    /// Not decided in time (no quorum, no leader), with why.
    Unavailable(String),
}

/// The control plane as the DNS front end sees it: commits a command for
/// an actor and answers once it is applied here.
#[async_trait::async_trait]
pub trait Submit: Send + Sync + std::fmt::Debug {
    /// Commit `command` for `actor` under `request_id`, made from the
    /// message's TSIG key and MAC: a replay of the message carries the
    /// same id, so the dedup window answers it with the first outcome
    /// and nothing is applied twice.
    async fn submit(&self, command: Command, actor: Actor, request_id: String) -> Submitted;
}

/// Refusal lines logged at once after a quiet spell; past them, one more
/// each `UPDATE_REFUSAL_LOG_INTERVAL_SECS`. Every refusal is counted in
/// `/metrics` whether logged or not; a flood of forged UPDATEs must not
/// turn into a flood of log lines.
pub const UPDATE_REFUSAL_LOG_BURST: u32 = 10;
pub const UPDATE_REFUSAL_LOG_INTERVAL_SECS: u32 = 1;

/// Rate limit of the "update refused" log line: a token bucket of
/// `UPDATE_REFUSAL_LOG_BURST` lines earning one every
/// `UPDATE_REFUSAL_LOG_INTERVAL_SECS`, in one atomic word, so concurrent
/// UPDATEs never wait for one another to decide.
#[derive(Debug)]
pub(crate) struct RefusalLog {
    epoch: std::time::Instant,
    /// The interval (since `epoch`) the bucket was last charged in (high
    /// 32 bits) and the lines left (low 32 bits).
    bucket: AtomicU64,
    /// Refusals not logged since the last line.
    suppressed: AtomicU64,
}

impl RefusalLog {
    pub(crate) fn new() -> RefusalLog {
        RefusalLog {
            epoch: std::time::Instant::now(),
            bucket: AtomicU64::new(u64::from(UPDATE_REFUSAL_LOG_BURST)),
            suppressed: AtomicU64::new(0),
        }
    }

    /// Whether to log a refusal now: `Some(n)` with the refusals left
    /// unlogged since the last line, or `None` (it is counted as such).
    pub(crate) fn admit(&self) -> Option<u64> {
        let interval = u64::from(UPDATE_REFUSAL_LOG_INTERVAL_SECS.max(1));
        let now = u32::try_from(self.epoch.elapsed().as_secs() / interval).unwrap_or(u32::MAX);
        let mut current = self.bucket.load(Ordering::Relaxed);
        loop {
            let (then, left) = ((current >> 32) as u32, current as u32);
            let left = left.saturating_add(now.saturating_sub(then)).min(UPDATE_REFUSAL_LOG_BURST);
            if left == 0 {
                self.suppressed.fetch_add(1, Ordering::Relaxed);
                return None;
            }
            let next = u64::from(now) << 32 | u64::from(left - 1);
            match self.bucket.compare_exchange_weak(current, next, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => return Some(self.suppressed.swap(0, Ordering::Relaxed)),
                Err(actual) => current = actual,
            }
        }
    }
}

/// UPDATEs one TSIG key may commit to one zone through one node: a
/// sustained rate a minute and a burst (`[dns] updates_per_minute`,
/// `updates_burst`). An UPDATE writes only the names it changes, but an
/// unbounded stream of them, however well signed, still fills the log
/// that every other write of the cluster waits in; ACME clients and
/// provisioning tools send a handful at a time.
pub const UPDATES_PER_MINUTE_DEFAULT: u32 = 600;
pub const UPDATES_BURST_DEFAULT: u32 = 60;
/// (key, zone) pairs whose rate is followed at once. Past it, the pairs
/// whose bucket has filled again (idle ones) are forgotten; only keys in
/// the state, for zones in their scope, ever get one.
const UPDATE_BUCKETS_MAX: usize = 10_000;

/// The rate UPDATEs are bounded to, per TSIG key and zone; `per_minute`
/// 0: unbounded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UpdateLimit {
    pub per_minute: u32,
    pub burst: u32,
}

impl Default for UpdateLimit {
    fn default() -> Self {
        UpdateLimit { per_minute: UPDATES_PER_MINUTE_DEFAULT, burst: UPDATES_BURST_DEFAULT }
    }
}

/// A token bucket per (key, zone). A lock, not atomics: it is taken once
/// per signed, in-scope UPDATE about to be committed (a Raft write), never
/// on the query path.
#[derive(Debug)]
pub(crate) struct UpdateLimiter {
    limit: UpdateLimit,
    /// (key, apex) → tokens left and when they were counted.
    buckets: Mutex<HashMap<(String, String), (f64, Instant)>>,
}

impl UpdateLimiter {
    pub(crate) fn new(limit: UpdateLimit) -> UpdateLimiter {
        UpdateLimiter { limit, buckets: Mutex::new(HashMap::new()) }
    }

    /// Whether `key` may commit one more UPDATE to `apex` at `now`; takes
    /// its token when it may.
    pub(crate) fn admit(&self, key: &str, apex: &str, now: Instant) -> bool {
        let UpdateLimit { per_minute, burst } = self.limit;
        if per_minute == 0 {
            return true;
        }
        let (rate, full) = (f64::from(per_minute) / 60.0, f64::from(burst.max(1)));
        let refilled = |(tokens, at): (f64, Instant)| (tokens + now.saturating_duration_since(at).as_secs_f64() * rate).min(full);
        // A count is whole after any statement: a panic elsewhere leaves it usable.
        let mut buckets = self.buckets.lock().unwrap_or_else(PoisonError::into_inner);
        if buckets.len() >= UPDATE_BUCKETS_MAX {
            buckets.retain(|_, b| refilled(*b) < full);
            if buckets.len() >= UPDATE_BUCKETS_MAX {
                buckets.clear();
            }
        }
        let bucket = buckets.entry((key.to_string(), apex.to_string())).or_insert((full, now));
        let tokens = refilled(*bucket);
        if tokens < 1.0 {
            *bucket = (tokens, now);
            return false;
        }
        *bucket = (tokens - 1.0, now);
        true
    }

    pub(crate) fn limit(&self) -> UpdateLimit {
        self.limit
    }
}

/// Why an UPDATE message is answered with an error before it is proposed.
pub(crate) struct Refusal {
    pub(crate) rcode: ResponseCode,
    pub(crate) reason: String,
}

fn formerr(reason: impl Into<String>) -> Refusal {
    Refusal { rcode: ResponseCode::FormErr, reason: reason.into() }
}

/// The RCODE of an update refused when it applied.
pub(crate) fn rcode_of(e: &CommandError) -> ResponseCode {
    match e {
        CommandError::Update { rcode, .. } => match rcode {
            UpdateRcode::YxDomain => ResponseCode::YXDomain,
            UpdateRcode::YxRrset => ResponseCode::YXRRSet,
            UpdateRcode::NxDomain => ResponseCode::NXDomain,
            UpdateRcode::NxRrset => ResponseCode::NXRRSet,
            UpdateRcode::NotZone => ResponseCode::NotZone,
            UpdateRcode::Refused => ResponseCode::Refused,
        },
        CommandError::NotFound { .. } => ResponseCode::NotAuth,
        CommandError::Unauthenticated(_) => ResponseCode::NotAuth,
        _ => ResponseCode::Refused,
    }
}

/// A record's data in domain form; `None` for a type UPDATE cannot set here.
fn rdata(r: &Record, apex: &str) -> Result<RData, Refusal> {
    let refused = |why: String| Refusal { rcode: ResponseCode::Refused, reason: why };
    Ok(match &r.data {
        W::A(a) => RData::A(a.0),
        W::AAAA(a) => RData::Aaaa(a.0),
        W::CNAME(n) => RData::Cname(convert::qname(&n.0)),
        W::NS(n) => RData::Ns(convert::qname(&n.0)),
        W::MX(m) => RData::Mx { preference: m.preference, exchange: convert::qname(&m.exchange) },
        W::SRV(s) => RData::Srv { priority: s.priority, weight: s.weight, port: s.port, target: convert::qname(&s.target) },
        W::TXT(t) => RData::Txt(
            t.txt_data
                .iter()
                .map(|s| String::from_utf8(s.to_vec()).map_err(|_| refused(format!("a TXT string at {} is not UTF-8", r.name))))
                .collect::<Result<_, _>>()?,
        ),
        W::CAA(_) => RData::parse("data", RType::Caa, &r.data.to_string(), apex).map_err(|e| refused(e.to_string()))?,
        W::SOA(_) => RData::Soa { mname: String::new(), rname: String::new(), serial: 0, refresh: 0, retry: 0, expire: 0, minimum: 0 },
        other => return Err(refused(format!("{} records are not served here", other.record_type()))),
    })
}

/// The domain type of a record type (ANY and the rest as `Other`).
fn rtype(t: RecordType) -> RType {
    RType::from_code(u16::from(t))
}

/// Read an UPDATE message (RFC 2136 §2): the zone section names the zone
/// (`apex`, checked by the caller), the prerequisite section is the
/// message's answer section, the update section its authority section.
pub(crate) fn read(request: &Request, apex: &str) -> Result<Update, Refusal> {
    let zone = request.queries.queries().first().ok_or_else(|| formerr("no zone section"))?;
    if request.queries.len() != 1 || zone.query_type() != RecordType::SOA {
        return Err(formerr("the zone section must hold one SOA question"));
    }
    // RRset-exists (value dependent) prerequisites are whole RRsets: gather them.
    let mut rrsets: BTreeMap<(String, RType), Vec<RData>> = BTreeMap::new();
    let mut prerequisites = Vec::new();
    for r in &request.answers {
        let name = convert::qname(&r.name);
        if r.ttl != 0 {
            return Err(formerr(format!("prerequisite {name}: TTL must be 0")));
        }
        let empty = matches!(r.data, W::Update0(_));
        let t = rtype(r.record_type());
        match (r.dns_class, empty) {
            (DNSClass::ANY, true) if t == RType::Any => prerequisites.push(Prerequisite::NameInUse(name)),
            (DNSClass::ANY, true) => prerequisites.push(Prerequisite::RrsetExists(name, t)),
            (DNSClass::NONE, true) if t == RType::Any => prerequisites.push(Prerequisite::NameNotInUse(name)),
            (DNSClass::NONE, true) => prerequisites.push(Prerequisite::RrsetNotExists(name, t)),
            (DNSClass::IN, false) => rrsets.entry((name, t)).or_default().push(rdata(r, apex)?),
            _ => return Err(formerr(format!("prerequisite {name}: class {} with that data", r.dns_class))),
        }
    }
    prerequisites.extend(rrsets.into_iter().map(|((n, t), data)| Prerequisite::RrsetIs(n, t, data)));

    let mut ops = Vec::new();
    for r in &request.authorities {
        let name = convert::qname(&r.name);
        let t = rtype(r.record_type());
        let meta = matches!(u16::from(r.record_type()), 0 | 128..=255);
        match r.dns_class {
            DNSClass::IN => {
                if meta || matches!(r.data, W::Update0(_)) {
                    return Err(formerr(format!("update {name}: an addition needs a real type and data")));
                }
                ops.push(UpdateOp::Add(switchboard_domain::Record { name, ttl: r.ttl, data: rdata(r, apex)? }));
            }
            DNSClass::ANY if r.ttl == 0 && matches!(r.data, W::Update0(_)) => {
                if t == RType::Any {
                    ops.push(UpdateOp::DeleteName(name));
                } else if meta {
                    return Err(formerr(format!("update {name}: cannot delete a meta type")));
                } else {
                    ops.push(UpdateOp::DeleteRrset(name, t));
                }
            }
            DNSClass::NONE if r.ttl == 0 && !meta && !matches!(r.data, W::Update0(_)) => {
                ops.push(UpdateOp::DeleteRr(name, rdata(r, apex)?))
            }
            _ => return Err(formerr(format!("update {name}: class {} with that TTL and data", r.dns_class))),
        }
    }
    Ok(Update { apex: apex.to_string(), prerequisites, ops })
}

/// Whether `key` may make `update` on `state`, as apply will check again.
pub(crate) fn allowed(state: &State, key: &Arc<TsigKey>, update: &Update) -> Result<(), Refusal> {
    switchboard_domain::tsig::update_allowed(state, key, update).map_err(|reason| Refusal { rcode: ResponseCode::Refused, reason })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn updates_are_bounded_per_key_and_zone_and_come_back_at_the_rate() {
        let limiter = UpdateLimiter::new(UpdateLimit { per_minute: 60, burst: 3 });
        let t0 = Instant::now();
        let admitted = (0..10).filter(|_| limiter.admit("k1.", "a.test.", t0)).count();
        assert_eq!(admitted, 3, "the burst, then nothing");
        // Another key, or another zone, has a bucket of its own.
        assert!(limiter.admit("k2.", "a.test.", t0));
        assert!(limiter.admit("k1.", "b.test.", t0));
        // One a second comes back (60 a minute), and no more than the burst.
        let t1 = t0 + std::time::Duration::from_millis(1_500);
        assert!(limiter.admit("k1.", "a.test.", t1));
        assert!(!limiter.admit("k1.", "a.test.", t1));
        let t2 = t0 + std::time::Duration::from_secs(3_600);
        assert_eq!((0..10).filter(|_| limiter.admit("k1.", "a.test.", t2)).count(), 3);
        // 0 a minute: no bound.
        let open = UpdateLimiter::new(UpdateLimit { per_minute: 0, burst: 0 });
        assert!((0..1_000).all(|_| open.admit("k1.", "a.test.", t0)));
    }

    #[test]
    fn idle_pairs_are_forgotten_past_the_bound() {
        let limiter = UpdateLimiter::new(UpdateLimit { per_minute: 60, burst: 2 });
        let t0 = Instant::now();
        for i in 0..UPDATE_BUCKETS_MAX {
            assert!(limiter.admit(&format!("k{i}."), "a.test.", t0));
        }
        // Much later every bucket is full again: the next pair finds room.
        let later = t0 + std::time::Duration::from_secs(60);
        assert!(limiter.admit("new.", "a.test.", later));
        assert_eq!(limiter.buckets.lock().map(|b| b.len()).unwrap_or_default(), 1);
    }

    #[test]
    fn refusal_lines_come_in_a_burst_then_stop_and_count_what_they_left_out() {
        let log = RefusalLog::new();
        let admitted: Vec<Option<u64>> = (0..1_000).map(|_| log.admit()).collect();
        // The burst, then nothing (one more if an interval ends meanwhile).
        let lines = admitted.iter().filter(|a| a.is_some()).count();
        assert!(lines >= UPDATE_REFUSAL_LOG_BURST as usize && lines <= UPDATE_REFUSAL_LOG_BURST as usize + 1, "{lines}");
        assert!(admitted[..UPDATE_REFUSAL_LOG_BURST as usize].iter().all(|a| *a == Some(0)));
        // The next line, once one is allowed, says how many were left out.
        let left_out = 1_000 - lines as u64;
        log.bucket.store(u64::from(UPDATE_REFUSAL_LOG_BURST), Ordering::Relaxed);
        assert_eq!(log.admit(), Some(left_out));
        assert_eq!(log.admit(), Some(0));
    }
}
