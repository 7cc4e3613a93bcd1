//! The dispatcher's gRPC API, `arqon.dispatcher.v1.Bus` (`proto/arqon/dispatcher/v1/bus.proto`):
//! backends publish into channels and read channels, presence and history without a
//! WebSocket.
//!
//! Callers are trusted backends. Each call presents the service token
//! (`authorization: Bearer <token>`, checked by `arqon_proto::grpc::require` before the request is read) and
//! names its tenant; the token is good for every tenant. A Publish skips the policy
//! (CASIL) stage and a client's permissions: it is routed exactly as [`crate::route`]
//! routes an accepted client message, so WebSocket members receive it and the history
//! keeps it. The API is only served when a service token is configured.
//!
//! Reads go through the same state views as the WebSocket commands (`crate::state`), so
//! both answer alike; failures map to gRPC codes in [`status`].

mod request;
mod service;
mod status;
#[cfg(test)]
mod test_harness;
#[cfg(test)]
mod tests;

use std::sync::Arc;

use tonic::service::RoutesBuilder;

use arqon_proto::dispatcher::v1::bus_server::BusServer;
use arqon_proto::grpc::{ServiceToken, require};

use crate::Context;

/// Adds the API, behind `token`, to `routes`.
pub(crate) fn add(context: Arc<Context>, token: ServiceToken, routes: &mut RoutesBuilder) {
    routes.add_service(BusServer::with_interceptor(
        service::BusApi { context },
        require(token),
    ));
}
