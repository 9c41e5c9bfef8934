//! Waiting after a write until it is applied on this node, or on every
//! member, so a client can read its write from DNS wherever it asks next.
//! The members are asked over the peer network (`Node::wait_applied_everywhere`),
//! so this works whatever credentials the public API requires.

use std::time::{Duration, Instant};

use switchboard_consensus::Node;
use tonic::Status;

use crate::proto::{self, write_options};

/// Default and largest time a write waits to be applied.
pub const WAIT_TIMEOUT_DEFAULT_MS: u32 = 5_000;
pub const WAIT_TIMEOUT_MAX_MS: u32 = 60_000;

pub enum Wait {
    Committed,
    Here(Duration),
    Everywhere(Duration),
}

impl Wait {
    /// Check write options before the write is made.
    pub fn parse(options: Option<proto::WriteOptions>) -> Result<Wait, Status> {
        let o = options.unwrap_or_default();
        let timeout = match o.wait_timeout_ms {
            0 => WAIT_TIMEOUT_DEFAULT_MS,
            n if n > WAIT_TIMEOUT_MAX_MS => {
                return Err(Status::invalid_argument(format!("options.wait_timeout_ms: {n} exceeds {WAIT_TIMEOUT_MAX_MS}")));
            }
            n => n,
        };
        let timeout = Duration::from_millis(u64::from(timeout));
        match write_options::Wait::try_from(o.wait) {
            Ok(write_options::Wait::Committed) => Ok(Wait::Committed),
            Ok(write_options::Wait::AppliedHere) => Ok(Wait::Here(timeout)),
            Ok(write_options::Wait::AppliedEverywhere) => Ok(Wait::Everywhere(timeout)),
            Err(_) => Err(Status::invalid_argument(format!("options.wait: {} is not a wait mode", o.wait))),
        }
    }

    /// Return once `revision` is applied as asked, or DEADLINE_EXCEEDED
    /// naming the nodes that have not applied it.
    pub async fn until_applied(&self, node: &Node, revision: u64) -> Result<(), Status> {
        let (timeout, everywhere) = match self {
            Wait::Committed => return Ok(()),
            Wait::Here(t) => (*t, false),
            Wait::Everywhere(t) => (*t, true),
        };
        let deadline = Instant::now() + timeout;
        let mut applied = node.applied();
        // The watch guard must not live across the next await: reduce to a bool.
        let here = matches!(tokio::time::timeout_at(deadline.into(), applied.wait_for(|r| *r >= revision)).await, Ok(Ok(_)));
        if !here {
            return Err(Status::deadline_exceeded(format!("revision {revision} not applied on node {} within {timeout:?}", node.id())));
        }
        if !everywhere {
            return Ok(());
        }
        node.wait_applied_everywhere(revision, deadline.saturating_duration_since(Instant::now())).await.map_err(|ids| {
            let ids: Vec<String> = ids.iter().map(u64::to_string).collect();
            Status::deadline_exceeded(format!(
                "revision {revision} not applied within {timeout:?} on node(s) {} (the write itself is committed)",
                ids.join(", ")
            ))
        })?;
        Ok(())
    }
}
