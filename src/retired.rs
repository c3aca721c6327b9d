//! What agents that have stopped did (feature `metrics`): their handler
//! runs by outcome and their run durations, kept when they leave the
//! registry, so that the metrics' counters stay monotonic when an agent
//! goes (and one of the same name comes back). The registry hands them
//! over; the metrics add the live agents' to them.

use std::collections::BTreeMap;
use std::sync::{Mutex, PoisonError};

use crate::durations::{Durations, HandlerDurations};
use crate::info::{AgentInfo, HandlerRuns, TaskRuns};

/// A handler's runs with one outcome: `(agent, kind, handler, outcome)`.
type RunsKey = (&'static str, &'static str, &'static str, &'static str);

/// The runs of agents that have stopped, so that a counter stays
/// monotonic when an agent goes (and one of the same name comes back).
static RETIRED: Mutex<BTreeMap<RunsKey, u64>> = Mutex::new(BTreeMap::new());

/// A handler's durations: `(agent, kind, handler)`.
pub(crate) type DurationsKey = (&'static str, &'static str, &'static str);

/// The run durations of agents that have stopped.
static RETIRED_DURATIONS: Mutex<BTreeMap<DurationsKey, Durations>> = Mutex::new(BTreeMap::new());

/// An agent leaves the registry: its runs so far stay in the counters and
/// histograms.
pub(crate) fn retire(info: &AgentInfo, durations: HandlerDurations) {
    let mut retired = RETIRED.lock().unwrap_or_else(PoisonError::into_inner);
    add_runs(&mut retired, info);
    drop(retired);
    let mut retired = RETIRED_DURATIONS
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    for ((kind, handler), durations) in durations {
        retired
            .entry((info.name, kind, handler))
            .or_default()
            .add(&durations);
    }
}

/// The runs of the stopped agents plus those of the live ones, summed
/// over agents of the same name (a counter's value is absolute: two
/// agents named alike must add up, not overwrite each other).
pub(crate) fn all_runs(live: &[AgentInfo]) -> BTreeMap<RunsKey, u64> {
    let mut runs = RETIRED
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    for info in live {
        add_runs(&mut runs, info);
    }
    runs
}

/// Adds one agent's handler runs, by outcome.
fn add_runs(table: &mut BTreeMap<RunsKey, u64>, info: &AgentInfo) {
    let agent = info.name;
    let mut add = |kind, handler, outcome, count: u64| {
        *table.entry((agent, kind, handler, outcome)).or_default() += count;
    };
    for receiver in &info.receivers {
        handler_runs(&mut add, "receiver", receiver.name, &receiver.runs, true);
    }
    for consumer in &info.consumers {
        handler_runs(&mut add, "consumer", consumer.name, &consumer.runs, false);
    }
    for task in &info.periodic {
        task_runs(&mut add, "periodic", task.name, &task.runs);
    }
    for task in &info.cron {
        task_runs(&mut add, "cron", task.name, &task.runs);
    }
}

fn handler_runs(
    add: &mut impl FnMut(&'static str, &'static str, &'static str, u64),
    kind: &'static str,
    handler: &'static str,
    runs: &HandlerRuns,
    receiver: bool,
) {
    let mut outcomes = vec![
        ("ok", runs.ok),
        ("failed", runs.failed),
        ("panicked", runs.panicked),
        ("timed_out", runs.timed_out),
        ("bad_input", runs.bad_input),
    ];
    if receiver {
        outcomes.push(("dropped", runs.dropped));
    }
    for (outcome, count) in outcomes {
        add(kind, handler, outcome, count);
    }
}

fn task_runs(
    add: &mut impl FnMut(&'static str, &'static str, &'static str, u64),
    kind: &'static str,
    task: &'static str,
    runs: &TaskRuns,
) {
    for (outcome, count) in [
        ("ok", runs.ok),
        ("failed", runs.failed),
        ("panicked", runs.panicked),
        ("timed_out", runs.timed_out),
        ("skipped", runs.skipped),
    ] {
        add(kind, task, outcome, count);
    }
}

/// The run durations of the stopped agents, by `(agent, kind, handler)`.
pub(crate) fn retired_durations() -> BTreeMap<DurationsKey, Durations> {
    RETIRED_DURATIONS
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone()
}
