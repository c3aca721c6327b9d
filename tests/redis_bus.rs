//! What only the Redis bus has: input from other processes (malformed
//! channels and payloads), a connection that drops, a Redis that does not
//! answer, passwords in URLs, and Python agents on the same Redis.
//!
//! The tests need `REDIS_URL` (compiled as ignored without it);
//! the ones that stop Redis run a `redis-server` of their own. The Python
//! interop test also needs `INTEROP_PYTHON`: a Python with
//! `microagent[redis]==1.9.0` (`.ci/run` makes one).

mod support;

use std::process::Command;
use std::time::Duration;

use microagent::bus::{Bus, BusConfig, BusError, Signal};
use microagent::prelude::*;
use microagent::{AgentError, Exit, Launcher};
use serde::{Deserialize, Serialize};
use support::health::Health;
use support::process::Proc;
use support::redis::{self as redis_support, RedisServer, Switch};
use support::Events;

#[derive(Signal, Serialize, Deserialize, Debug)]
struct UserCreated {
    user_id: u64,
}

#[derive(Signal, Serialize, Deserialize)]
#[signal(name = "rs_stock")]
struct RsStock {
    item: String,
}

#[derive(Signal, Serialize, Deserialize)]
#[signal(name = "py_stock")]
struct PyStock {
    item: String,
}

#[derive(Signal, Serialize, Deserialize)]
#[signal(name = "py_hello")]
struct PyHello {
    text: String,
}

#[derive(Signal, Serialize, Deserialize)]
#[signal(name = "go")]
struct Go {
    rounds: u32,
}

#[derive(Signal, Serialize, Deserialize)]
#[signal(name = "slow")]
struct Slow {}

/// Records what it receives; answers `rs_stock` and (slowly) `slow`.
#[derive(Default, MicroAgent)]
#[microagent(name = "RustAgent")]
struct RustAgent {
    events: Events,
}

#[microagent::hooks]
impl RustAgent {
    #[on(pre_start)]
    fn hello(&mut self) {
        self.events.push("pre_start");
    }

    #[on(pre_stop)]
    fn bye(&mut self) {
        self.events.push("pre_stop");
    }

    #[receiver(UserCreated)]
    fn created(&mut self, signal: UserCreated, sender: String) {
        self.events
            .push(format!("user_created {} from {sender}", signal.user_id));
    }

    #[receiver(PyHello)]
    fn hello_from(&mut self, signal: PyHello, sender: String) {
        self.events
            .push(format!("py_hello {:?} from {sender}", signal.text));
    }

    #[receiver(RsStock)]
    fn stock(&mut self, signal: RsStock) -> String {
        format!("rust has {}", signal.item)
    }

    #[receiver(Slow, timeout = 5.0)]
    async fn slow(&mut self, _signal: Slow) -> u32 {
        actix_rt::time::sleep(Duration::from_millis(600)).await;
        1
    }
}

/// A hang detector, not a performance threshold.
const LONG: Duration = Duration::from_secs(60);

fn config(url: &str, prefix: &str) -> BusConfig {
    BusConfig::redis(url).unwrap().prefix(prefix).unwrap()
}

async fn started<A: Agent>(addr: &Addr<A>) {
    addr.send(GetInfo).await.expect("the agent started");
}

/// Publishes raw bytes on a raw channel, as another process could.
fn publish_raw(url: &str, channel: &[u8], payload: &[u8]) {
    let client = redis::Client::open(url).unwrap();
    let mut connection = client.get_connection().unwrap();
    let _: i64 = redis::cmd("PUBLISH")
        .arg(channel)
        .arg(payload)
        .query(&mut connection)
        .unwrap();
}

#[test]
#[cfg_attr(not(service_redis), ignore = "needs REDIS_URL")]
fn malformed_input_is_counted_and_dropped_and_the_bus_goes_on() {
    let url = redis_support::url();
    let prefix = redis_support::prefix();
    let events = Events::default();
    let watched = events.clone();
    let (bus_bad, receiver_bad) = microagent::run(async move {
        let bus = Bus::connect(config(&url, &prefix).max_payload(1024))
            .await
            .unwrap();
        let (addr, handle) = microagent::start(RustAgent {
            events: watched.clone(),
        });
        started(&addr).await;
        let channel = format!("{prefix}:user_created:python");
        let bad: Vec<(Vec<u8>, Vec<u8>)> = vec![
            // extra `:` in the channel
            (
                format!("{channel}:extra").into_bytes(),
                b"{\"user_id\": 1}".to_vec(),
            ),
            // two `#`
            (
                format!("{channel}#a#b").into_bytes(),
                b"{\"user_id\": 1}".to_vec(),
            ),
            // an empty request id
            (
                format!("{channel}#").into_bytes(),
                b"{\"user_id\": 1}".to_vec(),
            ),
            // a channel that is not UTF-8
            (
                [format!("{prefix}:user_created:").as_bytes(), b"\xff\xfe"].concat(),
                b"{}".to_vec(),
            ),
            // a payload that is not UTF-8
            (
                channel.clone().into_bytes(),
                b"{\"user_id\": \xff}".to_vec(),
            ),
            // not JSON
            (channel.clone().into_bytes(), b"user_id=1".to_vec()),
            // Python's NaN
            (channel.clone().into_bytes(), b"{\"user_id\": NaN}".to_vec()),
            // a JSON array
            (channel.clone().into_bytes(), b"[1, 2]".to_vec()),
            // over the 1 KiB limit set above
            (
                channel.clone().into_bytes(),
                format!("{{\"pad\": \"{}\"}}", "x".repeat(2000)).into_bytes(),
            ),
            // an answer without a request id
            (
                format!("{prefix}:response:someone").into_bytes(),
                b"{}".to_vec(),
            ),
        ];
        let count = bad.len() as u64;
        let publisher = url.clone();
        actix_rt::task::spawn_blocking(move || {
            for (channel, payload) in bad {
                publish_raw(&publisher, &channel, &payload);
            }
            // Well-formed for the wire, wrong for the typed signal: the
            // receiver counts it.
            let channel = format!("{prefix}:user_created:python");
            publish_raw(&publisher, channel.as_bytes(), b"{\"user_id\": \"one\"}");
            // And a good one, in Python's own spelling.
            publish_raw(&publisher, channel.as_bytes(), b"{\"user_id\": 7}");
        })
        .await
        .unwrap();
        watched.seen("user_created 7 from python").await;
        let info = addr.send(GetInfo).await.unwrap();
        handle.stop();
        handle.await.unwrap();
        assert_eq!(bus.info().bad_input, count);
        (bus.info().bad_input, info.receivers[0].runs.bad_input)
    });
    assert_eq!(receiver_bad, 1);
    assert!(bus_bad >= 10);
    // Only the good signal ran the receiver.
    assert_eq!(
        events.all(),
        ["pre_start", "user_created 7 from python", "pre_stop"]
    );
}

#[derive(Signal, Serialize, Deserialize)]
#[signal(name = "hold")]
struct Hold {}

#[derive(Signal, Serialize, Deserialize)]
#[signal(name = "bulk")]
struct Bulk {
    n: u32,
    pad: String,
}

/// Holds itself in an async receiver until the gate opens; counts bulk.
#[derive(Default, MicroAgent)]
struct Busy {
    events: Events,
    gate: std::sync::Arc<tokio::sync::Notify>,
}

#[microagent::hooks]
impl Busy {
    #[receiver(Hold)]
    async fn hold(&mut self, _signal: Hold) {
        self.events.push("held");
        self.gate.notified().await;
    }

    #[receiver(Bulk)]
    fn bulk(&mut self, signal: Bulk) {
        self.events.push(format!("bulk {}", signal.n));
    }

    #[receiver(UserCreated)]
    fn witness(&mut self, _signal: UserCreated) {}
}

/// What an agent buffers from Redis is bounded: behind a busy receiver,
/// past the bound (here 5 signals; 64 KiB), the newest signals are dropped
/// and counted; those admitted are handled in order. (Every delivery went
/// to the unbounded mailbox: 200 1 MB payloads took 200 MiB.)
#[test]
#[cfg_attr(not(service_redis), ignore = "needs REDIS_URL")]
fn what_an_agent_buffers_from_redis_is_bounded_and_the_rest_dropped_and_counted() {
    let url = redis_support::url();
    let prefix = redis_support::prefix();
    for (messages, bytes, admitted) in [(5, 1 << 20, 5), (1000, 64 << 10, 6)] {
        let events = Events::default();
        let watched = events.clone();
        let (url, prefix) = (url.clone(), prefix.clone());
        let runs = microagent::run(async move {
            let bus = Bus::connect(config(&url, &prefix).buffer(messages, bytes))
                .await
                .unwrap();
            let gate = std::sync::Arc::new(tokio::sync::Notify::new());
            let (addr, handle) = microagent::start(Busy {
                events: watched.clone(),
                gate: gate.clone(),
            });
            let (_witness, witnessing) = microagent::start(RustAgent {
                events: watched.clone(),
            });
            started(&addr).await;
            bus.send("test", Hold {}).await.unwrap();
            watched.seen("held").await;
            // Each about 10 KiB.
            for n in 0..50 {
                let pad = "x".repeat(10 << 10);
                bus.send("test", Bulk { n, pad }).await.unwrap();
            }
            // Dispatched in order: the bulk went before this one.
            bus.send("witness", UserCreated { user_id: 1 })
                .await
                .unwrap();
            watched.seen("user_created 1 from witness").await;
            gate.notify_one();
            let runs = addr.send(GetInfo).await.unwrap().receivers[1].runs.clone();
            handle.stop();
            witnessing.stop();
            handle.await.unwrap();
            witnessing.await.unwrap();
            runs
        });
        let bulk: Vec<String> = events
            .all()
            .into_iter()
            .filter(|e| e.starts_with("bulk"))
            .collect();
        let expected: Vec<String> = (0..admitted).map(|n| format!("bulk {n}")).collect();
        assert_eq!(bulk, expected, "bound ({messages}, {bytes})");
        assert_eq!(runs.dropped, 50 - admitted as u64);
    }
}

/// A Redis that stops answering (frozen with SIGSTOP: its connections stay
/// open) holds neither a call past its timeout nor readiness at 200: a call
/// ends with `NoAnswer` at its own timeout, not at the connection's
/// response timeout (500 ms, with a `Redis` error); readiness answers 503
/// once a PING goes unanswered, and 200 again once Redis answers.
#[test]
#[cfg_attr(not(service_redis), ignore = "needs REDIS_URL")]
fn a_frozen_redis_ends_calls_at_their_timeout_and_turns_readiness_503() {
    redis_support::url();
    let server = std::sync::Arc::new(RedisServer::start());
    let url = server.url();
    let frozen = server.clone();
    let (error, answers) = microagent::run(async move {
        let bus = Bus::connect(config(&url, "PUBSUB").reconnect_max(Duration::from_millis(200)))
            .await
            .unwrap();
        let (addr, handle) = microagent::start(RustAgent::default());
        started(&addr).await;
        let health = Health::start();
        health.ready_becomes(200).await;
        frozen.signal(libc::SIGSTOP);
        let figs = || RsStock {
            item: "figs".into(),
        };
        let error = bus
            .call("test", figs(), Duration::from_millis(100))
            .await
            .unwrap_err();
        health.ready_becomes(503).await;
        frozen.signal(libc::SIGCONT);
        health.ready_becomes(200).await;
        let answers = bus.call("test", figs(), LONG).await.unwrap();
        handle.stop();
        handle.await.unwrap();
        health.stop().await;
        (error, answers)
    });
    assert_eq!(
        error,
        BusError::NoAnswer {
            signal: "rs_stock".into(),
            timeout: Duration::from_millis(100),
            asked: 0,
        }
    );
    assert_eq!(
        answers.get("RustAgent.stock"),
        Some(&serde_json::json!("rust has figs"))
    );
}

/// A prefix with glob characters subscribes to itself only: `AC?` once
/// matched `ACX` too, so another prefix's signals reached the receivers.
#[test]
#[cfg_attr(not(service_redis), ignore = "needs REDIS_URL")]
fn glob_characters_in_the_prefix_do_not_widen_the_subscription() {
    let url = redis_support::url();
    let base = redis_support::prefix();
    let events = Events::default();
    let watched = events.clone();
    let bad = microagent::run(async move {
        let prefix = format!("{base}?*");
        let bus = Bus::connect(config(&url, &prefix)).await.unwrap();
        let (addr, handle) = microagent::start(RustAgent {
            events: watched.clone(),
        });
        started(&addr).await;
        let publisher = url.clone();
        actix_rt::task::spawn_blocking(move || {
            // Other prefixes the unescaped pattern matched.
            for other in [format!("{base}X"), format!("{base}?anything")] {
                let channel = format!("{other}:user_created:intruder");
                publish_raw(&publisher, channel.as_bytes(), b"{\"user_id\": 666}");
            }
            let channel = format!("{prefix}:user_created:python");
            publish_raw(&publisher, channel.as_bytes(), b"{\"user_id\": 7}");
        })
        .await
        .unwrap();
        watched.seen("user_created 7 from python").await;
        handle.stop();
        handle.await.unwrap();
        bus.info().bad_input
    });
    assert_eq!(bad, 0, "nothing of other prefixes arrived");
    assert_eq!(
        events.all(),
        ["pre_start", "user_created 7 from python", "pre_stop"]
    );
}

#[test]
#[cfg_attr(not(service_redis), ignore = "needs REDIS_URL")]
fn a_redis_restart_turns_readiness_503_then_200_and_signals_flow_again() {
    redis_support::url();
    let server = RedisServer::start();
    let url = server.url();
    let switch = Switch::new(server);
    let events = Events::default();
    let watched = events.clone();
    let down_error = microagent::run(async move {
        let bus = Bus::connect(config(&url, "PUBSUB").reconnect_max(Duration::from_millis(200)))
            .await
            .unwrap();
        let (addr, handle) = microagent::start(RustAgent {
            events: watched.clone(),
        });
        started(&addr).await;
        let health = Health::start();
        health.ready_becomes(200).await;
        bus.send("test", UserCreated { user_id: 1 }).await.unwrap();
        watched.seen("user_created 1 from test").await;

        switch.set(false).await;
        health.ready_becomes(503).await;
        assert!(!bus.is_connected());
        let down = bus
            .send("test", UserCreated { user_id: 2 })
            .await
            .unwrap_err();

        switch.set(true).await;
        health.ready_becomes(200).await;
        // The lost connection is counted (the metrics read this count).
        assert_eq!(bus.info().disconnects, 1);
        // Resubscribed before it called itself connected: this arrives.
        bus.send("test", UserCreated { user_id: 3 }).await.unwrap();
        watched.seen("user_created 3 from test").await;
        let answers = bus
            .call(
                "test",
                RsStock {
                    item: "figs".into(),
                },
                LONG,
            )
            .await
            .unwrap();
        assert_eq!(
            answers.get("RustAgent.stock"),
            Some(&serde_json::json!("rust has figs"))
        );
        handle.stop();
        handle.await.unwrap();
        health.stop().await;
        down
    });
    assert!(
        matches!(down_error, BusError::Down { .. }),
        "{down_error:?}"
    );
    assert_eq!(events.count("user_created 2 from test"), 0);
}

#[test]
#[cfg_attr(not(service_redis), ignore = "needs REDIS_URL")]
fn an_rpc_timeout_is_a_typed_error_and_the_caller_goes_on() {
    let url = redis_support::url();
    let prefix = redis_support::prefix();
    let (error, after) = microagent::run(async move {
        let bus = Bus::connect(config(&url, &prefix)).await.unwrap();
        let (addr, handle) = microagent::start(RustAgent::default());
        started(&addr).await;
        // The receiver takes 600 ms; the caller waits 100 ms.
        let timeout = Duration::from_millis(100);
        let error = bus.call("test", Slow {}, timeout).await.unwrap_err();
        // The original cancels its caller `timeout` after the call; here the
        // caller lives on well past that, and the next call is answered.
        actix_rt::time::sleep(timeout * 3).await;
        let after = bus.call("test", Slow {}, LONG).await.unwrap();
        handle.stop();
        handle.await.unwrap();
        (error, after)
    });
    assert_eq!(
        error,
        BusError::NoAnswer {
            signal: "slow".into(),
            timeout: Duration::from_millis(100),
            asked: 1,
        }
    );
    assert_eq!(after.get("RustAgent.slow"), Some(&serde_json::json!(1)));
}

#[test]
fn an_unreachable_redis_fails_the_launch_and_never_shows_the_password() {
    // Nothing listens there: a port just freed.
    let port = support::net::free_port();
    let url = format!("redis://:hunter2@127.0.0.1:{port}/0");
    let config = BusConfig::redis(&url)
        .unwrap()
        .subscribe_timeout(Duration::from_millis(300));
    assert!(!format!("{config:?}").contains("hunter2"));
    let error = microagent::run({
        let config = config.clone();
        async move { Bus::connect(config).await.unwrap_err() }
    });
    assert!(matches!(error, BusError::Down { .. }), "{error:?}");
    assert!(!error.to_string().contains("hunter2"), "{error}");
    assert!(error.to_string().contains(":***@"), "{error}");
    let events = Events::default();
    let exit = Launcher::new()
        .bus(config)
        .agent(RustAgent {
            events: events.clone(),
        })
        .run();
    assert_eq!(exit, Exit::BusFailed);
    assert_eq!(exit.code(), 8);
    assert!(events.all().is_empty(), "no agent started");
}

#[test]
#[cfg_attr(not(service_redis), ignore = "needs REDIS_URL")]
fn receivers_that_cannot_subscribe_fail_the_start_after_pre_start_and_run_pre_stop() {
    redis_support::url();
    let mut server = RedisServer::start();
    let url = server.url();
    let events = Events::default();
    let watched = events.clone();
    let outcome = microagent::run(async move {
        let bus =
            Bus::connect(config(&url, "PUBSUB").subscribe_timeout(Duration::from_millis(300)))
                .await
                .unwrap();
        server.stop();
        while bus.is_connected() {
            actix_rt::time::sleep(Duration::from_millis(10)).await;
        }
        let (_addr, handle) = microagent::start(RustAgent { events: watched });
        handle.await
    });
    match outcome {
        Err(AgentError::Subscribe {
            agent,
            error,
            failures,
        }) => {
            assert_eq!(agent, "RustAgent");
            assert!(
                matches!(*error, BusError::SubscribeTimeout { .. }),
                "{error:?}"
            );
            assert!(failures.is_empty());
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(events.all(), ["pre_start", "pre_stop"]);
}

#[test]
#[cfg_attr(not(service_redis), ignore = "needs REDIS_URL")]
fn info_shows_the_bus_kind_prefix_and_a_redacted_url() {
    let url = redis_support::url();
    let prefix = redis_support::prefix();
    let expected_prefix = prefix.clone();
    let info = microagent::run(async move {
        Bus::connect(config(&url, &prefix)).await.unwrap();
        let (addr, handle) = microagent::start(RustAgent::default());
        let info = addr.send(GetInfo).await.unwrap();
        handle.stop();
        handle.await.unwrap();
        info
    });
    let bus = info.bus.expect("a running agent reports its bus");
    assert_eq!(bus.kind, "redis");
    assert_eq!(bus.prefix, expected_prefix);
    assert!(bus.connected);
    let json = serde_json::to_value(&info.receivers).unwrap();
    assert_eq!(json[0]["signal"], "user_created");
    assert_eq!(json[0]["timeout"], 60.0);
}

/// The Python original (microagent 1.9 from PyPI) and a Rust agent on one
/// Redis: signals both ways, RPC both ways, and both callers at once.
#[test]
#[cfg_attr(
    not(all(service_redis, service_python)),
    ignore = "needs REDIS_URL and INTEROP_PYTHON"
)]
fn python_and_rust_agents_share_one_redis() {
    let url = redis_support::url();
    let python = redis_support::python();
    let prefix = redis_support::prefix();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/interop.py");
    // redis-py gives up on blocking reads after 5 s without a socket timeout.
    let dsn = format!("{url}?socket_timeout=30");
    let mut command = Command::new(python);
    command.args([script, &dsn, &prefix]);
    let mut py = Proc::start(command);
    let rounds = 5;
    let events = Events::default();
    let watched = events.clone();
    let (py_answer, rust_answers, py) = microagent::run(async move {
        let bus = Bus::connect(config(&url, &prefix)).await.unwrap();
        let (addr, handle) = microagent::start(RustAgent {
            events: watched.clone(),
        });
        started(&addr).await;
        let py = actix_rt::task::spawn_blocking(move || {
            py.wait_line(|l| l == "ready");
            py
        })
        .await
        .unwrap();
        // Rust -> Python signal.
        bus.send("rust", UserCreated { user_id: 5 }).await.unwrap();
        // Rust calls a Python responder.
        let py_answer = bus
            .call(
                "rust",
                PyStock {
                    item: "apple".into(),
                },
                LONG,
            )
            .await
            .unwrap();
        // Python sends to Rust, and calls the Rust responder while Rust
        // calls it too.
        bus.send("rust", Go { rounds }).await.unwrap();
        let mut rust_answers = Vec::new();
        for round in 0..rounds {
            let item = format!("plum{round}");
            rust_answers.push(bus.call("rust", RsStock { item }, LONG).await.unwrap());
        }
        watched
            .seen("py_hello \"hello from python\" from python")
            .await;
        let py = actix_rt::task::spawn_blocking(move || {
            let mut py = py;
            py.wait_line(|l| l == "done");
            py
        })
        .await
        .unwrap();
        handle.stop();
        handle.await.unwrap();
        (py_answer, rust_answers, py)
    });
    let mut py = py;
    assert_eq!(py.wait_code(), 0, "{}", py.stderr());
    assert_eq!(py_answer.get("PyAgent.stock"), Some(&serde_json::json!(42)));
    assert_eq!(py_answer.len(), 1);
    for (round, answers) in rust_answers.iter().enumerate() {
        assert_eq!(answers.len(), 1);
        assert_eq!(
            answers.get("RustAgent.stock"),
            Some(&serde_json::json!(format!("rust has plum{round}")))
        );
    }
    assert!(
        py.seen.iter().any(|l| l == "got user_created 5 from rust"),
        "{:?}",
        py.seen
    );
    let py_answers: Vec<&String> = py
        .seen
        .iter()
        .filter(|l| l.starts_with("answer "))
        .collect();
    let expected: Vec<String> = (0..rounds)
        .map(|round| format!("answer {{\"RustAgent.stock\": \"rust has pear{round}\"}}"))
        .collect();
    assert_eq!(py_answers, expected.iter().collect::<Vec<_>>());
}

/// The bus on a Sentinel-served Redis, through a failover: the Sentinel
/// promotes the replica and demotes the master, killing its clients; the
/// bus notices (its connection lost, or a PING unanswered), finds the new
/// master through the Sentinel and subscribes again there. Signals sent
/// after the failover (each send retried while the bus reconnects) reach
/// its receiver and are published on the new master (a subscriber of the
/// test's own there hears them).
#[test]
fn the_bus_follows_a_sentinel_failover() {
    use futures_util::StreamExt;

    let group = redis_support::SentinelGroup::start();
    let prefix = redis_support::prefix();
    let config = BusConfig::from_url(&group.url())
        .unwrap()
        .prefix(&prefix)
        .unwrap();
    let (sentinel, replica, master) = (
        group.sentinel.port(),
        group.replica.port(),
        group.master.port(),
    );
    let events = Events::default();
    let watched = events.clone();
    let heard = microagent::run(async move {
        let bus = Bus::connect(config)
            .await
            .expect("the bus finds the master");
        let (addr, handle) = microagent::start(RustAgent {
            events: watched.clone(),
        });
        addr.send(GetInfo).await.unwrap();
        bus.send("tester", UserCreated { user_id: 1 })
            .await
            .unwrap();
        watched.seen("user_created 1 from tester").await;
        actix_rt::task::spawn_blocking(move || {
            redis_support::SentinelGroup::fail_over(sentinel, replica, master)
        })
        .await
        .unwrap();
        // A subscriber of the test's own on the new master.
        let new_master = redis::Client::open(format!("redis://127.0.0.1:{replica}")).unwrap();
        let mut pubsub = new_master.get_async_pubsub().await.unwrap();
        pubsub
            .psubscribe(format!("{prefix}:user_created:*"))
            .await
            .unwrap();
        let mut heard_there = pubsub.into_on_message();
        // Sent until one reaches the receiver: while the bus reconnects, a
        // send fails (typed) or reaches nobody yet.
        let start = std::time::Instant::now();
        let after_failover = |events: &Events| {
            events
                .all()
                .iter()
                .any(|e| e.starts_with("user_created ") && e != "user_created 1 from tester")
        };
        let mut user_id = 2;
        while !after_failover(&watched) {
            assert!(
                start.elapsed() < support::process::HANG,
                "no signal after the failover"
            );
            let _ = bus.send("tester", UserCreated { user_id }).await;
            user_id += 1;
            actix_rt::time::sleep(Duration::from_millis(100)).await;
        }
        let heard = actix_rt::time::timeout(support::process::HANG, heard_there.next())
            .await
            .ok()
            .flatten()
            .is_some();
        handle.stop();
        handle.await.unwrap();
        heard
    });
    assert!(heard, "the bus published on the new master");
    assert_eq!(group.master_port(), group.replica.port().to_string());
}

/// Two buses on a Redis Cluster, given different seeds (neither first
/// seed the home node), meet on its home node (slot 0's master): every
/// pattern subscription is there, so a call from one counts the other's
/// receiver and gets its answer. When the home node is failed over
/// (`CLUSTER FAILOVER`: the old master stays up as a replica and keeps
/// its connections), both buses notice (`ROLE`) and move to the new home:
/// no subscription is left on the old one, and calls are answered again.
#[test]
fn buses_on_a_cluster_meet_on_its_home_node_and_follow_its_failover() {
    let cluster = std::sync::Arc::new(redis_support::RedisCluster::start());
    let prefix = redis_support::prefix();
    let (home, _) = cluster.master_and_replica_of(0);
    let ports: Vec<u16> = cluster.nodes.iter().map(|n| n.port()).collect();
    let all_ports = ports.clone();
    let not_home: Vec<usize> = (0..ports.len()).filter(|&i| ports[i] != home).collect();
    // `url_from(i)` names nodes i and i + 1: the callers' first seed is
    // not the home, the answerer's first seed is yet another node.
    let url_a = cluster.url_from(not_home[0]);
    let url_b = cluster.url_from(not_home[2]);
    let patterns = |port: u16| -> u64 {
        redis_support::redis_cli(port, &["PUBSUB", "NUMPAT"])
            .parse()
            .unwrap()
    };

    let (ready_tx, ready) = std::sync::mpsc::channel();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let config_b = config(&url_b, &prefix);
    let answerer = std::thread::spawn(move || {
        microagent::run(async move {
            Bus::connect(config_b).await.expect("the bus connects");
            let (addr, handle) = microagent::start(RustAgent::default());
            started(&addr).await;
            ready_tx.send(()).unwrap();
            let _ = stopped.await;
            handle.stop();
            handle.await.unwrap();
        })
    });
    ready.recv().expect("the answering bus started");

    let failing = cluster.clone();
    let config_a = config(&url_a, &prefix);
    let (before, away, after, old_home, new_home) = microagent::run(async move {
        let bus = Bus::connect(config_a).await.expect("the bus connects");
        let item = || RsStock {
            item: "figs".into(),
        };
        let before = bus.call("test", item(), LONG).await.unwrap();
        let away: u64 = (0..ports.len())
            .filter(|&i| ports[i] != home)
            .map(|i| patterns(ports[i]))
            .sum();
        let (old_home, new_home) = actix_rt::task::spawn_blocking(move || failing.fail_over(0))
            .await
            .unwrap();
        // Until both buses are at the new home: calls meanwhile may fail
        // (typed) or count the buses already there.
        let start = std::time::Instant::now();
        let after = loop {
            assert!(
                start.elapsed() < support::process::HANG,
                "the buses never met at the new home"
            );
            let moved = patterns(old_home) == 0 && patterns(new_home) > 0;
            // A short wait: a call made while a bus moves may count a
            // subscription that goes before it answers.
            match bus.call("test", item(), Duration::from_secs(2)).await {
                Ok(answers) if moved && answers.len() == 1 => break answers,
                _ => actix_rt::time::sleep(Duration::from_millis(100)).await,
            }
        };
        let _ = stop.send(());
        (before, away, after, old_home, new_home)
    });
    assert_eq!(
        away, 0,
        "before the failover, every subscription is at home"
    );
    answerer.join().unwrap();
    for answers in [&before, &after] {
        assert_eq!(answers.len(), 1);
        assert_eq!(answers.one::<String>().unwrap(), "rust has figs");
    }
    assert_eq!(patterns(old_home), 0);
    for &port in &all_ports {
        if port != new_home {
            assert_eq!(
                patterns(port),
                0,
                "a subscription away from home, on {port}"
            );
        }
    }
}
