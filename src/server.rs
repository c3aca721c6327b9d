//! `server` hooks: run-forever tasks (HTTP, websocket, SMTP endpoints...)
//! that run as supervised child actors of their agent.
//!
//! ```
//! use std::future::Future;
//! use microagent::prelude::*;
//!
//! #[derive(Default, MicroAgent)]
//! struct Ticker {
//!     period_ms: u64,
//! }
//!
//! #[microagent::hooks]
//! impl Ticker {
//!     // A plain `fn`: it borrows `&self` to copy what the server needs and
//!     // returns a `'static` future that runs alongside the handlers.
//!     #[on(server)]
//!     fn tick(&self, srv: ServerContext<Self>) -> impl Future<Output = Result<(), ServerInterrupt>> {
//!         let period = std::time::Duration::from_millis(self.period_ms);
//!         async move {
//!             for _ in 0..3 {
//!                 actix_rt::time::sleep(period).await;
//!             }
//!             // Ends the service gracefully: the agent's pre_stop hooks run.
//!             Err(ServerInterrupt::new("done"))
//!         }
//!     }
//! }
//!
//! assert!(microagent::run_agent(Ticker { period_ms: 1 }).is_ok());
//! ```

use std::borrow::Cow;
use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::{
    Actor, ActorContext, ActorFutureExt, Addr, AsyncContext, Handler, Message, WrapFuture,
};
use tokio::sync::{mpsc, watch};

use crate::hooks::HookResult;
use crate::{Agent, HookFailure};

/// Ends the whole service gracefully.
///
/// A server hook that returns `Err(ServerInterrupt::new("..."))` (directly,
/// or boxed in the error it returns) stops its agent gracefully, and with it
/// the whole group under a [`Launcher`](crate::Launcher), which then exits 0.
/// It is also an actix [`Message`]: sending it to any agent does the same.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("server interrupt: {reason}")]
pub struct ServerInterrupt {
    reason: Cow<'static, str>,
}

impl ServerInterrupt {
    /// An interrupt with a reason for the logs.
    pub fn new(reason: impl Into<Cow<'static, str>>) -> Self {
        ServerInterrupt {
            reason: reason.into(),
        }
    }

    /// Why the service was interrupted.
    pub fn reason(&self) -> &str {
        &self.reason
    }

    /// Finds a `ServerInterrupt` in a hook failure (at its top level).
    pub(crate) fn find(failure: &HookFailure) -> Option<&ServerInterrupt> {
        match failure {
            HookFailure::Error(e) => e.downcast_ref::<ServerInterrupt>(),
            HookFailure::Panic(_) => None,
        }
    }
}

impl Message for ServerInterrupt {
    type Result = ();
}

/// What a server hook is given: its agent's address and the signal to shut
/// down.
///
/// A server that awaits [`shutdown`](ServerContext::shutdown) is stopped
/// gracefully: when its agent stops (after the agent's `pre_stop` hooks) the
/// future resolves and the agent waits for the server to finish. A server
/// that never asks for it is cancelled (its future dropped) at that point.
pub struct ServerContext<A: Actor> {
    name: &'static str,
    agent: Addr<A>,
    shutdown: watch::Receiver<bool>,
    graceful: Arc<AtomicBool>,
}

impl<A: Actor> ServerContext<A> {
    /// The server's name (its method's name).
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// The agent's address. Holding it keeps the agent alive, like any `Addr`.
    pub fn agent(&self) -> &Addr<A> {
        &self.agent
    }

    /// Resolves when the agent is going down and the server should finish
    /// what it is doing and return. Asking for it opts the server into a
    /// graceful stop.
    pub fn shutdown(&self) -> impl Future<Output = ()> + Send + 'static {
        self.graceful.store(true, Ordering::Relaxed);
        let mut rx = self.shutdown.clone();
        async move {
            // An error means the agent is gone: shut down all the same.
            let _ = rx.wait_for(|stop| *stop).await;
        }
    }
}

impl<A: Actor> fmt::Debug for ServerContext<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerContext")
            .field("server", &self.name)
            .finish_non_exhaustive()
    }
}

/// How a failing server is restarted instead of stopping its agent.
///
/// Declared as `#[on(server, restarts = 3, within = 60.0, backoff = 0.5)]`:
/// at most `restarts` restarts within any `within` seconds, each after
/// `backoff` seconds. A failure beyond that stops the agent. Panics count as
/// failures; `Ok(())` and [`ServerInterrupt`] are not failures.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct RestartPolicy {
    /// Restarts allowed within the window.
    pub restarts: u32,
    /// The window, in seconds.
    pub within: f64,
    /// Delay before each restart, in seconds.
    pub backoff: f64,
}

/// The future of a running server, with panics already caught.
pub type ServerFuture = Pin<Box<dyn Future<Output = HookResult>>>;

/// One declared server hook.
pub struct Server<A: Actor> {
    /// The method's name.
    pub name: &'static str,
    /// Starts it: the shim calls the method with its [`ServerContext`].
    pub start: fn(&mut A, ServerContext<A>) -> ServerFuture,
    /// `None`: a failure stops the agent.
    pub restart: Option<RestartPolicy>,
}

/// A server's exit, reported to its agent's lifecycle.
pub(crate) struct Exit {
    pub(crate) index: usize,
    pub(crate) generation: u64,
    pub(crate) result: HookResult,
}

/// The child actor that runs one server future on the agent's arbiter.
struct ServerActor {
    future: Option<ServerFuture>,
    report: Option<(mpsc::UnboundedSender<Exit>, usize, u64)>,
}

impl Actor for ServerActor {
    type Context = actix::Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        if let Some(future) = self.future.take() {
            ctx.spawn(future.into_actor(self).map(|result, act, ctx| {
                if let Some((tx, index, generation)) = act.report.take() {
                    // The agent may already be gone; nothing to tell then.
                    let _ = tx.send(Exit {
                        index,
                        generation,
                        result,
                    });
                }
                ctx.stop();
            }));
        }
    }
}

/// Stops a server's child actor, dropping its future.
struct Cancel;

impl Message for Cancel {
    type Result = ();
}

impl Handler<Cancel> for ServerActor {
    type Result = ();

    fn handle(&mut self, _: Cancel, ctx: &mut Self::Context) {
        self.report = None;
        ctx.stop();
    }
}

/// Where one server is.
enum State {
    Running {
        child: Addr<ServerActor>,
    },
    /// Waiting out its backoff before a restart.
    Restarting,
    Done,
}

struct Slot {
    state: State,
    generation: u64,
    graceful: Arc<AtomicBool>,
    failures: VecDeque<Instant>,
}

/// The servers of one agent, kept in its lifecycle.
pub(crate) struct Servers {
    slots: Vec<Slot>,
    shutdown: watch::Sender<bool>,
    tx: mpsc::UnboundedSender<Exit>,
    pub(crate) rx: mpsc::UnboundedReceiver<Exit>,
}

/// What the lifecycle should do about a server's exit.
pub(crate) enum Verdict {
    /// Nothing: the server finished, or its exit is stale.
    Finished,
    /// Restart it after the backoff.
    Restart(Duration),
    /// Stop the agent gracefully ([`ServerInterrupt`], already logged).
    Interrupt,
    /// Stop the agent: the server failed for good.
    Failed(HookFailure),
}

impl Servers {
    pub(crate) fn new(count: usize) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        Servers {
            slots: (0..count)
                .map(|_| Slot {
                    state: State::Done,
                    generation: 0,
                    graceful: Arc::default(),
                    failures: VecDeque::new(),
                })
                .collect(),
            shutdown: watch::Sender::new(false),
            tx,
            rx,
        }
    }

    /// Starts (or restarts) server `index` in a new child actor.
    pub(crate) fn start<A: Agent>(&mut self, act: &mut A, agent: Addr<A>, index: usize) {
        let server = &A::HOOKS.servers[index];
        let slot = &mut self.slots[index];
        slot.generation += 1;
        slot.graceful = Arc::default();
        let context = ServerContext {
            name: server.name,
            agent,
            shutdown: self.shutdown.subscribe(),
            graceful: slot.graceful.clone(),
        };
        let start = server.start;
        let future = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| start(act, context)))
            .unwrap_or_else(|payload| {
                let failure = HookFailure::from_panic(payload);
                Box::pin(async move { Err(failure) })
            });
        let child = ServerActor {
            future: Some(future),
            report: Some((self.tx.clone(), index, slot.generation)),
        }
        .start();
        log::info!(target: "microagent", "agent `{}`: server `{}` started", A::NAME, server.name);
        slot.state = State::Running { child };
    }

    /// Judges a server's exit while the agent runs.
    pub(crate) fn judge<A: Agent>(&mut self, exit: Exit) -> Verdict {
        let server = &A::HOOKS.servers[exit.index];
        let slot = &mut self.slots[exit.index];
        if exit.generation != slot.generation || !matches!(slot.state, State::Running { .. }) {
            return Verdict::Finished;
        }
        slot.state = State::Done;
        let failure = match exit.result {
            Ok(()) => {
                log::info!(target: "microagent", "agent `{}`: server `{}` finished", A::NAME, server.name);
                return Verdict::Finished;
            }
            Err(failure) => failure,
        };
        if let Some(interrupt) = ServerInterrupt::find(&failure) {
            log::info!(
                target: "microagent",
                "agent `{}`: server `{}` ended the service: {}",
                A::NAME,
                server.name,
                interrupt.reason()
            );
            return Verdict::Interrupt;
        }
        if let Some(policy) = server.restart {
            let now = Instant::now();
            let window = Duration::from_secs_f64(policy.within.max(0.0));
            while slot
                .failures
                .front()
                .is_some_and(|t| now.duration_since(*t) > window)
            {
                slot.failures.pop_front();
            }
            if (slot.failures.len() as u64) < u64::from(policy.restarts) {
                slot.failures.push_back(now);
                log::warn!(
                    target: "microagent",
                    "agent `{}`: server `{}` failed ({failure}); restart {} of {} within {}s",
                    A::NAME,
                    server.name,
                    slot.failures.len(),
                    policy.restarts,
                    policy.within
                );
                slot.state = State::Restarting;
                return Verdict::Restart(Duration::from_secs_f64(policy.backoff.max(0.0)));
            }
            log::error!(
                target: "microagent",
                "agent `{}`: server `{}` failed {} times within {}s; giving up",
                A::NAME,
                server.name,
                slot.failures.len() + 1,
                policy.within
            );
        }
        Verdict::Failed(failure)
    }

    /// Whether server `index` waits for a restart.
    pub(crate) fn is_restarting(&self, index: usize) -> bool {
        matches!(self.slots[index].state, State::Restarting)
    }

    /// Starts the graceful stop: servers that asked for the shutdown signal
    /// get it and are waited for; the others are cancelled.
    pub(crate) fn shut_down(&mut self, agent: &'static str) {
        let _ = self.shutdown.send(true);
        for (index, slot) in self.slots.iter_mut().enumerate() {
            match &slot.state {
                State::Running { child } if !slot.graceful.load(Ordering::Relaxed) => {
                    log::debug!(target: "microagent", "agent `{agent}`: cancelling server #{index}");
                    child.do_send(Cancel);
                    slot.state = State::Done;
                }
                State::Running { .. } => {}
                State::Restarting | State::Done => slot.state = State::Done,
            }
        }
    }

    /// Takes a server's exit during the graceful stop; returns its failure,
    /// if it failed (an interrupt is not a failure).
    pub(crate) fn settle(&mut self, exit: Exit) -> Option<HookFailure> {
        let slot = &mut self.slots[exit.index];
        if exit.generation != slot.generation {
            return None;
        }
        slot.state = State::Done;
        match exit.result {
            Err(failure) if ServerInterrupt::find(&failure).is_none() => Some(failure),
            _ => None,
        }
    }

    /// Whether every server has finished.
    pub(crate) fn all_done(&self) -> bool {
        self.slots.iter().all(|s| matches!(s.state, State::Done))
    }

    /// The names of the servers still running.
    pub(crate) fn running<A: Agent>(&self) -> Vec<&'static str> {
        self.slots
            .iter()
            .zip(A::HOOKS.servers)
            .filter(|(slot, _)| matches!(slot.state, State::Running { .. }))
            .map(|(_, server)| server.name)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("other")]
    struct Other;

    #[test]
    fn an_interrupt_is_found_in_the_boxed_error_a_server_returns() {
        let failure = HookFailure::Error(Box::new(ServerInterrupt::new("Exit")));
        assert_eq!(
            ServerInterrupt::find(&failure).map(ServerInterrupt::reason),
            Some("Exit")
        );
        assert!(ServerInterrupt::find(&HookFailure::Error(Box::new(Other))).is_none());
        assert!(ServerInterrupt::find(&HookFailure::Panic("Exit".into())).is_none());
        assert_eq!(
            ServerInterrupt::new("Exit").to_string(),
            "server interrupt: Exit"
        );
    }
}
