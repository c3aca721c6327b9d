//! The in-process broker: bounded queues in this process.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::Notify;

use super::handle::DeadLetter;

/// A message taken from a queue, until it is settled.
#[derive(Debug)]
pub(super) struct Taken {
    pub(super) body: Arc<[u8]>,
    /// Attempts it had before this one.
    pub(super) attempts: u32,
}

#[derive(Default)]
struct MemQueue {
    items: Mutex<VecDeque<Taken>>,
    /// A message was put in.
    ready: Notify,
    /// A message was taken out.
    room: Notify,
    dead: Mutex<Vec<DeadLetter>>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

pub(super) struct Memory {
    queues: Mutex<HashMap<String, Arc<MemQueue>>>,
    capacity: usize,
}

impl Memory {
    pub(super) fn new(capacity: usize) -> Self {
        Memory {
            queues: Mutex::default(),
            capacity,
        }
    }

    fn queue(&self, name: &str) -> Arc<MemQueue> {
        lock(&self.queues)
            .entry(name.to_owned())
            .or_default()
            .clone()
    }

    /// Appends a message, waiting while the queue is full.
    pub(super) async fn push(&self, queue: &str, body: Arc<[u8]>) {
        let queue = self.queue(queue);
        let mut body = Some(body);
        loop {
            let room = queue.room.notified();
            {
                let mut items = lock(&queue.items);
                if items.len() < self.capacity {
                    if let Some(body) = body.take() {
                        items.push_back(Taken { body, attempts: 0 });
                    }
                    drop(items);
                    queue.ready.notify_one();
                    return;
                }
            }
            room.await;
        }
    }

    /// Puts a taken message back at the head (a retry, or one that was not
    /// handled), whatever the capacity: it was counted when it came in.
    pub(super) fn put_back(&self, queue: &str, taken: Taken) {
        let queue = self.queue(queue);
        lock(&queue.items).push_front(taken);
        queue.ready.notify_one();
    }

    /// Takes the next message, waiting for one.
    pub(super) async fn take(&self, queue: &str) -> Taken {
        let queue = self.queue(queue);
        loop {
            let ready = queue.ready.notified();
            if let Some(taken) = lock(&queue.items).pop_front() {
                queue.room.notify_one();
                return taken;
            }
            ready.await;
        }
    }

    pub(super) fn length(&self, queue: &str) -> usize {
        lock(&self.queue(queue).items).len()
    }

    pub(super) fn dead(&self, queue: &str, taken: Taken, reason: String, attempts: u32) {
        let message = DeadLetter::message_of(&taken.body);
        lock(&self.queue(queue).dead).push(DeadLetter {
            queue: queue.to_owned(),
            message,
            reason,
            attempts,
        });
    }

    pub(super) fn dead_letters(&self, queue: &str) -> Vec<DeadLetter> {
        lock(&self.queue(queue).dead).clone()
    }
}
