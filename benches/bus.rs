//! Signals per second through the in-process bus to an agent's receiver,
//! against the same payload sent as a plain actix message to a bare actor,
//! in the same run and the same System.
//!
//! `cargo bench --bench bus [-- N]` (N signals per round, 100 000 by
//! default). Each side runs several rounds, alternating; the best counts.
//! The last line is `bus ratio: local X.XX` (bus rate / bare rate). The
//! Redis and RPC pairs come with the Redis backend.

use std::time::{Duration, Instant};

use microagent::bus::{Bus, Signal};
use microagent::prelude::*;
use serde::{Deserialize, Serialize};
use support::{done, expect, one_done};

mod support;

const ROUNDS: usize = 5;

/// The payload, as a signal.
#[derive(Signal, Serialize, Deserialize, Clone)]
struct OrderPlaced {
    order_id: u64,
    item: String,
}

/// The same payload, as a plain actix message.
#[derive(Clone)]
struct Placed(OrderPlaced);

impl Message for Placed {
    type Result = ();
}

#[derive(Default, MicroAgent)]
struct Receiving {
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

fn payload(order_id: u64) -> OrderPlaced {
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

    let (bus_time, bare_time) = microagent::run(async move {
        let bare = Bare::default().start();
        let (agent, _handle) = microagent::start(Receiving::default());
        // Messages wait for start-up: once this answers, it is subscribed.
        agent.send(GetInfo).await.expect("the agent started");
        let bus = Bus::current();
        let (mut best_bus, mut best_bare) = (Duration::MAX, Duration::MAX);
        for _ in 0..ROUNDS {
            let bare_time = round(n, |i| bare.do_send(Placed(payload(i)))).await;
            let bus_time = round(n, |i| {
                // In-process `send` completes without suspending.
                ready_now(bus.send("bench", payload(i))).expect("sent");
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
    println!("bus ratio: local {:.2}", rate(bus_time) / rate(bare_time));
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
