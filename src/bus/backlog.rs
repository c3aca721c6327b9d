//! What an agent has buffered from the Redis bus: signals delivered to its
//! mailbox and not yet handled, bounded in count and bytes. Past the bound
//! the newest signals are dropped (pub/sub is at-most-once anyway): the
//! ones already queued keep their order, and memory stays bounded whatever
//! a publisher does.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use crate::LOG_TARGET;

/// How much one agent may buffer from the bus: [`BusConfig::buffer`](super::BusConfig::buffer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Bound {
    /// Signals waiting in the agent's mailbox.
    pub(crate) messages: usize,
    /// Their payloads' bytes.
    pub(crate) bytes: usize,
}

/// One agent's buffered signals, shared by its delivery function (which
/// admits them) and the tickets in its mailbox (which release them).
#[derive(Debug)]
pub(crate) struct Backlog {
    agent: &'static str,
    bound: Bound,
    messages: AtomicUsize,
    bytes: AtomicUsize,
    /// Dropped since the buffer last had room: logged once per burst.
    dropping: AtomicU64,
}

/// A signal's place in its agent's buffer, released when the agent takes
/// the signal up (or drops it unhandled).
#[derive(Debug)]
pub struct Ticket {
    backlog: Arc<Backlog>,
    bytes: usize,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.backlog.messages.fetch_sub(1, Ordering::AcqRel);
        self.backlog.bytes.fetch_sub(self.bytes, Ordering::AcqRel);
    }
}

impl Backlog {
    pub(crate) fn new(agent: &'static str, bound: Bound) -> Arc<Backlog> {
        Arc::new(Backlog {
            agent,
            bound,
            messages: AtomicUsize::new(0),
            bytes: AtomicUsize::new(0),
            dropping: AtomicU64::new(0),
        })
    }

    /// A place for a signal of `bytes`, or `None` when the agent's buffer
    /// is full (the caller drops the signal; the first drop of a burst is
    /// logged, and the burst's count once the buffer has room again).
    pub(crate) fn admit(self: &Arc<Self>, bytes: usize) -> Option<Ticket> {
        let messages = self.messages.fetch_add(1, Ordering::AcqRel);
        let held = self.bytes.fetch_add(bytes, Ordering::AcqRel);
        // One signal is always let in, however large (`max_payload` bounds
        // each one).
        let full = messages > 0
            && (messages >= self.bound.messages || held.saturating_add(bytes) > self.bound.bytes);
        if full {
            self.messages.fetch_sub(1, Ordering::AcqRel);
            self.bytes.fetch_sub(bytes, Ordering::AcqRel);
            if self.dropping.fetch_add(1, Ordering::AcqRel) == 0 {
                log::warn!(
                    target: LOG_TARGET,
                    "agent `{}`: {messages} signal(s) of {held} bytes wait in its mailbox, its bus buffer's bound ({} signals, {} bytes): dropping new signals until it catches up",
                    self.agent,
                    self.bound.messages,
                    self.bound.bytes
                );
            }
            return None;
        }
        if self.dropping.load(Ordering::Acquire) > 0 {
            let dropped = self.dropping.swap(0, Ordering::AcqRel);
            if dropped > 0 {
                log::warn!(
                    target: LOG_TARGET,
                    "agent `{}`: its bus buffer has room again; {dropped} signal(s) were dropped",
                    self.agent
                );
            }
        }
        Some(Ticket {
            backlog: self.clone(),
            bytes,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bound_holds_in_count_and_bytes_and_tickets_make_room() {
        let backlog = Backlog::new(
            "a",
            Bound {
                messages: 3,
                bytes: 100,
            },
        );
        let first = backlog.admit(60).expect("room");
        let second = backlog.admit(30).expect("room");
        assert!(backlog.admit(20).is_none(), "over the bytes");
        let third = backlog.admit(10).expect("room");
        assert!(backlog.admit(0).is_none(), "over the count");
        drop((first, second, third));
        // One always fits, however large.
        let large = backlog.admit(1000).expect("alone");
        assert!(backlog.admit(1).is_none());
        drop(large);
        assert_eq!(backlog.messages.load(Ordering::Acquire), 0);
        assert_eq!(backlog.bytes.load(Ordering::Acquire), 0);
    }
}
