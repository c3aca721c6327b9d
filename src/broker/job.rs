//! A message on its way to one consumer, and how its consumer settles it.

use std::any::Any;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use super::error::BrokerError;
use super::queue::Queue;
use crate::failure::HookFailure;
use crate::spans::{Origin, Span};

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

/// Hands a job, and more jobs to run after it, to the consumer's agent;
/// `false` once the agent is gone.
pub(crate) type JobFn = Box<dyn Fn(Job, Vec<Job>) -> bool + Send + Sync>;

/// What settles a job of a broker on a server: the consumer's runner, called once.
pub(crate) type Settler = Box<dyn FnOnce(Outcome) + Send>;

/// A message for one consumer, and how to settle it. Dropping it unsettled
/// (the agent was stopping) hands the message back to its queue, with no
/// attempt counted.
#[derive(Debug)]
pub struct Job {
    pub(crate) settle: Settle,
}

impl Job {
    /// A message of the in-process broker.
    pub(crate) fn local(consumer: Arc<dyn LocalConsumer>, held: Held) -> Job {
        Job {
            settle: Settle {
                how: Some(How::Local(consumer, held)),
            },
        }
    }

    /// A message taken from a server: `trace` is what its span says of it.
    pub(crate) fn wire(body: Arc<[u8]>, settler: Settler, trace: WireTrace) -> Job {
        Job {
            settle: Settle {
                how: Some(How::Wire(body, settler, trace)),
            },
        }
    }

    /// The span of a consumer's run on this job: `process {queue}`, the
    /// child of the span the message was sent in (in-process).
    pub(crate) fn span(&self, agent: &str, consumer: &str, queue: &str) -> Span {
        match &self.settle.how {
            Some(How::Local(_, held)) => {
                let attempt = held.attempts + 1;
                Span::consume(agent, consumer, queue, &held.origin, Some(held.id), attempt)
            }
            Some(How::Wire(_, _, trace)) => {
                let attempt = trace.attempts_before + 1;
                // The server's own id of a message is not known here.
                Span::consume(agent, consumer, queue, &trace.origin, None, attempt)
            }
            None => Span::default(),
        }
    }
}

/// What a consumer's span says of a message taken from a server.
#[derive(Debug)]
pub(crate) struct WireTrace {
    /// Where it was sent from, as far as this process knows.
    pub(crate) origin: Origin,
    /// Attempts it had before this one.
    pub(crate) attempts_before: u32,
}

/// A message in an in-process queue, or taken from it until it is settled.
#[derive(Debug)]
pub(crate) struct Held {
    /// Its id in this broker (what observers see).
    pub(crate) id: u64,
    pub(crate) body: Body,
    /// Attempts it had before this one.
    pub(crate) attempts: u32,
    /// The span it was sent in (feature `tracing`).
    pub(crate) origin: Origin,
}

/// An in-process consumer, as the jobs it was handed settle with it.
pub(crate) trait LocalConsumer: Send + Sync {
    /// The run of `held` ended with `outcome`.
    fn settle(self: Arc<Self>, held: Held, outcome: Outcome);
}

/// A message's body in the in-process broker: the value that was sent,
/// never encoded, or a JSON object sent as one.
pub(crate) enum Body {
    /// A JSON object (`Broker::send_dyn`).
    Wire(Arc<[u8]>),
    /// A typed message.
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
    /// The message as a JSON object's bytes.
    pub(crate) fn to_wire(&self) -> Result<Arc<[u8]>, BrokerError> {
        match self {
            Body::Wire(bytes) => Ok(bytes.clone()),
            Body::Value(value) => value.to_wire().map(Arc::from),
        }
    }

    /// The message as the wire carries it, consumed.
    pub(crate) fn into_wire(self) -> Result<Vec<u8>, BrokerError> {
        match self {
            Body::Wire(bytes) => Ok(bytes.to_vec()),
            Body::Value(value) => value.to_wire(),
        }
    }

    pub(crate) fn to_json(&self) -> serde_json::Value {
        match self.to_wire() {
            Ok(bytes) => super::error::DeadLetter::message_of(&bytes),
            Err(e) => serde_json::Value::String(e.to_string()),
        }
    }

    /// The message as `Q`: a clone of the value when it is one, decoded
    /// from JSON otherwise (a message sent as another type with the same
    /// queue, or as a JSON object).
    fn decode<Q: Queue>(&self) -> Result<Q, BrokerError> {
        match self {
            Body::Wire(bytes) => Q::from_wire(bytes),
            Body::Value(value) => match value.as_any().downcast_ref::<Q>() {
                Some(message) => Ok(message.clone()),
                None => Q::from_wire(&value.to_wire()?),
            },
        }
    }
}

/// A typed message the in-process broker carries as it is.
pub(crate) trait Carried: Send + 'static {
    /// The message as a JSON object's bytes.
    fn to_wire(&self) -> Result<Vec<u8>, BrokerError>;
    /// The message, to check its type.
    fn as_any(&self) -> &dyn Any;
}

impl<Q: Queue> Carried for Q {
    fn to_wire(&self) -> Result<Vec<u8>, BrokerError> {
        Queue::to_wire(self)
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// Settles a job once: done, failed or poison. Dropped unsettled, the
/// message goes back to its queue.
pub struct Settle {
    how: Option<How>,
}

/// What a settlement goes to, with the message.
enum How {
    /// The in-process broker, which holds the message itself.
    Local(Arc<dyn LocalConsumer>, Held),
    /// A consumer's runner on a server.
    Wire(Arc<[u8]>, Settler, WireTrace),
}

impl fmt::Debug for Settle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Settle")
            .field("settled", &self.how.is_none())
            .finish()
    }
}

impl Drop for Settle {
    fn drop(&mut self) {
        self.send(Outcome::Released);
    }
}

impl Settle {
    fn send(&mut self, outcome: Outcome) {
        match self.how.take() {
            Some(How::Local(consumer, held)) => consumer.settle(held, outcome),
            Some(How::Wire(_, settler, _)) => settler(outcome),
            None => {}
        }
    }

    /// The message as `Q`, or why it cannot be one. The in-process broker
    /// keeps the original for a retry or the dead letters: the consumer
    /// gets a clone.
    pub(crate) fn decode<Q: Queue>(&self) -> Result<Q, BrokerError> {
        match &self.how {
            Some(How::Local(_, held)) => held.body.decode(),
            Some(How::Wire(bytes, _, _)) => Q::from_wire(bytes),
            None => Err(BrokerError::Decode {
                queue: Q::NAME.to_owned(),
                reason: "the message was settled already".to_owned(),
            }),
        }
    }

    /// Settles with the run's result (an error is a failed attempt), and
    /// returns it.
    pub fn done(mut self, result: Result<(), HookFailure>) -> Result<(), HookFailure> {
        match &result {
            Ok(()) => self.send(Outcome::Done),
            Err(failure) => self.send(Outcome::Failed(failure.to_string())),
        }
        result
    }

    /// The message cannot be handled by any attempt (it does not decode).
    pub(crate) fn poison(mut self, reason: String) {
        self.send(Outcome::Poison(reason));
    }
}

/// Hands jobs to consumer `consumer` (its index in the agent's table);
/// every agent handles it (`#[derive(MicroAgent)]` writes the handler).
#[derive(Debug)]
pub struct Consume {
    /// The consumer's index among the agent's consumers.
    pub consumer: usize,
    /// The job.
    pub job: Job,
    /// More jobs for the same consumer, run after `job` in this order: the
    /// in-process broker hands a plain `fn` consumer the messages for its
    /// free slots together (up to 16), one mailbox hop for them all.
    pub more: Vec<Job>,
}

impl actix::Message for Consume {
    type Result = ();
}
