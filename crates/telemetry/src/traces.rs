//! OpenTelemetry traces: the OTLP exporter behind the `tracing` spans of every service,
//! and the W3C trace context that carries one message's trace across processes.
//!
//! Configured by the standard variables. Tracing is **on** when an OTLP endpoint is set
//! (`OTEL_EXPORTER_OTLP_ENDPOINT` or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`), unless
//! `OTEL_SDK_DISABLED=true` or `OTEL_TRACES_EXPORTER=none`. Off, no exporter, tracer or
//! propagator exists, the message spans (level DEBUG) are disabled at their call sites,
//! and [`inject`] / [`set_parent`] return at once.
//!
//! - Transport: `OTEL_EXPORTER_OTLP_PROTOCOL` (`OTEL_EXPORTER_OTLP_TRACES_PROTOCOL`):
//!   `grpc` (the default) or `http/protobuf`.
//! - Sampling: `OTEL_TRACES_SAMPLER` / `OTEL_TRACES_SAMPLER_ARG`; by default
//!   `parentbased_traceidratio` with [`DEFAULT_RATIO`]. The decision is made once, where
//!   a message enters ([`start_span`]: a client's sampled `traceparent` is followed,
//!   otherwise the ratio decides), and every later hop creates its spans only for a
//!   sampled context it received ([`continue_span`], [`child_span`]): an unsampled
//!   message costs no span anywhere, only a header lookup per hop.
//! - Resource: `service.name` is `OTEL_SERVICE_NAME` or `arqonbus-<component>`,
//!   `service.version`, `service.instance.id`, and `OTEL_RESOURCE_ATTRIBUTES`.
//! - Export: batched (`OTEL_BSP_*`); at most `OTEL_BSP_MAX_QUEUE_SIZE` (2,048) spans wait,
//!   further ones are dropped and counted (`arqonbus_trace_spans_total{outcome}`); a
//!   shutdown flushes what is queued.
//! - Only the bus's own spans are exported (targets `arqon*`): the exporter's gRPC and
//!   HTTP traffic, and every transport crate, never become spans.

use std::collections::HashMap;
use std::env;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry::{Context, KeyValue};
use opentelemetry_otlp::WithExportConfig as _;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, ParentBasedSampler, SamplingDecision, SamplingResult,
    SdkTracerProvider, ShouldSample, SpanData, SpanExporter, SpanProcessor,
};
use opentelemetry_sdk::{Resource, trace::Span as SdkSpan};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// The sampling ratio of a trace the edge starts, unless `OTEL_TRACES_SAMPLER_ARG` says
/// otherwise: one message in a hundred. A client that sends a sampled `traceparent` is
/// always traced.
pub const DEFAULT_RATIO: f64 = 0.01;
/// Spans waiting for export, unless `OTEL_BSP_MAX_QUEUE_SIZE` says otherwise.
const DEFAULT_QUEUE: usize = 2048;
/// Longest a shutdown waits for the last spans to be exported.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(5);

/// The W3C headers (and envelope metadata keys) that carry a trace.
pub const TRACEPARENT: &str = "traceparent";
pub const TRACESTATE: &str = "tracestate";

static ENABLED: AtomicBool = AtomicBool::new(false);
/// The share of messages entering without a context that are traced (`f64` bits).
static RATIO: AtomicU64 = AtomicU64::new(0);

/// Whether traces are exported by this process.
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// What a process tells the collector about itself.
#[derive(Debug, Clone)]
pub struct ServiceInfo {
    /// `edge`, `policy`, `dispatcher`, `operators` or `standalone`.
    pub component: &'static str,
    pub version: &'static str,
    /// Unique per process (`service.instance.id`).
    pub instance_id: String,
}

/// Why tracing is off, or how it is set up: read from the environment.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Settings {
    Off(&'static str),
    /// `ratio`: of the default sampler (`OTEL_TRACES_SAMPLER` unset).
    On {
        http: bool,
        queue: usize,
        ratio: f64,
    },
}

impl Settings {
    pub(crate) fn from_env(var: impl Fn(&str) -> Option<String>) -> Result<Settings, String> {
        let set = |name: &str| var(name).filter(|v| !v.trim().is_empty());
        if set("OTEL_SDK_DISABLED").is_some_and(|v| v.trim().eq_ignore_ascii_case("true")) {
            return Ok(Settings::Off("OTEL_SDK_DISABLED=true"));
        }
        match set("OTEL_TRACES_EXPORTER").map(|v| v.trim().to_ascii_lowercase()) {
            Some(v) if v == "none" => return Ok(Settings::Off("OTEL_TRACES_EXPORTER=none")),
            Some(v) if v != "otlp" => {
                return Err(format!(
                    "OTEL_TRACES_EXPORTER={v} is not supported: use otlp or none"
                ));
            }
            _ => {}
        }
        if set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT").is_none()
            && set("OTEL_EXPORTER_OTLP_ENDPOINT").is_none()
        {
            return Ok(Settings::Off("no OTEL_EXPORTER_OTLP_ENDPOINT"));
        }
        let protocol = set("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
            .or_else(|| set("OTEL_EXPORTER_OTLP_PROTOCOL"))
            .map(|p| p.trim().to_ascii_lowercase());
        let http = match protocol.as_deref() {
            None | Some("grpc") => false,
            Some("http/protobuf") => true,
            Some(other) => {
                return Err(format!(
                    "OTEL_EXPORTER_OTLP_PROTOCOL={other} is not supported: use grpc or http/protobuf"
                ));
            }
        };
        let queue = match set("OTEL_BSP_MAX_QUEUE_SIZE") {
            None => DEFAULT_QUEUE,
            Some(v) => v
                .trim()
                .parse::<usize>()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| format!("OTEL_BSP_MAX_QUEUE_SIZE={v} is not a positive integer"))?,
        };
        let argument = match set("OTEL_TRACES_SAMPLER_ARG") {
            None => None,
            Some(v) => Some(
                v.trim()
                    .parse::<f64>()
                    .ok()
                    .filter(|r| (0.0..=1.0).contains(r))
                    .ok_or_else(|| {
                        format!("OTEL_TRACES_SAMPLER_ARG={v} is not a ratio from 0 to 1")
                    })?,
            ),
        };
        // Every sampler is parent-based here: a client's decision is always followed.
        let ratio = match set("OTEL_TRACES_SAMPLER").map(|v| v.trim().to_ascii_lowercase()) {
            None => argument.unwrap_or(DEFAULT_RATIO),
            Some(s) if s == "always_on" || s == "parentbased_always_on" => 1.0,
            Some(s) if s == "always_off" || s == "parentbased_always_off" => 0.0,
            Some(s) if s == "traceidratio" || s == "parentbased_traceidratio" => {
                argument.unwrap_or(1.0)
            }
            Some(other) => {
                return Err(format!(
                    "OTEL_TRACES_SAMPLER={other} is not supported: use parentbased_traceidratio, parentbased_always_on or parentbased_always_off"
                ));
            }
        };
        Ok(Settings::On { http, queue, ratio })
    }
}

/// The tracer provider of the process; [`Tracing::shutdown`] flushes it.
#[derive(Debug, Default)]
pub struct Tracing {
    provider: Option<SdkTracerProvider>,
}

impl Tracing {
    /// Exports what is still queued (bounded) and stops the exporter. Blocking.
    pub fn shutdown(self) {
        if let Some(provider) = self.provider {
            if let Err(e) = provider.shutdown_with_timeout(FLUSH_TIMEOUT) {
                tracing::warn!(error = %e, "traces not all exported at shutdown");
            }
            ENABLED.store(false, Ordering::Relaxed);
        }
    }
}

/// Builds the tracer provider and the `tracing` layer that feeds it, or `None` when
/// tracing is off. Must run inside the Tokio runtime (the gRPC exporter's connection
/// lives there).
pub(crate) fn start<S>(
    service: &ServiceInfo,
) -> Result<
    (
        Tracing,
        Option<tracing_opentelemetry::OpenTelemetryLayer<S, opentelemetry_sdk::trace::Tracer>>,
    ),
    String,
>
where
    S: tracing::Subscriber + for<'span> tracing_subscriber::registry::LookupSpan<'span>,
{
    let (http, queue, ratio) = match Settings::from_env(|name| env::var(name).ok())? {
        Settings::Off(_) => return Ok((Tracing::default(), None)),
        Settings::On { http, queue, ratio } => (http, queue, ratio),
    };
    let exporter = if http {
        opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
            .build()
    } else {
        opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .build()
    }
    .map_err(|e| format!("cannot build the OTLP exporter: {e}"))?;
    let pending = Arc::new(AtomicUsize::new(0));
    let batch = BatchSpanProcessor::builder(Counted {
        inner: exporter,
        pending: Arc::clone(&pending),
    })
    .with_batch_config(
        BatchConfigBuilder::default()
            .with_max_queue_size(queue)
            .build(),
    )
    .build();
    // The decision is made before a span exists (see the module's documentation): every
    // span that exists is recorded.
    let provider = SdkTracerProvider::builder()
        .with_span_processor(Bounded {
            inner: batch,
            pending,
            max: queue,
        })
        .with_sampler(ParentBasedSampler::new(EntriesOnly))
        .with_resource(resource(service))
        .build();
    RATIO.store(ratio.to_bits(), Ordering::Relaxed);
    let tracer = provider.tracer("arqonbus");
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    ENABLED.store(true, Ordering::Relaxed);
    let layer = tracing_opentelemetry::layer()
        .with_tracer(tracer)
        .with_threads(false)
        .with_location(false);
    Ok((
        Tracing {
            provider: Some(provider),
        },
        Some(layer),
    ))
}

fn resource(service: &ServiceInfo) -> Resource {
    let mut builder = Resource::builder().with_attributes([
        KeyValue::new("service.version", service.version),
        KeyValue::new("service.instance.id", service.instance_id.clone()),
        KeyValue::new("arqonbus.component", service.component),
    ]);
    // The environment's name wins (the builder's detectors read it).
    if env::var("OTEL_SERVICE_NAME").is_err() {
        builder = builder.with_service_name(format!("arqonbus-{}", service.component));
    }
    builder.build()
}

/// The field that marks a span where a message enters the bus ([`start_span`] callers
/// set it): the only spans that may start a trace.
pub const ENTRY: &str = "arqonbus.entry";

/// Roots only where a message enters: a span without a parent is recorded only when it
/// carries [`ENTRY`] (the decision was made by [`start_span`]); any other span follows
/// its parent. So no code path can start a trace of its own by accident (a gRPC call
/// that is not part of a traced message, say).
#[derive(Clone, Debug)]
struct EntriesOnly;

impl ShouldSample for EntriesOnly {
    fn should_sample(
        &self,
        parent_context: Option<&Context>,
        _trace_id: opentelemetry::trace::TraceId,
        _name: &str,
        _span_kind: &opentelemetry::trace::SpanKind,
        attributes: &[KeyValue],
        _links: &[opentelemetry::trace::Link],
    ) -> SamplingResult {
        let entry = attributes.iter().any(|kv| kv.key.as_str() == ENTRY);
        SamplingResult {
            decision: if entry {
                SamplingDecision::RecordAndSample
            } else {
                SamplingDecision::Drop
            },
            attributes: Vec::new(),
            trace_state: parent_context
                .map(|cx| cx.span().span_context().trace_state().clone())
                .unwrap_or_default(),
        }
    }
}

/// Spans handed to export, by outcome.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabel {
    outcome: Outcome,
}

#[derive(
    Clone, Copy, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelValue,
)]
#[allow(non_camel_case_types)]
enum Outcome {
    exported,
    failed,
    dropped,
}

fn spans() -> &'static Family<OutcomeLabel, Counter> {
    static SPANS: std::sync::OnceLock<Family<OutcomeLabel, Counter>> = std::sync::OnceLock::new();
    SPANS.get_or_init(Family::default)
}

fn count(outcome: Outcome, n: usize) {
    spans()
        .get_or_create(&OutcomeLabel { outcome })
        .inc_by(u64::try_from(n).unwrap_or(u64::MAX));
}

/// Registers `arqonbus_trace_spans_total{outcome}`: spans exported, lost in a failed
/// export, or dropped because the export queue was full.
pub fn register_metrics(registry: &mut Registry) {
    registry.register(
        "arqonbus_trace_spans",
        "Sampled spans by outcome: exported, failed (the collector refused or did not answer), dropped (the export queue was full)",
        spans().clone(),
    );
}

/// Admits a finished span to the batch processor only while fewer than `max` wait; the
/// rest are dropped and counted (the SDK's processor drops too, but does not say how many).
#[derive(Debug)]
struct Bounded<P> {
    inner: P,
    pending: Arc<AtomicUsize>,
    max: usize,
}

impl<P: SpanProcessor> SpanProcessor for Bounded<P> {
    fn on_start(&self, span: &mut SdkSpan, cx: &Context) {
        self.inner.on_start(span, cx);
    }

    fn on_end(&self, span: SpanData) {
        if self.pending.fetch_add(1, Ordering::AcqRel) >= self.max {
            self.pending.fetch_sub(1, Ordering::AcqRel);
            count(Outcome::dropped, 1);
            return;
        }
        self.inner.on_end(span);
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

/// The exporter, counting what it exported and releasing the spans' places in the queue.
#[derive(Debug)]
struct Counted<E> {
    inner: E,
    pending: Arc<AtomicUsize>,
}

impl<E: SpanExporter> SpanExporter for Counted<E> {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let n = batch.len();
        let result = self.inner.export(batch).await;
        self.pending.fetch_sub(n, Ordering::AcqRel);
        count(
            if result.is_ok() {
                Outcome::exported
            } else {
                Outcome::failed
            },
            n,
        );
        result
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

/// The span of something entering the bus (a client's envelope, a cron firing): `make`'s
/// span when the message is traced, [`tracing::Span::none`] otherwise. A sampled context
/// that `client` finds (`traceparent`, `tracestate`) is followed and becomes the parent;
/// an unsampled one is followed too (no span); without one, the sampling ratio decides.
pub fn start_span<'a>(
    client: impl Fn(&str) -> Option<&'a str>,
    make: impl FnOnce() -> tracing::Span,
) -> tracing::Span {
    if !enabled() {
        return tracing::Span::none();
    }
    match incoming(&client) {
        Some(Some(cx)) => with_parent(make(), cx),
        Some(None) => tracing::Span::none(),
        None => {
            let ratio = f64::from_bits(RATIO.load(Ordering::Relaxed));
            if ratio > 0.0 && (ratio >= 1.0 || rand::random::<f64>() < ratio) {
                make()
            } else {
                tracing::Span::none()
            }
        }
    }
}

/// The span of a later hop: `make`'s span, child of the sampled context `get` finds;
/// [`tracing::Span::none`] without one (the message is not traced).
pub fn continue_span<'a>(
    get: impl Fn(&str) -> Option<&'a str>,
    make: impl FnOnce() -> tracing::Span,
) -> tracing::Span {
    if !enabled() {
        return tracing::Span::none();
    }
    match incoming(&get) {
        Some(Some(cx)) => with_parent(make(), cx),
        _ => tracing::Span::none(),
    }
}

/// A span inside the current one: `make`'s span when the current span is traced,
/// [`tracing::Span::none`] otherwise.
pub fn child_span(make: impl FnOnce() -> tracing::Span) -> tracing::Span {
    if !enabled() || tracing::Span::current().is_disabled() {
        return tracing::Span::none();
    }
    make()
}

/// The context `get` carries: `None` without a valid one, `Some(None)` for an unsampled
/// one, `Some(Some(cx))` for a sampled one.
fn incoming<'a>(get: &impl Fn(&str) -> Option<&'a str>) -> Option<Option<Context>> {
    let traceparent = get(TRACEPARENT)?;
    let mut fields = Fields::default();
    fields
        .0
        .insert(TRACEPARENT.to_owned(), traceparent.to_owned());
    if let Some(state) = get(TRACESTATE) {
        fields.0.insert(TRACESTATE.to_owned(), state.to_owned());
    }
    let cx = TraceContextPropagator::new().extract(&fields);
    let sc = cx.span().span_context().clone();
    if !sc.is_valid() {
        return None;
    }
    Some(sc.is_sampled().then_some(cx))
}

fn with_parent(span: tracing::Span, cx: Context) -> tracing::Span {
    // Only fails when the span was already started with another parent.
    let _ = span.set_parent(cx);
    span
}

/// Writes the trace context of `span` (`traceparent`, `tracestate`) with `put`. Nothing
/// when tracing is off or the span is not being traced.
pub fn inject(span: &tracing::Span, mut put: impl FnMut(&'static str, String)) {
    if !enabled() || span.is_disabled() {
        return;
    }
    let cx = span.context();
    if !cx.span().span_context().is_valid() {
        return;
    }
    let mut fields = Fields::default();
    TraceContextPropagator::new().inject_context(&cx, &mut fields);
    for (key, value) in fields.0 {
        let key = if key == TRACEPARENT {
            TRACEPARENT
        } else {
            TRACESTATE
        };
        put(key, value);
    }
}

/// Links `span` to the span a `traceparent` names (another trace it follows from, such
/// as the call that scheduled a cron job). Nothing when tracing is off or it is invalid.
pub fn add_link(span: &tracing::Span, traceparent: &str) {
    if !enabled() {
        return;
    }
    let mut fields = Fields::default();
    fields
        .0
        .insert(TRACEPARENT.to_owned(), traceparent.to_owned());
    let cx = TraceContextPropagator::new().extract(&fields);
    let linked = cx.span().span_context().clone();
    if linked.is_valid() {
        span.add_link(linked);
    }
}

/// The trace and span ids of `span`, for log lines; `None` when it is not traced.
pub fn ids(span: &tracing::Span) -> Option<(String, String)> {
    if !enabled() || span.is_disabled() {
        return None;
    }
    let cx = span.context();
    let span_ref = cx.span();
    let sc = span_ref.span_context();
    sc.is_valid()
        .then(|| (sc.trace_id().to_string(), sc.span_id().to_string()))
}

/// The exemplar for a latency measured in `span`: its trace, when it is sampled.
pub fn exemplar(span: &tracing::Span) -> Option<crate::metrics::TraceExemplar> {
    if !enabled() || span.is_disabled() {
        return None;
    }
    let cx = span.context();
    let span_ref = cx.span();
    let sc = span_ref.span_context();
    (sc.is_valid() && sc.is_sampled()).then(|| crate::metrics::TraceExemplar {
        trace_id: sc.trace_id().to_string(),
    })
}

/// Marks `span` as failed with `message` (OpenTelemetry status `Error`).
pub fn set_error(span: &tracing::Span, message: impl Into<String>) {
    if enabled() && !span.is_disabled() {
        span.set_status(opentelemetry::trace::Status::error(message.into()));
    }
}

#[derive(Default)]
struct Fields(HashMap<String, String>);

impl Injector for Fields {
    fn set(&mut self, key: &str, value: String) {
        self.0.insert(key.to_owned(), value);
    }
}

impl Extractor for Fields {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(String::as_str).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(vars: &[(&str, &str)]) -> Result<Settings, String> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Settings::from_env(|name| vars.get(name).cloned())
    }

    #[test]
    fn an_endpoint_turns_tracing_on() {
        assert!(matches!(settings(&[]), Ok(Settings::Off(_))));
        assert_eq!(
            settings(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4317")]),
            Ok(Settings::On {
                http: false,
                queue: 2048,
                ratio: DEFAULT_RATIO
            })
        );
        assert_eq!(
            settings(&[
                (
                    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                    "http://c:4318/v1/traces"
                ),
                ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
                ("OTEL_BSP_MAX_QUEUE_SIZE", "100"),
                ("OTEL_TRACES_SAMPLER_ARG", "0.5"),
            ]),
            Ok(Settings::On {
                http: true,
                queue: 100,
                ratio: 0.5
            })
        );
    }

    #[test]
    fn the_standard_switches_turn_it_off() {
        let endpoint = ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4317");
        assert!(matches!(
            settings(&[endpoint, ("OTEL_SDK_DISABLED", "TRUE")]),
            Ok(Settings::Off(_))
        ));
        assert!(matches!(
            settings(&[endpoint, ("OTEL_TRACES_EXPORTER", "none")]),
            Ok(Settings::Off(_))
        ));
        assert!(matches!(
            settings(&[endpoint, ("OTEL_SDK_DISABLED", "false")]),
            Ok(Settings::On { .. })
        ));
    }

    #[test]
    fn bad_values_are_refused_by_name() {
        let endpoint = ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4317");
        let err = settings(&[endpoint, ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json")]).unwrap_err();
        assert!(err.contains("OTEL_EXPORTER_OTLP_PROTOCOL"), "{err}");
        let err = settings(&[endpoint, ("OTEL_TRACES_EXPORTER", "zipkin")]).unwrap_err();
        assert!(err.contains("OTEL_TRACES_EXPORTER"), "{err}");
        let err = settings(&[endpoint, ("OTEL_BSP_MAX_QUEUE_SIZE", "0")]).unwrap_err();
        assert!(err.contains("OTEL_BSP_MAX_QUEUE_SIZE"), "{err}");
        let err = settings(&[endpoint, ("OTEL_TRACES_SAMPLER_ARG", "2")]).unwrap_err();
        assert!(err.contains("OTEL_TRACES_SAMPLER_ARG"), "{err}");
        let err = settings(&[endpoint, ("OTEL_TRACES_SAMPLER", "xray")]).unwrap_err();
        assert!(err.contains("OTEL_TRACES_SAMPLER"), "{err}");
    }

    #[test]
    fn every_sampler_follows_the_client_and_sets_a_ratio() {
        let ratio = |sampler: &str, arg: Option<&str>| {
            let mut vars = vec![
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4317"),
                ("OTEL_TRACES_SAMPLER", sampler),
            ];
            vars.extend(arg.map(|a| ("OTEL_TRACES_SAMPLER_ARG", a)));
            match settings(&vars) {
                Ok(Settings::On { ratio, .. }) => ratio,
                other => panic!("{other:?}"),
            }
        };
        assert_eq!(ratio("always_on", None), 1.0);
        assert_eq!(ratio("parentbased_always_off", None), 0.0);
        assert_eq!(ratio("parentbased_traceidratio", Some("0.25")), 0.25);
        assert_eq!(ratio("traceidratio", None), 1.0);
    }

    #[test]
    fn off_means_no_span_and_no_context() {
        let span = tracing::info_span!("x");
        let mut written = Vec::new();
        inject(&span, |k, v| written.push((k, v)));
        assert!(written.is_empty());
        assert!(ids(&span).is_none());
        let sampled = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
        assert!(start_span(|_| Some(sampled), || tracing::info_span!("y")).is_none());
        assert!(continue_span(|_| Some(sampled), || tracing::info_span!("z")).is_none());
    }

    #[test]
    fn incoming_contexts_are_sampled_unsampled_or_absent() {
        let get = |traceparent: &'static str| {
            move |key: &str| (key == TRACEPARENT).then_some(traceparent)
        };
        assert!(matches!(
            incoming(&get(
                "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
            )),
            Some(Some(_))
        ));
        assert!(matches!(
            incoming(&get(
                "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00"
            )),
            Some(None)
        ));
        assert!(incoming(&get("not a context")).is_none());
        assert!(incoming(&|_: &str| None).is_none());
    }

    /// Keeps every span it is given (as the batch processor's queue would).
    #[derive(Debug, Default, Clone)]
    struct Keep(Arc<std::sync::Mutex<Vec<SpanData>>>);

    impl SpanProcessor for Keep {
        fn on_start(&self, _: &mut SdkSpan, _: &Context) {}
        fn on_end(&self, span: SpanData) {
            self.0.lock().expect("not poisoned").push(span);
        }
        fn force_flush(&self) -> OTelSdkResult {
            Ok(())
        }
        fn shutdown_with_timeout(&self, _: Duration) -> OTelSdkResult {
            Ok(())
        }
    }

    /// Succeeds or fails every export.
    #[derive(Debug)]
    struct Collector {
        up: bool,
    }

    impl SpanExporter for Collector {
        async fn export(&self, _: Vec<SpanData>) -> OTelSdkResult {
            if self.up {
                Ok(())
            } else {
                Err(opentelemetry_sdk::error::OTelSdkError::InternalFailure(
                    "collector down".into(),
                ))
            }
        }
    }

    fn counted(outcome: Outcome) -> u64 {
        spans().get_or_create(&OutcomeLabel { outcome }).get()
    }

    #[tokio::test]
    async fn the_queue_is_bounded_and_every_span_is_counted() {
        let kept = Keep::default();
        let pending = Arc::new(AtomicUsize::new(0));
        let provider = SdkTracerProvider::builder()
            .with_span_processor(Bounded {
                inner: kept.clone(),
                pending: Arc::clone(&pending),
                max: 3,
            })
            .build();
        let tracer = provider.tracer("test");
        let dropped = counted(Outcome::dropped);
        for _ in 0..5 {
            opentelemetry::trace::Tracer::start(&tracer, "s");
        }
        // Three wait; two more found the queue full.
        let batch: Vec<SpanData> = std::mem::take(&mut *kept.0.lock().expect("not poisoned"));
        assert_eq!(batch.len(), 3);
        assert_eq!(pending.load(Ordering::Acquire), 3);
        assert_eq!(counted(Outcome::dropped) - dropped, 2);

        // An export releases the places, whatever its outcome.
        let (exported, failed) = (counted(Outcome::exported), counted(Outcome::failed));
        let mut batch = batch.into_iter();
        let up = Counted {
            inner: Collector { up: true },
            pending: Arc::clone(&pending),
        };
        up.export(batch.by_ref().take(2).collect())
            .await
            .expect("exported");
        let down = Counted {
            inner: Collector { up: false },
            pending: Arc::clone(&pending),
        };
        assert!(down.export(batch.collect()).await.is_err());
        assert_eq!(pending.load(Ordering::Acquire), 0);
        assert_eq!(counted(Outcome::exported) - exported, 2);
        assert_eq!(counted(Outcome::failed) - failed, 1);

        // With room again, a span is admitted.
        opentelemetry::trace::Tracer::start(&tracer, "s");
        assert_eq!(kept.0.lock().expect("not poisoned").len(), 1);
        assert_eq!(counted(Outcome::dropped) - dropped, 2);
    }
}
