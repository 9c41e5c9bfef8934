//! The API client behind every subcommand but `serve`: one call (or a page
//! loop), printed as a table or, with `--json`, as JSON.

use anyhow::{anyhow, Context};
use serde_json::{json, Value};
use switchboard_api::proto::{
    self, clusters_client::ClustersClient, node_client::NodeClient, tenants_client::TenantsClient, zones_client::ZonesClient,
};
use tonic::transport::{Channel, Endpoint};

use crate::{AliasCmd, ClusterCmd, Cmd, TenantCmd, ZoneCmd};

/// Time to connect and to complete one call.
const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);
const CALL_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

pub fn run(server: &str, json: bool, command: Cmd) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().context("starting the client runtime")?;
    rt.block_on(async move {
        let endpoint = Endpoint::from_shared(server.to_string())
            .map_err(|e| anyhow!("--server {server:?}: {e}"))?
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(CALL_TIMEOUT);
        let channel = endpoint.connect().await.map_err(|e| anyhow!("connecting to {server}: {}", source_text(&e)))?;
        let out = execute(channel, command).await?;
        print(json, &out);
        Ok(())
    })
}

fn source_text(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

/// A gRPC status as a one-line error: code and message.
fn status(s: tonic::Status) -> anyhow::Error {
    let leader = s
        .metadata()
        .get(switchboard_api::LEADER_API_METADATA)
        .and_then(|v| v.to_str().ok())
        .map(|l| format!(" (leader API: {l})"))
        .unwrap_or_default();
    anyhow!("{:?}: {}{leader}", s.code(), s.message())
}

/// What a command printed: a JSON value plus how to show it as a table.
struct Output {
    value: Value,
    table: Option<Table>,
}

struct Table {
    headers: Vec<&'static str>,
    rows: Vec<Vec<String>>,
}

fn print(json: bool, out: &Output) {
    match (&out.table, json) {
        (Some(t), false) => {
            let mut widths: Vec<usize> = t.headers.iter().map(|h| h.len()).collect();
            for r in &t.rows {
                for (i, c) in r.iter().enumerate() {
                    widths[i] = widths[i].max(c.len());
                }
            }
            let line = |cells: Vec<&str>| {
                cells
                    .iter()
                    .enumerate()
                    .map(|(i, c)| format!("{c:<w$}", w = widths[i]))
                    .collect::<Vec<_>>()
                    .join("  ")
                    .trim_end()
                    .to_string()
            };
            println!("{}", line(t.headers.clone()));
            for r in &t.rows {
                println!("{}", line(r.iter().map(String::as_str).collect()));
            }
        }
        _ => println!("{}", if json { out.value.to_string() } else { serde_json::to_string_pretty(&out.value).unwrap_or_default() }),
    }
}

fn kv(rows: Vec<(&'static str, String)>, value: Value) -> Output {
    Output {
        value,
        table: Some(Table { headers: vec!["FIELD", "VALUE"], rows: rows.into_iter().map(|(k, v)| vec![k.to_string(), v]).collect() }),
    }
}

async fn execute(channel: Channel, command: Cmd) -> anyhow::Result<Output> {
    match command {
        Cmd::Serve { .. } => Err(anyhow!("serve is not a client command")),
        Cmd::Zone(c) => zone(ZonesClient::new(channel).max_decoding_message_size(switchboard_api::API_MESSAGE_BYTES_MAX), c).await,
        Cmd::Cluster(c) => cluster(ClustersClient::new(channel), c).await,
        Cmd::Tenant(c) => tenant(TenantsClient::new(channel).max_decoding_message_size(switchboard_api::API_MESSAGE_BYTES_MAX), c).await,
        Cmd::Status => {
            let s = NodeClient::new(channel).status(proto::StatusRequest {}).await.map_err(status)?.into_inner();
            let members: Vec<Value> =
                s.members.iter().map(|m| json!({"id": m.id, "peer": m.peer, "api": m.api, "voter": m.voter})).collect();
            let value = json!({
                "node_id": s.node_id, "role": s.role, "leader_id": s.leader_id, "leader_api": s.leader_api, "term": s.term,
                "last_log_index": s.last_log_index, "applied_revision": s.applied_revision, "members": members,
                "zones": s.zones, "clusters": s.clusters, "tenants": s.tenants,
            });
            let member_text = s
                .members
                .iter()
                .map(|m| format!("{}{}@{}", m.id, if m.voter { "" } else { "(learner)" }, m.peer))
                .collect::<Vec<_>>()
                .join(", ");
            Ok(kv(
                vec![
                    ("node_id", s.node_id.to_string()),
                    ("role", s.role),
                    ("leader", if s.leader_id == 0 { "unknown".into() } else { format!("{} ({})", s.leader_id, s.leader_api) }),
                    ("term", s.term.to_string()),
                    ("last_log_index", s.last_log_index.to_string()),
                    ("applied_revision", s.applied_revision.to_string()),
                    ("members", member_text),
                    ("zones", s.zones.to_string()),
                    ("clusters", s.clusters.to_string()),
                    ("tenants", s.tenants.to_string()),
                ],
                value,
            ))
        }
    }
}

fn zone_json(z: &proto::Zone) -> Value {
    let soa = z.soa.clone().unwrap_or_default();
    json!({
        "apex": z.apex, "environment": z.environment, "ttl": z.ttl, "ns": z.ns, "serial": z.serial, "revision": z.revision,
        "soa": {"mname": soa.mname, "rname": soa.rname, "refresh": soa.refresh, "retry": soa.retry, "expire": soa.expire, "minimum": soa.minimum},
        "rules": z.rules.iter().map(|r| match &r.kind {
            Some(proto::rule::Kind::ServiceTenant(s)) => json!({"kind": "service-tenant", "services": s.services, "target": s.target, "ttl": s.ttl}),
            Some(proto::rule::Kind::TenantHost(h)) => json!({"kind": "tenant-host", "ttl": h.ttl}),
            None => Value::Null,
        }).collect::<Vec<_>>(),
        "records": z.records.iter().map(|r| json!({"name": r.name, "type": r.r#type, "ttl": r.ttl, "data": r.data})).collect::<Vec<_>>(),
    })
}

fn zone_rows(zones: &[proto::Zone]) -> Table {
    Table {
        headers: vec!["APEX", "ENVIRONMENT", "SERIAL", "RULES", "RECORDS", "REVISION"],
        rows: zones
            .iter()
            .map(|z| {
                vec![
                    z.apex.clone(),
                    z.environment.clone(),
                    z.serial.to_string(),
                    z.rules.len().to_string(),
                    z.records.len().to_string(),
                    z.revision.to_string(),
                ]
            })
            .collect(),
    }
}

async fn zone(mut c: ZonesClient<Channel>, cmd: ZoneCmd) -> anyhow::Result<Output> {
    match cmd {
        ZoneCmd::Put { file } => {
            let zone = crate::zonefile::load(&file)?;
            let r = c.put_zone(proto::PutZoneRequest { zone: Some(zone) }).await.map_err(status)?.into_inner();
            let z = r.zone.unwrap_or_default();
            Ok(kv(
                vec![("apex", z.apex.clone()), ("revision", r.revision.to_string()), ("serial", z.serial.to_string())],
                json!({"revision": r.revision, "zone": zone_json(&z)}),
            ))
        }
        ZoneCmd::List => {
            let zones = c.list_zones(proto::ListZonesRequest {}).await.map_err(status)?.into_inner().zones;
            Ok(Output { value: Value::Array(zones.iter().map(zone_json).collect()), table: Some(zone_rows(&zones)) })
        }
        ZoneCmd::Get { apex } => {
            let z = c.get_zone(proto::GetZoneRequest { apex }).await.map_err(status)?.into_inner();
            Ok(Output { value: zone_json(&z), table: None })
        }
        ZoneCmd::Delete { apex } => {
            let r = c.delete_zone(proto::DeleteZoneRequest { apex: apex.clone() }).await.map_err(status)?.into_inner();
            Ok(kv(vec![("deleted", apex.clone()), ("revision", r.revision.to_string())], json!({"deleted": apex, "revision": r.revision})))
        }
    }
}

fn state_name(s: i32) -> &'static str {
    match proto::ClusterState::try_from(s) {
        Ok(proto::ClusterState::Draining) => "draining",
        Ok(proto::ClusterState::Down) => "down",
        _ => "active",
    }
}

fn cluster_json(c: &proto::Cluster) -> Value {
    json!({"id": c.id, "ipv4": c.ipv4, "ipv6": c.ipv6, "hostname": c.hostname, "dedicated": c.dedicated, "weight": c.weight, "state": state_name(c.state), "tenants": c.tenants, "revision": c.revision})
}

fn cluster_rows(cs: &[proto::Cluster]) -> Table {
    Table {
        headers: vec!["ID", "STATE", "DEDICATED", "WEIGHT", "TENANTS", "INGRESS", "REVISION"],
        rows: cs
            .iter()
            .map(|c| {
                let mut ingress: Vec<String> = c.ipv4.iter().chain(c.ipv6.iter()).cloned().collect();
                if !c.hostname.is_empty() {
                    ingress.push(c.hostname.clone());
                }
                vec![
                    c.id.clone(),
                    state_name(c.state).into(),
                    c.dedicated.to_string(),
                    c.weight.unwrap_or_default().to_string(),
                    c.tenants.to_string(),
                    ingress.join(","),
                    c.revision.to_string(),
                ]
            })
            .collect(),
    }
}

async fn cluster(mut c: ClustersClient<Channel>, cmd: ClusterCmd) -> anyhow::Result<Output> {
    match cmd {
        ClusterCmd::Put(p) => {
            let state = match p.state.to_ascii_lowercase().as_str() {
                "active" => proto::ClusterState::Active,
                "draining" => proto::ClusterState::Draining,
                "down" => proto::ClusterState::Down,
                other => return Err(anyhow!("--state: {other:?} is not one of active, draining, down")),
            };
            let cluster = proto::Cluster {
                id: p.id,
                ipv4: p.ipv4,
                ipv6: p.ipv6,
                hostname: p.hostname.unwrap_or_default(),
                dedicated: p.dedicated,
                weight: p.weight,
                state: state as i32,
                revision: 0,
                tenants: 0,
            };
            let r = c.put_cluster(proto::PutClusterRequest { cluster: Some(cluster) }).await.map_err(status)?.into_inner();
            let cl = r.cluster.unwrap_or_default();
            let mut out = Output {
                value: json!({"revision": r.revision, "cluster": cluster_json(&cl)}),
                table: Some(cluster_rows(std::slice::from_ref(&cl))),
            };
            if let Some(t) = &mut out.table {
                t.rows[0][6] = r.revision.to_string();
            }
            Ok(out)
        }
        ClusterCmd::List => {
            let cs = c.list_clusters(proto::ListClustersRequest {}).await.map_err(status)?.into_inner().clusters;
            Ok(Output { value: Value::Array(cs.iter().map(cluster_json).collect()), table: Some(cluster_rows(&cs)) })
        }
        ClusterCmd::Get { id } => {
            let cl = c.get_cluster(proto::GetClusterRequest { id }).await.map_err(status)?.into_inner();
            Ok(Output { value: cluster_json(&cl), table: Some(cluster_rows(std::slice::from_ref(&cl))) })
        }
        ClusterCmd::Delete { id } => {
            let r = c.delete_cluster(proto::DeleteClusterRequest { id: id.clone() }).await.map_err(status)?.into_inner();
            Ok(kv(vec![("deleted", id.clone()), ("revision", r.revision.to_string())], json!({"deleted": id, "revision": r.revision})))
        }
    }
}

fn tenant_json(t: &proto::Tenant) -> Value {
    json!({
        "id": t.id, "cluster": t.cluster, "pinned": t.pinned, "aliases": t.aliases, "revision": t.revision,
        "history": t.history.iter().map(|h| json!({"from": h.from, "to": h.to, "revision": h.revision, "at_ms": h.at_ms})).collect::<Vec<_>>(),
    })
}

fn tenant_detail(t: &proto::Tenant, revision: Option<u64>) -> Output {
    let mut rows =
        vec![("id", t.id.clone()), ("cluster", t.cluster.clone()), ("pinned", t.pinned.to_string()), ("aliases", t.aliases.join(","))];
    for h in &t.history {
        rows.push(("moved", format!("{} -> {} at revision {} ({} ms)", h.from, h.to, h.revision, h.at_ms)));
    }
    rows.push(("revision", revision.unwrap_or(t.revision).to_string()));
    let value = match revision {
        Some(r) => json!({"revision": r, "tenant": tenant_json(t)}),
        None => tenant_json(t),
    };
    kv(rows, value)
}

async fn tenant(mut c: TenantsClient<Channel>, cmd: TenantCmd) -> anyhow::Result<Output> {
    let written = |r: proto::TenantResponse| -> Output { tenant_detail(&r.tenant.unwrap_or_default(), Some(r.revision)) };
    match cmd {
        TenantCmd::Create { id, cluster } => {
            let r = c
                .create_tenant(proto::CreateTenantRequest { id, cluster: cluster.unwrap_or_default() })
                .await
                .map_err(status)?
                .into_inner();
            Ok(written(r))
        }
        TenantCmd::Get { id } => Ok(tenant_detail(&c.get_tenant(proto::GetTenantRequest { id }).await.map_err(status)?.into_inner(), None)),
        TenantCmd::List { cluster, limit } => {
            let mut all = Vec::new();
            let mut token = String::new();
            loop {
                let page = c
                    .list_tenants(proto::ListTenantsRequest {
                        cluster: cluster.clone().unwrap_or_default(),
                        page_size: 0,
                        page_token: token,
                    })
                    .await
                    .map_err(status)?
                    .into_inner();
                all.extend(page.tenants);
                if let Some(l) = limit {
                    if all.len() as u64 >= l {
                        all.truncate(l as usize);
                        break;
                    }
                }
                if page.next_page_token.is_empty() {
                    break;
                }
                token = page.next_page_token;
            }
            let rows = all
                .iter()
                .map(|t| {
                    vec![
                        t.id.clone(),
                        t.cluster.clone(),
                        t.pinned.to_string(),
                        t.aliases.join(","),
                        t.history.len().to_string(),
                        t.revision.to_string(),
                    ]
                })
                .collect();
            Ok(Output {
                value: Value::Array(all.iter().map(tenant_json).collect()),
                table: Some(Table { headers: vec!["ID", "CLUSTER", "PINNED", "ALIASES", "MOVES", "REVISION"], rows }),
            })
        }
        TenantCmd::Delete { id } => {
            let r = c.delete_tenant(proto::DeleteTenantRequest { id: id.clone() }).await.map_err(status)?.into_inner();
            Ok(kv(vec![("deleted", id.clone()), ("revision", r.revision.to_string())], json!({"deleted": id, "revision": r.revision})))
        }
        TenantCmd::Pin { id, cluster } => {
            Ok(written(c.pin_tenant(proto::PinTenantRequest { id, cluster }).await.map_err(status)?.into_inner()))
        }
        TenantCmd::Unpin { id } => Ok(written(c.unpin_tenant(proto::UnpinTenantRequest { id }).await.map_err(status)?.into_inner())),
        TenantCmd::Move { id, cluster } => {
            Ok(written(c.move_tenant(proto::MoveTenantRequest { id, cluster }).await.map_err(status)?.into_inner()))
        }
        TenantCmd::Alias(AliasCmd::Add { id, alias }) => {
            Ok(written(c.add_alias(proto::AliasRequest { tenant: id, alias }).await.map_err(status)?.into_inner()))
        }
        TenantCmd::Alias(AliasCmd::Remove { id, alias }) => {
            Ok(written(c.remove_alias(proto::AliasRequest { tenant: id, alias }).await.map_err(status)?.into_inner()))
        }
    }
}
