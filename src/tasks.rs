//! Periodic and cron tasks: runs on a schedule, each with the agent to itself.
//!
//! ```
//! use microagent::prelude::*;
//!
//! #[derive(Default, MicroAgent)]
//! struct Cache {
//!     refreshed: u32,
//! }
//!
//! #[microagent::hooks]
//! impl Cache {
//!     // Every 10 ms, first at once; a run may take 5 ms at most.
//!     #[periodic(period = 0.01, timeout = 0.005)]
//!     async fn refresh(&mut self, addr: Addr<Self>) {
//!         self.refreshed += 1;
//!         if self.refreshed == 3 {
//!             addr.do_send(StopAgent);
//!         }
//!     }
//!
//!     // At minute 0 of every fourth hour, UTC.
//!     #[cron("0 */4 * * *", timeout = 30.0)]
//!     fn report(&mut self) {}
//! }
//!
//! assert!(microagent::run_agent(Cache::default()).is_ok());
//! ```
//!
//! - The timers start after the `pre_start` hooks and before the
//!   `post_start` hooks; a periodic task first runs `start_after` seconds
//!   after that point, then every `period` seconds on a fixed-rate schedule
//!   (runs are due at start + k * period, whatever they take).
//! - A run has the agent to itself, like a message handler: messages wait.
//! - Runs of a task never overlap: when a run is still going at its next due
//!   time, that run is skipped with a warning, and missed runs are not
//!   replayed. A run that waits for another task's run starts late instead.
//! - An `async` run that exceeds its `timeout` is cancelled (the agent is
//!   kept) and logged as an error; a sync run cannot be cancelled, so one
//!   that overran is logged after it returns. A run that fails or panics is
//!   logged too. None of these stops the agent (as in the original), and
//!   the schedule goes on.
//! - When the agent starts stopping, no new run starts; a run in progress
//!   finishes (bounded by its timeout) before the `pre_stop` hooks.
//! - An agent with tasks stays alive while its timers run, as an actix actor
//!   with a `run_interval` does: stop it explicitly.

use std::fmt;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::str::FromStr;
use std::task::Poll;
use std::time::Duration;

use actix::{ActorFuture, AsyncContext};
use actix_rt::time::{Instant, Sleep};
use chrono::{DateTime, Local, Utc};
use croner::Cron;

use crate::hooks::{HookFuture, HookResult, IntoHookResult};
use crate::lifecycle::Work;
use crate::{Agent, Context, HookFailure, Phase};

const TARGET: &str = "microagent";

/// The time zone a cron expression is read in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Zone {
    /// UTC (the default).
    Utc,
    /// The machine's local time zone.
    Local,
}

/// When a task runs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Schedule {
    /// Every `period` seconds, first after `start_after` seconds.
    Every {
        /// Seconds between runs (above 0).
        period: f64,
        /// Seconds before the first run.
        start_after: f64,
    },
    /// At the times a cron expression gives.
    Cron {
        /// The expression, as declared.
        expression: &'static str,
        /// The time zone it is read in.
        zone: Zone,
    },
}

/// How the lifecycle calls a task.
pub enum TaskCall<A: actix::Actor<Context = Context<A>>> {
    /// A plain `fn`, given the agent and its context.
    Sync(fn(&mut A, &mut Context<A>) -> HookResult),
    /// An `async fn`: the shim moves the agent into the returned future,
    /// which applies the timeout and gives the agent back.
    Async(fn(&mut A, &mut Context<A>, Duration) -> HookFuture<A>),
}

/// One declared periodic or cron task.
pub struct Task<A: actix::Actor<Context = Context<A>>> {
    /// The method's name.
    pub name: &'static str,
    /// How to call it.
    pub call: TaskCall<A>,
    /// Seconds a run may take.
    pub timeout: f64,
    /// When it runs.
    pub schedule: Schedule,
}

/// The error of a run cancelled by its timeout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("timed out after {0:?}")]
pub struct TimedOut(pub Duration);

/// Awaits a task's run, bounded by its timeout; panics are caught.
#[doc(hidden)]
pub async fn call_task<R: IntoHookResult>(
    timeout: Duration,
    fut: impl Future<Output = R>,
) -> HookResult {
    match actix_rt::time::timeout(timeout, crate::hooks::call_async(fut)).await {
        Ok(result) => result,
        Err(_) => Err(HookFailure::Error(Box::new(TimedOut(timeout)))),
    }
}

/// Parses a cron expression the way `#[cron(...)]` does: 5 fields (minute
/// hour day-of-month month day-of-week), optionally a leading seconds field,
/// names, lists, ranges, steps, 0 and 7 for Sunday, and the `@hourly`,
/// `@daily`, `@weekly`, `@monthly`, `@yearly` shorthands.
pub fn parse_cron(expression: &str) -> Result<Cron, croner::errors::CronError> {
    Cron::from_str(expression)
}

/// The next time a cron expression fires strictly after `after`.
pub fn next_cron_time(cron: &Cron, zone: Zone, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
    match zone {
        Zone::Utc => cron.find_next_occurrence(&after, false).ok(),
        Zone::Local => cron
            .find_next_occurrence(&after.with_timezone(&Local), false)
            .ok()
            .map(|t| t.with_timezone(&Utc)),
    }
}

/// A task's place in the schedule.
struct Slot {
    /// When it is next due.
    due: Instant,
    /// Periodic: the first due time, and the count of periods since.
    first: Instant,
    k: u64,
    /// Cron: the parsed expression (checked at compile time for literals).
    cron: Option<Cron>,
    /// When the run in progress started.
    started: Option<Instant>,
}

/// The schedules of an agent's tasks, kept in its lifecycle.
pub(crate) struct Timers {
    slots: Vec<Slot>,
}

impl fmt::Debug for Timers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Timers")
            .field("tasks", &self.slots.len())
            .finish()
    }
}

fn secs(s: f64) -> Duration {
    Duration::try_from_secs_f64(s).unwrap_or(Duration::ZERO)
}

/// The instant a wall-clock time stands for, seen from now.
fn instant_of(at: DateTime<Utc>) -> Instant {
    let ahead = (at - Utc::now()).to_std().unwrap_or(Duration::ZERO);
    Instant::now() + ahead
}

impl Timers {
    /// Schedules every task from now (the end of the `pre_start` hooks).
    pub(crate) fn start<A: Agent>() -> Self {
        let now = Instant::now();
        let slots = A::HOOKS
            .tasks
            .iter()
            .map(|task| match task.schedule {
                Schedule::Every { start_after, .. } => {
                    let first = now + secs(start_after);
                    Slot {
                        due: first,
                        first,
                        k: 0,
                        cron: None,
                        started: None,
                    }
                }
                Schedule::Cron { expression, zone } => {
                    let cron = match parse_cron(expression) {
                        Ok(cron) => Some(cron),
                        Err(e) => {
                            log::error!(
                                target: TARGET,
                                "agent `{}`: cron task `{}`: bad expression {expression:?}: {e}; it will not run",
                                A::NAME,
                                task.name
                            );
                            None
                        }
                    };
                    let due = cron
                        .as_ref()
                        .and_then(|c| next_cron_time(c, zone, Utc::now()))
                        .map_or(now + Duration::from_secs(u64::MAX / 4), instant_of);
                    Slot {
                        due,
                        first: now,
                        k: 0,
                        cron,
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
    /// skipping (not replaying) the due times that passed meanwhile.
    fn reschedule<A: Agent>(&mut self, index: usize) {
        let task = &A::HOOKS.tasks[index];
        let slot = &mut self.slots[index];
        let now = Instant::now();
        let started = slot.started.take().unwrap_or(now);
        match task.schedule {
            Schedule::Every { period, .. } => {
                let period = secs(period);
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
                    log::warn!(
                        target: TARGET,
                        "agent `{}`: periodic task `{}` was busy or late for {} due run(s); skipped (no replay)",
                        A::NAME,
                        task.name,
                        skipped
                    );
                }
            }
            Schedule::Cron { zone, .. } => {
                if let Some(next) = slot
                    .cron
                    .as_ref()
                    .and_then(|c| next_cron_time(c, zone, Utc::now()))
                {
                    slot.due = instant_of(next);
                }
            }
        }
        let took = now.duration_since(started);
        if took > secs(task.timeout) {
            log::error!(
                target: TARGET,
                "agent `{}`: task `{}` took {took:?}, longer than its timeout of {:?}",
                A::NAME,
                task.name,
                secs(task.timeout)
            );
        }
    }
}

/// Logs a run's failure; the agent keeps running.
pub(crate) fn report_run<A: Agent>(index: usize, result: HookResult) {
    if let Err(cause) = result {
        log::error!(
            target: TARGET,
            "agent `{}`: task `{}` failed: {cause}",
            A::NAME,
            A::HOOKS.tasks[index].name
        );
    }
}

/// Called when a run of task `index` has ended.
pub(crate) fn run_ended<A: Agent>(ctx: &mut Context<A>, index: usize, result: HookResult) {
    report_run::<A>(index, result);
    if let Some(timers) = ctx.life.timers.as_mut() {
        timers.reschedule::<A>(index);
    }
}

/// Starts the agent's timers, if it has tasks.
pub(crate) fn start<A: Agent>(ctx: &mut Context<A>) {
    if A::HOOKS.tasks.is_empty() {
        return;
    }
    ctx.life.timers = Some(Timers::start::<A>());
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
            let Some((index, due)) = ctx.life.timers.as_ref().and_then(Timers::next) else {
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
    if let Some(timers) = ctx.life.timers.as_mut() {
        timers.slots[index].started = Some(Instant::now());
    }
    log::debug!(target: TARGET, "agent `{}`: running task `{}`", A::NAME, task.name);
    match task.call {
        TaskCall::Sync(f) => {
            let result = std::panic::catch_unwind(AssertUnwindSafe(|| f(act, ctx)))
                .unwrap_or_else(|payload| Err(HookFailure::from_panic(payload)));
            run_ended(ctx, index, result);
        }
        TaskCall::Async(f) => {
            let timeout = secs(task.timeout);
            match std::panic::catch_unwind(AssertUnwindSafe(|| f(act, ctx, timeout))) {
                Ok(fut) => crate::lifecycle::begin_work(ctx, Work::Task(index), fut),
                Err(payload) => run_ended(ctx, index, Err(HookFailure::from_panic(payload))),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, s).unwrap()
    }

    fn next(expr: &str, after: DateTime<Utc>) -> DateTime<Utc> {
        next_cron_time(&parse_cron(expr).unwrap(), Zone::Utc, after).unwrap()
    }

    #[test]
    fn five_fields_steps_and_shorthands() {
        let t = at(2026, 11, 26, 10, 21, 30);
        assert_eq!(next("0 */4 * * *", t), at(2026, 11, 26, 12, 0, 0));
        assert_eq!(next("*/15 * * * *", t), at(2026, 11, 26, 10, 30, 0));
        assert_eq!(next("@hourly", t), at(2026, 11, 26, 11, 0, 0));
        assert_eq!(next("@daily", t), at(2026, 11, 27, 0, 0, 0));
        assert_eq!(next("@monthly", t), at(2026, 12, 1, 0, 0, 0));
        assert_eq!(next("@yearly", t), at(2027, 1, 1, 0, 0, 0));
        // Six fields: seconds first.
        assert_eq!(next("* * * * * *", t), at(2026, 11, 26, 10, 21, 31));
    }

    #[test]
    fn day_of_week_is_standard_0_and_7_are_sunday_1_is_monday() {
        // 2026-11-26 is a Thursday.
        let t = at(2026, 11, 26, 10, 0, 0);
        assert_eq!(next("0 9 * * 0", t), at(2026, 11, 29, 9, 0, 0));
        assert_eq!(next("0 9 * * 7", t), at(2026, 11, 29, 9, 0, 0));
        assert_eq!(next("0 9 * * SUN", t), at(2026, 11, 29, 9, 0, 0));
        assert_eq!(next("0 9 * * 1", t), at(2026, 11, 30, 9, 0, 0));
        assert_eq!(next("0 9 * * mon-fri", t), at(2026, 11, 27, 9, 0, 0));
        assert_eq!(next("0 9 * JAN *", t), at(2027, 1, 1, 9, 0, 0));
    }

    #[test]
    fn bad_expressions_are_rejected() {
        for bad in [
            "",
            "* * *",
            "61 * * * *",
            "* 25 * * *",
            "@sometimes",
            "0 9 * * 8",
        ] {
            assert!(parse_cron(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn local_time_is_converted_back_to_utc() {
        let t = at(2026, 11, 26, 10, 21, 30);
        let local = next_cron_time(&parse_cron("@hourly").unwrap(), Zone::Local, t).unwrap();
        assert!(local > t && local - t <= chrono::Duration::hours(1));
    }
}
