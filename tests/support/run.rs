//! Running agents in tests.

use std::time::Duration;

use microagent::{Agent, AgentError};

use super::Events;

/// A short real sleep inside an async hook, so the hook really suspends.
pub(crate) async fn pause() {
    actix_rt::time::sleep(Duration::from_millis(20)).await;
}

/// Runs an agent in a new System until it stops, and returns its outcome;
/// stops it once `events` has recorded `stop_when`, if given.
pub(crate) fn run_until<A: Agent>(
    agent: A,
    events: &Events,
    stop_when: Option<&'static str>,
) -> Result<(), AgentError> {
    let watched = events.clone();
    microagent::run(async move {
        let (addr, handle) = microagent::start(agent);
        if let Some(event) = stop_when {
            watched.seen(event).await;
            handle.stop();
        }
        let outcome = handle.await;
        drop(addr);
        outcome
    })
}
