//! The request-id dedup window: a retried call with the same id is answered
//! with its first result instead of being applied again. The window is part
//! of the replicated state, so every node answers a retry the same way.

use compact_str::CompactString;

use crate::command::{Command, Envelope, Outcome, RequestRecord};
use crate::error::{CommandError, ValidationError};
use crate::kind::{Effect, Kind};

use super::State;

/// Most request ids remembered (a batch's counted with its refused rows,
/// `weight`), and for how long (by the leader's clock stamped in the
/// entries): a retry later than that applies again.
pub const REQUEST_IDS_MAX: usize = 100_000;
pub const REQUEST_ID_WINDOW_MS: u64 = 60 * 60 * 1000;
/// Longest request id.
pub const REQUEST_ID_LEN_MAX: usize = 128;

/// What a request id remembers of its call: the kind and the entity (a
/// batch's first row's, with its row count).
fn call_of(command: &Command) -> CompactString {
    match command {
        Command::Batch { rows, .. } => compact_str::format_compact!("batch[{}] {}", rows.len(), command.entity()),
        _ => compact_str::format_compact!("{} {}", command.kind(), command.entity()),
    }
}

/// What a record counts against `REQUEST_IDS_MAX`: one, plus the refusals
/// a batch's result keeps, so the window's memory stays bounded whatever
/// the batches hold.
pub(super) fn weight(record: &RequestRecord) -> u64 {
    match &record.result {
        Ok(Outcome::Batch(b)) => 1 + b.refused.len() as u64,
        _ => 1,
    }
}

/// Check a client's request id: 1 to 128 printable ASCII characters.
pub fn request_id(field: &str, id: &str) -> Result<(), ValidationError> {
    if id.is_empty() || id.len() > REQUEST_ID_LEN_MAX || !id.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(ValidationError::new(field, format!("must be 1 to {REQUEST_ID_LEN_MAX} printable ASCII characters")));
    }
    Ok(())
}

impl State {
    /// What a retry of `command` with request id `id` is answered, when this
    /// state already holds the id for the same call: the revision the call
    /// took effect at and its first result (as a replay).
    pub fn recorded(&self, id: &str, command: &Command) -> Option<(u64, Result<Outcome, CommandError>)> {
        let r = self.request(id).filter(|r| r.call == call_of(command))?;
        Some((r.revision, r.result.clone().map(|o| Outcome::Replayed { revision: r.revision, outcome: Box::new(o) })))
    }

    /// The answer to a command whose request id is malformed, or already in
    /// the window (by this entry's stamp); `None` when it is to be applied.
    pub(super) fn replay(&self, id: &str, env: &Envelope) -> Option<Result<Outcome, CommandError>> {
        if let Err(e) = request_id("options.request_id", id) {
            return Some(Err(e.into()));
        }
        let r = self.request(id).filter(|r| r.at_ms.saturating_add(REQUEST_ID_WINDOW_MS) >= env.at_ms)?;
        if r.call != call_of(&env.command) {
            let reason = format!("{id:?} was already used for another call ({})", r.call);
            return Some(Err(ValidationError::new("options.request_id", reason).into()));
        }
        Some(r.result.clone().map(|o| Outcome::Replayed { revision: r.revision, outcome: Box::new(o) }))
    }

    /// Remember a request id with its result and forget those past the
    /// window (by count and by the age the entries' stamps give): the same
    /// on every node.
    pub(super) fn remember(&mut self, id: &str, revision: u64, env: &Envelope, result: Result<Outcome, CommandError>) -> Vec<Effect> {
        let now = env.at_ms;
        let record = RequestRecord { id: id.into(), call: call_of(&env.command), revision, at_ms: now, result };
        // An id past the window that is used again replaces its old record.
        let mut effects = vec![self.put(record)];
        while let Some((at, old)) = self.request_order.get_min().map(|(at, r)| (*at, r.0.id.clone())) {
            if self.request_weight <= REQUEST_IDS_MAX as u64 && at.saturating_add(REQUEST_ID_WINDOW_MS) >= now {
                break;
            }
            effects.push(self.set(Kind::Request, &old, None));
        }
        effects
    }
}
