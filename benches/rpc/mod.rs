//! RPC over Redis, ours against the bare `redis` crate, shared by the bus
//! and scale benches: the answering agent and its bare twin, sequential
//! calls (in the bus bench's Redis pairs) and concurrent callers with
//! their latencies.

use std::time::{Duration, Instant};

use futures_util::future::join_all;
use futures_util::StreamExt;
use microagent::bus::{Bus, BusConfig, Signal};
use microagent::prelude::*;
use serde::{Deserialize, Serialize};

/// A hang detector for calls, not a threshold.
pub(crate) const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// Our Redis bus on a prefix of its own, and another prefix for the bare
/// side.
pub(crate) async fn our_bus(url: &str) -> (Bus, String) {
    let id = uuid::Uuid::new_v4().simple().to_string();
    let config = BusConfig::redis(url)
        .expect("REDIS_URL")
        .prefix(&format!("B{id}"));
    let bus = Bus::connect(config.expect("a plain prefix"))
        .await
        .expect("Redis is reachable");
    (bus, format!("X{id}"))
}

/// The RPC question.
#[derive(Signal, Serialize, Deserialize)]
#[signal(name = "get_stock")]
pub(crate) struct GetStock {
    pub(crate) item: String,
}

#[derive(Default, MicroAgent)]
pub(crate) struct Answering {
    stock: u64,
}

#[microagent::hooks]
impl Answering {
    #[receiver(GetStock)]
    fn stock(&mut self, signal: GetStock) -> u64 {
        self.stock += signal.item.len() as u64;
        self.stock
    }
}

/// Starts the bare responder: answers each request under `prefix` on the
/// response channel with the request's id, as the original does.
pub(crate) async fn bare_responder(client: &redis::Client, prefix: &str) {
    let (mut sink, mut requests) = client.get_async_pubsub().await.unwrap().split();
    sink.psubscribe(format!("{prefix}:get_stock:*"))
        .await
        .unwrap();
    let answerer = client.get_multiplexed_async_connection().await.unwrap();
    let responses = format!("{prefix}:response:bare");
    actix_rt::spawn(async move {
        let _sink = sink;
        let mut stock = 0u64;
        while let Some(message) = requests.next().await {
            let channel = message.get_channel_name().to_owned();
            let Some((_, id)) = channel.rsplit_once('#') else {
                continue;
            };
            let ask: GetStock =
                serde_json::from_slice(message.get_payload_bytes()).expect("our own JSON");
            stock += ask.item.len() as u64;
            let answer = serde_json::to_vec(&serde_json::json!({ "Bare.stock": stock }))
                .expect("plain JSON");
            let (mut answerer, channel) = (answerer.clone(), format!("{responses}#{id}"));
            actix_rt::spawn(async move {
                redis::cmd("PUBLISH")
                    .arg(channel)
                    .arg(answer)
                    .query_async::<usize>(&mut answerer)
                    .await
                    .expect("answered");
            });
        }
    });
}

/// What a run of concurrent calls measured: calls per second and the
/// latency of one call at the median and the 99th percentile.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Calls {
    pub(crate) rate: f64,
    pub(crate) p50: Duration,
    pub(crate) p99: Duration,
}

impl Calls {
    /// From each call's latency and the round's duration.
    fn of(mut latencies: Vec<Duration>, elapsed: Duration) -> Calls {
        latencies.sort();
        let at = |q: f64| latencies[((latencies.len() - 1) as f64 * q).round() as usize];
        Calls {
            rate: latencies.len() as f64 / elapsed.as_secs_f64(),
            p50: at(0.50),
            p99: at(0.99),
        }
    }

    /// The better of two rounds (by rate).
    fn best(self, other: Calls) -> Calls {
        if other.rate > self.rate {
            other
        } else {
            self
        }
    }
}

/// `callers` callers, each making its share of `n` calls one after
/// another: ours through the bus, against a bare `redis` crate RPC as a
/// user would write it for concurrent callers (one response subscription,
/// a map from request id to the waiting caller). Returns ours and bare.
pub(crate) fn rpc_concurrent(url: &str, n: usize, callers: usize, rounds: usize) -> (Calls, Calls) {
    use std::cell::RefCell;
    use std::collections::HashMap;
    use std::rc::Rc;
    use tokio::sync::oneshot;

    microagent::run(async move {
        let (bus, bare_prefix) = our_bus(url).await;
        let (agent, _handle) = microagent::start(Answering::default());
        agent.send(GetInfo).await.expect("the agent started");

        let client = redis::Client::open(url).expect("REDIS_URL");
        bare_responder(&client, &bare_prefix).await;
        // The bare callers' side: one subscription, answers routed by id.
        type Waiting = Rc<RefCell<HashMap<String, oneshot::Sender<Vec<u8>>>>>;
        let waiting: Waiting = Rc::default();
        let (mut answers_sink, mut answers) = client.get_async_pubsub().await.unwrap().split();
        answers_sink
            .psubscribe(format!("{bare_prefix}:response:*"))
            .await
            .unwrap();
        {
            let waiting = waiting.clone();
            actix_rt::spawn(async move {
                let _sink = answers_sink;
                while let Some(message) = answers.next().await {
                    let channel = message.get_channel_name();
                    let Some((_, id)) = channel.rsplit_once('#') else {
                        continue;
                    };
                    if let Some(caller) = waiting.borrow_mut().remove(id) {
                        let _ = caller.send(message.get_payload_bytes().to_vec());
                    }
                }
            });
        }
        let caller = client.get_multiplexed_async_connection().await.unwrap();
        let request = format!("{bare_prefix}:get_stock:bench");
        let per_caller = n.div_ceil(callers);

        let bare_call = || {
            let (waiting, mut caller, request) = (waiting.clone(), caller.clone(), &request);
            async move {
                let id = uuid::Uuid::new_v4().simple().to_string();
                let (tx, rx) = oneshot::channel();
                waiting.borrow_mut().insert(id.clone(), tx);
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
                let answer = rx.await.expect("answered");
                let answer: serde_json::Map<String, serde_json::Value> =
                    serde_json::from_slice(&answer).expect("JSON");
                assert!(answer.contains_key("Bare.stock"));
            }
        };
        let our_call = || {
            let bus = bus.clone();
            async move {
                let ask = GetStock {
                    item: "apple".into(),
                };
                let answers = bus
                    .call("bench", ask, CALL_TIMEOUT)
                    .await
                    .expect("answered");
                assert!(answers.get("Answering.stock").is_some());
            }
        };
        let (mut ours, mut bare): (Option<Calls>, Option<Calls>) = (None, None);
        for _ in 0..rounds {
            let round = concurrently(callers, per_caller, &bare_call).await;
            bare = Some(bare.map_or(round, |b| b.best(round)));
            let round = concurrently(callers, per_caller, &our_call).await;
            ours = Some(ours.map_or(round, |o| o.best(round)));
        }
        (ours.expect("a round ran"), bare.expect("a round ran"))
    })
}

/// `callers` lanes, each making `each` calls one after another; every
/// call's latency, and the round's rate.
async fn concurrently<F, Fut>(callers: usize, each: usize, call: &F) -> Calls
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let start = Instant::now();
    let lanes = join_all((0..callers).map(|_| async {
        let mut latencies = Vec::with_capacity(each);
        for _ in 0..each {
            let began = Instant::now();
            call().await;
            latencies.push(began.elapsed());
        }
        latencies
    }))
    .await;
    let elapsed = start.elapsed();
    Calls::of(lanes.into_iter().flatten().collect(), elapsed)
}
