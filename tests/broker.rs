//! The broker's delivery semantics, on every backend: order, retries and
//! dead letters, poison messages, separate budgets for equal messages,
//! backpressure, and a stop with messages in flight. Each test runs on the
//! in-process broker, on Redis (with `REDIS_URL`) and on RabbitMQ (with
//! `AMQP_URL`; each compiled as ignored without its variable), each run on
//! a server under a key namespace of its own.

mod support;

use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use microagent::broker::{Broker, BrokerConfig, Queue};
use microagent::prelude::*;
use serde::{Deserialize, Serialize};
use support::matrix::{on_backends, Backend};
use support::{Boom, Events};
use tokio::sync::{Notify, Semaphore};

#[derive(Queue, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[queue(name = "jobs")]
struct Work {
    id: u32,
    fail: bool,
}

fn work(id: u32) -> Work {
    Work { id, fail: false }
}

/// Records each run; fails the messages marked `fail`.
#[derive(Default, MicroAgent)]
struct Worker {
    events: Events,
}

#[microagent::hooks]
impl Worker {
    #[consumer(Work, attempts = 3, backoff = 0.01)]
    fn handle(&mut self, work: Work) -> Result<(), Boom> {
        self.events.push(format!("work {}", work.id));
        if work.fail {
            return Err(Boom("refused"));
        }
        Ok(())
    }
}

on_backends!([in_process, redis, redis_cluster, amqp, nats, kafka, kafka_kip848] =>
    messages_are_handled_once_each_in_the_order_sent,
    a_failing_message_is_retried_then_dead_lettered_with_the_reason,
    a_message_that_does_not_decode_is_dead_lettered_at_once,
    equal_messages_have_budgets_of_their_own,
    no_more_than_prefetch_messages_are_taken_and_a_stop_takes_no_more,
    each_settled_message_makes_room_for_exactly_one_more,
    a_plain_fn_consumer_with_prefetch_handles_each_once_in_order_with_retries,
    json_objects_and_other_types_reach_a_typed_consumer,
    a_panicking_plain_fn_consumer_is_retried_then_dead_lettered_with_the_panic,
    a_retry_is_taken_when_due_while_the_consumer_waits_for_messages,
    dead_letters_are_requeued_once_fixed_or_purged_and_a_queue_is_purged,
    a_batch_sent_arrives_in_order_and_each_is_handled_once,
    messages_sent_with_keys_keep_each_key_s_order_and_are_handled_once_each,
);

/// A hang detector, not a performance threshold.
const LONG: Duration = Duration::from_secs(30);

async fn started<A: Agent>(addr: &Addr<A>) {
    addr.send(GetInfo).await.expect("the agent started");
}

/// The dead letters of `jobs`, once there are `count` of them (a hang
/// detector bounds the wait).
async fn dead_letters(broker: &Broker, count: usize) -> Vec<microagent::broker::DeadLetter> {
    let start = std::time::Instant::now();
    loop {
        let dead = broker.dead_letters("jobs").await.unwrap();
        if dead.len() >= count {
            return dead;
        }
        assert!(
            start.elapsed() < LONG,
            "{} of {count} dead-lettered",
            dead.len()
        );
        actix_rt::time::sleep(Duration::from_millis(2)).await;
    }
}

/// Polls until `done` holds (a hang detector bounds it).
async fn until(mut done: impl FnMut() -> bool) {
    let start = std::time::Instant::now();
    while !done() {
        assert!(start.elapsed() < LONG, "never happened");
        actix_rt::time::sleep(Duration::from_millis(2)).await;
    }
}

/// [`Worker`] with eight messages in flight: the in-process broker hands
/// it batches.
#[derive(Default, MicroAgent)]
struct Batched {
    events: Events,
    /// Slows each run down, so that batches wait in the mailbox.
    pause: Duration,
}

#[microagent::hooks]
impl Batched {
    #[consumer(Work, attempts = 2, backoff = 0.01, prefetch = 8)]
    fn handle(&mut self, work: Work) -> Result<(), Boom> {
        std::thread::sleep(self.pause);
        self.events.push(format!("work {}", work.id));
        if work.fail {
            return Err(Boom("refused"));
        }
        Ok(())
    }
}

fn a_plain_fn_consumer_with_prefetch_handles_each_once_in_order_with_retries(backend: Backend) {
    let events = Events::default();
    let watched = events.clone();
    let dead = backend.run_broker(async move {
        let broker = Broker::current();
        for id in 0..60 {
            let fail = id % 20 == 7;
            broker.send(Work { id, fail }).await.unwrap();
        }
        let (addr, handle) = microagent::start(Batched {
            events: watched.clone(),
            pause: Duration::ZERO,
        });
        started(&addr).await;
        // Every message, the three failing ones twice each.
        until(|| watched.all().len() == 63).await;
        until_length(&broker, "jobs", 0).await;
        let dead = broker.dead_letters("jobs").await.unwrap();
        handle.stop();
        handle.await.unwrap();
        dead
    });
    let all = events.all();
    // First attempts in the order sent; each retry after its first attempt.
    let firsts: Vec<u32> = all
        .iter()
        .map(|e| e["work ".len()..].parse().unwrap())
        .fold(Vec::new(), |mut seen, id| {
            if !seen.contains(&id) {
                seen.push(id);
            }
            seen
        });
    assert_eq!(firsts, (0..60).collect::<Vec<u32>>());
    for failing in [7, 27, 47] {
        assert_eq!(events.count(&format!("work {failing}")), 2);
    }
    let mut dead_ids: Vec<u64> = dead
        .iter()
        .map(|d| d.message["id"].as_u64().unwrap())
        .collect();
    dead_ids.sort();
    assert_eq!(dead_ids, [7, 27, 47]);
    assert!(dead.iter().all(|d| d.attempts == 2));
}

/// A stop while batches wait in the mailbox: what was handled before it
/// was handled once; what was handed back returns to the queue in its
/// order, for the next consumer, and is back when the stop resolves. In
/// process: the Redis broker hands messages back last-first (see
/// docs/broker.md). Fifty rounds with the other core busy: the messages
/// were once handed back after the stop resolved, 1 round in 50 or so.
#[test]
fn a_stop_hands_messages_back_in_their_order() {
    let busy = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let load = std::thread::spawn({
        let busy = busy.clone();
        move || {
            while busy.load(Ordering::Relaxed) {
                std::hint::spin_loop();
            }
        }
    });
    for _ in 0..50 {
        stop_hands_messages_back_in_their_order();
    }
    busy.store(false, Ordering::Relaxed);
    load.join().unwrap();
}

fn stop_hands_messages_back_in_their_order() {
    let first = Events::default();
    let second = Events::default();
    let (first_seen, second_seen) = (first.clone(), second.clone());
    microagent::run(async move {
        let broker = Broker::current();
        for id in 0..200 {
            broker.send(work(id)).await.unwrap();
        }
        // On a thread of its own, slowed down: the consumer's loop, on this
        // thread, refills its slots while it works, so batches queue up in
        // its mailbox, some behind the stop.
        let arbiter = actix::Arbiter::new();
        let (addr, handle) = microagent::start_in(
            &arbiter.handle(),
            Batched {
                events: first_seen.clone(),
                pause: Duration::from_millis(1),
            },
        );
        started(&addr).await;
        until(|| first_seen.all().len() >= 20).await;
        handle.stop();
        drop(addr);
        handle.await.unwrap();
        arbiter.stop();
        let handled = first_seen.all().len();
        assert!(handled < 200, "stopped before the queue ran dry");
        assert_eq!(broker.length("jobs").await.unwrap(), 200 - handled);
        let (addr, handle) = microagent::start(Batched {
            events: second_seen.clone(),
            pause: Duration::ZERO,
        });
        started(&addr).await;
        until(|| first_seen.all().len() + second_seen.all().len() == 200).await;
        handle.stop();
        handle.await.unwrap();
    });
    // Once each, in the order sent, across the two agents.
    let all: Vec<String> = first.all().into_iter().chain(second.all()).collect();
    let expected: Vec<String> = (0..200).map(|id| format!("work {id}")).collect();
    assert_eq!(all, expected);
}

/// A message of some customer's, sent with the customer as its key.
#[derive(Queue, Serialize, Deserialize, Clone)]
#[queue(name = "keyed")]
struct KeyedWork {
    customer: String,
    seq: u32,
}

#[derive(Default, MicroAgent)]
struct KeyedWorker {
    events: Events,
}

#[microagent::hooks]
impl KeyedWorker {
    #[consumer(KeyedWork, prefetch = 1)]
    fn handle(&mut self, work: KeyedWork) {
        self.events.push(format!("{} {}", work.customer, work.seq));
    }
}

/// `send_keyed`: every message handled once, and each key's messages in
/// the order sent (on Kafka the keys go to different partitions, so only
/// the order within a key is Kafka's promise; the other backends keep one
/// order per queue).
fn messages_sent_with_keys_keep_each_key_s_order_and_are_handled_once_each(backend: Backend) {
    let customers = ["ann", "bob", "cat", "dan", "eve"];
    let events = Events::default();
    let watched = events.clone();
    backend.run_broker(async move {
        let broker = Broker::current();
        for seq in 0..10 {
            for customer in customers {
                let work = KeyedWork {
                    customer: customer.into(),
                    seq,
                };
                broker.send_keyed(customer, work).await.unwrap();
            }
        }
        let (addr, handle) = microagent::start(KeyedWorker {
            events: watched.clone(),
        });
        started(&addr).await;
        until(|| watched.all().len() >= 50).await;
        until_length(&broker, "keyed", 0).await;
        handle.stop();
        handle.await.unwrap();
    });
    let all = events.all();
    assert_eq!(all.len(), 50, "each once: {all:?}");
    for customer in customers {
        let mine: Vec<String> = all
            .iter()
            .filter(|e| e.starts_with(&format!("{customer} ")))
            .cloned()
            .collect();
        let expected: Vec<String> = (0..10).map(|seq| format!("{customer} {seq}")).collect();
        assert_eq!(mine, expected, "{customer}'s order");
    }
}

/// On Kafka, keys spread over the topic's partitions (the mock cluster
/// makes four), where messages without a key all go to one.
#[cfg(feature = "kafka")]
#[test]
fn kafka_keys_spread_over_partitions_and_unkeyed_messages_keep_to_one() {
    use rdkafka::consumer::{BaseConsumer, Consumer};

    let url = support::kafka::mock_cluster();
    let bootstrap = url.trim_start_matches("kafka://").to_owned();
    let config = BrokerConfig::from_url(&url).unwrap();
    microagent::run(async move {
        let broker = Broker::connect(config).await.unwrap();
        for seq in 0..40 {
            let customer = format!("customer{seq}");
            let keyed = KeyedWork {
                customer: customer.clone(),
                seq,
            };
            broker.send_keyed(&customer, keyed).await.unwrap();
            broker.send(work(seq)).await.unwrap();
        }
    });
    let consumer: BaseConsumer = rdkafka::config::ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .create()
        .unwrap();
    let filled = |topic: &str| -> usize {
        (0..4)
            .filter(|&partition| {
                let (low, high) = consumer
                    .fetch_watermarks(topic, partition, Duration::from_secs(10))
                    .unwrap();
                high > low
            })
            .count()
    };
    assert!(filled("keyed") >= 2, "keys spread: {}", filled("keyed"));
    assert_eq!(filled("jobs"), 1, "unkeyed messages keep to one partition");
}

/// On Kafka, the consumer group is configurable: a consumer under another
/// group gets every message of the queue again (each group reads the whole
/// topic), while the next consumer of a group that read them gets none, and
/// the length is the configured group's.
#[cfg(feature = "kafka")]
#[test]
fn kafka_groups_are_configurable_and_each_group_reads_every_message() {
    let url = support::kafka::mock_cluster();
    // Under `group` (the default when `None`): what waits before the
    // consumer starts, then each run once `last` was handled and nothing
    // waits.
    let consume = |group: Option<&str>, send: std::ops::Range<u32>, last: u32| {
        // A short session: the mock's coordinator keeps a group its last
        // member left waiting for members for the session less a second.
        let mut config = BrokerConfig::from_url(&url)
            .unwrap()
            .lease(Duration::from_secs(2));
        if let Some(group) = group {
            config = config.group(group);
        }
        let events = Events::default();
        let watched = events.clone();
        let waiting = microagent::run(async move {
            let broker = Broker::connect(config).await.unwrap();
            for id in send {
                broker.send(work(id)).await.unwrap();
            }
            let waiting = broker.length("jobs").await.unwrap();
            let (addr, handle) = microagent::start(Worker {
                events: watched.clone(),
            });
            started(&addr).await;
            watched.seen(&format!("work {last}")).await;
            let start = std::time::Instant::now();
            while broker.length("jobs").await.unwrap() > 0 {
                assert!(start.elapsed() < Duration::from_secs(60), "still waiting");
                actix_rt::time::sleep(Duration::from_millis(20)).await;
            }
            handle.stop();
            handle.await.unwrap();
            waiting
        });
        (waiting, events.all())
    };
    let runs =
        |ids: std::ops::Range<u32>| -> Vec<String> { ids.map(|id| format!("work {id}")).collect() };
    assert_eq!(
        consume(Some("billing-{queue}"), 0..5, 4),
        (5, runs(0..5)),
        "the first group reads the five"
    );
    assert_eq!(
        consume(None, 0..0, 4),
        (5, runs(0..5)),
        "the default group (the queue's) reads them again"
    );
    assert_eq!(
        consume(Some("billing-{queue}"), 5..6, 5),
        (1, runs(5..6)),
        "the first group's next consumer starts after what it read"
    );
}

fn messages_are_handled_once_each_in_the_order_sent(backend: Backend) {
    let events = Events::default();
    let watched = events.clone();
    backend.run_broker(async move {
        let broker = Broker::current();
        for id in 0..20 {
            broker.send(work(id)).await.unwrap();
        }
        assert_eq!(broker.length("jobs").await.unwrap(), 20);
        let (addr, handle) = microagent::start(Worker {
            events: watched.clone(),
        });
        started(&addr).await;
        watched.seen("work 19").await;
        assert_eq!(broker.length("jobs").await.unwrap(), 0);
        handle.stop();
        handle.await.unwrap();
    });
    let expected: Vec<String> = (0..20).map(|id| format!("work {id}")).collect();
    assert_eq!(events.all(), expected);
}

/// Sends `agent`'s consumer a failing message, then a good one; returns the
/// dead letters once the failing one is among them, and the agent's info.
fn dead_letter_one<A: Agent>(
    backend: Backend,
    agent: A,
    events: &Events,
) -> (Vec<microagent::broker::DeadLetter>, microagent::AgentInfo) {
    let watched = events.clone();
    backend.run_broker(async move {
        let broker = Broker::current();
        let (addr, handle) = microagent::start(agent);
        started(&addr).await;
        broker.send(Work { id: 1, fail: true }).await.unwrap();
        broker.send(work(2)).await.unwrap();
        watched.seen("work 2").await;
        let dead = dead_letters(&broker, 1).await;
        let info = addr.send(GetInfo).await.unwrap();
        handle.stop();
        handle.await.unwrap();
        (dead, info)
    })
}

fn a_failing_message_is_retried_then_dead_lettered_with_the_reason(backend: Backend) {
    let events = Events::default();
    let worker = Worker {
        events: events.clone(),
    };
    let (dead, info) = dead_letter_one(backend, worker, &events);
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].queue, "jobs");
    assert_eq!(dead[0].message, serde_json::json!({"id": 1, "fail": true}));
    assert_eq!(dead[0].attempts, 3);
    assert!(dead[0].reason.contains("refused"), "{}", dead[0].reason);
    assert_eq!(events.count("work 1"), 3);
    assert_eq!(events.count("work 2"), 1);
    let consumer = &info.consumers[0];
    assert_eq!((consumer.name, consumer.queue), ("handle", "jobs"));
    assert_eq!(consumer.runs.failed, 3);
}

/// Panics on the messages marked `fail`.
#[derive(Default, MicroAgent)]
struct Panicking {
    events: Events,
}

#[microagent::hooks]
impl Panicking {
    #[consumer(Work, attempts = 2, backoff = 0.01)]
    fn handle(&mut self, work: Work) {
        self.events.push(format!("work {}", work.id));
        if work.fail {
            panic!("cannot work on {}", work.id);
        }
    }
}

/// A panic in a plain `fn` consumer is a failed attempt like an error: the
/// backoff, the attempt count and the dead letters apply (it was taken
/// again at once, without limit).
fn a_panicking_plain_fn_consumer_is_retried_then_dead_lettered_with_the_panic(backend: Backend) {
    let events = Events::default();
    let panicking = Panicking {
        events: events.clone(),
    };
    let (dead, info) = dead_letter_one(backend, panicking, &events);
    assert_eq!(events.count("work 1"), 2);
    assert_eq!(events.count("work 2"), 1);
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].message, serde_json::json!({"id": 1, "fail": true}));
    assert_eq!(dead[0].attempts, 2);
    assert!(
        dead[0].reason.contains("cannot work on 1"),
        "{}",
        dead[0].reason
    );
    let runs = &info.consumers[0].runs;
    assert_eq!((runs.panicked, runs.failed), (2, 0));
}

/// Retries after 50 ms.
#[derive(Default, MicroAgent)]
struct QuickRetry {
    events: Events,
}

#[microagent::hooks]
impl QuickRetry {
    #[consumer(Work, attempts = 2, backoff = 0.05)]
    fn handle(&mut self, work: Work) -> Result<(), Boom> {
        self.events.push(format!("work {}", work.id));
        if work.fail && self.events.count(&format!("work {}", work.id)) == 1 {
            return Err(Boom("first attempt"));
        }
        Ok(())
    }
}

/// A retry due in 50 ms is taken then, not once a wait for new messages
/// ends: message 2, sent 400 ms after message 1 failed, comes after its
/// retry. (The Redis consumer waited a whole second for new messages
/// before it looked at retries again: message 2 came first.)
fn a_retry_is_taken_when_due_while_the_consumer_waits_for_messages(backend: Backend) {
    let events = Events::default();
    let watched = events.clone();
    backend.run_broker(async move {
        let broker = Broker::current();
        let (addr, handle) = microagent::start(QuickRetry {
            events: watched.clone(),
        });
        started(&addr).await;
        broker.send(Work { id: 1, fail: true }).await.unwrap();
        watched.seen("work 1").await;
        actix_rt::time::sleep(Duration::from_millis(400)).await;
        broker.send(work(2)).await.unwrap();
        watched.seen("work 2").await;
        handle.stop();
        handle.await.unwrap();
    });
    assert_eq!(events.all(), ["work 1", "work 1", "work 2"]);
}

fn a_message_that_does_not_decode_is_dead_lettered_at_once(backend: Backend) {
    let events = Events::default();
    let watched = events.clone();
    let (dead, bad_input) = backend.run_broker(async move {
        let broker = Broker::current();
        let (addr, handle) = microagent::start(Worker {
            events: watched.clone(),
        });
        started(&addr).await;
        let poison = serde_json::json!({"id": "not a number"});
        broker
            .send_dyn("jobs", poison.as_object().unwrap())
            .await
            .unwrap();
        broker.send(work(3)).await.unwrap();
        watched.seen("work 3").await;
        let dead = broker.dead_letters("jobs").await.unwrap();
        let info = addr.send(GetInfo).await.unwrap();
        handle.stop();
        handle.await.unwrap();
        (dead, info.consumers[0].runs.bad_input)
    });
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].attempts, 1);
    assert!(
        dead[0].reason.contains("does not decode"),
        "{}",
        dead[0].reason
    );
    assert_eq!(bad_input, 1);
    // The consumer never ran on it.
    assert_eq!(events.all(), ["work 3"]);
}

fn equal_messages_have_budgets_of_their_own(backend: Backend) {
    let events = Events::default();
    let watched = events.clone();
    let dead = backend.run_broker(async move {
        let broker = Broker::current();
        let (addr, handle) = microagent::start(Worker {
            events: watched.clone(),
        });
        started(&addr).await;
        let same = Work { id: 7, fail: true };
        broker.send(same.clone()).await.unwrap();
        broker.send(same).await.unwrap();
        let dead = dead_letters(&broker, 2).await;
        handle.stop();
        handle.await.unwrap();
        dead
    });
    // Three attempts each: a budget shared by payload would give three in all.
    assert_eq!(events.count("work 7"), 6);
    assert!(dead.iter().all(|d| d.attempts == 3));
}

#[derive(Queue, Serialize, Deserialize, Clone)]
#[queue(name = "slow")]
struct SlowWork {
    id: u32,
}

/// Waits for `go` on its first message; counts what it handled.
#[derive(MicroAgent)]
#[microagent(stand_in = Slow { go: Arc::new(Notify::new()), handled: Arc::default() })]
struct Slow {
    go: Arc<Notify>,
    handled: Arc<AtomicUsize>,
}

#[microagent::hooks]
impl Slow {
    #[consumer(SlowWork, prefetch = 2)]
    async fn handle(&mut self, work: SlowWork) {
        if work.id == 0 {
            self.go.notified().await;
        }
        self.handled.fetch_add(1, Ordering::SeqCst);
    }
}

fn no_more_than_prefetch_messages_are_taken_and_a_stop_takes_no_more(backend: Backend) {
    backend.run_broker(async {
        let broker = Broker::current();
        for id in 0..10 {
            broker.send(SlowWork { id }).await.unwrap();
        }
        let go = Arc::new(Notify::new());
        let handled = Arc::new(AtomicUsize::new(0));
        let (addr, handle) = microagent::start(Slow {
            go: go.clone(),
            handled: handled.clone(),
        });
        started(&addr).await;
        // One running (blocked), one waiting in the mailbox: 8 left.
        let queue = Rc::new(broker.clone());
        until(|| handled.load(Ordering::SeqCst) == 0).await;
        let length = || {
            let queue = queue.clone();
            async move { queue.length("slow").await.unwrap() }
        };
        let start = std::time::Instant::now();
        while length().await != 8 {
            assert!(start.elapsed() < LONG);
            actix_rt::time::sleep(Duration::from_millis(2)).await;
        }
        // It stays at 8 while the first message is held up.
        actix_rt::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(length().await, 8);
        // Stop while message 0 runs: the stop waits in the mailbox behind
        // message 1; both finish and are settled, nothing more is taken.
        handle.stop();
        actix_rt::time::sleep(Duration::from_millis(20)).await;
        go.notify_one();
        handle.wait().await.unwrap();
        assert_eq!(handled.load(Ordering::SeqCst), 2);
        until_length(&broker, "slow", 8).await;
        actix_rt::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(broker.length("slow").await.unwrap(), 8);
    });
}

#[derive(Queue, Serialize, Deserialize, Clone)]
#[queue(name = "gated")]
struct GatedWork {
    id: u32,
}

/// Each message waits for a permit of `gate`; counts what it handled.
#[derive(MicroAgent)]
#[microagent(stand_in = Gated { gate: Arc::new(Semaphore::new(0)), handled: Arc::default() })]
struct Gated {
    gate: Arc<Semaphore>,
    handled: Arc<AtomicUsize>,
}

#[microagent::hooks]
impl Gated {
    #[consumer(GatedWork, prefetch = 2)]
    async fn handle(&mut self, _work: GatedWork) {
        if let Ok(permit) = self.gate.acquire().await {
            permit.forget();
        }
        self.handled.fetch_add(1, Ordering::SeqCst);
    }
}

/// Settling a message frees its slot for the next one, and for one only:
/// the queue shrinks by one per message settled, never by more than the
/// prefetch allows.
fn each_settled_message_makes_room_for_exactly_one_more(backend: Backend) {
    backend.run_broker(async {
        let broker = Broker::current();
        for id in 0..10 {
            broker.send(GatedWork { id }).await.unwrap();
        }
        let gate = Arc::new(Semaphore::new(0));
        let handled = Arc::new(AtomicUsize::new(0));
        let (addr, handle) = microagent::start(Gated {
            gate: gate.clone(),
            handled: handled.clone(),
        });
        started(&addr).await;
        for settled in 0..4 {
            // Two in flight, the rest queued, and it stays so.
            until_length(&broker, "gated", 8 - settled).await;
            actix_rt::time::sleep(Duration::from_millis(50)).await;
            assert_eq!(broker.length("gated").await.unwrap(), 8 - settled);
            assert_eq!(handled.load(Ordering::SeqCst), settled);
            gate.add_permits(1);
            until(|| handled.load(Ordering::SeqCst) == settled + 1).await;
        }
        gate.add_permits(100);
        until(|| handled.load(Ordering::SeqCst) == 10).await;
        until_length(&broker, "gated", 0).await;
        handle.stop();
        handle.await.unwrap();
    });
}

async fn until_length(broker: &Broker, queue: &str, n: usize) {
    let start = std::time::Instant::now();
    while broker.length(queue).await.unwrap() != n {
        assert!(start.elapsed() < LONG, "queue `{queue}` never held {n}");
        actix_rt::time::sleep(Duration::from_millis(2)).await;
    }
}

#[test]
fn send_waits_while_an_in_process_queue_is_full() {
    let events = Events::default();
    let watched = events.clone();
    microagent::run(async move {
        let broker = Broker::connect(BrokerConfig::in_process().capacity(2))
            .await
            .unwrap();
        broker.send(work(0)).await.unwrap();
        broker.send(work(1)).await.unwrap();
        let third = {
            let broker = broker.clone();
            actix_rt::spawn(async move { broker.send(work(2)).await })
        };
        actix_rt::time::sleep(Duration::from_millis(50)).await;
        assert!(!third.is_finished(), "the queue is full: send waits");
        let (addr, handle) = microagent::start(Worker {
            events: watched.clone(),
        });
        started(&addr).await;
        third.await.unwrap().unwrap();
        watched.seen("work 2").await;
        handle.stop();
        handle.await.unwrap();
    });
    assert_eq!(events.all(), ["work 0", "work 1", "work 2"]);
}

/// Another type for the same queue (`jobs`), as a second program of the
/// fleet may declare it.
#[derive(Queue, Serialize, Deserialize, Clone)]
#[queue(name = "jobs")]
struct Job {
    id: u32,
    fail: bool,
    note: String,
}

fn json_objects_and_other_types_reach_a_typed_consumer(backend: Backend) {
    let events = Events::default();
    let watched = events.clone();
    backend.run_broker(async move {
        let broker = Broker::current();
        let (addr, handle) = microagent::start(Worker {
            events: watched.clone(),
        });
        started(&addr).await;
        let declared = microagent::bus::Declarations::from_json(
            r#"{"signals": [], "queues": [{"name": "jobs"}]}"#,
        )
        .unwrap();
        let object = serde_json::json!({"id": 1, "fail": false});
        broker
            .send_declared(&declared.queues[0], object.as_object().unwrap())
            .await
            .unwrap();
        let other = Job {
            id: 2,
            fail: false,
            note: "extra fields are ignored".into(),
        };
        broker.send(other).await.unwrap();
        broker.send(work(3)).await.unwrap();
        watched.seen("work 3").await;
        handle.stop();
        handle.await.unwrap();
    });
    assert_eq!(events.all(), ["work 1", "work 2", "work 3"]);
}

/// Fails every message while `broken` is set, with no retry: what an
/// operator meets when a downstream service is down.
#[derive(Default, MicroAgent)]
struct Fragile {
    broken: Arc<std::sync::atomic::AtomicBool>,
    events: Events,
}

#[microagent::hooks]
impl Fragile {
    #[consumer(Work, attempts = 1)]
    fn handle(&mut self, work: Work) -> Result<(), Boom> {
        if self.broken.load(Ordering::SeqCst) {
            return Err(Boom("downstream is down"));
        }
        self.events.push(format!("work {}", work.id));
        Ok(())
    }
}

#[derive(Queue, Serialize, Deserialize, Clone)]
#[queue(name = "idle")]
struct Idle {
    n: u32,
}

fn dead_letters_are_requeued_once_fixed_or_purged_and_a_queue_is_purged(backend: Backend) {
    let events = Events::default();
    let broken = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let (agent_events, switch, watched) = (events.clone(), broken.clone(), events.clone());
    backend.run_broker(async move {
        let (fragile, handle) = microagent::start(Fragile {
            broken: switch.clone(),
            events: agent_events,
        });
        started(&fragile).await;
        let broker = Broker::current();
        for id in 1..=3 {
            broker.send(work(id)).await.unwrap();
        }
        assert_eq!(dead_letters(&broker, 3).await.len(), 3);
        // Fixed: the three go back, and are handled once each.
        switch.store(false, Ordering::SeqCst);
        assert_eq!(broker.requeue_dead_letters("jobs").await.unwrap(), 3);
        for id in 1..=3 {
            watched.seen(&format!("work {id}")).await;
        }
        assert!(broker.dead_letters("jobs").await.unwrap().is_empty());
        // Broken again: two dead letters, purged.
        switch.store(true, Ordering::SeqCst);
        for id in 4..=5 {
            broker.send(work(id)).await.unwrap();
        }
        assert_eq!(dead_letters(&broker, 2).await.len(), 2);
        assert_eq!(broker.purge_dead_letters("jobs").await.unwrap(), 2);
        assert!(broker.dead_letters("jobs").await.unwrap().is_empty());
        assert_eq!(broker.requeue_dead_letters("jobs").await.unwrap(), 0);
        // A queue nobody consumes: its waiting messages purged.
        for n in 0..4 {
            broker.send(Idle { n }).await.unwrap();
        }
        assert_eq!(broker.length("idle").await.unwrap(), 4);
        assert_eq!(broker.purge("idle").await.unwrap(), 4);
        assert_eq!(broker.length("idle").await.unwrap(), 0);
        handle.stop();
        handle.await.unwrap();
    });
    assert_eq!(events.count("work 1"), 1);
    assert_eq!(events.count("work 4"), 0);
}

/// `send_batch` sends every message, in order, and each is handled once.
fn a_batch_sent_arrives_in_order_and_each_is_handled_once(backend: Backend) {
    let events = Events::default();
    let watched = events.clone();
    backend.run_broker(async move {
        let broker = Broker::current();
        broker.send_batch((0..40).map(work)).await.unwrap();
        broker.send_batch(Vec::<Work>::new()).await.unwrap();
        assert_eq!(broker.length("jobs").await.unwrap(), 40);
        let (addr, handle) = microagent::start(Batched {
            events: watched.clone(),
            pause: Duration::ZERO,
        });
        started(&addr).await;
        watched.seen("work 39").await;
        until_length(&broker, "jobs", 0).await;
        handle.stop();
        handle.await.unwrap();
    });
    let expected: Vec<String> = (0..40).map(|id| format!("work {id}")).collect();
    assert_eq!(events.all(), expected);
}
