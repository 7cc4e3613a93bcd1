//! The dispatcher's gRPC API, `arqon.dispatcher.v1.Bus` (`proto/arqon/dispatcher/v1/bus.proto`):
//! backends publish into channels and read channels, presence and history without a
//! WebSocket.
//!
//! Callers are trusted backends. Each call presents the service token
//! (`authorization: Bearer <token>`, checked in [`auth`] before the request is read) and
//! names its tenant; the token is good for every tenant. A Publish skips the policy
//! (CASIL) stage and a client's permissions: it is routed exactly as [`crate::route`]
//! routes an accepted client message, so WebSocket members receive it and the history
//! keeps it. The API is only served when a service token is configured.
//!
//! Reads go through the same state views as the WebSocket commands (`crate::state`), so
//! both answer alike; failures map to gRPC codes in [`status`].

mod auth;
mod request;
mod service;
mod status;
#[cfg(test)]
mod test_harness;
#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;
use tracing::info;

use arqon_proto::dispatcher::v1::bus_server::BusServer;

use crate::Context;

pub use auth::ServiceToken;

/// The longest a call may take. Every bus operation has its own, shorter bound; this one
/// catches the rest.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// Serves the API on `listener` until `shutdown`, then stops accepting and lets the calls
/// in flight finish.
pub(crate) async fn serve(
    context: Arc<Context>,
    token: ServiceToken,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> Result<(), tonic::transport::Error> {
    let address = listener.local_addr().ok();
    let api = BusServer::with_interceptor(service::BusApi { context }, auth::require(token));
    let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
    info!(?address, "gRPC API listening");
    Server::builder()
        .timeout(CALL_TIMEOUT)
        .serve_with_incoming_shutdown(api, incoming, shutdown.cancelled_owned())
        .await?;
    info!("gRPC API stopped");
    Ok(())
}
