//! The internal wire: protobuf types that travel between ArqonBus services over NATS,
//! the gRPC service definitions, and their conversion into the protocol's domain types.
//!
//! Generated types stay at this boundary. Services encode and decode through [`model`],
//! which validates once on receipt (`TryFrom`) and hands out `arqon_protocol` types; no
//! service reads a generated struct field by field.

pub mod control;
pub mod grpc;
pub mod grpc_trace;
pub mod layout;
pub mod liveness;
pub mod model;
pub mod operators_control;
pub mod policy_control;

/// Generated code for `proto/arqon/envelope/v1`.
pub mod envelope {
    #[allow(missing_debug_implementations, unreachable_pub, clippy::all)]
    pub mod v1 {
        tonic::include_proto!("arqon.envelope.v1");
    }
}

/// Generated code for `proto/arqon/policy/v1`.
pub mod policy {
    #[allow(missing_debug_implementations, unreachable_pub, clippy::all)]
    pub mod v1 {
        tonic::include_proto!("arqon.policy.v1");
    }
}

/// Generated code for `proto/arqon/dispatcher/v1`.
pub mod dispatcher {
    #[allow(missing_debug_implementations, unreachable_pub, clippy::all)]
    pub mod v1 {
        tonic::include_proto!("arqon.dispatcher.v1");
    }
}

/// Generated code for `proto/arqon/operators/v1`.
pub mod operators {
    #[allow(missing_debug_implementations, unreachable_pub, clippy::all)]
    pub mod v1 {
        tonic::include_proto!("arqon.operators.v1");
    }
}
