//! Server supervision: each `#[on(server)]` hook runs in a child actor on
//! its agent's arbiter; the agent's [`Supervisor`] restarts it or stops the
//! agent when it ends, and the agent's stop shuts the servers down.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use actix::{
    Actor, ActorContext, ActorFuture, ActorFutureExt, Addr, AsyncContext, Handler, Message,
    WrapFuture,
};
use tokio::sync::{mpsc, watch};

use super::cell::AgentCell;
use super::declare::ServerFuture;
use super::Context;
use crate::agent::Agent;
use crate::error::{HookFailure, HookResult, Stage};
use crate::phase::Phase;
use crate::server::{ServerContext, ServerInterrupt};
use crate::LOG_TARGET;

/// A server's exit, reported to its agent's lifecycle.
pub(super) struct ServerExit {
    index: usize,
    generation: u64,
    result: HookResult,
}

/// The child actor that runs one server future on the agent's arbiter.
struct ServerActor {
    future: Option<ServerFuture>,
    report: Option<(mpsc::UnboundedSender<ServerExit>, usize, u64)>,
}

impl Actor for ServerActor {
    type Context = actix::Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        if let Some(future) = self.future.take() {
            ctx.spawn(future.into_actor(self).map(|result, act, ctx| {
                if let Some((tx, index, generation)) = act.report.take() {
                    // The agent may already be gone; nothing to tell then.
                    let _ = tx.send(ServerExit {
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
enum ServerState {
    Running {
        child: Addr<ServerActor>,
    },
    /// Waiting out its backoff before a restart.
    Restarting,
    Done,
}

struct ServerSlot {
    state: ServerState,
    generation: u64,
    graceful: Arc<AtomicBool>,
    failures: VecDeque<Instant>,
}

/// The servers of one agent, kept in its lifecycle.
pub(crate) struct Servers {
    slots: Vec<ServerSlot>,
    shutdown: watch::Sender<bool>,
    tx: mpsc::UnboundedSender<ServerExit>,
    rx: mpsc::UnboundedReceiver<ServerExit>,
}

/// What the lifecycle should do about a server's exit.
enum Verdict {
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
    fn new(count: usize) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        Servers {
            slots: (0..count)
                .map(|_| ServerSlot {
                    state: ServerState::Done,
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
    fn start<A: Agent>(
        &mut self,
        act: &mut A,
        agent: Addr<A>,
        cell: &Arc<AgentCell<A>>,
        index: usize,
    ) {
        let server = &A::HOOKS.servers[index];
        let slot = &mut self.slots[index];
        slot.generation += 1;
        slot.graceful = Arc::default();
        cell.clear_addresses(server.name);
        let published = cell.clone();
        let name = server.name;
        let context = ServerContext::new(
            server.name,
            agent,
            self.shutdown.subscribe(),
            slot.graceful.clone(),
            Arc::new(move |addr| published.publish_address(name, addr)),
        );
        let start = server.start;
        let future = HookFailure::catch(|| start(act, context))
            .unwrap_or_else(|failure| Box::pin(async move { Err(failure) }));
        let child = ServerActor {
            future: Some(future),
            report: Some((self.tx.clone(), index, slot.generation)),
        }
        .start();
        log::info!(target: LOG_TARGET, "agent `{}`: server `{}` started", cell.name(), server.name);
        slot.state = ServerState::Running { child };
    }

    /// Judges a server's exit while agent `agent` runs.
    fn judge<A: Agent>(&mut self, agent: &'static str, exit: ServerExit) -> Verdict {
        let server = &A::HOOKS.servers[exit.index];
        let slot = &mut self.slots[exit.index];
        if exit.generation != slot.generation || !matches!(slot.state, ServerState::Running { .. })
        {
            return Verdict::Finished;
        }
        slot.state = ServerState::Done;
        let failure = match exit.result {
            Ok(()) => {
                log::info!(target: LOG_TARGET, "agent `{agent}`: server `{}` finished", server.name);
                return Verdict::Finished;
            }
            Err(failure) => failure,
        };
        if let Some(interrupt) = ServerInterrupt::find(&failure) {
            log::info!(
                target: LOG_TARGET,
                "agent `{}`: server `{}` ended the service: {}",
                agent,
                server.name,
                interrupt.reason()
            );
            return Verdict::Interrupt;
        }
        if let Some(policy) = server.restart {
            let now = Instant::now();
            while slot
                .failures
                .front()
                .is_some_and(|t| now.duration_since(*t) > policy.within)
            {
                slot.failures.pop_front();
            }
            if (slot.failures.len() as u64) < u64::from(policy.restarts) {
                slot.failures.push_back(now);
                log::warn!(
                    target: LOG_TARGET,
                    "agent `{}`: server `{}` failed ({failure}); restart {} of {} within {}s",
                    agent,
                    server.name,
                    slot.failures.len(),
                    policy.restarts,
                    policy.within.as_secs_f64()
                );
                slot.state = ServerState::Restarting;
                #[cfg(feature = "metrics")]
                crate::metrics::server_restarted(agent, server.name);
                return Verdict::Restart(policy.backoff);
            }
            log::error!(
                target: LOG_TARGET,
                "agent `{}`: server `{}` failed {} times within {}s; giving up",
                agent,
                server.name,
                slot.failures.len() + 1,
                policy.within.as_secs_f64()
            );
        }
        Verdict::Failed(failure)
    }

    /// Whether server `index` waits for a restart.
    fn is_restarting(&self, index: usize) -> bool {
        matches!(self.slots[index].state, ServerState::Restarting)
    }

    /// Starts the graceful stop: servers that asked for the shutdown signal
    /// get it and are waited for; the others are cancelled.
    pub(super) fn shut_down(&mut self, agent: &'static str) {
        let _ = self.shutdown.send(true);
        for (index, slot) in self.slots.iter_mut().enumerate() {
            match &slot.state {
                ServerState::Running { child } if !slot.graceful.load(Ordering::Relaxed) => {
                    log::debug!(target: LOG_TARGET, "agent `{agent}`: cancelling server #{index}");
                    child.do_send(Cancel);
                    slot.state = ServerState::Done;
                }
                ServerState::Running { .. } => {}
                ServerState::Restarting | ServerState::Done => slot.state = ServerState::Done,
            }
        }
    }

    /// Takes a server's exit during the graceful stop; returns its failure,
    /// if it failed (an interrupt is not a failure).
    fn settle(&mut self, exit: ServerExit) -> Option<HookFailure> {
        let slot = &mut self.slots[exit.index];
        if exit.generation != slot.generation {
            return None;
        }
        slot.state = ServerState::Done;
        match exit.result {
            Err(failure) if ServerInterrupt::find(&failure).is_none() => Some(failure),
            _ => None,
        }
    }

    /// Whether every server has finished.
    fn all_done(&self) -> bool {
        self.slots
            .iter()
            .all(|s| matches!(s.state, ServerState::Done))
    }

    /// The names of the servers still running.
    fn running<A: Agent>(&self) -> Vec<&'static str> {
        self.slots
            .iter()
            .zip(A::HOOKS.servers)
            .filter(|(slot, _)| matches!(slot.state, ServerState::Running { .. }))
            .map(|(_, server)| server.name)
            .collect()
    }
}

/// Starts every server hook, each in its own child actor, and the
/// supervisor that watches them.
pub(super) fn start_servers<A: Agent>(act: &mut A, ctx: &mut Context<A>) {
    let count = A::HOOKS.servers.len();
    if count == 0 {
        return;
    }
    let mut servers = Servers::new(count);
    let addr = ctx.address();
    for index in 0..count {
        servers.start(act, addr.clone(), &ctx.life.cell, index);
    }
    ctx.life.extras().servers = Some(servers);
    ctx.spawn(Supervisor);
}

/// Watches the servers while the agent runs: restarts them, or stops the
/// agent when one fails or interrupts the service.
struct Supervisor;

impl<A: Agent> ActorFuture<A> for Supervisor {
    type Output = ();

    fn poll(
        self: Pin<&mut Self>,
        _act: &mut A,
        ctx: &mut Context<A>,
        task: &mut std::task::Context<'_>,
    ) -> Poll<()> {
        loop {
            if ctx.life.phase != Phase::Running {
                // Stopping: the driver takes the servers' exits from here.
                return Poll::Ready(());
            }
            let Some(servers) = ctx.life.extras_mut().and_then(|e| e.servers.as_mut()) else {
                return Poll::Ready(());
            };
            let exit = match servers.rx.poll_recv(task) {
                Poll::Ready(Some(exit)) => exit,
                Poll::Ready(None) | Poll::Pending => return Poll::Pending,
            };
            let index = exit.index;
            let name = A::HOOKS.servers[index].name;
            let agent = ctx.life.name;
            let servers = match ctx.life.extras_mut().and_then(|e| e.servers.as_mut()) {
                Some(servers) => servers,
                None => return Poll::Ready(()),
            };
            match servers.judge::<A>(agent, exit) {
                Verdict::Finished => {}
                Verdict::Restart(backoff) => {
                    ctx.run_later(backoff, move |act, ctx| restart_server(act, ctx, index));
                }
                Verdict::Interrupt => ctx.stop(),
                Verdict::Failed(cause) => {
                    ctx.life.fail(Stage::Server, name, cause);
                    ctx.stop();
                }
            }
        }
    }
}

fn restart_server<A: Agent>(act: &mut A, ctx: &mut Context<A>, index: usize) {
    if ctx.life.phase != Phase::Running {
        return;
    }
    let addr = ctx.address();
    let (cell, extras) = ctx.life.cell_and_extras();
    if let Some(servers) = extras.and_then(|e| e.servers.as_mut()) {
        if servers.is_restarting(index) {
            servers.start(act, addr, cell, index);
        }
    }
}

/// After the `pre_stop` hooks: tells the servers to shut down and waits for
/// the graceful ones to finish.
pub(super) fn stop_servers<A: Agent>(
    ctx: &mut Context<A>,
    task: &mut std::task::Context<'_>,
) -> Poll<()> {
    let agent = ctx.life.name;
    loop {
        let (cell, extras) = ctx.life.cell_and_extras();
        let Some(extras) = extras else {
            return Poll::Ready(());
        };
        let Some(servers) = extras.servers.as_mut() else {
            return Poll::Ready(());
        };
        if !extras.servers_shut {
            extras.servers_shut = true;
            servers.shut_down(agent);
        }
        if servers.all_done() {
            break;
        }
        let exit = match servers.rx.poll_recv(task) {
            Poll::Ready(Some(exit)) => exit,
            Poll::Ready(None) => break,
            Poll::Pending => {
                cell.set_waiting_for(servers.running::<A>());
                return Poll::Pending;
            }
        };
        let name = A::HOOKS.servers[exit.index].name;
        if let Some(cause) = servers.settle(exit) {
            ctx.life.fail(Stage::Server, name, cause);
        }
    }
    log::debug!(target: LOG_TARGET, "agent `{}`: servers stopped", ctx.life.name);
    Poll::Ready(())
}
