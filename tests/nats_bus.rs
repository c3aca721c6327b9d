//! What only the NATS bus has: calls answered by several buses (the
//! roster), input from other peers (missing headers, bad payloads), a
//! server that goes away, and credentials in URLs.
//!
//! The tests need `NATS_URL` (compiled as ignored without it); the ones
//! that stop the server or need credentials run a `nats-server` of their
//! own.

mod support;

use std::sync::mpsc;
use std::time::{Duration, Instant};

use microagent::bus::{Bus, BusConfig, BusError, Signal};
use microagent::prelude::*;
use serde::{Deserialize, Serialize};
use support::health::Health;
use support::nats::{publish_raw, NatsServer};
use support::process::HANG;
use support::redis::{self as services, Switch};
use support::Events;

#[derive(Signal, Serialize, Deserialize, Debug)]
struct UserCreated {
    user_id: u64,
}

#[derive(Signal, Serialize, Deserialize)]
#[signal(name = "stock")]
struct Stock {
    item: String,
}

#[derive(Signal, Serialize, Deserialize)]
#[signal(name = "elsewhere")]
struct Elsewhere {}

/// Records what it receives; answers `stock`.
#[derive(Default, MicroAgent)]
struct Here {
    events: Events,
}

#[microagent::hooks]
impl Here {
    #[receiver(UserCreated)]
    fn created(&mut self, signal: UserCreated, sender: String) {
        self.events
            .push(format!("user_created {} from {sender}", signal.user_id));
    }

    #[receiver(Stock)]
    fn stock(&mut self, signal: Stock) -> String {
        format!("here has {}", signal.item)
    }
}

/// Lives on another bus: answers `stock` and `elsewhere`.
#[derive(Default, MicroAgent)]
struct There;

#[microagent::hooks]
impl There {
    #[receiver(Stock)]
    fn stock(&mut self, signal: Stock) -> String {
        format!("there has {}", signal.item)
    }

    #[receiver(Elsewhere)]
    fn elsewhere(&mut self, _signal: Elsewhere) -> u32 {
        7
    }
}

/// A hang detector, not a performance threshold.
const LONG: Duration = Duration::from_secs(60);

fn config(url: &str, prefix: &str) -> BusConfig {
    BusConfig::nats(url).unwrap().prefix(prefix).unwrap()
}

async fn started<A: Agent>(addr: &Addr<A>) {
    addr.send(GetInfo).await.expect("the agent started");
}

/// Runs `There` on a bus of its own (its own System, on a thread) until
/// told to stop its agent; then keeps the bus until told to end.
fn there(url: String, prefix: String) -> (mpsc::Receiver<()>, mpsc::Sender<()>) {
    let (up_tx, up) = mpsc::channel();
    let (stop, stop_rx) = mpsc::channel::<()>();
    std::thread::spawn(move || {
        microagent::run(async move {
            Bus::connect(config(&url, &prefix)).await.unwrap();
            let (addr, handle) = microagent::start(There);
            started(&addr).await;
            up_tx.send(()).unwrap();
            while stop_rx.try_recv().is_err() {
                actix_rt::time::sleep(Duration::from_millis(10)).await;
            }
            handle.stop();
            handle.await.unwrap();
            up_tx.send(()).unwrap();
            while stop_rx.try_recv().is_err() {
                actix_rt::time::sleep(Duration::from_millis(10)).await;
            }
        })
    });
    (up, stop)
}

#[test]
#[cfg_attr(not(service_nats), ignore = "needs NATS_URL")]
fn a_call_waits_for_every_bus_that_takes_the_signal_and_no_longer_for_one_that_stopped() {
    let url = services::nats_url();
    let prefix = services::prefix();
    let (there_up, there_stop) = there(url.clone(), prefix.clone());
    there_up.recv_timeout(HANG).expect("There started");
    let (both, gone) = microagent::run(async move {
        let bus = Bus::connect(config(&url, &prefix)).await.unwrap();
        let (addr, handle) = microagent::start(Here::default());
        started(&addr).await;
        let ask = || Stock {
            item: "figs".into(),
        };
        // Two buses answer one call: it ends once both have.
        let both = bus.call("test", ask(), LONG).await.unwrap();
        // Only the other bus takes `elsewhere`.
        let elsewhere = bus.call("test", Elsewhere {}, LONG).await.unwrap();
        assert_eq!(
            elsewhere.get("There.elsewhere"),
            Some(&serde_json::json!(7))
        );
        // Its agent stops: its bus says it takes nothing any more, and a
        // call no longer counts it.
        there_stop.send(()).unwrap();
        let start = Instant::now();
        let gone = loop {
            match bus
                .call("test", Elsewhere {}, Duration::from_millis(200))
                .await
            {
                Err(e @ BusError::NoAnswer { asked: 0, .. }) => break e,
                other => {
                    assert!(start.elapsed() < HANG, "still counted: {other:?}");
                    actix_rt::time::sleep(Duration::from_millis(20)).await;
                }
            }
        };
        let alone = bus.call("test", ask(), LONG).await.unwrap();
        assert_eq!(alone.len(), 1);
        there_stop.send(()).unwrap();
        handle.stop();
        handle.await.unwrap();
        (both, gone)
    });
    assert_eq!(both.len(), 2);
    assert_eq!(
        both.get("Here.stock"),
        Some(&serde_json::json!("here has figs"))
    );
    assert_eq!(
        both.get("There.stock"),
        Some(&serde_json::json!("there has figs"))
    );
    assert!(matches!(gone, BusError::NoAnswer { .. }), "{gone:?}");
}

#[test]
#[cfg_attr(not(service_nats), ignore = "needs NATS_URL")]
fn malformed_input_is_counted_and_dropped_and_the_bus_goes_on() {
    let url = services::nats_url();
    let prefix = services::prefix();
    let events = Events::default();
    let watched = events.clone();
    let bad = microagent::run(async move {
        let bus = Bus::connect(config(&url, &prefix).max_payload(1024))
            .await
            .unwrap();
        let (addr, handle) = microagent::start(Here {
            events: watched.clone(),
        });
        started(&addr).await;
        let subject = format!("{prefix}.user_created.peer");
        let sender = [("Microagent-Sender", "peer")];
        let url2 = url.clone();
        let subject2 = subject.clone();
        let roster = format!("{prefix}.$roster");
        std::thread::spawn(move || {
            // No sender header.
            publish_raw(&url2, &subject2, &[], b"{\"user_id\": 1}");
            // Not JSON.
            publish_raw(&url2, &subject2, &sender, b"{\"user_id\": ");
            // Not an object.
            publish_raw(&url2, &subject2, &sender, b"[1]");
            // Too large for the bus's bound.
            let large = format!("{{\"user_id\": 1, \"pad\": \"{}\"}}", "x".repeat(2000));
            publish_raw(&url2, &subject2, &sender, large.as_bytes());
            // A call with no reply subject.
            let call = [
                ("Microagent-Sender", "peer"),
                ("Microagent-Request-Id", "r1"),
            ];
            publish_raw(&url2, &subject2, &call, b"{\"user_id\": 1}");
            // Not an announcement.
            publish_raw(&url2, &roster, &[], b"hello");
            // Then a good one.
            publish_raw(&url2, &subject2, &sender, b"{\"user_id\": 2}");
        })
        .join()
        .unwrap();
        watched.seen("user_created 2 from peer").await;
        let bad = bus.info().bad_input;
        handle.stop();
        handle.await.unwrap();
        bad
    });
    assert_eq!(bad, 6);
    assert_eq!(events.all(), ["user_created 2 from peer"]);
}

#[test]
#[cfg_attr(not(service_nats), ignore = "needs NATS_URL")]
fn a_nats_restart_turns_readiness_503_then_200_and_signals_flow_again() {
    services::nats_url();
    let server = NatsServer::start();
    let url = server.url();
    let switch = Switch::new(server);
    let events = Events::default();
    let watched = events.clone();
    let down_error = microagent::run(async move {
        let config = config(&url, "PUBSUB").reconnect_max(Duration::from_millis(200));
        let bus = Bus::connect(config).await.unwrap();
        let (addr, handle) = microagent::start(Here {
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
        // Subscribed again before it called itself connected: this arrives.
        bus.send("test", UserCreated { user_id: 3 }).await.unwrap();
        watched.seen("user_created 3 from test").await;
        let answers = bus
            .call(
                "test",
                Stock {
                    item: "figs".into(),
                },
                LONG,
            )
            .await
            .unwrap();
        assert_eq!(
            answers.get("Here.stock"),
            Some(&serde_json::json!("here has figs"))
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

/// Connects with `url`: whether it came up, and what anything showed.
fn connect(url: &str) -> (bool, String) {
    let config = BusConfig::nats(url)
        .unwrap()
        .subscribe_timeout(Duration::from_secs(2));
    let shown = format!("{config:?}");
    let outcome = microagent::run(async move { Bus::connect(config).await.map(|bus| bus.info()) });
    match outcome {
        Ok(info) => (true, format!("{shown} {info:?}")),
        Err(error) => (false, format!("{shown} {error} {error:?}")),
    }
}

#[test]
#[cfg_attr(not(service_nats), ignore = "needs NATS_URL")]
fn credentials_are_used_and_never_shown() {
    services::nats_url();
    let users = NatsServer::start_with(&["--user", "alice", "--pass", "pw-s3cret"]);
    let port = users.url().rsplit(':').next().unwrap().to_owned();
    let (up, shown) = connect(&format!("nats://alice:pw-s3cret@127.0.0.1:{port}"));
    assert!(up, "{shown}");
    assert!(
        !shown.contains("pw-s3cret") && shown.contains("alice:***@"),
        "{shown}"
    );
    let (up, shown) = connect(&format!("nats://alice:wrong-s3cret@127.0.0.1:{port}"));
    assert!(!up, "a wrong password connects: {shown}");
    assert!(!shown.contains("wrong-s3cret"), "{shown}");

    let tokens = NatsServer::start_with(&["--auth", "tok3n-s3cret"]);
    let port = tokens.url().rsplit(':').next().unwrap().to_owned();
    let (up, shown) = connect(&format!("nats://tok3n-s3cret@127.0.0.1:{port}"));
    assert!(up, "{shown}");
    assert!(
        !shown.contains("tok3n-s3cret") && shown.contains("//***@"),
        "{shown}"
    );

    // A `.creds` file's content (a JWT and an NKey seed) is never shown,
    // even when the client cannot use it.
    let dir = support::TempDir::new("nats-creds");
    let seed = "SUAIBDPBAUTWCWBKIO6XHQNINK5FWJW4OHLXC3HQ2KFE4PEJUA44CNHTC4";
    let creds = dir.file(
        "user.creds",
        &format!(
            "-----BEGIN NATS USER JWT-----\nnot.a.jwt\n------END NATS USER JWT------\n\n\
             -----BEGIN USER NKEY SEED-----\n{seed}\n------END USER NKEY SEED------\n"
        ),
    );
    let (up, shown) = connect(&format!("{}?creds={}", tokens.url(), creds.display()));
    assert!(!up, "a bogus creds file connects: {shown}");
    assert!(!shown.contains(seed), "{shown}");
}
