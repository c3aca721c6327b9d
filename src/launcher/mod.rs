//! Running a group of agents as a process: signals, the group rule, the
//! shutdown deadline and the exit code.

use std::any::Any;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use actix_rt::Arbiter;
use futures_util::future::{select, Either};
use futures_util::stream::{FuturesUnordered, StreamExt};
use tokio::sync::{watch, Notify};

use crate::agent::{Agent, IntoAgent};
use crate::broker::{Broker, BrokerConfig};
use crate::bus::{Bus, BusConfig};
use crate::error::AgentError;
use crate::registry::SystemAgents;
use crate::run::OwnedSystem;
use crate::server::ServerInterrupt;
use crate::start::{start, start_in, AgentHandle};

mod exit;
mod signals;

pub use exit::Exit;
use signals::{signal_name, Signals};

const TARGET: &str = "microagent::launcher";

/// A started group member, as the launcher keeps it.
struct Member {
    name: &'static str,
    /// Its `Addr`, kept so the agent runs until the group stops.
    _addr: Box<dyn Any>,
    outcome: Pin<Box<dyn Future<Output = Result<(), AgentError>>>>,
}

type Starter = Box<dyn FnOnce() -> (Member, Option<Arbiter>)>;

/// Runs one agent or a group of agents as a process.
///
/// - Each agent added with [`agent`](Launcher::agent) runs on its own
///   [`Arbiter`] (thread), so a busy agent does not stall the others;
///   [`local_agent`](Launcher::local_agent) runs one on the System's own
///   arbiter instead (for agents that are not `Send`).
/// - The group rule: when any agent stops, for any reason, the whole group
///   stops gracefully.
/// - The launcher owns SIGINT and SIGTERM: the first starts a graceful stop,
///   a second one during it exits at once (code 128 + signal).
/// - A graceful stop: readiness goes false, every agent runs its `pre_stop`
///   hooks while it and its servers are still up, then its servers stop
///   gracefully, then it stops; the System exits once every arbiter is done.
///   The shutdown deadline (30 s by default) bounds all of it; past it the
///   log names every hook and server still running.
/// - [`run`](Launcher::run) returns an [`Exit`] to return from `main`.
/// - [`handle`](Launcher::handle) gives a [`LauncherHandle`] that stops the
///   group gracefully from any thread.
///
/// ```no_run
/// use microagent::prelude::*;
///
/// #[derive(Default, MicroAgent)]
/// struct Mailer;
///
/// #[microagent::hooks]
/// impl Mailer {}
///
/// fn main() -> microagent::Exit {
///     microagent::Launcher::new().agent(Mailer).run()
/// }
/// ```
#[must_use = "a launcher does nothing until `run` is called"]
pub struct Launcher {
    starters: Vec<Starter>,
    deadline: Duration,
    interrupts: Arc<Interrupts>,
    bus: Option<BusConfig>,
    broker: Option<BrokerConfig>,
    #[cfg(feature = "otel")]
    otel: Option<crate::otel::OtelConfig>,
}

impl Default for Launcher {
    fn default() -> Self {
        Launcher {
            starters: Vec::new(),
            deadline: Duration::from_secs(30),
            interrupts: Arc::default(),
            bus: None,
            broker: None,
            #[cfg(feature = "otel")]
            otel: None,
        }
    }
}

/// What a launcher shares with its [`LauncherHandle`]s: the interrupts
/// they send, and whether the group is up.
#[derive(Default)]
struct Interrupts {
    first: Mutex<Option<ServerInterrupt>>,
    notify: Notify,
    /// `None` until known; `Some(true)` while every agent has finished its
    /// start hooks and the group is not stopping; `Some(false)` after.
    ready: watch::Sender<Option<bool>>,
}

/// Stops a [`Launcher`]'s group gracefully from anywhere (any thread, before
/// or during [`run`](Launcher::run)), as a server returning
/// [`ServerInterrupt`] would. Get one with [`Launcher::handle`].
#[derive(Clone)]
pub struct LauncherHandle {
    interrupts: Arc<Interrupts>,
}

impl LauncherHandle {
    /// Starts the graceful stop of the whole group; the run exits with
    /// [`Exit::Graceful`] if every agent then stops cleanly. Later calls
    /// change nothing.
    pub fn do_send(&self, interrupt: ServerInterrupt) {
        let mut first = self
            .interrupts
            .first
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if first.is_none() {
            *first = Some(interrupt);
            // Stored as a permit if the launcher is not waiting yet.
            self.interrupts.notify.notify_one();
        }
    }
}

impl LauncherHandle {
    /// Resolves once the whole group is up: every agent has finished its
    /// `pre_start` and `post_start` hooks (the moment `GET /health/ready`
    /// turns 200). `true` then; `false` if the group started stopping
    /// first (a failed start, a signal...), or has stopped since. Use it to
    /// print a ready line, notify a supervisor (`sd_notify`) or start a
    /// load. Before [`run`](Launcher::run) it waits for the run.
    pub fn ready(&self) -> impl Future<Output = bool> + Send + 'static {
        let mut ready = self.interrupts.ready.subscribe();
        async move {
            match ready.wait_for(Option::is_some).await {
                Ok(state) => *state == Some(true),
                // The launcher is gone: it never will be.
                Err(_) => false,
            }
        }
    }
}

impl fmt::Debug for LauncherHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LauncherHandle").finish_non_exhaustive()
    }
}

impl fmt::Debug for Launcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Launcher")
            .field("agents", &self.starters.len())
            .field("shutdown_deadline", &self.deadline)
            .field("bus", &self.bus)
            .field("broker", &self.broker)
            .finish_non_exhaustive()
    }
}

impl Launcher {
    /// An empty group with a 30 s shutdown deadline.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds an agent (or a [`Named`](crate::Named) one), to run on its own
    /// arbiter.
    pub fn agent<T>(mut self, agent: T) -> Self
    where
        T: IntoAgent + Send + 'static,
        T::Agent: Send,
    {
        self.starters.push(Box::new(move || {
            let arbiter = Arbiter::new();
            let (addr, handle) = start_in(&arbiter.handle(), agent);
            (member(addr, handle), Some(arbiter))
        }));
        self
    }

    /// Adds an agent, to run on the System's own arbiter (the thread that
    /// called [`run`](Launcher::run)). That thread also watches the signals
    /// and the shutdown deadline: a sync hook or handler of this agent that
    /// blocks the thread blocks them too, which agents on their own arbiter
    /// cannot do.
    pub fn local_agent<T: IntoAgent + 'static>(mut self, agent: T) -> Self {
        self.starters.push(Box::new(move || {
            let (addr, handle) = start(agent);
            (member(addr, handle), None)
        }));
        self
    }

    /// A handle that stops the group gracefully from anywhere.
    pub fn handle(&self) -> LauncherHandle {
        LauncherHandle {
            interrupts: self.interrupts.clone(),
        }
    }

    /// Bounds the graceful stop (30 s by default).
    pub fn shutdown_deadline(mut self, deadline: Duration) -> Self {
        self.deadline = deadline;
        self
    }

    /// The bus the agents use (the in-process one by default). The run
    /// connects it before any agent starts; when it cannot (Redis does not
    /// answer within the config's subscribe timeout), no agent starts and
    /// the run ends with [`Exit::BusFailed`].
    pub fn bus(mut self, config: BusConfig) -> Self {
        self.bus = Some(config);
        self
    }

    /// Exports spans over OTLP while the group runs (feature `otel`): the
    /// exporter is installed before the agents start and flushed after
    /// they stopped. An exporter refused at start ends the run with
    /// [`Exit::ConfigInvalid`]; a `tracing` subscriber of the
    /// application's own keeps the spans (a warning says so).
    #[cfg(feature = "otel")]
    pub fn otel(mut self, config: crate::otel::OtelConfig) -> Self {
        self.otel = Some(config);
        self
    }

    /// The broker the agents use (the in-process one by default),
    /// installed before any agent starts.
    pub fn broker(mut self, config: BrokerConfig) -> Self {
        self.broker = Some(config);
        self
    }

    /// Starts every agent in a new actix System and runs until the group
    /// stops.
    ///
    /// # Panics
    /// When called inside a running actix System or Tokio runtime.
    pub fn run(self) -> Exit {
        #[cfg(feature = "otel")]
        let otel = match self.otel.as_ref().map(crate::otel::install) {
            Some(Err(crate::otel::OtelError::SubscriberSet)) => {
                log::warn!(target: TARGET, "otel: a tracing subscriber is installed already; the spans go to it");
                None
            }
            Some(Err(e)) => {
                log::error!(target: TARGET, "{e}");
                return Exit::ConfigInvalid;
            }
            Some(Ok(guard)) => Some(guard),
            None => None,
        };
        let system = OwnedSystem::new();
        let agents = system.agents();
        let Launcher {
            starters,
            deadline,
            interrupts,
            bus,
            broker,
            ..
        } = self;
        let (exit, arbiters) = system.block_on(async move {
            if let Err(exit) = connect_backends(bus, broker).await {
                interrupts.ready.send_replace(Some(false));
                return (exit, Vec::new());
            }
            let mut signals = Signals::new();
            let mut group = Group::start(starters, &agents, &interrupts);
            let mut exit = group.wait_for_a_stop_cause(&mut signals, &interrupts).await;
            if exit != Exit::Graceful {
                // A member failed: the others still starting stop there.
                agents.abort_starts();
            }
            agents.begin_shutdown();
            interrupts.ready.send_replace(Some(false));
            exit = exit.worst(group.drain(&agents, &mut signals, deadline).await);
            if exit != Exit::DeadlineExceeded {
                // Every agent is done: the broker's connections close now.
                crate::broker::disconnect().await;
            }
            (exit, group.arbiters)
        });
        if exit != Exit::DeadlineExceeded {
            // Every agent is done: let each arbiter finish, then the System.
            for arbiter in arbiters.into_iter().flatten() {
                arbiter.stop();
                let _ = arbiter.join();
            }
        }
        system.finish(TARGET);
        // Every agent is done: the last spans are exported before the exit.
        #[cfg(feature = "otel")]
        if let Some(otel) = otel {
            otel.shutdown();
        }
        log::info!(target: TARGET, "exiting with {exit:?} (code {})", exit.code());
        exit
    }
}

/// Connects the bus and the broker the launcher was given, before any
/// agent starts; the exit code when one cannot connect.
async fn connect_backends(
    bus: Option<BusConfig>,
    broker: Option<BrokerConfig>,
) -> Result<(), Exit> {
    if let Some(config) = bus {
        if let Err(e) = Bus::connect(config).await {
            log::error!(target: TARGET, "the bus could not connect: {e}; no agent started");
            return Err(Exit::BusFailed);
        }
    }
    if let Some(config) = broker {
        if let Err(e) = Broker::connect(config).await {
            log::error!(target: TARGET, "the broker could not connect: {e}; no agent started");
            return Err(Exit::BrokerFailed);
        }
    }
    Ok(())
}

/// A member's outcome, with its index in the group.
type Outcome = Pin<Box<dyn Future<Output = (usize, Result<(), AgentError>)>>>;

/// The started group: its members' names, addresses and outcomes to come,
/// and the arbiters of those that run on one of their own.
struct Group {
    names: Vec<&'static str>,
    /// Kept so that every member runs until the group stops.
    addrs: Vec<Box<dyn Any>>,
    pending: FuturesUnordered<Outcome>,
    arbiters: Vec<Option<Arbiter>>,
}

impl Group {
    /// Starts every member, and watches whether they all come up (for
    /// `LauncherHandle::ready`).
    fn start(
        starters: Vec<Starter>,
        agents: &Arc<SystemAgents>,
        interrupts: &Arc<Interrupts>,
    ) -> Group {
        let (members, arbiters): (Vec<Member>, Vec<Option<Arbiter>>) =
            starters.into_iter().map(|start| start()).unzip();
        let watcher = {
            let (agents, interrupts) = (agents.clone(), interrupts.clone());
            async move {
                let up = agents.wait_ready().await;
                if up {
                    log::info!(target: TARGET, "every agent has started");
                }
                interrupts.ready.send_replace(Some(up));
            }
        };
        actix_rt::spawn(watcher);
        let mut group = Group {
            names: Vec::with_capacity(members.len()),
            addrs: Vec::with_capacity(members.len()),
            pending: FuturesUnordered::new(),
            arbiters,
        };
        for (index, member) in members.into_iter().enumerate() {
            group.names.push(member.name);
            group.addrs.push(member._addr);
            let outcome = member.outcome;
            group
                .pending
                .push(Box::pin(async move { (index, outcome.await) }));
        }
        group
    }

    /// Runs until one member stops, a signal comes, or a handle interrupts
    /// the group; the exit code so far.
    async fn wait_for_a_stop_cause(
        &mut self,
        signals: &mut Signals,
        interrupts: &Interrupts,
    ) -> Exit {
        let outside = select(
            Box::pin(signals.next()),
            Box::pin(interrupts.notify.notified()),
        );
        match select(self.pending.next(), outside).await {
            Either::Left((Some((index, outcome)), _)) => {
                log::info!(
                    target: TARGET,
                    "agent `{}` stopped; stopping the group",
                    self.names[index]
                );
                Exit::of(&outcome)
            }
            Either::Left((None, _)) => Exit::Graceful,
            Either::Right((Either::Left((signal, _)), _)) => {
                log::info!(target: TARGET, "{} received; stopping gracefully", signal_name(signal));
                Exit::Graceful
            }
            Either::Right((Either::Right(_), _)) => {
                let reason = interrupts
                    .first
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .as_ref()
                    .map(|i| i.reason().to_owned())
                    .unwrap_or_default();
                log::info!(target: TARGET, "interrupted through a launcher handle: {reason}; stopping gracefully");
                Exit::Graceful
            }
        }
    }

    /// The graceful stop of every member, bounded by the deadline; a second
    /// signal ends the process at once. The exit code of the stop.
    async fn drain(
        &mut self,
        agents: &SystemAgents,
        signals: &mut Signals,
        deadline: Duration,
    ) -> Exit {
        let pending = &mut self.pending;
        let stop = async {
            let mut exit = Exit::Graceful;
            let collect = async {
                while let Some((_, outcome)) = pending.next().await {
                    exit = exit.worst(Exit::of(&outcome));
                }
            };
            futures_util::future::join(agents.stop_all(), collect).await;
            exit
        };
        let bounded = select(Box::pin(stop), Box::pin(actix_rt::time::sleep(deadline)));
        let exit = match select(bounded, Box::pin(signals.next())).await {
            Either::Left((Either::Left((stopped, _)), _)) => stopped,
            Either::Left((Either::Right(_), _)) => {
                log::error!(
                    target: TARGET,
                    "shutdown deadline of {deadline:?} passed; still running:"
                );
                for status in agents.statuses(true) {
                    log::error!(target: TARGET, "  agent `{}`: {}", status.name, status.activity);
                }
                Exit::DeadlineExceeded
            }
            Either::Right((signal, _)) => {
                let code = 128 + signal;
                log::error!(
                    target: TARGET,
                    "{} received again; exiting at once (code {code})",
                    signal_name(signal)
                );
                std::process::exit(code);
            }
        };
        self.addrs.clear();
        exit
    }
}

fn member<A: Agent>(addr: actix::Addr<A>, handle: AgentHandle<A>) -> Member {
    Member {
        name: handle.name(),
        _addr: Box::new(addr),
        outcome: Box::pin(handle),
    }
}
