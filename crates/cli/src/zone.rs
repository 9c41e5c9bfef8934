//! `zone`: put a TOML zone file, list, get, delete, export as a master
//! file, import from one.

use std::io::Write;

use switchboard_proto::v1::{self, zones_client::ZonesClient};

use crate::error::{CliError, Result};
use crate::output::{fields, table, Output};
use crate::transport::{status, Ch};
use crate::view::{Deleted, ZoneExported, ZoneImported, ZoneView, ZoneWritten};
use crate::{zonefile, Ctx, ZoneCmd};

pub async fn run(channel: Ch, ctx: &Ctx, cmd: &ZoneCmd) -> Result<Output> {
    let mut c = ZonesClient::new(channel).max_decoding_message_size(switchboard_proto::API_MESSAGE_BYTES_MAX);
    let options = Some(ctx.options.clone());
    match cmd {
        ZoneCmd::Put { file } => {
            let zone = zonefile::load(file)?;
            let r = c.put_zone(v1::PutZoneRequest { zone: Some(zone), options }).await.map_err(status)?.into_inner();
            let z = r.zone.unwrap_or_default();
            let rows = [("apex", z.apex.clone()), ("revision", r.revision.to_string()), ("serial", z.serial.to_string())];
            Output::table(&ZoneWritten { revision: r.revision, zone: (&z).into() }, None, fields(rows.map(|(k, v)| (k.into(), v))))
        }
        ZoneCmd::List => {
            // Every page, so any number and size of zones can be listed.
            let mut zones = Vec::new();
            let mut page_token = String::new();
            loop {
                let page = c.list_zones(v1::ListZonesRequest { page_size: 0, page_token }).await.map_err(status)?.into_inner();
                zones.extend(page.zones);
                if page.next_page_token.is_empty() {
                    break;
                }
                page_token = page.next_page_token;
            }
            let rows = zones.iter().map(|z| {
                [
                    z.apex.clone(),
                    z.environment.clone(),
                    z.serial.to_string(),
                    z.rules.len().to_string(),
                    z.records.len().to_string(),
                    z.revision.to_string(),
                ]
            });
            let t = table(&["APEX", "ENVIRONMENT", "SERIAL", "RULES", "RECORDS", "REVISION"], rows);
            Output::table(&zones.iter().map(ZoneView::from).collect::<Vec<_>>(), None, t)
        }
        ZoneCmd::Get { apex } => {
            let z = c.get_zone(v1::GetZoneRequest { apex: apex.clone() }).await.map_err(status)?.into_inner();
            Output::json(&ZoneView::from(&z))
        }
        ZoneCmd::Delete { apex } => {
            let r = c.delete_zone(v1::DeleteZoneRequest { apex: apex.clone(), options }).await.map_err(status)?.into_inner();
            deleted(apex, r.revision)
        }
        ZoneCmd::Export { apex, output } => {
            let mut stream = c.export_zone(v1::ExportZoneRequest { apex: apex.clone() }).await.map_err(status)?.into_inner();
            let mut out: Box<dyn Write> = match output {
                Some(path) => Box::new(std::io::BufWriter::new(
                    std::fs::File::create(path).map_err(CliError::io(format!("creating {}", path.display())))?,
                )),
                None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
            };
            let (mut bytes, mut revision) = (0usize, 0u64);
            while let Some(chunk) = stream.message().await.map_err(status)? {
                out.write_all(chunk.text.as_bytes()).map_err(CliError::io("writing the zone"))?;
                bytes += chunk.text.len();
                revision = chunk.revision;
            }
            out.flush().map_err(CliError::io("writing the zone"))?;
            drop(out);
            match output {
                // The file is the output; say what was written on stderr only.
                Some(path) => {
                    eprintln!("wrote {apex} at revision {revision} ({bytes} bytes) to {}", path.display());
                    Output::json(&ZoneExported { apex: apex.clone(), revision, bytes, file: path.display().to_string() })
                }
                None => Ok(Output::done()),
            }
        }
        ZoneCmd::Import { file, apex, environment } => {
            let text = std::fs::read_to_string(file).map_err(CliError::io(format!("reading {}", file.display())))?;
            let imported = zonefile::master(&text, apex.as_deref()).map_err(CliError::within(format!("master file {}", file.display())))?;
            let existing = match c.get_zone(v1::GetZoneRequest { apex: imported.apex.clone() }).await {
                Ok(z) => Some(z.into_inner()),
                Err(s) if s.code() == tonic::Code::NotFound => None,
                Err(s) => return Err(status(s)),
            };
            // Compare-and-set on what was read: rules changed meanwhile are not lost.
            let (zone, read_at) = match existing {
                Some(z) => {
                    let revision = z.revision;
                    let environment = environment.clone().unwrap_or(z.environment);
                    (v1::Zone { environment, rules: z.rules, ttl: z.ttl, ..imported }, revision)
                }
                None => {
                    let environment = environment.clone().ok_or_else(|| {
                        CliError::input(format!("zone {} does not exist: give --environment to create it", imported.apex))
                    })?;
                    (v1::Zone { environment, ..imported }, 0)
                }
            };
            let count = zone.records.len();
            let options = options.map(|o| v1::WriteOptions { expected_revision: Some(o.expected_revision.unwrap_or(read_at)), ..o });
            let r = c.put_zone(v1::PutZoneRequest { zone: Some(zone), options }).await.map_err(status)?.into_inner();
            let z = r.zone.unwrap_or_default();
            let rows = [
                ("apex", z.apex.clone()),
                ("records", count.to_string()),
                ("revision", r.revision.to_string()),
                ("serial", z.serial.to_string()),
            ];
            let view = ZoneImported { revision: r.revision, records: count, zone: (&z).into() };
            Output::table(&view, None, fields(rows.map(|(k, v)| (k.into(), v))))
        }
    }
}

/// The answer to every deletion: what and at which revision.
pub fn deleted(what: &str, revision: u64) -> Result<Output> {
    let rows = [("deleted".to_string(), what.to_string()), ("revision".to_string(), revision.to_string())];
    Output::table(&Deleted { deleted: what.to_string(), revision }, None, fields(rows))
}
