//! The one allocation an agent shares with the outside: its weak address
//! (to ask it to stop) and the slot its outcome is delivered to.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::task::{Poll, Waker};

use actix::{Actor, WeakAddr};

use crate::{Agent, AgentError, Phase, StopAgent};

/// Shared by an agent's lifecycle, its [`AgentHandle`](crate::AgentHandle)
/// and the registry of the System it runs in.
pub(crate) struct AgentCell<A: Actor> {
    addr: WeakAddr<A>,
    phase: AtomicU8,
    slot: Mutex<Slot>,
}

#[derive(Default)]
struct Slot {
    /// Set once, when the lifecycle is over.
    done: bool,
    /// The outcome, until the handle takes it.
    outcome: Option<Result<(), AgentError>>,
    /// The handle waiting for the outcome.
    waker: Option<Waker>,
}

impl<A: Actor> AgentCell<A> {
    pub(crate) fn new(addr: WeakAddr<A>) -> Self {
        AgentCell {
            addr,
            phase: AtomicU8::new(Phase::Starting as u8),
            slot: Mutex::default(),
        }
    }

    /// Mirrors the lifecycle's phase, for observers on other threads.
    pub(crate) fn set_phase(&self, phase: Phase) {
        self.phase.store(phase as u8, Ordering::Release);
    }

    fn slot(&self) -> MutexGuard<'_, Slot> {
        // Plain data behind the lock: a panic elsewhere cannot leave it torn.
        self.slot.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn addr(&self) -> &WeakAddr<A> {
        &self.addr
    }

    /// Delivers the outcome; only the first call counts.
    pub(crate) fn report(&self, outcome: Result<(), AgentError>) {
        let mut slot = self.slot();
        if slot.done {
            return;
        }
        slot.done = true;
        slot.outcome = Some(outcome);
        let waker = slot.waker.take();
        drop(slot);
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    pub(crate) fn is_done(&self) -> bool {
        self.slot().done
    }
}

impl<A: Agent> AgentCell<A> {
    /// Takes the outcome once it is there.
    pub(crate) fn poll_outcome(&self, waker: &Waker) -> Poll<Result<(), AgentError>> {
        let mut slot = self.slot();
        if !slot.done {
            match &mut slot.waker {
                Some(w) => w.clone_from(waker),
                none => *none = Some(waker.clone()),
            }
            return Poll::Pending;
        }
        // A second poll after completion (a misuse of futures) gets `Aborted`
        // rather than a panic.
        Poll::Ready(
            slot.outcome
                .take()
                .unwrap_or(Err(AgentError::Aborted { agent: A::NAME })),
        )
    }
}

/// What the registry needs of an agent, whatever its type.
pub(crate) trait StopTarget: Send + Sync {
    /// The agent's name.
    fn name(&self) -> &'static str;
    /// Sends [`StopAgent`]; `false` when no `Addr` is left (the agent is
    /// already stopping).
    fn request_stop(&self) -> bool;
}

impl<A: Agent> StopTarget for AgentCell<A> {
    fn name(&self) -> &'static str {
        A::NAME
    }

    fn request_stop(&self) -> bool {
        match self.addr.upgrade() {
            Some(addr) => {
                addr.do_send(StopAgent);
                true
            }
            None => false,
        }
    }
}
