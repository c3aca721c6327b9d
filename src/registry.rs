//! Which agents are alive in a System run by [`run`](crate::run), so that it
//! can stop them all gracefully and wait for their `pre_stop` hooks before it
//! lets the System go.
//!
//! Agents started in a System that `run` does not own are not registered:
//! nobody would ever ask for the list.

use std::cell::RefCell;
use std::pin::pin;
use std::sync::atomic::{fence, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::Notify;

use crate::info::AgentInfo;
use crate::per_system::PerSystem;
use crate::phase::Phase;
use crate::LOG_TARGET;

/// What the registry needs of a live agent, whatever its type (the
/// lifecycle's per-agent cell implements it).
pub(crate) trait Tracked: Send + Sync {
    /// The agent's name.
    fn name(&self) -> &'static str;
    /// Sends it `StopAgent`; `false` when no `Addr` is left (the agent is
    /// already stopping).
    fn request_stop(&self) -> bool;
    /// Its phase.
    fn phase(&self) -> Phase;
    /// What it is busy with now, for a report when it does not stop in time.
    fn activity(&self) -> String;
    /// What it declares (the health server's `/health/info`).
    #[cfg_attr(not(any(feature = "web", feature = "metrics")), allow(dead_code))]
    fn info(&self) -> AgentInfo;
    /// What it declares and its handlers' runs, without the System's bus
    /// and broker (cheaper than [`info`](Tracked::info)).
    #[cfg(feature = "metrics")]
    fn runs_info(&self) -> AgentInfo;
    /// Whether it has handlers whose runs it counts (tasks, receivers,
    /// consumers).
    #[cfg_attr(not(feature = "metrics"), allow(dead_code))]
    fn counts_runs(&self) -> bool;
    /// Its handlers' run durations, by `(kind, handler)`.
    #[cfg(feature = "metrics")]
    fn run_durations(&self) -> crate::durations::HandlerDurations;
}

/// The live agents of one System.
#[derive(Default)]
pub(crate) struct SystemAgents {
    live: Mutex<Live>,
    changed: Notify,
    /// Woken when an agent changes phase, while someone waits for readiness.
    phases: Notify,
    /// How many wait for readiness (phase changes notify only then).
    watching: AtomicUsize,
}

/// A slab of entries: a registration's index stays valid until it is dropped.
#[derive(Default)]
struct Live {
    slots: Vec<Option<Entry>>,
    free: Vec<usize>,
    count: usize,
    /// Set when the System starts shutting down: from then on every removal
    /// wakes `stop_all`, and the agents are no longer ready.
    draining: bool,
    /// Set when a launcher's group stops because a member failed: an agent
    /// still in its start hooks skips post_start.
    starts_aborted: bool,
}

/// One live agent, as the health service and shutdown reports see it.
pub(crate) struct AgentStatus {
    pub(crate) name: &'static str,
    #[cfg_attr(not(feature = "web"), allow(dead_code))]
    pub(crate) phase: Phase,
    /// What it is busy with (empty unless asked for).
    pub(crate) activity: String,
}

struct Entry {
    agent: Arc<dyn Tracked>,
    asked: bool,
}

impl SystemAgents {
    fn lock(&self) -> MutexGuard<'_, Live> {
        // The lock guards plain bookkeeping; a panic elsewhere cannot leave it torn.
        self.live.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// How many agents are alive.
    pub(crate) fn len(&self) -> usize {
        self.lock().count
    }

    /// Marks the System as shutting down (agents are no longer ready).
    pub(crate) fn begin_shutdown(&self) {
        self.lock().draining = true;
        self.phases.notify_waiters();
    }

    /// The group stops because a member failed: agents still starting do
    /// not go on to post_start.
    pub(crate) fn abort_starts(&self) {
        self.lock().starts_aborted = true;
    }

    /// Whether [`abort_starts`](Self::abort_starts) was called.
    pub(crate) fn starts_aborted(&self) -> bool {
        self.lock().starts_aborted
    }

    /// Whether the System's agents are ready, as `GET /health/ready` says:
    /// there is at least one, every one has finished its start hooks, and
    /// the System is not shutting down.
    pub(crate) fn ready(&self) -> bool {
        let agents = self.snapshot();
        !self.shutting_down()
            && !agents.is_empty()
            && agents.iter().all(|a| a.phase() == Phase::Running)
    }

    /// Waits until the agents are ready (`true`) or the System starts
    /// shutting down first (`false`).
    pub(crate) async fn wait_ready(&self) -> bool {
        self.watching.fetch_add(1, Ordering::SeqCst);
        // Pairs with the fence in `phase_changed`: either that agent sees a
        // watcher and notifies, or the check below sees its new phase.
        fence(Ordering::SeqCst);
        let ready = loop {
            let mut changed = pin!(self.phases.notified());
            changed.as_mut().enable();
            if self.ready() {
                break true;
            }
            if self.shutting_down() {
                break false;
            }
            changed.await;
        };
        self.watching.fetch_sub(1, Ordering::SeqCst);
        ready
    }

    /// Called when one of the agents has become `Running` (the one change
    /// that can make the System ready; shutting down notifies by itself).
    fn phase_changed(&self) {
        fence(Ordering::SeqCst);
        if self.watching.load(Ordering::Relaxed) > 0 {
            self.phases.notify_waiters();
        }
    }

    /// Whether the System is shutting down.
    pub(crate) fn shutting_down(&self) -> bool {
        self.lock().draining
    }

    /// The live agents, taken out from under the lock: asking an agent
    /// about itself may take that agent's own lock.
    fn snapshot(&self) -> Vec<Arc<dyn Tracked>> {
        self.lock()
            .slots
            .iter()
            .flatten()
            .map(|e| e.agent.clone())
            .collect()
    }

    /// What every live agent declares.
    #[cfg_attr(not(feature = "web"), allow(dead_code))]
    pub(crate) fn infos(&self) -> Vec<AgentInfo> {
        self.snapshot().iter().map(|a| a.info()).collect()
    }

    /// The handler runs of every live agent that has handlers (no bus or
    /// broker tables: this is read at each scrape).
    #[cfg(feature = "metrics")]
    pub(crate) fn runs_infos(&self) -> Vec<AgentInfo> {
        self.snapshot()
            .iter()
            .filter(|a| a.counts_runs())
            .map(|a| a.runs_info())
            .collect()
    }

    /// The run durations of every live agent's handlers, by agent name.
    #[cfg(feature = "metrics")]
    pub(crate) fn run_durations(&self) -> Vec<(&'static str, crate::durations::HandlerDurations)> {
        self.snapshot()
            .iter()
            .filter(|a| a.counts_runs())
            .map(|a| (a.name(), a.run_durations()))
            .collect()
    }

    /// Every live agent (slots are reused, so not quite in start order).
    pub(crate) fn statuses(&self, with_activity: bool) -> Vec<AgentStatus> {
        self.snapshot()
            .iter()
            .map(|a| AgentStatus {
                name: a.name(),
                phase: a.phase(),
                activity: if with_activity {
                    a.activity()
                } else {
                    String::new()
                },
            })
            .collect()
    }

    fn insert(&self, entry: Entry) -> usize {
        let mut live = self.lock();
        live.count += 1;
        match live.free.pop() {
            Some(index) => {
                live.slots[index] = Some(entry);
                index
            }
            None => {
                live.slots.push(Some(entry));
                live.slots.len() - 1
            }
        }
    }

    fn remove(&self, index: usize) {
        let mut live = self.lock();
        let gone = live.slots[index].take();
        if gone.is_some() {
            live.count -= 1;
            live.free.push(index);
        }
        let draining = live.draining;
        drop(live);
        // Out of the list first, then into the retired counts: a sample in
        // between misses its runs for a moment rather than counting them
        // twice (a counter never goes back down).
        #[cfg(feature = "metrics")]
        if let Some(entry) = gone.filter(|e| e.agent.counts_runs()) {
            crate::retired::retire(&entry.agent.runs_info(), entry.agent.run_durations());
        }
        #[cfg(not(feature = "metrics"))]
        drop(gone);
        if draining {
            self.changed.notify_waiters();
        }
    }

    /// Asks every live agent to stop, then waits until none is left. Agents
    /// started while this runs are asked too.
    pub(crate) async fn stop_all(&self) {
        loop {
            let mut changed = pin!(self.changed.notified());
            changed.as_mut().enable();
            {
                let mut live = self.lock();
                live.draining = true;
                if live.count == 0 {
                    return;
                }
                for entry in live.slots.iter_mut().flatten().filter(|e| !e.asked) {
                    entry.asked = true;
                    // No `Addr` left means the agent is already stopping.
                    if entry.agent.request_stop() {
                        log::debug!(target: LOG_TARGET, "asked agent `{}` to stop", entry.agent.name());
                    }
                }
            }
            changed.await;
        }
    }
}

/// An agent's entry in its System's registry; removes itself when dropped,
/// which happens when the agent's actor is gone.
pub(crate) struct Registration {
    agents: Arc<SystemAgents>,
    index: usize,
}

impl Registration {
    /// Tells whoever waits for readiness that the agent is now running.
    pub(crate) fn now_running(&self) {
        self.agents.phase_changed();
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.agents.remove(self.index);
    }
}

/// Registers an agent with the current System, if [`run`](crate::run) owns it.
pub(crate) fn register<T: Tracked + 'static>(agent: &Arc<T>) -> Option<Registration> {
    let agents = current()?;
    let index = agents.insert(Entry {
        agent: agent.clone(),
        asked: false,
    });
    Some(Registration { agents, index })
}

/// The registries of the Systems that `run` owns, by System id.
static SYSTEMS: PerSystem<Arc<SystemAgents>> = PerSystem::new();

thread_local! {
    /// This thread's System id and its registry (`None`: not run by `run`).
    /// Set by `run` on its own thread; looked up once on other arbiter
    /// threads, which live and die with their System.
    static CURRENT: RefCell<Option<(usize, Option<Arc<SystemAgents>>)>> =
        const { RefCell::new(None) };
}

/// The registry of the current System, if [`run`](crate::run) or a
/// [`Launcher`](crate::Launcher) owns it.
///
/// # Panics
/// Outside an actix System, like starting any actor there.
pub(crate) fn current() -> Option<Arc<SystemAgents>> {
    CURRENT.with(|cell| {
        if let Some((_, agents)) = &*cell.borrow() {
            return agents.clone();
        }
        let id = actix_rt::System::try_current()
            .expect(
                "microagent: an agent was started outside a running actix System; \
                 start agents inside `microagent::run(async { ... })`, from a \
                 `microagent::Launcher`, or in an actix System you run yourself",
            )
            .id();
        let agents = SYSTEMS.get(id);
        *cell.borrow_mut() = Some((id, agents.clone()));
        agents
    })
}

/// Creates the registry of a System owned by `run`, on `run`'s thread.
pub(crate) fn open(system_id: usize) -> Arc<SystemAgents> {
    let agents = Arc::new(SystemAgents::default());
    SYSTEMS.insert(system_id, agents.clone());
    CURRENT.with(|cell| *cell.borrow_mut() = Some((system_id, Some(agents.clone()))));
    agents
}

/// Forgets the registry of a System that has ended.
pub(crate) fn close(system_id: usize) {
    SYSTEMS.remove(system_id);
    CURRENT.with(|cell| *cell.borrow_mut() = None);
}
