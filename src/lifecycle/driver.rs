//! Drives an agent's hooks from actix's `started`/`stopping`/`stopped`
//! (how and why: see the [`lifecycle`](super) module docs).

use std::pin::Pin;
use std::task::{Poll, Waker};

use actix::{ActorContext, ActorFuture, ActorState, AsyncContext, Running};

use super::declare::Work;
use super::declare::{Call, HookFuture};
use super::supervisor::{start_servers, stop_servers};
use super::{consumers, receivers, tasks, Context};
use crate::agent::Agent;
use crate::error::{HookFailure, HookResult, Stage};
use crate::phase::Phase;
use crate::server::ServerInterrupt;
use crate::spans::Span;
use crate::LOG_TARGET;

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
        // The work in flight is polled where it lies; it leaves the
        // lifecycle only once it is done.
        if let Some((_, fut)) = &mut ctx.life.inflight {
            let entered = ctx.life.run_span.enter();
            let polled = fut.as_mut().poll(task);
            entered.exit();
            let Poll::Ready((agent, result)) = polled else {
                return Poll::Pending;
            };
            *act = agent;
            if let Some((work, _)) = ctx.life.inflight.take() {
                work_ended(ctx, work, result);
            }
            continue;
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
        match confirm_start(ctx, task) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(true) => continue,
            Poll::Ready(false) => {}
        }
        let stage = ctx.life.stage;
        let hooks = A::HOOKS.stage(stage);
        if let Some(hook) = hooks.get(ctx.life.next) {
            ctx.life.cell.set_doing(Some((stage, ctx.life.next)));
            #[cfg(feature = "metrics")]
            {
                ctx.life.hook_started = crate::metrics::runs_timed().then(quanta::Instant::now);
            }
            ctx.life.next += 1;
            ctx.life.run_span = Span::hook(ctx.life.name, stage.label(), hook.name);
            log::debug!(target: LOG_TARGET, "agent `{}`: running {stage} hook `{}`", ctx.life.name, hook.name);
            if run_hook(act, ctx, task, stage, hook.name, &hook.call).is_pending() {
                return Poll::Pending;
            }
            continue;
        }
        match stage {
            Stage::PreStart => {
                ctx.life.stage = Stage::PostStart;
                ctx.life.next = 0;
                if group_stopping() {
                    // Its group is stopping because another member failed:
                    // no post_start, and nothing started for it; its
                    // pre_stop hooks run.
                    log::info!(target: LOG_TARGET, "agent `{}`: its group is stopping; no post_start", ctx.life.name);
                    ctx.life.stop_requested = true;
                    continue;
                }
                // The original's order: timers after pre_start, before
                // post_start; receivers subscribed before post_start too,
                // so a signal sent from post_start reaches them.
                tasks::start(ctx);
                receivers::subscribe(ctx);
                consumers::start(ctx);
            }
            Stage::PostStart => {
                now_running(act, ctx);
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

/// Whether the agent's launcher group is stopping because a member failed.
fn group_stopping() -> bool {
    crate::registry::current().is_some_and(|agents| agents.starts_aborted())
}

/// The work in flight ended with `result`: the lifecycle or the run's
/// kind records it.
fn work_ended<A: Agent>(ctx: &mut Context<A>, work: Work, result: HookResult) {
    match work {
        Work::Hook(hook) => {
            let stage = ctx.life.stage;
            ctx.life.record(stage, hook, result);
        }
        Work::Task(index) => tasks::run_ended(ctx, index, result),
        Work::Receiver(index) => receivers::run_ended(ctx, index, result),
        Work::Consumer(index) => consumers::run_ended(ctx, index, result),
    }
}

/// Runs one hook. An async hook is polled at once: most finish on their
/// first poll, and one that suspends becomes the work in flight
/// (`Pending`).
fn run_hook<A: Agent>(
    act: &mut A,
    ctx: &mut Context<A>,
    task: &mut std::task::Context<'_>,
    stage: Stage,
    hook: &'static str,
    call: &Call<A>,
) -> Poll<()> {
    // The shims run user code (the hook itself, or `Default::default()` for
    // async hooks), so both are guarded. An async hook's own panics are caught
    // inside its future, which then hands the agent back.
    let span = ctx.life.run_span.clone();
    let entered = span.enter();
    let result = match call {
        Call::Sync(f) => HookFailure::catch_result(|| f(act, ctx, ())),
        Call::Async(f) => match HookFailure::catch(|| f(act, ctx, ())) {
            Ok(mut fut) => match fut.as_mut().poll(task) {
                Poll::Ready((agent, result)) => {
                    *act = agent;
                    result
                }
                Poll::Pending => {
                    ctx.life.inflight = Some((Work::Hook(hook), fut));
                    return Poll::Pending;
                }
            },
            Err(failure) => Err(failure),
        },
    };
    entered.exit();
    ctx.life.record(stage, hook, result);
    Poll::Ready(())
}

/// Makes `fut` (which owns the agent) the agent's work in flight, driven
/// exclusively until it gives the agent back.
pub(super) fn begin_work<A: Agent>(ctx: &mut Context<A>, work: Work, fut: HookFuture<A>) {
    ctx.life.inflight = Some((work, fut));
    ctx.wait(Driver);
}

/// The start hooks are done: the agent runs, and so do its servers.
fn now_running<A: Agent>(act: &mut A, ctx: &mut Context<A>) {
    ctx.life.set_phase(Phase::Running);
    log::info!(target: LOG_TARGET, "agent `{}`: started", ctx.life.name);
    start_servers(act, ctx);
}

/// Before `post_start`: Redis confirming the receivers' subscriptions,
/// then each consumer's first attempt at its queue (a queue the broker
/// refuses for good fails the start). `Pending` while waiting; `true` when
/// the driver must look again (a confirmation came, or a failure stops the
/// agent).
fn confirm_start<A: Agent>(ctx: &mut Context<A>, task: &mut std::task::Context<'_>) -> Poll<bool> {
    if let Some(confirming) = ctx.life.extras_mut().and_then(|e| e.confirming.as_mut()) {
        let result = std::task::ready!(confirming.as_mut().poll(task));
        ctx.life.extras().confirming = None;
        if let Err(error) = result {
            ctx.life.subscribe_failed(error);
        }
        return Poll::Ready(true);
    }
    if ctx.life.stage != Stage::PostStart || ctx.life.next != 0 {
        return Poll::Ready(false);
    }
    let Some(extras) = ctx.life.extras_mut() else {
        return Poll::Ready(false);
    };
    let mut refused = None;
    for (index, consumer) in extras.consuming.iter_mut().enumerate() {
        if let Err(error) = std::task::ready!(consumer.poll_started(task)) {
            refused = Some((index, error));
            break;
        }
    }
    match refused {
        Some((index, error)) => {
            ctx.life
                .consume_failed(A::HOOKS.consumers[index].name, error);
            Poll::Ready(true)
        }
        None => Poll::Ready(false),
    }
}

fn finish<A: Agent>(ctx: &mut Context<A>) {
    ctx.life.finish();
    ctx.terminate();
}

/// `Actor::started` of every agent.
///
/// Hooks that complete without suspending run right here; a `Driver`
/// takes over only when one suspends.
pub fn started<A: Agent>(act: &mut A, ctx: &mut Context<A>) {
    log::info!(target: LOG_TARGET, "agent `{}`: starting", ctx.life.name);
    if A::HOOKS.declares_nothing() {
        // Where the driver would get with nothing to run, without it.
        ctx.life.stage = Stage::PostStart;
        now_running(act, ctx);
        return;
    }
    // No waker here (actix does not pass one): a suspended hook is polled
    // again at once, with the task's waker, by the driver.
    let mut task = std::task::Context::from_waker(Waker::noop());
    if drive(act, ctx, &mut task, true).is_pending() {
        ctx.wait(Driver);
    }
}

/// `Actor::stopping` of every agent.
///
/// Runs the `pre_stop` hooks; when they all complete without suspending the
/// actor stops right away, otherwise a `Driver` finishes them first.
pub fn stopping<A: Agent>(act: &mut A, ctx: &mut Context<A>) -> Running {
    match ctx.life.phase {
        Phase::Stopped => return Running::Stop,
        Phase::Starting => ctx.life.stop_requested = true,
        Phase::Running => {
            ctx.life.enter_pre_stop();
            if A::HOOKS.declares_nothing() {
                // No pre_stop hook, no server, no work in flight.
                finish(ctx);
                return Running::Stop;
            }
        }
        Phase::Stopping => {}
    }
    // No waker here either: a hook that suspends is polled again, with the
    // task's waker, by the driver pushed below.
    let mut task = std::task::Context::from_waker(Waker::noop());
    let done = drive(act, ctx, &mut task, false).is_ready();
    if done && ctx.life.phase == Phase::Stopped {
        return Running::Stop;
    }
    ctx.wait(Driver);
    // On the "last `Addr` dropped" path actix does not poll again by itself:
    // the task's future wakes the task when this poll ends.
    ctx.life.wake_requested = true;
    Running::Continue
}

/// `Handler<ServerInterrupt>` of every agent: a graceful stop.
pub fn interrupt<A: Agent>(_act: &mut A, ctx: &mut Context<A>, interrupt: ServerInterrupt) {
    log::info!(target: LOG_TARGET, "agent `{}`: interrupted: {}", ctx.life.name, interrupt.reason());
    ctx.stop();
}

/// `Handler<GetInfo>` of every agent: what it declares, with what it did.
pub fn running_info<A: Agent>(_act: &mut A, ctx: &mut Context<A>) -> crate::info::AgentInfo {
    ctx.life.cell.running_info()
}

/// `Actor::stopped` of every agent.
pub fn stopped<A: Agent>(_act: &mut A, ctx: &mut Context<A>) {
    // Only `ctx.terminate()` from user code gets here before `finish`.
    ctx.life.abort();
}
