//! Timer lateness: 1 000 agents with a 10 ms periodic task, and in the same
//! run 1 000 bare actix actors with `ctx.run_interval` at the same period,
//! each for 3 s (one side after the other, on the same System).
//!
//! `cargo bench --bench timers [-- SECONDS]`. Each run records how late it
//! is against its slot on the fixed-rate grid that starts when its actor's
//! timer starts. Prints p50 and p99 for both; the last line is
//! `timer p99 lateness ms: agent X bare Y`.

use std::cell::RefCell;
use std::time::Duration;

use actix_rt::time::Instant;
use microagent::prelude::*;

const ACTORS: usize = 1_000;
const PERIOD: Duration = Duration::from_millis(10);

thread_local! {
    /// Lateness samples of the side being measured, in microseconds.
    static SAMPLES: RefCell<Vec<u64>> = const { RefCell::new(Vec::new()) };
}

/// Records how late `now` is against the last slot of the grid from `t0`.
fn record(t0: Instant) {
    let since = t0.elapsed().as_nanos();
    let period = PERIOD.as_nanos();
    let late = since % period;
    SAMPLES.with(|s| s.borrow_mut().push((late / 1_000) as u64));
}

#[derive(Default, MicroAgent)]
struct Timed {
    t0: Option<Instant>,
}

#[microagent::hooks]
impl Timed {
    /// The timers start right after the pre_start hooks.
    #[on(pre_start)]
    fn mark(&mut self) {
        self.t0 = Some(Instant::now());
    }

    #[periodic(period = 0.01, timeout = 0.01)]
    fn tick(&mut self) {
        if let Some(t0) = self.t0 {
            record(t0);
        }
    }
}

struct Bare;

impl Actor for Bare {
    type Context = actix::Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        let t0 = Instant::now();
        ctx.run_interval(PERIOD, move |_, _| record(t0));
    }
}

struct Halt;
impl Message for Halt {
    type Result = ();
}
impl Handler<Halt> for Bare {
    type Result = ();
    fn handle(&mut self, _: Halt, ctx: &mut actix::Context<Self>) {
        ctx.stop();
    }
}

/// p50 and p99 in milliseconds, and the sample count.
fn percentiles() -> (f64, f64, usize) {
    SAMPLES.with(|s| {
        let mut samples = std::mem::take(&mut *s.borrow_mut());
        samples.sort_unstable();
        let at = |q: f64| samples[((samples.len() - 1) as f64 * q) as usize] as f64 / 1000.0;
        (at(0.50), at(0.99), samples.len())
    })
}

fn main() {
    let seconds: u64 = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with('-'))
        .map(|a| a.parse().expect("SECONDS is a whole number"))
        .unwrap_or(3);
    let window = Duration::from_secs(seconds);
    let (agent, bare) = microagent::run(async move {
        let bare_addrs: Vec<_> = (0..ACTORS).map(|_| Bare.start()).collect();
        actix_rt::time::sleep(window).await;
        for addr in &bare_addrs {
            addr.do_send(Halt);
        }
        let bare = percentiles();

        let agents: Vec<_> = (0..ACTORS)
            .map(|_| microagent::start(Timed::default()))
            .collect();
        actix_rt::time::sleep(window).await;
        let agent = percentiles();
        for (_, handle) in &agents {
            handle.stop();
        }
        for (addr, handle) in agents {
            handle.await.expect("the agent stops cleanly");
            drop(addr);
        }
        (agent, bare)
    });
    println!(
        "bare run_interval: {} runs, lateness p50 {:.3} ms, p99 {:.3} ms",
        bare.2, bare.0, bare.1
    );
    println!(
        "agent periodic:    {} runs, lateness p50 {:.3} ms, p99 {:.3} ms",
        agent.2, agent.0, agent.1
    );
    println!(
        "timer p99 lateness ms: agent {:.3} bare {:.3}",
        agent.1, bare.1
    );
}
