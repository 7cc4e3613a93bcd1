//! A span for every gRPC call, on both sides, and the W3C trace context between them:
//! the client writes `traceparent` (and `tracestate`) into the request's metadata, the
//! server continues the caller's trace from it. Attributes follow the RPC semantic
//! conventions (`rpc.system`, `rpc.service`, `rpc.method`, `rpc.grpc.status_code`); a
//! call that fails has the span's status set to error.
//!
//! Only calls made for a traced message have spans (and carry a context); a server
//! continues a caller's sampled trace and starts none of its own. Without tracing the
//! context is neither written nor read.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use tonic::codegen::Service;
use tonic::codegen::http::{HeaderValue, Request, Response};
use tracing::Instrument as _;

use arqon_telemetry::traces;

/// Which side of a call a [`Traced`] service is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Client,
    Server,
}

/// A gRPC transport (a client channel, or a server's routes) with a span per call.
#[derive(Debug, Clone)]
pub struct Traced<S> {
    inner: S,
    side: Side,
}

impl<S> Traced<S> {
    /// Calls made through `channel` are client spans carrying their context.
    pub fn client(channel: S) -> Traced<S> {
        Traced {
            inner: channel,
            side: Side::Client,
        }
    }
}

/// The server side as a tower layer, for `tonic::transport::Server::layer`.
#[derive(Debug, Clone, Copy, Default)]
pub struct ServerLayer;

impl<S> tower::Layer<S> for ServerLayer {
    type Service = Traced<S>;

    fn layer(&self, inner: S) -> Traced<S> {
        Traced {
            inner,
            side: Side::Server,
        }
    }
}

impl<S, B, R> Service<Request<B>> for Traced<S>
where
    S: Service<Request<B>, Response = Response<R>>,
    S::Future: Send + 'static,
    S::Error: 'static,
    R: 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        let (service, method) = rpc_names(request.uri().path());
        let span = match self.side {
            // A call made while tracing a message: the context goes along.
            Side::Client => {
                let span = traces::child_span(|| {
                    tracing::debug_span!(
                        "grpc.client",
                        otel.name = %format_args!("{service}/{method}"),
                        otel.kind = "client",
                        rpc.system = "grpc",
                        rpc.service = %service,
                        rpc.method = %method,
                        rpc.grpc.status_code = tracing::field::Empty,
                    )
                });
                let headers = request.headers_mut();
                traces::inject(&span, |key, value| {
                    if let Ok(value) = HeaderValue::from_str(&value) {
                        headers.insert(key, value);
                    }
                });
                span
            }
            // A call that carries a sampled context continues its trace.
            Side::Server => {
                let headers = request.headers();
                traces::continue_span(
                    |key| headers.get(key).and_then(|value| value.to_str().ok()),
                    || {
                        tracing::debug_span!(
                            "grpc.server",
                            otel.name = %format_args!("{service}/{method}"),
                            otel.kind = "server",
                            rpc.system = "grpc",
                            rpc.service = %service,
                            rpc.method = %method,
                            rpc.grpc.status_code = tracing::field::Empty,
                        )
                    },
                )
            }
        };
        let call = self.inner.call(request);
        let in_span = span.clone();
        Box::pin(
            async move {
                let result = call.await;
                match &result {
                    // A failed call's status travels in the headers (trailers-only); a
                    // successful one's in trailers the span does not wait for.
                    Ok(response) => {
                        let code = response
                            .headers()
                            .get("grpc-status")
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or("0");
                        in_span.record("rpc.grpc.status_code", code);
                        if code != "0" {
                            traces::set_error(&in_span, format!("gRPC status {code}"));
                        }
                    }
                    Err(_) => traces::set_error(&in_span, "transport error"),
                }
                result
            }
            .instrument(span),
        )
    }
}

/// `("arqon.policy.v1.Policy", "ReloadPolicy")` from `/arqon.policy.v1.Policy/ReloadPolicy`.
fn rpc_names(path: &str) -> (&str, &str) {
    let path = path.trim_start_matches('/');
    path.split_once('/').unwrap_or((path, ""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_path_names_service_and_method() {
        assert_eq!(
            rpc_names("/arqon.policy.v1.Policy/ReloadPolicy"),
            ("arqon.policy.v1.Policy", "ReloadPolicy")
        );
        assert_eq!(rpc_names("/odd"), ("odd", ""));
    }
}
