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
//! [`AgentInfo`](crate::AgentInfo) (its handlers' runs by outcome) and the
//! bus's own counts (hook durations, server restarts and agent stops are
//! events, recorded as they happen). [`sample`] copies them into the recorder (as
//! absolute counter values and gauges); `GET /metrics` samples before it
//! renders, and an application with its own exporter calls [`sample`] on
//! its export interval. Durations are recorded per run, as histograms.
//!
//! | metric | type | labels | meaning |
//! |---|---|---|---|
//! | `microagent_agents` | gauge | `phase` | live agents by phase (`starting`, `running`, `stopping`) |
//! | `microagent_hook_duration_seconds` | histogram | `agent`, `stage`, `hook` | how long each lifecycle hook took |
//! | `microagent_server_restarts_total` | counter | `agent`, `server` | restarts of server hooks under their policy |
//! | `microagent_agent_stops_total` | counter | `agent`, `cause` | agents whose lifecycle ended, by cause |
//! | `microagent_handler_runs_total` | counter | `agent`, `kind`, `handler`, `outcome` | runs of receivers, consumers, periodic and cron tasks |
//! | `microagent_handler_duration_seconds` | histogram | `agent`, `kind`, `handler` | how long each run took |
//! | `microagent_queue_settled_total` | counter | `queue`, `outcome` | attempts of this process's consumers, by how they were settled |
//! | `microagent_queue_depth` | gauge | `queue` | messages waiting in a queue this process consumes or sends to (asked of the broker at each scrape) |
//! | `microagent_queue_in_flight` | gauge | `queue` | messages this process's consumers took and have not settled |
//! | `microagent_queue_sent_total` | counter | `queue`, `outcome` | messages this process sent: `ok`, `failed` |
//! | `microagent_queue_send_duration_seconds` | histogram | `queue` | how long the server took to confirm a send |
//! | `microagent_task_lateness_seconds` | histogram | `agent`, `kind`, `task` | how late task runs started |
//! | `microagent_bus_signals_sent_total` | counter | | signals this process sent |
//! | `microagent_bus_signals_received_total` | counter | | signals and calls handed to its receivers |
//! | `microagent_bus_calls_total` | counter | `signal`, `outcome` | this process's RPC calls: `answered`, `no_answer`, `failed` |
//! | `microagent_bus_call_answers_total` | counter | `signal` | the answers they got |
//! | `microagent_bus_call_duration_seconds` | histogram | `signal` | how long they took |
//! | `microagent_bus_bad_input_total` | counter | `backend` | malformed messages the bus dropped |
//! | `microagent_bus_slow_consumer_total` | counter | `backend` | messages the backend's client dropped unread |
//! | `microagent_backend_disconnects_total` | counter | `channel`, `backend` | connections the bus or broker lost |
//! | `microagent_backend_errors_total` | counter | `channel`, `backend`, `kind` | their failed operations: `server` (while connected), `connection` (while not) |
//! | `microagent_backend_connected` | gauge | `channel`, `backend` | 1 while the bus or broker is connected |
//!
//! `kind` is `receiver`, `consumer`, `periodic` or `cron`; a handler's
//! `outcome` is `ok`, `failed`, `panicked`, `timed_out`, `bad_input`
//! (receivers and consumers), `dropped` (receivers) or `skipped` (tasks);
//! a queue's is `acked`, `retried`, `dead_lettered` or `released`. Every
//! label value is a declared name (agents, handlers, the queues declared
//! consumers take), so the label sets are as many as the declarations: no
//! message id, sender, queue named by a message, or URL is ever a label.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock, PoisonError};

use ::metrics::{counter, describe_counter, describe_gauge, gauge};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

use crate::durations::{Durations, BUCKETS};
use crate::phase::Phase;

/// Live agents by phase.
pub const AGENTS: &str = "microagent_agents";
/// Runs of handlers by outcome.
pub const HANDLER_RUNS: &str = "microagent_handler_runs_total";
/// Durations of handler runs.
pub const HANDLER_DURATION: &str = "microagent_handler_duration_seconds";
/// How long lifecycle hooks took.
pub const HOOK_DURATION: &str = "microagent_hook_duration_seconds";
/// Restarts of server hooks under their restart policy.
pub const SERVER_RESTARTS: &str = "microagent_server_restarts_total";
/// Agents whose lifecycle ended, by cause.
pub const AGENT_STOPS: &str = "microagent_agent_stops_total";
/// Attempts at a queue's messages, by how they were settled.
pub const QUEUE_SETTLED: &str = "microagent_queue_settled_total";
/// How late periodic and cron task runs started after they were due.
pub const TASK_LATENESS: &str = "microagent_task_lateness_seconds";
/// Messages waiting in a queue.
pub const QUEUE_DEPTH: &str = "microagent_queue_depth";
/// Messages this process's consumers took and have not settled yet.
pub const QUEUE_IN_FLIGHT: &str = "microagent_queue_in_flight";
/// Messages this process sent to a queue, by outcome.
pub const QUEUE_SENT: &str = "microagent_queue_sent_total";
/// How long the broker's server took to confirm this process's sends.
pub const QUEUE_SEND_DURATION: &str = "microagent_queue_send_duration_seconds";
/// Signals this process sent.
pub const BUS_SENT: &str = "microagent_bus_signals_sent_total";
/// Signals and calls handed to this process's receivers.
pub const BUS_RECEIVED: &str = "microagent_bus_signals_received_total";
/// This process's RPC calls, by signal and outcome.
pub const BUS_CALLS: &str = "microagent_bus_calls_total";
/// The answers this process's calls got.
pub const BUS_ANSWERS: &str = "microagent_bus_call_answers_total";
/// How long this process's calls took.
pub const BUS_CALL_DURATION: &str = "microagent_bus_call_duration_seconds";
/// Malformed messages the bus dropped.
pub const BUS_BAD_INPUT: &str = "microagent_bus_bad_input_total";
/// Messages the bus backend's client dropped unread.
pub const BUS_SLOW_CONSUMER: &str = "microagent_bus_slow_consumer_total";
/// Connections lost by the bus's backend.
pub const BACKEND_DISCONNECTS: &str = "microagent_backend_disconnects_total";
/// Commands and connections of the bus's backend that failed.
pub const BACKEND_ERRORS: &str = "microagent_backend_errors_total";
/// Whether the bus or broker is connected.
pub const BACKEND_CONNECTED: &str = "microagent_backend_connected";

/// Our Prometheus recorder's handle, when the application installed no
/// recorder of its own; `None` when it did.
static PROMETHEUS: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Whether handler runs are timed (see [`time_runs`]).
static TIMED: AtomicBool = AtomicBool::new(true);

/// Turns the timing of handler runs (`microagent_handler_duration_seconds`)
/// and of lifecycle hooks (`microagent_hook_duration_seconds`) on or off
/// for the whole process; on by default. Off, a run or hook costs two
/// clock reads and a bucket count less (see docs/observability.md); the
/// counts by outcome are kept either way.
pub fn time_runs(on: bool) {
    TIMED.store(on, Ordering::Relaxed);
}

/// Whether handler runs are timed.
pub(crate) fn runs_timed() -> bool {
    TIMED.load(Ordering::Relaxed)
}

/// Installs the Prometheus recorder unless the application installed a
/// recorder first; returns its handle (`None`: the application's recorder
/// takes the metrics). Called by the health server, the first timed run
/// and the first timed hook, whichever comes first; idempotent.
pub(crate) fn prometheus() -> Option<&'static PrometheusHandle> {
    PROMETHEUS
        .get_or_init(|| {
            // Run durations are not recorded into it: they are bucketed
            // as runs end and rendered next to its text (`render`).
            let handle = PrometheusBuilder::new().install_recorder().ok();
            match &handle {
                Some(_) => describe(),
                None => log::info!(
                    target: crate::LOG_TARGET,
                    "metrics: the application installed a recorder; GET /metrics is not served"
                ),
            }
            handle
        })
        .as_ref()
}

/// The metrics' help texts and units.
fn describe() {
    describe_gauge!(AGENTS, "Live agents by phase.");
    describe_counter!(
        SERVER_RESTARTS,
        "Restarts of server hooks under their restart policy."
    );
    describe_counter!(
        AGENT_STOPS,
        "Agents whose lifecycle ended, by cause (clean, failed, crashed, subscribe, consume, aborted)."
    );
    describe_counter!(
        HANDLER_RUNS,
        "Runs of receivers, consumers, periodic and cron tasks, by outcome."
    );
    describe_counter!(
        QUEUE_SETTLED,
        "Attempts of this process's consumers at a queue's messages, by how they were settled."
    );
    describe_gauge!(
        QUEUE_DEPTH,
        "Messages waiting in a queue this process consumes or sends to, as its broker said at the last sample."
    );
    describe_gauge!(
        QUEUE_IN_FLIGHT,
        "Messages of a queue this process's consumers took and have not settled yet."
    );
    describe_counter!(
        QUEUE_SENT,
        "Messages this process sent to a queue, by outcome (ok: the broker took them; failed)."
    );
    describe_counter!(
        BUS_SENT,
        "Signals this process sent on its bus (not calls)."
    );
    describe_counter!(
        BUS_RECEIVED,
        "Signals and calls this process's bus handed to at least one of its receivers."
    );
    describe_counter!(
        BUS_CALLS,
        "RPC calls this process made, by signal and outcome (answered, no_answer, failed)."
    );
    describe_counter!(
        BUS_ANSWERS,
        "Answers this process's RPC calls got, by signal."
    );
    describe_counter!(
        BUS_BAD_INPUT,
        "Malformed messages from the wire the bus dropped."
    );
    describe_counter!(
        BUS_SLOW_CONSUMER,
        "Messages the bus backend's client dropped because they were not read in time."
    );
    describe_counter!(
        BACKEND_DISCONNECTS,
        "Connections the bus or the broker lost to its server (the client reconnects by itself)."
    );
    describe_counter!(
        BACKEND_ERRORS,
        "Commands the bus's or the broker's server refused, and operations that failed on the way."
    );
    describe_gauge!(
        BACKEND_CONNECTED,
        "1 while the bus or broker of the process is connected, else 0."
    );
}

/// How long [`sample_depths`] waits for the broker's answers.
const DEPTH_PATIENCE: std::time::Duration = std::time::Duration::from_secs(1);

/// The Prometheus text of every metric, sampled now (queue depths
/// included); `None` when the application installed a recorder of its
/// own (it exports them).
pub async fn render() -> Option<String> {
    let handle = prometheus()?;
    sample();
    sample_depths().await;
    let mut text = handle.render();
    render_durations(&mut text);
    Some(text)
}

/// Appends the histograms kept outside the recorder: the run durations of
/// the stopped agents and of the current System's live ones (summed over
/// agents of one name), and the latency of the bus's calls, in the
/// exporter's own format.
fn render_durations(text: &mut String) {
    let mut all = crate::retired::retired_durations();
    if let Some(agents) = crate::registry::current() {
        for (agent, durations) in agents.run_durations() {
            for ((kind, handler), durations) in durations {
                all.entry((agent, kind, handler))
                    .or_default()
                    .add(&durations);
            }
        }
    }
    let runs: Vec<_> = all
        .iter()
        .map(|(&(agent, kind, handler), durations)| {
            let labels = vec![("agent", agent), ("kind", kind), ("handler", handler)];
            (labels, durations)
        })
        .collect();
    let help = "How long runs of receivers, consumers, periodic and cron tasks took.";
    write_histogram(text, HANDLER_DURATION, help, &runs);
    let calls = crate::bus::call_latencies();
    let calls: Vec<_> = calls
        .iter()
        .map(|(signal, durations)| (vec![("signal", signal.as_str())], durations))
        .collect();
    let help = "How long this process's RPC calls took, answered or not.";
    write_histogram(text, BUS_CALL_DURATION, help, &calls);
    let sends = crate::broker::confirmations();
    let sends: Vec<_> = sends
        .iter()
        .filter(|(_, durations)| durations.buckets.iter().any(|&n| n > 0))
        .map(|(queue, durations)| (vec![("queue", *queue)], durations))
        .collect();
    let help = "How long the broker's server took to confirm this process's sends.";
    write_histogram(text, QUEUE_SEND_DURATION, help, &sends);
    let help = "How long pre_start, post_start and pre_stop hooks took.";
    write_keyed(
        text,
        HOOK_DURATION,
        help,
        ["agent", "stage", "hook"],
        &HOOKS,
    );
    let help = "How late periodic and cron task runs started after they were due.";
    write_keyed(
        text,
        TASK_LATENESS,
        help,
        ["agent", "kind", "task"],
        &LATENESS,
    );
}

/// Durations kept by three labels' values.
type Keyed = Mutex<BTreeMap<(&'static str, &'static str, &'static str), Durations>>;

/// Writes the histograms in `table` as `name`, with these label names.
fn write_keyed(text: &mut String, name: &str, help: &str, labels: [&str; 3], table: &Keyed) {
    let table = lock(table).clone();
    let series: Vec<_> = table
        .iter()
        .map(|(&(a, b, c), durations)| {
            let values = [a, b, c];
            (labels.into_iter().zip(values).collect(), durations)
        })
        .collect();
    write_histogram(text, name, help, &series);
}

/// Writes `series` as the histogram `name`: each one's labels, and its
/// durations as cumulative buckets in seconds, their sum and count.
fn write_histogram(
    text: &mut String,
    name: &str,
    help: &str,
    series: &[(Vec<(&str, &str)>, &Durations)],
) {
    use metrics_exporter_prometheus::formatting::{
        write_help_line, write_metric_line, write_type_line,
    };
    use metrics_exporter_prometheus::LabelSet;

    if series.is_empty() {
        return;
    }
    write_help_line(text, name, None, None, help);
    write_type_line(text, name, None, None, "histogram");
    let global = indexmap::IndexMap::new();
    for (labels, durations) in series {
        let labels: Vec<::metrics::Label> = labels
            .iter()
            .map(|(k, v)| ::metrics::Label::new(k.to_string(), v.to_string()))
            .collect();
        let key = ::metrics::Key::from_parts(name.to_owned(), labels);
        let labels = LabelSet::from_key_and_global(&key, &global);
        let mut below = 0u64;
        for (bound, count) in BUCKETS.iter().zip(durations.buckets) {
            below += count;
            let le = Some(("le", bound));
            write_metric_line(text, name, Some("bucket"), &labels, le, below, None);
        }
        let total = below + durations.buckets[BUCKETS.len()];
        let inf = Some(("le", "+Inf"));
        write_metric_line(text, name, Some("bucket"), &labels, inf, total, None);
        let sum = durations.sum_nanos as f64 / 1e9;
        write_metric_line::<&str, f64>(text, name, Some("sum"), &labels, None, sum, None);
        write_metric_line::<&str, u64>(text, name, Some("count"), &labels, None, total, None);
    }
}

/// Asks the current System's broker how many messages wait in each queue
/// this process consumes, and sets `microagent_queue_depth` (one round
/// trip per queue, each given a second: a queue whose broker does not
/// answer keeps its last depth). Call it on your exporter's interval if
/// you installed a recorder of your own.
pub async fn sample_depths() {
    let Some(info) = crate::broker::current_info() else {
        return;
    };
    let broker = crate::broker::Broker::current();
    for counts in info.queues {
        let length = broker.length(counts.queue);
        match actix_rt::time::timeout(DEPTH_PATIENCE, length).await {
            Ok(Ok(depth)) => gauge!(QUEUE_DEPTH, "queue" => counts.queue).set(depth as f64),
            Ok(Err(e)) => log::debug!(
                target: crate::LOG_TARGET,
                "metrics: the depth of queue `{}`: {e}",
                counts.queue
            ),
            Err(_) => log::debug!(
                target: crate::LOG_TARGET,
                "metrics: the depth of queue `{}`: no answer within {DEPTH_PATIENCE:?}",
                counts.queue
            ),
        }
    }
}

/// Copies the counts of the current System's agents and backends into
/// the installed recorder: agents by phase, handler runs by outcome,
/// queue attempts by settlement, the bus's dropped input, whether each
/// backend is connected (queue depths need the broker: [`sample_depths`]). Call it on
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
    for (&(agent, cause), &count) in lock(&STOPS).iter() {
        counter!(AGENT_STOPS, "agent" => agent, "cause" => cause).absolute(count);
    }
    for ((agent, kind, handler, outcome), count) in crate::retired::all_runs(&agents.runs_infos()) {
        counter!(
            HANDLER_RUNS,
            "agent" => agent,
            "kind" => kind,
            "handler" => handler,
            "outcome" => outcome
        )
        .absolute(count);
    }
    if let Some(bus) = crate::bus::current_info() {
        counter!(BUS_BAD_INPUT, "backend" => bus.kind).absolute(bus.bad_input);
        counter!(BUS_SLOW_CONSUMER, "backend" => bus.kind).absolute(bus.slow_consumer);
        counter!(BUS_SENT).absolute(bus.sent);
        counter!(BUS_RECEIVED).absolute(bus.received);
        for calls in &bus.calls {
            let signal = calls.signal.clone();
            for (outcome, count) in [
                ("answered", calls.answered),
                ("no_answer", calls.no_answer),
                ("failed", calls.failed),
            ] {
                let labels = [("signal", signal.clone()), ("outcome", outcome.to_owned())];
                counter!(BUS_CALLS, &labels).absolute(count);
            }
            counter!(BUS_ANSWERS, "signal" => signal).absolute(calls.answers);
        }
        connected("bus", bus.kind, bus.connected);
        let failures = (bus.disconnects, bus.errors, bus.server_errors);
        backend_failures("bus", bus.kind, failures);
    }
    if let Some(broker) = crate::broker::current_info() {
        connected("broker", broker.kind, broker.connected);
        if broker.url.is_some() {
            let failures = (broker.disconnects, broker.errors, broker.server_errors);
            backend_failures("broker", broker.kind, failures);
        }
        for counts in &broker.queues {
            queue_settled(counts);
        }
    }
}

/// A backend's `(disconnects, errors, server errors)`.
fn backend_failures(channel: &'static str, backend: &'static str, counts: (u64, u64, u64)) {
    let (disconnects, errors, server_errors) = counts;
    counter!(BACKEND_DISCONNECTS, "channel" => channel, "backend" => backend).absolute(disconnects);
    for (kind, count) in [
        ("server", server_errors),
        ("connection", errors.saturating_sub(server_errors)),
    ] {
        counter!(BACKEND_ERRORS, "channel" => channel, "backend" => backend, "kind" => kind)
            .absolute(count);
    }
}

fn queue_settled(counts: &crate::broker::QueueCounts) {
    for (outcome, count) in [
        ("acked", counts.acked),
        ("retried", counts.retried),
        ("dead_lettered", counts.dead_lettered),
        ("released", counts.released),
    ] {
        counter!(QUEUE_SETTLED, "queue" => counts.queue, "outcome" => outcome).absolute(count);
    }
    gauge!(QUEUE_IN_FLIGHT, "queue" => counts.queue).set(counts.in_flight as f64);
    for (outcome, count) in [("ok", counts.sent), ("failed", counts.send_failed)] {
        counter!(QUEUE_SENT, "queue" => counts.queue, "outcome" => outcome).absolute(count);
    }
}

fn connected(channel: &'static str, backend: &'static str, up: bool) {
    let value = if up { 1.0 } else { 0.0 };
    gauge!(BACKEND_CONNECTED, "channel" => channel, "backend" => backend).set(value);
}

/// The durations of the hooks that ran, by `(agent, stage, hook)`.
static HOOKS: Keyed = Mutex::new(BTreeMap::new());

/// How late task runs started, by `(agent, kind, task)`.
static LATENESS: Keyed = Mutex::new(BTreeMap::new());

/// A periodic or cron task of `agent` started `late` after it was due:
/// bucketed here (tasks run seldom: a lock and a lookup), and recorded
/// into the application's recorder if it installed one.
pub(crate) fn task_started_late(
    agent: &'static str,
    kind: &'static str,
    task: &'static str,
    late: std::time::Duration,
) {
    lock(&LATENESS)
        .entry((agent, kind, task))
        .or_default()
        .record(late);
    if prometheus().is_none() {
        let labels = [("agent", agent), ("kind", kind), ("task", task)];
        ::metrics::histogram!(TASK_LATENESS, &labels).record(late.as_secs_f64());
    }
}

/// The agents whose lifecycle ended, by `(agent, cause)`.
static STOPS: Mutex<BTreeMap<(&'static str, &'static str), u64>> = Mutex::new(BTreeMap::new());

/// A lifecycle hook of `agent` ran for `took`: bucketed here (a lock and
/// a lookup; agents start and stop by the thousand), and recorded into
/// the application's recorder if it installed one.
pub(crate) fn hook_ran(
    agent: &'static str,
    stage: crate::Stage,
    hook: &'static str,
    took: std::time::Duration,
) {
    let key = (agent, stage.label(), hook);
    lock(&HOOKS).entry(key).or_default().record(took);
    if prometheus().is_none() {
        let labels = [("agent", agent), ("stage", stage.label()), ("hook", hook)];
        ::metrics::histogram!(HOOK_DURATION, &labels).record(took.as_secs_f64());
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A server of `agent` restarts under its policy.
pub(crate) fn server_restarted(agent: &'static str, server: &'static str) {
    prometheus();
    counter!(SERVER_RESTARTS, "agent" => agent, "server" => server).increment(1);
}

/// `agent`'s lifecycle ended with `outcome`.
pub(crate) fn agent_stopped(agent: &'static str, outcome: &Result<(), Box<crate::AgentError>>) {
    use crate::AgentError;
    let cause = match outcome.as_ref().map_err(|e| &**e) {
        Ok(()) => "clean",
        Err(AgentError::Failed { .. }) => "failed",
        Err(AgentError::Crashed { .. }) => "crashed",
        Err(AgentError::Subscribe { .. }) => "subscribe",
        Err(AgentError::Consume { .. }) => "consume",
        Err(AgentError::Aborted { .. }) => "aborted",
    };
    *lock(&STOPS).entry((agent, cause)).or_default() += 1;
}

/// The duration histogram of one handler in the application's recorder
/// (registered once per agent and handler, then recorded into per run;
/// the built-in recorder is not given durations: they are bucketed where
/// they are measured).
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::durations::RunHistogram;

    #[test]
    fn durations_are_written_as_a_cumulative_histogram_in_seconds() {
        let histogram = RunHistogram::default();
        for millis in [0.3, 0.5, 2.0, 70_000.0] {
            histogram.record(Duration::from_secs_f64(millis / 1000.0));
        }
        let durations = histogram.durations();
        let labels = vec![
            ("agent", "Shop"),
            ("kind", "receiver"),
            ("handler", "placed"),
        ];
        let mut text = String::new();
        write_histogram(&mut text, HANDLER_DURATION, "help", &[(labels, &durations)]);
        let labels = r#"agent="Shop",kind="receiver",handler="placed""#;
        for line in [
            "# TYPE microagent_handler_duration_seconds histogram".to_owned(),
            // 0.5 ms is in the 0.5 ms bucket (`le`: less or equal).
            format!(r#"microagent_handler_duration_seconds_bucket{{{labels},le="0.0005"}} 2"#),
            format!(r#"microagent_handler_duration_seconds_bucket{{{labels},le="0.001"}} 2"#),
            format!(r#"microagent_handler_duration_seconds_bucket{{{labels},le="0.0025"}} 3"#),
            format!(r#"microagent_handler_duration_seconds_bucket{{{labels},le="60"}} 3"#),
            format!(r#"microagent_handler_duration_seconds_bucket{{{labels},le="+Inf"}} 4"#),
            format!("microagent_handler_duration_seconds_sum{{{labels}}} 70.0028"),
            format!("microagent_handler_duration_seconds_count{{{labels}}} 4"),
        ] {
            assert!(text.lines().any(|l| l == line), "no `{line}` in:\n{text}");
        }
    }
}
