//! Batches: many small writes as one command, applied in row order at one
//! revision, each row checked (compare-and-set) and answered on its own;
//! an atomic batch is undone whole at its first refusal.

use crate::command::{check_batch, BatchOutcome, BatchRow, Outcome};
use crate::error::CommandError;
use crate::kind::Effect;

use super::State;

impl State {
    pub(super) fn batch(
        &mut self,
        rev: u64,
        at_ms: u64,
        rows: &[BatchRow],
        atomic: bool,
        fx: &mut Vec<Effect>,
    ) -> Result<Outcome, CommandError> {
        check_batch("commands", rows)?;
        // O(1): the tables are persistent maps. What an atomic batch undoes to.
        let before = atomic.then(|| self.clone());
        let mut refused = Vec::new();
        for (i, row) in rows.iter().enumerate() {
            let done = fx.len();
            let result = match row.expected_revision {
                Some(expected) => self.check_revision(&row.command, expected),
                None => Ok(()),
            }
            .and_then(|()| self.dispatch(rev, at_ms, &row.command, fx));
            let Err(e) = result else { continue };
            debug_assert_eq!(fx.len(), done, "a refused row changed state");
            fx.truncate(done);
            refused.push((i as u32, e));
            if let Some(before) = before {
                *self = before;
                fx.clear();
                return Ok(Outcome::Batch(Box::new(BatchOutcome { rows: rows.len() as u32, applied: false, refused })));
            }
        }
        Ok(Outcome::Batch(Box::new(BatchOutcome { rows: rows.len() as u32, applied: true, refused })))
    }
}
