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
                revision: 0,
                tenants: 0,
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

fn rows(cs: &[v1::Cluster], revision: Option<u64>) -> comfy_table::Table {
    let rows = cs.iter().map(|c| {
        let mut ingress: Vec<String> = c.ipv4.iter().chain(c.ipv6.iter()).cloned().collect();
        if !c.hostname.is_empty() {
            ingress.push(c.hostname.clone());
        }
        [
            c.id.clone(),
            state_name(c.state).into(),
            c.dedicated.to_string(),
            c.weight.unwrap_or_default().to_string(),
            c.tenants.to_string(),
            ingress.join(","),
            revision.unwrap_or(c.revision).to_string(),
        ]
    });
    table(&["ID", "STATE", "DEDICATED", "WEIGHT", "TENANTS", "INGRESS", "REVISION"], rows)
}
