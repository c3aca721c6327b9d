//! Starts and stops N agents in one System, and N bare actix actors doing the
//! same field changes in `started`/`stopping`, in the same run.
//!
//! `cargo bench --bench lifecycle [-- N]` (N defaults to 100 000). Each side
//! runs several rounds, alternating, and the best round counts. The last
//! line is `lifecycle ratio: X.XX` (agent time / bare time).

use std::cell::Cell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use microagent::prelude::*;
use tokio::sync::Notify;

const ROUNDS: usize = 7;

thread_local! {
    /// Lives still to end in the current round, and who waits for the last.
    /// Thread-local bookkeeping, the same for both sides, so neither actor
    /// carries more than the fields it changes.
    static LEFT: Cell<usize> = const { Cell::new(0) };
    static DONE: Rc<Notify> = Rc::new(Notify::new());
}

fn one_done() {
    let left = LEFT.get() - 1;
    LEFT.set(left);
    if left == 0 {
        DONE.with(|done| done.notify_one());
    }
}

#[derive(Default, MicroAgent)]
struct Worker {
    opened: u64,
    announced: u64,
    closed: u64,
}

#[microagent::hooks]
impl Worker {
    #[on(pre_start)]
    async fn open(&mut self) {
        self.opened += 1;
    }

    #[on(post_start)]
    fn announce(&mut self) {
        self.announced += 1;
    }

    #[on(pre_stop)]
    async fn close(&mut self) {
        self.closed += 1;
        std::hint::black_box((self.opened, self.announced, self.closed));
        one_done();
    }
}

#[derive(Default)]
struct Bare {
    opened: u64,
    announced: u64,
    closed: u64,
}

impl Actor for Bare {
    type Context = actix::Context<Self>;

    fn started(&mut self, _: &mut Self::Context) {
        self.opened += 1;
        self.announced += 1;
    }

    fn stopping(&mut self, _: &mut Self::Context) -> Running {
        self.closed += 1;
        std::hint::black_box((self.opened, self.announced, self.closed));
        one_done();
        Running::Stop
    }
}

/// Starts `n` actors with `start`, drops every address (which stops them),
/// and waits until the last one has finished its stop work.
async fn round<T>(n: usize, start: impl Fn() -> T) -> Duration {
    LEFT.set(n);
    let done = DONE.with(Rc::clone);
    let begin = Instant::now();
    let addrs: Vec<T> = (0..n).map(|_| start()).collect();
    drop(addrs);
    done.notified().await;
    begin.elapsed()
}

fn main() {
    let n: usize = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with('-'))
        .map(|a| a.parse().expect("N must be a whole number"))
        .unwrap_or(100_000);

    // Both sides share one System, run the crate's way.
    let (agent, bare) = microagent::run(async move {
        let mut agent = Duration::MAX;
        let mut bare = Duration::MAX;
        for _ in 0..ROUNDS {
            bare = bare.min(round(n, || Bare::default().start()).await);
            agent = agent.min(
                // The handles are dropped: the round waits on `one_done`.
                round(n, || microagent::start(Worker::default()).0).await,
            );
        }
        (agent, bare)
    });

    let rate = |d: Duration| n as f64 / d.as_secs_f64();
    println!("agents: {n} in {agent:?}: {:.0} agents/s", rate(agent));
    println!(
        "bare actix actors: {n} in {bare:?}: {:.0} actors/s",
        rate(bare)
    );
    println!(
        "lifecycle ratio: {:.2}",
        agent.as_secs_f64() / bare.as_secs_f64()
    );
}
