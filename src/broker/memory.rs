//! The in-process broker: bounded queues in this process.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::Notify;

use super::handle::DeadLetter;
use super::job::Body;

/// A message in an in-process queue, or held from it until it is settled.
#[derive(Debug)]
pub(super) struct Held {
    pub(super) body: Body,
    /// Attempts it had before this one.
    pub(super) attempts: u32,
}

/// One queue: its messages, at most `capacity` sent and not yet held.
pub(super) struct MemQueue {
    name: String,
    capacity: usize,
    items: Mutex<VecDeque<Held>>,
    /// A message was put in.
    ready: Notify,
    /// A message was held out.
    room: Notify,
    dead: Mutex<Vec<DeadLetter>>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl MemQueue {
    /// Appends a message, waiting while the queue is full.
    pub(super) async fn push(&self, body: Body) {
        let mut body = Some(body);
        while !self.try_push(&mut body) {
            // Full: wait for a message to be taken (registered before the
            // second look, so a take in between is not missed).
            let room = self.room.notified();
            if self.try_push(&mut body) {
                return;
            }
            room.await;
        }
    }

    /// Appends the message if the queue has room; whether it did.
    fn try_push(&self, body: &mut Option<Body>) -> bool {
        let mut items = lock(&self.items);
        if items.len() >= self.capacity {
            return false;
        }
        if let Some(body) = body.take() {
            items.push_back(Held { body, attempts: 0 });
        }
        drop(items);
        self.ready.notify_one();
        true
    }

    /// Puts a held message back at the head (a retry, or one that was not
    /// handled), whatever the capacity: it was counted when it came in.
    pub(super) fn put_back(&self, held: Held) {
        lock(&self.items).push_front(held);
        self.ready.notify_one();
    }

    /// Takes the next message if there is one.
    pub(super) fn try_take(&self) -> Option<Held> {
        let held = lock(&self.items).pop_front()?;
        self.room.notify_one();
        Some(held)
    }

    /// Takes the next message, waiting for one.
    pub(super) async fn take(&self) -> Held {
        loop {
            let ready = self.ready.notified();
            if let Some(held) = lock(&self.items).pop_front() {
                self.room.notify_one();
                return held;
            }
            ready.await;
        }
    }

    fn length(&self) -> usize {
        lock(&self.items).len()
    }

    /// Keeps a message that failed for good, with why.
    pub(super) fn dead(&self, held: Held, reason: String, attempts: u32) {
        let message = match held.body.to_wire() {
            Ok(bytes) => DeadLetter::message_of(&bytes),
            Err(e) => serde_json::Value::String(e.to_string()),
        };
        lock(&self.dead).push(DeadLetter {
            queue: self.name.clone(),
            message,
            reason,
            attempts,
        });
    }
}

/// The queues of one broker, by name.
pub(super) struct Memory {
    queues: Mutex<HashMap<String, Arc<MemQueue>>>,
    /// The queues of typed messages, by the address of their `Queue::NAME`:
    /// found without hashing their names.
    declared: Mutex<Vec<(&'static str, Arc<MemQueue>)>>,
    capacity: usize,
}

impl Memory {
    pub(super) fn new(capacity: usize) -> Self {
        Memory {
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
            capacity: self.capacity,
            items: Mutex::default(),
            ready: Notify::new(),
            room: Notify::new(),
            dead: Mutex::default(),
        });
        queues.insert(name.to_owned(), queue.clone());
        queue
    }

    pub(super) fn length(&self, queue: &str) -> usize {
        self.queue(queue).length()
    }

    pub(super) fn dead_letters(&self, queue: &str) -> Vec<DeadLetter> {
        lock(&self.queue(queue).dead).clone()
    }
}
