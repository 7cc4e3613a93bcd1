//! The two loops every service writes around a subscription: reading it until the
//! shutdown token is cancelled, and a replica's share of a queue group.

use std::future::Future;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::{Bus, BusError, Message, Subscription};

impl Subscription {
    /// The next message, or `None` once `stop` is cancelled or the subscription has
    /// ended; so `while let Some(message) = subscription.next_until(&stop).await` reads
    /// until the shutdown. Cancellation wins over a message that is ready too: once
    /// `stop` is cancelled nothing more is read.
    pub async fn next_until(&mut self, stop: &CancellationToken) -> Option<Message> {
        tokio::select! {
            biased;
            () = stop.cancelled() => None,
            message = self.next() => message,
        }
    }
}

impl Bus {
    /// Joins `group` on `subject` `members` times (this replica's share of the group)
    /// and runs `work` on each subscription as a task of `tasks`. Returns once every
    /// member has subscribed; a failure leaves the members already started running
    /// until their own end.
    pub async fn spawn_queue_workers<W, F>(
        &self,
        subject: &str,
        group: &str,
        members: u16,
        tasks: &TaskTracker,
        work: W,
    ) -> Result<(), BusError>
    where
        W: Fn(Subscription) -> F,
        F: Future<Output = ()> + Send + 'static,
    {
        for _ in 0..members {
            let subscription = self.queue_subscribe(subject, group).await?;
            tasks.spawn(work(subscription));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use bytes::Bytes;

    use super::*;

    #[tokio::test]
    async fn a_loop_ends_at_cancellation_and_queue_members_share_the_messages() {
        let bus = Bus::embedded(Default::default());
        let tasks = TaskTracker::new();
        let stop = CancellationToken::new();
        let (seen, mut received) = tokio::sync::mpsc::unbounded_channel();
        bus.spawn_queue_workers("work.>", "workers", 3, &tasks, |mut subscription| {
            let (stop, seen) = (stop.clone(), seen.clone());
            async move {
                while let Some(message) = subscription.next_until(&stop).await {
                    let _ = seen.send(message.subject);
                }
            }
        })
        .await
        .unwrap();
        tasks.close();
        for n in 0..30 {
            bus.publish(format!("work.{n}"), Bytes::new())
                .await
                .unwrap();
        }
        for _ in 0..30 {
            tokio::time::timeout(Duration::from_secs(5), received.recv())
                .await
                .unwrap()
                .unwrap();
        }
        // One member each: nothing more arrives.
        assert!(
            tokio::time::timeout(Duration::from_millis(100), received.recv())
                .await
                .is_err()
        );
        stop.cancel();
        tokio::time::timeout(Duration::from_secs(5), tasks.wait())
            .await
            .unwrap();
    }
}
