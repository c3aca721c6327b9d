//! The broker's vocabulary of failure: why sending or reading a queue
//! failed ([`BrokerError`]), and what a message that failed every attempt
//! becomes ([`DeadLetter`]). Every other broker file builds on it; it
//! names none of them, and no backend.

use serde_json::Value;

use crate::backend::BackendError;

/// Why sending or reading a queue failed. None shows a password.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BrokerError {
    /// The message does not serialize to a JSON object.
    #[error("a message for queue `{queue}` could not be encoded: {reason}")]
    Encode {
        /// The queue.
        queue: String,
        /// Why.
        reason: String,
    },
    /// A message from the queue does not fit the consumer's type (or is not
    /// a JSON object): it goes to the dead letters.
    #[error("a message of queue `{queue}` does not decode: {reason}")]
    Decode {
        /// The queue.
        queue: String,
        /// Why (serde's message).
        reason: String,
    },
    /// The queue's name cannot be used.
    #[error("`{queue}` cannot be a queue name: {reason}")]
    Name {
        /// The name.
        queue: String,
        /// Why.
        reason: &'static str,
    },
    /// The System already has a broker: install one before anything uses
    /// [`Broker::current`](crate::broker::Broker::current), and only once.
    #[error("this actix System already has a broker")]
    AlreadyInstalled,
    /// The broker configuration cannot be used.
    #[error("broker configuration: {reason}")]
    Config {
        /// What is wrong.
        reason: String,
    },
    /// The queue exists on the server with other settings than ours (on
    /// AMQP: 406 PRECONDITION_FAILED; on NATS: a JetStream stream or
    /// consumer configured otherwise): declare both sides alike (see
    /// `BrokerConfig::durable`).
    #[error("queue `{queue}` exists on the server with other settings than ours: {reason}")]
    QueueMismatch {
        /// The queue (and the server's object, where it has its own name).
        queue: String,
        /// Whether we declared it durable.
        durable: bool,
        /// The settings we asked for, and what the server said.
        reason: String,
    },
    /// The broker's server refused, or the connection failed under the
    /// operation: nothing was sent. The client's error is the `source`.
    #[error("the {kind} broker at {url}: {source}")]
    Backend {
        /// The backend (`redis`, `amqp`, ...).
        kind: &'static str,
        /// The URL, password redacted.
        url: String,
        /// What the server or the connection said.
        #[source]
        source: BackendError,
    },
}

impl crate::spans::ErrorKind for BrokerError {
    fn kind(&self) -> &'static str {
        match self {
            BrokerError::Encode { .. } => "encode",
            BrokerError::Decode { .. } => "decode",
            BrokerError::Name { .. } => "name",
            BrokerError::AlreadyInstalled => "already_installed",
            BrokerError::Config { .. } => "config",
            BrokerError::QueueMismatch { .. } => "queue_mismatch",
            BrokerError::Backend { .. } => "backend",
        }
    }
}

/// A message that failed every attempt (or could not be decoded), with why.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct DeadLetter {
    /// Its queue.
    pub queue: String,
    /// The message, as sent (a JSON object, or the raw text when it was
    /// not JSON).
    pub message: Value,
    /// Why it is here: the last attempt's failure, or the decoding error.
    pub reason: String,
    /// How many attempts it had.
    pub attempts: u32,
}

// Backends store and read dead letters.
#[cfg_attr(not(any(feature = "redis", feature = "amqp")), allow(dead_code))]
impl DeadLetter {
    /// A message as JSON: the object it is, or its text when it is not JSON.
    pub(super) fn message_of(body: &[u8]) -> Value {
        serde_json::from_slice(body)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(body).into_owned()))
    }

    /// The dead letter the Redis and AMQP brokers store: `{"message",
    /// "reason", "attempts", "consumer", "failed_at"}`.
    pub(super) fn encode(body: &[u8], reason: &str, attempts: u32, consumer: &str) -> String {
        serde_json::json!({
            "message": DeadLetter::message_of(body),
            "reason": reason,
            "attempts": attempts,
            "consumer": consumer,
            "failed_at": chrono::Utc::now().to_rfc3339(),
        })
        .to_string()
    }

    /// The body to send again for a dead letter's message: the JSON
    /// object it was (its keys in serde_json's order), or the raw text of
    /// one that was not JSON.
    pub(super) fn body_of(message: &Value) -> Vec<u8> {
        match message {
            Value::String(text) => text.clone().into_bytes(),
            other => other.to_string().into_bytes(),
        }
    }

    /// A stored dead letter of `queue` (fields it lacks are empty).
    pub(super) fn decode(queue: &str, stored: &[u8]) -> DeadLetter {
        let value: Value = serde_json::from_slice(stored).unwrap_or(Value::Null);
        DeadLetter {
            queue: queue.to_owned(),
            message: value.get("message").cloned().unwrap_or(Value::Null),
            reason: value
                .get("reason")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
            attempts: value
                .get("attempts")
                .and_then(Value::as_u64)
                .and_then(|n| u32::try_from(n).ok())
                .unwrap_or_default(),
        }
    }
}
