//! Prometheus metrics: the registry every service registers into, the `/metrics`
//! exposition, and per-route HTTP instrumentation.
//!
//! Metric names start with `arqonbus_`. Labels have bounded cardinality: routes are the
//! router's patterns (never raw paths), outcomes and reasons are closed enums; no client
//! ids, room names or tenants appear as labels.

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::exemplar::HistogramWithExemplars;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};

pub use prometheus_client::encoding::{EncodeLabelValue, LabelValueEncoder};
pub use prometheus_client::registry::Registry;

/// Defines a closed set of label values, written in snake_case:
///
/// ```
/// arqon_telemetry::label_values! {
///     /// Why something happened.
///     pub enum Outcome { Accepted => "accepted", OverCapacity => "over_capacity" }
/// }
/// assert_eq!(Outcome::OverCapacity.as_str(), "over_capacity");
/// ```
#[macro_export]
macro_rules! label_values {
    ($(#[$meta:meta])* $vis:vis enum $name:ident { $($(#[$vmeta:meta])* $variant:ident => $text:literal),* $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        $vis enum $name {
            $($(#[$vmeta])* $variant,)*
        }

        impl $name {
            /// The label value.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)*
                }
            }
        }

        impl $crate::metrics::EncodeLabelValue for $name {
            fn encode(
                &self,
                encoder: &mut $crate::metrics::LabelValueEncoder<'_>,
            ) -> Result<(), std::fmt::Error> {
                std::fmt::Write::write_str(encoder, self.as_str())
            }
        }
    };
}

/// The content type of the exposition (OpenMetrics text, which Prometheus reads; it has
/// `# HELP` and `# TYPE` lines for every metric).
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Latency buckets from 50 µs to about 13 s, for request and pipeline latencies.
pub fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.000_05, 2.0, 19))
}

/// A latency's exemplar: the trace it was measured in, so a slow bucket leads to a trace.
#[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
pub struct TraceExemplar {
    pub trace_id: String,
}

/// A latency histogram whose buckets remember the last traced observation.
pub type TracedLatency = HistogramWithExemplars<TraceExemplar>;

/// [`latency_histogram`]'s buckets, with exemplars.
pub fn traced_latency_histogram() -> TracedLatency {
    HistogramWithExemplars::new(exponential_buckets(0.000_05, 2.0, 19))
}

/// The registry as OpenMetrics text.
pub fn render(registry: &Registry) -> String {
    let mut text = String::with_capacity(16 * 1024);
    // Writing into a String cannot fail.
    let _ = prometheus_client::encoding::text::encode(&mut text, registry);
    text
}

/// `GET /metrics`.
pub fn metrics_router(registry: Arc<Registry>) -> Router {
    Router::new()
        .route("/metrics", axum::routing::get(serve_metrics))
        .with_state(registry)
}

async fn serve_metrics(State(registry): State<Arc<Registry>>) -> Response {
    let mut response = render(&registry).into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
    response
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResponseLabels {
    route: String,
    status: u16,
}

/// Request counts, latencies and errors per route.
#[derive(Debug, Clone)]
pub struct HttpMetrics {
    requests: Family<ResponseLabels, Counter>,
    duration: Family<RouteLabels, Histogram>,
    errors: Family<RouteLabels, Counter>,
}

impl HttpMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self {
            requests: Family::default(),
            duration: Family::new_with_constructor(latency_histogram),
            errors: Family::default(),
        };
        registry.register(
            "arqonbus_http_requests",
            "HTTP requests answered, by route and status code",
            metrics.requests.clone(),
        );
        registry.register(
            "arqonbus_http_request_duration_seconds",
            "Time to answer an HTTP request (for a WebSocket upgrade: until the 101), by route",
            metrics.duration.clone(),
        );
        registry.register(
            "arqonbus_http_errors",
            "HTTP requests answered with a status of 400 or more, by route",
            metrics.errors.clone(),
        );
        metrics
    }

    /// Wraps every route of `router` (add the routes first).
    pub fn instrument<S: Clone + Send + Sync + 'static>(&self, router: Router<S>) -> Router<S> {
        router.route_layer(middleware::from_fn_with_state(self.clone(), track))
    }
}

async fn track(State(metrics): State<HttpMetrics>, request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let started = Instant::now();
    let response = next.run(request).await;
    let status = response.status();
    let labels = RouteLabels { route };
    metrics
        .duration
        .get_or_create(&labels)
        .observe(started.elapsed().as_secs_f64());
    if status.is_client_error() || status.is_server_error() {
        metrics.errors.get_or_create(&labels).inc();
    }
    metrics
        .requests
        .get_or_create(&ResponseLabels {
            route: labels.route,
            status: status.as_u16(),
        })
        .inc();
    response
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use axum::routing::get;
    use tower::ServiceExt;

    use super::*;

    #[tokio::test]
    async fn requests_are_counted_per_route_with_help_and_type() {
        let mut registry = Registry::default();
        let http = HttpMetrics::register(&mut registry);
        let app = http.instrument(
            Router::new()
                .route("/ok/{id}", get(|| async { "ok" }))
                .route("/fail", get(|| async { StatusCode::SERVICE_UNAVAILABLE })),
        );
        for path in ["/ok/1", "/ok/2", "/fail"] {
            app.clone()
                .oneshot(Request::get(path).body(Body::empty()).unwrap())
                .await
                .unwrap();
        }
        let text = render(&registry);
        assert!(
            text.contains("# HELP arqonbus_http_requests HTTP requests answered"),
            "{text}"
        );
        assert!(
            text.contains("# TYPE arqonbus_http_requests counter"),
            "{text}"
        );
        assert!(
            text.contains(r#"arqonbus_http_requests_total{route="/ok/{id}",status="200"} 2"#),
            "{text}"
        );
        assert!(
            text.contains(r#"arqonbus_http_errors_total{route="/fail"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"arqonbus_http_request_duration_seconds_count{route="/ok/{id}"} 2"#),
            "{text}"
        );
        assert!(!text.contains("/ok/1"), "raw paths must not become labels");
    }
}
