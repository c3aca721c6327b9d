//! Which broker a System uses, and what it reports about itself.

use std::fmt;

use serde::Serialize;

/// Which broker the agents of a System use: the in-process one (the
/// default). Install it with [`Broker::connect`](super::Broker::connect)
/// or [`Launcher::broker`](crate::Launcher::broker) before the agents
/// start.
#[derive(Clone)]
pub struct BrokerConfig {
    pub(super) capacity: usize,
}

impl fmt::Debug for BrokerConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BrokerConfig")
            .field("kind", &"in-process")
            .field("capacity", &self.capacity)
            .finish()
    }
}

impl Default for BrokerConfig {
    fn default() -> Self {
        BrokerConfig::in_process()
    }
}

impl BrokerConfig {
    /// The in-process broker: bounded queues in this process (10 000
    /// messages each by default; `send` waits while one is full), with the
    /// same retry and dead-letter semantics as the others. Messages live as
    /// long as the System.
    pub fn in_process() -> Self {
        BrokerConfig { capacity: 10_000 }
    }

    /// How many messages an in-process queue holds before `send` waits.
    pub fn capacity(mut self, messages: usize) -> Self {
        self.capacity = messages.max(1);
        self
    }
}

/// What a broker reports about itself: in each agent's
/// [`AgentInfo`](crate::AgentInfo), and from [`Broker::info`](super::Broker::info).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct BrokerInfo {
    /// `in-process`.
    pub kind: &'static str,
    /// The URL, password redacted (none in-process).
    pub url: Option<String>,
    /// Whether it is connected (always in-process).
    pub connected: bool,
}
