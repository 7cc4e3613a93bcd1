//! The embedded subscription registry and its publish path: the standalone data plane.
//!
//! Exact subjects live in a map (one lookup per publish), wildcard subscriptions in a
//! list matched token by token without allocating. A message is wrapped in one `Arc`
//! and the pointer is handed to every matching subscriber; a subscriber takes it back
//! by value when it is the only one, else clones it. The lock is a `std` `RwLock` held
//! only for the synchronous fan-out, never across an await.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::task::{Context, Poll};

use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TrySendError;

use crate::message::Message;
use crate::stats::BusStats;
use crate::subject;

type Delivery = Arc<Message>;

struct Entry {
    id: u64,
    queue: Option<Box<str>>,
    tx: mpsc::Sender<Delivery>,
}

#[derive(Default)]
pub(crate) struct Registry {
    exact: HashMap<String, Vec<Entry>>,
    wildcard: Vec<(String, Entry)>,
    /// Rotates the member of a queue group that gets the next message.
    next_member: AtomicUsize,
}

/// A registry shared by a bus and the guards of its subscriptions.
pub(crate) type SharedRegistry = Arc<RwLock<Registry>>;

impl Registry {
    /// Registers a subscription; its buffer holds `capacity` messages.
    pub(crate) fn subscribe(
        registry: &SharedRegistry,
        id: u64,
        subject: String,
        queue: Option<String>,
        capacity: usize,
    ) -> EmbeddedSubscription {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        let entry = Entry {
            id,
            queue: queue.map(String::into_boxed_str),
            tx,
        };
        let literal = subject::is_literal(&subject);
        {
            let mut reg = registry.write().unwrap_or_else(PoisonError::into_inner);
            if literal {
                reg.exact.entry(subject.clone()).or_default().push(entry);
            } else {
                reg.wildcard.push((subject.clone(), entry));
            }
        }
        EmbeddedSubscription {
            _guard: Guard {
                registry: Arc::clone(registry),
                id,
                subject,
                literal,
            },
            rx,
        }
    }

    /// Delivers `message` to every matching plain subscriber and to one member of every
    /// matching queue group. Returns how many subscriptions matched (whether or not their
    /// buffer had room), which is what "no responders" is about.
    pub(crate) fn publish(registry: &SharedRegistry, message: Message, stats: &BusStats) -> usize {
        let reg = registry.read().unwrap_or_else(PoisonError::into_inner);
        let exact = reg.exact.get(message.subject.as_str());
        if exact.is_none() && reg.wildcard.is_empty() {
            return 0;
        }
        let delivery = Arc::new(message);
        let subject = delivery.subject.as_str();
        // Queue members seen, by group; allocated only when a queue subscriber matched.
        let mut groups: Vec<(&str, Vec<&Entry>)> = Vec::new();
        let mut matched = 0;
        let matching = exact.into_iter().flatten().chain(
            reg.wildcard
                .iter()
                .filter(|(pattern, _)| subject::matches(pattern, subject))
                .map(|(_, entry)| entry),
        );
        for entry in matching {
            matched += 1;
            match entry.queue.as_deref() {
                None => {
                    if let Err(TrySendError::Full(_)) = entry.tx.try_send(Arc::clone(&delivery)) {
                        stats.record_slow_consumer(subject);
                    }
                }
                Some(queue) => match groups.iter_mut().find(|(name, _)| *name == queue) {
                    Some((_, members)) => members.push(entry),
                    None => groups.push((queue, vec![entry])),
                },
            }
        }
        for (_, members) in &groups {
            let start = reg.next_member.fetch_add(1, Ordering::Relaxed);
            // One member gets it; if its buffer is full the next one with room does,
            // so a group drops a message only when every member is behind.
            let delivered = (0..members.len())
                .map(|i| members[(start + i) % members.len()])
                .any(|member| member.tx.try_send(Arc::clone(&delivery)).is_ok());
            if !delivered {
                stats.record_slow_consumer(subject);
            }
        }
        matched
    }

    fn remove(&mut self, id: u64, subject: &str, literal: bool) {
        if literal {
            if let Some(entries) = self.exact.get_mut(subject) {
                entries.retain(|e| e.id != id);
                if entries.is_empty() {
                    self.exact.remove(subject);
                }
            }
        } else {
            self.wildcard.retain(|(_, e)| e.id != id);
        }
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.exact.values().map(Vec::len).sum::<usize>() + self.wildcard.len()
    }
}

/// Removes its subscription from the registry when dropped, so nothing is delivered to
/// (or buffered for) a subscription that is gone.
struct Guard {
    registry: SharedRegistry,
    id: u64,
    subject: String,
    literal: bool,
}

impl Drop for Guard {
    fn drop(&mut self) {
        let mut reg = self
            .registry
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        reg.remove(self.id, &self.subject, self.literal);
    }
}

/// The receiving end of an embedded subscription.
pub(crate) struct EmbeddedSubscription {
    _guard: Guard,
    rx: mpsc::Receiver<Delivery>,
}

impl EmbeddedSubscription {
    pub(crate) fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<Message>> {
        self.rx
            .poll_recv(cx)
            .map(|d| d.map(|d| Arc::try_unwrap(d).unwrap_or_else(|shared| (*shared).clone())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn message(subject: &str) -> Message {
        Message {
            subject: subject.into(),
            reply: None,
            headers: Default::default(),
            payload: Bytes::from_static(b"x"),
        }
    }

    fn try_recv(sub: &mut EmbeddedSubscription) -> Option<Message> {
        sub.rx
            .try_recv()
            .ok()
            .map(|d| Arc::try_unwrap(d).unwrap_or_else(|s| (*s).clone()))
    }

    #[test]
    fn exact_wildcard_and_guard_removal() {
        let registry = SharedRegistry::default();
        let stats = BusStats::default();
        let mut exact = Registry::subscribe(&registry, 1, "a.b".into(), None, 8);
        let mut wild = Registry::subscribe(&registry, 2, "a.>".into(), None, 8);
        assert_eq!(Registry::publish(&registry, message("a.b"), &stats), 2);
        assert_eq!(Registry::publish(&registry, message("a.c.d"), &stats), 1);
        assert_eq!(Registry::publish(&registry, message("b"), &stats), 0);
        assert_eq!(try_recv(&mut exact).map(|m| m.subject), Some("a.b".into()));
        assert!(try_recv(&mut exact).is_none());
        assert_eq!(try_recv(&mut wild).map(|m| m.subject), Some("a.b".into()));
        assert_eq!(try_recv(&mut wild).map(|m| m.subject), Some("a.c.d".into()));
        drop(exact);
        drop(wild);
        let reg = registry.read().unwrap();
        assert_eq!(reg.len(), 0);
        assert!(reg.exact.is_empty(), "empty exact entries are removed");
    }

    #[test]
    fn full_buffer_drops_and_counts() {
        let registry = SharedRegistry::default();
        let stats = BusStats::default();
        let mut sub = Registry::subscribe(&registry, 1, "s".into(), None, 2);
        for _ in 0..5 {
            Registry::publish(&registry, message("s"), &stats);
        }
        assert_eq!(stats.slow_consumer_drops(), 3);
        assert!(try_recv(&mut sub).is_some());
        assert!(try_recv(&mut sub).is_some());
        assert!(try_recv(&mut sub).is_none());
    }

    #[test]
    fn queue_group_member_with_room_gets_it() {
        let registry = SharedRegistry::default();
        let stats = BusStats::default();
        let mut a = Registry::subscribe(&registry, 1, "q".into(), Some("g".into()), 1);
        let mut b = Registry::subscribe(&registry, 2, "q".into(), Some("g".into()), 1);
        for _ in 0..3 {
            Registry::publish(&registry, message("q"), &stats);
        }
        assert!(try_recv(&mut a).is_some());
        assert!(try_recv(&mut b).is_some());
        assert_eq!(
            stats.slow_consumer_drops(),
            1,
            "dropped only when all are full"
        );
    }
}
