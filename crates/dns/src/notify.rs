//! NOTIFY (RFC 1996) to the secondaries a zone's `[transfer] notify` lists,
//! sent by the leader when the zone's serial advances.
//!
//! Which node sends: the leader, and only while it leads. It has applied
//! every serial it announces (a serial is committed state), and the same
//! serial means the same zone on every node, so a secondary told of it may
//! transfer from any node that has applied it. A new leader announces the
//! current serials once when it takes over (a NOTIFY is idempotent).
//!
//! Coalesced: the published state is looked at every `NOTIFY_INTERVAL`, so
//! a stream of writes makes at most one NOTIFY per zone and secondary per
//! interval. Each is retried with exponential backoff (1 s doubling to
//! 60 s) until the secondary acknowledges it, or a newer serial or the
//! loss of leadership supersedes it.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Name, RecordType};
use tokio::net::UdpSocket;
use tokio::task::JoinHandle;

use crate::stats::NotifySent;
use crate::{convert, Handler};

/// How often the leader looks for advanced serials: the coalescing window.
pub const NOTIFY_INTERVAL: Duration = Duration::from_secs(1);
/// How long one NOTIFY waits for its acknowledgement before it is sent again.
const ACK_TIMEOUT: Duration = Duration::from_secs(2);
/// The first and the longest pause between attempts.
const RETRY_FIRST: Duration = Duration::from_secs(1);
const RETRY_MAX: Duration = Duration::from_secs(60);

/// Why an attempt did not count as acknowledged.
#[derive(Debug, thiserror::Error)]
enum Unacked {
    #[error("no acknowledgement within {0:?}")]
    Timeout(Duration),
    #[error("answered {0}")]
    Rejected(ResponseCode),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("encoding the NOTIFY: {0}")]
    Encode(String),
}

impl Handler {
    /// Send NOTIFY for every zone whose serial advances, while `leads()`
    /// says this node is the leader. Runs until aborted.
    pub fn notifier(&self, leads: Arc<dyn Fn() -> bool + Send + Sync>) -> JoinHandle<()> {
        let handler = self.clone();
        tokio::spawn(async move {
            // (apex, secondary) → the serial announced, and its sender.
            let mut sending: HashMap<(String, SocketAddr), (u32, JoinHandle<()>)> = HashMap::new();
            let mut ticker = tokio::time::interval(NOTIFY_INTERVAL);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticker.tick().await;
                if !leads() {
                    for (_, (_, task)) in sending.drain() {
                        task.abort();
                    }
                    continue;
                }
                let state = handler.state.load_full();
                let mut wanted = HashMap::new();
                // A signed zone is not transferred, so its secondaries are not told.
                for zone in state.zones().filter(|z| !z.spec.transfer.notify.is_empty() && state.signed_zone(z.apex()).is_none()) {
                    let serial = state.serial(zone);
                    for target in &zone.spec.transfer.notify {
                        wanted.insert((zone.apex().to_string(), *target), serial);
                    }
                }
                // Zones deleted or targets dropped: stop telling them.
                sending.retain(|key, (_, task)| {
                    let keep = wanted.contains_key(key);
                    if !keep {
                        task.abort();
                    }
                    keep
                });
                for (key, serial) in wanted {
                    if sending.get(&key).is_some_and(|(s, _)| *s == serial) {
                        continue;
                    }
                    let task = tokio::spawn(announce(handler.clone(), key.0.clone(), key.1, serial));
                    if let Some((_, old)) = sending.insert(key, (serial, task)) {
                        old.abort();
                    }
                }
            }
        })
    }
}

/// Tell `target` that zone `apex` is at `serial`, until it acknowledges.
async fn announce(handler: Handler, apex: String, target: SocketAddr, serial: u32) {
    let backoff = ExponentialBuilder::default().with_min_delay(RETRY_FIRST).with_max_delay(RETRY_MAX).without_max_times();
    let attempt = || notify_once(&handler, &apex, target);
    let shard = handler.shard();
    let result = attempt
        .retry(backoff)
        .sleep(tokio::time::sleep)
        .notify(|e, wait| {
            shard.notify_sent(match e {
                Unacked::Timeout(_) => NotifySent::Timeout,
                Unacked::Rejected(_) => NotifySent::Rejected,
                Unacked::Io(_) | Unacked::Encode(_) => NotifySent::Error,
            });
            tracing::info!(zone = %apex, serial, secondary = %target, error = %e, retry_in_ms = wait.as_millis() as u64, "NOTIFY not acknowledged");
        })
        .await;
    if result.is_ok() {
        shard.notify_sent(NotifySent::Acknowledged);
        tracing::debug!(zone = %apex, serial, secondary = %target, "NOTIFY acknowledged");
    }
}

/// One NOTIFY for `apex`, with the current SOA as a hint (RFC 1996 §3.7),
/// and its acknowledgement: a response with its id, opcode NOTIFY, NOERROR.
async fn notify_once(handler: &Handler, apex: &str, target: SocketAddr) -> Result<(), Unacked> {
    let name = Name::from_ascii(apex).map_err(|e| Unacked::Encode(e.to_string()))?;
    let id: u16 = {
        let mut b = [0u8; 2];
        getrandom::fill(&mut b).map_err(|e| Unacked::Encode(e.to_string()))?;
        u16::from_be_bytes(b)
    };
    let mut msg = Message::new(id, MessageType::Query, OpCode::Notify);
    msg.metadata.authoritative = true;
    msg.add_query(Query::query(name, RecordType::SOA));
    let state = handler.state.load();
    for r in switchboard_domain::resolve(&state, apex, switchboard_domain::RType::Soa).answers.iter() {
        if let Some(r) = convert::record(r, "", &Name::root()) {
            msg.add_answer(r);
        }
    }
    drop(state);
    let bytes = msg.to_vec().map_err(|e| Unacked::Encode(e.to_string()))?;
    let local: SocketAddr = if target.is_ipv4() { ([0, 0, 0, 0], 0).into() } else { (std::net::Ipv6Addr::UNSPECIFIED, 0).into() };
    let socket = UdpSocket::bind(local).await?;
    socket.connect(target).await?;
    socket.send(&bytes).await?;
    let mut buf = [0u8; 4096];
    let wait = async {
        loop {
            let n = socket.recv(&mut buf).await?;
            let Ok(reply) = Message::from_vec(&buf[..n]) else { continue };
            if reply.metadata.id != id || reply.metadata.message_type != MessageType::Response || reply.metadata.op_code != OpCode::Notify {
                continue;
            }
            return match reply.metadata.response_code {
                ResponseCode::NoError => Ok(()),
                rcode => Err(Unacked::Rejected(rcode)),
            };
        }
    };
    tokio::time::timeout(ACK_TIMEOUT, wait).await.unwrap_or(Err(Unacked::Timeout(ACK_TIMEOUT)))
}
