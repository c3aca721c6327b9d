//! The one allocation an agent shares with the outside: its weak address
//! (to ask it to stop) and the slot its outcome is delivered to.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::task::{Poll, Waker};

use actix::{Actor, WeakAddr};

use super::declare::Schedule;
use crate::agent::Agent;
use crate::broker::BrokerError;
use crate::bus::SignalError;
use crate::error::{AgentError, HookFailure, Stage, TimedOut};
use crate::info::{AgentInfo, HandlerRuns, TaskRuns};
use crate::messages::StopAgent;
use crate::phase::Phase;
use crate::registry::Tracked;

/// Shared by an agent's lifecycle, its [`AgentHandle`](crate::AgentHandle)
/// and the registry of the System it runs in.
pub(crate) struct AgentCell<A: Actor> {
    /// The agent's name: its type's, or the one it was started with.
    name: &'static str,
    addr: WeakAddr<A>,
    phase: AtomicU8,
    /// Whether a stop was asked for through the handle or the registry
    /// (the request may still wait in the mailbox).
    stop_asked: AtomicBool,
    /// The hook running now: 0 for none, else `stage << 16 | (index + 1)`.
    doing: AtomicU32,
    /// The runs that went well, of each task, then each receiver, then
    /// each consumer (counted without the lock: one per run; empty for
    /// an agent without any, which allocates nothing).
    ok: Box<[AtomicU64]>,
    /// The durations of the runs of each task, receiver and consumer, in
    /// the same order.
    #[cfg(feature = "metrics")]
    durations: Box<[crate::durations::RunHistogram]>,
    shared: Mutex<Shared>,
}

/// How an agent's lifecycle ended, as the cell keeps it. The error is
/// boxed: it keeps the cell small enough for the allocator's fast bins,
/// which every agent's start and stop pays for.
pub(crate) type Outcome = Result<(), Box<AgentError>>;

/// What the agent and its observers hand each other under the cell's lock.
#[derive(Default)]
struct Shared {
    /// The outcome, once the lifecycle is over; every waiter gets a copy.
    outcome: Option<Outcome>,
    /// The waiter to wake when it is (nearly always the only one).
    waker: Option<Waker>,
    /// The rest, allocated on first use: most agents never need it, and a
    /// small cell keeps the per-agent allocation cheap.
    more: Option<Box<More>>,
}

/// What only some agents need in their cell.
#[derive(Default)]
struct More {
    /// Waiters beyond the first, for handles shared by several parties.
    wakers: Vec<Waker>,
    /// The servers the stopping agent waits for.
    waiting_for: Vec<&'static str>,
    /// The runs of each task that went wrong (by task index, grown on use).
    runs: Vec<TaskRuns>,
    /// The addresses servers published, by server name.
    addresses: Vec<(&'static str, SocketAddr)>,
    /// Who waits for a server's address (woken by each published address
    /// and by the outcome).
    address_wakers: Vec<Waker>,
    /// The runs of each receiver that went wrong (by index, grown on use).
    receiver_runs: Vec<HandlerRuns>,
    /// The runs of each consumer that went wrong (by index, grown on use).
    consumer_runs: Vec<HandlerRuns>,
    /// Its tasks' schedules when a deployment set them (one per task, in
    /// declaration order); `None`: as declared.
    schedules: Option<Box<[Schedule]>>,
}

/// A run of a task, receiver or consumer, by its index in the agent's
/// table.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Run {
    Task(usize),
    Receiver(usize),
    Consumer(usize),
}

impl Run {
    /// Its handler's place among the agent's handlers: tasks, then
    /// receivers, then consumers (the order of the cell's counts).
    pub(crate) fn slot<A: Agent>(self) -> usize {
        let hooks = &A::HOOKS;
        match self {
            Run::Task(index) => index,
            Run::Receiver(index) => hooks.tasks.len() + index,
            Run::Consumer(index) => hooks.tasks.len() + hooks.receivers.len() + index,
        }
    }
}

/// A receiver or a consumer, by its index in the agent's table.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Handler {
    Receiver(usize),
    Consumer(usize),
}

impl Shared {
    fn more(&mut self) -> &mut More {
        self.more.get_or_insert_with(Box::default)
    }
}

/// How a task or receiver run went wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BadRun {
    Failed,
    Panicked,
    TimedOut,
    /// A receiver's delivery did not fit its signal's type.
    BadInput,
}

impl BadRun {
    /// Its name, as outcomes are named in metrics and spans.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            BadRun::Failed => "failed",
            BadRun::Panicked => "panicked",
            BadRun::TimedOut => "timed_out",
            BadRun::BadInput => "bad_input",
        }
    }

    /// How `failure` went wrong.
    pub(crate) fn of(failure: &HookFailure) -> BadRun {
        match failure {
            HookFailure::Panic(_) => BadRun::Panicked,
            HookFailure::Error(e) if e.downcast_ref::<TimedOut>().is_some() => BadRun::TimedOut,
            HookFailure::Error(e) if e.downcast_ref::<SignalError>().is_some() => BadRun::BadInput,
            HookFailure::Error(e)
                if matches!(
                    e.downcast_ref::<BrokerError>(),
                    Some(BrokerError::Decode { .. })
                ) =>
            {
                BadRun::BadInput
            }
            HookFailure::Error(_) => BadRun::Failed,
        }
    }
}

const STAGES: [Stage; 3] = [Stage::PreStart, Stage::PostStart, Stage::PreStop];

/// The index of `stage` in [`STAGES`] (servers are not hooks: never asked).
const fn stage_index(stage: Stage) -> u32 {
    match stage {
        Stage::PreStart | Stage::Server => 0,
        Stage::PostStart => 1,
        Stage::PreStop => 2,
    }
}

impl<A: Actor> AgentCell<A> {
    /// A new agent's cell; `schedules` are its tasks' schedules when a
    /// deployment set them; `handlers` counts its tasks, receivers and
    /// consumers.
    pub(crate) fn new(
        name: &'static str,
        addr: WeakAddr<A>,
        schedules: Option<Box<[Schedule]>>,
        handlers: usize,
    ) -> Self {
        let shared = Shared {
            more: schedules.map(|schedules| {
                Box::new(More {
                    schedules: Some(schedules),
                    ..More::default()
                })
            }),
            ..Shared::default()
        };
        AgentCell {
            name,
            addr,
            phase: AtomicU8::new(Phase::Starting as u8),
            stop_asked: AtomicBool::new(false),
            doing: AtomicU32::new(0),
            ok: (0..handlers).map(|_| AtomicU64::new(0)).collect(),
            #[cfg(feature = "metrics")]
            durations: (0..handlers).map(|_| Default::default()).collect(),
            shared: Mutex::new(shared),
        }
    }

    /// Notes the hook that runs now (`None`: no hook runs).
    pub(crate) fn set_doing(&self, hook: Option<(Stage, usize)>) {
        let code = hook.map_or(0, |(stage, index)| {
            stage_index(stage) << 16 | (index as u32 + 1)
        });
        self.doing.store(code, Ordering::Relaxed);
    }

    /// Notes the servers a stopping agent waits for.
    pub(crate) fn set_waiting_for(&self, servers: Vec<&'static str>) {
        self.shared().more().waiting_for = servers;
    }

    /// Mirrors the lifecycle's phase, for observers on other threads.
    pub(crate) fn set_phase(&self, phase: Phase) {
        self.phase.store(phase as u8, Ordering::Release);
    }

    fn shared(&self) -> MutexGuard<'_, Shared> {
        // Plain data behind the lock: a panic elsewhere cannot leave it torn.
        self.shared.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The agent's name.
    pub(crate) fn name(&self) -> &'static str {
        self.name
    }

    pub(crate) fn addr(&self) -> &WeakAddr<A> {
        &self.addr
    }

    /// Delivers the outcome; only the first call counts.
    pub(crate) fn report(&self, outcome: Outcome) {
        let mut shared = self.shared();
        if shared.outcome.is_some() {
            return;
        }
        #[cfg(feature = "metrics")]
        crate::metrics::agent_stopped(self.name, &outcome);
        shared.outcome = Some(outcome);
        let waker = shared.waker.take();
        let more = match shared.more.as_mut() {
            Some(more) => {
                let mut wakers = std::mem::take(&mut more.wakers);
                wakers.append(&mut more.address_wakers);
                wakers
            }
            None => Vec::new(),
        };
        drop(shared);
        if let Some(waker) = waker {
            waker.wake();
        }
        more.into_iter().for_each(Waker::wake);
    }

    /// Notes how long a run of the handler at `slot` took (tasks, then
    /// receivers, then consumers).
    #[cfg(feature = "metrics")]
    pub(crate) fn record_duration(&self, slot: usize, took: std::time::Duration) {
        if let Some(histogram) = self.durations.get(slot) {
            histogram.record(took);
        }
    }

    /// The runs that went well of each task, receiver and consumer, in
    /// that order.
    fn ok_runs(&self) -> Vec<u64> {
        self.ok
            .iter()
            .map(|ok| ok.load(Ordering::Relaxed))
            .collect()
    }

    /// Counts a run of task `index` that went wrong.
    pub(crate) fn count_bad_run(&self, index: usize, bad: BadRun) {
        let mut shared = self.shared();
        let runs = grown(&mut shared.more().runs, index);
        match bad {
            BadRun::Failed | BadRun::BadInput => runs.failed += 1,
            BadRun::Panicked => runs.panicked += 1,
            BadRun::TimedOut => runs.timed_out += 1,
        }
        runs.last_failure = Some(chrono::Utc::now().to_rfc3339());
    }

    /// Whether a stop was asked for (see `request_stop`).
    pub(crate) fn stop_asked(&self) -> bool {
        self.stop_asked.load(Ordering::Relaxed)
    }

    /// Counts a signal receiver `receiver` dropped unhandled.
    pub(crate) fn count_dropped(&self, receiver: usize) {
        let mut shared = self.shared();
        grown(&mut shared.more().receiver_runs, receiver).dropped += 1;
    }

    /// Counts a run of a receiver or consumer that went wrong.
    pub(crate) fn count_bad_handler_run(&self, handler: Handler, bad: BadRun) {
        let mut shared = self.shared();
        let more = shared.more();
        let runs = match handler {
            Handler::Receiver(index) => grown(&mut more.receiver_runs, index),
            Handler::Consumer(index) => grown(&mut more.consumer_runs, index),
        };
        match bad {
            BadRun::Failed => runs.failed += 1,
            BadRun::Panicked => runs.panicked += 1,
            BadRun::TimedOut => runs.timed_out += 1,
            BadRun::BadInput => runs.bad_input += 1,
        }
        runs.last_failure = Some(chrono::Utc::now().to_rfc3339());
    }

    /// Counts due times of task `index` that were skipped.
    pub(crate) fn count_skipped(&self, index: usize, skipped: u64) {
        grown(&mut self.shared().more().runs, index).skipped += skipped;
    }

    /// Notes an address server `server` listens on.
    pub(crate) fn publish_address(&self, server: &'static str, addr: SocketAddr) {
        let mut shared = self.shared();
        let more = shared.more();
        if !more.addresses.contains(&(server, addr)) {
            more.addresses.push((server, addr));
        }
        let waiting = std::mem::take(&mut more.address_wakers);
        drop(shared);
        waiting.into_iter().for_each(Waker::wake);
    }

    /// The first address server `server` publishes: `Ready(Some)` once it
    /// did, `Ready(None)` when the agent's lifecycle ended first.
    pub(crate) fn poll_address(&self, server: &str, waker: &Waker) -> Poll<Option<SocketAddr>> {
        if let Some(addr) = self.server_address(server) {
            return Poll::Ready(Some(addr));
        }
        let mut shared = self.shared();
        if shared.outcome.is_some() {
            return Poll::Ready(None);
        }
        let wakers = &mut shared.more().address_wakers;
        if !wakers.iter().any(|w| w.will_wake(waker)) {
            wakers.push(waker.clone());
        }
        Poll::Pending
    }

    /// Forgets the addresses of server `server` (it is starting again).
    pub(crate) fn clear_addresses(&self, server: &'static str) {
        if let Some(more) = self.shared().more.as_mut() {
            more.addresses.retain(|(name, _)| *name != server);
        }
    }

    /// The first address server `server` published.
    pub(crate) fn server_address(&self, server: &str) -> Option<SocketAddr> {
        let shared = self.shared();
        shared
            .more
            .as_ref()?
            .addresses
            .iter()
            .find(|(name, _)| *name == server)
            .map(|(_, addr)| *addr)
    }

    pub(crate) fn is_done(&self) -> bool {
        self.shared().outcome.is_some()
    }

    /// The outcome once it is there; any number of waiters may poll.
    pub(crate) fn poll_outcome(&self, waker: &Waker) -> Poll<Result<(), AgentError>> {
        let mut shared = self.shared();
        if let Some(outcome) = &shared.outcome {
            return Poll::Ready(outcome.clone().map_err(|e| *e));
        }
        let shared = &mut *shared;
        match &shared.waker {
            None => shared.waker = Some(waker.clone()),
            Some(first) if first.will_wake(waker) => {}
            Some(_) => {
                let wakers = &mut shared.more().wakers;
                if !wakers.iter().any(|w| w.will_wake(waker)) {
                    wakers.push(waker.clone());
                }
            }
        }
        Poll::Pending
    }
}

/// The counts at `index`, the list grown to hold it.
fn grown<T: Default + Clone>(runs: &mut Vec<T>, index: usize) -> &mut T {
    if runs.len() <= index {
        runs.resize(index + 1, T::default());
    }
    &mut runs[index]
}

impl<A: Agent> AgentCell<A> {
    /// Counts a run that went well.
    pub(crate) fn count_ok(&self, run: Run) {
        if let Some(ok) = self.ok.get(run.slot::<A>()) {
            ok.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Its tasks' schedules as a deployment set them (one per task); empty
    /// when they are as declared (the table's, read where needed).
    pub(crate) fn schedules(&self) -> Box<[Schedule]> {
        let shared = self.shared();
        shared
            .more
            .as_ref()
            .and_then(|m| m.schedules.clone())
            .unwrap_or_default()
    }

    /// What the agent declares, with what it did so far: task runs that
    /// went wrong, addresses its servers published.
    pub(crate) fn running_info(&self) -> AgentInfo {
        let mut info = self.own_info();
        info.bus = crate::bus::current_info();
        info.broker = crate::broker::current_info();
        info
    }

    /// What the agent declares and its runs, without its System's bus and
    /// broker (whose call and queue tables a caller after runs alone need
    /// not copy).
    fn own_info(&self) -> AgentInfo {
        let (mut runs, addresses, mut receiver_runs, mut consumer_runs) = {
            let shared = self.shared();
            match &shared.more {
                Some(more) => (
                    more.runs.clone(),
                    more.addresses.clone(),
                    more.receiver_runs.clone(),
                    more.consumer_runs.clone(),
                ),
                None => Default::default(),
            }
        };
        let mut ok = self.ok_runs().into_iter();
        let hooks = &A::HOOKS;
        for index in 0..hooks.tasks.len() {
            grown(&mut runs, index).ok = ok.next().unwrap_or(0);
        }
        for index in 0..hooks.receivers.len() {
            grown(&mut receiver_runs, index).ok = ok.next().unwrap_or(0);
        }
        for index in 0..hooks.consumers.len() {
            grown(&mut consumer_runs, index).ok = ok.next().unwrap_or(0);
        }
        let schedules = self.schedules();
        super::describe::describe_running::<A>(
            self.name,
            (&runs, &schedules),
            &addresses,
            &receiver_runs,
            &consumer_runs,
        )
    }
}

impl<A: Agent> Tracked for AgentCell<A> {
    fn name(&self) -> &'static str {
        self.name
    }

    fn phase(&self) -> Phase {
        Phase::from_u8(self.phase.load(Ordering::Acquire))
    }

    fn activity(&self) -> String {
        let code = self.doing.load(Ordering::Relaxed);
        if code != 0 {
            let stage = STAGES[(code >> 16) as usize % STAGES.len()];
            let index = (code & 0xffff) as usize - 1;
            if let Some(hook) = A::HOOKS.stage(stage).get(index) {
                return format!("{stage} hook `{}`", hook.name);
            }
        }
        let shared = self.shared();
        let waiting = shared.more.as_ref().map_or(&[][..], |m| &m.waiting_for[..]);
        if !waiting.is_empty() {
            let names: Vec<String> = waiting.iter().map(|n| format!("`{n}`")).collect();
            return format!("server {} still running", names.join(", "));
        }
        Tracked::phase(self).to_string()
    }

    fn info(&self) -> AgentInfo {
        self.running_info()
    }

    #[cfg(feature = "metrics")]
    fn runs_info(&self) -> AgentInfo {
        self.own_info()
    }

    fn counts_runs(&self) -> bool {
        !self.ok.is_empty()
    }

    #[cfg(feature = "metrics")]
    fn run_durations(&self) -> crate::durations::HandlerDurations {
        let schedules = self.schedules();
        let names = super::meters::handlers::<A>(&schedules);
        names
            .into_iter()
            .zip(self.durations.iter())
            .map(|(name, histogram)| (name, histogram.durations()))
            .collect()
    }

    fn request_stop(&self) -> bool {
        self.stop_asked.store(true, Ordering::Relaxed);
        match self.addr.upgrade() {
            Some(addr) => {
                addr.do_send(StopAgent);
                true
            }
            None => false,
        }
    }
}
