//! What a receiver gets: a signal's payload, its sender, and where its
//! answer goes.

use std::any::Any;
use std::fmt;
use std::sync::Arc;

use serde_json::{Map, Value};
use tokio::sync::mpsc;

use super::signal::{Signal, SignalError};

/// A signal on its way to one receiver of one agent.
#[derive(Debug)]
pub struct Delivery {
    /// The signal.
    pub payload: Payload,
    /// Who sent it.
    pub sender: Arc<str>,
    /// Where the receiver's answer goes, for an RPC call.
    pub reply: Reply,
    /// The span it was sent in (feature `tracing`).
    pub(crate) origin: crate::spans::Origin,
}

/// A signal's arguments as a receiver gets them.
pub enum Payload {
    /// As JSON: a run-time signal, or a copy for one of several receivers.
    Json(Map<String, Value>),
    /// As received from the wire: the bytes of a JSON object (checked),
    /// which each receiver decodes into its own type in one pass.
    Wire(Arc<[u8]>),
    /// The typed signal itself (in-process, to its last receiver): no JSON
    /// on the way. `to_args` makes the JSON when the receiver's type is not
    /// the sender's.
    Typed {
        /// The signal.
        signal: Box<dyn Any + Send>,
        /// Its arguments as JSON, from the signal.
        to_args: ToArgs,
        /// Its arguments as the wire's bytes, from the signal.
        to_wire: ToWire,
    },
}

/// Makes a typed signal's JSON arguments (`S::to_args` for its type `S`).
pub type ToArgs = fn(&(dyn Any + Send)) -> Result<Map<String, Value>, SignalError>;

/// Makes a typed signal's wire bytes (`S::to_wire` for its type `S`).
pub type ToWire = fn(&(dyn Any + Send)) -> Result<Vec<u8>, SignalError>;

impl fmt::Debug for Payload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Payload::Json(args) => f.debug_tuple("Json").field(args).finish(),
            Payload::Wire(bytes) => f
                .debug_tuple("Wire")
                .field(&String::from_utf8_lossy(bytes))
                .finish(),
            Payload::Typed { .. } => f.write_str("Typed"),
        }
    }
}

impl Payload {
    /// The signal as type `S`: moved out when it is one, decoded from JSON
    /// otherwise.
    pub(crate) fn into_signal<S: Signal>(self) -> Result<S, SignalError> {
        match self {
            Payload::Json(args) => S::from_args(args),
            Payload::Wire(bytes) => S::from_wire(&bytes),
            Payload::Typed {
                signal, to_args, ..
            } => match signal.downcast::<S>() {
                Ok(signal) => Ok(*signal),
                Err(signal) => S::from_args(to_args(&*signal)?),
            },
        }
    }

    /// The arguments as JSON.
    pub(super) fn to_json(&self) -> Result<Map<String, Value>, SignalError> {
        match self {
            Payload::Json(args) => Ok(args.clone()),
            Payload::Wire(bytes) => {
                serde_json::from_slice(bytes).map_err(|e| SignalError::Decode {
                    signal: "(from the wire)".to_owned(),
                    reason: e.to_string(),
                })
            }
            Payload::Typed {
                signal, to_args, ..
            } => to_args(&**signal),
        }
    }

    /// The arguments as the wire's bytes (a JSON object).
    pub(super) fn to_wire(&self) -> Result<Vec<u8>, SignalError> {
        match self {
            Payload::Json(args) => Ok(super::wire::encode_payload(args)),
            Payload::Wire(bytes) => Ok(bytes.to_vec()),
            Payload::Typed {
                signal, to_wire, ..
            } => to_wire(&**signal),
        }
    }

    /// The bytes it holds from the wire (none for the in-process kinds).
    pub(crate) fn wire_len(&self) -> usize {
        match self {
            Payload::Wire(bytes) => bytes.len(),
            _ => 0,
        }
    }

    /// A copy for one more receiver: the same bytes from the wire, JSON
    /// otherwise.
    pub(super) fn copy(&self) -> Result<Payload, SignalError> {
        match self {
            Payload::Wire(bytes) => Ok(Payload::Wire(bytes.clone())),
            other => other.to_json().map(Payload::Json),
        }
    }
}

/// A typed signal as a payload.
pub(super) fn typed<S: Signal>(signal: S) -> Payload {
    Payload::Typed {
        signal: Box::new(signal),
        to_args: typed_args::<S>,
        to_wire: typed_wire::<S>,
    }
}

fn typed_wire<S: Signal>(signal: &(dyn Any + Send)) -> Result<Vec<u8>, SignalError> {
    match signal.downcast_ref::<S>() {
        Some(signal) => signal.to_wire(),
        None => Err(SignalError::Encode {
            signal: S::NAME.to_owned(),
            reason: "not the signal's type".to_owned(),
        }),
    }
}

fn typed_args<S: Signal>(signal: &(dyn Any + Send)) -> Result<Map<String, Value>, SignalError> {
    match signal.downcast_ref::<S>() {
        Some(signal) => signal.to_args(),
        None => Err(SignalError::Encode {
            signal: S::NAME.to_owned(),
            reason: "not the signal's type".to_owned(),
        }),
    }
}

/// Hands a signal to receiver `receiver` (its index in the agent's table);
/// every agent handles it (`#[derive(MicroAgent)]` writes the handler).
#[derive(Debug)]
pub struct Deliver {
    /// The receiver's index among the agent's receivers.
    pub receiver: usize,
    /// The signal.
    pub delivery: Delivery,
    /// Its place in the agent's bus buffer (Redis), freed once the agent
    /// takes it up.
    pub(crate) ticket: Option<super::Ticket>,
}

impl actix::Message for Deliver {
    type Result = ();
}

/// Where a receiver's answer goes: nowhere for a plain signal, to the
/// caller for an RPC call. Dropping it unanswered tells the caller that
/// this receiver will not answer.
#[derive(Debug)]
pub struct Reply {
    pub(super) to: Option<(Arc<str>, AnswerTx)>,
}

/// Where the answers to one call go: `(responder, answer)`.
pub(super) type AnswerTx = mpsc::UnboundedSender<(Arc<str>, Value)>;

impl Reply {
    /// Sends the answer (a caller that gave up is fine).
    pub fn answer(self, value: Value) {
        if let Some((responder, tx)) = self.to {
            let _ = tx.send((responder, value));
        }
    }
}
