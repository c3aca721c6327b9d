//! What this process did on its bus: signals sent, and calls by signal
//! and outcome, counted once here, where [`BusInfo`](super::BusInfo)
//! reads them (and the metrics, with the `metrics` feature). The counts
//! are the process's, like a metric's: they add up over the buses of
//! every System the process runs, and never go back.
//!
//! Calls are counted per signal name for the first [`SIGNALS_CAP`]
//! names; the calls of any further name (a process calling signals by
//! names it makes up, with `call_dyn`) are added up under [`OTHER`], so
//! the table, and the metrics' label sets, stay bounded.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use serde::Serialize;

/// The most signal names counted one by one.
pub const SIGNALS_CAP: usize = 200;

/// The name the calls of the names past [`SIGNALS_CAP`] are counted under.
pub const OTHER: &str = "_other";

/// The calls this process made of one signal, by outcome.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct CallCounts {
    /// The signal (or [`OTHER`]).
    pub signal: String,
    /// Calls that got at least one answer.
    pub answered: u64,
    /// Calls that got none before their timeout ([`BusError::NoAnswer`](super::BusError::NoAnswer)).
    pub no_answer: u64,
    /// Calls that failed otherwise (the bus was down, the signal did not
    /// encode...).
    pub failed: u64,
    /// The answers the answered calls got, in all.
    pub answers: u64,
}

/// One signal's calls.
#[derive(Debug, Default)]
pub(crate) struct CallTally {
    answered: AtomicU64,
    no_answer: AtomicU64,
    failed: AtomicU64,
    answers: AtomicU64,
    /// How long the calls took, answered or not.
    #[cfg(feature = "metrics")]
    pub(crate) latency: crate::durations::RunHistogram,
}

/// How a call ended.
#[derive(Debug, Clone, Copy)]
pub(crate) enum CallEnd {
    /// With this many answers (one or more).
    Answered(usize),
    NoAnswer,
    Failed,
}

/// The process's bus counts.
#[derive(Debug, Default)]
pub(crate) struct BusTally {
    sent: AtomicU64,
    received: AtomicU64,
    calls: Mutex<BTreeMap<String, Arc<CallTally>>>,
}

/// The process's counts.
pub(crate) static TALLY: BusTally = BusTally {
    sent: AtomicU64::new(0),
    received: AtomicU64::new(0),
    calls: Mutex::new(BTreeMap::new()),
};

impl BusTally {
    /// Counts a signal sent.
    pub(crate) fn sent(&self) {
        self.sent.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a signal (or call) handed to this process's receivers.
    pub(crate) fn received(&self) {
        self.received.fetch_add(1, Ordering::Relaxed);
    }

    /// Signals and calls handed to this process's receivers so far.
    pub(crate) fn received_count(&self) -> u64 {
        self.received.load(Ordering::Relaxed)
    }

    /// Counts a call of `signal` that ended as `end` after `took`.
    pub(crate) fn called(&self, signal: &str, end: CallEnd, took: Duration) {
        let tally = self.of(signal);
        let counter = match end {
            CallEnd::Answered(answers) => {
                tally.answers.fetch_add(answers as u64, Ordering::Relaxed);
                &tally.answered
            }
            CallEnd::NoAnswer => &tally.no_answer,
            CallEnd::Failed => &tally.failed,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        #[cfg(feature = "metrics")]
        tally.latency.record(took);
        #[cfg(not(feature = "metrics"))]
        let _ = took;
    }

    /// The counts of `signal`, made on its first call (under [`OTHER`]
    /// once [`SIGNALS_CAP`] names have theirs).
    fn of(&self, signal: &str) -> Arc<CallTally> {
        let mut calls = self.calls.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(tally) = calls.get(signal) {
            return tally.clone();
        }
        let name = if calls.len() < SIGNALS_CAP {
            signal
        } else {
            OTHER
        };
        calls.entry(name.to_owned()).or_default().clone()
    }

    /// Signals sent so far.
    pub(crate) fn sent_count(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }

    /// Every signal's calls, by name.
    pub(crate) fn calls(&self) -> Vec<CallCounts> {
        let calls = self.calls.lock().unwrap_or_else(PoisonError::into_inner);
        let read = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        calls
            .iter()
            .map(|(signal, tally)| CallCounts {
                signal: signal.clone(),
                answered: read(&tally.answered),
                no_answer: read(&tally.no_answer),
                failed: read(&tally.failed),
                answers: read(&tally.answers),
            })
            .collect()
    }

    /// Every signal's call latencies, by name.
    #[cfg(feature = "metrics")]
    pub(crate) fn latencies(&self) -> Vec<(String, crate::durations::Durations)> {
        let calls = self.calls.lock().unwrap_or_else(PoisonError::into_inner);
        calls
            .iter()
            .map(|(signal, tally)| (signal.clone(), tally.latency.durations()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_past_the_cap_add_up_under_other() {
        let tally = BusTally::default();
        for n in 0..SIGNALS_CAP + 50 {
            let end = CallEnd::Answered(2);
            tally.called(&format!("signal_{n}"), end, Duration::from_millis(1));
        }
        tally.called("signal_0", CallEnd::NoAnswer, Duration::ZERO);
        let calls = tally.calls();
        assert_eq!(calls.len(), SIGNALS_CAP + 1);
        let other = calls.iter().find(|c| c.signal == OTHER).unwrap();
        assert_eq!((other.answered, other.answers), (50, 100));
        let first = calls.iter().find(|c| c.signal == "signal_0").unwrap();
        assert_eq!((first.answered, first.no_answer), (1, 1));
    }
}
