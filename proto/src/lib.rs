//! Generated types, clients and servers of the `ecocode.v1` gRPC contract.
//!
//! Only the `server` crate (and tests) depend on this crate: domain crates
//! never see prost-generated types.

#![allow(clippy::all, missing_docs)]

pub mod v1 {
    pub use ecocode_messages::v1::*;
    tonic::include_proto!("ecocode.v1");
}

/// Encoded `FileDescriptorSet` for server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("ecocode_descriptor");
