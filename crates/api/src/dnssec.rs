//! The DnssecKeys service: a signed zone's keys, next event and DS records,
//! and rollovers started by hand. No call returns a private key.

use switchboard_domain::dnssec::{KeyRole, SignedZone, DIGEST_SHA256};
use switchboard_domain::masterfile::rdata_text;
use switchboard_domain::{name, Access, Command, RData};
use tonic::{Request, Response, Status};

use crate::proto::{self, dnssec_keys_server};
use crate::service::Api;
use crate::status;

type Reply<T> = Result<Response<T>, Status>;

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02X}")).collect()
}

/// The status of `signed` as the API shows it.
pub(crate) fn status_out(signed: &SignedZone, zone_ttl: u32, max_ttl: u32, revision: u64) -> proto::GetDnssecStatusResponse {
    let apex = &signed.apex;
    let keys = signed
        .keys
        .iter()
        .map(|k| proto::DnssecKey {
            id: k.id,
            role: k.role.name().into(),
            key_tag: u32::from(k.key_tag()),
            algorithm: k.algorithm.name().into(),
            state: k.state.name().into(),
            since_ms: k.since_ms,
            created_ms: k.created_ms,
            dnskey: rdata_text(&RData::Key {
                cdnskey: false,
                flags: k.flags(),
                algorithm: k.algorithm.number(),
                public_key: k.public_key.clone(),
            }),
        })
        .collect();
    let ds = if signed.unsigning_since_ms.is_some() {
        Vec::new()
    } else {
        signed
            .keys
            .iter()
            .filter(|k| k.in_cds())
            .map(|k| {
                let digest = hex(&k.ds_digest(apex));
                let (tag, alg) = (k.key_tag(), k.algorithm.number());
                proto::DsRecord {
                    key_tag: u32::from(tag),
                    algorithm: u32::from(alg),
                    digest_type: u32::from(DIGEST_SHA256),
                    text: format!("{apex} IN DS {tag} {alg} {DIGEST_SHA256} {digest}"),
                    digest,
                }
            })
            .collect()
    };
    let next = signed.plan(zone_ttl, max_ttl);
    proto::GetDnssecStatusResponse {
        apex: apex.clone(),
        algorithm: signed.policy.algorithm.name().into(),
        keys,
        next_event: next.as_ref().map(|n| n.what.clone()).unwrap_or_default(),
        next_event_at_ms: next.map_or(0, |n| n.due_ms),
        ds,
        unsigning: signed.unsigning_since_ms.is_some(),
        signing: signed.signing(),
        revision,
    }
}

#[tonic::async_trait]
impl dnssec_keys_server::DnssecKeys for Api {
    async fn get_status(&self, req: Request<proto::GetDnssecStatusRequest>) -> Reply<proto::GetDnssecStatusResponse> {
        self.check(&req, Access::ReadData)?;
        let apex = name::absolute("apex", &req.get_ref().apex).map_err(status::invalid)?;
        let state = self.node.state();
        let Some(zone) = state.zone(&apex) else { return Err(Status::not_found(format!("zone {apex:?} not found"))) };
        let Some(signed) = state.signed_zone(&apex) else {
            return Err(Status::failed_precondition(format!("zone {apex} is not signed: add a [dnssec] table to its zone file")));
        };
        Ok(Response::new(status_out(signed, zone.spec.ttl, zone.max_ttl(), state.revision())))
    }

    async fn start_rollover(&self, req: Request<proto::StartRolloverRequest>) -> Reply<proto::StartRolloverResponse> {
        let caller = self.caller(&req)?;
        let r = req.into_inner();
        let apex = name::absolute("apex", &r.apex).map_err(status::invalid)?;
        let role = match r.role.to_ascii_lowercase().as_str() {
            "zsk" => KeyRole::Zsk,
            "ksk" => KeyRole::Ksk,
            other => return Err(Status::invalid_argument(format!("role: {other:?} is neither \"zsk\" nor \"ksk\""))),
        };
        let (revision, _) = self.write(&caller, Command::DnssecRollover { apex, role }, r.options).await?;
        Ok(Response::new(proto::StartRolloverResponse { revision }))
    }
}
