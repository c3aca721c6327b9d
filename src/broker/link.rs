//! Whether a broker's server is there, and how often it went away or
//! failed: what every backend on a server notes, and what the broker's
//! info and the metrics read.

// Only the backends on a server note anything.
#![cfg_attr(
    not(any(feature = "redis", feature = "amqp", feature = "nats")),
    allow(dead_code)
)]

use std::sync::atomic::{AtomicBool, Ordering};

use crate::backend::{FailureCounts, Failures};

/// A backend's connection state and its counts.
#[derive(Debug, Default)]
pub(crate) struct LinkState {
    up: AtomicBool,
    failures: Failures,
}

impl LinkState {
    /// Connected (`up`) or not yet.
    pub(crate) fn new(up: bool) -> LinkState {
        LinkState {
            up: AtomicBool::new(up),
            ..LinkState::default()
        }
    }

    /// Whether the last operation found the server there.
    pub(crate) fn is_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }

    /// Notes the server there or gone; a connection lost counts once,
    /// however many operations then fail. Returns whether it was up.
    pub(crate) fn set_up(&self, up: bool) -> bool {
        let was = self.up.swap(up, Ordering::Relaxed);
        if was && !up {
            self.failures.disconnected();
        }
        was
    }

    /// Notes an operation that failed: a server error while connected, a
    /// connection error otherwise (note a lost connection first).
    pub(crate) fn failed(&self) {
        self.failures.failed(self.is_up());
    }

    /// What it counted so far.
    pub(crate) fn counts(&self) -> FailureCounts {
        self.failures.counts()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lost_connection_counts_once_and_errors_by_whether_it_was_up() {
        let link = LinkState::new(true);
        assert!(link.set_up(false));
        assert!(!link.set_up(false));
        link.failed();
        link.set_up(true);
        link.failed();
        link.set_up(false);
        let counts = link.counts();
        assert_eq!(
            (counts.disconnects, counts.errors, counts.server_errors),
            (2, 2, 1)
        );
        assert!(!link.is_up());
    }
}
