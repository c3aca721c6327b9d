//! Periodic and cron tasks. Periodic tests run in the test kit's virtual
//! time (Tokio's clock paused), so their instants are exact to the
//! millisecond.

mod support;

use std::time::Duration;

use actix_rt::time::{sleep, Instant};
use microagent::prelude::*;
use microagent::testkit::TestKit;
use support::{Boom, Events};

/// Virtual milliseconds since `base`, to the nearest 10: tokio's timer has
/// 1 ms ticks and rounds deadlines up, so a due time can land up to ~2 ms
/// late; the schedules under test are hundreds of milliseconds apart.
fn ms(base: Instant) -> u128 {
    (base.elapsed().as_millis() + 5) / 10 * 10
}

/// Everything a test agent needs to record timed events.
#[derive(Clone)]
struct Clock {
    events: Events,
    base: Instant,
}

impl Default for Clock {
    fn default() -> Self {
        Clock {
            events: Events::default(),
            base: Instant::now(),
        }
    }
}

impl Clock {
    fn at(&self, what: &str) {
        self.events.push(format!("{what}@{}", ms(self.base)));
    }
}

/// Runs `agent` in virtual time (the test kit's) until `until` virtual
/// ms, then stops it.
fn run_for<A: Agent>(
    make: impl FnOnce(Clock) -> A + 'static,
    until: u64,
) -> (Events, Result<(), AgentError>) {
    let events = Events::default();
    let recorded = events.clone();
    let outcome = TestKit::new()
        .virtual_time(chrono::Utc::now())
        .run(|kit| async move {
            let clock = Clock {
                events: recorded,
                base: Instant::now(),
            };
            let agent = kit.start(make(clock));
            kit.advance(Duration::from_millis(until)).await;
            agent.stop().await
        });
    (events, outcome)
}

fn runs(events: &Events, task: &str) -> Vec<String> {
    events
        .all()
        .into_iter()
        .filter(|e| e.starts_with(task))
        .collect()
}

/// pre_start takes 200 ms and post_start 300 ms; the task is due 100 ms
/// after the end of pre_start, every second.
#[derive(Default, MicroAgent)]
struct Ordered {
    clock: Clock,
}

#[microagent::hooks]
impl Ordered {
    #[on(pre_start)]
    async fn open(&mut self) {
        sleep(Duration::from_millis(200)).await;
        self.clock.at("pre_start:end");
    }

    #[on(post_start)]
    async fn announce(&mut self) {
        sleep(Duration::from_millis(300)).await;
        self.clock.at("post_start:end");
    }

    #[periodic(period = 1.0, start_after = 0.1)]
    fn tick(&mut self) {
        self.clock.at("tick");
    }

    #[on(pre_stop)]
    fn close(&mut self) {
        self.clock.at("pre_stop");
    }
}

#[test]
fn timers_start_after_pre_start_and_before_post_start() {
    let (events, outcome) = run_for(|clock| Ordered { clock }, 2_400);
    outcome.unwrap();
    // Due at 300 ms (200 + 100), while post_start still has the agent: the
    // first run waits for it; the schedule stays anchored at the end of
    // pre_start (1 300, 2 300), not at the end of post_start (600, 1 600).
    assert_eq!(
        events.all(),
        [
            "pre_start:end@200",
            "post_start:end@500",
            "tick@500",
            "tick@1300",
            "tick@2300",
            "pre_stop@2400",
        ]
    );
}

/// Each run takes `busy` ms of the agent's time.
#[derive(Default, MicroAgent)]
struct Busy {
    clock: Clock,
    busy: u64,
    count: u32,
}

#[microagent::hooks]
impl Busy {
    #[periodic(period = 1.0, timeout = 10.0)]
    async fn work(&mut self) {
        self.count += 1;
        self.clock.at(&format!("work{}:start", self.count));
        sleep(Duration::from_millis(self.busy)).await;
        self.clock.at(&format!("work{}:end", self.count));
    }
}

#[test]
fn the_schedule_is_fixed_rate_and_does_not_drift() {
    let (events, _) = run_for(
        |clock| Busy {
            clock,
            busy: 300,
            count: 0,
        },
        3_500,
    );
    assert_eq!(
        runs(&events, "work"),
        [
            "work1:start@0",
            "work1:end@300",
            "work2:start@1000",
            "work2:end@1300",
            "work3:start@2000",
            "work3:end@2300",
            "work4:start@3000",
            "work4:end@3300",
        ]
    );
}

#[test]
fn a_run_still_going_at_its_next_due_time_skips_it_without_replay() {
    let (events, _) = run_for(
        |clock| Busy {
            clock,
            busy: 2_500,
            count: 0,
        },
        7_000,
    );
    // Due at 1 000 and 2 000 while run 1 is going: skipped, not replayed
    // in a burst at 2 500; the next run is at 3 000. Run 3, going when the
    // stop comes at 7 000, finishes first.
    assert_eq!(
        runs(&events, "work"),
        [
            "work1:start@0",
            "work1:end@2500",
            "work2:start@3000",
            "work2:end@5500",
            "work3:start@6000",
            "work3:end@8500",
        ]
    );
}

/// A run that would take 5 s, with a 200 ms timeout.
#[derive(Default, MicroAgent)]
struct Slow {
    clock: Clock,
    started: u32,
}

#[microagent::hooks]
impl Slow {
    #[periodic(period = 1.0, timeout = 0.2)]
    async fn crawl(&mut self) {
        // Kept although the run is cancelled: the agent comes back.
        self.started += 1;
        self.clock.at(&format!("crawl{}", self.started));
        sleep(Duration::from_secs(5)).await;
        self.clock.at("never");
    }

    #[on(pre_stop)]
    fn close(&mut self) {
        self.clock.at(&format!("pre_stop:started={}", self.started));
    }
}

#[test]
fn a_run_past_its_timeout_is_cancelled_and_the_schedule_goes_on() {
    let (events, outcome) = run_for(|clock| Slow { clock, started: 0 }, 2_500);
    outcome.unwrap();
    assert_eq!(
        events.all(),
        [
            "crawl1@0",
            "crawl2@1000",
            "crawl3@2000",
            "pre_stop:started=3@2500"
        ]
    );
}

/// Fails, then panics, then succeeds, again and again.
#[derive(Default, MicroAgent)]
struct Unreliable {
    clock: Clock,
    n: u32,
}

#[microagent::hooks]
impl Unreliable {
    #[periodic(period = 0.5)]
    async fn attempt(&mut self) -> Result<(), Boom> {
        self.n += 1;
        self.clock.at(&format!("attempt{}", self.n));
        match self.n % 3 {
            1 => Err(Boom("flaky")),
            2 => panic!("bug"),
            _ => Ok(()),
        }
    }

    #[periodic(period = 0.5, start_after = 0.25)]
    fn sync_attempt(&mut self) -> Result<(), Boom> {
        Err(Boom("sync flaky"))
    }
}

#[test]
fn failing_and_panicking_runs_are_logged_and_the_agent_keeps_running() {
    let (events, outcome) = run_for(|clock| Unreliable { clock, n: 0 }, 2_100);
    outcome.unwrap();
    assert_eq!(
        runs(&events, "attempt"),
        [
            "attempt1@0",
            "attempt2@500",
            "attempt3@1000",
            "attempt4@1500",
            "attempt5@2000"
        ]
    );
}

/// Stopped while a run is in progress.
#[test]
fn a_run_in_progress_finishes_before_pre_stop_and_no_new_run_starts() {
    let events = Events::default();
    let recorded = events.clone();
    microagent::run(async move {
        tokio::time::pause();
        let clock = Clock {
            events: recorded,
            base: Instant::now(),
        };
        let (addr, handle) = microagent::start(Busy {
            clock,
            busy: 500,
            count: 0,
        });
        sleep(Duration::from_millis(250)).await;
        handle.stop();
        handle.await.unwrap();
        // Long after: nothing more ran.
        sleep(Duration::from_secs(5)).await;
        drop(addr);
    });
    assert_eq!(events.all(), ["work1:start@0", "work1:end@500"]);
}

/// A cron task every second (six fields: seconds first), in real time.
#[derive(Default, MicroAgent)]
struct Ticker {
    seconds: Vec<i64>,
}

#[microagent::hooks]
impl Ticker {
    #[cron("* * * * * *", timeout = 0.5)]
    fn each_second(&mut self, ctx: &mut Context<Self>) {
        self.seconds.push(chrono::Utc::now().timestamp());
        if self.seconds.len() == 2 {
            ctx.stop();
        }
    }

    #[on(pre_stop)]
    fn check(&mut self) {
        // Two runs, in two different wall-clock seconds.
        assert_eq!(self.seconds.len(), 2);
        assert!(self.seconds[1] > self.seconds[0], "{:?}", self.seconds);
    }
}

#[test]
fn a_cron_task_runs_on_its_wall_clock_schedule() {
    microagent::run_agent(Ticker::default()).unwrap();
}

/// Starts `make`'s agent in virtual time, asks it for its info at `at`
/// virtual ms, then stops it.
fn info_at<A: Agent>(make: impl FnOnce(Clock) -> A + 'static, at: u64) -> microagent::AgentInfo {
    TestKit::new()
        .virtual_time(chrono::Utc::now())
        .run(|kit| async move {
            let agent = kit.start(make(Clock::default()));
            kit.advance(Duration::from_millis(at)).await;
            let info = agent.addr().send(GetInfo).await.expect("the agent answers");
            agent
                .stop()
                .await
                .expect("task failures do not fail the agent");
            info
        })
}

#[test]
fn failed_panicked_timed_out_and_skipped_runs_are_counted_in_the_info() {
    // attempt: runs 1..=5 at 0..2000 ms: Err, panic, Ok, Err, panic.
    // sync_attempt: fails at 250, 750, 1250 and 1750 ms.
    let info = info_at(|clock| Unreliable { clock, n: 0 }, 2_100);
    let [attempt, sync_attempt] = [&info.periodic[0].runs, &info.periodic[1].runs];
    assert_eq!(
        (attempt.failed, attempt.panicked, attempt.timed_out),
        (2, 2, 0)
    );
    assert_eq!((sync_attempt.failed, sync_attempt.panicked), (4, 0));
    assert!(attempt.last_failure.is_some() && sync_attempt.last_failure.is_some());

    // Three runs, each cancelled by its 200 ms timeout.
    let info = info_at(|clock| Slow { clock, started: 0 }, 2_500);
    let crawl = &info.periodic[0].runs;
    assert_eq!((crawl.failed, crawl.timed_out, crawl.skipped), (0, 3, 0));

    // Runs of 2.5 s every second: 1 000, 2 000, 4 000 and 5 000 are skipped.
    let info = info_at(
        |clock| Busy {
            clock,
            busy: 2_500,
            count: 0,
        },
        5_800,
    );
    let work = &info.periodic[0].runs;
    assert_eq!((work.skipped, work.failed, work.timed_out), (4, 0, 0));
    assert_eq!(work.last_failure, None);

    // Described from the type, nothing has run.
    assert_eq!(
        Busy::describe().periodic[0].runs,
        microagent::TaskRuns::default()
    );
}

/// A sync run cannot be cancelled: one that returns after its timeout is
/// counted as timed out when it returns. (Real time: a blocking sleep does
/// not advance tokio's virtual clock.)
#[derive(Default, MicroAgent)]
struct Heavy {
    events: Events,
}

#[microagent::hooks]
impl Heavy {
    #[periodic(period = 0.02, timeout = 0.001)]
    fn crunch(&mut self) {
        std::thread::sleep(Duration::from_millis(5));
        self.events.push("crunch");
    }
}

#[test]
fn a_sync_run_past_its_timeout_is_counted_as_timed_out() {
    let events = Events::default();
    let agent = Heavy {
        events: events.clone(),
    };
    let info = microagent::run(async move {
        let (addr, handle) = microagent::start(agent);
        while events.count("crunch") < 2 {
            sleep(Duration::from_millis(5)).await;
        }
        let info = addr.send(GetInfo).await.expect("the agent answers");
        handle.stop();
        handle.await.expect("task failures do not fail the agent");
        info
    });
    let runs = &info.periodic[0].runs;
    assert!(runs.timed_out >= 2, "{runs:?}");
    assert_eq!((runs.failed, runs.panicked), (0, 0));
}

/// Its schedule from constants, as the Python original takes any
/// expression: a period of 2 × 0.25 s, after a constant's delay.
const DELAY_SECONDS: u64 = 1;
const QUARTER: f64 = 0.25;

#[derive(Default, MicroAgent)]
struct Configured {
    clock: Clock,
}

#[microagent::hooks]
impl Configured {
    #[periodic(period = 2.0 * QUARTER, start_after = DELAY_SECONDS)]
    fn tick(&mut self) {
        self.clock.at("tick");
    }
}

#[test]
fn periods_and_delays_may_be_constant_expressions() {
    let (events, outcome) = run_for(|clock| Configured { clock }, 2_100);
    outcome.unwrap();
    assert_eq!(
        runs(&events, "tick"),
        ["tick@1000", "tick@1500", "tick@2000"]
    );
    let info = Configured::describe();
    assert_eq!(info.periodic[0].period, Duration::from_millis(500));
    assert_eq!(info.periodic[0].start_after, Duration::from_secs(1));
}
