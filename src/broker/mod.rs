//! Work queues: a producer sends a message to a named queue, exactly one
//! consumer handles it, at least once.
//!
//! - [`Queue`] (`#[derive(Queue)]`): a message type names its queue;
//! - consumers are `#[consumer(Message, ...)]` methods of agents;
//! - [`Broker`]: `send`, `length` and the dead letters, on the System's
//!   broker: in-process by default, or Redis ([`BrokerConfig`]).
//!
//! See the crate docs' broker section for the delivery semantics.

mod amqp;
mod config;
mod error;
mod handle;
mod job;
mod memory;
mod observe;
mod queue;
mod redis;
mod runner;

pub use config::{BrokerConfig, BrokerInfo};
pub use error::{BrokerError, DeadLetter};
pub use handle::Broker;
pub(crate) use handle::{close, connected, current_info};
pub use job::{Binding, Consume, ConsumerOptions, Job, Settle};
pub use observe::{QueueEvent, Settlement};
pub use queue::Queue;
pub(crate) use runner::{Consuming, JobFn};

/// Declares a queue's message: see [`Queue`].
pub use microagent_macros::Queue;
