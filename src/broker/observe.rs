//! Watching the broker: every message this process sends and how each
//! attempt at one by this process's consumers was settled (in-process, or
//! on a server). The [`testkit`](crate::testkit) builds on it.

use serde_json::Value;

use std::sync::atomic::{AtomicU64, Ordering};

use super::job::Body;
use crate::bus::Observers;

/// How one attempt at a message ended.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Settlement {
    /// Handled: acknowledged and gone.
    Acked,
    /// Failed; it goes back to its queue after its backoff.
    Retried {
        /// The attempt that failed (1 for the first).
        attempt: u32,
        /// Why it failed.
        reason: String,
    },
    /// Failed for good (or did not decode): in the dead letters.
    DeadLettered {
        /// The attempts it had.
        attempts: u32,
        /// Why.
        reason: String,
    },
    /// Not handled (its agent was stopping): back in its queue as it was.
    Released,
}

/// What happened on the broker, as this process saw it. In-process, a
/// message keeps its id from `Sent` to its last `Settled`; on a server,
/// each delivery to a consumer of this process is `Taken` with an id of
/// its own, which its `Settled` names (`Sent` ids are not those).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum QueueEvent {
    /// A message was sent to a queue.
    Sent {
        /// The message's id in this broker.
        id: u64,
        /// Its queue.
        queue: String,
        /// The message, as JSON.
        message: Value,
    },
    /// A consumer of this process took a message from a queue on a
    /// server (each delivery, retries included, has an id of its own).
    Taken {
        /// This delivery's id in this process.
        id: u64,
        /// Its queue.
        queue: String,
        /// The message, as JSON.
        message: Value,
    },
    /// An attempt at a message was settled.
    Settled {
        /// The message's id in this broker.
        id: u64,
        /// Its queue.
        queue: String,
        /// The consumer that had it (`Agent.method`).
        consumer: String,
        /// How the attempt ended.
        settlement: Settlement,
    },
}

/// The event of a message sent to `queue`.
pub(super) fn sent(id: u64, queue: &str, body: &Body) -> Option<QueueEvent> {
    Some(QueueEvent::Sent {
        id,
        queue: queue.to_owned(),
        message: body.to_json(),
    })
}

/// The event of an attempt at a message of `queue` settled by `consumer`.
pub(super) fn settled(
    id: u64,
    queue: &str,
    consumer: &str,
    settlement: Settlement,
) -> Option<QueueEvent> {
    Some(QueueEvent::Settled {
        id,
        queue: queue.to_owned(),
        consumer: consumer.to_owned(),
        settlement,
    })
}

/// The event of a message sent to a queue on a server.
pub(super) fn sent_bytes(id: u64, queue: &str, body: &[u8]) -> Option<QueueEvent> {
    Some(QueueEvent::Sent {
        id,
        queue: queue.to_owned(),
        message: super::error::DeadLetter::message_of(body),
    })
}

/// The event of a delivery of `body` from a queue on a server.
pub(super) fn taken(id: u64, queue: &str, body: &[u8]) -> Option<QueueEvent> {
    Some(QueueEvent::Taken {
        id,
        queue: queue.to_owned(),
        message: super::error::DeadLetter::message_of(body),
    })
}

/// What an attempt's verdict means for an observer.
pub(super) fn settlement(verdict: &super::delivery::Verdict) -> Settlement {
    use super::delivery::Verdict;
    match verdict {
        Verdict::Ack => Settlement::Acked,
        Verdict::Release => Settlement::Released,
        Verdict::Retry {
            attempts, reason, ..
        } => Settlement::Retried {
            attempt: *attempts,
            reason: reason.clone(),
        },
        Verdict::Dead { reason, attempts } => Settlement::DeadLettered {
            attempts: *attempts,
            reason: reason.clone(),
        },
    }
}

/// Who watches a broker on a server, and the ids its deliveries get.
#[derive(Default)]
pub(crate) struct Watchers {
    observers: Observers<QueueEvent>,
    next_id: AtomicU64,
}

impl Watchers {
    /// Every event from now on.
    #[cfg(feature = "testkit")]
    pub(super) fn add(&self) -> tokio::sync::mpsc::UnboundedReceiver<QueueEvent> {
        self.observers.add()
    }

    /// An id for a message sent or taken.
    pub(super) fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Tells the watchers, if there are any (`event` is not built
    /// otherwise).
    pub(super) fn tell(&self, event: impl FnOnce() -> Option<QueueEvent>) {
        self.observers.tell(event);
    }
}
