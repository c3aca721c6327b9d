//! Periodic and cron tasks: the schedule of each task (kept in the
//! lifecycle) and the [`Scheduler`] that starts their runs. What users see
//! of it is described in `docs/tasks.md`.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::Poll;
use std::time::Duration;

use actix::{ActorFuture, AsyncContext};
use actix_rt::time::{Instant, Sleep};
use chrono::{DateTime, Utc};
use croner::Cron;

use super::cell::{AgentCell, BadRun, Run};
use super::cron::{next_cron_time, parse_cron, wall_now};
use super::declare::Work;
use super::declare::{Call, Schedule};
use super::driver::begin_work;
use super::meters;
use super::Context;
use crate::agent::Agent;
use crate::error::{HookFailure, HookResult};
use crate::phase::Phase;
use crate::spans::Span;
use crate::LOG_TARGET;

/// One task's place in the schedule.
struct TaskSlot {
    /// When it is next due.
    due: Instant,
    /// Periodic: the first due time, and the count of periods since.
    first: Instant,
    k: u64,
    /// Cron: the parsed expression (checked at compile time for literals).
    cron: Option<Cron>,
    /// When it runs: as declared, or as a deployment set it.
    schedule: Schedule,
    /// When the run in progress started.
    started: Option<Instant>,
}

/// The schedules of an agent's tasks, kept in its lifecycle.
pub(crate) struct Timers {
    slots: Vec<TaskSlot>,
}

impl fmt::Debug for Timers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Timers")
            .field("tasks", &self.slots.len())
            .finish()
    }
}

/// The instant a wall-clock time stands for, seen from now.
fn instant_of(at: DateTime<Utc>) -> Instant {
    let ahead = (at - wall_now()).to_std().unwrap_or(Duration::ZERO);
    Instant::now() + ahead
}

impl Timers {
    /// Schedules every task of agent `agent` from now (the end of the
    /// `pre_start` hooks), each on the schedule a deployment set for it in
    /// `schedules`, or as declared (past its end).
    fn start<A: Agent>(agent: &'static str, schedules: &[Schedule]) -> Self {
        let now = Instant::now();
        let slots = A::HOOKS
            .tasks
            .iter()
            .enumerate()
            .map(|(index, task)| (task, schedules.get(index).copied().unwrap_or(task.schedule)))
            .map(|(task, schedule)| match schedule {
                Schedule::Every { start_after, .. } => {
                    let first = now + start_after;
                    TaskSlot {
                        due: first,
                        first,
                        k: 0,
                        cron: None,
                        schedule,
                        started: None,
                    }
                }
                Schedule::Cron { expression, zone } => {
                    let cron = match parse_cron(expression) {
                        Ok(cron) => Some(cron),
                        Err(e) => {
                            log::error!(
                                target: LOG_TARGET,
                                "agent `{}`: cron task `{}`: bad expression {expression:?}: {e}; it will not run",
                                agent,
                                task.name
                            );
                            None
                        }
                    };
                    let due = cron
                        .as_ref()
                        .and_then(|c| next_cron_time(c, zone, wall_now()))
                        .map_or(now + Duration::from_secs(u64::MAX / 4), instant_of);
                    TaskSlot {
                        due,
                        first: now,
                        k: 0,
                        cron,
                        schedule,
                        started: None,
                    }
                }
            })
            .collect();
        Timers { slots }
    }

    /// The task due first, and when.
    fn next(&self) -> Option<(usize, Instant)> {
        self.slots
            .iter()
            .enumerate()
            .min_by_key(|(i, s)| (s.due, *i))
            .map(|(i, s)| (i, s.due))
    }

    /// Sets the next due time of task `index` after a run that ended now,
    /// skipping (not replaying) the due times that passed meanwhile; counts
    /// the skipped due times, an overrun, and a run that went well (`ok`
    /// within its timeout) in the agent's cell.
    fn reschedule<A: Agent>(
        &mut self,
        index: usize,
        cell: &AgentCell<A>,
        timed_out: bool,
        ok: bool,
    ) {
        let task = &A::HOOKS.tasks[index];
        let slot = &mut self.slots[index];
        let now = Instant::now();
        let started = slot.started.take().unwrap_or(now);
        match slot.schedule {
            Schedule::Every { period, .. } => {
                let mut skipped = 0u64;
                loop {
                    slot.k += 1;
                    let due = slot.first + period.mul_f64(slot.k as f64);
                    if due > now {
                        slot.due = due;
                        break;
                    }
                    skipped += 1;
                }
                if skipped > 0 {
                    cell.count_skipped(index, skipped);
                    log::warn!(
                        target: LOG_TARGET,
                        "agent `{}`: periodic task `{}` was busy or late for {} due run(s); skipped (no replay)",
                        cell.name(),
                        task.name,
                        skipped
                    );
                }
            }
            Schedule::Cron { zone, .. } => {
                if let Some(next) = slot
                    .cron
                    .as_ref()
                    .and_then(|c| next_cron_time(c, zone, wall_now()))
                {
                    slot.due = instant_of(next);
                }
            }
        }
        let took = now.duration_since(started);
        if ok && took <= task.timeout {
            cell.count_ok(Run::Task(index));
        }
        if took > task.timeout {
            // A sync run cannot be cancelled: count its overrun here (an
            // async one was counted when its timeout cancelled it).
            if !timed_out {
                cell.count_bad_run(index, BadRun::TimedOut);
            }
            log::error!(
                target: LOG_TARGET,
                "agent `{}`: task `{}` took {took:?}, longer than its timeout of {:?}",
                cell.name(),
                task.name,
                task.timeout
            );
        }
    }
}

/// Called when a run of task `index` has ended: logs its failure (the agent
/// keeps running) and schedules the next run.
pub(crate) fn run_ended<A: Agent>(ctx: &mut Context<A>, index: usize, result: HookResult) {
    meters::run_ended(ctx, Run::Task(index));
    ctx.life.close_span(&result);
    let mut timed_out = false;
    let ok = result.is_ok();
    if let Err(cause) = result {
        log::error!(
            target: LOG_TARGET,
            "agent `{}`: task `{}` failed: {cause}",
            ctx.life.name,
            A::HOOKS.tasks[index].name
        );
        let bad = BadRun::of(&cause);
        timed_out = bad == BadRun::TimedOut;
        ctx.life.cell.count_bad_run(index, bad);
    }
    let (cell, extras) = ctx.life.cell_and_extras();
    if let Some(timers) = extras.and_then(|e| e.timers.as_mut()) {
        timers.reschedule::<A>(index, cell, timed_out, ok);
    }
}

/// Starts the agent's timers, if it has tasks.
pub(crate) fn start<A: Agent>(ctx: &mut Context<A>) {
    if A::HOOKS.tasks.is_empty() {
        return;
    }
    let schedules = ctx.life.cell.schedules();
    let timers = Timers::start::<A>(ctx.life.name, &schedules);
    ctx.life.extras().timers = Some(timers);
    ctx.spawn(Scheduler { sleep: None });
}

/// Sleeps until the next due task and starts its run.
struct Scheduler {
    sleep: Option<Pin<Box<Sleep>>>,
}

impl<A: Agent> ActorFuture<A> for Scheduler {
    type Output = ();

    fn poll(
        mut self: Pin<&mut Self>,
        act: &mut A,
        ctx: &mut Context<A>,
        task: &mut std::task::Context<'_>,
    ) -> Poll<()> {
        // The two `Pending`s below without a timer armed are safe: the start
        // hooks, and a run or hook in flight, end inside a poll of this
        // actor, and actix polls every spawned future again after that.
        loop {
            match ctx.life.phase {
                // Start hooks still running: this runs once they are done.
                Phase::Starting => return Poll::Pending,
                Phase::Running => {}
                // Stopping: no new run.
                Phase::Stopping | Phase::Stopped => return Poll::Ready(()),
            }
            if ctx.life.is_busy() {
                // A run (or hook) has the agent; we are polled again after.
                return Poll::Pending;
            }
            let Some((index, due)) = ctx.life.timers().and_then(Timers::next) else {
                return Poll::Ready(());
            };
            if due > Instant::now() {
                let sleep = self
                    .sleep
                    .get_or_insert_with(|| Box::pin(actix_rt::time::sleep_until(due)));
                if sleep.deadline() != due {
                    sleep.as_mut().reset(due);
                }
                if sleep.as_mut().poll(task).is_pending() {
                    return Poll::Pending;
                }
                continue;
            }
            run::<A>(act, ctx, index);
        }
    }
}

/// Starts a run of task `index`: a sync task runs right here; an async one
/// becomes the agent's work in flight, driven like a hook.
fn run<A: Agent>(act: &mut A, ctx: &mut Context<A>, index: usize) {
    let task = &A::HOOKS.tasks[index];
    let (agent, mut kind) = (ctx.life.name, "periodic");
    if let Some(timers) = ctx.life.extras_mut().and_then(|e| e.timers.as_mut()) {
        let slot = &mut timers.slots[index];
        let now = Instant::now();
        slot.started = Some(now);
        if matches!(slot.schedule, Schedule::Cron { .. }) {
            kind = "cron";
        }
        #[cfg(feature = "metrics")]
        if crate::metrics::runs_timed() {
            let late = now.saturating_duration_since(slot.due);
            crate::metrics::task_started_late(agent, kind, task.name, late);
        }
    }
    log::debug!(target: LOG_TARGET, "agent `{}`: running task `{}`", ctx.life.name, task.name);
    meters::run_begins(ctx);
    let span = Span::task(agent, kind, task.name);
    ctx.life.run_span = span.clone();
    match task.call {
        Call::Sync(f) => {
            let entered = span.enter();
            let result = HookFailure::catch_result(|| f(act, ctx, ()));
            entered.exit();
            run_ended(ctx, index, result);
        }
        Call::Async(f) => match HookFailure::catch(|| f(act, ctx, ())) {
            Ok(fut) => begin_work(ctx, Work::Task(index), fut),
            Err(failure) => run_ended(ctx, index, Err(failure)),
        },
    }
}
