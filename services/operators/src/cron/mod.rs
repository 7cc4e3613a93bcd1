//! `op.cron`: messages published on a schedule into a room of the owner's tenant, after
//! a delay and then every interval (the original's jobs), or at the times of a cron
//! expression in a time zone.
//!
//! Jobs live in the `arqon_cron` bucket (`job.rs`), so any replica answers the API
//! (`api.rs`) and a restart loses nothing. Every replica mirrors the bucket and cleans up
//! after owners that disconnect (`scheduler.rs`); only the holder of the lease
//! (`arqon_bus::lease`) fires, and each firing is claimed with a compare-and-set before it is
//! published (`fire.rs`), so an iteration is published at most once even when the
//! replica that fires dies, and exactly once when the history can tell whether a claimed
//! message got out. The reasoning is in `docs/operators-cron.md`.

mod api;
mod fire;
mod job;
mod metrics;
mod request;
mod scheduler;
mod settings;

#[cfg(test)]
mod tests;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use arqon_bus::lease;
use arqon_proto::layout;
use arqon_protocol::subject;

use crate::{OperatorsError, Shared};
use fire::Firing;
use scheduler::Scheduler;

pub use api::CronApi;
pub use metrics::CronMetrics;
pub use settings::CronSettings;

/// Opens the jobs and the lease, and starts this replica's scheduler and lease holder;
/// both run until `shutdown` (the lease is released once the scheduler has stopped).
pub(crate) async fn start(
    shared: &Shared,
    settings: &CronSettings,
    tasks: &TaskTracker,
    shutdown: CancellationToken,
) -> Result<CronApi, OperatorsError> {
    let bus = &shared.bus;
    let jobs = bus.key_value(layout::cron(bus)).await?;
    let timings = settings.lease();
    let lease_bucket = bus
        .key_value(layout::lease(subject::CRON_LEASE_BUCKET, timings.ttl))
        .await?;
    let watch = jobs.watch_all_with_history().await?;
    let metrics = shared.metrics.cron.clone();
    let (terms, leadership) = watch::channel(None);
    let release = CancellationToken::new();
    let leader = metrics.leader.clone();
    tasks.spawn(lease::hold(
        lease_bucket,
        ("cron lease", "fires the jobs"),
        timings,
        terms,
        move |leading| {
            leader.set(i64::from(leading));
        },
        release.clone(),
    ));
    let firing = Firing {
        bus: bus.clone(),
        policy: shared.policy.clone(),
        jobs: jobs.clone(),
        metrics,
    };
    let notices = shared.owners.subscribe();
    let scheduler = Scheduler::new(firing, shared.owners.clone(), leadership);
    tasks.spawn(async move {
        scheduler.run(watch, notices, shutdown).await;
        release.cancel();
    });
    Ok(CronApi::new(jobs, settings.clone()))
}
