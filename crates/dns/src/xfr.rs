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

use std::ops::ControlFlow;
use std::sync::Arc;

use hickory_proto::op::{Edns, Metadata, ResponseCode};
use hickory_proto::rr::{Name, RData, Record};
use hickory_server::server::{Request, ResponseInfo};
use hickory_server::zone_handler::{MessageResponseBuilder, Queries};
use switchboard_domain::{zone_records, State};
use tokio::sync::mpsc;

use crate::stats::{Xfr, XfrOutcome};
use crate::{convert, info_for, wire_size_max, Handler, Respond};

/// Most zone transfers served at once by a node; past it a request is
/// refused, and the secondary retries (it does so on its own schedule).
pub const TRANSFERS_MAX: usize = 8;
/// Most bytes of records in one message: a TCP message holds 65,535 bytes,
/// less the header, question, OPT and TSIG record (`budget`).
const MESSAGE_BYTES_MAX: usize = 65_535;
/// Batches the walk may run ahead of the connection.
const BATCHES_IN_FLIGHT: usize = 4;

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
    /// and the client may transfer) from `state`, over `response`.
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
        let Ok(_permit) = self.shared.transfers.clone().try_acquire_owned() else {
            tracing::info!(zone = %apex, client = %request.src(), running = TRANSFERS_MAX, "zone transfer refused: too many running");
            self.shard().transfer(qtype, XfrOutcome::Refused);
            let msg = MessageResponseBuilder::new(queries, edns).error_msg(&request.metadata, ResponseCode::Refused);
            return response.send_response(msg).await.unwrap_or_else(|_| info_for(request, ResponseCode::ServFail));
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
    // A static zone's serial is its own revision, and any change to it is
    // a zone write: sent whole.
    if zone.spec.rules.is_empty() {
        return None;
    }
    // A serial is the revision of the zone's last change (mod 2^32): the
    // zone at `from` is the state at that revision, whatever changed in
    // other zones since.
    let now = state.serial_revision(zone);
    let behind = (now as u32).wrapping_sub(from);
    if behind == 0 || behind >= 1 << 31 {
        return None;
    }
    let at = now.checked_sub(u64::from(behind))?;
    // The zone itself written since: sent whole.
    if zone.revision > at {
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
    use super::serial_at_or_past;

    #[test]
    fn serials_compare_across_the_wrap() {
        assert!(serial_at_or_past(5, 5));
        assert!(serial_at_or_past(6, 5));
        assert!(!serial_at_or_past(4, 5));
        assert!(serial_at_or_past(1, u32::MAX));
        assert!(!serial_at_or_past(u32::MAX, 1));
    }
}
