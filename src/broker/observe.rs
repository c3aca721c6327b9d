//! Watching the in-process broker: every message sent to its queues and
//! how each attempt at one was settled. The [`testkit`](crate::testkit)
//! builds on it.

use serde_json::Value;

use super::job::Body;

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

/// What happened on the in-process broker.
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
