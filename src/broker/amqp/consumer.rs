//! An AMQP consumer: a channel of its own (on the connection the broker's
//! consumers share) with `basic_qos` = its prefetch, deliveries
//! acknowledged once settled.

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use futures_util::{FutureExt, StreamExt};
use lapin::acker::Acker;
use lapin::{Channel, Connection, Consumer};

use super::super::delivery::{persist, Verdict};
use super::super::error::BrokerError;
use super::super::remote::{ConsumerSpec, Slot, Source, Taken, Ticket};
use super::{attempts, traceparent, AmqpQueues};
use crate::backend::BackendError;
use crate::LOG_TARGET;

/// One consumer's channel and deliveries.
pub(super) struct AmqpSource {
    queues: Arc<AmqpQueues>,
    spec: ConsumerSpec,
    /// Its consumer tag (`{consumer}-{id}`).
    tag: String,
    /// While consuming: the shared connection, its channel, its deliveries.
    open: Option<(Arc<Connection>, Channel, Consumer)>,
}

impl AmqpSource {
    /// Connects, declares the queue (and its exchange), and consumes.
    pub(super) async fn open(
        queues: Arc<AmqpQueues>,
        spec: ConsumerSpec,
    ) -> Result<AmqpSource, BrokerError> {
        let tag = format!("{}-{}", spec.name, uuid::Uuid::new_v4().simple());
        let mut source = AmqpSource {
            queues,
            spec,
            tag,
            open: None,
        };
        source.connect().await?;
        Ok(source)
    }

    async fn connect(&mut self) -> Result<(), BrokerError> {
        self.close().await;
        let prefetch = self.spec.options.prefetch.clamp(1, u32::from(u16::MAX)) as u16;
        let connection = self.queues.consumers_connection().await?;
        let (channel, deliveries) = self
            .queues
            .consume(
                &connection,
                self.spec.queue,
                self.spec.binding,
                &self.tag,
                prefetch,
            )
            .await?;
        self.open = Some((connection, channel, deliveries));
        Ok(())
    }

    /// Closes its channel (what the broker sent ahead goes back to the
    /// queue); the shared connection stays for the other consumers.
    async fn close(&mut self) {
        if let Some((_, channel, _)) = self.open.take() {
            let _ = channel.close(200, "consumer stopped").await;
        }
    }

    /// A delivery, with what settles it.
    fn taken(&self, delivery: lapin::message::Delivery) -> Taken {
        let body: Arc<[u8]> = delivery.data.into();
        let trace = traceparent(&delivery.properties);
        Taken {
            attempts: attempts(&delivery.properties),
            body: body.clone(),
            ticket: Box::new(AmqpTicket {
                queues: self.queues.clone(),
                consumer: (self.spec.name.clone(), self.spec.queue),
                body,
                acker: delivery.acker,
                trace: trace.clone(),
            }),
            trace,
        }
    }

    /// The failure of a consumer that lost its channel.
    fn lost(&self, why: String) -> BrokerError {
        BrokerError::Backend {
            kind: "amqp",
            url: self.queues.endpoint.redacted().to_owned(),
            source: BackendError::message(why),
        }
    }
}

impl Source for AmqpSource {
    fn take(
        &mut self,
        most: usize,
        _longest: Duration,
    ) -> BoxFuture<'_, Result<Vec<Taken>, BrokerError>> {
        Box::pin(async move {
            let Some((_, _, deliveries)) = self.open.as_mut() else {
                return Err(self.lost("not consuming (reconnecting)".to_owned()));
            };
            // The broker pushes up to `basic_qos` deliveries ahead: the
            // first is awaited, those already here come with it.
            let mut taken = Vec::with_capacity(most);
            let mut next = deliveries.next().await;
            loop {
                let delivery = match next {
                    Some(Ok(delivery)) => delivery,
                    Some(Err(e)) if taken.is_empty() => {
                        self.queues.set_up(false);
                        self.open = None;
                        return Err(self.queues.error(e));
                    }
                    None if taken.is_empty() => {
                        self.open = None;
                        return Err(self.lost("the broker cancelled the consumer".to_owned()));
                    }
                    // A failure after some deliveries: those go out first,
                    // the next take meets it again.
                    Some(Err(_)) | None => break,
                };
                taken.push(delivery);
                if taken.len() >= most {
                    break;
                }
                match deliveries.next().now_or_never() {
                    Some(more) => next = more,
                    None => break,
                }
            }
            Ok(taken.into_iter().map(|d| self.taken(d)).collect())
        })
    }

    fn recover(&mut self) -> BoxFuture<'_, Result<(), BrokerError>> {
        Box::pin(self.connect())
    }

    fn retire(mut self: Box<Self>) -> BoxFuture<'static, ()> {
        // What the broker sent ahead (prefetch) and nobody took goes back
        // to the queue when the channel closes.
        Box::pin(async move { self.close().await })
    }
}

/// Settles one delivery: an acknowledgement, after a retry or a dead
/// letter is published (confirmed) where the verdict says so.
struct AmqpTicket {
    queues: Arc<AmqpQueues>,
    consumer: (Arc<str>, &'static str),
    body: Arc<[u8]>,
    acker: Acker,
    /// Its `traceparent`, which a retry carries on.
    trace: Option<Box<str>>,
}

impl Ticket for AmqpTicket {
    fn settle(self: Box<Self>, verdict: Verdict, slot: Slot) {
        actix_rt::spawn(async move {
            let AmqpTicket {
                queues: q,
                consumer: (name, queue),
                body,
                acker,
                trace,
            } = *self;
            let settled = match verdict {
                Verdict::Ack => q.ack(&acker).await,
                Verdict::Release => q.requeue(&acker).await,
                Verdict::Retry {
                    attempts, pause, ..
                } => {
                    actix_rt::time::sleep(pause).await;
                    let again = (attempts, trace.as_deref());
                    persist("publishing a retry", || q.publish(queue, &body, again)).await;
                    q.ack(&acker).await
                }
                Verdict::Dead { reason, attempts } => {
                    persist("publishing a dead letter", || {
                        q.dead(queue, &name, &body, &reason, attempts)
                    })
                    .await;
                    q.ack(&acker).await
                }
            };
            if let Err(e) = settled {
                // The channel is gone: the broker delivers the message again.
                log::warn!(target: LOG_TARGET, "consumer `{name}`: settling a message of `{queue}` failed: {e}; it will be delivered again");
            }
            drop(slot);
        });
    }
}
