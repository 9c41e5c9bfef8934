//! `watch`: every change after a revision as it commits, one JSON line per
//! event on standard output (with or without `--json`), flushed as they come.

use std::io::Write;

use switchboard_proto::v1::{self, watch_client::WatchClient};

use crate::error::{CliError, Result};
use crate::output::Output;
use crate::transport::{status, Ch};
use crate::view::{Compacted, EventView};
use crate::Kind;

pub async fn run(channel: Ch, after: u64, kinds: &[Kind], cluster: Option<String>, count: Option<u64>) -> Result<Output> {
    let kinds = kinds.iter().map(|k| k.wire() as i32).collect();
    let req = v1::WatchRequest { after_revision: after, kinds, cluster: cluster.unwrap_or_default() };
    // Events as large as the server may send (the default stops at 4 MiB).
    let mut stream = WatchClient::new(channel)
        .max_decoding_message_size(switchboard_proto::API_MESSAGE_BYTES_MAX)
        .watch(req)
        .await
        .map_err(status)?
        .into_inner();
    let mut seen = 0u64;
    let mut out = std::io::stdout().lock();
    while let Some(r) = stream.message().await.map_err(status)? {
        if r.compacted {
            let why = format!(
                "revision {after} is compacted on this node (it resumes from {}): list again and watch from the list's revision",
                r.revision
            );
            return Ok(Output::json(&Compacted { compacted: true, revision: r.revision })?.failing(why));
        }
        for e in &r.events {
            let line = serde_json::to_value(EventView::from(e))?;
            writeln!(out, "{line}").map_err(CliError::io("writing to standard output"))?;
            seen += 1;
            if count.is_some_and(|n| seen >= n) {
                out.flush().map_err(CliError::io("writing to standard output"))?;
                return Ok(Output::done());
            }
        }
        out.flush().map_err(CliError::io("writing to standard output"))?;
    }
    Ok(Output::done().failing("the node ended the stream"))
}
