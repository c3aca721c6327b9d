//! The one allocation an agent shares with the outside: its weak address
//! (to ask it to stop) and the slot its outcome is delivered to.

use std::sync::atomic::{AtomicU32, AtomicU8, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::task::{Poll, Waker};

use actix::{Actor, WeakAddr};

use crate::{Agent, AgentError, Phase, Stage, StopAgent};

/// Shared by an agent's lifecycle, its [`AgentHandle`](crate::AgentHandle)
/// and the registry of the System it runs in.
pub(crate) struct AgentCell<A: Actor> {
    addr: WeakAddr<A>,
    phase: AtomicU8,
    /// The hook running now: 0 for none, else `stage << 16 | (index + 1)`.
    doing: AtomicU32,
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
    /// The servers the stopping agent waits for.
    waiting_for: Vec<&'static str>,
}

const STAGES: [Stage; 3] = [Stage::PreStart, Stage::PostStart, Stage::PreStop];

impl<A: Actor> AgentCell<A> {
    pub(crate) fn new(addr: WeakAddr<A>) -> Self {
        AgentCell {
            addr,
            phase: AtomicU8::new(Phase::Starting as u8),
            doing: AtomicU32::new(0),
            slot: Mutex::default(),
        }
    }

    /// Notes the hook that runs now (`None`: no hook runs).
    pub(crate) fn set_doing(&self, hook: Option<(Stage, usize)>) {
        let code = hook.map_or(0, |(stage, index)| {
            let stage = STAGES.iter().position(|s| *s == stage).unwrap_or(0) as u32;
            stage << 16 | (index as u32 + 1)
        });
        self.doing.store(code, Ordering::Relaxed);
    }

    /// Notes the servers a stopping agent waits for.
    pub(crate) fn set_waiting_for(&self, servers: Vec<&'static str>) {
        self.slot().waiting_for = servers;
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
    /// The agent's phase.
    fn phase(&self) -> Phase;
    /// What the agent is busy with, for a report when it does not stop in time.
    fn describe(&self) -> String;
    /// What the agent declares.
    fn info(&self) -> crate::AgentInfo;
}

impl<A: Agent> StopTarget for AgentCell<A> {
    fn name(&self) -> &'static str {
        A::NAME
    }

    fn phase(&self) -> Phase {
        match self.phase.load(Ordering::Acquire) {
            0 => Phase::Starting,
            1 => Phase::Running,
            2 => Phase::Stopping,
            _ => Phase::Stopped,
        }
    }

    fn describe(&self) -> String {
        let code = self.doing.load(Ordering::Relaxed);
        if code != 0 {
            let stage = STAGES[(code >> 16) as usize % STAGES.len()];
            let index = (code & 0xffff) as usize - 1;
            if let Some(hook) = A::HOOKS.stage(stage).get(index) {
                return format!("{stage} hook `{}`", hook.name);
            }
        }
        let waiting = &self.slot().waiting_for;
        if !waiting.is_empty() {
            let names: Vec<String> = waiting.iter().map(|n| format!("`{n}`")).collect();
            return format!("server {} still running", names.join(", "));
        }
        format!("{:?}", StopTarget::phase(self)).to_lowercase()
    }

    fn info(&self) -> crate::AgentInfo {
        crate::info::describe::<A>()
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
