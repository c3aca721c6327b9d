//! The duration of each handler run (feature `metrics`). Runs are
//! exclusive (one owns the agent at a time), so one start time serves
//! them all. The duration goes into the agent's cell, bucketed (what the
//! built-in Prometheus recorder renders), and, when the application
//! installed a recorder of its own, into that recorder's histogram.

use ::metrics::Histogram;
use quanta::Instant;

use super::cell::Run;
use super::declare::Schedule;
use super::Context;
use crate::agent::Agent;

/// The timing of one agent's runs, made on its first run.
pub(super) struct Meters {
    /// When the run in progress started.
    started: Instant,
    /// Whether the run in progress is timed (timing was on when it began).
    timing: bool,
    /// The application recorder's histograms, one per handler (tasks,
    /// receivers, consumers); `None` with the built-in recorder.
    recorder: Option<Box<[Histogram]>>,
}

/// The agent's handlers as `(kind, name)`, in slot order; a task's kind
/// is its schedule's (`schedules`: as a deployment set them, if it did).
pub(crate) fn handlers<A: Agent>(schedules: &[Schedule]) -> Vec<(&'static str, &'static str)> {
    let hooks = &A::HOOKS;
    let tasks = hooks.tasks.iter().enumerate().map(|(index, task)| {
        let kind = match schedules.get(index).copied().unwrap_or(task.schedule) {
            Schedule::Every { .. } => "periodic",
            Schedule::Cron { .. } => "cron",
        };
        (kind, task.name)
    });
    let receivers = hooks.receivers.iter().map(|r| ("receiver", r.name));
    let consumers = hooks.consumers.iter().map(|c| ("consumer", c.name));
    tasks.chain(receivers).chain(consumers).collect()
}

impl Meters {
    fn new<A: Agent>(ctx: &Context<A>) -> Self {
        // The built-in recorder goes in before any handle is registered
        // (a handle registered first would record nowhere for good),
        // unless the application installed its own.
        let recorder = crate::metrics::prometheus().is_none().then(|| {
            let agent = ctx.life.name;
            let schedules = ctx.life.cell.schedules();
            handlers::<A>(&schedules)
                .into_iter()
                .map(|(kind, name)| crate::metrics::duration_histogram(agent, kind, name))
                .collect()
        });
        Meters {
            started: Instant::now(),
            timing: false,
            recorder,
        }
    }
}

/// A handler run starts now.
pub(super) fn run_begins<A: Agent>(ctx: &mut Context<A>) {
    if !crate::metrics::runs_timed() {
        if let Some(meters) = ctx.life.extras_mut().and_then(|e| e.meters.as_mut()) {
            meters.timing = false;
        }
        return;
    }
    if ctx.life.extras().meters.is_none() {
        let meters = Meters::new(ctx);
        ctx.life.extras().meters = Some(Box::new(meters));
    }
    if let Some(meters) = ctx.life.extras().meters.as_mut() {
        meters.timing = true;
        meters.started = Instant::now();
    }
}

/// The run that began last has ended: its duration is noted for `run`.
pub(super) fn run_ended<A: Agent>(ctx: &mut Context<A>, run: Run) {
    let (cell, extras) = ctx.life.cell_and_extras();
    let Some(meters) = extras.and_then(|e| e.meters.as_ref()) else {
        return;
    };
    if !meters.timing {
        return;
    }
    let took = meters.started.elapsed();
    let slot = run.slot::<A>();
    cell.record_duration(slot, took);
    if let Some(histogram) = meters.recorder.as_ref().and_then(|h| h.get(slot)) {
        histogram.record(took.as_secs_f64());
    }
}
