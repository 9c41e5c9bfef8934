//! Switchboard's public gRPC API: the generated types of `proto/switchboard/v1`,
//! their conversion to and from domain types (the domain never sees
//! generated code), and the service implementations over a consensus `Node`.

mod acme;
pub mod auth;
pub mod convert;
mod credentials;
mod service;
mod status;
mod wait;
mod watch;

pub mod proto {
    //! Generated code of `proto/switchboard/v1/*.proto`.
    #![allow(clippy::all, missing_docs)]
    tonic::include_proto!("switchboard.v1");
}

/// The encoded descriptors of every public API proto, for server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/switchboard_v1_descriptor.bin"));

pub use auth::{Auth, BOOTSTRAP_TOKEN_LEN_MIN};
pub use service::{health, reflection, Api, Services, SERVICE_NAMES};
pub use status::{CURRENT_REVISION_METADATA, LEADER_API_METADATA, LEADER_ID_METADATA};

/// Largest API message either way.
pub const API_MESSAGE_BYTES_MAX: usize = 16 * 1024 * 1024;
/// Tenants per `ListTenants` page: default and most.
pub const PAGE_SIZE_DEFAULT: u32 = 1_000;
pub const PAGE_SIZE_MAX: u32 = 10_000;
