//! The in-process broker: bounded queues in this process, and their
//! consumers ([`consumer`]).

mod consumer;

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};

use std::time::Duration;

use tokio::sync::Notify;

use super::error::DeadLetter;
use super::job::{Body, Held};
use super::observe::{self, QueueEvent, Settlement};
use super::tally::{QueueTally, TALLY};
use crate::bus::Observers;
use crate::spans::Origin;
use crate::LOG_TARGET;

pub(super) use consumer::{run, MemConsumer};

/// One queue: its messages, at most `capacity` sent and not yet taken.
pub(super) struct MemQueue {
    name: String,
    /// The broker's ids and observers.
    shared: Arc<Shared>,
    capacity: usize,
    items: Mutex<VecDeque<Held>>,
    /// A message was put in.
    ready: Signal,
    /// A message was taken out.
    room: Signal,
    dead: Mutex<Vec<DeadLetter>>,
    /// Some consumer of this process has taken from it.
    consumed: AtomicBool,
    /// Its first send was looked at (see [`MemQueue::sending`]).
    checked: AtomicBool,
    /// The process's counts of the queue, from its first send: a queue
    /// only looked at (its length, its dead letters) is not counted, nor
    /// named in the metrics.
    tally: OnceLock<Arc<QueueTally>>,
}

/// How long after a first send to a queue nobody consumes the broker says
/// so: agents of one group start at once, and a consumer may come after
/// the first send.
/// The in-process broker as `messaging.system` names it in spans.
pub(crate) const SYSTEM: &str = "in-process";

const UNCONSUMED_GRACE: Duration = Duration::from_secs(1);

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A [`Notify`] that costs one load to signal while nobody waits (the
/// common case: every send and every take signals).
#[derive(Default)]
struct Signal {
    notify: Notify,
    /// How many wait, counted before they look at the queue.
    waiting: AtomicUsize,
}

impl Signal {
    /// Wakes one waiter, if any. Called after the change, made under the
    /// queue's lock: a waiter that looked before it was counted before it
    /// took that lock, so it is seen here.
    fn notify(&self) {
        if self.waiting.load(Ordering::SeqCst) > 0 {
            self.notify.notify_one();
        }
    }

    /// `look` until it finds something, waiting for a signal in between.
    async fn wait_for<T>(&self, mut look: impl FnMut() -> Option<T>) -> T {
        /// Uncounts the waiter however the wait ends (it may be dropped).
        struct Counted<'a>(&'a AtomicUsize);
        impl Drop for Counted<'_> {
            fn drop(&mut self) {
                self.0.fetch_sub(1, Ordering::SeqCst);
            }
        }
        self.waiting.fetch_add(1, Ordering::SeqCst);
        let _counted = Counted(&self.waiting);
        loop {
            // Registered before the look: a `notify_one` in between leaves
            // its permit for this wait.
            let signal = self.notify.notified();
            if let Some(found) = look() {
                return found;
            }
            signal.await;
        }
    }
}

impl MemQueue {
    /// A message is being sent: the first time, looks (after a grace
    /// period) whether any consumer takes from this queue, and warns once
    /// when none does: its messages would wait in memory and be dropped at
    /// exit without a word.
    pub(super) fn sending(self: &Arc<Self>) {
        if self.checked.load(Ordering::Relaxed) || self.checked.swap(true, Ordering::Relaxed) {
            return;
        }
        if tokio::runtime::Handle::try_current().is_err() {
            return;
        }
        let queue = self.clone();
        actix_rt::spawn(async move {
            actix_rt::time::sleep(UNCONSUMED_GRACE).await;
            if !queue.consumed.load(Ordering::Relaxed) {
                log::warn!(
                    target: LOG_TARGET,
                    "broker: messages are sent to the in-process queue `{}`, which no agent of this process consumes; they wait in memory and are dropped at exit",
                    queue.name
                );
            }
        });
    }

    /// A consumer takes from it.
    pub(super) fn mark_consumed(&self) {
        self.consumed.store(true, Ordering::Relaxed);
    }

    /// Appends a message, waiting while the queue is full; its id.
    pub(super) async fn push(&self, body: Body, origin: Origin) -> u64 {
        match self.push_now(body, origin) {
            Ok(id) => id,
            Err(full) => full.wait(self).await,
        }
    }

    /// Appends a message if the queue has room (its id), or hands it back
    /// to wait for room: no future is built while there is room.
    pub(super) fn push_now(&self, body: Body, origin: Origin) -> Result<u64, Full> {
        let id = self.shared.next_id.fetch_add(1, Ordering::Relaxed);
        self.shared
            .observers
            .tell(|| observe::sent(id, &self.name, &body));
        let mut held = Some(Held {
            id,
            body,
            attempts: 0,
            origin,
        });
        if self.try_push(&mut held) {
            Ok(id)
        } else {
            Err(Full { id, held })
        }
    }

    /// Appends the message if the queue has room; whether it did.
    fn try_push(&self, held: &mut Option<Held>) -> bool {
        let mut items = lock(&self.items);
        if items.len() >= self.capacity {
            return false;
        }
        if let Some(held) = held.take() {
            items.push_back(held);
        }
        drop(items);
        self.tally
            .get_or_init(|| TALLY.queue(crate::intern::intern(&self.name)))
            .sent(1, true, None);
        self.ready.notify();
        true
    }

    /// Tells the broker's observers how an attempt at a message ended.
    pub(super) fn settled(&self, id: u64, consumer: &str, settlement: impl FnOnce() -> Settlement) {
        self.shared
            .observers
            .tell(|| observe::settled(id, &self.name, consumer, settlement()));
    }

    /// Puts a held message back (a retry, or one that was not handled),
    /// whatever the capacity: it was counted when it came in. It goes
    /// ahead of the messages sent after it, behind those sent before it
    /// that are back too, so that what a stopping consumer hands back,
    /// one message at a time, returns in the order it was sent.
    pub(super) fn put_back(&self, held: Held) {
        let mut items = lock(&self.items);
        let at = items
            .iter()
            .position(|queued| queued.id > held.id)
            .unwrap_or(items.len());
        items.insert(at, held);
        drop(items);
        self.ready.notify();
    }

    /// Takes the next message if there is one.
    pub(super) fn try_take(&self) -> Option<Held> {
        let held = lock(&self.items).pop_front()?;
        self.room.notify();
        Some(held)
    }

    /// Takes up to `count` messages, under one lock, handing each to
    /// `each`; how many it took.
    pub(super) fn try_take_many(&self, count: usize, each: impl FnMut(Held)) -> usize {
        let mut items = lock(&self.items);
        let taken = count.min(items.len());
        items.drain(..taken).for_each(each);
        drop(items);
        // One waiting sender per message taken, as one take at a time would.
        for _ in 0..taken {
            self.room.notify();
        }
        taken
    }

    /// Takes the next message, waiting for one.
    pub(super) async fn take(&self) -> Held {
        self.ready.wait_for(|| self.try_take()).await
    }

    fn length(&self) -> usize {
        lock(&self.items).len()
    }

    /// Keeps a message that failed for good, with why.
    pub(super) fn dead(&self, held: Held, reason: String, attempts: u32) {
        lock(&self.dead).push(DeadLetter {
            queue: self.name.clone(),
            message: held.body.to_json(),
            reason,
            attempts,
        });
    }
}

/// A message that found its queue full, waiting for room.
pub(super) struct Full {
    id: u64,
    held: Option<Held>,
}

impl Full {
    /// Appends the message once the queue has room; its id.
    pub(super) async fn wait(mut self, queue: &MemQueue) -> u64 {
        queue
            .room
            .wait_for(|| queue.try_push(&mut self.held).then_some(()))
            .await;
        self.id
    }
}

/// What the queues of one broker share: message ids and observers.
#[derive(Default)]
struct Shared {
    next_id: AtomicU64,
    observers: Observers<QueueEvent>,
}

/// The queues of one broker, by name.
pub(super) struct Memory {
    shared: Arc<Shared>,
    queues: Mutex<HashMap<String, Arc<MemQueue>>>,
    /// The queues of typed messages, by the address of their `Queue::NAME`:
    /// found without hashing their names.
    declared: Mutex<Vec<(&'static str, Arc<MemQueue>)>>,
    capacity: usize,
}

impl Memory {
    pub(super) fn new(capacity: usize) -> Self {
        Memory {
            shared: Arc::default(),
            queues: Mutex::default(),
            declared: Mutex::default(),
            capacity,
        }
    }

    /// The queue of a typed message (`Queue::NAME`).
    pub(super) fn declared(&self, name: &'static str) -> Arc<MemQueue> {
        let mut declared = lock(&self.declared);
        let same = |(known, _): &&(&'static str, Arc<MemQueue>)| std::ptr::eq(*known, name);
        if let Some((_, queue)) = declared.iter().find(same) {
            return queue.clone();
        }
        let queue = self.queue(name);
        declared.push((name, queue.clone()));
        queue
    }

    /// The queue named `name`, made on first use.
    pub(super) fn queue(&self, name: &str) -> Arc<MemQueue> {
        let mut queues = lock(&self.queues);
        if let Some(queue) = queues.get(name) {
            return queue.clone();
        }
        let queue = Arc::new(MemQueue {
            name: name.to_owned(),
            shared: self.shared.clone(),
            capacity: self.capacity,
            items: Mutex::default(),
            ready: Signal::default(),
            room: Signal::default(),
            dead: Mutex::default(),
            consumed: AtomicBool::new(false),
            checked: AtomicBool::new(false),
            tally: OnceLock::new(),
        });
        queues.insert(name.to_owned(), queue.clone());
        queue
    }

    pub(super) fn length(&self, queue: &str) -> usize {
        self.queue(queue).length()
    }

    /// The System is over: says which queues still hold messages, which
    /// are dropped now.
    pub(super) fn report_dropped(&self) {
        let queues = lock(&self.queues);
        let mut left: Vec<(&str, usize)> = queues
            .iter()
            .map(|(name, queue)| (name.as_str(), queue.length()))
            .filter(|(_, count)| *count > 0)
            .collect();
        left.sort_unstable();
        for (name, count) in left {
            log::warn!(
                target: LOG_TARGET,
                "broker: {count} message(s) of the in-process queue `{name}` were never consumed and are dropped at exit"
            );
        }
    }

    /// Every message sent and every attempt settled from now on.
    #[cfg(feature = "testkit")]
    pub(super) fn observe(&self) -> tokio::sync::mpsc::UnboundedReceiver<QueueEvent> {
        self.shared.observers.add()
    }

    pub(super) fn dead_letters(&self, queue: &str) -> Vec<DeadLetter> {
        lock(&self.queue(queue).dead).clone()
    }

    /// Puts every dead letter of `queue` back in it, whatever its
    /// capacity (they were counted when they came in); how many.
    pub(super) fn requeue_dead(&self, queue: &str) -> usize {
        let items = self.queue(queue);
        let letters = std::mem::take(&mut *lock(&items.dead));
        let count = letters.len();
        for letter in letters {
            let id = self.shared.next_id.fetch_add(1, Ordering::Relaxed);
            let body = Body::Wire(DeadLetter::body_of(&letter.message).into());
            items.put_back(Held {
                id,
                body,
                attempts: 0,
                origin: Origin::remote(SYSTEM, None),
            });
        }
        count
    }

    /// Forgets the dead letters of `queue`; how many.
    pub(super) fn purge_dead(&self, queue: &str) -> usize {
        std::mem::take(&mut *lock(&self.queue(queue).dead)).len()
    }

    /// Drops the messages waiting in `queue`; how many.
    pub(super) fn purge(&self, queue: &str) -> usize {
        let items = self.queue(queue);
        let dropped = std::mem::take(&mut *lock(&items.items)).len();
        if dropped > 0 {
            items.room.notify();
        }
        dropped
    }
}
