//! Whether a broker's server is there, and how often it went away or
//! failed: what every backend on a server notes, and what the broker's
//! info and the metrics read.

// Only the backends on a server note anything.
#![cfg_attr(
    not(any(feature = "redis", feature = "amqp", feature = "nats")),
    allow(dead_code)
)]

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// A backend's connection state and its counts.
#[derive(Debug, Default)]
pub(crate) struct LinkState {
    up: AtomicBool,
    disconnects: AtomicU64,
    errors: AtomicU64,
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
            self.disconnects.fetch_add(1, Ordering::Relaxed);
        }
        was
    }

    /// Notes an operation the server refused or that failed on the way.
    pub(crate) fn failed(&self) {
        self.errors.fetch_add(1, Ordering::Relaxed);
    }

    /// Connections lost so far.
    pub(crate) fn disconnects(&self) -> u64 {
        self.disconnects.load(Ordering::Relaxed)
    }

    /// Operations that failed so far.
    pub(crate) fn errors(&self) -> u64 {
        self.errors.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lost_connection_counts_once_whatever_fails_after() {
        let link = LinkState::new(true);
        assert!(link.set_up(false));
        assert!(!link.set_up(false));
        link.set_up(true);
        link.set_up(false);
        assert_eq!(link.disconnects(), 2);
        assert!(!link.is_up());
    }
}
