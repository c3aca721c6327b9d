//! Work queues on a server, whatever the server: the seam a queue backend
//! plugs into, and the consumer loop every such backend shares.
//!
//! A backend (`broker/redis/`, `broker/amqp/`, ...) implements a
//! [`Connector`](super::config::Connector) (how its configuration
//! connects),
//! [`RemoteQueues`] (send with the server's confirmation, a queue's length,
//! its dead letters, whether it is connected, and opening a consumer) and
//! [`Source`] (take up to N messages under a lease, in one round trip where
//! the server allows; recover after a failure; retire, handing back what it
//! holds). Each message it takes comes with a [`Ticket`] that settles it:
//! done, back as it was, retried after a pause, or dead-lettered. A backend
//! whose settlements cost a round trip gathers the tickets settled at the
//! same time into one ([`batch`](super::batch)).
//!
//! What a consumer does with them lives here once, naming no backend:
//! at most `prefetch` messages in flight, attempts and backoff (through
//! [`delivery`](super::delivery)), reconnecting with a capped backoff,
//! refusing to start when the server refuses the consumer's declaration,
//! and stopping with every message in flight settled before the source
//! retires.
//!
//! `docs/backends.md` tells how to add a backend.

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use tokio::sync::{oneshot, OwnedSemaphorePermit, Semaphore};

use super::delivery::{unless, verdict, Verdict, FIRST_PAUSE, RECONNECT_MAX};
use super::error::{BrokerError, DeadLetter};
use super::job::{Binding, ConsumerOptions, Job, JobFn, Settler, WireTrace};
use super::link::LinkState;
use super::observe::{self, Watchers};
use super::tally::QueueTally;
use crate::spans::Origin;
use crate::LOG_TARGET;

/// Where a message is sent: its queue, or an exchange and a routing key
/// where the backend has them (AMQP).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Destination<'a> {
    pub(crate) queue: &'a str,
    pub(crate) exchange: Option<&'a str>,
    pub(crate) routing_key: &'a str,
    /// The W3C `traceparent` of the send's span (feature `otel`): a
    /// backend with headers carries it, one without drops it.
    pub(crate) trace: Option<&'a str>,
    /// The message's key ([`Broker::send_keyed`](super::Broker::send_keyed)):
    /// Kafka partitions by it; the other backends keep one order per queue
    /// and have no use for it.
    #[cfg_attr(not(feature = "kafka"), allow(dead_code))]
    pub(crate) key: Option<&'a str>,
}

impl<'a> Destination<'a> {
    /// The queue, for a backend without exchanges (`kind`, named in the
    /// refusal of a send to an exchange).
    #[cfg_attr(not(any(feature = "nats", feature = "kafka")), allow(dead_code))]
    pub(crate) fn queue_only(&self, kind: &str) -> Result<&'a str, BrokerError> {
        match self.exchange {
            None => Ok(self.queue),
            Some(exchange) => Err(BrokerError::Config {
                reason: format!(
                    "exchange `{exchange}`: exchanges are AMQP's; the {kind} broker sends to queues"
                ),
            }),
        }
    }
}

/// Whom a backend opens a source for.
#[derive(Debug, Clone)]
pub(crate) struct ConsumerSpec {
    pub(crate) queue: &'static str,
    pub(crate) binding: Binding,
    pub(crate) name: Arc<str>,
    pub(crate) options: ConsumerOptions,
    /// The queue's counts, which each settlement adds to.
    pub(crate) tally: Arc<QueueTally>,
    /// The backend (`messaging.system` of the consumer's spans).
    pub(crate) system: &'static str,
}

impl ConsumerSpec {
    /// Refuses, for good, a consumer bound to an exchange, for a backend
    /// without exchanges.
    #[cfg_attr(not(any(feature = "nats", feature = "kafka")), allow(dead_code))]
    pub(crate) fn without_exchange(&self) -> Result<(), BrokerError> {
        match self.binding.exchange {
            None => Ok(()),
            Some(exchange) => Err(BrokerError::QueueMismatch {
                queue: self.queue.to_owned(),
                durable: true,
                reason: format!("bound to exchange `{exchange}`: exchanges are AMQP's"),
            }),
        }
    }
}

/// Queues on a server.
pub(crate) trait RemoteQueues: Send + Sync + 'static {
    /// Whether the last operation found the server there, and how often
    /// it went away or failed.
    fn link(&self) -> &LinkState;

    /// Sends `body`; resolves once the server has it (its confirmation).
    fn send<'a>(
        &'a self,
        to: Destination<'a>,
        body: Vec<u8>,
    ) -> BoxFuture<'a, Result<(), BrokerError>>;

    /// Sends `bodies` in their order; resolves once the server has every
    /// one. A backend sends them in one round trip where it can (the
    /// default sends them one after another).
    fn send_batch<'a>(
        &'a self,
        to: Destination<'a>,
        bodies: Vec<Vec<u8>>,
    ) -> BoxFuture<'a, Result<(), BrokerError>> {
        Box::pin(async move {
            for body in bodies {
                self.send(to, body).await?;
            }
            Ok(())
        })
    }

    /// How many messages wait in `queue` (not counting those taken).
    fn length<'a>(&'a self, queue: &'a str) -> BoxFuture<'a, Result<usize, BrokerError>>;

    /// The dead letters of `queue`, oldest first.
    fn dead_letters<'a>(
        &'a self,
        queue: &'a str,
    ) -> BoxFuture<'a, Result<Vec<DeadLetter>, BrokerError>>;

    /// Sends every dead letter of `queue` back to the queue (its message as
    /// it was sent, attempts counted afresh); how many.
    fn requeue_dead<'a>(&'a self, queue: &'a str) -> BoxFuture<'a, Result<usize, BrokerError>>;

    /// Deletes the dead letters of `queue`; how many.
    fn purge_dead<'a>(&'a self, queue: &'a str) -> BoxFuture<'a, Result<usize, BrokerError>>;

    /// Deletes the messages waiting in `queue` (not those being handled);
    /// how many.
    fn purge<'a>(&'a self, queue: &'a str) -> BoxFuture<'a, Result<usize, BrokerError>>;

    /// The System is ending (every agent stopped, every consumer retired):
    /// close what is open, while the runtime still runs.
    fn close(&self) -> BoxFuture<'_, ()> {
        Box::pin(async {})
    }

    /// Opens what a consumer takes its messages from. A refusal for good
    /// is [`BrokerError::QueueMismatch`]: the consumer's agent does not
    /// start; any other error is retried.
    fn open(
        self: Arc<Self>,
        consumer: ConsumerSpec,
    ) -> BoxFuture<'static, Result<Box<dyn Source>, BrokerError>>;
}

/// A message taken from a server: its body, the attempts it had, and what
/// settles it.
pub(crate) struct Taken {
    pub(crate) body: Arc<[u8]>,
    pub(crate) attempts: u32,
    pub(crate) ticket: Box<dyn Ticket>,
    /// The `traceparent` header it came with, if any.
    pub(crate) trace: Option<Box<str>>,
}

/// One consumer's messages on a server.
pub(crate) trait Source: Send + 'static {
    /// Up to `most` (at least 1) messages, in the order the queue gives
    /// them, waiting at most about `longest` for the first (none when none
    /// came: the loop asks again). A backend takes what is there at once
    /// (one round trip where the server allows) and waits only while
    /// nothing is.
    fn take(
        &mut self,
        most: usize,
        longest: Duration,
    ) -> BoxFuture<'_, Result<Vec<Taken>, BrokerError>>;

    /// After a failed take: reconnect (the loop pauses before, and calls
    /// again after the next failure).
    fn recover(&mut self) -> BoxFuture<'_, Result<(), BrokerError>>;

    /// Every message it handed out is settled: end the consumer on the
    /// server (what it took ahead goes back to the queue).
    fn retire(self: Box<Self>) -> BoxFuture<'static, ()>;
}

/// What settles one taken message on its server.
pub(crate) trait Ticket: Send + 'static {
    /// Settles the message as `verdict` says, and drops `slot` once the
    /// server has the settlement (a backend keeps trying through passing
    /// failures, or leaves the message to be delivered again, and logs
    /// which). Called on the consumer's System; it returns at once (the
    /// work goes on in a task, or with other settlements in a batch).
    fn settle(self: Box<Self>, verdict: Verdict, slot: Slot);
}

/// A consumer's slot for one message in flight: free again when dropped,
/// which a backend does once the message is settled on its server.
pub(crate) struct Slot(#[allow(dead_code)] OwnedSemaphorePermit);

#[cfg(all(test, feature = "kafka"))]
impl Slot {
    /// A slot of its own, for a test that settles by hand.
    pub(crate) fn alone() -> Slot {
        let permit = Arc::new(Semaphore::new(1)).try_acquire_owned();
        Slot(permit.expect("a new semaphore has a permit"))
    }
}

/// What a consumer loop knows about itself.
struct Consumer {
    spec: ConsumerSpec,
    deliver: JobFn,
    /// A plain `fn` consumer: several messages in one mailbox message.
    batches: bool,
    in_flight: Arc<Semaphore>,
    /// Who watches the broker (the test kit).
    watchers: Arc<Watchers>,
}

/// A consumer of queues on a server, until `stopped`: its first attempt to
/// open reports a refusal for good to `refuse` (and the consumer ends), or
/// drops it once consuming or trying again after a passing failure.
pub(crate) async fn run(
    (queues, watchers): (Arc<dyn RemoteQueues>, Arc<Watchers>),
    spec: ConsumerSpec,
    (deliver, batches): (JobFn, bool),
    mut stopped: oneshot::Receiver<()>,
    refuse: oneshot::Sender<BrokerError>,
) {
    let limit = spec.options.prefetch.max(1) as usize;
    let consumer = Consumer {
        spec,
        deliver,
        batches,
        in_flight: Arc::new(Semaphore::new(limit)),
        watchers,
    };
    let Some(source) = open(queues, &consumer.spec, &mut stopped, refuse).await else {
        return;
    };
    let source = consume(&consumer, source, &mut stopped).await;
    // Every message in flight settled (all permits back), then the source
    // retires: what it took ahead goes back.
    let _all = consumer.in_flight.acquire_many(limit as u32).await;
    source.retire().await;
    let (name, queue) = (&consumer.spec.name, consumer.spec.queue);
    log::debug!(target: LOG_TARGET, "consumer `{name}` stopped taking from `{queue}`");
}

/// Opens the consumer's source, trying again after passing failures.
async fn open(
    queues: Arc<dyn RemoteQueues>,
    spec: &ConsumerSpec,
    stopped: &mut oneshot::Receiver<()>,
    refuse: oneshot::Sender<BrokerError>,
) -> Option<Box<dyn Source>> {
    let mut refuse = Some(refuse);
    let mut pause = FIRST_PAUSE;
    let (name, queue) = (&spec.name, spec.queue);
    loop {
        let first = refuse.take();
        match unless(stopped, queues.clone().open(spec.clone())).await? {
            Ok(source) => return Some(source),
            Err(e @ BrokerError::QueueMismatch { .. }) if first.is_some() => {
                log::error!(target: LOG_TARGET, "consumer `{name}`: cannot consume `{queue}`: {e}");
                if let Some(first) = first {
                    let _ = first.send(e);
                }
                return None;
            }
            Err(e) => {
                // A passing failure: its agent's start waits no more.
                drop(first);
                log::warn!(target: LOG_TARGET, "consumer `{name}`: cannot start on `{queue}`: {e}; retrying in {pause:?}");
                unless(stopped, actix_rt::time::sleep(pause)).await?;
                pause = (pause * 2).min(RECONNECT_MAX);
            }
        }
    }
}

/// Takes and hands over messages until `stopped` or the agent is gone.
async fn consume(
    consumer: &Consumer,
    mut source: Box<dyn Source>,
    stopped: &mut oneshot::Receiver<()>,
) -> Box<dyn Source> {
    let (name, queue) = (&consumer.spec.name, consumer.spec.queue);
    let limit = consumer.spec.options.prefetch.max(1) as usize;
    let mut pause = FIRST_PAUSE;
    loop {
        // A slot free, then every other free slot: one take fills them all.
        let Some(Ok(first)) = unless(stopped, consumer.in_flight.clone().acquire_owned()).await
        else {
            break;
        };
        let mut permits = vec![first];
        while let Ok(more) = consumer.in_flight.clone().try_acquire_owned() {
            permits.push(more);
        }
        // With messages in flight, one of them may fail and be due again
        // after the backoff: the wait for a new message ends by then (a
        // zero backoff waits 10 ms, not a busy loop).
        let longest = if permits.len() < limit {
            consumer.spec.options.backoff.max(Duration::from_millis(10))
        } else {
            Duration::MAX
        };
        let taken = match unless(stopped, source.take(permits.len(), longest)).await {
            None => break,
            Some(Ok(taken)) => {
                if !taken.is_empty() {
                    pause = FIRST_PAUSE;
                }
                taken
            }
            Some(Err(e)) => {
                log::warn!(target: LOG_TARGET, "consumer `{name}`: taking from `{queue}` failed: {e}; retrying in {pause:?}");
                if unless(stopped, actix_rt::time::sleep(pause))
                    .await
                    .is_none()
                {
                    break;
                }
                pause = (pause * 2).min(RECONNECT_MAX);
                if let Err(e) = source.recover().await {
                    log::debug!(target: LOG_TARGET, "consumer `{name}`: {e}");
                }
                continue;
            }
        };
        // A backend hands out no more than asked; the slots left over are
        // free again as `permits` drops.
        let mut jobs = taken
            .into_iter()
            .zip(permits)
            .map(|(t, p)| job(consumer, t, p));
        if !hand_over(consumer, &mut jobs) {
            break;
        }
    }
    source
}

/// Hands taken messages to the consumer's agent: a plain `fn` consumer
/// gets up to [`BATCH`] in one mailbox message, others one at a time;
/// `false` when the agent is gone (what it did not get stays unsettled on
/// the server, which hands it out again).
fn hand_over(consumer: &Consumer, jobs: &mut impl Iterator<Item = Job>) -> bool {
    while let Some(first) = jobs.next() {
        let more = if consumer.batches {
            jobs.by_ref().take(BATCH - 1).collect()
        } else {
            Vec::new()
        };
        if !(consumer.deliver)(first, more) {
            return false;
        }
    }
    true
}

/// The most messages a plain `fn` consumer is handed in one mailbox
/// message (as in-process).
const BATCH: usize = 16;

/// A taken message as a job for the consumer's agent, its slot held until
/// it is settled on the server.
fn job(consumer: &Consumer, taken: Taken, permit: OwnedSemaphorePermit) -> Job {
    let Taken {
        body,
        attempts,
        ticket,
        trace,
    } = taken;
    let queue = consumer.spec.queue;
    let watchers = consumer.watchers.clone();
    let id = watchers.next_id();
    watchers.tell(|| observe::taken(id, queue, &body));
    let (name, options) = (consumer.spec.name.clone(), consumer.spec.options);
    let tally = consumer.spec.tally.clone();
    tally.taken();
    let settler: Settler = Box::new(move |outcome| {
        let verdict = verdict((&name, queue, options), attempts, outcome);
        tally.count(&verdict);
        watchers.tell(|| observe::settled(id, queue, &name, observe::settlement(&verdict)));
        // Without a runtime (the System is going) the message stays
        // unsettled on the server, which hands it out again.
        if tokio::runtime::Handle::try_current().is_ok() {
            ticket.settle(verdict, Slot(permit));
        }
    });
    let trace = WireTrace {
        origin: Origin::remote_owned(consumer.spec.system, trace),
        attempts_before: attempts,
    };
    Job::wire(body, settler, trace)
}
