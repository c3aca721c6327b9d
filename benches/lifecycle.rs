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

/// Counts lives that ended and wakes the bench when all have.
#[derive(Clone, Default)]
struct Finish {
    left: Rc<Cell<usize>>,
    done: Rc<Notify>,
}

impl Finish {
    fn one_done(&self) {
        let left = self.left.get() - 1;
        self.left.set(left);
        if left == 0 {
            self.done.notify_one();
        }
    }
}

#[derive(Default, MicroAgent)]
struct Worker {
    opened: u64,
    announced: u64,
    closed: u64,
    finish: Finish,
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
        self.finish.one_done();
    }
}

struct Bare {
    opened: u64,
    announced: u64,
    closed: u64,
    finish: Finish,
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
        self.finish.one_done();
        Running::Stop
    }
}

/// Starts `n` actors with `start`, drops every address (which stops them),
/// and waits until the last one has finished its stop work.
async fn round<T>(n: usize, start: impl Fn(Finish) -> T) -> Duration {
    let finish = Finish::default();
    finish.left.set(n);
    let begin = Instant::now();
    let addrs: Vec<T> = (0..n).map(|_| start(finish.clone())).collect();
    drop(addrs);
    finish.done.notified().await;
    begin.elapsed()
}

fn main() {
    let n: usize = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with('-'))
        .map(|a| a.parse().expect("N must be a whole number"))
        .unwrap_or(100_000);

    let system = actix_rt::System::new();
    let (agent, bare) = system.block_on(async move {
        let mut agent = Duration::MAX;
        let mut bare = Duration::MAX;
        for _ in 0..ROUNDS {
            bare = bare.min(
                round(n, |finish| {
                    Bare {
                        opened: 0,
                        announced: 0,
                        closed: 0,
                        finish,
                    }
                    .start()
                })
                .await,
            );
            agent = agent.min(
                round(n, |finish| {
                    // The handle is dropped: the bench waits on `finish`.
                    microagent::start(Worker {
                        finish,
                        ..Default::default()
                    })
                    .0
                })
                .await,
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
