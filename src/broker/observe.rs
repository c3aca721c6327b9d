//! Watching the in-process broker: every message sent to its queues and
//! how each attempt at one was settled. The [`testkit`](crate::testkit)
//! builds on it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};

use serde_json::Value;
use tokio::sync::mpsc;

use super::handle::DeadLetter;
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

/// The observers of one in-process broker.
#[derive(Default)]
pub(super) struct QueueObservers {
    /// Whether there may be any: a send checks only this while none is.
    any: AtomicBool,
    list: Mutex<Vec<mpsc::UnboundedSender<QueueEvent>>>,
}

impl QueueObservers {
    pub(super) fn add(&self) -> mpsc::UnboundedReceiver<QueueEvent> {
        let (tx, rx) = mpsc::unbounded_channel();
        self.list
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(tx);
        self.any.store(true, Ordering::Release);
        rx
    }

    fn tell(&self, event: impl FnOnce() -> QueueEvent) {
        if !self.any.load(Ordering::Acquire) {
            return;
        }
        let event = event();
        let mut list = self.list.lock().unwrap_or_else(PoisonError::into_inner);
        list.retain(|tx| tx.send(event.clone()).is_ok());
        if list.is_empty() {
            self.any.store(false, Ordering::Release);
        }
    }

    pub(super) fn sent(&self, id: u64, queue: &str, body: &Body) {
        self.tell(|| QueueEvent::Sent {
            id,
            queue: queue.to_owned(),
            message: message(body),
        });
    }

    pub(super) fn settled_with(
        &self,
        id: u64,
        queue: &str,
        consumer: &str,
        settlement: impl FnOnce() -> Settlement,
    ) {
        self.tell(|| QueueEvent::Settled {
            id,
            queue: queue.to_owned(),
            consumer: consumer.to_owned(),
            settlement: settlement(),
        });
    }
}

/// A message as JSON (its encoding error's text if it has none).
fn message(body: &Body) -> Value {
    match body.to_wire() {
        Ok(bytes) => DeadLetter::message_of(&bytes),
        Err(e) => Value::String(e.to_string()),
    }
}
