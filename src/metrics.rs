//! Prometheus metrics of agents, their handlers and their backends,
//! through the [`metrics`](https://docs.rs/metrics) facade (feature
//! `metrics`).
//!
//! The library emits; the application picks the exporter. An application
//! that installs a `metrics` recorder of its own, before it starts its
//! agents, gets every metric below through it. One that installs none
//! gets a Prometheus recorder, installed by the first handler run or the
//! health server, whichever comes first; the health server then answers
//! `GET /metrics` in the Prometheus text format (see
//! [`web::health`](crate::web::health)). A recorder installed after that
//! is refused by the facade (one global recorder per process).
//!
//! Counts have one source of truth: the counters an agent keeps for
//! [`AgentInfo`] (its handlers' runs by outcome) and the
//! bus's own counts. [`sample`] copies them into the recorder (as
//! absolute counter values and gauges); `GET /metrics` samples before it
//! renders, and an application with its own exporter calls [`sample`] on
//! its export interval. Durations are recorded per run, as histograms.
//!
//! | metric | type | labels | meaning |
//! |---|---|---|---|
//! | `microagent_agents` | gauge | `phase` | live agents by phase (`starting`, `running`, `stopping`) |
//! | `microagent_handler_runs_total` | counter | `agent`, `kind`, `handler`, `outcome` | runs of receivers, consumers, periodic and cron tasks |
//! | `microagent_handler_duration_seconds` | histogram | `agent`, `kind`, `handler` | how long each run took |
//! | `microagent_bus_bad_input_total` | counter | `backend` | malformed messages the bus dropped |
//! | `microagent_bus_slow_consumer_total` | counter | `backend` | messages the backend's client dropped unread |
//! | `microagent_backend_connected` | gauge | `channel`, `backend` | 1 while the bus or broker is connected |
//!
//! `kind` is `receiver`, `consumer`, `periodic` or `cron`; `outcome` is
//! `ok`, `failed`, `panicked`, `timed_out`, `bad_input` (receivers and
//! consumers), `dropped` (receivers) or `skipped` (tasks). Every label
//! value is a declared name, so the label sets are as many as the
//! handlers declared: no message id, sender or URL is ever a label.

use std::sync::OnceLock;

use ::metrics::{counter, describe_counter, describe_gauge, describe_histogram, gauge, Unit};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

use crate::info::{AgentInfo, HandlerRuns, TaskRuns};
use crate::phase::Phase;

/// Live agents by phase.
pub const AGENTS: &str = "microagent_agents";
/// Runs of handlers by outcome.
pub const HANDLER_RUNS: &str = "microagent_handler_runs_total";
/// Durations of handler runs.
pub const HANDLER_DURATION: &str = "microagent_handler_duration_seconds";
/// Malformed messages the bus dropped.
pub const BUS_BAD_INPUT: &str = "microagent_bus_bad_input_total";
/// Messages the bus backend's client dropped unread.
pub const BUS_SLOW_CONSUMER: &str = "microagent_bus_slow_consumer_total";
/// Whether the bus or broker is connected.
pub const BACKEND_CONNECTED: &str = "microagent_backend_connected";

/// The buckets of the duration histograms, in seconds: from half a
/// millisecond (an in-process receiver) to a minute (a long job).
const BUCKETS: [f64; 16] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0,
];

/// Our Prometheus recorder's handle, when the application installed no
/// recorder of its own; `None` when it did.
static PROMETHEUS: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Installs the Prometheus recorder unless the application installed a
/// recorder first; returns its handle (`None`: the application's recorder
/// takes the metrics). Called by the health server; idempotent.
pub(crate) fn prometheus() -> Option<&'static PrometheusHandle> {
    PROMETHEUS
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(
                    metrics_exporter_prometheus::Matcher::Full(HANDLER_DURATION.to_owned()),
                    &BUCKETS,
                )
                .ok()?;
            let handle = builder.install_recorder().ok();
            match &handle {
                Some(handle) => {
                    describe();
                    spawn_upkeep(handle.clone());
                }
                None => log::info!(
                    target: crate::LOG_TARGET,
                    "metrics: the application installed a recorder; GET /metrics is not served"
                ),
            }
            handle
        })
        .as_ref()
}

/// Drains the recorded durations into their histograms every few seconds,
/// so that a process nobody scrapes does not keep every sample.
fn spawn_upkeep(handle: PrometheusHandle) {
    let spawned = std::thread::Builder::new()
        .name("microagent-metrics".into())
        .spawn(move || loop {
            std::thread::sleep(std::time::Duration::from_secs(5));
            handle.run_upkeep();
        });
    if let Err(e) = spawned {
        log::warn!(target: crate::LOG_TARGET, "metrics: no upkeep thread: {e}");
    }
}

/// The metrics' help texts and units.
fn describe() {
    describe_gauge!(AGENTS, "Live agents by phase.");
    describe_counter!(
        HANDLER_RUNS,
        "Runs of receivers, consumers, periodic and cron tasks, by outcome."
    );
    describe_histogram!(
        HANDLER_DURATION,
        Unit::Seconds,
        "How long runs of receivers, consumers, periodic and cron tasks took."
    );
    describe_counter!(
        BUS_BAD_INPUT,
        "Malformed messages from the wire the bus dropped."
    );
    describe_counter!(
        BUS_SLOW_CONSUMER,
        "Messages the bus backend's client dropped because they were not read in time."
    );
    describe_gauge!(
        BACKEND_CONNECTED,
        "1 while the bus or broker of the process is connected, else 0."
    );
}

/// The Prometheus text of every metric, sampled now; `None` when the
/// application installed a recorder of its own (it exports them).
pub fn render() -> Option<String> {
    let handle = prometheus()?;
    sample();
    Some(handle.render())
}

/// Copies the counts of the current System's agents and backends into
/// the installed recorder: agents by phase, handler runs by outcome, the
/// bus's dropped input, whether each backend is connected. Call it on
/// your exporter's interval if you installed a recorder of your own
/// (`GET /metrics` calls it for the built-in one). Does nothing outside
/// a System run by [`run`](crate::run) or a [`Launcher`](crate::Launcher).
pub fn sample() {
    let Some(agents) = crate::registry::current() else {
        return;
    };
    let statuses = agents.statuses(false);
    for phase in [Phase::Starting, Phase::Running, Phase::Stopping] {
        let live = statuses.iter().filter(|s| s.phase == phase).count();
        gauge!(AGENTS, "phase" => phase.as_str()).set(live as f64);
    }
    for info in agents.infos() {
        sample_agent(&info);
    }
    if let Some(bus) = crate::bus::current_info() {
        counter!(BUS_BAD_INPUT, "backend" => bus.kind).absolute(bus.bad_input);
        counter!(BUS_SLOW_CONSUMER, "backend" => bus.kind).absolute(bus.slow_consumer);
        connected("bus", bus.kind, bus.connected);
    }
    if let Some(broker) = crate::broker::current_info() {
        connected("broker", broker.kind, broker.connected);
    }
}

fn connected(channel: &'static str, backend: &'static str, up: bool) {
    let value = if up { 1.0 } else { 0.0 };
    gauge!(BACKEND_CONNECTED, "channel" => channel, "backend" => backend).set(value);
}

/// One agent's handler runs, by outcome.
fn sample_agent(info: &AgentInfo) {
    let agent = info.name;
    for receiver in &info.receivers {
        handler_runs(agent, "receiver", receiver.name, &receiver.runs, true);
    }
    for consumer in &info.consumers {
        handler_runs(agent, "consumer", consumer.name, &consumer.runs, false);
    }
    for task in &info.periodic {
        task_runs(agent, "periodic", task.name, &task.runs);
    }
    for task in &info.cron {
        task_runs(agent, "cron", task.name, &task.runs);
    }
}

fn handler_runs(
    agent: &'static str,
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
        runs_counter(agent, kind, handler, outcome, count);
    }
}

fn task_runs(agent: &'static str, kind: &'static str, task: &'static str, runs: &TaskRuns) {
    for (outcome, count) in [
        ("ok", runs.ok),
        ("failed", runs.failed),
        ("panicked", runs.panicked),
        ("timed_out", runs.timed_out),
        ("skipped", runs.skipped),
    ] {
        runs_counter(agent, kind, task, outcome, count);
    }
}

fn runs_counter(
    agent: &'static str,
    kind: &'static str,
    handler: &'static str,
    outcome: &'static str,
    count: u64,
) {
    counter!(
        HANDLER_RUNS,
        "agent" => agent,
        "kind" => kind,
        "handler" => handler,
        "outcome" => outcome
    )
    .absolute(count);
}

/// The duration histogram of one handler (registered once per agent and
/// handler, then recorded into per run).
pub(crate) fn duration_histogram(
    agent: &'static str,
    kind: &'static str,
    handler: &'static str,
) -> ::metrics::Histogram {
    ::metrics::histogram!(
        HANDLER_DURATION,
        "agent" => agent,
        "kind" => kind,
        "handler" => handler
    )
}
