//! The in-process bus: the default, with the same semantics as the Redis
//! bus. One per actix System, shared by the agents on all its arbiters.

use std::any::Any;
use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use actix_rt::time::Sleep;
use futures_util::{Stream, StreamExt};
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};
use tokio::sync::mpsc;

use super::signal::{check_name, DynSignal, Signal, SignalError};
use super::wire::{self, WireError};

/// A signal on its way to one receiver of one agent.
#[derive(Debug)]
pub struct Delivery {
    /// The signal.
    pub payload: Payload,
    /// Who sent it.
    pub sender: Arc<str>,
    /// Where the receiver's answer goes, for an RPC call.
    pub reply: Reply,
}

/// A signal's arguments as a receiver gets them.
pub enum Payload {
    /// As JSON: from the wire, a run-time signal, or a copy for one of
    /// several receivers.
    Json(Map<String, Value>),
    /// The typed signal itself (in-process, to its last receiver): no JSON
    /// on the way. `to_args` makes the JSON when the receiver's type is not
    /// the sender's.
    Typed {
        /// The signal.
        signal: Box<dyn Any + Send>,
        /// Its arguments as JSON, from the signal.
        to_args: ToArgs,
    },
}

/// Makes a typed signal's JSON arguments (`S::to_args` for its type `S`).
pub type ToArgs = fn(&(dyn Any + Send)) -> Result<Map<String, Value>, SignalError>;

impl fmt::Debug for Payload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Payload::Json(args) => f.debug_tuple("Json").field(args).finish(),
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
            Payload::Typed { signal, to_args } => match signal.downcast::<S>() {
                Ok(signal) => Ok(*signal),
                Err(signal) => S::from_args(to_args(&*signal)?),
            },
        }
    }

    /// The arguments as JSON.
    fn to_json(&self) -> Result<Map<String, Value>, SignalError> {
        match self {
            Payload::Json(args) => Ok(args.clone()),
            Payload::Typed { signal, to_args } => to_args(&**signal),
        }
    }
}

/// A typed signal as a payload.
fn typed<S: Signal>(signal: S) -> Payload {
    Payload::Typed {
        signal: Box::new(signal),
        to_args: typed_args::<S>,
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
}

impl actix::Message for Deliver {
    type Result = ();
}

/// Where a receiver's answer goes: nowhere for a plain signal, to the
/// caller for an RPC call. Dropping it unanswered tells the caller that
/// this receiver will not answer.
#[derive(Debug)]
pub struct Reply {
    to: Option<(Arc<str>, AnswerTx)>,
}

/// Where the answers to one call go: `(responder, answer)`.
type AnswerTx = mpsc::UnboundedSender<(Arc<str>, Value)>;

impl Reply {
    /// Sends the answer (a caller that gave up is fine).
    pub fn answer(self, value: Value) {
        if let Some((responder, tx)) = self.to {
            let _ = tx.send((responder, value));
        }
    }
}

/// Every answer that came to an RPC call, by responder (`Agent.method`, as
/// the Python original names them), in arrival order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Answers {
    answers: Vec<(String, Value)>,
}

impl Answers {
    /// How many answers came.
    pub fn len(&self) -> usize {
        self.answers.len()
    }

    /// Whether none came (a call returns [`BusError::NoAnswer`] then).
    pub fn is_empty(&self) -> bool {
        self.answers.is_empty()
    }

    /// The answer of `responder` (`Agent.method`).
    pub fn get(&self, responder: &str) -> Option<&Value> {
        self.answers
            .iter()
            .find(|(name, _)| name == responder)
            .map(|(_, value)| value)
    }

    /// The answer of `responder`, decoded.
    pub fn decode<T: DeserializeOwned>(
        &self,
        responder: &str,
    ) -> Option<Result<T, serde_json::Error>> {
        self.get(responder)
            .map(|v| serde_json::from_value(v.clone()))
    }

    /// Every `(responder, answer)`, in arrival order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Value)> {
        self.answers
            .iter()
            .map(|(name, value)| (name.as_str(), value))
    }
}

/// Why sending or calling failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum BusError {
    /// The signal could not be encoded, or its name is not valid.
    #[error(transparent)]
    Signal(#[from] SignalError),
    /// The sender's name cannot be used on the wire.
    #[error(transparent)]
    Sender(#[from] WireError),
    /// No answer came before the timeout (or no agent has a receiver for
    /// the signal, or every one of them failed to answer).
    #[error("no answer to `{signal}` within {timeout:?} ({asked} receiver(s) asked)")]
    NoAnswer {
        /// The signal.
        signal: String,
        /// How long the call waited.
        timeout: Duration,
        /// How many receivers were asked.
        asked: usize,
    },
}

/// How the bus hands a delivery to one subscribed receiver; `false` once
/// its agent is gone.
pub(crate) type DeliverFn = Box<dyn Fn(Delivery) -> bool + Send + Sync>;

struct Subscriber {
    id: u64,
    responder: Arc<str>,
    deliver: DeliverFn,
}

/// The subscribers of one signal; replaced, not changed, on (un)subscribe,
/// so a publish only clones an `Arc`.
type List = Arc<Vec<Arc<Subscriber>>>;

/// The subscribers of one System's bus, by signal name.
#[derive(Default)]
struct Subscribers {
    by_signal: Mutex<HashMap<String, List>>,
    next_id: AtomicU64,
}

impl Subscribers {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, List>> {
        self.by_signal
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn of(&self, signal: &str) -> Option<List> {
        self.lock().get(signal).cloned()
    }
}

/// A signal bus handle. Cheap to clone; every clone is the same bus.
///
/// [`Bus::current`] is the in-process bus of the running actix System:
/// every agent started in that System (on any arbiter) receives through it.
/// In-process, a typed signal reaches its (last) receiver as is, without
/// being encoded; a receiver declared with another type for the same wire
/// name, a run-time signal and every other receiver get the JSON the wire
/// would carry.
#[derive(Clone)]
pub struct Bus {
    subscribers: Arc<Subscribers>,
}

impl fmt::Debug for Bus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Bus")
            .field("kind", &"in-process")
            .finish_non_exhaustive()
    }
}

/// What [`Bus::subscribe`] returns: dropping it ends the subscription.
pub(crate) struct Subscription {
    subscribers: Arc<Subscribers>,
    entries: Vec<(&'static str, u64)>,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let mut by_signal = self.subscribers.lock();
        for (signal, id) in &self.entries {
            if let Some(list) = by_signal.get_mut(*signal) {
                let kept: Vec<_> = list.iter().filter(|s| s.id != *id).cloned().collect();
                *list = Arc::new(kept);
            }
        }
    }
}

/// The in-process buses, by System id.
fn buses() -> MutexGuard<'static, HashMap<usize, Bus>> {
    static BUSES: OnceLock<Mutex<HashMap<usize, Bus>>> = OnceLock::new();
    BUSES
        .get_or_init(Mutex::default)
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
}

/// Forgets the bus of a System that has ended (called for the Systems that
/// `run` and the `Launcher` own).
pub(crate) fn close(system_id: usize) {
    buses().remove(&system_id);
}

impl Bus {
    /// The in-process bus of the current actix System.
    ///
    /// # Panics
    /// Outside a running actix System.
    pub fn current() -> Bus {
        let id = actix_rt::System::try_current()
            .expect("microagent: the bus belongs to an actix System; use it inside `microagent::run` or a `Launcher`")
            .id();
        buses()
            .entry(id)
            .or_insert_with(|| Bus {
                subscribers: Arc::default(),
            })
            .clone()
    }

    /// Subscribes receivers: `(signal, responder, deliver)` each.
    pub(crate) fn subscribe(
        &self,
        receivers: Vec<(&'static str, Arc<str>, DeliverFn)>,
    ) -> Subscription {
        let mut entries = Vec::with_capacity(receivers.len());
        let mut by_signal = self.subscribers.lock();
        for (signal, responder, deliver) in receivers {
            let id = self.subscribers.next_id.fetch_add(1, Ordering::Relaxed);
            let list = by_signal.entry(signal.to_owned()).or_default();
            let mut grown = Vec::clone(list);
            grown.push(Arc::new(Subscriber {
                id,
                responder,
                deliver,
            }));
            *list = Arc::new(grown);
            entries.push((signal, id));
        }
        drop(by_signal);
        Subscription {
            subscribers: self.subscribers.clone(),
            entries,
        }
    }

    /// Sends `signal` from `sender` to every receiver of it. Pub/sub is
    /// at-most-once: a signal nobody receives is gone.
    pub async fn send<S: Signal>(&self, sender: &str, signal: S) -> Result<(), BusError> {
        self.publish(S::NAME, sender, typed(signal), None).map(drop)
    }

    /// Sends a run-time signal; see [`send`](Bus::send).
    pub async fn send_dyn(&self, sender: &str, signal: &DynSignal) -> Result<(), BusError> {
        let payload = Payload::Json(signal.args().clone());
        self.publish(signal.name(), sender, payload, None).map(drop)
    }

    /// Calls `signal` as an RPC: every receiver of it answers with its
    /// return value. Returns the answers that came within `timeout` (as
    /// soon as every receiver asked has answered), or
    /// [`BusError::NoAnswer`] when none did.
    pub async fn call<S: Signal>(
        &self,
        sender: &str,
        signal: S,
        timeout: Duration,
    ) -> Result<Answers, BusError> {
        self.call_payload(S::NAME, sender, typed(signal), timeout)
            .await
    }

    /// Calls a run-time signal; see [`call`](Bus::call).
    pub async fn call_dyn(
        &self,
        sender: &str,
        signal: &DynSignal,
        timeout: Duration,
    ) -> Result<Answers, BusError> {
        let payload = Payload::Json(signal.args().clone());
        self.call_payload(signal.name(), sender, payload, timeout)
            .await
    }

    /// Calls `signal` as an RPC and streams `(responder, answer)` pairs as
    /// they arrive. The stream ends once every receiver asked has answered,
    /// or at `timeout`.
    pub fn stream<S: Signal>(
        &self,
        sender: &str,
        signal: S,
        timeout: Duration,
    ) -> Result<AnswerStream, BusError> {
        self.stream_payload(S::NAME, sender, typed(signal), timeout)
    }

    fn stream_payload(
        &self,
        name: &str,
        sender: &str,
        payload: Payload,
        timeout: Duration,
    ) -> Result<AnswerStream, BusError> {
        let (tx, answers) = mpsc::unbounded_channel();
        let asked = self.publish(name, sender, payload, Some(tx))?;
        Ok(AnswerStream {
            answers,
            deadline: Box::pin(actix_rt::time::sleep(timeout)),
            asked,
        })
    }

    async fn call_payload(
        &self,
        name: &str,
        sender: &str,
        payload: Payload,
        timeout: Duration,
    ) -> Result<Answers, BusError> {
        let mut stream = self.stream_payload(name, sender, payload, timeout)?;
        let mut answers = Answers::default();
        while let Some((responder, value)) = stream.next().await {
            answers.answers.push((responder, value));
        }
        if answers.is_empty() {
            return Err(BusError::NoAnswer {
                signal: name.to_owned(),
                timeout,
                asked: stream.asked,
            });
        }
        Ok(answers)
    }

    /// Hands the signal to its receivers; returns how many got it. The
    /// last receiver gets the payload itself, the others a JSON copy.
    fn publish(
        &self,
        name: &str,
        sender: &str,
        payload: Payload,
        reply: Option<AnswerTx>,
    ) -> Result<usize, BusError> {
        check_name(name)?;
        wire::check_part("sender", sender)?;
        let Some(subscribers) = self.subscribers.of(name) else {
            return Ok(0);
        };
        let Some((last, others)) = subscribers.split_last() else {
            return Ok(0);
        };
        let sender: Arc<str> = sender.into();
        let delivery = |subscriber: &Subscriber, payload| Delivery {
            payload,
            sender: sender.clone(),
            reply: Reply {
                to: reply
                    .as_ref()
                    .map(|tx| (subscriber.responder.clone(), tx.clone())),
            },
        };
        let mut delivered = 0;
        if !others.is_empty() {
            let args = payload.to_json()?;
            for subscriber in others {
                let copy = Payload::Json(args.clone());
                if (subscriber.deliver)(delivery(subscriber, copy)) {
                    delivered += 1;
                }
            }
        }
        if (last.deliver)(delivery(last, payload)) {
            delivered += 1;
        }
        Ok(delivered)
    }
}

/// The answers to an RPC call as they arrive: `(responder, answer)`, where
/// the responder is `Agent.method`. From [`Bus::stream`].
pub struct AnswerStream {
    answers: mpsc::UnboundedReceiver<(Arc<str>, Value)>,
    deadline: Pin<Box<Sleep>>,
    asked: usize,
}

impl AnswerStream {
    /// How many receivers were asked.
    pub fn asked(&self) -> usize {
        self.asked
    }
}

impl fmt::Debug for AnswerStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AnswerStream")
            .field("asked", &self.asked)
            .finish_non_exhaustive()
    }
}

impl Stream for AnswerStream {
    type Item = (String, Value);

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        // Answers already there count even when the deadline has passed.
        match self.answers.poll_recv(cx) {
            Poll::Ready(Some((responder, value))) => {
                return Poll::Ready(Some((responder.to_string(), value)))
            }
            // Every receiver asked answered or dropped its reply.
            Poll::Ready(None) => return Poll::Ready(None),
            Poll::Pending => {}
        }
        match self.deadline.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }
}
