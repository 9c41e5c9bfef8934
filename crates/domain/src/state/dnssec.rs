//! DNSSEC commands: a zone's keys follow its `[dnssec]` table (`put_zone`
//! calls `sign_zone`), step by step as the leader plans them, and a
//! rollover can be asked for by hand.

use std::sync::Arc;

use crate::command::Outcome;
use crate::dnssec::{KeyRole, Requested, SignedZone, Step};
use crate::error::CommandError;
use crate::kind::{Effect, Kind};
use crate::model::ZoneSpec;
use crate::name;

use super::State;

impl State {
    /// The zone `spec` was just stored at `rev`: start signing it, keep its
    /// policy current, or start unsigning it (CDS and CDNSKEY delete,
    /// RFC 8078 §4) when `[dnssec]` went. Refused (before anything
    /// changed) for a change of algorithm: that needs an algorithm
    /// rollover, which Switchboard does not do.
    pub(super) fn check_signing(&self, spec: &ZoneSpec) -> Result<(), CommandError> {
        let apex = name::absolute("apex", &spec.apex)?;
        if let (Some(old), Some(new)) = (self.signed_zone(&apex), &spec.dnssec) {
            if old.policy.algorithm != new.algorithm && !old.keys.is_empty() {
                return Err(CommandError::precondition(
                    "zone.dnssec.algorithm",
                    format!(
                        "the zone is signed with {}; changing the algorithm needs an algorithm rollover, which is not supported: \
                         remove [dnssec] first (the zone is unsigned once the parent dropped its DS), then sign it again",
                        old.policy.algorithm.name()
                    ),
                ));
            }
        }
        Ok(())
    }

    pub(super) fn sign_zone(&mut self, rev: u64, at_ms: u64, apex: &str, spec: &ZoneSpec, fx: &mut Vec<Effect>) {
        let old = self.signed_zone(apex).cloned();
        let new = match (old, &spec.dnssec) {
            (None, None) => return,
            (None, Some(policy)) => SignedZone {
                apex: apex.to_string(),
                policy: policy.clone(),
                keys: Vec::new(),
                next_id: 1,
                requested: Requested::default(),
                unsigning_since_ms: None,
                revision: rev,
            },
            (Some(old), Some(policy)) => {
                SignedZone { policy: policy.clone(), unsigning_since_ms: None, revision: rev, ..Arc::unwrap_or_clone(old) }
            }
            // Never signed yet: nothing for the parent to let go of.
            (Some(old), None) if old.keys.is_empty() => {
                fx.push(self.set(Kind::Dnssec, apex, None));
                return;
            }
            (Some(old), None) if old.unsigning_since_ms.is_some() => return,
            (Some(old), None) => SignedZone { unsigning_since_ms: Some(at_ms), revision: rev, ..Arc::unwrap_or_clone(old) },
        };
        fx.push(self.put(new));
    }

    /// A zone was deleted: its keys go with it.
    pub(super) fn drop_signing(&mut self, apex: &str, fx: &mut Vec<Effect>) {
        if self.signed_zone(apex).is_some() {
            fx.push(self.set(Kind::Dnssec, apex, None));
        }
    }

    pub(super) fn dnssec_step(
        &mut self,
        rev: u64,
        at_ms: u64,
        apex: &str,
        step: &Step,
        fx: &mut Vec<Effect>,
    ) -> Result<Outcome, CommandError> {
        let apex = name::absolute("apex", apex)?;
        let Some(z) = self.signed_zone(&apex) else { return Err(CommandError::not_found("signed zone", &apex, "apex")) };
        let next = z.stepped(step, at_ms, rev).map_err(|why| CommandError::precondition("step", why))?;
        if matches!(step, Step::Finish) {
            fx.push(self.set(Kind::Dnssec, &apex, None));
            // The DNSKEY, CDS and CDNSKEY sets go: the zone's serial moves
            // on (it follows the zone's revision once the keys are gone).
            if let Some(zone) = self.zone(&apex) {
                let mut zone = (**zone).clone();
                zone.revision = rev;
                fx.push(self.put(zone));
            }
        } else {
            fx.push(self.put(next));
        }
        Ok(Outcome::Zone { apex })
    }

    pub(super) fn dnssec_rollover(&mut self, rev: u64, apex: &str, role: KeyRole, fx: &mut Vec<Effect>) -> Result<Outcome, CommandError> {
        let apex = name::absolute("apex", apex)?;
        let Some(z) = self.signed_zone(&apex) else {
            return Err(CommandError::precondition("apex", format!("zone {apex} is not signed (no [dnssec] table)")));
        };
        if z.unsigning_since_ms.is_some() {
            return Err(CommandError::precondition("apex", format!("zone {apex} is being unsigned: no rollover")));
        }
        let busy = match role {
            KeyRole::Zsk => z.keys.iter().any(|k| k.role == role && k.state == crate::dnssec::KeyState::Published),
            KeyRole::Ksk => z
                .keys
                .iter()
                .any(|k| k.role == role && matches!(k.state, crate::dnssec::KeyState::Published | crate::dnssec::KeyState::Ready)),
        };
        if busy {
            return Err(CommandError::precondition("role", format!("a {} rollover is already under way", role.name())));
        }
        let mut next = SignedZone { revision: rev, ..(**z).clone() };
        match role {
            KeyRole::Zsk => next.requested.zsk = true,
            KeyRole::Ksk => next.requested.ksk = true,
        }
        fx.push(self.put(next));
        Ok(Outcome::Zone { apex })
    }
}
