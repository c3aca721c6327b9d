//! The Redis bus: the Python original's channels and payloads over Redis
//! pub/sub, so Rust and Python agents share one Redis.
//!
//! One task per bus (on the System's arbiter) owns the subscribing
//! connection: it pattern-subscribes `{prefix}:{signal}:*` for each signal
//! some local receiver takes (counted, so the last receiver of a signal
//! unsubscribes it) and `{prefix}:response:*` for RPC answers, hands what
//! arrives to the local receivers, and reconnects with a capped backoff
//! when the connection drops, subscribing everything again before it
//! reports itself connected. Publishing goes through a second, multiplexed
//! connection that any arbiter can use.
//!
//! RPC: a call publishes on `{prefix}:{signal}:{sender}#{id}`; PUBLISH
//! tells how many subscriptions got it, which is how many buses will
//! answer. Each answering bus runs all its receivers of the signal and
//! publishes ONE object `{"Agent.method": answer, ...}` on
//! `{prefix}:response:{bus id}#{id}`, as the Python original does.

use std::collections::HashMap;
use std::future::Future;
use std::pin::pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use futures_util::future::{self, Either};
use futures_util::StreamExt;
use redis::aio::{MultiplexedConnection, PubSubSink, PubSubStream};
use serde_json::{Map, Value};
use tokio::sync::{mpsc, oneshot, watch};

use super::backlog::Bound;
use super::config::{BusConfig, BusInfo, Kind};
use super::delivery::{AnswerTx, Payload};
use super::error::BusError;
use super::local::Subscribers;
use super::wire::{self, Channel, RESPONSE};
use crate::LOG_TARGET;

/// How long an answering bus waits for its receivers before it answers
/// with what it has (each receiver's own timeout normally ends it first).
const ANSWER_CAP: Duration = Duration::from_secs(300);

/// How long one connection attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The first pause before a reconnection attempt.
const FIRST_PAUSE: Duration = Duration::from_millis(50);

/// How often a live connection asks Redis for a PING, and how long the
/// answer may take: a server that stops answering (frozen, not closed) is
/// noticed within both, and the bus reconnects (readiness 503 meanwhile).
const PING_EVERY: Duration = Duration::from_secs(1);
const PING_TIMEOUT: Duration = Duration::from_secs(1);

/// The Redis side of a bus, shared by its handles and its task.
pub(super) struct Link {
    client: redis::Client,
    prefix: String,
    /// This bus's id in answer channels (`{prefix}:response:{uid}#{id}`).
    uid: String,
    redacted: String,
    max_payload: usize,
    subscribe_timeout: Duration,
    reconnect_max: Duration,
    /// What each agent may buffer of what this bus delivers.
    pub(super) buffer: Bound,
    /// Connected and subscribed.
    up: watch::Sender<bool>,
    publisher: Mutex<Option<MultiplexedConnection>>,
    /// RPC calls of this bus waiting for answers, by request id.
    pending: Mutex<HashMap<String, Pending>>,
    commands: mpsc::UnboundedSender<Command>,
    bad_input: AtomicU64,
    subscribers: Arc<Subscribers>,
}

enum Command {
    /// One more local receiver of `signal`; `confirmed` once Redis has
    /// confirmed the pattern subscription.
    Subscribe {
        signal: String,
        confirmed: oneshot::Sender<()>,
    },
    /// One receiver of `signal` fewer.
    Unsubscribe { signal: String },
    /// The bus could not start: end the task.
    Close,
}

/// A call waiting for its answers.
struct Pending {
    tx: AnswerTx,
    /// Answer objects received (one per answering bus).
    received: usize,
    /// How many buses got the request (PUBLISH's reply), once known.
    expected: Option<usize>,
}

/// Forgets a call when its stream is dropped.
pub(super) struct PendingGuard {
    link: Arc<Link>,
    id: String,
}

impl Drop for PendingGuard {
    fn drop(&mut self) {
        self.link.pending().remove(&self.id);
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Link {
    /// Starts the bus's task and waits until it is connected and
    /// subscribed to answers (bounded by the subscribe timeout).
    pub(super) async fn start(
        config: &BusConfig,
        subscribers: Arc<Subscribers>,
    ) -> Result<Arc<Link>, BusError> {
        let Kind::Redis { url, redacted } = &config.kind else {
            return Err(BusError::Config {
                reason: "not a Redis configuration".to_owned(),
            });
        };
        let client = redis::Client::open(url.as_str()).map_err(|e| BusError::Config {
            reason: format!("bad Redis URL {redacted}: {:?}", e.kind()),
        })?;
        let (commands, rx) = mpsc::unbounded_channel();
        let link = Arc::new(Link {
            client,
            prefix: config.prefix.clone(),
            uid: uuid::Uuid::new_v4().simple().to_string(),
            redacted: redacted.clone(),
            max_payload: config.max_payload,
            subscribe_timeout: config.subscribe_timeout,
            reconnect_max: config.reconnect_max,
            buffer: config.buffer,
            up: watch::Sender::new(false),
            publisher: Mutex::default(),
            pending: Mutex::default(),
            commands,
            bad_input: AtomicU64::new(0),
            subscribers,
        });
        actix_rt::System::current()
            .arbiter()
            .spawn(serve(link.clone(), rx));
        let mut up = link.up.subscribe();
        let connected = actix_rt::time::timeout(config.subscribe_timeout, up.wait_for(|up| *up));
        if let Ok(Ok(_)) = connected.await {
            return Ok(link);
        }
        let _ = link.commands.send(Command::Close);
        Err(BusError::Down {
            url: link.redacted.clone(),
        })
    }

    fn pending(&self) -> MutexGuard<'_, HashMap<String, Pending>> {
        lock(&self.pending)
    }

    pub(super) fn is_up(&self) -> bool {
        *self.up.borrow()
    }

    pub(super) fn info(&self) -> BusInfo {
        BusInfo {
            kind: "redis",
            prefix: self.prefix.clone(),
            url: Some(self.redacted.clone()),
            connected: self.is_up(),
            bad_input: self.bad_input.load(Ordering::Relaxed),
        }
    }

    /// Subscribes one receiver of each of `signals`; the future resolves
    /// once Redis has confirmed them all.
    pub(super) fn subscribe(
        &self,
        signals: impl Iterator<Item = &'static str>,
    ) -> impl Future<Output = Result<(), BusError>> + 'static {
        let mut confirmations = Vec::new();
        for signal in signals {
            let (confirmed, wait) = oneshot::channel();
            let command = Command::Subscribe {
                signal: signal.to_owned(),
                confirmed,
            };
            // A closed task drops `confirmed`: the wait below fails.
            let _ = self.commands.send(command);
            confirmations.push(wait);
        }
        let (timeout, url) = (self.subscribe_timeout, self.redacted.clone());
        async move {
            let all = future::try_join_all(confirmations);
            match actix_rt::time::timeout(timeout, all).await {
                Ok(Ok(_)) => Ok(()),
                Ok(Err(_)) => Err(BusError::Down { url }),
                Err(_) => Err(BusError::SubscribeTimeout { url, timeout }),
            }
        }
    }

    /// One receiver of `signal` fewer.
    pub(super) fn unsubscribe(&self, signal: &str) {
        let _ = self.commands.send(Command::Unsubscribe {
            signal: signal.to_owned(),
        });
    }

    /// Publishes a signal's payload; returns how many subscriptions got it.
    pub(super) async fn send(
        &self,
        name: &str,
        sender: &str,
        payload: Vec<u8>,
    ) -> Result<usize, BusError> {
        let channel = Channel {
            prefix: &self.prefix,
            name,
            sender,
            request_id: None,
        };
        self.publish(channel.to_string(), payload).await
    }

    /// Publishes an RPC request; returns where its answers come, the guard
    /// that forgets the call, and how many buses were asked.
    pub(super) async fn call(
        self: &Arc<Self>,
        name: &str,
        sender: &str,
        payload: Vec<u8>,
    ) -> Result<
        (
            mpsc::UnboundedReceiver<(Arc<str>, Value)>,
            PendingGuard,
            usize,
        ),
        BusError,
    > {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let (tx, rx) = mpsc::unbounded_channel();
        let pending = Pending {
            tx,
            received: 0,
            expected: None,
        };
        self.pending().insert(id.clone(), pending);
        let guard = PendingGuard {
            link: self.clone(),
            id,
        };
        let channel = Channel {
            prefix: &self.prefix,
            name,
            sender,
            request_id: Some(&guard.id),
        };
        let asked = self.publish(channel.to_string(), payload).await?;
        let mut pending = self.pending();
        if let Some(call) = pending.get_mut(&guard.id) {
            call.expected = Some(asked);
            if call.received >= asked {
                pending.remove(&guard.id);
            }
        }
        drop(pending);
        Ok((rx, guard, asked))
    }

    async fn publish(&self, channel: String, payload: Vec<u8>) -> Result<usize, BusError> {
        let connection = lock(&self.publisher).clone();
        let Some(mut connection) = connection.filter(|_| self.is_up()) else {
            return Err(BusError::Down {
                url: self.redacted.clone(),
            });
        };
        redis::cmd("PUBLISH")
            .arg(channel)
            .arg(payload)
            .query_async::<usize>(&mut connection)
            .await
            .map_err(|e| BusError::Redis {
                url: self.redacted.clone(),
                reason: e.to_string(),
            })
    }

    /// Counts and logs a message dropped as malformed.
    fn bad(&self, channel: &str, reason: impl std::fmt::Display) {
        self.bad_input.fetch_add(1, Ordering::Relaxed);
        log::warn!(target: LOG_TARGET, "bus: dropped a message on {channel:?}: {reason}");
    }

    /// Handles one message from the subscribing connection.
    fn on_message(self: &Arc<Self>, message: &redis::Msg) {
        // `?` stands for a channel name that is not UTF-8; it cannot match
        // a pattern of ours either way.
        let text = message.get_channel_name();
        if text == "?" {
            return self.bad(text, "the channel name is not UTF-8");
        }
        let channel = match Channel::parse(text) {
            Ok(channel) => channel,
            Err(e) => return self.bad(text, e),
        };
        // Our patterns are escaped: another prefix is someone's mistake.
        if channel.prefix != self.prefix {
            return self.bad(text, format_args!("not our prefix `{}`", self.prefix));
        }
        let payload = message.get_payload_bytes();
        if channel.name == RESPONSE {
            match channel.request_id {
                Some(id) => self.on_answer(text, id, payload),
                None => self.bad(text, "an answer without a request id"),
            }
            return;
        }
        if let Err(e) = wire::check_payload(payload, self.max_payload) {
            return self.bad(text, format_args!("signal `{}`: {e}", channel.name));
        }
        let args = Payload::Wire(payload.into());
        let sender: Arc<str> = channel.sender.into();
        let Some(id) = channel.request_id else {
            // No receiver left here (it unsubscribes asynchronously) is fine.
            let _ = self.subscribers.dispatch(channel.name, &sender, args, None);
            return;
        };
        let (tx, answers) = mpsc::unbounded_channel();
        let asked = self
            .subscribers
            .dispatch(channel.name, &sender, args, Some(tx))
            .unwrap_or(0);
        // A bus with no receiver of the signal does not answer: an empty
        // answer could come first to a Python caller, which takes the first.
        if asked > 0 {
            let answer = Channel {
                prefix: &self.prefix,
                name: RESPONSE,
                sender: &self.uid,
                request_id: Some(id),
            }
            .to_string();
            actix_rt::spawn(answer_call(self.clone(), answers, answer));
        }
    }

    /// An answer object for one of this bus's calls, or for someone else's.
    fn on_answer(&self, channel: &str, id: &str, payload: &[u8]) {
        if !self.pending().contains_key(id) {
            // Another bus's call (or one that gave up): not ours to read.
            return;
        }
        let decoded = wire::decode_payload(payload, self.max_payload);
        if let Err(e) = &decoded {
            self.bad(channel, format_args!("an answer: {e}"));
        }
        let mut pending = self.pending();
        let Some(call) = pending.get_mut(id) else {
            return;
        };
        for (responder, value) in decoded.into_iter().flatten() {
            let _ = call.tx.send((responder.into(), value));
        }
        // A malformed answer still counts as that bus's answer.
        call.received += 1;
        finish_if_done(&mut pending, id);
    }

    /// Connects both connections and subscribes every pattern.
    async fn connect(
        &self,
        signals: &HashMap<String, usize>,
    ) -> Result<(PubSubSink, PubSubStream), redis::RedisError> {
        let pubsub = self.client.get_async_pubsub().await?;
        let publisher = self.client.get_multiplexed_async_connection().await?;
        let (mut sink, stream) = pubsub.split();
        let mut patterns = vec![wire::pattern(&self.prefix, RESPONSE)];
        patterns.extend(signals.keys().map(|s| wire::pattern(&self.prefix, s)));
        sink.psubscribe(patterns).await?;
        *lock(&self.publisher) = Some(publisher);
        Ok((sink, stream))
    }

    /// Whether Redis answers a PING on the publishing connection in time.
    async fn answers_ping(&self) -> bool {
        let Some(mut connection) = lock(&self.publisher).clone() else {
            return false;
        };
        let ping = redis::cmd("PING");
        let answer = ping.query_async::<String>(&mut connection);
        matches!(
            actix_rt::time::timeout(PING_TIMEOUT, answer).await,
            Ok(Ok(_))
        )
    }

    fn set_up(&self, up: bool) {
        if !up {
            *lock(&self.publisher) = None;
        }
        self.up.send_replace(up);
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

/// Collects the local receivers' answers to a request and publishes them
/// as one object.
async fn answer_call(
    link: Arc<Link>,
    mut answers: mpsc::UnboundedReceiver<(Arc<str>, Value)>,
    channel: String,
) {
    let mut object = Map::new();
    {
        let collect = async {
            while let Some((responder, value)) = answers.recv().await {
                object.insert(responder.to_string(), value);
            }
        };
        let _ = actix_rt::time::timeout(ANSWER_CAP, collect).await;
    }
    // Every receiver dropped its reply (its agent is stopping): nothing to
    // say, and an empty object must not win the race.
    if object.is_empty() {
        return;
    }
    if let Err(e) = link.publish(channel, wire::encode_payload(&object)).await {
        log::warn!(target: LOG_TARGET, "bus: an RPC answer was not sent: {e}");
    }
}

/// The subscriptions the task keeps: receivers per signal, and who waits
/// for a confirmation while the connection is down.
#[derive(Default)]
struct Subscriptions {
    signals: HashMap<String, usize>,
    waiting: Vec<oneshot::Sender<()>>,
}

impl Subscriptions {
    /// Notes a command while disconnected; `false` to end the task.
    fn offline(&mut self, command: Option<Command>) -> bool {
        match command {
            Some(Command::Subscribe { signal, confirmed }) => {
                *self.signals.entry(signal).or_default() += 1;
                self.waiting.push(confirmed);
                true
            }
            Some(Command::Unsubscribe { signal }) => {
                self.release(&signal);
                true
            }
            Some(Command::Close) | None => false,
        }
    }

    /// One receiver of `signal` fewer; `true` when it was the last.
    fn release(&mut self, signal: &str) -> bool {
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
}

/// The bus's task: connect, serve, reconnect.
async fn serve(link: Arc<Link>, mut commands: mpsc::UnboundedReceiver<Command>) {
    let mut subs = Subscriptions::default();
    let mut pause = FIRST_PAUSE;
    loop {
        let connect = actix_rt::time::timeout(CONNECT_TIMEOUT, link.connect(&subs.signals));
        let lost = match connect.await {
            Ok(Ok((sink, stream))) => {
                pause = FIRST_PAUSE;
                link.set_up(true);
                log::info!(
                    target: LOG_TARGET,
                    "bus: connected to {} ({} signal(s) subscribed)",
                    link.redacted,
                    subs.signals.len()
                );
                for waiter in subs.waiting.drain(..) {
                    let _ = waiter.send(());
                }
                match connected(&link, &mut subs, &mut commands, sink, stream).await {
                    Some(reason) => reason,
                    None => return,
                }
            }
            Ok(Err(e)) => e.to_string(),
            Err(_) => format!("no connection within {CONNECT_TIMEOUT:?}"),
        };
        if link.is_up() {
            link.set_up(false);
            log::warn!(target: LOG_TARGET, "bus: connection to {} lost: {lost}; reconnecting", link.redacted);
        } else {
            log::warn!(target: LOG_TARGET, "bus: cannot connect to {}: {lost}; retrying in {pause:?}", link.redacted);
        }
        // Keep track of (un)subscriptions during the pause.
        let mut sleep = pin!(actix_rt::time::sleep(pause));
        loop {
            match future::select(sleep.as_mut(), pin!(commands.recv())).await {
                Either::Left(_) => break,
                Either::Right((command, _)) => {
                    if !subs.offline(command) {
                        return;
                    }
                }
            }
        }
        pause = (pause * 2).min(link.reconnect_max);
    }
}

/// Serves a live connection; returns why it was lost, or `None` when the
/// task should end.
async fn connected(
    link: &Arc<Link>,
    subs: &mut Subscriptions,
    commands: &mut mpsc::UnboundedReceiver<Command>,
    mut sink: PubSubSink,
    mut stream: PubSubStream,
) -> Option<String> {
    let mut ping = actix_rt::time::interval(PING_EVERY);
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ping.reset();
    loop {
        let command = pin!(commands.recv());
        let message_or_command = future::select(stream.next(), command);
        let next = match future::select(message_or_command, pin!(ping.tick())).await {
            Either::Left((Either::Left((message, _)), _)) => Either::Left(message),
            Either::Left((Either::Right((command, _)), _)) => Either::Right(command),
            Either::Right(_) => {
                if !link.answers_ping().await {
                    return Some(format!("no answer to a PING within {PING_TIMEOUT:?}"));
                }
                continue;
            }
        };
        match next {
            Either::Left(Some(message)) => link.on_message(&message),
            Either::Left(None) => return Some("the connection closed".to_owned()),
            Either::Right(Some(Command::Subscribe { signal, confirmed })) => {
                let count = subs.signals.entry(signal.clone()).or_default();
                *count += 1;
                if *count == 1 {
                    if let Err(e) = sink.psubscribe(wire::pattern(&link.prefix, &signal)).await {
                        subs.waiting.push(confirmed);
                        return Some(e.to_string());
                    }
                }
                let _ = confirmed.send(());
            }
            Either::Right(Some(Command::Unsubscribe { signal })) => {
                if subs.release(&signal) {
                    if let Err(e) = sink
                        .punsubscribe(wire::pattern(&link.prefix, &signal))
                        .await
                    {
                        return Some(e.to_string());
                    }
                }
            }
            Either::Right(Some(Command::Close) | None) => return None,
        }
    }
}
