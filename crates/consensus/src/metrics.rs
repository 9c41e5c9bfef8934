//! The Prometheus collector of a node: what consensus counts (`stats`) and
//! the node's status and state, read at each scrape. Apart from `stats`,
//! which the node writes to, so that the counters need nothing of the node.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::MetricType;

use crate::{Node, Role};

/// The Prometheus collector of a node's consensus and state metrics.
#[derive(Debug)]
pub struct NodeMetrics(pub Arc<Node>);

fn gauge(e: &mut DescriptorEncoder, name: &str, help: &str, v: i64) -> Result<(), std::fmt::Error> {
    ConstGauge::new(v).encode(e.encode_descriptor(name, help, None, MetricType::Gauge)?)
}

fn counter(e: &mut DescriptorEncoder, name: &str, help: &str, v: u64) -> Result<(), std::fmt::Error> {
    ConstCounter::new(v).encode(e.encode_descriptor(name, help, None, MetricType::Counter)?)
}

/// The relay tree as this node sees it: its followers, the change stream
/// it serves them, and (on an edge) its upstream.
fn feed(e: &mut DescriptorEncoder, node: &Node, st: &crate::NodeStatus) -> Result<(), std::fmt::Error> {
    let stats = &node.stats;
    let direct = st.tree.iter().filter(|t| t.upstream == st.id).count() as u64;
    gauge(e, "switchboard_feed_followers", "Nodes following this node's change stream directly.", int(direct))?;
    gauge(
        e,
        "switchboard_feed_tree_nodes",
        "Nodes of the relay tree below this node, directly or through relays.",
        int(st.tree.len() as u64),
    )?;
    let sent = [
        ("switchboard_feed_entries_sent", "Log entries sent to followers.", &stats.feed_entries),
        ("switchboard_feed_bytes_sent", "Bytes of entries and states sent to followers.", &stats.feed_bytes),
        ("switchboard_feed_states_sent", "Whole states sent to followers behind the tail.", &stats.feed_states),
        ("switchboard_edge_upstream_streams", "On an edge: streams opened to an upstream (a failover opens one).", &stats.upstream_streams),
        ("switchboard_edge_entries_applied", "On an edge: log entries applied from upstreams.", &stats.upstream_entries),
        ("switchboard_health_probes_passed", "Health probes of ingress addresses this node made that passed.", &stats.health_probes_ok),
        ("switchboard_health_probes_failed", "Health probes of ingress addresses this node made that failed.", &stats.health_probes_failed),
        ("switchboard_health_reports_sent", "Reports of this prober's verdicts delivered to the leader.", &stats.health_reports),
        (
            "switchboard_health_reports_failed",
            "Reports of this prober's verdicts the leader could not be reached with.",
            &stats.health_reports_failed,
        ),
    ];
    for (name, help, v) in sent {
        counter(e, name, help, v.load(Ordering::Relaxed))?;
    }
    gauge(
        e,
        "switchboard_edge_upstream_id",
        "On an edge: node id of the upstream it follows; 0 when none.",
        int(st.upstream.as_ref().map_or(0, |(id, _)| *id)),
    )
}

fn histogram(e: &mut DescriptorEncoder, name: &str, help: &str, h: &Histogram) -> Result<(), std::fmt::Error> {
    h.encode(e.encode_descriptor(name, help, None, MetricType::Histogram)?)
}

fn int(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

impl Collector for NodeMetrics {
    fn encode(&self, mut e: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let node = &self.0;
        let st = node.status();
        let stats = &node.stats;
        {
            let mut family =
                e.encode_descriptor("switchboard_raft_role", "1 for this node's current Raft role.", None, MetricType::Gauge)?;
            for role in [Role::Leader, Role::Follower, Role::Candidate, Role::Learner, Role::Edge, Role::Shutdown] {
                let labels = [("role", role.as_str())];
                ConstGauge::new(i64::from(st.role == role)).encode(family.encode_family(&labels)?)?;
            }
        }
        let e = &mut e;
        gauge(e, "switchboard_raft_term", "Current Raft term.", int(st.term))?;
        gauge(
            e,
            "switchboard_raft_leader_id",
            "Id of the leader this node knows of; 0 when none.",
            int(st.leader.as_ref().map_or(0, |(id, _)| *id)),
        )?;
        gauge(e, "switchboard_raft_is_leader", "1 when this node is the leader.", i64::from(st.role == Role::Leader))?;
        gauge(e, "switchboard_raft_last_log_index", "Index of the last entry in the local log.", int(st.log.last))?;
        gauge(
            e,
            "switchboard_raft_commit_index",
            "The highest log index this node knows to be committed.",
            int(stats.committed.load(Ordering::Relaxed)),
        )?;
        gauge(e, "switchboard_raft_applied_index", "Index of the last entry applied to the state this node serves.", int(st.log.applied))?;
        gauge(e, "switchboard_raft_snapshot_index", "Last log index in this node's latest snapshot.", int(st.log.snapshot))?;
        {
            let mut family = e.encode_descriptor(
                "switchboard_raft_replication_lag_entries",
                "On the leader: entries each other member's log is behind the leader's.",
                None,
                MetricType::Gauge,
            )?;
            for (id, lag) in &st.lag {
                if let Some(lag) = lag {
                    let id = id.to_string();
                    let labels = [("follower", id.as_str())];
                    ConstGauge::new(int(*lag)).encode(family.encode_family(&labels)?)?;
                }
            }
        }
        if let Some(ms) = st.staleness_ms {
            ConstGauge::new(ms as f64 / 1000.0).encode(e.encode_descriptor(
                "switchboard_raft_staleness_seconds",
                "Seconds since this node last heard from a leader (the leader: since a quorum acknowledged it).",
                None,
                MetricType::Gauge,
            )?)?;
        }
        counter(
            e,
            "switchboard_raft_elections",
            "Elections seen: times this node's term advanced.",
            stats.elections.load(Ordering::Relaxed),
        )?;
        counter(
            e,
            "switchboard_raft_leader_changes",
            "Times the leader this node knows of changed.",
            stats.leader_changes.load(Ordering::Relaxed),
        )?;
        histogram(
            e,
            "switchboard_raft_snapshot_build_duration_seconds",
            "Snapshots built, and how long each took.",
            &stats.snapshot_builds,
        )?;
        histogram(
            e,
            "switchboard_raft_snapshot_install_duration_seconds",
            "Snapshots installed from a leader, and how long each took.",
            &stats.snapshot_installs,
        )?;
        gauge(
            e,
            "switchboard_raft_snapshot_installing",
            "1 while a snapshot from the leader is arriving or being installed.",
            i64::from(stats.installing()),
        )?;

        histogram(e, "switchboard_write_commit_duration_seconds", "Writes proposed on this node, from queued to applied.", &stats.commit)?;
        histogram(
            e,
            "switchboard_write_batch_commands",
            "Commands per group-commit log entry proposed by this node as leader.",
            &stats.batch,
        )?;
        counter(e, "switchboard_writes_forwarded", "Writes this node forwarded to the leader.", stats.forwarded.load(Ordering::Relaxed))?;
        {
            let mut family = e.encode_descriptor(
                "switchboard_writes",
                "Writes answered by this node: applied, refused by the state, or failed (no quorum, disk full, ...).",
                None,
                MetricType::Counter,
            )?;
            for (i, outcome) in ["applied", "refused", "failed"].iter().enumerate() {
                let labels = [("outcome", *outcome)];
                ConstCounter::new(stats.writes[i].load(Ordering::Relaxed)).encode(family.encode_family(&labels)?)?;
            }
        }

        feed(e, node, &st)?;
        let state = node.state();
        gauge(e, "switchboard_state_revision", "Revision of the state this node serves.", int(state.revision()))?;
        gauge(e, "switchboard_zones", "Zones served.", int(state.zones().count() as u64))?;
        gauge(e, "switchboard_clusters", "Clusters known.", int(state.clusters().count() as u64))?;
        gauge(e, "switchboard_tenants", "Tenants known.", int(state.tenant_count() as u64))?;
        {
            let mut family =
                e.encode_descriptor("switchboard_cluster_tenants", "Tenants placed on each cluster.", None, MetricType::Gauge)?;
            for cluster in state.clusters() {
                let labels = [("cluster", cluster.id.as_str())];
                ConstGauge::new(int(state.tenants_on(&cluster.id))).encode(family.encode_family(&labels)?)?;
            }
        }
        gauge(e, "switchboard_acme_challenges", "ACME challenge values published.", int(state.challenges().count() as u64))?;
        let disk = node.disk();
        if disk.free_bytes() != u64::MAX {
            gauge(e, "switchboard_disk_free_bytes", "Free bytes on the data dir's file system at the last look.", int(disk.free_bytes()))?;
        }
        gauge(e, "switchboard_disk_full", "1 while writes are refused for want of disk space.", i64::from(disk.full()))?;
        Ok(())
    }
}
