//! Queue messages: a type names its queue; its fields are the JSON object
//! on the wire (what a Python consumer gets as keyword arguments).

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::error::BrokerError;

/// A queue's message: derive it, with serde's `Serialize` and
/// `Deserialize`, and `Clone`. The queue's name is the type's name in snake
/// case, or `#[queue(name = "...")]`.
///
/// The in-process broker carries the message as it is, never encoded: it
/// hands each attempt a clone and keeps the original for a retry or the
/// dead letters. Between processes (Redis, AMQP) the message is its JSON
/// object.
///
/// ```
/// use microagent::broker::Queue;
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Queue, Serialize, Deserialize, Clone)]
/// #[queue(name = "mailer")]
/// struct Mail {
///     to: String,
/// }
///
/// assert_eq!(Mail::NAME, "mailer");
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a queue's message",
    label = "not a `Queue`",
    note = "derive `Queue` on it, with the queue's name: `#[derive(Queue, Serialize, Deserialize, Clone)]` and `#[queue(name = \"...\")]`"
)]
pub trait Queue: Serialize + DeserializeOwned + Clone + Send + 'static {
    /// The queue's name (the Redis list's key, the AMQP queue's name).
    const NAME: &'static str;

    /// AMQP: the exchange the queue is bound to (`#[queue(exchange =
    /// "...")]`), as in the original: sending publishes to it, and it is a
    /// `fanout` exchange (every queue bound to it gets a copy) unless the
    /// queue declares topics. The in-process and Redis brokers send to the
    /// queue itself.
    const EXCHANGE: Option<&'static str> = None;

    /// AMQP: the topics the queue is bound with (`#[queue(exchange = "...",
    /// topics = ["user.*"])]`) to a `topic` exchange; send with a topic
    /// through [`Broker::send_topic`](super::Broker::send_topic).
    const TOPICS: &'static [&'static str] = &[];

    /// The message as the wire's bytes: a JSON object.
    fn to_wire(&self) -> Result<Vec<u8>, BrokerError> {
        let bytes = serde_json::to_vec(self).map_err(|e| BrokerError::Encode {
            queue: Self::NAME.to_owned(),
            reason: e.to_string(),
        })?;
        if bytes.first() != Some(&b'{') {
            return Err(BrokerError::Encode {
                queue: Self::NAME.to_owned(),
                reason: "the message does not serialize to a JSON object".to_owned(),
            });
        }
        Ok(bytes)
    }

    /// The message, from the wire's bytes.
    fn from_wire(bytes: &[u8]) -> Result<Self, BrokerError> {
        serde_json::from_slice(bytes).map_err(|e| BrokerError::Decode {
            queue: Self::NAME.to_owned(),
            reason: e.to_string(),
        })
    }
}
