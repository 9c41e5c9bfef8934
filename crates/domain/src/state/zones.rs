//! Zone commands: put and delete a zone.

use crate::command::Outcome;
use crate::error::CommandError;
use crate::kind::{Effect, Kind};
use crate::model::{Zone, ZoneSpec};
use crate::name;

use super::State;

impl State {
    pub(super) fn put_zone(&mut self, rev: u64, at_ms: u64, spec: &ZoneSpec, fx: &mut Vec<Effect>) -> Result<Outcome, CommandError> {
        let z = Zone::compile(spec, rev)?;
        self.check_signing(&z.spec)?;
        let apex = z.apex().to_string();
        let compiled = z.spec.clone();
        fx.push(self.put(z));
        self.sign_zone(rev, at_ms, &apex, &compiled, fx);
        self.recheck_zone_challenges(&apex, fx);
        Ok(Outcome::Zone { apex })
    }

    pub(super) fn delete_zone(&mut self, apex: &str, fx: &mut Vec<Effect>) -> Result<Outcome, CommandError> {
        let apex = name::absolute("apex", apex)?;
        fx.push(self.remove_existing(Kind::Zone, &apex, "apex")?);
        self.drop_signing(&apex, fx);
        self.recheck_zone_challenges(&apex, fx);
        Ok(Outcome::Deleted)
    }

    /// A zone's rules, static records and cut decide who owns the names
    /// in it: after a zone write, the challenges inside it whose name
    /// changed owner go (the names outside the apex are not affected).
    fn recheck_zone_challenges(&mut self, apex: &str, fx: &mut Vec<Effect>) {
        let inside = self.challenges_below(apex).collect();
        self.drop_reowned_challenges(inside, fx);
    }
}
