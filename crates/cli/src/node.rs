//! `status` (the node asked, then every member it knows, each asked
//! directly) and `member` (list, add-learner, promote, remove).

use switchboard_proto::v1::{self, membership_client::MembershipClient, node_client::NodeClient};

use crate::error::Result;
use crate::output::{table, Output};
use crate::transport::{status as grpc, Ch};
use crate::view::{members, MemberStatus, MembersWritten, NodeStatus, StatusView};
use crate::{Ctx, MemberCmd};

pub async fn member(channel: Ch, cmd: &MemberCmd) -> Result<Output> {
    let mut c = MembershipClient::new(channel);
    let (revision, ms) = match cmd {
        MemberCmd::List => (None, c.list_members(v1::MembersRequest {}).await.map_err(grpc)?.into_inner().members),
        MemberCmd::AddLearner { id, peer, api } => {
            let req = v1::AddLearnerRequest { id: *id, peer: peer.clone(), api: api.clone() };
            let r = c.add_learner(req).await.map_err(grpc)?.into_inner();
            (Some(r.revision), r.members)
        }
        MemberCmd::Promote { id } => {
            let r = c.promote(v1::MemberIdRequest { id: *id }).await.map_err(grpc)?.into_inner();
            (Some(r.revision), r.members)
        }
        MemberCmd::Remove { id } => {
            let r = c.remove_member(v1::MemberIdRequest { id: *id }).await.map_err(grpc)?.into_inner();
            (Some(r.revision), r.members)
        }
    };
    let rows = ms.iter().map(|m| [m.id.to_string(), if m.voter { "voter" } else { "learner" }.into(), m.peer.clone(), m.api.clone()]);
    let t = table(&["ID", "KIND", "PEER", "API"], rows);
    match revision {
        Some(revision) => Output::table(&MembersWritten { revision, members: members(&ms) }, None, t),
        None => Output::table(&members(&ms), None, t),
    }
}

/// Status of one node by API address, or why it could not be had.
async fn member_status(ctx: &Ctx, api: &str) -> Result<v1::StatusResponse, String> {
    let channel = ctx.transport.member(api).await?;
    NodeClient::new(channel).status(v1::StatusRequest {}).await.map(tonic::Response::into_inner).map_err(|s| s.message().to_string())
}

pub async fn status(channel: Ch, ctx: &Ctx) -> Result<Output> {
    let s = NodeClient::new(channel).status(v1::StatusRequest {}).await.map_err(grpc)?.into_inner();
    let mut per_member = Vec::new();
    for m in &s.members {
        per_member.push((m, member_status(ctx, &m.api).await));
    }
    // Lag is measured against the most advanced log any member reports.
    let head = per_member.iter().filter_map(|(_, r)| r.as_ref().ok().map(|s| s.last_log_index)).max().unwrap_or(s.last_log_index);
    let mut rows = Vec::new();
    let mut member_status = Vec::new();
    for (m, r) in &per_member {
        match r {
            Ok(ms) => {
                let lag = head.saturating_sub(ms.applied_revision);
                rows.push([
                    m.id.to_string(),
                    ms.role.clone(),
                    if ms.leader_id == 0 { "-".into() } else { ms.leader_id.to_string() },
                    ms.applied_revision.to_string(),
                    lag.to_string(),
                    ms.staleness_ms.map(|x| format!("{x} ms")).unwrap_or_else(|| "never".into()),
                    ms.ready.to_string(),
                    m.api.clone(),
                ]);
                member_status.push(MemberStatus::Reached { status: ms.into(), lag });
            }
            Err(e) => {
                let unreachable = ["unreachable", "-", "-", "-", "-", "false"].map(String::from);
                let [role, leader, applied, lag, staleness, ready] = unreachable;
                rows.push([m.id.to_string(), role, leader, applied, lag, staleness, ready, m.api.clone()]);
                member_status.push(MemberStatus::Unreachable { node_id: m.id, error: e.clone() });
            }
        }
    }
    let title = format!(
        "node {} ({}), leader {}, term {}, applied revision {}, {} zones, {} clusters, {} tenants",
        s.node_id,
        s.role,
        if s.leader_id == 0 { "unknown".to_string() } else { format!("{} ({})", s.leader_id, s.leader_api) },
        s.term,
        s.applied_revision,
        s.zones,
        s.clusters,
        s.tenants
    );
    let view = NodeStatus { node: StatusView::from(&s), members: members(&s.members), member_status };
    let t = table(&["ID", "ROLE", "LEADER", "APPLIED", "LAG", "STALENESS", "READY", "API"], rows);
    Output::table(&view, Some(title), t)
}
