//! In-process dispatch: the receivers of each signal in this process, and
//! handing a signal to them. Every backend delivers through it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use super::delivery::{AnswerTx, Delivery, Payload, Reply};
use super::signal::SignalError;
use crate::spans::Origin;

/// How the bus hands a delivery to one subscribed receiver; `false` once
/// its agent is gone.
pub(crate) type DeliverFn = Box<dyn Fn(Delivery) -> bool + Send + Sync>;

struct Subscriber {
    id: u64,
    responder: Arc<str>,
    deliver: DeliverFn,
}

/// The subscribers of one signal. A publish clones the `Arc`; a
/// (un)subscribe changes the list in place when no publish holds it, and
/// copies it otherwise (`Arc::make_mut`), so that subscribing N receivers
/// costs O(N), not O(N²).
type List = Arc<Vec<Arc<Subscriber>>>;

/// The subscribers of one System's bus, by signal name.
#[derive(Default)]
pub(super) struct Subscribers {
    by_signal: Mutex<HashMap<String, List>>,
    next_id: AtomicU64,
}

impl Subscribers {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, List>> {
        self.by_signal
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn of(&self, signal: &str) -> Option<List> {
        self.lock().get(signal).cloned()
    }

    /// Adds receivers: `(signal, responder, deliver)` each.
    pub(super) fn add(
        self: &Arc<Self>,
        receivers: Vec<(&'static str, Arc<str>, DeliverFn)>,
    ) -> Vec<(&'static str, u64)> {
        let mut entries = Vec::with_capacity(receivers.len());
        let mut by_signal = self.lock();
        for (signal, responder, deliver) in receivers {
            let id = self.next_id.fetch_add(1, Ordering::Relaxed);
            let list = by_signal.entry(signal.to_owned()).or_default();
            Arc::make_mut(list).push(Arc::new(Subscriber {
                id,
                responder,
                deliver,
            }));
            entries.push((signal, id));
        }
        entries
    }

    /// Removes the receivers `add` returned these entries for.
    pub(super) fn remove(&self, entries: &[(&'static str, u64)]) {
        let mut by_signal = self.lock();
        for (signal, id) in entries {
            if let Some(list) = by_signal.get_mut(*signal) {
                Arc::make_mut(list).retain(|s| s.id != *id);
            }
        }
    }

    /// Hands a signal to its receivers here; returns how many got it. The
    /// last receiver gets the payload itself, the others a JSON copy.
    pub(super) fn dispatch(
        &self,
        name: &str,
        sender: &Arc<str>,
        payload: Payload,
        reply: Option<AnswerTx>,
        origin: &Origin,
    ) -> Result<usize, SignalError> {
        let Some(subscribers) = self.of(name) else {
            return Ok(0);
        };
        let Some((last, others)) = subscribers.split_last() else {
            return Ok(0);
        };
        let delivery = |subscriber: &Subscriber, payload| Delivery {
            payload,
            sender: sender.clone(),
            origin: origin.clone(),
            reply: Reply {
                to: reply
                    .as_ref()
                    .map(|tx| (subscriber.responder.clone(), tx.clone())),
            },
        };
        let mut delivered = 0;
        if !others.is_empty() {
            let copy = payload.copy()?;
            for subscriber in others {
                if (subscriber.deliver)(delivery(subscriber, copy.copy()?)) {
                    delivered += 1;
                }
            }
        }
        if (last.deliver)(delivery(last, payload)) {
            delivered += 1;
        }
        if delivered > 0 {
            super::tally::TALLY.received();
        }
        Ok(delivered)
    }
}
