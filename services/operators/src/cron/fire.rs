//! One firing, as the lease holder does it: claim, publish, confirm.
//!
//! 1. **Claim**: a compare-and-set on the job's revision records the iteration as
//!    claimed (and moves `fired` and `next_fire_at` on). Only one replica can win it, so
//!    an iteration is claimed once; a cancel or another writer makes it fail.
//! 2. **Publish** the message to the room (and the webhook queue), with an id derived
//!    from the job and the iteration, unless the term ended meanwhile; first it passes
//!    CASIL at the policy service, as a client's message would (redacted, or not
//!    published at all when blocked: the iteration is then done, counted as blocked).
//! 3. **Confirm**: a compare-and-set clears the claim (or deletes the finished job).
//!
//! A claim still there when the job is looked at again is unfinished business: this
//! replica knows whether it published it; otherwise (its claimer died or failed between
//! 1 and 3) the room's history says whether the message got out. It is published now
//! only when the history does not hold it, and dropped (counted as missed) when the
//! history cannot tell, so no iteration is ever published twice.

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use tracing::{Instrument as _, debug, warn};

use arqon_bus::{Bus, BusError, Headers, KvStore, MAX_READ_LIMIT, ReadFrom};
use arqon_proto::model::RoomDelivery;
use arqon_proto::policy::v1 as policy_pb;
use arqon_proto::policy_control::PolicyControl;
use arqon_protocol::{Envelope, Timestamp, subject};
use arqon_telemetry::traces;
use bytes::Bytes;

use super::job::{Claim, Job, Plan};
use super::metrics::CronMetrics;
use arqon_bus::lease::Term;

/// The header JetStream de-duplicates stored messages by.
const MSG_ID_HEADER: &str = "Nats-Msg-Id";
/// A firing published later than this after it was due counts as late.
const LATE: TimeDelta = TimeDelta::seconds(1);
/// How far before a claim the history is searched (clocks of replicas and server differ).
const CLOCK_SLACK: TimeDelta = TimeDelta::seconds(60);
/// Pages of history read at most to find one claimed message.
const HISTORY_PAGES: usize = 5;
/// Cron-expression times counted at most as missed for one late firing.
const MISSED_CAP: u32 = 100_000;
/// When a bus failure stops a firing, it is tried again this much later.
pub(crate) const RETRY: Duration = Duration::from_millis(500);

/// What became of a firing's message.
enum Fired {
    Published,
    /// CASIL blocked it: not published, and not to be tried again.
    Blocked,
}

/// The `RoomDelivery` of a firing's envelope, to every member of the room.
pub(crate) fn delivery(envelope: &Envelope) -> Bytes {
    RoomDelivery::of(envelope).encode()
}

/// What the scheduler needs to fire.
#[derive(Debug, Clone)]
pub(crate) struct Firing {
    pub(crate) bus: Bus,
    pub(crate) policy: PolicyControl,
    pub(crate) jobs: KvStore,
    pub(crate) metrics: CronMetrics,
}

/// The job's state after a firing attempt.
#[derive(Debug)]
pub(crate) enum State {
    /// Written by this replica at this revision.
    Stored(Box<Job>, u64),
    /// Finished and deleted.
    Deleted,
    /// Not changed by this replica (someone else changed it, or the bus failed).
    Unchanged,
}

/// What became of one due job.
#[derive(Debug)]
pub(crate) struct Outcome {
    pub(crate) key: String,
    pub(crate) state: State,
    /// This replica published this claimed iteration but could not confirm it.
    pub(crate) published: Option<u32>,
    /// Look at the job again this much later (a bus failure).
    pub(crate) retry: bool,
}

impl Outcome {
    fn new(key: &str, state: State) -> Self {
        Self {
            key: key.to_owned(),
            state,
            published: None,
            retry: false,
        }
    }

    fn retry(key: &str) -> Self {
        Self {
            retry: true,
            ..Self::new(key, State::Unchanged)
        }
    }
}

impl Firing {
    /// Handles one due job at `revision`: fires its next iteration, or settles its
    /// claimed one. `published` is the claimed iteration this replica already published.
    pub(crate) async fn run(
        &self,
        key: &str,
        job: Job,
        revision: u64,
        term: Term,
        published: Option<u32>,
    ) -> Outcome {
        match &job.claim {
            Some(claim) => {
                let claim = claim.clone();
                self.settle(key, job, revision, term, &claim, published)
                    .await
            }
            None => self.fire(key, job, revision, term).await,
        }
    }

    async fn fire(&self, key: &str, job: Job, revision: u64, term: Term) -> Outcome {
        let now = Utc::now();
        let Some(due) = job.next_fire_at else {
            return Outcome::new(key, State::Unchanged);
        };
        if !term.is_valid() {
            return Outcome::new(key, State::Unchanged);
        }
        let iteration = job.fired.saturating_add(1);
        let claimed = job.claimed(iteration, now, term.id);
        let revision = match self.jobs.update(key, claimed.encode(), revision).await {
            Ok(revision) => revision,
            // Cancelled, or changed by its owner's disconnect: nothing to fire.
            Err(BusError::WrongRevision) => return Outcome::new(key, State::Unchanged),
            Err(e) => {
                warn!(error = %e, key, "cannot claim a cron firing; trying again shortly");
                return Outcome::retry(key);
            }
        };
        if let Plan::Cron(times) = &job.plan {
            let skipped = times.count_between(due, now, MISSED_CAP);
            self.metrics.missed.inc_by(u64::from(skipped));
        }
        if now - due > LATE {
            self.metrics.late.inc();
        }
        self.publish_and_confirm(key, claimed, revision, term).await
    }

    /// A claim found on a job: confirm it if its message got out, publish it if it
    /// certainly did not, drop it if nobody can tell.
    async fn settle(
        &self,
        key: &str,
        job: Job,
        revision: u64,
        term: Term,
        claim: &Claim,
        published: Option<u32>,
    ) -> Outcome {
        if published == Some(claim.iteration) {
            return self.confirm(key, job, revision, claim.iteration).await;
        }
        match self.in_history(&job, claim).await {
            Some(true) => {
                self.metrics.recovered("already_delivered");
                self.confirm(key, job, revision, claim.iteration).await
            }
            Some(false) => {
                if Utc::now() - claim.claimed_at > LATE {
                    self.metrics.late.inc();
                }
                self.metrics.recovered("published");
                self.publish_and_confirm(key, job, revision, term).await
            }
            None => {
                warn!(
                    key,
                    iteration = claim.iteration,
                    "a claimed cron firing may or may not have been published, and the history cannot tell: it is not published again"
                );
                self.metrics.recovered("dropped");
                self.metrics.missed.inc();
                self.confirm(key, job, revision, claim.iteration).await
            }
        }
    }

    async fn publish_and_confirm(&self, key: &str, job: Job, revision: u64, term: Term) -> Outcome {
        let Some(iteration) = job.claim.as_ref().map(|c| c.iteration) else {
            return Outcome::new(key, State::Stored(Box::new(job), revision));
        };
        // The claim stays for the next holder if this replica's term ended meanwhile:
        // a holder never publishes after its lease could have expired.
        if !term.is_valid() {
            return Outcome::new(key, State::Stored(Box::new(job), revision));
        }
        match self.publish(&job, iteration).await {
            Ok(Fired::Published) => {
                self.metrics.firings.inc();
            }
            Ok(Fired::Blocked) => {
                self.metrics.blocked.inc();
            }
            Err(e) => {
                self.metrics.publish_errors.inc();
                warn!(error = %e, key, iteration, "cannot publish a cron message; trying again shortly");
                return Outcome {
                    retry: true,
                    ..Outcome::new(key, State::Stored(Box::new(job), revision))
                };
            }
        }
        self.confirm(key, job, revision, iteration).await
    }

    /// Inspects firing `iteration` (CASIL) and publishes what the policy lets through.
    async fn publish(&self, job: &Job, iteration: u32) -> Result<Fired, String> {
        // Each firing is a trace of its own (when the ratio picks it), linked to the call
        // that scheduled the job.
        let span = traces::start_span(
            |_| None,
            || {
                tracing::debug_span!(
                    parent: None,
                    "cron.fire",
                    arqonbus.entry = true,
                    otel.kind = "producer",
                    messaging.system = "arqonbus",
                    messaging.operation = "publish",
                    messaging.destination.name = %job.topic,
                    arqonbus.tenant = %job.tenant,
                    arqonbus.cron.job_id = %job.id.as_str(),
                    arqonbus.cron.iteration = iteration,
                )
            },
        );
        if let Some(scheduled_in) = &job.scheduled_in {
            traces::add_link(&span, scheduled_in);
        }
        let envelope = job.envelope(iteration, Timestamp::now());
        let Some(envelope) = self.inspect(job, envelope).instrument(span.clone()).await? else {
            return Ok(Fired::Blocked);
        };
        let delivery = delivery(&envelope);
        let mut headers = Headers::trace_context(&span);
        headers
            .insert(MSG_ID_HEADER, job.message_id(iteration))
            .map_err(|e| e.to_string())?;
        let published = self
            .bus
            .publish_with_headers(
                subject::room(&job.tenant, &job.topic),
                headers.clone(),
                delivery.clone(),
            )
            .instrument(span.clone())
            .await;
        if let Err(e) = &published {
            traces::set_error(&span, e.to_string());
        }
        published.map_err(|e| e.to_string())?;
        // The webhook queue is best effort here: the room got the message.
        if let Err(e) = self
            .bus
            .publish_with_headers(subject::webhook_queue(&job.tenant), headers, delivery)
            .await
        {
            debug!(error = %e, "cannot queue a cron message for webhooks");
        }
        Ok(Fired::Published)
    }

    /// The firing's envelope as CASIL lets it through (redacted, perhaps); `None` when
    /// the policy blocks it.
    async fn inspect(&self, job: &Job, envelope: Envelope) -> Result<Option<Envelope>, String> {
        let inspected = self
            .policy
            .inspect(policy_pb::InspectRequest {
                tenant: job.tenant.to_string(),
                envelope_json: envelope.to_json(),
                origin: format!("cron:{}", job.id.as_str()),
            })
            .await
            .map_err(|e| format!("CASIL inspection failed: {e}"))?;
        if inspected.envelope_json.is_empty() {
            warn!(
                tenant = %job.tenant,
                job_id = job.id.as_str(),
                reason = inspected.reason,
                "CASIL blocked a cron firing; it is not published"
            );
            return Ok(None);
        }
        Envelope::from_server_json(&inspected.envelope_json)
            .map(Some)
            .map_err(|e| {
                format!(
                    "the inspected envelope is unreadable: {}",
                    e.reasons().join("; ")
                )
            })
    }

    async fn confirm(&self, key: &str, job: Job, revision: u64, iteration: u32) -> Outcome {
        let unconfirmed = |job: Job| Outcome {
            published: Some(iteration),
            retry: true,
            ..Outcome::new(key, State::Stored(Box::new(job), revision))
        };
        if job.is_finished() {
            return match self.jobs.delete(key).await {
                Ok(()) => Outcome::new(key, State::Deleted),
                Err(e) => {
                    warn!(error = %e, key, "cannot remove a finished cron job; trying again shortly");
                    unconfirmed(job)
                }
            };
        }
        let confirmed = job.confirmed();
        match self.jobs.update(key, confirmed.encode(), revision).await {
            Ok(revision) => Outcome::new(key, State::Stored(Box::new(confirmed), revision)),
            Err(BusError::WrongRevision) => Outcome::new(key, State::Unchanged),
            Err(e) => {
                warn!(error = %e, key, "cannot confirm a cron firing; trying again shortly");
                unconfirmed(job)
            }
        }
    }

    /// Whether the room's history holds the claimed message: `None` when there is no
    /// history (it is off) or it cannot be read in full.
    async fn in_history(&self, job: &Job, claim: &Claim) -> Option<bool> {
        let history = match self
            .bus
            .open_history(&subject::history_stream(&job.tenant))
            .await
        {
            Ok(Some(history)) => history,
            Ok(None) => return None,
            Err(e) => {
                debug!(error = %e, "cannot open the history");
                return None;
            }
        };
        let room = subject::room(&job.tenant, &job.topic);
        let wanted = job.message_id(claim.iteration);
        let mut from = ReadFrom::Time(since(claim.claimed_at));
        for _ in 0..HISTORY_PAGES {
            let page = match history.read(&room, from, MAX_READ_LIMIT).await {
                Ok(page) => page,
                Err(e) => {
                    debug!(error = %e, "cannot read the history");
                    return None;
                }
            };
            if page
                .iter()
                .any(|stored| holds(stored.payload.clone(), &wanted))
            {
                return Some(true);
            }
            match page.last() {
                Some(last) if page.len() == MAX_READ_LIMIT => {
                    from = ReadFrom::Sequence(last.seq + 1);
                }
                _ => return Some(false),
            }
        }
        None
    }
}

fn since(claimed_at: DateTime<Utc>) -> DateTime<Utc> {
    claimed_at - CLOCK_SLACK
}

/// Whether a stored room delivery is of the envelope `id`: its head says (or its frame,
/// when it was stored without one).
fn holds(payload: Bytes, id: &str) -> bool {
    RoomDelivery::decode(payload)
        .ok()
        .is_some_and(|delivery| delivery.message_id().as_deref() == Some(id))
}

#[cfg(test)]
mod tests {
    use super::*;
    use arqon_protocol::MessageType;

    #[test]
    fn stored_firings_are_found_by_their_head_or_their_frame() {
        let mut envelope = Envelope::new(MessageType::Message);
        envelope.room = Some("science".into());
        envelope.channel = Some("general".into());
        let id = envelope.id.as_str().to_owned();
        assert!(holds(delivery(&envelope), &id));
        // Stored by a version that wrote no head.
        let headless = RoomDelivery {
            head: None,
            ..RoomDelivery::of(&envelope)
        };
        assert!(holds(headless.encode(), &id));
        assert!(!holds(delivery(&envelope), "arq_1_1_abcdef"));
        assert!(!holds(Bytes::from_static(b"\xff"), &id));
    }
}

/// Instructions per stored message of the search for a claimed firing, counted under
/// callgrind (see `scripts/pipeline-cpu.sh`).
#[cfg(test)]
mod cpu {
    use std::hint::black_box;

    use super::*;
    use arqon_protocol::{JsonObject, MessageId, MessageType};

    const MESSAGES: usize = 1000;

    #[test]
    #[ignore = "counts instructions under callgrind: scripts/pipeline-cpu.sh"]
    fn cpu_cron() {
        let text_len = std::env::var("ARQON_CPU_TEXT_BYTES")
            .ok()
            .and_then(|n| n.parse().ok())
            .unwrap_or(64);
        let text = "lorem ipsum ".repeat(text_len / 12 + 1);
        let stored: Vec<Bytes> = (0..MESSAGES)
            .map(|i| {
                let mut envelope = Envelope::new(MessageType::Message);
                envelope.id = MessageId::parse(&format!("arq_{i}_1_abcdef")).unwrap();
                envelope.room = Some("science".into());
                envelope.channel = Some("general".into());
                envelope.sender = Some("op-cron".into());
                envelope.payload =
                    JsonObject::parse(&format!(r#"{{"text":"{}","n":{i}}}"#, &text[..text_len]))
                        .unwrap();
                delivery(&envelope)
            })
            .collect();
        assert_eq!(stage_find(&stored, "arq_999_1_abcdef"), Some(MESSAGES - 1));
    }

    /// Looks for a firing's id among stored messages, as `in_history` does.
    #[inline(never)]
    fn stage_find(stored: &[Bytes], wanted: &str) -> Option<usize> {
        stored
            .iter()
            .position(|stored| black_box(holds(stored.clone(), wanted)))
    }
}
