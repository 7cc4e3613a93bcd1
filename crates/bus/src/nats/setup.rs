//! Creating and updating streams, buckets and consumers when a service opens them.
//!
//! A JetStream cluster that is forming, or electing a leader, leaves such requests
//! unanswered or answers "temporarily unavailable" for a while; seen on a fresh
//! three-node cluster, where a service's first request got no answer at all and the same
//! request from a restarted process succeeded at once. So each setup request is bounded
//! by the request timeout and tried again, with backoff, until the setup budget is spent;
//! a failure that will not pass (a bad configuration, a refusal) is returned at once.

use std::error::Error as StdError;
use std::future::Future;
use std::time::Duration;

use async_nats::jetstream;
use async_nats::jetstream::context::{
    AccountErrorKind, CreateKeyValueError, CreateKeyValueErrorKind, CreateStreamError,
    CreateStreamErrorKind, RequestError, RequestErrorKind,
};
use async_nats::jetstream::stream::{ConsumerError, ConsumerErrorKind};
use async_nats::jetstream::{ErrorCode, context::AccountError};
use tokio::time::Instant;

use crate::error::BusError;

/// The first wait before trying a setup request again; doubled up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(200);
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// How a stream, bucket or consumer is created or updated when it is opened.
#[derive(Clone, Copy)]
pub(crate) struct Setup<'a> {
    pub(crate) js: &'a jetstream::Context,
    /// Bound on one attempt (the bus's request timeout).
    pub(crate) attempt: Duration,
    /// Bound on all attempts together.
    pub(crate) budget: Duration,
    /// Replicas of what is created.
    pub(crate) replicas: usize,
}

impl Setup<'_> {
    /// Runs `request` until it succeeds, fails for good (`refused` maps that error), or
    /// the budget is spent (then the last failure, or `Timeout`).
    pub(crate) async fn run<T, E, F, Fut>(
        &self,
        what: &str,
        mut request: F,
        refused: impl Fn(E) -> BusError,
    ) -> Result<T, BusError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>>,
        E: StdError + 'static,
    {
        let deadline = Instant::now() + self.budget;
        let mut backoff = FIRST_BACKOFF;
        loop {
            let failure = match tokio::time::timeout(self.attempt, request()).await {
                Ok(Ok(value)) => return Ok(value),
                Ok(Err(err)) if !may_pass(&err) => return Err(refused(err)),
                Ok(Err(err)) => refused(err),
                Err(_) => BusError::Timeout,
            };
            if Instant::now() + backoff >= deadline {
                return Err(failure);
            }
            tracing::warn!(error = %failure, what, "JetStream is not ready; trying again");
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }
}

/// Whether a failed setup request may succeed when tried again: no answer in time, no
/// responders, or JetStream (or its cluster) not available yet.
fn may_pass(err: &(dyn StdError + 'static)) -> bool {
    let mut cause = Some(err);
    while let Some(err) = cause {
        if let Some(err) = err.downcast_ref::<CreateStreamError>() {
            match err.kind() {
                CreateStreamErrorKind::TimedOut | CreateStreamErrorKind::JetStreamUnavailable => {
                    return true;
                }
                CreateStreamErrorKind::JetStream(js) => return not_available(js.error_code()),
                _ => {}
            }
        } else if let Some(err) = err.downcast_ref::<CreateKeyValueError>() {
            if err.kind() == CreateKeyValueErrorKind::TimedOut {
                return true;
            }
        } else if let Some(err) = err.downcast_ref::<ConsumerError>() {
            match err.kind() {
                ConsumerErrorKind::TimedOut => return true,
                ConsumerErrorKind::JetStream(js) => return not_available(js.error_code()),
                _ => {}
            }
        } else if let Some(err) = err.downcast_ref::<AccountError>() {
            match err.kind() {
                AccountErrorKind::TimedOut | AccountErrorKind::JetStreamUnavailable => {
                    return true;
                }
                AccountErrorKind::JetStream(js) => return not_available(js.error_code()),
                AccountErrorKind::Other => {}
            }
        } else if let Some(err) = err.downcast_ref::<RequestError>()
            && matches!(
                err.kind(),
                RequestErrorKind::TimedOut | RequestErrorKind::NoResponders
            )
        {
            return true;
        }
        cause = err.source();
    }
    false
}

fn not_available(code: ErrorCode) -> bool {
    code == ErrorCode::CLUSTER_NOT_AVAILABLE
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts_and_an_unavailable_cluster_may_pass() {
        let timed_out = CreateStreamError::new(CreateStreamErrorKind::TimedOut);
        assert!(may_pass(&timed_out));
        let wrapped =
            CreateKeyValueError::with_source(CreateKeyValueErrorKind::JetStream, timed_out);
        assert!(may_pass(&wrapped), "a cause deeper in the chain counts");
        assert!(may_pass(&ConsumerError::new(ConsumerErrorKind::TimedOut)));
        assert!(!may_pass(&CreateStreamError::new(
            CreateStreamErrorKind::InvalidStreamName
        )));
        assert!(!may_pass(&ConsumerError::new(
            ConsumerErrorKind::InvalidName
        )));
    }
}
