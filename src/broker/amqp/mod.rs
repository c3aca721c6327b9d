//! The AMQP broker (RabbitMQ, with `lapin`): the Python original's queues
//! (published to the default exchange, routing key = queue name, body =
//! the JSON object), consumed with acknowledgements.
//!
//! - Publishing waits for the broker's confirm (`confirm_select`).
//! - Queues are declared with the Python original's flags by default
//!   (non-durable, not exclusive, not auto-deleted, no arguments), so both
//!   can share a queue; `BrokerConfig::durable` declares them durable and
//!   publishes persistent messages, the production choice. A queue that
//!   exists with other flags is a clear error naming it (AMQP 406).
//! - A consumer's channel has `basic_qos` = its prefetch; a message is
//!   acknowledged after its run succeeded. A failed attempt is published
//!   again (same body, the attempt count in the `x-microagent-attempts`
//!   header, confirmed) after its backoff, then the original acknowledged.
//!   After the last attempt the message goes to the queue `{queue}:dead`
//!   (the suffix is configurable)
//!   as a JSON object `{"message", "reason", "attempts", "consumer",
//!   "failed_at"}`.
//! - Unacknowledged messages return to their queue when the channel
//!   closes (a crash, a lost connection, a stop past the deadline).
//!
//! The only broker code that names `lapin`; it plugs into the seam of
//! [`remote`](super::remote), and its consumers are in [`consumer`].

mod consumer;

use std::collections::HashSet;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicGetOptions, BasicNackOptions, BasicPublishOptions,
    BasicQosOptions, ConfirmSelectOptions, ExchangeDeclareOptions, QueueBindOptions,
    QueueDeclareOptions, QueuePurgeOptions,
};
use lapin::publisher_confirm::Confirmation;
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, Consumer, ExchangeKind};

use futures_util::future::BoxFuture;

use super::config::{BrokerConfig, Connector};
use super::error::{BrokerError, DeadLetter};
use super::job::Binding;
use super::link::LinkState;
use super::remote::{ConsumerSpec, Destination, RemoteQueues, Source};
use crate::backend::{BackendError, Endpoint};

#[cfg_attr(docsrs, doc(cfg(feature = "amqp")))]
impl BrokerConfig {
    /// The AMQP broker (RabbitMQ) at `url` (`amqp://user:password@host:port/vhost`,
    /// or `amqps://`), with the Python original's queues: see
    /// [`durable`](BrokerConfig::durable) for the flags it declares them
    /// with.
    pub fn amqp(url: &str) -> Result<Self, BrokerError> {
        let endpoint = Endpoint::new(url);
        if !(url.starts_with("amqp://") || url.starts_with("amqps://")) {
            return Err(BrokerError::Config {
                reason: format!("bad AMQP URL {}: expected amqp://", endpoint.redacted()),
            });
        }
        Ok(BrokerConfig::remote(
            "amqp",
            endpoint.clone(),
            AmqpBroker { endpoint },
        ))
    }
}

/// An AMQP broker's URL, to connect to.
struct AmqpBroker {
    endpoint: Endpoint,
}

impl Connector for AmqpBroker {
    fn connect(
        &self,
        config: &BrokerConfig,
    ) -> BoxFuture<'static, Result<Arc<dyn RemoteQueues>, BrokerError>> {
        let queues = AmqpQueues {
            endpoint: self.endpoint.clone(),
            durable: config.durable,
            connection_name: format!(
                "microagent {}{}",
                config.namespace,
                uuid::Uuid::new_v4().simple()
            ),
            namespace: config.namespace.clone(),
            dead_suffix: config.dead_suffix.clone(),
            link: tokio::sync::Mutex::new(None),
            consuming: tokio::sync::Mutex::new(None),
            declared: Mutex::default(),
            state: LinkState::new(false),
        };
        Box::pin(async move {
            queues.publisher().await?;
            Ok(Arc::new(queues) as Arc<dyn RemoteQueues>)
        })
    }
}

impl RemoteQueues for AmqpQueues {
    fn link(&self) -> &LinkState {
        &self.state
    }

    fn send<'a>(
        &'a self,
        to: Destination<'a>,
        body: Vec<u8>,
    ) -> BoxFuture<'a, Result<(), BrokerError>> {
        Box::pin(async move {
            match to.exchange {
                None => self.publish(to.queue, &body, (0, to.trace)).await,
                Some(exchange) => {
                    let to = (exchange, to.routing_key, to.trace);
                    self.publish_to(to, &body).await
                }
            }
        })
    }

    fn send_batch<'a>(
        &'a self,
        to: Destination<'a>,
        bodies: Vec<Vec<u8>>,
    ) -> BoxFuture<'a, Result<(), BrokerError>> {
        Box::pin(self.publish_all(to, bodies))
    }

    fn length<'a>(&'a self, queue: &'a str) -> BoxFuture<'a, Result<usize, BrokerError>> {
        Box::pin(async move {
            let channel = self.publisher().await?;
            Ok(self.declare(&channel, &self.name(queue)).await? as usize)
        })
    }

    fn dead_letters<'a>(
        &'a self,
        queue: &'a str,
    ) -> BoxFuture<'a, Result<Vec<DeadLetter>, BrokerError>> {
        Box::pin(self.read_dead_letters(queue))
    }

    fn requeue_dead<'a>(&'a self, queue: &'a str) -> BoxFuture<'a, Result<usize, BrokerError>> {
        Box::pin(self.requeue_dead_letters(queue))
    }

    fn purge_dead<'a>(&'a self, queue: &'a str) -> BoxFuture<'a, Result<usize, BrokerError>> {
        Box::pin(async move {
            let dead = self.name(&self.dead_queue(queue));
            self.purge_queue(&dead).await
        })
    }

    fn purge<'a>(&'a self, queue: &'a str) -> BoxFuture<'a, Result<usize, BrokerError>> {
        Box::pin(async move { self.purge_queue(&self.name(queue)).await })
    }

    fn close(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            if let Some((connection, channel)) = self.link.lock().await.take() {
                let _ = channel.close(200, "broker closed").await;
                let _ = connection.close(200, "broker closed").await;
            }
            if let Some(connection) = self.consuming.lock().await.take() {
                let _ = connection.close(200, "broker closed").await;
            }
        })
    }

    fn open(
        self: Arc<Self>,
        consumer: ConsumerSpec,
    ) -> BoxFuture<'static, Result<Box<dyn Source>, BrokerError>> {
        Box::pin(async move {
            let source = consumer::AmqpSource::open(self, consumer).await?;
            Ok(Box::new(source) as Box<dyn Source>)
        })
    }
}

/// The header that carries a retried message's attempt count.
const ATTEMPTS: &str = "x-microagent-attempts";
/// The header carrying the W3C trace context of a message's send.
const TRACEPARENT: &str = "traceparent";

/// The AMQP side of a broker.
struct AmqpQueues {
    endpoint: Endpoint,
    durable: bool,
    /// Put before every queue's name (empty: the names Python uses).
    namespace: String,
    /// Appended to a queue's name for its dead letters' queue.
    dead_suffix: String,
    /// The name its connections show in the broker's management
    /// (`microagent {namespace}{id}`).
    connection_name: String,
    /// The connection and the confirming channel publishes go through;
    /// replaced when they broke.
    link: tokio::sync::Mutex<Option<(Connection, Channel)>>,
    /// The connection every consumer of this broker opens its channel on
    /// (a channel each: an error on one ends that consumer alone);
    /// replaced when it broke.
    consuming: tokio::sync::Mutex<Option<Arc<Connection>>>,
    /// Queues declared on the current connection.
    declared: Mutex<HashSet<String>>,
    /// Whether the server is there, and its counts.
    state: LinkState,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

fn properties(name: &str) -> ConnectionProperties {
    ConnectionProperties::default()
        .with_connection_name(name.into())
        .with_executor(tokio_executor_trait::Tokio::current())
        .with_reactor(tokio_reactor_trait::Tokio::current())
}

impl AmqpQueues {
    /// The broker's name of queue `queue`.
    fn name(&self, queue: &str) -> String {
        format!("{}{queue}", self.namespace)
    }

    /// An error from lapin, with the URL redacted; notes a lost connection.
    fn error(&self, e: lapin::Error) -> BrokerError {
        if matches!(
            e.kind(),
            lapin::ErrorKind::IOError(_)
                | lapin::ErrorKind::InvalidConnectionState(_)
                | lapin::ErrorKind::InvalidChannelState(..)
                | lapin::ErrorKind::MissingHeartbeatError
        ) {
            self.state.set_up(false);
        }
        self.state.failed();
        BrokerError::Backend {
            kind: "amqp",
            url: self.endpoint.redacted().to_owned(),
            source: self.endpoint.error(e),
        }
    }

    /// The queue dead letters of `queue` go to.
    fn dead_queue(&self, queue: &str) -> String {
        format!("{queue}{}", self.dead_suffix)
    }

    /// A new connection.
    async fn open(&self) -> Result<Connection, BrokerError> {
        let connection =
            Connection::connect(self.endpoint.url(), properties(&self.connection_name))
                .await
                .map_err(|e| self.error(e))?;
        self.state.set_up(true);
        Ok(connection)
    }

    /// The consumers' shared connection, made anew when it broke.
    async fn consumers_connection(&self) -> Result<Arc<Connection>, BrokerError> {
        let mut consuming = self.consuming.lock().await;
        if let Some(connection) = consuming.as_ref() {
            if connection.status().connected() {
                return Ok(connection.clone());
            }
        }
        let connection = Arc::new(self.open().await?);
        *consuming = Some(connection.clone());
        Ok(connection)
    }

    /// The confirming publisher channel, connecting anew when it broke.
    async fn publisher(&self) -> Result<Channel, BrokerError> {
        let mut link = self.link.lock().await;
        if let Some((connection, channel)) = link.as_ref() {
            if connection.status().connected() && channel.status().connected() {
                return Ok(channel.clone());
            }
        }
        *link = None;
        lock(&self.declared).clear();
        let connection = self.open().await?;
        let channel = connection
            .create_channel()
            .await
            .map_err(|e| self.error(e))?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .map_err(|e| self.error(e))?;
        *link = Some((connection, channel.clone()));
        Ok(channel)
    }

    /// Declares `queue` with the configured flags (once per connection).
    async fn declare(&self, channel: &Channel, queue: &str) -> Result<u32, BrokerError> {
        let options = QueueDeclareOptions {
            durable: self.durable,
            ..QueueDeclareOptions::default()
        };
        match channel
            .queue_declare(queue, options, FieldTable::default())
            .await
        {
            Ok(declared) => {
                lock(&self.declared).insert(queue.to_owned());
                Ok(declared.message_count())
            }
            Err(e) => match e.kind() {
                lapin::ErrorKind::ProtocolError(amqp) if amqp.get_id() == 406 => {
                    Err(BrokerError::QueueMismatch {
                        queue: queue.to_owned(),
                        durable: self.durable,
                        reason: format!(
                            "ours: AMQP durable = {}, exclusive = false, auto_delete = false, no arguments; the broker said: {amqp}",
                            self.durable
                        ),
                    })
                }
                _ => Err(self.error(e)),
            },
        }
    }

    /// Declares an exchange as the original does: `topic` for a queue with
    /// topics, `fanout` otherwise.
    async fn declare_exchange(
        &self,
        channel: &Channel,
        exchange: &str,
        topic: bool,
    ) -> Result<(), BrokerError> {
        let kind = if topic {
            ExchangeKind::Topic
        } else {
            ExchangeKind::Fanout
        };
        let options = ExchangeDeclareOptions {
            durable: self.durable,
            ..ExchangeDeclareOptions::default()
        };
        match channel
            .exchange_declare(exchange, kind, options, FieldTable::default())
            .await
        {
            Ok(()) => Ok(()),
            Err(e) => match e.kind() {
                lapin::ErrorKind::ProtocolError(amqp) if amqp.get_id() == 406 => {
                    Err(BrokerError::QueueMismatch {
                        queue: format!("exchange {exchange}"),
                        durable: self.durable,
                        reason: format!(
                            "ours: AMQP durable = {}, exclusive = false, auto_delete = false, no arguments; the broker said: {amqp}",
                            self.durable
                        ),
                    })
                }
                _ => Err(self.error(e)),
            },
        }
    }

    /// Publishes to `exchange` (a queue's) with `routing_key`, and waits
    /// for the confirm. The exchange must exist: its consumers declare it
    /// (a message routed nowhere is dropped by the broker).
    async fn publish_to(
        &self,
        (exchange, routing_key, trace): (&str, &str, Option<&str>),
        body: &[u8],
    ) -> Result<(), BrokerError> {
        let channel = self.publisher().await?;
        let exchange = &self.name(exchange);
        self.confirmed(
            exchange,
            channel
                .basic_publish(
                    exchange,
                    routing_key,
                    BasicPublishOptions::default(),
                    body,
                    self.message_properties(0, trace),
                )
                .await,
        )
        .await
    }

    /// Waits for a publish's confirm.
    async fn confirmed(
        &self,
        target: &str,
        published: lapin::Result<lapin::publisher_confirm::PublisherConfirm>,
    ) -> Result<(), BrokerError> {
        let confirm = published
            .map_err(|e| self.error(e))?
            .await
            .map_err(|e| self.error(e))?;
        match confirm {
            Confirmation::Ack(_) | Confirmation::NotRequested => Ok(()),
            Confirmation::Nack(_) => Err(BrokerError::Backend {
                kind: "amqp",
                url: self.endpoint.redacted().to_owned(),
                source: BackendError::message(format!(
                    "the broker refused a message for `{target}` (nack)"
                )),
            }),
        }
    }

    async fn declared_publisher(&self, queue: &str) -> Result<Channel, BrokerError> {
        let channel = self.publisher().await?;
        if !lock(&self.declared).contains(queue) {
            self.declare(&channel, queue).await?;
        }
        Ok(channel)
    }

    /// A message's properties: persistent when durable; headers for its
    /// attempts so far (none for a first attempt) and its `traceparent`.
    fn message_properties(&self, attempts: u32, trace: Option<&str>) -> BasicProperties {
        let mut properties = BasicProperties::default();
        if self.durable {
            properties = properties.with_delivery_mode(2);
        }
        if attempts > 0 || trace.is_some() {
            let mut headers = FieldTable::default();
            if attempts > 0 {
                headers.insert(ShortString::from(ATTEMPTS), AMQPValue::LongUInt(attempts));
            }
            if let Some(trace) = trace {
                let value = AMQPValue::LongString(trace.into());
                headers.insert(ShortString::from(TRACEPARENT), value);
            }
            properties = properties.with_headers(headers);
        }
        properties
    }

    /// Publishes every body, in order on one channel, then waits for the
    /// broker's confirms together.
    async fn publish_all(
        &self,
        to: Destination<'_>,
        bodies: Vec<Vec<u8>>,
    ) -> Result<(), BrokerError> {
        let (exchange, routing_key, channel) = match to.exchange {
            None => {
                let queue = self.name(to.queue);
                let channel = self.declared_publisher(&queue).await?;
                (String::new(), queue, channel)
            }
            Some(exchange) => {
                let channel = self.publisher().await?;
                (self.name(exchange), to.routing_key.to_owned(), channel)
            }
        };
        let mut confirms = Vec::with_capacity(bodies.len());
        for body in &bodies {
            let published = channel
                .basic_publish(
                    &exchange,
                    &routing_key,
                    BasicPublishOptions::default(),
                    body,
                    self.message_properties(0, to.trace),
                )
                .await;
            confirms.push(self.confirmed(&routing_key, published));
        }
        for confirmed in futures_util::future::join_all(confirms).await {
            confirmed?;
        }
        Ok(())
    }

    /// Publishes to `queue` and waits for the broker's confirm.
    /// `(attempts, trace)`: the attempts it had, its `traceparent`.
    async fn publish(
        &self,
        queue: &str,
        body: &[u8],
        (attempts, trace): (u32, Option<&str>),
    ) -> Result<(), BrokerError> {
        let queue = &self.name(queue);
        let channel = self.declared_publisher(queue).await?;
        let published = channel
            .basic_publish(
                "",
                queue,
                BasicPublishOptions::default(),
                body,
                self.message_properties(attempts, trace),
            )
            .await;
        self.confirmed(queue, published).await
    }

    /// The dead letters, read without taking them: got unacknowledged on a
    /// channel of their own, which then closes and returns them.
    async fn read_dead_letters(&self, queue: &str) -> Result<Vec<DeadLetter>, BrokerError> {
        let dead = self.name(&self.dead_queue(queue));
        let connection = self.open().await?;
        let channel = connection
            .create_channel()
            .await
            .map_err(|e| self.error(e))?;
        self.declare(&channel, &dead).await?;
        let mut letters = Vec::new();
        while let Some(message) = channel
            .basic_get(&dead, BasicGetOptions { no_ack: false })
            .await
            .map_err(|e| self.error(e))?
        {
            letters.push(DeadLetter::decode(queue, &message.delivery.data));
        }
        let _ = connection.close(200, "read").await;
        Ok(letters)
    }

    /// Moves every dead letter of `queue` back to it: each is published
    /// (confirmed) before its letter is acknowledged, so none is lost; a
    /// failure between the two leaves a copy behind, never nothing.
    async fn requeue_dead_letters(&self, queue: &str) -> Result<usize, BrokerError> {
        let dead = self.name(&self.dead_queue(queue));
        let connection = self.open().await?;
        let moved = async {
            let channel = connection
                .create_channel()
                .await
                .map_err(|e| self.error(e))?;
            self.declare(&channel, &dead).await?;
            let mut moved = 0;
            while let Some(letter) = channel
                .basic_get(&dead, BasicGetOptions { no_ack: false })
                .await
                .map_err(|e| self.error(e))?
            {
                let message = DeadLetter::decode(queue, &letter.delivery.data).message;
                self.publish(queue, &DeadLetter::body_of(&message), (0, None))
                    .await?;
                self.ack(&letter.delivery.acker).await?;
                moved += 1;
            }
            Ok(moved)
        }
        .await;
        let _ = connection.close(200, "requeued").await;
        moved
    }

    /// Purges the broker's queue `name` (declared first); how many it
    /// held.
    async fn purge_queue(&self, name: &str) -> Result<usize, BrokerError> {
        let channel = self.publisher().await?;
        self.declare(&channel, name).await?;
        let purged = channel
            .queue_purge(name, QueuePurgeOptions::default())
            .await
            .map_err(|e| self.error(e))?;
        Ok(purged as usize)
    }

    /// A consuming channel for `queue`: declared, with `basic_qos`.
    async fn consume(
        &self,
        connection: &Connection,
        queue: &str,
        binding: Binding,
        tag: &str,
        prefetch: u16,
    ) -> Result<(Channel, Consumer), BrokerError> {
        let channel = connection
            .create_channel()
            .await
            .map_err(|e| self.error(e))?;
        channel
            .basic_qos(prefetch, BasicQosOptions::default())
            .await
            .map_err(|e| self.error(e))?;
        let queue = &self.name(queue);
        self.declare(&channel, queue).await?;
        if let Some(exchange) = binding.exchange {
            let exchange = &self.name(exchange);
            self.declare_exchange(&channel, exchange, !binding.topics.is_empty())
                .await?;
            // A fanout exchange ignores the key; a topic one routes by it.
            let keys: &[&str] = if binding.topics.is_empty() {
                &[""]
            } else {
                binding.topics
            };
            for key in keys {
                channel
                    .queue_bind(
                        queue,
                        exchange,
                        key,
                        QueueBindOptions::default(),
                        FieldTable::default(),
                    )
                    .await
                    .map_err(|e| self.error(e))?;
            }
        }
        let consumer = channel
            .basic_consume(
                queue,
                tag,
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(|e| self.error(e))?;
        Ok((channel, consumer))
    }

    /// Notes that a consumer's connection is down (`false`) or back.
    fn set_up(&self, up: bool) {
        self.state.set_up(up);
    }

    /// Acknowledges a handled (or moved) delivery.
    async fn ack(&self, acker: &lapin::acker::Acker) -> Result<(), BrokerError> {
        acker
            .ack(BasicAckOptions::default())
            .await
            .map(drop)
            .map_err(|e| self.error(e))
    }

    /// Hands a delivery back to its queue, as it was.
    async fn requeue(&self, acker: &lapin::acker::Acker) -> Result<(), BrokerError> {
        let options = BasicNackOptions {
            requeue: true,
            ..BasicNackOptions::default()
        };
        acker
            .nack(options)
            .await
            .map(drop)
            .map_err(|e| self.error(e))
    }

    /// Publishes a dead letter for a message of `queue`.
    async fn dead(
        &self,
        queue: &str,
        consumer: &str,
        body: &[u8],
        reason: &str,
        attempts: u32,
    ) -> Result<(), BrokerError> {
        let letter = DeadLetter::encode(body, reason, attempts, consumer);
        self.publish(&self.dead_queue(queue), letter.as_bytes(), (0, None))
            .await
    }
}

/// The `traceparent` a delivery came with, from its header.
fn traceparent(properties: &BasicProperties) -> Option<Box<str>> {
    let headers = properties.headers().as_ref()?;
    match headers.inner().get(TRACEPARENT)? {
        AMQPValue::LongString(value) => std::str::from_utf8(value.as_bytes()).ok().map(Box::from),
        AMQPValue::ShortString(value) => Some(value.as_str().into()),
        _ => None,
    }
}

/// The attempts a delivery had before, from its header.
fn attempts(properties: &BasicProperties) -> u32 {
    properties
        .headers()
        .as_ref()
        .and_then(|headers| headers.inner().get(ATTEMPTS))
        .and_then(|value| match value {
            AMQPValue::LongUInt(n) => Some(*n),
            AMQPValue::LongInt(n) => u32::try_from(*n).ok(),
            AMQPValue::LongLongInt(n) => u32::try_from(*n).ok(),
            AMQPValue::ShortUInt(n) => Some(u32::from(*n)),
            _ => None,
        })
        .unwrap_or(0)
}
