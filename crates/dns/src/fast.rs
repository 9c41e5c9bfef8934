//! The fast path: the common query answered straight from its wire bytes
//! into a reused buffer, without hickory's parser or encoder, over UDP and
//! over every stream transport (TCP, TLS, QUIC).
//!
//! It takes a query only when it can answer it exactly as the full path
//! (`Handler::respond`) would, byte for byte: opcode QUERY, one question
//! of class IN whose labels need no masking and hold no compression
//! pointer, no answer or authority records, and at most one additional
//! record, an EDNS(0) OPT with no option or one client subnet (ECS, which
//! no answer depends on; so no cookie, no TSIG). Every
//! other message, and any answer holding something it will not write (a
//! name or string out of the ordinary), is handed over: `Fast::HandOver`,
//! and the caller runs the full path instead. The fuzz target and the
//! differential suite compare the two paths' bytes.
//!
//! Names are compressed as hickory-proto's encoder compresses them (the
//! full path's encoder): a table of every label sequence written, matched
//! byte for byte, with the same limits. Like it, no name points into the
//! question (its whole section is one candidate, which no name matches).

use std::net::IpAddr;

use hickory_proto::op::ResponseCode;
use switchboard_domain::{resolve, Answer, RData, RType, Rcode, Record, State};

use crate::rrl::{Rrl, Verdict};
use crate::{class_of, UDP_PAYLOAD_MAX, UDP_PAYLOAD_MIN};

const HEADER: usize = 12;
const TYPE_OPT: u16 = 41;
/// Label sequences kept for compression, and names compressed per message:
/// hickory-proto's `COMPRESSION_CANDIDATE_LIMIT` and `COMPRESSED_NAME_LIMIT`.
const POINTERS_MAX: usize = 64;
const COMPRESSED_NAMES_MAX: usize = 120;
/// Offsets a compression pointer can reach are below this (hickory stores
/// none at or past it).
const POINTER_OFFSET_LIMIT: usize = 0x3fff;

/// What the fast path did with a query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fast {
    /// The response is in the buffer, to be sent.
    Answered(Answered),
    /// Rate limiting withheld the response: nothing to send.
    Dropped(Answered),
    /// Not one for the fast path: run the full path on it.
    HandOver,
}

/// What was answered, for the counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Answered {
    pub qtype: u16,
    pub rcode: ResponseCode,
    pub truncated: bool,
    /// Rate limiting slipped it: the header and question with TC=1.
    pub slipped: bool,
}

/// A query the fast path takes, read off its wire bytes.
struct Query<'q> {
    id: [u8; 2],
    /// RD and CD, copied into the response.
    rd: bool,
    cd: bool,
    /// The question section as sent (name, type, class).
    question: &'q [u8],
    qtype: u16,
    /// The size the response must fit: the UDP payload size, or a
    /// stream's 65,535 bytes.
    limit: usize,
    edns: bool,
    /// The OPT's DO bit, copied into the response's (RFC 3225 §3).
    dnssec_ok: bool,
}

/// Buffers reused from query to query: nothing is allocated per query once
/// they have grown to fit.
#[derive(Debug, Default)]
pub(crate) struct Scratch {
    qname: String,
    /// Compression candidates: (offset in the message, start and length in
    /// `labels`), as hickory's encoder keeps them.
    pointers: Vec<(usize, usize, usize)>,
    labels: Vec<u8>,
    compressed: usize,
}

/// The tenant keys a batch's answers may look up, lower-case, one after
/// the other in `bytes` (`spans` say where): a hint for
/// `State::warm_tenants`, which loses nothing by a wrong guess. Reused
/// from batch to batch.
#[derive(Debug, Default)]
pub(crate) struct KeyHints {
    bytes: Vec<u8>,
    spans: Vec<(usize, usize)>,
}

impl KeyHints {
    pub(crate) fn clear(&mut self) {
        self.bytes.clear();
        self.spans.clear();
    }

    fn push(&mut self, key: &[u8]) {
        let start = self.bytes.len();
        self.bytes.extend(key.iter().map(u8::to_ascii_lowercase));
        self.spans.push((start, self.bytes.len()));
    }

    /// Guess at what `query` (a datagram, unchecked) will look up: the
    /// question's first label (`{tenant}`), that label past its first '-'
    /// (`{service}-{tenant}`), and its second label (`*.{tenant}`).
    pub(crate) fn guess(&mut self, query: &[u8]) {
        let label = |at: usize| {
            let len = usize::from(*query.get(at)?);
            if len == 0 || len > 63 {
                return None;
            }
            Some((query.get(at + 1..at + 1 + len)?, at + 1 + len))
        };
        let Some((first, next)) = label(HEADER) else { return };
        self.push(first);
        if let Some(dash) = first.iter().position(|&b| b == b'-') {
            self.push(&first[dash + 1..]);
        }
        if let Some((second, _)) = label(next) {
            self.push(second);
        }
    }

    pub(crate) fn keys(&self) -> impl Iterator<Item = &[u8]> {
        self.spans.iter().filter_map(|&(start, end)| self.bytes.get(start..end))
    }
}

/// Answer `query` from `state` into `out` (cleared first), or say to hand
/// it over. `rrl` is the limiter and the client's address, when limiting;
/// `stream`: the query came over TCP, TLS or QUIC, where a response may
/// take 65,535 bytes whatever the EDNS size says (as the full path sends).
pub(crate) fn answer(
    query: &[u8],
    state: &State,
    rrl: Option<(&Rrl, IpAddr)>,
    stream: bool,
    scratch: &mut Scratch,
    out: &mut Vec<u8>,
) -> Fast {
    out.clear();
    let Some(mut q) = read(query, &mut scratch.qname) else { return Fast::HandOver };
    if stream {
        q.limit = usize::from(u16::MAX);
    }
    // Signed answers are made on the full path.
    if q.dnssec_ok && state.signs_any() {
        return Fast::HandOver;
    }
    let answer = resolve(state, &scratch.qname, RType::from_code(q.qtype));
    let rcode = match answer.rcode {
        Rcode::NoError => ResponseCode::NoError,
        Rcode::NxDomain => ResponseCode::NXDomain,
        Rcode::Refused => ResponseCode::Refused,
    };
    let mut answered = Answered { qtype: q.qtype, rcode, truncated: false, slipped: false };
    let verdict = rrl.map_or(Verdict::Send, |(rrl, ip)| rrl.check(ip, class_of(&answer)));
    match verdict {
        Verdict::Send => {}
        Verdict::Drop => return Fast::Dropped(answered),
        Verdict::Slip => {
            // No client cookie reaches the fast path: a slip is TC=1 (and
            // not authoritative, as `Handler::withhold` sends it).
            empty(&q, false, rcode, out);
            answered.slipped = true;
            answered.truncated = true;
            return Fast::Answered(answered);
        }
    }
    let sections = [answer.answers.as_slice(), answer.authority.as_slice(), answer.additional.as_slice()];
    if write(&q, &answer, rcode, sections, scratch, out).is_none() {
        return Fast::HandOver;
    }
    if out.len() > q.limit {
        // As `fit_udp`: without the additional section unless it is a
        // referral's glue, else nothing but the header, question and OPT.
        let referral = !answer.authoritative && answer.rcode == Rcode::NoError;
        let trimmed = [sections[0], sections[1], &[]];
        if referral || write(&q, &answer, rcode, trimmed, scratch, out).is_none() || out.len() > q.limit {
            empty(&q, answer.authoritative, rcode, out);
            answered.truncated = true;
        }
    }
    Fast::Answered(answered)
}

/// Read a query the fast path takes; `None` for any other message.
fn read<'q>(m: &'q [u8], qname: &mut String) -> Option<Query<'q>> {
    let header = m.get(..HEADER)?;
    let count = |i: usize| u16::from_be_bytes([header[i], header[i + 1]]);
    // QR=0, opcode QUERY; no Z bit, no RCODE; one question, nothing but
    // at most one OPT after it.
    if header[2] & 0xf8 != 0 || header[3] & 0x4f != 0 {
        return None;
    }
    if count(4) != 1 || count(6) != 0 || count(8) != 0 || count(10) > 1 {
        return None;
    }
    qname.clear();
    let mut i = HEADER;
    loop {
        let len = usize::from(*m.get(i)?);
        if len == 0 {
            i += 1;
            break;
        }
        // A pointer, or a label over 63 bytes: the full path's.
        if len > 63 {
            return None;
        }
        let label = m.get(i + 1..i + 1 + len)?;
        // Labels the full path masks (`convert::qname`) are its too.
        if !label.iter().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'*')) {
            return None;
        }
        // ASCII, checked above: lower-cased once the name is whole.
        qname.push_str(std::str::from_utf8(label).ok()?);
        qname.push('.');
        i += 1 + len;
        if i - HEADER > 255 {
            return None;
        }
    }
    qname.make_ascii_lowercase();
    if qname.is_empty() {
        qname.push('.');
    }
    let fixed = m.get(i..i + 4)?;
    let qtype = u16::from_be_bytes([fixed[0], fixed[1]]);
    let qclass = u16::from_be_bytes([fixed[2], fixed[3]]);
    // Class IN only; QTYPE 0 (NOTIMP), OPT, the transfers and the meta
    // types go the full path's way.
    if qclass != 1 || matches!(qtype, 0 | TYPE_OPT | 249..=252) {
        return None;
    }
    let question = &m[HEADER..i + 4];
    let rest = &m[i + 4..];
    let (limit, edns, dnssec_ok) = if count(10) == 0 {
        if !rest.is_empty() {
            return None;
        }
        (usize::from(UDP_PAYLOAD_MIN), false, false)
    } else {
        // Root owner, type OPT, payload size, extended RCODE 0, version 0,
        // flags, no option or one client subnet, and nothing after it.
        let [0, t0, t1, s0, s1, 0, 0, flags, _, l0, l1, ref options @ ..] = *rest else { return None };
        if u16::from_be_bytes([t0, t1]) != TYPE_OPT || options.len() != usize::from(u16::from_be_bytes([l0, l1])) {
            return None;
        }
        if !options.is_empty() && !client_subnet(options) {
            return None;
        }
        let size = u16::from_be_bytes([s0, s1]).clamp(UDP_PAYLOAD_MIN, UDP_PAYLOAD_MAX);
        (usize::from(size), true, flags & 0x80 != 0)
    };
    let (id, rd, cd) = ([header[0], header[1]], header[2] & 0x01 != 0, header[3] & 0x10 != 0);
    Some(Query { id, rd, cd, question, qtype, limit, edns, dnssec_ok })
}

/// Whether `options` (an OPT record's data) is one EDNS Client Subnet
/// option (RFC 7871 §6) as a resolver sends it: family 1 or 2, a source
/// prefix the family holds, scope 0, the address in as many bytes as the
/// prefix needs, its bits past the prefix zero. Answers do not depend on
/// it, so it is answered as a query without it (§7.2.1: a server that does
/// not tailor its answers ignores the option and echoes none), as the full
/// path answers it; any other option, or a subnet otherwise written, is
/// the full path's.
fn client_subnet(options: &[u8]) -> bool {
    let [0, 8, l0, l1, f0, f1, source, 0, ref address @ ..] = *options else { return false };
    if usize::from(u16::from_be_bytes([l0, l1])) != 4 + address.len() {
        return false;
    }
    let bits = match u16::from_be_bytes([f0, f1]) {
        1 => 32,
        2 => 128,
        _ => return false,
    };
    if source > bits || address.len() != usize::from(source).div_ceil(8) {
        return false;
    }
    let spare = address.len() * 8 - usize::from(source);
    spare == 0 || address.last().is_some_and(|b| b & ((1u8 << spare) - 1) == 0)
}

/// The header, as `Metadata::response_from_request` and hickory's encoder
/// make it, with the given counts.
fn header(q: &Query<'_>, authoritative: bool, rcode: ResponseCode, counts: [u16; 3], out: &mut Vec<u8>) {
    let flags = 0x80 | if authoritative { 0x04 } else { 0 } | u8::from(q.rd);
    let flags2 = if q.cd { 0x10 } else { 0 } | rcode.low();
    out.extend_from_slice(&q.id);
    out.extend_from_slice(&[flags, flags2, 0, 1]);
    for c in counts {
        out.extend_from_slice(&c.to_be_bytes());
    }
}

/// Our OPT: payload 1232, version 0, DO as the query's, no options.
fn opt(q: &Query<'_>, out: &mut Vec<u8>) {
    out.push(0);
    out.extend_from_slice(&TYPE_OPT.to_be_bytes());
    out.extend_from_slice(&UDP_PAYLOAD_MAX.to_be_bytes());
    out.extend_from_slice(&[0, 0, if q.dnssec_ok { 0x80 } else { 0 }, 0, 0, 0]);
}

/// Header, question and OPT with TC=1: what a response that does not fit
/// (or a rate-limiting slip) becomes.
fn empty(q: &Query<'_>, authoritative: bool, rcode: ResponseCode, out: &mut Vec<u8>) {
    out.clear();
    header(q, authoritative, rcode, [0, 0, u16::from(q.edns)], out);
    out[2] |= 0x02;
    out.extend_from_slice(q.question);
    if q.edns {
        opt(q, out);
    }
}

/// Write the whole response; `None` when a record holds something only
/// the full path writes.
fn write(q: &Query<'_>, answer: &Answer, rcode: ResponseCode, sections: [&[Record]; 3], s: &mut Scratch, out: &mut Vec<u8>) -> Option<()> {
    out.clear();
    s.pointers.clear();
    s.labels.clear();
    s.compressed = 0;
    let count = |rs: &[Record]| u16::try_from(rs.len()).ok();
    let additional = count(sections[2])?.checked_add(u16::from(q.edns))?;
    header(q, answer.authoritative, rcode, [count(sections[0])?, count(sections[1])?, additional], out);
    out.extend_from_slice(q.question);
    // hickory's response encoder keeps the whole question section as one
    // candidate (name, type and class), which no name matches: the
    // question is never pointed to, and the candidate takes a place.
    store(s, out, HEADER, out.len());
    for r in sections.iter().flat_map(|rs| rs.iter()) {
        record(r, s, out)?;
    }
    if q.edns {
        opt(q, out);
    }
    Some(())
}

fn store(s: &mut Scratch, out: &[u8], start: usize, end: usize) {
    if end < POINTER_OFFSET_LIMIT && s.pointers.len() < POINTERS_MAX {
        s.pointers.push((start, s.labels.len(), end - start));
        s.labels.extend_from_slice(&out[start..end]);
    }
}

/// How a name in a record is written.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Compress {
    Yes,
    /// Written in full (SRV targets, RFC 2782), though later names may
    /// point into it.
    No,
}

/// Write `text` (absolute, presentation form) as hickory's `Name::emit`
/// does; `None` for a name it would not parse from text.
fn name(text: &str, compress: Compress, s: &mut Scratch, out: &mut Vec<u8>) -> Option<()> {
    let start = out.len();
    let mut starts = [0usize; 128];
    let mut n = 0;
    if text != "." {
        for label in text.strip_suffix('.')?.split('.') {
            let bytes = label.as_bytes();
            if bytes.is_empty() || bytes.len() > 63 || !bytes.iter().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'*')) {
                return None;
            }
            *starts.get_mut(n)? = out.len();
            n += 1;
            out.push(u8::try_from(bytes.len()).ok()?);
            out.extend_from_slice(bytes);
        }
    }
    let end = out.len();
    if end - start + 1 > 255 {
        return None;
    }
    let compress = compress == Compress::Yes && s.compressed < COMPRESSED_NAMES_MAX;
    if compress {
        s.compressed += 1;
    }
    for &at in &starts[..n] {
        if compress {
            let found = s.pointers.iter().find(|&&(_, from, len)| s.labels[from..from + len] == out[at..end]).map(|&(offset, _, _)| offset);
            if let Some(offset) = found.filter(|&o| o & 0xc000 == 0) {
                out.truncate(at);
                out.extend_from_slice(&(0xc000 | u16::try_from(offset).ok()?).to_be_bytes());
                return Some(());
            }
        }
        store(s, out, at, end);
    }
    out.push(0);
    Some(())
}

fn record(r: &Record, s: &mut Scratch, out: &mut Vec<u8>) -> Option<()> {
    name(&r.name, Compress::Yes, s, out)?;
    out.extend_from_slice(&r.data.rtype().code().to_be_bytes());
    out.extend_from_slice(&1u16.to_be_bytes());
    out.extend_from_slice(&r.ttl.to_be_bytes());
    let length_at = out.len();
    out.extend_from_slice(&[0, 0]);
    match &r.data {
        RData::A(a) => out.extend_from_slice(&a.octets()),
        RData::Aaaa(a) => out.extend_from_slice(&a.octets()),
        RData::Cname(n) | RData::Ns(n) | RData::Ptr(n) => name(n, Compress::Yes, s, out)?,
        RData::Mx { preference, exchange } => {
            out.extend_from_slice(&preference.to_be_bytes());
            name(exchange, Compress::Yes, s, out)?;
        }
        RData::Txt(strings) => {
            for t in strings {
                out.push(u8::try_from(t.len()).ok()?);
                out.extend_from_slice(t.as_bytes());
            }
        }
        RData::Srv { priority, weight, port, target } => {
            for v in [priority, weight, port] {
                out.extend_from_slice(&v.to_be_bytes());
            }
            name(target, Compress::No, s, out)?;
        }
        RData::Caa { flags, tag, value } => {
            out.push(*flags);
            out.push(u8::try_from(tag.len()).ok()?);
            out.extend_from_slice(tag.as_bytes());
            out.extend_from_slice(value.as_bytes());
        }
        RData::Soa { mname, rname, serial, refresh, retry, expire, minimum } => {
            name(mname, Compress::Yes, s, out)?;
            name(rname, Compress::Yes, s, out)?;
            out.extend_from_slice(&serial.to_be_bytes());
            // The full path refuses values past i32 (hickory's SOA type).
            for v in [refresh, retry, expire] {
                i32::try_from(*v).ok()?;
                out.extend_from_slice(&v.to_be_bytes());
            }
            out.extend_from_slice(&minimum.to_be_bytes());
        }
        RData::Key { .. } | RData::Cds { .. } => out.extend_from_slice(&crate::convert::key_rdata(&r.data)?),
    }
    let length = u16::try_from(out.len() - length_at - 2).ok()?;
    out[length_at..length_at + 2].copy_from_slice(&length.to_be_bytes());
    Some(())
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;
    use std::sync::Arc;

    use arc_swap::ArcSwap;
    use hickory_proto::op::{Edns, Message, OpCode, Query};
    use hickory_proto::rr::{Name, RecordType};
    use switchboard_domain::dnssec::{Algorithm, Policy};
    use switchboard_domain::{Cluster, Command, Rule, State, ZoneSpec};

    use super::KeyHints;
    use crate::fixture::{self, record};
    use crate::Handler;

    const APEX: &str = "apps.example.test.";

    /// The test zone, signed (keys made here) when `signed`.
    fn state_signed(signed: bool) -> State {
        let zone = ZoneSpec {
            rules: vec![
                Rule::ServiceTenant {
                    services: vec!["ws".into(), "api".into()],
                    target: format!("{{service}}-{{cluster}}.{APEX}"),
                    ttl: None,
                },
                Rule::TenantHost { ttl: Some(60) },
            ],
            records: vec![
                record("ns1", "A", "192.0.2.53"),
                record("@", "MX", "10 mail"),
                record("mail", "A", "192.0.2.25"),
                record("@", "TXT", "\"v=spf1 -all\""),
                record("@", "CAA", "0 issue \"ca.example\""),
                record("_sip._tcp", "SRV", "0 5 5060 mail"),
                record("sip", "CNAME", "mail"),
                record("many", "TXT", &(0..16).map(|i| format!("\"{i:0>70}\"")).collect::<Vec<_>>().join(" ")),
                record("mid", "TXT", &(0..3).map(|i| format!("\"{i:0>150}\"")).collect::<Vec<_>>().join(" ")),
                record("l1", "CNAME", "l2"),
                record("l2", "CNAME", "l1"),
                record("sub", "NS", "ns.sub"),
                record("sub", "NS", "ns.example.net."),
                record("ns.sub", "A", "192.0.2.99"),
                record("a.b.deep", "TXT", "x"),
            ],
            dnssec: signed.then(|| Policy::new(Algorithm::Ed25519)),
            ..fixture::zone(APEX)
        };
        let mut commands = vec![
            Command::PutZone { zone },
            Command::PutCluster {
                cluster: Cluster {
                    ipv4: (1..=16).map(|i| [198, 51, 100, i].into()).collect(),
                    ipv6: (1..=16).map(|i| std::net::Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, i)).collect(),
                    ..Cluster::new("big")
                },
            },
            Command::PutCluster { cluster: Cluster { ipv4: vec![[198, 51, 100, 7].into()], ..Cluster::new("mt1") } },
            Command::PutCluster { cluster: Cluster { hostname: Some(format!("ingress.{APEX}")), ..Cluster::new("mt2") } },
        ];
        for (i, cluster) in ["mt1", "mt2", "big"].iter().enumerate() {
            commands.push(Command::CreateTenant { id: format!("t{i}"), cluster: Some((*cluster).into()) });
        }
        if signed {
            commands.extend(fixture::signing_keys(APEX));
        }
        fixture::state_of(commands)
    }

    fn state() -> State {
        state_signed(false)
    }

    fn query(name: &str, rtype: RecordType, edns: Option<u16>, rd: bool) -> Vec<u8> {
        query_with(name, rtype, edns, rd, None)
    }

    /// `query`, its OPT holding `option` (code, data) when given.
    fn query_with(name: &str, rtype: RecordType, edns: Option<u16>, rd: bool, option: Option<(u16, Vec<u8>)>) -> Vec<u8> {
        let mut m = Message::query();
        m.metadata.id = 0x1234;
        m.metadata.op_code = OpCode::Query;
        m.metadata.recursion_desired = rd;
        m.add_query(Query::query(Name::from_ascii(name).unwrap(), rtype));
        if let Some(size) = edns {
            let mut e = Edns::new();
            e.set_max_payload(size);
            e.set_dnssec_ok(size > 1232);
            if let Some((code, data)) = option {
                e.options_mut().insert(hickory_proto::rr::rdata::opt::EdnsOption::Unknown(code, data));
            }
            m.set_edns(e);
        }
        m.to_vec().unwrap()
    }

    /// A client subnet option's data (RFC 7871 §6): family, source prefix,
    /// scope, address bytes.
    fn subnet(family: u16, source: u8, scope: u8, address: &[u8]) -> Option<(u16, Vec<u8>)> {
        let mut data = family.to_be_bytes().to_vec();
        data.extend([source, scope]);
        data.extend_from_slice(address);
        Some((8, data))
    }

    /// Every query of a broad set: the fast path answers most, and each
    /// answer is the full path's, byte for byte.
    #[test]
    fn the_fast_path_answers_as_the_full_path_does() {
        compare_paths(state(), true);
    }

    /// A signed zone: the fast path takes what it takes without DO (the
    /// DNSKEY and CDS sets among it) as the full path answers it, and
    /// hands every DO=1 query over (the full path signs).
    #[test]
    fn with_a_signed_zone_the_fast_path_answers_without_do_and_hands_over_with_it() {
        compare_paths(state_signed(true), false);
    }

    fn compare_paths(state: State, takes_all: bool) {
        let handler = Handler::new(Arc::new(ArcSwap::from_pointee(state)));
        let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let src: SocketAddr = "192.0.2.1:5353".parse().unwrap();
        let names = [
            "apps.example.test.",
            "APPS.Example.test.",
            "ws-t0.apps.example.test.",
            "Api-T1.apps.example.test.",
            "t0.apps.example.test.",
            "t1.apps.example.test.",
            "t2.apps.example.test.",
            "x.y.t2.apps.example.test.",
            "below.t0.apps.example.test.",
            "nope.apps.example.test.",
            "ns1.apps.example.test.",
            "mail.apps.example.test.",
            "_sip._tcp.apps.example.test.",
            "sip.apps.example.test.",
            "many.apps.example.test.",
            "mid.apps.example.test.",
            "l1.apps.example.test.",
            "sub.apps.example.test.",
            "x.sub.apps.example.test.",
            "ns.sub.apps.example.test.",
            "deep.apps.example.test.",
            "b.deep.apps.example.test.",
            "elsewhere.example.org.",
            ".",
            "*.apps.example.test.",
        ];
        let types = [
            RecordType::A,
            RecordType::AAAA,
            RecordType::CNAME,
            RecordType::MX,
            RecordType::TXT,
            RecordType::NS,
            RecordType::SOA,
            RecordType::SRV,
            RecordType::CAA,
            RecordType::DS,
            RecordType::ANY,
            RecordType::PTR,
            RecordType::Unknown(65280),
            RecordType::DNSKEY,
            RecordType::CDS,
            RecordType::CDNSKEY,
        ];
        let (mut fast, mut all) = (0, 0);
        for name in names {
            for rtype in types {
                for edns in [None, Some(512), Some(1232), Some(4096)] {
                    // With EDNS, also with a client subnet, IPv4 and IPv6.
                    let subnets = if edns.is_some() {
                        vec![None, subnet(1, 24, 0, &[192, 0, 2]), subnet(2, 56, 0, &[0x20, 0x01, 0x0d, 0xb8, 0, 1, 0])]
                    } else {
                        vec![None]
                    };
                    for ecs in subnets {
                        for rd in [false, true] {
                            let q = query_with(name, rtype, edns, rd, ecs.clone());
                            all += 1;
                            let Some(answer) = handler.answer_message_fast(&q, src, false) else {
                                let do_bit = edns.is_some_and(|e| e > 1232);
                                assert!(!takes_all && do_bit, "handed over: {name} {rtype} edns {edns:?} ecs {ecs:?}");
                                continue;
                            };
                            fast += 1;
                            let full = runtime.block_on(handler.answer_message_full(&q, src, false));
                            assert_eq!(full, vec![answer], "{name} {rtype} edns {edns:?} ecs {ecs:?} rd {rd}");
                            // Over a stream (TCP, TLS, QUIC): never truncated, as the full path.
                            let stream = handler.answer_message_fast(&q, src, true);
                            let full = runtime.block_on(handler.answer_message_full(&q, src, true));
                            assert_eq!(stream.map(|a| vec![a]), Some(full), "stream: {name} {rtype} edns {edns:?} ecs {ecs:?} rd {rd}");
                        }
                    }
                }
            }
        }
        if takes_all {
            assert_eq!(fast, all, "every query of the set is one for the fast path");
        } else {
            // Per name, type and RD: 1 + 3 + 3 without DO, 3 with it.
            assert_eq!(fast, all * 7 / 10, "every query without DO is one for the fast path");
        }
    }

    /// What the fast path hands over: anything beyond one plain question.
    #[test]
    fn the_fast_path_hands_over_what_it_does_not_take() {
        let handler = Handler::new(Arc::new(ArcSwap::from_pointee(state())));
        let src: SocketAddr = "192.0.2.1:5353".parse().unwrap();
        let plain = query("t0.apps.example.test.", RecordType::A, Some(1232), false);
        assert!(handler.answer_message_fast(&plain, src, false).is_some());
        let mut two = Message::query();
        two.add_query(Query::query(Name::from_ascii("t0.apps.example.test.").unwrap(), RecordType::A));
        two.add_query(Query::query(Name::from_ascii("t1.apps.example.test.").unwrap(), RecordType::A));
        let mut cookie = Message::query();
        cookie.add_query(Query::query(Name::from_ascii("t0.apps.example.test.").unwrap(), RecordType::A));
        let mut e = Edns::new();
        e.options_mut().insert(hickory_proto::rr::rdata::opt::EdnsOption::Unknown(10, vec![1, 2, 3, 4, 5, 6, 7, 8]));
        cookie.set_edns(e);
        let mut masked = Message::query();
        masked.add_query(Query::query(Name::from_labels(vec![b"a.b".to_vec(), b"apps".to_vec()]).unwrap(), RecordType::A));
        let mut version = plain.clone();
        let n = version.len();
        version[n - 6] = 1; // EDNS version 1: BADVERS
        let mut trailing = plain.clone();
        trailing.push(0);
        let mut axfr = Message::query();
        axfr.add_query(Query::query(Name::from_ascii(APEX).unwrap(), RecordType::AXFR));
        let t0 = |option| query_with("t0.apps.example.test.", RecordType::A, Some(1232), false, option);
        assert!(handler.answer_message_fast(&t0(subnet(1, 0, 0, &[])), src, false).is_some(), "a /0 subnet");
        assert!(handler.answer_message_fast(&t0(subnet(2, 128, 0, &[0x20; 16])), src, false).is_some(), "a /128 subnet");
        for (what, bytes) in [
            ("two questions", two.to_vec().unwrap()),
            ("a cookie", cookie.to_vec().unwrap()),
            ("a subnet with a scope", t0(subnet(1, 24, 24, &[192, 0, 2]))),
            ("a subnet with bits past its prefix", t0(subnet(1, 23, 0, &[192, 0, 3]))),
            ("a subnet longer than its prefix needs", t0(subnet(1, 16, 0, &[192, 0, 2]))),
            ("a subnet past its family", t0(subnet(1, 33, 0, &[192, 0, 2, 1, 0]))),
            ("a subnet of family 3", t0(subnet(3, 8, 0, &[1]))),
            ("another option", t0(Some((12, vec![0; 4])))),
            ("a masked label", masked.to_vec().unwrap()),
            ("EDNS version 1", version),
            ("trailing bytes", trailing),
            ("AXFR", axfr.to_vec().unwrap()),
        ] {
            assert_eq!(handler.answer_message_fast(&bytes, src, false), None, "{what}");
        }
    }

    #[test]
    fn key_hints_guess_the_tenant_labels_and_never_fail() {
        let guessed = |bytes: &[u8]| {
            let mut hints = KeyHints::default();
            hints.guess(bytes);
            hints.keys().map(|k| String::from_utf8_lossy(k).into_owned()).collect::<Vec<_>>()
        };
        assert_eq!(guessed(&query("WS-T1.Apps.example.test.", RecordType::A, None, false)), ["ws-t1", "t1", "apps"]);
        assert_eq!(guessed(&query("blog.t2.apps.example.test.", RecordType::A, None, false)), ["blog", "t2"]);
        assert_eq!(guessed(&query(".", RecordType::NS, None, false)), Vec::<String>::new());
        // Cut short, a pointer, nothing at all: no guess, no panic.
        let whole = query("t3.apps.example.test.", RecordType::A, None, false);
        for cut in 0..whole.len() {
            guessed(&whole[..cut]);
        }
        let mut pointer = whole.clone();
        pointer[12] = 0xc0;
        assert!(guessed(&pointer).is_empty());
        // Whatever it guesses, warming changes no answer.
        let handler = Handler::new(Arc::new(ArcSwap::from_pointee(state())));
        let src: SocketAddr = "192.0.2.1:5353".parse().unwrap();
        let before = handler.answer_message_fast(&whole, src, false);
        let mut hints = KeyHints::default();
        hints.guess(&whole);
        hints.guess(&pointer);
        handler.warm(&hints);
        assert_eq!(handler.answer_message_fast(&whole, src, false), before);
    }
}
