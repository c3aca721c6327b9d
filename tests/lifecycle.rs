//! Start and stop semantics, each on a real actix System.

mod support;

use microagent::prelude::*;
use support::{pause, Events};

/// Pings an agent; the reply says whether `pre_start` had set it up.
struct Ping;
impl Message for Ping {
    type Result = bool;
}

/// An agent whose start-up takes real time and that logs every step.
#[derive(Default, MicroAgent)]
struct Service {
    events: Events,
    conn: Option<String>,
}

#[microagent::hooks]
impl Service {
    #[on(pre_start)]
    async fn open(&mut self) {
        self.events.push("pre_start:open:begin");
        pause().await;
        self.conn = Some("db".into());
        self.events.push("pre_start:open:end");
    }

    #[on(pre_start)]
    fn warm(&mut self) {
        // Runs only after `open` completed, so the connection is there.
        assert!(self.conn.is_some());
        self.events.push("pre_start:warm");
    }

    #[on(post_start)]
    async fn announce(&mut self) {
        pause().await;
        self.events.push("post_start:announce");
    }

    #[on(post_start)]
    fn ready(&mut self, ctx: &mut Context<Self>) {
        assert_eq!(ctx.phase(), Phase::Starting);
        self.events.push("post_start:ready");
    }

    #[on(pre_stop)]
    async fn close(&mut self, addr: Addr<Self>) {
        // Still alive: the address works and the state is intact.
        assert!(addr.connected());
        assert_eq!(self.conn.as_deref(), Some("db"));
        self.events.push("pre_stop:close:begin");
        pause().await;
        self.conn = None;
        self.events.push("pre_stop:close:end");
    }

    #[on(pre_stop)]
    fn report(&mut self, ctx: &mut Context<Self>) {
        assert_eq!(ctx.phase(), Phase::Stopping);
        assert!(self.conn.is_none(), "pre_stop hooks run in order");
        self.events.push("pre_stop:report");
    }
}

impl Handler<Ping> for Service {
    type Result = bool;
    fn handle(&mut self, _: Ping, ctx: &mut Context<Self>) -> bool {
        assert_eq!(ctx.phase(), Phase::Running);
        self.events.push("handle:ping");
        self.conn.is_some()
    }
}

/// Stops the agent from inside a handler.
struct Quit;
impl Message for Quit {
    type Result = ();
}
impl Handler<Quit> for Service {
    type Result = ();
    fn handle(&mut self, _: Quit, ctx: &mut Context<Self>) {
        self.events.push("handle:quit");
        ctx.stop();
    }
}

const START: [&str; 5] = [
    "pre_start:open:begin",
    "pre_start:open:end",
    "pre_start:warm",
    "post_start:announce",
    "post_start:ready",
];
const STOP: [&str; 3] = [
    "pre_stop:close:begin",
    "pre_stop:close:end",
    "pre_stop:report",
];

fn service(events: &Events) -> Service {
    Service {
        events: events.clone(),
        conn: None,
    }
}

#[test]
fn messages_sent_right_after_start_wait_for_start_hooks() {
    let events = Events::default();
    let agent = service(&events);
    let replies = microagent::run(async move {
        let (addr, handle) = microagent::start(agent);
        // Sent while `open` is still sleeping.
        let a = addr.send(Ping);
        let b = addr.send(Ping);
        let replies = (a.await.unwrap(), b.await.unwrap());
        handle.stop();
        handle.await.unwrap();
        replies
    });
    assert_eq!(replies, (true, true), "handlers saw what pre_start set up");
    let all = events.all();
    assert_eq!(all[..5], START);
    assert_eq!(all[5..7], ["handle:ping", "handle:ping"]);
    assert_eq!(all[7..], STOP);
}

#[test]
fn pre_stop_runs_once_when_a_handler_calls_ctx_stop() {
    let events = Events::default();
    let agent = service(&events);
    let outcome = microagent::run(async move {
        let (addr, handle) = microagent::start(agent);
        addr.send(Quit).await.unwrap();
        // A second stop request while stopping changes nothing.
        addr.do_send(Quit);
        handle.await
    });
    outcome.unwrap();
    let all = events.all();
    assert_eq!(all[..5], START);
    assert_eq!(all[5], "handle:quit");
    assert_eq!(all[6..], STOP);
}

#[test]
fn pre_stop_runs_once_when_the_last_addr_is_dropped() {
    let events = Events::default();
    let agent = service(&events);
    let outcome = microagent::run(async move {
        let (addr, handle) = microagent::start(agent);
        assert!(addr.send(Ping).await.unwrap());
        drop(addr);
        handle.await
    });
    outcome.unwrap();
    let all = events.all();
    assert_eq!(all[..5], START);
    assert_eq!(all[5], "handle:ping");
    assert_eq!(all[6..], STOP);
}

#[test]
fn pre_stop_runs_once_when_stopped_through_its_handle_or_a_message() {
    for via_message in [false, true] {
        let events = Events::default();
        let agent = service(&events);
        let outcome = microagent::run(async move {
            let (addr, handle) = microagent::start(agent);
            assert!(addr.send(Ping).await.unwrap());
            if via_message {
                addr.send(StopAgent).await.unwrap();
            } else {
                assert_eq!(handle.stop(), StopRequest::Delivered);
                assert_eq!(
                    handle.stop(),
                    StopRequest::Delivered,
                    "asking twice is harmless"
                );
            }
            let outcome = handle.await;
            drop(addr);
            outcome
        });
        outcome.unwrap();
        let all = events.all();
        assert_eq!(all[..5], START, "via_message={via_message}");
        assert_eq!(all[6..], STOP, "via_message={via_message}");
    }
}

#[test]
fn a_stop_requested_during_start_up_waits_for_the_start_hooks() {
    let events = Events::default();
    let agent = service(&events);
    microagent::run(async move {
        let (addr, handle) = microagent::start(agent);
        handle.stop();
        handle.await.unwrap();
        drop(addr);
    });
    let all = events.all();
    assert_eq!(all[..5], START);
    assert_eq!(all[5..], STOP);
}

#[test]
fn the_end_of_run_stops_agents_on_the_system_arbiter_and_on_other_arbiters() {
    let home = Events::default();
    let away = Events::default();
    let (home_agent, away_agent) = (service(&home), service(&away));
    let arbiter_events = away.clone();
    let addrs = microagent::run(async move {
        let arbiter = actix::Arbiter::new();
        let (a, a_handle) = microagent::start(home_agent);
        let (b, b_handle) = microagent::start_in(&arbiter.handle(), away_agent);
        assert!(a.send(Ping).await.unwrap());
        assert!(b.send(Ping).await.unwrap());
        // Returning the addresses keeps both agents alive past the end of
        // `main`: only `run` stops them. The handles are dropped unawaited.
        drop((a_handle, b_handle));
        arbiter_events.push("main:end");
        (a, b)
    });
    drop(addrs);
    for events in [home, away] {
        let all = events.all();
        assert_eq!(all[..5], START);
        assert_eq!(all[5], "handle:ping");
        let stop_at = all.iter().position(|e| e == STOP[0]).unwrap();
        assert_eq!(all[stop_at..], STOP, "pre_stop ran to completion: {all:?}");
        for event in STOP {
            assert_eq!(events.count(event), 1, "{event} exactly once");
        }
    }
}

/// An agent that stops itself as soon as it has started.
#[derive(Default, MicroAgent)]
#[microagent(name = "one-shot")]
struct OneShot {
    events: Events,
}

#[microagent::hooks]
impl OneShot {
    #[on(post_start)]
    fn done(&mut self, ctx: &mut Context<Self>) {
        self.events.push("post_start");
        ctx.stop();
        self.events.push("post_start:after-stop");
    }

    #[on(post_start)]
    fn skipped(&mut self) {
        self.events.push("post_start:skipped");
    }

    #[on(pre_stop)]
    fn bye(&mut self, ctx: &mut Context<Self>) {
        self.events.push(format!("pre_stop:{}", ctx.agent_name()));
    }
}

#[test]
fn ctx_stop_in_post_start_skips_later_post_start_hooks_and_runs_pre_stop() {
    let events = Events::default();
    let agent = OneShot {
        events: events.clone(),
    };
    microagent::run_agent(agent).unwrap();
    assert_eq!(
        events.all(),
        ["post_start", "post_start:after-stop", "pre_stop:one-shot"]
    );
}

/// An agent that stops itself during `pre_start`: it never started, so
/// neither `post_start` nor `pre_stop` runs, and that is not a failure.
#[derive(Default, MicroAgent)]
struct Quitter {
    events: Events,
}

#[microagent::hooks]
impl Quitter {
    #[on(pre_start)]
    fn leave(&mut self, ctx: &mut Context<Self>) {
        self.events.push("pre_start:leave");
        ctx.stop();
    }

    #[on(pre_start)]
    fn never(&mut self) {
        self.events.push("pre_start:never");
    }

    #[on(post_start)]
    fn nor_this(&mut self) {
        self.events.push("post_start");
    }

    #[on(pre_stop)]
    fn nor_that(&mut self) {
        self.events.push("pre_stop");
    }
}

#[test]
fn ctx_stop_in_pre_start_ends_the_agent_without_pre_stop() {
    let events = Events::default();
    let agent = Quitter {
        events: events.clone(),
    };
    microagent::run_agent(agent).unwrap();
    assert_eq!(events.all(), ["pre_start:leave"]);
}

/// An agent with no hooks at all behaves like a plain actor.
#[derive(MicroAgent)]
struct Plain(u32);

#[microagent::hooks]
impl Plain {}

struct Get;
impl Message for Get {
    type Result = u32;
}
impl Handler<Get> for Plain {
    type Result = u32;
    fn handle(&mut self, _: Get, ctx: &mut Context<Self>) -> u32 {
        // Context features from actix work on the agent context.
        ctx.notify(Bump);
        self.0
    }
}

struct Bump;
impl Message for Bump {
    type Result = ();
}
impl Handler<Bump> for Plain {
    type Result = ();
    fn handle(&mut self, _: Bump, _: &mut Context<Self>) {
        self.0 += 1;
    }
}

#[test]
fn an_agent_without_hooks_and_without_default_is_a_plain_actor() {
    let seen = microagent::run(async {
        let (addr, handle) = microagent::start(Plain(7));
        let first = addr.send(Get).await.unwrap();
        assert_eq!(handle.phase(), Phase::Running);
        let second = addr.send(Get).await.unwrap();
        drop(addr);
        handle.wait().await.unwrap();
        assert_eq!(handle.phase(), Phase::Stopped);
        (first, second)
    });
    assert_eq!(seen, (7, 8));
}

#[test]
fn an_agent_without_hooks_stops_through_its_handle_and_run_lets_it_go() {
    let outcome = microagent::run(async {
        let (addr, handle) = microagent::start(Plain(1));
        assert_eq!(addr.send(Get).await.unwrap(), 1);
        // The address is still held: the stop request ends it.
        assert_eq!(handle.stop(), StopRequest::Delivered);
        let outcome = handle.wait().await;
        assert!(handle.is_finished());
        // Asked again once it is gone: not delivered.
        assert!(!handle.stop().is_delivered());
        assert!(StopRequest::Delivered.is_delivered());
        // A second one, its address kept past `run`: `run` stops it and
        // waits for it.
        let (kept, second) = microagent::start(Plain(2));
        (outcome, kept, second)
    });
    let (first, _kept, second) = outcome;
    first.unwrap();
    assert!(second.is_finished());
    assert_eq!(second.phase(), Phase::Stopped);
}

#[test]
fn run_returns_only_after_every_agent_finished() {
    let events = Events::default();
    let agents: Vec<Service> = (0..20).map(|_| service(&events)).collect();
    let addrs = microagent::run(async move {
        let mut addrs = Vec::new();
        for agent in agents {
            let (addr, _handle) = microagent::start(agent);
            addrs.push(addr);
        }
        addrs
    });
    drop(addrs);
    for event in START.iter().chain(STOP.iter()) {
        assert_eq!(events.count(event), 20, "{event}");
    }
}

/// A plain actix actor the agents below talk to.
struct Monitor {
    events: Events,
}

impl Actor for Monitor {
    type Context = actix::Context<Self>;
}

struct Report(&'static str);
impl Message for Report {
    type Result = usize;
}
impl Handler<Report> for Monitor {
    type Result = usize;
    fn handle(&mut self, Report(what): Report, _: &mut actix::Context<Self>) -> usize {
        self.events.push(format!("monitor:{what}"));
        self.events.all().len()
    }
}

/// Talks to other actors and to itself from its hooks.
#[derive(Default, MicroAgent)]
struct Chatty {
    events: Events,
    monitor: Option<Addr<Monitor>>,
    acks: usize,
}

#[microagent::hooks]
impl Chatty {
    #[on(pre_start)]
    async fn hello(&mut self, me: Addr<Self>) {
        // Queued: handled after the start hooks.
        me.do_send(Note("from pre_start"));
        let monitor = self.monitor.clone().unwrap();
        self.acks += monitor.send(Report("up")).await.unwrap();
        self.events.push("pre_start:hello");
    }

    #[on(pre_stop)]
    async fn goodbye(&mut self) {
        // The agent is still alive and may await replies.
        let monitor = self.monitor.clone().unwrap();
        self.acks += monitor.send(Report("down")).await.unwrap();
        self.events.push(format!("pre_stop:goodbye:{}", self.acks));
    }
}

struct Note(&'static str);
impl Message for Note {
    type Result = ();
}
impl Handler<Note> for Chatty {
    type Result = ();
    fn handle(&mut self, Note(text): Note, _: &mut Context<Self>) {
        self.events.push(format!("handle:{text}"));
    }
}

#[test]
fn hooks_can_message_the_agent_and_await_other_actors() {
    let events = Events::default();
    let (agent_events, monitor_events) = (events.clone(), events.clone());
    microagent::run(async move {
        let monitor = Monitor {
            events: monitor_events,
        }
        .start();
        let (addr, handle) = microagent::start(Chatty {
            events: agent_events,
            monitor: Some(monitor),
            acks: 0,
        });
        addr.send(Note("from main")).await.unwrap();
        drop(addr);
        handle.await.unwrap();
    });
    // Both notes wait for the start hooks, then come in mailbox order: `main`
    // sent its note while `hello` was awaiting the monitor.
    assert_eq!(
        events.all(),
        [
            "monitor:up",
            "pre_start:hello",
            "handle:from main",
            "handle:from pre_start",
            "monitor:down",
            "pre_stop:goodbye:6",
        ]
    );
}

#[test]
fn an_agent_on_another_arbiter_runs_pre_stop_when_its_last_addr_is_dropped() {
    let events = Events::default();
    let agent = service(&events);
    let (finished_before, finished_after, address_after) = microagent::run(async move {
        let arbiter = actix::Arbiter::new();
        let (addr, handle) = microagent::start_in(&arbiter.handle(), agent);
        assert!(addr.send(Ping).await.unwrap());
        let finished_before = handle.is_finished();
        drop(addr);
        handle.wait().await.unwrap();
        // The outcome comes just before the actor's task ends: once the
        // arbiter's thread is gone, so is the mailbox.
        arbiter.stop();
        arbiter.join().expect("the arbiter thread ends");
        (
            finished_before,
            handle.is_finished(),
            handle.address().is_some(),
        )
    });
    assert!(!finished_before);
    assert!(finished_after);
    assert!(
        !address_after,
        "no address is left once the agent has stopped"
    );
    let all = events.all();
    assert_eq!(all[..5], START);
    assert_eq!(all[6..], STOP);
}

#[test]
fn starting_on_a_stopped_arbiter_reports_an_aborted_agent() {
    let events = Events::default();
    let agent = service(&events);
    let outcome = microagent::run(async move {
        let arbiter = actix::Arbiter::new();
        let handle = arbiter.handle();
        arbiter.stop();
        arbiter.join().expect("the arbiter thread ends");
        let (_addr, handle) = microagent::start_in(&handle, agent);
        handle.await
    });
    assert!(matches!(
        outcome,
        Err(AgentError::Aborted { agent: "Service" })
    ));
    assert!(events.all().is_empty(), "no hook ran");
}

/// An agent that owns something with no sensible default: a channel
/// receiver built before it starts. Its async hooks run with a stand-in
/// named in the derive, which no handler ever sees.
#[derive(MicroAgent)]
#[microagent(stand_in = Inbox::placeholder())]
struct Inbox {
    rx: tokio::sync::mpsc::Receiver<u32>,
    received: Vec<u32>,
    events: Events,
    stand_in: bool,
}

impl Inbox {
    fn placeholder() -> Self {
        let (_, rx) = tokio::sync::mpsc::channel(1);
        Inbox {
            rx,
            received: Vec::new(),
            events: Events::default(),
            stand_in: true,
        }
    }
}

#[microagent::hooks]
impl Inbox {
    #[on(pre_start)]
    async fn drain(&mut self) {
        pause().await;
        while let Ok(n) = self.rx.try_recv() {
            self.received.push(n);
        }
        self.events.push("pre_start");
    }

    #[on(pre_stop)]
    async fn close(&mut self) {
        pause().await;
        self.events
            .push(format!("pre_stop:stand_in={}", self.stand_in));
    }
}

struct Received;
impl Message for Received {
    type Result = Option<Vec<u32>>;
}

impl Handler<Received> for Inbox {
    type Result = Option<Vec<u32>>;
    fn handle(&mut self, _: Received, _: &mut Context<Self>) -> Self::Result {
        // `None` would mean the handler saw the stand-in.
        (!self.stand_in).then(|| self.received.clone())
    }
}

#[test]
fn an_agent_without_default_names_a_stand_in_for_its_async_hooks() {
    let events = Events::default();
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    for n in [1, 2, 3] {
        tx.try_send(n).unwrap();
    }
    let agent = Inbox {
        rx,
        received: Vec::new(),
        events: events.clone(),
        stand_in: false,
    };
    let seen = microagent::run(async move {
        let (addr, handle) = microagent::start(agent);
        // Sent while the async pre_start hook owns the agent.
        let seen = addr.send(Received).await.unwrap();
        drop(addr);
        handle.await.unwrap();
        seen
    });
    assert_eq!(seen, Some(vec![1, 2, 3]));
    assert_eq!(events.all(), ["pre_start", "pre_stop:stand_in=false"]);
}

/// Kept alive by a periodic task or a server after its last `Addr` is gone.
#[derive(Default, MicroAgent)]
struct Unaddressed {
    events: Events,
    with_server: bool,
}

#[microagent::hooks]
impl Unaddressed {
    #[periodic(period = 0.005)]
    fn tick(&mut self) {
        if self.events.count("tick") == 0 {
            self.events.push("tick");
        }
    }

    #[on(server)]
    fn serve(&self) -> impl std::future::Future<Output = ()> {
        // Drops its `ServerContext` (and with it the agent's `Addr`).
        let events = self.events.clone();
        let forever = self.with_server;
        async move {
            events.push("server");
            if forever {
                std::future::pending::<()>().await;
            }
        }
    }

    #[on(pre_stop)]
    fn stop(&mut self) {
        self.events.push("pre_stop");
    }
}

#[test]
fn the_handle_stops_an_agent_that_runs_on_with_no_addr_left() {
    for with_server in [false, true] {
        let events = Events::default();
        let agent = Unaddressed {
            events: events.clone(),
            with_server,
        };
        let watched = events.clone();
        let outcome = microagent::run(async move {
            let (addr, handle) = microagent::start(agent);
            drop(addr);
            watched.seen("tick").await;
            watched.seen("server").await;
            assert!(!handle.is_finished(), "its timers keep it running");
            assert_eq!(handle.stop(), StopRequest::Delivered);
            // A hang detector, not a performance threshold.
            actix_rt::time::timeout(std::time::Duration::from_secs(60), handle.wait())
                .await
                .expect("the agent stopped")
        });
        outcome.unwrap();
        assert_eq!(events.count("pre_stop"), 1, "with_server={with_server}");
    }
}
