//! The duration of each handler run, into the `metrics` facade (feature
//! `metrics`). Runs are exclusive (one owns the agent at a time), so one
//! start time serves them all.

use std::time::Instant;

use ::metrics::Histogram;

use super::declare::Schedule;
use super::Context;
use crate::agent::Agent;

/// One agent's duration histograms, registered on its first run.
pub(super) struct Meters {
    /// When the run in progress started.
    started: Instant,
    tasks: Box<[Histogram]>,
    receivers: Box<[Histogram]>,
    consumers: Box<[Histogram]>,
}

/// A handler of the agent, by its index in its list.
#[derive(Debug, Clone, Copy)]
pub(super) enum Run {
    Task(usize),
    Receiver(usize),
    Consumer(usize),
}

impl Meters {
    fn new<A: Agent>(ctx: &Context<A>) -> Self {
        // A handle registered before a recorder is installed would record
        // nowhere for good: the built-in one goes in first, unless the
        // application installed its own.
        crate::metrics::prometheus();
        let agent = ctx.life.name;
        let hooks = &A::HOOKS;
        let schedules = ctx.life.cell.schedules();
        let tasks = hooks.tasks.iter().enumerate().map(|(index, task)| {
            let kind = match schedules.get(index).copied().unwrap_or(task.schedule) {
                Schedule::Every { .. } => "periodic",
                Schedule::Cron { .. } => "cron",
            };
            crate::metrics::duration_histogram(agent, kind, task.name)
        });
        let receivers = hooks
            .receivers
            .iter()
            .map(|r| crate::metrics::duration_histogram(agent, "receiver", r.name));
        let consumers = hooks
            .consumers
            .iter()
            .map(|c| crate::metrics::duration_histogram(agent, "consumer", c.name));
        Meters {
            started: Instant::now(),
            tasks: tasks.collect(),
            receivers: receivers.collect(),
            consumers: consumers.collect(),
        }
    }
}

/// A handler run starts now.
pub(super) fn run_begins<A: Agent>(ctx: &mut Context<A>) {
    let now = Instant::now();
    if ctx.life.extras().meters.is_none() {
        let meters = Meters::new(ctx);
        ctx.life.extras().meters = Some(Box::new(meters));
    }
    if let Some(meters) = ctx.life.extras().meters.as_mut() {
        meters.started = now;
    }
}

/// The run that began last has ended: its duration goes into `run`'s
/// histogram.
pub(super) fn run_ended<A: Agent>(ctx: &mut Context<A>, run: Run) {
    let Some(meters) = ctx.life.extras_mut().and_then(|e| e.meters.as_ref()) else {
        return;
    };
    let histogram = match run {
        Run::Task(index) => meters.tasks.get(index),
        Run::Receiver(index) => meters.receivers.get(index),
        Run::Consumer(index) => meters.consumers.get(index),
    };
    if let Some(histogram) = histogram {
        histogram.record(meters.started.elapsed().as_secs_f64());
    }
}
