//! The broker against the bare library doing the same work, in the same
//! run: messages per second end to end (sent, handled, settled).
//!
//! - local: N messages through the in-process broker to an agent's
//!   consumer (prefetch 64: a mailbox's worth in flight), against the same
//!   payloads as plain actix messages to a bare actor;
//! - redis: N/5 messages through our Redis broker to an agent's consumer
//!   (prefetch 1: one message in flight, taken and settled in Redis),
//!   against a bare `redis` crate loop doing the same reliable pattern one
//!   message at a time (`RPUSH`; `BLMOVE` to a processing list, decode,
//!   `LREM` after handling). Needs `REDIS_URL`;
//! - redis batch: N messages through our Redis broker to an agent's
//!   consumer with prefetch 16, the producer keeping 64 sends in flight,
//!   against a bare `redis` loop doing the same batched reliable pattern as
//!   a user would write it: take up to 16 into a processing list in one
//!   round trip (a pipeline of `LMOVE`s, `BLMOVE` when the queue is empty),
//!   decode and handle them, remove the handled in one round trip (a
//!   pipeline of `LREM`s); its producer keeps 64 `RPUSH`es in flight. The
//!   line `redis batch rate: N msgs/s` gives ours alone;
//! - amqp batch: the same shapes on RabbitMQ (prefetch 16, 64 sends in
//!   flight), against bare `lapin` with `basic_qos(16)`;
//! - amqp: N/5 messages through our AMQP broker to an agent's consumer
//!   (prefetch 16), against bare `lapin`: publish with confirms, consume
//!   with `basic_qos(16)`, decode, ack (each ack in a task of its own, as
//!   ours settles). Needs `AMQP_URL`.
//!
//! - nats: N messages through our NATS JetStream broker to an agent's
//!   consumer (prefetch 16, 64 sends in flight), against bare `async-nats`:
//!   publish and await JetStream's ack, a durable pull consumer pulling 16
//!   at a time, decode, ack (each in a task of its own). Needs `NATS_URL`
//!   and the feature `nats`.
//! - kafka: N messages through our Kafka broker to an agent's consumer
//!   (prefetch 16, 64 sends in flight) on librdkafka's mock cluster in this
//!   process, against bare `rdkafka`: produce awaiting the delivery report
//!   (`acks=all`, idempotent), a group consumer decoding and committing
//!   each message. Needs the feature `kafka` (no server: the mock is the
//!   cluster, so the rates say what the clients cost, not a disk).
//! - observability (feature `metrics`): the local side with its
//!   consumer's runs timed into the Prometheus recorder, against the same
//!   untimed, alternating in one System (the pairs above run untimed).
//!
//! `cargo bench --bench broker [-- N]` (N = 20 000 by default). Each side
//! runs several rounds, alternating; the best counts. The last lines are
//! `broker ratio: local X.XX redis X.XX amqp X.XX nats X.XX kafka X.XX` and `broker batch
//! ratio: redis X.XX amqp X.XX` (ours / bare; `n/a` without the server's
//! URL), then `observability cost: broker X.XX` (timed / untimed; `n/a`
//! without the feature).
//!
//! `cargo bench --bench broker -- N redis-batch` runs the Redis batch pair
//! alone (to count its commands with `INFO commandstats`, or profile it);
//! `-- N kafka` the Kafka pair alone.
//!
//! `cargo bench --bench broker -- N local-ours` (or `local-bare`) runs one
//! round of one side of the local pair alone, for instruction counts under
//! `valgrind --tool=callgrind` (the difference between N and N/2 over N/2
//! is the instructions per message).

use std::time::Duration;

use futures_util::future::join_all;
use microagent::broker::{Broker, BrokerConfig, Queue};
use microagent::prelude::*;
use serde::{Deserialize, Serialize};
use support::{in_flight, one_done, report, timed};

mod bare;
#[cfg(feature = "kafka")]
#[path = "../tests/support/kafka.rs"]
mod kafka_mock;
mod support;

const ROUNDS: usize = 5;
/// The local pair's rounds take milliseconds: more of them steady its best.
const LOCAL_ROUNDS: usize = 25;

#[derive(Queue, Serialize, Deserialize, Clone)]
#[queue(name = "orders")]
struct Order {
    order_id: u64,
    item: String,
}

fn order(order_id: u64) -> Order {
    Order {
        order_id,
        item: "apple".into(),
    }
}

#[derive(Default, MicroAgent)]
struct Packer {
    total: u64,
}

#[microagent::hooks]
impl Packer {
    #[consumer(Order, prefetch = 64)]
    fn pack(&mut self, order: Order) {
        self.total += order.order_id;
        one_done();
    }
}

#[derive(Default, MicroAgent)]
struct Sixteen {
    total: u64,
}

#[microagent::hooks]
impl Sixteen {
    #[consumer(Order, prefetch = 16)]
    fn pack(&mut self, order: Order) {
        self.total += order.order_id;
        one_done();
    }
}

#[derive(Default, MicroAgent)]
struct OneAtATime {
    total: u64,
}

#[microagent::hooks]
impl OneAtATime {
    #[consumer(Order, prefetch = 1)]
    fn pack(&mut self, order: Order) {
        self.total += order.order_id;
        one_done();
    }
}

/// The same payload as a plain actix message.
struct Placed(Order);

impl Message for Placed {
    type Result = ();
}

#[derive(Default)]
struct Bare {
    total: u64,
}

impl Actor for Bare {
    type Context = actix::Context<Self>;
}

impl Handler<Placed> for Bare {
    type Result = ();
    fn handle(&mut self, Placed(order): Placed, _: &mut actix::Context<Self>) {
        self.total += order.order_id;
        one_done();
    }
}

/// One round of one side of the local pair (`local-ours`, `local-bare`).
fn local_side(n: usize, ours: bool) {
    microagent::run(async move {
        let broker = Broker::connect(BrokerConfig::in_process())
            .await
            .expect("a new System has no broker yet");
        if ours {
            let (agent, _handle) = microagent::start(Packer::default());
            agent.send(GetInfo).await.expect("the agent started");
            let round = async {
                for i in 0..n as u64 {
                    broker.send(order(i)).await.expect("sent");
                }
            };
            timed(n, round).await
        } else {
            let bare = Bare::default().start();
            let round = async {
                for i in 0..n as u64 {
                    bare.do_send(Placed(order(i)));
                }
            };
            timed(n, round).await
        }
    });
}

/// Our local side with its consumer's runs timed (feature `metrics`, the
/// Prometheus recorder installed) against not timed, alternating in one
/// System: the rate with / the rate without.
fn observability_cost(n: usize) -> Option<f64> {
    #[cfg(feature = "metrics")]
    return Some(microagent::run(async move {
        let broker = Broker::connect(BrokerConfig::in_process())
            .await
            .expect("a new System has no broker yet");
        let (agent, _handle) = microagent::start(Packer::default());
        agent.send(GetInfo).await.expect("the agent started");
        support::timed_over_untimed(LOCAL_ROUNDS, || {
            let broker = &broker;
            let round = async move {
                for i in 0..n as u64 {
                    broker.send(order(i)).await.expect("sent");
                }
            };
            timed(n, round)
        })
        .await
    }));
    #[allow(unreachable_code)]
    {
        let _ = n;
        None
    }
}

fn local(n: usize) -> f64 {
    // The broker's own cost: runs untimed (the observability line
    // measures the timing).
    #[cfg(feature = "metrics")]
    microagent::metrics::time_runs(false);
    let (ours, bare) = microagent::run(async move {
        let broker = Broker::connect(BrokerConfig::in_process())
            .await
            .expect("a new System has no broker yet");
        let bare = Bare::default().start();
        let (agent, _handle) = microagent::start(Packer::default());
        agent.send(GetInfo).await.expect("the agent started");
        let (mut ours, mut best_bare) = (Duration::MAX, Duration::MAX);
        for _ in 0..LOCAL_ROUNDS {
            let bare_round = async {
                for i in 0..n as u64 {
                    bare.do_send(Placed(order(i)));
                }
            };
            best_bare = best_bare.min(timed(n, bare_round).await);
            let ours_round = async {
                for i in 0..n as u64 {
                    broker.send(order(i)).await.expect("sent");
                }
            };
            ours = ours.min(timed(n, ours_round).await);
        }
        (ours, best_bare)
    });
    report(
        ("broker (in-process)", ours),
        ("bare actix", bare),
        n,
        "messages",
    )
}

/// Sixty-four sends in flight, as the batch pairs' producers keep.
const IN_FLIGHT: usize = 64;

/// The batch pair on Redis: prefetch 16, 64 sends in flight, against the
/// bare batched reliable loop. Returns the ratio and our rate.
fn redis_batch(url: &str, n: usize) -> (f64, f64) {
    const TAKE: usize = 16;
    let (ours, bare) = microagent::run(async move {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let config = BrokerConfig::redis(url).expect("REDIS_URL");
        let broker = Broker::connect(config.namespace(&format!("B{id}:")))
            .await
            .expect("Redis is reachable");
        let (agent, _handle) = microagent::start(Sixteen::default());
        agent.send(GetInfo).await.expect("the agent started");

        // The bare consumer: up to 16 LMOVEs in one pipeline (BLMOVE when
        // the queue is empty), decode and handle, the LREMs in one pipeline.
        let client = redis::Client::open(url).expect("REDIS_URL");
        let producer = client.get_multiplexed_async_connection().await.unwrap();
        let queue = format!("X{id}:orders");
        let processing = format!("X{id}:processing");
        bare::redis_consumer::<Order>(&client, (queue.clone(), processing), TAKE).await;
        let (mut ours, mut bare) = (Duration::MAX, Duration::MAX);
        for _ in 0..ROUNDS {
            let push_all = in_flight(n, IN_FLIGHT, |i| {
                let body = serde_json::to_vec(&order(i)).expect("plain JSON");
                bare::redis_push(producer.clone(), &queue, body)
            });
            bare = bare.min(timed(n, push_all).await);
            let send_all = in_flight(n, IN_FLIGHT, |i| {
                let broker = broker.clone();
                async move { broker.send(order(i)).await.expect("sent") }
            });
            ours = ours.min(timed(n, send_all).await);
        }
        (ours, bare)
    });
    let ratio = report(
        ("broker (redis, prefetch 16, 64 sends in flight)", ours),
        ("bare redis batched reliable loop", bare),
        n,
        "messages",
    );
    (ratio, n as f64 / ours.as_secs_f64())
}

fn redis(url: &str, n: usize) -> f64 {
    let (ours, bare) = microagent::run(async move {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let config = BrokerConfig::redis(url).expect("REDIS_URL");
        let broker = Broker::connect(config.namespace(&format!("B{id}:")))
            .await
            .expect("Redis is reachable");
        let (agent, _handle) = microagent::start(OneAtATime::default());
        agent.send(GetInfo).await.expect("the agent started");

        // The bare consumer: BLMOVE, decode, LREM, one at a time.
        let client = redis::Client::open(url).expect("REDIS_URL");
        let producer = client.get_multiplexed_async_connection().await.unwrap();
        let queue = format!("X{id}:orders");
        let processing = format!("X{id}:processing");
        {
            let config = redis::AsyncConnectionConfig::new()
                .set_response_timeout(Some(Duration::from_secs(10)));
            let mut connection = client
                .get_multiplexed_async_connection_with_config(&config)
                .await
                .unwrap();
            let (queue, processing) = (queue.clone(), processing.clone());
            actix_rt::spawn(async move {
                loop {
                    let body: Option<Vec<u8>> = redis::cmd("BLMOVE")
                        .arg(&queue)
                        .arg(&processing)
                        .arg("LEFT")
                        .arg("RIGHT")
                        .arg(1.0)
                        .query_async(&mut connection)
                        .await
                        .expect("BLMOVE");
                    let Some(body) = body else { continue };
                    let order: Order = serde_json::from_slice(&body).expect("our own JSON");
                    std::hint::black_box(order.order_id);
                    redis::cmd("LREM")
                        .arg(&processing)
                        .arg(1)
                        .arg(&body)
                        .query_async::<i64>(&mut connection)
                        .await
                        .expect("LREM");
                    one_done();
                }
            });
        }
        let (mut ours, mut bare) = (Duration::MAX, Duration::MAX);
        for _ in 0..ROUNDS {
            let push_all = join_all((0..n as u64).map(|i| {
                let body = serde_json::to_vec(&order(i)).expect("plain JSON");
                bare::redis_push(producer.clone(), &queue, body)
            }));
            bare = bare.min(timed(n, push_all).await);
            let send_all = join_all((0..n as u64).map(|i| {
                let broker = broker.clone();
                async move { broker.send(order(i)).await.expect("sent") }
            }));
            ours = ours.min(timed(n, send_all).await);
        }
        (ours, bare)
    });
    report(
        ("broker (redis)", ours),
        ("bare redis reliable loop", bare),
        n,
        "messages",
    )
}

fn amqp(url: &str, n: usize, width: usize) -> f64 {
    use lapin::options::{ConfirmSelectOptions, QueueDeclareOptions};
    use lapin::types::FieldTable;
    use lapin::{Connection, ConnectionProperties};

    let (ours, bare) = microagent::run(async move {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let config = BrokerConfig::amqp(url).expect("AMQP_URL");
        let broker = Broker::connect(config.namespace(&format!("B{id}:")))
            .await
            .expect("RabbitMQ is reachable");
        let (agent, _handle) = microagent::start(Sixteen::default());
        agent.send(GetInfo).await.expect("the agent started");

        // Bare lapin: a confirming publisher, a consumer with qos 16.
        let properties = ConnectionProperties::default()
            .with_executor(tokio_executor_trait::Tokio::current())
            .with_reactor(tokio_reactor_trait::Tokio::current());
        let connection = Connection::connect(url, properties).await.unwrap();
        let publisher = connection.create_channel().await.unwrap();
        publisher
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .unwrap();
        let queue = format!("X{id}:orders");
        publisher
            .queue_declare(
                &queue,
                QueueDeclareOptions::default(),
                FieldTable::default(),
            )
            .await
            .unwrap();
        bare::amqp_consumer::<Order>(&connection, &queue, ("bare", 16)).await;
        let (mut ours, mut bare) = (Duration::MAX, Duration::MAX);
        for _ in 0..ROUNDS {
            let publish_all = in_flight(n, width, |i| {
                let body = serde_json::to_vec(&order(i)).expect("plain JSON");
                bare::amqp_publish(&publisher, &queue, body)
            });
            bare = bare.min(timed(n, publish_all).await);
            let send_all = in_flight(n, width, |i| {
                let broker = broker.clone();
                async move { broker.send(order(i)).await.expect("sent") }
            });
            ours = ours.min(timed(n, send_all).await);
        }
        (ours, bare)
    });
    let bare_name = format!("bare lapin confirm/consume/ack, {width} sends in flight");
    let ours_name = format!("broker (amqp, prefetch 16, {width} sends in flight)");
    report((&ours_name, ours), (&bare_name, bare), n, "messages")
}

/// NATS JetStream: ours at prefetch 16 against bare `async-nats` doing the
/// same (a publish acknowledged by JetStream per message, `width` in
/// flight; a durable pull consumer pulling 16 at a time, decoding, acking
/// each in a task of its own).
#[cfg(feature = "nats")]
fn nats(url: &str, n: usize, width: usize) -> f64 {
    let (ours, bare) = microagent::run(async move {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let config = BrokerConfig::nats(url).expect("NATS_URL");
        let broker = Broker::connect(config.namespace(&format!("B{id}-")))
            .await
            .expect("NATS is reachable");
        let (agent, _handle) = microagent::start(Sixteen::default());
        agent.send(GetInfo).await.expect("the agent started");

        // Bare async-nats: a work-queue stream, a durable pull consumer.
        let client = async_nats::connect(url).await.expect("NATS is reachable");
        let js = async_nats::jetstream::new(client);
        let (name, subject) = (format!("X{id}"), format!("bare.X{id}"));
        bare::nats_consumers::<Order>(&js, (&name, &subject), (16, 1)).await;
        let (mut ours, mut bare) = (Duration::MAX, Duration::MAX);
        for _ in 0..ROUNDS {
            let publish_all = in_flight(n, width, |i| {
                let body = serde_json::to_vec(&order(i)).expect("plain JSON");
                bare::nats_publish(js.clone(), subject.clone(), body)
            });
            bare = bare.min(timed(n, publish_all).await);
            let send_all = in_flight(n, width, |i| {
                let broker = broker.clone();
                async move { broker.send(order(i)).await.expect("sent") }
            });
            ours = ours.min(timed(n, send_all).await);
        }
        let _ = js.delete_stream(&name).await;
        (ours, bare)
    });
    let bare_name = format!("bare async-nats publish-ack/pull/ack, {width} sends in flight");
    let ours_name = format!("broker (nats, prefetch 16, {width} sends in flight)");
    report((&ours_name, ours), (&bare_name, bare), n, "messages")
}

/// Kafka on librdkafka's mock cluster in this process: ours at prefetch
/// 16 against bare `rdkafka` doing the same (a produce awaiting its
/// delivery report, `width` in flight; a group consumer decoding and
/// committing each message).
#[cfg(feature = "kafka")]
fn kafka(n: usize, width: usize) -> f64 {
    let url = kafka_mock::mock_cluster();
    let bootstrap = url.trim_start_matches("kafka://").to_owned();
    let (ours, bare) = microagent::run(async move {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let config = BrokerConfig::kafka(&url).expect("a Kafka URL");
        let broker = Broker::connect(config.namespace(&format!("B{id}.")))
            .await
            .expect("the mock cluster answers");
        let (agent, _handle) = microagent::start(Sixteen::default());
        agent.send(GetInfo).await.expect("the agent started");

        let topic = format!("X{id}");
        let producer = kafka_producer(&bootstrap);
        kafka_consumer::<Order>(&bootstrap, (&topic, &topic));
        let (mut ours, mut bare) = (Duration::MAX, Duration::MAX);
        for _ in 0..ROUNDS {
            let produce_all = in_flight(n, width, |i| {
                let body = serde_json::to_vec(&order(i)).expect("plain JSON");
                kafka_produce(producer.clone(), topic.clone(), body)
            });
            bare = bare.min(timed(n, produce_all).await);
            let send_all = in_flight(n, width, |i| {
                let broker = broker.clone();
                async move { broker.send(order(i)).await.expect("sent") }
            });
            ours = ours.min(timed(n, send_all).await);
        }
        (ours, bare)
    });
    let bare_name = format!("bare rdkafka produce/consume/commit, {width} sends in flight");
    let ours_name = format!("broker (kafka, prefetch 16, {width} sends in flight)");
    report((&ours_name, ours), (&bare_name, bare), n, "messages")
}

// The bare Kafka side (the scale bench has no Kafka curve).
/// Starts a Kafka consumer of `topic` in group `group` (manual commits):
/// decode, handle, and commit each message's offset (asynchronously, as
/// ours commits what is settled).
#[cfg(feature = "kafka")]
fn kafka_consumer<T: serde::de::DeserializeOwned + 'static>(
    bootstrap: &str,
    (topic, group): (&str, &str),
) {
    use rdkafka::config::ClientConfig;
    use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
    use rdkafka::Message;

    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("fetch.wait.max.ms", "50")
        .create()
        .expect("a consumer");
    consumer.subscribe(&[topic]).expect("subscribed");
    actix_rt::spawn(async move {
        while let Ok(message) = consumer.recv().await {
            let decoded: T =
                serde_json::from_slice(message.payload().unwrap_or_default()).expect("our JSON");
            std::hint::black_box(&decoded);
            one_done();
            consumer
                .commit_message(&message, CommitMode::Async)
                .expect("commit");
        }
    });
}

/// A Kafka producer as ours makes it (`acks=all`, idempotent, messages
/// without a key in one partition).
#[cfg(feature = "kafka")]
fn kafka_producer(bootstrap: &str) -> rdkafka::producer::FutureProducer {
    rdkafka::config::ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("partitioner", "consistent")
        .set("linger.ms", "1")
        .create()
        .expect("a producer")
}

/// Produces `body` to `topic`; resolves with its delivery report.
#[cfg(feature = "kafka")]
async fn kafka_produce(producer: rdkafka::producer::FutureProducer, topic: String, body: Vec<u8>) {
    let record = rdkafka::producer::FutureRecord::<(), _>::to(&topic).payload(&body);
    producer
        .send(record, std::time::Duration::from_secs(30))
        .await
        .expect("delivered");
}

/// The Kafka pair (on a mock cluster of its own) when the feature `kafka`
/// is on.
fn kafka_pair(n: usize) -> Option<f64> {
    #[cfg(feature = "kafka")]
    return Some(kafka(n, IN_FLIGHT));
    #[allow(unreachable_code)]
    {
        println!("kafka pair skipped: the kafka feature is off");
        let _ = n;
        None
    }
}

/// The NATS pair when `NATS_URL` is set and the feature `nats` is on.
fn nats_pair(n: usize) -> Option<f64> {
    #[cfg(feature = "nats")]
    if let Ok(url) = std::env::var("NATS_URL") {
        return Some(nats(&url, n, IN_FLIGHT));
    }
    println!("nats pair skipped: NATS_URL is not set or the nats feature is off");
    let _ = n;
    None
}

fn main() {
    let n: usize = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with('-'))
        .map(|a| a.parse().expect("N must be a whole number"))
        .unwrap_or(20_000);
    if let Some(side) = std::env::args().find(|a| a == "local-ours" || a == "local-bare") {
        local_side(n, side == "local-ours");
        return;
    }
    if std::env::args().any(|a| a == "kafka") {
        kafka_pair(n);
        return;
    }
    if std::env::args().any(|a| a == "redis-batch") {
        let url = std::env::var("REDIS_URL").expect("the redis batch pair needs REDIS_URL");
        redis_batch(&url, n);
        return;
    }
    let local = local(n);
    let redis = std::env::var("REDIS_URL")
        .ok()
        .map(|url| redis(&url, (n / 5).max(1)));
    if redis.is_none() {
        println!("redis pair skipped: REDIS_URL is not set");
    }
    let redis_batch = std::env::var("REDIS_URL")
        .ok()
        .map(|url| redis_batch(&url, n));
    let amqp_url = std::env::var("AMQP_URL").ok();
    let amqp_all = amqp_url.as_deref().map(|url| {
        let n = (n / 5).max(1);
        amqp(url, n, n)
    });
    let amqp_batch = amqp_url.as_deref().map(|url| amqp(url, n, IN_FLIGHT));
    if amqp_url.is_none() {
        println!("amqp pairs skipped: AMQP_URL is not set");
    }
    let nats = nats_pair(n);
    let kafka = kafka_pair(n);
    let shown = |ratio: Option<f64>| ratio.map_or("n/a".to_owned(), |r| format!("{r:.2}"));
    if let Some((_, rate)) = redis_batch {
        println!("redis batch rate: {rate:.0} msgs/s");
    }
    println!(
        "broker ratio: local {local:.2} redis {} amqp {} nats {} kafka {}",
        shown(redis),
        shown(amqp_all),
        shown(nats),
        shown(kafka)
    );
    println!(
        "broker batch ratio: redis {} amqp {}",
        shown(redis_batch.map(|(ratio, _)| ratio)),
        shown(amqp_batch)
    );
    println!(
        "observability cost: broker {} (metrics: the consumer's runs timed, vs not)",
        shown(observability_cost(n))
    );
}
