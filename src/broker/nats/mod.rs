//! Work queues on NATS JetStream. The only broker code that names the
//! `async-nats` crate; it plugs into the seam of [`remote`](super::remote),
//! and its consumers are in [`consumer`].
//!
//! - **A stream per queue**, named after the namespace and the queue (each
//!   escaped to one subject token, `~` escaping), on the subject `mq.{that name}`, with
//!   work-queue retention (a message leaves once acknowledged) and file
//!   storage. Its dead letters have a stream of their own (the queue's
//!   name with the dead-letter suffix), with limits retention: they stay
//!   until requeued or purged.
//! - **One durable pull consumer per queue**, named after the queue, which
//!   every consumer of the queue shares (a work-queue stream allows one),
//!   so that they compete, as on the other backends. Explicit acks; its
//!   ack wait is the broker's lease, which a running handler extends with
//!   in-progress acks; `max_deliver` is the consumer's attempts plus one
//!   spare delivery, so that a consumer killed during the last attempt
//!   still gets the message once more to dead-letter it (JetStream alone
//!   would stop delivering it, with only an advisory to say so).
//! - **Attempts** come from JetStream's own delivery count. A retry is a
//!   NAK with the backoff's delay; a release (the agent is stopping) a NAK
//!   without one, which JetStream counts as a delivery too. A dead letter
//!   is published to the dead-letter stream (its reason, attempts and
//!   consumer in headers, the message as it was) and acknowledged by the
//!   server before the message is terminated, so nothing is lost between
//!   the two.
//! - **Sending** returns after JetStream's publish acknowledgement.
//!   Requeued dead letters carry a message id (`Nats-Msg-Id`), so a
//!   requeue sent twice is stored once.
//! - **Declarations** are compared by the server: a stream or consumer that
//!   exists with other settings is [`BrokerError::QueueMismatch`], naming
//!   it and the settings asked for.

mod consumer;

use std::collections::HashSet;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use async_nats::jetstream::context::CreateStreamErrorKind;
use async_nats::jetstream::ErrorCode;
use async_nats::jetstream::{self, stream, Context};
use async_nats::{Event, HeaderMap};
use futures_util::future::BoxFuture;
use tokio::sync::mpsc;

use super::config::{BrokerConfig, Connector};
use super::error::{BrokerError, DeadLetter};
use super::link::LinkState;
use super::remote::{ConsumerSpec, Destination, RemoteQueues, Source};
use crate::backend::Endpoint;
use crate::nats_target::{name, NatsError, NatsTarget};
use crate::LOG_TARGET;

/// The header of a dead letter's reason.
const REASON: &str = "Microagent-Reason";
/// The header of a dead letter's attempts.
const ATTEMPTS: &str = "Microagent-Attempts";
/// The header of the consumer that dead-lettered a message.
const CONSUMER: &str = "Microagent-Consumer";

#[cfg_attr(docsrs, doc(cfg(feature = "nats")))]
impl BrokerConfig {
    /// Work queues on NATS JetStream at `url`:
    /// `nats://[user:password@ | token@]host[:port][,host[:port]...][?creds=PATH]`.
    /// Needs a NATS server 2.9 or newer with JetStream enabled.
    pub fn nats(url: &str) -> Result<Self, BrokerError> {
        let endpoint = Endpoint::new(url);
        let target = NatsTarget::open(url).map_err(|reason| BrokerError::Config {
            reason: format!("bad NATS URL {}: {reason}", endpoint.redacted()),
        })?;
        let broker = NatsBroker {
            target,
            endpoint: endpoint.clone(),
        };
        Ok(BrokerConfig::remote("nats", endpoint, broker))
    }
}

/// A NATS server's URL, to connect to.
struct NatsBroker {
    target: NatsTarget,
    endpoint: Endpoint,
}

impl Connector for NatsBroker {
    fn connect(
        &self,
        config: &BrokerConfig,
    ) -> BoxFuture<'static, Result<Arc<dyn RemoteQueues>, BrokerError>> {
        let (target, endpoint) = (self.target.clone(), self.endpoint.clone());
        let settings = Settings {
            namespace: config.namespace.clone(),
            dead_suffix: config.dead_suffix.clone(),
            lease: config.lease,
        };
        let timeout = config.connect_timeout;
        Box::pin(async move {
            let state = Arc::new(LinkState::new(false));
            let (events_tx, events) = mpsc::unbounded_channel();
            let client = target
                .connect("microagent broker", settings.lease, events_tx)
                .await
                .map_err(|e| failed(&endpoint, e))?;
            actix_rt::spawn(follow(
                events,
                state.clone(),
                endpoint.redacted().to_owned(),
            ));
            let mut js = jetstream::new(client.clone());
            js.set_timeout(timeout);
            // Reachable, with JetStream on (the request waits for the
            // connection, up to the timeout).
            let asked = client.request("$JS.API.INFO", "".into());
            let answer = match actix_rt::time::timeout(timeout, asked).await {
                Ok(answer) => answer.map_err(|e| failed(&endpoint, e))?,
                Err(_) => {
                    let why = format!("no answer within {timeout:?}");
                    return Err(failed(&endpoint, NatsError(why)));
                }
            };
            if serde_json::from_slice::<serde_json::Value>(&answer.payload)
                .map_or(true, |info| info.get("error").is_some())
            {
                let why = "JetStream is not enabled on the server (or for this account)";
                return Err(failed(&endpoint, NatsError(why.to_owned())));
            }
            state.set_up(true);
            let queues = NatsQueues {
                endpoint,
                client,
                js,
                settings,
                state,
                declared: Mutex::default(),
            };
            Ok(Arc::new(queues) as Arc<dyn RemoteQueues>)
        })
    }
}

/// Follows the client's connection state.
async fn follow(mut events: mpsc::UnboundedReceiver<Event>, state: Arc<LinkState>, url: String) {
    while let Some(event) = events.recv().await {
        match event {
            Event::Connected => {
                state.set_up(true);
            }
            Event::Disconnected | Event::Closed => {
                if state.set_up(false) {
                    log::warn!(target: LOG_TARGET, "broker: connection to {url} lost; reconnecting");
                }
            }
            Event::SlowConsumer(sid) => {
                log::warn!(target: LOG_TARGET, "broker: {url}: a slow consumer on subscription {sid}");
            }
            Event::ServerError(e) => log::warn!(target: LOG_TARGET, "broker: {url}: {e}"),
            Event::ClientError(e) => log::warn!(target: LOG_TARGET, "broker: {url}: {e}"),
            Event::LameDuckMode | Event::Draining => {}
        }
    }
}

/// What names and paces the queues.
struct Settings {
    namespace: String,
    dead_suffix: String,
    lease: Duration,
}

/// Queues on a NATS server with JetStream.
pub(super) struct NatsQueues {
    endpoint: Endpoint,
    client: async_nats::Client,
    js: Context,
    settings: Settings,
    /// Whether the server is there, and its counts.
    state: Arc<LinkState>,
    /// Streams declared by this broker (declared once each).
    declared: Mutex<HashSet<String>>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A client error, with the URL's secrets kept out.
fn failed(endpoint: &Endpoint, e: impl std::error::Error + Send + Sync + 'static) -> BrokerError {
    BrokerError::Backend {
        kind: "nats",
        url: endpoint.redacted().to_owned(),
        source: endpoint.error(e),
    }
}

/// A stream's name and subject.
#[derive(Clone)]
struct Place {
    stream: String,
    subject: String,
}

impl NatsQueues {
    fn failed(&self, e: impl std::error::Error + Send + Sync + 'static) -> BrokerError {
        self.state.failed();
        failed(&self.endpoint, e)
    }

    /// An error while the client is not connected.
    fn connected(&self) -> Result<(), BrokerError> {
        match self.state.is_up() {
            true => Ok(()),
            false => Err(self.failed(NatsError("not connected".to_owned()))),
        }
    }

    /// Where `queue`'s messages are.
    fn place(&self, queue: &str) -> Place {
        let stream = name(&format!("{}{queue}", self.settings.namespace));
        Place {
            subject: format!("mq.{stream}"),
            stream,
        }
    }

    /// Where `queue`'s dead letters are.
    fn dead_place(&self, queue: &str) -> Place {
        self.place(&format!("{queue}{}", self.settings.dead_suffix))
    }

    /// Declares the stream of `queue` (its dead letters' with `dead`),
    /// once per broker.
    async fn declare(&self, queue: &str, dead: bool) -> Result<Place, BrokerError> {
        let place = match dead {
            true => self.dead_place(queue),
            false => self.place(queue),
        };
        if lock(&self.declared).contains(&place.stream) {
            return Ok(place);
        }
        let config = stream::Config {
            name: place.stream.clone(),
            subjects: vec![place.subject.clone()],
            retention: match dead {
                true => stream::RetentionPolicy::Limits,
                false => stream::RetentionPolicy::WorkQueue,
            },
            storage: stream::StorageType::File,
            ..Default::default()
        };
        match self.js.create_stream(config).await {
            Ok(_) => {
                lock(&self.declared).insert(place.stream.clone());
                Ok(place)
            }
            Err(e) => match e.kind() {
                CreateStreamErrorKind::JetStream(error)
                    if error.error_code() == ErrorCode::STREAM_NAME_EXIST =>
                {
                    let retention = match dead {
                        true => "limits",
                        false => "work-queue",
                    };
                    Err(BrokerError::QueueMismatch {
                        queue: format!("{queue} (JetStream stream {})", place.stream),
                        durable: true,
                        reason: format!(
                            "the stream exists with other settings; expected {retention} retention, \
                             file storage and the one subject {}: {error}",
                            place.subject
                        ),
                    })
                }
                _ => Err(self.failed(e)),
            },
        }
    }

    /// Publishes `body` (with `headers`) on `place`, and waits for
    /// JetStream's acknowledgement.
    async fn publish(
        &self,
        place: &Place,
        headers: Option<HeaderMap>,
        body: Vec<u8>,
    ) -> Result<(), BrokerError> {
        // The client would hold it until it reconnects: fail at once.
        self.connected()?;
        let sent = match headers {
            Some(headers) => {
                self.js
                    .publish_with_headers(place.subject.clone(), headers, body.into())
                    .await
            }
            None => self.js.publish(place.subject.clone(), body.into()).await,
        };
        sent.map_err(|e| self.failed(e))?
            .await
            .map_err(|e| self.failed(e))?;
        Ok(())
    }

    /// The dead letters of `queue`, by their sequence in the dead stream.
    async fn read_dead(&self, queue: &str) -> Result<Vec<(u64, DeadLetter, Vec<u8>)>, BrokerError> {
        let place = self.declare(queue, true).await?;
        let mut stream = self
            .js
            .get_stream(&place.stream)
            .await
            .map_err(|e| self.failed(e))?;
        let state = stream
            .info()
            .await
            .map_err(|e| self.failed(e))?
            .state
            .clone();
        let mut letters = Vec::new();
        if state.messages == 0 {
            return Ok(letters);
        }
        for sequence in state.first_sequence..=state.last_sequence {
            let Ok(message) = stream.get_raw_message(sequence).await else {
                // Deleted meanwhile (requeued or purged).
                continue;
            };
            let header = |name: &str| {
                let headers = message.headers.get(name)?;
                Some(headers.as_str().to_owned())
            };
            let letter = DeadLetter {
                queue: queue.to_owned(),
                message: DeadLetter::message_of(&message.payload),
                reason: header(REASON).unwrap_or_default(),
                attempts: header(ATTEMPTS).and_then(|a| a.parse().ok()).unwrap_or(0),
            };
            letters.push((sequence, letter, message.payload.to_vec()));
        }
        Ok(letters)
    }

    /// Deletes what `place`'s stream holds; how many.
    async fn purge_stream(&self, place: &Place) -> Result<usize, BrokerError> {
        let stream = self
            .js
            .get_stream(&place.stream)
            .await
            .map_err(|e| self.failed(e))?;
        let purged = stream.purge().await.map_err(|e| self.failed(e))?;
        Ok(purged.purged as usize)
    }
}

/// The header carrying the W3C trace context of a message's send.
const TRACEPARENT: &str = "traceparent";

/// A message's headers when it has a `traceparent` to carry.
fn trace_headers(trace: Option<&str>) -> Option<HeaderMap> {
    let trace = trace?;
    let mut headers = HeaderMap::new();
    headers.insert(TRACEPARENT, trace);
    Some(headers)
}

/// A dead letter's headers.
fn dead_headers(reason: &str, attempts: u32, consumer: &str) -> HeaderMap {
    let mut headers = HeaderMap::new();
    // A header value is one line.
    let reason: String = reason
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    headers.insert(REASON, reason.as_str());
    headers.insert(ATTEMPTS, attempts.to_string().as_str());
    headers.insert(CONSUMER, consumer);
    headers
}

impl RemoteQueues for NatsQueues {
    fn link(&self) -> &LinkState {
        &self.state
    }

    fn send<'a>(
        &'a self,
        to: Destination<'a>,
        body: Vec<u8>,
    ) -> BoxFuture<'a, Result<(), BrokerError>> {
        Box::pin(async move {
            let place = self.declare(queue_of(to)?, false).await?;
            self.publish(&place, trace_headers(to.trace), body).await
        })
    }

    fn send_batch<'a>(
        &'a self,
        to: Destination<'a>,
        bodies: Vec<Vec<u8>>,
    ) -> BoxFuture<'a, Result<(), BrokerError>> {
        Box::pin(async move {
            let place = self.declare(queue_of(to)?, false).await?;
            self.connected()?;
            // Published in order on one connection, acknowledged together.
            let mut acks = Vec::with_capacity(bodies.len());
            for body in bodies {
                let subject = place.subject.clone();
                let ack = match trace_headers(to.trace) {
                    Some(headers) => {
                        let publish = self.js.publish_with_headers(subject, headers, body.into());
                        publish.await
                    }
                    None => self.js.publish(subject, body.into()).await,
                };
                let ack = ack.map_err(|e| self.failed(e))?;
                acks.push(ack);
            }
            for ack in acks {
                ack.await.map_err(|e| self.failed(e))?;
            }
            Ok(())
        })
    }

    fn length<'a>(&'a self, queue: &'a str) -> BoxFuture<'a, Result<usize, BrokerError>> {
        Box::pin(async move {
            let place = self.declare(queue, false).await?;
            let mut stream = self
                .js
                .get_stream(&place.stream)
                .await
                .map_err(|e| self.failed(e))?;
            let stored = stream
                .info()
                .await
                .map_err(|e| self.failed(e))?
                .state
                .messages;
            // Those delivered and not yet settled are being handled.
            let taken = match stream.consumer_info(&place.stream).await {
                Ok(info) => info.num_ack_pending as u64,
                Err(_) => 0,
            };
            Ok(stored.saturating_sub(taken) as usize)
        })
    }

    fn dead_letters<'a>(
        &'a self,
        queue: &'a str,
    ) -> BoxFuture<'a, Result<Vec<DeadLetter>, BrokerError>> {
        Box::pin(async move {
            let letters = self.read_dead(queue).await?;
            Ok(letters.into_iter().map(|(_, letter, _)| letter).collect())
        })
    }

    fn requeue_dead<'a>(&'a self, queue: &'a str) -> BoxFuture<'a, Result<usize, BrokerError>> {
        Box::pin(async move {
            let letters = self.read_dead(queue).await?;
            let place = self.declare(queue, false).await?;
            let dead = self.dead_place(queue);
            let stream = self
                .js
                .get_stream(&dead.stream)
                .await
                .map_err(|e| self.failed(e))?;
            let mut requeued = 0;
            for (sequence, _, body) in letters {
                // Stored once, even when this is sent again after a lost
                // acknowledgement.
                let mut headers = HeaderMap::new();
                let id = format!("requeue-{}-{sequence}", dead.stream);
                headers.insert("Nats-Msg-Id", id.as_str());
                self.publish(&place, Some(headers), body).await?;
                stream
                    .delete_message(sequence)
                    .await
                    .map_err(|e| self.failed(e))?;
                requeued += 1;
            }
            Ok(requeued)
        })
    }

    fn purge_dead<'a>(&'a self, queue: &'a str) -> BoxFuture<'a, Result<usize, BrokerError>> {
        Box::pin(async move {
            let place = self.declare(queue, true).await?;
            self.purge_stream(&place).await
        })
    }

    fn purge<'a>(&'a self, queue: &'a str) -> BoxFuture<'a, Result<usize, BrokerError>> {
        Box::pin(async move {
            let place = self.declare(queue, false).await?;
            self.purge_stream(&place).await
        })
    }

    fn close(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            let _ = self.client.flush().await;
        })
    }

    fn open(
        self: Arc<Self>,
        consumer: ConsumerSpec,
    ) -> BoxFuture<'static, Result<Box<dyn Source>, BrokerError>> {
        Box::pin(async move {
            let source = consumer::NatsSource::open(self, consumer).await?;
            Ok(Box::new(source) as Box<dyn Source>)
        })
    }
}

/// The queue a destination names (NATS has no exchanges).
fn queue_of(to: Destination<'_>) -> Result<&str, BrokerError> {
    to.queue_only("NATS")
}
