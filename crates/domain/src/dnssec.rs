//! DNSSEC as replicated data: a signed zone's policy (the zone file's
//! `[dnssec]` table), its keys and where each stands in its rollover, and
//! the plan that says what the leader does next and when.
//!
//! The keys are made by the leader (it has the randomness; this crate has
//! no I/O) and every key event — generate, publish as ready, activate,
//! retire, remove — is an entry of the log (`Command::DnssecStep`), so every
//! node moves through a rollover at the same revision. `plan` is a pure
//! function of the stored `SignedZone`, the zone and a time: the leader
//! asks it each tick and proposes the step once it is due; the status API
//! asks it what comes next.
//!
//! Rollovers follow RFC 7583: a ZSK by pre-publication (published, then
//! active while the old one is retired, then the old one removed), a KSK by
//! double signature with CDS/CDNSKEY (RFC 7344) naming the new key once
//! resolvers can have seen it, so a parent that scans for them follows. The
//! parent's side is not observed: the old KSK retires `ksk_submission_delay`
//! after the new one's CDS appeared, a time the operator sets to cover the
//! parent's scanning interval and its DS TTL.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::ValidationError;
use crate::name;

/// Seconds in a day, for the zone file's `*_days` timings.
pub const DAY_S: u64 = 86_400;
/// The longest a resolver caches anything (RFC 8767 §4: a week), in seconds.
pub const CACHE_TTL_MAX_S: u32 = 7 * 86_400;
/// The most keys one signed zone holds at once (a rollover of each kind
/// in flight needs four).
pub const KEYS_MAX: usize = 8;

/// A signing algorithm (RFC 8624's recommended ones).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Algorithm {
    /// ECDSA P-256 with SHA-256, number 13 (RFC 6605).
    EcdsaP256Sha256,
    /// Ed25519, number 15 (RFC 8080).
    Ed25519,
}

impl Algorithm {
    pub fn parse(field: &str, text: &str) -> Result<Algorithm, ValidationError> {
        match text.to_ascii_lowercase().as_str() {
            "ecdsap256sha256" | "13" => Ok(Algorithm::EcdsaP256Sha256),
            "ed25519" | "15" => Ok(Algorithm::Ed25519),
            _ => Err(ValidationError::new(field, format!("algorithm {text:?} is not supported (ecdsap256sha256, ed25519)"))),
        }
    }

    /// Its number in DNSKEY, RRSIG and DS records.
    pub fn number(self) -> u8 {
        match self {
            Algorithm::EcdsaP256Sha256 => 13,
            Algorithm::Ed25519 => 15,
        }
    }

    /// Its name in the zone file and the API.
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::EcdsaP256Sha256 => "ecdsap256sha256",
            Algorithm::Ed25519 => "ed25519",
        }
    }

    /// Bytes of its public key in a DNSKEY record.
    pub fn public_key_len(self) -> usize {
        match self {
            Algorithm::EcdsaP256Sha256 => 64,
            Algorithm::Ed25519 => 32,
        }
    }
}

/// A zone's `[dnssec]` table: how it is signed. Timings in seconds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Policy {
    pub algorithm: Algorithm,
    /// How long a signature is valid from when it is made.
    pub rrsig_validity_s: u64,
    /// A signature with less validity left than this is made again; when
    /// `None`, as Knot DNS: the propagation delay plus the zone's largest TTL.
    pub rrsig_refresh_s: Option<u64>,
    /// How long a ZSK signs before the next one replaces it (0: only by hand).
    pub zsk_lifetime_s: u64,
    /// How long a KSK signs before the next one replaces it (0: only by hand).
    pub ksk_lifetime_s: u64,
    /// TTL of the DNSKEY, CDS and CDNSKEY sets; the zone's TTL when `None`.
    pub dnskey_ttl: Option<u32>,
    /// How long a change takes to reach every node and secondary.
    pub propagation_delay_s: u64,
    /// How long after a new KSK's CDS appears the old KSK retires: the
    /// parent's scanning interval plus its DS TTL.
    pub ksk_submission_delay_s: u64,
}

impl Policy {
    /// Knot DNS's defaults: signatures valid 14 days, made again with the
    /// propagation delay plus the zone's largest TTL left, ZSKs replaced
    /// every 30 days, KSKs only by hand, a propagation delay of an hour; a
    /// day for the parent to take a new DS.
    pub fn new(algorithm: Algorithm) -> Policy {
        Policy {
            algorithm,
            rrsig_validity_s: 14 * DAY_S,
            rrsig_refresh_s: None,
            zsk_lifetime_s: 30 * DAY_S,
            ksk_lifetime_s: 0,
            dnskey_ttl: None,
            propagation_delay_s: 3600,
            ksk_submission_delay_s: DAY_S,
        }
    }

    /// Check the timings fit together; errors name the field under `dnssec`.
    pub fn validate(&self) -> Result<(), ValidationError> {
        let err = |field: &str, reason: String| ValidationError::new(format!("dnssec.{field}"), reason);
        if self.rrsig_validity_s < 60 {
            return Err(err("rrsig_validity_days", "signatures must be valid for at least a minute".into()));
        }
        if self.rrsig_validity_s > 365 * DAY_S {
            return Err(err("rrsig_validity_days", "at most 365 days".into()));
        }
        if self.rrsig_refresh_s.is_some_and(|r| r >= self.rrsig_validity_s) {
            return Err(err("rrsig_refresh_days", "must be shorter than rrsig_validity_days".into()));
        }
        for (field, v) in [("zsk_lifetime_days", self.zsk_lifetime_s), ("ksk_lifetime_days", self.ksk_lifetime_s)] {
            if v > 0 && v < 2 * self.propagation_delay_s.max(1) {
                return Err(err(field, "must be 0 (only by hand) or at least twice propagation_delay".into()));
            }
            if v > 100 * 365 * DAY_S {
                return Err(err(field, "at most 100 years".into()));
            }
        }
        if let Some(ttl) = self.dnskey_ttl {
            crate::record::ttl("dnssec.dnskey_ttl", ttl)?;
        }
        if self.propagation_delay_s > 30 * DAY_S {
            return Err(err("propagation_delay_seconds", "at most 30 days".into()));
        }
        if self.ksk_submission_delay_s > 365 * DAY_S {
            return Err(err("ksk_submission_delay_seconds", "at most 365 days".into()));
        }
        Ok(())
    }

    /// Seconds of validity left below which a signature is made again, in
    /// a zone whose largest TTL is `max_ttl` (never more than half the validity).
    pub fn refresh_s(&self, max_ttl: u32) -> u64 {
        let knot = self.propagation_delay_s + u64::from(max_ttl);
        self.rrsig_refresh_s.unwrap_or(knot).min(self.rrsig_validity_s / 2)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum KeyRole {
    /// Key-signing key: signs the DNSKEY set; the parent's DS names it.
    Ksk,
    /// Zone-signing key: signs everything else.
    Zsk,
}

impl KeyRole {
    pub fn name(self) -> &'static str {
        match self {
            KeyRole::Ksk => "ksk",
            KeyRole::Zsk => "zsk",
        }
    }
}

/// Where a key stands (RFC 7583's states, as far as a server acts on them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum KeyState {
    /// In the DNSKEY set so resolvers learn it; a ZSK does not sign yet, a
    /// KSK signs the DNSKEY set but no CDS names it.
    Published,
    /// A KSK that CDS and CDNSKEY name: the parent may publish its DS.
    Ready,
    /// Signing: the ZSK signs the zone, the KSK the DNSKEY set.
    Active,
    /// Still in the DNSKEY set while what it signed expires from caches;
    /// a retired ZSK no longer signs, a retired KSK still signs the DNSKEY set.
    Retired,
}

impl KeyState {
    pub fn name(self) -> &'static str {
        match self {
            KeyState::Published => "published",
            KeyState::Ready => "ready",
            KeyState::Active => "active",
            KeyState::Retired => "retired",
        }
    }
}

/// Private key bytes (PKCS#8). `Debug` never shows them.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(pub Vec<u8>);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

/// One key of a signed zone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DnssecKey {
    /// Unique within the zone, in order of creation.
    pub id: u32,
    pub role: KeyRole,
    pub algorithm: Algorithm,
    /// The DNSKEY public key field.
    pub public_key: Vec<u8>,
    pub private_key: Secret,
    pub state: KeyState,
    /// When it entered `state` (leader's clock, ms).
    pub since_ms: u64,
    pub created_ms: u64,
}

/// DNSKEY flags: zone key, plus SEP for a KSK.
const FLAGS_ZSK: u16 = 256;
const FLAGS_KSK: u16 = 257;
/// The DNSKEY protocol field, always 3 (RFC 4034 §2.1.2).
const PROTOCOL: u8 = 3;
/// DS digest type SHA-256 (RFC 4509).
pub const DIGEST_SHA256: u8 = 2;

impl DnssecKey {
    pub fn flags(&self) -> u16 {
        match self.role {
            KeyRole::Ksk => FLAGS_KSK,
            KeyRole::Zsk => FLAGS_ZSK,
        }
    }

    /// The DNSKEY RDATA (flags, protocol, algorithm, public key).
    pub fn dnskey_rdata(&self) -> Vec<u8> {
        let mut rdata = Vec::with_capacity(4 + self.public_key.len());
        rdata.extend_from_slice(&self.flags().to_be_bytes());
        rdata.push(PROTOCOL);
        rdata.push(self.algorithm.number());
        rdata.extend_from_slice(&self.public_key);
        rdata
    }

    /// The key tag (RFC 4034 Appendix B).
    pub fn key_tag(&self) -> u16 {
        key_tag(&self.dnskey_rdata())
    }

    /// Whether it signs the DNSKEY set (every KSK still published) or the
    /// rest of the zone (the active ZSK).
    pub fn signs_dnskey(&self) -> bool {
        self.role == KeyRole::Ksk
    }

    pub fn signs_zone(&self) -> bool {
        self.role == KeyRole::Zsk && self.state == KeyState::Active
    }

    /// Whether CDS and CDNSKEY name it.
    pub fn in_cds(&self) -> bool {
        self.role == KeyRole::Ksk && matches!(self.state, KeyState::Ready | KeyState::Active)
    }

    /// The DS record's digest of this key under `apex` (SHA-256 of the
    /// owner's wire form and the DNSKEY RDATA, RFC 4034 §5.1.4).
    pub fn ds_digest(&self, apex: &str) -> Vec<u8> {
        let mut h = Sha256::new();
        h.update(name::wire(apex));
        h.update(self.dnskey_rdata());
        h.finalize().to_vec()
    }
}

/// The key tag of a DNSKEY RDATA (RFC 4034 Appendix B).
pub fn key_tag(rdata: &[u8]) -> u16 {
    let mut acc: u32 = 0;
    for (i, b) in rdata.iter().enumerate() {
        acc += if i % 2 == 0 { u32::from(*b) << 8 } else { u32::from(*b) };
    }
    acc += (acc >> 16) & 0xffff;
    (acc & 0xffff) as u16
}

/// Rollovers asked for by hand, waiting for the leader to start them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Requested {
    pub zsk: bool,
    pub ksk: bool,
}

/// A signed zone's keys and their rollover state: the stored kind `Dnssec`,
/// by apex. It exists while the zone is signed or being unsigned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedZone {
    pub apex: String,
    pub policy: Policy,
    pub keys: Vec<DnssecKey>,
    /// The id the next key gets.
    pub next_id: u32,
    pub requested: Requested,
    /// `[dnssec]` was removed at this time (ms): CDS and CDNSKEY ask the
    /// parent to delete its DS (RFC 8078 §4) while the zone stays signed,
    /// and the keys go once the parent can have followed.
    pub unsigning_since_ms: Option<u64>,
    pub revision: u64,
}

/// One step of a zone's key life, as committed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Step {
    /// Add a key made by the leader, in `state`.
    Generate { role: KeyRole, state: KeyState, public_key: Vec<u8>, private_key: Secret },
    /// Move keys to new states (`None`: remove the key), all at once.
    Transition { changes: Vec<(u32, Option<KeyState>)> },
    /// The unsigning is over: the keys go and the zone is served unsigned.
    Finish,
}

/// What the leader does next for a zone; `Generate` leaves the key
/// material to the leader.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Planned {
    Generate { role: KeyRole, state: KeyState },
    Transition { changes: Vec<(u32, Option<KeyState>)> },
    Finish,
}

/// The next step and when it is due (ms), with what it is, for the status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Next {
    pub planned: Planned,
    pub due_ms: u64,
    pub what: String,
}

impl SignedZone {
    /// The TTL of the DNSKEY, CDS and CDNSKEY sets in a zone of default `ttl`.
    pub fn dnskey_ttl(&self, ttl: u32) -> u32 {
        self.policy.dnskey_ttl.unwrap_or(ttl)
    }

    /// The key that signs everything but the DNSKEY set.
    pub fn zsk(&self) -> Option<&DnssecKey> {
        self.keys.iter().find(|k| k.signs_zone())
    }

    /// Whether answers are signed: a ZSK is active and a KSK signs the keys.
    pub fn signing(&self) -> bool {
        self.zsk().is_some() && self.keys.iter().any(DnssecKey::signs_dnskey)
    }

    /// The next step for this zone. `max_ttl` is the largest TTL of the
    /// zone's records (what a retired ZSK's signatures may be cached for).
    pub fn plan(&self, zone_ttl: u32, max_ttl: u32) -> Option<Next> {
        let ms = |s: u64| s.saturating_mul(1000);
        let p = &self.policy;
        let prop = ms(p.propagation_delay_s);
        // What a resolver may have cached of the DNSKEY set, and of
        // signatures over the rest of the zone.
        let i_pub = ms(u64::from(self.dnskey_ttl(zone_ttl))) + prop;
        // No resolver keeps a record longer than a week (RFC 8767 §4 caps
        // at that), whatever the TTL says.
        let i_ret = ms(u64::from(max_ttl.max(self.dnskey_ttl(zone_ttl)).min(CACHE_TTL_MAX_S))) + prop;
        let next = |planned: Planned, due_ms: u64, what: String| Some(Next { planned, due_ms, what });

        if let Some(since) = self.unsigning_since_ms {
            // The parent scans the CDS delete, drops its DS, and caches let go of it.
            let due = since + ms(p.ksk_submission_delay_s) + i_ret;
            return next(Planned::Finish, due, "remove the keys: the zone is served unsigned".into());
        }
        let of = |role: KeyRole, state: KeyState| self.keys.iter().filter(move |k| k.role == role && k.state == state);
        let first = |role, state| of(role, state).min_by_key(|k| k.since_ms);
        if !self.keys.iter().any(|k| k.role == KeyRole::Ksk) {
            return next(Planned::Generate { role: KeyRole::Ksk, state: KeyState::Active }, 0, "generate the first KSK".into());
        }
        if !self.keys.iter().any(|k| k.role == KeyRole::Zsk) {
            return next(Planned::Generate { role: KeyRole::Zsk, state: KeyState::Active }, 0, "generate the first ZSK".into());
        }
        let mut candidates: Vec<Next> = Vec::new();
        let mut push = |planned, due_ms, what: String| candidates.push(Next { planned, due_ms, what });

        // ZSK: a retired one goes once its signatures have expired from
        // caches; a published one takes over once resolvers know it; the
        // active one is replaced at the end of its life or when asked.
        for k in of(KeyRole::Zsk, KeyState::Retired) {
            push(Planned::Transition { changes: vec![(k.id, None)] }, k.since_ms + i_ret, format!("remove retired ZSK {}", k.key_tag()));
        }
        let active_zsk = first(KeyRole::Zsk, KeyState::Active);
        if let Some(new) = first(KeyRole::Zsk, KeyState::Published) {
            let mut changes = vec![(new.id, Some(KeyState::Active))];
            changes.extend(active_zsk.map(|old| (old.id, Some(KeyState::Retired))));
            push(Planned::Transition { changes }, new.since_ms + i_pub, format!("activate ZSK {}, retire the old one", new.key_tag()));
        } else if let Some(zsk) = active_zsk {
            if self.requested.zsk {
                push(Planned::Generate { role: KeyRole::Zsk, state: KeyState::Published }, 0, "start the ZSK rollover asked for".into());
            } else if p.zsk_lifetime_s > 0 {
                let due = zsk.since_ms + ms(p.zsk_lifetime_s);
                push(
                    Planned::Generate { role: KeyRole::Zsk, state: KeyState::Published },
                    due,
                    format!("ZSK {} reaches its lifetime: start a rollover", zsk.key_tag()),
                );
            }
        } else {
            push(Planned::Generate { role: KeyRole::Zsk, state: KeyState::Active }, 0, "generate a ZSK: none is active".into());
        }

        // KSK: published → ready (CDS names it) once resolvers know it;
        // ready → active, the old one retired, once the parent can have
        // followed; a retired one goes once its DNSKEY expired from caches.
        for k in of(KeyRole::Ksk, KeyState::Retired) {
            push(Planned::Transition { changes: vec![(k.id, None)] }, k.since_ms + i_pub, format!("remove retired KSK {}", k.key_tag()));
        }
        let active_ksk = first(KeyRole::Ksk, KeyState::Active);
        if let Some(new) = first(KeyRole::Ksk, KeyState::Ready) {
            let mut changes = vec![(new.id, Some(KeyState::Active))];
            changes.extend(active_ksk.map(|old| (old.id, Some(KeyState::Retired))));
            let due = new.since_ms + ms(p.ksk_submission_delay_s);
            push(
                Planned::Transition { changes },
                due,
                format!("activate KSK {} (its DS at the parent), retire the old one", new.key_tag()),
            );
        } else if let Some(new) = first(KeyRole::Ksk, KeyState::Published) {
            push(
                Planned::Transition { changes: vec![(new.id, Some(KeyState::Ready))] },
                new.since_ms + i_pub,
                format!("publish CDS and CDNSKEY for KSK {}", new.key_tag()),
            );
        } else if let Some(ksk) = active_ksk {
            if self.requested.ksk {
                push(Planned::Generate { role: KeyRole::Ksk, state: KeyState::Published }, 0, "start the KSK rollover asked for".into());
            } else if p.ksk_lifetime_s > 0 {
                let due = ksk.since_ms + ms(p.ksk_lifetime_s);
                push(
                    Planned::Generate { role: KeyRole::Ksk, state: KeyState::Published },
                    due,
                    format!("KSK {} reaches its lifetime: start a rollover", ksk.key_tag()),
                );
            }
        } else {
            push(Planned::Generate { role: KeyRole::Ksk, state: KeyState::Active }, 0, "generate a KSK: none is active".into());
        }
        // A zone holding all the keys it may waits for a retired one to go.
        let full = self.keys.len() >= KEYS_MAX;
        candidates.into_iter().filter(|n| !(full && matches!(n.planned, Planned::Generate { .. }))).min_by_key(|n| n.due_ms)
    }

    /// This zone after `step` at `at_ms`, or why it cannot be taken. The
    /// result always has at most one active key of each role, and never
    /// loses its last active one.
    pub fn stepped(&self, step: &Step, at_ms: u64, revision: u64) -> Result<SignedZone, String> {
        let mut z = self.clone();
        z.revision = revision;
        match step {
            Step::Generate { role, state, public_key, private_key } => {
                if z.unsigning_since_ms.is_some() {
                    return Err("the zone is being unsigned: no new keys".into());
                }
                if public_key.len() != z.policy.algorithm.public_key_len() {
                    return Err(format!(
                        "a {} public key has {} bytes, not {}",
                        z.policy.algorithm.name(),
                        z.policy.algorithm.public_key_len(),
                        public_key.len()
                    ));
                }
                if private_key.0.is_empty() {
                    return Err("no private key".into());
                }
                if z.keys.len() >= KEYS_MAX {
                    return Err(format!("the zone holds {KEYS_MAX} keys already"));
                }
                if *state == KeyState::Retired || (*state == KeyState::Ready && *role == KeyRole::Zsk) {
                    return Err(format!("a new key cannot start {}", state.name()));
                }
                z.keys.push(DnssecKey {
                    id: z.next_id,
                    role: *role,
                    algorithm: z.policy.algorithm,
                    public_key: public_key.clone(),
                    private_key: private_key.clone(),
                    state: *state,
                    since_ms: at_ms,
                    created_ms: at_ms,
                });
                z.next_id += 1;
                match role {
                    KeyRole::Zsk => z.requested.zsk = false,
                    KeyRole::Ksk => z.requested.ksk = false,
                }
            }
            Step::Transition { changes } => {
                for (id, to) in changes {
                    let Some(i) = z.keys.iter().position(|k| k.id == *id) else { return Err(format!("no key {id}")) };
                    match to {
                        None => {
                            z.keys.remove(i);
                        }
                        Some(s) => {
                            z.keys[i].state = *s;
                            z.keys[i].since_ms = at_ms;
                        }
                    }
                }
            }
            Step::Finish => {
                if z.unsigning_since_ms.is_none() {
                    return Err("the zone is not being unsigned".into());
                }
                z.keys.clear();
            }
        }
        for role in [KeyRole::Ksk, KeyRole::Zsk] {
            let active = |k: &&DnssecKey| k.role == role && k.state == KeyState::Active;
            let before = self.keys.iter().filter(active).count();
            let after = z.keys.iter().filter(active).count();
            if after > 1 {
                return Err(format!("two active {}s", role.name()));
            }
            if before > 0 && after == 0 && !matches!(step, Step::Finish) {
                return Err(format!("it would leave no active {}", role.name()));
            }
        }
        Ok(z)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(id: u32, role: KeyRole, state: KeyState, since_ms: u64) -> DnssecKey {
        DnssecKey {
            id,
            role,
            algorithm: Algorithm::Ed25519,
            public_key: vec![id as u8; 32],
            private_key: Secret(vec![1]),
            state,
            since_ms,
            created_ms: since_ms,
        }
    }

    fn zone(keys: Vec<DnssecKey>) -> SignedZone {
        let mut policy = Policy::new(Algorithm::Ed25519);
        policy.propagation_delay_s = 10;
        policy.dnskey_ttl = Some(20);
        policy.zsk_lifetime_s = 1000;
        policy.ksk_submission_delay_s = 100;
        SignedZone {
            apex: "example.test.".into(),
            policy,
            keys,
            next_id: 9,
            requested: Requested::default(),
            unsigning_since_ms: None,
            revision: 1,
        }
    }

    /// Walk a zone through its plan, taking each step when due, and
    /// check the states it passes through.
    fn run(mut z: SignedZone, until_ms: u64) -> Vec<(u64, Vec<(KeyRole, KeyState)>)> {
        let mut seen = Vec::new();
        let mut now = 0;
        let mut rev = 2;
        while now <= until_ms {
            let Some(next) = z.plan(300, 300) else { break };
            now = now.max(next.due_ms);
            if now > until_ms {
                break;
            }
            let step = match next.planned {
                Planned::Generate { role, state } => {
                    Step::Generate { role, state, public_key: vec![z.next_id as u8; 32], private_key: Secret(vec![1]) }
                }
                Planned::Transition { changes } => Step::Transition { changes },
                Planned::Finish => Step::Finish,
            };
            z = z.stepped(&step, now, rev).expect("planned steps apply");
            rev += 1;
            seen.push((now, z.keys.iter().map(|k| (k.role, k.state)).collect()));
            assert!(z.signing() || z.keys.len() < 2, "signing throughout: {:?}", z.keys);
        }
        seen
    }

    #[test]
    fn a_new_zone_gets_both_keys_at_once_then_rolls_its_zsk_by_prepublication() {
        let seen = run(zone(vec![]), 1_400_000);
        use KeyRole::*;
        use KeyState::*;
        assert_eq!(seen[0], (0, vec![(Ksk, Active)]));
        assert_eq!(seen[1], (0, vec![(Ksk, Active), (Zsk, Active)]));
        // At the end of the ZSK's life (1000 s) a new one is published…
        assert_eq!(seen[2], (1_000_000, vec![(Ksk, Active), (Zsk, Active), (Zsk, Published)]));
        // …takes over once the DNSKEY TTL and propagation passed (30 s)…
        assert_eq!(seen[3], (1_030_000, vec![(Ksk, Active), (Zsk, Retired), (Zsk, Active)]));
        // …and the old one goes when its signatures expired (300 + 10 s).
        assert_eq!(seen[4], (1_340_000, vec![(Ksk, Active), (Zsk, Active)]));
    }

    #[test]
    fn a_ksk_rollover_publishes_cds_for_the_new_key_before_the_old_one_retires() {
        let mut z = zone(vec![key(1, KeyRole::Ksk, KeyState::Active, 0), key(2, KeyRole::Zsk, KeyState::Active, 0)]);
        z.policy.zsk_lifetime_s = 0;
        z.requested.ksk = true;
        let seen = run(z, 10_000_000);
        use KeyRole::*;
        use KeyState::*;
        let states: Vec<_> = seen.iter().map(|(_, s)| s.clone()).collect();
        assert_eq!(
            states,
            vec![
                vec![(Ksk, Active), (Zsk, Active), (Ksk, Published)],
                vec![(Ksk, Active), (Zsk, Active), (Ksk, Ready)],
                vec![(Ksk, Retired), (Zsk, Active), (Ksk, Active)],
                vec![(Zsk, Active), (Ksk, Active)],
            ]
        );
        // Ready after the DNSKEY TTL and propagation; active after the submission delay.
        assert_eq!(seen[1].0, 30_000);
        assert_eq!(seen[2].0, 130_000);
    }

    #[test]
    fn unsigning_removes_the_keys_after_the_parent_could_follow() {
        let mut z = zone(vec![key(1, KeyRole::Ksk, KeyState::Active, 0), key(2, KeyRole::Zsk, KeyState::Active, 0)]);
        z.unsigning_since_ms = Some(5_000);
        let next = z.plan(300, 300).expect("a step");
        assert_eq!(next.planned, Planned::Finish);
        assert_eq!(next.due_ms, 5_000 + 100_000 + 310_000);
        assert!(z.stepped(&Step::Finish, next.due_ms, 3).expect("finish").keys.is_empty());
    }

    #[test]
    fn steps_that_break_the_key_set_are_refused() {
        let z = zone(vec![key(1, KeyRole::Ksk, KeyState::Active, 0), key(2, KeyRole::Zsk, KeyState::Active, 0)]);
        let remove_zsk = Step::Transition { changes: vec![(2, None)] };
        assert!(z.stepped(&remove_zsk, 1, 2).unwrap_err().contains("no active zsk"));
        let second = Step::Generate { role: KeyRole::Zsk, state: KeyState::Active, public_key: vec![0; 32], private_key: Secret(vec![1]) };
        assert!(z.stepped(&second, 1, 2).unwrap_err().contains("two active"));
        let short =
            Step::Generate { role: KeyRole::Zsk, state: KeyState::Published, public_key: vec![0; 31], private_key: Secret(vec![1]) };
        assert!(z.stepped(&short, 1, 2).is_err());
        assert!(z.stepped(&Step::Transition { changes: vec![(7, None)] }, 1, 2).is_err());
    }

    #[test]
    fn key_tag_and_ds_match_rfc_8080s_example() {
        use base64::Engine as _;
        // RFC 8080 §6: example.com. DNSKEY 257 3 15 l02Woi0i… has DS 3613 15 2 3aa5ab37….
        let public_key = base64::engine::general_purpose::STANDARD.decode("l02Woi0iS8Aa25FQkUd9RMzZHJpBoRQwAQEX1SxZJA4=").unwrap();
        let k = DnssecKey { public_key, ..key(1, KeyRole::Ksk, KeyState::Active, 0) };
        assert_eq!(k.key_tag(), 3613);
        let hex: String = k.ds_digest("example.com.").iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, "3aa5ab37efce57f737fc1627013fee07bdf241bd10f3b1964ab55c78e79a304b");
    }

    #[test]
    fn secrets_never_show_in_debug() {
        let k = key(1, KeyRole::Ksk, KeyState::Active, 0);
        assert!(!format!("{k:?}").contains("[1]"));
        assert!(format!("{k:?}").contains("Secret(..)"));
    }
}
