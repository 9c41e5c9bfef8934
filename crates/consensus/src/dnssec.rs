//! The leader's side of DNSSEC: each tick it asks every signed zone's plan
//! (`SignedZone::plan`) for its next step and proposes it once due, with
//! the key material it makes here when the step is a new key. Every step
//! carries the zone's revision as expected, so a step planned from a state
//! that moved on (another leader's, a zone write) is refused, not doubled.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use openraft::ServerState;
use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, Ed25519KeyPair, KeyPair as _, ECDSA_P256_SHA256_FIXED_SIGNING};
use switchboard_domain::dnssec::{Algorithm, Planned, Secret, Step};
use switchboard_domain::{Command, Guard};
use tokio::sync::{mpsc, oneshot};

use crate::disk::Disk;
use crate::write::Queued;
use crate::{Published, Raft};

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

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// On the leader, take every signed zone's next step once it is due.
pub(crate) async fn key_steps(raft: Raft, published: Published, queue: mpsc::Sender<Queued>, disk: Arc<Disk>) {
    let mut tick = tokio::time::interval(DNSSEC_TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // After a step, the plan is asked again at once: a new zone's KSK and
    // ZSK are made one after the other, not a tick apart.
    let mut again = false;
    loop {
        if !again {
            tick.tick().await;
        }
        again = false;
        if raft.metrics().borrow().state != ServerState::Leader || disk.full() {
            continue;
        }
        let state = published.load_full();
        let now = now_ms();
        let due: Vec<(String, u64, Step)> = state
            .signed_zones()
            .filter_map(|signed| {
                let zone = state.zone(&signed.apex)?;
                let next = signed.plan(zone.spec.ttl, zone.max_ttl())?;
                if next.due_ms > now {
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
                Some((signed.apex.clone(), signed.revision, step))
            })
            .collect();
        drop(state);
        for (apex, revision, step) in due {
            let guard = Guard { expected_revision: Some(revision), ..Guard::default() };
            let (tx, rx) = oneshot::channel();
            if queue.send((Command::DnssecStep { apex: apex.clone(), step }, guard, tx)).await.is_err() {
                return;
            }
            // Only a step that applied is followed at once by the next; a
            // refused one waits for the next tick (and is logged), so a
            // step that cannot apply never loops.
            match rx.await {
                Ok(Ok(written)) => match written.result {
                    Ok(_) => again = true,
                    Err(e) => tracing::warn!(zone = %apex, error = %e, "DNSSEC key step refused"),
                },
                Ok(Err(e)) => tracing::debug!(zone = %apex, error = %e, "DNSSEC key step"),
                Err(_) => {}
            }
        }
    }
}
