//! A cron job as stored in the bucket (`<tenant>.<job_id>`, JSON), when it fires next,
//! and the message each firing publishes.

use std::fmt;
use std::str::FromStr;

use bytes::Bytes;
use chrono::{DateTime, TimeDelta, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use arqon_proto::layout;
use arqon_proto::operators::v1 as pb;
use arqon_protocol::{
    ChannelName, Envelope, JsonObject, MessageId, MessageType, RoomName, TenantId, Timestamp, Topic,
};

/// The `sender` of every message a job publishes.
pub(crate) const SENDER: &str = "op-cron";

/// A job id: `cron_` and 32 lowercase hex digits.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct JobId(String);

impl JobId {
    const PREFIX: &'static str = "cron_";

    pub(crate) fn generate() -> Self {
        Self(format!("{}{:032x}", Self::PREFIX, rand::random::<u128>()))
    }

    /// Accepts an id in the generated format (anything else names no job).
    pub(crate) fn parse(text: &str) -> Option<Self> {
        let hex = text.strip_prefix(Self::PREFIX)?;
        (hex.len() == 32 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
            .then(|| Self(text.to_owned()))
    }

    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }

    /// Six hex digits of the id, for the message ids of its firings.
    fn stem(&self) -> &str {
        &self.0[Self::PREFIX.len()..Self::PREFIX.len() + 6]
    }
}

impl fmt::Debug for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl AsRef<str> for JobId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The times of a cron expression in a time zone.
#[derive(Debug, Clone)]
pub(crate) struct CronTimes {
    expression: String,
    schedule: cron::Schedule,
    zone: Tz,
}

impl CronTimes {
    /// Reads an expression (six or seven fields, seconds first) and an IANA zone name
    /// (UTC when absent); the error is the text a client sees.
    pub(crate) fn parse(expression: &str, zone: Option<&str>) -> Result<Self, String> {
        let schedule = cron::Schedule::from_str(expression).map_err(|e| {
            format!(
                "Invalid cron expression '{expression}': {e} (expected six or seven fields: second minute hour day-of-month month day-of-week [year])"
            )
        })?;
        let zone = match zone {
            None => Tz::UTC,
            Some(name) => Tz::from_str(name).map_err(|_| {
                format!("Unknown time zone '{name}': use an IANA name such as 'Europe/Paris'")
            })?,
        };
        Ok(Self {
            expression: expression.to_owned(),
            schedule,
            zone,
        })
    }

    pub(crate) fn expression(&self) -> &str {
        &self.expression
    }

    pub(crate) fn zone(&self) -> &'static str {
        self.zone.name()
    }

    /// The first time strictly after `t`.
    pub(crate) fn next_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.schedule
            .after(&t.with_timezone(&self.zone))
            .next()
            .map(|next| next.with_timezone(&Utc))
    }

    /// How many times fall in `(from, to]`, counting at most `cap`.
    pub(crate) fn count_between(&self, from: DateTime<Utc>, to: DateTime<Utc>, cap: u32) -> u32 {
        let mut count = 0;
        let mut times = self.schedule.after(&from.with_timezone(&self.zone));
        while count < cap && times.next().is_some_and(|t| t.with_timezone(&Utc) <= to) {
            count += 1;
        }
        count
    }

    /// The shortest gap between consecutive times among the first `n` after `t`.
    pub(crate) fn shortest_gap(&self, t: DateTime<Utc>, n: usize) -> Option<TimeDelta> {
        let times: Vec<DateTime<Utc>> = self
            .schedule
            .after(&t.with_timezone(&self.zone))
            .take(n)
            .map(|t| t.with_timezone(&Utc))
            .collect();
        times.windows(2).map(|w| w[1] - w[0]).min()
    }
}

/// When a job fires.
#[derive(Debug, Clone)]
pub(crate) enum Plan {
    /// After `delay` seconds, then `interval` seconds after each firing.
    Delay { delay: f64, interval: Option<f64> },
    /// At the times of a cron expression.
    Cron(Box<CronTimes>),
}

/// A firing claimed by the replica that fires, not yet confirmed as published.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Claim {
    pub(crate) iteration: u32,
    /// When it was claimed (the claimer's clock), where to look for it in the history.
    pub(crate) claimed_at: DateTime<Utc>,
    /// The lease revision of the claimer's leadership.
    pub(crate) term: u64,
}

/// A job, validated.
#[derive(Debug, Clone)]
pub(crate) struct Job {
    pub(crate) id: JobId,
    pub(crate) tenant: TenantId,
    pub(crate) owner: String,
    pub(crate) topic: Topic,
    pub(crate) payload: JsonObject,
    pub(crate) persistent: bool,
    pub(crate) plan: Plan,
    /// Total firings; `None`: unlimited (cron expressions only).
    pub(crate) repeat_count: Option<u32>,
    pub(crate) created_at: Timestamp,
    /// Firings claimed so far (the claimed one included).
    pub(crate) fired: u32,
    /// `None` once no firing is left.
    pub(crate) next_fire_at: Option<DateTime<Utc>>,
    pub(crate) claim: Option<Claim>,
    /// The W3C `traceparent` of the call that scheduled the job, if it was traced: each
    /// firing's own trace links to it.
    pub(crate) scheduled_in: Option<String>,
}

impl Job {
    pub(crate) fn key(&self) -> String {
        layout::tenant_key(&self.tenant, &self.id)
    }

    /// When the scheduler must look at it: a claimed firing at once (it is unfinished
    /// business), otherwise at its next firing.
    pub(crate) fn due_at(&self) -> Option<DateTime<Utc>> {
        match &self.claim {
            Some(claim) => Some(claim.claimed_at),
            None => self.next_fire_at,
        }
    }

    /// Has no firing left (it is deleted once the last one is confirmed).
    pub(crate) fn is_finished(&self) -> bool {
        self.next_fire_at.is_none()
    }

    /// The first firing of a new job created at `now`.
    pub(crate) fn first_fire(plan: &Plan, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match plan {
            Plan::Delay { delay, .. } => Some(now + seconds(*delay)),
            Plan::Cron(times) => times.next_after(now),
        }
    }

    /// The firing after `iteration`, which fires at `now`; `None` when it is the last.
    pub(crate) fn next_after(&self, iteration: u32, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        if self.repeat_count.is_some_and(|total| iteration >= total) {
            return None;
        }
        match &self.plan {
            Plan::Delay { interval, .. } => interval.map(|interval| now + seconds(interval)),
            Plan::Cron(times) => times.next_after(now),
        }
    }

    /// The job once firing `iteration` is claimed at `now` by the leader of `term`.
    pub(crate) fn claimed(&self, iteration: u32, now: DateTime<Utc>, term: u64) -> Job {
        Job {
            fired: iteration,
            next_fire_at: self.next_after(iteration, now),
            claim: Some(Claim {
                iteration,
                claimed_at: now,
                term,
            }),
            ..self.clone()
        }
    }

    /// The job once its claimed firing is confirmed.
    pub(crate) fn confirmed(&self) -> Job {
        Job {
            claim: None,
            ..self.clone()
        }
    }

    /// The id of the message of firing `iteration`: the same for every attempt to
    /// publish it, in the generated format (`arq_<ns>_<counter>_<hex>`: the job's
    /// creation in nanoseconds, the iteration, six hex digits of the job id).
    pub(crate) fn message_id(&self, iteration: u32) -> String {
        let nanos = self.created_at.unix_micros().max(0).saturating_mul(1000);
        format!("arq_{nanos}_{iteration}_{}", self.id.stem())
    }

    /// The envelope of firing `iteration`, published at `now`: a `message` from
    /// `op-cron` to every member of the room, the owner included.
    pub(crate) fn envelope(&self, iteration: u32, now: Timestamp) -> Envelope {
        let mut envelope = Envelope::new(MessageType::Message);
        if let Ok(id) = MessageId::parse(&self.message_id(iteration)) {
            envelope.id = id;
        }
        envelope.timestamp = now;
        envelope.room = Some(self.topic.room.to_string());
        envelope.channel = Some(self.topic.channel.to_string());
        envelope.sender = Some(SENDER.to_owned());
        envelope.payload = self.payload.clone();
        let mut metadata = serde_json::Map::new();
        metadata.insert("cron_job_id".into(), self.id.as_str().into());
        metadata.insert("iteration".into(), iteration.into());
        envelope.metadata = JsonObject::from_map(&metadata);
        envelope
    }

    /// What the API answers about it.
    pub(crate) fn to_pb(&self) -> pb::CronJob {
        let (delay_seconds, interval_seconds, schedule, timezone) = match &self.plan {
            Plan::Delay { delay, interval } => (Some(*delay), *interval, None, None),
            Plan::Cron(times) => (
                None,
                None,
                Some(times.expression().to_owned()),
                Some(times.zone().to_owned()),
            ),
        };
        pb::CronJob {
            job_id: self.id.to_string(),
            room: self.topic.room.to_string(),
            channel: self.topic.channel.to_string(),
            delay_seconds,
            interval_seconds,
            repeat_count: self.repeat_count,
            schedule,
            timezone,
            created_at: self.created_at.to_rfc3339(),
            owner_client_id: self.owner.clone(),
            persistent: self.persistent,
            fired: self.fired,
            next_fire_at: self.next_fire_at.map(|t| Timestamp::from(t).to_rfc3339()),
            tenant: self.tenant.to_string(),
        }
    }

    pub(crate) fn encode(&self) -> Bytes {
        let (delay_seconds, interval_seconds, schedule, timezone) = match &self.plan {
            Plan::Delay { delay, interval } => (Some(*delay), *interval, None, None),
            Plan::Cron(times) => (
                None,
                None,
                Some(times.expression().to_owned()),
                Some(times.zone().to_owned()),
            ),
        };
        let record = Record {
            job_id: self.id.to_string(),
            tenant: self.tenant.to_string(),
            owner_client_id: self.owner.clone(),
            room: self.topic.room.to_string(),
            channel: self.topic.channel.to_string(),
            payload: raw(&self.payload),
            persistent: self.persistent,
            delay_seconds,
            interval_seconds,
            repeat_count: self.repeat_count,
            schedule,
            timezone,
            created_at: self.created_at.to_rfc3339(),
            fired: self.fired,
            next_fire_at: self.next_fire_at.map(|t| Timestamp::from(t).to_rfc3339()),
            claim: self.claim.as_ref().map(|claim| ClaimRecord {
                iteration: claim.iteration,
                claimed_at: Timestamp::from(claim.claimed_at).to_rfc3339(),
                term: claim.term,
            }),
            scheduled_in: self.scheduled_in.clone(),
        };
        // A struct of strings, numbers and already-valid JSON always serializes.
        Bytes::from(serde_json::to_vec(&record).unwrap_or_default())
    }

    /// Reads a stored job, checking every field once.
    pub(crate) fn decode(bytes: &[u8]) -> Result<Job, String> {
        let record: Record = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
        let id = JobId::parse(&record.job_id).ok_or("bad job id")?;
        let tenant = TenantId::parse(&record.tenant).map_err(|e| e.to_string())?;
        let room = RoomName::parse(&record.room).map_err(|e| e.to_string())?;
        let channel = ChannelName::parse(&record.channel).map_err(|e| e.to_string())?;
        let payload = JsonObject::from_raw(&record.payload).map_err(|e| e.to_string())?;
        let plan = match (record.schedule, record.delay_seconds) {
            (Some(expression), _) => Plan::Cron(Box::new(CronTimes::parse(
                &expression,
                record.timezone.as_deref(),
            )?)),
            (None, Some(delay)) => Plan::Delay {
                delay,
                interval: record.interval_seconds,
            },
            (None, None) => return Err("neither a schedule nor a delay".to_owned()),
        };
        let time = |text: &str| {
            Timestamp::parse(text)
                .map(|t| t.to_utc())
                .map_err(|e| e.to_string())
        };
        Ok(Job {
            id,
            tenant,
            owner: record.owner_client_id,
            topic: Topic::new(room, channel),
            payload,
            persistent: record.persistent,
            plan,
            repeat_count: record.repeat_count,
            created_at: Timestamp::parse(&record.created_at).map_err(|e| e.to_string())?,
            fired: record.fired,
            next_fire_at: record.next_fire_at.as_deref().map(time).transpose()?,
            claim: match record.claim {
                Some(claim) => Some(Claim {
                    iteration: claim.iteration,
                    claimed_at: time(&claim.claimed_at)?,
                    term: claim.term,
                }),
                None => None,
            },
            scheduled_in: record.scheduled_in,
        })
    }
}

/// `seconds` as a time span (validated inputs are finite, positive and at most a year).
pub(crate) fn seconds(seconds: f64) -> TimeDelta {
    TimeDelta::microseconds((seconds * 1e6).round() as i64)
}

fn raw(object: &JsonObject) -> Box<RawValue> {
    // A `JsonObject` is valid JSON text by construction.
    RawValue::from_string(object.as_str().to_owned()).unwrap_or_default()
}

/// The stored form: human-readable JSON (`nats kv get arqon_cron <key>`).
#[derive(Debug, Serialize, Deserialize)]
struct Record {
    job_id: String,
    tenant: String,
    owner_client_id: String,
    room: String,
    channel: String,
    payload: Box<RawValue>,
    persistent: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    delay_seconds: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    interval_seconds: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    repeat_count: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    schedule: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    timezone: Option<String>,
    created_at: String,
    fired: u32,
    #[serde(default)]
    next_fire_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    claim: Option<ClaimRecord>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    scheduled_in: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
struct ClaimRecord {
    iteration: u32,
    claimed_at: String,
    term: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use arqon_protocol::{ClientId, EdgeId};

    fn at(text: &str) -> DateTime<Utc> {
        Timestamp::parse(text).unwrap().to_utc()
    }

    pub(crate) fn job(plan: Plan, repeat_count: Option<u32>) -> Job {
        let now = at("2026-03-01T12:00:00Z");
        Job {
            id: JobId::generate(),
            tenant: TenantId::parse("t-a").unwrap(),
            owner: ClientId::generate_on(&EdgeId::generate()).to_string(),
            topic: Topic::parse("science", "general").unwrap(),
            payload: JsonObject::parse(r#"{"content":"tick"}"#).unwrap(),
            persistent: false,
            next_fire_at: Job::first_fire(&plan, now),
            plan,
            repeat_count,
            created_at: Timestamp::from(now),
            fired: 0,
            claim: None,
            scheduled_in: None,
        }
    }

    #[test]
    fn job_ids_have_one_format() {
        let id = JobId::generate();
        assert!(id.as_str().starts_with("cron_"));
        assert_eq!(JobId::parse(id.as_str()), Some(id));
        for bad in ["cron_", "cron_xyz", "job_0123", "cron_0123.*", ""] {
            assert_eq!(JobId::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_delayed_job_fires_its_count_each_interval_after_the_last() {
        let job = job(
            Plan::Delay {
                delay: 0.5,
                interval: Some(2.0),
            },
            Some(3),
        );
        assert_eq!(job.next_fire_at, Some(at("2026-03-01T12:00:00.5Z")));
        let late = at("2026-03-01T12:00:10Z");
        let first = job.claimed(1, late, 7);
        assert_eq!(first.fired, 1);
        assert_eq!(first.next_fire_at, Some(at("2026-03-01T12:00:12Z")));
        assert_eq!(first.due_at(), Some(late));
        assert_eq!(first.confirmed().due_at(), first.next_fire_at);
        let last = first.confirmed().claimed(3, late, 7);
        assert!(last.is_finished());
        assert_eq!(
            last.claim.as_ref().map(|c| (c.iteration, c.term)),
            Some((3, 7))
        );
    }

    #[test]
    fn a_cron_job_follows_its_expression_in_its_zone() {
        let times = CronTimes::parse("0 30 9 * * *", Some("Europe/Paris")).unwrap();
        // 09:30 in Paris is 08:30 UTC in winter.
        assert_eq!(
            times.next_after(at("2026-03-01T12:00:00Z")),
            Some(at("2026-03-02T08:30:00Z"))
        );
        let every_second = CronTimes::parse("* * * * * *", None).unwrap();
        assert_eq!(every_second.zone(), "UTC");
        assert_eq!(
            every_second.next_after(at("2026-03-01T12:00:00.300Z")),
            Some(at("2026-03-01T12:00:01Z"))
        );
        assert_eq!(
            every_second.count_between(at("2026-03-01T12:00:00Z"), at("2026-03-01T12:00:05Z"), 100),
            5
        );
        assert_eq!(
            every_second.count_between(at("2026-03-01T12:00:00Z"), at("2026-03-01T13:00:00Z"), 100),
            100
        );
        let pair = CronTimes::parse("0,1 0 * * * *", None).unwrap();
        assert_eq!(
            pair.shortest_gap(at("2026-03-01T12:00:00Z"), 64),
            Some(TimeDelta::seconds(1))
        );
        let unlimited = job(Plan::Cron(Box::new(every_second)), None);
        assert!(
            unlimited
                .next_after(1_000_000, at("2026-03-01T12:00:00Z"))
                .is_some()
        );
    }

    #[test]
    fn bad_expressions_and_zones_are_named() {
        let error = CronTimes::parse("every minute", None).unwrap_err();
        assert!(
            error.starts_with("Invalid cron expression 'every minute'"),
            "{error}"
        );
        let error = CronTimes::parse("* * * * * *", Some("Mars/Olympus")).unwrap_err();
        assert!(
            error.starts_with("Unknown time zone 'Mars/Olympus'"),
            "{error}"
        );
    }

    #[test]
    fn a_stored_job_reads_back_the_same() {
        let mut original = job(
            Plan::Cron(Box::new(
                CronTimes::parse("*/5 * * * * *", Some("Asia/Tokyo")).unwrap(),
            )),
            None,
        )
        .claimed(4, at("2026-03-01T12:00:05Z"), 9);
        original.persistent = true;
        let read = Job::decode(&original.encode()).unwrap();
        assert_eq!(read.to_pb(), original.to_pb());
        assert_eq!(read.claim, original.claim);
        assert_eq!(read.payload.as_str(), original.payload.as_str());
        assert!(Job::decode(b"{}").is_err());
        assert!(Job::decode(b"cancelled").is_err());
    }

    #[test]
    fn each_firing_is_a_message_from_op_cron_with_a_stable_id() {
        let job = job(
            Plan::Delay {
                delay: 1.0,
                interval: None,
            },
            Some(1),
        );
        let id = job.message_id(2);
        assert!(MessageId::parse(&id).is_ok(), "{id}");
        assert_eq!(job.message_id(2), id);
        assert_ne!(job.message_id(3), id);
        let envelope = job.envelope(2, Timestamp::now());
        assert_eq!(envelope.id.as_str(), id);
        assert_eq!(envelope.kind, MessageType::Message);
        assert_eq!(envelope.sender.as_deref(), Some(SENDER));
        assert_eq!(envelope.room.as_deref(), Some("science"));
        assert_eq!(envelope.payload.as_str(), r#"{"content":"tick"}"#);
        let metadata = envelope.metadata.to_map();
        assert_eq!(metadata["cron_job_id"], job.id.as_str());
        assert_eq!(metadata["iteration"], 2);
    }
}
