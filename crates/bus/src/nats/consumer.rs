//! Ephemeral pull consumers for one-off reads: history ranges and tails, KV key listings.
//!
//! One consumer per read, filtered on the server (so the server does the selecting and
//! only matching messages cross the wire), no acks, in memory, one replica; deleted when
//! the read is done, and removed by the server after a short inactivity if that delete
//! was lost.

use std::fmt::Display;
use std::time::Duration;

use async_nats::jetstream::consumer::{AckPolicy, Consumer, DeliverPolicy, pull};
use async_nats::jetstream::{self, stream};
use futures_util::StreamExt;

use crate::error::BusError;

/// A read consumer the server removes by itself if we could not delete it.
const INACTIVE: Duration = Duration::from_secs(30);
/// Pulls of one fetch at most, when the first ones fail before any message.
const PULL_ATTEMPTS: u32 = 4;
/// Wait before the second pull; the third waits twice as long, and so on.
const PULL_RETRY_DELAY: Duration = Duration::from_millis(100);

/// Why a fetch stopped: before any message (safe to pull again) or after some.
enum Fetch {
    Failed(BusError),
    After(BusError),
}

/// An ephemeral pull consumer for one read; `what` names the read in errors.
pub(crate) struct ReadConsumer {
    consumer: Consumer<pull::Config>,
    what: &'static str,
}

impl ReadConsumer {
    /// Creates a consumer delivering the messages on `filter` from `deliver_policy` on;
    /// with `headers_only`, without their payloads.
    pub(crate) async fn create<I>(
        stream: &stream::Stream<I>,
        filter: String,
        deliver_policy: DeliverPolicy,
        headers_only: bool,
        what: &'static str,
    ) -> Result<ReadConsumer, BusError> {
        let config = pull::Config {
            deliver_policy,
            filter_subject: filter,
            headers_only,
            ack_policy: AckPolicy::None,
            inactive_threshold: INACTIVE,
            memory_storage: true,
            num_replicas: 1,
            ..Default::default()
        };
        let consumer = stream
            .create_consumer(config)
            .await
            .map_err(|err| failed(what, &err))?;
        Ok(ReadConsumer { consumer, what })
    }

    /// How many messages the consumer had to deliver when it was created.
    pub(crate) fn pending_at_start(&self) -> u64 {
        self.consumer.cached_info().num_pending
    }

    /// Passes each of up to `max` messages available now to `each`, in stream order, and
    /// returns how many there were: fewer than `max` means none more were available.
    ///
    /// In a JetStream cluster a consumer just created may not answer pulls yet (the
    /// server replies 503, no responders, for a moment; seen right after a node rejoins):
    /// a pull that fails before delivering anything is tried again, a few times.
    pub(crate) async fn fetch(
        &self,
        max: usize,
        mut each: impl FnMut(jetstream::Message) -> Result<(), BusError>,
    ) -> Result<usize, BusError> {
        let mut attempt = 1;
        loop {
            match self.fetch_once(max, &mut each).await {
                Err(Fetch::Failed(err)) if attempt < PULL_ATTEMPTS => {
                    tracing::debug!(error = %err, attempt, what = self.what, "pull failed before any message; trying again");
                    tokio::time::sleep(PULL_RETRY_DELAY * attempt).await;
                    attempt += 1;
                }
                Err(Fetch::Failed(err) | Fetch::After(err)) => return Err(err),
                Ok(count) => return Ok(count),
            }
        }
    }

    async fn fetch_once(
        &self,
        max: usize,
        each: &mut impl FnMut(jetstream::Message) -> Result<(), BusError>,
    ) -> Result<usize, Fetch> {
        let mut batch = self
            .consumer
            .fetch()
            .max_messages(max)
            .messages()
            .await
            .map_err(|err| Fetch::Failed(self.failed(&err)))?;
        let mut count = 0;
        while let Some(message) = batch.next().await {
            let message = message.map_err(|err| match count {
                0 => Fetch::Failed(self.failed(&err)),
                _ => Fetch::After(self.failed(&err)),
            })?;
            each(message).map_err(Fetch::After)?;
            count += 1;
        }
        Ok(count)
    }

    /// Deletes the consumer; if that fails it expires on its own.
    pub(crate) async fn delete<I>(self, stream: &stream::Stream<I>) {
        let name = &self.consumer.cached_info().name;
        if let Err(err) = stream.delete_consumer(name).await {
            tracing::debug!(error = %err, consumer = %name, "read consumer not deleted; it will expire");
        }
    }

    /// The error for a failure of this read.
    pub(crate) fn failed(&self, err: &dyn Display) -> BusError {
        failed(self.what, err)
    }
}

fn failed(what: &str, err: &dyn Display) -> BusError {
    BusError::Backend(format!("{what} failed: {err}"))
}
