//! `GET /metrics` over real HTTP after a scripted run, read with a real
//! Prometheus text parser: the counts are exact, and they are the counts
//! `GetInfo` shows (one source of truth); the queue metrics on every
//! broker backend.
//!
//! The metrics are the process's (one recorder, counts that add up over
//! every System): the tests run one at a time ([`SERIAL`]) and read what
//! they added.

mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use microagent::broker::{Broker, Queue};
use microagent::bus::{Bus, Signal};
use microagent::prelude::*;
use microagent::web::HealthServer;
use prometheus_parse::{Sample, Scrape, Value};
use serde::{Deserialize, Serialize};
use support::matrix::{on_backends, Backend};
use support::process::HANG;
use support::Boom;

/// One test at a time: the metrics are the process's.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(PoisonError::into_inner)
}

#[derive(Signal, Serialize, Deserialize, Clone)]
struct Order {
    bad: bool,
}

#[derive(Queue, Serialize, Deserialize, Clone)]
#[queue(name = "metrics-jobs")]
struct Job {
    bad: bool,
    /// Held until [`HOLD`] is cleared (the queue fills behind it).
    #[serde(default)]
    hold: bool,
}

/// Holds the jobs that ask to be held.
static HOLD: AtomicBool = AtomicBool::new(true);
/// Set while a held job runs.
static HELD: AtomicBool = AtomicBool::new(false);

/// Asks for a quote; answered at once.
#[derive(Signal, Serialize, Deserialize, Clone)]
struct Quote {}

/// Asks for a quote slowly: answered after the caller gave up.
#[derive(Signal, Serialize, Deserialize, Clone)]
struct SlowQuote {}

/// A receiver, a consumer and a periodic task whose runs the test scripts.
#[derive(Default, MicroAgent)]
struct Scripted;

#[microagent::hooks]
impl Scripted {
    #[receiver(Order)]
    fn order(&mut self, order: Order) -> Result<(), Boom> {
        match order.bad {
            true => Err(Boom("a bad order")),
            false => Ok(()),
        }
    }

    #[consumer(Job, attempts = 2, backoff = 0.01)]
    async fn job(&mut self, job: Job) -> Result<(), Boom> {
        if job.hold {
            HELD.store(true, Ordering::SeqCst);
            while HOLD.load(Ordering::SeqCst) {
                actix_rt::time::sleep(Duration::from_millis(2)).await;
            }
        }
        match job.bad {
            true => Err(Boom("a bad job")),
            false => Ok(()),
        }
    }

    #[receiver(Quote)]
    fn quote(&mut self, _: Quote) -> u32 {
        7
    }

    #[receiver(SlowQuote)]
    async fn slow_quote(&mut self, _: SlowQuote) -> u32 {
        actix_rt::time::sleep(Duration::from_millis(300)).await;
        7
    }

    /// Runs once: at start, then not for an hour.
    #[periodic(period = 3600.0)]
    fn tick(&mut self) {}
}

/// `GET /metrics` on `addr`, parsed.
async fn scrape(addr: std::net::SocketAddr) -> Scrape {
    let mut response = awc::Client::default()
        .get(format!("http://{addr}/metrics"))
        .send()
        .await
        .expect("the health server answers");
    assert_eq!(response.status().as_u16(), 200);
    let content_type = response.headers().get("content-type").cloned();
    assert!(
        content_type.is_some_and(|t| t.to_str().unwrap_or("").starts_with("text/plain")),
        "the Prometheus text format"
    );
    let body = response.body().limit(1 << 22).await.expect("a body");
    let text = String::from_utf8(body.to_vec()).expect("UTF-8");
    let lines = text.lines().map(|l| Ok(l.to_owned()));
    Scrape::parse(lines).expect("the Prometheus text format parses")
}

/// The one sample of `metric` with these labels.
fn sample<'a>(scrape: &'a Scrape, metric: &str, labels: &[(&str, &str)]) -> &'a Sample {
    let found: Vec<&Sample> = scrape
        .samples
        .iter()
        .filter(|s| s.metric == metric)
        .filter(|s| labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .collect();
    assert_eq!(
        found.len(),
        1,
        "one sample of {metric} {labels:?}: {found:?}"
    );
    found[0]
}

fn value(scrape: &Scrape, metric: &str, labels: &[(&str, &str)]) -> f64 {
    match &sample(scrape, metric, labels).value {
        Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => *v,
        other => panic!("{metric} {labels:?} is not a number: {other:?}"),
    }
}

fn runs(scrape: &Scrape, kind: &str, handler: &str, outcome: &str) -> f64 {
    value(
        scrape,
        "microagent_handler_runs_total",
        &[
            ("agent", "Scripted"),
            ("kind", kind),
            ("handler", handler),
            ("outcome", outcome),
        ],
    )
}

/// How many observations the one histogram `metric` with these labels
/// holds.
fn observations(scrape: &Scrape, metric: &str, labels: &[(&str, &str)]) -> f64 {
    histogram_count(&sample(scrape, metric, labels).value)
}

/// How many observations a histogram holds (its `+Inf` bucket).
fn histogram_count(value: &Value) -> f64 {
    match value {
        Value::Histogram(buckets) => buckets.iter().map(|b| b.count).fold(0.0, f64::max),
        other => panic!("not a histogram: {other:?}"),
    }
}

/// How many runs the duration histogram of `handler` holds.
fn timed_runs(scrape: &Scrape, kind: &str, handler: &str) -> f64 {
    let labels = [("agent", "Scripted"), ("kind", kind), ("handler", handler)];
    observations(scrape, "microagent_handler_duration_seconds", &labels)
}

#[test]
fn metrics_are_exact_and_agree_with_info() {
    let _serial = serial();
    microagent::run(async {
        let (agent, _a) = microagent::start(Scripted);
        let (_h, health) = microagent::start(HealthServer::new("127.0.0.1:0"));
        let addr = health.bound_address("http").await.expect("it listens");
        agent.send(GetInfo).await.expect("started");

        // Receiver: three bad orders, two good ones.
        let bus = Bus::current();
        let (sent_before, received_before) = (bus.info().sent, bus.info().received);
        for bad in [true, false, true, true, false] {
            bus.send("script", Order { bad }).await.expect("sent");
        }
        // Calls: one answered, one timed out.
        bus.call("script", Quote {}, Duration::from_secs(5))
            .await
            .expect("answered");
        let late = bus.call("script", SlowQuote {}, Duration::from_millis(50));
        assert!(late.await.is_err(), "the slow quote comes too late");
        // Consumer: a bad job (two failed attempts, then a dead letter)
        // and a good one.
        let broker = Broker::current();
        for bad in [true, false] {
            broker.send(Job { bad, hold: false }).await.expect("sent");
        }

        let start = Instant::now();
        let info = loop {
            let info = agent.send(GetInfo).await.expect("running");
            let (receiver, consumer) = (&info.receivers[0].runs, &info.consumers[0].runs);
            if receiver.ok + receiver.failed == 5
                && consumer.ok + consumer.failed == 3
                && info.periodic[0].runs.ok == 1
            {
                break info;
            }
            assert!(start.elapsed() < HANG, "the runs never ended: {info:?}");
            actix_rt::time::sleep(Duration::from_millis(5)).await;
        };
        assert_eq!(broker.dead_letters("metrics-jobs").await.unwrap().len(), 1);

        let scrape = scrape(addr).await;
        // The bus: five signals sent (the process's count), two calls.
        let sent = bus.info().sent;
        assert_eq!(sent - sent_before, 5);
        let sent_metric = value(&scrape, "microagent_bus_signals_sent_total", &[]);
        assert_eq!(sent_metric, sent as f64);
        // Received: the five orders and the two calls.
        let received = bus.info().received;
        assert_eq!(received - received_before, 7);
        let received_metric = value(&scrape, "microagent_bus_signals_received_total", &[]);
        assert_eq!(received_metric, received as f64);
        let calls = |outcome| {
            let labels = [("signal", "quote"), ("outcome", outcome)];
            value(&scrape, "microagent_bus_calls_total", &labels)
        };
        assert_eq!(calls("answered"), 1.0);
        let slow = [("signal", "slow_quote"), ("outcome", "no_answer")];
        assert_eq!(value(&scrape, "microagent_bus_calls_total", &slow), 1.0);
        let answers = [("signal", "quote")];
        assert_eq!(
            value(&scrape, "microagent_bus_call_answers_total", &answers),
            1.0
        );
        let latency = [("signal", "slow_quote")];
        match &sample(&scrape, "microagent_bus_call_duration_seconds", &latency).value {
            Value::Histogram(buckets) => {
                // It waited its 50 ms: nothing under 25 ms, all under 100.
                let le = |bound: f64| buckets.iter().find(|b| b.less_than == bound).unwrap().count;
                assert_eq!((le(0.025), le(0.1)), (0.0, 1.0));
            }
            other => panic!("not a histogram: {other:?}"),
        }
        let bus_info = bus.info();
        let quote = bus_info.calls.iter().find(|c| c.signal == "quote").unwrap();
        assert_eq!((quote.answered, quote.answers), (1, 1));

        // Exact, and what the info says.
        assert_eq!(runs(&scrape, "receiver", "order", "failed"), 3.0);
        assert_eq!(runs(&scrape, "receiver", "order", "ok"), 2.0);
        assert_eq!(runs(&scrape, "receiver", "order", "panicked"), 0.0);
        assert_eq!(runs(&scrape, "receiver", "order", "dropped"), 0.0);
        assert_eq!(runs(&scrape, "consumer", "job", "failed"), 2.0);
        assert_eq!(runs(&scrape, "consumer", "job", "ok"), 1.0);
        assert_eq!(runs(&scrape, "periodic", "tick", "ok"), 1.0);
        assert_eq!(runs(&scrape, "periodic", "tick", "skipped"), 0.0);
        let receiver = &info.receivers[0].runs;
        assert_eq!((receiver.ok, receiver.failed), (2, 3));
        let consumer = &info.consumers[0].runs;
        assert_eq!((consumer.ok, consumer.failed), (1, 2));

        // Each run timed, whatever its outcome.
        assert_eq!(timed_runs(&scrape, "receiver", "order"), 5.0);
        assert_eq!(timed_runs(&scrape, "consumer", "job"), 3.0);
        assert_eq!(timed_runs(&scrape, "periodic", "tick"), 1.0);
        // The tick's one run, and how late it started.
        let late = [
            ("agent", "Scripted"),
            ("kind", "periodic"),
            ("task", "tick"),
        ];
        let lateness = "microagent_task_lateness_seconds";
        assert_eq!(observations(&scrape, lateness, &late), 1.0);

        // The queue: the bad job's first attempt retried, its second
        // dead-lettered, the good one acked; nothing waits.
        let queue = |outcome| {
            value(
                &scrape,
                "microagent_queue_settled_total",
                &[("queue", "metrics-jobs"), ("outcome", outcome)],
            )
        };
        assert_eq!(queue("acked"), 1.0);
        assert_eq!(queue("retried"), 1.0);
        assert_eq!(queue("dead_lettered"), 1.0);
        assert_eq!(queue("released"), 0.0);
        let depth = [("queue", "metrics-jobs")];
        assert_eq!(value(&scrape, "microagent_queue_depth", &depth), 0.0);
        let counts = &broker.info().queues[0];
        assert_eq!(counts.queue, "metrics-jobs");
        let settled = (counts.acked, counts.retried, counts.dead_lettered);
        assert_eq!(settled, (1, 1, 1));

        // Three jobs wait behind a held one: the next scrape says so.
        let (bad, hold) = (false, true);
        broker.send(Job { bad, hold }).await.expect("sent");
        while !HELD.load(Ordering::SeqCst) {
            assert!(start.elapsed() < HANG, "the held job never ran");
            actix_rt::time::sleep(Duration::from_millis(2)).await;
        }
        for _ in 0..3 {
            broker.send(Job { bad, hold: false }).await.expect("sent");
        }
        let scrape_again = self::scrape(addr).await;
        assert_eq!(value(&scrape_again, "microagent_queue_depth", &depth), 3.0);
        // The held one is taken and not settled.
        assert_eq!(
            value(&scrape_again, "microagent_queue_in_flight", &depth),
            1.0
        );
        assert_eq!(broker.info().queues[0].in_flight, 1);
        HOLD.store(false, Ordering::SeqCst);

        // The agent and the health server run; the in-process bus and
        // broker are always connected.
        assert_eq!(
            value(&scrape, "microagent_agents", &[("phase", "running")]),
            2.0
        );
        assert_eq!(
            value(&scrape, "microagent_agents", &[("phase", "stopping")]),
            0.0
        );
        let connected = |channel| {
            value(
                &scrape,
                "microagent_backend_connected",
                &[("channel", channel), ("backend", "in-process")],
            )
        };
        assert_eq!(connected("bus"), 1.0);
        assert_eq!(connected("broker"), 1.0);
        assert_eq!(
            value(
                &scrape,
                "microagent_bus_bad_input_total",
                &[("backend", "in-process")]
            ),
            0.0
        );
    });
}

#[derive(Signal, Serialize, Deserialize, Clone)]
struct Ping {}

/// Takes pings; several run under one name. Its server fails once, and
/// is restarted.
#[derive(Default, MicroAgent)]
struct Twin {
    attempts: std::rc::Rc<std::cell::Cell<u32>>,
}

#[microagent::hooks]
impl Twin {
    #[on(pre_start)]
    fn warm_up(&mut self) {}

    #[on(server, restarts = 2, within = 60, backoff = 0.01)]
    fn serve(
        &self,
        srv: microagent::ServerContext<Self>,
    ) -> impl std::future::Future<Output = Result<(), Boom>> {
        self.attempts.set(self.attempts.get() + 1);
        let first = self.attempts.get() == 1;
        let shutdown = srv.shutdown();
        async move {
            if first {
                return Err(Boom("the first attempt fails"));
            }
            shutdown.await;
            Ok(())
        }
    }

    #[receiver(Ping)]
    fn ping(&mut self, _: Ping) {}
}

/// The `ok` runs of the twins' receiver, as `/metrics` says.
async fn twin_runs(addr: std::net::SocketAddr) -> f64 {
    let scrape = scrape(addr).await;
    let labels = [
        ("agent", "Twin"),
        ("kind", "receiver"),
        ("handler", "ping"),
        ("outcome", "ok"),
    ];
    value(&scrape, "microagent_handler_runs_total", &labels)
}

/// Waits until the twins' receivers ran `n` times in all, as their info
/// says (the live ones).
async fn pings_handled(twins: &[&actix::Addr<Twin>], n: u64) {
    let start = Instant::now();
    loop {
        let mut total = 0;
        for twin in twins {
            total += twin.send(GetInfo).await.expect("running").receivers[0]
                .runs
                .ok;
        }
        if total == n {
            return;
        }
        assert!(start.elapsed() < HANG, "{total} pings handled, not {n}");
        actix_rt::time::sleep(Duration::from_millis(5)).await;
    }
}

#[test]
fn agents_of_one_name_add_up_and_a_stopped_one_still_counts() {
    let _serial = serial();
    microagent::run(async {
        let (one, one_handle) = microagent::start(Twin::default());
        let (two, _two) = microagent::start(Twin::default());
        let (_h, health) = microagent::start(HealthServer::new("127.0.0.1:0"));
        let addr = health.bound_address("http").await.expect("it listens");
        let bus = Bus::current();
        for _ in 0..3 {
            bus.send("script", Ping {}).await.expect("sent");
        }
        pings_handled(&[&one, &two], 6).await;
        // Both agents are `Twin`: one series, their sum.
        assert_eq!(twin_runs(addr).await, 6.0);

        // One stops: its three runs stay counted.
        let _ = one_handle.stop();
        one_handle.wait().await.expect("a clean stop");
        for _ in 0..2 {
            bus.send("script", Ping {}).await.expect("sent");
        }
        pings_handled(&[&two], 5).await;
        assert_eq!(twin_runs(addr).await, 8.0);

        // The lifecycle: two pre_start hooks timed, each server restarted
        // once, one clean stop.
        let scrape = scrape(addr).await;
        let hook = [
            ("agent", "Twin"),
            ("stage", "pre_start"),
            ("hook", "warm_up"),
        ];
        let durations = "microagent_hook_duration_seconds";
        assert_eq!(observations(&scrape, durations, &hook), 2.0);
        let restarts = [("agent", "Twin"), ("server", "serve")];
        assert_eq!(
            value(&scrape, "microagent_server_restarts_total", &restarts),
            2.0
        );
        let stops = [("agent", "Twin"), ("cause", "clean")];
        assert_eq!(value(&scrape, "microagent_agent_stops_total", &stops), 1.0);
    });
}

/// Every metric the Grafana dashboard in `deploy/` queries is one the
/// crate exports (a renamed metric would leave a panel empty).
#[test]
fn the_dashboard_queries_only_metrics_the_crate_exports() {
    use microagent::metrics::*;
    let exported = [
        AGENTS,
        HANDLER_RUNS,
        HANDLER_DURATION,
        HOOK_DURATION,
        SERVER_RESTARTS,
        AGENT_STOPS,
        QUEUE_SETTLED,
        QUEUE_DEPTH,
        QUEUE_IN_FLIGHT,
        QUEUE_SENT,
        QUEUE_SEND_DURATION,
        TASK_LATENESS,
        BUS_SENT,
        BUS_RECEIVED,
        BUS_CALLS,
        BUS_ANSWERS,
        BUS_CALL_DURATION,
        BUS_BAD_INPUT,
        BUS_SLOW_CONSUMER,
        BACKEND_CONNECTED,
        BACKEND_DISCONNECTS,
        BACKEND_ERRORS,
    ];
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/deploy/grafana/microagent.json"
    );
    let text = std::fs::read_to_string(path).expect("the dashboard is there");
    let dashboard: serde_json::Value = serde_json::from_str(&text).expect("valid JSON");
    let panels = dashboard["panels"].as_array().expect("panels");
    assert!(
        panels.len() >= 6,
        "the first panels an on-call engineer opens"
    );
    let mut queried = 0;
    for panel in panels {
        for target in panel["targets"].as_array().expect("targets") {
            let expr = target["expr"].as_str().expect("a PromQL expression");
            let names = expr
                .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .filter(|word| word.starts_with("microagent_"));
            for name in names {
                let base = name.strip_suffix("_bucket").unwrap_or(name);
                assert!(
                    exported.contains(&base),
                    "{name} in panel {}",
                    panel["title"]
                );
                queried += 1;
            }
        }
    }
    assert!(queried >= panels.len(), "every panel queries a metric");
}

#[derive(Queue, Serialize, Deserialize, Clone)]
#[queue(name = "metrics-matrix")]
struct Task {
    bad: bool,
}

/// Consumes tasks: a bad one fails its two attempts.
#[derive(Default, MicroAgent)]
struct Worker;

#[microagent::hooks]
impl Worker {
    #[consumer(Task, attempts = 2, backoff = 0.01)]
    fn work(&mut self, task: Task) -> Result<(), Boom> {
        match task.bad {
            true => Err(Boom("a bad task")),
            false => Ok(()),
        }
    }
}

/// The settlements of `metrics-matrix` so far: acked, retried, dead.
fn matrix_counts() -> (u64, u64, u64) {
    let info = Broker::current().info();
    let counts = info.queues.iter().find(|q| q.queue == "metrics-matrix");
    counts.map_or((0, 0, 0), |c| (c.acked, c.retried, c.dead_lettered))
}

/// How many sends to `metrics-matrix` had their confirmation timed.
fn confirmations(scrape: &Scrape) -> f64 {
    let found = scrape.samples.iter().find(|s| {
        s.metric == "microagent_queue_send_duration_seconds"
            && s.labels.get("queue") == Some("metrics-matrix")
    });
    found.map_or(0.0, |s| histogram_count(&s.value))
}

/// The sends to `metrics-matrix` so far, and how many are in flight.
fn matrix_sends() -> (u64, u64) {
    let info = Broker::current().info();
    let counts = info.queues.iter().find(|q| q.queue == "metrics-matrix");
    counts.map_or((0, 0), |c| (c.sent, c.in_flight))
}

/// On each backend: one good task and one bad one (retried, then
/// dead-lettered) add exactly that to the queue's counters, which
/// `/metrics` shows; its depth is the broker's.
fn queue_metrics_count_each_settlement(backend: Backend) {
    let _serial = serial();
    backend.run_broker(async {
        let (acked, retried, dead) = matrix_counts();
        let (sent, _) = matrix_sends();
        let (worker, _w) = microagent::start(Worker);
        let (_h, health) = microagent::start(HealthServer::new("127.0.0.1:0"));
        let addr = health.bound_address("http").await.expect("it listens");
        let confirmed_before = confirmations(&scrape(addr).await);
        worker.send(GetInfo).await.expect("started");
        let broker = Broker::current();
        for bad in [true, false] {
            broker.send(Task { bad }).await.expect("sent");
        }
        let start = Instant::now();
        while matrix_counts() != (acked + 1, retried + 1, dead + 1) {
            assert!(start.elapsed() < HANG, "settled: {:?}", matrix_counts());
            actix_rt::time::sleep(Duration::from_millis(5)).await;
        }
        let scrape = scrape(addr).await;
        let settled = |outcome| {
            let labels = [("queue", "metrics-matrix"), ("outcome", outcome)];
            value(&scrape, "microagent_queue_settled_total", &labels)
        };
        assert_eq!(settled("acked"), (acked + 1) as f64);
        assert_eq!(settled("retried"), (retried + 1) as f64);
        assert_eq!(settled("dead_lettered"), (dead + 1) as f64);
        // Two sends (a retry is not one), nothing in flight any more.
        assert_eq!(matrix_sends(), (sent + 2, 0));
        let ok = [("queue", "metrics-matrix"), ("outcome", "ok")];
        assert_eq!(
            value(&scrape, "microagent_queue_sent_total", &ok),
            (sent + 2) as f64
        );
        let labels = [("queue", "metrics-matrix")];
        assert_eq!(value(&scrape, "microagent_queue_in_flight", &labels), 0.0);
        let info = broker.info();
        if info.kind != "in-process" {
            // Each send's confirmation was timed.
            assert_eq!(confirmations(&scrape) - confirmed_before, 2.0);
            // The broker's failures, by kind, as its info counts them.
            let errors = |kind| {
                let labels = [
                    ("channel", "broker"),
                    ("backend", info.kind),
                    ("kind", kind),
                ];
                value(&scrape, "microagent_backend_errors_total", &labels)
            };
            assert_eq!(errors("server"), info.server_errors as f64);
            let connection = info.errors - info.server_errors;
            assert_eq!(errors("connection"), connection as f64);
        }
        let depth = broker.length("metrics-matrix").await.expect("a length");
        let labels = [("queue", "metrics-matrix")];
        assert_eq!(
            value(&scrape, "microagent_queue_depth", &labels),
            depth as f64
        );
        assert_eq!(depth, 0, "everything was settled");
        let kind = broker.info().kind;
        let connected = [("channel", "broker"), ("backend", kind)];
        assert_eq!(
            value(&scrape, "microagent_backend_connected", &connected),
            1.0
        );
    });
}

on_backends!([in_process, redis, amqp, nats, kafka] => queue_metrics_count_each_settlement);
