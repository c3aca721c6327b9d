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

/// The observers of one bus.
#[derive(Default)]
pub(super) struct Observers {
    /// Whether there may be any: a send checks only this while none is.
    any: AtomicBool,
    list: Mutex<Vec<mpsc::UnboundedSender<Sent>>>,
}

impl Observers {
    pub(super) fn add(&self) -> Observer {
        let (tx, sent) = mpsc::unbounded_channel();
        let mut list = self.list.lock().unwrap_or_else(PoisonError::into_inner);
        list.push(tx);
        self.any.store(true, Ordering::Release);
        Observer { sent }
    }

    /// Tells every observer about a signal being sent.
    pub(super) fn record(&self, signal: &str, sender: &str, payload: &Payload, call: bool) {
        if !self.any.load(Ordering::Acquire) {
            return;
        }
        // A payload that does not serialize fails the send itself.
        let Ok(args) = payload.to_json() else {
            return;
        };
        let sent = Sent {
            signal: signal.to_owned(),
            sender: sender.to_owned(),
            args,
            call,
        };
        let mut list = self.list.lock().unwrap_or_else(PoisonError::into_inner);
        list.retain(|tx| tx.send(sent.clone()).is_ok());
        if list.is_empty() {
            self.any.store(false, Ordering::Release);
        }
    }
}
