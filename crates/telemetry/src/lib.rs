//! Observability shared by every ArqonBus process: the log set-up, OpenTelemetry traces
//! ([`traces`]), the Prometheus registry and `/metrics`, and the operational HTTP
//! endpoints (`/health`, `/ready`, `/version`).
//!
//! One call at the top of `main` ([`init`]) installs logging and tracing; libraries only
//! emit `tracing` events and spans and never install a subscriber themselves. Noisy
//! transport crates are filtered down by default so the bus's own events stay readable.
//! The spans that follow a message are at DEBUG level: logs at `info` do not show them,
//! and without tracing nothing listens to them, so they cost nothing.

pub mod metrics;
pub mod ops;
pub mod traces;

use std::str::FromStr;

use tracing::Level;
use tracing_subscriber::filter::filter_fn;
use tracing_subscriber::fmt::format::{Format, Json, JsonFields, Writer};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{EnvFilter, Layer as _};

pub use traces::{ServiceInfo, Tracing};

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable, colored on a terminal.
    Text,
    /// One JSON object per line, for containers and log collectors.
    Json,
}

impl FromStr for LogFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            other => Err(format!("unknown log format '{other}': use text or json")),
        }
    }
}

/// Targets that log every connection or frame at `info`/`debug`.
const QUIET_TARGETS: &[&str] = &[
    "async_nats=warn",
    "h2=warn",
    "hyper=warn",
    "tonic=warn",
    "tower=warn",
    "tungstenite=warn",
    "tokio_tungstenite=warn",
];

/// Installs the process-wide subscriber: logs at `level` (an `EnvFilter` directive such
/// as `info` or `arqon_edge=debug,info`; `RUST_LOG`, when set, wins) and, when configured
/// (see [`traces`]), the OpenTelemetry exporter. JSON log lines carry the `trace_id` and
/// `span_id` of the span they were written in, when it is traced. Call it inside the
/// Tokio runtime, and [`Tracing::shutdown`] before exiting.
pub fn init(format: LogFormat, level: &str, service: &ServiceInfo) -> Result<Tracing, String> {
    let filter = match std::env::var("RUST_LOG") {
        Ok(directives) if !directives.is_empty() => EnvFilter::try_new(directives),
        _ => {
            let mut directives = vec![level.to_owned()];
            directives.extend(QUIET_TARGETS.iter().map(|t| (*t).to_owned()));
            EnvFilter::try_new(directives.join(","))
        }
    }
    .map_err(|e| format!("invalid log filter: {e}"))?;
    let (tracing, otel) = traces::start(service)?;
    // Only the bus's own spans become traces (never the exporter's transport), with its
    // warnings and errors as span events; its debug and info events stay out of traces.
    let otel = otel.map(|layer| {
        layer.with_filter(filter_fn(|meta| {
            meta.target().starts_with("arqon")
                && if meta.is_span() {
                    *meta.level() <= Level::DEBUG
                } else {
                    *meta.level() <= Level::WARN
                }
        }))
    });
    let registry = tracing_subscriber::registry().with(otel);
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let result = match format {
        LogFormat::Text => registry.with(fmt.with_filter(filter)).try_init(),
        LogFormat::Json => registry
            .with(
                fmt.fmt_fields(JsonFields::new())
                    .event_format(WithTraceIds(Format::default().json().flatten_event(true)))
                    .with_filter(filter),
            )
            .try_init(),
    };
    result.map_err(|e| format!("could not install the log subscriber: {e}"))?;
    Ok(tracing)
}

/// The JSON event format, with `trace_id` and `span_id` added when the event happens in
/// a traced span.
struct WithTraceIds(Format<Json>);

impl<S, N> FormatEvent<S, N> for WithTraceIds
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> std::fmt::Result {
        let Some((trace_id, span_id)) = traces::ids(&tracing::Span::current()) else {
            return self.0.format_event(ctx, writer, event);
        };
        let mut line = String::new();
        self.0.format_event(ctx, Writer::new(&mut line), event)?;
        // The line is one JSON object (and a newline): add the ids before its end.
        match line.trim_end().strip_suffix('}') {
            Some(body) => writeln!(
                writer,
                "{body},\"trace_id\":\"{trace_id}\",\"span_id\":\"{span_id}\"}}"
            ),
            None => writer.write_str(&line),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_parse_case_insensitively() {
        assert_eq!("JSON".parse(), Ok(LogFormat::Json));
        assert_eq!("text".parse(), Ok(LogFormat::Text));
        assert!("xml".parse::<LogFormat>().is_err());
    }
}
