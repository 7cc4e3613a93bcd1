//! The live policy: one key of a KV bucket holds it with its version, every replica
//! follows that key and swaps its compiled engine atomically when it changes.
//!
//! A reload is a compare-and-set on the key, so two reloads never both win and versions
//! never repeat. An inspection loads the engine once ([`Store::current`]), so no message
//! sees half of a policy. Edges follow the same key to let envelopes the policy does not
//! apply to skip this stage; a reload is answered once this replica and every live edge
//! that does so have applied it ([`Store::wait_for_edges`], ADR 019).

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use bytes::Bytes;
use chrono::{DateTime, SecondsFormat, Utc};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use arqon_bus::{Bus, BusError, KvEvent, KvStore, KvWatch};
use arqon_casil::{Engine, Policy, PolicyError as Invalid, Record};
use arqon_proto::layout::{self, EdgeLiveness};
use arqon_protocol::subject::CASIL_POLICY_KEY;

use crate::metrics::PolicyMetrics;

/// How long a replica waits for the bus to show it the stored policy (at start) or its
/// own reload (before answering).
const APPLY_TIMEOUT: Duration = Duration::from_secs(5);
/// Reloads racing for the same version are retried this many times.
const RELOAD_ATTEMPTS: usize = 5;
/// How long a reload waits for every live edge that lets envelopes skip the policy stage
/// to apply the new version before answering anyway (a crashed edge's key lasts
/// `EDGE_TTL`). With the wait for this replica, within the callers' 10 s bound.
const EDGES_APPLY_TIMEOUT: Duration = Duration::from_secs(3);
/// Between two looks at the edges' reports.
const EDGES_POLL: Duration = Duration::from_millis(20);

/// The policy this replica applies now.
#[derive(Debug)]
pub(crate) struct Live {
    pub(crate) record: Record,
    pub(crate) engine: Engine,
}

/// Why a reload was refused.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ReloadError {
    /// The candidate is not a valid policy; the live one is untouched.
    #[error("{0}")]
    Invalid(#[from] Invalid),
    /// The caller asked to replace a version that is no longer live.
    #[error("the live policy is version {live}, not {expected}")]
    Conflict { expected: u64, live: u64 },
    #[error("bus: {0}")]
    Bus(#[from] BusError),
    #[error("the stored policy cannot be read: {0}")]
    Corrupt(String),
}

/// The bucket, and this replica's view of it.
#[derive(Clone)]
pub(crate) struct Store {
    kv: KvStore,
    /// The live edges' keys, where each reports the version it routes by.
    edges: KvStore,
    live: Arc<ArcSwap<Live>>,
    applied: watch::Sender<u64>,
    metrics: PolicyMetrics,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("version", &self.current().record.version)
            .finish_non_exhaustive()
    }
}

/// Why the store could not open.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("bus: {0}")]
    Bus(#[from] BusError),
    #[error("the CASIL policy from the settings is invalid: {0}")]
    InvalidSeed(Invalid),
    #[error("the stored CASIL policy (version {version}) is invalid: {problems}")]
    InvalidStored { version: u64, problems: String },
    #[error("the stored CASIL policy cannot be read: {0}")]
    Corrupt(String),
    #[error("the bus did not show the stored CASIL policy within {0:?}")]
    Timeout(Duration),
}

fn now() -> String {
    Utc::now().to_rfc3339_opts(SecondsFormat::Micros, true)
}

impl Store {
    /// Stores `seed` as version 1 if the bus has no policy, then loads the stored one.
    /// Returns the store and the watch [`Store::follow`] consumes.
    pub(crate) async fn open(
        bus: &Bus,
        seed: Policy,
        metrics: PolicyMetrics,
    ) -> Result<(Self, KvWatch), OpenError> {
        Engine::compile(seed.clone()).map_err(OpenError::InvalidSeed)?;
        let kv = bus.key_value(layout::casil(bus)).await?;
        let edges = bus.key_value(layout::edges()).await?;
        let first = Record {
            version: 1,
            updated_at: now(),
            updated_by: "settings".to_owned(),
            policy: seed,
        };
        match kv
            .create(CASIL_POLICY_KEY, Bytes::from(first.encode()))
            .await
        {
            Ok(_) => {
                info!("no CASIL policy on the bus: stored the one from the settings as version 1")
            }
            Err(BusError::AlreadyExists) => {
                info!(
                    "using the CASIL policy stored on the bus (ARQONBUS_CASIL_* settings only seed a bus that has none)"
                );
            }
            Err(e) => return Err(e.into()),
        }
        // Watch first, so no version written from now on is missed.
        let mut watch = kv.watch_all_with_history().await?;
        let stored = tokio::time::timeout(APPLY_TIMEOUT, first_record(&mut watch))
            .await
            .map_err(|_| OpenError::Timeout(APPLY_TIMEOUT))??;
        let engine =
            Engine::compile(stored.policy.clone()).map_err(|e| OpenError::InvalidStored {
                version: stored.version,
                problems: e.to_string(),
            })?;
        let version = stored.version;
        metrics
            .version
            .set(i64::try_from(version).unwrap_or(i64::MAX));
        info!(version, "CASIL policy applied");
        let store = Self {
            kv,
            edges,
            live: Arc::new(ArcSwap::from_pointee(Live {
                record: stored,
                engine,
            })),
            applied: watch::Sender::new(version),
            metrics,
        };
        Ok((store, watch))
    }

    /// The policy to inspect the next envelope with.
    pub(crate) fn current(&self) -> Arc<Live> {
        self.live.load_full()
    }

    /// Applies every new version the bus shows, until `shutdown`.
    pub(crate) async fn follow(self, mut watch: KvWatch, shutdown: CancellationToken) {
        loop {
            let event = tokio::select! {
                () = shutdown.cancelled() => break,
                event = watch.next() => event,
            };
            match event {
                Some(Ok(event)) => self.on_event(event),
                Some(Err(e)) => {
                    warn!(error = %e, "CASIL policy watch interrupted; it resumes by itself")
                }
                None => {
                    // The bucket's own follow watches again (from the stored version on,
                    // which `apply` skips when it is not newer).
                    warn!("CASIL policy watch ended; following the bucket again");
                    let kv = self.kv.clone();
                    kv.follow("CASIL policy", shutdown.cancelled(), |event| {
                        self.on_event(event);
                    })
                    .await;
                    break;
                }
            }
        }
    }

    fn on_event(&self, event: KvEvent) {
        if event.key == CASIL_POLICY_KEY
            && let Some(value) = event.value
        {
            self.apply(&value);
        }
    }

    fn apply(&self, value: &[u8]) {
        let record = match Record::decode(value) {
            Ok(record) => record,
            Err(e) => {
                self.metrics
                    .reloads
                    .get_or_create(&outcome("unreadable"))
                    .inc();
                error!(error = %e, "a stored CASIL policy cannot be read; keeping the live one");
                return;
            }
        };
        let live = self.current().record.version;
        if record.version <= live {
            return;
        }
        match Engine::compile(record.policy.clone()) {
            Ok(engine) => {
                let version = record.version;
                if let Some(age) = age(&record.updated_at) {
                    self.metrics.propagation.observe(age.as_secs_f64());
                }
                self.live.store(Arc::new(Live { record, engine }));
                self.metrics
                    .version
                    .set(i64::try_from(version).unwrap_or(i64::MAX));
                self.metrics
                    .reloads
                    .get_or_create(&outcome("applied"))
                    .inc();
                self.applied.send_replace(version);
                info!(version, "CASIL policy applied");
            }
            Err(e) => {
                self.metrics
                    .reloads
                    .get_or_create(&outcome("invalid"))
                    .inc();
                error!(version = record.version, error = %e, "a stored CASIL policy is invalid here; keeping the live one");
            }
        }
    }

    /// Stores the policy `change` makes of the live one as the next version and waits
    /// until this replica applies it. With `expected`, only if that version is live.
    pub(crate) async fn reload(
        &self,
        expected: Option<u64>,
        actor: &str,
        change: impl Fn(&Policy) -> Result<Policy, Invalid>,
    ) -> Result<Arc<Live>, ReloadError> {
        self.store_next(expected, actor, |live| change(live).map(Some))
            .await?;
        Ok(self.current())
    }

    /// Makes `policy` the live one unless it already is: returns the live version and
    /// whether a new one was written (and applied here).
    pub(crate) async fn ensure(
        &self,
        actor: &str,
        policy: Policy,
    ) -> Result<(u64, bool), ReloadError> {
        self.store_next(None, actor, |live| {
            Ok((*live != policy).then(|| policy.clone()))
        })
        .await
    }

    /// The compare-and-set both [`Store::reload`] and [`Store::ensure`] make: `change`
    /// gives the next policy, or `None` to leave the stored one.
    async fn store_next(
        &self,
        expected: Option<u64>,
        actor: &str,
        change: impl Fn(&Policy) -> Result<Option<Policy>, Invalid>,
    ) -> Result<(u64, bool), ReloadError> {
        let mut attempt = 0;
        let version = loop {
            attempt += 1;
            let (stored, revision) = self.stored().await?;
            if let Some(expected) = expected.filter(|v| *v != stored.version) {
                return Err(ReloadError::Conflict {
                    expected,
                    live: stored.version,
                });
            }
            let Some(policy) = change(&stored.policy)? else {
                return Ok((stored.version, false));
            };
            Engine::compile(policy.clone())?;
            let next = Record {
                version: stored.version + 1,
                updated_at: now(),
                updated_by: actor.to_owned(),
                policy,
            };
            match self
                .kv
                .update(CASIL_POLICY_KEY, Bytes::from(next.encode()), revision)
                .await
            {
                Ok(_) => break next.version,
                Err(BusError::WrongRevision) if attempt < RELOAD_ATTEMPTS => {}
                Err(BusError::WrongRevision) => {
                    return Err(ReloadError::Conflict {
                        expected: stored.version,
                        live: stored.version + 1,
                    });
                }
                Err(e) => return Err(e.into()),
            }
        };
        info!(version, actor, "CASIL policy reloaded");
        let mut applied = self.applied.subscribe();
        let reached = tokio::time::timeout(APPLY_TIMEOUT, applied.wait_for(|v| *v >= version))
            .await
            .is_ok_and(|waited| waited.is_ok());
        if !reached {
            warn!(version, "stored, but not yet applied here; it will be");
        }
        self.wait_for_edges(version).await;
        Ok((version, true))
    }

    /// Waits until no live edge reports routing by a version older than `version`, at
    /// most [`EDGES_APPLY_TIMEOUT`]. An edge that reports no version sends every envelope
    /// through this stage, so it is not waited for; one that cannot be confirmed in time
    /// is named in the log and counted, and the reload is answered anyway (it is stored,
    /// and the edge applies it as its watch delivers it).
    async fn wait_for_edges(&self, version: u64) {
        let deadline = tokio::time::Instant::now() + EDGES_APPLY_TIMEOUT;
        let behind = loop {
            let behind = match self.edges_behind(version).await {
                Ok(behind) if behind.is_empty() => {
                    self.metrics
                        .edge_waits
                        .get_or_create(&outcome("confirmed"))
                        .inc();
                    return;
                }
                Ok(behind) => behind,
                Err(e) => vec![format!("(the edges cannot be read: {e})")],
            };
            if tokio::time::Instant::now() + EDGES_POLL >= deadline {
                break behind;
            }
            tokio::time::sleep(EDGES_POLL).await;
        };
        self.metrics
            .edge_waits
            .get_or_create(&outcome("timeout"))
            .inc();
        warn!(
            version,
            edges = ?behind,
            "answering the reload before these edges confirmed it: until they apply it, they may let envelopes skip the policy stage under the previous version"
        );
    }

    /// The live edges that report routing by a version older than `version`.
    async fn edges_behind(&self, version: u64) -> Result<Vec<String>, BusError> {
        let entries = self.edges.entries_matching(">").await?;
        Ok(entries
            .into_iter()
            .filter(|entry| {
                EdgeLiveness::decode(&entry.value)
                    .casil_version
                    .is_some_and(|applied| applied < version)
            })
            .map(|entry| entry.key)
            .collect())
    }

    /// The versions the bucket still keeps, oldest first (the live one last); a version
    /// this replica cannot read is left out and logged.
    pub(crate) async fn versions(&self) -> Result<Vec<Record>, BusError> {
        let kept = self.kv.history(CASIL_POLICY_KEY).await?;
        Ok(kept
            .iter()
            .filter_map(|entry| {
                Record::decode(&entry.value)
                    .inspect_err(|e| warn!(revision = entry.revision, error = %e, "a stored CASIL version cannot be read"))
                    .ok()
            })
            .collect())
    }

    async fn stored(&self) -> Result<(Record, u64), ReloadError> {
        let entry = self
            .kv
            .get(CASIL_POLICY_KEY)
            .await?
            .ok_or_else(|| ReloadError::Corrupt("the policy key is missing".to_owned()))?;
        let record = Record::decode(&entry.value).map_err(ReloadError::Corrupt)?;
        Ok((record, entry.revision))
    }
}

async fn first_record(watch: &mut KvWatch) -> Result<Record, OpenError> {
    while let Some(event) = watch.next().await {
        let event = event?;
        if event.key == CASIL_POLICY_KEY
            && let Some(value) = event.value
        {
            return Record::decode(&value).map_err(OpenError::Corrupt);
        }
    }
    Err(OpenError::Corrupt("the policy watch ended".to_owned()))
}

fn outcome(outcome: &'static str) -> crate::metrics::ReloadLabels {
    crate::metrics::ReloadLabels { outcome }
}

/// How long ago `updated_at` was (None if unreadable or in the future).
fn age(updated_at: &str) -> Option<Duration> {
    let at = DateTime::parse_from_rfc3339(updated_at).ok()?;
    (Utc::now() - at.with_timezone(&Utc)).to_std().ok()
}
