//! The leader's side of DNSSEC, a leader job (`jobs`): each tick it asks
//! every signed zone's plan (`SignedZone::plan`) for its next step and
//! proposes it once due, with the key material it makes here when the step
//! is a new key. Every step
//! carries the zone's revision as expected, so a step planned from a state
//! that moved on (another leader's, a zone write) is refused, not doubled.

use std::time::Duration;

use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, Ed25519KeyPair, KeyPair as _, ECDSA_P256_SHA256_FIXED_SIGNING};
use switchboard_domain::dnssec::{Algorithm, Planned, Secret, Step};
use switchboard_domain::{Command, Guard, State};

use crate::jobs::{Due, LeaderJob};

/// How often the leader looks at the signed zones' plans.
const DNSSEC_TICK: Duration = Duration::from_millis(500);

/// A new key for `algorithm`: its DNSKEY public key and its PKCS#8 private key.
fn generate(algorithm: Algorithm) -> Option<(Vec<u8>, Vec<u8>)> {
    let rng = SystemRandom::new();
    match algorithm {
        Algorithm::EcdsaP256Sha256 => {
            let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).ok()?;
            let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng).ok()?;
            // The uncompressed point less its 0x04: x and y, as DNSKEY holds them (RFC 6605 §4).
            Some((pair.public_key().as_ref().get(1..)?.to_vec(), pkcs8.as_ref().to_vec()))
        }
        Algorithm::Ed25519 => {
            let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).ok()?;
            let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).ok()?;
            Some((pair.public_key().as_ref().to_vec(), pkcs8.as_ref().to_vec()))
        }
    }
}

/// Every signed zone's next key step, proposed once due (`SignedZone::plan`).
pub(crate) struct KeySteps;

impl LeaderJob for KeySteps {
    fn name(&self) -> &'static str {
        "dnssec key steps"
    }

    fn every(&self) -> Duration {
        DNSSEC_TICK
    }

    /// After a step, the plan is asked again at once: a new zone's KSK and
    /// ZSK are made one after the other, not a tick apart.
    fn again_after_applied(&self) -> bool {
        true
    }

    fn due(&mut self, state: &State, now_ms: u64) -> Vec<Due> {
        state
            .signed_zones()
            .filter_map(|signed| {
                let zone = state.zone(&signed.apex)?;
                let next = signed.plan(zone.spec.ttl, zone.max_ttl())?;
                if next.due_ms > now_ms {
                    return None;
                }
                let step = match next.planned {
                    Planned::Generate { role, state } => {
                        let Some((public_key, private_key)) = generate(signed.policy.algorithm) else {
                            tracing::error!(zone = %signed.apex, "making a DNSSEC key failed");
                            return None;
                        };
                        Step::Generate { role, state, public_key, private_key: Secret(private_key) }
                    }
                    Planned::Transition { changes } => Step::Transition { changes },
                    Planned::Finish => Step::Finish,
                };
                tracing::info!(zone = %signed.apex, step = %next.what, "DNSSEC key step");
                Some(Due {
                    command: Command::DnssecStep { apex: signed.apex.clone(), step },
                    guard: Guard { expected_revision: Some(signed.revision), ..Guard::default() },
                    about: signed.apex.clone(),
                })
            })
            .collect()
    }
}
