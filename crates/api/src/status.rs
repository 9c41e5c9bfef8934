//! Mapping of domain and consensus errors to gRPC statuses. Every status
//! names the field at fault where there is one.

use switchboard_consensus::NodeError;
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
        other => Status::internal(other.to_string()),
    }
}

pub fn node(e: NodeError) -> Status {
    match e {
        NodeError::NotLeader { leader } => {
            let mut s = Status::new(Code::Unavailable, NodeError::NotLeader { leader: leader.clone() }.to_string());
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
        NodeError::Unavailable(m) => Status::unavailable(m),
        NodeError::Membership(m) => Status::failed_precondition(m),
        other => Status::internal(other.to_string()),
    }
}
