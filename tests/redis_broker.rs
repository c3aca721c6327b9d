//! What only the networked brokers have: consumers that die (SIGKILL)
//! while handling (Redis, RabbitMQ, NATS JetStream), a Redis that restarts, AMQP queue flags, and Python
//! producers and consumers on the same queues.
//!
//! They need `REDIS_URL` or `AMQP_URL` (compiled as ignored without them); the
//! Python test also needs `INTEROP_PYTHON` (a Python with
//! `microagent[redis,amqp]==1.9.0`).

mod support;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use proptest::strategy::Strategy;
use std::process::Command;
use std::time::{Duration, Instant};

use microagent::broker::{Broker, BrokerConfig, Queue};
use microagent::prelude::*;
use serde::{Deserialize, Serialize};
use support::health::Health;
use support::process::{Proc, HANG};
use support::rabbit::RabbitServer;
use support::redis::{redis_cli, RedisCluster, RedisServer, SentinelGroup, Switch};
use support::Events;

#[derive(Queue, Serialize, Deserialize, Clone)]
#[queue(name = "crash")]
struct Numbered {
    id: u32,
}

/// Every id a consumer process printed as handled so far, each time it did.
fn handled(p: &mut Proc) -> Vec<u32> {
    p.drain_lines()
        .iter()
        .filter_map(|l| l.strip_prefix("handled "))
        .filter_map(|id| id.parse().ok())
        .collect()
}

/// A broker to kill consumers on.
#[derive(Clone, Copy)]
enum Kind {
    Redis,
    Amqp,
    #[cfg(feature = "nats")]
    Nats,
    #[cfg(feature = "kafka")]
    Kafka,
}

fn consumer(kind: Kind, url: &str, namespace: &str) -> Proc {
    let variable = match kind {
        Kind::Redis => "REDIS_URL",
        Kind::Amqp => "AMQP_URL",
        #[cfg(feature = "nats")]
        Kind::Nats => "NATS_URL",
        #[cfg(feature = "kafka")]
        Kind::Kafka => "KAFKA_URL",
    };
    let mut command = Command::new(support::process::example("consumer-fixture"));
    command
        .env_remove("REDIS_URL")
        .env_remove("AMQP_URL")
        .env_remove("NATS_URL")
        .env_remove("KAFKA_URL")
        .env(variable, url)
        .env("NAMESPACE", namespace);
    Proc::start(command)
}

fn config(kind: Kind, url: &str) -> BrokerConfig {
    match kind {
        Kind::Redis => BrokerConfig::redis(url).unwrap(),
        Kind::Amqp => BrokerConfig::amqp(url).unwrap(),
        #[cfg(feature = "nats")]
        Kind::Nats => BrokerConfig::nats(url).unwrap(),
        #[cfg(feature = "kafka")]
        Kind::Kafka => BrokerConfig::kafka(url).unwrap(),
    }
}

#[test]
#[cfg_attr(not(service_redis), ignore = "needs REDIS_URL")]
fn redis_consumers_killed_mid_handling_lose_nothing() {
    killed_consumers_lose_nothing(Kind::Redis, &support::redis::url());
}

#[test]
#[cfg_attr(not(service_amqp), ignore = "needs AMQP_URL")]
fn amqp_consumers_killed_mid_handling_lose_nothing() {
    killed_consumers_lose_nothing(Kind::Amqp, &support::redis::amqp_url());
}

#[cfg(feature = "nats")]
#[test]
#[cfg_attr(not(service_nats), ignore = "needs NATS_URL")]
fn nats_consumers_killed_mid_handling_lose_nothing() {
    killed_consumers_lose_nothing(Kind::Nats, &support::redis::nats_url());
}

/// On Kafka, with the cluster in a process of its own (librdkafka's mock,
/// served by a fixture) so that only the consumers die.
#[cfg(feature = "kafka")]
#[test]
fn kafka_consumers_killed_mid_handling_lose_nothing() {
    let mut cluster = Proc::start(Command::new(support::process::example(
        "kafka-mock-fixture",
    )));
    let url = cluster.wait_line(|line| line.starts_with("kafka://"));
    killed_consumers_lose_nothing(Kind::Kafka, &url);
    cluster.signal("KILL");
    cluster.wait_code();
}

/// Two consumers of one group on Kafka, and the one handling the queue
/// stopped (SIGTERM) mid-run: it settles what it took, commits and leaves
/// the group, and the other takes the partition over from there. The set
/// handled equals the set sent.
#[cfg(feature = "kafka")]
#[test]
fn kafka_a_consumer_leaving_its_group_mid_run_hands_over_without_loss() {
    let mut cluster = Proc::start(Command::new(support::process::example(
        "kafka-mock-fixture",
    )));
    let url = cluster.wait_line(|line| line.starts_with("kafka://"));
    let namespace = format!("{}.", support::redis::prefix());
    let sent: BTreeSet<u32> = (0..1000).collect();
    send_numbered(Kind::Kafka, &url, &namespace, sent.len() as u32);
    let mut consumers = [
        consumer(Kind::Kafka, &url, &namespace),
        consumer(Kind::Kafka, &url, &namespace),
    ];
    let mut seen = BTreeSet::new();
    let mut by = [0usize; 2];
    let start = Instant::now();
    while seen.len() < 300 {
        for (i, p) in consumers.iter_mut().enumerate() {
            let ids = handled(p);
            by[i] += ids.len();
            seen.extend(ids);
        }
        assert!(
            start.elapsed() < HANG,
            "no progress: {} handled ({by:?} by each); the consumers said:\n{}\n---\n{}",
            seen.len(),
            consumers[0].stderr(),
            consumers[1].stderr()
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    // The queue's messages are in one partition: one consumer has it.
    let (leaving, staying) = if by[0] >= by[1] { (0, 1) } else { (1, 0) };
    consumers[leaving].signal("TERM");
    assert_eq!(
        consumers[leaving].wait_code(),
        0,
        "{}",
        consumers[leaving].stderr()
    );
    seen.extend(handled(&mut consumers[leaving]));
    let start = Instant::now();
    while seen != sent {
        seen.extend(handled(&mut consumers[staying]));
        assert!(
            start.elapsed() < HANG,
            "lost: {:?}; the staying consumer said: {}\n---- the leaving one: {}",
            sent.difference(&seen).take(20).collect::<Vec<_>>(),
            consumers[staying].stderr(),
            consumers[leaving].stderr()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    consumers[staying].signal("TERM");
    assert_eq!(consumers[staying].wait_code(), 0);
    cluster.signal("KILL");
    cluster.wait_code();
}

/// Sends messages `0..count` to queue `crash` under `namespace`.
fn send_numbered(kind: Kind, url: &str, namespace: &str, count: u32) {
    let (url, namespace) = (url.to_owned(), namespace.to_owned());
    microagent::run(async move {
        let config = config(kind, &url).namespace(&namespace);
        let broker = Broker::connect(config).await.unwrap();
        for id in 0..count {
            broker.send(Numbered { id }).await.unwrap();
        }
    });
}

fn killed_consumers_lose_nothing(kind: Kind, url: &str) {
    let url = url.to_owned();
    // `.`: Kafka's topic names take no `:`.
    let namespace = format!("{}.", support::redis::prefix());
    let sent: BTreeSet<u32> = (0..1000).collect();
    send_numbered(kind, &url, &namespace, sent.len() as u32);
    let mut seen = BTreeSet::new();
    let mut runs = 0;
    // Kill consumers at different points: after 50, 170, 290... handled.
    for round in 0..5u32 {
        let mut p = consumer(kind, &url, &namespace);
        let target = seen.len() + 50 + (round as usize * 120) % 200;
        let start = Instant::now();
        loop {
            seen.extend(handled(&mut p));
            if seen.len() >= target.min(sent.len()) {
                break;
            }
            assert!(start.elapsed() < HANG, "the consumer made no progress");
            std::thread::sleep(Duration::from_millis(2));
        }
        p.signal("KILL");
        p.wait_code();
        let ids = handled(&mut p);
        runs += ids.len();
        seen.extend(ids);
    }
    // A last consumer takes what is left, the killed ones' messages too
    // once their leases expired.
    let mut p = consumer(kind, &url, &namespace);
    let start = Instant::now();
    while seen != sent {
        seen.extend(handled(&mut p));
        assert!(
            start.elapsed() < HANG,
            "lost: {:?}",
            sent.difference(&seen).take(20).collect::<Vec<_>>()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    p.signal("TERM");
    assert_eq!(p.wait_code(), 0, "{}", p.stderr());
    runs += handled(&mut p).len();
    assert_eq!(seen, sent);
    // At least once: what a kill cut short after the run was handled again.
    eprintln!(
        "{} messages, {runs} runs ({} handled again after a kill)",
        sent.len(),
        runs - sent.len()
    );
}

/// What the Python side sends the Rust consumer.
#[derive(Queue, Serialize, Deserialize, Clone)]
#[queue(name = "py_to_rs")]
struct FromPython {
    id: u32,
    source: String,
}

#[derive(Default, MicroAgent)]
struct RustConsumer {
    events: Events,
}

#[microagent::hooks]
impl RustConsumer {
    #[consumer(FromPython)]
    fn handle(&mut self, message: FromPython) {
        self.events.push(format!(
            "rust handled {} from {}",
            message.id, message.source
        ));
    }
}

/// Python producer to Rust consumer and Rust producer to Python consumer,
/// on the same Redis lists.
#[test]
#[cfg_attr(
    not(all(service_redis, service_python)),
    ignore = "needs REDIS_URL and INTEROP_PYTHON"
)]
fn python_and_rust_share_redis_queues_both_ways() {
    python_and_rust_share_queues(Kind::Redis, &support::redis::url());
}

/// The same on RabbitMQ queues.
#[test]
#[cfg_attr(
    not(all(service_amqp, service_python)),
    ignore = "needs AMQP_URL and INTEROP_PYTHON"
)]
fn python_and_rust_share_amqp_queues_both_ways() {
    python_and_rust_share_queues(Kind::Amqp, &support::redis::amqp_url());
}

fn python_and_rust_share_queues(kind: Kind, url: &str) {
    let python = support::redis::python();
    let url = url.to_owned();
    // The Rust side's namespace makes the Python side's full queue names
    // (`.`: Kafka's topic names take no `:`).
    let namespace = format!("{}.", support::redis::prefix());
    let to_rust = format!("{namespace}py_to_rs");
    let from_rust = format!("{namespace}rs_to_py");
    let count = 20u32;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/queues.py");
    let dsn = match kind {
        // redis-py gives up on blocking reads after 5 s without a socket timeout.
        Kind::Redis => format!("{url}?socket_timeout=30"),
        Kind::Amqp => url.clone(),
        #[cfg(feature = "nats")]
        Kind::Nats => unreachable!("the Python original has no NATS"),
        #[cfg(feature = "kafka")]
        Kind::Kafka => url.clone(),
    };
    let mut command = Command::new(python);
    command.args([script, &dsn, &to_rust, &from_rust, &count.to_string()]);
    let events = Events::default();
    let watched = events.clone();
    let py = microagent::run(async move {
        let config = config(kind, &url).namespace(&namespace);
        let broker = Broker::connect(config).await.unwrap();
        // On AMQP a message to a queue nobody declared is dropped: declare
        // ours before the Python side sends.
        broker.length("py_to_rs").await.unwrap();
        let py = Proc::start(command);
        #[cfg(feature = "kafka")]
        let py = match kind {
            Kind::Kafka => probe(&broker, py).await,
            _ => py,
        };
        let (_addr, handle) = microagent::start(RustConsumer {
            events: watched.clone(),
        });
        for id in 0..count {
            let message = serde_json::json!({"id": id, "source": "rust"});
            broker
                .send_dyn("rs_to_py", message.as_object().unwrap())
                .await
                .unwrap();
        }
        for id in 0..count {
            watched
                .seen(&format!("rust handled {id} from python"))
                .await;
        }
        handle.stop();
        handle.await.unwrap();
        let waited = actix_rt::task::spawn_blocking(move || {
            let mut py = py;
            py.wait_line(|l| l == "python done");
            py
        });
        waited.await.unwrap()
    });
    let mut py = py;
    assert_eq!(py.wait_code(), 0, "{}", py.stderr());
    let from_rust: BTreeSet<&str> = py
        .seen
        .iter()
        .filter(|l| l.starts_with("python handled") && !l.ends_with("from probe"))
        .map(String::as_str)
        .collect();
    let expected: BTreeSet<String> = (0..count)
        .map(|id| format!("python handled {id} from rust"))
        .collect();
    assert_eq!(from_rust, expected.iter().map(String::as_str).collect());
    assert_eq!(events.all().len(), count as usize, "each once");
}

/// The same on Kafka topics: a Python producer to a Rust consumer group,
/// a Rust producer to the Python original's consumer (which has no group
/// and reads from the latest offset), on a mock cluster in this process.
#[cfg(feature = "kafka")]
#[test]
#[cfg_attr(not(service_python), ignore = "needs INTEROP_PYTHON")]
fn python_and_rust_share_kafka_queues_both_ways() {
    python_and_rust_share_queues(Kind::Kafka, &support::kafka::mock_cluster());
}

/// Sends probes to the Python consumer until it heard one: it reads from
/// the latest offset once its consumer has started, which its agent's
/// start does not wait for.
#[cfg(feature = "kafka")]
async fn probe(broker: &Broker, py: Proc) -> Proc {
    let heard = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let hearing = heard.clone();
    let waiter = actix_rt::task::spawn_blocking(move || {
        let mut py = py;
        py.wait_line(|l| l.ends_with("from probe"));
        hearing.store(true, std::sync::atomic::Ordering::SeqCst);
        py
    });
    let mut id = 100_000;
    while !heard.load(std::sync::atomic::Ordering::SeqCst) {
        let message = serde_json::json!({"id": id, "source": "probe"});
        broker
            .send_dyn("rs_to_py", message.as_object().unwrap())
            .await
            .unwrap();
        id += 1;
        actix_rt::time::sleep(Duration::from_millis(200)).await;
    }
    waiter.await.unwrap()
}

#[test]
#[cfg_attr(not(service_redis), ignore = "needs REDIS_URL")]
fn a_redis_restart_turns_readiness_503_then_200_and_consuming_resumes() {
    support::redis::url();
    let server = RedisServer::start();
    let url = server.url();
    let switch = Switch::new(server);
    let events = Events::default();
    let watched = events.clone();
    let down_error = microagent::run(async move {
        let broker = Broker::connect(BrokerConfig::redis(&url).unwrap())
            .await
            .unwrap();
        let (_addr, handle) = microagent::start(RustConsumer {
            events: watched.clone(),
        });
        let health = Health::start();
        health.ready_becomes(200).await;
        let first = FromPython {
            id: 1,
            source: "before".into(),
        };
        broker.send(first).await.unwrap();
        watched.seen("rust handled 1 from before").await;

        switch.set(false).await;
        health.ready_becomes(503).await;
        let down = broker
            .send(FromPython {
                id: 2,
                source: "down".into(),
            })
            .await
            .unwrap_err();

        switch.set(true).await;
        // A send reconnects the shared connection; the consumer reconnects
        // its own and takes it.
        let start = Instant::now();
        while broker
            .send(FromPython {
                id: 3,
                source: "after".into(),
            })
            .await
            .is_err()
        {
            assert!(start.elapsed() < HANG);
            actix_rt::time::sleep(Duration::from_millis(50)).await;
        }
        watched.seen("rust handled 3 from after").await;
        health.ready_becomes(200).await;
        // One outage: one lost connection, however many commands failed.
        let info = broker.info();
        assert_eq!(info.disconnects, 1, "{info:?}");
        assert!(
            info.errors > info.server_errors,
            "a connection error: {info:?}"
        );
        handle.stop();
        handle.await.unwrap();
        health.stop().await;
        down
    });
    assert!(
        matches!(
            down_error,
            microagent::broker::BrokerError::Backend { kind: "redis", .. }
        ),
        "{down_error:?}"
    );
    // The client's error stays reachable as the source.
    assert!(
        std::error::Error::source(&down_error).is_some(),
        "{down_error:?}"
    );
    assert_eq!(events.count("rust handled 2 from down"), 0);
}

#[derive(Queue, Serialize, Deserialize, Clone)]
#[queue(name = "pusher", exchange = "events")]
struct Push {
    text: String,
}

#[derive(Queue, Serialize, Deserialize, Clone)]
#[queue(name = "logger", exchange = "events")]
struct Log {
    text: String,
}

#[derive(Queue, Serialize, Deserialize, Clone)]
#[queue(name = "save", exchange = "msg", topics = ["m.*"])]
struct Save {
    text: String,
}

/// Consumes the queues of a fanout exchange (`events`) and of a topic one
/// (`msg`), as the original's declarations file example has them.
#[derive(Default, MicroAgent)]
struct Exchanges {
    events: Events,
}

#[microagent::hooks]
impl Exchanges {
    #[consumer(Push)]
    fn push(&mut self, message: Push) {
        self.events.push(format!("pusher {}", message.text));
    }

    #[consumer(Log)]
    fn log(&mut self, message: Log) {
        self.events.push(format!("logger {}", message.text));
    }

    #[consumer(Save)]
    fn save(&mut self, message: Save) {
        self.events.push(format!("save {}", message.text));
    }
}

#[test]
#[cfg_attr(not(service_amqp), ignore = "needs AMQP_URL")]
fn amqp_exchanges_fan_out_and_route_by_topic() {
    let url = support::redis::amqp_url();
    let namespace = format!("{}:", support::redis::prefix());
    let events = Events::default();
    let watched = events.clone();
    microagent::run(async move {
        let config = BrokerConfig::amqp(&url).unwrap().namespace(&namespace);
        let broker = Broker::connect(config).await.unwrap();
        let (_addr, handle) = microagent::start(Exchanges {
            events: watched.clone(),
        });
        // The consumers declare and bind their queues as they start: until
        // then a message to the exchange is routed nowhere. Probe.
        let start = Instant::now();
        while watched.count("logger probe") == 0 || watched.count("save probe") == 0 {
            assert!(start.elapsed() < HANG, "the queues were never bound");
            let probe = Push {
                text: "probe".into(),
            };
            let _ = broker.send(probe).await;
            let probe = Save {
                text: "probe".into(),
            };
            let _ = broker.send_topic(probe, "m.probe").await;
            actix_rt::time::sleep(Duration::from_millis(50)).await;
        }
        // Fanout: sent as `pusher`, every queue of `events` gets it.
        broker
            .send(Push {
                text: "hello".into(),
            })
            .await
            .unwrap();
        watched.seen("pusher hello").await;
        watched.seen("logger hello").await;
        // A queue of a Python declarations file sends through its exchange.
        let declared = microagent::bus::Declarations::from_json(
            r#"{"signals": [], "queues": [{"name": "pusher", "exchange": "events"}]}"#,
        )
        .unwrap();
        let text = serde_json::json!({"text": "declared"});
        broker
            .send_declared(&declared.queues[0], text.as_object().unwrap())
            .await
            .unwrap();
        watched.seen("pusher declared").await;
        watched.seen("logger declared").await;
        // Topics: only a matching one reaches `save`.
        let routed = Save {
            text: "kept".into(),
        };
        broker.send_topic(routed, "m.kept").await.unwrap();
        let unrouted = Save {
            text: "dropped".into(),
        };
        broker.send_topic(unrouted, "n.dropped").await.unwrap();
        watched.seen("save kept").await;
        actix_rt::time::sleep(Duration::from_millis(200)).await;
        handle.stop();
        handle.await.unwrap();
    });
    assert_eq!(events.count("save dropped"), 0);
    assert_eq!(events.count("pusher hello"), 1);
    assert_eq!(events.count("logger hello"), 1);
    assert_eq!(events.count("logger declared"), 1);
}

/// Closes, from the broker's side, every AMQP connection whose name holds
/// `namespace`; how many it closed. `None` when `rabbitmqctl` cannot run.
fn close_amqp_connections(namespace: &str) -> Option<usize> {
    let listed = Command::new("rabbitmqctl")
        .args(["-q", "list_connections", "pid", "client_properties"])
        .output()
        .ok()
        .filter(|out| out.status.success())?;
    let listed = String::from_utf8_lossy(&listed.stdout).into_owned();
    let pids: Vec<&str> = listed
        .lines()
        .filter(|line| line.contains(namespace))
        .filter_map(|line| line.split_whitespace().next())
        .collect();
    for pid in &pids {
        let closed = Command::new("rabbitmqctl")
            .args(["-q", "close_connection", pid, "test: connection loss"])
            .status()
            .expect("rabbitmqctl runs");
        assert!(closed.success(), "closing {pid} failed");
    }
    Some(pids.len())
}

#[test]
#[cfg_attr(not(service_amqp), ignore = "needs AMQP_URL")]
fn amqp_connections_closed_by_the_broker_are_made_again_and_nothing_is_lost() {
    let test = "amqp_connections_closed_by_the_broker_are_made_again_and_nothing_is_lost";
    let url = support::redis::amqp_url();
    assert!(
        close_amqp_connections("no such connection").is_some(),
        "{test} needs rabbitmqctl beside the RabbitMQ at AMQP_URL"
    );
    let namespace = format!("{}:", support::redis::prefix());
    let events = Events::default();
    let watched = events.clone();
    let (closed, info) = microagent::run(async move {
        let config = BrokerConfig::amqp(&url).unwrap().namespace(&namespace);
        let broker = Broker::connect(config).await.unwrap();
        let (addr, handle) = microagent::start(RustConsumer {
            events: watched.clone(),
        });
        // Consuming (its queue declared and bound) before the loss.
        let start = Instant::now();
        let mut probe = 1000;
        while watched.all().is_empty() {
            assert!(start.elapsed() < HANG, "never consumed");
            let message = FromPython {
                id: probe,
                source: "probe".into(),
            };
            broker.send(message).await.unwrap();
            probe += 1;
            actix_rt::time::sleep(Duration::from_millis(50)).await;
        }
        let first = FromPython {
            id: 1,
            source: "before".into(),
        };
        broker.send(first).await.unwrap();
        watched.seen("rust handled 1 from before").await;
        // The broker drops both connections (publishing and consuming).
        let namespace_ = namespace.clone();
        let closed = actix_rt::task::spawn_blocking(move || close_amqp_connections(&namespace_))
            .await
            .unwrap()
            .expect("rabbitmqctl ran before");
        // Sending makes the publishing connection again; the consumer makes
        // its own and resumes. Sends may fail while the first attempt meets
        // the dead connection: retry each until the broker confirms it.
        for id in 2..12 {
            let start = Instant::now();
            while broker
                .send(FromPython {
                    id,
                    source: "after".into(),
                })
                .await
                .is_err()
            {
                assert!(start.elapsed() < HANG, "sending never recovered");
                actix_rt::time::sleep(Duration::from_millis(50)).await;
            }
        }
        for id in 2..12 {
            watched.seen(&format!("rust handled {id} from after")).await;
        }
        let info = addr.send(GetInfo).await.unwrap();
        handle.stop();
        handle.await.unwrap();
        (closed, info)
    });
    assert!(closed >= 2, "closed {closed} connection(s)");
    assert_eq!(events.count("rust handled 1 from before"), 1);
    let broker = info.broker.expect("a running agent reports its broker");
    assert_eq!(broker.kind, "amqp");
    assert!(broker.connected, "connected again");
}

#[test]
#[cfg_attr(not(service_amqp), ignore = "needs AMQP_URL")]
fn an_amqp_queue_with_other_flags_is_a_clear_error_and_fails_its_consumer_s_start() {
    let url = support::redis::amqp_url();
    let namespace = format!("{}:", support::redis::prefix());
    // Declared durable by one process first...
    {
        let (url, namespace) = (url.clone(), namespace.clone());
        microagent::run(async move {
            let durable = BrokerConfig::amqp(&url)
                .unwrap()
                .namespace(&namespace)
                .durable(true);
            let broker = Broker::connect(durable).await.unwrap();
            broker
                .send(FromPython {
                    id: 1,
                    source: "durable".into(),
                })
                .await
                .unwrap();
        });
    }
    // ...then by one that declares it as the Python original does.
    let plain = BrokerConfig::amqp(&url).unwrap().namespace(&namespace);
    let error = microagent::run({
        let plain = plain.clone();
        async move {
            let broker = Broker::connect(plain).await.unwrap();
            broker
                .send(FromPython {
                    id: 2,
                    source: "plain".into(),
                })
                .await
                .unwrap_err()
        }
    });
    match &error {
        microagent::broker::BrokerError::QueueMismatch { queue, durable, .. } => {
            assert!(queue.ends_with("py_to_rs"), "{queue}");
            assert!(!durable);
        }
        other => panic!("{other:?}"),
    }
    assert!(error.to_string().contains("durable = false"), "{error}");
    // A consumer of it does not start: its agent's start fails with the
    // mismatch after pre_start (it retried for ever, counted as started).
    let events = Events::default();
    let exit = microagent::Launcher::new()
        .broker(plain.clone())
        .agent(Mismatched {
            events: events.clone(),
        })
        .run();
    assert_eq!(exit, microagent::Exit::BrokerFailed);
    assert_eq!(events.all(), ["pre_start", "pre_stop"]);
    let outcome = microagent::run(async move {
        Broker::connect(plain).await.unwrap();
        let (_addr, handle) = microagent::start(Mismatched::default());
        handle.await
    });
    match outcome {
        Err(microagent::AgentError::Consume {
            agent: "Mismatched",
            consumer: "handle",
            error,
            ..
        }) => match *error {
            microagent::broker::BrokerError::QueueMismatch { queue, durable, .. } => {
                assert!(queue.ends_with("py_to_rs"), "{queue}");
                assert!(!durable);
            }
            other => panic!("{other:?}"),
        },
        other => panic!("{other:?}"),
    }
}

/// Consumes a queue declared elsewhere with other flags.
#[derive(Default, MicroAgent)]
struct Mismatched {
    events: Events,
}

#[microagent::hooks]
impl Mismatched {
    #[on(pre_start)]
    fn opening(&mut self) {
        self.events.push("pre_start");
    }

    #[on(post_start)]
    fn running(&mut self) {
        self.events.push("post_start");
    }

    #[on(pre_stop)]
    fn closing(&mut self) {
        self.events.push("pre_stop");
    }

    #[consumer(FromPython)]
    fn handle(&mut self, _message: FromPython) {}
}

#[derive(Queue, Serialize, Deserialize, Clone)]
#[queue(name = "restart")]
struct Slow {
    id: u32,
}

/// Takes 100 ms a message, one at a time, and holds every message after
/// the first while `held`: a queue to stop a broker under, still full
/// when it stops however long the stop takes.
#[derive(Default, MicroAgent)]
struct SlowConsumer {
    events: Events,
    held: Arc<AtomicBool>,
}

#[microagent::hooks]
impl SlowConsumer {
    #[consumer(Slow, prefetch = 1)]
    async fn handle(&mut self, message: Slow) {
        while message.id > 1 && self.held.load(Ordering::SeqCst) {
            actix_rt::time::sleep(Duration::from_millis(10)).await;
        }
        actix_rt::time::sleep(Duration::from_millis(100)).await;
        self.events.push(format!("slow {}", message.id));
    }
}

/// A RabbitMQ of the test's own stops while its queue is full (durable
/// queues, persistent messages) and starts again: readiness turns 503 then
/// 200, sending fails while it is down, the consumer reconnects, and every
/// message sent before the stop is handled.
#[test]
#[cfg_attr(not(service_amqp), ignore = "needs AMQP_URL")]
fn a_rabbitmq_restart_turns_readiness_503_then_200_and_loses_nothing() {
    let test = "a_rabbitmq_restart_turns_readiness_503_then_200_and_loses_nothing";
    support::redis::amqp_url();
    let server = RabbitServer::start(test);
    let url = server.url();
    let switch = Switch::new(server);
    let events = Events::default();
    let watched = events.clone();
    let held = Arc::new(AtomicBool::new(true));
    let down_error = microagent::run(async move {
        let config = BrokerConfig::amqp(&url).unwrap().durable(true);
        let broker = Broker::connect(config).await.unwrap();
        let (_addr, handle) = microagent::start(SlowConsumer {
            events: watched.clone(),
            held: held.clone(),
        });
        let health = Health::start();
        health.ready_becomes(200).await;
        for id in 1..=60 {
            broker.send(Slow { id }).await.unwrap();
        }
        watched.seen("slow 1").await;

        switch.set(false).await;
        let handled_before = watched.all().len();
        // The message in hand finishes while the broker is down (its ack
        // is lost with the connection: it comes again).
        held.store(false, Ordering::SeqCst);
        health.ready_becomes(503).await;
        let down = broker.send(Slow { id: 99 }).await.unwrap_err();

        switch.set(true).await;
        let start = Instant::now();
        while watched.count("slow 60") == 0 {
            assert!(
                start.elapsed() < HANG,
                "not every message came back: {:?}",
                watched.all()
            );
            actix_rt::time::sleep(Duration::from_millis(20)).await;
        }
        health.ready_becomes(200).await;
        let info = broker.info();
        assert_eq!(info.disconnects, 1, "{info:?}");
        assert!(
            info.errors > info.server_errors,
            "a connection error: {info:?}"
        );
        handle.stop();
        handle.await.unwrap();
        health.stop().await;
        (down, handled_before)
    });
    let (down_error, handled_before) = down_error;
    assert!(
        matches!(
            down_error,
            microagent::broker::BrokerError::Backend { kind: "amqp", .. }
        ),
        "{down_error:?}"
    );
    // The client's error stays reachable as the source.
    assert!(
        std::error::Error::source(&down_error).is_some(),
        "{down_error:?}"
    );
    // The broker stopped with messages still queued.
    eprintln!("handled before the broker stopped: {handled_before} of 60");
    assert!(handled_before < 60, "all handled before the stop");
    let handled: BTreeSet<String> = events.all().into_iter().collect();
    let sent: BTreeSet<String> = (1..=60).map(|id| format!("slow {id}")).collect();
    assert_eq!(handled, sent, "lost or extra messages");
}

/// Records what the crash-recovery property test's consumer handled.
#[derive(Default, MicroAgent)]
struct Recovering {
    events: Events,
}

#[microagent::hooks]
impl Recovering {
    #[consumer(Numbered, attempts = 1, prefetch = 4)]
    fn handle(&mut self, message: Numbered) {
        self.events.push(format!("handled {}", message.id));
    }
}

/// What a dead letter shows of a body: its JSON, else its text.
fn shown(body: &[u8]) -> serde_json::Value {
    serde_json::from_slice(body)
        .unwrap_or_else(|_| serde_json::Value::String(String::from_utf8_lossy(body).into_owned()))
}

/// A consumer died (its lease gone) with `bodies` in its processing list;
/// a new consumer recovers them. Every body is handled or dead-lettered:
/// returns what was handled and the dead letters' messages.
fn recover_after_a_crash(url: &str, bodies: &[Vec<u8>]) -> (Vec<String>, Vec<serde_json::Value>) {
    let namespace = format!("{}:", support::redis::prefix());
    let client = redis::Client::open(url).unwrap();
    let mut connection = client.get_connection().unwrap();
    let mut pipe = redis::pipe();
    pipe.cmd("SADD")
        .arg(format!("{namespace}crash:microagent:consumers"))
        .arg("dead");
    for body in bodies {
        pipe.cmd("RPUSH")
            .arg(format!("{namespace}crash:microagent:processing:dead"))
            .arg(body.as_slice());
    }
    let () = pipe.query(&mut connection).unwrap();
    let events = Events::default();
    let watched = events.clone();
    let total = bodies.len();
    let dead = microagent::run(async move {
        let config = BrokerConfig::redis(url).unwrap().namespace(&namespace);
        let broker = Broker::connect(config).await.unwrap();
        let (addr, handle) = microagent::start(Recovering {
            events: watched.clone(),
        });
        addr.send(GetInfo).await.unwrap();
        let start = Instant::now();
        let dead = loop {
            let dead = broker.dead_letters("crash").await.unwrap();
            if dead.len() + watched.all().len() >= total {
                break dead;
            }
            assert!(
                start.elapsed() < HANG,
                "lost: {} of {total} seen",
                dead.len() + watched.all().len()
            );
            actix_rt::time::sleep(Duration::from_millis(2)).await;
        };
        handle.stop();
        handle.await.unwrap();
        dead
    });
    (events.all(), dead.into_iter().map(|d| d.message).collect())
}

/// The issue's case: a body that starts with a NUL byte (which the
/// consumer's bookkeeping once took for one of its retry markers, and
/// dropped) is dead-lettered after a crash; the others are handled.
#[test]
#[cfg_attr(not(service_redis), ignore = "needs REDIS_URL")]
fn a_body_starting_with_nul_is_dead_lettered_after_a_crash_not_lost() {
    let url = support::redis::url();
    let bodies: Vec<Vec<u8>> = vec![
        br#"{"id":500}"#.to_vec(),
        b"\0garbage".to_vec(),
        br#"{"id":501}"#.to_vec(),
        br#"{"id":502}"#.to_vec(),
    ];
    let (handled, dead) = recover_after_a_crash(&url, &bodies);
    assert_eq!(handled, ["handled 500", "handled 501", "handled 502"]);
    assert_eq!(dead, [serde_json::json!("\0garbage")]);
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(24))]

    /// Whatever bytes a producer pushes, a crash loses none of them: after
    /// the recovery each is handled (it decodes) or dead-lettered.
    #[test]
    #[cfg_attr(not(service_redis), ignore = "needs REDIS_URL")]
    fn any_bytes_pushed_are_handled_or_dead_lettered_after_a_crash(
        bodies in proptest::collection::vec(
            proptest::prop_oneof![
                proptest::collection::vec(proptest::prelude::any::<u8>(), 0..24),
                proptest::collection::vec(proptest::prelude::any::<u8>(), 0..8)
                    .prop_map(|mut b| { b.insert(0, 0); b }),
                (0u32..1000).prop_map(|id| format!(r#"{{"id":{id}}}"#).into_bytes()),
            ],
            1..8,
        )
    ) {
        let url = support::redis::url();
        let (handled, dead) = recover_after_a_crash(&url, &bodies);
        let mut expected_handled = Vec::new();
        let mut expected_dead = Vec::new();
        for body in &bodies {
            match serde_json::from_slice::<Numbered>(body) {
                Ok(message) => expected_handled.push(format!("handled {}", message.id)),
                Err(_) => expected_dead.push(shown(body)),
            }
        }
        let key = |v: &serde_json::Value| v.to_string();
        let mut dead = dead;
        dead.sort_by_key(key);
        expected_dead.sort_by_key(key);
        proptest::prop_assert_eq!(handled, expected_handled);
        proptest::prop_assert_eq!(dead, expected_dead);
    }
}

/// At launch the broker waits for its server as the bus does: a Redis that
/// comes up within the connect timeout is used; one that does not ends the
/// launch with exit 9 and no agent started.
#[test]
fn the_broker_waits_for_its_server_at_launch_within_its_connect_timeout() {
    let mut server = RedisServer::start();
    let url = server.url();
    server.stop();
    let coming = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(400));
        server.restart();
        server
    });
    let config = BrokerConfig::redis(&url)
        .unwrap()
        .connect_timeout(Duration::from_secs(20));
    let (connected, waited) = microagent::run(async move {
        let start = Instant::now();
        let broker = Broker::connect(config).await;
        (broker.map(|b| b.info().connected), start.elapsed())
    });
    let server = coming.join().expect("the server came up");
    assert_eq!(connected, Ok(true));
    assert!(
        waited >= Duration::from_millis(300),
        "it waited: {waited:?}"
    );
    drop(server);

    // Nobody there: the launch fails once the timeout is over.
    let port = support::net::free_port();
    let config = BrokerConfig::redis(&format!("redis://127.0.0.1:{port}"))
        .unwrap()
        .connect_timeout(Duration::from_millis(300));
    let events = Events::default();
    let start = Instant::now();
    let exit = microagent::Launcher::new()
        .broker(config)
        .agent(Mismatched {
            events: events.clone(),
        })
        .run();
    assert_eq!(exit, microagent::Exit::BrokerFailed);
    assert!(start.elapsed() >= Duration::from_millis(300));
    assert!(events.all().is_empty(), "no agent started");
}

#[derive(Queue, Serialize, Deserialize, Clone)]
#[queue(name = "batched")]
struct Item {
    id: u32,
}

/// A plain `fn` consumer with room for sixteen messages in flight.
#[derive(Default, MicroAgent)]
struct Sixteen {
    events: Events,
}

#[microagent::hooks]
impl Sixteen {
    #[consumer(Item, prefetch = 16)]
    fn handle(&mut self, item: Item) {
        self.events.push(format!("item {}", item.id));
    }
}

/// How many times Redis ran `command` (`INFO commandstats`).
async fn calls(connection: &mut redis::aio::MultiplexedConnection, command: &str) -> u64 {
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(connection)
        .await
        .expect("INFO");
    let prefix = format!("cmdstat_{command}:calls=");
    info.lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .and_then(|rest| rest.split(',').next())
        .map_or(0, |n| n.parse().expect("a count"))
}

/// On a Redis of the test's own, whose command counts are the broker's
/// alone: `send_batch` is one `RPUSH`, and a consumer with prefetch 16
/// takes 320 messages in batches (far fewer take scripts run than one per
/// message), handling each once, in the order sent, and settling every one
/// (none is left in its processing list).
#[test]
fn a_consumer_takes_in_batches_and_send_batch_is_one_push() {
    let server = RedisServer::start();
    let url = server.url();
    let events = Events::default();
    let watched = events.clone();
    let (pushes, scripts, left) = microagent::run(async move {
        let broker = Broker::connect(BrokerConfig::redis(&url).unwrap())
            .await
            .expect("the broker connects");
        let client = redis::Client::open(url.as_str()).unwrap();
        let mut redis = client.get_multiplexed_async_connection().await.unwrap();
        redis::cmd("CONFIG")
            .arg("RESETSTAT")
            .query_async::<()>(&mut redis)
            .await
            .unwrap();
        for half in [0..160, 160..320] {
            broker.send_batch(half.map(|id| Item { id })).await.unwrap();
        }
        let pushes = calls(&mut redis, "rpush").await;
        assert_eq!(broker.length("batched").await.unwrap(), 320);
        let before = calls(&mut redis, "evalsha").await;
        let (addr, handle) = microagent::start(Sixteen {
            events: watched.clone(),
        });
        addr.send(GetInfo).await.expect("the agent started");
        watched.seen("item 319").await;
        // Every settlement reached Redis once the processing list is empty.
        let deadline = Instant::now() + HANG;
        let left = loop {
            let keys: Vec<String> = redis::cmd("KEYS")
                .arg("batched:microagent:processing:*")
                .query_async(&mut redis)
                .await
                .unwrap();
            let mut left = 0;
            for key in &keys {
                left += redis::cmd("LLEN")
                    .arg(key)
                    .query_async::<usize>(&mut redis)
                    .await
                    .unwrap();
            }
            if left == 0 || Instant::now() > deadline {
                break left;
            }
            actix_rt::time::sleep(Duration::from_millis(10)).await;
        };
        let scripts = calls(&mut redis, "evalsha").await - before;
        handle.stop();
        handle.await.unwrap();
        (pushes, scripts, left)
    });
    drop(server);
    let expected: Vec<String> = (0..320).map(|id| format!("item {id}")).collect();
    assert_eq!(events.all(), expected);
    assert_eq!(left, 0, "every message settled");
    assert_eq!(pushes, 2, "one RPUSH per batch sent");
    // One take per message would be 320 scripts (and the consumer's start
    // runs one recovery).
    assert!(
        scripts <= 160,
        "{scripts} scripts for 320 messages: not taken in batches"
    );
}

/// How many AMQP connections whose name holds `namespace` RabbitMQ lists;
/// `None` when `rabbitmqctl` cannot run.
fn amqp_connections(namespace: &str) -> Option<usize> {
    let listed = Command::new("rabbitmqctl")
        .args(["-q", "list_connections", "client_properties"])
        .output()
        .ok()
        .filter(|out| out.status.success())?;
    let listed = String::from_utf8_lossy(&listed.stdout).into_owned();
    Some(
        listed
            .lines()
            .filter(|line| line.contains(namespace))
            .count(),
    )
}

/// Three consumers of one broker share one connection (a channel each),
/// beside the publishing one: two connections, not four; and each still
/// consumes.
#[test]
#[cfg_attr(not(service_amqp), ignore = "needs AMQP_URL")]
fn amqp_consumers_share_one_connection() {
    let url = support::redis::amqp_url();
    assert!(
        amqp_connections("no such connection").is_some(),
        "this test needs rabbitmqctl beside the RabbitMQ at AMQP_URL"
    );
    let namespace = format!("{}:", support::redis::prefix());
    let events = Events::default();
    let watched = events.clone();
    let listed = microagent::run(async move {
        let config = BrokerConfig::amqp(&url).unwrap().namespace(&namespace);
        let broker = Broker::connect(config).await.unwrap();
        let consumers: Vec<_> = (0..3)
            .map(|_| {
                microagent::start(RustConsumer {
                    events: watched.clone(),
                })
            })
            .collect();
        for id in 0..30 {
            let message = FromPython {
                id,
                source: "shared".into(),
            };
            broker.send(message).await.unwrap();
        }
        for id in 0..30 {
            watched
                .seen(&format!("rust handled {id} from shared"))
                .await;
        }
        let namespace_ = namespace.clone();
        let listed = actix_rt::task::spawn_blocking(move || amqp_connections(&namespace_))
            .await
            .unwrap()
            .expect("rabbitmqctl ran before");
        for (_, handle) in consumers {
            handle.stop();
            handle.await.unwrap();
        }
        listed
    });
    assert_eq!(
        listed, 2,
        "the publisher's connection and the consumers' one"
    );
    assert_eq!(events.all().len(), 30, "each message handled once");
}

/// On a Sentinel-served Redis, a failover under a running consumer: the
/// Sentinel promotes the replica and demotes the master (killing its
/// clients; it refuses writes from then on); the broker's connections are
/// made again to the new master, found through the Sentinel, and
/// consuming resumes.
#[test]
fn a_sentinel_failover_under_a_running_consumer_loses_nothing() {
    let group = SentinelGroup::start();
    assert_eq!(group.master_port(), group.master.port().to_string());
    let (sentinel, replica, master) = (
        group.sentinel.port(),
        group.replica.port(),
        group.master.port(),
    );
    failover_under_a_running_consumer(group.url(), "sentinel", move || {
        SentinelGroup::fail_over(sentinel, replica, master)
    });
    assert_eq!(group.master_port(), group.replica.port().to_string());
    assert_eq!(redis_cli(replica, &["LLEN", "py_to_rs"]), "0");
}

/// On a Redis Cluster, a failover of the queue's master under a running
/// consumer (`CLUSTER FAILOVER`: the replica takes the slots over, the old
/// master stays up as a replica). The cluster connections follow the
/// slots (`MOVED`), and the consumer's blocking take is made again on the
/// new master.
#[test]
fn a_cluster_failover_under_a_running_consumer_loses_nothing() {
    let cluster = std::sync::Arc::new(RedisCluster::start());
    let slot = cluster.slot_of("py_to_rs");
    let (old_master, _) = cluster.master_and_replica_of(slot);
    let failing = cluster.clone();
    failover_under_a_running_consumer(cluster.url(), "cluster", move || {
        failing.fail_over(slot);
    });
    let (new_master, _) = cluster.master_and_replica_of(slot);
    assert_ne!(new_master, old_master, "the queue's slot moved");
    assert_eq!(redis_cli(new_master, &["LLEN", "py_to_rs"]), "0");
}

/// Twenty messages handled by a running consumer at `url`, then
/// `fail_over` (blocking, while the consumer waits on its blocking take),
/// then twenty more, each send retried until confirmed: every message is
/// handled at least once, and none is left in the queue.
fn failover_under_a_running_consumer(
    url: String,
    source: &'static str,
    fail_over: impl FnOnce() + Send + 'static,
) {
    let events = Events::default();
    let watched = events.clone();
    let left = microagent::run(async move {
        let broker = Broker::connect(BrokerConfig::from_url(&url).unwrap())
            .await
            .expect("the broker connects");
        let (addr, handle) = microagent::start(RustConsumer {
            events: watched.clone(),
        });
        addr.send(GetInfo).await.unwrap();
        let send = |id: u32| {
            let broker = broker.clone();
            async move {
                let start = Instant::now();
                while broker
                    .send(FromPython {
                        id,
                        source: source.into(),
                    })
                    .await
                    .is_err()
                {
                    assert!(start.elapsed() < HANG, "sending never recovered");
                    actix_rt::time::sleep(Duration::from_millis(50)).await;
                }
            }
        };
        for id in 0..20 {
            send(id).await;
        }
        watched
            .seen(&format!("rust handled 19 from {source}"))
            .await;
        actix_rt::task::spawn_blocking(fail_over).await.unwrap();
        for id in 20..40 {
            send(id).await;
        }
        for id in 20..40 {
            watched
                .seen(&format!("rust handled {id} from {source}"))
                .await;
        }
        let left = broker.length("py_to_rs").await.unwrap();
        handle.stop();
        handle.await.unwrap();
        left
    });
    let handled: BTreeSet<String> = events.all().into_iter().collect();
    for id in 0..40 {
        assert!(
            handled.contains(&format!("rust handled {id} from {source}")),
            "message {id} was lost"
        );
    }
    assert_eq!(left, 0, "nothing left in the queue");
}
