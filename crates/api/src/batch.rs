//! The Writes service: many writes in one call, as one `Command::Batch`
//! (one log entry, one revision, one request id, a result per row),
//! written by `Api::write_batch`, which bulk import and rebalance use too.

use switchboard_domain::command::BatchRow;
use switchboard_domain::{model, Command};
use tonic::{Code, Request, Response, Status};

use crate::convert;
use crate::proto::{self, batch_command::Command as Row, writes_server};
use crate::service::Api;
use crate::status;

type Reply<T> = Result<Response<T>, Status>;

/// The gRPC name of a code, as a row's result spells it.
fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

/// A row of the API as a domain command, each field checked and named
/// (`commands[3].move_tenant.cluster`).
fn row_in(i: usize, c: proto::BatchCommand) -> Result<BatchRow, Status> {
    let at = |field: &str| format!("commands[{i}].{field}");
    let label = |field: &str, v: &str| convert::label(&at(field), v).map_err(status::invalid);
    let command = match c.command {
        None => return Err(Status::invalid_argument(format!("commands[{i}]: exactly one command is required"))),
        Some(Row::CreateTenant(r)) => {
            let cluster = if r.cluster.is_empty() { None } else { Some(label("create_tenant.cluster", &r.cluster)?) };
            Command::CreateTenant { id: label("create_tenant.id", &r.id)?, cluster }
        }
        Some(Row::DeleteTenant(r)) => Command::DeleteTenant { id: label("delete_tenant.id", &r.id)? },
        Some(Row::PinTenant(r)) => {
            Command::PinTenant { id: label("pin_tenant.id", &r.id)?, cluster: label("pin_tenant.cluster", &r.cluster)? }
        }
        Some(Row::UnpinTenant(r)) => Command::UnpinTenant { id: label("unpin_tenant.id", &r.id)? },
        Some(Row::MoveTenant(r)) => {
            Command::MoveTenant { id: label("move_tenant.id", &r.id)?, cluster: label("move_tenant.cluster", &r.cluster)? }
        }
        Some(Row::AddAlias(r)) => {
            Command::AddAlias { tenant: label("add_alias.tenant", &r.tenant)?, alias: label("add_alias.alias", &r.alias)? }
        }
        Some(Row::RemoveAlias(r)) => {
            Command::RemoveAlias { tenant: label("remove_alias.tenant", &r.tenant)?, alias: label("remove_alias.alias", &r.alias)? }
        }
        Some(Row::SetChallenge(r)) => {
            model::acme_owner(&at("set_challenge.name"), &r.name).map_err(status::invalid)?;
            model::acme_value(&at("set_challenge.value"), &r.value).map_err(status::invalid)?;
            Command::SetAcme { name: r.name, value: r.value, ttl: r.ttl, expires_in_s: r.expires_in_s }
        }
        Some(Row::ClearChallenge(r)) => {
            model::acme_owner(&at("clear_challenge.name"), &r.name).map_err(status::invalid)?;
            Command::ClearAcme { name: r.name, value: (!r.value.is_empty()).then_some(r.value) }
        }
    };
    Ok(BatchRow { command, expected_revision: c.expected_revision })
}

#[tonic::async_trait]
impl writes_server::Writes for Api {
    async fn batch(&self, req: Request<proto::BatchRequest>) -> Reply<proto::BatchResponse> {
        let caller = self.caller(&req)?;
        let r = req.into_inner();
        let rows = r.commands.into_iter().enumerate().map(|(i, c)| row_in(i, c)).collect::<Result<Vec<_>, _>>()?;
        let n = rows.len() as u32;
        let (revision, batch) = self.write_batch(&caller, rows, r.atomic, r.options).await?;
        let results: Vec<proto::BatchResult> = (0..n)
            .map(|i| match status::batch_row(&batch, i) {
                None => proto::BatchResult { revision, ..Default::default() },
                Some(s) => proto::BatchResult { revision: 0, code: code_name(s.code()).into(), message: s.message().into() },
            })
            .collect();
        let refused = results.iter().filter(|r| !r.code.is_empty()).count() as u32;
        Ok(Response::new(proto::BatchResponse { revision, results, applied: n - refused, refused }))
    }
}
