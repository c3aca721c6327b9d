//! What only the JetStream queues have: streams and consumers declared
//! with other settings, and a server that goes away under a running
//! consumer. (Killed consumers: tests/redis_broker.rs, with the other
//! networked brokers.)
//!
//! The tests need `NATS_URL` (compiled as ignored without it); the restart
//! test runs a `nats-server` of its own.

mod support;

use std::time::{Duration, Instant};

use microagent::broker::{Broker, BrokerConfig, BrokerError, Queue};
use microagent::prelude::*;
use microagent::{AgentError, Exit, Launcher};
use serde::{Deserialize, Serialize};
use support::health::Health;
use support::nats::NatsServer;
use support::process::HANG;
use support::redis::{self as services, Switch};
use support::Events;

#[derive(Queue, Serialize, Deserialize, Clone, Debug)]
#[queue(name = "jobs")]
struct Job {
    id: u32,
}

/// Three attempts per message; records what it handled.
#[derive(Default, MicroAgent)]
struct Three {
    events: Events,
}

#[microagent::hooks]
impl Three {
    #[on(pre_start)]
    fn begin(&mut self) {
        self.events.push("pre_start");
    }

    #[on(pre_stop)]
    fn end(&mut self) {
        self.events.push("pre_stop");
    }

    #[consumer(Job, attempts = 3, prefetch = 4)]
    fn handle(&mut self, job: Job) {
        self.events.push(format!("job {}", job.id));
    }
}

/// The same queue with five attempts: another consumer configuration.
#[derive(Default, MicroAgent)]
struct Five {
    events: Events,
}

#[microagent::hooks]
impl Five {
    #[on(pre_start)]
    fn begin(&mut self) {
        self.events.push("pre_start");
    }

    #[on(pre_stop)]
    fn end(&mut self) {
        self.events.push("pre_stop");
    }

    #[consumer(Job, attempts = 5)]
    fn handle(&mut self, _job: Job) {}
}

fn config(url: &str, namespace: &str) -> BrokerConfig {
    BrokerConfig::nats(url).unwrap().namespace(namespace)
}

async fn started<A: Agent>(addr: &Addr<A>) {
    addr.send(GetInfo).await.expect("the agent started");
}

#[test]
#[cfg_attr(not(service_nats), ignore = "needs NATS_URL")]
fn a_consumer_with_other_settings_is_a_clear_error_and_fails_its_agent_s_start() {
    let url = services::nats_url();
    let namespace = format!("{}:", services::prefix());
    // The queue's consumer is declared with three attempts...
    microagent::run({
        let config = config(&url, &namespace);
        async move {
            Broker::connect(config).await.unwrap();
            let (addr, handle) = microagent::start(Three::default());
            started(&addr).await;
            handle.stop();
            handle.await.unwrap();
        }
    });
    // ...then asked for with five: the agent does not start.
    let events = Events::default();
    let exit = Launcher::new()
        .broker(config(&url, &namespace))
        .agent(Five {
            events: events.clone(),
        })
        .run();
    assert_eq!(exit, Exit::BrokerFailed);
    assert_eq!(events.all(), ["pre_start", "pre_stop"]);
    let outcome = microagent::run({
        let config = config(&url, &namespace);
        async move {
            Broker::connect(config).await.unwrap();
            let (_addr, handle) = microagent::start(Five::default());
            handle.await
        }
    });
    let error = match outcome {
        Err(AgentError::Consume { error, .. }) => error,
        other => panic!("{other:?}"),
    };
    assert!(
        matches!(&*error, BrokerError::QueueMismatch { queue, .. } if queue.contains("JetStream consumer")),
        "{error:?}"
    );
    let shown = error.to_string();
    assert!(shown.contains("max deliveries 6"), "{shown}");
}

#[test]
#[cfg_attr(not(service_nats), ignore = "needs NATS_URL")]
fn a_stream_with_other_settings_is_a_clear_error() {
    let url = services::nats_url();
    let prefix = services::prefix();
    let namespace = format!("{prefix}:");
    // The stream the queue would have, made by someone else with limits
    // retention (our names escape `:` as `~3A`).
    let stream = format!("{prefix}~3Ajobs");
    let error = microagent::run({
        let (url, config) = (url.clone(), config(&url, &namespace));
        async move {
            let client = async_nats::connect(url.as_str()).await.unwrap();
            let js = async_nats::jetstream::new(client);
            js.create_stream(async_nats::jetstream::stream::Config {
                name: stream.clone(),
                subjects: vec![format!("mq.{stream}")],
                ..Default::default()
            })
            .await
            .unwrap();
            let broker = Broker::connect(config).await.unwrap();
            let error = broker.send(Job { id: 1 }).await.unwrap_err();
            js.delete_stream(&stream).await.unwrap();
            error
        }
    });
    match &error {
        BrokerError::QueueMismatch { queue, .. } => {
            assert!(queue.contains("JetStream stream"), "{queue}")
        }
        other => panic!("{other:?}"),
    }
    assert!(
        error.to_string().contains("work-queue retention"),
        "{error}"
    );
}

#[test]
#[cfg_attr(not(service_nats), ignore = "needs NATS_URL")]
fn a_nats_restart_under_a_consumer_turns_readiness_503_then_200_and_loses_nothing_sent() {
    services::nats_url();
    let server = NatsServer::start();
    let url = server.url();
    let switch = Switch::new(server);
    let events = Events::default();
    let watched = events.clone();
    let down = microagent::run(async move {
        let config = config(&url, "restart:").connect_timeout(Duration::from_secs(2));
        let broker = Broker::connect(config).await.unwrap();
        let (addr, handle) = microagent::start(Three {
            events: watched.clone(),
        });
        started(&addr).await;
        let health = Health::start();
        health.ready_becomes(200).await;
        for id in 0..20 {
            broker.send(Job { id }).await.unwrap();
        }
        watched.seen("job 19").await;

        switch.set(false).await;
        health.ready_becomes(503).await;
        let down = broker.send(Job { id: 1000 }).await.unwrap_err();

        switch.set(true).await;
        health.ready_becomes(200).await;
        for id in 20..40 {
            broker.send(Job { id }).await.unwrap();
        }
        let start = Instant::now();
        while (0..40).any(|id| watched.count(&format!("job {id}")) == 0) {
            assert!(start.elapsed() < HANG, "lost: {:?}", watched.all());
            actix_rt::time::sleep(Duration::from_millis(20)).await;
        }
        // One outage: one lost connection; the refused send an error.
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
        matches!(down, BrokerError::Backend { kind: "nats", .. }),
        "{down:?}"
    );
    // Every message the server acknowledged was handled; the one refused
    // while it was down was not sent.
    for id in 0..40 {
        assert!(events.count(&format!("job {id}")) >= 1, "job {id} lost");
    }
    assert_eq!(events.count("job 1000"), 0);
}
