//! The bus handle: sending, calling, and the answers to a call, on
//! whichever backend the System's bus has.

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use actix_rt::time::Sleep;
use futures_util::{Stream, StreamExt};
use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio::sync::mpsc;

use super::config::{BusConfig, BusInfo, Kind};
use super::delivery::{typed, Payload};
use super::error::BusError;
use super::local::{DeliverFn, Subscribers};
use super::observe::{Observer, Observers, Sent};
use super::remote::Remote;
use super::signal::{check_name, DynSignal, Signal};
use super::tally::{CallEnd, TALLY};
use super::transport::PendingGuard;
use super::wire;
use crate::per_system::PerSystem;
use crate::spans::{traced, Origin, Span};

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

    /// The one answer, decoded: for a call exactly one receiver answers
    /// (whatever its key). None, several, or one that does not decode as
    /// `T` is an [`AnswerError`] that says which.
    ///
    /// ```
    /// # use microagent::bus::{AnswerError, Answers};
    /// # fn check(answers: Answers) -> Result<(), AnswerError> {
    /// let stock: u32 = answers.one()?;
    /// # Ok(()) }
    /// ```
    pub fn one<T: DeserializeOwned>(&self) -> Result<T, AnswerError> {
        match self.answers.as_slice() {
            [] => Err(AnswerError::None),
            [(responder, value)] => {
                serde_json::from_value(value.clone()).map_err(|e| AnswerError::Decode {
                    responder: responder.clone(),
                    reason: e.to_string(),
                })
            }
            several => Err(AnswerError::Several {
                responders: several.iter().map(|(name, _)| name.clone()).collect(),
            }),
        }
    }

    /// The answers by responder (`Agent.method`).
    pub fn into_map(self) -> BTreeMap<String, Value> {
        self.answers.into_iter().collect()
    }
}

impl IntoIterator for Answers {
    type Item = (String, Value);
    type IntoIter = std::vec::IntoIter<(String, Value)>;

    /// Every `(responder, answer)`, in arrival order.
    fn into_iter(self) -> Self::IntoIter {
        self.answers.into_iter()
    }
}

/// Why [`Answers::one`] has no answer to give.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AnswerError {
    /// Nobody answered.
    #[error("no answer")]
    None,
    /// More than one receiver answered: take them by responder
    /// ([`Answers::get`], [`Answers::into_map`]).
    #[error("{} answers where one was expected: {}", responders.len(), responders.join(", "))]
    Several {
        /// Who answered (`Agent.method`), in arrival order.
        responders: Vec<String>,
    },
    /// The answer does not decode as the type asked for.
    #[error("the answer of `{responder}` does not decode: {reason}")]
    Decode {
        /// Who answered (`Agent.method`).
        responder: String,
        /// serde's message.
        reason: String,
    },
}

/// An agent's receivers on the bus: dropping it ends their subscription.
pub(crate) struct Subscription {
    subscribers: Arc<Subscribers>,
    entries: Vec<(&'static str, u64)>,
    remote: Option<Arc<Remote>>,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.subscribers.remove(&self.entries);
        if let Some(remote) = &self.remote {
            for (signal, _) in &self.entries {
                remote.unsubscribe(signal);
            }
        }
    }
}

/// A signal bus handle. Cheap to clone; every clone is the same bus.
///
/// Each actix System has one bus, shared by the agents on all its
/// arbiters: [`Bus::current`] returns it, the in-process bus unless
/// [`Bus::connect`] (or [`Launcher::bus`](crate::Launcher::bus)) installed
/// another before.
///
/// - In-process, a typed signal reaches its (last) receiver as is, without
///   being encoded; a receiver declared with another type for the same
///   wire name, a run-time signal and every other receiver get the JSON
///   the wire would carry.
/// - On Redis, every signal goes through Redis (a process's own receivers
///   get it from there too), in the Python original's format.
///
/// Pub/sub is at-most-once on both: a signal nobody receives, or one sent
/// while a receiver's connection is down, is gone.
#[derive(Clone)]
pub struct Bus {
    inner: Arc<Inner>,
}

struct Inner {
    subscribers: Arc<Subscribers>,
    observers: Observers<Sent>,
    prefix: String,
    remote: Option<Arc<Remote>>,
}

impl fmt::Debug for Bus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let info = self.info();
        f.debug_struct("Bus")
            .field("kind", &info.kind)
            .field("prefix", &info.prefix)
            .field("url", &info.url)
            .finish_non_exhaustive()
    }
}

/// The buses, by System id.
static BUSES: PerSystem<Bus> = PerSystem::new();

/// Forgets the bus of a System that has ended (called for the Systems that
/// `run` and the `Launcher` own).
pub(crate) fn close(system_id: usize) {
    BUSES.remove(system_id);
}

/// The bus of the current System, if it has one yet.
fn installed() -> Option<Bus> {
    BUSES.get(actix_rt::System::try_current()?.id())
}

/// Whether the current System's bus is connected (no bus yet, or the
/// in-process one, always is).
#[cfg(feature = "web")]
pub(crate) fn connected() -> bool {
    installed().is_none_or(|bus| bus.is_connected())
}

/// What the current System's bus reports (the in-process defaults while
/// none is installed); `None` outside a System.
pub(crate) fn current_info() -> Option<BusInfo> {
    actix_rt::System::try_current()?;
    Some(installed().map_or_else(
        || counted(BusInfo::in_process(super::DEFAULT_PREFIX)),
        |bus| bus.info(),
    ))
}

/// `info` with the process's counts of what it sent and called.
fn counted(mut info: BusInfo) -> BusInfo {
    info.sent = TALLY.sent_count();
    info.received = TALLY.received_count();
    info.calls = TALLY.calls();
    info
}

/// The latency of this process's calls, by signal.
#[cfg(feature = "metrics")]
pub(crate) fn call_latencies() -> Vec<(String, crate::durations::Durations)> {
    TALLY.latencies()
}

/// A sender's name: borrowed, or shared (an [`AgentBus`](super::AgentBus)'s,
/// handed to receivers without a copy).
#[derive(Clone, Copy)]
pub(super) enum SenderName<'a> {
    Str(&'a str),
    Shared(&'a Arc<str>),
}

impl SenderName<'_> {
    fn as_str(&self) -> &str {
        match self {
            SenderName::Str(name) => name,
            SenderName::Shared(name) => name,
        }
    }

    fn to_arc(self) -> Arc<str> {
        match self {
            SenderName::Str(name) => name.into(),
            SenderName::Shared(name) => name.clone(),
        }
    }
}

/// Waits until Redis confirmed an agent's subscriptions.
pub(crate) type Confirmation = Pin<Box<dyn Future<Output = Result<(), BusError>>>>;

impl Bus {
    /// The bus of the current actix System: the in-process one unless
    /// another was installed.
    ///
    /// # Panics
    /// Outside a running actix System.
    pub fn current() -> Bus {
        let id = actix_rt::System::try_current()
            .expect("microagent: the bus belongs to an actix System; use it inside `microagent::run` or a `Launcher`")
            .id();
        BUSES.get_or_insert_with(id, || {
            Bus::new(super::DEFAULT_PREFIX.to_owned(), Arc::default(), None)
        })
    }

    fn new(prefix: String, subscribers: Arc<Subscribers>, remote: Option<Arc<Remote>>) -> Bus {
        Bus {
            inner: Arc::new(Inner {
                subscribers,
                observers: Observers::default(),
                prefix,
                remote,
            }),
        }
    }

    /// Installs the bus `config` describes as the current System's bus and
    /// returns it. For Redis, it returns once connected and subscribed to
    /// RPC answers (within the config's subscribe timeout), so the first
    /// `call` can get its answers; it keeps reconnecting after that.
    ///
    /// Call it before any agent of the System starts, once: a System whose
    /// bus exists already (installed, or created by [`Bus::current`])
    /// gives [`BusError::AlreadyInstalled`].
    ///
    /// # Panics
    /// Outside a running actix System.
    pub async fn connect(config: BusConfig) -> Result<Bus, BusError> {
        let id = actix_rt::System::try_current()
            .expect("microagent: the bus belongs to an actix System; connect it inside `microagent::run` or a `Launcher`")
            .id();
        if BUSES.contains(id) {
            return Err(BusError::AlreadyInstalled);
        }
        let subscribers = Arc::<Subscribers>::default();
        let remote = match &config.kind {
            Kind::InProcess => None,
            Kind::Remote {
                kind,
                endpoint,
                connector,
            } => {
                let backend = (*kind, endpoint.clone(), connector.as_ref());
                Some(Remote::start(&config, backend, subscribers.clone()).await?)
            }
        };
        let bus = Bus::new(config.prefix.clone(), subscribers, remote);
        if !BUSES.insert_new(id, bus.clone()) {
            return Err(BusError::AlreadyInstalled);
        }
        Ok(bus)
    }

    /// What the bus reports about itself (kind, prefix, redacted URL,
    /// connection, bad input dropped).
    pub fn info(&self) -> BusInfo {
        counted(match &self.inner.remote {
            Some(link) => link.info(),
            None => BusInfo::in_process(&self.inner.prefix),
        })
    }

    /// Watches what this process sends on the bus from now on: every
    /// signal sent or called, with its sender and arguments, whatever the
    /// backend. For tests and debugging; an observer costs a copy of each
    /// signal's arguments while it lives.
    ///
    /// ```
    /// use microagent::bus::{Bus, Signal};
    /// use serde::{Deserialize, Serialize};
    ///
    /// #[derive(Signal, Serialize, Deserialize)]
    /// struct Ping {
    ///     n: u32,
    /// }
    ///
    /// microagent::run(async {
    ///     let bus = Bus::current();
    ///     let mut observer = bus.observe();
    ///     bus.send("me", Ping { n: 1 }).await.unwrap();
    ///     let sent = observer.drain();
    ///     assert_eq!((sent[0].signal.as_str(), sent[0].sender.as_str()), ("ping", "me"));
    ///     assert_eq!(sent[0].args["n"], 1);
    /// });
    /// ```
    pub fn observe(&self) -> Observer {
        self.inner.observers.observer()
    }

    /// Whether the bus can send now: always in-process; on Redis, while
    /// connected and subscribed.
    pub fn is_connected(&self) -> bool {
        self.inner.remote.as_ref().is_none_or(|link| link.is_up())
    }

    /// What each agent may buffer of what this bus delivers: bounded on
    /// Redis, not in-process (see [`BusConfig::buffer`]).
    pub(crate) fn buffer_bound(&self) -> Option<super::Bound> {
        self.inner.remote.as_ref().map(|link| link.buffer)
    }

    /// Subscribes an agent's receivers: `(signal, responder, deliver)`
    /// each. On Redis, the confirmation resolves once Redis has confirmed
    /// every signal's subscription.
    pub(crate) fn subscribe(
        &self,
        receivers: Vec<(&'static str, Arc<str>, DeliverFn)>,
    ) -> (Subscription, Option<Confirmation>) {
        let entries = self.inner.subscribers.add(receivers);
        let remote = self.inner.remote.clone();
        let confirmation = remote.as_ref().map(|link| {
            let confirm = link.subscribe(entries.iter().map(|(signal, _)| *signal));
            Box::pin(confirm) as Confirmation
        });
        let subscription = Subscription {
            subscribers: self.inner.subscribers.clone(),
            entries,
            remote,
        };
        (subscription, confirmation)
    }

    /// Sends `signal` from `sender` to every receiver of it. Pub/sub is
    /// at-most-once: a signal nobody receives is gone. On Redis it returns
    /// once Redis took it, or [`BusError::Down`] while reconnecting.
    pub async fn send<S: Signal>(&self, sender: &str, signal: S) -> Result<(), BusError> {
        self.publish(S::NAME, SenderName::Str(sender), typed(signal))
            .await
    }

    /// Sends a run-time signal; see [`send`](Bus::send).
    pub async fn send_dyn(&self, sender: &str, signal: &DynSignal) -> Result<(), BusError> {
        let payload = dyn_payload(signal);
        self.publish(signal.name(), SenderName::Str(sender), payload)
            .await
    }

    /// Calls `signal` as an RPC: every receiver of it answers with its
    /// return value. Returns the answers that came within `timeout` (as
    /// soon as everyone asked has answered), or [`BusError::NoAnswer`] when
    /// none did. Nothing is cancelled after it returns.
    pub async fn call<S: Signal>(
        &self,
        sender: &str,
        signal: S,
        timeout: Duration,
    ) -> Result<Answers, BusError> {
        self.call_payload(S::NAME, SenderName::Str(sender), typed(signal), timeout)
            .await
    }

    /// Calls a run-time signal; see [`call`](Bus::call).
    pub async fn call_dyn(
        &self,
        sender: &str,
        signal: &DynSignal,
        timeout: Duration,
    ) -> Result<Answers, BusError> {
        let payload = dyn_payload(signal);
        self.call_payload(signal.name(), SenderName::Str(sender), payload, timeout)
            .await
    }

    /// Calls `signal` as an RPC and streams `(responder, answer)` pairs as
    /// they arrive. The stream ends once everyone asked has answered, or at
    /// `timeout`.
    pub async fn stream<S: Signal>(
        &self,
        sender: &str,
        signal: S,
        timeout: Duration,
    ) -> Result<AnswerStream, BusError> {
        self.stream_payload(S::NAME, SenderName::Str(sender), typed(signal), timeout)
            .await
    }

    /// Which system carries this bus's signals (`messaging.system`).
    fn system(&self) -> &'static str {
        self.inner
            .remote
            .as_ref()
            .map_or("in-process", |link| link.kind())
    }

    pub(super) async fn publish(
        &self,
        name: &str,
        sender: SenderName<'_>,
        payload: Payload,
    ) -> Result<(), BusError> {
        let span = Span::send(self.system(), name);
        // In-process, nothing is awaited: no future is built around the
        // dispatch (a signal's common case).
        let sent = match &self.inner.remote {
            None => self.publish_here(&span, name, sender, payload),
            Some(link) => {
                let sending = self.publish_remote(link, name, sender, payload);
                span.clone().instrument(sending).await
            }
        };
        span.ended(&sent);
        sent
    }

    /// Checks a signal's name and sender before it goes out, and shows it
    /// to the observers.
    fn check_signal(
        &self,
        name: &str,
        sender: &SenderName<'_>,
        payload: &Payload,
    ) -> Result<(), BusError> {
        check_name(name)?;
        wire::check_part("sender", sender.as_str())?;
        self.inner
            .observers
            .record(name, sender.as_str(), payload, false);
        Ok(())
    }

    /// Publishes in-process: the receivers' runs are children of `span`.
    fn publish_here(
        &self,
        span: &Span,
        name: &str,
        sender: SenderName<'_>,
        payload: Payload,
    ) -> Result<(), BusError> {
        self.check_signal(name, &sender, &payload)?;
        let sender = sender.to_arc();
        let origin = Origin::from(span, self.system());
        self.inner
            .subscribers
            .dispatch(name, &sender, payload, None, &origin)?;
        TALLY.sent();
        Ok(())
    }

    /// Publishes on the bus's server.
    async fn publish_remote(
        &self,
        link: &Remote,
        name: &str,
        sender: SenderName<'_>,
        payload: Payload,
    ) -> Result<(), BusError> {
        self.check_signal(name, &sender, &payload)?;
        let trace = Span::current().traceparent();
        let route = (name, sender.as_str());
        link.send(route, payload.to_wire()?, trace.as_deref())
            .await?;
        TALLY.sent();
        Ok(())
    }

    pub(super) async fn stream_payload(
        &self,
        name: &str,
        sender: SenderName<'_>,
        payload: Payload,
        timeout: Duration,
    ) -> Result<AnswerStream, BusError> {
        let deadline = actix_rt::time::Instant::now() + timeout;
        check_name(name)?;
        wire::check_part("sender", sender.as_str())?;
        self.inner
            .observers
            .record(name, sender.as_str(), &payload, true);
        let (answers, guard, asked) = match &self.inner.remote {
            None => {
                let (tx, answers) = mpsc::unbounded_channel();
                let sender = sender.to_arc();
                let origin = Origin::from(&Span::current(), self.system());
                let asked =
                    self.inner
                        .subscribers
                        .dispatch(name, &sender, payload, Some(tx), &origin)?;
                (answers, None, asked)
            }
            Some(link) => {
                // The timeout covers the whole call, the publishing too (a
                // Redis that stops answering must not hold the caller).
                let trace = Span::current().traceparent();
                let route = (name, sender.as_str());
                let call = link.call(route, payload.to_wire()?, trace.as_deref());
                match tokio::time::timeout_at(deadline, call).await {
                    Ok(called) => {
                        let (answers, guard, asked) = called?;
                        (answers, Some(guard), asked)
                    }
                    Err(_) => {
                        return Err(BusError::NoAnswer {
                            signal: name.to_owned(),
                            timeout,
                            asked: 0,
                        })
                    }
                }
            }
        };
        Ok(AnswerStream {
            answers,
            deadline: Box::pin(actix_rt::time::sleep_until(deadline)),
            asked,
            _call: guard,
        })
    }

    pub(super) async fn call_payload(
        &self,
        name: &str,
        sender: SenderName<'_>,
        payload: Payload,
        timeout: Duration,
    ) -> Result<Answers, BusError> {
        let started = std::time::Instant::now();
        let span = Span::call(self.system(), name);
        let collecting = self.collect_call(name, sender, payload, timeout);
        let called = traced(span.clone(), collecting).await;
        let end = match &called {
            Ok(answers) => {
                span.answers(answers.len());
                CallEnd::Answered(answers.len())
            }
            Err(BusError::NoAnswer { .. }) => CallEnd::NoAnswer,
            Err(_) => CallEnd::Failed,
        };
        TALLY.called(name, end, started.elapsed());
        called
    }

    async fn collect_call(
        &self,
        name: &str,
        sender: SenderName<'_>,
        payload: Payload,
        timeout: Duration,
    ) -> Result<Answers, BusError> {
        let mut stream = self.stream_payload(name, sender, payload, timeout).await?;
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
}

/// The answers to an RPC call as they arrive: `(responder, answer)`, where
/// the responder is `Agent.method`. From [`Bus::stream`].
pub struct AnswerStream {
    answers: mpsc::UnboundedReceiver<(Arc<str>, Value)>,
    deadline: Pin<Box<Sleep>>,
    asked: usize,
    /// Over Redis: forgets the call when the stream is dropped.
    _call: Option<PendingGuard>,
}

impl AnswerStream {
    /// How many were asked: receivers in-process, buses over Redis.
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

/// A run-time signal's payload: its JSON, or, when it has a declaration's
/// argument order, the bytes in that order (what Python peers see).
pub(super) fn dyn_payload(signal: &DynSignal) -> Payload {
    if signal.has_order() {
        Payload::Wire(signal.encoded().into())
    } else {
        Payload::Json(signal.args().clone())
    }
}
