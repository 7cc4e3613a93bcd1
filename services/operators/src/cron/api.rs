//! The `Cron` gRPC API: schedule, list and cancel, straight against the jobs bucket, so
//! any replica answers any call.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use futures_util::StreamExt;
use tokio::time::Instant;
use tracing::{debug, warn};

use arqon_bus::{BusError, Bytes, KvStore};
use arqon_proto::layout;
use arqon_proto::operators::v1 as pb;
use arqon_protocol::Timestamp;
use arqon_telemetry::traces;

use super::job::{Job, JobId};
use super::request::NewJob;
use super::scheduler::CANCELLED;
use super::settings::CronSettings;
use crate::caller::Caller;
use crate::error::{ApiError, bus_failure, conflict, forbidden, grpc_api, not_found, validation};

/// How long a cancel waits for a firing in progress to be confirmed, so that nothing is
/// published after it answers.
const CLAIM_WAIT: Duration = Duration::from_secs(2);
const CLAIM_POLL: Duration = Duration::from_millis(10);
/// Jobs read at once by `List`.
const READS: usize = 16;

grpc_api!(CronApi: pb::cron_server::Cron {
    schedule(ScheduleRequest) -> CronJob,
    list(ListJobsRequest) -> ListJobsResponse,
    cancel(CancelJobRequest) -> CancelJobResponse,
});

/// The cron API of one replica.
#[derive(Debug, Clone)]
pub struct CronApi {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    jobs: KvStore,
    settings: CronSettings,
}

impl CronApi {
    pub(crate) fn new(jobs: KvStore, settings: CronSettings) -> Self {
        Self {
            inner: Arc::new(Inner { jobs, settings }),
        }
    }

    async fn schedule(&self, request: pb::ScheduleRequest) -> Result<pb::CronJob, ApiError> {
        let caller = Caller::try_from(request.caller.clone())?;
        let now = Utc::now();
        let new = NewJob::validate(&request, &self.inner.settings, now).map_err(validation)?;
        let jobs = &self.inner.jobs;
        let verb = "schedule a cron job";
        let existing = jobs
            .keys_matching(&layout::tenant_keys(&caller.tenant))
            .await
            .map_err(|e| bus_failure(verb, &e))?;
        let max = self.inner.settings.max_jobs_per_tenant;
        if existing.len() >= max as usize {
            return Err(validation(format!(
                "Cron job limit reached: at most {max} jobs per tenant"
            )));
        }
        let job = Job {
            id: JobId::generate(),
            tenant: caller.tenant.clone(),
            owner: caller.client_id.to_string(),
            topic: new.topic,
            payload: new.payload,
            persistent: new.persistent,
            plan: new.plan,
            repeat_count: new.repeat_count,
            created_at: Timestamp::from(now),
            fired: 0,
            next_fire_at: Some(new.first_fire),
            claim: None,
            scheduled_in: scheduling_context(),
        };
        match jobs.create(&job.key(), job.encode()).await {
            Ok(_) => {
                debug!(job_id = %job.id, tenant = %job.tenant, "cron job scheduled");
                Ok(job.to_pb())
            }
            Err(e) => Err(bus_failure(verb, &e)),
        }
    }

    async fn list(&self, request: pb::ListJobsRequest) -> Result<pb::ListJobsResponse, ApiError> {
        let caller = Caller::try_from(request.caller)?;
        let jobs = &self.inner.jobs;
        let verb = "list cron jobs";
        let keys = jobs
            .keys_matching(&layout::tenant_keys(&caller.tenant))
            .await
            .map_err(|e| bus_failure(verb, &e))?;
        let entries: Vec<_> = futures_util::stream::iter(keys)
            .map(|key| async move { jobs.get(&key).await })
            .buffered(READS)
            .collect()
            .await;
        let mut listed = Vec::new();
        for entry in entries {
            let Some(entry) = entry.map_err(|e| bus_failure(verb, &e))? else {
                continue;
            };
            if entry.value.as_ref() == CANCELLED {
                continue;
            }
            match Job::decode(&entry.value) {
                Ok(job) if !job.is_finished() && caller.may_manage(&job.tenant, &job.owner) => {
                    listed.push(job);
                }
                Ok(_) => {}
                Err(e) => warn!(key = entry.key, error = %e, "unreadable cron job: not listed"),
            }
        }
        listed.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
        Ok(pb::ListJobsResponse {
            jobs: listed.iter().map(Job::to_pb).collect(),
        })
    }

    /// Waits out a firing in progress, then marks the job cancelled with a
    /// compare-and-set (so a claim racing with it fails), then deletes it.
    async fn cancel(
        &self,
        request: pb::CancelJobRequest,
    ) -> Result<pb::CancelJobResponse, ApiError> {
        let caller = Caller::try_from(request.caller)?;
        let given = request.job_id.trim();
        if given.is_empty() {
            return Err(validation("'job_id' is required"));
        }
        let missing = || not_found(format!("Cron job '{given}' not found"));
        let id = JobId::parse(given).ok_or_else(missing)?;
        let key = layout::tenant_key(&caller.tenant, &id);
        let jobs = &self.inner.jobs;
        let verb = "cancel a cron job";
        let deadline = Instant::now() + CLAIM_WAIT;
        loop {
            let entry = jobs
                .get(&key)
                .await
                .map_err(|e| bus_failure(verb, &e))?
                .filter(|entry| entry.value.as_ref() != CANCELLED)
                .ok_or_else(missing)?;
            let job = Job::decode(&entry.value).map_err(|e| {
                warn!(key, error = %e, "unreadable cron job: cannot be cancelled");
                missing()
            })?;
            if job.is_finished() {
                return Err(missing());
            }
            if !caller.may_manage(&job.tenant, &job.owner) {
                return Err(forbidden("Cannot cancel cron job owned by another client"));
            }
            let in_progress = job.claim.is_some() && Instant::now() < deadline;
            if in_progress {
                tokio::time::sleep(CLAIM_POLL).await;
                continue;
            }
            let mark = jobs
                .update(&key, Bytes::from_static(CANCELLED), entry.revision)
                .await;
            match mark {
                Ok(_) => break,
                // Claimed (or otherwise changed) meanwhile: look again.
                Err(BusError::WrongRevision) if Instant::now() < deadline + CLAIM_WAIT => {}
                Err(BusError::WrongRevision) => {
                    return Err(conflict(
                        "The cron job kept changing while it was being cancelled; try again",
                    ));
                }
                Err(e) => return Err(bus_failure(verb, &e)),
            }
        }
        if let Err(e) = jobs.delete(&key).await {
            // The mark already stops it; the lease holder's sweep deletes it later.
            debug!(error = %e, key, "cannot delete a cancelled cron job yet");
        }
        debug!(job_id = %id, tenant = %caller.tenant, "cron job cancelled");
        Ok(pb::CancelJobResponse {
            job_id: id.to_string(),
        })
    }
}

/// The `traceparent` of the current span, when traced.
fn scheduling_context() -> Option<String> {
    let mut traceparent = None;
    traces::inject(&tracing::Span::current(), |name, value| {
        if name == traces::TRACEPARENT {
            traceparent = Some(value);
        }
    });
    traceparent
}
