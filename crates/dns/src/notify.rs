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
//!
//! From where: the node's DNS listen address (any port), or the configured
//! `[dns] notify_source`. Secondaries accept NOTIFY only from the addresses
//! they list as primaries by default (BIND: "refused notify from
//! non-primary", PowerDNS: "not a master"), and those are the addresses
//! they transfer from, so NOTIFY must come from there too, not from
//! whatever address the kernel picks for an unbound socket.
//!
//! To where: never to an address no secondary listens on (unspecified,
//! multicast, broadcast, port 0; the API refuses them, this catches zones
//! stored before it did), nor to this node's own DNS port.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
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

/// Where this node's NOTIFY leaves from, and where it must not go.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Addresses {
    /// `[dns] notify_source`: the IP to send from, whatever DNS listens on.
    pub(crate) source: Option<IpAddr>,
    /// The address DNS is served on (as bound: the port is known).
    pub(crate) dns: Option<SocketAddr>,
}

impl Addresses {
    /// The local address to send to `target` from: the configured source,
    /// else the DNS listen IP, with any port; when neither is of the
    /// target's family, or DNS listens on every address (0.0.0.0, ::),
    /// the kernel's choice (the unspecified address).
    pub(crate) fn local_for(&self, target: SocketAddr) -> SocketAddr {
        let family = |ip: &IpAddr| ip.is_ipv4() == target.is_ipv4();
        let chosen = self.source.filter(family).or_else(|| self.dns.map(|d| d.ip()).filter(|ip| family(ip) && !ip.is_unspecified()));
        let unspecified = if target.is_ipv4() { IpAddr::V4(Ipv4Addr::UNSPECIFIED) } else { IpAddr::V6(Ipv6Addr::UNSPECIFIED) };
        SocketAddr::new(chosen.unwrap_or(unspecified), 0)
    }

    /// Why NOTIFY is not sent to `target`, or `None` when it is.
    pub(crate) fn refusal(&self, target: SocketAddr) -> Option<&'static str> {
        if let Some(why) = switchboard_domain::model::notify_target_refusal(target) {
            return Some(why);
        }
        let dns = self.dns?;
        let ip = target.ip().to_canonical();
        // Listening on every address, the node is also its loopback and
        // its own source address at that port.
        let ours = ip == dns.ip().to_canonical()
            || (dns.ip().is_unspecified() && (ip.is_loopback() || Some(ip) == self.source.map(|s| s.to_canonical())));
        (target.port() == dns.port() && ours).then_some("it is this node's own DNS address")
    }
}

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
            // Targets skipped, each logged once while listed (the loop runs
            // every second).
            let mut skipped: HashSet<(String, SocketAddr)> = HashSet::new();
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
                let mut still_skipped = HashSet::new();
                // A signed zone is not transferred, so its secondaries are not told.
                for zone in state.zones().filter(|z| !z.spec.transfer.notify.is_empty() && state.signed_zone(z.apex()).is_none()) {
                    let serial = state.serial(zone);
                    for target in &zone.spec.transfer.notify {
                        let key = (zone.apex().to_string(), *target);
                        if let Some(why) = handler.shared.notify.refusal(*target) {
                            if !skipped.contains(&key) {
                                tracing::warn!(zone = %key.0, secondary = %target, reason = why, "NOTIFY target skipped");
                            }
                            still_skipped.insert(key);
                            continue;
                        }
                        wanted.insert(key, serial);
                    }
                }
                skipped = still_skipped;
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
    let socket = UdpSocket::bind(handler.shared.notify.local_for(target)).await?;
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

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn notify_leaves_from_the_dns_address_or_the_configured_source() {
        let on = |dns: &str, source: Option<&str>| Addresses {
            dns: Some(addr(dns)),
            source: source.map(|s| s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))),
        };
        let v4 = addr("192.0.2.53:53");
        let v6 = addr("[2001:db8::53]:53");
        assert_eq!(on("127.0.0.2:5353", None).local_for(v4), addr("127.0.0.2:0"));
        assert_eq!(on("127.0.0.2:5353", Some("192.0.2.1")).local_for(v4), addr("192.0.2.1:0"));
        // Listening on every address: the kernel chooses, unless told.
        assert_eq!(on("0.0.0.0:53", None).local_for(v4), addr("0.0.0.0:0"));
        assert_eq!(on("[::]:53", None).local_for(v6), addr("[::]:0"));
        assert_eq!(on("0.0.0.0:53", Some("192.0.2.1")).local_for(v4), addr("192.0.2.1:0"));
        // Another family than the target's: not usable for it.
        assert_eq!(on("127.0.0.2:53", Some("192.0.2.1")).local_for(v6), addr("[::]:0"));
        assert_eq!(on("[2001:db8::1]:53", Some("2001:db8::2")).local_for(v4), addr("0.0.0.0:0"));
        assert_eq!(Addresses::default().local_for(v4), addr("0.0.0.0:0"));
    }

    #[test]
    fn notify_is_never_sent_to_this_node_nor_to_no_secondary() {
        let node = Addresses { dns: Some(addr("127.0.0.2:5353")), source: None };
        assert!(node.refusal(addr("127.0.0.3:5353")).is_none());
        assert!(node.refusal(addr("127.0.0.2:5354")).is_none());
        assert!(node.refusal(addr("127.0.0.2:5353")).is_some_and(|w| w.contains("own")));
        for bad in ["0.0.0.0:53", "[::]:53", "224.0.0.1:53", "255.255.255.255:53", "192.0.2.1:0"] {
            assert!(node.refusal(addr(bad)).is_some(), "{bad}");
        }
        // On every address: loopback and the source at our port are us.
        let any = Addresses { dns: Some(addr("0.0.0.0:53")), source: Some(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1))) };
        assert!(any.refusal(addr("127.0.0.1:53")).is_some());
        assert!(any.refusal(addr("[::1]:53")).is_some());
        assert!(any.refusal(addr("192.0.2.1:53")).is_some());
        assert!(any.refusal(addr("192.0.2.2:53")).is_none());
    }
}
