//! `batch FILE`: many writes in one call (the Writes service), read from
//! JSON lines, one command per line as the API's `BatchCommand` spells it:
//!
//! ```text
//! {"create_tenant": {"id": "acme", "cluster": "mt1"}}
//! {"move_tenant": {"id": "globex", "cluster": "mt2"}, "expected_revision": 41}
//! {"set_challenge": {"name": "acme.apps.example.com", "value": "…"}}
//! ```
//!
//! A file longer than one call's limit goes as several calls, in order
//! (`--atomic` needs it to fit one). Fails if any row was refused.

use std::path::Path;

use serde::{Deserialize, Serialize};
use switchboard_proto::v1::{self, batch_command::Command as Row, writes_client::WritesClient};

use crate::error::{CliError, Result};
use crate::output::{table, Output};
use crate::transport::{status, Ch};
use crate::Ctx;

/// Most rows in one call, as the server allows.
pub const BATCH_ROWS_MAX: usize = 1024;

#[derive(Deserialize)]
struct Line {
    #[serde(flatten)]
    command: Op,
    #[serde(default)]
    expected_revision: Option<u64>,
}

#[derive(Deserialize)]
#[serde(rename_all = "snake_case")]
enum Op {
    CreateTenant {
        id: String,
        #[serde(default)]
        cluster: String,
    },
    DeleteTenant {
        id: String,
    },
    PinTenant {
        id: String,
        cluster: String,
    },
    UnpinTenant {
        id: String,
    },
    MoveTenant {
        id: String,
        cluster: String,
    },
    AddAlias {
        tenant: String,
        alias: String,
    },
    RemoveAlias {
        tenant: String,
        alias: String,
    },
    SetChallenge {
        name: String,
        value: String,
        #[serde(default)]
        ttl: Option<u32>,
        #[serde(default)]
        expires_in_s: Option<u64>,
    },
    ClearChallenge {
        name: String,
        #[serde(default)]
        value: String,
    },
}

impl Op {
    fn into_row(self) -> (String, Row) {
        match self {
            Op::CreateTenant { id, cluster } => (format!("create tenant {id}"), Row::CreateTenant(v1::BatchCreateTenant { id, cluster })),
            Op::DeleteTenant { id } => (format!("delete tenant {id}"), Row::DeleteTenant(v1::BatchTenantId { id })),
            Op::PinTenant { id, cluster } => {
                (format!("pin tenant {id} to {cluster}"), Row::PinTenant(v1::BatchTenantCluster { id, cluster }))
            }
            Op::UnpinTenant { id } => (format!("unpin tenant {id}"), Row::UnpinTenant(v1::BatchTenantId { id })),
            Op::MoveTenant { id, cluster } => {
                (format!("move tenant {id} to {cluster}"), Row::MoveTenant(v1::BatchTenantCluster { id, cluster }))
            }
            Op::AddAlias { tenant, alias } => (format!("add alias {alias} to {tenant}"), Row::AddAlias(v1::BatchAlias { tenant, alias })),
            Op::RemoveAlias { tenant, alias } => {
                (format!("remove alias {alias} from {tenant}"), Row::RemoveAlias(v1::BatchAlias { tenant, alias }))
            }
            Op::SetChallenge { name, value, ttl, expires_in_s } => {
                (format!("set challenge {name}"), Row::SetChallenge(v1::BatchSetChallenge { name, value, ttl, expires_in_s }))
            }
            Op::ClearChallenge { name, value } => {
                (format!("clear challenge {name}"), Row::ClearChallenge(v1::BatchClearChallenge { name, value }))
            }
        }
    }
}

/// The rows of `text` with their line numbers and a description; the first
/// line that does not parse is an error naming the file and line.
pub fn parse(text: &str, file: &Path) -> Result<Vec<(u64, String, v1::BatchCommand)>> {
    let mut rows = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line_no = i as u64 + 1;
        if line.trim().is_empty() {
            continue;
        }
        let parsed: Line = serde_json::from_str(line).map_err(|e| CliError::input(format!("{}:{line_no}: {e}", file.display())))?;
        let (what, command) = parsed.command.into_row();
        rows.push((line_no, what, v1::BatchCommand { command: Some(command), expected_revision: parsed.expected_revision }));
    }
    if rows.is_empty() {
        return Err(CliError::input(format!("{}: no commands", file.display())));
    }
    Ok(rows)
}

#[derive(Debug, Serialize)]
struct RowView {
    line: u64,
    command: String,
    /// 0 when the row did not take effect.
    revision: u64,
    #[serde(skip_serializing_if = "String::is_empty")]
    code: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    message: String,
}

#[derive(Debug, Serialize)]
struct BatchView {
    applied: u64,
    refused: u64,
    rows: Vec<RowView>,
}

pub async fn run(channel: Ch, ctx: &Ctx, file: &Path, atomic: bool) -> Result<Output> {
    let text = std::fs::read_to_string(file).map_err(CliError::io(format!("reading {}", file.display())))?;
    let rows = parse(&text, file)?;
    if atomic && rows.len() > BATCH_ROWS_MAX {
        return Err(CliError::input(format!(
            "{}: {} commands, but an atomic batch holds at most {BATCH_ROWS_MAX}",
            file.display(),
            rows.len()
        )));
    }
    let mut c = WritesClient::new(channel).max_decoding_message_size(switchboard_proto::API_MESSAGE_BYTES_MAX);
    let mut view = BatchView { applied: 0, refused: 0, rows: Vec::with_capacity(rows.len()) };
    let calls = rows.len().div_ceil(BATCH_ROWS_MAX);
    for (k, chunk) in rows.chunks(BATCH_ROWS_MAX).enumerate() {
        let mut options = ctx.options.clone();
        // One id per call: a rerun with the same --request-id replays each.
        if calls > 1 && !options.request_id.is_empty() {
            options.request_id = format!("{}/{k}", options.request_id);
        }
        let req = v1::BatchRequest { commands: chunk.iter().map(|(_, _, c)| c.clone()).collect(), atomic, options: Some(options) };
        let r = c.batch(req).await.map_err(status)?.into_inner();
        view.applied += u64::from(r.applied);
        view.refused += u64::from(r.refused);
        for ((line, command, _), result) in chunk.iter().zip(r.results) {
            view.rows.push(RowView {
                line: *line,
                command: command.clone(),
                revision: result.revision,
                code: result.code,
                message: result.message,
            });
        }
    }
    let t = table(
        &["LINE", "COMMAND", "RESULT"],
        view.rows.iter().map(|r| {
            let result = if r.code.is_empty() { format!("revision {}", r.revision) } else { format!("{}: {}", r.code, r.message) };
            [r.line.to_string(), r.command.clone(), result]
        }),
    );
    let (applied, refused) = (view.applied, view.refused);
    let title = format!("{applied} applied, {refused} refused");
    Ok(Output::table(&view, Some(title), t)?.failing_if(refused > 0, format!("{refused} of {} commands refused", applied + refused)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_read_as_the_apis_rows_and_bad_ones_name_their_line() {
        let text = "{\"create_tenant\": {\"id\": \"t1\"}}\n\n{\"move_tenant\": {\"id\": \"t2\", \"cluster\": \"mt2\"}, \"expected_revision\": 7}\n";
        let rows = parse(text, Path::new("b.jsonl")).unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!((rows[1].0, rows[1].1.as_str()), (3, "move tenant t2 to mt2"));
        assert_eq!(rows[1].2.expected_revision, Some(7));
        assert!(matches!(rows[0].2.command, Some(Row::CreateTenant(ref c)) if c.id == "t1" && c.cluster.is_empty()));
        let e = parse("{\"create_tenant\": {\"id\": \"t1\"}}\n{\"launch\": {}}\n", Path::new("b.jsonl")).unwrap_err().to_string();
        assert!(e.contains("b.jsonl:2:"), "{e}");
        assert!(parse("\n", Path::new("b.jsonl")).is_err());
    }
}
