//! The Watch service: every change after a revision, from this node's
//! change history (`Store::changes_after`), then live as entries apply.
//!
//! Every stream is bounded: a node serves at most `WatchLimits::streams_max`
//! of them and a credential `streams_per_credential_max`; each queues at
//! most `WATCH_IN_FLIGHT` responses of at most `WATCH_RESPONSE_BYTES_MAX`
//! ahead of its reader; and a reader that takes nothing for
//! `send_timeout` is ended with RESOURCE_EXHAUSTED saying where to resume.

use std::time::Duration;

use switchboard_domain::{Access, Change, Value};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use crate::auth::Caller;
use crate::convert::{self, challenge_out, cluster_out, tenant_out};
use crate::proto::{self, watch_server, Kind};
use crate::service::Api;
use crate::status;
use crate::streams::WatchPermit;

/// Changes read from storage per step, and responses queued ahead of a slow
/// client (one slot of which is kept for the status that ends a stalled
/// stream). A response holds at least one revision whole, up to
/// `BATCH_ROWS_MAX` changes: one queued response and the one being sent
/// are what a stalled stream holds.
const WATCH_BATCH: usize = 256;
const WATCH_IN_FLIGHT: usize = 2;
/// Most bytes of events in one response; a revision's events are never
/// split, so one revision may pass it. With `WATCH_IN_FLIGHT`, this bounds
/// what a reader that stops reading holds on the node.
const WATCH_RESPONSE_BYTES_MAX: usize = 64 * 1024;

/// An idle stream says how far it has got this often.
const PROGRESS_EVERY: Duration = Duration::from_secs(5);

struct Filter {
    kinds: Vec<Kind>,
    cluster: Option<String>,
}

impl Filter {
    fn parse(r: &proto::WatchRequest) -> Result<Filter, Status> {
        let mut kinds = Vec::new();
        for (i, k) in r.kinds.iter().enumerate() {
            match Kind::try_from(*k) {
                Ok(Kind::Unspecified) | Err(_) => return Err(Status::invalid_argument(format!("kinds[{i}]: unknown kind {k}"))),
                Ok(k) => kinds.push(k),
            }
        }
        let cluster = if r.cluster.is_empty() { None } else { Some(convert::label("cluster", &r.cluster).map_err(status::invalid)?) };
        Ok(Filter { kinds, cluster })
    }

    fn event(&self, revision: u64, effect: &Change) -> Option<proto::Event> {
        use proto::event::Value as Out;
        // A name's static records changed alone (an UPDATE) are a change
        // of its zone to watchers, who read the zone with GetZone.
        if let (switchboard_domain::Kind::ZoneNode, Some(Value::ZoneNode(n))) =
            (effect.kind, effect.after.as_ref().or(effect.before.as_ref()))
        {
            if !self.kinds.is_empty() && !self.kinds.contains(&Kind::Zone) || self.cluster.is_some() {
                return None;
            }
            return Some(proto::Event {
                revision,
                kind: Kind::Zone as i32,
                key: n.apex().to_string(),
                deleted: false,
                value: None,
                previous_cluster: String::new(),
            });
        }
        let kind = match effect.kind {
            switchboard_domain::Kind::Zone => Kind::Zone,
            switchboard_domain::Kind::Cluster => Kind::Cluster,
            switchboard_domain::Kind::Tenant => Kind::Tenant,
            switchboard_domain::Kind::Acme => Kind::Acme,
            switchboard_domain::Kind::Move => Kind::Move,
            // Not in the history; not for watchers.
            _ => return None,
        };
        if !self.kinds.is_empty() && !self.kinds.contains(&kind) {
            return None;
        }
        let before_tenant = match &effect.before {
            Some(Value::Tenant(t)) => Some(t),
            _ => None,
        };
        if let Some(c) = &self.cluster {
            let concerns = match kind {
                Kind::Cluster => effect.key == *c,
                Kind::Tenant => {
                    matches!(&effect.after, Some(Value::Tenant(t)) if t.cluster == *c) || before_tenant.is_some_and(|t| t.cluster == *c)
                }
                // A staged move concerns the cluster it leaves and the one it goes to.
                Kind::Move => {
                    [&effect.before, &effect.after].into_iter().flatten().any(|v| matches!(v, Value::Move(m) if m.from == *c || m.to == *c))
                }
                _ => false,
            };
            if !concerns {
                return None;
            }
        }
        // A deleted tenant shows its last value, so its old cluster learns of
        // it (other kinds show none once deleted, as they always have). A
        // zone comes without its value (`History::KeyOnly`): it may be too
        // large for a message, and the watcher reads it with GetZone.
        let shown = effect.after.as_ref().or(if kind == Kind::Tenant { effect.before.as_ref() } else { None });
        let value = shown.and_then(|v| match v {
            Value::Cluster(c) => Some(Out::Cluster(cluster_out(c, 0))),
            Value::Tenant(t) => Some(Out::Tenant(tenant_out(t))),
            Value::Acme(c) => Some(Out::Challenge(challenge_out(c))),
            Value::Move(m) => Some(Out::Move(convert::staged_out(m))),
            _ => None,
        });
        let previous_cluster = before_tenant.map(|t| t.cluster.to_string()).unwrap_or_default();
        Some(proto::Event {
            revision,
            kind: kind as i32,
            key: effect.key.clone(),
            deleted: effect.after.is_none(),
            value,
            previous_cluster,
        })
    }
}

type Tx = mpsc::Sender<Result<proto::WatchResponse, Status>>;

/// Why a stream stopped sending.
enum Stop {
    /// The client went away.
    Gone,
    /// The reader took nothing for the send timeout; it has been told.
    Stalled,
}

/// Queue `response` once the reader has made room, keeping one slot free
/// for the status that ends a stalled stream: a reader that takes nothing
/// for `timeout` gets, after what is queued, RESOURCE_EXHAUSTED saying to
/// resume after `resume`, and the stream ends, so what it holds is freed.
async fn send(tx: &Tx, response: proto::WatchResponse, timeout: Duration, resume: u64) -> Result<(), Stop> {
    match tokio::time::timeout(timeout, tx.reserve_many(2)).await {
        Ok(Ok(mut permits)) => {
            if let Some(p) = permits.next() {
                p.send(Ok(response));
            }
            Ok(())
        }
        Ok(Err(_)) => Err(Stop::Gone),
        Err(_) => {
            let _ = tx.try_send(Err(Status::resource_exhausted(format!(
                "this watcher took no response for {} ms and its buffer is full: watch again with after_revision {resume}",
                timeout.as_millis()
            ))));
            Err(Stop::Stalled)
        }
    }
}

impl Api {
    /// Stream changes after `after` to `tx` until the client goes away.
    /// A stream opened with a credential ends (`UNAUTHENTICATED`) once the
    /// credential is revoked.
    async fn stream_changes(&self, mut after: u64, filter: Filter, caller: Caller, tx: Tx, _permit: WatchPermit) {
        let node = &self.node;
        let timeout = self.watch.limits.send_timeout;
        let mut applied = node.applied();
        let compacted = |from: u64| proto::WatchResponse { events: Vec::new(), revision: from.saturating_sub(1), compacted: true };
        let mut last_sent = std::time::Instant::now();
        loop {
            let from = match node.changes_from() {
                Ok(f) => f,
                Err(e) => {
                    let _ = tx.try_send(Err(status::node(e)));
                    return;
                }
            };
            if after == 0 {
                after = from.saturating_sub(1);
            }
            if after.saturating_add(1) < from {
                let _ = tx.try_send(Ok(compacted(from)));
                return;
            }
            // (Final statuses go out with try_send: `send` keeps a slot free.)
            // Every change up to `upto` was stored before `upto` was
            // published as applied: read the revision first.
            let upto = *applied.borrow_and_update();
            let batch = match node.changes_after(after, WATCH_BATCH) {
                Ok(b) => b,
                Err(e) => {
                    let _ = tx.try_send(Err(status::node(e)));
                    return;
                }
            };
            let batch: Vec<_> = batch.into_iter().filter(|(rev, _)| *rev <= upto).collect();
            let state = node.state();
            if let Caller::Credential(c) = &caller {
                if state.credential(&c.id).is_none() {
                    let _ = tx.try_send(Err(Status::unauthenticated(format!("credential {} was revoked", c.id))));
                    return;
                }
            }
            if !batch.is_empty() {
                // Whole revisions, until the response passes its byte budget;
                // the rest is read again on the next turn.
                let (mut events, mut bytes, mut last) = (Vec::new(), 0usize, after);
                // One zone event per zone and revision, however many of its
                // names changed (the zone's own change, when there is one,
                // comes first).
                let mut zones = std::collections::HashSet::new();
                for (rev, c) in &batch {
                    if *rev != last && bytes > WATCH_RESPONSE_BYTES_MAX {
                        break;
                    }
                    if *rev != last {
                        zones.clear();
                    }
                    last = *rev;
                    if let Some(e) = filter.event(*rev, c) {
                        if e.kind == Kind::Zone as i32 && !zones.insert(e.key.clone()) {
                            continue;
                        }
                        bytes += prost::Message::encoded_len(&e);
                        events.push(e);
                    }
                }
                if !events.is_empty() {
                    let response = proto::WatchResponse { events, revision: last, compacted: false };
                    if send(&tx, response, timeout, after).await.is_err() {
                        return;
                    }
                    last_sent = std::time::Instant::now();
                }
                after = last;
                continue;
            }
            after = after.max(upto);
            if last_sent.elapsed() >= PROGRESS_EVERY {
                let progress = proto::WatchResponse { events: Vec::new(), revision: after, compacted: false };
                if send(&tx, progress, timeout, after).await.is_err() {
                    return;
                }
                last_sent = std::time::Instant::now();
            }
            tokio::select! {
                changed = applied.changed() => if changed.is_err() { return },
                _ = tokio::time::sleep(PROGRESS_EVERY.saturating_sub(last_sent.elapsed())) => {}
                _ = tx.closed() => return,
            }
        }
    }
}

#[tonic::async_trait]
impl watch_server::Watch for Api {
    type WatchStream = ReceiverStream<Result<proto::WatchResponse, Status>>;

    async fn watch(&self, req: Request<proto::WatchRequest>) -> Result<Response<Self::WatchStream>, Status> {
        let caller = self.check(&req, Access::ReadData)?;
        let r = req.into_inner();
        let filter = Filter::parse(&r)?;
        let permit = self.watch.admit(&caller)?;
        let (tx, rx) = mpsc::channel(WATCH_IN_FLIGHT);
        let api = self.clone();
        tokio::spawn(async move { api.stream_changes(r.after_revision, filter, caller, tx, permit).await });
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}
