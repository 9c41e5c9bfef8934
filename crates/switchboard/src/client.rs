//! The API client behind every subcommand but `serve`: one call (or a page
//! loop), printed as a table or, with `--json`, as JSON.

use anyhow::{anyhow, Context};
use serde_json::{json, Value};
use switchboard_api::proto::{
    self, acme_client::AcmeClient, clusters_client::ClustersClient, credentials_client::CredentialsClient,
    membership_client::MembershipClient, node_client::NodeClient, tenants_client::TenantsClient, watch_client::WatchClient,
    zones_client::ZonesClient,
};
use tonic::transport::{Channel, Endpoint};

use crate::{AcmeCmd, AliasCmd, ClusterCmd, Cmd, MemberCmd, TenantCmd, TokenCmd, ZoneCmd};

/// Time to connect and to complete one call.
const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);
const CALL_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

pub use proto::write_options::Wait;
pub use proto::WriteOptions;

/// Adds the caller's token to every call as `authorization: Bearer <token>`.
#[derive(Debug, Clone)]
struct Bearer(Option<tonic::metadata::AsciiMetadataValue>);

impl tonic::service::Interceptor for Bearer {
    fn call(&mut self, mut request: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(v) = &self.0 {
            request.metadata_mut().insert("authorization", v.clone());
        }
        Ok(request)
    }
}

/// A channel whose calls carry the token.
type Ch = tonic::service::interceptor::InterceptedService<Channel, Bearer>;

pub fn run(server: &str, token: Option<&str>, json: bool, options: WriteOptions, command: Cmd) -> anyhow::Result<()> {
    let bearer = Bearer(match token {
        Some(t) => Some(format!("Bearer {}", t.trim()).parse().map_err(|_| anyhow!("--token: not a printable ASCII token"))?),
        None => None,
    });
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().context("starting the client runtime")?;
    rt.block_on(async move {
        // Bulk and streaming calls run as long as their work takes.
        let bulk = matches!(
            command,
            Cmd::Tenant(TenantCmd::Import { .. }) | Cmd::Rebalance { .. } | Cmd::Zone(ZoneCmd::Export { .. }) | Cmd::Watch { .. }
        );
        let timeout = |e: Endpoint| if bulk { e } else { e.timeout(CALL_TIMEOUT) };
        let endpoint = timeout(
            Endpoint::from_shared(server.to_string()).map_err(|e| anyhow!("--server {server:?}: {e}"))?.connect_timeout(CONNECT_TIMEOUT),
        );
        let channel = endpoint.connect().await.map_err(|e| anyhow!("connecting to {server}: {}", source_text(&e)))?;
        let channel = Ch::new(channel, bearer.clone());
        let out = match execute(channel, &bearer, command.clone(), &options).await {
            // The node could neither lead nor reach the leader: ask the leader directly, once.
            Err(e) if e.downcast_ref::<StatusError>().and_then(|s| s.leader.as_ref()).is_some() => {
                let leader = e.downcast_ref::<StatusError>().and_then(|s| s.leader.clone()).unwrap_or_default();
                let endpoint = timeout(
                    Endpoint::from_shared(format!("http://{leader}"))
                        .map_err(|e| anyhow!("leader address {leader:?}: {e}"))?
                        .connect_timeout(CONNECT_TIMEOUT),
                );
                let channel = endpoint.connect().await.map_err(|e| anyhow!("connecting to the leader at {leader}: {}", source_text(&e)))?;
                execute(Ch::new(channel, bearer.clone()), &bearer, command, &options).await?
            }
            other => other?,
        };
        print(json, &out);
        match out.failure {
            Some(why) => Err(anyhow!(why)),
            None => Ok(()),
        }
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

/// A failed call: its gRPC code and message, and the leader's API address
/// when the node said it is not the leader.
#[derive(Debug)]
struct StatusError {
    code: tonic::Code,
    message: String,
    leader: Option<String>,
}

impl std::fmt::Display for StatusError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}: {}", self.code, self.message)
    }
}

impl std::error::Error for StatusError {}

fn status(s: tonic::Status) -> anyhow::Error {
    let leader = if s.code() == tonic::Code::Unavailable {
        s.metadata().get(switchboard_api::LEADER_API_METADATA).and_then(|v| v.to_str().ok()).map(str::to_string)
    } else {
        None
    };
    anyhow::Error::new(StatusError { code: s.code(), message: s.message().to_string(), leader })
}

/// What a command printed: a JSON value plus how to show it as a table,
/// and an error to exit with after printing it.
struct Output {
    value: Value,
    table: Option<Table>,
    failure: Option<String>,
}

impl Output {
    fn failing_if(mut self, failed: bool, why: String) -> Output {
        if failed {
            self.failure = Some(why);
        }
        self
    }
}

struct Table {
    /// A line printed above the table.
    title: Option<String>,
    headers: Vec<&'static str>,
    rows: Vec<Vec<String>>,
}

fn print(json: bool, out: &Output) {
    if out.value.is_null() && out.table.is_none() {
        return; // the command wrote its own output (zone export to stdout)
    }
    match (&out.table, json) {
        (Some(t), false) => {
            if let Some(title) = &t.title {
                println!("{title}\n");
            }
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

fn deleted(what: &str, revision: u64) -> Output {
    kv(vec![("deleted", what.to_string()), ("revision", revision.to_string())], json!({"deleted": what, "revision": revision}))
}

fn kv(rows: Vec<(&'static str, String)>, value: Value) -> Output {
    Output {
        value,
        table: Some(Table {
            title: None,
            headers: vec!["FIELD", "VALUE"],
            rows: rows.into_iter().map(|(k, v)| vec![k.to_string(), v]).collect(),
        }),
        failure: None,
    }
}

async fn execute(channel: Ch, bearer: &Bearer, command: Cmd, options: &WriteOptions) -> anyhow::Result<Output> {
    match command {
        Cmd::Serve { .. } => Err(anyhow!("serve is not a client command")),
        Cmd::Zone(c) => zone(ZonesClient::new(channel).max_decoding_message_size(switchboard_api::API_MESSAGE_BYTES_MAX), c, options).await,
        Cmd::Cluster(c) => cluster(ClustersClient::new(channel), c, options).await,
        Cmd::Tenant(c) => {
            tenant(TenantsClient::new(channel).max_decoding_message_size(switchboard_api::API_MESSAGE_BYTES_MAX), c, options).await
        }
        Cmd::Status => status_all(channel, bearer).await,
        Cmd::Token(c) => token(CredentialsClient::new(channel), c, options).await,
        Cmd::Member(c) => member(MembershipClient::new(channel), c).await,
        Cmd::Acme(c) => acme(AcmeClient::new(channel), c, options).await,
        Cmd::Watch { after, kind, cluster, count } => watch(WatchClient::new(channel), after, &kind, cluster, count).await,
        Cmd::Rebalance { dry_run, apply: _, max } => {
            let client = TenantsClient::new(channel).max_decoding_message_size(switchboard_api::API_MESSAGE_BYTES_MAX);
            rebalance(client, dry_run, max.unwrap_or(0)).await
        }
    }
}

fn members_json(members: &[proto::Member]) -> Value {
    Value::Array(members.iter().map(|m| json!({"id": m.id, "peer": m.peer, "api": m.api, "voter": m.voter})).collect())
}

async fn member(mut c: MembershipClient<Ch>, cmd: MemberCmd) -> anyhow::Result<Output> {
    let (revision, members) = match cmd {
        MemberCmd::List => (None, c.list_members(proto::MembersRequest {}).await.map_err(status)?.into_inner().members),
        MemberCmd::AddLearner { id, peer, api } => {
            let r = c.add_learner(proto::AddLearnerRequest { id, peer, api }).await.map_err(status)?.into_inner();
            (Some(r.revision), r.members)
        }
        MemberCmd::Promote { id } => {
            let r = c.promote(proto::MemberIdRequest { id }).await.map_err(status)?.into_inner();
            (Some(r.revision), r.members)
        }
        MemberCmd::Remove { id } => {
            let r = c.remove_member(proto::MemberIdRequest { id }).await.map_err(status)?.into_inner();
            (Some(r.revision), r.members)
        }
    };
    let rows = members
        .iter()
        .map(|m| vec![m.id.to_string(), if m.voter { "voter" } else { "learner" }.into(), m.peer.clone(), m.api.clone()])
        .collect();
    let value = match revision {
        Some(r) => json!({"revision": r, "members": members_json(&members)}),
        None => members_json(&members),
    };
    Ok(Output { value, table: Some(Table { title: None, headers: vec!["ID", "KIND", "PEER", "API"], rows }), failure: None })
}

/// Status of one node by API address, or why it could not be had.
async fn node_status(api: &str, bearer: &Bearer) -> Result<proto::StatusResponse, String> {
    let endpoint = Endpoint::from_shared(format!("http://{api}"))
        .map_err(|e| e.to_string())?
        .connect_timeout(std::time::Duration::from_secs(2))
        .timeout(std::time::Duration::from_secs(2));
    let channel = endpoint.connect().await.map_err(|e| source_text(&e))?;
    NodeClient::new(Ch::new(channel, bearer.clone()))
        .status(proto::StatusRequest {})
        .await
        .map(tonic::Response::into_inner)
        .map_err(|s| s.message().to_string())
}

fn status_json(s: &proto::StatusResponse) -> Value {
    json!({
        "node_id": s.node_id, "role": s.role, "leader_id": s.leader_id, "leader_api": s.leader_api, "term": s.term,
        "last_log_index": s.last_log_index, "applied_revision": s.applied_revision, "staleness_ms": s.staleness_ms, "ready": s.ready,
        "snapshot_revision": s.snapshot_revision, "purged_revision": s.purged_revision,
        "zones": s.zones, "clusters": s.clusters, "tenants": s.tenants,
    })
}

/// The node asked, then every member it knows, each asked directly.
async fn status_all(channel: Ch, bearer: &Bearer) -> anyhow::Result<Output> {
    let s = NodeClient::new(channel).status(proto::StatusRequest {}).await.map_err(status)?.into_inner();
    let mut value = status_json(&s);
    value["members"] = members_json(&s.members);
    let mut per_member = Vec::new();
    for m in &s.members {
        per_member.push((m.clone(), node_status(&m.api, bearer).await));
    }
    // Lag is measured against the most advanced log any member reports.
    let head = per_member.iter().filter_map(|(_, r)| r.as_ref().ok().map(|s| s.last_log_index)).max().unwrap_or(s.last_log_index);
    let mut rows = Vec::new();
    let mut member_values = Vec::new();
    for (m, r) in &per_member {
        match r {
            Ok(ms) => {
                rows.push(vec![
                    m.id.to_string(),
                    ms.role.clone(),
                    if ms.leader_id == 0 { "-".into() } else { ms.leader_id.to_string() },
                    ms.applied_revision.to_string(),
                    head.saturating_sub(ms.applied_revision).to_string(),
                    ms.staleness_ms.map(|x| format!("{x} ms")).unwrap_or_else(|| "never".into()),
                    ms.ready.to_string(),
                    m.api.clone(),
                ]);
                let mut v = status_json(ms);
                v["lag"] = json!(head.saturating_sub(ms.applied_revision));
                member_values.push(v);
            }
            Err(e) => {
                rows.push(vec![
                    m.id.to_string(),
                    "unreachable".into(),
                    "-".into(),
                    "-".into(),
                    "-".into(),
                    "-".into(),
                    "false".into(),
                    m.api.clone(),
                ]);
                member_values.push(json!({"node_id": m.id, "error": e}));
            }
        }
    }
    value["member_status"] = Value::Array(member_values);
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
    Ok(Output {
        value,
        table: Some(Table {
            title: Some(title),
            headers: vec!["ID", "ROLE", "LEADER", "APPLIED", "LAG", "STALENESS", "READY", "API"],
            rows,
        }),
        failure: None,
    })
}

fn zone_json(z: &proto::Zone) -> Value {
    let soa = z.soa.clone().unwrap_or_default();
    json!({
        "apex": z.apex, "environment": z.environment, "ttl": z.ttl, "ns": z.ns, "serial": z.serial, "revision": z.revision,
        "soa": {"mname": soa.mname, "rname": soa.rname, "refresh": soa.refresh, "retry": soa.retry, "expire": soa.expire, "minimum": soa.minimum},
        "rules": z.rules.iter().map(|r| match &r.kind {
            Some(proto::rule::Kind::ServiceTenant(s)) => json!({"kind": "service-tenant", "services": s.services, "target": s.target, "ttl": s.ttl}),
            Some(proto::rule::Kind::TenantHost(h)) => json!({"kind": "tenant-host", "ttl": h.ttl}),
            Some(proto::rule::Kind::Acme(a)) => json!({"kind": "acme", "validation_zone": a.validation_zone}),
            None => Value::Null,
        }).collect::<Vec<_>>(),
        "records": z.records.iter().map(|r| json!({"name": r.name, "type": r.r#type, "ttl": r.ttl, "data": r.data})).collect::<Vec<_>>(),
    })
}

fn zone_rows(zones: &[proto::Zone]) -> Table {
    Table {
        title: None,
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

async fn zone(mut c: ZonesClient<Ch>, cmd: ZoneCmd, options: &WriteOptions) -> anyhow::Result<Output> {
    let options = Some(options.clone());
    match cmd {
        ZoneCmd::Put { file } => {
            let zone = crate::zonefile::load(&file)?;
            let r = c.put_zone(proto::PutZoneRequest { zone: Some(zone), options }).await.map_err(status)?.into_inner();
            let z = r.zone.unwrap_or_default();
            Ok(kv(
                vec![("apex", z.apex.clone()), ("revision", r.revision.to_string()), ("serial", z.serial.to_string())],
                json!({"revision": r.revision, "zone": zone_json(&z)}),
            ))
        }
        ZoneCmd::List => {
            let zones = c.list_zones(proto::ListZonesRequest {}).await.map_err(status)?.into_inner().zones;
            Ok(Output { value: Value::Array(zones.iter().map(zone_json).collect()), table: Some(zone_rows(&zones)), failure: None })
        }
        ZoneCmd::Get { apex } => {
            let z = c.get_zone(proto::GetZoneRequest { apex }).await.map_err(status)?.into_inner();
            Ok(Output { value: zone_json(&z), table: None, failure: None })
        }
        ZoneCmd::Delete { apex } => {
            let r = c.delete_zone(proto::DeleteZoneRequest { apex: apex.clone(), options }).await.map_err(status)?.into_inner();
            Ok(deleted(&apex, r.revision))
        }
        ZoneCmd::Export { apex, output } => {
            let mut stream = c.export_zone(proto::ExportZoneRequest { apex: apex.clone() }).await.map_err(status)?.into_inner();
            let mut out: Box<dyn std::io::Write> = match &output {
                Some(path) => {
                    Box::new(std::io::BufWriter::new(std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?))
                }
                None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
            };
            let (mut bytes, mut revision) = (0usize, 0u64);
            while let Some(chunk) = stream.message().await.map_err(status)? {
                out.write_all(chunk.text.as_bytes()).context("writing the zone")?;
                bytes += chunk.text.len();
                revision = chunk.revision;
            }
            out.flush().context("writing the zone")?;
            drop(out);
            match output {
                // The file is the output; say what was written on stderr only.
                Some(path) => {
                    eprintln!("wrote {apex} at revision {revision} ({bytes} bytes) to {}", path.display());
                    Ok(Output {
                        value: json!({"apex": apex, "revision": revision, "bytes": bytes, "file": path}),
                        table: None,
                        failure: None,
                    })
                }
                None => Ok(Output { value: Value::Null, table: None, failure: None }),
            }
        }
        ZoneCmd::Import { file, apex, environment } => {
            let text = std::fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?;
            let imported = crate::zonefile::master(&text, apex.as_deref()).with_context(|| format!("master file {}", file.display()))?;
            let existing = match c.get_zone(proto::GetZoneRequest { apex: imported.apex.clone() }).await {
                Ok(z) => Some(z.into_inner()),
                Err(s) if s.code() == tonic::Code::NotFound => None,
                Err(s) => return Err(status(s)),
            };
            // Compare-and-set on what was read: rules changed meanwhile are not lost.
            let (zone, read_at) = match existing {
                Some(z) => {
                    let revision = z.revision;
                    (proto::Zone { environment: environment.unwrap_or(z.environment), rules: z.rules, ttl: z.ttl, ..imported }, revision)
                }
                None => {
                    let environment =
                        environment.ok_or_else(|| anyhow!("zone {} does not exist: give --environment to create it", imported.apex))?;
                    (proto::Zone { environment, ..imported }, 0)
                }
            };
            let count = zone.records.len();
            let options = options.map(|o| proto::WriteOptions { expected_revision: Some(o.expected_revision.unwrap_or(read_at)), ..o });
            let r = c.put_zone(proto::PutZoneRequest { zone: Some(zone), options }).await.map_err(status)?.into_inner();
            let z = r.zone.unwrap_or_default();
            Ok(kv(
                vec![
                    ("apex", z.apex.clone()),
                    ("records", count.to_string()),
                    ("revision", r.revision.to_string()),
                    ("serial", z.serial.to_string()),
                ],
                json!({"revision": r.revision, "records": count, "zone": zone_json(&z)}),
            ))
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
        title: None,
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

async fn cluster(mut c: ClustersClient<Ch>, cmd: ClusterCmd, options: &WriteOptions) -> anyhow::Result<Output> {
    let options = Some(options.clone());
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
            let r = c.put_cluster(proto::PutClusterRequest { cluster: Some(cluster), options }).await.map_err(status)?.into_inner();
            let cl = r.cluster.unwrap_or_default();
            let mut out = Output {
                value: json!({"revision": r.revision, "cluster": cluster_json(&cl)}),
                table: Some(cluster_rows(std::slice::from_ref(&cl))),
                failure: None,
            };
            if let Some(t) = &mut out.table {
                t.rows[0][6] = r.revision.to_string();
            }
            Ok(out)
        }
        ClusterCmd::List => {
            let cs = c.list_clusters(proto::ListClustersRequest {}).await.map_err(status)?.into_inner().clusters;
            Ok(Output { value: Value::Array(cs.iter().map(cluster_json).collect()), table: Some(cluster_rows(&cs)), failure: None })
        }
        ClusterCmd::Get { id } => {
            let cl = c.get_cluster(proto::GetClusterRequest { id }).await.map_err(status)?.into_inner();
            Ok(Output { value: cluster_json(&cl), table: Some(cluster_rows(std::slice::from_ref(&cl))), failure: None })
        }
        ClusterCmd::Delete { id } => {
            let r = c.delete_cluster(proto::DeleteClusterRequest { id: id.clone(), options }).await.map_err(status)?.into_inner();
            Ok(deleted(&id, r.revision))
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

async fn tenant(mut c: TenantsClient<Ch>, cmd: TenantCmd, options: &WriteOptions) -> anyhow::Result<Output> {
    let options = Some(options.clone());
    let written = |r: proto::TenantResponse| -> Output { tenant_detail(&r.tenant.unwrap_or_default(), Some(r.revision)) };
    match cmd {
        TenantCmd::Create { id, cluster } => {
            let r = c
                .create_tenant(proto::CreateTenantRequest { id, cluster: cluster.unwrap_or_default(), options })
                .await
                .map_err(status)?
                .into_inner();
            Ok(written(r))
        }
        TenantCmd::Get { id, consistent } => {
            Ok(tenant_detail(&c.get_tenant(proto::GetTenantRequest { id, consistent }).await.map_err(status)?.into_inner(), None))
        }
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
                table: Some(Table { title: None, headers: vec!["ID", "CLUSTER", "PINNED", "ALIASES", "MOVES", "REVISION"], rows }),
                failure: None,
            })
        }
        TenantCmd::Delete { id } => {
            let r = c.delete_tenant(proto::DeleteTenantRequest { id: id.clone(), options }).await.map_err(status)?.into_inner();
            Ok(deleted(&id, r.revision))
        }
        TenantCmd::Pin { id, cluster } => {
            Ok(written(c.pin_tenant(proto::PinTenantRequest { id, cluster, options }).await.map_err(status)?.into_inner()))
        }
        TenantCmd::Unpin { id } => {
            Ok(written(c.unpin_tenant(proto::UnpinTenantRequest { id, options }).await.map_err(status)?.into_inner()))
        }
        TenantCmd::Move { id, cluster } => {
            Ok(written(c.move_tenant(proto::MoveTenantRequest { id, cluster, options }).await.map_err(status)?.into_inner()))
        }
        TenantCmd::Alias(AliasCmd::Add { id, alias }) => {
            Ok(written(c.add_alias(proto::AliasRequest { tenant: id, alias, options }).await.map_err(status)?.into_inner()))
        }
        TenantCmd::Alias(AliasCmd::Remove { id, alias }) => {
            Ok(written(c.remove_alias(proto::AliasRequest { tenant: id, alias, options }).await.map_err(status)?.into_inner()))
        }
        TenantCmd::Import { file } => import(c, &file).await,
    }
}

/// Records sent per ImportTenants message.
const IMPORT_CHUNK: usize = 1000;

/// `tenant import FILE`: JSON lines or CSV, streamed to ImportTenants in
/// chunks with a progress line; lines that do not parse are reported with
/// the server's rejections. Fails (after the summary) if any record was
/// rejected, so scripts notice.
async fn import(mut c: TenantsClient<Ch>, file: &std::path::Path) -> anyhow::Result<Output> {
    let text = std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    let (records, mut errors) = crate::import::parse(&text, file);
    let total = records.len() + errors.len();
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let sender = tokio::spawn(async move {
        let tty = std::io::IsTerminal::is_terminal(&std::io::stderr());
        let mut sent = 0usize;
        for chunk in records.chunks(IMPORT_CHUNK) {
            if tx.send(proto::ImportTenantsRequest { records: chunk.to_vec() }).await.is_err() {
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
    errors.extend(summary.errors.iter().map(|e| (e.line, e.id.clone(), e.error.clone())));
    errors.sort_by_key(|e| e.0);
    let rejected = summary.rejected + local;
    let mut rows = vec![
        vec!["created".to_string(), summary.created.to_string()],
        vec!["rejected".to_string(), rejected.to_string()],
        vec!["revision".to_string(), summary.revision.to_string()],
    ];
    rows.extend(errors.iter().take(20).map(|(line, id, e)| vec![format!("line {line}"), format!("{id}: {e}")]));
    let value = json!({
        "created": summary.created, "rejected": rejected, "revision": summary.revision,
        "errors": errors.iter().map(|(line, id, e)| json!({"line": line, "id": id, "error": e})).collect::<Vec<_>>(),
    });
    Ok(Output { value, table: Some(Table { title: None, headers: vec!["FIELD", "VALUE"], rows }), failure: None }
        .failing_if(rejected > 0, format!("{rejected} of {total} records rejected")))
}

async fn rebalance(mut c: TenantsClient<Ch>, dry_run: bool, max: u32) -> anyhow::Result<Output> {
    let r = c.rebalance(proto::RebalanceRequest { dry_run, max }).await.map_err(status)?.into_inner();
    let failed = r.moves.iter().filter(|m| !m.error.is_empty()).count();
    let title = if dry_run {
        format!("{} unpinned tenants are not where hashing puts them today; {} shown", r.misplaced, r.moves.len())
    } else {
        format!("{} misplaced; moved {} ({} refused)", r.misplaced, r.moves.len() - failed, failed)
    };
    let rows = r.moves.iter().map(|m| vec![m.id.clone(), m.from.clone(), m.to.clone(), m.revision.to_string(), m.error.clone()]).collect();
    let value = json!({
        "misplaced": r.misplaced,
        "moves": r.moves.iter().map(|m| json!({"id": m.id, "from": m.from, "to": m.to, "revision": m.revision, "error": m.error})).collect::<Vec<_>>(),
    });
    Ok(Output {
        value,
        table: Some(Table { title: Some(title), headers: vec!["TENANT", "FROM", "TO", "REVISION", "ERROR"], rows }),
        failure: None,
    })
}

fn challenge_json(c: &proto::Challenge) -> Value {
    json!({
        "name": c.name, "revision": c.revision,
        "values": c.values.iter().map(|v| json!({"value": v.value, "ttl": v.ttl, "expires_at_ms": v.expires_at_ms})).collect::<Vec<_>>(),
    })
}

fn challenge_rows(c: &proto::Challenge) -> Vec<Vec<String>> {
    c.values.iter().map(|v| vec![c.name.clone(), v.value.clone(), v.ttl.to_string(), v.expires_at_ms.to_string()]).collect()
}

async fn acme(mut c: AcmeClient<Ch>, cmd: AcmeCmd, options: &WriteOptions) -> anyhow::Result<Output> {
    let o = Some(options.clone());
    let headers = vec!["NAME", "VALUE", "TTL", "EXPIRES_AT_MS"];
    let written = match cmd {
        AcmeCmd::Set { name, value, ttl, expires_in } => {
            let req = proto::SetChallengeRequest { name, value, ttl, expires_in_s: expires_in, options: o };
            c.set_challenge(req).await.map_err(status)?.into_inner()
        }
        AcmeCmd::Clear { name, value } => {
            let req = proto::ClearChallengeRequest { name, value: value.unwrap_or_default(), options: o };
            c.clear_challenge(req).await.map_err(status)?.into_inner()
        }
        AcmeCmd::List { within } => {
            let r =
                c.list_challenges(proto::ListChallengesRequest { within: within.unwrap_or_default() }).await.map_err(status)?.into_inner();
            let rows = r.challenges.iter().flat_map(challenge_rows).collect();
            let value = json!({"revision": r.revision, "challenges": r.challenges.iter().map(challenge_json).collect::<Vec<_>>()});
            return Ok(Output { value, table: Some(Table { title: None, headers, rows }), failure: None });
        }
    };
    let rows = written.challenge.as_ref().map(challenge_rows).unwrap_or_default();
    let value = json!({"revision": written.revision, "challenge": written.challenge.as_ref().map(challenge_json)});
    Ok(Output { value, table: Some(Table { title: Some(format!("revision {}", written.revision)), headers, rows }), failure: None })
}

fn credential_json(c: &proto::Credential) -> Value {
    json!({
        "id": c.id, "name": c.name, "role": c.role, "environments": c.environments, "zones": c.zones, "tenant": c.tenant,
        "created_at_ms": c.created_at_ms, "revision": c.revision,
    })
}

fn credential_row(c: &proto::Credential) -> Vec<String> {
    let scope = if !c.environments.is_empty() {
        format!("environments={}", c.environments.join(","))
    } else if !c.zones.is_empty() {
        format!("zones={}", c.zones.join(","))
    } else if !c.tenant.is_empty() {
        format!("tenant={}", c.tenant)
    } else {
        "all".into()
    };
    vec![c.id.clone(), c.name.clone(), c.role.clone(), scope, c.revision.to_string()]
}

async fn token(mut c: CredentialsClient<Ch>, cmd: TokenCmd, options: &WriteOptions) -> anyhow::Result<Output> {
    let headers = vec!["ID", "NAME", "ROLE", "SCOPE", "REVISION"];
    match cmd {
        TokenCmd::Create { name, role, environments, zones, tenant } => {
            let req = proto::CreateCredentialRequest { name, role, environments, zones, tenant: tenant.unwrap_or_default() };
            let r = c.create_credential(req).await.map_err(status)?.into_inner();
            let cred = r.credential.unwrap_or_default();
            let value = json!({"revision": r.revision, "credential": credential_json(&cred), "token": r.token});
            let title = format!("revision {}; the token (shown once, only its hash is stored):\n{}\n", r.revision, r.token);
            Ok(Output { value, table: Some(Table { title: Some(title), headers, rows: vec![credential_row(&cred)] }), failure: None })
        }
        TokenCmd::List => {
            let r = c.list_credentials(proto::ListCredentialsRequest {}).await.map_err(status)?.into_inner();
            let value = json!({"revision": r.revision, "credentials": r.credentials.iter().map(credential_json).collect::<Vec<_>>()});
            Ok(Output {
                value,
                table: Some(Table { title: None, headers, rows: r.credentials.iter().map(credential_row).collect() }),
                failure: None,
            })
        }
        TokenCmd::Revoke { id } => {
            let req = proto::RevokeCredentialRequest { id: id.clone(), options: Some(options.clone()) };
            let r = c.revoke_credential(req).await.map_err(status)?.into_inner();
            Ok(deleted(&id, r.revision))
        }
    }
}

/// Watch kinds by the names `--kind` takes and events print.
const KINDS: [(&str, proto::Kind); 4] =
    [("zone", proto::Kind::Zone), ("cluster", proto::Kind::Cluster), ("tenant", proto::Kind::Tenant), ("acme", proto::Kind::Acme)];

fn event_json(e: &proto::Event) -> Value {
    use proto::event::Value as V;
    let kind = KINDS.iter().find(|(_, k)| *k as i32 == e.kind).map_or("unknown", |(name, _)| name);
    let value = match &e.value {
        Some(V::Zone(z)) => zone_json(z),
        Some(V::Cluster(c)) => json!({"id": c.id, "ipv4": c.ipv4, "ipv6": c.ipv6, "hostname": c.hostname, "revision": c.revision}),
        Some(V::Tenant(t)) => tenant_json(t),
        Some(V::Challenge(c)) => challenge_json(c),
        None => Value::Null,
    };
    json!({"revision": e.revision, "kind": kind, "key": e.key, "deleted": e.deleted, "previous_cluster": e.previous_cluster, "value": value})
}

/// Stream changes to stdout, one JSON line each, flushed as they come.
async fn watch(
    mut c: WatchClient<Ch>,
    after: u64,
    kinds: &[String],
    cluster: Option<String>,
    count: Option<u64>,
) -> anyhow::Result<Output> {
    use std::io::Write;
    let kinds = kinds
        .iter()
        .map(|k| match KINDS.iter().find(|(name, _)| name == k) {
            Some((_, kind)) => Ok(*kind as i32),
            None => Err(anyhow!("--kind: {k:?} is not one of zone, cluster, tenant, acme")),
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let req = proto::WatchRequest { after_revision: after, kinds, cluster: cluster.unwrap_or_default() };
    let mut stream = c.watch(req).await.map_err(status)?.into_inner();
    let mut seen = 0u64;
    let mut out = std::io::stdout().lock();
    while let Some(r) = stream.message().await.map_err(status)? {
        if r.compacted {
            let why = format!(
                "revision {after} is compacted on this node (it resumes from {}): list again and watch from the list's revision",
                r.revision
            );
            return Ok(Output { value: json!({"compacted": true, "revision": r.revision}), table: None, failure: Some(why) });
        }
        for e in &r.events {
            writeln!(out, "{}", event_json(e))?;
            seen += 1;
            if count.is_some_and(|n| seen >= n) {
                out.flush()?;
                return Ok(Output { value: Value::Null, table: None, failure: None });
            }
        }
        out.flush()?;
    }
    Ok(Output { value: Value::Null, table: None, failure: Some("the node ended the stream".into()) })
}
