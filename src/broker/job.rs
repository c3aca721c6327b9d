//! A message on its way to one consumer, and how its consumer settles it.

use std::any::Any;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use super::handle::BrokerError;
use super::queue::Queue;
use crate::error::HookFailure;

/// How a consumer takes messages: declared with `#[consumer(...)]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConsumerOptions {
    /// Time a run may take; past it the run is cancelled and counts as a
    /// failed attempt.
    pub timeout: Duration,
    /// Attempts before the message goes to the dead letters.
    pub attempts: u32,
    /// The pause before the first retry; it doubles after each failure.
    pub backoff: Duration,
    /// Messages in flight at most for this consumer: taken from the queue
    /// and not yet settled. The backpressure.
    pub prefetch: u32,
}

impl Default for ConsumerOptions {
    fn default() -> Self {
        ConsumerOptions {
            timeout: Duration::from_secs(60),
            attempts: 3,
            backoff: Duration::from_secs(1),
            prefetch: 1,
        }
    }
}

/// How a consumer's queue is bound (AMQP): to an exchange, with topics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Binding {
    /// The exchange, if the queue has one.
    pub exchange: Option<&'static str>,
    /// The topics (a `topic` exchange); none: a `fanout` exchange.
    pub topics: &'static [&'static str],
}

/// How a run ended, for the broker.
#[derive(Debug)]
pub(crate) enum Outcome {
    /// Handled: remove or acknowledge it.
    Done,
    /// A failed attempt (error, panic, timeout), with the reason.
    Failed(String),
    /// It cannot be decoded: straight to the dead letters.
    Poison(String),
    /// Not handled (its agent was stopping): back to its queue as it was.
    Released,
}

/// What settles a job: the consumer's runner, called once.
pub(crate) type Settler = Box<dyn FnOnce(Outcome) + Send>;

/// A message for one consumer: its body and how to settle it. Dropping it
/// unsettled (the agent was stopping) hands the message back to its queue,
/// with no attempt counted.
#[derive(Debug)]
pub struct Job {
    pub(crate) body: Body,
    pub(crate) settle: Settle,
}

/// A message taken from Redis or AMQP, until it is settled.
#[derive(Debug)]
pub(crate) struct Taken {
    pub(crate) body: Arc<[u8]>,
    /// Attempts it had before this one.
    pub(crate) attempts: u32,
}

/// A message's body: the wire's bytes, or, in the in-process broker, the
/// value that was sent, never encoded.
pub(crate) enum Body {
    /// A JSON object, as it travels between processes.
    Wire(Arc<[u8]>),
    /// A typed message sent in this process.
    Value(Box<dyn Carried>),
}

impl fmt::Debug for Body {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Body::Wire(bytes) => f.debug_tuple("Wire").field(&bytes.len()).finish(),
            Body::Value(_) => f.write_str("Value"),
        }
    }
}

impl Body {
    /// Another body with the same message (for a consumer's attempt, while
    /// the broker keeps this one for a retry or the dead letters).
    pub(crate) fn copy(&self) -> Body {
        match self {
            Body::Wire(bytes) => Body::Wire(bytes.clone()),
            Body::Value(value) => Body::Value(value.duplicate()),
        }
    }

    /// The message as a JSON object's bytes.
    pub(crate) fn to_wire(&self) -> Result<Arc<[u8]>, BrokerError> {
        match self {
            Body::Wire(bytes) => Ok(bytes.clone()),
            Body::Value(value) => value.to_wire().map(Arc::from),
        }
    }

    /// The message as `Q`: the value itself when it is one, decoded from
    /// JSON otherwise (a message sent as another type with the same queue,
    /// or from another process).
    pub(crate) fn decode<Q: Queue>(self) -> Result<Q, BrokerError> {
        match self {
            Body::Wire(bytes) => Q::from_wire(&bytes),
            Body::Value(value) if value.as_any().is::<Q>() => value
                .into_any()
                .downcast::<Q>()
                .map(|q| *q)
                .map_err(|_| BrokerError::Decode {
                    queue: Q::NAME.to_owned(),
                    reason: "the message changed its type".to_owned(),
                }),
            Body::Value(value) => Q::from_wire(&value.to_wire()?),
        }
    }
}

/// A typed message the in-process broker carries as it is.
pub(crate) trait Carried: Send + 'static {
    /// A copy of the message.
    fn duplicate(&self) -> Box<dyn Carried>;
    /// The message as a JSON object's bytes.
    fn to_wire(&self) -> Result<Vec<u8>, BrokerError>;
    /// The message, to check its type.
    fn as_any(&self) -> &dyn Any;
    /// The message, to take it as its type.
    fn into_any(self: Box<Self>) -> Box<dyn Any>;
}

impl<Q: Queue> Carried for Q {
    fn duplicate(&self) -> Box<dyn Carried> {
        Box::new(self.clone())
    }

    fn to_wire(&self) -> Result<Vec<u8>, BrokerError> {
        Queue::to_wire(self)
    }

    fn as_any(&self) -> &dyn Any {
        self
    }

    fn into_any(self: Box<Self>) -> Box<dyn Any> {
        self
    }
}

/// Settles a job once: done, failed or poison. Dropped unsettled, the
/// message goes back to its queue.
pub struct Settle {
    settler: Option<Settler>,
}

impl std::fmt::Debug for Settle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settle")
            .field("settled", &self.settler.is_none())
            .finish()
    }
}

impl Drop for Settle {
    fn drop(&mut self) {
        if let Some(settler) = self.settler.take() {
            settler(Outcome::Released);
        }
    }
}

impl Settle {
    pub(crate) fn new(settler: Settler) -> Self {
        Settle {
            settler: Some(settler),
        }
    }

    fn send(mut self, outcome: Outcome) {
        if let Some(settler) = self.settler.take() {
            settler(outcome);
        }
    }

    /// Settles with the run's result (an error is a failed attempt), and
    /// returns it.
    pub fn done(self, result: Result<(), HookFailure>) -> Result<(), HookFailure> {
        match &result {
            Ok(()) => self.send(Outcome::Done),
            Err(failure) => self.send(Outcome::Failed(failure.to_string())),
        }
        result
    }

    /// The message cannot be handled by any attempt (it does not decode).
    pub(crate) fn poison(self, reason: String) {
        self.send(Outcome::Poison(reason));
    }
}

/// Hands a job to consumer `consumer` (its index in the agent's table);
/// every agent handles it (`#[derive(MicroAgent)]` writes the handler).
#[derive(Debug)]
pub struct Consume {
    /// The consumer's index among the agent's consumers.
    pub consumer: usize,
    /// The job.
    pub job: Job,
}

impl actix::Message for Consume {
    type Result = ();
}
