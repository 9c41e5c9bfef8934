//! `status` (the node asked, then every member it knows, each asked
//! directly) and `member` (list, add-learner, promote, remove).

use switchboard_proto::v1::{self, membership_client::MembershipClient, node_client::NodeClient};

use crate::error::Result;
use crate::output::{table, Output};
use crate::transport::{status as grpc, Ch};
use crate::view::{members, MemberStatus, MemberView, MembersWritten, NodeStatus, StatusView, TreeView};
use crate::{Ctx, MemberCmd};

pub async fn member(channel: Ch, cmd: &MemberCmd) -> Result<Output> {
    let mut c = MembershipClient::new(channel);
    let (revision, ms) = match cmd {
        MemberCmd::List => {
            let r = c.list_members(v1::MembersRequest {}).await.map_err(grpc)?.into_inner();
            return member_list(&r);
        }
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

/// `member list`: the members, then the relay tree below them (edges).
fn member_list(r: &v1::MembersResponse) -> Result<Output> {
    let kind = |voter: bool| if voter { "voter" } else { "learner" }.to_string();
    let mut rows: Vec<[String; 6]> =
        r.members.iter().map(|m| [m.id.to_string(), kind(m.voter), "-".into(), "-".into(), m.peer.clone(), m.api.clone()]).collect();
    rows.extend(r.tree.iter().map(|t| {
        [t.id.to_string(), "edge".into(), t.upstream_id.to_string(), t.applied_revision.to_string(), t.peer.clone(), t.api.clone()]
    }));
    let t = table(&["ID", "KIND", "UPSTREAM", "APPLIED", "PEER", "API"], rows);
    // Edges follow the members in the same list, marked as such.
    let all: Vec<MemberView> = r.members.iter().map(MemberView::from).chain(r.tree.iter().map(MemberView::from)).collect();
    Output::table(&all, None, t)
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
    let staleness = |ms: Option<u64>| ms.map(|x| format!("{x} ms")).unwrap_or_else(|| "never".into());
    let mut rows = Vec::new();
    let mut member_status = Vec::new();
    // The tree below the node asked and below every member reached, once each.
    let mut tree: Vec<TreeView> = s.tree.iter().map(TreeView::from).collect();
    for ms in per_member.iter().filter_map(|(_, r)| r.as_ref().ok()) {
        for t in &ms.tree {
            if !tree.iter().any(|seen| seen.id == t.id) {
                tree.push(TreeView::from(t));
            }
        }
    }
    for (m, r) in &per_member {
        match r {
            Ok(ms) => {
                let lag = head.saturating_sub(ms.applied_revision);
                rows.push([
                    m.id.to_string(),
                    ms.role.clone(),
                    "-".into(),
                    if ms.leader_id == 0 { "-".into() } else { ms.leader_id.to_string() },
                    ms.applied_revision.to_string(),
                    lag.to_string(),
                    staleness(ms.staleness_ms),
                    ms.ready.to_string(),
                    m.api.clone(),
                ]);
                member_status.push(MemberStatus::Reached { status: ms.into(), lag });
            }
            Err(e) => {
                let unreachable = ["unreachable", "-", "-", "-", "-", "-", "false"].map(String::from);
                let [role, upstream, leader, applied, lag, staleness, ready] = unreachable;
                rows.push([m.id.to_string(), role, upstream, leader, applied, lag, staleness, ready, m.api.clone()]);
                member_status.push(MemberStatus::Unreachable { node_id: m.id, error: e.clone() });
            }
        }
    }
    let title = format!(
        "node {} ({}{}), leader {}, term {}, applied revision {}, {} zones, {} clusters, {} tenants",
        s.node_id,
        s.role,
        if s.upstream.is_empty() { String::new() } else { format!(", following node {} at {}", s.upstream_id, s.upstream) },
        if s.leader_id == 0 { "unknown".to_string() } else { format!("{} ({})", s.leader_id, s.leader_api) },
        s.term,
        s.applied_revision,
        s.zones,
        s.clusters,
        s.tenants
    );
    rows.extend(tree.iter().map(|t| {
        [
            t.id.to_string(),
            "edge".into(),
            t.upstream_id.to_string(),
            "-".into(),
            t.applied_revision.to_string(),
            head.saturating_sub(t.applied_revision).to_string(),
            staleness(t.staleness_ms),
            "-".into(),
            t.api.clone(),
        ]
    }));
    let view = NodeStatus { node: StatusView::from(&s), members: members(&s.members), member_status, tree };
    let t = table(&["ID", "ROLE", "UPSTREAM", "LEADER", "APPLIED", "LAG", "STALENESS", "READY", "API"], rows);
    Output::table(&view, Some(title), t)
}
