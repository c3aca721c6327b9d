//! A Redis consumer: its own processing list and blocking connection, a
//! lease it renews while it runs (and, at the same pace, the recovery of
//! dead consumers' messages), takes of up to its free slots in one round
//! trip, and settlements gathered into one round trip each time, which keep
//! trying until Redis has them: a message leaves the processing list only
//! through one.

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use tokio::sync::oneshot;

use super::super::batch::Gather;
use super::super::delivery::{persist, unless, Verdict};
use super::super::error::BrokerError;
use super::super::remote::{Slot, Source, Taken, Ticket};
use super::{Message, Origin, RedisQueues, Settlement, Taker};
use crate::LOG_TARGET;

/// One consumer of a queue.
pub(super) struct RedisSource {
    queues: Arc<RedisQueues>,
    queue: &'static str,
    /// The consumer's name (in its dead letters).
    name: Arc<str>,
    taker: Taker,
    /// Its settlements, gathered (each with its slot, free once applied).
    settling: Gather<(Settlement, Slot)>,
    /// Ends the lease's task.
    end_lease: oneshot::Sender<()>,
}

/// The most settlements one round trip carries.
const SETTLE_MOST: usize = 256;

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
        let settling = {
            let queues = queues.clone();
            Gather::start(SETTLE_MOST, move |batch: Vec<(Settlement, Slot)>| {
                let (queues, id) = (queues.clone(), taker_id.clone());
                Box::pin(async move {
                    let (settlements, slots): (Vec<_>, Vec<_>) = batch.into_iter().unzip();
                    persist("settling messages", || {
                        queues.settle(queue, &id, &settlements)
                    })
                    .await;
                    drop(slots);
                })
            })
        };
        Ok(RedisSource {
            queues,
            queue,
            name,
            taker,
            settling,
            end_lease,
        })
    }
}

impl Source for RedisSource {
    fn take(
        &mut self,
        most: usize,
        longest: Duration,
    ) -> BoxFuture<'_, Result<Vec<Taken>, BrokerError>> {
        Box::pin(async move {
            let taken = self
                .queues
                .take(self.queue, &mut self.taker, (most, longest))
                .await?;
            Ok(taken
                .into_iter()
                .map(|(message, origin)| Taken {
                    // The Python original's lists carry bodies alone.
                    trace: None,
                    body: message.body.clone(),
                    attempts: message.attempts,
                    ticket: Box::new(RedisTicket {
                        settling: self.settling.clone(),
                        name: self.name.clone(),
                        message,
                        origin,
                    }),
                })
                .collect())
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
/// retrying) list, with whatever else of the consumer is settled at the
/// same time.
struct RedisTicket {
    settling: Gather<(Settlement, Slot)>,
    /// The consumer's name (in a dead letter).
    name: Arc<str>,
    message: Message,
    origin: Origin,
}

impl Ticket for RedisTicket {
    fn settle(self: Box<Self>, verdict: Verdict, slot: Slot) {
        let RedisTicket {
            settling,
            name,
            message,
            origin,
        } = *self;
        settling.submit((Settlement::new(&name, message, origin, verdict), slot));
    }
}
