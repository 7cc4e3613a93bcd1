//! `op.cron.schedule`, `op.cron.list` and `op.cron.cancel`: the arguments' types are
//! checked here (the original's conversions: strings are trimmed, numbers may be sent as
//! text); every rule on their values, the limits and the ownership checks are the
//! operators service's, so direct gRPC callers get the same answers.

use serde_json::{Map, Value, json};
use tonic::Request;

use arqon_proto::operators::v1 as pb;
use arqon_protocol::{CommandReply, ErrorCode};

use super::super::Call;
use super::super::args::{boolean, number};
use super::super::catalog::{Spec, arg};
use super::{caller, refused};
use arqon_proto::operators_control::{OperatorsControl, call};

pub(super) const SPECS: &[Spec] = &[
    Spec {
        name: "op.cron.schedule",
        category: "cron",
        description: "Publishes a payload into a room of your tenant later: after a delay (then every interval), or at the times of a cron expression; as a message from op-cron with metadata.cron_job_id and metadata.iteration",
        permission: None,
        system_only: None,
        arguments: &[
            arg("room", true, "room to publish to"),
            arg("channel", true, "channel to publish to"),
            arg("payload", true, "the message's payload (an object)"),
            arg(
                "delay_seconds",
                false,
                "seconds before the first firing (> 0, default 1)",
            ),
            arg(
                "interval_seconds",
                false,
                "seconds between firings (required when repeat_count > 1; at least ARQONBUS_CRON_MIN_INTERVAL_SECONDS)",
            ),
            arg(
                "repeat_count",
                false,
                "total firings (default 1; with schedule, unlimited when absent)",
            ),
            arg(
                "schedule",
                false,
                "a cron expression with seconds, e.g. \"*/5 * * * * *\" (instead of delay and interval)",
            ),
            arg(
                "timezone",
                false,
                "IANA time zone of schedule (default UTC)",
            ),
            arg(
                "persistent",
                false,
                "keep the job when you disconnect (default false: it is cancelled)",
            ),
        ],
        example: r#"{"type":"command","command":"op.cron.schedule","args":{"room":"science","channel":"general","payload":{"content":"tick"},"delay_seconds":5,"interval_seconds":60,"repeat_count":3}}"#,
    },
    Spec {
        name: "op.cron.list",
        category: "cron",
        description: "Your pending cron jobs (an admin's: every job of the tenant)",
        permission: None,
        system_only: None,
        arguments: &[],
        example: r#"{"type":"command","command":"op.cron.list"}"#,
    },
    Spec {
        name: "op.cron.cancel",
        category: "cron",
        description: "Cancels one of your cron jobs (an admin: any of the tenant); nothing fires after the answer",
        permission: None,
        system_only: None,
        arguments: &[arg("job_id", true, "the job's id (cron_…)")],
        example: r#"{"type":"command","command":"op.cron.cancel","args":{"job_id":"cron_0123456789abcdef0123456789abcdef"}}"#,
    },
];

pub(super) async fn execute(
    call: &Call<'_>,
    name: &str,
    control: &OperatorsControl,
) -> CommandReply {
    let args = call.inbound.envelope.args.to_map();
    match name {
        "op.cron.schedule" => match request(call, &args) {
            Ok(request) => schedule(control, request).await,
            Err(message) => CommandReply::error(ErrorCode::ValidationError, message),
        },
        "op.cron.list" => list(call, control).await,
        "op.cron.cancel" => cancel(call, control, &args).await,
        other => CommandReply::error(
            ErrorCode::UnknownCommand,
            format!("Unknown command: {other}"),
        ),
    }
}

async fn schedule(control: &OperatorsControl, request: pb::ScheduleRequest) -> CommandReply {
    match call(control.cron.schedule(Request::new(request))).await {
        Ok(job) => CommandReply::success("Cron job scheduled", job_data(&job)),
        Err(status) => refused("schedule a cron job", &status, Map::new()),
    }
}

async fn list(call_: &Call<'_>, control: &OperatorsControl) -> CommandReply {
    let request = pb::ListJobsRequest {
        caller: caller(call_),
    };
    match call(control.cron.list(Request::new(request))).await {
        Ok(listed) => {
            let jobs: Vec<Value> = listed
                .jobs
                .iter()
                .map(|job| Value::Object(job_data(job)))
                .collect();
            let mut data = Map::new();
            data.insert("count".into(), jobs.len().into());
            data.insert("jobs".into(), Value::Array(jobs));
            CommandReply::success("Cron jobs retrieved", data)
        }
        Err(status) => refused("list cron jobs", &status, Map::new()),
    }
}

async fn cancel(
    call_: &Call<'_>,
    control: &OperatorsControl,
    args: &Map<String, Value>,
) -> CommandReply {
    let job_id = text(args, "job_id");
    let request = pb::CancelJobRequest {
        caller: caller(call_),
        job_id: job_id.clone(),
    };
    let mut data = Map::new();
    data.insert("job_id".into(), Value::from(job_id));
    match call(control.cron.cancel(Request::new(request))).await {
        Ok(cancelled) => {
            data.insert("job_id".into(), Value::from(cancelled.job_id));
            CommandReply::success("Cron job cancelled", data)
        }
        Err(status) => refused("cancel a cron job", &status, data),
    }
}

/// The typed request, or the message of the first argument of the wrong type.
fn request(call_: &Call<'_>, args: &Map<String, Value>) -> Result<pb::ScheduleRequest, String> {
    Ok(pb::ScheduleRequest {
        caller: caller(call_),
        room: text(args, "room"),
        channel: text(args, "channel"),
        // Whatever was sent: the service refuses anything but an object, after it has
        // checked room and channel (the original's order).
        payload_json: args
            .get("payload")
            .map(Value::to_string)
            .unwrap_or_default(),
        delay_seconds: number(args, "delay_seconds")?,
        interval_seconds: number(args, "interval_seconds")?,
        repeat_count: integer(args, "repeat_count")?,
        schedule: optional_text(args, "schedule")?,
        timezone: optional_text(args, "timezone")?,
        persistent: boolean(args, "persistent")?,
    })
}

/// The original's `str(args.get(name, "")).strip()`; null counts as absent.
fn text(args: &Map<String, Value>, name: &str) -> String {
    match args.get(name) {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.trim().to_owned(),
        Some(other) => other.to_string(),
    }
}

fn optional_text(args: &Map<String, Value>, name: &str) -> Result<Option<String>, String> {
    match args.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.trim().to_owned())),
        Some(_) => Err(format!("'{name}' must be a string")),
    }
}

/// A whole number, or a string holding one.
fn integer(args: &Map<String, Value>, name: &str) -> Result<Option<i64>, String> {
    let not_integer =
        |shown: &dyn std::fmt::Display| format!("'{name}' must be an integer, not '{shown}'");
    match args.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => match (n.as_i64(), n.as_f64()) {
            (Some(i), _) => Ok(Some(i)),
            (None, Some(f)) if f.fract() == 0.0 && f.abs() < 9.0e15 => Ok(Some(f as i64)),
            _ => Err(not_integer(n)),
        },
        Some(Value::String(s)) => s
            .trim()
            .parse::<i64>()
            .map(Some)
            .map_err(|_| not_integer(s)),
        Some(_) => Err(format!("'{name}' must be an integer")),
    }
}

/// A job as the original listed it, plus this bus's fields.
fn job_data(job: &pb::CronJob) -> Map<String, Value> {
    let data = json!({
        "job_id": job.job_id,
        "owner_client_id": job.owner_client_id,
        "room": job.room,
        "channel": job.channel,
        "delay_seconds": job.delay_seconds,
        "interval_seconds": job.interval_seconds,
        "repeat_count": job.repeat_count,
        "schedule": job.schedule,
        "timezone": job.timezone,
        "persistent": job.persistent,
        "fired": job.fired,
        "next_fire_at": job.next_fire_at,
        "created_at": job.created_at,
    });
    match data {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(value: Value) -> Map<String, Value> {
        value.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn arguments_convert_as_the_originals_did() {
        let given = args(json!({
            "room": " science ", "channel": 7, "delay_seconds": "0.5",
            "interval_seconds": 2, "repeat_count": "3", "persistent": "yes",
            "schedule": "  ",
        }));
        assert_eq!(text(&given, "room"), "science");
        assert_eq!(text(&given, "channel"), "7");
        assert_eq!(text(&given, "missing"), "");
        assert_eq!(number(&given, "delay_seconds"), Ok(Some(0.5)));
        assert_eq!(number(&given, "interval_seconds"), Ok(Some(2.0)));
        assert_eq!(integer(&given, "repeat_count"), Ok(Some(3)));
        assert_eq!(integer(&args(json!({"n": 4.0})), "n"), Ok(Some(4)));
        assert_eq!(boolean(&given, "persistent"), Ok(true));
        assert_eq!(optional_text(&given, "schedule"), Ok(None));
    }

    #[test]
    fn wrong_types_are_named() {
        let given = args(json!({
            "delay_seconds": "soon", "interval_seconds": true, "repeat_count": 2.5,
            "count": "many", "persistent": "perhaps", "schedule": 5,
        }));
        assert_eq!(
            number(&given, "delay_seconds").unwrap_err(),
            "'delay_seconds' must be a number, not 'soon'"
        );
        assert_eq!(
            number(&given, "interval_seconds").unwrap_err(),
            "'interval_seconds' must be a number"
        );
        assert_eq!(
            integer(&given, "repeat_count").unwrap_err(),
            "'repeat_count' must be an integer, not '2.5'"
        );
        assert_eq!(
            integer(&given, "count").unwrap_err(),
            "'count' must be an integer, not 'many'"
        );
        assert_eq!(
            boolean(&given, "persistent").unwrap_err(),
            "'persistent' must be a boolean"
        );
        assert_eq!(
            optional_text(&given, "schedule").unwrap_err(),
            "'schedule' must be a string"
        );
    }

    #[test]
    fn a_job_reads_as_the_original_listed_it() {
        let job = pb::CronJob {
            job_id: "cron_1".into(),
            room: "science".into(),
            channel: "general".into(),
            delay_seconds: Some(1.0),
            repeat_count: Some(1),
            created_at: "2026-01-01T00:00:00+00:00".into(),
            ..Default::default()
        };
        let data = job_data(&job);
        for field in [
            "job_id",
            "owner_client_id",
            "room",
            "channel",
            "delay_seconds",
            "interval_seconds",
            "repeat_count",
            "created_at",
        ] {
            assert!(data.contains_key(field), "{field}");
        }
        assert_eq!(data["interval_seconds"], Value::Null);
        assert_eq!(data["delay_seconds"], 1.0);
    }
}
