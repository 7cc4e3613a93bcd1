//! `op.cron.schedule`, `op.cron.list` and `op.cron.cancel`: the arguments' types are
//! checked here (the original's conversions: numbers may be sent as text); every rule on
//! their values (strings are trimmed there), the limits and the ownership checks are the
//! operators service's, so direct gRPC callers get the same answers.

use serde_json::{Map, Value, json};
use tonic::Request;

use arqon_proto::operators::v1 as pb;
use arqon_proto::operators_control::OperatorsControl;
use arqon_protocol::CommandReply;

use super::super::args::{Arg, Parse, Reader, arg};
use super::super::catalog::{Access, Family, Spec};
use super::super::{Call, Reply, object, success};
use super::{ask, ask_about};

const ROOM: Arg = arg("room", true, "room to publish to");
const CHANNEL: Arg = arg("channel", true, "channel to publish to");
const PAYLOAD: Arg = arg("payload", true, "the message's payload (an object)");
const DELAY_SECONDS: Arg = arg(
    "delay_seconds",
    false,
    "seconds before the first firing (> 0, default 1)",
);
const INTERVAL_SECONDS: Arg = arg(
    "interval_seconds",
    false,
    "seconds between firings (required when repeat_count > 1; at least ARQONBUS_CRON_MIN_INTERVAL_SECONDS)",
);
const REPEAT_COUNT: Arg = arg(
    "repeat_count",
    false,
    "total firings (default 1; with schedule, unlimited when absent)",
);
const SCHEDULE: Arg = arg(
    "schedule",
    false,
    "a cron expression with seconds, e.g. \"*/5 * * * * *\" (instead of delay and interval)",
);
const TIMEZONE: Arg = arg(
    "timezone",
    false,
    "IANA time zone of schedule (default UTC)",
);
const PERSISTENT: Arg = arg(
    "persistent",
    false,
    "keep the job when you disconnect (default false: it is cancelled)",
);
const JOB_ID: Arg = arg("job_id", true, "the job's id (cron_…)");

pub(super) const SPECS: &[Spec] = &[
    Spec {
        name: "op.cron.schedule",
        family: Family::Cron,
        description: "Publishes a payload into a room of your tenant later: after a delay (then every interval), or at the times of a cron expression; as a message from op-cron with metadata.cron_job_id and metadata.iteration",
        access: Access::Anyone,
        arguments: &[
            ROOM,
            CHANNEL,
            PAYLOAD,
            DELAY_SECONDS,
            INTERVAL_SECONDS,
            REPEAT_COUNT,
            SCHEDULE,
            TIMEZONE,
            PERSISTENT,
        ],
        example: r#"{"type":"command","command":"op.cron.schedule","args":{"room":"science","channel":"general","payload":{"content":"tick"},"delay_seconds":5,"interval_seconds":60,"repeat_count":3}}"#,
        handler: operators!(schedule),
    },
    Spec {
        name: "op.cron.list",
        family: Family::Cron,
        description: "Your pending cron jobs (an admin's: every job of the tenant)",
        access: Access::Anyone,
        arguments: &[],
        example: r#"{"type":"command","command":"op.cron.list"}"#,
        handler: operators!(list),
    },
    Spec {
        name: "op.cron.cancel",
        family: Family::Cron,
        description: "Cancels one of your cron jobs (an admin: any of the tenant); nothing fires after the answer",
        access: Access::Anyone,
        arguments: &[JOB_ID],
        example: r#"{"type":"command","command":"op.cron.cancel","args":{"job_id":"cron_0123456789abcdef0123456789abcdef"}}"#,
        handler: operators!(cancel),
    },
];

impl Parse for pb::ScheduleRequest {
    fn parse(args: &Reader<'_>) -> Reply<Self> {
        Ok(Self {
            caller: None,
            // Whatever was sent: the service trims and checks room and channel, then
            // refuses a payload that is not an object (the original's order).
            room: args.any_text(&ROOM).unwrap_or_default(),
            channel: args.any_text(&CHANNEL).unwrap_or_default(),
            payload_json: args.json(&PAYLOAD).unwrap_or_default(),
            delay_seconds: args.number(&DELAY_SECONDS)?,
            interval_seconds: args.number(&INTERVAL_SECONDS)?,
            repeat_count: args.integer(&REPEAT_COUNT)?,
            schedule: args.string(&SCHEDULE)?.map(str::to_owned),
            timezone: args.string(&TIMEZONE)?.map(str::to_owned),
            persistent: args.truthy(&PERSISTENT)?,
        })
    }
}

impl Parse for pb::CancelJobRequest {
    fn parse(args: &Reader<'_>) -> Reply<Self> {
        Ok(Self {
            caller: None,
            job_id: args.any_text(&JOB_ID).unwrap_or_default(),
        })
    }
}

async fn schedule(_: &Call<'_>, control: &OperatorsControl, request: pb::ScheduleRequest) -> Reply {
    let job = ask(
        "schedule a cron job",
        control.cron.schedule(Request::new(request)),
    )
    .await?;
    Ok(CommandReply::success("Cron job scheduled", job_data(&job)))
}

async fn list(_: &Call<'_>, control: &OperatorsControl, request: pb::ListJobsRequest) -> Reply {
    let listed = ask("list cron jobs", control.cron.list(Request::new(request))).await?;
    let jobs: Vec<Value> = listed
        .jobs
        .iter()
        .map(|job| Value::Object(job_data(job)))
        .collect();
    Ok(success(
        "Cron jobs retrieved",
        json!({"count": jobs.len(), "jobs": jobs}),
    ))
}

async fn cancel(_: &Call<'_>, control: &OperatorsControl, request: pb::CancelJobRequest) -> Reply {
    let job_id = request.job_id.clone();
    let cancel = control.cron.cancel(Request::new(request));
    let cancelled = ask_about("cancel a cron job", ("job_id", &job_id), cancel).await?;
    Ok(success(
        "Cron job cancelled",
        json!({"job_id": cancelled.job_id}),
    ))
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
    object(data)
}

#[cfg(test)]
mod tests {
    use super::*;

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
