//! Switchboard's wire types: the generated code of the public API
//! (`proto/switchboard/v1`, module [`v1`]), of the peer protocol
//! (`proto/switchboard/raft/v1/peer.proto`, module [`peer`]) and of the
//! dnstap query log (`proto/dnstap/dnstap.proto`, module [`dnstap`]), plus what
//! clients and servers must agree on beyond the protos: message size,
//! metadata keys and the retry policy.
//!
//! Clients are always generated; the server stubs only with the `server`
//! feature, so the CLI and `bench` build without tonic's server side. No
//! RocksDB, no openraft: depending on this crate is cheap.

#[cfg(feature = "domain")]
pub mod convert;
pub mod retry;

pub mod v1 {
    //! Generated code of `proto/switchboard/v1/*.proto`.
    #![allow(clippy::all, missing_docs)]
    tonic::include_proto!("switchboard.v1");
}

pub mod peer {
    //! Generated code of `proto/switchboard/raft/v1/peer.proto`.
    #![allow(clippy::all, missing_docs)]
    tonic::include_proto!("switchboard.raft.v1");
}

pub mod dnstap {
    //! Generated code of `proto/dnstap/dnstap.proto`: the standard dnstap
    //! schema (upstream's, unchanged), whose `Dnstap` messages the query log
    //! writes in Frame Streams with content type `protobuf:dnstap.Dnstap`.
    #![allow(clippy::all, missing_docs)]
    tonic::include_proto!("dnstap");
}

/// The encoded descriptors of every public API proto, for server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/switchboard_v1_descriptor.bin"));

/// Largest API message either way.
pub const API_MESSAGE_BYTES_MAX: usize = 16 * 1024 * 1024;

/// Metadata keys carried by `UNAVAILABLE` when a node is not the leader,
/// so a client can retry against the leader.
pub const LEADER_ID_METADATA: &str = "x-switchboard-leader-id";
pub const LEADER_API_METADATA: &str = "x-switchboard-leader-api";
/// Metadata key carried by `ABORTED` (compare-and-set failed): the entity's
/// revision now, to re-read from or retry with.
pub const CURRENT_REVISION_METADATA: &str = "x-switchboard-current-revision";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptor_set_names_every_public_file() {
        let fds: prost_types_free::FileDescriptorSetNames = prost::Message::decode(FILE_DESCRIPTOR_SET).unwrap();
        for f in ["common", "zones", "clusters", "tenants", "node", "acme", "watch", "credentials"] {
            let name = format!("switchboard/v1/{f}.proto");
            assert!(fds.file.iter().any(|d| d.name.as_deref() == Some(name.as_str())), "{name} missing");
        }
    }

    /// Just enough of `google.protobuf.FileDescriptorSet` to read file names
    /// back, without a dependency on prost-types.
    mod prost_types_free {
        #[derive(Clone, PartialEq, prost::Message)]
        pub struct FileDescriptorSetNames {
            #[prost(message, repeated, tag = "1")]
            pub file: Vec<FileName>,
        }
        #[derive(Clone, PartialEq, prost::Message)]
        pub struct FileName {
            #[prost(string, optional, tag = "1")]
            pub name: Option<String>,
        }
    }
}
