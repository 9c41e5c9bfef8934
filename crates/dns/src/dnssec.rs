//! Online DNSSEC signing of answers from signed zones, for queries with DO=1.
//!
//! Each RRset of the answer section, and the SOA and NSEC of a negative
//! answer, gets an RRSIG by the zone's active ZSK (the DNSKEY, CDS and
//! CDNSKEY sets by every KSK). Denial of existence is RFC 9824's Compact
//! Denial: an NSEC owned by the name asked, its next name `\000.` in front
//! of it, so it covers no other name; a name that does not exist answers
//! NOERROR with the NXNAME type in the bitmap, a name without the type asked
//! lists the types it has. Nothing is precomputed, so names made by rules
//! and ACME values just written are denied or signed like any other.
//!
//! Signatures are cached by what they cover (key, owner, type, TTL and
//! data) in a bounded cache, and made again once less validity than the
//! policy's refresh is left: a hot RRset is signed once, not per query,
//! and a change of state (a tenant moved) misses the cache by itself.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use hickory_proto::rr::rdata::NULL;
use hickory_proto::rr::{Name, RData, Record, RecordType};
use hickory_proto::serialize::binary::{BinEncodable, BinEncoder};
use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, Ed25519KeyPair, KeyPair as _, ECDSA_P256_SHA256_FIXED_SIGNING};
use switchboard_domain::dnssec::{Algorithm, DnssecKey, SignedZone};
use switchboard_domain::{RType, State, Zone};

use crate::convert;

/// Signatures kept by default (`dns.signatures_cached`): enough for every
/// hot RRset, bounded whatever is asked.
pub const SIGNATURES_CACHED: usize = 100_000;
/// Parsed private keys kept (a few per signed zone).
const KEYS_CACHED: usize = 1_024;
/// Signatures start this far in the past, for resolvers whose clocks lag.
const INCEPTION_SKEW_S: u64 = 3600;
/// The NXNAME meta-type of RFC 9824 §3.
const NXNAME: u16 = 128;

/// A private key ready to sign.
enum Loaded {
    Ecdsa(EcdsaKeyPair),
    Ed25519(Ed25519KeyPair),
}

/// A signature made earlier, with its validity.
struct Made {
    /// Seconds since the epoch (not wrapped as in the RRSIG).
    expiration_s: u64,
    /// The whole RRSIG RDATA.
    rdata: Vec<u8>,
}

/// Signatures made, and taken from the cache, for `/metrics`.
#[derive(Debug, Default)]
pub struct SignCounters {
    pub made: AtomicU64,
    pub cached: AtomicU64,
}

/// The signing state every copy of the handler shares.
pub(crate) struct Signer {
    keys: quick_cache::sync::Cache<Vec<u8>, Arc<Loaded>>,
    /// `None` when configured off.
    signatures: Option<quick_cache::sync::Cache<Vec<u8>, Arc<Made>>>,
    rng: SystemRandom,
    counters: Arc<SignCounters>,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer").field("signatures", &self.signatures.as_ref().map(|c| c.len())).finish_non_exhaustive()
    }
}

/// A key pair from its PKCS#8 bytes, checked against the public key the
/// zone publishes.
fn load(key: &DnssecKey, rng: &SystemRandom) -> Option<Loaded> {
    let loaded = match key.algorithm {
        Algorithm::EcdsaP256Sha256 => {
            Loaded::Ecdsa(EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &key.private_key.0, rng).ok()?)
        }
        Algorithm::Ed25519 => Loaded::Ed25519(Ed25519KeyPair::from_pkcs8(&key.private_key.0).ok()?),
    };
    let public = match &loaded {
        // Uncompressed point: 0x04, then x and y as DNSKEY holds them.
        Loaded::Ecdsa(k) => k.public_key().as_ref().get(1..)?.to_vec(),
        Loaded::Ed25519(k) => k.public_key().as_ref().to_vec(),
    };
    (public == key.public_key).then_some(loaded)
}

/// The wire form of `name`, lower-case and uncompressed (RFC 4034 §6.2).
fn canonical_name(name: &Name, out: &mut Vec<u8>) {
    for label in name.iter() {
        out.push(label.len() as u8);
        out.extend(label.iter().map(u8::to_ascii_lowercase));
    }
    out.push(0);
}

/// A record's RDATA in canonical form (names lower-case for the types
/// RFC 4034 §6.2 lists, as hickory's canonical encoder does).
fn canonical_rdata(rdata: &RData) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let mut encoder = BinEncoder::new(&mut out);
    encoder.set_canonical_form(true);
    rdata.emit(&mut encoder).ok()?;
    Some(out)
}

/// An NSEC type bitmap (RFC 4034 §4.1.2) of `types`.
fn type_bitmap(types: &mut Vec<u16>) -> Vec<u8> {
    types.sort_unstable();
    types.dedup();
    let mut out = Vec::new();
    let mut i = 0;
    while i < types.len() {
        let window = (types[i] >> 8) as u8;
        let mut bits = [0u8; 32];
        let mut len = 0;
        while i < types.len() && (types[i] >> 8) as u8 == window {
            let low = (types[i] & 0xff) as usize;
            bits[low / 8] |= 0x80 >> (low % 8);
            len = low / 8 + 1;
            i += 1;
        }
        out.push(window);
        out.push(len as u8);
        out.extend_from_slice(&bits[..len]);
    }
    out
}

/// Seconds since the epoch, as RRSIG times are (serial arithmetic, RFC 4034 §3.1.5).
fn now_s() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// The question: its name in domain form, and as asked on the wire.
#[derive(Clone, Copy)]
pub(crate) struct Asked<'a> {
    pub qname: &'a str,
    pub name: &'a Name,
    pub qtype: RType,
}

/// What signing an answer changed beyond its sections.
pub(crate) struct Signed {
    /// A name that does not exist is NOERROR under Compact Denial.
    pub nxdomain_denied: bool,
}

impl Signer {
    pub fn new(counters: Arc<SignCounters>, signatures_cached: usize) -> Signer {
        Signer {
            keys: quick_cache::sync::Cache::new(KEYS_CACHED),
            signatures: (signatures_cached > 0).then(|| quick_cache::sync::Cache::new(signatures_cached)),
            rng: SystemRandom::new(),
            counters,
        }
    }

    /// Sign the sections of an answer to `asked` (in domain form `qname`)
    /// from `state`. `None` when no RRset of it is in a signed zone.
    pub fn sign(
        &self,
        state: &State,
        question: Asked<'_>,
        resolved: &switchboard_domain::Answer,
        answers: &mut Vec<Record>,
        authority: &mut Vec<Record>,
    ) -> Option<Signed> {
        let nxdomain = resolved.rcode == switchboard_domain::Rcode::NxDomain;
        let authoritative = resolved.authoritative;
        let now = now_s();
        let mut any = false;
        let mut signed_answers = Vec::with_capacity(answers.len() * 2);
        for set in rrsets(answers) {
            signed_answers.extend_from_slice(set);
            if let Some(sigs) = self.sign_set(state, set, now) {
                any = true;
                signed_answers.extend(sigs);
            }
        }
        *answers = signed_answers;

        let soa = authority.iter().find(|r| r.record_type() == RecordType::SOA).cloned();
        let mut nxdomain_denied = false;
        if let Some(soa) = soa {
            // A negative answer: the SOA signed, and the name denied.
            if let Some((signed_authority, denied)) = self.deny(state, question, nxdomain, &soa, answers, now) {
                nxdomain_denied = denied;
                any = true;
                if question.qtype == RType::NSEC && answers.is_empty() {
                    // A query for the NSEC type is answered with the NSEC
                    // itself (RFC 9824 §3.3): a denial would prove absent
                    // the very type it holds.
                    let covers_nsec = |r: &Record| match &r.data {
                        RData::Unknown { rdata, .. } => rdata.anything.get(..2) == Some(&RType::NSEC.code().to_be_bytes()[..]),
                        _ => false,
                    };
                    answers.extend(
                        signed_authority
                            .into_iter()
                            .filter(|r| r.record_type() == RecordType::NSEC || (r.record_type() == RecordType::RRSIG && covers_nsec(r))),
                    );
                    authority.clear();
                } else {
                    *authority = signed_authority;
                }
            }
        } else if !authoritative {
            // A referral: the NS set is the child's and unsigned; an NSEC
            // at the cut proves it has no DS.
            if let Some(ns) = authority.iter().find(|r| r.record_type() == RecordType::NS).cloned() {
                let cut = convert::qname(&ns.name);
                if let Some(zone) = state.zone_for(&cut) {
                    if let Some(signed) = state.signed_zone(zone.apex()).filter(|s| s.signing()) {
                        let ttl = zone.spec.soa.minimum.min(zone.spec.ttl);
                        if let Some(nsec) = nsec(&ns.name.to_lowercase(), ttl, Some(&[RType::Ns]), zone) {
                            let sigs = self.sign_with(zone, signed, std::slice::from_ref(&nsec), now);
                            authority.push(nsec);
                            authority.extend(sigs);
                            any = true;
                        }
                    }
                }
            }
        }
        any.then_some(Signed { nxdomain_denied })
    }

    /// The authority section of a negative answer whose SOA is `soa`:
    /// the SOA, the Compact Denial NSEC of the name denied (the question,
    /// or the end of the CNAME chain), and their RRSIGs; and whether the
    /// name does not exist. `None` when the zone is not signed.
    fn deny(
        &self,
        state: &State,
        Asked { qname, name: asked, .. }: Asked<'_>,
        nxdomain: bool,
        soa: &Record,
        answers: &[Record],
        now: u64,
    ) -> Option<(Vec<Record>, bool)> {
        let apex = convert::qname(&soa.name);
        let zone = state.zone(&apex)?;
        let signed = state.signed_zone(&apex).filter(|s| s.signing())?;
        let denied = match answers.iter().rev().find(|r| r.record_type() != RecordType::RRSIG).map(|r| &r.data) {
            Some(RData::CNAME(target)) => target.0.to_lowercase(),
            _ => asked.to_lowercase(),
        };
        let denied_domain = if answers.is_empty() { qname.to_string() } else { convert::qname(&denied) };
        let types = switchboard_domain::resolve::types_at(state, zone, &denied_domain);
        let nsec = nsec(&denied, soa.ttl, types.as_deref(), zone)?;
        let mut out = vec![soa.clone()];
        out.extend(self.sign_with(zone, signed, std::slice::from_ref(soa), now));
        let sigs = self.sign_with(zone, signed, std::slice::from_ref(&nsec), now);
        out.push(nsec);
        out.extend(sigs);
        Some((out, nxdomain && types.is_none()))
    }

    /// The RRSIGs of one RRset, when its owner is in a signed zone.
    fn sign_set(&self, state: &State, set: &[Record], now: u64) -> Option<Vec<Record>> {
        let owner = convert::qname(&set.first()?.name);
        let zone = state.zone_for(&owner)?;
        let signed = state.signed_zone(zone.apex()).filter(|s| s.signing())?;
        Some(self.sign_with(zone, signed, set, now))
    }

    /// Sign `set` with the keys of `signed` that sign its type.
    fn sign_with(&self, zone: &Zone, signed: &SignedZone, set: &[Record], now: u64) -> Vec<Record> {
        let Some(first) = set.first() else { return Vec::new() };
        let rtype = first.record_type();
        let by_ksk = matches!(rtype, RecordType::DNSKEY | RecordType::CDS | RecordType::CDNSKEY);
        signed
            .keys
            .iter()
            .filter(|k| if by_ksk { k.signs_dnskey() } else { k.signs_zone() })
            .filter_map(|k| self.rrsig(zone, signed, k, set, now))
            .collect()
    }

    /// One RRSIG over `set` by `key` (RFC 4034 §3.1.8.1), from the cache
    /// while it has validity enough left.
    fn rrsig(&self, zone: &Zone, signed: &SignedZone, key: &DnssecKey, set: &[Record], now: u64) -> Option<Record> {
        let first = set.first()?;
        let (rtype, ttl) = (first.record_type(), first.ttl);
        // The RRset in canonical form and order.
        let mut owner = Vec::with_capacity(64);
        canonical_name(&first.name, &mut owner);
        let mut rdatas: Vec<Vec<u8>> = set.iter().map(|r| canonical_rdata(&r.data)).collect::<Option<_>>()?;
        rdatas.sort();
        rdatas.dedup();
        let mut covered = Vec::with_capacity(owner.len() * rdatas.len() + 64);
        for rdata in &rdatas {
            covered.extend_from_slice(&owner);
            covered.extend_from_slice(&u16::from(rtype).to_be_bytes());
            covered.extend_from_slice(&1u16.to_be_bytes());
            covered.extend_from_slice(&ttl.to_be_bytes());
            covered.extend_from_slice(&u16::try_from(rdata.len()).ok()?.to_be_bytes());
            covered.extend_from_slice(rdata);
        }
        let cache_key = [key.public_key.as_slice(), covered.as_slice()].concat();
        let refresh = signed.policy.refresh_s(zone.max_ttl());
        if let Some(made) = self.signatures.as_ref().and_then(|c| c.get(&cache_key)) {
            // Reused only with more than the refresh time of validity left
            // (an entry nobody asked for past its expiry is never served).
            if made.expiration_s > now + refresh {
                self.counters.cached.fetch_add(1, Ordering::Relaxed);
                return Some(Record::from_rdata(first.name.clone(), ttl, rrsig_rdata(made.rdata.clone())));
            }
        }
        let loaded = match self.keys.get(&key.public_key) {
            Some(l) => l,
            None => {
                let l = Arc::new(load(key, &self.rng)?);
                self.keys.insert(key.public_key.clone(), l.clone());
                l
            }
        };
        let inception = now.saturating_sub(INCEPTION_SKEW_S) as u32;
        let expiration_s = now + signed.policy.rrsig_validity_s;
        // RRSIG times are serial numbers of 32 bits (RFC 4034 §3.1.5).
        let expiration = expiration_s as u32;
        let mut rdata = Vec::with_capacity(18 + zone.apex().len() + 2 + 64);
        rdata.extend_from_slice(&u16::from(rtype).to_be_bytes());
        rdata.push(key.algorithm.number());
        rdata.push(first.name.num_labels());
        rdata.extend_from_slice(&ttl.to_be_bytes());
        rdata.extend_from_slice(&expiration.to_be_bytes());
        rdata.extend_from_slice(&inception.to_be_bytes());
        rdata.extend_from_slice(&key.key_tag().to_be_bytes());
        rdata.extend_from_slice(&switchboard_domain::name::wire(zone.apex()));
        let data = [rdata.as_slice(), covered.as_slice()].concat();
        match loaded.as_ref() {
            Loaded::Ecdsa(k) => rdata.extend_from_slice(k.sign(&self.rng, &data).ok()?.as_ref()),
            Loaded::Ed25519(k) => rdata.extend_from_slice(k.sign(&data).as_ref()),
        }
        self.counters.made.fetch_add(1, Ordering::Relaxed);
        if let Some(cache) = &self.signatures {
            cache.insert(cache_key, Arc::new(Made { expiration_s, rdata: rdata.clone() }));
        }
        Some(Record::from_rdata(first.name.clone(), ttl, rrsig_rdata(rdata)))
    }
}

/// The wire size of the RRSIG and NSEC records in `records`, owners
/// uncompressed: what signing added to an answer.
pub(crate) fn added_size(records: &[Record]) -> usize {
    records
        .iter()
        .filter(|r| matches!(r.record_type(), RecordType::RRSIG | RecordType::NSEC))
        .map(|r| {
            let owner = r.name.iter().map(|l| l.len() + 1).sum::<usize>() + 1;
            let rdata = match &r.data {
                RData::Unknown { rdata, .. } => rdata.anything.len(),
                _ => 0,
            };
            owner + 10 + rdata
        })
        .sum()
}

fn rrsig_rdata(rdata: Vec<u8>) -> RData {
    RData::Unknown { code: RecordType::RRSIG, rdata: NULL::with(rdata) }
}

/// The RRsets of a section: runs of records with the same owner and type.
fn rrsets(records: &[Record]) -> Vec<&[Record]> {
    let mut sets = Vec::new();
    let mut start = 0;
    for i in 1..=records.len() {
        let ends = i == records.len()
            || records[i].record_type() != records[start].record_type()
            // Names compare without case.
            || records[i].name != records[start].name;
        if ends {
            sets.push(&records[start..i]);
            start = i;
        }
    }
    sets
}

/// A name right after `wire` (an owner's wire form) in canonical order
/// that no name below `wire` precedes: its first label with a zero byte
/// appended, or, when that would not fit, with its last byte incremented
/// (past the upper-case letters, which canonical order reads as lower
/// case). `None` when neither is possible (a label ending in 0xff at the
/// longest length). Never `wire` itself: an NSEC pointing at its own owner
/// would deny the whole zone.
fn successor(wire: &[u8]) -> Option<Vec<u8>> {
    let first = usize::from(*wire.first()?);
    if first == 0 {
        return None;
    }
    if first < 63 && wire.len() < 255 {
        let mut next = Vec::with_capacity(wire.len() + 1);
        next.push(wire[0] + 1);
        next.extend_from_slice(&wire[1..=first]);
        next.push(0);
        next.extend_from_slice(&wire[first + 1..]);
        return Some(next);
    }
    let mut next = wire.to_vec();
    let last = next.get_mut(first)?;
    *last = match *last {
        0xff => return None,
        // Canonical order reads upper-case letters as lower case: skip them.
        b'@'..=b'Z' => b'[',
        b => b + 1,
    };
    Some(next)
}

/// The Compact Denial NSEC at `owner` (RFC 9824 §3): `types` are the types
/// the name has (`None`: it does not exist, so NXNAME). Its next name is
/// `\000.owner`, or for a delegation (a name below the cut would be the
/// child's) or a name too long for that, `successor(owner)`.
fn nsec(owner: &Name, ttl: u32, types: Option<&[RType]>, zone: &Zone) -> Option<Record> {
    let mut codes: Vec<u16> = match types {
        None => vec![NXNAME],
        Some(t) => t.iter().map(|t| t.code()).collect(),
    };
    codes.extend([RType::RRSIG.code(), RType::NSEC.code()]);
    let delegation = types.is_some_and(|t| t.contains(&RType::Ns)) && convert::qname(owner) != zone.apex();
    let mut wire = Vec::with_capacity(owner.len() + 4);
    canonical_name(owner, &mut wire);
    let mut next = if !delegation && wire.len() + 2 <= 255 { [&[1, 0][..], &wire].concat() } else { successor(&wire)? };
    next.extend(type_bitmap(&mut codes));
    Some(Record::from_rdata(owner.clone(), ttl, RData::Unknown { code: RecordType::NSEC, rdata: NULL::with(next) }))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A state with one zone signed by a fresh Ed25519 KSK and ZSK.
    fn signed_state() -> State {
        use switchboard_domain::dnssec::Policy;
        use switchboard_domain::{Command, ZoneSpec};
        let apex = "signed.test.";
        let zone = ZoneSpec { dnssec: Some(Policy::new(Algorithm::Ed25519)), ..crate::fixture::zone(apex) };
        crate::fixture::state_of(std::iter::once(Command::PutZone { zone }).chain(crate::fixture::signing_keys(apex)))
    }

    #[test]
    fn a_cached_signature_is_reused_until_its_refresh_and_never_past_its_expiry() {
        let state = signed_state();
        let zone = state.zone("signed.test.").unwrap();
        let signed = state.signed_zone("signed.test.").unwrap();
        let counters = Arc::new(SignCounters::default());
        let signer = Signer::new(counters.clone(), 16);
        let a = Record::from_rdata(
            Name::from_ascii("www.signed.test.").unwrap(),
            300,
            RData::A(hickory_proto::rr::rdata::A::new(192, 0, 2, 1)),
        );
        let now = 1_800_000_000;
        let first = signer.sign_with(zone, signed, std::slice::from_ref(&a), now);
        let again = signer.sign_with(zone, signed, std::slice::from_ref(&a), now + 10);
        assert_eq!(first.len(), 1);
        assert_eq!(first, again, "the same signature, from the cache");
        assert_eq!((counters.made.load(Ordering::Relaxed), counters.cached.load(Ordering::Relaxed)), (1, 1));
        // Within the refresh time of its expiry: made again.
        let validity = signed.policy.rrsig_validity_s;
        let refreshed = signer.sign_with(zone, signed, std::slice::from_ref(&a), now + validity - signed.policy.refresh_s(zone.max_ttl()));
        assert_ne!(refreshed, first);
        assert_eq!(counters.made.load(Ordering::Relaxed), 2);
        // Left in the cache, unasked, until past its expiry: made again, never served.
        let idle = Signer::new(Arc::new(SignCounters::default()), 16);
        let old = idle.sign_with(zone, signed, std::slice::from_ref(&a), now);
        assert_ne!(idle.sign_with(zone, signed, std::slice::from_ref(&a), now + 3 * validity), old);
        assert_eq!(idle.counters.made.load(Ordering::Relaxed), 2);
        // Another TTL or other data is another signature.
        let other =
            Record::from_rdata(Name::from_ascii("www.signed.test.").unwrap(), 60, RData::A(hickory_proto::rr::rdata::A::new(192, 0, 2, 1)));
        assert_ne!(signer.sign_with(zone, signed, std::slice::from_ref(&other), now), first);
    }

    #[test]
    fn a_denial_never_points_at_its_own_owner() {
        let zone_state = signed_state();
        let zone = zone_state.zone("signed.test.").unwrap();
        // Owners of 253, 254 and 255 octets on the wire, and one whose first label is 63 octets.
        let long = |first: usize, total: usize| {
            let mut labels = vec![vec![b'a'; first]];
            let mut len = first + 1 + "signed.test.".len() + 1;
            while len + 2 <= total {
                let n = (total - len - 1).min(63);
                labels.push(vec![b'b'; n]);
                len += n + 1;
            }
            labels.push(b"signed".to_vec());
            labels.push(b"test".to_vec());
            Name::from_labels(labels).unwrap()
        };
        for owner in [long(10, 253), long(10, 254), long(10, 255), long(63, 200), long(63, 255)] {
            for types in [None, Some(&[RType::A][..]), Some(&[RType::Ns][..])] {
                let Some(record) = nsec(&owner, 60, types, zone) else { continue };
                let RData::Unknown { rdata, .. } = &record.data else { panic!("NSEC data") };
                let mut wire = Vec::new();
                canonical_name(&owner, &mut wire);
                let data = &rdata.anything;
                let mut i = 0;
                while data[i] != 0 {
                    i += 1 + usize::from(data[i]);
                }
                let next = &data[..=i];
                assert_ne!(next, wire.as_slice(), "{owner}: the next name is the owner");
                assert!(next.len() <= 255, "{owner}: a next name of {} octets", next.len());
            }
        }
        assert_eq!(successor(&[3, b'a', b'b', b'c', 0]), Some(vec![4, b'a', b'b', b'c', 0, 0]));
        let full = [&[63u8][..], &[b'z'; 63], &[0]].concat();
        assert_eq!(successor(&full).map(|n| n[63]), Some(b'{'));
        let upper = [&[63u8][..], &[b'@'; 63], &[0]].concat();
        assert_eq!(successor(&upper).map(|n| n[63]), Some(b'['), "never an upper-case letter");
    }

    #[test]
    fn bitmaps_as_rfc_4034_shows_them() {
        // RFC 4034 §4.3: A MX RRSIG NSEC TYPE1234.
        let bitmap = type_bitmap(&mut vec![1, 15, 46, 47, 1234]);
        assert_eq!(
            bitmap,
            [
                0x00, 0x06, 0x40, 0x01, 0x00, 0x00, 0x00, 0x03, 0x04, 0x1b, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
                0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x20
            ]
        );
    }

    #[test]
    fn keys_load_only_when_they_match_their_public_key() {
        for algorithm in [Algorithm::EcdsaP256Sha256, Algorithm::Ed25519] {
            let rng = SystemRandom::new();
            let (public_key, private_key) = match algorithm {
                Algorithm::EcdsaP256Sha256 => {
                    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
                    let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng).unwrap();
                    (pair.public_key().as_ref()[1..].to_vec(), pkcs8.as_ref().to_vec())
                }
                Algorithm::Ed25519 => {
                    let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
                    (Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap().public_key().as_ref().to_vec(), pkcs8.as_ref().to_vec())
                }
            };
            assert_eq!(public_key.len(), algorithm.public_key_len());
            let key = DnssecKey {
                id: 1,
                role: switchboard_domain::dnssec::KeyRole::Zsk,
                algorithm,
                public_key,
                private_key: switchboard_domain::dnssec::Secret(private_key),
                state: switchboard_domain::dnssec::KeyState::Active,
                since_ms: 0,
                created_ms: 0,
            };
            assert!(load(&key, &SystemRandom::new()).is_some());
            let other = DnssecKey { public_key: vec![7; algorithm.public_key_len()], ..key };
            assert!(load(&other, &SystemRandom::new()).is_none(), "a key that is not the published one is refused");
        }
    }
}
