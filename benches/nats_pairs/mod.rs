//! The NATS pairs of the bus bench: ours against the bare `async-nats`
//! client, on one NATS server, in one System (one thread), with subject
//! prefixes of their own so that neither side hears the other.
//!
//! The bare side moves the same messages: the JSON object, and the
//! sender's name (and a call's request id, an answer's responder) in a
//! NATS header, as ours does; a header costs the client a map per message
//! on both ends, which is part of the work, not of our structure.

use std::time::{Duration, Instant};

use futures_util::future::join_all;
use futures_util::StreamExt;
use microagent::bus::{AgentBus, Bus, BusConfig};
use microagent::prelude::*;

use crate::rpc::{Answering, GetStock, CALL_TIMEOUT};
use crate::support::{one_done, report, timed};
use crate::{payload, OrderPlaced, Receiving, ROUNDS};

/// Our NATS bus under a prefix of its own, and the prefix for the bare side.
async fn our_bus(url: &str) -> (Bus, String) {
    let id = uuid::Uuid::new_v4().simple().to_string();
    let config = BusConfig::nats(url)
        .expect("NATS_URL")
        .prefix(&format!("B{id}"))
        .expect("a plain prefix");
    let bus = Bus::connect(config).await.expect("NATS is reachable");
    (bus, format!("X{id}"))
}

fn header(name: &str, value: &str) -> async_nats::HeaderMap {
    let mut headers = async_nats::HeaderMap::new();
    headers.insert(name, value);
    headers
}

async fn bare_client(url: &str) -> async_nats::Client {
    async_nats::connect(url).await.expect("NATS is reachable")
}

/// Signals per second: every signal published at once, counted as they
/// arrive; returns ours / bare.
pub(crate) fn signals(url: &str, n: usize) -> f64 {
    let (ours, bare) = microagent::run(async move {
        let (bus, bare_prefix) = our_bus(url).await;
        let bus = AgentBus::new(bus, "bench");
        let (agent, _handle) = microagent::start(Receiving::default());
        agent.send(GetInfo).await.expect("the agent started");

        let client = bare_client(url).await;
        let mut messages = client
            .subscribe(format!("{bare_prefix}.order_placed.*"))
            .await
            .unwrap();
        client.flush().await.unwrap();
        actix_rt::spawn(async move {
            let mut total = 0;
            while let Some(message) = messages.next().await {
                let signal: OrderPlaced =
                    serde_json::from_slice(&message.payload).expect("our own JSON");
                total += signal.order_id;
                one_done();
            }
            total
        });
        let subject = format!("{bare_prefix}.order_placed.bench");

        let (mut ours, mut bare) = (Duration::MAX, Duration::MAX);
        for _ in 0..ROUNDS {
            let publish_all = join_all((0..n as u64).map(|i| {
                let (client, subject) = (client.clone(), subject.clone());
                async move {
                    let body = serde_json::to_vec(&payload(i)).expect("plain JSON");
                    let headers = header("Microagent-Sender", "bench");
                    client
                        .publish_with_headers(subject, headers, body.into())
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
        ("bus (nats)", ours),
        ("bare async-nats pub/sub", bare),
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

        let client = bare_client(url).await;
        // The bare responder: answers each request on its reply subject.
        let mut requests = client
            .subscribe(format!("{bare_prefix}.get_stock.*"))
            .await
            .unwrap();
        let answerer = client.clone();
        actix_rt::spawn(async move {
            let mut stock = 0u64;
            while let Some(message) = requests.next().await {
                let ask: GetStock = serde_json::from_slice(&message.payload).expect("JSON");
                stock += ask.item.len() as u64;
                let answer =
                    serde_json::to_vec(&serde_json::json!({ "Bare.stock": stock })).expect("JSON");
                if let Some(reply) = message.reply {
                    let headers = header("Microagent-Bus", "bare");
                    answerer
                        .publish_with_headers(reply, headers, answer.into())
                        .await
                        .expect("answered");
                }
            }
        });
        // The bare caller: its own inbox, one request after another.
        let inbox = client.new_inbox();
        let mut answers = client.subscribe(format!("{inbox}.*")).await.unwrap();
        client.flush().await.unwrap();
        let request = format!("{bare_prefix}.get_stock.bench");

        let (mut ours, mut bare) = (Duration::MAX, Duration::MAX);
        for _ in 0..ROUNDS {
            let start = Instant::now();
            for _ in 0..n {
                let id = uuid::Uuid::new_v4().simple().to_string();
                let ask = serde_json::to_vec(&GetStock {
                    item: "apple".into(),
                })
                .expect("plain JSON");
                let mut headers = header("Microagent-Sender", "bench");
                headers.insert("Microagent-Request-Id", id.as_str());
                let reply = format!("{inbox}.{id}");
                client
                    .publish_with_reply_and_headers(request.clone(), reply, headers, ask.into())
                    .await
                    .expect("asked");
                loop {
                    let message = answers.next().await.expect("the inbox is open");
                    if message.subject.ends_with(id.as_str()) {
                        let answer: serde_json::Map<String, serde_json::Value> =
                            serde_json::from_slice(&message.payload).expect("JSON");
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
        (ours, bare)
    });
    report(
        ("bus rpc (nats)", ours),
        ("bare async-nats request/answer", bare),
        n,
        "calls",
    )
}
