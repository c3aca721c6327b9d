//! A JetStream consumer: the queue's durable pull consumer, takes of up to
//! the free slots (what is there at once, else a pull that waits for one),
//! in-progress acks for every message held, and settlements.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream::consumer::{pull, AckPolicy, PullConsumer};
use async_nats::jetstream::{AckKind, Message};
use futures_util::future::{AbortHandle, BoxFuture};
use futures_util::StreamExt;

use super::super::delivery::{persist, Verdict};
use super::super::error::BrokerError;
use super::super::remote::{ConsumerSpec, Slot, Source, Taken, Ticket};
use super::{dead_headers, lock, NatsQueues, TRACEPARENT};
use crate::nats_target::NatsError;
use crate::LOG_TARGET;

/// The longest a pull waits on the server: a pull left behind by a stop
/// holds the server's next message for no longer.
const LONGEST_PULL: Duration = Duration::from_secs(1);

/// The shortest pull JetStream takes.
const SHORTEST_PULL: Duration = Duration::from_millis(10);

/// The messages a consumer holds, by their stream sequence: each gets an
/// in-progress ack every half lease until it is settled.
type Held = Arc<Mutex<HashMap<u64, Message>>>;

/// One consumer of a queue.
pub(super) struct NatsSource {
    queues: Arc<NatsQueues>,
    consumer: PullConsumer,
    spec: ConsumerSpec,
    held: Held,
    /// Ends the in-progress task.
    progress: AbortHandle,
}

impl NatsSource {
    /// Declares the queue's stream and its durable consumer.
    pub(super) async fn open(
        queues: Arc<NatsQueues>,
        spec: ConsumerSpec,
    ) -> Result<NatsSource, BrokerError> {
        spec.without_exchange()?;
        let place = queues.declare(spec.queue, false).await?;
        let stream = queues
            .js
            .get_stream(&place.stream)
            .await
            .map_err(|e| queues.failed(e))?;
        let lease = queues.settings.lease;
        let max_deliver = i64::from(spec.options.attempts.max(1)) + 1;
        let config = pull::Config {
            durable_name: Some(place.stream.clone()),
            ack_policy: AckPolicy::Explicit,
            ack_wait: lease,
            max_deliver,
            filter_subject: place.subject.clone(),
            ..Default::default()
        };
        // A 2.9 server updates a durable consumer asked for with other
        // settings: compare first.
        if let Ok(info) = stream.consumer_info(&place.stream).await {
            let theirs = &info.config;
            if theirs.ack_policy != AckPolicy::Explicit
                || theirs.ack_wait != lease
                || theirs.max_deliver != max_deliver
                || theirs.filter_subject != place.subject
            {
                return Err(BrokerError::QueueMismatch {
                    queue: format!("{} (JetStream consumer {})", spec.queue, place.stream),
                    durable: true,
                    reason: format!(
                        "ours: explicit acks, ack wait {lease:?}, max deliveries {max_deliver}                          (attempts + 1) on {}; the server has: {:?} acks, ack wait {:?}, max                          deliveries {} on {:?}",
                        place.subject,
                        theirs.ack_policy,
                        theirs.ack_wait,
                        theirs.max_deliver,
                        theirs.filter_subject,
                    ),
                });
            }
        }
        // Compared above: a failure here is the server's or the connection's.
        let consumer = stream
            .create_consumer(config)
            .await
            .map_err(|e| queues.failed(e))?;
        let held = Held::default();
        let (task, progress) = futures_util::future::abortable(keep_held(held.clone(), lease));
        actix_rt::spawn(task);
        Ok(NatsSource {
            queues,
            consumer,
            spec,
            held,
            progress,
        })
    }

    /// Wraps what was pulled.
    fn taken(&self, messages: Vec<Message>) -> Vec<Taken> {
        let mut held = lock(&self.held);
        messages
            .into_iter()
            .filter_map(|message| {
                let (sequence, delivered) = match message.info() {
                    Ok(info) => (info.stream_sequence, info.delivered),
                    Err(e) => {
                        log::warn!(target: LOG_TARGET, "broker: a JetStream message without its metadata: {e}");
                        return None;
                    }
                };
                held.insert(sequence, message.clone());
                let attempts = u32::try_from(delivered.saturating_sub(1)).unwrap_or(u32::MAX);
                let trace = message
                    .headers
                    .as_ref()
                    .and_then(|headers| headers.get(TRACEPARENT))
                    .map(|value| Box::from(value.as_str()));
                Some(Taken {
                    trace,
                    body: message.payload.to_vec().into(),
                    attempts,
                    ticket: Box::new(NatsTicket {
                        queues: self.queues.clone(),
                        queue: self.spec.queue,
                        name: self.spec.name.clone(),
                        held: self.held.clone(),
                        sequence,
                        message,
                    }),
                })
            })
            .collect()
    }
}

/// Reads a pull's messages until it ends.
async fn pulled(
    batch: Result<pull::Batch, pull::BatchError>,
    queues: &NatsQueues,
) -> Result<Vec<Message>, BrokerError> {
    let mut batch = batch.map_err(|e| queues.failed(e))?;
    let mut messages = Vec::new();
    while let Some(message) = batch.next().await {
        messages.push(message.map_err(|e| queues.failed(NatsError(e.to_string())))?);
    }
    Ok(messages)
}

impl Source for NatsSource {
    fn take(
        &mut self,
        most: usize,
        longest: Duration,
    ) -> BoxFuture<'_, Result<Vec<Taken>, BrokerError>> {
        Box::pin(async move {
            // What is there at once.
            let now = self.consumer.fetch().max_messages(most).messages().await;
            let mut messages = pulled(now, &self.queues).await?;
            if messages.is_empty() {
                // Nothing: wait for one, then take what came with it.
                let wait = longest.clamp(SHORTEST_PULL, LONGEST_PULL);
                let one = self
                    .consumer
                    .batch()
                    .max_messages(1)
                    .expires(wait)
                    .messages()
                    .await;
                messages = pulled(one, &self.queues).await?;
                if !messages.is_empty() && most > 1 {
                    let more = self
                        .consumer
                        .fetch()
                        .max_messages(most - 1)
                        .messages()
                        .await;
                    messages.extend(pulled(more, &self.queues).await?);
                }
            }
            Ok(self.taken(messages))
        })
    }

    fn recover(&mut self) -> BoxFuture<'_, Result<(), BrokerError>> {
        // The client reconnects by itself; the durable consumer is on the
        // server.
        Box::pin(async { Ok(()) })
    }

    fn retire(self: Box<Self>) -> BoxFuture<'static, ()> {
        // Everything handed out is settled; what a pull may still bring is
        // delivered again after the ack wait.
        self.progress.abort();
        Box::pin(async {})
    }
}

/// Sends an in-progress ack for every held message each half lease.
async fn keep_held(held: Held, lease: Duration) {
    loop {
        actix_rt::time::sleep(lease / 2).await;
        let messages: Vec<Message> = lock(&held).values().cloned().collect();
        for message in messages {
            if let Err(e) = message.ack_with(AckKind::Progress).await {
                log::debug!(target: LOG_TARGET, "broker: an in-progress ack failed: {e}");
            }
        }
    }
}

/// Settles one pulled message.
struct NatsTicket {
    queues: Arc<NatsQueues>,
    queue: &'static str,
    /// The consumer's name (in a dead letter).
    name: Arc<str>,
    held: Held,
    sequence: u64,
    message: Message,
}

impl Ticket for NatsTicket {
    fn settle(self: Box<Self>, verdict: Verdict, slot: Slot) {
        let NatsTicket {
            queues,
            queue,
            name,
            held,
            sequence,
            message,
        } = *self;
        actix_rt::spawn(async move {
            let kind = match verdict {
                Verdict::Ack => AckKind::Ack,
                Verdict::Release => AckKind::Nak(None),
                Verdict::Retry { pause, .. } => AckKind::Nak(Some(pause)),
                Verdict::Dead { reason, attempts } => {
                    // In the dead letters before the message is let go.
                    persist("dead-lettering a message", || async {
                        let place = queues.declare(queue, true).await?;
                        let headers = dead_headers(&reason, attempts, &name);
                        let body = message.payload.to_vec();
                        queues.publish(&place, Some(headers), body).await
                    })
                    .await;
                    AckKind::Term
                }
            };
            // A settlement that does not reach the server leaves the
            // message to be delivered again after the ack wait.
            if let Err(e) = message.ack_with(kind).await {
                log::warn!(target: LOG_TARGET, "broker: settling a message of `{queue}` failed: {e}; it will be delivered again");
            }
            lock(&held).remove(&sequence);
            drop(slot);
        });
    }
}
