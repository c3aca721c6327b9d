//! How this process's consumers settled their attempts, queue by queue:
//! counted once here, where [`BrokerInfo::queues`](super::BrokerInfo)
//! reads them (and the metrics, with the `metrics` feature). The counts
//! are the process's, like a metric's: they add up over the brokers of
//! every System the process runs, and never go back.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use serde::Serialize;

use super::delivery::Verdict;

/// How the attempts of this process's consumers at one queue's messages
/// were settled, since the process started. Every attempt counts
/// once: `acked + retried + dead_lettered + released` attempts ended.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct QueueCounts {
    /// The queue.
    pub queue: &'static str,
    /// Attempts that handled their message (it is gone).
    pub acked: u64,
    /// Failed attempts after which the message goes back to its queue,
    /// after its backoff.
    pub retried: u64,
    /// Messages that went to the dead letters: their last attempt failed,
    /// or they did not decode.
    pub dead_lettered: u64,
    /// Messages handed back unhandled (their agent was stopping), attempts
    /// unchanged.
    pub released: u64,
}

/// One queue's counts, shared by its consumers in this process.
#[derive(Debug, Default)]
pub(crate) struct QueueTally {
    acked: AtomicU64,
    retried: AtomicU64,
    dead_lettered: AtomicU64,
    released: AtomicU64,
}

impl QueueTally {
    /// Counts an attempt settled as `verdict` says.
    pub(crate) fn count(&self, verdict: &Verdict) {
        let counter = match verdict {
            Verdict::Ack => &self.acked,
            Verdict::Retry { .. } => &self.retried,
            Verdict::Dead { .. } => &self.dead_lettered,
            Verdict::Release => &self.released,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    fn counts(&self, queue: &'static str) -> QueueCounts {
        let read = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        QueueCounts {
            queue,
            acked: read(&self.acked),
            retried: read(&self.retried),
            dead_lettered: read(&self.dead_lettered),
            released: read(&self.released),
        }
    }
}

/// The counts of every queue this process consumes, by name (declared
/// names only, so the table is as large as the declarations).
pub(crate) struct Tally {
    queues: Mutex<BTreeMap<&'static str, Arc<QueueTally>>>,
}

/// The process's counts.
pub(crate) static TALLY: Tally = Tally {
    queues: Mutex::new(BTreeMap::new()),
};

impl Tally {
    /// The counts of `queue`, made on its first consumer.
    pub(crate) fn queue(&self, queue: &'static str) -> Arc<QueueTally> {
        let mut queues = self.queues.lock().unwrap_or_else(PoisonError::into_inner);
        queues.entry(queue).or_default().clone()
    }

    /// Every queue's counts, by name.
    pub(crate) fn counts(&self) -> Vec<QueueCounts> {
        let queues = self.queues.lock().unwrap_or_else(PoisonError::into_inner);
        queues
            .iter()
            .map(|(queue, tally)| tally.counts(queue))
            .collect()
    }
}
