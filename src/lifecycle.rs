//! Drives an agent's hooks from actix's `started`/`stopping`/`stopped`.
//!
//! How it works, given what actix does (see `ContextFut` in actix 0.13):
//!
//! - `started` runs the `pre_start` and `post_start` hooks right there as
//!   long as none suspends; when one does, a [`Driver`] pushed with
//!   `ctx.wait` finishes them, so no message and no spawned future runs
//!   before the start hooks are done. Async hooks and task runs own the
//!   agent while they run (see `hooks::AsyncHookAgent`).
//! - `stopping` is synchronous: it runs the `pre_stop` hooks and returns
//!   [`Running::Stop`] when none suspends; otherwise it pushes a `Driver` and
//!   returns [`Running::Continue`], and the driver calls `ctx.terminate()`
//!   when the last hook (and the graceful servers) are done, which ends the
//!   actor without a second `stopping`.
//! - On the "last `Addr` dropped" path actix does not re-poll the actor after
//!   `stopping` returns `Continue`, so the lifecycle keeps the task's waker
//!   and wakes it.
//! - actix drops a `wait` future that returns `Pending` while the actor is
//!   stopping. So the driver holds no state: the hook in flight and the
//!   position in the hook lists live in the context, and `stopping` pushes a
//!   fresh driver whenever one may have been dropped. Stale drivers find
//!   nothing to do and finish.

use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Poll, Waker};

use actix::{ActorContext, ActorFuture, ActorState, AsyncContext, Running};

use crate::hooks::{HookCall, HookFuture, HookResult};
use crate::outcome::AgentCell;
use crate::registry::Registration;
use crate::server::{Servers, Verdict};
use crate::tasks::Timers;
use crate::{Agent, AgentError, Context, HookError, HookFailure, Stage};

const TARGET: &str = "microagent";

/// Where an agent is in its lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Phase {
    /// `pre_start` and `post_start` hooks are running; messages wait.
    Starting,
    /// All start hooks are done; the agent handles messages.
    Running,
    /// `pre_stop` hooks are running.
    Stopping,
    /// The lifecycle is over.
    Stopped,
}

/// What the agent's work in flight is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Work {
    /// A lifecycle hook, by method name (its stage is `Lifecycle::stage`).
    Hook(&'static str),
    /// A run of task `n` of `HOOKS.tasks`.
    Task(usize),
}

/// Per-agent lifecycle state, kept in the agent's [`Context`].
pub(crate) struct Lifecycle<A: actix::Actor<Context = Context<A>>> {
    pub(crate) name: &'static str,
    pub(crate) phase: Phase,
    stage: Stage,
    next: usize,
    /// The async hook or task run that has the agent now.
    inflight: Option<(Work, HookFuture<A>)>,
    stop_requested: bool,
    failures: Vec<HookError>,
    waker: Option<Waker>,
    cell: Arc<AgentCell<A>>,
    /// The agent's servers, once started.
    servers: Option<Servers>,
    /// The schedules of its periodic and cron tasks, once started.
    pub(crate) timers: Option<Timers>,
    /// Whether the servers were told to shut down.
    servers_shut: bool,
    /// The panic that killed the actor's task, if one did.
    crash: Option<String>,
    _registration: Option<Registration>,
}

impl<A: actix::Actor<Context = Context<A>>> Lifecycle<A> {
    pub(crate) fn new(
        name: &'static str,
        cell: Arc<AgentCell<A>>,
        registration: Option<Registration>,
    ) -> Self {
        Lifecycle {
            name,
            phase: Phase::Starting,
            stage: Stage::PreStart,
            next: 0,
            inflight: None,
            stop_requested: false,
            failures: Vec::new(),
            waker: None,
            cell,
            servers: None,
            timers: None,
            servers_shut: false,
            crash: None,
            _registration: registration,
        }
    }

    fn record(&mut self, stage: Stage, hook: &'static str, result: HookResult) {
        self.cell.set_doing(None);
        match result {
            Ok(()) => {
                log::debug!(target: TARGET, "agent `{}`: {stage} hook `{hook}` done", self.name)
            }
            Err(cause) => {
                let error = HookError {
                    agent: self.name,
                    stage,
                    hook,
                    cause,
                };
                log::error!(target: TARGET, "{error}");
                self.failures.push(error);
                // A failed start hook stops the agent; pre_stop failures do not
                // keep the other pre_stop hooks from running.
                if stage != Stage::PreStop {
                    self.stop_requested = true;
                }
            }
        }
    }

    /// Notes that a handler or spawned future panicked (the task is dying).
    pub(crate) fn crashed(&mut self, panic: HookFailure) {
        log::error!(
            target: TARGET,
            "agent `{}` crashed: a message handler or spawned future {panic}",
            self.name
        );
        self.crash = Some(panic.to_string());
    }

    /// The outcome of a lifecycle that ends now, with `otherwise` when no
    /// crash and no failure happened.
    fn outcome(&mut self, otherwise: Result<(), AgentError>) -> Result<(), AgentError> {
        let failures = std::mem::take(&mut self.failures);
        match self.crash.take() {
            Some(panic) => Err(AgentError::Crashed {
                agent: self.name,
                panic,
                failures,
            }),
            None if failures.is_empty() => otherwise,
            None => Err(AgentError::Failed {
                agent: self.name,
                failures,
            }),
        }
    }

    fn set_phase(&mut self, phase: Phase) {
        self.phase = phase;
        self.cell.set_phase(phase);
    }

    fn enter_pre_stop(&mut self) {
        log::info!(target: TARGET, "agent `{}`: stopping", self.name);
        self.set_phase(Phase::Stopping);
        self.stage = Stage::PreStop;
        self.next = 0;
        self.stop_requested = false;
    }

    /// Ends the lifecycle and reports its outcome.
    fn finish(&mut self) {
        if self.phase == Phase::Stopped {
            return;
        }
        self.set_phase(Phase::Stopped);
        let outcome = self.outcome(Ok(()));
        match &outcome {
            Ok(()) => log::info!(target: TARGET, "agent `{}`: stopped", self.name),
            Err(e) => log::warn!(target: TARGET, "agent `{}`: stopped: {e}", self.name),
        }
        // Nobody listening is fine: the outcome was logged.
        self.cell.report(outcome);
    }

    /// Ends a lifecycle that was cut short (`ctx.terminate()`, or the actor
    /// torn down with its arbiter) and reports it.
    fn abort(&mut self) {
        if self.phase == Phase::Stopped {
            return;
        }
        log::warn!(
            target: TARGET,
            "agent `{}`: lifecycle cut short during {:?}; remaining hooks skipped",
            self.name,
            self.phase
        );
        self.set_phase(Phase::Stopped);
        if let Some(servers) = &mut self.servers {
            servers.shut_down(self.name);
        }
        let outcome = self.outcome(Err(AgentError::Aborted { agent: self.name }));
        self.cell.report(outcome);
    }

    /// Whether an async hook or a task run has the agent.
    pub(crate) fn is_busy(&self) -> bool {
        self.inflight.is_some()
    }

    /// Keeps the actor task's waker, for the paths where actix does not
    /// poll again by itself.
    fn remember_waker(&mut self, task: &std::task::Context<'_>) {
        if self.waker.is_none() {
            self.waker = Some(task.waker().clone());
        }
    }

    fn wake(&self) {
        if let Some(waker) = &self.waker {
            waker.wake_by_ref();
        }
    }
}

impl<A: actix::Actor<Context = Context<A>>> Drop for Lifecycle<A> {
    fn drop(&mut self) {
        self.abort();
    }
}

/// Drives whichever hook list the lifecycle is at, for hooks that suspend.
/// Stateless: see the module docs.
struct Driver;

impl<A: Agent> ActorFuture<A> for Driver {
    type Output = ();

    fn poll(
        self: Pin<&mut Self>,
        act: &mut A,
        ctx: &mut Context<A>,
        task: &mut std::task::Context<'_>,
    ) -> Poll<()> {
        ctx.life.remember_waker(task);
        drive(act, ctx, task, true)
    }
}

/// Runs hooks until they are all done (`Ready`) or one is suspended
/// (`Pending`, with the hook's future in `ctx.life.inflight`).
///
/// With `yield_to_stop`, a stop request made by a hook (`ctx.stop()`) ends
/// the call with `Ready`, so that actix calls `stopping`, which resumes it.
fn drive<A: Agent>(
    act: &mut A,
    ctx: &mut Context<A>,
    task: &mut std::task::Context<'_>,
    yield_to_stop: bool,
) -> Poll<()> {
    loop {
        if yield_to_stop && ctx.state() != ActorState::Running {
            return Poll::Ready(());
        }
        if let Some((work, mut fut)) = ctx.life.inflight.take() {
            match fut.as_mut().poll(task) {
                Poll::Pending => {
                    ctx.life.inflight = Some((work, fut));
                    return Poll::Pending;
                }
                Poll::Ready((agent, result)) => {
                    *act = agent;
                    match work {
                        Work::Hook(hook) => {
                            let stage = ctx.life.stage;
                            ctx.life.record(stage, hook, result);
                        }
                        Work::Task(index) => crate::tasks::run_ended(ctx, index, result),
                    }
                    continue;
                }
            }
        }
        if matches!(ctx.life.phase, Phase::Running | Phase::Stopped) {
            return Poll::Ready(());
        }
        if ctx.life.stop_requested {
            match ctx.life.stage {
                // Never fully started: no pre_stop hooks.
                Stage::PreStart => {
                    finish(ctx);
                    return Poll::Ready(());
                }
                Stage::PostStart => ctx.life.enter_pre_stop(),
                _ => ctx.life.stop_requested = false,
            }
        }
        let stage = ctx.life.stage;
        let hooks = A::HOOKS.stage(stage);
        if let Some(hook) = hooks.get(ctx.life.next) {
            ctx.life.cell.set_doing(Some((stage, ctx.life.next)));
            ctx.life.next += 1;
            log::debug!(target: TARGET, "agent `{}`: running {stage} hook `{}`", A::NAME, hook.name);
            run_hook(act, ctx, stage, hook.name, &hook.call);
            continue;
        }
        match stage {
            Stage::PreStart => {
                ctx.life.stage = Stage::PostStart;
                ctx.life.next = 0;
                // The original's order: timers after pre_start, before post_start.
                crate::tasks::start(ctx);
            }
            Stage::PostStart => {
                ctx.life.set_phase(Phase::Running);
                log::info!(target: TARGET, "agent `{}`: started", A::NAME);
                start_servers(act, ctx);
                return Poll::Ready(());
            }
            _ => {
                if stop_servers(ctx, task).is_pending() {
                    return Poll::Pending;
                }
                finish(ctx);
                return Poll::Ready(());
            }
        }
    }
}

fn run_hook<A: Agent>(
    act: &mut A,
    ctx: &mut Context<A>,
    stage: Stage,
    hook: &'static str,
    call: &HookCall<A>,
) {
    // The shims run user code (the hook itself, or `Default::default()` for
    // async hooks), so both are guarded. An async hook's own panics are caught
    // inside its future, which then hands the agent back.
    match call {
        HookCall::Sync(f) => {
            let result = std::panic::catch_unwind(AssertUnwindSafe(|| f(act, ctx)))
                .unwrap_or_else(|payload| Err(HookFailure::from_panic(payload)));
            ctx.life.record(stage, hook, result);
        }
        HookCall::Async(f) => match std::panic::catch_unwind(AssertUnwindSafe(|| f(act, ctx))) {
            Ok(fut) => ctx.life.inflight = Some((Work::Hook(hook), fut)),
            Err(payload) => ctx
                .life
                .record(stage, hook, Err(HookFailure::from_panic(payload))),
        },
    }
}

/// Makes `fut` (which owns the agent) the agent's work in flight, driven
/// exclusively until it gives the agent back.
pub(crate) fn begin_work<A: Agent>(ctx: &mut Context<A>, work: Work, fut: HookFuture<A>) {
    ctx.life.inflight = Some((work, fut));
    ctx.wait(Driver);
}

/// Starts every server hook, each in its own child actor, and the
/// supervisor that watches them.
fn start_servers<A: Agent>(act: &mut A, ctx: &mut Context<A>) {
    let count = A::HOOKS.servers.len();
    if count == 0 {
        return;
    }
    let mut servers = Servers::new(count);
    let addr = ctx.address();
    for index in 0..count {
        servers.start(act, addr.clone(), index);
    }
    ctx.life.servers = Some(servers);
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
        ctx.life.remember_waker(task);
        loop {
            if ctx.life.phase != Phase::Running {
                // Stopping: the driver takes the servers' exits from here.
                return Poll::Ready(());
            }
            let Some(servers) = ctx.life.servers.as_mut() else {
                return Poll::Ready(());
            };
            let exit = match servers.rx.poll_recv(task) {
                Poll::Ready(Some(exit)) => exit,
                Poll::Ready(None) | Poll::Pending => return Poll::Pending,
            };
            let index = exit.index;
            let name = A::HOOKS.servers[index].name;
            match servers.judge::<A>(exit) {
                Verdict::Finished => {}
                Verdict::Restart(backoff) => {
                    ctx.run_later(backoff, move |act, ctx| restart_server(act, ctx, index));
                }
                Verdict::Interrupt => ctx.stop(),
                Verdict::Failed(cause) => {
                    ctx.life.record(Stage::Server, name, Err(cause));
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
    if let Some(servers) = ctx.life.servers.as_mut() {
        if servers.is_restarting(index) {
            servers.start(act, addr, index);
        }
    }
}

/// After the `pre_stop` hooks: tells the servers to shut down and waits for
/// the graceful ones to finish.
fn stop_servers<A: Agent>(ctx: &mut Context<A>, task: &mut std::task::Context<'_>) -> Poll<()> {
    let life = &mut ctx.life;
    let Some(servers) = life.servers.as_mut() else {
        return Poll::Ready(());
    };
    if !life.servers_shut {
        life.servers_shut = true;
        servers.shut_down(A::NAME);
    }
    while !servers.all_done() {
        let exit = match servers.rx.poll_recv(task) {
            Poll::Ready(Some(exit)) => exit,
            Poll::Ready(None) => break,
            Poll::Pending => {
                life.cell.set_waiting_for(servers.running::<A>());
                return Poll::Pending;
            }
        };
        let name = A::HOOKS.servers[exit.index].name;
        if let Some(cause) = servers.settle(exit) {
            let error = HookError {
                agent: A::NAME,
                stage: Stage::Server,
                hook: name,
                cause,
            };
            log::error!(target: TARGET, "{error}");
            life.failures.push(error);
        }
    }
    log::debug!(target: TARGET, "agent `{}`: servers stopped", A::NAME);
    Poll::Ready(())
}

fn finish<A: Agent>(ctx: &mut Context<A>) {
    ctx.life.finish();
    ctx.terminate();
}

/// `Actor::started` of every agent.
///
/// Hooks that complete without suspending run right here; a [`Driver`]
/// takes over only when one suspends.
#[doc(hidden)]
pub fn started<A: Agent>(act: &mut A, ctx: &mut Context<A>) {
    log::info!(target: TARGET, "agent `{}`: starting", A::NAME);
    // No waker here (actix does not pass one): a suspended hook is polled
    // again at once, with the task's waker, by the driver.
    let mut task = std::task::Context::from_waker(Waker::noop());
    let suspended = drive(act, ctx, &mut task, true).is_pending();
    // An async pre_stop hook may suspend on the "last `Addr` dropped" path,
    // where only the stored waker gets the actor polled again: the driver
    // stores it on its first poll.
    if suspended || (ctx.life.waker.is_none() && A::HOOKS.has_async(Stage::PreStop)) {
        ctx.wait(Driver);
    }
}

/// `Actor::stopping` of every agent.
///
/// Runs the `pre_stop` hooks; when they all complete without suspending the
/// actor stops right away, otherwise a [`Driver`] finishes them first.
#[doc(hidden)]
pub fn stopping<A: Agent>(act: &mut A, ctx: &mut Context<A>) -> Running {
    match ctx.life.phase {
        Phase::Stopped => return Running::Stop,
        Phase::Starting => ctx.life.stop_requested = true,
        Phase::Running => ctx.life.enter_pre_stop(),
        Phase::Stopping => {}
    }
    let waker = ctx.life.waker.take();
    let mut task = std::task::Context::from_waker(waker.as_ref().unwrap_or(Waker::noop()));
    let done = drive(act, ctx, &mut task, false).is_ready();
    ctx.life.waker = waker;
    if done && ctx.life.phase == Phase::Stopped {
        return Running::Stop;
    }
    ctx.wait(Driver);
    // On the "last `Addr` dropped" path actix does not poll again by itself.
    ctx.life.wake();
    Running::Continue
}

/// `Handler<ServerInterrupt>` of every agent: a graceful stop.
#[doc(hidden)]
pub fn interrupt<A: Agent>(_act: &mut A, ctx: &mut Context<A>, interrupt: crate::ServerInterrupt) {
    log::info!(target: TARGET, "agent `{}`: interrupted: {}", A::NAME, interrupt.reason());
    ctx.stop();
}

/// `Actor::stopped` of every agent.
#[doc(hidden)]
pub fn stopped<A: Agent>(_act: &mut A, ctx: &mut Context<A>) {
    // Only `ctx.terminate()` from user code gets here before `finish`.
    ctx.life.abort();
}
