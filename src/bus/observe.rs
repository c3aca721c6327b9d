//! Watching what a bus carries: every signal this process sends or calls
//! on it, with its sender and arguments. For tests (the
//! [`testkit`](crate::testkit) builds on it) and debugging.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};

use serde_json::{Map, Value};
use tokio::sync::mpsc;

use super::delivery::Payload;

/// A signal sent or called on a bus, as an [`Observer`] saw it.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Sent {
    /// The signal's name.
    pub signal: String,
    /// Who sent it (an agent's name, or what `Bus::send` was given).
    pub sender: String,
    /// Its arguments.
    pub args: Map<String, Value>,
    /// Whether it was an RPC call (`Bus::call`, `Bus::stream`) rather than
    /// a send.
    pub call: bool,
}

/// What a bus's senders in this process send, from the moment
/// [`Bus::observe`](super::Bus::observe) made it, in order. Costs nothing
/// once dropped.
#[derive(Debug)]
pub struct Observer {
    sent: mpsc::UnboundedReceiver<Sent>,
}

impl Observer {
    /// The signals sent since the last call, without waiting.
    pub fn drain(&mut self) -> Vec<Sent> {
        let mut sent = Vec::new();
        while let Ok(one) = self.sent.try_recv() {
            sent.push(one);
        }
        sent
    }

    /// The next signal sent, waiting for it.
    pub async fn next(&mut self) -> Option<Sent> {
        self.sent.recv().await
    }
}

/// Who watches something (a bus, the in-process broker): each gets every
/// event from the moment it started watching. Costs one atomic load per
/// event while nobody watches.
pub(crate) struct Observers<T> {
    /// Whether there may be any.
    any: AtomicBool,
    list: Mutex<Vec<mpsc::UnboundedSender<T>>>,
}

impl<T> Default for Observers<T> {
    fn default() -> Self {
        Observers {
            any: AtomicBool::new(false),
            list: Mutex::default(),
        }
    }
}

impl<T: Clone> Observers<T> {
    /// A new observer's end.
    pub(crate) fn add(&self) -> mpsc::UnboundedReceiver<T> {
        let (tx, rx) = mpsc::unbounded_channel();
        self.list
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(tx);
        self.any.store(true, Ordering::Release);
        rx
    }

    /// Tells every observer the event `event` makes (not called while
    /// nobody watches); observers that are gone are forgotten.
    pub(crate) fn tell(&self, event: impl FnOnce() -> Option<T>) {
        if !self.any.load(Ordering::Acquire) {
            return;
        }
        let Some(event) = event() else {
            return;
        };
        let mut list = self.list.lock().unwrap_or_else(PoisonError::into_inner);
        list.retain(|tx| tx.send(event.clone()).is_ok());
        if list.is_empty() {
            self.any.store(false, Ordering::Release);
        }
    }
}

impl Observers<Sent> {
    /// A new [`Observer`] of a bus.
    pub(super) fn observer(&self) -> Observer {
        Observer { sent: self.add() }
    }

    /// Tells every observer about a signal being sent.
    pub(super) fn record(&self, signal: &str, sender: &str, payload: &Payload, call: bool) {
        self.tell(|| {
            // A payload that does not serialize fails the send itself.
            let args = payload.to_json().ok()?;
            Some(Sent {
                signal: signal.to_owned(),
                sender: sender.to_owned(),
                args,
                call,
            })
        });
    }
}
