//! The publishing phase, whatever the transport: the counters, the latency histograms, the
//! payload, the pacing and the publisher loop. Transports only move bytes (an [`Outlet`]
//! out, a reader in that hands each payload to a [`Tally`]), so both are measured by
//! this same code.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hdrhistogram::Histogram;
use tokio::sync::watch;

/// Latencies are recorded in microseconds up to a minute, with 3 significant digits.
const MAX_LATENCY_US: u64 = 60_000_000;
/// Receivers record into a few shared histograms, in batches.
const SHARDS: usize = 16;
const BATCH: usize = 256;
/// How often a publisher over its delivery window looks again.
const WINDOW_POLL: Duration = Duration::from_micros(500);

/// Counters shared by every task.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) sent: AtomicU64,
    pub(crate) acked: AtomicU64,
    /// Publishes the bus refused (WebSocket), client errors such as slow consumers and
    /// disconnections (NATS).
    pub(crate) errors: AtomicU64,
    /// Deliveries the acknowledged (or, over NATS, published) messages should cause.
    pub(crate) expected: AtomicU64,
    /// Deliveries, counted in shards: a thousand readers on one counter would contend.
    delivered: [Padded; SHARDS],
    /// Deliveries the sent messages should cause, counted when sent, less those of
    /// messages the bus refused: with `delivered`, what is still on its way.
    pub(crate) promised: AtomicU64,
    pub(crate) refused: AtomicU64,
    /// What the first error said, shown once at the end.
    first_error: OnceLock<String>,
}

/// A counter on a cache line of its own.
#[derive(Debug, Default)]
#[repr(align(64))]
struct Padded(AtomicU64);

impl Counters {
    pub(crate) fn delivered(&self) -> u64 {
        self.delivered
            .iter()
            .map(|c| c.0.load(Ordering::Relaxed))
            .sum()
    }

    fn outstanding(&self) -> u64 {
        self.promised
            .load(Ordering::Relaxed)
            .saturating_sub(self.delivered())
            .saturating_sub(self.refused.load(Ordering::Relaxed))
    }

    /// Counts an error; the first one's description is kept.
    pub(crate) fn error(&self, describe: impl FnOnce() -> String) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        if self.first_error.get().is_none() {
            let _ = self.first_error.set(describe());
        }
    }

    pub(crate) fn first_error(&self) -> Option<&str> {
        self.first_error.get().map(String::as_str)
    }
}

/// Latency histograms, sharded to keep receivers from contending.
#[derive(Debug)]
pub(crate) struct Latencies(Vec<Mutex<Histogram<u64>>>);

impl Latencies {
    pub(crate) fn new() -> anyhow::Result<Self> {
        let shards = (0..SHARDS)
            .map(|_| Histogram::new_with_bounds(1, MAX_LATENCY_US, 3).map(Mutex::new))
            .collect::<Result<_, _>>()?;
        Ok(Self(shards))
    }

    fn record(&self, shard: usize, samples: &mut Vec<u64>) {
        let mut histogram = self.0[shard % SHARDS]
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        for sample in samples.drain(..) {
            histogram.saturating_record(sample.clamp(1, MAX_LATENCY_US));
        }
    }

    pub(crate) fn merged(&self) -> anyhow::Result<Histogram<u64>> {
        let mut all = Histogram::new_with_bounds(1, MAX_LATENCY_US, 3)?;
        for shard in &self.0 {
            all.add(&*shard.lock().unwrap_or_else(PoisonError::into_inner))?;
        }
        Ok(all)
    }
}

fn unix_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        .unwrap_or_default()
}

/// The payload of one benchmark message: the run id, the send time, and padding up to
/// `size` bytes.
pub(crate) fn payload(run: &str, size: usize) -> String {
    let head = format!(r#"{{"run":"{run}","ts":{},"pad":""#, unix_nanos());
    let pad = size.saturating_sub(head.len() + 2);
    format!("{head}{}\"}}", "x".repeat(pad))
}

/// The send time of a message of this run (`text` holds [`payload`], whatever frames
/// it), without parsing the JSON.
fn sent_at(text: &str, run_marker: &str) -> Option<u64> {
    if !text.contains(run_marker) {
        return None;
    }
    let i = text.find(r#""ts":"#)?;
    let digits: String = text[i + 5..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

/// What every reader shares: where it counts, and when it stops.
#[derive(Debug, Clone)]
pub(crate) struct Reader {
    /// The connection's index in the plan.
    pub(crate) index: usize,
    pub(crate) run: String,
    pub(crate) counters: Arc<Counters>,
    pub(crate) latencies: Arc<Latencies>,
    pub(crate) stop: watch::Receiver<bool>,
}

impl Reader {
    pub(crate) fn tally(&self) -> Tally {
        Tally {
            index: self.index,
            marker: format!(r#""run":"{}""#, self.run),
            counters: Arc::clone(&self.counters),
            latencies: Arc::clone(&self.latencies),
            samples: Vec::with_capacity(BATCH),
        }
    }
}

/// One reader's count of deliveries and their latencies. Records what is left when
/// dropped.
#[derive(Debug)]
pub(crate) struct Tally {
    index: usize,
    marker: String,
    counters: Arc<Counters>,
    latencies: Arc<Latencies>,
    samples: Vec<u64>,
}

impl Tally {
    /// Counts `text` if it carries a message of this run.
    pub(crate) fn message(&mut self, text: &str) {
        let Some(sent_at) = sent_at(text, &self.marker) else {
            return;
        };
        self.counters.delivered[self.index % SHARDS]
            .0
            .fetch_add(1, Ordering::Relaxed);
        self.samples
            .push(unix_nanos().saturating_sub(sent_at) / 1000);
        if self.samples.len() >= BATCH {
            self.latencies.record(self.index, &mut self.samples);
        }
    }
}

impl Drop for Tally {
    fn drop(&mut self) {
        self.latencies.record(self.index, &mut self.samples);
    }
}

/// How fast one publisher sends.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Pace {
    /// Messages per second (open loop: latency and loss show what the bus could not
    /// take), or `None` for as fast as deliveries keep up.
    pub(crate) rate: Option<f64>,
    /// Without a rate: deliveries still on their way (over all publishers) above which
    /// publishers wait, so the measured rate is one the bus sustains.
    pub(crate) window: u64,
}

/// What every publisher knows: how many receive each message, what to send, how fast,
/// and when to stop.
#[derive(Debug)]
pub(crate) struct Job {
    /// Receivers of each message.
    pub(crate) recipients: u64,
    pub(crate) run: String,
    pub(crate) size: usize,
    pub(crate) pace: Pace,
    pub(crate) counters: Arc<Counters>,
    pub(crate) stop: watch::Receiver<bool>,
}

impl Job {
    fn stopped(&self) -> bool {
        *self.stop.borrow()
    }

    /// Waits for the next send: the rate's next tick, or room in the delivery window;
    /// returns early when told to stop.
    async fn wait_turn(&mut self, interval: &mut Option<tokio::time::Interval>) {
        match interval {
            Some(interval) => {
                tokio::select! {
                    _ = interval.tick() => {}
                    _ = self.stop.wait_for(|stop| *stop) => {}
                }
            }
            None => {
                while self.counters.outstanding() > self.pace.window && !self.stopped() {
                    tokio::time::sleep(WINDOW_POLL).await;
                }
            }
        }
    }
}

fn interval(pace: Pace) -> Option<tokio::time::Interval> {
    pace.rate.map(|rate| {
        let mut interval = tokio::time::interval(Duration::from_secs_f64(1.0 / rate.max(0.001)));
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
        interval
    })
}

/// One publisher's way out to the bus.
pub(crate) trait Outlet: Send {
    /// Whether nothing will acknowledge a message, so it counts as acknowledged once
    /// sent (its deliveries are then expected).
    const UNACKNOWLEDGED: bool;

    /// Waits (briefly) until one more message may go; `false` to look at the pace and
    /// the stop signal again first.
    fn ready(&mut self) -> impl Future<Output = bool> + Send {
        async { true }
    }

    fn send(&mut self, payload: String) -> impl Future<Output = anyhow::Result<()>> + Send;

    /// After the last message.
    fn finish(&mut self) -> impl Future<Output = anyhow::Result<()>> + Send {
        async { Ok(()) }
    }
}

/// Publishes through `outlet` until `job.stop`, at the job's pace.
pub(crate) async fn publish<O: Outlet>(mut outlet: O, mut job: Job) -> anyhow::Result<()> {
    let mut ticker = interval(job.pace);
    while !job.stopped() {
        job.wait_turn(&mut ticker).await;
        if job.stopped() || !outlet.ready().await {
            continue;
        }
        let counters = &job.counters;
        counters
            .promised
            .fetch_add(job.recipients, Ordering::Relaxed);
        outlet.send(payload(&job.run, job.size)).await?;
        counters.sent.fetch_add(1, Ordering::Relaxed);
        if O::UNACKNOWLEDGED {
            counters.acked.fetch_add(1, Ordering::Relaxed);
            counters
                .expected
                .fetch_add(job.recipients, Ordering::Relaxed);
        }
    }
    outlet.finish().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_have_the_requested_size_and_are_json() {
        for size in [0, 10, 64, 1024, 100_000] {
            let text = payload("r1", size);
            let value: serde_json::Value = serde_json::from_str(&text).unwrap();
            assert_eq!(value["run"], "r1");
            if size > 64 {
                assert_eq!(text.len(), size);
            }
        }
    }

    #[test]
    fn only_this_runs_messages_are_timed() {
        let marker = r#""run":"r1""#;
        let framed = format!(r#"{{"type":"message","payload":{}}}"#, payload("r1", 64));
        assert!(sent_at(&framed, marker).is_some_and(|t| t > 0));
        assert!(sent_at(&payload("r1", 64), marker).is_some_and(|t| t > 0));
        assert_eq!(sent_at(&payload("r2", 64), marker), None);
    }

    #[test]
    fn a_tally_counts_and_times_this_runs_messages() {
        let counters = Arc::new(Counters::default());
        let latencies = Arc::new(Latencies::new().unwrap());
        let (_stop, stopped) = watch::channel(false);
        let reader = Reader {
            index: 3,
            run: "r1".to_owned(),
            counters: Arc::clone(&counters),
            latencies: Arc::clone(&latencies),
            stop: stopped,
        };
        let mut tally = reader.tally();
        tally.message(&payload("r1", 64));
        tally.message(&payload("r2", 64));
        tally.message("not json");
        drop(tally);
        assert_eq!(counters.delivered(), 1);
        assert_eq!(latencies.merged().unwrap().len(), 1);
    }

    #[test]
    fn the_first_error_is_kept() {
        let counters = Counters::default();
        counters.error(|| "first".to_owned());
        counters.error(|| "second".to_owned());
        assert_eq!(counters.errors.load(Ordering::Relaxed), 2);
        assert_eq!(counters.first_error(), Some("first"));
    }
}
