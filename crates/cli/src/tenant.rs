//! `tenant` (create, get, list, delete, pin, unpin, move, alias, import)
//! and `rebalance`.

use std::path::Path;

use switchboard_proto::v1::{self, tenants_client::TenantsClient};

use crate::error::{CliError, Result};
use crate::output::{fields, table, Output};
use crate::transport::{status, Ch};
use crate::view::{staged_line, tombstone_line, ImportErrorView, ImportSummary, MoveCancelled, RebalanceView, TenantView, TenantWritten};
use crate::zone::deleted;
use crate::{import, AliasCmd, Ctx, TenantCmd};

/// Records sent per ImportTenants message.
const IMPORT_CHUNK: usize = 1000;
/// Rejected lines shown in the table of `tenant import` (`--json` has all).
const IMPORT_ERRORS_SHOWN: usize = 20;

fn client(channel: Ch) -> TenantsClient<Ch> {
    TenantsClient::new(channel).max_decoding_message_size(switchboard_proto::API_MESSAGE_BYTES_MAX)
}

pub async fn run(channel: Ch, ctx: &Ctx, cmd: &TenantCmd) -> Result<Output> {
    let mut c = client(channel);
    let options = Some(ctx.options.clone());
    let r = match cmd {
        TenantCmd::Create { id, cluster } => {
            let req = v1::CreateTenantRequest { id: id.clone(), cluster: cluster.clone().unwrap_or_default(), options };
            c.create_tenant(req).await
        }
        TenantCmd::Get { id, consistent } => {
            let t = c.get_tenant(v1::GetTenantRequest { id: id.clone(), consistent: *consistent }).await.map_err(status)?.into_inner();
            return detail(&t, None);
        }
        TenantCmd::List { cluster, limit } => return list(c, cluster.clone().unwrap_or_default(), *limit).await,
        TenantCmd::Delete { id } => {
            let r = c.delete_tenant(v1::DeleteTenantRequest { id: id.clone(), options }).await.map_err(status)?.into_inner();
            return deleted(id, r.revision);
        }
        TenantCmd::Pin { id, cluster } => c.pin_tenant(v1::PinTenantRequest { id: id.clone(), cluster: cluster.clone(), options }).await,
        TenantCmd::Unpin { id } => c.unpin_tenant(v1::UnpinTenantRequest { id: id.clone(), options }).await,
        TenantCmd::Move { id, cluster, ttl_first } => {
            c.move_tenant(v1::MoveTenantRequest { id: id.clone(), cluster: cluster.clone(), ttl_first: *ttl_first, options }).await
        }
        TenantCmd::CancelMove { id } => {
            let r = c.cancel_move(v1::CancelMoveRequest { id: id.clone(), options }).await.map_err(status)?.into_inner();
            return Output::table(
                &MoveCancelled { cancelled: id.clone(), revision: r.revision },
                None,
                fields(vec![("cancelled".into(), format!("staged move of {id}")), ("revision".into(), r.revision.to_string())]),
            );
        }
        TenantCmd::Alias(AliasCmd::Add { id, alias }) => {
            c.add_alias(v1::AliasRequest { tenant: id.clone(), alias: alias.clone(), options }).await
        }
        TenantCmd::Alias(AliasCmd::Remove { id, alias }) => {
            c.remove_alias(v1::AliasRequest { tenant: id.clone(), alias: alias.clone(), options }).await
        }
        TenantCmd::Import { file } => return import_file(c, file).await,
    };
    let r = r.map_err(status)?.into_inner();
    let mut t = r.tenant.unwrap_or_default();
    if r.staged.is_some() {
        t.staged = r.staged;
    }
    detail(&t, Some(r.revision))
}

/// One tenant; after a write (`revision` given), with the write's revision.
fn detail(t: &v1::Tenant, revision: Option<u64>) -> Result<Output> {
    let mut rows = vec![
        ("id".to_string(), t.id.clone()),
        ("cluster".into(), t.cluster.clone()),
        ("pinned".into(), t.pinned.to_string()),
        ("aliases".into(), t.aliases.join(",")),
    ];
    for h in &t.history {
        rows.push(("moved".into(), tombstone_line(h)));
    }
    if let Some(m) = &t.staged {
        rows.push(("moving".into(), staged_line(m)));
    }
    rows.push(("revision".into(), revision.unwrap_or(t.revision).to_string()));
    match revision {
        Some(revision) => Output::table(&TenantWritten { revision, tenant: t.into() }, None, fields(rows)),
        None => Output::table(&TenantView::from(t), None, fields(rows)),
    }
}

/// Every tenant (on `cluster`, if not empty), paging, up to `limit`.
async fn list(mut c: TenantsClient<Ch>, cluster: String, limit: Option<u64>) -> Result<Output> {
    let mut all = Vec::new();
    let mut token = String::new();
    loop {
        let req = v1::ListTenantsRequest { cluster: cluster.clone(), page_size: 0, page_token: token };
        let page = c.list_tenants(req).await.map_err(status)?.into_inner();
        all.extend(page.tenants);
        if let Some(l) = limit {
            if all.len() as u64 >= l {
                all.truncate(usize::try_from(l).unwrap_or(usize::MAX));
                break;
            }
        }
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    let rows = all.iter().map(|t| {
        [t.id.clone(), t.cluster.clone(), t.pinned.to_string(), t.aliases.join(","), t.history.len().to_string(), t.revision.to_string()]
    });
    let t = table(&["ID", "CLUSTER", "PINNED", "ALIASES", "MOVES", "REVISION"], rows);
    Output::table(&all.iter().map(TenantView::from).collect::<Vec<_>>(), None, t)
}

/// `tenant import FILE`: JSON lines or CSV, streamed to ImportTenants in
/// chunks with a progress line; lines that do not parse are reported with
/// the server's rejections. Fails (after the summary) if any record was
/// rejected, so scripts notice.
async fn import_file(mut c: TenantsClient<Ch>, file: &Path) -> Result<Output> {
    let text = std::fs::read_to_string(file).map_err(CliError::io(format!("reading {}", file.display())))?;
    let (records, mut errors) = import::parse(&text, file);
    let total = records.len() + errors.len();
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let sender = tokio::spawn(async move {
        let tty = std::io::IsTerminal::is_terminal(&std::io::stderr());
        let mut sent = 0usize;
        for chunk in records.chunks(IMPORT_CHUNK) {
            if tx.send(v1::ImportTenantsRequest { records: chunk.to_vec() }).await.is_err() {
                break;
            }
            sent += chunk.len();
            if tty {
                eprint!("\rimporting: {sent} of {total} records sent");
            }
        }
        if tty {
            eprintln!();
        }
    });
    let summary = c.import_tenants(tokio_stream::wrappers::ReceiverStream::new(rx)).await.map_err(status)?.into_inner();
    let _ = sender.await;
    let local = errors.len() as u64;
    errors.extend(summary.errors.iter().map(|e| import::LineError { line: e.line, id: e.id.clone(), error: e.error.clone() }));
    errors.sort_by_key(|e| e.line);
    let rejected = summary.rejected + local;
    let mut rows = vec![
        ("created".to_string(), summary.created.to_string()),
        ("existing".into(), summary.existing.to_string()),
        ("rejected".into(), rejected.to_string()),
        ("revision".into(), summary.revision.to_string()),
    ];
    rows.extend(errors.iter().take(IMPORT_ERRORS_SHOWN).map(|e| (format!("line {}", e.line), format!("{}: {}", e.id, e.error))));
    let view = ImportSummary {
        created: summary.created,
        existing: summary.existing,
        rejected,
        revision: summary.revision,
        errors: errors.into_iter().map(|e| ImportErrorView { line: e.line, id: e.id, error: e.error }).collect(),
    };
    Ok(Output::table(&view, None, fields(rows))?.failing_if(rejected > 0, format!("{rejected} of {total} records rejected")))
}

pub async fn rebalance(channel: Ch, dry_run: bool, max: u32) -> Result<Output> {
    let r = client(channel).rebalance(v1::RebalanceRequest { dry_run, max }).await.map_err(status)?.into_inner();
    let failed = r.moves.iter().filter(|m| !m.error.is_empty()).count();
    let title = if dry_run {
        format!("{} unpinned tenants are not where hashing puts them today; {} shown", r.misplaced, r.moves.len())
    } else {
        format!("{} misplaced; moved {} ({} refused)", r.misplaced, r.moves.len() - failed, failed)
    };
    let rows = r.moves.iter().map(|m| [m.id.clone(), m.from.clone(), m.to.clone(), m.revision.to_string(), m.error.clone()]);
    let t = table(&["TENANT", "FROM", "TO", "REVISION", "ERROR"], rows);
    Output::table(&RebalanceView::from(&r), Some(title), t)
}
