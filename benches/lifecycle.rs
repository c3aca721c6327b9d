//! Starts and stops N agents in one System against actix actors doing the
//! same work, in the same run.
//!
//! The headline (`lifecycle ratio`) is an agent with two async hooks
//! (`pre_start`, `pre_stop`) and a plain `post_start` against an actix
//! actor that does the same async work as an actix user writes it: the
//! start work in `ctx.wait` from `started`, and `stopping` returning
//! `Running::Continue` until the stop work has finished (`HandWritten`).
//! An agent that declares no hooks is measured against a bare actor with
//! no work (`no-hooks ratio`). A bare actor doing the same field changes
//! synchronously in `started`/`stopping` (no async work at all) is shown
//! for information: no agent with async hooks can match it (issue 11).
//!
//! `cargo bench --bench lifecycle [-- N]` (N defaults to 100 000). Each side
//! runs several rounds, alternating, and the best round counts.
//!
//! Two shapes are timed: N in batches of 1 000 (the headline), and all N
//! alive at once. With 100 000 actors alive the time is dominated by glibc's
//! allocator (free-list consolidation, page faults), and that figure moves
//! with allocation size classes: a 16-byte change to the agent's context
//! swung it from 1.20 to 0.97 with the same instruction counts. Batches keep
//! the working set small, and their ratio matches the instruction ratio
//! that callgrind measures.
//!
//! Then the message pair: N messages sent with `do_send` to a running agent
//! (a plain actix `Handler` on it) and to a bare actor with the same
//! handler, until the last is handled.
//!
//! Two more shapes, for information, show what an agent costs by what it
//! declares: one with no hooks against a bare actor with no work (both
//! count their drop), and one whose three hooks are plain `fn`s against
//! the same bare actor as the headline.
//!
//! `cargo bench --bench lifecycle -- N agent` (or `bare`, `hand`) runs one batched
//! round of one side alone, for instruction counts under callgrind;
//! `msg-agent` and `msg-bare` do the same for the message pair, and
//! `plain-agent`, `plain-bare` and `sync-agent` for the other shapes.
//!
//! The last lines are `message ratio: X.XX` (agent rate / bare rate),
//! `no-hooks ratio: X.XX` and `lifecycle ratio: X.XX` (agent time /
//! hand-written time, in batches).

use std::time::{Duration, Instant};

use microagent::prelude::*;
use support::{done, expect, one_done, timed};

mod support;

const ROUNDS: usize = 7;
const BATCH: usize = 1_000;

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

/// The headline's work written by hand as an actix user would write it:
/// the async start work in `ctx.wait` from `started` (nothing else runs
/// until it is done), and `stopping` returning `Running::Continue` until
/// the async stop work has finished. When its last address is dropped,
/// actix does not poll an actor again after `Continue` (the crate's
/// lifecycle notes): `stopping` sends the actor a message, whose arrival
/// wakes it, as a hand-written actor must.
#[derive(Default)]
struct HandWritten {
    opened: u64,
    announced: u64,
    closed: u64,
    /// The stop work has run: the next `stopping` lets it stop.
    stop_work_done: bool,
}

impl Actor for HandWritten {
    type Context = actix::Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.wait(async {}.into_actor(self).map(|(), act, _| {
            act.opened += 1;
            act.announced += 1;
        }));
    }

    fn stopping(&mut self, ctx: &mut Self::Context) -> Running {
        if self.stop_work_done {
            return Running::Stop;
        }
        ctx.wait(async {}.into_actor(self).map(|(), act, ctx| {
            act.closed += 1;
            std::hint::black_box((act.opened, act.announced, act.closed));
            one_done();
            act.stop_work_done = true;
            ctx.stop();
        }));
        ctx.address().do_send(Wake);
        Running::Continue
    }
}

/// Wakes a stopping [`HandWritten`] actor.
struct Wake;

impl Message for Wake {
    type Result = ();
}

impl Handler<Wake> for HandWritten {
    type Result = ();

    fn handle(&mut self, Wake: Wake, _: &mut actix::Context<Self>) {}
}

/// The headline's agent with plain `fn` hooks.
#[derive(Default, MicroAgent)]
struct SyncWorker {
    opened: u64,
    announced: u64,
    closed: u64,
}

#[microagent::hooks]
impl SyncWorker {
    #[on(pre_start)]
    fn open(&mut self) {
        self.opened += 1;
    }

    #[on(post_start)]
    fn announce(&mut self) {
        self.announced += 1;
    }

    #[on(pre_stop)]
    fn close(&mut self) {
        self.closed += 1;
        std::hint::black_box((self.opened, self.announced, self.closed));
        one_done();
    }
}

/// An agent that declares nothing; its drop ends its life.
#[derive(Default, MicroAgent)]
struct Plain;

#[microagent::hooks]
impl Plain {}

impl Drop for Plain {
    fn drop(&mut self) {
        one_done();
    }
}

/// A bare actor with no work; its drop ends its life.
#[derive(Default)]
struct BarePlain;

impl Actor for BarePlain {
    type Context = actix::Context<Self>;
}

impl Drop for BarePlain {
    fn drop(&mut self) {
        one_done();
    }
}

/// The message of the throughput pair.
struct Ping(u64);

impl Message for Ping {
    type Result = ();
}

/// A running agent that handles `Ping`s with a plain actix handler.
#[derive(Default, MicroAgent)]
struct Counter {
    total: u64,
}

#[microagent::hooks]
impl Counter {}

impl Handler<Ping> for Counter {
    type Result = ();

    fn handle(&mut self, Ping(n): Ping, _: &mut microagent::Context<Self>) {
        self.total += n;
        one_done();
    }
}

/// A bare actor with the same handler.
#[derive(Default)]
struct BareCounter {
    total: u64,
}

impl Actor for BareCounter {
    type Context = actix::Context<Self>;
}

impl Handler<Ping> for BareCounter {
    type Result = ();

    fn handle(&mut self, Ping(n): Ping, _: &mut actix::Context<Self>) {
        self.total += n;
        one_done();
    }
}

/// `n` messages to `addr` as fast as `do_send` takes them, until the last
/// is handled.
async fn messages<A>(n: usize, addr: &Addr<A>) -> Duration
where
    A: Actor + Handler<Ping>,
    A::Context: actix::dev::ToEnvelope<A, Ping>,
{
    let send = async {
        for i in 0..n as u64 {
            addr.do_send(Ping(i));
        }
    };
    timed(n, send).await
}

/// Starts `n` actors with `start`, `batch` at a time: starts a batch, drops
/// its addresses (which stops them), waits until the last one has finished
/// its stop work, then the next batch.
///
/// The address buffer is allocated before the clock starts: growing a
/// 100 000-entry vector inside the timing made glibc consolidate its free
/// lists mid-round, which swamped what the two sides do differently.
async fn round<T>(n: usize, batch: usize, start: impl Fn() -> T) -> Duration {
    let done = done();
    let mut addrs: Vec<T> = Vec::with_capacity(batch.min(n));
    let begin = Instant::now();
    let mut left = n;
    while left > 0 {
        let size = batch.min(left);
        expect(size);
        addrs.extend((0..size).map(|_| start()));
        addrs.clear();
        done.notified().await;
        left -= size;
    }
    begin.elapsed()
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let n: usize = args
        .iter()
        .find(|a| a.parse::<usize>().is_ok())
        .map_or(100_000, |a| a.parse().expect("a whole number"));
    // `agent` or `bare`: one batched round of that side alone, to count
    // its instructions (`valgrind --tool=callgrind`, once with N and once
    // with 0: the difference over N is the instructions per life).
    if let Some(side) = args.iter().find(|a| *a == "msg-agent" || *a == "msg-bare") {
        let agent = side == "msg-agent";
        microagent::run(async move {
            if agent {
                let (counter, _handle) = microagent::start(Counter::default());
                messages(n, &counter).await
            } else {
                messages(n, &BareCounter::default().start()).await
            }
        });
        return;
    }
    let sides = [
        "agent",
        "bare",
        "hand",
        "plain-agent",
        "plain-bare",
        "sync-agent",
    ];
    if let Some(side) = args.iter().find(|a| sides.contains(&a.as_str())) {
        let side = side.clone();
        microagent::run(async move {
            match side.as_str() {
                "agent" => round(n, BATCH, || microagent::start(Worker::default()).0).await,
                "hand" => round(n, BATCH, || HandWritten::default().start()).await,
                "plain-agent" => round(n, BATCH, || microagent::start(Plain).0).await,
                "plain-bare" => round(n, BATCH, || BarePlain.start()).await,
                "sync-agent" => {
                    round(n, BATCH, || microagent::start(SyncWorker::default()).0).await
                }
                _ => round(n, BATCH, || Bare::default().start()).await,
            }
        });
        return;
    }

    // The pairs measure the lifecycle untimed (feature `metrics`); the
    // observability line below measures the timing of hooks.
    #[cfg(feature = "metrics")]
    microagent::metrics::time_runs(false);
    // Both sides share one System, run the crate's way.
    let ([(agent, bare), (agent_batched, bare_batched)], (agent_msgs, bare_msgs), shapes, hand) =
        microagent::run(async move {
            let mut best = [(Duration::MAX, Duration::MAX); 2];
            let mut hand = Duration::MAX;
            // Batches first: rounds with all N alive grow and fragment the
            // heap, and batched rounds after them measured that instead.
            for (shape, batch) in [(1, BATCH), (0, n)] {
                for _ in 0..ROUNDS {
                    let bare = round(n, batch, || Bare::default().start()).await;
                    // The handles are dropped: the round waits on `one_done`.
                    let agent = round(n, batch, || microagent::start(Worker::default()).0).await;
                    best[shape].0 = best[shape].0.min(agent);
                    best[shape].1 = best[shape].1.min(bare);
                    if batch == BATCH {
                        let written = round(n, batch, || HandWritten::default().start()).await;
                        hand = hand.min(written);
                    }
                }
            }
            // Throughput: a running agent and a bare actor, the same handler.
            let (counter, _handle) = microagent::start(Counter::default());
            let bare_counter = BareCounter::default().start();
            let mut best_msgs = (Duration::MAX, Duration::MAX);
            for _ in 0..ROUNDS {
                best_msgs.1 = best_msgs.1.min(messages(n, &bare_counter).await);
                best_msgs.0 = best_msgs.0.min(messages(n, &counter).await);
            }
            // By what is declared, in batches: no hooks, plain `fn` hooks.
            let mut shapes = [(Duration::MAX, Duration::MAX); 2];
            for _ in 0..ROUNDS {
                let bare = round(n, BATCH, || BarePlain.start()).await;
                let agent = round(n, BATCH, || microagent::start(Plain).0).await;
                shapes[0] = (shapes[0].0.min(agent), shapes[0].1.min(bare));
                let bare = round(n, BATCH, || Bare::default().start()).await;
                let agent = round(n, BATCH, || microagent::start(SyncWorker::default()).0).await;
                shapes[1] = (shapes[1].0.min(agent), shapes[1].1.min(bare));
            }
            (best, best_msgs, shapes, hand)
        });

    let rate = |d: Duration| n as f64 / d.as_secs_f64();
    let ratio = |agent: Duration, bare: Duration| agent.as_secs_f64() / bare.as_secs_f64();
    println!(
        "all {n} alive at once (allocator-bound, for information): agents {:.0}/s, bare {:.0}/s, ratio {:.2}",
        rate(agent),
        rate(bare),
        ratio(agent, bare)
    );
    println!(
        "agents: {n} in batches of {BATCH} in {agent_batched:?}: {:.0} agents/s",
        rate(agent_batched)
    );
    println!(
        "bare actix actors: {n} in batches of {BATCH} in {bare_batched:?}: {:.0} actors/s",
        rate(bare_batched)
    );
    println!(
        "hand-written actix actors doing the same async work: {n} in batches of {BATCH} in {hand:?}: {:.0} actors/s",
        rate(hand)
    );
    println!(
        "messages: {n} to a running agent in {agent_msgs:?}: {:.0}/s; to a bare actor in {bare_msgs:?}: {:.0}/s",
        rate(agent_msgs),
        rate(bare_msgs)
    );
    println!(
        "by what is declared (batches of {BATCH}, for information): no hooks {:.2}, plain fn hooks {:.2}, async hooks {:.2}",
        ratio(shapes[0].0, shapes[0].1),
        ratio(shapes[1].0, shapes[1].1),
        ratio(agent_batched, bare_batched)
    );
    // Agent rate / bare rate.
    println!("message ratio: {:.2}", ratio(bare_msgs, agent_msgs));
    // Agent time / hand-written time; no hooks against the bare actor.
    println!("no-hooks ratio: {:.2}", ratio(shapes[0].0, shapes[0].1));
    println!("lifecycle ratio: {:.2}", ratio(agent_batched, hand));
    println!(
        "observability cost: lifecycle {} (metrics: hooks timed, vs not)",
        observability_cost(n).map_or("n/a".to_owned(), |r| format!("{r:.2}"))
    );
}

/// Agents started and stopped in batches with their hooks timed (feature
/// `metrics`) against untimed, alternating in one System, each side first
/// every other round: the rate timed / the rate untimed.
fn observability_cost(n: usize) -> Option<f64> {
    #[cfg(feature = "metrics")]
    return Some(microagent::run(async move {
        support::timed_over_untimed(ROUNDS, || {
            round(n, BATCH, || microagent::start(Worker::default()).0)
        })
        .await
    }));
    #[allow(unreachable_code)]
    {
        let _ = n;
        None
    }
}
