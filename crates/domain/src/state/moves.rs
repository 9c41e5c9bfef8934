//! Staged moves: a tenant move that lowers its answers' TTL first, then
//! moves once every answer given before has expired, then restores the
//! TTL once every lowered answer naming the old cluster has too.

use crate::command::Outcome;
use crate::error::CommandError;
use crate::kind::{Effect, Kind};
use crate::model::{MoveStep, Rule, StagedMove, MOVE_TTL_MAX};
use crate::name;

use super::State;

impl State {
    /// The tenant's staged move, if one runs.
    pub fn staged_move(&self, tenant: &str) -> Option<&std::sync::Arc<StagedMove>> {
        if self.tables.moves.is_empty() {
            return None;
        }
        self.tables.moves.get(tenant)
    }

    /// Every staged move, by tenant id.
    pub fn staged_moves(&self) -> impl Iterator<Item = &std::sync::Arc<StagedMove>> {
        self.tables.moves.values()
    }

    /// The longest TTL any answer naming a tenant can have: over every
    /// zone's tenant rules, the rule's TTL or the zone's.
    pub fn longest_tenant_ttl(&self) -> u32 {
        self.zones()
            .flat_map(|z| {
                z.spec.rules.iter().filter_map(|r| match r {
                    Rule::ServiceTenant { ttl, .. } | Rule::TenantHost { ttl } => Some(ttl.unwrap_or(z.spec.ttl)),
                    Rule::Acme { .. } => None,
                })
            })
            .max()
            .unwrap_or(0)
    }

    pub(super) fn stage_move(
        &mut self,
        rev: u64,
        at_ms: u64,
        id: &str,
        cluster: &str,
        ttl: u32,
        fx: &mut Vec<Effect>,
    ) -> Result<Outcome, CommandError> {
        let id = name::label("id", id)?;
        let to = name::label("cluster", cluster)?;
        let Some(t) = self.tenant(&id) else {
            return Err(CommandError::not_found("tenant", &id, "id"));
        };
        if let Some(m) = self.staged_move(&id) {
            return Err(CommandError::precondition("id", format!("tenant {id:?} is already moving to {:?}; cancel that first", m.to)));
        }
        if t.cluster == to {
            return Err(CommandError::precondition("cluster", format!("tenant {id:?} is on cluster {to:?} already")));
        }
        self.check_target_cluster(&to, "cluster", false)?;
        let old_ttl = self.longest_tenant_ttl();
        if ttl == 0 || ttl > MOVE_TTL_MAX {
            return Err(CommandError::precondition("ttl_first", format!("{ttl} is outside 1..={MOVE_TTL_MAX}")));
        }
        if ttl >= old_ttl {
            return Err(CommandError::precondition(
                "ttl_first",
                format!("the tenant's answers have a TTL of at most {old_ttl} s already: move it without --ttl-first"),
            ));
        }
        let m = StagedMove {
            tenant: id,
            from: t.cluster.to_string(),
            to,
            ttl,
            old_ttl,
            step: MoveStep::Lowered,
            since_ms: at_ms,
            revision: rev,
        };
        fx.push(self.put(m.clone()));
        Ok(Outcome::Move(Box::new(m)))
    }

    pub(super) fn advance_move(&mut self, rev: u64, at_ms: u64, id: &str, fx: &mut Vec<Effect>) -> Result<Outcome, CommandError> {
        let id = name::label("id", id)?;
        let Some(m) = self.staged_move(&id).map(|m| StagedMove::clone(m)) else {
            return Err(CommandError::not_found("staged move", &id, "id"));
        };
        if at_ms < m.due_ms() {
            return Err(CommandError::precondition("id", format!("the next step of tenant {id:?}'s move is due at {} ms", m.due_ms())));
        }
        match m.step {
            MoveStep::Lowered => {
                match self.tenant(&id) {
                    Some(t) if t.cluster == m.from => {}
                    Some(t) => {
                        return Err(CommandError::precondition(
                            "id",
                            format!("tenant {id:?} left cluster {:?} for {:?} meanwhile", m.from, t.cluster),
                        ))
                    }
                    None => return Err(CommandError::not_found("tenant", &id, "id")),
                }
                self.relocate(rev, at_ms, &id, &m.to, None, false, fx)?;
                let moved = StagedMove { step: MoveStep::Moved, since_ms: at_ms, revision: rev, ..m };
                fx.push(self.put(moved.clone()));
                Ok(Outcome::Move(Box::new(moved)))
            }
            MoveStep::Moved => {
                fx.push(self.set(Kind::Move, &id, None));
                Ok(Outcome::Deleted)
            }
        }
    }

    pub(super) fn cancel_move(&mut self, id: &str, fx: &mut Vec<Effect>) -> Result<Outcome, CommandError> {
        let id = name::label("id", id)?;
        fx.push(self.remove_existing(Kind::Move, &id, "id")?);
        Ok(Outcome::Deleted)
    }

    /// A deleted tenant's staged move goes with it.
    pub(super) fn drop_move(&mut self, id: &str, fx: &mut Vec<Effect>) {
        if self.staged_move(id).is_some() {
            fx.push(self.set(Kind::Move, id, None));
        }
    }
}
