//! Switchboard's public gRPC API: the generated types of `proto/switchboard/v1`,
//! their conversion to and from domain types (the domain never sees
//! generated code), and the service implementations over a consensus `Node`.

mod acme;
pub mod auth;
mod batch;
pub mod convert;
mod credentials;
mod dnssec;
mod service;
mod status;
mod streams;
mod tsig;
mod wait;
mod watch;

/// The generated types of `proto/switchboard/v1` (from the `proto` crate).
pub use switchboard_proto::v1 as proto;
pub use switchboard_proto::{API_MESSAGE_BYTES_MAX, FILE_DESCRIPTOR_SET};

pub use auth::{Auth, BOOTSTRAP_TOKEN_LEN_MIN};
pub use service::{health, reflection, Api, Services, SERVICE_NAMES};
pub use status::{decode_failure_layer, CURRENT_REVISION_METADATA, LEADER_API_METADATA, LEADER_ID_METADATA};
pub use streams::WatchLimits;

/// Tenants per `ListTenants` page: default and most.
pub const PAGE_SIZE_DEFAULT: u32 = 1_000;
pub const PAGE_SIZE_MAX: u32 = 10_000;
