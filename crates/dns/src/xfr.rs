//! Zone transfers out: AXFR (RFC 5936) and IXFR (RFC 1995), over TCP.
//!
//! A transfer streams one published state: the `Arc<State>` loaded when
//! the request came, walked by `zone_records` on a blocking thread that
//! hands batches of records through a bounded channel to the connection,
//! so a zone of a million tenants is never held twice, queries and applies
//! never wait for it, and a slow secondary slows only its own walk. Each
//! message holds at most `MESSAGE_BYTES_MAX`, counted by an upper bound of
//! each record's size, so no encoding is ever refused half-way.
//!
//! IXFR: a client at the current serial gets the one SOA (RFC 1995 §2); a
//! client at an older serial the change history still reaches gets the
//! condensed difference, computed by undoing the changes since on a copy
//! of the state and comparing the records of the names they touched; any
//! other (history pruned, the zone itself or a cluster changed) gets the
//! whole zone in AXFR form, which RFC 1995 §4 allows. Over UDP, IXFR is answered with
//! the current SOA alone, telling the client to come over TCP (§2).
//!
//! Places: `TRANSFERS_MAX` transfers run at once, at most
//! `TRANSFERS_PER_CLIENT_MAX` of them for one client, so one secondary (or
//! one holder of a transfer key) cannot keep every other one out.
//!
//! A TSIG-signed transfer signs each message with the key that signed the
//! request; if that key is deleted (or replaced) while the transfer runs,
//! the transfer ends there and the connection is closed: a deleted key
//! signs nothing more.

use std::collections::HashMap;
use std::net::IpAddr;
use std::ops::ControlFlow;
use std::sync::{Arc, Mutex, PoisonError};

use hickory_proto::op::{Edns, Metadata, ResponseCode};
use hickory_proto::rr::{Name, RData, Record};
use hickory_server::server::{Request, ResponseInfo};
use hickory_server::zone_handler::{MessageResponseBuilder, Queries};
use switchboard_domain::tsig::TsigKey;
use switchboard_domain::{zone_records, State};
use tokio::sync::mpsc;

use crate::stats::{Xfr, XfrOutcome};
use crate::{convert, info_for, wire_size_max, Handler, Respond};

/// Most zone transfers served at once by a node; past it a request is
/// refused, and the secondary retries (it does so on its own schedule).
pub const TRANSFERS_MAX: usize = 8;
/// Most of those one client runs at once: a secondary needs one per zone
/// it is behind on, and asks again later when refused; two leave the
/// other six places to everyone else.
pub const TRANSFERS_PER_CLIENT_MAX: usize = 2;
/// IPv6 clients are counted by their /64: one host commonly holds a whole
/// /64 and could otherwise take a place from each of its addresses.
const CLIENT_PREFIX_V6: u8 = 64;
/// Most bytes of records in one message: a TCP message holds 65,535 bytes,
/// less the header, question, OPT and TSIG record (`budget`).
const MESSAGE_BYTES_MAX: usize = 65_535;
/// Batches the walk may run ahead of the connection.
const BATCHES_IN_FLIGHT: usize = 4;

/// Why a transfer found no place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Full {
    /// `TRANSFERS_MAX` are running.
    All,
    /// `TRANSFERS_PER_CLIENT_MAX` are running for this client.
    Client,
}

/// The places for transfers running at once, in all and per client.
#[derive(Debug, Default)]
pub(crate) struct Slots {
    /// Places held by each client (its address, or its /64), none at zero.
    held: Mutex<HashMap<IpAddr, usize>>,
}

/// One transfer's place, given back when dropped.
#[derive(Debug)]
pub(crate) struct Slot {
    slots: Arc<Slots>,
    client: IpAddr,
}

/// The client a place is counted against: its address, or its /64.
fn client_of(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => IpAddr::V6((u128::from(v6) & (u128::MAX << (128 - CLIENT_PREFIX_V6))).into()),
        v4 => v4,
    }
}

impl Slots {
    /// A place for a transfer to `ip`, or which limit is reached.
    pub(crate) fn take(self: &Arc<Self>, ip: IpAddr) -> Result<Slot, Full> {
        let client = client_of(ip);
        // A panic elsewhere while holding the lock leaves the counts whole
        // (each change is one statement): keep using them.
        let mut held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        if held.values().sum::<usize>() >= TRANSFERS_MAX {
            return Err(Full::All);
        }
        let n = held.entry(client).or_default();
        if *n >= TRANSFERS_PER_CLIENT_MAX {
            return Err(Full::Client);
        }
        *n += 1;
        Ok(Slot { slots: self.clone(), client })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut held = self.slots.held.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(n) = held.get_mut(&self.client) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                held.remove(&self.client);
            }
        }
    }
}

/// Whether serial `a` is at or past `b` (RFC 1982 serial arithmetic).
fn serial_at_or_past(a: u32, b: u32) -> bool {
    a == b || (a.wrapping_sub(b) as i32) > 0
}

/// The serial of the SOA a client sent in an IXFR request's authority section.
fn client_serial(request: &Request) -> Option<u32> {
    request.authorities.iter().find_map(|r| match &r.data {
        RData::SOA(soa) => Some(soa.serial),
        _ => None,
    })
}

impl Handler {
    /// Serve an AXFR or IXFR of the zone at `apex` (which this node serves,
    /// and the client may transfer) from `state`, over `response`; signed
    /// with `signed_by` when the request was.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn transfer<R: Respond>(
        &self,
        request: &Request,
        queries: &Queries,
        edns: Option<&Edns>,
        state: Arc<State>,
        apex: String,
        qtype: Xfr,
        reserve: usize,
        signed_by: Option<&Arc<TsigKey>>,
        response: &mut R,
    ) -> ResponseInfo {
        let Some(zone) = state.zone(&apex).cloned() else { return info_for(request, ResponseCode::NotAuth) };
        let serial = state.serial(&zone);
        let mut metadata = Metadata::response_from_request(&request.metadata);
        metadata.authoritative = true;
        let up_to_date = matches!(qtype, Xfr::Ixfr) && client_serial(request).is_some_and(|c| serial_at_or_past(c, serial));
        let udp = request.protocol() == hickory_server::net::xfer::Protocol::Udp;
        if up_to_date || udp {
            // One SOA: "you are current", or over UDP "come over TCP".
            let soa: Vec<Record> = switchboard_domain::resolve(&state, &apex, switchboard_domain::RType::Soa)
                .answers
                .iter()
                .filter_map(|r| convert::record(r, "", &Name::root()))
                .collect();
            let msg = MessageResponseBuilder::new(queries, edns).build(
                metadata,
                soa.iter(),
                std::iter::empty(),
                std::iter::empty(),
                std::iter::empty(),
            );
            let info = response.send_response(msg).await.unwrap_or_else(|_| info_for(request, ResponseCode::ServFail));
            if up_to_date {
                self.shard().transfer(qtype, XfrOutcome::UpToDate);
            }
            return info;
        }
        let _slot = match self.shared.transfers.take(request.src().ip()) {
            Ok(slot) => slot,
            Err(full) => {
                let (limit, why) = match full {
                    Full::All => (TRANSFERS_MAX, "zone transfer refused: too many running"),
                    Full::Client => (TRANSFERS_PER_CLIENT_MAX, "zone transfer refused: too many running for this client"),
                };
                tracing::info!(zone = %apex, client = %request.src(), running = limit, "{why}");
                self.shard().transfer(qtype, XfrOutcome::Refused);
                let msg = MessageResponseBuilder::new(queries, edns).error_msg(&request.metadata, ResponseCode::Refused);
                return response.send_response(msg).await.unwrap_or_else(|_| info_for(request, ResponseCode::ServFail));
            }
        };

        let budget = MESSAGE_BYTES_MAX - 12 - queries.as_bytes().len() - 64 - reserve;
        let (tx, mut rx) = mpsc::channel::<Vec<Record>>(BATCHES_IN_FLIGHT);
        let from = if matches!(qtype, Xfr::Ixfr) { client_serial(request) } else { None };
        let history = self.shared.history.clone();
        let walk = tokio::task::spawn_blocking(move || {
            // IXFR: the condensed difference from the client's serial when
            // the history reaches it; the whole zone otherwise.
            match from.zip(history).and_then(|(from, h)| difference(&state, &zone, from, h.as_ref())) {
                Some(records) => {
                    let mut b = Batcher { budget, tx: &tx, batch: Vec::new(), bytes: 0 };
                    let sent = records.iter().try_for_each(|r| b.push(r)).is_continue() && b.finish();
                    (sent, true)
                }
                None => (walk(&state, &zone, budget, &tx), false),
            }
        });
        let started = std::time::Instant::now();
        let (mut messages, mut records) = (0u64, 0u64);
        let mut info = None;
        while let Some(batch) = rx.recv().await {
            if let Some(key) = signed_by.filter(|key| !self.key_current(key)) {
                // Dropping the receiver ends the walk; closing tells the
                // secondary the transfer is over rather than stalled.
                tracing::info!(zone = %apex, client = %request.src(), key = %key.name, records, "zone transfer ended: its TSIG key was deleted");
                self.shard().transfer(qtype, XfrOutcome::Failed);
                response.close();
                return info_for(request, ResponseCode::ServFail);
            }
            let msg = MessageResponseBuilder::new(queries, edns).build(
                metadata,
                batch.iter(),
                std::iter::empty(),
                std::iter::empty(),
                std::iter::empty(),
            );
            match response.send_response(msg).await {
                Ok(sent) => {
                    info.get_or_insert(sent);
                    messages += 1;
                    records += batch.len() as u64;
                }
                Err(e) => {
                    // Dropping the receiver ends the walk.
                    tracing::info!(zone = %apex, client = %request.src(), error = %e, records, "zone transfer cut off");
                    self.shard().transfer(qtype, XfrOutcome::Failed);
                    return info_for(request, ResponseCode::ServFail);
                }
            }
        }
        let (complete, incremental) = walk.await.unwrap_or((false, false));
        if !complete {
            self.shard().transfer(qtype, XfrOutcome::Failed);
            return info_for(request, ResponseCode::ServFail);
        }
        self.shard().transfer(qtype, if incremental { XfrOutcome::Incremental } else { XfrOutcome::Complete });
        let ms = started.elapsed().as_millis() as u64;
        let how = if incremental { "incremental" } else { "whole zone" };
        tracing::info!(zone = %apex, serial, client = %request.src(), records, messages, ms, how, "zone transfer sent");
        info.unwrap_or_else(|| info_for(request, ResponseCode::ServFail))
    }
}

impl Handler {
    /// Whether `key` is still the key of that name in the latest published
    /// state: not deleted, nor deleted and created again (a new revision).
    fn key_current(&self, key: &TsigKey) -> bool {
        self.state.load().tsig_key(&key.name).is_some_and(|now| now.revision == key.revision)
    }
}

/// Records gathered into messages of at most `budget` bytes (by the upper
/// bound of each record's size), each handed to the connection when full.
struct Batcher<'a> {
    budget: usize,
    tx: &'a mpsc::Sender<Vec<Record>>,
    batch: Vec<Record>,
    bytes: usize,
}

impl Batcher<'_> {
    /// `Break` when the connection is gone.
    fn push(&mut self, r: &switchboard_domain::Record) -> ControlFlow<()> {
        let size = wire_size_max(r);
        if self.bytes + size > self.budget && !self.batch.is_empty() {
            if self.tx.blocking_send(std::mem::take(&mut self.batch)).is_err() {
                return ControlFlow::Break(());
            }
            self.bytes = 0;
        }
        if let Some(wire) = convert::record(r, "", &Name::root()) {
            self.batch.push(wire);
            self.bytes += size;
        }
        ControlFlow::Continue(())
    }

    /// Send what is left; `false` when the connection is gone.
    fn finish(self) -> bool {
        self.batch.is_empty() || self.tx.blocking_send(self.batch).is_ok()
    }
}

/// Walk the zone's records into messages, the SOA first and last (RFC
/// 5936 §2.2). `false` when the walk stopped early: the connection is gone.
fn walk(state: &State, zone: &switchboard_domain::Zone, budget: usize, tx: &mpsc::Sender<Vec<Record>>) -> bool {
    let mut b = Batcher { budget, tx, batch: Vec::new(), bytes: 0 };
    let mut soa = None;
    let walked = zone_records(state, zone, &mut |r| {
        if soa.is_none() {
            soa = Some(r.clone());
        }
        b.push(&r)
    });
    let Some(soa) = soa else { return false };
    walked.is_continue() && b.push(&soa).is_continue() && b.finish()
}

/// The records of an incremental transfer from serial `from` to the
/// state's (RFC 1995 §4, condensed into one difference): current SOA, the
/// SOA at `from`, the records removed, the current SOA, the records added,
/// the current SOA. `None` when the history does not reach `from` or the
/// changes since cannot be told name by name: the caller sends the zone.
fn difference(state: &State, zone: &switchboard_domain::Zone, from: u32, history: &dyn History) -> Option<Vec<switchboard_domain::Record>> {
    use switchboard_domain::{RData, RType};
    // A serial is the revision of the zone's last change (mod 2^32): the
    // zone at `from` is the state at that revision, whatever changed in
    // other zones since.
    let now = state.serial_revision(zone);
    let behind = (now as u32).wrapping_sub(from);
    if behind == 0 || behind >= 1 << 31 {
        return None;
    }
    let at = now.checked_sub(u64::from(behind))?;
    // The zone itself written since, or its keys (the apex's DNSKEY, CDS
    // and CDNSKEY sets, which the change history does not keep): sent whole.
    if zone.revision > at || state.signed_zone(zone.apex()).is_some_and(|s| s.revision > at) {
        return None;
    }
    let changes = history.changes(at, state.revision(), switchboard_domain::state::UNDO_CHANGES_MAX)?;
    let old = state.undone(at, &changes)?;
    let (removed, added) = switchboard_domain::resolve::zone_difference(&old, state, zone, &changes)?;
    let current = switchboard_domain::resolve(state, zone.apex(), RType::Soa).answers.into_iter().next()?;
    let mut previous = current.clone();
    if let RData::Soa { serial, .. } = &mut previous.data {
        *serial = from;
    }
    let mut out = Vec::with_capacity(removed.len() + added.len() + 4);
    out.push(current.clone());
    out.push(previous);
    out.extend(removed);
    out.push(current.clone());
    out.extend(added);
    out.push(current);
    Some(out)
}

/// The change history as zone transfers need it (the binary implements
/// it over the node's store; the DNS crate never names storage).
pub trait History: Send + Sync + std::fmt::Debug {
    /// Every change at revisions after `after` up to `upto`, oldest first;
    /// `None` when the history no longer reaches back to `after`, or holds
    /// more than `limit` changes in between.
    fn changes(&self, after: u64, upto: u64, limit: usize) -> Option<Vec<switchboard_domain::Change>>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serials_compare_across_the_wrap() {
        assert!(serial_at_or_past(5, 5));
        assert!(serial_at_or_past(6, 5));
        assert!(!serial_at_or_past(4, 5));
        assert!(serial_at_or_past(1, u32::MAX));
        assert!(!serial_at_or_past(u32::MAX, 1));
    }

    #[test]
    fn one_client_cannot_take_every_transfer_place() {
        let slots = Arc::new(Slots::default());
        let ip = |s: &str| -> IpAddr { s.parse().unwrap_or_else(|e| panic!("{s}: {e}")) };
        let busy: Vec<Slot> = (0..TRANSFERS_PER_CLIENT_MAX).filter_map(|_| slots.take(ip("192.0.2.1")).ok()).collect();
        assert_eq!(busy.len(), TRANSFERS_PER_CLIENT_MAX);
        assert_eq!(slots.take(ip("192.0.2.1")).err(), Some(Full::Client));
        // The same client over IPv4-mapped IPv6, or from elsewhere in its /64.
        assert_eq!(slots.take(ip("::ffff:192.0.2.1")).err(), Some(Full::Client));
        let v6: Vec<Slot> = (0..TRANSFERS_PER_CLIENT_MAX).filter_map(|_| slots.take(ip("2001:db8::1")).ok()).collect();
        assert_eq!(v6.len(), TRANSFERS_PER_CLIENT_MAX);
        assert_eq!(slots.take(ip("2001:db8::ffff:2")).err(), Some(Full::Client));
        // Others still get places, up to the total.
        let mut others = Vec::new();
        for i in 2.. {
            match slots.take(ip(&format!("192.0.2.{i}"))) {
                Ok(slot) => others.push(slot),
                Err(full) => {
                    assert_eq!(full, Full::All);
                    break;
                }
            }
        }
        assert_eq!(busy.len() + v6.len() + others.len(), TRANSFERS_MAX);
        // A place comes back when its transfer ends.
        drop(busy);
        assert!(slots.take(ip("192.0.2.1")).is_ok());
        drop(others);
        assert_eq!(slots.held.lock().map(|h| h.len()).unwrap_or_default(), 1, "only the /64's places are held");
    }

    mod key_deleted {
        use std::sync::atomic::{AtomicBool, Ordering};

        use arc_swap::ArcSwap;
        use hickory_server::net::xfer::Protocol;
        use hickory_server::net::NetError;
        use hickory_server::zone_handler::MessageResponse;
        use hmac::{Hmac, Mac};
        use switchboard_domain::tsig::{Algorithm, Allow};
        use switchboard_domain::{Command, ZoneSpec};

        use super::*;
        use crate::fixture;
        use crate::tap::Transport;
        use crate::{tsig, Options, Respond};

        const APEX: &str = "apps.example.test.";
        const KEY: &str = "xfr-key.";
        const SECRET: [u8; 32] = [7; 32];

        /// A zone of several transfer messages (300 TXT sets of 1 KB), and
        /// the key `KEY` allowed to transfer it.
        fn state() -> State {
            let big = (0..4).map(|i| format!("\"{i:0>250}\"")).collect::<Vec<_>>().join(" ");
            let records = (0..300).map(|i| fixture::record(&format!("t{i}"), "TXT", &big)).collect();
            let zone = ZoneSpec { ns: vec![format!("ns1.{APEX}")], records, ..fixture::zone(APEX) };
            let key = fixture::tsig_key(KEY, Algorithm::HmacSha256, &SECRET, Allow { transfer: true, update: false });
            fixture::state_of([Command::PutZone { zone }, Command::CreateTsigKey { key }])
        }

        /// An AXFR request for `APEX` signed with `KEY`, as a secondary
        /// sends it (RFC 8945 §4.3.3: the MAC over the message and the
        /// TSIG variables).
        fn signed_axfr() -> Vec<u8> {
            let wire = |name: &str| -> Vec<u8> {
                let mut w = Vec::new();
                for label in name.trim_end_matches('.').split('.') {
                    w.push(label.len() as u8);
                    w.extend_from_slice(label.as_bytes());
                }
                w.push(0);
                w
            };
            let (key, alg) = (wire(KEY), wire("hmac-sha256."));
            let mut msg = vec![0xab, 0xcd, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0];
            msg.extend_from_slice(&wire(APEX));
            msg.extend_from_slice(&[0, 252, 0, 1]);
            let time = tsig::now().to_be_bytes()[2..].to_vec();
            let fudge = 300u16.to_be_bytes();
            let mut mac = <Hmac<sha2::Sha256> as Mac>::new_from_slice(&SECRET).unwrap_or_else(|e| panic!("{e}"));
            mac.update(&msg);
            mac.update(&key);
            mac.update(&[0, 255, 0, 0, 0, 0]);
            mac.update(&alg);
            mac.update(&time);
            mac.update(&fudge);
            mac.update(&[0, 0, 0, 0]);
            let mac = mac.finalize().into_bytes().to_vec();
            let mut rdata = alg.clone();
            rdata.extend_from_slice(&time);
            rdata.extend_from_slice(&fudge);
            rdata.extend_from_slice(&(mac.len() as u16).to_be_bytes());
            rdata.extend_from_slice(&mac);
            rdata.extend_from_slice(&[0xab, 0xcd, 0, 0, 0, 0]);
            msg.extend_from_slice(&key);
            msg.extend_from_slice(&[0, 250, 0, 255, 0, 0, 0, 0]);
            msg.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
            msg.extend_from_slice(&rdata);
            msg[11] = 1;
            msg
        }

        /// Keeps what is sent, signed as the TCP writer signs it; after the
        /// first message, publishes `then` (the state without the key).
        #[derive(Clone)]
        struct Secondary {
            sent: Arc<Mutex<Vec<Vec<u8>>>>,
            signer: Option<tsig::Signer>,
            closed: Arc<AtomicBool>,
            published: Arc<ArcSwap<State>>,
            then: Option<Arc<State>>,
        }

        impl Respond for Secondary {
            fn sign_with(&mut self, signer: tsig::Signer) {
                self.signer = Some(signer);
            }

            fn close(&mut self) {
                self.closed.store(true, Ordering::Relaxed);
            }
        }

        #[async_trait::async_trait]
        impl hickory_server::server::ResponseHandler for Secondary {
            async fn send_response<'a>(
                &mut self,
                response: MessageResponse<
                    '_,
                    'a,
                    impl Iterator<Item = &'a Record> + Send + 'a,
                    impl Iterator<Item = &'a Record> + Send + 'a,
                    impl Iterator<Item = &'a Record> + Send + 'a,
                    impl Iterator<Item = &'a Record> + Send + 'a,
                >,
            ) -> Result<ResponseInfo, NetError> {
                let (bytes, info) = crate::emit(response, u16::MAX, &mut self.signer)?;
                self.sent.lock().unwrap_or_else(PoisonError::into_inner).push(bytes);
                if let Some(then) = self.then.take() {
                    self.published.store(then);
                }
                Ok(info)
            }
        }

        /// The messages a transfer sends, and whether it closed the
        /// connection; the key deleted after the first message when `delete`.
        fn transfer(delete: bool) -> (Vec<Vec<u8>>, bool) {
            let state = state();
            let mut without = state.clone();
            fixture::apply(&mut without, Command::DeleteTsigKey { name: KEY.into() });
            let published = Arc::new(ArcSwap::from_pointee(state));
            let handler = Handler::with(published.clone(), Options::default()).for_transport(Transport::Tcp, 0);
            let secondary = Secondary {
                sent: Arc::default(),
                signer: None,
                closed: Arc::default(),
                published,
                then: delete.then(|| Arc::new(without)),
            };
            let request = Request::from_bytes(signed_axfr(), "192.0.2.1:5353".parse().unwrap_or_else(|e| panic!("{e}")), Protocol::Tcp)
                .unwrap_or_else(|e| panic!("{e}"));
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap_or_else(|e| panic!("{e}"));
            runtime.block_on(handler.answer(&request, secondary.clone()));
            let sent = secondary.sent.lock().unwrap_or_else(PoisonError::into_inner).clone();
            (sent, secondary.closed.load(Ordering::Relaxed))
        }

        #[test]
        fn a_key_deleted_during_a_transfer_signs_no_further_message() {
            // Kept: the whole zone, in several messages, each signed.
            let (whole, closed) = transfer(false);
            assert!(whole.len() >= 3 && !closed, "{} messages", whole.len());
            // Deleted after the first message: nothing more, and closed.
            let (cut, closed) = transfer(true);
            assert_eq!(cut.len(), 1);
            assert!(closed);
        }
    }
}
