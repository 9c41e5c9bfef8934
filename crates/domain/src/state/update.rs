//! The RFC 2136 UPDATE command: prerequisites checked, then every change
//! made, on a copy of the state (O(1) with persistent maps) that replaces
//! this one only when all of it succeeded: an update is all or nothing.

use std::collections::BTreeMap;

use crate::command::Outcome;
use crate::credential::tenant_of_name;
use crate::error::CommandError;
use crate::kind::Effect;
use crate::masterfile;
use crate::model::{self, ZoneSpec};
use crate::name;
use crate::record::{RData, RType, Record};
use crate::resolve::{resolve, Rcode};
use crate::update::{Prerequisite, Update, UpdateOp, UpdateRcode, UPDATE_ITEMS_MAX};

use super::State;

fn refuse(rcode: UpdateRcode, reason: impl Into<String>) -> CommandError {
    CommandError::Update { rcode, reason: reason.into() }
}

/// Whether `name` is an `_acme-challenge` name.
fn is_acme(name: &str) -> bool {
    name.strip_prefix(model::ACME_LABEL).is_some_and(|rest| rest.starts_with('.'))
}

/// The tenant whose rule-made name `name` is, or is below. A record below
/// a rule-made name would make that name an empty non-terminal, no longer
/// the rules' (and its tenant's challenge would go with it), so it is
/// refused as the name itself is. `tenant_of_name` already covers the
/// `tenant-host` subtree; what is left is a `{service}-{tenant}` name,
/// always one label below the apex.
fn rule_made<'s>(state: &'s State, name: &str, apex: &str) -> Option<&'s std::sync::Arc<model::Tenant>> {
    if let Some(t) = tenant_of_name(state, name) {
        return Some(t);
    }
    let labels = name::relative_labels(name, apex)?;
    if labels.len() < 2 {
        return None;
    }
    tenant_of_name(state, &format!("{}.{apex}", labels.last()?))
}

impl State {
    /// The records `name` owns as the zone serves it now, of `rtype` (every
    /// type for `RType::Any`): static records, challenges and what the rules
    /// make, not the targets a CNAME leads to.
    fn owned(&self, name: &str, rtype: RType) -> Vec<Record> {
        let a = resolve(self, name, rtype);
        if a.rcode != Rcode::NoError || !a.authoritative {
            return Vec::new();
        }
        a.answers.into_iter().filter(|r| r.name == name && (rtype == RType::Any || r.rtype() == rtype)).collect()
    }

    fn check_prerequisite(&self, p: &Prerequisite) -> Result<(), CommandError> {
        match p {
            Prerequisite::NameInUse(n) if self.owned(n, RType::Any).is_empty() => {
                Err(refuse(UpdateRcode::NxDomain, format!("{n} has no records")))
            }
            Prerequisite::NameNotInUse(n) if !self.owned(n, RType::Any).is_empty() => {
                Err(refuse(UpdateRcode::YxDomain, format!("{n} has records")))
            }
            Prerequisite::RrsetExists(n, t) if self.owned(n, *t).is_empty() => Err(refuse(UpdateRcode::NxRrset, format!("{n} has no {t}"))),
            Prerequisite::RrsetNotExists(n, t) if !self.owned(n, *t).is_empty() => {
                Err(refuse(UpdateRcode::YxRrset, format!("{n} has {t} records")))
            }
            Prerequisite::RrsetIs(n, t, want) => {
                let mut have: Vec<RData> = self.owned(n, *t).into_iter().map(|r| r.data).collect();
                let mut want = want.clone();
                let key = |d: &RData| format!("{d:?}");
                have.sort_by_key(key);
                want.sort_by_key(key);
                want.dedup();
                if have == want {
                    Ok(())
                } else {
                    Err(refuse(UpdateRcode::NxRrset, format!("the {t} records at {n} are not those given")))
                }
            }
            _ => Ok(()),
        }
    }

    pub(super) fn update(&mut self, rev: u64, at_ms: u64, u: &Update, fx: &mut Vec<Effect>) -> Result<Outcome, CommandError> {
        let apex = name::absolute("apex", &u.apex)?;
        let Some(zone) = self.zone(&apex).cloned() else { return Err(CommandError::not_found("zone", &apex, "apex")) };
        if u.prerequisites.len() + u.ops.len() > UPDATE_ITEMS_MAX {
            return Err(refuse(UpdateRcode::Refused, format!("more than {UPDATE_ITEMS_MAX} prerequisites and changes")));
        }
        let in_zone = |n: &str| self.zone_for(n).is_some_and(|z| z.apex() == apex);
        for n in u.prerequisites.iter().map(Prerequisite::name).chain(u.ops.iter().map(UpdateOp::name)) {
            if !in_zone(n) {
                return Err(refuse(UpdateRcode::NotZone, format!("{n} is not in zone {apex}")));
            }
        }
        for p in &u.prerequisites {
            self.check_prerequisite(p)?;
        }
        // Every change on a copy; it replaces this state only if all succeed.
        let mut next = self.clone();
        let mut effects = Vec::new();
        let acme_served = matches!(zone.acme_rule(), Some(None));
        let mut ns = zone.spec.ns.clone();
        // The static records of each name the update touches, as they become.
        let mut touched: BTreeMap<String, Vec<Record>> = BTreeMap::new();
        let mut acme_ops = Vec::new();
        for op in &u.ops {
            let n = op.name();
            // `_acme-challenge` TXT changes are challenges where the zone
            // serves them, unless static records hold the name.
            if acme_served && is_acme(n) && matches!(op.rtype(), Some(RType::Txt) | None) && zone.records_at(n).is_none() {
                acme_ops.push(op);
                continue;
            }
            if let Some(t) = rule_made(self, n, &apex) {
                return Err(refuse(
                    UpdateRcode::Refused,
                    format!(
                        "{n} is made by the zone's rules, or is below a name they make (tenant {}): change the tenant, not its records",
                        t.id
                    ),
                ));
            }
            let node = touched.entry(n.to_string()).or_insert_with(|| zone.records_at(n).map(<[Record]>::to_vec).unwrap_or_default());
            if n == apex {
                match op {
                    // The serial is derived; SOA changes are ignored (RFC 2136 §3.4.2.2).
                    _ if op.rtype() == Some(RType::Soa) => continue,
                    // The apex always has SOA and NS: a CNAME beside them
                    // is ignored (RFC 2136 §3.4.2.2), not refused.
                    UpdateOp::Add(Record { data: RData::Cname(_), .. }) => continue,
                    UpdateOp::Add(Record { data: RData::Ns(target), .. }) => {
                        if !ns.contains(target) {
                            ns.push(target.clone());
                        }
                        continue;
                    }
                    // The apex NS set is never emptied (§3.4.2.4).
                    UpdateOp::DeleteRr(_, RData::Ns(target)) => {
                        if ns.len() > 1 {
                            ns.retain(|x| x != target);
                        }
                        continue;
                    }
                    UpdateOp::DeleteRrset(_, RType::Ns) => continue,
                    UpdateOp::DeleteName(_) => {
                        node.clear();
                        continue;
                    }
                    _ => {}
                }
            }
            // RFC 2136 §3.4.2.2: a CNAME added where the name has other
            // data, or other data added where it has a CNAME, is ignored;
            // a CNAME added where one is replaces it. (A zone would refuse
            // the pair, and with it the whole update.)
            if let UpdateOp::Add(rec) = op {
                let challenged = self.challenge(n).is_some_and(|c| !c.values.is_empty());
                if rec.rtype() == RType::Cname {
                    if challenged || node.iter().any(|r| r.rtype() != RType::Cname) {
                        continue;
                    }
                    node.retain(|r| r.rtype() != RType::Cname);
                } else if node.iter().any(|r| r.rtype() == RType::Cname) {
                    continue;
                }
            }
            apply_static(node, op, &apex)?;
        }
        let invalid = |e: CommandError| match e {
            CommandError::Invalid(v) => refuse(UpdateRcode::Refused, v.to_string()),
            other => other,
        };
        if ns != zone.spec.ns {
            // The apex NS set is the zone's own: written with it.
            next.put_zone(rev, at_ms, &ZoneSpec { ns, ..zone.full_spec() }, &mut effects).map_err(invalid)?;
        }
        next.put_nodes(rev, &apex, touched.into_iter().collect(), &mut effects).map_err(invalid)?;
        for op in acme_ops {
            next.update_challenge(rev, at_ms, op, &mut effects)?;
        }
        *self = next;
        fx.extend(effects);
        Ok(Outcome::Zone { apex })
    }

    /// One `_acme-challenge` TXT change as a challenge: an added value gets
    /// the default expiry of `acme set`; deleting what is not there is no
    /// change (RFC 2136 §3.4.2).
    fn update_challenge(&mut self, rev: u64, at_ms: u64, op: &UpdateOp, fx: &mut Vec<Effect>) -> Result<(), CommandError> {
        let n = op.name();
        let present = self.challenge(n).is_some_and(|c| !c.values.is_empty());
        let result = match op {
            UpdateOp::Add(Record { ttl, data: RData::Txt(strings), .. }) => {
                self.set_acme(rev, at_ms, n, &strings.concat(), Some(*ttl), None, fx).map(|_| ())
            }
            UpdateOp::DeleteRr(_, RData::Txt(strings)) => {
                let value = strings.concat();
                if self.challenge(n).is_some_and(|c| c.values.iter().any(|v| v.value == value)) {
                    self.clear_acme(rev, n, Some(&value), fx).map(|_| ())
                } else {
                    Ok(())
                }
            }
            UpdateOp::DeleteRrset(..) | UpdateOp::DeleteName(_) if present => self.clear_acme(rev, n, None, fx).map(|_| ()),
            _ => Ok(()),
        };
        result.map_err(|e| match e {
            CommandError::Invalid(v) => refuse(UpdateRcode::Refused, v.to_string()),
            CommandError::FailedPrecondition { reason, .. } => refuse(UpdateRcode::Refused, reason),
            other => other,
        })
    }
}

/// One change to the static records of one name (its records as they
/// are so far in the update).
fn apply_static(node: &mut Vec<Record>, op: &UpdateOp, apex: &str) -> Result<(), CommandError> {
    match op {
        UpdateOp::Add(rec) => {
            if RType::parse_static("type", &rec.rtype().to_string()).is_err() {
                return Err(refuse(UpdateRcode::Refused, format!("{} records are not served", rec.rtype())));
            }
            let data = held(&rec.data, apex).map_err(|e| refuse(UpdateRcode::Refused, e.to_string()))?;
            if !node.iter().any(|r| r.data == data) {
                node.push(Record { name: rec.name.clone(), ttl: rec.ttl, data });
            }
        }
        UpdateOp::DeleteRrset(_, t) => node.retain(|r| r.rtype() != *t),
        UpdateOp::DeleteName(_) => node.clear(),
        UpdateOp::DeleteRr(_, data) => {
            if let Ok(data) = held(data, apex) {
                node.retain(|r| r.data != data);
            }
        }
    }
    Ok(())
}

/// Record data as a zone write would hold it: read back from its text
/// (names lower-case, as every stored name is).
fn held(data: &RData, apex: &str) -> Result<RData, crate::error::ValidationError> {
    RData::parse("data", data.rtype(), &masterfile::rdata_text(data), apex)
}
