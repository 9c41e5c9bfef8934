//! Mapping of domain and consensus errors to gRPC statuses. Every status
//! names the field at fault where there is one.

use switchboard_consensus::{NodeError, NodeId, NodeInfo};
use switchboard_domain::{CommandError, ValidationError};
use tonic::{Code, Status};

pub use switchboard_proto::{CURRENT_REVISION_METADATA, LEADER_API_METADATA, LEADER_ID_METADATA};

pub fn invalid(e: ValidationError) -> Status {
    Status::invalid_argument(e.to_string())
}

pub fn command(e: CommandError) -> Status {
    match e {
        CommandError::Invalid(v) => invalid(v),
        CommandError::NotFound { .. } => Status::not_found(e.to_string()),
        CommandError::FailedPrecondition { .. } => Status::failed_precondition(e.to_string()),
        CommandError::AlreadyExists { .. } => Status::already_exists(e.to_string()),
        CommandError::Aborted { current, .. } => {
            let mut s = Status::aborted(format!("options.{e}"));
            if let Ok(v) = current.to_string().parse() {
                s.metadata_mut().insert(CURRENT_REVISION_METADATA, v);
            }
            s
        }
        CommandError::Unauthenticated(m) => Status::unauthenticated(m),
        CommandError::PermissionDenied(m) => Status::permission_denied(m),
        CommandError::Update { .. } => Status::failed_precondition(e.to_string()),
        other => Status::internal(other.to_string()),
    }
}

/// UNAVAILABLE with `message`, and the leader's id and API address in
/// metadata when known (the CLI retries there).
fn unavailable(message: String, leader: Option<&(NodeId, NodeInfo)>) -> Status {
    let mut s = Status::new(Code::Unavailable, message);
    if let Some((id, info)) = leader {
        if let Ok(v) = id.to_string().parse() {
            s.metadata_mut().insert(LEADER_ID_METADATA, v);
        }
        if let Ok(v) = info.api.parse() {
            s.metadata_mut().insert(LEADER_API_METADATA, v);
        }
    }
    s
}

pub fn node(e: NodeError) -> Status {
    match e {
        NodeError::NotLeader { ref leader } => unavailable(e.to_string(), leader.as_ref()),
        NodeError::OutcomeUnknown { ref leader, .. } => unavailable(e.to_string(), leader.as_ref()),
        NodeError::DiskFull(m) => Status::resource_exhausted(m),
        NodeError::Unavailable(m) => Status::unavailable(m),
        NodeError::Membership(m) => Status::failed_precondition(m),
        other => Status::internal(other.to_string()),
    }
}

/// tonic answers a request it cannot decode with INTERNAL ("failed to decode
/// Protobuf message: …", as gRPC's own guidance has it); the fault is the
/// caller's, and every other bad input here is INVALID_ARGUMENT, so a
/// unary call's decode failure (a trailers-only response, status in the
/// headers) says so too. Streamed requests are mapped where they are read
/// (`stream`).
pub fn decode_failure_is_invalid_argument<B>(mut response: http::Response<B>) -> http::Response<B> {
    let headers = response.headers();
    let internal = headers.get("grpc-status").is_some_and(|v| v.as_bytes() == b"13");
    let decode = headers.get("grpc-message").is_some_and(|m| {
        let m = m.as_bytes();
        m.starts_with(DECODE_FAILURE.as_bytes()) || m.starts_with(DECODE_FAILURE.replace(' ', "%20").as_bytes())
    });
    if internal && decode {
        response.headers_mut().insert("grpc-status", http::HeaderValue::from_static("3"));
    }
    response
}

/// How prost's decode errors begin.
const DECODE_FAILURE: &str = "failed to decode Protobuf message";

/// A status from reading a streamed request: decode failures are the
/// caller's (INVALID_ARGUMENT), anything else stays as it is.
pub fn stream(s: Status) -> Status {
    if s.code() == Code::Internal && s.message().starts_with(DECODE_FAILURE) {
        Status::invalid_argument(s.message().to_string())
    } else {
        s
    }
}

/// The layer that applies `decode_failure_is_invalid_argument` to every response.
pub fn decode_failure_layer<B>() -> tower::util::MapResponseLayer<fn(http::Response<B>) -> http::Response<B>> {
    tower::util::MapResponseLayer::new(decode_failure_is_invalid_argument::<B>)
}

/// What row `i` of `batch` got: `None` when it took effect, else the
/// status it alone would have got (`row_error`).
pub(crate) fn batch_row(batch: &switchboard_domain::BatchOutcome, i: u32) -> Option<Status> {
    batch.row(i).err().map(row_error)
}

/// Why a row of a batch did not take effect, as a status: the one the row
/// alone would have got, or ABORTED for an atomic batch's row that another
/// row's refusal undid.
pub(crate) fn row_error(e: switchboard_domain::RowError<'_>) -> Status {
    match e {
        switchboard_domain::RowError::Refused(e) => command(e.clone()),
        switchboard_domain::RowError::NotApplied { refused_row } => {
            Status::aborted(format!("not applied: the batch is atomic and commands[{refused_row}] was refused"))
        }
    }
}
