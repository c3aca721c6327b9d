//! The bus against the bare library doing the same work, in the same run:
//!
//! - local: signals per second through the in-process bus to an agent's
//!   receiver, against the same payload sent as a plain actix message to a
//!   bare actor;
//! - redis: signals per second from our Redis bus to an agent's receiver,
//!   against a bare `redis` crate PUBLISH + PSUBSCRIBE loop moving the same
//!   JSON (both publish every signal at once over one multiplexed
//!   connection and count what one subscribing connection delivers);
//! - rpc: sequential RPC round trips per second over Redis, against a bare
//!   `redis` crate request/answer loop on the same channels;
//! - nats, nats-rpc: the signals and sequential RPC pairs on NATS, against
//!   the bare `async-nats` client (publish + subscribe; a request on the
//!   caller's own inbox, answered by a bare responder), with `NATS_URL` and
//!   the feature `nats`;
//! - rpc100: 100 concurrent callers, each calling one call after another,
//!   against bare `redis` callers as a user would write them (one response
//!   subscription, answers routed to the waiting caller by request id);
//!   calls per second and the latency of a call (p50, p99);
//! - observability (feature `metrics`): the local side with its
//!   receiver's runs timed into the Prometheus recorder, against the same
//!   untimed, alternating in one System (the pairs above run untimed):
//!   `observability cost: bus X.XX` (timed / untimed).
//! - spans (feature `tracing`): the local pair's bus side with a
//!   subscriber (a `tracing-subscriber` registry) recording each send's
//!   and each run's span, against the same with none:
//!   `observability cost: spans X.XX` (with / without, in signals/s).
//!
//! `cargo bench --bench bus [-- N]` (N in-process signals per round,
//! 100 000 by default; N/2 Redis and NATS signals, N/100 sequential RPC
//! calls on Redis and N/20 on NATS, N/5 concurrent ones). The NATS calls
//! are the more: a NATS call takes ~0.15 ms, mostly waiting, and a round
//! of a thousand of them swings by a fifth from run to run. The Redis
//! pairs need `REDIS_URL`. Each side runs several rounds, alternating;
//! the best counts. The last line is `bus ratio: local X.XX redis X.XX
//! rpc X.XX rpc100 X.XX nats X.XX nats-rpc X.XX` (ours / bare; `n/a`
//! without `REDIS_URL` or `NATS_URL`). `-- N rpc100` runs the concurrent
//! RPC pair alone, `-- N nats` the NATS pairs, `-- N nats-rpc` the NATS
//! RPC pair (each for a profiler).

use std::time::{Duration, Instant};

use microagent::bus::{AgentBus, Bus, BusConfig, Signal};
use microagent::prelude::*;
use serde::{Deserialize, Serialize};
use support::{done, expect, one_done};

#[cfg(feature = "nats")]
mod nats_pairs;
mod redis_pairs;
mod rpc;
mod support;

pub(crate) const ROUNDS: usize = 5;

/// The payload, as a signal.
#[derive(Signal, Serialize, Deserialize, Clone)]
pub(crate) struct OrderPlaced {
    pub(crate) order_id: u64,
    pub(crate) item: String,
}

/// The same payload, as a plain actix message.
#[derive(Clone)]
struct Placed(OrderPlaced);

impl Message for Placed {
    type Result = ();
}

#[derive(Default, MicroAgent)]
pub(crate) struct Receiving {
    total: u64,
}

#[microagent::hooks]
impl Receiving {
    #[receiver(OrderPlaced)]
    fn placed(&mut self, signal: OrderPlaced) {
        self.total += signal.order_id;
        one_done();
    }
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
    fn handle(&mut self, Placed(signal): Placed, _: &mut actix::Context<Self>) {
        self.total += signal.order_id;
        one_done();
    }
}

pub(crate) fn payload(order_id: u64) -> OrderPlaced {
    OrderPlaced {
        order_id,
        item: "apple".into(),
    }
}

async fn round(n: usize, send: impl Fn(u64)) -> Duration {
    expect(n);
    let done = done();
    let finished = done.notified();
    let start = Instant::now();
    for i in 0..n as u64 {
        send(i);
    }
    finished.await;
    start.elapsed()
}

fn main() {
    let n: usize = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with('-'))
        .map(|a| a.parse().expect("N must be a whole number"))
        .unwrap_or(100_000);
    // `rpc100`: the pair of 100 concurrent callers alone (for a profiler).
    if std::env::args().any(|a| a == "rpc100") {
        let url = std::env::var("REDIS_URL").expect("the rpc100 pair needs REDIS_URL");
        rpc100(&url, (n / 5).max(100));
        return;
    }
    // `nats`: the NATS pairs alone (for a profiler).
    if std::env::args().any(|a| a == "nats") {
        nats_pairs(n);
        return;
    }
    #[cfg(feature = "nats")]
    if std::env::args().any(|a| a == "nats-rpc") {
        let url = std::env::var("NATS_URL").expect("the nats-rpc pair needs NATS_URL");
        nats_pairs::rpc(&url, (n / 20).max(1));
        return;
    }
    let local = local_pair(n);
    let redis = std::env::var("REDIS_URL").ok().map(|url| {
        let concurrent = rpc100(&url, (n / 5).max(100));
        (
            redis_pairs::signals(&url, (n / 2).max(1)),
            redis_pairs::rpc(&url, (n / 100).max(1)),
            concurrent,
        )
    });
    if redis.is_none() {
        println!("redis and rpc pairs skipped: REDIS_URL is not set");
    }
    let nats = nats_pairs(n);
    let shown = |ratio: Option<f64>| ratio.map_or("n/a".to_owned(), |r| format!("{r:.2}"));
    println!(
        "observability cost: bus {} (metrics: the receiver's runs timed, vs not)",
        shown(observability_cost(n))
    );
    println!(
        "observability cost: spans {} (tracing: a subscriber recording every send's and run's span, vs none)",
        shown(spans_cost(n))
    );
    println!(
        "bus ratio: local {:.2} redis {} rpc {} rpc100 {} nats {} nats-rpc {}",
        local,
        shown(redis.map(|r| r.0)),
        shown(redis.map(|r| r.1)),
        shown(redis.map(|r| r.2)),
        shown(nats.map(|r| r.0)),
        shown(nats.map(|r| r.1)),
    );
}

/// The NATS pairs (signals, sequential RPC) when `NATS_URL` is set and
/// the `nats` feature is on.
fn nats_pairs(n: usize) -> Option<(f64, f64)> {
    #[cfg(feature = "nats")]
    if let Ok(url) = std::env::var("NATS_URL") {
        return Some((
            nats_pairs::signals(&url, (n / 2).max(1)),
            nats_pairs::rpc(&url, (n / 20).max(1)),
        ));
    }
    println!("nats pairs skipped: NATS_URL is not set or the nats feature is off");
    let _ = n;
    None
}

/// The pair of 100 concurrent callers; prints both sides, returns ours /
/// bare.
fn rpc100(url: &str, n: usize) -> f64 {
    let (ours, bare) = rpc::rpc_concurrent(url, n, 100, ROUNDS);
    for (name, calls) in [
        ("bus rpc (redis), 100 callers", ours),
        ("bare redis rpc, 100 callers", bare),
    ] {
        println!(
            "{name}: {:.0} calls/s, p50 {:?}, p99 {:?}",
            calls.rate, calls.p50, calls.p99
        );
    }
    ours.rate / bare.rate
}

/// The in-process bus of a new System as the agent `bench` sends on it,
/// and the started agent that receives (stopped when its handle drops).
#[cfg_attr(not(any(feature = "metrics", feature = "tracing")), allow(dead_code))]
async fn receiving() -> (AgentBus, microagent::AgentHandle<Receiving>) {
    let bus = Bus::connect(BusConfig::in_process())
        .await
        .expect("a new System has no bus yet");
    let (agent, handle) = microagent::start(Receiving::default());
    agent.send(GetInfo).await.expect("the agent started");
    (AgentBus::new(bus, "bench"), handle)
}

/// Our local side with its receiver's runs timed (feature `metrics`, the
/// Prometheus recorder installed) against not timed, alternating in one
/// System: the rate with / the rate without.
fn observability_cost(n: usize) -> Option<f64> {
    #[cfg(feature = "metrics")]
    return Some(microagent::run(async move {
        let (bus, _receiving) = receiving().await;
        support::timed_over_untimed(ROUNDS, || {
            round(n, |i| ready_now(bus.send(payload(i))).expect("sent"))
        })
        .await
    }));
    #[allow(unreachable_code)]
    {
        let _ = n;
        None
    }
}

/// The in-process signals with a subscriber recording their spans, over
/// the same without one (rates), when the `tracing` feature is on. The
/// rounds without run first: once a subscriber was set, the crate makes
/// spans for good.
fn spans_cost(n: usize) -> Option<f64> {
    #[cfg(feature = "tracing")]
    return Some(microagent::run(async move {
        #[cfg(feature = "metrics")]
        microagent::metrics::time_runs(false);
        let (bus, _receiving) = receiving().await;
        let mut best = [Duration::MAX; 2];
        for (with, best) in best.iter_mut().enumerate() {
            // The sender and the agent share this thread: a thread's
            // default subscriber sees both.
            let _subscriber = (with == 1)
                .then(|| tracing::subscriber::set_default(tracing_subscriber::registry()));
            for _ in 0..ROUNDS {
                let took = round(n, |i| ready_now(bus.send(payload(i))).expect("sent")).await;
                *best = (*best).min(took);
            }
        }
        best[0].as_secs_f64() / best[1].as_secs_f64()
    }));
    #[allow(unreachable_code)]
    {
        let _ = n;
        None
    }
}

/// The in-process pair; returns ours / bare.
fn local_pair(n: usize) -> f64 {
    // The bus's own cost: runs untimed (the observability line measures
    // the timing).
    #[cfg(feature = "metrics")]
    microagent::metrics::time_runs(false);
    let (bus_time, bare_time) = microagent::run(async move {
        // Explicitly the in-process bus, whatever the environment says.
        let bus = Bus::connect(BusConfig::in_process())
            .await
            .expect("a new System has no bus yet");
        // As an agent sends: `ctx.bus()`, its name shared with receivers.
        let bus = AgentBus::new(bus, "bench");
        let bare = Bare::default().start();
        let (agent, _handle) = microagent::start(Receiving::default());
        // Messages wait for start-up: once this answers, it is subscribed.
        agent.send(GetInfo).await.expect("the agent started");
        let (mut best_bus, mut best_bare) = (Duration::MAX, Duration::MAX);
        for _ in 0..ROUNDS {
            let bare_time = round(n, |i| bare.do_send(Placed(payload(i)))).await;
            let bus_time = round(n, |i| {
                // In-process `send` completes without suspending.
                ready_now(bus.send(payload(i))).expect("sent");
            })
            .await;
            best_bare = best_bare.min(bare_time);
            best_bus = best_bus.min(bus_time);
        }
        (best_bus, best_bare)
    });
    let rate = |d: Duration| n as f64 / d.as_secs_f64();
    println!(
        "bus (in-process): {n} signals in {bus_time:?}: {:.0} signals/s",
        rate(bus_time)
    );
    println!(
        "bare actix: {n} messages in {bare_time:?}: {:.0} messages/s",
        rate(bare_time)
    );
    rate(bus_time) / rate(bare_time)
}

/// Polls a future that completes without suspending (the in-process
/// `send`), so both sides send from the same plain loop.
fn ready_now<F: std::future::Future>(future: F) -> F::Output {
    let mut future = std::pin::pin!(future);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match future.as_mut().poll(&mut cx) {
        std::task::Poll::Ready(output) => output,
        std::task::Poll::Pending => panic!("the in-process send suspended"),
    }
}
