//! The API services. Writes go through consensus and answer with their
//! revision; reads are served from this node's applied state.

use std::sync::Arc;

use std::ops::ControlFlow;
use switchboard_consensus::Node;

use switchboard_domain::{
    masterfile, placement, zone_records, Access, BatchOutcome, BatchRow, Command, CommandError, Guard, Outcome, RowError, State,
};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use crate::convert::{self, tenant_out, zone_out};
use switchboard_consensus::{NodeId, Proposal};

use crate::auth::{Auth, Caller};
use crate::proto::{
    self, acme_server, clusters_server, credentials_server, dnssec_keys_server, membership_server, node_server, tenants_server,
    tsig_keys_server, watch_server, writes_server, zones_server,
};
use crate::{status, wait};
use crate::{API_MESSAGE_BYTES_MAX, PAGE_SIZE_DEFAULT, PAGE_SIZE_MAX};

/// Bytes of master-file text per export chunk, and chunks queued ahead of
/// a slow client.
const EXPORT_CHUNK_BYTES: usize = 256 * 1024;
const EXPORT_CHUNKS_IN_FLIGHT: usize = 4;
/// A bulk import's batches: most rows and bytes of ids in one (a full
/// batch fills a log entry), how many are in flight at once (enough to keep
/// the entries in flight full, few enough to bound memory), and the errors
/// reported back.
const IMPORT_CHUNK_ROWS: usize = switchboard_domain::command::BATCH_ROWS_MAX;
const IMPORT_CHUNK_BYTES: usize = 64 * 1024;
const IMPORT_CHUNKS_IN_FLIGHT: usize = 8;
const IMPORT_ERRORS_MAX: usize = 1000;
/// Zones per `ListZones` page: default and most; and the most bytes of zones
/// a page carries (half the message limit, so a page always fits).
const ZONE_PAGE_SIZE_DEFAULT: u32 = 100;
const ZONE_PAGE_SIZE_MAX: u32 = 1_000;
const ZONE_PAGE_BYTES_MAX: usize = crate::API_MESSAGE_BYTES_MAX / 2;
/// Most tenants a page reserves room for before it knows how many it holds.
const PAGE_PREALLOCATE_MAX: usize = 1024;
/// Most moves one rebalance call lists or makes (`misplaced` counts them all).
const REBALANCE_LIST_MAX: usize = 10_000;
/// Moves per batch of an applied rebalance.
const REBALANCE_BATCH_ROWS: usize = switchboard_domain::command::BATCH_ROWS_MAX;

/// The API over one node. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Api {
    pub(crate) node: Arc<Node>,
    max_stale_ms: u64,
    pub(crate) auth: Arc<Auth>,
    pub(crate) watch: Arc<crate::streams::WatchGate>,
}

type Reply<T> = Result<Response<T>, Status>;

/// Every API service, ready to add to a tonic server.
pub struct Services {
    pub zones: zones_server::ZonesServer<Api>,
    pub clusters: clusters_server::ClustersServer<Api>,
    pub tenants: tenants_server::TenantsServer<Api>,
    pub node: node_server::NodeServer<Api>,
    pub membership: membership_server::MembershipServer<Api>,
    pub acme: acme_server::AcmeServer<Api>,
    pub watch: watch_server::WatchServer<Api>,
    pub credentials: credentials_server::CredentialsServer<Api>,
    pub tsig_keys: tsig_keys_server::TsigKeysServer<Api>,
    pub dnssec_keys: dnssec_keys_server::DnssecKeysServer<Api>,
    pub writes: writes_server::WritesServer<Api>,
}

/// The full names of the Switchboard services, as reflection and health know them.
pub const SERVICE_NAMES: [&str; 11] = [
    zones_server::SERVICE_NAME,
    clusters_server::SERVICE_NAME,
    tenants_server::SERVICE_NAME,
    node_server::SERVICE_NAME,
    membership_server::SERVICE_NAME,
    acme_server::SERVICE_NAME,
    watch_server::SERVICE_NAME,
    credentials_server::SERVICE_NAME,
    tsig_keys_server::SERVICE_NAME,
    dnssec_keys_server::SERVICE_NAME,
    writes_server::SERVICE_NAME,
];

/// How often the `grpc.health.v1` status follows this node's readiness.
const HEALTH_POLL: std::time::Duration = std::time::Duration::from_millis(250);

/// `grpc.health.v1.Health`: every Switchboard service (and "", the server)
/// is SERVING while this node is ready (knows a leader and heard from it
/// within `max_stale_ms`), NOT_SERVING otherwise. Run the returned future
/// for as long as the server runs.
pub fn health(
    node: Arc<Node>,
    max_stale_ms: u64,
) -> (tonic_health::pb::health_server::HealthServer<impl tonic_health::pb::health_server::Health>, impl std::future::Future<Output = ()>) {
    let (reporter, service) = tonic_health::server::health_reporter();
    let follow = async move {
        let mut last = None;
        loop {
            let status = match node.ready(max_stale_ms) {
                Ok(()) => tonic_health::ServingStatus::Serving,
                Err(_) => tonic_health::ServingStatus::NotServing,
            };
            if last != Some(status) {
                for name in std::iter::once("").chain(SERVICE_NAMES) {
                    reporter.set_service_status(name, status).await;
                }
                last = Some(status);
            }
            tokio::time::sleep(HEALTH_POLL).await;
        }
    };
    (service, follow)
}

/// Server reflection (v1 and v1alpha) over the Switchboard protos.
pub fn reflection() -> Result<
    (
        tonic_reflection::server::v1::ServerReflectionServer<impl tonic_reflection::server::v1::ServerReflection>,
        tonic_reflection::server::v1alpha::ServerReflectionServer<impl tonic_reflection::server::v1alpha::ServerReflection>,
    ),
    tonic_reflection::server::Error,
> {
    let builder = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(crate::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    Ok((builder().build_v1()?, builder().build_v1alpha()?))
}

impl Api {
    pub fn new(node: Arc<Node>, max_stale_ms: u64, auth: Auth, watch: crate::WatchLimits) -> Api {
        Api { node, max_stale_ms, auth: Arc::new(auth), watch: Arc::new(crate::streams::WatchGate::new(watch)) }
    }

    /// The caller of a request (`UNAUTHENTICATED` without valid credentials).
    pub(crate) fn caller<T>(&self, req: &Request<T>) -> Result<Caller, Status> {
        self.auth.caller(&self.node.state(), req.metadata())
    }

    /// The caller of a request, if it may do `access` (`PERMISSION_DENIED` if not).
    pub(crate) fn check<T>(&self, req: &Request<T>, access: Access<'_>) -> Result<Caller, Status> {
        let state = self.node.state();
        let caller = self.auth.caller(&state, req.metadata())?;
        self.auth.allow(&state, &caller, access)?;
        Ok(caller)
    }

    /// The services to mount on a tonic server, with message limits set.
    pub fn services(&self) -> Services {
        Services {
            zones: zones_server::ZonesServer::new(self.clone())
                .max_decoding_message_size(API_MESSAGE_BYTES_MAX)
                .max_encoding_message_size(API_MESSAGE_BYTES_MAX),
            clusters: clusters_server::ClustersServer::new(self.clone()).max_decoding_message_size(API_MESSAGE_BYTES_MAX),
            tenants: tenants_server::TenantsServer::new(self.clone())
                .max_decoding_message_size(API_MESSAGE_BYTES_MAX)
                .max_encoding_message_size(API_MESSAGE_BYTES_MAX),
            node: node_server::NodeServer::new(self.clone()),
            membership: membership_server::MembershipServer::new(self.clone()),
            acme: acme_server::AcmeServer::new(self.clone()),
            watch: watch_server::WatchServer::new(self.clone()).max_encoding_message_size(API_MESSAGE_BYTES_MAX),
            credentials: credentials_server::CredentialsServer::new(self.clone()).max_encoding_message_size(API_MESSAGE_BYTES_MAX),
            tsig_keys: tsig_keys_server::TsigKeysServer::new(self.clone()).max_encoding_message_size(API_MESSAGE_BYTES_MAX),
            dnssec_keys: dnssec_keys_server::DnssecKeysServer::new(self.clone()).max_encoding_message_size(API_MESSAGE_BYTES_MAX),
            writes: writes_server::WritesServer::new(self.clone())
                .max_decoding_message_size(API_MESSAGE_BYTES_MAX)
                .max_encoding_message_size(API_MESSAGE_BYTES_MAX),
        }
    }

    fn members(&self) -> Vec<proto::Member> {
        members_out(&self.node.status())
    }

    async fn change(&self, proposal: Proposal) -> Reply<proto::MembershipResponse> {
        let written = self.node.propose(proposal).await.map_err(status::node)?;
        Ok(Response::new(proto::MembershipResponse { revision: written.revision, members: self.members() }))
    }

    /// Commit a command, then wait as `options` ask; a refused command
    /// becomes its gRPC status. Options are checked before anything is written.
    /// The caller is authorised here against this node's state, to refuse
    /// early, and again when the command applies.
    pub(crate) async fn write(
        &self,
        caller: &Caller,
        command: Command,
        options: Option<proto::WriteOptions>,
    ) -> Result<(u64, Outcome), Status> {
        self.auth.allow(&self.node.state(), caller, Access::Write(&command))?;
        let mut guard = guard(options.as_ref())?;
        guard.actor = caller.actor();
        let wait = wait::Wait::parse(options)?;
        let kind = command.kind();
        let written = self.node.write(command, guard).await.map_err(status::node)?;
        let (revision, outcome) = match written.result {
            // A retried request id: the first call's revision and outcome.
            Ok(Some(Outcome::Replayed { revision, outcome })) => (revision, *outcome),
            Ok(Some(outcome)) => (written.revision, outcome),
            Ok(None) => return Err(Status::internal(format!("{kind} committed at {} without an outcome", written.revision))),
            Err(e) => return Err(status::command(e)),
        };
        tracing::debug!(kind, revision, "write committed");
        wait.until_applied(&self.node, revision.max(written.revision)).await?;
        Ok((revision, outcome))
    }

    /// Send one chunk of an import as a batch, once fewer than
    /// `IMPORT_CHUNKS_IN_FLIGHT` are in flight (settling those done).
    async fn import_chunk(
        &self,
        caller: &Caller,
        chunk: ImportChunk,
        pending: &mut tokio::task::JoinSet<ChunkDone>,
        summary: &mut Summary,
    ) -> Result<(), Status> {
        while pending.len() >= IMPORT_CHUNKS_IN_FLIGHT {
            if let Some(done) = pending.join_next().await {
                summary.settle(&self.node.state(), done.map_err(|e| Status::internal(e.to_string()))?);
            }
        }
        let (api, caller) = (self.clone(), caller.clone());
        pending.spawn(async move {
            let result = api.write_batch(&caller, chunk.rows, false, None).await;
            (chunk.records, result)
        });
        Ok(())
    }

    /// Commit `rows` as one batch and wait as `options` ask: the revision
    /// and the batch's result (a retried request id gets the first call's).
    pub(crate) async fn write_batch(
        &self,
        caller: &Caller,
        rows: Vec<BatchRow>,
        atomic: bool,
        options: Option<proto::WriteOptions>,
    ) -> Result<(u64, BatchOutcome), Status> {
        if options.as_ref().is_some_and(|o| o.expected_revision.is_some()) {
            return Err(Status::invalid_argument(
                "options.expected_revision: a batch has no revision of its own: set expected_revision per command",
            ));
        }
        switchboard_domain::command::check_batch("commands", &rows).map_err(status::invalid)?;
        match self.write(caller, Command::Batch { rows, atomic }, options).await? {
            (revision, Outcome::Batch(b)) => Ok((revision, *b)),
            (_, other) => Err(Status::internal(format!("unexpected outcome {other:?}"))),
        }
    }

    async fn tenant_write(&self, caller: &Caller, command: Command, options: Option<proto::WriteOptions>) -> Reply<proto::TenantResponse> {
        match self.write(caller, command, options).await? {
            (revision, Outcome::Tenant(t)) => {
                Ok(Response::new(proto::TenantResponse { revision, tenant: Some(tenant_out(&t)), staged: None }))
            }
            (_, other) => Err(Status::internal(format!("unexpected outcome {other:?}"))),
        }
    }
}

/// The compare-and-set and request id of a write's options, checked.
pub(crate) fn guard(options: Option<&proto::WriteOptions>) -> Result<Guard, Status> {
    let Some(o) = options else { return Ok(Guard::default()) };
    let request_id = if o.request_id.is_empty() {
        None
    } else {
        switchboard_domain::state::request_id("options.request_id", &o.request_id).map_err(status::invalid)?;
        Some(o.request_id.clone())
    };
    Ok(Guard { expected_revision: o.expected_revision, request_id, ..Guard::default() })
}

#[tonic::async_trait]
impl zones_server::Zones for Api {
    async fn put_zone(&self, req: Request<proto::PutZoneRequest>) -> Reply<proto::PutZoneResponse> {
        let caller = self.caller(&req)?;
        let r = req.into_inner();
        let zone = r.zone.ok_or_else(|| Status::invalid_argument("zone: required"))?;
        let spec = convert::zone_in(zone).map_err(status::invalid)?;
        let (revision, outcome) = self.write(&caller, Command::PutZone { zone: spec }, r.options).await?;
        let Outcome::Zone { apex } = outcome else {
            return Err(Status::internal(format!("unexpected outcome {outcome:?}")));
        };
        let state = self.node.state();
        let zone = state.zone(&apex).map(|z| zone_out(&state, z));
        Ok(Response::new(proto::PutZoneResponse { revision, zone }))
    }

    async fn get_zone(&self, req: Request<proto::GetZoneRequest>) -> Reply<proto::Zone> {
        self.check(&req, Access::ReadData)?;
        let apex = switchboard_domain::name::absolute("apex", &req.into_inner().apex).map_err(status::invalid)?;
        let state = self.node.state();
        let z = state.zone(&apex).ok_or_else(|| Status::not_found(format!("zone {apex:?} not found")))?;
        Ok(Response::new(zone_out(&state, z)))
    }

    /// Zones in apex order, a page at a time: at most `page_size`, and no
    /// more bytes than `ZONE_PAGE_BYTES_MAX` (a page holds at least one
    /// zone, which `ZONE_BYTES_MAX` keeps well within a message).
    async fn list_zones(&self, req: Request<proto::ListZonesRequest>) -> Reply<proto::ListZonesResponse> {
        self.check(&req, Access::ReadData)?;
        let r = req.into_inner();
        let after = if r.page_token.is_empty() {
            None
        } else {
            Some(switchboard_domain::name::absolute("page_token", &r.page_token).map_err(status::invalid)?)
        };
        let size = match r.page_size {
            0 => ZONE_PAGE_SIZE_DEFAULT,
            n if n > ZONE_PAGE_SIZE_MAX => return Err(Status::invalid_argument(format!("page_size: {n} exceeds {ZONE_PAGE_SIZE_MAX}"))),
            n => n,
        } as usize;
        let state = self.node.state();
        let (mut zones, mut bytes, mut more) = (Vec::new(), 0usize, false);
        for z in state.zones().filter(|z| after.as_deref().is_none_or(|a| z.apex() > a)) {
            let out = zone_out(&state, z);
            let len = prost::Message::encoded_len(&out);
            if zones.len() == size || (!zones.is_empty() && bytes + len > ZONE_PAGE_BYTES_MAX) {
                more = true;
                break;
            }
            bytes += len;
            zones.push(out);
        }
        let next_page_token = if more { zones.last().map(|z| z.apex.clone()).unwrap_or_default() } else { String::new() };
        Ok(Response::new(proto::ListZonesResponse { zones, next_page_token, revision: state.revision() }))
    }

    async fn delete_zone(&self, req: Request<proto::DeleteZoneRequest>) -> Reply<proto::DeleteResponse> {
        let caller = self.caller(&req)?;
        let r = req.into_inner();
        let apex = switchboard_domain::name::absolute("apex", &r.apex).map_err(status::invalid)?;
        let (revision, _) = self.write(&caller, Command::DeleteZone { apex }, r.options).await?;
        Ok(Response::new(proto::DeleteResponse { revision }))
    }

    type ExportZoneStream = ReceiverStream<Result<proto::ExportZoneChunk, Status>>;

    async fn export_zone(&self, req: Request<proto::ExportZoneRequest>) -> Reply<Self::ExportZoneStream> {
        self.check(&req, Access::ReadData)?;
        let apex = switchboard_domain::name::absolute("apex", &req.into_inner().apex).map_err(status::invalid)?;
        let state = self.node.state();
        let zone = state.zone(&apex).cloned().ok_or_else(|| Status::not_found(format!("zone {apex:?} not found")))?;
        let revision = state.revision();
        let (tx, rx) = mpsc::channel(EXPORT_CHUNKS_IN_FLIGHT);
        // A walk over every tenant: off the async workers, in chunks the
        // client pulls (a slow client holds one state snapshot, not memory).
        tokio::task::spawn_blocking(move || {
            let mut text = masterfile::header(&apex);
            let walked = zone_records(&state, &zone, &mut |r| {
                masterfile::write_record(&mut text, &r);
                if text.len() < EXPORT_CHUNK_BYTES {
                    return ControlFlow::Continue(());
                }
                let chunk = proto::ExportZoneChunk { text: std::mem::take(&mut text), revision };
                match tx.blocking_send(Ok(chunk)) {
                    Ok(()) => ControlFlow::Continue(()),
                    Err(_) => ControlFlow::Break(()),
                }
            });
            if walked.is_continue() {
                let _ = tx.blocking_send(Ok(proto::ExportZoneChunk { text, revision }));
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}

#[tonic::async_trait]
impl clusters_server::Clusters for Api {
    async fn put_cluster(&self, req: Request<proto::PutClusterRequest>) -> Reply<proto::PutClusterResponse> {
        let caller = self.caller(&req)?;
        let r = req.into_inner();
        let c = r.cluster.ok_or_else(|| Status::invalid_argument("cluster: required"))?;
        let cluster = convert::cluster_in(c).map_err(status::invalid)?;
        let (revision, outcome) = self.write(&caller, Command::PutCluster { cluster }, r.options).await?;
        let Outcome::Cluster(c) = outcome else {
            return Err(Status::internal(format!("unexpected outcome {outcome:?}")));
        };
        Ok(Response::new(proto::PutClusterResponse { revision, cluster: Some(convert::cluster_view(&self.node.state(), &c)) }))
    }

    async fn get_cluster(&self, req: Request<proto::GetClusterRequest>) -> Reply<proto::Cluster> {
        self.check(&req, Access::ReadData)?;
        let id = convert::label("id", &req.into_inner().id).map_err(status::invalid)?;
        let state = self.node.state();
        let c = state.cluster(&id).ok_or_else(|| Status::not_found(format!("cluster {id:?} not found")))?;
        Ok(Response::new(convert::cluster_view(&state, c)))
    }

    async fn list_clusters(&self, req: Request<proto::ListClustersRequest>) -> Reply<proto::ListClustersResponse> {
        self.check(&req, Access::ReadData)?;
        let state = self.node.state();
        let clusters = state.clusters().map(|c| convert::cluster_view(&state, c)).collect();
        Ok(Response::new(proto::ListClustersResponse { clusters }))
    }

    async fn delete_cluster(&self, req: Request<proto::DeleteClusterRequest>) -> Reply<proto::DeleteResponse> {
        let caller = self.caller(&req)?;
        let r = req.into_inner();
        let id = convert::label("id", &r.id).map_err(status::invalid)?;
        let (revision, _) = self.write(&caller, Command::DeleteCluster { id }, r.options).await?;
        Ok(Response::new(proto::DeleteResponse { revision }))
    }
}

#[tonic::async_trait]
impl tenants_server::Tenants for Api {
    async fn create_tenant(&self, req: Request<proto::CreateTenantRequest>) -> Reply<proto::TenantResponse> {
        let caller = self.caller(&req)?;
        let r = req.into_inner();
        let id = convert::label("id", &r.id).map_err(status::invalid)?;
        let cluster = if r.cluster.is_empty() { None } else { Some(convert::label("cluster", &r.cluster).map_err(status::invalid)?) };
        self.tenant_write(&caller, Command::CreateTenant { id, cluster }, r.options).await
    }

    /// Records are checked here (a bad one is reported without stopping
    /// the rest) and created in batches (`import_chunk`), several in
    /// flight, so log entries fill.
    async fn import_tenants(&self, req: Request<tonic::Streaming<proto::ImportTenantsRequest>>) -> Reply<proto::ImportTenantsResponse> {
        let caller = self.caller(&req)?;
        // One check for the whole stream (every record is a create); each
        // row is authorised again when its batch applies.
        let probe = Command::CreateTenant { id: String::new(), cluster: None };
        self.auth.allow(&self.node.state(), &caller, Access::Write(&probe))?;
        let mut stream = req.into_inner();
        let mut pending = tokio::task::JoinSet::new();
        let mut summary = Summary::default();
        let mut chunk = ImportChunk::default();
        while let Some(message) = stream.message().await.map_err(status::stream)? {
            for record in message.records {
                let parsed = convert::label("id", &record.id).map_err(status::invalid).and_then(|key| {
                    let cluster = match record.cluster.as_str() {
                        "" => None,
                        c => Some(convert::label("cluster", c).map_err(status::invalid)?),
                    };
                    Ok(Sent { line: record.line, id: record.id.clone(), key, cluster })
                });
                let sent = match parsed {
                    Ok(sent) => sent,
                    Err(s) => {
                        summary.refused(record.line, record.id, &s);
                        continue;
                    }
                };
                // A chunk names each tenant once: a repeated id starts the next.
                if !chunk.fits(&sent.key) {
                    self.import_chunk(&caller, std::mem::take(&mut chunk), &mut pending, &mut summary).await?;
                }
                chunk.push(sent);
            }
        }
        if !chunk.rows.is_empty() {
            self.import_chunk(&caller, chunk, &mut pending, &mut summary).await?;
        }
        while let Some(done) = pending.join_next().await {
            summary.settle(&self.node.state(), done.map_err(|e| Status::internal(e.to_string()))?);
        }
        Ok(Response::new(summary.finish()))
    }

    async fn rebalance(&self, req: Request<proto::RebalanceRequest>) -> Reply<proto::RebalanceResponse> {
        let caller = self.check(&req, Access::ReadData)?;
        if !req.get_ref().dry_run {
            let probe = Command::MoveTenant { id: String::new(), cluster: String::new() };
            self.auth.allow(&self.node.state(), &caller, Access::Write(&probe))?;
        }
        let r = req.into_inner();
        if !r.dry_run && r.max == 0 {
            return Err(Status::invalid_argument("max: required unless dry_run (how many tenants at most to move)"));
        }
        let state = self.node.state();
        let limit = if r.max == 0 { REBALANCE_LIST_MAX } else { (r.max as usize).min(REBALANCE_LIST_MAX) };
        // A walk over every tenant, hashing each against every cluster: off the async workers.
        let plan =
            tokio::task::spawn_blocking(move || placement::rebalance(&state, limit)).await.map_err(|e| Status::internal(e.to_string()))?;
        let misplaced = plan.misplaced;
        let mut moves: Vec<proto::Move> = plan
            .moves
            .iter()
            .map(|m| proto::Move { id: m.tenant.clone(), from: m.from.clone(), to: m.to.clone(), ..Default::default() })
            .collect();
        if !r.dry_run {
            // Compare-and-set per move: a tenant changed since the plan was
            // made is left alone. Batches of REBALANCE_BATCH_ROWS, in turn.
            let rows: Vec<BatchRow> = plan
                .moves
                .into_iter()
                .map(|m| BatchRow { command: Command::MoveTenant { id: m.tenant, cluster: m.to }, expected_revision: Some(m.revision) })
                .collect();
            for (chunk, out) in rows.chunks(REBALANCE_BATCH_ROWS).zip(moves.chunks_mut(REBALANCE_BATCH_ROWS)) {
                match self.write_batch(&caller, chunk.to_vec(), false, None).await {
                    Ok((revision, batch)) => {
                        for (i, m) in out.iter_mut().enumerate() {
                            match status::batch_row(&batch, i as u32) {
                                None => m.revision = revision,
                                Some(s) => m.error = format!("{:?}: {}", s.code(), s.message()),
                            }
                        }
                    }
                    Err(s) => out.iter_mut().for_each(|m| m.error = format!("{:?}: {}", s.code(), s.message())),
                }
            }
        }
        Ok(Response::new(proto::RebalanceResponse { misplaced, moves }))
    }

    async fn get_tenant(&self, req: Request<proto::GetTenantRequest>) -> Reply<proto::Tenant> {
        let caller = self.caller(&req)?;
        let id = convert::label("id", &req.get_ref().id).map_err(status::invalid)?;
        self.auth.allow(&self.node.state(), &caller, Access::ReadTenant(&id))?;
        if req.get_ref().consistent {
            self.node.read_barrier().await.map_err(status::node)?;
        }
        let state = self.node.state();
        let t = state.tenant(&id).ok_or_else(|| Status::not_found(format!("tenant {id:?} not found")))?;
        Ok(Response::new(convert::tenant_view(&state, t)))
    }

    async fn list_tenants(&self, req: Request<proto::ListTenantsRequest>) -> Reply<proto::ListTenantsResponse> {
        self.check(&req, Access::ReadData)?;
        let r = req.into_inner();
        let cluster = if r.cluster.is_empty() { None } else { Some(convert::label("cluster", &r.cluster).map_err(status::invalid)?) };
        let after =
            if r.page_token.is_empty() { None } else { Some(convert::label("page_token", &r.page_token).map_err(status::invalid)?) };
        let size = match r.page_size {
            0 => PAGE_SIZE_DEFAULT,
            n if n > PAGE_SIZE_MAX => return Err(Status::invalid_argument(format!("page_size: {n} exceeds {PAGE_SIZE_MAX}"))),
            n => n,
        } as usize;
        let state = self.node.state();
        let mut tenants = Vec::with_capacity(size.min(PAGE_PREALLOCATE_MAX));
        let mut more = false;
        for t in state.tenants_after(after.as_deref()).filter(|t| cluster.as_ref().is_none_or(|c| t.cluster == *c)) {
            if tenants.len() == size {
                more = true;
                break;
            }
            tenants.push(tenant_out(t));
        }
        let next_page_token = if more { tenants.last().map(|t| t.id.clone()).unwrap_or_default() } else { String::new() };
        Ok(Response::new(proto::ListTenantsResponse { tenants, next_page_token, revision: state.revision() }))
    }

    async fn delete_tenant(&self, req: Request<proto::DeleteTenantRequest>) -> Reply<proto::DeleteResponse> {
        let caller = self.caller(&req)?;
        let r = req.into_inner();
        let id = convert::label("id", &r.id).map_err(status::invalid)?;
        let (revision, _) = self.write(&caller, Command::DeleteTenant { id }, r.options).await?;
        Ok(Response::new(proto::DeleteResponse { revision }))
    }

    async fn pin_tenant(&self, req: Request<proto::PinTenantRequest>) -> Reply<proto::TenantResponse> {
        let caller = self.caller(&req)?;
        let r = req.into_inner();
        let id = convert::label("id", &r.id).map_err(status::invalid)?;
        let cluster = convert::label("cluster", &r.cluster).map_err(status::invalid)?;
        self.tenant_write(&caller, Command::PinTenant { id, cluster }, r.options).await
    }

    async fn unpin_tenant(&self, req: Request<proto::UnpinTenantRequest>) -> Reply<proto::TenantResponse> {
        let caller = self.caller(&req)?;
        let r = req.into_inner();
        let id = convert::label("id", &r.id).map_err(status::invalid)?;
        self.tenant_write(&caller, Command::UnpinTenant { id }, r.options).await
    }

    async fn move_tenant(&self, req: Request<proto::MoveTenantRequest>) -> Reply<proto::TenantResponse> {
        let caller = self.caller(&req)?;
        let r = req.into_inner();
        let id = convert::label("id", &r.id).map_err(status::invalid)?;
        let cluster = convert::label("cluster", &r.cluster).map_err(status::invalid)?;
        let Some(ttl) = r.ttl_first else {
            return self.tenant_write(&caller, Command::MoveTenant { id, cluster }, r.options).await;
        };
        match self.write(&caller, Command::StageMove { id: id.clone(), cluster, ttl }, r.options).await? {
            (revision, Outcome::Move(m)) => {
                let tenant = self.node.state().tenant(&id).map(|t| tenant_out(t));
                Ok(Response::new(proto::TenantResponse { revision, tenant, staged: Some(convert::staged_out(&m)) }))
            }
            (_, other) => Err(Status::internal(format!("unexpected outcome {other:?}"))),
        }
    }

    async fn cancel_move(&self, req: Request<proto::CancelMoveRequest>) -> Reply<proto::CancelMoveResponse> {
        let caller = self.caller(&req)?;
        let r = req.into_inner();
        let id = convert::label("id", &r.id).map_err(status::invalid)?;
        let (revision, _) = self.write(&caller, Command::CancelMove { id }, r.options).await?;
        Ok(Response::new(proto::CancelMoveResponse { revision }))
    }

    async fn add_alias(&self, req: Request<proto::AliasRequest>) -> Reply<proto::TenantResponse> {
        let caller = self.caller(&req)?;
        let r = req.into_inner();
        let tenant = convert::label("tenant", &r.tenant).map_err(status::invalid)?;
        let alias = convert::label("alias", &r.alias).map_err(status::invalid)?;
        self.tenant_write(&caller, Command::AddAlias { tenant, alias }, r.options).await
    }

    async fn remove_alias(&self, req: Request<proto::AliasRequest>) -> Reply<proto::TenantResponse> {
        let caller = self.caller(&req)?;
        let r = req.into_inner();
        let tenant = convert::label("tenant", &r.tenant).map_err(status::invalid)?;
        let alias = convert::label("alias", &r.alias).map_err(status::invalid)?;
        self.tenant_write(&caller, Command::RemoveAlias { tenant, alias }, r.options).await
    }
}

#[tonic::async_trait]
impl node_server::Node for Api {
    async fn status(&self, req: Request<proto::StatusRequest>) -> Reply<proto::StatusResponse> {
        self.check(&req, Access::ReadStatus)?;
        let st = self.node.status();
        let state = self.node.state();
        Ok(Response::new(proto::StatusResponse {
            node_id: st.id,
            role: st.role.as_str().into(),
            leader_id: st.leader.as_ref().map_or(0, |(id, _)| *id),
            leader_api: st.leader.as_ref().and_then(|(_, n)| n.as_ref()).map(|n| n.api.clone()).unwrap_or_default(),
            term: st.term,
            last_log_index: st.log.last,
            applied_revision: state.revision(),
            members: members_out(&st),
            zones: state.zones().count() as u64,
            clusters: state.clusters().count() as u64,
            tenants: state.tenant_count() as u64,
            staleness_ms: st.staleness_ms,
            ready: self.node.ready(self.max_stale_ms).is_ok(),
            snapshot_revision: st.log.snapshot,
            purged_revision: st.log.purged,
            upstream: st.upstream.as_ref().map(|(_, url)| url.clone()).unwrap_or_default(),
            upstream_id: st.upstream.as_ref().map_or(0, |(id, _)| *id),
            tree: tree_out(st.tree.clone()),
        }))
    }
}

fn tree_out(tree: Vec<switchboard_consensus::TreeNode>) -> Vec<proto::TreeNode> {
    tree.into_iter()
        .map(|t| proto::TreeNode {
            id: t.id,
            peer: t.info.peer,
            api: t.info.api,
            upstream_id: t.upstream,
            applied_revision: t.applied,
            staleness_ms: t.staleness_ms,
        })
        .collect()
}

fn members_out(st: &switchboard_consensus::NodeStatus) -> Vec<proto::Member> {
    st.members.iter().map(|m| proto::Member { id: m.id, peer: m.info.peer.clone(), api: m.info.api.clone(), voter: m.voter }).collect()
}

fn member_id(id: u64) -> Result<NodeId, Status> {
    if id == 0 {
        return Err(Status::invalid_argument("id: node ids start at 1"));
    }
    Ok(id)
}

fn host_port(field: &str, addr: &str) -> Result<String, Status> {
    match addr.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0) => Ok(addr.to_string()),
        _ => Err(Status::invalid_argument(format!("{field}: {addr:?} is not host:port"))),
    }
}

#[tonic::async_trait]
impl membership_server::Membership for Api {
    async fn list_members(&self, req: Request<proto::MembersRequest>) -> Reply<proto::MembersResponse> {
        self.check(&req, Access::ReadStatus)?;
        Ok(Response::new(proto::MembersResponse { members: self.members(), tree: tree_out(self.node.tree().await) }))
    }

    async fn add_learner(&self, req: Request<proto::AddLearnerRequest>) -> Reply<proto::MembershipResponse> {
        self.check(&req, Access::Membership)?;
        let r = req.into_inner();
        let id = member_id(r.id)?;
        let info = switchboard_consensus::NodeInfo { peer: host_port("peer", &r.peer)?, api: host_port("api", &r.api)? };
        self.change(Proposal::AddLearner { id, info }).await
    }

    async fn promote(&self, req: Request<proto::MemberIdRequest>) -> Reply<proto::MembershipResponse> {
        self.check(&req, Access::Membership)?;
        self.change(Proposal::Promote { id: member_id(req.into_inner().id)? }).await
    }

    async fn remove_member(&self, req: Request<proto::MemberIdRequest>) -> Reply<proto::MembershipResponse> {
        self.check(&req, Access::Membership)?;
        self.change(Proposal::Remove { id: member_id(req.into_inner().id)? }).await
    }
}

/// An import batch written: the line and id of each row, and the result.
type ChunkDone = (Vec<Sent>, Result<(u64, BatchOutcome), Status>);

/// A record sent in an import batch: where it came from (its line and id
/// as written) and what it asked (the tenant, its cluster if named).
struct Sent {
    line: u64,
    id: String,
    key: String,
    cluster: Option<String>,
}

/// The rows of one import batch, with the line and id each came from.
#[derive(Default)]
struct ImportChunk {
    rows: Vec<BatchRow>,
    records: Vec<Sent>,
    ids: std::collections::HashSet<String>,
    bytes: usize,
}

impl ImportChunk {
    /// Whether tenant `key` may join: room left, and it is not in already.
    fn fits(&self, key: &str) -> bool {
        self.rows.len() < IMPORT_CHUNK_ROWS && self.bytes + key.len() <= IMPORT_CHUNK_BYTES && !self.ids.contains(key)
    }

    fn push(&mut self, sent: Sent) {
        self.bytes += sent.key.len();
        self.ids.insert(sent.key.clone());
        let command = Command::CreateTenant { id: sent.key.clone(), cluster: sent.cluster.clone() };
        self.rows.push(BatchRow { command, expected_revision: None });
        self.records.push(sent);
    }
}

/// Whether the tenant a record asked to create exists as it asked.
fn already_there(state: &State, r: &Sent) -> bool {
    state.tenant(&r.key).is_some_and(|t| match &r.cluster {
        Some(c) => t.pinned && t.cluster == *c,
        None => !t.pinned,
    })
}

/// What an import reports: counts, the highest revision, and the first
/// errors by line (in bounded memory).
#[derive(Default)]
struct Summary(proto::ImportTenantsResponse);

impl Summary {
    fn refused(&mut self, line: u64, id: String, s: &Status) {
        self.0.rejected += 1;
        self.0.errors.push(proto::ImportError { line, id, error: format!("{:?}: {}", s.code(), s.message()) });
        if self.0.errors.len() >= 2 * IMPORT_ERRORS_MAX {
            self.0.errors.sort_by_key(|e| e.line);
            self.0.errors.truncate(IMPORT_ERRORS_MAX);
        }
    }

    /// A batch's rows, each created, already there, or refused; a batch
    /// that failed whole (unavailable, say) refuses each of its records
    /// with that status.
    ///
    /// A create refused because the tenant exists as the record asks (on
    /// the cluster it names, pinned; placed by hashing when it names none)
    /// is counted as existing, not rejected: an import run again after it
    /// was interrupted creates the rest and succeeds.
    fn settle(&mut self, state: &State, (records, result): ChunkDone) {
        let (revision, batch) = match result {
            Ok(done) => done,
            Err(s) => {
                for r in records {
                    self.refused(r.line, r.id, &s);
                }
                return;
            }
        };
        for (i, r) in records.into_iter().enumerate() {
            match batch.row(i as u32) {
                Ok(()) => {
                    self.0.created += 1;
                    self.0.revision = self.0.revision.max(revision);
                }
                Err(RowError::Refused(CommandError::AlreadyExists { .. })) if already_there(state, &r) => self.0.existing += 1,
                Err(e) => self.refused(r.line, r.id, &status::row_error(e)),
            }
        }
    }

    fn finish(mut self) -> proto::ImportTenantsResponse {
        self.0.errors.sort_by_key(|e| e.line);
        self.0.errors.truncate(IMPORT_ERRORS_MAX);
        self.0
    }
}
