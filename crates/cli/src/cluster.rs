//! `cluster`: put, list, get, delete.

use switchboard_proto::v1::{self, clusters_client::ClustersClient};

use crate::error::Result;
use crate::output::{table, Output};
use crate::transport::{status, Ch};
use crate::view::{state_name, ClusterView, ClusterWritten};
use crate::zone::deleted;
use crate::{ClusterCmd, Ctx};

pub async fn run(channel: Ch, ctx: &Ctx, cmd: &ClusterCmd) -> Result<Output> {
    let mut c = ClustersClient::new(channel);
    let options = Some(ctx.options.clone());
    match cmd {
        ClusterCmd::Put(p) => {
            let cluster = v1::Cluster {
                id: p.id.clone(),
                ipv4: p.ipv4.clone(),
                ipv6: p.ipv6.clone(),
                hostname: p.hostname.clone().unwrap_or_default(),
                dedicated: p.dedicated,
                weight: p.weight,
                state: v1::ClusterState::from(p.state) as i32,
                check: p.check.as_deref().map(|spec| check(p, spec)).transpose()?,
                failover: p.failover.clone().unwrap_or_default(),
                fail_closed: p.fail_closed,
                ..Default::default()
            };
            let r = c.put_cluster(v1::PutClusterRequest { cluster: Some(cluster), options }).await.map_err(status)?.into_inner();
            let cl = r.cluster.unwrap_or_default();
            // The row shows the write's revision, the one to compare-and-set with.
            let t = rows(std::slice::from_ref(&cl), Some(r.revision));
            Output::table(&ClusterWritten { revision: r.revision, cluster: (&cl).into() }, None, t)
        }
        ClusterCmd::List => {
            let cs = c.list_clusters(v1::ListClustersRequest {}).await.map_err(status)?.into_inner().clusters;
            Output::table(&cs.iter().map(ClusterView::from).collect::<Vec<_>>(), None, rows(&cs, None))
        }
        ClusterCmd::Get { id } => {
            let cl = c.get_cluster(v1::GetClusterRequest { id: id.clone() }).await.map_err(status)?.into_inner();
            Output::table(&ClusterView::from(&cl), None, rows(std::slice::from_ref(&cl), None))
        }
        ClusterCmd::Delete { id } => {
            let r = c.delete_cluster(v1::DeleteClusterRequest { id: id.clone(), options }).await.map_err(status)?.into_inner();
            deleted(id, r.revision)
        }
    }
}

/// The check of `cluster put`: `--check` and the `--check-*` settings (0
/// for what is not given: the server's defaults).
fn check(p: &crate::ClusterPut, spec: &str) -> Result<v1::HealthCheck> {
    let probe = switchboard_domain::health::Probe::parse("--check", spec)?;
    let path = match &probe {
        switchboard_domain::health::Probe::Tcp { .. } => String::new(),
        switchboard_domain::health::Probe::Http { path, .. } => path.clone(),
    };
    Ok(v1::HealthCheck {
        protocol: probe.scheme().into(),
        port: u32::from(probe.port()),
        path,
        host: p.check_host.clone().unwrap_or_default(),
        status: p.check_status.unwrap_or(0),
        interval_ms: p.check_interval_ms.unwrap_or(0),
        timeout_ms: p.check_timeout_ms.unwrap_or(0),
        failures: p.check_failures.unwrap_or(0),
        successes: p.check_successes.unwrap_or(0),
    })
}

fn rows(cs: &[v1::Cluster], revision: Option<u64>) -> comfy_table::Table {
    let rows = cs.iter().map(|c| {
        // A down address is marked where it is listed.
        let mark = |a: &String| if c.down.contains(a) { format!("{a} (down)") } else { a.clone() };
        let mut ingress: Vec<String> = c.ipv4.iter().chain(c.ipv6.iter()).map(mark).collect();
        if !c.hostname.is_empty() {
            ingress.push(c.hostname.clone());
        }
        let mut health = match &c.check {
            Some(k) => format!("{} ({}:{})", c.health, k.protocol, k.port),
            None => "unchecked".into(),
        };
        if !c.serving.is_empty() && c.serving != c.id {
            health.push_str(&format!(", served by {}", c.serving));
        } else if !c.failover.is_empty() {
            health.push_str(&format!(", failover {}", c.failover));
        }
        [
            c.id.clone(),
            state_name(c.state).into(),
            c.dedicated.to_string(),
            c.weight.unwrap_or_default().to_string(),
            c.tenants.to_string(),
            ingress.join(","),
            health,
            revision.unwrap_or(c.revision).to_string(),
        ]
    });
    table(&["ID", "STATE", "DEDICATED", "WEIGHT", "TENANTS", "INGRESS", "HEALTH", "REVISION"], rows)
}
