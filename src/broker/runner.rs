//! Running one consumer: take messages while fewer than its prefetch are
//! in flight, hand each to the agent, and settle it the way its run ended
//! (done, retried after a backoff, dead-lettered, or handed back).

use std::future::Future;
use std::pin::pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::{self, Either};
use tokio::sync::{oneshot, Notify, OwnedSemaphorePermit, Semaphore};

use super::amqp::{self, AmqpQueues, RECONNECT_MAX as AMQP_RECONNECT_MAX};
use super::error::BrokerError;
use super::job::{Binding, Body, ConsumerOptions, Job, Outcome, Settler, Taken};
use super::memory::{Held, MemQueue, Memory};
use super::observe::Settlement;
use super::redis::{Origin, RedisQueues};
use crate::LOG_TARGET;
use futures_util::StreamExt;

/// The backends, as one enum (their operations differ only inside).
#[derive(Clone)]
pub(super) enum Backend {
    Memory(Arc<Memory>),
    Redis(Arc<RedisQueues>),
    Amqp(Arc<AmqpQueues>),
}

/// Hands a job, and more jobs to run after it, to the consumer's agent;
/// `false` once the agent is gone.
pub(crate) type JobFn = Box<dyn Fn(Job, Vec<Job>) -> bool + Send + Sync>;

/// The most messages one `Consume` carries to a plain `fn` consumer. Its
/// jobs stay under a kilobyte: glibc consolidates its fast bins before a
/// larger allocation, which cost more than the hops a bigger batch saves.
const BATCH: usize = 16;

/// The longest pause between two attempts to reach Redis.
const RECONNECT_MAX: Duration = Duration::from_secs(5);

/// A running consumer; dropping it stops taking messages (those in flight
/// are still settled).
#[derive(Debug)]
pub(crate) struct Consuming {
    _stop: oneshot::Sender<()>,
    /// An in-process consumer's state, which its settlements read too.
    memory: Option<Arc<MemConsumer>>,
    /// How its first attempt to start went, until it is known (AMQP):
    /// the broker's refusal, or nothing (the sender dropped) once it
    /// consumes or goes on trying.
    starting: Option<oneshot::Receiver<BrokerError>>,
}

impl Consuming {
    /// Whether the broker refused the consumer at its first attempt, for
    /// good (an AMQP queue that exists with other flags): `Ready(Err)`
    /// then, `Ready(Ok)` once it consumes or goes on trying after a
    /// passing failure.
    pub(crate) fn poll_started(
        &mut self,
        task: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), BrokerError>> {
        let Some(starting) = self.starting.as_mut() else {
            return std::task::Poll::Ready(Ok(()));
        };
        let outcome = std::task::ready!(std::pin::Pin::new(starting).poll(task));
        self.starting = None;
        std::task::Poll::Ready(match outcome {
            Ok(refused) => Err(refused),
            Err(_) => Ok(()),
        })
    }
}

impl Drop for Consuming {
    fn drop(&mut self) {
        // At once, not when the loop next runs: a settlement after this
        // point must not hand the agent another message.
        if let Some(consumer) = &self.memory {
            consumer.stop();
        }
    }
}

/// What a consumer loop knows about itself.
struct Consumer {
    queue: &'static str,
    binding: Binding,
    name: Arc<str>,
    options: ConsumerOptions,
    deliver: JobFn,
    in_flight: Arc<Semaphore>,
}

/// Starts the consumer's loop on the System's arbiter.
pub(super) fn start(
    backend: Backend,
    queue: &'static str,
    binding: Binding,
    name: Arc<str>,
    options: ConsumerOptions,
    batches: bool,
    deliver: JobFn,
) -> Consuming {
    let (stop, stopped) = oneshot::channel();
    let arbiter = actix_rt::System::current().arbiter().clone();
    let limit = options.prefetch.max(1) as usize;
    let wire = |deliver| Consumer {
        queue,
        binding,
        name: name.clone(),
        options,
        deliver,
        in_flight: Arc::new(Semaphore::new(limit)),
    };
    let mut starting = None;
    let memory = match backend {
        Backend::Memory(memory) => {
            let consumer = Arc::new(MemConsumer {
                items: memory.queue(queue),
                name: name.clone(),
                queue,
                options,
                deliver,
                limit,
                batches,
                in_flight: AtomicUsize::new(0),
                stopped: AtomicBool::new(false),
                room: Notify::new(),
            });
            arbiter.spawn(run_memory(consumer.clone(), stopped));
            Some(consumer)
        }
        Backend::Redis(queues) => {
            arbiter.spawn(run_redis(queues, wire(deliver), stopped));
            None
        }
        Backend::Amqp(queues) => {
            let (refuse, refused) = oneshot::channel();
            starting = Some(refused);
            arbiter.spawn(run_amqp(queues, wire(deliver), stopped, refuse));
            None
        }
    };
    Consuming {
        _stop: stop,
        memory,
        starting,
    }
}

/// Resolves `work` unless `stopped` resolves first (`None`).
async fn unless<F: Future>(stopped: &mut oneshot::Receiver<()>, work: F) -> Option<F::Output> {
    match future::select(stopped, pin!(work)).await {
        Either::Left(_) => None,
        Either::Right((output, _)) => Some(output),
    }
}

/// The pause before retry number `attempt` (1 for the first retry).
fn backoff(options: &ConsumerOptions, attempt: u32) -> Duration {
    let doublings = attempt.saturating_sub(1).min(16);
    options.backoff.saturating_mul(1 << doublings)
}

/// What to do with a message once its run ended.
enum Verdict {
    Ack,
    Release,
    Retry {
        attempts: u32,
        pause: Duration,
        reason: String,
    },
    Dead {
        reason: String,
        attempts: u32,
    },
}

/// Decides what the run's outcome means, logging failures.
fn verdict(
    consumer: (&str, &'static str, ConsumerOptions),
    attempts_before: u32,
    outcome: Outcome,
) -> Verdict {
    let (name, queue, options) = consumer;
    let attempts = attempts_before + 1;
    match outcome {
        Outcome::Done => Verdict::Ack,
        // Not handled (its agent was stopping): back as it was.
        Outcome::Released => Verdict::Release,
        Outcome::Poison(reason) => {
            log::error!(
                target: LOG_TARGET,
                "consumer `{name}`: a message of queue `{queue}` does not decode; dead-lettered: {reason}"
            );
            Verdict::Dead { reason, attempts }
        }
        Outcome::Failed(reason) if attempts >= options.attempts => {
            log::error!(
                target: LOG_TARGET,
                "consumer `{name}`: a message of queue `{queue}` failed {attempts} attempt(s); dead-lettered: {reason}"
            );
            Verdict::Dead { reason, attempts }
        }
        Outcome::Failed(reason) => {
            let pause = backoff(&options, attempts);
            log::warn!(
                target: LOG_TARGET,
                "consumer `{name}`: attempt {attempts} of {} at a message of queue `{queue}` failed: {reason}; retrying in {pause:?}",
                options.attempts
            );
            Verdict::Retry {
                attempts,
                pause,
                reason,
            }
        }
    }
}

/// Hands a taken message to the agent with what settles it; `false` when
/// the agent is gone (the job was dropped, which settled it as released).
fn hand_over(consumer: &Consumer, body: Arc<[u8]>, settler: Settler) -> bool {
    (consumer.deliver)(Job::wire(body, settler), Vec::new())
}

/// An in-process consumer: what its loop and the settlements of its
/// messages share.
///
/// A plain `fn` consumer gets batches: the loop hands it the messages for
/// all its free slots in one `Consume`, one mailbox hop for them all, and
/// their settlements only free the slots. An `async fn` consumer takes one
/// message at a time, so a settlement hands the agent the next message
/// itself, in the slot it frees, and a message costs no hop through the
/// loop.
pub(crate) struct MemConsumer {
    items: Arc<MemQueue>,
    name: Arc<str>,
    queue: &'static str,
    options: ConsumerOptions,
    deliver: JobFn,
    /// Its prefetch: at most this many messages handed over and unsettled.
    limit: usize,
    /// Whether it takes batches (a plain `fn` consumer).
    batches: bool,
    in_flight: AtomicUsize,
    /// Set once it stops taking messages.
    stopped: AtomicBool,
    /// A slot came free.
    room: Notify,
}

impl std::fmt::Debug for MemConsumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemConsumer")
            .field("name", &self.name)
            .field("queue", &self.queue)
            .field("in_flight", &self.in_flight)
            .finish_non_exhaustive()
    }
}

impl MemConsumer {
    /// Takes a slot if fewer than `limit` messages are in flight.
    fn try_slot(&self) -> bool {
        self.in_flight
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.limit).then_some(n + 1)
            })
            .is_ok()
    }

    /// Takes a slot, waiting for one; `false` if `stopped` came first.
    async fn slot(&self, stopped: &mut oneshot::Receiver<()>) -> bool {
        loop {
            let mut room = pin!(self.room.notified());
            room.as_mut().enable();
            if self.try_slot() {
                return true;
            }
            if unless(stopped, room).await.is_none() {
                return false;
            }
        }
    }

    /// Takes up to `wanted` more slots at once; how many it got.
    fn try_slots(&self, wanted: usize) -> usize {
        let mut got = 0;
        let _ = self
            .in_flight
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                got = self.limit.saturating_sub(n).min(wanted);
                (got > 0).then_some(n + got)
            });
        got
    }

    fn free_slot(&self) {
        self.free_slots(1);
    }

    fn free_slots(&self, count: usize) {
        if count == 0 {
            return;
        }
        // The loop waits for a slot only when none is free, and only it
        // takes slots: the first slot freed from full wakes it.
        if self.in_flight.fetch_sub(count, Ordering::AcqRel) == self.limit {
            self.room.notify_one();
        }
    }

    fn stop(&self) {
        self.stopped.store(true, Ordering::Release);
    }

    fn is_stopped(&self) -> bool {
        self.stopped.load(Ordering::Acquire)
    }

    fn job(self: &Arc<Self>, held: Held) -> Job {
        Job::held(MemorySettle {
            consumer: self.clone(),
            held,
        })
    }

    /// The jobs of up to `count` more messages, in slots already taken
    /// (those it did not fill are freed).
    fn take_jobs(self: &Arc<Self>, count: usize) -> Vec<Job> {
        let mut jobs = Vec::with_capacity(count);
        let taken = self
            .items
            .try_take_many(count, |held| jobs.push(self.job(held)));
        self.free_slots(count - taken);
        jobs
    }

    /// Hands `held`, then `more`, to the agent, each in a slot already
    /// taken. When the agent is gone, the dropped jobs put their messages
    /// back and freed their slots, and the consumer stops.
    fn hand_over(self: &Arc<Self>, held: Held, more: Vec<Job>) {
        if !(self.deliver)(self.job(held), more) {
            self.stop();
        }
    }
}

async fn run_memory(consumer: Arc<MemConsumer>, mut stopped: oneshot::Receiver<()>) {
    let items = &consumer.items;
    loop {
        if consumer.is_stopped() || stopped.try_recv() != Err(oneshot::error::TryRecvError::Empty) {
            break;
        }
        // Without building futures while there is a slot and a message,
        // waiting for them otherwise.
        if !consumer.try_slot() && !consumer.slot(&mut stopped).await {
            break;
        }
        let held = match items.try_take() {
            Some(held) => held,
            None => match unless(&mut stopped, items.take()).await {
                Some(held) => held,
                None => {
                    consumer.free_slot();
                    break;
                }
            },
        };
        let mut more = Vec::new();
        if consumer.batches {
            // The messages for the other free slots come along.
            let slots = consumer.try_slots((consumer.limit - 1).min(BATCH - 1));
            if slots > 0 {
                more = consumer.take_jobs(slots);
            }
        }
        consumer.hand_over(held, more);
    }
    consumer.stop();
}

/// How an in-process message is settled: what its job holds.
pub(crate) struct MemorySettle {
    consumer: Arc<MemConsumer>,
    held: Held,
}

impl MemorySettle {
    /// The message.
    pub(super) fn body(&self) -> &Body {
        &self.held.body
    }

    /// Done, back in the queue (now or after the backoff), or dead.
    pub(super) fn settle(self, outcome: Outcome) {
        let MemorySettle { consumer, mut held } = self;
        let (items, name) = (&consumer.items, &consumer.name);
        let verdict = verdict(
            (name, consumer.queue, consumer.options),
            held.attempts,
            outcome,
        );
        items.settled(held.id, name, || match &verdict {
            Verdict::Ack => Settlement::Acked,
            Verdict::Release => Settlement::Released,
            Verdict::Retry {
                attempts, reason, ..
            } => Settlement::Retried {
                attempt: *attempts,
                reason: reason.clone(),
            },
            Verdict::Dead { reason, attempts } => Settlement::DeadLettered {
                attempts: *attempts,
                reason: reason.clone(),
            },
        });
        let released = matches!(verdict, Verdict::Release);
        match verdict {
            Verdict::Ack => {}
            Verdict::Release => items.put_back(held),
            Verdict::Dead { reason, attempts } => items.dead(held, reason, attempts),
            Verdict::Retry {
                attempts, pause, ..
            } => {
                held.attempts = attempts;
                if tokio::runtime::Handle::try_current().is_ok() {
                    let items = items.clone();
                    actix_rt::spawn(async move {
                        actix_rt::time::sleep(pause).await;
                        items.put_back(held);
                    });
                } else {
                    // No runtime left (the System is going): back at once.
                    items.put_back(held);
                }
            }
        }
        // The slot goes to the next message, if the consumer takes them one
        // at a time and still takes them (a released message means its
        // agent is stopping or gone); a batch consumer's loop refills.
        if !released && !consumer.batches && !consumer.is_stopped() {
            if let Some(next) = items.try_take() {
                consumer.hand_over(next, Vec::new());
                return;
            }
        }
        consumer.free_slot();
    }
}

/// Retries a Redis operation until it succeeds: a message must leave its
/// processing list only through one of them.
async fn persist<F, Fut>(what: &str, mut op: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), BrokerError>>,
{
    let mut pause = Duration::from_millis(50);
    while let Err(e) = op().await {
        log::warn!(target: LOG_TARGET, "broker: {what} failed: {e}; retrying in {pause:?}");
        actix_rt::time::sleep(pause).await;
        pause = (pause * 2).min(RECONNECT_MAX);
    }
}

async fn run_redis(
    queues: Arc<RedisQueues>,
    consumer: Consumer,
    mut stopped: oneshot::Receiver<()>,
) {
    let queue = consumer.queue;
    let limit = consumer.options.prefetch.max(1) as usize;
    let mut pause = Duration::from_millis(50);
    let mut taker = loop {
        match unless(&mut stopped, queues.taker(queue)).await {
            None => return,
            Some(Ok(taker)) => break taker,
            Some(Err(e)) => {
                log::warn!(target: LOG_TARGET, "consumer `{}`: cannot start on `{queue}`: {e}; retrying in {pause:?}", consumer.name);
                actix_rt::time::sleep(pause).await;
                pause = (pause * 2).min(RECONNECT_MAX);
            }
        }
    };
    let taker_id: Arc<str> = taker.id().into();
    // The lease, renewed while this consumer has messages; dead consumers'
    // messages looked for at the same pace.
    let (end_lease, lease_ended) = oneshot::channel::<()>();
    actix_rt::spawn(keep_lease(
        queues.clone(),
        queue,
        taker_id.clone(),
        lease_ended,
    ));
    loop {
        let Some(Ok(permit)) =
            unless(&mut stopped, consumer.in_flight.clone().acquire_owned()).await
        else {
            break;
        };
        // With messages in flight, one of them may fail and be due again
        // after the backoff: the wait for a new message ends by then (a
        // zero backoff waits 10 ms, not a busy loop).
        let longest = if consumer.in_flight.available_permits() + 1 < limit {
            consumer.options.backoff.max(Duration::from_millis(10))
        } else {
            Duration::MAX
        };
        let taken = match unless(&mut stopped, queues.take(queue, &mut taker, longest)).await {
            None => break,
            Some(Ok(None)) => continue,
            Some(Ok(Some(taken))) => {
                pause = Duration::from_millis(50);
                taken
            }
            Some(Err(e)) => {
                log::warn!(target: LOG_TARGET, "consumer `{}`: taking from `{queue}` failed: {e}; retrying in {pause:?}", consumer.name);
                actix_rt::time::sleep(pause).await;
                pause = (pause * 2).min(RECONNECT_MAX);
                if let Err(e) = queues.reconnect(&mut taker).await {
                    log::debug!(target: LOG_TARGET, "consumer `{}`: {e}", consumer.name);
                }
                continue;
            }
        };
        let (taken, origin) = taken;
        let body = taken.body.clone();
        let (queues_, name, options, id) = (
            queues.clone(),
            consumer.name.clone(),
            consumer.options,
            taker_id.clone(),
        );
        let settler: Settler = Box::new(move |outcome| {
            let verdict = verdict((&name, queue, options), taken.attempts, outcome);
            let settle = settle_redis(queues_, (name, queue), id, (taken, origin), verdict, permit);
            // Without a runtime (the System is going) the message stays in
            // the processing list: the lease's end returns it.
            if tokio::runtime::Handle::try_current().is_ok() {
                actix_rt::spawn(settle);
            }
        });
        if !hand_over(&consumer, body, settler) {
            break;
        }
    }
    // Every message in flight settled (all permits back), then the lease
    // goes and anything a cut-short take left behind returns to the queue.
    let prefetch = consumer.options.prefetch.max(1);
    let _all = consumer.in_flight.acquire_many(prefetch).await;
    let _ = end_lease.send(());
    persist("retiring a consumer", || queues.retire(queue, &taker)).await;
    log::debug!(target: LOG_TARGET, "consumer `{}` stopped taking from `{queue}`", consumer.name);
}

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
        // Look for dead consumers once per lease.
        if rounds % 3 == 0 {
            if let Err(e) = queues.recover(queue).await {
                log::warn!(target: LOG_TARGET, "broker: recovering `{queue}` failed: {e}");
            }
        }
    }
}

async fn settle_redis(
    queues: Arc<RedisQueues>,
    (name, queue): (Arc<str>, &'static str),
    taker_id: Arc<str>,
    (taken, origin): (Taken, Origin),
    verdict: Verdict,
    in_flight: OwnedSemaphorePermit,
) {
    let (q, id) = (&queues, &*taker_id);
    match verdict {
        Verdict::Ack => {
            persist("acknowledging a message", || {
                q.ack(queue, id, &taken, &origin)
            })
            .await
        }
        Verdict::Release => {
            persist("handing a message back", || {
                q.release(queue, id, &taken, &origin)
            })
            .await
        }
        Verdict::Retry {
            attempts, pause, ..
        } => {
            persist("scheduling a retry", || {
                q.retry(queue, id, &taken, &origin, attempts, pause)
            })
            .await
        }
        Verdict::Dead { reason, attempts } => {
            persist("dead-lettering a message", || {
                q.dead(queue, id, &name, &taken, &origin, &reason, attempts)
            })
            .await
        }
    }
    drop(in_flight);
}

/// Consumes an AMQP queue. The first attempt's refusal for good (the
/// queue exists with other flags) goes to `refuse`, and the consumer ends:
/// its agent does not start. Any later one is retried, as a passing
/// failure is.
async fn run_amqp(
    queues: Arc<AmqpQueues>,
    consumer: Consumer,
    mut stopped: oneshot::Receiver<()>,
    refuse: oneshot::Sender<BrokerError>,
) {
    let mut refuse = Some(refuse);
    let queue = consumer.queue;
    let prefetch = consumer.options.prefetch.clamp(1, u32::from(u16::MAX)) as u16;
    let tag = format!("{}-{}", consumer.name, uuid::Uuid::new_v4().simple());
    let mut pause = Duration::from_millis(50);
    let mut open = None;
    'connect: loop {
        if let Some((connection, channel)) = open.take() {
            close_amqp(connection, channel).await;
        }
        let attempt = async {
            let connection = queues.open().await?;
            let (channel, deliveries) = queues
                .consume(&connection, queue, consumer.binding, &tag, prefetch)
                .await?;
            Ok::<_, BrokerError>((connection, channel, deliveries))
        };
        let attempted = unless(&mut stopped, attempt).await;
        let first = refuse.take();
        let (connection, channel, mut deliveries) = match attempted {
            None => break,
            Some(Ok(opened)) => opened,
            Some(Err(e @ BrokerError::QueueMismatch { .. })) if first.is_some() => {
                log::error!(target: LOG_TARGET, "consumer `{}`: cannot consume `{queue}`: {e}", consumer.name);
                if let Some(first) = first {
                    let _ = first.send(e);
                }
                break;
            }
            Some(Err(e)) => {
                // A passing failure: its agent's start waits no more.
                drop(first);
                log::warn!(target: LOG_TARGET, "consumer `{}`: cannot consume `{queue}`: {e}; retrying in {pause:?}", consumer.name);
                actix_rt::time::sleep(pause).await;
                pause = (pause * 2).min(AMQP_RECONNECT_MAX);
                continue;
            }
        };
        // Consuming: its agent's start waits no more.
        drop(first);
        pause = Duration::from_millis(50);
        open = Some((connection, channel));
        loop {
            let Some(Ok(permit)) =
                unless(&mut stopped, consumer.in_flight.clone().acquire_owned()).await
            else {
                break 'connect;
            };
            let delivery = match unless(&mut stopped, deliveries.next()).await {
                None => break 'connect,
                Some(Some(Ok(delivery))) => delivery,
                Some(Some(Err(e))) => {
                    log::warn!(target: LOG_TARGET, "consumer `{}`: consuming `{queue}` failed: {e}; reconnecting", consumer.name);
                    queues.set_up(false);
                    continue 'connect;
                }
                Some(None) => {
                    log::warn!(target: LOG_TARGET, "consumer `{}`: the broker cancelled consuming `{queue}`; reconnecting", consumer.name);
                    continue 'connect;
                }
            };
            let taken = Taken {
                attempts: amqp::attempts(&delivery.properties),
                body: delivery.data.into(),
            };
            let body = taken.body.clone();
            let acker = delivery.acker;
            let (queues_, name, options) =
                (queues.clone(), consumer.name.clone(), consumer.options);
            let settler: Settler = Box::new(move |outcome| {
                let verdict = verdict((&name, queue, options), taken.attempts, outcome);
                let settle = settle_amqp(queues_, (name, queue), taken, acker, verdict, permit);
                // Without a runtime the channel closes unacknowledged: the
                // broker delivers the message again.
                if tokio::runtime::Handle::try_current().is_ok() {
                    actix_rt::spawn(settle);
                }
            });
            if !hand_over(&consumer, body, settler) {
                break 'connect;
            }
        }
    }
    // Every message in flight settled, then the channel closes: what the
    // broker sent ahead (prefetch) and nobody took goes back to the queue.
    let prefetch = consumer.options.prefetch.max(1);
    let _all = consumer.in_flight.acquire_many(prefetch).await;
    if let Some((connection, channel)) = open {
        close_amqp(connection, channel).await;
    }
    log::debug!(target: LOG_TARGET, "consumer `{}` stopped consuming `{queue}`", consumer.name);
}

async fn close_amqp(connection: lapin::Connection, channel: lapin::Channel) {
    let _ = channel.close(200, "consumer stopped").await;
    let _ = connection.close(200, "consumer stopped").await;
}

async fn settle_amqp(
    queues: Arc<AmqpQueues>,
    (name, queue): (Arc<str>, &'static str),
    taken: Taken,
    acker: lapin::acker::Acker,
    verdict: Verdict,
    in_flight: OwnedSemaphorePermit,
) {
    let q = &queues;
    let settled = match verdict {
        Verdict::Ack => q.ack(&acker).await,
        Verdict::Release => q.requeue(&acker).await,
        Verdict::Retry {
            attempts, pause, ..
        } => {
            actix_rt::time::sleep(pause).await;
            persist("publishing a retry", || {
                q.publish(queue, &taken.body, attempts)
            })
            .await;
            q.ack(&acker).await
        }
        Verdict::Dead { reason, attempts } => {
            persist("publishing a dead letter", || {
                q.dead(queue, &name, &taken.body, &reason, attempts)
            })
            .await;
            q.ack(&acker).await
        }
    };
    if let Err(e) = settled {
        // The channel is gone: the broker delivers the message again.
        log::warn!(target: LOG_TARGET, "consumer `{name}`: settling a message of `{queue}` failed: {e}; it will be delivered again");
    }
    drop(in_flight);
}
