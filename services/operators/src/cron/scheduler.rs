//! The scheduler every replica runs. Each follows the jobs bucket into a local mirror
//! (`watch_all_with_history`) with a min-heap of due times, and removes the jobs of
//! owners that disconnect (unless `persistent`). Only the lease holder fires, and sweeps
//! the jobs of owners whose edge died without a word.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet, VecDeque};
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures_util::StreamExt;
use tokio::sync::broadcast::{self, error::RecvError};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use arqon_bus::{KvEvent, KvStore, KvWatch};
use arqon_protocol::{ClientId, subject};

use super::fire::{Firing, Outcome, RETRY, State};
use super::job::Job;
use crate::owners::{self, Owners};
use arqon_bus::lease::{self, Leadership, Term};

/// The value a cancel writes (compare-and-set) before deleting the key: a job with it
/// is gone.
pub(crate) const CANCELLED: &[u8] = b"cancelled";
/// Due jobs taken per round; the rest wait for the next.
const BATCH: usize = 256;
/// Jobs fired at once (different jobs: one job's firings stay in order).
const CONCURRENCY: usize = 16;
/// The longest the loop sleeps without looking at its term and the heap again.
const TICK: Duration = Duration::from_secs(1);
/// How long a disconnected owner is remembered, for jobs it created just before.
const GONE_MEMORY: Duration = Duration::from_secs(60);
const GONE_CAPACITY: usize = 10_000;

type Due = Reverse<(DateTime<Utc>, String, u64)>;

/// One replica's scheduler.
pub(crate) struct Scheduler {
    pub(crate) firing: Firing,
    pub(crate) owners: Owners,
    pub(crate) leadership: Leadership,
    mirror: HashMap<String, (Job, u64)>,
    /// Keys holding [`CANCELLED`]: deleted by the holder's sweep if the cancel could not.
    cancelled: HashSet<String>,
    /// Due times, kept only while leading (for the term it was built in).
    heap: BinaryHeap<Due>,
    heap_term: Option<u64>,
    /// Claimed iterations this replica published but could not confirm.
    published: HashMap<String, u32>,
    gone: RecentlyGone,
    /// Keys whose owner's edge was missing at the last sweep.
    suspects: HashSet<String>,
}

impl Scheduler {
    pub(crate) fn new(firing: Firing, owners: Owners, leadership: Leadership) -> Self {
        Self {
            firing,
            owners,
            leadership,
            mirror: HashMap::new(),
            cancelled: HashSet::new(),
            heap: BinaryHeap::new(),
            heap_term: None,
            published: HashMap::new(),
            gone: RecentlyGone::default(),
            suspects: HashSet::new(),
        }
    }

    fn jobs(&self) -> &KvStore {
        &self.firing.jobs
    }

    /// Runs until `shutdown`. `watch` follows the jobs bucket from its current state;
    /// `notices` are the owners that disconnect.
    pub(crate) async fn run(
        mut self,
        mut watch: KvWatch,
        mut notices: broadcast::Receiver<ClientId>,
        shutdown: CancellationToken,
    ) {
        let mut notices_open = true;
        let mut sweep = tokio::time::interval(subject::EDGE_HEARTBEAT);
        sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let term = lease::current(&self.leadership);
            self.align_heap(term);
            let wake = self.next_wake(term);
            tokio::select! {
                biased;
                () = shutdown.cancelled() => break,
                event = watch.next() => match event {
                    Some(Ok(event)) => self.apply_event(event).await,
                    Some(Err(e)) => {
                        debug!(error = %e, "the cron jobs watch failed; it resumes on its own");
                    }
                    None => match self.reopen().await {
                        Some(reopened) => watch = reopened,
                        None => tokio::time::sleep(RETRY).await,
                    },
                },
                notice = notices.recv(), if notices_open => match notice {
                    Ok(client) => self.owner_gone(client).await,
                    Err(RecvError::Lagged(missed)) => {
                        warn!(missed, "missed disconnect notices; their jobs stay until cancelled");
                    }
                    Err(RecvError::Closed) => notices_open = false,
                },
                _ = sweep.tick(), if term.is_some() => self.sweep().await,
                changed = self.leadership.changed() => if changed.is_err() { break },
                () = tokio::time::sleep_until(wake) => {
                    if let Some(term) = term {
                        self.fire_due(term).await;
                    }
                }
            }
        }
    }

    /// When to look at the heap again: its first due time (when leading), at most a
    /// [`TICK`] away, and never after the term ends.
    fn next_wake(&self, term: Option<Term>) -> Instant {
        let now = Instant::now();
        let Some(term) = term else {
            return now + TICK;
        };
        let until_due = self.heap.peek().map_or(TICK, |Reverse((due, _, _))| {
            (*due - Utc::now()).to_std().unwrap_or(Duration::ZERO)
        });
        (now + until_due.min(TICK)).min(term.until)
    }

    /// Builds the heap from the mirror when this replica starts leading (or when stale
    /// entries piled up), and drops it when it stops.
    fn align_heap(&mut self, term: Option<Term>) {
        let id = term.map(|t| t.id);
        if id == self.heap_term && self.heap.len() <= 2 * self.mirror.len() + BATCH {
            return;
        }
        self.heap_term = id;
        self.heap.clear();
        if id.is_some() {
            for (key, (job, revision)) in &self.mirror {
                if let Some(due) = job.due_at() {
                    self.heap.push(Reverse((due, key.clone(), *revision)));
                }
            }
        }
    }

    async fn reopen(&mut self) -> Option<KvWatch> {
        match self.jobs().watch_all_with_history().await {
            Ok(watch) => Some(watch),
            Err(e) => {
                warn!(error = %e, "cannot follow the cron jobs bucket; retrying");
                None
            }
        }
    }

    async fn apply_event(&mut self, event: KvEvent) {
        let KvEvent {
            key,
            value,
            revision,
        } = event;
        match value {
            Some(bytes) if bytes.as_ref() != CANCELLED => match Job::decode(&bytes) {
                Ok(job) => {
                    let new = !self.mirror.contains_key(&key);
                    let owner_gone = !job.persistent && self.gone.contains(&job.owner);
                    self.apply(key.clone(), job, revision, true);
                    if new && owner_gone {
                        self.remove_job(&key).await;
                    }
                }
                Err(e) => warn!(key, error = %e, "unreadable cron job: ignored"),
            },
            value => {
                if self.mirror.get(&key).is_none_or(|(_, r)| *r < revision) {
                    self.mirror.remove(&key);
                    self.published.remove(&key);
                    self.suspects.remove(&key);
                }
                if value.is_some() {
                    self.cancelled.insert(key);
                } else {
                    self.cancelled.remove(&key);
                }
                self.count_jobs();
            }
        }
    }

    /// Records `job` at `revision` unless an equal or newer one is known; `schedule`:
    /// also put it on the heap at its due time.
    fn apply(&mut self, key: String, job: Job, revision: u64, schedule: bool) {
        if self.mirror.get(&key).is_some_and(|(_, r)| *r >= revision) {
            return;
        }
        if job.claim.is_none() {
            self.published.remove(&key);
        }
        if schedule
            && self.heap_term.is_some()
            && let Some(due) = job.due_at()
        {
            self.heap.push(Reverse((due, key.clone(), revision)));
        }
        self.cancelled.remove(&key);
        self.mirror.insert(key, (job, revision));
        self.count_jobs();
    }

    fn count_jobs(&self) {
        let count = i64::try_from(self.mirror.len()).unwrap_or(i64::MAX);
        self.firing.metrics.jobs.set(count);
    }

    /// Fires (or settles) every job due now, as long as the term lasts.
    async fn fire_due(&mut self, term: Term) {
        let now = Utc::now();
        let mut batch = Vec::new();
        let mut taken = HashSet::new();
        while batch.len() < BATCH
            && let Some(Reverse((due, _, _))) = self.heap.peek()
            && *due <= now
        {
            let Some(Reverse((_, key, revision))) = self.heap.pop() else {
                break;
            };
            match self.mirror.get(&key) {
                Some((job, current)) if *current == revision && taken.insert(key.clone()) => {
                    let published = self.published.get(&key).copied();
                    batch.push((key, job.clone(), revision, published));
                }
                // Stale: a newer revision has its own entry, or the job is gone.
                _ => {}
            }
        }
        let firing = &self.firing;
        let outcomes: Vec<Outcome> = futures_util::stream::iter(batch)
            .map(|(key, job, revision, published)| async move {
                firing.run(&key, job, revision, term, published).await
            })
            .buffer_unordered(CONCURRENCY)
            .collect()
            .await;
        for outcome in outcomes {
            self.settle(outcome);
        }
    }

    fn settle(&mut self, outcome: Outcome) {
        let Outcome {
            key,
            state,
            published,
            retry,
        } = outcome;
        match state {
            State::Stored(job, revision) => self.apply(key.clone(), *job, revision, !retry),
            State::Deleted => {
                self.mirror.remove(&key);
                self.published.remove(&key);
                self.count_jobs();
            }
            State::Unchanged => {}
        }
        if let Some(iteration) = published {
            self.published.insert(key.clone(), iteration);
        }
        if retry && let Some((_, revision)) = self.mirror.get(&key) {
            let at = Utc::now() + RETRY;
            self.heap.push(Reverse((at, key, *revision)));
        }
    }

    /// Removes the jobs `client` owned without `persistent`. Every replica does it
    /// (deleting twice is harmless), so a notice reaches someone even between leases.
    async fn owner_gone(&mut self, client: ClientId) {
        let keys: Vec<String> = self
            .mirror
            .iter()
            .filter(|(_, (job, _))| !job.persistent && job.owner == client.as_str())
            .map(|(key, _)| key.clone())
            .collect();
        self.gone.insert(client);
        for key in keys {
            self.remove_job(&key).await;
        }
    }

    async fn remove_job(&self, key: &str) {
        if let Err(e) = self.jobs().delete(key).await {
            warn!(error = %e, key, "cannot remove a cron job of a disconnected owner");
        }
    }

    /// The holder's periodic clean-up: jobs (not `persistent`) whose owner's edge has
    /// been missing from the live edges at two sweeps in a row (one miss could be a
    /// bucket that is refilling after a restart), and cancels whose delete failed.
    async fn sweep(&mut self) {
        for key in std::mem::take(&mut self.cancelled) {
            self.remove_job(&key).await;
        }
        let live = match self.owners.live_edges().await {
            Ok(live) => live,
            Err(e) => {
                owners::sweep_failed(&e);
                return;
            }
        };
        let missing: HashSet<String> = self
            .mirror
            .iter()
            .filter(|(_, (job, _))| {
                !job.persistent
                    && ClientId::parse(&job.owner)
                        .is_some_and(|owner| !Owners::is_connected_somewhere(&live, &owner))
            })
            .map(|(key, _)| key.clone())
            .collect();
        let (remove, suspect): (Vec<String>, Vec<String>) = missing
            .into_iter()
            .partition(|key| self.suspects.contains(key));
        self.suspects = suspect.into_iter().collect();
        for key in remove {
            self.remove_job(&key).await;
        }
    }
}

/// Owners that disconnected recently (bounded in time and number).
#[derive(Debug, Default)]
struct RecentlyGone {
    order: VecDeque<(Instant, String)>,
    set: HashSet<String>,
}

impl RecentlyGone {
    fn insert(&mut self, client: ClientId) {
        self.expire();
        if self.order.len() >= GONE_CAPACITY
            && let Some((_, oldest)) = self.order.pop_front()
        {
            self.set.remove(&oldest);
        }
        let client = client.as_str().to_owned();
        if self.set.insert(client.clone()) {
            self.order.push_back((Instant::now(), client));
        }
    }

    fn contains(&mut self, client: &str) -> bool {
        self.expire();
        self.set.contains(client)
    }

    fn expire(&mut self) {
        while let Some((at, _)) = self.order.front()
            && at.elapsed() > GONE_MEMORY
        {
            if let Some((_, client)) = self.order.pop_front() {
                self.set.remove(&client);
            }
        }
    }
}
