//! How this process's consumers settled their attempts, queue by queue,
//! what is in flight, and what this process sent: counted once here, where [`BrokerInfo::queues`](super::BrokerInfo)
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
    /// Messages taken by this process's consumers and not settled yet.
    pub in_flight: u64,
    /// Messages this process sent to the queue that the broker took (on a
    /// server: confirmed).
    pub sent: u64,
    /// Sends the broker refused or that failed on the way.
    pub send_failed: u64,
}

/// One queue's counts, shared by its consumers and senders in this
/// process.
#[derive(Debug, Default)]
pub(crate) struct QueueTally {
    acked: AtomicU64,
    retried: AtomicU64,
    dead_lettered: AtomicU64,
    released: AtomicU64,
    /// Taken, and settled (every settlement ends one taking).
    taken: AtomicU64,
    sent: AtomicU64,
    send_failed: AtomicU64,
    /// How long sends to a server took to be confirmed.
    #[cfg(feature = "metrics")]
    pub(crate) confirmation: crate::durations::RunHistogram,
}

impl QueueTally {
    /// A consumer took a message: in flight until it is settled.
    pub(crate) fn taken(&self) {
        self.taken.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts an attempt settled as `verdict` says (it is no longer in
    /// flight).
    pub(crate) fn count(&self, verdict: &Verdict) {
        let counter = match verdict {
            Verdict::Ack => &self.acked,
            Verdict::Retry { .. } => &self.retried,
            Verdict::Dead { .. } => &self.dead_lettered,
            Verdict::Release => &self.released,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// `count` messages went to the queue (or failed to): on a server,
    /// `took` is how long the confirmation took.
    #[cfg_attr(not(feature = "metrics"), allow(unused_variables))]
    pub(crate) fn sent(&self, count: usize, ok: bool, took: Option<std::time::Duration>) {
        let counter = if ok { &self.sent } else { &self.send_failed };
        counter.fetch_add(count as u64, Ordering::Relaxed);
        #[cfg(feature = "metrics")]
        if let (true, Some(took)) = (ok, took) {
            self.confirmation.record(took);
        }
    }

    fn counts(&self, queue: &'static str) -> QueueCounts {
        let read = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        let (acked, retried) = (read(&self.acked), read(&self.retried));
        let (dead_lettered, released) = (read(&self.dead_lettered), read(&self.released));
        let settled = acked + retried + dead_lettered + released;
        QueueCounts {
            queue,
            acked,
            retried,
            dead_lettered,
            released,
            // Read after the settlements: a settlement between the two
            // reads never shows as a negative.
            in_flight: read(&self.taken).saturating_sub(settled),
            sent: read(&self.sent),
            send_failed: read(&self.send_failed),
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
    /// The counts of `queue`, made on its first consumer or sender.
    pub(crate) fn queue(&self, queue: &'static str) -> Arc<QueueTally> {
        let mut queues = self.queues.lock().unwrap_or_else(PoisonError::into_inner);
        queues.entry(queue).or_default().clone()
    }

    /// Every queue's send confirmation latencies, by name.
    #[cfg(feature = "metrics")]
    pub(crate) fn confirmations(&self) -> Vec<(&'static str, crate::durations::Durations)> {
        let queues = self.queues.lock().unwrap_or_else(PoisonError::into_inner);
        queues
            .iter()
            .map(|(queue, tally)| (*queue, tally.confirmation.durations()))
            .collect()
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
