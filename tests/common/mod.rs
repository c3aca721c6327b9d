//! Shared helpers for the integration tests.
#![allow(dead_code)]

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

/// An ordered, thread-safe record of what happened, shared by agents and tests.
#[derive(Clone, Default, Debug)]
pub struct Events(Arc<Mutex<Vec<String>>>);

impl Events {
    pub fn push(&self, event: impl Into<String>) {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(event.into());
    }

    pub fn all(&self) -> Vec<String> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub fn count(&self, event: &str) -> usize {
        self.all().iter().filter(|e| *e == event).count()
    }
}

/// A short real sleep inside an async hook, so the hook really suspends.
pub async fn pause() {
    actix_rt::time::sleep(Duration::from_millis(20)).await;
}

/// An error type for hooks that fail.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Boom(pub &'static str);

pub mod process;
