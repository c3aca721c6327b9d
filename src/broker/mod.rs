//! Work queues: a producer sends a message to a named queue, exactly one
//! consumer handles it, at least once.
//!
//! - [`Queue`] (`#[derive(Queue)]`): a message type names its queue;
//! - consumers are `#[consumer(Message, ...)]` methods of agents;
//! - [`Broker`]: `send`, `length` and the dead letters, on the System's
//!   broker: in-process by default, or Redis ([`BrokerConfig`]).
//!
//! See the crate docs' broker section for the delivery semantics.

#[cfg(feature = "amqp")]
mod amqp;
// Settlements gathered into one round trip (the Redis broker's).
#[cfg_attr(not(feature = "redis"), allow(dead_code))]
mod batch;
mod config;
mod delivery;
mod error;
mod handle;
mod job;
#[cfg(feature = "kafka")]
mod kafka;
mod link;
mod memory;
#[cfg(feature = "nats")]
mod nats;
mod observe;
mod queue;
#[cfg(feature = "redis")]
mod redis;
// Only backends use parts of the seam (AMQP all of it).
#[cfg_attr(not(feature = "amqp"), allow(dead_code))]
mod remote;
mod runner;
mod tally;

pub use config::{BrokerConfig, BrokerInfo};
pub use error::{BrokerError, DeadLetter};
#[cfg(feature = "web")]
pub(crate) use handle::connected;
pub(crate) use handle::{close, current_info, disconnect};
pub use handle::{Broker, Sending};
pub(crate) use job::JobFn;
pub use job::{Binding, Consume, ConsumerOptions, Job, Settle};
pub use observe::{QueueEvent, Settlement};
pub use queue::Queue;
pub(crate) use runner::Consuming;
pub use tally::QueueCounts;

/// The confirmation latency of this process's sends, by queue.
#[cfg(feature = "metrics")]
pub(crate) fn confirmations() -> Vec<(&'static str, crate::durations::Durations)> {
    tally::TALLY.confirmations()
}

/// How a queue backend's configuration is made from a URL.
type Open = fn(&str) -> Result<BrokerConfig, BrokerError>;

/// The queue backends, compiled in or not: the one place in the broker
/// that names them (see `docs/backends.md`).
pub(crate) static BACKENDS: &[crate::backend::Registration<Open>] = &[
    crate::backend::Registration {
        name: "redis",
        schemes: crate::backend::REDIS_SCHEMES,
        feature: "redis",
        #[cfg(feature = "redis")]
        open: Some(BrokerConfig::redis),
        #[cfg(not(feature = "redis"))]
        open: None,
    },
    crate::backend::Registration {
        name: "amqp",
        schemes: &["amqp", "amqps"],
        feature: "amqp",
        #[cfg(feature = "amqp")]
        open: Some(BrokerConfig::amqp),
        #[cfg(not(feature = "amqp"))]
        open: None,
    },
    crate::backend::Registration {
        name: "nats",
        schemes: &["nats"],
        feature: "nats",
        #[cfg(feature = "nats")]
        open: Some(BrokerConfig::nats),
        #[cfg(not(feature = "nats"))]
        open: None,
    },
    crate::backend::Registration {
        name: "kafka",
        schemes: &["kafka"],
        feature: "kafka",
        #[cfg(feature = "kafka")]
        open: Some(BrokerConfig::kafka),
        #[cfg(not(feature = "kafka"))]
        open: None,
    },
];

/// Declares a queue's message: see [`Queue`].
pub use microagent_macros::Queue;
