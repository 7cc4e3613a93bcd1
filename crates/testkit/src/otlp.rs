//! A real OTLP trace receiver: the collector's `TraceService` over gRPC, or its
//! `POST /v1/traces` over HTTP/protobuf, from the OpenTelemetry protocol definitions, on a
//! free port of 127.0.0.1. It keeps every span it is sent, with its service, so a test
//! can assert on whole traces.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use prost::Message as _;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// One span as received.
#[derive(Debug, Clone, PartialEq)]
pub struct ReceivedSpan {
    /// `service.name` of the resource that sent it.
    pub service: String,
    pub name: String,
    /// Lower-case hex, as in `traceparent`.
    pub trace_id: String,
    pub span_id: String,
    /// Empty for a root span.
    pub parent_span_id: String,
    /// Attribute values as text (numbers and booleans formatted).
    pub attributes: HashMap<String, String>,
    /// 0 unset, 1 ok, 2 error.
    pub status_code: i32,
    pub status_message: String,
    /// `(trace_id, span_id)` of each link.
    pub links: Vec<(String, String)>,
}

/// The receiver; dropped, it stops serving.
#[derive(Debug)]
pub struct OtlpReceiver {
    addr: SocketAddr,
    spans: Arc<Mutex<Vec<ReceivedSpan>>>,
    count: Arc<AtomicU64>,
    task: JoinHandle<()>,
}

impl OtlpReceiver {
    /// Starts serving OTLP/gRPC on a free port of 127.0.0.1, keeping every span.
    pub async fn start() -> OtlpReceiver {
        OtlpReceiver::serve(true, false).await
    }

    /// Starts serving OTLP/gRPC, counting spans without keeping them (for load).
    pub async fn start_counting() -> OtlpReceiver {
        OtlpReceiver::serve(false, false).await
    }

    /// Starts serving OTLP over HTTP/protobuf (`POST /v1/traces`), keeping every span.
    pub async fn start_http() -> OtlpReceiver {
        OtlpReceiver::serve(true, true).await
    }

    async fn serve(keep: bool, http: bool) -> OtlpReceiver {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|e| panic!("cannot bind the OTLP receiver: {e}"));
        let addr = listener
            .local_addr()
            .unwrap_or_else(|e| panic!("no address: {e}"));
        let spans = Arc::new(Mutex::new(Vec::new()));
        let count = Arc::new(AtomicU64::new(0));
        let collector = Collector {
            spans: keep.then(|| Arc::clone(&spans)),
            count: Arc::clone(&count),
        };
        let task = if http {
            let app = axum::Router::new()
                .route("/v1/traces", axum::routing::post(export_http))
                .with_state(Arc::new(collector));
            tokio::spawn(async move {
                if let Err(e) = axum::serve(listener, app).await {
                    eprintln!("OTLP receiver stopped: {e}");
                }
            })
        } else {
            let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
            tokio::spawn(async move {
                let served = tonic::transport::Server::builder()
                    .add_service(TraceServiceServer::new(collector))
                    .serve_with_incoming(incoming)
                    .await;
                if let Err(e) = served {
                    eprintln!("OTLP receiver stopped: {e}");
                }
            })
        };
        OtlpReceiver {
            addr,
            spans,
            count,
            task,
        }
    }

    /// `http://127.0.0.1:<port>`, for `OTEL_EXPORTER_OTLP_ENDPOINT`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// How many spans were received so far.
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    /// Every span received so far (none when only counting).
    pub fn spans(&self) -> Vec<ReceivedSpan> {
        self.spans
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl Drop for OtlpReceiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

struct Collector {
    spans: Option<Arc<Mutex<Vec<ReceivedSpan>>>>,
    count: Arc<AtomicU64>,
}

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        self.record(request.into_inner());
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

/// `POST /v1/traces` with a binary protobuf body, as the OTLP/HTTP specification says.
async fn export_http(
    axum::extract::State(collector): axum::extract::State<Arc<Collector>>,
    body: axum::body::Bytes,
) -> axum::response::Response {
    use axum::response::IntoResponse as _;
    match ExportTraceServiceRequest::decode(body) {
        Ok(request) => {
            collector.record(request);
            (
                [(axum::http::header::CONTENT_TYPE, "application/x-protobuf")],
                ExportTraceServiceResponse::default().encode_to_vec(),
            )
                .into_response()
        }
        Err(e) => (axum::http::StatusCode::BAD_REQUEST, e.to_string()).into_response(),
    }
}

impl Collector {
    fn record(&self, request: ExportTraceServiceRequest) {
        let n: usize = request
            .resource_spans
            .iter()
            .flat_map(|r| &r.scope_spans)
            .map(|s| s.spans.len())
            .sum();
        self.count.fetch_add(n as u64, Ordering::Relaxed);
        let Some(spans) = &self.spans else {
            return;
        };
        let mut received = Vec::new();
        for resource_spans in request.resource_spans {
            let service = resource_spans
                .resource
                .as_ref()
                .and_then(|r| attribute(&r.attributes, "service.name"))
                .unwrap_or_default();
            for scope in resource_spans.scope_spans {
                for span in scope.spans {
                    received.push(ReceivedSpan {
                        service: service.clone(),
                        name: span.name,
                        trace_id: hex(&span.trace_id),
                        span_id: hex(&span.span_id),
                        parent_span_id: hex(&span.parent_span_id),
                        attributes: span
                            .attributes
                            .iter()
                            .map(|kv| (kv.key.clone(), text(kv.value.as_ref())))
                            .collect(),
                        status_code: span.status.as_ref().map_or(0, |s| s.code),
                        status_message: span.status.map(|s| s.message).unwrap_or_default(),
                        links: span
                            .links
                            .iter()
                            .map(|l| (hex(&l.trace_id), hex(&l.span_id)))
                            .collect(),
                    });
                }
            }
        }
        spans
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend(received);
    }
}

fn attribute(attributes: &[KeyValue], key: &str) -> Option<String> {
    attributes
        .iter()
        .find(|kv| kv.key == key)
        .map(|kv| text(kv.value.as_ref()))
}

fn text(value: Option<&AnyValue>) -> String {
    match value.and_then(|v| v.value.as_ref()) {
        Some(any_value::Value::StringValue(s)) => s.clone(),
        Some(any_value::Value::BoolValue(b)) => b.to_string(),
        Some(any_value::Value::IntValue(i)) => i.to_string(),
        Some(any_value::Value::DoubleValue(d)) => d.to_string(),
        Some(other) => format!("{other:?}"),
        None => String::new(),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
