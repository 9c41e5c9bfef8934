//! `acme`: set and clear ACME DNS-01 challenge values, list challenges.

use switchboard_proto::v1::{self, acme_client::AcmeClient};

use crate::error::Result;
use crate::output::{table, Output};
use crate::transport::{status, Ch};
use crate::view::{ChallengeList, ChallengeView, ChallengeWritten};
use crate::{AcmeCmd, Ctx};

const HEADERS: [&str; 4] = ["NAME", "VALUE", "TTL", "EXPIRES_AT_MS"];

fn rows(c: &v1::Challenge) -> impl Iterator<Item = [String; 4]> + '_ {
    c.values.iter().map(|v| [c.name.clone(), v.value.clone(), v.ttl.to_string(), v.expires_at_ms.to_string()])
}

pub async fn run(channel: Ch, ctx: &Ctx, cmd: &AcmeCmd) -> Result<Output> {
    let mut c = AcmeClient::new(channel);
    let options = Some(ctx.options.clone());
    let written = match cmd {
        AcmeCmd::Set { name, value, ttl, expires_in } => {
            let req = v1::SetChallengeRequest { name: name.clone(), value: value.clone(), ttl: *ttl, expires_in_s: *expires_in, options };
            c.set_challenge(req).await.map_err(status)?.into_inner()
        }
        AcmeCmd::Clear { name, value } => {
            let req = v1::ClearChallengeRequest { name: name.clone(), value: value.clone().unwrap_or_default(), options };
            c.clear_challenge(req).await.map_err(status)?.into_inner()
        }
        AcmeCmd::List { within } => {
            let req = v1::ListChallengesRequest { within: within.clone().unwrap_or_default() };
            let r = c.list_challenges(req).await.map_err(status)?.into_inner();
            let t = table(&HEADERS, r.challenges.iter().flat_map(rows));
            let view = ChallengeList { revision: r.revision, challenges: r.challenges.iter().map(ChallengeView::from).collect() };
            return Output::table(&view, None, t);
        }
    };
    let t = table(&HEADERS, written.challenge.iter().flat_map(rows));
    let view = ChallengeWritten { revision: written.revision, challenge: written.challenge.as_ref().map(ChallengeView::from) };
    Output::table(&view, Some(format!("revision {}", written.revision)), t)
}
