//! Observability shared by every ArqonBus process: the log set-up, the Prometheus
//! registry and `/metrics`, and the operational HTTP endpoints (`/health`, `/ready`,
//! `/version`).
//!
//! One call at the top of `main` installs logging; libraries only emit `tracing` events
//! and never install a subscriber themselves. Noisy transport crates are filtered down by
//! default so the bus's own events stay readable.

pub mod metrics;
pub mod ops;

use std::str::FromStr;

use tracing_subscriber::EnvFilter;

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

/// Installs the process-wide subscriber. `level` is an `EnvFilter` directive such as
/// `info` or `arqon_edge=debug,info`; `RUST_LOG`, when set, wins.
pub fn init_logging(format: LogFormat, level: &str) -> Result<(), String> {
    let filter = match std::env::var("RUST_LOG") {
        Ok(directives) if !directives.is_empty() => EnvFilter::try_new(directives),
        _ => {
            let mut directives = vec![level.to_owned()];
            directives.extend(QUIET_TARGETS.iter().map(|t| (*t).to_owned()));
            EnvFilter::try_new(directives.join(","))
        }
    }
    .map_err(|e| format!("invalid log filter: {e}"))?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let result = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
    result.map_err(|e| format!("could not install the log subscriber: {e}"))
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
