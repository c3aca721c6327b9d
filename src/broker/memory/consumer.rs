//! An in-process consumer: takes messages from its queue while fewer than
//! its prefetch are in flight, hands them to its agent, and settles each
//! the way its run ended, as [`delivery`](super::super::delivery) says.

use std::pin::pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::{oneshot, Notify};

use super::super::delivery::{unless, verdict, Verdict};
use super::super::job::{ConsumerOptions, Held, Job, JobFn, LocalConsumer, Outcome};
use super::super::observe::settlement;
use super::super::tally::QueueTally;
use super::MemQueue;

/// The most messages one `Consume` carries to a plain `fn` consumer. Its
/// jobs stay under a kilobyte: glibc consolidates its fast bins before a
/// larger allocation, which cost more than the hops a bigger batch saves.
const BATCH: usize = 16;

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
    /// The queue's counts, which each settlement adds to.
    tally: Arc<QueueTally>,
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
    /// A consumer of `items` that hands its messages to `deliver`; a plain
    /// `fn` consumer takes `batches`.
    pub(crate) fn new(
        items: Arc<MemQueue>,
        (name, queue, tally): (Arc<str>, &'static str, Arc<QueueTally>),
        options: ConsumerOptions,
        batches: bool,
        deliver: JobFn,
    ) -> Arc<Self> {
        Arc::new(MemConsumer {
            items,
            name,
            queue,
            tally,
            options,
            deliver,
            limit: options.prefetch.max(1) as usize,
            batches,
            in_flight: AtomicUsize::new(0),
            stopped: AtomicBool::new(false),
            room: Notify::new(),
        })
    }

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

    /// Takes no more messages (at once, not when the loop next runs).
    pub(crate) fn stop(&self) {
        self.stopped.store(true, Ordering::Release);
    }

    fn is_stopped(&self) -> bool {
        self.stopped.load(Ordering::Acquire)
    }

    fn job(self: &Arc<Self>, held: Held) -> Job {
        self.tally.taken();
        Job::local(self.clone(), held)
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

/// The consumer's loop, until `stopped` or its agent is gone.
pub(crate) async fn run(consumer: Arc<MemConsumer>, mut stopped: oneshot::Receiver<()>) {
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

impl LocalConsumer for MemConsumer {
    /// Done, back in the queue (now or after the backoff), or dead.
    fn settle(self: Arc<Self>, mut held: Held, outcome: Outcome) {
        let consumer = self;
        let (items, name) = (&consumer.items, &consumer.name);
        let verdict = verdict(
            (name, consumer.queue, consumer.options),
            held.attempts,
            outcome,
        );
        consumer.tally.count(&verdict);
        items.settled(held.id, name, || settlement(&verdict));
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
