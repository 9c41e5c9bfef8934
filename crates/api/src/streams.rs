//! Admission of Watch streams: how many a node serves at once, and one
//! credential holds. Apart from the Watch service itself, so that the API's
//! shared state (`service::Api`, which holds the gate) and the service that
//! uses it do not depend on each other.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tonic::Status;

use crate::auth::Caller;

/// The Watch service's limits, from the node config.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WatchLimits {
    /// Streams open on this node at once.
    pub streams_max: usize,
    /// Streams one stored credential may hold open on this node.
    pub streams_per_credential_max: usize,
    /// How long a stream may wait for its reader to take a response.
    pub send_timeout: Duration,
}

impl Default for WatchLimits {
    fn default() -> Self {
        WatchLimits { streams_max: 128, streams_per_credential_max: 16, send_timeout: Duration::from_secs(30) }
    }
}

/// Who holds how many streams: a stream's `WatchPermit` gives its place back.
#[derive(Debug, Default)]
pub(crate) struct WatchGate {
    pub(crate) limits: WatchLimits,
    /// Streams open, in all and by credential id (callers without a stored
    /// credential count only in all).
    open: Mutex<(usize, HashMap<String, usize>)>,
}

impl WatchGate {
    pub(crate) fn new(limits: WatchLimits) -> WatchGate {
        WatchGate { limits, open: Mutex::default() }
    }

    /// A place for one more stream of `caller`, or RESOURCE_EXHAUSTED naming the limit.
    pub(crate) fn admit(self: &Arc<Self>, caller: &Caller) -> Result<WatchPermit, Status> {
        let mut open = self.open.lock().map_err(|_| Status::internal("watch gate lock poisoned"))?;
        if open.0 >= self.limits.streams_max {
            return Err(Status::resource_exhausted(format!(
                "this node serves {} watch streams, the most it allows (api.watch_streams_max)",
                self.limits.streams_max
            )));
        }
        let credential = match caller {
            Caller::Credential(c) => Some(c.id.clone()),
            Caller::Trusted => None,
        };
        if let Some(id) = &credential {
            let held = open.1.get(id).copied().unwrap_or(0);
            if held >= self.limits.streams_per_credential_max {
                return Err(Status::resource_exhausted(format!(
                    "credential {id} holds {held} watch streams on this node, the most it may (api.watch_streams_per_credential_max)"
                )));
            }
            *open.1.entry(id.clone()).or_default() += 1;
        }
        open.0 += 1;
        Ok(WatchPermit { gate: self.clone(), credential })
    }
}

/// One admitted stream; dropping it (when the stream ends) frees its place.
pub(crate) struct WatchPermit {
    gate: Arc<WatchGate>,
    credential: Option<String>,
}

impl Drop for WatchPermit {
    fn drop(&mut self) {
        let Ok(mut open) = self.gate.open.lock() else { return };
        open.0 = open.0.saturating_sub(1);
        if let Some(id) = &self.credential {
            if let Some(n) = open.1.get_mut(id) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    open.1.remove(id);
                }
            }
        }
    }
}
