//! The seam a bus backend plugs into: what it implements ([`Connector`],
//! [`Transport`]) and what it reports to ([`Hub`]).
//!
//! A backend (`bus/redis/`, ...) implements [`Transport`] (publish a
//! signal or a call; subscribe and unsubscribe the signals local receivers
//! take; close) and reports what arrives to the [`Hub`]: signals and calls
//! for the local receivers, answers to this process's calls, malformed
//! input, and whether it is connected. Everything else a remote bus does
//! lives here, once, naming no backend: RPC bookkeeping (who was asked,
//! which answers came, when a call is complete), answering a call with the
//! local receivers' answers as one object, counting bad input, readiness,
//! and what `BusInfo` shows (with [`remote`](super::remote), which runs
//! a bus on a transport).
//!
//! `docs/backends.md` tells how to add a backend.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use futures_util::future::BoxFuture;
use serde_json::{Map, Value};
use tokio::sync::{mpsc, oneshot, watch};

use super::delivery::{AnswerTx, Payload};
use super::error::BusError;
use super::local::Subscribers;
use super::wire;
use crate::backend::{Endpoint, FailureCounts, Failures};
use crate::spans::Origin;
use crate::LOG_TARGET;

/// How long an answering bus waits for its receivers before it answers
/// with what it has (each receiver's own timeout normally ends it first).
const ANSWER_CAP: Duration = Duration::from_secs(300);

/// Where a signal goes: its name, its sender, the request id when it is
/// an RPC call, and the W3C `traceparent` of the span it was sent in
/// (feature `otel`; a backend with headers carries it, one without drops
/// it).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Route<'a> {
    pub(crate) name: &'a str,
    pub(crate) sender: &'a str,
    pub(crate) request_id: Option<&'a str>,
    pub(crate) trace: Option<&'a str>,
}

/// A publication under way: resolves to how many buses got it (each
/// answers a call for all its receivers). Only a call's count is used; a
/// backend that has to look the count up (NATS) resolves a signal to 0.
pub(crate) type Publishing = BoxFuture<'static, Result<usize, BusError>>;

/// How a remote backend is reached: what its `BusConfig` constructor
/// stores (beside the backend's name and URL), and what starts it when
/// the bus connects.
pub(crate) trait Connector: Send + Sync + 'static {
    /// Starts connecting (and reconnecting, for as long as the bus lives).
    /// The backend reports to `hub`, which also carries the bus's settings;
    /// the bus is handed out once the backend calls [`Hub::set_up`].
    fn start(&self, hub: Arc<Hub>) -> Result<Box<dyn Transport>, BusError>;
}

/// What a bus backend does on its server.
pub(crate) trait Transport: Send + Sync + 'static {
    /// Publishes a signal, or an RPC call when `route.request_id` is set.
    /// Fails with [`BusError::Down`] (nothing sent) while disconnected.
    fn publish(&self, route: Route<'_>, payload: Vec<u8>) -> Publishing;

    /// One more local receiver of `signal`: `confirmed` is sent once the
    /// server has confirmed that this process gets the signal (at once
    /// when it already does and the bus is up).
    fn subscribe(&self, signal: &str, confirmed: oneshot::Sender<()>);

    /// One local receiver of `signal` fewer.
    fn unsubscribe(&self, signal: &str);

    /// Ends the backend's connection for good.
    fn close(&self);
}

/// What a backend reports to: the local receivers, the calls waiting for
/// answers, and the bus's state.
pub(crate) struct Hub {
    kind: &'static str,
    endpoint: Endpoint,
    prefix: String,
    /// This bus's id (where its answers come from).
    uid: String,
    max_payload: usize,
    /// The longest pause between two reconnection attempts.
    reconnect_max: Duration,
    /// Connected and subscribed.
    up: watch::Sender<bool>,
    /// RPC calls of this bus waiting for answers, by request id.
    pending: Mutex<HashMap<String, Pending>>,
    bad_input: AtomicU64,
    slow_consumer: AtomicU64,
    /// Connections lost, commands that failed.
    failures: Failures,
    subscribers: Arc<Subscribers>,
}

/// A call waiting for its answers.
struct Pending {
    tx: AnswerTx,
    /// Answer objects received (one per answering bus).
    received: usize,
    /// How many buses got the request, once known.
    expected: Option<usize>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// What a hub is made of: the bus's identity and settings.
pub(crate) struct HubSettings {
    pub(crate) kind: &'static str,
    pub(crate) endpoint: Endpoint,
    pub(crate) prefix: String,
    pub(crate) max_payload: usize,
    pub(crate) reconnect_max: Duration,
}

impl Hub {
    pub(crate) fn new(settings: HubSettings, subscribers: Arc<Subscribers>) -> Arc<Hub> {
        let HubSettings {
            kind,
            endpoint,
            prefix,
            max_payload,
            reconnect_max,
        } = settings;
        Arc::new(Hub {
            kind,
            endpoint,
            prefix,
            uid: uuid::Uuid::new_v4().simple().to_string(),
            max_payload,
            reconnect_max,
            up: watch::Sender::new(false),
            pending: Mutex::default(),
            bad_input: AtomicU64::new(0),
            slow_consumer: AtomicU64::new(0),
            failures: Failures::default(),
            subscribers,
        })
    }

    /// The backend's name.
    pub(crate) fn kind(&self) -> &'static str {
        self.kind
    }

    /// The longest pause between two reconnection attempts.
    pub(crate) fn reconnect_max(&self) -> Duration {
        self.reconnect_max
    }

    /// Resolves once the backend is up.
    pub(crate) fn until_up(&self) -> impl Future<Output = bool> + 'static {
        let mut up = self.up.subscribe();
        async move { up.wait_for(|up| *up).await.is_ok() }
    }

    /// Messages dropped as malformed so far.
    pub(crate) fn bad_input(&self) -> u64 {
        self.bad_input.load(Ordering::Relaxed)
    }

    /// How often the backend's client dropped messages this process did
    /// not read in time.
    pub(crate) fn slow_consumer_count(&self) -> u64 {
        self.slow_consumer.load(Ordering::Relaxed)
    }

    /// Notes a call of this bus: where its answers come, and the guard
    /// that forgets it.
    pub(crate) fn open_call(
        self: &Arc<Self>,
    ) -> (PendingGuard, mpsc::UnboundedReceiver<(Arc<str>, Value)>) {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let (tx, rx) = mpsc::unbounded_channel();
        let pending = Pending {
            tx,
            received: 0,
            expected: None,
        };
        self.pending().insert(id.clone(), pending);
        let guard = PendingGuard {
            hub: self.clone(),
            id,
        };
        (guard, rx)
    }

    /// The call `id` was published to `asked` buses: it is complete once
    /// they all answered.
    pub(crate) fn asked(&self, id: &str, asked: usize) {
        let mut pending = self.pending();
        if let Some(call) = pending.get_mut(id) {
            call.expected = Some(asked);
            finish_if_done(&mut pending, id);
        }
    }

    /// The channel prefix.
    pub(crate) fn prefix(&self) -> &str {
        &self.prefix
    }

    /// This bus's id, unique per connected bus.
    pub(crate) fn uid(&self) -> &str {
        &self.uid
    }

    /// Its URL (for logs: [`Endpoint::redacted`]).
    pub(crate) fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// Whether the backend is connected and subscribed.
    pub(crate) fn is_up(&self) -> bool {
        *self.up.borrow()
    }

    /// The backend is connected and subscribed (`true`), or lost its
    /// connection (`false`: sends fail with [`BusError::Down`], readiness
    /// says 503).
    pub(crate) fn set_up(&self, up: bool) {
        let was = self.up.send_replace(up);
        if was && !up {
            self.failures.disconnected();
        }
    }

    /// How often the connection was lost, and how commands failed.
    pub(crate) fn failures(&self) -> FailureCounts {
        self.failures.counts()
    }

    /// The error of a send while the backend is down.
    pub(crate) fn down(&self) -> BusError {
        BusError::Down {
            url: self.endpoint.redacted().to_owned(),
        }
    }

    /// The error of a command the server refused or a connection that
    /// failed under it (counted as a server error while connected).
    pub(crate) fn failed(&self, error: impl std::error::Error + Send + Sync + 'static) -> BusError {
        self.failures.failed(self.is_up());
        BusError::Backend {
            kind: self.kind,
            url: self.endpoint.redacted().to_owned(),
            source: self.endpoint.error(error),
        }
    }

    /// Counts and logs a message dropped as malformed (`place`: where it
    /// came, as the backend names it).
    pub(crate) fn bad(&self, place: &str, reason: impl fmt::Display) {
        self.bad_input.fetch_add(1, Ordering::Relaxed);
        log::warn!(target: LOG_TARGET, "bus: dropped a message on {place:?}: {reason}");
    }

    /// Counts and logs messages the backend's client dropped because this
    /// process did not read them in time (`place`: where, as the backend
    /// names it).
    #[cfg_attr(not(feature = "nats"), allow(dead_code))]
    pub(crate) fn slow_consumer(&self, place: &str, what: impl fmt::Display) {
        self.slow_consumer.fetch_add(1, Ordering::Relaxed);
        log::warn!(target: LOG_TARGET, "bus: a slow consumer on {place}: {what}");
    }

    /// A signal came for this process's receivers (a call when
    /// `route.request_id` is set). Returns, for a call some receiver here
    /// takes, the answers to send back once they are in.
    pub(crate) fn deliver(
        &self,
        place: &str,
        route: Route<'_>,
        payload: &[u8],
    ) -> Option<Answering> {
        if let Err(e) = wire::check_payload(payload, self.max_payload) {
            self.bad(place, format_args!("signal `{}`: {e}", route.name));
            return None;
        }
        let args = Payload::Wire(payload.into());
        let sender: Arc<str> = route.sender.into();
        if route.request_id.is_none() {
            // No receiver left here (it unsubscribes asynchronously) is fine.
            let _ = self.subscribers.dispatch(
                route.name,
                &sender,
                args,
                None,
                &Origin::remote(self.kind(), route.trace),
            );
            return None;
        }
        let (tx, answers) = mpsc::unbounded_channel();
        let asked = self
            .subscribers
            .dispatch(
                route.name,
                &sender,
                args,
                Some(tx),
                &Origin::remote(self.kind(), route.trace),
            )
            .unwrap_or(0);
        // A bus with no receiver of the signal does not answer: an empty
        // answer could come first to a Python caller, which takes the first.
        (asked > 0).then_some(Answering { answers })
    }

    /// One bus's answer object to the call `request_id`, if it is one of
    /// this bus's calls (others' answers are ignored, not counted).
    pub(crate) fn answered(&self, place: &str, request_id: &str, payload: &[u8]) {
        if !self.pending().contains_key(request_id) {
            return;
        }
        let decoded = wire::decode_payload(payload, self.max_payload);
        if let Err(e) = &decoded {
            self.bad(place, format_args!("an answer: {e}"));
        }
        let mut pending = self.pending();
        let Some(call) = pending.get_mut(request_id) else {
            return;
        };
        for (responder, value) in decoded.into_iter().flatten() {
            let _ = call.tx.send((responder.into(), value));
        }
        // A malformed answer still counts as that bus's answer.
        call.received += 1;
        finish_if_done(&mut pending, request_id);
    }

    fn pending(&self) -> MutexGuard<'_, HashMap<String, Pending>> {
        lock(&self.pending)
    }
}

/// Ends a call whose every answering bus has answered.
fn finish_if_done(pending: &mut HashMap<String, Pending>, id: &str) {
    if let Some(call) = pending.get(id) {
        if call
            .expected
            .is_some_and(|expected| call.received >= expected)
        {
            pending.remove(id);
        }
    }
}

/// The local receivers' answers to a call, on their way.
pub(crate) struct Answering {
    answers: mpsc::UnboundedReceiver<(Arc<str>, Value)>,
}

impl Answering {
    /// The answers as one object `{"Agent.method": answer, ...}`, encoded,
    /// as the Python original sends them; `None` when every receiver
    /// dropped its reply (its agent is stopping): nothing to say, and an
    /// empty object must not win the race.
    pub(crate) async fn collect(mut self) -> Option<Vec<u8>> {
        let mut object = Map::new();
        {
            let collect = async {
                while let Some((responder, value)) = self.answers.recv().await {
                    object.insert(responder.to_string(), value);
                }
            };
            let _ = actix_rt::time::timeout(ANSWER_CAP, collect).await;
        }
        (!object.is_empty()).then(|| wire::encode_payload(&object))
    }
}

/// Forgets a call when its answer stream is dropped.
pub(crate) struct PendingGuard {
    hub: Arc<Hub>,
    id: String,
}

impl PendingGuard {
    /// The call's request id.
    pub(crate) fn id(&self) -> &str {
        &self.id
    }
}

impl Drop for PendingGuard {
    fn drop(&mut self) {
        self.hub.pending().remove(&self.id);
    }
}

/// Where a call's answers come, the guard that forgets the call, and how
/// many buses were asked.
pub(crate) type Called = (
    mpsc::UnboundedReceiver<(Arc<str>, Value)>,
    PendingGuard,
    usize,
);

/// The signals a backend subscribes on its server, counted by local
/// receiver (the last receiver of a signal unsubscribes it), and who waits
/// for a confirmation while the connection is down: the bookkeeping every
/// backend that reconnects by itself keeps.
#[derive(Default)]
#[cfg_attr(not(feature = "redis"), allow(dead_code))]
pub(crate) struct Interest {
    signals: HashMap<String, usize>,
    waiting: Vec<oneshot::Sender<()>>,
}

#[cfg_attr(not(feature = "redis"), allow(dead_code))]
impl Interest {
    /// One more receiver of `signal`; `true` when it is the first.
    pub(crate) fn add(&mut self, signal: &str) -> bool {
        let count = self.signals.entry(signal.to_owned()).or_default();
        *count += 1;
        *count == 1
    }

    /// One receiver of `signal` fewer; `true` when it was the last.
    pub(crate) fn release(&mut self, signal: &str) -> bool {
        match self.signals.get_mut(signal) {
            Some(count) if *count > 1 => {
                *count -= 1;
                false
            }
            Some(_) => {
                self.signals.remove(signal);
                true
            }
            None => false,
        }
    }

    /// Every signal subscribed (to subscribe again after a reconnection).
    pub(crate) fn signals(&self) -> impl Iterator<Item = &str> {
        self.signals.keys().map(String::as_str)
    }

    /// How many signals are subscribed.
    pub(crate) fn len(&self) -> usize {
        self.signals.len()
    }

    /// Someone waits for the next connection to confirm a subscription.
    pub(crate) fn wait(&mut self, confirmed: oneshot::Sender<()>) {
        self.waiting.push(confirmed);
    }

    /// Connected and subscribed: confirms every wait.
    pub(crate) fn confirm_waiting(&mut self) {
        for waiter in self.waiting.drain(..) {
            let _ = waiter.send(());
        }
    }
}

impl fmt::Debug for Interest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Interest")
            .field("signals", &self.signals.len())
            .finish_non_exhaustive()
    }
}
