//! Zone commands: put and delete a zone.

use crate::command::Outcome;
use crate::error::CommandError;
use crate::kind::{Effect, Kind};
use crate::model::{Zone, ZoneSpec};
use crate::name;

use super::State;

impl State {
    pub(super) fn put_zone(&mut self, rev: u64, spec: &ZoneSpec, fx: &mut Vec<Effect>) -> Result<Outcome, CommandError> {
        let z = Zone::compile(spec, rev)?;
        let apex = z.apex().to_string();
        fx.push(self.put(z));
        Ok(Outcome::Zone { apex })
    }

    pub(super) fn delete_zone(&mut self, apex: &str, fx: &mut Vec<Effect>) -> Result<Outcome, CommandError> {
        let apex = name::absolute("apex", apex)?;
        fx.push(self.remove_existing(Kind::Zone, &apex, "apex")?);
        Ok(Outcome::Deleted)
    }
}
