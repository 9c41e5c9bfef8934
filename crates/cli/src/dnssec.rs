//! `dnssec`: a signed zone's keys and next event, its DS records for the
//! parent, and rollovers by hand.

use serde::Serialize;
use switchboard_proto::v1::{self, dnssec_keys_client::DnssecKeysClient};

use crate::error::Result;
use crate::output::{fields, table, Output};
use crate::transport::{status, Ch};
use crate::{Ctx, DnssecCmd};

/// One key, as `dnssec status` shows it.
#[derive(Debug, Serialize)]
pub struct KeyView {
    pub id: u32,
    pub role: String,
    pub key_tag: u32,
    pub algorithm: String,
    pub state: String,
    pub since_ms: u64,
    pub created_ms: u64,
    pub dnskey: String,
}

/// One DS record for the parent.
#[derive(Debug, Serialize)]
pub struct DsView {
    pub key_tag: u32,
    pub algorithm: u32,
    pub digest_type: u32,
    pub digest: String,
    pub text: String,
}

/// `dnssec status`.
#[derive(Debug, Serialize)]
pub struct StatusView {
    pub apex: String,
    pub algorithm: String,
    pub signing: bool,
    pub unsigning: bool,
    pub keys: Vec<KeyView>,
    pub next_event: String,
    pub next_event_at_ms: u64,
    pub ds: Vec<DsView>,
    pub revision: u64,
}

/// `dnssec ds`.
#[derive(Debug, Serialize)]
pub struct DsList {
    pub apex: String,
    pub ds: Vec<DsView>,
}

/// `dnssec rollover`.
#[derive(Debug, Serialize)]
pub struct RolloverStarted {
    pub apex: String,
    pub role: String,
    pub revision: u64,
}

fn status_view(r: v1::GetDnssecStatusResponse) -> StatusView {
    StatusView {
        apex: r.apex,
        algorithm: r.algorithm,
        signing: r.signing,
        unsigning: r.unsigning,
        keys: r
            .keys
            .into_iter()
            .map(|k| KeyView {
                id: k.id,
                role: k.role,
                key_tag: k.key_tag,
                algorithm: k.algorithm,
                state: k.state,
                since_ms: k.since_ms,
                created_ms: k.created_ms,
                dnskey: k.dnskey,
            })
            .collect(),
        next_event: r.next_event,
        next_event_at_ms: r.next_event_at_ms,
        ds: r
            .ds
            .into_iter()
            .map(|d| DsView { key_tag: d.key_tag, algorithm: d.algorithm, digest_type: d.digest_type, digest: d.digest, text: d.text })
            .collect(),
        revision: r.revision,
    }
}

/// A time in ms since the epoch as RFC 3339 UTC, or "now" for 0.
fn when(ms: u64) -> String {
    if ms == 0 {
        return "now".into();
    }
    let at = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms);
    humantime::format_rfc3339_seconds(at).to_string()
}

pub async fn run(channel: Ch, ctx: &Ctx, cmd: &DnssecCmd) -> Result<Output> {
    let mut c = DnssecKeysClient::new(channel);
    match cmd {
        DnssecCmd::Status { apex } => {
            let r = c.get_status(v1::GetDnssecStatusRequest { apex: apex.clone() }).await.map_err(status)?.into_inner();
            let view = status_view(r);
            let title = format!(
                "{} ({}, {}): next, {} at {}",
                view.apex,
                view.algorithm,
                if view.unsigning {
                    "being unsigned"
                } else if view.signing {
                    "signed"
                } else {
                    "keys being made"
                },
                view.next_event,
                when(view.next_event_at_ms)
            );
            let rows = view
                .keys
                .iter()
                .map(|k| [k.id.to_string(), k.role.clone(), k.key_tag.to_string(), k.algorithm.clone(), k.state.clone(), when(k.since_ms)]);
            let t = table(&["ID", "ROLE", "TAG", "ALGORITHM", "STATE", "SINCE"], rows);
            Output::table(&view, Some(title), t)
        }
        DnssecCmd::Ds { apex } => {
            let r = c.get_status(v1::GetDnssecStatusRequest { apex: apex.clone() }).await.map_err(status)?.into_inner();
            let view = status_view(r);
            let lines = view.ds.iter().map(|d| d.text.clone()).collect::<Vec<_>>().join("\n");
            let none = view.ds.is_empty();
            let out = Output::line(&DsList { apex: view.apex, ds: view.ds }, lines)?;
            Ok(out.failing_if(none, "no DS records: the zone has no KSK that CDS names (see dnssec status)"))
        }
        DnssecCmd::Rollover { apex, zsk, ksk: _ } => {
            let role = if *zsk { "zsk" } else { "ksk" };
            let req = v1::StartRolloverRequest { apex: apex.clone(), role: role.into(), options: Some(ctx.options.clone()) };
            let r = c.start_rollover(req).await.map_err(status)?.into_inner();
            let view = RolloverStarted { apex: apex.clone(), role: role.into(), revision: r.revision };
            let t = fields([
                ("apex".to_string(), view.apex.clone()),
                ("rollover".into(), role.into()),
                ("revision".into(), r.revision.to_string()),
            ]);
            Output::table(&view, None, t)
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn times_print_as_utc() {
        assert_eq!(super::when(0), "now");
        assert_eq!(super::when(1_780_000_000_000), "2026-05-28T20:26:40Z");
        assert_eq!(super::when(951_782_400_000), "2000-02-29T00:00:00Z");
    }
}
