//! One replica at a time: the holder of the one key of a lease bucket, whose `max_age`
//! is the lease's length (the cron scheduler's firing, the policy's Kubernetes watcher).
//! A replica takes the lease with `create` (it succeeds only when the key expired or was
//! released) and renews it with a compare-and-set `update`; it counts itself the holder
//! only until a local deadline that falls before the server can expire the key, so two
//! replicas never both believe they hold it.

use std::time::Duration;

use bytes::Bytes;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::{BusError, KvStore};

/// The one key of the lease bucket.
const LEASE_KEY: &str = "leader";

/// How long a lease lasts and how its holder keeps it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseTimings {
    /// The bucket's `max_age`: a lease not renewed for this long disappears.
    pub ttl: Duration,
    /// How often the holder renews.
    pub renew_every: Duration,
    /// The holder stops acting this long before its lease could expire (counted from
    /// the moment it sent the renewal, so the server's expiry is always later).
    pub fence_margin: Duration,
    /// How often the others try to take a lease that may have expired.
    pub acquire_every: Duration,
}

impl LeaseTimings {
    /// Renewals every third of `ttl`, a fence of a fifth, attempts every quarter.
    pub fn for_ttl(ttl: Duration) -> Self {
        Self {
            ttl,
            renew_every: ttl / 3,
            fence_margin: ttl / 5,
            acquire_every: ttl / 4,
        }
    }
}

/// A period of leadership.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Term {
    /// The lease revision that started it: identifies the leadership in claims.
    pub id: u64,
    /// Leading only before this instant (extended by every renewal).
    pub until: Instant,
}

impl Term {
    pub fn is_valid(&self) -> bool {
        Instant::now() < self.until
    }
}

/// The current term of this replica, if it leads.
pub type Leadership = watch::Receiver<Option<Term>>;

/// The term of `leadership` if it is still valid now.
pub fn current(leadership: &Leadership) -> Option<Term> {
    leadership.borrow().filter(Term::is_valid)
}

/// Takes and renews the lease of `bucket`, publishing the terms on `terms` and telling
/// `leading` when this replica starts and stops leading, until `release`; then gives the
/// lease up, if still held, so another replica takes over at once. `release` must only
/// be cancelled once this replica has stopped acting on the lease. `what` names the
/// lease and its duty in logs ("cron lease: this replica fires the jobs").
pub async fn hold(
    bucket: KvStore,
    what: (&'static str, &'static str),
    timings: LeaseTimings,
    terms: watch::Sender<Option<Term>>,
    leading: impl Fn(bool) + Send,
    release: CancellationToken,
) {
    let (lease, duty) = what;
    let holder = Bytes::from(format!("{:016x}", rand::random::<u64>()));
    let mut held: Option<(u64, Term)> = None;
    loop {
        let wait = match held {
            None => {
                held = acquire(&bucket, &holder, timings, lease).await;
                if let Some((_, term)) = held {
                    info!(term = term.id, "took the {lease}: this replica {duty}");
                    terms.send_replace(Some(term));
                    leading(true);
                    timings.renew_every
                } else {
                    timings.acquire_every
                }
            }
            Some((revision, term)) => {
                match renew(&bucket, &holder, timings, revision, term, lease).await {
                    Renewal::Renewed(revision, term) => {
                        held = Some((revision, term));
                        terms.send_replace(Some(term));
                        timings.renew_every
                    }
                    Renewal::Retry => timings.renew_every / 4,
                    Renewal::Lost(reason) => {
                        warn!(
                            term = term.id,
                            reason, "lost the {lease}: this replica stops"
                        );
                        held = None;
                        terms.send_replace(None);
                        leading(false);
                        timings.acquire_every
                    }
                }
            }
        };
        tokio::select! {
            () = release.cancelled() => break,
            () = tokio::time::sleep(wait) => {}
        }
    }
    terms.send_replace(None);
    leading(false);
    // Before the deadline nobody else can hold the key, so deleting it cannot remove
    // another replica's lease.
    if let Some((_, term)) = held
        && term.is_valid()
    {
        match bucket.delete(LEASE_KEY).await {
            Ok(()) => info!(term = term.id, "released the {lease}"),
            Err(e) => debug!(error = %e, "cannot release the {lease}; it expires on its own"),
        }
    }
}

async fn acquire(
    bucket: &KvStore,
    holder: &Bytes,
    timings: LeaseTimings,
    lease: &str,
) -> Option<(u64, Term)> {
    let sent = Instant::now();
    match bucket.create(LEASE_KEY, holder.clone()).await {
        Ok(revision) => Some((
            revision,
            Term {
                id: revision,
                until: deadline(sent, timings),
            },
        )),
        Err(BusError::AlreadyExists) => None,
        Err(e) => {
            debug!(error = %e, "cannot try to take the {lease}");
            None
        }
    }
}

enum Renewal {
    Renewed(u64, Term),
    /// A bus failure with time left before the deadline.
    Retry,
    Lost(&'static str),
}

async fn renew(
    bucket: &KvStore,
    holder: &Bytes,
    timings: LeaseTimings,
    revision: u64,
    term: Term,
    lease: &str,
) -> Renewal {
    let sent = Instant::now();
    let update = bucket.update(LEASE_KEY, holder.clone(), revision);
    match tokio::time::timeout_at(term.until, update).await {
        Ok(Ok(revision)) => Renewal::Renewed(
            revision,
            Term {
                until: deadline(sent, timings),
                ..term
            },
        ),
        Ok(Err(BusError::WrongRevision)) => Renewal::Lost("another replica holds it"),
        Ok(Err(e)) if term.is_valid() => {
            debug!(error = %e, "cannot renew the {lease}; retrying");
            Renewal::Retry
        }
        Ok(Err(_)) | Err(_) => Renewal::Lost("it could not be renewed in time"),
    }
}

/// A lease written at `sent` expires on the server no earlier than `sent + ttl`; the
/// holder stops a margin before.
fn deadline(sent: Instant, timings: LeaseTimings) -> Instant {
    sent + timings.ttl.saturating_sub(timings.fence_margin)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::{Bus, KvConfig, Storage};

    const WHAT: (&str, &str) = ("test lease", "leads");

    async fn bucket(bus: &Bus, timings: LeaseTimings) -> KvStore {
        bus.key_value(KvConfig {
            max_age: Some(timings.ttl),
            storage: Storage::Memory,
            ..KvConfig::new("lease_test")
        })
        .await
        .unwrap()
    }

    async fn leading(terms: &mut Leadership) -> Term {
        tokio::time::timeout(Duration::from_secs(5), async {
            loop {
                if let Some(term) = current(terms) {
                    return term;
                }
                terms.changed().await.unwrap();
            }
        })
        .await
        .expect("a replica takes the lease")
    }

    /// Two replicas on one bus: one leads; when it releases, the other takes over; a
    /// holder that cannot renew stops counting itself the holder before the key expires.
    #[tokio::test]
    async fn one_replica_leads_and_the_other_takes_over() {
        let bus = Bus::embedded(Default::default());
        let timings = LeaseTimings::for_ttl(Duration::from_millis(500));
        let store = bucket(&bus, timings).await;
        let (a_tx, mut a) = watch::channel(None);
        let (b_tx, mut b) = watch::channel(None);
        let (stop_a, stop_b) = (CancellationToken::new(), CancellationToken::new());
        let first = tokio::spawn(hold(
            store.clone(),
            WHAT,
            timings,
            a_tx,
            |_| {},
            stop_a.clone(),
        ));
        let term_a = leading(&mut a).await;
        let second = tokio::spawn(hold(
            store.clone(),
            WHAT,
            timings,
            b_tx,
            |_| {},
            stop_b.clone(),
        ));
        // Several renewals later, A still leads and B does not.
        tokio::time::sleep(timings.ttl * 2).await;
        assert_eq!(current(&a).map(|t| t.id), Some(term_a.id));
        assert!(current(&a).unwrap().until > Instant::now());
        assert_eq!(current(&b), None);

        stop_a.cancel();
        first.await.unwrap();
        assert_eq!(current(&a), None);
        let term_b = leading(&mut b).await;
        assert!(term_b.id > term_a.id);
        stop_b.cancel();
        second.await.unwrap();

        // A holder whose renewals fail (the key vanished under it) steps down.
        let (c_tx, mut c) = watch::channel(None);
        let stop_c = CancellationToken::new();
        let third = tokio::spawn(hold(
            store.clone(),
            WHAT,
            timings,
            c_tx,
            |_| {},
            stop_c.clone(),
        ));
        let term_c = leading(&mut c).await;
        store
            .put(LEASE_KEY, Bytes::from_static(b"intruder"))
            .await
            .unwrap();
        tokio::time::timeout(Duration::from_secs(5), async {
            while current(&c).is_some_and(|t| t.id == term_c.id) {
                c.changed().await.unwrap();
            }
        })
        .await
        .expect("the holder notices it lost the lease");
        stop_c.cancel();
        third.await.unwrap();
    }
}
