//! The `ARQONBUS_CRON_*` settings: the limits every job is checked against, and the
//! lease that decides which replica fires.

use std::time::Duration;

use arqon_bus::lease::LeaseTimings;

const MAX_JOBS_PER_TENANT: u32 = 1000;
const MIN_INTERVAL_SECONDS: f64 = 1.0;
const MAX_REPEAT_COUNT: u32 = 10_000;
const MAX_PAYLOAD_BYTES: u32 = 65_536;
const LEASE_SECONDS: f64 = 5.0;
/// The shortest lease: the bucket's `max_age` must be at least 100 ms, and renewals need
/// a few round trips of room inside it.
const MIN_LEASE_SECONDS: f64 = 0.5;

/// Limits of `op.cron.schedule`, and the scheduler's lease.
#[derive(Debug, Clone, clap::Args)]
pub struct CronSettings {
    /// Most jobs one tenant may have at once (finished and cancelled jobs do not count).
    #[arg(
        id = "cron_max_jobs_per_tenant",
        long = "cron-max-jobs-per-tenant",
        env = "ARQONBUS_CRON_MAX_JOBS_PER_TENANT",
        default_value_t = MAX_JOBS_PER_TENANT,
        value_parser = clap::value_parser!(u32).range(1..),
    )]
    pub max_jobs_per_tenant: u32,

    /// Shortest `interval_seconds`, and shortest gap between two times of a cron
    /// expression.
    #[arg(
        id = "cron_min_interval_seconds",
        long = "cron-min-interval-seconds",
        env = "ARQONBUS_CRON_MIN_INTERVAL_SECONDS",
        default_value_t = MIN_INTERVAL_SECONDS,
        value_parser = positive_seconds,
    )]
    pub min_interval_seconds: f64,

    /// Largest `repeat_count`.
    #[arg(
        id = "cron_max_repeat_count",
        long = "cron-max-repeat-count",
        env = "ARQONBUS_CRON_MAX_REPEAT_COUNT",
        default_value_t = MAX_REPEAT_COUNT,
        value_parser = clap::value_parser!(u32).range(1..),
    )]
    pub max_repeat_count: u32,

    /// Largest `payload`, in bytes of JSON.
    #[arg(
        id = "cron_max_payload_bytes",
        long = "cron-max-payload-bytes",
        env = "ARQONBUS_CRON_MAX_PAYLOAD_BYTES",
        default_value_t = MAX_PAYLOAD_BYTES,
        value_parser = clap::value_parser!(u32).range(1..=262_144),
    )]
    pub max_payload_bytes: u32,

    /// How long the replica that fires holds its lease without renewing it: after it
    /// dies, another replica fires within about this long.
    #[arg(
        id = "cron_lease_seconds",
        long = "cron-lease-seconds",
        env = "ARQONBUS_CRON_LEASE_SECONDS",
        default_value_t = LEASE_SECONDS,
        value_parser = lease_seconds,
    )]
    pub lease_seconds: f64,
}

impl Default for CronSettings {
    fn default() -> Self {
        arqon_service::settings::defaults()
    }
}

impl CronSettings {
    pub(crate) fn lease(&self) -> LeaseTimings {
        LeaseTimings::for_ttl(Duration::from_secs_f64(
            self.lease_seconds.max(MIN_LEASE_SECONDS),
        ))
    }
}

fn positive_seconds(text: &str) -> Result<f64, String> {
    match text.trim().parse::<f64>() {
        Ok(seconds) if seconds.is_finite() && seconds > 0.0 => Ok(seconds),
        _ => Err(format!("{text:?} is not a positive number of seconds")),
    }
}

fn lease_seconds(text: &str) -> Result<f64, String> {
    let seconds = positive_seconds(text)?;
    if (MIN_LEASE_SECONDS..=3600.0).contains(&seconds) {
        Ok(seconds)
    } else {
        Err(format!(
            "the cron lease must last {MIN_LEASE_SECONDS} to 3600 seconds, not {text}"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_holder_stops_well_before_its_lease_expires() {
        let timings = CronSettings::default().lease();
        assert_eq!(timings.ttl, Duration::from_secs(5));
        // Two renewals fit in the fenced window, so one lost renewal costs nothing.
        assert!(timings.renew_every * 2 < timings.ttl - timings.fence_margin);
        assert!(timings.fence_margin >= Duration::from_millis(100));
    }

    #[test]
    fn out_of_range_values_are_refused_by_their_flag() {
        use clap::Parser;
        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            cron: CronSettings,
        }
        for (flag, value) in [
            ("--cron-lease-seconds", "0.1"),
            ("--cron-lease-seconds", "7200"),
            ("--cron-min-interval-seconds", "0"),
            ("--cron-min-interval-seconds", "NaN"),
            ("--cron-max-repeat-count", "0"),
            ("--cron-max-jobs-per-tenant", "0"),
            ("--cron-max-payload-bytes", "0"),
        ] {
            let error = Cli::try_parse_from(["t", flag, value])
                .err()
                .unwrap()
                .to_string();
            assert!(error.contains(flag), "{error}");
        }
        assert_eq!(positive_seconds(" 0.05 "), Ok(0.05));
    }
}
