//! The broker handle: sending, queue lengths, dead letters, and the
//! consumers of this process, on whichever backend the System's broker has.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;

use serde_json::{Map, Value};

use super::config::{BrokerConfig, BrokerInfo, Connector, Kind};
use super::error::{BrokerError, DeadLetter};
use super::job::{Binding, Body, ConsumerOptions, JobFn};
use super::memory::Memory;
use super::observe;
use super::queue::Queue;
use super::remote::{ConsumerSpec, Destination};
use super::runner::{self, Backend, Consuming, Remote};
use super::tally::TALLY;
use crate::bus::QueueSpec;
use crate::per_system::PerSystem;
use crate::spans::{traced, Origin, Span};

/// A broker handle. Cheap to clone; every clone is the same broker.
///
/// Each actix System has one broker, shared by the agents on all its
/// arbiters: [`Broker::current`] returns it, the in-process broker unless
/// [`Broker::connect`] (or [`Launcher::broker`](crate::Launcher::broker))
/// installed another before.
#[derive(Clone)]
pub struct Broker {
    backend: Backend,
}

impl fmt::Debug for Broker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let info = self.info();
        f.debug_struct("Broker")
            .field("kind", &info.kind)
            .field("url", &info.url)
            .finish_non_exhaustive()
    }
}

/// The brokers, by System id.
static BROKERS: PerSystem<Broker> = PerSystem::new();

/// Forgets the broker of a System that has ended.
/// Connects a broker on a server, trying again with a capped backoff
/// (50 ms, doubling up to 5 s) until its connect timeout: the bus waits for
/// its server at start as long (its subscribe timeout), so a launch treats
/// both alike.
async fn connect(
    connector: &dyn Connector,
    config: &BrokerConfig,
    url: &str,
) -> Result<Arc<dyn super::remote::RemoteQueues>, BrokerError> {
    let deadline = actix_rt::time::Instant::now() + config.connect_timeout;
    let mut pause = super::delivery::FIRST_PAUSE;
    loop {
        let error = match connector.connect(config).await {
            Ok(queues) => return Ok(queues),
            Err(error) => error,
        };
        let left = deadline.saturating_duration_since(actix_rt::time::Instant::now());
        if left.is_zero() {
            return Err(error);
        }
        let wait = pause.min(left);
        log::warn!(target: crate::LOG_TARGET, "broker: cannot connect to {url}: {error}; retrying in {wait:?}");
        actix_rt::time::sleep(wait).await;
        pause = (pause * 2).min(super::delivery::RECONNECT_MAX);
    }
}

/// The current System's agents are done: its broker on a server waits
/// for its consumers to retire (a few seconds at most) and closes its
/// connections, while the runtime still runs (a connection dropped with
/// the runtime logs errors).
pub(crate) async fn disconnect() {
    let Some(system) = actix_rt::System::try_current() else {
        return;
    };
    if let Some(Broker {
        backend: Backend::Remote(remote),
        ..
    }) = BROKERS.get(system.id())
    {
        remote.close(std::time::Duration::from_secs(5)).await;
    }
}

pub(crate) fn close(system_id: usize) {
    if let Some(Broker {
        backend: Backend::Memory(memory),
        ..
    }) = BROKERS.get(system_id)
    {
        memory.report_dropped();
    }
    BROKERS.remove(system_id);
}

fn system_id() -> usize {
    actix_rt::System::try_current()
        .expect("microagent: the broker belongs to an actix System; use it inside `microagent::run` or a `Launcher`")
        .id()
}

/// Checks a queue name: what Redis keys and AMQP names can both hold.
fn check_queue(queue: &str) -> Result<(), BrokerError> {
    let reason = if queue.is_empty() || queue.len() > 255 {
        "it has 1 to 255 characters"
    } else if queue.chars().any(|c| c.is_whitespace() || c.is_control()) {
        "it contains whitespace or a control character"
    } else {
        return Ok(());
    };
    Err(BrokerError::Name {
        queue: queue.to_owned(),
        reason,
    })
}

impl Broker {
    /// The broker of the current actix System: the in-process one unless
    /// another was installed.
    ///
    /// # Panics
    /// Outside a running actix System.
    pub fn current() -> Broker {
        let id = system_id();
        BROKERS.get_or_insert_with(id, || Broker {
            backend: Backend::Memory(Arc::new(Memory::new(BrokerConfig::in_process().capacity))),
        })
    }

    /// Installs the broker `config` describes as the current System's and
    /// returns it. Call it before any agent of the System starts, once.
    ///
    /// # Panics
    /// Outside a running actix System.
    pub async fn connect(config: BrokerConfig) -> Result<Broker, BrokerError> {
        let id = system_id();
        if BROKERS.contains(id) {
            return Err(BrokerError::AlreadyInstalled);
        }
        let backend = match &config.kind {
            Kind::InProcess => Backend::Memory(Arc::new(Memory::new(config.capacity))),
            Kind::Remote {
                kind,
                endpoint,
                connector,
            } => Backend::Remote(Arc::new(Remote {
                kind,
                url: endpoint.redacted().to_owned(),
                queues: connect(connector.as_ref(), &config, endpoint.redacted()).await?,
                loops: tokio::sync::watch::Sender::new(0),
                watchers: Arc::default(),
            })),
        };
        let broker = Broker { backend };
        if !BROKERS.insert_new(id, broker.clone()) {
            return Err(BrokerError::AlreadyInstalled);
        }
        Ok(broker)
    }

    /// What the broker reports about itself.
    pub fn info(&self) -> BrokerInfo {
        let queues = TALLY.counts();
        match &self.backend {
            Backend::Memory(_) => BrokerInfo::in_process(queues),
            Backend::Remote(remote) => {
                let link = remote.queues.link();
                let failures = link.counts();
                BrokerInfo {
                    kind: remote.kind,
                    url: Some(remote.url.clone()),
                    connected: link.is_up(),
                    disconnects: failures.disconnects,
                    errors: failures.errors,
                    server_errors: failures.server_errors,
                    queues,
                }
            }
        }
    }

    /// Sends `message` to its queue; returns once the broker has it (an
    /// in-process queue that is full makes it wait for room).
    ///
    /// A queue with an exchange (AMQP) publishes to the exchange, as the
    /// original does: every queue bound to it gets a copy (`fanout`), or
    /// those bound with a matching topic (see [`send_topic`](Broker::send_topic)).
    pub fn send<Q: Queue>(&self, message: Q) -> Sending<'_> {
        // The message is boxed here, so that the future names no `Q`: a
        // type that is not a `Queue` is one error, at the call.
        Sending {
            state: State::Start {
                broker: self,
                queue: Q::NAME,
                exchange: Q::EXCHANGE,
                body: Body::Value(Box::new(message)),
            },
        }
    }

    /// Sends `messages`, in their order, to their queue; returns once the
    /// broker has every one. On a server that is one round trip with one
    /// confirmation where the backend allows (Redis: one `RPUSH`, all or
    /// none; RabbitMQ: published together, their confirms awaited
    /// together: after an error some may have arrived); in-process, each
    /// waits for room as [`send`](Broker::send) does.
    ///
    /// ```
    /// # use microagent::broker::{Broker, BrokerConfig, Queue};
    /// #[derive(Queue, Clone, serde::Serialize, serde::Deserialize)]
    /// struct Mail { to: String }
    ///
    /// microagent::run(async {
    ///     let broker = Broker::connect(BrokerConfig::in_process()).await.unwrap();
    ///     let mails = ["ann", "bob"].map(|to| Mail { to: to.into() });
    ///     broker.send_batch(mails).await.unwrap();
    ///     assert_eq!(broker.length("mail").await.unwrap(), 2);
    /// });
    /// ```
    pub async fn send_batch<Q: Queue>(
        &self,
        messages: impl IntoIterator<Item = Q>,
    ) -> Result<(), BrokerError> {
        let Backend::Remote(remote) = &self.backend else {
            for message in messages {
                self.send(message).await?;
            }
            return Ok(());
        };
        let bodies = messages
            .into_iter()
            .map(|message| message.to_wire())
            .collect::<Result<Vec<_>, _>>()?;
        let watchers = &remote.watchers;
        for body in &bodies {
            watchers.tell(|| observe::sent_bytes(watchers.next_id(), Q::NAME, body));
        }
        let span = Span::send(remote.kind, Q::NAME);
        let trace = span.traceparent();
        let to = Destination {
            queue: Q::NAME,
            exchange: Q::EXCHANGE,
            routing_key: Q::NAME,
            trace: trace.as_deref(),
            key: None,
        };
        let count = bodies.len();
        let sending = confirmed(Q::NAME, count, remote.queues.send_batch(to, bodies));
        traced(span, sending).await
    }

    /// Which system carries its messages (`messaging.system` in spans).
    fn system(&self) -> &'static str {
        match &self.backend {
            Backend::Memory(_) => super::memory::SYSTEM,
            Backend::Remote(remote) => remote.kind,
        }
    }

    /// Sends `message` and returns its id on the in-process broker (what
    /// [`QueueEvent`](super::QueueEvent)s name; `None` on the others). The
    /// in-process broker takes the value itself, never encoded.
    #[cfg(feature = "testkit")]
    pub(crate) fn send_tracked<Q: Queue>(
        &self,
        message: Q,
    ) -> impl Future<Output = Result<Option<u64>, BrokerError>> + '_ {
        self.send_body(Q::NAME, Q::EXCHANGE, Body::Value(Box::new(message)))
    }

    /// Sends a declared queue's message; see [`send_tracked`](Self::send_tracked).
    async fn send_body(
        &self,
        queue: &'static str,
        exchange: Option<&'static str>,
        body: Body,
    ) -> Result<Option<u64>, BrokerError> {
        if let Backend::Memory(memory) = &self.backend {
            let items = memory.declared(queue);
            items.sending();
            // `push`, spelt out: no future is built while the queue has
            // room (3% of a typed in-process message's instructions).
            let origin = Origin::from(&Span::current(), super::memory::SYSTEM);
            let id = match items.push_now(body, origin) {
                Ok(id) => id,
                Err(full) => full.wait(&items).await,
            };
            return Ok(Some(id));
        }
        let bytes = body.into_wire()?;
        // In the send's span already (`Sending`).
        self.push_in(queue, (exchange, queue), None, bytes)
            .await
            .map(|()| None)
    }

    /// What happens on the broker from now on, as this process sees it:
    /// the test kit's view.
    #[cfg(feature = "testkit")]
    pub(crate) fn observe(&self) -> tokio::sync::mpsc::UnboundedReceiver<super::QueueEvent> {
        match &self.backend {
            Backend::Memory(memory) => memory.observe(),
            Backend::Remote(remote) => remote.watchers.add(),
        }
    }

    /// Whether it is the in-process broker (messages keep their ids).
    #[cfg(feature = "testkit")]
    pub(crate) fn is_in_process(&self) -> bool {
        matches!(self.backend, Backend::Memory(_))
    }

    /// Sends `message` with `topic` as routing key: on AMQP, through its
    /// queue's (topic) exchange to every queue bound with a matching topic;
    /// the in-process and Redis brokers send to the queue itself.
    pub async fn send_topic<Q: Queue>(&self, message: Q, topic: &str) -> Result<(), BrokerError> {
        if let Backend::Memory(_) = &self.backend {
            return self.send(message).await;
        }
        let body = message.to_wire()?;
        self.push(Q::NAME, (Q::EXCHANGE, topic), None, body).await
    }

    /// Sends `message` with `key`. On Kafka, messages with one key go to
    /// one partition and keep their order there, and messages with other
    /// keys spread over the topic's partitions, and so over the consumers
    /// of its group ([`send`](Broker::send) puts every message of a queue
    /// in one partition, in order). The other brokers keep one order per
    /// queue and send it as `send` does.
    pub async fn send_keyed<Q: Queue>(&self, key: &str, message: Q) -> Result<(), BrokerError> {
        if let Backend::Memory(_) = &self.backend {
            return self.send(message).await;
        }
        let body = message.to_wire()?;
        self.push(Q::NAME, (Q::EXCHANGE, Q::NAME), Some(key), body)
            .await
    }

    /// Sends a JSON object to queue `queue` (a queue known at run time).
    pub async fn send_dyn(
        &self,
        queue: &str,
        message: &Map<String, Value>,
    ) -> Result<(), BrokerError> {
        self.send_map(queue, None, message).await
    }

    /// Sends a JSON object to a queue of a Python declarations file
    /// ([`Declarations::queues`](crate::bus::Declarations)): on AMQP,
    /// through the exchange it declares, if any, as the original does; to
    /// the queue itself otherwise.
    ///
    /// ```
    /// # use microagent::broker::Broker;
    /// # use microagent::bus::Declarations;
    /// # microagent::run(async {
    /// let declared = Declarations::from_json(r#"{"signals": [], "queues": [{"name": "mailer"}]}"#)?;
    /// let mailer = &declared.queues[0];
    /// let mail = serde_json::json!({"to": "ann@example.com"});
    /// Broker::current().send_declared(mailer, mail.as_object().unwrap()).await?;
    /// assert_eq!(Broker::current().length("mailer").await?, 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    pub async fn send_declared(
        &self,
        queue: &QueueSpec,
        message: &Map<String, Value>,
    ) -> Result<(), BrokerError> {
        self.send_map(&queue.name, queue.exchange.as_deref(), message)
            .await
    }

    /// Sends a JSON object to `queue`, or through `exchange` (AMQP).
    async fn send_map(
        &self,
        queue: &str,
        exchange: Option<&str>,
        message: &Map<String, Value>,
    ) -> Result<(), BrokerError> {
        check_queue(queue)?;
        if let Some(exchange) = exchange {
            check_queue(exchange)?;
        }
        let body = serde_json::to_vec(message).map_err(|e| BrokerError::Encode {
            queue: queue.to_owned(),
            reason: e.to_string(),
        })?;
        self.push(queue, (exchange, queue), None, body).await
    }

    /// Sends `body` to `queue` through `exchange` with `routing_key`, and
    /// `key`, in a send's span.
    async fn push(
        &self,
        queue: &str,
        route: (Option<&str>, &str),
        key: Option<&str>,
        body: Vec<u8>,
    ) -> Result<(), BrokerError> {
        let span = Span::send(self.system(), queue);
        traced(span, self.push_in(queue, route, key, body)).await
    }

    async fn push_in(
        &self,
        queue: &str,
        (exchange, routing_key): (Option<&str>, &str),
        key: Option<&str>,
        body: Vec<u8>,
    ) -> Result<(), BrokerError> {
        match &self.backend {
            Backend::Memory(memory) => {
                let items = memory.queue(queue);
                items.sending();
                let origin = Origin::from(&Span::current(), super::memory::SYSTEM);
                let id = items.push(Body::Wire(body.into()), origin).await;
                Span::current().message_id(id);
                Ok(())
            }
            Backend::Remote(remote) => {
                let trace = Span::current().traceparent();
                let to = Destination {
                    queue,
                    exchange,
                    routing_key,
                    trace: trace.as_deref(),
                    key,
                };
                let watchers = &remote.watchers;
                watchers.tell(|| observe::sent_bytes(watchers.next_id(), queue, &body));
                confirmed(queue, 1, remote.queues.send(to, body)).await
            }
        }
    }

    /// How many messages wait in queue `queue` (not counting those being
    /// handled or waiting for a retry).
    pub async fn length(&self, queue: &str) -> Result<usize, BrokerError> {
        check_queue(queue)?;
        match &self.backend {
            Backend::Memory(memory) => Ok(memory.length(queue)),
            Backend::Remote(remote) => remote.queues.length(queue).await,
        }
    }

    /// The dead letters of queue `queue`, oldest first.
    pub async fn dead_letters(&self, queue: &str) -> Result<Vec<DeadLetter>, BrokerError> {
        check_queue(queue)?;
        match &self.backend {
            Backend::Memory(memory) => Ok(memory.dead_letters(queue)),
            Backend::Remote(remote) => remote.queues.dead_letters(queue).await,
        }
    }

    /// Sends every dead letter of queue `queue` back to the queue, oldest
    /// first, as its message was sent (a JSON object is sent as the object,
    /// its keys possibly reordered); each gets its attempts afresh. Returns
    /// how many went back. What an operator does once the cause of the
    /// failures is fixed.
    pub async fn requeue_dead_letters(&self, queue: &str) -> Result<usize, BrokerError> {
        check_queue(queue)?;
        match &self.backend {
            Backend::Memory(memory) => Ok(memory.requeue_dead(queue)),
            Backend::Remote(remote) => remote.queues.requeue_dead(queue).await,
        }
    }

    /// Deletes the dead letters of queue `queue`; how many.
    pub async fn purge_dead_letters(&self, queue: &str) -> Result<usize, BrokerError> {
        check_queue(queue)?;
        match &self.backend {
            Backend::Memory(memory) => Ok(memory.purge_dead(queue)),
            Backend::Remote(remote) => remote.queues.purge_dead(queue).await,
        }
    }

    /// Deletes the messages waiting in queue `queue` (not those a consumer
    /// is handling, nor its dead letters); how many.
    pub async fn purge(&self, queue: &str) -> Result<usize, BrokerError> {
        check_queue(queue)?;
        match &self.backend {
            Backend::Memory(memory) => Ok(memory.purge(queue)),
            Backend::Remote(remote) => remote.queues.purge(queue).await,
        }
    }

    /// Starts consuming `queue` for `consumer` (`Agent.method`): jobs go
    /// to `deliver` until the returned handle is dropped. With `batches`
    /// (a plain `fn` consumer), the in-process broker hands over several
    /// at once.
    pub(crate) fn consume(
        &self,
        queue: &'static str,
        binding: Binding,
        consumer: Arc<str>,
        options: ConsumerOptions,
        batches: bool,
        deliver: JobFn,
    ) -> Consuming {
        let spec = ConsumerSpec {
            queue,
            binding,
            name: consumer,
            options,
            tally: TALLY.queue(queue),
            system: self.system(),
        };
        runner::start(self.backend.clone(), spec, batches, deliver)
    }
}

/// A message on its way: what [`Broker::send`] returns. Nothing is sent
/// until it is awaited (or polled); it resolves once the broker has the
/// message (in-process: in the queue, after waiting for room; on a server:
/// confirmed by it).
#[must_use = "nothing is sent until the future is awaited"]
pub struct Sending<'a> {
    state: State<'a>,
}

enum State<'a> {
    Start {
        broker: &'a Broker,
        queue: &'static str,
        exchange: Option<&'static str>,
        body: Body,
    },
    Waiting(Pin<Box<dyn Future<Output = Result<Option<u64>, BrokerError>> + Send + 'a>>),
    Done,
}

impl fmt::Debug for Sending<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.state {
            State::Start { queue, .. } => *queue,
            State::Waiting(_) => "waiting",
            State::Done => "done",
        };
        f.debug_tuple("Sending").field(&state).finish()
    }
}

impl Future for Sending<'_> {
    type Output = Result<(), BrokerError>;

    fn poll(self: Pin<&mut Self>, task: &mut std::task::Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        if let State::Start { .. } = this.state {
            let State::Start {
                broker,
                queue,
                exchange,
                body,
            } = std::mem::replace(&mut this.state, State::Done)
            else {
                unreachable!("matched above")
            };
            // In-process with room: sent now, with no future built (a
            // typed message's common case).
            let span = Span::send(broker.system(), queue);
            if let Backend::Memory(memory) = &broker.backend {
                let items = memory.declared(queue);
                items.sending();
                match items.push_now(body, Origin::from(&span, super::memory::SYSTEM)) {
                    Ok(id) => {
                        span.message_id(id);
                        return Poll::Ready(Ok(()));
                    }
                    Err(full) => {
                        let waiting = async move { Ok(Some(full.wait(&items).await)) };
                        this.state = State::Waiting(Box::pin(traced(span, waiting)))
                    }
                }
            } else {
                let sending = broker.send_body(queue, exchange, body);
                this.state = State::Waiting(Box::pin(traced(span, sending)));
            }
        }
        match &mut this.state {
            State::Waiting(waiting) => {
                let sent = std::task::ready!(waiting.as_mut().poll(task));
                this.state = State::Done;
                Poll::Ready(sent.map(drop))
            }
            // Polled again after it resolved.
            _ => Poll::Ready(Ok(())),
        }
    }
}

/// Whether the current System's broker is connected (no broker yet, or the
/// in-process one, always is).
#[cfg(feature = "web")]
pub(crate) fn connected() -> bool {
    let Some(system) = actix_rt::System::try_current() else {
        return true;
    };
    let installed = BROKERS.get(system.id());
    installed.is_none_or(|broker| broker.info().connected)
}

/// What the current System's broker reports (the in-process defaults while
/// none is installed); `None` outside a System.
pub(crate) fn current_info() -> Option<BrokerInfo> {
    let id = actix_rt::System::try_current()?.id();
    let installed = BROKERS.get(id);
    Some(
        installed.map_or(BrokerInfo::in_process(TALLY.counts()), |broker| {
            broker.info()
        }),
    )
}

/// Sends `count` messages to `queue` on a server: counted, and the time
/// the broker took to confirm them noted (the metrics' confirmation
/// latency).
async fn confirmed(
    queue: &str,
    count: usize,
    sending: impl Future<Output = Result<(), BrokerError>>,
) -> Result<(), BrokerError> {
    let started = std::time::Instant::now();
    let sent = sending.await;
    let tally = TALLY.queue(crate::intern::intern(queue));
    tally.sent(count, sent.is_ok(), Some(started.elapsed()));
    sent
}
