//! The Redis pairs of the bus bench: ours against the bare `redis` crate,
//! on one Redis, in one System (one thread), with channel prefixes of
//! their own so that neither side hears the other.

use std::time::{Duration, Instant};

use futures_util::future::join_all;
use futures_util::StreamExt;
use microagent::bus::AgentBus;
use microagent::prelude::*;

use crate::rpc::{self, our_bus, Answering, GetStock, CALL_TIMEOUT};
use crate::support::{one_done, report, timed};
use crate::{payload, OrderPlaced, Receiving, ROUNDS};

/// Signals per second: every signal published at once, counted as they
/// arrive; returns ours / bare.
pub(crate) fn signals(url: &str, n: usize) -> f64 {
    let (ours, bare) = microagent::run(async move {
        let (bus, bare_prefix) = our_bus(url).await;
        let bus = AgentBus::new(bus, "bench");
        let (agent, _handle) = microagent::start(Receiving::default());
        agent.send(GetInfo).await.expect("the agent started");

        let client = redis::Client::open(url).expect("REDIS_URL");
        let publisher = client.get_multiplexed_async_connection().await.unwrap();
        let (mut sink, mut stream) = client.get_async_pubsub().await.unwrap().split();
        sink.psubscribe(format!("{bare_prefix}:order_placed:*"))
            .await
            .unwrap();
        actix_rt::spawn(async move {
            let _sink = sink;
            let mut total = 0;
            while let Some(message) = stream.next().await {
                let signal: OrderPlaced =
                    serde_json::from_slice(message.get_payload_bytes()).expect("our own JSON");
                total += signal.order_id;
                one_done();
            }
            total
        });
        let channel = format!("{bare_prefix}:order_placed:bench");

        let (mut ours, mut bare) = (Duration::MAX, Duration::MAX);
        for _ in 0..ROUNDS {
            let publish_all = join_all((0..n as u64).map(|i| {
                let (mut connection, channel) = (publisher.clone(), channel.clone());
                async move {
                    let body = serde_json::to_vec(&payload(i)).expect("plain JSON");
                    redis::cmd("PUBLISH")
                        .arg(channel)
                        .arg(body)
                        .query_async::<usize>(&mut connection)
                        .await
                        .expect("published");
                }
            }));
            bare = bare.min(timed(n, publish_all).await);
            let send_all = join_all((0..n as u64).map(|i| {
                let bus = bus.clone();
                async move { bus.send(payload(i)).await.expect("sent") }
            }));
            ours = ours.min(timed(n, send_all).await);
        }
        (ours, bare)
    });
    report(
        ("bus (redis)", ours),
        ("bare redis pub/sub", bare),
        n,
        "signals",
    )
}

/// Sequential RPC round trips; returns ours / bare.
pub(crate) fn rpc(url: &str, n: usize) -> f64 {
    let (ours, bare) = microagent::run(async move {
        let (bus, bare_prefix) = our_bus(url).await;
        let (agent, _handle) = microagent::start(Answering::default());
        agent.send(GetInfo).await.expect("the agent started");

        let client = redis::Client::open(url).expect("REDIS_URL");
        // The bare responder: answers each request on the response channel.
        rpc::bare_responder(&client, &bare_prefix).await;
        // The bare caller: publishes a request, reads answers until its own.
        let mut caller = client.get_multiplexed_async_connection().await.unwrap();
        let (mut sink, mut answers) = client.get_async_pubsub().await.unwrap().split();
        sink.psubscribe(format!("{bare_prefix}:response:*"))
            .await
            .unwrap();
        let request = format!("{bare_prefix}:get_stock:bench");

        let (mut ours, mut bare) = (Duration::MAX, Duration::MAX);
        for _ in 0..ROUNDS {
            let start = Instant::now();
            for _ in 0..n {
                let id = uuid::Uuid::new_v4().simple().to_string();
                let ask = serde_json::to_vec(&GetStock {
                    item: "apple".into(),
                })
                .expect("plain JSON");
                redis::cmd("PUBLISH")
                    .arg(format!("{request}#{id}"))
                    .arg(ask)
                    .query_async::<usize>(&mut caller)
                    .await
                    .expect("asked");
                loop {
                    let message = answers.next().await.expect("the answer stream is open");
                    if message.get_channel_name().ends_with(&id) {
                        let answer: serde_json::Map<String, serde_json::Value> =
                            serde_json::from_slice(message.get_payload_bytes()).expect("JSON");
                        assert!(answer.contains_key("Bare.stock"));
                        break;
                    }
                }
            }
            bare = bare.min(start.elapsed());

            let start = Instant::now();
            for _ in 0..n {
                let ask = GetStock {
                    item: "apple".into(),
                };
                let answers = bus
                    .call("bench", ask, CALL_TIMEOUT)
                    .await
                    .expect("answered");
                assert!(answers.get("Answering.stock").is_some());
            }
            ours = ours.min(start.elapsed());
        }
        drop(sink);
        (ours, bare)
    });
    report(
        ("bus rpc (redis)", ours),
        ("bare redis request/answer", bare),
        n,
        "calls",
    )
}
