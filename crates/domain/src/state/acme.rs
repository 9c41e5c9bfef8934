//! ACME challenge commands: set and clear TXT values at `_acme-challenge`
//! names, and expire them by the leader's stamp.

use std::collections::BTreeSet;
use std::sync::Arc;

use crate::command::Outcome;
use crate::credential;
use crate::error::{CommandError, ValidationError};
use crate::kind::{Effect, Kind};
use crate::model::{self, Challenge, ChallengeValue, Rule};
use crate::record;

use super::State;

impl State {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn set_acme(
        &mut self,
        rev: u64,
        at_ms: u64,
        name: &str,
        value: &str,
        ttl: Option<u32>,
        expires_in_s: Option<u64>,
        fx: &mut Vec<Effect>,
    ) -> Result<Outcome, CommandError> {
        let owner = self.acme_zone_check(name)?;
        model::acme_value("value", value)?;
        let ttl = record::ttl("ttl", ttl.unwrap_or(model::ACME_TTL_DEFAULT))?;
        let expires_in = expires_in_s.unwrap_or(model::ACME_EXPIRES_IN_DEFAULT_S);
        if expires_in == 0 || expires_in > model::ACME_EXPIRES_IN_MAX_S {
            return Err(ValidationError::new("expires_in_s", format!("must be 1 to {} seconds", model::ACME_EXPIRES_IN_MAX_S)).into());
        }
        let tenant = credential::tenant_of_name(self, &owner).map(|t| t.id.to_string());
        // Values set under another owner never carry over (the command that
        // changed the owner removed them already; this keeps it so whatever
        // the history of the stored value).
        let mut c = match self.challenge(&owner) {
            Some(c) if c.tenant == tenant => (**c).clone(),
            _ => Challenge { name: owner.clone(), values: Vec::new(), tenant, revision: rev },
        };
        let v = ChallengeValue { value: value.to_string(), ttl, expires_at_ms: at_ms.saturating_add(expires_in.saturating_mul(1000)) };
        let full = c.values.len() >= model::ACME_VALUES_MAX;
        match c.values.iter_mut().find(|x| x.value == value) {
            Some(x) => *x = v,
            None if full => {
                return Err(CommandError::precondition(
                    "value",
                    format!("{owner} already has {} values, the most allowed", model::ACME_VALUES_MAX),
                ));
            }
            None => c.values.push(v),
        }
        // One TTL per RRset (RFC 2181 §5.2): the latest set decides.
        for x in &mut c.values {
            x.ttl = ttl;
        }
        c.revision = rev;
        Ok(self.store_challenge(c, fx))
    }

    pub(super) fn clear_acme(&mut self, rev: u64, name: &str, value: Option<&str>, fx: &mut Vec<Effect>) -> Result<Outcome, CommandError> {
        let owner = model::acme_owner("name", name)?;
        let Some(c) = self.challenge(&owner) else {
            return Err(CommandError::not_found("challenge", &owner, "name"));
        };
        let mut c = (**c).clone();
        match value {
            Some(v) => {
                let Some(pos) = c.values.iter().position(|x| x.value == v) else {
                    return Err(CommandError::not_found("challenge value", v, "value"));
                };
                c.values.remove(pos);
            }
            None => c.values.clear(),
        }
        c.revision = rev;
        Ok(self.store_challenge(c, fx))
    }

    pub(super) fn expire_acme(&mut self, rev: u64, at_ms: u64, fx: &mut Vec<Effect>) -> Outcome {
        let expired: Vec<Arc<Challenge>> =
            self.challenges().filter(|c| c.values.iter().any(|v| v.expires_at_ms <= at_ms)).cloned().collect();
        let mut removed = 0;
        for c in expired {
            let mut c = (*c).clone();
            let before = c.values.len();
            c.values.retain(|v| v.expires_at_ms > at_ms);
            removed += before - c.values.len();
            c.revision = rev;
            self.store_challenge(c, fx);
        }
        Outcome::Expired(removed)
    }

    /// Remove each challenge among `owners` whose name now belongs to
    /// another owner than the one recorded when it was set: the rule that
    /// a challenge belongs to its setter's tenant, applied in the command
    /// that changed the ownership, so at the same revision on every node.
    /// The callers pass only the names their command can affect, so a
    /// tenant write does not walk every challenge.
    pub(super) fn drop_reowned_challenges(&mut self, owners: BTreeSet<String>, fx: &mut Vec<Effect>) {
        for owner in owners {
            let Some(c) = self.challenge(&owner) else { continue };
            let now = credential::tenant_of_name(self, &owner).map(|t| t.id.as_str());
            if c.tenant.as_deref() != now {
                fx.push(self.set(Kind::Acme, &owner, None));
            }
        }
    }

    /// The stored challenges whose owner a change of the tenant key `key`
    /// (an id or an alias appearing or going) can change, in every zone
    /// with rules: `_acme-challenge.{service}-{key}.<apex>` under a
    /// `service-tenant` rule, and `_acme-challenge.{key}.<apex>` with every
    /// challenge below `{key}.<apex>` under a `tenant-host` rule (one range
    /// of the tree-ordered index). Nothing else reads `key`.
    pub(super) fn challenges_of_key(&self, key: &str) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        // Every tenant and alias write asks: with no challenge stored (the
        // usual case), build no names.
        if self.tables.challenges.is_empty() {
            return out;
        }
        for zone in self.zones() {
            let apex = zone.apex();
            for rule in &zone.spec.rules {
                match rule {
                    Rule::ServiceTenant { services, .. } => {
                        for s in services {
                            let owner = format!("{}.{s}-{key}.{apex}", model::ACME_LABEL);
                            if self.challenge(&owner).is_some() {
                                out.insert(owner);
                            }
                        }
                    }
                    Rule::TenantHost { .. } => out.extend(self.challenges_below(&format!("{key}.{apex}"))),
                    Rule::Acme { .. } => {}
                }
            }
        }
        out
    }

    /// Store a challenge, or drop it when it has no values left.
    fn store_challenge(&mut self, c: Challenge, fx: &mut Vec<Effect>) -> Outcome {
        let effect = if c.values.is_empty() { self.set(Kind::Acme, &c.name, None) } else { self.put(c.clone()) };
        fx.push(effect);
        Outcome::Acme(Box::new(c))
    }

    /// The owner name for a challenge at `name`, if a served zone answers
    /// it from stored challenges.
    fn acme_zone_check(&self, name: &str) -> Result<String, CommandError> {
        let owner = model::acme_owner("name", name)?;
        let Some(zone) = self.zone_for(&owner) else {
            return Err(CommandError::precondition("name", format!("no served zone holds {owner}")));
        };
        let apex = zone.apex();
        match zone.acme_rule() {
            None => Err(CommandError::precondition("name", format!("zone {apex} has no acme rule"))),
            Some(Some(vz)) => {
                Err(CommandError::precondition("name", format!("zone {apex} delegates challenges to {vz}: set it at {owner}{vz} instead")))
            }
            Some(None) if zone.delegation_for(&owner).is_some() => {
                Err(CommandError::precondition("name", format!("{owner} is below a delegation of zone {apex}")))
            }
            Some(None) if zone.records_at(&owner).is_some() => {
                Err(CommandError::precondition("name", format!("{owner} has static records, which take precedence")))
            }
            Some(None) => Ok(owner),
        }
    }
}
