//! A Redis consumer: its own processing list and blocking connection, a
//! lease it renews while it runs (and, at the same pace, the recovery of
//! dead consumers' messages), and settlements that keep trying until Redis
//! has them: a message leaves the processing list only through one.

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use tokio::sync::oneshot;

use super::super::delivery::{persist, unless, Verdict};
use super::super::error::BrokerError;
use super::super::remote::{Source, Taken, Ticket};
use super::{Message, Origin, RedisQueues, Taker};
use crate::LOG_TARGET;

/// One consumer of a queue.
pub(super) struct RedisSource {
    queues: Arc<RedisQueues>,
    queue: &'static str,
    /// The consumer's name (in its dead letters).
    name: Arc<str>,
    taker: Taker,
    taker_id: Arc<str>,
    /// Ends the lease's task.
    end_lease: oneshot::Sender<()>,
}

impl RedisSource {
    /// Registers a consumer of `queue` with its lease (dead consumers'
    /// messages returned first), and keeps the lease.
    pub(super) async fn open(
        queues: Arc<RedisQueues>,
        (queue, name): (&'static str, Arc<str>),
    ) -> Result<RedisSource, BrokerError> {
        let taker = queues.taker(queue).await?;
        let taker_id: Arc<str> = taker.id().into();
        let (end_lease, lease_ended) = oneshot::channel();
        actix_rt::spawn(keep_lease(
            queues.clone(),
            queue,
            taker_id.clone(),
            lease_ended,
        ));
        Ok(RedisSource {
            queues,
            queue,
            name,
            taker,
            taker_id,
            end_lease,
        })
    }
}

impl Source for RedisSource {
    fn take(&mut self, longest: Duration) -> BoxFuture<'_, Result<Option<Taken>, BrokerError>> {
        Box::pin(async move {
            let taken = self
                .queues
                .take(self.queue, &mut self.taker, longest)
                .await?;
            Ok(taken.map(|(message, origin)| Taken {
                body: message.body.clone(),
                attempts: message.attempts,
                ticket: Box::new(RedisTicket {
                    queues: self.queues.clone(),
                    consumer: (self.queue, self.name.clone()),
                    taker_id: self.taker_id.clone(),
                    message,
                    origin,
                }),
            }))
        })
    }

    fn recover(&mut self) -> BoxFuture<'_, Result<(), BrokerError>> {
        Box::pin(self.queues.reconnect(&mut self.taker))
    }

    fn retire(self: Box<Self>) -> BoxFuture<'static, ()> {
        // The lease goes, and anything a cut-short take left behind
        // returns to the queue.
        let RedisSource {
            queues,
            queue,
            taker,
            end_lease,
            ..
        } = *self;
        let _ = end_lease.send(());
        Box::pin(async move {
            persist("retiring a consumer", || queues.retire(queue, &taker)).await;
        })
    }
}

/// Renews the consumer's lease until `ended`; looks for dead consumers
/// once per lease.
async fn keep_lease(
    queues: Arc<RedisQueues>,
    queue: &'static str,
    taker_id: Arc<str>,
    mut ended: oneshot::Receiver<()>,
) {
    let every = queues.renew_every();
    let mut rounds = 0u32;
    while unless(&mut ended, actix_rt::time::sleep(every))
        .await
        .is_some()
    {
        if let Err(e) = queues.renew_id(queue, &taker_id).await {
            log::warn!(target: LOG_TARGET, "broker: renewing a lease on `{queue}` failed: {e}");
            continue;
        }
        rounds += 1;
        if rounds % 3 == 0 {
            if let Err(e) = queues.recover(queue).await {
                log::warn!(target: LOG_TARGET, "broker: recovering `{queue}` failed: {e}");
            }
        }
    }
}

/// Settles one taken message out of its consumer's processing (or
/// retrying) list.
struct RedisTicket {
    queues: Arc<RedisQueues>,
    consumer: (&'static str, Arc<str>),
    taker_id: Arc<str>,
    message: Message,
    origin: Origin,
}

impl Ticket for RedisTicket {
    fn settle(self: Box<Self>, verdict: Verdict) -> BoxFuture<'static, ()> {
        Box::pin(async move {
            let RedisTicket {
                queues: q,
                consumer: (queue, name),
                taker_id,
                message,
                origin,
            } = *self;
            let (id, m, o) = (&*taker_id, &message, &origin);
            match verdict {
                Verdict::Ack => persist("acknowledging a message", || q.ack(queue, id, m, o)).await,
                Verdict::Release => {
                    persist("handing a message back", || q.release(queue, id, m, o)).await
                }
                Verdict::Retry {
                    attempts, pause, ..
                } => {
                    persist("scheduling a retry", || {
                        q.retry(queue, id, m, o, attempts, pause)
                    })
                    .await
                }
                Verdict::Dead { reason, attempts } => {
                    persist("dead-lettering a message", || {
                        q.dead(queue, id, &name, m, o, &reason, attempts)
                    })
                    .await
                }
            }
        })
    }
}
