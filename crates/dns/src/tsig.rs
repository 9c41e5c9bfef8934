//! TSIG (RFC 8945) on the DNS port: find the TSIG record of a message,
//! verify it against the keys of the published state, and sign responses
//! (every message of a transfer, each over the MAC of the one before).
//!
//! Everything works on the wire bytes: the MAC covers the message as it was
//! received, less its TSIG record, so nothing is re-encoded. HMACs are
//! RustCrypto's; comparisons of MACs are constant-time.

use std::sync::Arc;

use hmac::{Hmac, Mac};
use switchboard_domain::tsig::Algorithm;
use switchboard_domain::{State, TsigKey};

/// The TSIG RR type and the class it is sent in (RFC 8945 §4.2).
const TYPE_TSIG: u16 = 250;
const CLASS_ANY: u16 = 255;
/// Seconds of clock difference we sign with (RFC 8945 §10: 300).
pub(crate) const FUDGE: u16 = 300;
/// Seconds of clock difference accepted by default, whatever fudge a
/// client asks for: a captured message verifies only this long either side
/// of its time, which bounds how long it can be replayed (RFC 8945 §10
/// recommends 300).
pub const TSIG_FUDGE_MAX_DEFAULT: u16 = 300;
/// The largest accepted clock difference a node may be configured with:
/// a message verifies for twice its fudge, and every replay within that
/// span must find its first answer still in the request-id dedup window,
/// so twice this is at most the window.
pub const TSIG_FUDGE_MAX_LIMIT: u16 = {
    let half_window_secs = switchboard_domain::state::REQUEST_ID_WINDOW_MS / 1000 / 2;
    if half_window_secs > u16::MAX as u64 {
        u16::MAX
    } else {
        half_window_secs as u16
    }
};

/// TSIG errors (RFC 8945 §3), in the record's Error field; the RCODE of
/// the response is NOTAUTH.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(clippy::enum_variant_names)] // the RFC's names
pub(crate) enum TsigError {
    BadSig = 16,
    BadKey = 17,
    BadTime = 18,
    BadTrunc = 22,
}

/// A domain name in a message: its canonical wire form (lower-case, no
/// compression) and its text (absolute, lower-case).
#[derive(Debug, Clone)]
struct WireName {
    wire: Vec<u8>,
    text: String,
}

/// Read the name at `pos`, following compression pointers (only backwards,
/// so a loop cannot form); returns it and where the name ends in place.
fn read_name(msg: &[u8], mut pos: usize) -> Option<(WireName, usize)> {
    let mut wire = Vec::new();
    let mut text = String::new();
    let mut end = None;
    loop {
        let len = *msg.get(pos)?;
        match len & 0xc0 {
            0x00 if len == 0 => {
                wire.push(0);
                if text.is_empty() {
                    text.push('.');
                }
                return Some((WireName { wire, text }, end.unwrap_or(pos + 1)));
            }
            0x00 => {
                let label = msg.get(pos + 1..pos + 1 + usize::from(len))?;
                wire.push(len);
                for b in label {
                    let b = b.to_ascii_lowercase();
                    wire.push(b);
                    text.push(char::from(b));
                }
                text.push('.');
                if wire.len() > 255 {
                    return None;
                }
                pos += 1 + usize::from(len);
            }
            0xc0 => {
                let target = usize::from(u16::from_be_bytes([len & 0x3f, *msg.get(pos + 1)?]));
                if target >= pos {
                    return None;
                }
                end.get_or_insert(pos + 2);
                pos = target;
            }
            _ => return None,
        }
    }
}

/// Where the name at `pos` ends, without reading it.
fn skip_name(msg: &[u8], mut pos: usize) -> Option<usize> {
    loop {
        let len = *msg.get(pos)?;
        match len & 0xc0 {
            0x00 if len == 0 => return Some(pos + 1),
            0x00 => pos += 1 + usize::from(len),
            0xc0 => return Some(pos + 2),
            _ => return None,
        }
    }
}

fn u16_at(msg: &[u8], pos: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*msg.get(pos)?, *msg.get(pos + 1)?]))
}

/// The TSIG record of a received message.
#[derive(Debug, Clone)]
pub(crate) struct Found {
    /// Where the record starts: the MAC covers the bytes before it.
    start: usize,
    key: WireName,
    algorithm: WireName,
    time: u64,
    fudge: u16,
    mac: Vec<u8>,
    original_id: u16,
    error: u16,
    other: Vec<u8>,
}

/// What a message carries.
#[derive(Debug)]
pub(crate) enum Signature {
    Unsigned,
    Signed(Found),
    /// A TSIG record that is not the last record, or cannot be read:
    /// FORMERR (RFC 8945 §5.1).
    Malformed,
}

/// Find the TSIG record of `msg` (a message whose header was read).
pub(crate) fn find(msg: &[u8]) -> Signature {
    match walk(msg) {
        Some(Some(found)) => Signature::Signed(found),
        Some(None) => Signature::Unsigned,
        None => Signature::Malformed,
    }
}

/// `None`: malformed; `Some(None)`: no TSIG record.
fn walk(msg: &[u8]) -> Option<Option<Found>> {
    let count = |i: usize| u16_at(msg, 4 + 2 * i).map(usize::from);
    let (qd, an, ns, ar) = (count(0)?, count(1)?, count(2)?, count(3)?);
    let mut pos = 12;
    for _ in 0..qd {
        pos = skip_name(msg, pos)? + 4;
    }
    let records = an + ns + ar;
    for i in 0..records {
        let start = pos;
        let after_name = skip_name(msg, pos)?;
        let rtype = u16_at(msg, after_name)?;
        let rdlen = usize::from(u16_at(msg, after_name + 8)?);
        let rdata = after_name + 10;
        pos = rdata + rdlen;
        if pos > msg.len() {
            return None;
        }
        if rtype == TYPE_TSIG {
            // Only as the very last record (RFC 8945 §5.1).
            if i + 1 != records || ar == 0 {
                return None;
            }
            return parse(msg, start, rdata, pos).map(Some);
        }
    }
    Some(None)
}

/// The TSIG record starting at `start`, its RDATA at `rdata..end`.
fn parse(msg: &[u8], start: usize, rdata: usize, end: usize) -> Option<Found> {
    let (key, _) = read_name(msg, start)?;
    let (algorithm, mut pos) = read_name(msg, rdata)?;
    let field = |from: usize, len: usize| msg.get(from..from + len).filter(|_| from + len <= end);
    let time = field(pos, 6)?.iter().fold(0u64, |t, b| t << 8 | u64::from(*b));
    let fudge = u16_at(msg, pos + 6)?;
    let mac_len = usize::from(u16_at(msg, pos + 8)?);
    pos += 10;
    let mac = field(pos, mac_len)?.to_vec();
    pos += mac_len;
    let original_id = u16_at(msg, pos)?;
    let error = u16_at(msg, pos + 2)?;
    let other_len = usize::from(u16_at(msg, pos + 4)?);
    let other = field(pos + 6, other_len)?.to_vec();
    if pos + 6 + other_len != end {
        return None;
    }
    Some(Found { start, key, algorithm, time, fudge, mac, original_id, error, other })
}

/// One HMAC in progress, of any algorithm.
enum Hasher {
    Md5(Hmac<md5::Md5>),
    Sha1(Hmac<sha1::Sha1>),
    Sha224(Hmac<sha2::Sha224>),
    Sha256(Hmac<sha2::Sha256>),
    Sha384(Hmac<sha2::Sha384>),
    Sha512(Hmac<sha2::Sha512>),
}

impl Hasher {
    /// HMAC takes a key of any length: `None` cannot happen, but is not unwrapped.
    fn new(algorithm: Algorithm, key: &[u8]) -> Option<Hasher> {
        Some(match algorithm {
            Algorithm::HmacMd5 => Hasher::Md5(Hmac::new_from_slice(key).ok()?),
            Algorithm::HmacSha1 => Hasher::Sha1(Hmac::new_from_slice(key).ok()?),
            Algorithm::HmacSha224 => Hasher::Sha224(Hmac::new_from_slice(key).ok()?),
            Algorithm::HmacSha256 => Hasher::Sha256(Hmac::new_from_slice(key).ok()?),
            Algorithm::HmacSha384 => Hasher::Sha384(Hmac::new_from_slice(key).ok()?),
            Algorithm::HmacSha512 => Hasher::Sha512(Hmac::new_from_slice(key).ok()?),
        })
    }

    fn update(&mut self, bytes: &[u8]) {
        match self {
            Hasher::Md5(h) => h.update(bytes),
            Hasher::Sha1(h) => h.update(bytes),
            Hasher::Sha224(h) => h.update(bytes),
            Hasher::Sha256(h) => h.update(bytes),
            Hasher::Sha384(h) => h.update(bytes),
            Hasher::Sha512(h) => h.update(bytes),
        }
    }

    fn finish(self) -> Vec<u8> {
        match self {
            Hasher::Md5(h) => h.finalize().into_bytes().to_vec(),
            Hasher::Sha1(h) => h.finalize().into_bytes().to_vec(),
            Hasher::Sha224(h) => h.finalize().into_bytes().to_vec(),
            Hasher::Sha256(h) => h.finalize().into_bytes().to_vec(),
            Hasher::Sha384(h) => h.finalize().into_bytes().to_vec(),
            Hasher::Sha512(h) => h.finalize().into_bytes().to_vec(),
        }
    }

    /// Whether `mac` (possibly truncated, RFC 8945 §5.2.2.1) is this HMAC's
    /// leftmost bytes, compared in constant time.
    fn verify(self, mac: &[u8]) -> bool {
        match self {
            Hasher::Md5(h) => h.verify_truncated_left(mac).is_ok(),
            Hasher::Sha1(h) => h.verify_truncated_left(mac).is_ok(),
            Hasher::Sha224(h) => h.verify_truncated_left(mac).is_ok(),
            Hasher::Sha256(h) => h.verify_truncated_left(mac).is_ok(),
            Hasher::Sha384(h) => h.verify_truncated_left(mac).is_ok(),
            Hasher::Sha512(h) => h.verify_truncated_left(mac).is_ok(),
        }
    }
}

/// The TSIG variables (RFC 8945 §4.3.3) after the message in a digest.
fn variables(h: &mut Hasher, key: &[u8], algorithm: &[u8], time: u64, fudge: u16, error: u16, other: &[u8]) {
    h.update(key);
    h.update(&CLASS_ANY.to_be_bytes());
    h.update(&0u32.to_be_bytes());
    h.update(algorithm);
    h.update(&time.to_be_bytes()[2..]);
    h.update(&fudge.to_be_bytes());
    h.update(&error.to_be_bytes());
    h.update(&(other.len() as u16).to_be_bytes());
    h.update(other);
}

/// A verified request: who signed it.
#[derive(Debug, Clone)]
pub(crate) struct Verified {
    pub(crate) key: Arc<TsigKey>,
    /// The request id a write made from this message carries: the same for
    /// every copy of the message, so a replay is answered from the dedup
    /// window instead of applying again (`request_id`).
    pub(crate) request_id: String,
    /// What signs the response.
    pub(crate) signer: Signer,
}

/// A request whose TSIG failed: answered NOTAUTH with this signer's TSIG
/// record (unsigned, but for BADTIME).
#[derive(Debug, Clone)]
pub(crate) struct Failed {
    pub(crate) error: TsigError,
    pub(crate) signer: Signer,
}

/// Prefix of the request ids made from signed messages, for whoever reads
/// the dedup window. An API client may send such an id too, but cannot
/// guess the one a message will get without its key (the rest is a hash
/// over the MAC); and the same id with another call is refused anyway.
const REQUEST_ID_PREFIX: &str = "tsig:";
/// Bytes of the SHA-256 kept in such an id (hex-encoded: twice as many
/// characters), enough that no two messages meet by chance.
const REQUEST_ID_HASH_BYTES: usize = 16;

/// The request id of a verified message signed with the key named
/// `key_wire` (canonical wire form) and carrying `mac`. A MAC may be sent
/// truncated, and truncating a captured one leaves it valid, so only the
/// leftmost bytes every accepted MAC of `full` bytes has (RFC 8945
/// §5.2.2.1: half the hash, at least 10) are hashed: every copy of one
/// message, truncated or not, gets the same id.
fn request_id(key_wire: &[u8], mac: &[u8], full: usize) -> String {
    use sha2::Digest;
    let kept = &mac[..mac.len().min((full / 2).max(10))];
    let mut h = sha2::Sha256::new();
    h.update((key_wire.len() as u16).to_be_bytes());
    h.update(key_wire);
    h.update(kept);
    let digest = h.finalize();
    let mut id = String::with_capacity(REQUEST_ID_PREFIX.len() + 2 * REQUEST_ID_HASH_BYTES);
    id.push_str(REQUEST_ID_PREFIX);
    for b in &digest[..REQUEST_ID_HASH_BYTES] {
        id.push(char::from(b"0123456789abcdef"[usize::from(b >> 4)]));
        id.push(char::from(b"0123456789abcdef"[usize::from(b & 0xf)]));
    }
    id
}

/// Verify the TSIG record `found` of `msg` at `now` (seconds since the
/// epoch) against the keys of `state`, in the order of RFC 8945 §5.2: the
/// key, then the MAC, then the time. The time may differ from `now` by the
/// fudge the client sent, but never by more than `fudge_max`: a client
/// asking for 65,535 s would otherwise make its messages replayable for
/// 18 hours.
pub(crate) fn verify(state: &State, msg: &[u8], found: &Found, now: u64, fudge_max: u16) -> Result<Verified, Box<Failed>> {
    let unsigned = |error: TsigError| Box::new(Failed { error, signer: Signer::unsigned(found, error, now) });
    let key = match state.tsig_key(&found.key.text) {
        Some(k) if k.algorithm.wire_name() == found.algorithm.text => k.clone(),
        _ => return Err(unsigned(TsigError::BadKey)),
    };
    let full = key.algorithm.mac_len();
    let Some(mut h) = Hasher::new(key.algorithm, &key.secret) else { return Err(unsigned(TsigError::BadKey)) };
    let header_and_body = &msg[..found.start];
    let mut head = [0u8; 12];
    head.copy_from_slice(&header_and_body[..12]);
    head[..2].copy_from_slice(&found.original_id.to_be_bytes());
    let arcount = u16::from_be_bytes([head[10], head[11]]).saturating_sub(1);
    head[10..12].copy_from_slice(&arcount.to_be_bytes());
    h.update(&head);
    h.update(&header_and_body[12..]);
    variables(&mut h, &found.key.wire, &found.algorithm.wire, found.time, found.fudge, found.error, &found.other);
    if found.mac.is_empty() || found.mac.len() > full || !h.verify(&found.mac) {
        return Err(unsigned(TsigError::BadSig));
    }
    // A MAC may be truncated, but not below half the hash or 10 bytes
    // (RFC 8945 §5.2.2.1); one that does not verify is BADSIG first.
    if found.mac.len() < full && found.mac.len() < (full / 2).max(10) {
        return Err(unsigned(TsigError::BadTrunc));
    }
    let signer = Signer::new(key.clone(), found, now);
    if now.abs_diff(found.time) > u64::from(found.fudge.min(fudge_max)) {
        // Signed, over the request's MAC, with our time in Other Data so
        // the client can tell how far apart the clocks are (§5.2.3).
        let mut signer = signer;
        signer.error = TsigError::BadTime as u16;
        signer.time = found.time;
        signer.other = now.to_be_bytes()[2..].to_vec();
        return Err(Box::new(Failed { error: TsigError::BadTime, signer }));
    }
    let request_id = request_id(&found.key.wire, &found.mac, full);
    Ok(Verified { key, request_id, signer })
}

/// Signs responses to one request: the first over the request's MAC, each
/// later one (a transfer's) over the MAC of the message before it, with
/// the timers only (RFC 8945 §5.3.1).
#[derive(Debug, Clone)]
pub(crate) struct Signer {
    /// `None`: an unsigned error (BADKEY, BADSIG): the record carries no MAC.
    key: Option<Arc<TsigKey>>,
    key_wire: Vec<u8>,
    algorithm_wire: Vec<u8>,
    /// The MAC the next message is signed over (the request's at first).
    prior: Vec<u8>,
    first: bool,
    time: u64,
    error: u16,
    other: Vec<u8>,
}

impl Signer {
    fn new(key: Arc<TsigKey>, found: &Found, now: u64) -> Signer {
        Signer {
            key: Some(key),
            key_wire: found.key.wire.clone(),
            algorithm_wire: found.algorithm.wire.clone(),
            prior: found.mac.clone(),
            first: true,
            time: now,
            error: 0,
            other: Vec::new(),
        }
    }

    fn unsigned(found: &Found, error: TsigError, now: u64) -> Signer {
        Signer {
            key: None,
            key_wire: found.key.wire.clone(),
            algorithm_wire: found.algorithm.wire.clone(),
            prior: Vec::new(),
            first: true,
            time: now,
            error: error as u16,
            other: Vec::new(),
        }
    }

    /// Bytes the TSIG record adds to a message: what to leave free when
    /// fitting a response to a size.
    pub(crate) fn reserve(&self) -> usize {
        let mac = self.key.as_ref().map_or(0, |k| k.algorithm.mac_len());
        self.key_wire.len() + 10 + self.algorithm_wire.len() + 16 + mac + 6
    }

    /// Append the TSIG record to `message` (an encoded response without
    /// one) and count it in ARCOUNT; the response's ID is the Original ID.
    pub(crate) fn sign(&mut self, message: &mut Vec<u8>, now: u64) {
        if message.len() < 12 {
            return;
        }
        if self.error == 0 {
            self.time = now;
        }
        let mac = match &self.key {
            None => Vec::new(),
            Some(key) => {
                let Some(mut h) = Hasher::new(key.algorithm, &key.secret) else { return };
                h.update(&(self.prior.len() as u16).to_be_bytes());
                h.update(&self.prior);
                h.update(message);
                if self.first {
                    variables(&mut h, &self.key_wire, &self.algorithm_wire, self.time, FUDGE, self.error, &self.other);
                } else {
                    h.update(&self.time.to_be_bytes()[2..]);
                    h.update(&FUDGE.to_be_bytes());
                }
                h.finish()
            }
        };
        let id = [message[0], message[1]];
        let mut rdata = Vec::with_capacity(self.algorithm_wire.len() + 16 + mac.len() + self.other.len());
        rdata.extend_from_slice(&self.algorithm_wire);
        rdata.extend_from_slice(&self.time.to_be_bytes()[2..]);
        rdata.extend_from_slice(&FUDGE.to_be_bytes());
        rdata.extend_from_slice(&(mac.len() as u16).to_be_bytes());
        rdata.extend_from_slice(&mac);
        rdata.extend_from_slice(&id);
        rdata.extend_from_slice(&self.error.to_be_bytes());
        rdata.extend_from_slice(&(self.other.len() as u16).to_be_bytes());
        rdata.extend_from_slice(&self.other);
        message.extend_from_slice(&self.key_wire);
        message.extend_from_slice(&TYPE_TSIG.to_be_bytes());
        message.extend_from_slice(&CLASS_ANY.to_be_bytes());
        message.extend_from_slice(&0u32.to_be_bytes());
        message.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
        message.extend_from_slice(&rdata);
        let arcount = u16::from_be_bytes([message[10], message[11]]).saturating_add(1);
        message[10..12].copy_from_slice(&arcount.to_be_bytes());
        self.prior = mac;
        self.first = false;
    }
}

/// Seconds since the Unix epoch, as TSIG counts time.
pub(crate) fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchboard_domain::tsig::Allow;
    use switchboard_domain::Command;

    fn state_with(key: &TsigKey) -> State {
        crate::fixture::state_of([Command::CreateTsigKey { key: key.clone() }])
    }

    fn key(algorithm: Algorithm) -> TsigKey {
        crate::fixture::tsig_key("test-key.", algorithm, b"0123456789abcdef0123456789abcdef", Allow { transfer: true, update: false })
    }

    /// A query for `example.` SOA with id 0x1234.
    fn query() -> Vec<u8> {
        let mut m = vec![0x12, 0x34, 0x00, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
        m.extend_from_slice(b"\x07example\x00\x00\x06\x00\x01");
        m
    }

    /// Sign `msg` as a client does: the request's digest has no prior MAC.
    fn client_sign(k: &TsigKey, msg: &mut Vec<u8>, time: u64) -> Vec<u8> {
        client_sign_with(k, msg, time, FUDGE, usize::MAX)
    }

    /// `client_sign` with the client's `fudge`, its MAC cut to `mac_len` bytes.
    fn client_sign_with(k: &TsigKey, msg: &mut Vec<u8>, time: u64, fudge: u16, mac_len: usize) -> Vec<u8> {
        let key_wire = b"\x08test-key\x00".to_vec();
        let alg = WireName { wire: wire_of(k.algorithm.wire_name()), text: k.algorithm.wire_name().into() };
        let mut h = Hasher::new(k.algorithm, &k.secret).unwrap();
        h.update(msg);
        variables(&mut h, &key_wire, &alg.wire, time, fudge, 0, &[]);
        let mut mac = h.finish();
        mac.truncate(mac_len);
        let mut rdata = alg.wire.clone();
        rdata.extend_from_slice(&time.to_be_bytes()[2..]);
        rdata.extend_from_slice(&fudge.to_be_bytes());
        rdata.extend_from_slice(&(mac.len() as u16).to_be_bytes());
        rdata.extend_from_slice(&mac);
        rdata.extend_from_slice(&msg[..2]);
        rdata.extend_from_slice(&[0, 0, 0, 0]);
        msg.extend_from_slice(&key_wire);
        msg.extend_from_slice(&[0, 250, 0, 255, 0, 0, 0, 0]);
        msg.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
        msg.extend_from_slice(&rdata);
        msg[11] += 1;
        mac
    }

    fn wire_of(name: &str) -> Vec<u8> {
        let mut w = Vec::new();
        for l in name.trim_end_matches('.').split('.') {
            w.push(l.len() as u8);
            w.extend_from_slice(l.as_bytes());
        }
        w.push(0);
        w
    }

    #[test]
    fn a_signed_query_verifies_with_every_algorithm_and_not_when_changed() {
        for alg in Algorithm::ALL {
            let k = key(alg);
            let state = state_with(&k);
            let mut msg = query();
            client_sign(&k, &mut msg, 1_000_000);
            let Signature::Signed(found) = find(&msg) else { panic!("{alg:?}: not found") };
            assert_eq!(found.key.text, "test-key.");
            assert!(verify(&state, &msg, &found, 1_000_100, TSIG_FUDGE_MAX_DEFAULT).is_ok(), "{alg:?}");
            // Out of the fudge: BADTIME, still signed.
            let e = verify(&state, &msg, &found, 1_000_000 + 301, TSIG_FUDGE_MAX_DEFAULT).unwrap_err();
            assert_eq!(e.error, TsigError::BadTime);
            assert!(e.signer.key.is_some());
            // One bit of the question flipped: BADSIG, unsigned.
            let mut bad = msg.clone();
            bad[14] ^= 0x20;
            let Signature::Signed(found) = find(&bad) else { panic!() };
            let e = verify(&state, &bad, &found, 1_000_000, TSIG_FUDGE_MAX_DEFAULT).unwrap_err();
            assert_eq!(e.error, TsigError::BadSig);
            assert!(e.signer.key.is_none());
        }
    }

    #[test]
    fn the_accepted_clock_difference_is_the_clients_fudge_capped_by_ours() {
        let k = key(Algorithm::HmacSha256);
        let state = state_with(&k);
        let at = 1_000_000;
        let check = |fudge: u16, late: u64, max: u16| {
            let mut msg = query();
            client_sign_with(&k, &mut msg, at, fudge, usize::MAX);
            let Signature::Signed(found) = find(&msg) else { panic!("not found") };
            verify(&state, &msg, &found, at + late, max).map(|_| ()).map_err(|e| e.error)
        };
        // A client asking for 65,535 s gets the cap, not 18 hours.
        assert_eq!(check(u16::MAX, 65_000, TSIG_FUDGE_MAX_DEFAULT), Err(TsigError::BadTime));
        assert_eq!(check(u16::MAX, 301, TSIG_FUDGE_MAX_DEFAULT), Err(TsigError::BadTime));
        assert_eq!(check(u16::MAX, 300, TSIG_FUDGE_MAX_DEFAULT), Ok(()));
        assert_eq!(check(u16::MAX, 61, 60), Err(TsigError::BadTime));
        // A client's own smaller fudge is kept.
        assert_eq!(check(30, 31, TSIG_FUDGE_MAX_DEFAULT), Err(TsigError::BadTime));
        assert_eq!(check(30, 30, TSIG_FUDGE_MAX_DEFAULT), Ok(()));
        // Every replay within twice the largest cap finds its first answer.
        assert!(2 * u64::from(TSIG_FUDGE_MAX_LIMIT) * 1000 <= switchboard_domain::state::REQUEST_ID_WINDOW_MS);
    }

    #[test]
    fn every_copy_of_a_signed_message_has_one_request_id_and_other_messages_others() {
        let k = key(Algorithm::HmacSha256);
        let state = state_with(&k);
        let id_of = |msg: &[u8]| {
            let Signature::Signed(found) = find(msg) else { panic!("not found") };
            verify(&state, msg, &found, 50, TSIG_FUDGE_MAX_DEFAULT).map(|v| v.request_id).map_err(|e| e.error)
        };
        let mut msg = query();
        client_sign(&k, &mut msg, 50);
        let first = id_of(&msg).unwrap();
        assert!(switchboard_domain::state::request_id("id", &first).is_ok(), "{first}");
        assert_eq!(id_of(&msg).unwrap(), first);
        // Another message ID in the header (the MAC covers the original ID).
        let mut other_id = msg.clone();
        other_id[..2].copy_from_slice(&[0xab, 0xcd]);
        assert_eq!(id_of(&other_id).unwrap(), first);
        // The same message with its MAC cut to the shortest allowed.
        let mut short = query();
        client_sign_with(&k, &mut short, 50, FUDGE, 16);
        assert_eq!(id_of(&short).unwrap(), first);
        // Signed a second later: another message, another id.
        let mut later = query();
        client_sign(&k, &mut later, 51);
        assert_ne!(id_of(&later).unwrap(), first);
    }

    #[test]
    fn an_unknown_key_or_algorithm_is_badkey() {
        let k = key(Algorithm::HmacSha256);
        let state = State::default();
        let mut msg = query();
        client_sign(&k, &mut msg, 5);
        let Signature::Signed(found) = find(&msg) else { panic!() };
        assert_eq!(verify(&state, &msg, &found, 5, TSIG_FUDGE_MAX_DEFAULT).unwrap_err().error, TsigError::BadKey);
        // The key exists, with another algorithm.
        let state = state_with(&key(Algorithm::HmacSha512));
        assert_eq!(verify(&state, &msg, &found, 5, TSIG_FUDGE_MAX_DEFAULT).unwrap_err().error, TsigError::BadKey);
    }

    #[test]
    fn a_tsig_record_before_the_last_is_malformed() {
        let k = key(Algorithm::HmacSha256);
        let mut msg = query();
        client_sign(&k, &mut msg, 5);
        // Another additional record after it.
        msg.extend_from_slice(&[0, 0, 1, 0, 1, 0, 0, 0, 0, 0, 4, 1, 2, 3, 4]);
        msg[11] += 1;
        assert!(matches!(find(&msg), Signature::Malformed));
        assert!(matches!(find(&query()), Signature::Unsigned));
        // Truncated inside the record.
        let mut cut = query();
        client_sign(&k, &mut cut, 5);
        cut.truncate(cut.len() - 3);
        assert!(matches!(find(&cut), Signature::Malformed));
    }

    #[test]
    fn responses_chain_their_macs() {
        let k = key(Algorithm::HmacSha256);
        let state = state_with(&k);
        let mut msg = query();
        let request_mac = client_sign(&k, &mut msg, 77);
        let Signature::Signed(found) = find(&msg) else { panic!() };
        let mut signer = verify(&state, &msg, &found, 77, TSIG_FUDGE_MAX_DEFAULT).unwrap().signer;
        let mut first = query();
        first[2] = 0x84;
        let plain = first.clone();
        signer.sign(&mut first, 78);
        assert_eq!(first[11], 1);
        // The client's check of the first response: request MAC, message, variables.
        let Signature::Signed(r1) = find(&first) else { panic!() };
        let mut h = Hasher::new(k.algorithm, &k.secret).unwrap();
        h.update(&(request_mac.len() as u16).to_be_bytes());
        h.update(&request_mac);
        h.update(&plain);
        variables(&mut h, &r1.key.wire, &r1.algorithm.wire, 78, FUDGE, 0, &[]);
        assert!(h.verify(&r1.mac));
        // The second: the first's MAC, the message, the timers only.
        let mut second = plain.clone();
        signer.sign(&mut second, 79);
        let Signature::Signed(r2) = find(&second) else { panic!() };
        let mut h = Hasher::new(k.algorithm, &k.secret).unwrap();
        h.update(&(r1.mac.len() as u16).to_be_bytes());
        h.update(&r1.mac);
        h.update(&plain);
        h.update(&79u64.to_be_bytes()[2..]);
        h.update(&FUDGE.to_be_bytes());
        assert!(h.verify(&r2.mac));
    }

    /// RFC 4231 test case 2, through our HMAC of SHA-256 (the crate is
    /// RustCrypto's: this checks that we drive it right).
    #[test]
    fn hmac_sha256_matches_rfc_4231() {
        let mut h = Hasher::new(Algorithm::HmacSha256, b"Jefe").unwrap();
        h.update(b"what do ya want for nothing?");
        let mac: String = h.finish().iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(mac, "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
    }
}
