//! The publishing phase: publishers at a rate or as fast as acknowledgements allow, and
//! a reader per connection counting deliveries and their latency.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use tokio::sync::{Semaphore, watch};
use tokio_tungstenite::tungstenite::Message;

use arqon_protocol::{Envelope, JsonObject, MessageType};

use super::conn::Socket;
use super::plan::TRAFFIC_CHANNEL;

/// Latencies are recorded in microseconds up to a minute, with 3 significant digits.
const MAX_LATENCY_US: u64 = 60_000_000;
/// Receivers record into a few shared histograms, in batches.
const SHARDS: usize = 16;
const BATCH: usize = 256;

/// Counters shared by every task.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) sent: AtomicU64,
    pub(crate) acked: AtomicU64,
    pub(crate) errors: AtomicU64,
    /// Deliveries the acknowledged (or, over NATS, published) messages should cause.
    pub(crate) expected: AtomicU64,
    /// Deliveries, counted in shards: a thousand readers on one counter would contend.
    delivered: [Padded; SHARDS],
    /// Deliveries the sent messages should cause, counted when sent, less those of
    /// messages the bus refused: with `delivered`, what is still on its way.
    pub(crate) promised: AtomicU64,
    pub(crate) refused: AtomicU64,
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

/// The type of a server frame and, for a message of this run, its send time.
fn classify<'a>(text: &'a str, run_marker: &str) -> (Option<&'a str>, Option<u64>) {
    let kind = text
        .find(r#""type":""#)
        .and_then(|i| text[i + 8..].split('"').next());
    let sent_at = if kind == Some("message") && text.contains(run_marker) {
        text.find(r#""ts":"#).and_then(|i| {
            let digits: String = text[i + 5..]
                .chars()
                .take_while(char::is_ascii_digit)
                .collect();
            digits.parse().ok()
        })
    } else {
        None
    };
    (kind, sent_at)
}

/// What a reader needs to know about its connection.
pub(crate) struct Reader {
    pub(crate) index: usize,
    pub(crate) run: String,
    /// Recipients per message this connection publishes (0 if it does not publish).
    pub(crate) recipients: u64,
    /// Released on each acknowledgement or error, for its publisher.
    pub(crate) permits: Option<Arc<Semaphore>>,
}

/// Reads until `stop`, counting deliveries and acknowledgements.
pub(crate) async fn read(
    mut stream: SplitStream<Socket>,
    reader: Reader,
    counters: Arc<Counters>,
    latencies: Arc<Latencies>,
    mut stop: watch::Receiver<bool>,
) -> SplitStream<Socket> {
    let marker = format!(r#""run":"{}""#, reader.run);
    let mut samples = Vec::new();
    let delivered = &counters.delivered[reader.index % SHARDS].0;
    // Created once: re-arming a wait on a shared channel per frame costs more than the
    // frame.
    let stopped = stop.wait_for(|s| *s);
    tokio::pin!(stopped);
    loop {
        let frame = tokio::select! {
            _ = &mut stopped => break,
            frame = stream.next() => frame,
        };
        let Some(Ok(Message::Text(text))) = frame else {
            if matches!(frame, Some(Ok(_))) {
                continue;
            }
            break;
        };
        match classify(text.as_str(), &marker) {
            (Some("message"), Some(sent_at)) => {
                delivered.fetch_add(1, Ordering::Relaxed);
                samples.push(unix_nanos().saturating_sub(sent_at) / 1000);
                if samples.len() >= BATCH {
                    latencies.record(reader.index, &mut samples);
                }
            }
            (Some("message_response"), _) => {
                counters.acked.fetch_add(1, Ordering::Relaxed);
                counters
                    .expected
                    .fetch_add(reader.recipients, Ordering::Relaxed);
                if let Some(permits) = &reader.permits {
                    permits.add_permits(1);
                }
            }
            (Some("error"), _) => {
                counters.errors.fetch_add(1, Ordering::Relaxed);
                counters
                    .refused
                    .fetch_add(reader.recipients, Ordering::Relaxed);
                if let Some(permits) = &reader.permits {
                    permits.add_permits(1);
                }
            }
            _ => {}
        }
    }
    latencies.record(reader.index, &mut samples);
    stream
}

/// How fast one publisher sends.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Pace {
    /// Messages per second (open loop: latency and loss show what the bus could not
    /// take), or `None` for as fast as deliveries keep up.
    pub(crate) rate: Option<f64>,
    /// Unacknowledged messages per WebSocket publisher.
    pub(crate) in_flight: usize,
    /// Without a rate: deliveries still on their way (over all publishers) above which
    /// publishers wait, so the measured rate is one the bus sustains.
    pub(crate) window: u64,
}

/// Waits for the next send: the rate's next tick, or room in the delivery window.
async fn pace(interval: &mut Option<tokio::time::Interval>, pace: Pace, counters: &Counters) {
    match interval {
        Some(interval) => {
            interval.tick().await;
        }
        None => {
            while counters.outstanding() > pace.window {
                tokio::time::sleep(Duration::from_micros(500)).await;
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

/// What every publisher knows: where, what, how fast, and when to stop.
pub(crate) struct Job {
    pub(crate) room: String,
    /// Receivers of each message.
    pub(crate) recipients: u64,
    pub(crate) run: String,
    pub(crate) size: usize,
    pub(crate) pace: Pace,
    pub(crate) counters: Arc<Counters>,
    pub(crate) stop: watch::Receiver<bool>,
}

/// Publishes over the WebSocket until `stop`, with at most `pace.in_flight` messages
/// unacknowledged (`permits` come back as the reader sees acknowledgements).
pub(crate) async fn publish_ws(
    mut sink: SplitSink<Socket, Message>,
    job: Job,
    permits: Arc<Semaphore>,
) -> SplitSink<Socket, Message> {
    let mut ticker = interval(job.pace);
    while !*job.stop.borrow() {
        pace(&mut ticker, job.pace, &job.counters).await;
        let permit = tokio::select! {
            permit = permits.acquire() => permit,
            () = tokio::time::sleep(Duration::from_millis(100)) => continue,
        };
        let Ok(permit) = permit else { break };
        permit.forget();
        let frame = format!(
            r#"{{"type":"message","room":"{}","channel":"{TRAFFIC_CHANNEL}","payload":{}}}"#,
            job.room,
            payload(&job.run, job.size)
        );
        job.counters
            .promised
            .fetch_add(job.recipients, Ordering::Relaxed);
        if sink.send(Message::text(frame)).await.is_err() {
            break;
        }
        job.counters.sent.fetch_add(1, Ordering::Relaxed);
    }
    sink
}

/// Publishes straight to the room's NATS `subject` (as a dispatcher does) until `stop`:
/// the edge's fan-out alone, without the pipeline in front of it.
pub(crate) async fn publish_nats(
    bus: arqon_bus::Bus,
    subject: String,
    job: Job,
) -> anyhow::Result<()> {
    let mut ticker = interval(job.pace);
    let mut since_flush = 0;
    while !*job.stop.borrow() {
        pace(&mut ticker, job.pace, &job.counters).await;
        let mut envelope = Envelope::new(MessageType::Message);
        envelope.room = Some(job.room.clone());
        envelope.channel = Some(TRAFFIC_CHANNEL.to_owned());
        envelope.sender = Some("arqon-bench".to_owned());
        envelope.payload = JsonObject::parse(&payload(&job.run, job.size))?;
        let delivery = arqon_proto::model::RoomDelivery {
            frame: bytes::Bytes::from(envelope.to_json()),
            exclude: None,
            close_room: false,
        };
        let counters = &job.counters;
        counters
            .promised
            .fetch_add(job.recipients, Ordering::Relaxed);
        bus.publish(subject.clone(), delivery.encode()).await?;
        counters.sent.fetch_add(1, Ordering::Relaxed);
        counters.acked.fetch_add(1, Ordering::Relaxed);
        counters
            .expected
            .fetch_add(job.recipients, Ordering::Relaxed);
        since_flush += 1;
        // Nothing acknowledges a core publish: flushing now and then bounds the buffer.
        if since_flush >= 64 {
            bus.flush().await?;
            since_flush = 0;
        }
    }
    bus.flush().await?;
    Ok(())
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
    fn frames_are_classified_without_parsing() {
        let marker = r#""run":"r1""#;
        let message = format!(
            r#"{{"id":"x","type":"message","payload":{}}}"#,
            payload("r1", 64)
        );
        let (kind, sent_at) = classify(&message, marker);
        assert_eq!(kind, Some("message"));
        assert!(sent_at.is_some_and(|t| t > 0));
        let other_run = format!(r#"{{"type":"message","payload":{}}}"#, payload("r2", 64));
        assert_eq!(classify(&other_run, marker).1, None);
        assert_eq!(
            classify(r#"{"type":"message_response"}"#, marker).0,
            Some("message_response")
        );
    }
}
