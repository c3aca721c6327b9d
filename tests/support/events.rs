//! Recording what happened, in order, from agents and tests alike.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

/// An ordered, thread-safe record of what happened, shared by agents and tests.
#[derive(Clone, Default, Debug)]
pub(crate) struct Events(Arc<Mutex<Vec<String>>>);

impl Events {
    pub(crate) fn push(&self, event: impl Into<String>) {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(event.into());
    }

    pub(crate) fn all(&self) -> Vec<String> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub(crate) fn count(&self, event: &str) -> usize {
        self.all().iter().filter(|e| *e == event).count()
    }

    /// Waits (polling, on the current actix runtime) until `event` has been
    /// recorded.
    pub(crate) async fn seen(&self, event: &str) {
        // A hang detector (real time), not a performance threshold.
        let start = std::time::Instant::now();
        while self.count(event) == 0 {
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "never seen: {event:?}; seen: {:?}",
                self.all()
            );
            actix_rt::time::sleep(Duration::from_millis(2)).await;
        }
    }
}
