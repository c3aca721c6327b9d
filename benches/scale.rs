//! How cost grows with the work: each point against its bare counterpart
//! where one exists, printed and written as CSV (`curve,x,unit,ours,bare`).
//!
//! - `queue_prefetch_{backend}`: messages/s end to end through one consumer
//!   with prefetch 1, 16 and 64, the producer keeping 64 sends in flight
//!   (in-process, Redis, RabbitMQ, NATS JetStream). Bare: on Redis the
//!   batched reliable loop taking up to `prefetch` at a time, on RabbitMQ
//!   `lapin` with `basic_qos(prefetch)`, on NATS an `async-nats` pull
//!   consumer pulling up to `prefetch` at a time, acking each; in-process
//!   has no bare counterpart with a prefetch.
//! - `queue_consumers_{backend}`: 1, 4 and 16 consumers (prefetch 16)
//!   sharing one queue; bare: as many bare loops.
//! - `queue_size_redis`: messages of about 100 B, 10 KB and 1 MB through
//!   Redis (prefetch 16, one consumer), against the bare batched loop.
//! - `agents_start`: seconds to start N agents with a receiver on one
//!   in-process bus (N = 100, 1 000, 10 000) until each answers a message,
//!   against N bare actors; `agents_memory`: bytes allocated per running
//!   agent (a counting allocator: the live bytes freed once all N have
//!   stopped, over N);
//! - `signal_fanout`: seconds for one signal to reach 1, 100 and 10 000
//!   receivers on the in-process bus, against a bare loop of `do_send`s
//!   over as many actors;
//! - `rpc_callers_redis`: calls/s with 1, 10 and 100 concurrent callers,
//!   and `rpc_p50_redis`, `rpc_p99_redis`: a call's latency in seconds.
//!
//! `cargo bench --bench scale [-- --quick] [--csv PATH]`: `--quick` (CI's
//! smoke run) runs fewer messages and rounds and at most 1 000 agents; the
//! CSV goes to `target/scale.csv` unless `--csv` says otherwise. The Redis,
//! RabbitMQ and NATS curves need `REDIS_URL`, `AMQP_URL` and `NATS_URL`
//! (and NATS the feature `nats`).
//! `docs/figures/plot.py` draws `docs/figures/*.svg` from the CSV.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use microagent::broker::{Broker, BrokerConfig, Queue};
use microagent::bus::{Bus, BusConfig, Signal};
use microagent::prelude::*;
use serde::{Deserialize, Serialize};
use support::{done, expect, in_flight, one_done, timed};

mod bare;
mod rpc;
mod support;

#[derive(Queue, Serialize, Deserialize, Clone)]
#[queue(name = "scale")]
struct Order {
    order_id: u64,
    item: String,
}

macro_rules! consumer_agent {
    ($name:ident, $prefetch:literal) => {
        #[derive(Default, MicroAgent)]
        struct $name {
            total: u64,
        }

        #[microagent::hooks]
        impl $name {
            #[consumer(Order, prefetch = $prefetch)]
            fn pack(&mut self, order: Order) {
                self.total += order.order_id;
                one_done();
            }
        }
    };
}

consumer_agent!(Prefetch1, 1);
consumer_agent!(Prefetch16, 16);
consumer_agent!(Prefetch64, 64);

/// Counts the bytes allocated and not yet freed, for the memory per agent
/// (the process's resident size moves with the allocator's reuse of freed
/// memory, not with what agents hold).
struct Counting;

static LIVE: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

// SAFETY: every call is passed to the system allocator unchanged; the
// counter is only arithmetic on the sizes.
unsafe impl std::alloc::GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size(), std::sync::atomic::Ordering::Relaxed);
        // SAFETY: the caller's layout, as `GlobalAlloc::alloc` requires.
        unsafe { std::alloc::System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: std::alloc::Layout) {
        LIVE.fetch_sub(layout.size(), std::sync::atomic::Ordering::Relaxed);
        // SAFETY: `ptr` came from `alloc` above with this layout.
        unsafe { std::alloc::System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Bytes allocated and not freed so far.
fn live() -> usize {
    LIVE.load(std::sync::atomic::Ordering::Relaxed)
}

/// The fan-out signal.
#[derive(Signal, Serialize, Deserialize, Clone)]
#[signal(name = "tick")]
struct Tick {
    n: u64,
}

/// An agent with one receiver.
#[derive(Default, MicroAgent)]
struct Listener {
    total: u64,
}

#[microagent::hooks]
impl Listener {
    #[receiver(Tick)]
    fn tick(&mut self, tick: Tick) {
        self.total += tick.n;
        one_done();
    }
}

/// Its bare twin: the same handler on a plain actor.
#[derive(Default)]
struct BareListener {
    total: u64,
}

impl Actor for BareListener {
    type Context = actix::Context<Self>;
}

/// Answered once the actor runs (as ours answer `GetInfo`).
struct Alive;

impl Message for Alive {
    type Result = ();
}

impl Handler<Alive> for BareListener {
    type Result = ();
    fn handle(&mut self, Alive: Alive, _: &mut actix::Context<Self>) {}
}

struct BareTick(Tick);

impl Message for BareTick {
    type Result = ();
}

impl Handler<BareTick> for BareListener {
    type Result = ();
    fn handle(&mut self, BareTick(tick): BareTick, _: &mut actix::Context<Self>) {
        self.total += tick.n;
        one_done();
    }
}

/// Sixty-four sends in flight, as the producers keep.
const IN_FLIGHT: usize = 64;

/// How the run is sized.
#[derive(Clone, Copy)]
struct Size {
    messages: usize,
    rounds: usize,
    most_agents: usize,
}

/// One point of a curve.
struct Point {
    curve: String,
    x: u64,
    unit: &'static str,
    ours: f64,
    bare: Option<f64>,
}

fn order(order_id: u64, size: usize) -> Order {
    Order {
        order_id,
        item: "a".repeat(size),
    }
}

/// Where the broker of a queue point lives.
#[derive(Clone, Copy, PartialEq)]
enum Backend {
    InProcess,
    Redis,
    Amqp,
    /// JetStream (with the feature `nats`).
    Nats,
}

impl Backend {
    fn name(self) -> &'static str {
        match self {
            Backend::InProcess => "inprocess",
            Backend::Redis => "redis",
            Backend::Amqp => "amqp",
            Backend::Nats => "nats",
        }
    }

    fn url(self) -> Option<String> {
        match self {
            Backend::InProcess => Some(String::new()),
            Backend::Redis => std::env::var("REDIS_URL").ok(),
            Backend::Amqp => std::env::var("AMQP_URL").ok(),
            Backend::Nats if cfg!(feature = "nats") => std::env::var("NATS_URL").ok(),
            Backend::Nats => None,
        }
    }

    fn config(self, url: &str, namespace: &str) -> BrokerConfig {
        match self {
            Backend::InProcess => BrokerConfig::in_process(),
            _ => BrokerConfig::from_url(url)
                .expect("a backend of this build")
                .namespace(namespace),
        }
    }
}

/// Starts `consumers` agents consuming with `prefetch`, once each has
/// started; what keeps them alive.
async fn start_consumers(prefetch: u32, consumers: usize) -> Vec<Box<dyn std::any::Any>> {
    async fn one<A: Agent + Default>() -> Box<dyn std::any::Any> {
        let (addr, handle) = microagent::start(A::default());
        addr.send(GetInfo).await.expect("the agent started");
        Box::new((addr, handle))
    }
    let mut alive = Vec::new();
    for _ in 0..consumers {
        // One agent type per prefetch: the attribute is a constant.
        alive.push(match prefetch {
            1 => one::<Prefetch1>().await,
            16 => one::<Prefetch16>().await,
            _ => one::<Prefetch64>().await,
        });
    }
    alive
}

/// Ours: messages/s through `consumers` consumers with `prefetch`.
fn queue_ours(
    backend: Backend,
    url: &str,
    (prefetch, consumers): (u32, usize),
    size: usize,
    s: Size,
) -> f64 {
    let n = if size > 100_000 {
        (s.messages / 50).max(20)
    } else {
        s.messages
    };
    // JetStream's stream names take no `:`.
    let separator = if backend == Backend::Nats { "-" } else { ":" };
    let namespace = format!("S{}{separator}", uuid::Uuid::new_v4().simple());
    let config = backend.config(url, &namespace);
    microagent::run(async move {
        let broker = Broker::connect(config).await.expect("the broker connects");
        let _alive = start_consumers(prefetch, consumers).await;
        let mut best = Duration::MAX;
        for _ in 0..s.rounds {
            let send_all = in_flight(n, IN_FLIGHT, |i| {
                let broker = broker.clone();
                async move { broker.send(order(i, size)).await.expect("sent") }
            });
            best = best.min(timed(n, send_all).await);
        }
        n as f64 / best.as_secs_f64()
    })
}

/// Bare Redis: `consumers` batched reliable loops taking up to `take`.
fn queue_bare_redis(url: &str, (take, consumers): (usize, usize), size: usize, s: Size) -> f64 {
    let n = if size > 100_000 {
        (s.messages / 50).max(20)
    } else {
        s.messages
    };
    let id = uuid::Uuid::new_v4().simple().to_string();
    let url = url.to_owned();
    microagent::run(async move {
        let client = redis::Client::open(url.as_str()).expect("REDIS_URL");
        let producer = client.get_multiplexed_async_connection().await.unwrap();
        let queue = format!("X{id}:orders");
        for c in 0..consumers {
            let processing = format!("X{id}:processing:{c}");
            bare::redis_consumer::<Order>(&client, (queue.clone(), processing), take).await;
        }
        let mut best = Duration::MAX;
        for _ in 0..s.rounds {
            let push_all = in_flight(n, IN_FLIGHT, |i| {
                let body = serde_json::to_vec(&order(i, size)).expect("plain JSON");
                bare::redis_push(producer.clone(), &queue, body)
            });
            best = best.min(timed(n, push_all).await);
        }
        let mut connection = producer.clone();
        let _: () = redis::cmd("DEL")
            .arg(&queue)
            .query_async(&mut connection)
            .await
            .unwrap_or(());
        n as f64 / best.as_secs_f64()
    })
}

/// Bare RabbitMQ: `consumers` lapin consumers with `basic_qos(prefetch)`.
fn queue_bare_amqp(url: &str, (prefetch, consumers): (u16, usize), s: Size) -> f64 {
    use lapin::options::{ConfirmSelectOptions, QueueDeclareOptions, QueueDeleteOptions};
    use lapin::types::FieldTable;
    use lapin::{Connection, ConnectionProperties};

    let n = s.messages;
    let url = url.to_owned();
    microagent::run(async move {
        let properties = ConnectionProperties::default()
            .with_executor(tokio_executor_trait::Tokio::current())
            .with_reactor(tokio_reactor_trait::Tokio::current());
        let connection = Connection::connect(&url, properties).await.unwrap();
        let publisher = connection.create_channel().await.unwrap();
        publisher
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .unwrap();
        let queue = format!("X{}:orders", uuid::Uuid::new_v4().simple());
        publisher
            .queue_declare(
                &queue,
                QueueDeclareOptions::default(),
                FieldTable::default(),
            )
            .await
            .unwrap();
        for c in 0..consumers {
            bare::amqp_consumer::<Order>(&connection, &queue, (&format!("bare{c}"), prefetch))
                .await;
        }
        let mut best = Duration::MAX;
        for _ in 0..s.rounds {
            let publish_all = in_flight(n, IN_FLIGHT, |i| {
                let body = serde_json::to_vec(&order(i, 100)).expect("plain JSON");
                bare::amqp_publish(&publisher, &queue, body)
            });
            best = best.min(timed(n, publish_all).await);
        }
        let _ = publisher
            .queue_delete(&queue, QueueDeleteOptions::default())
            .await;
        n as f64 / best.as_secs_f64()
    })
}

/// Bare JetStream: a work-queue stream with one durable consumer, pulled
/// by `consumers` pulls of up to `batch` each; publishes await their ack.
#[cfg(feature = "nats")]
fn queue_bare_nats(url: &str, (batch, consumers): (usize, usize), s: Size) -> f64 {
    let n = s.messages;
    let url = url.to_owned();
    microagent::run(async move {
        let client = async_nats::connect(url.as_str())
            .await
            .expect("NATS is reachable");
        let js = async_nats::jetstream::new(client);
        let id = uuid::Uuid::new_v4().simple();
        let (name, subject) = (format!("X{id}"), format!("bare.X{id}"));
        bare::nats_consumers::<Order>(&js, (&name, &subject), (batch, consumers)).await;
        let mut best = Duration::MAX;
        for _ in 0..s.rounds {
            let publish_all = in_flight(n, IN_FLIGHT, |i| {
                let body = serde_json::to_vec(&order(i, 100)).expect("plain JSON");
                bare::nats_publish(js.clone(), subject.clone(), body)
            });
            best = best.min(timed(n, publish_all).await);
        }
        let _ = js.delete_stream(&name).await;
        n as f64 / best.as_secs_f64()
    })
}

/// The queue curves of one backend.
fn queue_curves(backend: Backend, s: Size, points: &mut Vec<Point>) {
    let Some(url) = backend.url() else {
        println!(
            "{} queue curves skipped: its URL is not set",
            backend.name()
        );
        return;
    };
    let n = match backend {
        Backend::InProcess => s.messages * 4,
        _ => s.messages,
    };
    let s = Size { messages: n, ..s };
    let bare = |(prefetch, consumers): (u32, usize), size: usize| match backend {
        Backend::InProcess => None,
        Backend::Redis => Some(queue_bare_redis(
            &url,
            (prefetch as usize, consumers),
            size,
            s,
        )),
        Backend::Amqp => Some(queue_bare_amqp(&url, (prefetch as u16, consumers), s)),
        #[cfg(feature = "nats")]
        Backend::Nats => Some(queue_bare_nats(&url, (prefetch as usize, consumers), s)),
        #[cfg(not(feature = "nats"))]
        Backend::Nats => None,
    };
    for prefetch in [1, 16, 64] {
        let ours = queue_ours(backend, &url, (prefetch, 1), 100, s);
        points.push(Point {
            curve: format!("queue_prefetch_{}", backend.name()),
            x: u64::from(prefetch),
            unit: "msgs/s",
            ours,
            bare: bare((prefetch, 1), 100),
        });
    }
    for consumers in [1, 4, 16] {
        let ours = queue_ours(backend, &url, (16, consumers), 100, s);
        points.push(Point {
            curve: format!("queue_consumers_{}", backend.name()),
            x: consumers as u64,
            unit: "msgs/s",
            ours,
            bare: bare((16, consumers), 100),
        });
    }
    if backend == Backend::Redis {
        for size in [100, 10_000, 1_000_000] {
            let ours = queue_ours(backend, &url, (16, 1), size, s);
            points.push(Point {
                curve: "queue_size_redis".into(),
                x: size as u64,
                unit: "msgs/s",
                ours,
                bare: bare((16, 1), size),
            });
        }
    }
}

/// Start time, memory per agent and one signal's fan-out, at `count`
/// agents with a receiver on the in-process bus.
fn agents_curves(count: usize, s: Size, points: &mut Vec<Point>) {
    let (start, memory, fanout) = microagent::run(async move {
        let bus = Bus::connect(BusConfig::in_process())
            .await
            .expect("a new System has no bus");
        let begin = Instant::now();
        let addrs: Vec<_> = (0..count)
            .map(|_| microagent::start(Listener::default()))
            .collect();
        for (addr, _) in &addrs {
            addr.send(GetInfo).await.expect("started");
        }
        let start = begin.elapsed();
        // Receivers subscribe as they start: all of them before timing.
        let mut fanout = Duration::MAX;
        for _ in 0..s.rounds.max(3) {
            expect(count);
            let finished = done();
            let finished = finished.notified();
            let begin = Instant::now();
            bus.send("bench", Tick { n: 1 }).await.expect("sent");
            finished.await;
            fanout = fanout.min(begin.elapsed());
        }
        // What the running agents hold: the live bytes they free once
        // they have all stopped.
        let with_agents = live();
        let (addrs, handles): (Vec<_>, Vec<_>) = addrs.into_iter().unzip();
        drop(addrs);
        for handle in handles {
            handle.stop();
            let _ = handle.await;
        }
        let memory = with_agents.saturating_sub(live()) as f64 / count as f64;
        (start, memory, fanout)
    });
    let (bare_start, bare_fanout) = microagent::run(async move {
        let begin = Instant::now();
        let addrs: Vec<_> = (0..count)
            .map(|_| BareListener::default().start())
            .collect();
        for addr in &addrs {
            addr.send(Alive).await.expect("started");
        }
        let start = begin.elapsed();
        let mut fanout = Duration::MAX;
        for _ in 0..s.rounds.max(3) {
            let send = async {
                for addr in &addrs {
                    addr.do_send(BareTick(Tick { n: 1 }));
                }
            };
            fanout = fanout.min(timed(count, send).await);
        }
        (start, fanout)
    });
    let x = count as u64;
    points.push(Point {
        curve: "agents_start".into(),
        x,
        unit: "s",
        ours: start.as_secs_f64(),
        bare: Some(bare_start.as_secs_f64()),
    });
    points.push(Point {
        curve: "agents_memory".into(),
        x,
        unit: "bytes/agent",
        ours: memory,
        bare: None,
    });
    points.push(Point {
        curve: "signal_fanout".into(),
        x,
        unit: "s",
        ours: fanout.as_secs_f64(),
        bare: Some(bare_fanout.as_secs_f64()),
    });
}

/// RPC with 1, 10 and 100 concurrent callers on Redis.
fn rpc_curves(s: Size, points: &mut Vec<Point>) {
    let Ok(url) = std::env::var("REDIS_URL") else {
        println!("rpc curves skipped: REDIS_URL is not set");
        return;
    };
    for callers in [1, 10, 100] {
        let n = (s.messages / 2).max(callers * 4);
        let (ours, bare) = rpc::rpc_concurrent(&url, n, callers, s.rounds);
        let x = callers as u64;
        points.push(Point {
            curve: "rpc_callers_redis".into(),
            x,
            unit: "calls/s",
            ours: ours.rate,
            bare: Some(bare.rate),
        });
        points.push(Point {
            curve: "rpc_p50_redis".into(),
            x,
            unit: "s",
            ours: ours.p50.as_secs_f64(),
            bare: Some(bare.p50.as_secs_f64()),
        });
        points.push(Point {
            curve: "rpc_p99_redis".into(),
            x,
            unit: "s",
            ours: ours.p99.as_secs_f64(),
            bare: Some(bare.p99.as_secs_f64()),
        });
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let quick = args.iter().any(|a| a == "--quick");
    let csv = args
        .iter()
        .position(|a| a == "--csv")
        .and_then(|i| args.get(i + 1).cloned())
        .unwrap_or_else(|| concat!(env!("CARGO_MANIFEST_DIR"), "/target/scale.csv").to_owned());
    let s = if quick {
        Size {
            messages: 500,
            rounds: 1,
            most_agents: 1_000,
        }
    } else {
        Size {
            messages: 5_000,
            rounds: 3,
            most_agents: 10_000,
        }
    };
    let mut points = Vec::new();
    // `agents N`: the agent curves at N alone (for a profiler).
    if let Some(i) = args.iter().position(|a| a == "agents") {
        let count = args
            .get(i + 1)
            .and_then(|n| n.parse().ok())
            .unwrap_or(10_000);
        agents_curves(count, s, &mut points);
        for p in &points {
            println!(
                "{} x={}: ours {:.6} bare {:?}",
                p.curve, p.x, p.ours, p.bare
            );
        }
        return;
    }
    for backend in [
        Backend::InProcess,
        Backend::Redis,
        Backend::Amqp,
        Backend::Nats,
    ] {
        queue_curves(backend, s, &mut points);
    }
    for count in [100, 1_000, 10_000] {
        if count <= s.most_agents {
            agents_curves(count, s, &mut points);
        }
    }
    rpc_curves(s, &mut points);

    let mut table = String::from("curve,x,unit,ours,bare\n");
    for p in &points {
        let bare = p.bare.map_or(String::new(), |b| format!("{b:.6}"));
        let ratio = p
            .bare
            .map_or("n/a".to_owned(), |b| format!("{:.2}", p.ours / b));
        println!(
            "{} x={} {}: ours {:.6} bare {} (ours/bare {ratio})",
            p.curve,
            p.x,
            p.unit,
            p.ours,
            if bare.is_empty() { "n/a" } else { &bare }
        );
        let _ = writeln!(table, "{},{},{},{:.6},{bare}", p.curve, p.x, p.unit, p.ours);
    }
    if let Some(dir) = std::path::Path::new(&csv).parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    std::fs::write(&csv, table).expect("the CSV is written");
    println!("scale table: {csv}");
}
