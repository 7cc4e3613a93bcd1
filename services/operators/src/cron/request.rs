//! `Schedule` requests, checked once on receipt against the original's `op.cron.schedule` rules and
//! this service's limits. Every error is a `VALIDATION_ERROR` whose text the client sees.

use chrono::{DateTime, TimeDelta, Utc};

use arqon_proto::operators::v1 as pb;
use arqon_protocol::{JsonObject, Topic};

use super::job::{CronTimes, Plan};
use super::settings::CronSettings;

/// The longest delay or interval: a year. Longer ones are almost certainly mistakes, and
/// the bound keeps every computed time far from overflowing.
pub(crate) const MAX_SECONDS: f64 = 31_536_000.0;
/// The delay when none is given (the original's).
const DEFAULT_DELAY: f64 = 1.0;
/// How many upcoming times of a cron expression are checked against the minimum interval.
const GAPS_CHECKED: usize = 64;

/// A job to create, before it has an id and an owner.
#[derive(Debug)]
pub(crate) struct NewJob {
    pub(crate) topic: Topic,
    pub(crate) payload: JsonObject,
    pub(crate) persistent: bool,
    pub(crate) plan: Plan,
    pub(crate) repeat_count: Option<u32>,
    pub(crate) first_fire: DateTime<Utc>,
}

impl NewJob {
    /// Checks `request` at `now`.
    pub(crate) fn validate(
        request: &pb::ScheduleRequest,
        limits: &CronSettings,
        now: DateTime<Utc>,
    ) -> Result<NewJob, String> {
        let (room, channel) = (request.room.trim(), request.channel.trim());
        if room.is_empty() || channel.is_empty() {
            return Err("'room' and 'channel' are required".to_owned());
        }
        let topic = Topic::parse(room, channel).map_err(|errors| {
            let texts: Vec<String> = errors.iter().map(ToString::to_string).collect();
            texts.join("; ")
        })?;
        let payload = JsonObject::parse(&request.payload_json)
            .map_err(|_| "'payload' must be an object".to_owned())?;
        let size = payload.as_str().len();
        if size > limits.max_payload_bytes as usize {
            return Err(format!(
                "'payload' is too large: {size} bytes (at most {})",
                limits.max_payload_bytes
            ));
        }
        let schedule = request
            .schedule
            .as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty());
        let timezone = request
            .timezone
            .as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty());
        let (plan, repeat_count) = match schedule {
            Some(expression) => cron_plan(request, expression, timezone, limits, now)?,
            None => delay_plan(request, timezone, limits)?,
        };
        let first_fire = super::job::Job::first_fire(&plan, now)
            .ok_or_else(|| format!("Cron expression '{}' never fires", schedule.unwrap_or("")))?;
        Ok(NewJob {
            topic,
            payload,
            persistent: request.persistent,
            plan,
            repeat_count,
            first_fire,
        })
    }
}

fn cron_plan(
    request: &pb::ScheduleRequest,
    expression: &str,
    timezone: Option<&str>,
    limits: &CronSettings,
    now: DateTime<Utc>,
) -> Result<(Plan, Option<u32>), String> {
    if request.delay_seconds.is_some() || request.interval_seconds.is_some() {
        return Err(
            "'schedule' cannot be combined with 'delay_seconds' or 'interval_seconds'".to_owned(),
        );
    }
    let times = CronTimes::parse(expression, timezone)?;
    let repeat_count = request
        .repeat_count
        .map(|count| repeat(count, limits))
        .transpose()?;
    let shortest = TimeDelta::microseconds((limits.min_interval_seconds * 1e6).round() as i64);
    if let Some(gap) = times.shortest_gap(now, GAPS_CHECKED)
        && gap < shortest
        && repeat_count != Some(1)
    {
        return Err(format!(
            "Cron expression '{expression}' fires {} s apart; the shortest interval allowed is {} s",
            gap.as_seconds_f64(),
            limits.min_interval_seconds
        ));
    }
    Ok((Plan::Cron(Box::new(times)), repeat_count))
}

fn delay_plan(
    request: &pb::ScheduleRequest,
    timezone: Option<&str>,
    limits: &CronSettings,
) -> Result<(Plan, Option<u32>), String> {
    if timezone.is_some() {
        return Err("'timezone' needs 'schedule'".to_owned());
    }
    let delay = span(
        "delay_seconds",
        request.delay_seconds.unwrap_or(DEFAULT_DELAY),
    )?;
    let interval = request
        .interval_seconds
        .map(|interval| span("interval_seconds", interval))
        .transpose()?;
    if let Some(interval) = interval
        && interval < limits.min_interval_seconds
    {
        return Err(format!(
            "'interval_seconds' must be at least {}",
            limits.min_interval_seconds
        ));
    }
    let repeat_count = repeat(request.repeat_count.unwrap_or(1), limits)?;
    if repeat_count > 1 && interval.is_none() {
        return Err("'interval_seconds' is required when repeat_count > 1".to_owned());
    }
    Ok((Plan::Delay { delay, interval }, Some(repeat_count)))
}

/// A delay or interval: `> 0` (the original's message) and at most [`MAX_SECONDS`].
fn span(name: &str, seconds: f64) -> Result<f64, String> {
    // NaN fails too.
    if seconds.is_nan() || seconds <= 0.0 {
        return Err(format!("'{name}' must be > 0"));
    }
    if seconds > MAX_SECONDS {
        return Err(format!("'{name}' must be at most {MAX_SECONDS}"));
    }
    Ok(seconds)
}

fn repeat(count: i64, limits: &CronSettings) -> Result<u32, String> {
    if count <= 0 {
        return Err("'repeat_count' must be > 0".to_owned());
    }
    match u32::try_from(count) {
        Ok(count) if count <= limits.max_repeat_count => Ok(count),
        _ => Err(format!(
            "'repeat_count' must be at most {}",
            limits.max_repeat_count
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> pb::ScheduleRequest {
        pb::ScheduleRequest {
            caller: None,
            room: "science".into(),
            channel: "general".into(),
            payload_json: r#"{"content":"tick"}"#.into(),
            ..Default::default()
        }
    }

    fn check(request: pb::ScheduleRequest) -> Result<NewJob, String> {
        let limits = CronSettings {
            max_payload_bytes: 64,
            max_repeat_count: 10,
            min_interval_seconds: 0.5,
            ..CronSettings::default()
        };
        NewJob::validate(&request, &limits, Utc::now())
    }

    #[test]
    fn the_originals_defaults_apply() {
        let job = check(request()).unwrap();
        assert_eq!(job.repeat_count, Some(1));
        assert!(matches!(
            job.plan,
            Plan::Delay {
                delay: 1.0,
                interval: None
            }
        ));
        assert!(!job.persistent);
    }

    #[test]
    fn every_rule_has_its_message() {
        let cases: Vec<(pb::ScheduleRequest, &str)> = vec![
            (
                pb::ScheduleRequest {
                    room: " ".into(),
                    ..request()
                },
                "'room' and 'channel' are required",
            ),
            (
                pb::ScheduleRequest {
                    channel: String::new(),
                    ..request()
                },
                "'room' and 'channel' are required",
            ),
            (
                pb::ScheduleRequest {
                    payload_json: "[1]".into(),
                    ..request()
                },
                "'payload' must be an object",
            ),
            (
                pb::ScheduleRequest {
                    payload_json: format!(r#"{{"x":"{}"}}"#, "y".repeat(64)),
                    ..request()
                },
                "'payload' is too large: 72 bytes (at most 64)",
            ),
            (
                pb::ScheduleRequest {
                    delay_seconds: Some(0.0),
                    ..request()
                },
                "'delay_seconds' must be > 0",
            ),
            (
                pb::ScheduleRequest {
                    delay_seconds: Some(f64::NAN),
                    ..request()
                },
                "'delay_seconds' must be > 0",
            ),
            (
                pb::ScheduleRequest {
                    delay_seconds: Some(f64::INFINITY),
                    ..request()
                },
                "'delay_seconds' must be at most 31536000",
            ),
            (
                pb::ScheduleRequest {
                    interval_seconds: Some(-1.0),
                    ..request()
                },
                "'interval_seconds' must be > 0",
            ),
            (
                pb::ScheduleRequest {
                    interval_seconds: Some(0.1),
                    ..request()
                },
                "'interval_seconds' must be at least 0.5",
            ),
            (
                pb::ScheduleRequest {
                    repeat_count: Some(0),
                    ..request()
                },
                "'repeat_count' must be > 0",
            ),
            (
                pb::ScheduleRequest {
                    repeat_count: Some(-3),
                    ..request()
                },
                "'repeat_count' must be > 0",
            ),
            (
                pb::ScheduleRequest {
                    repeat_count: Some(11),
                    interval_seconds: Some(1.0),
                    ..request()
                },
                "'repeat_count' must be at most 10",
            ),
            (
                pb::ScheduleRequest {
                    repeat_count: Some(2),
                    ..request()
                },
                "'interval_seconds' is required when repeat_count > 1",
            ),
            (
                pb::ScheduleRequest {
                    timezone: Some("UTC".into()),
                    ..request()
                },
                "'timezone' needs 'schedule'",
            ),
            (
                pb::ScheduleRequest {
                    schedule: Some("* * * * * *".into()),
                    delay_seconds: Some(1.0),
                    ..request()
                },
                "'schedule' cannot be combined with 'delay_seconds' or 'interval_seconds'",
            ),
            (
                pb::ScheduleRequest {
                    schedule: Some("0 0 0 30 2 *".into()),
                    ..request()
                },
                "Cron expression '0 0 0 30 2 *' never fires",
            ),
        ];
        for (request, message) in cases {
            assert_eq!(check(request).unwrap_err(), message);
        }
        let error = check(pb::ScheduleRequest {
            room: "a.b".into(),
            ..request()
        })
        .unwrap_err();
        assert!(error.starts_with("Invalid room name 'a.b'"), "{error}");
    }

    #[test]
    fn cron_expressions_are_checked_against_the_minimum_interval() {
        let every_second = pb::ScheduleRequest {
            schedule: Some("* * * * * *".into()),
            ..request()
        };
        let limits = CronSettings {
            min_interval_seconds: 2.0,
            ..CronSettings::default()
        };
        let error = NewJob::validate(&every_second, &limits, Utc::now()).unwrap_err();
        assert_eq!(
            error,
            "Cron expression '* * * * * *' fires 1 s apart; the shortest interval allowed is 2 s"
        );
        // One firing has no interval.
        let once = pb::ScheduleRequest {
            repeat_count: Some(1),
            ..every_second.clone()
        };
        assert!(NewJob::validate(&once, &limits, Utc::now()).is_ok());
        let job = check(pb::ScheduleRequest {
            timezone: Some(" Europe/Paris ".into()),
            ..every_second
        })
        .unwrap();
        assert_eq!(job.repeat_count, None);
        assert!(matches!(&job.plan, Plan::Cron(t) if t.zone() == "Europe/Paris"));
    }
}
