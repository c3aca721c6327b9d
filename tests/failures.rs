//! Hook failures: errors and panics, at every stage.

mod support;

use microagent::prelude::*;
use microagent::{HookFailure, Stage};
use support::{pause, Boom, Events};

/// Where an agent of this file fails, and how.
#[derive(Default, Clone, Copy, PartialEq, Eq, Debug)]
enum Fault {
    #[default]
    None,
    Err,
    Panic,
}

#[derive(Default, MicroAgent)]
struct Fragile {
    events: Events,
    pre_start: Fault,
    post_start: Fault,
    async_hooks: bool,
}

impl Fragile {
    fn fail(&self, fault: Fault, what: &'static str) -> Result<(), Boom> {
        match fault {
            Fault::None => Ok(()),
            Fault::Err => Err(Boom(what)),
            Fault::Panic => panic!("{what}"),
        }
    }
}

#[microagent::hooks]
impl Fragile {
    #[on(pre_start)]
    fn first(&mut self) {
        self.events.push("pre_start:first");
    }

    #[on(pre_start)]
    async fn connect(&mut self) -> Result<(), Boom> {
        if self.async_hooks {
            pause().await;
        }
        self.events.push("pre_start:connect");
        self.fail(self.pre_start, "no database")
    }

    #[on(pre_start)]
    fn after_connect(&mut self) {
        self.events.push("pre_start:after_connect");
    }

    #[on(post_start)]
    async fn notify(&mut self) -> Result<(), Boom> {
        if self.async_hooks {
            pause().await;
        }
        self.events.push("post_start:notify");
        self.fail(self.post_start, "monitoring down")
    }

    #[on(post_start)]
    fn after_notify(&mut self) {
        self.events.push("post_start:after_notify");
    }

    #[on(pre_stop)]
    fn cleanup(&mut self) {
        // The agent came back from the failed async hook intact.
        assert!(self.events.count("pre_start:first") == 1);
        self.events.push("pre_stop:cleanup");
    }
}

struct Ping;
impl Message for Ping {
    type Result = ();
}
impl Handler<Ping> for Fragile {
    type Result = ();
    fn handle(&mut self, _: Ping, _: &mut Context<Self>) {
        self.events.push("handle:ping");
    }
}

fn run_fragile(agent: Fragile) -> (Result<(), AgentError>, bool) {
    microagent::run(async move {
        let (addr, handle) = microagent::start(agent);
        let ping = addr.send(Ping);
        let outcome = handle.await;
        (outcome, ping.await.is_ok())
    })
}

fn only_failure(outcome: Result<(), AgentError>) -> microagent::HookError {
    let error = outcome.expect_err("the agent failed");
    assert_eq!(error.agent(), "Fragile");
    match error {
        AgentError::Failed { mut failures, .. } => {
            assert_eq!(failures.len(), 1, "{failures:?}");
            failures.remove(0)
        }
        other => panic!("expected a hook failure, got {other:?}"),
    }
}

#[test]
fn a_failing_pre_start_skips_every_later_hook_and_reports_the_hook() {
    for fault in [Fault::Err, Fault::Panic] {
        for async_hooks in [false, true] {
            let events = Events::default();
            let agent = Fragile {
                events: events.clone(),
                pre_start: fault,
                async_hooks,
                ..Default::default()
            };
            let (outcome, ping_handled) = run_fragile(agent);
            let failure = only_failure(outcome);
            assert_eq!((failure.stage, failure.hook), (Stage::PreStart, "connect"));
            match fault {
                Fault::Err => assert_eq!(failure.cause.to_string(), "no database"),
                _ => assert_eq!(failure.cause.to_string(), "panicked: no database"),
            }
            assert_eq!(failure.cause.is_panic(), fault == Fault::Panic);
            assert_eq!(
                failure.to_string(),
                format!(
                    "agent `Fragile`: pre_start hook `connect` failed: {}",
                    failure.cause
                )
            );
            assert!(
                !ping_handled,
                "no message is handled by an agent that never started"
            );
            assert_eq!(
                events.all(),
                ["pre_start:first", "pre_start:connect"],
                "{fault:?} async={async_hooks}"
            );
        }
    }
}

#[test]
fn a_failing_post_start_stops_the_agent_after_its_pre_stop_hooks() {
    for fault in [Fault::Err, Fault::Panic] {
        for async_hooks in [false, true] {
            let events = Events::default();
            let agent = Fragile {
                events: events.clone(),
                post_start: fault,
                async_hooks,
                ..Default::default()
            };
            let (outcome, ping_handled) = run_fragile(agent);
            let failure = only_failure(outcome);
            assert_eq!((failure.stage, failure.hook), (Stage::PostStart, "notify"));
            assert_eq!(failure.cause.is_panic(), fault == Fault::Panic);
            assert!(
                !ping_handled,
                "the queued message is dropped with the agent"
            );
            assert_eq!(
                events.all(),
                [
                    "pre_start:first",
                    "pre_start:connect",
                    "pre_start:after_connect",
                    "post_start:notify",
                    "pre_stop:cleanup",
                ],
                "{fault:?} async={async_hooks}"
            );
        }
    }
}

/// Three pre_stop hooks: the first two fail, the last must still run.
#[derive(Default, MicroAgent)]
struct Leaky {
    events: Events,
}

#[microagent::hooks]
impl Leaky {
    #[on(pre_stop)]
    async fn flush(&mut self) -> Result<(), Boom> {
        pause().await;
        self.events.push("pre_stop:flush");
        Err(Boom("disk full"))
    }

    #[on(pre_stop)]
    async fn deregister(&mut self) {
        self.events.push("pre_stop:deregister");
        pause().await;
        panic!("registry gone");
    }

    #[on(pre_stop)]
    fn close(&mut self) -> Result<(), std::io::Error> {
        self.events.push("pre_stop:close");
        Err(std::io::Error::other("socket reset"))
    }

    #[on(pre_stop)]
    fn last(&mut self) {
        self.events.push("pre_stop:last");
    }
}

#[test]
fn every_pre_stop_hook_runs_and_every_failure_is_reported() {
    let events = Events::default();
    let agent = Leaky {
        events: events.clone(),
    };
    let outcome = microagent::run(async move {
        let (addr, handle) = microagent::start(agent);
        drop(addr);
        handle.await
    });
    assert_eq!(
        events.all(),
        [
            "pre_stop:flush",
            "pre_stop:deregister",
            "pre_stop:close",
            "pre_stop:last"
        ]
    );
    let error = outcome.unwrap_err();
    let failures: Vec<_> = error
        .failures()
        .iter()
        .map(|f| (f.stage, f.hook, f.cause.to_string()))
        .collect();
    assert_eq!(
        failures,
        [
            (Stage::PreStop, "flush", "disk full".to_owned()),
            (
                Stage::PreStop,
                "deregister",
                "panicked: registry gone".to_owned()
            ),
            (Stage::PreStop, "close", "socket reset".to_owned()),
        ]
    );
    assert!(matches!(error.failures()[1].cause, HookFailure::Panic(_)));
}

#[test]
fn a_panicking_hook_leaves_the_system_healthy() {
    let events = Events::default();
    let broken = Fragile {
        events: Events::default(),
        pre_start: Fault::Panic,
        async_hooks: true,
        ..Default::default()
    };
    let healthy = Fragile {
        events: events.clone(),
        ..Default::default()
    };
    let outcomes = microagent::run(async move {
        let (_, broken) = microagent::start(broken);
        let broken = broken.await;
        // Same System, same arbiter: a new agent starts, works and stops.
        let (addr, handle) = microagent::start(healthy);
        addr.send(Ping).await.unwrap();
        drop(addr);
        (broken, handle.await)
    });
    assert!(outcomes.0.is_err());
    outcomes.1.unwrap();
    assert_eq!(events.count("handle:ping"), 1);
    assert_eq!(events.count("pre_stop:cleanup"), 1);
}

/// A `Default` that panics: the async shim calls it, so it counts as the
/// hook's failure and the real agent stays in place.
#[derive(MicroAgent)]
struct BadDefault {
    events: Events,
}

impl Default for BadDefault {
    fn default() -> Self {
        panic!("no default today")
    }
}

#[microagent::hooks]
impl BadDefault {
    #[on(post_start)]
    async fn never(&mut self) {
        self.events.push("post_start:never");
    }

    #[on(pre_stop)]
    fn still_here(&mut self) {
        self.events.push("pre_stop:still_here");
    }
}

#[test]
fn a_panicking_default_fails_the_async_hook_without_losing_the_agent() {
    let events = Events::default();
    let agent = BadDefault {
        events: events.clone(),
    };
    let error = microagent::run_agent(agent).unwrap_err();
    assert_eq!(
        error.to_string(),
        "agent `BadDefault`: post_start hook `never` failed: panicked: no default today"
    );
    assert_eq!(events.all(), ["pre_stop:still_here"]);
}

/// `ctx.terminate()` keeps its actix meaning: no more hooks.
#[derive(Default, MicroAgent)]
struct Terminator {
    events: Events,
}

#[microagent::hooks]
impl Terminator {
    #[on(post_start)]
    fn end_now(&mut self, ctx: &mut Context<Self>) {
        self.events.push("post_start");
        ctx.terminate();
    }

    #[on(pre_stop)]
    fn skipped(&mut self) {
        self.events.push("pre_stop");
    }
}

#[test]
fn ctx_terminate_skips_pre_stop_and_reports_an_aborted_lifecycle() {
    let events = Events::default();
    let agent = Terminator {
        events: events.clone(),
    };
    let error = microagent::run_agent(agent).unwrap_err();
    assert!(matches!(
        error,
        AgentError::Aborted {
            agent: "Terminator"
        }
    ));
    assert_eq!(events.all(), ["post_start"]);
}

/// A handler (not a hook) that panics: actix does not catch it and the
/// actor's task dies; the outcome says the agent crashed, and its (sync)
/// pre_stop hook still ran in actix's teardown.
#[derive(Default, MicroAgent)]
struct Crashy {
    events: Events,
}

#[microagent::hooks]
impl Crashy {
    #[on(pre_stop)]
    fn cleanup(&mut self) {
        self.events.push("pre_stop");
    }
}

struct Crash;
impl Message for Crash {
    type Result = ();
}
impl Handler<Crash> for Crashy {
    type Result = ();
    fn handle(&mut self, _: Crash, _: &mut Context<Self>) {
        panic!("handler bug");
    }
}

#[test]
fn a_panicking_message_handler_is_reported_as_a_crash() {
    let events = Events::default();
    let agent = Crashy {
        events: events.clone(),
    };
    let (outcome, reply) = microagent::run(async move {
        let (addr, handle) = microagent::start(agent);
        let reply = addr.send(Crash).await;
        (handle.await, reply)
    });
    assert!(reply.is_err(), "the sender sees the mailbox closed");
    let error = outcome.unwrap_err();
    assert!(
        matches!(&error, AgentError::Crashed { agent: "Crashy", panic: HookFailure::Panic(message), failures }
            if message == "handler bug" && failures.is_empty()),
        "{error:?}"
    );
    assert_eq!(
        error.to_string(),
        "agent `Crashy` crashed: a message handler or spawned future panicked: handler bug"
    );
    // The message without matching the variant (and an arm that cannot be).
    assert_eq!(error.panic_message(), Some("handler bug"));
    assert_eq!(
        events.all(),
        ["pre_stop"],
        "pre_stop ran once, in the teardown"
    );
}

/// Hooks returning the error types applications use: a boxed error,
/// `anyhow::Error`, a `String` message. Each one fails its hook with its
/// message, and the boxed one keeps its type for a downcast.
#[derive(Default, MicroAgent)]
struct AppErrors;

#[microagent::hooks]
impl AppErrors {
    #[on(pre_stop)]
    fn boxed(&mut self) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        Err(Box::new(Boom("boxed")))
    }

    #[on(pre_stop)]
    async fn with_anyhow(&mut self) -> anyhow::Result<()> {
        Err(anyhow::anyhow!("from anyhow"))
    }

    #[on(pre_stop)]
    fn message(&mut self) -> Result<(), String> {
        Err("a message".to_owned())
    }
}

#[test]
fn hooks_may_return_boxed_errors_anyhow_errors_and_messages() {
    let error = microagent::run(async {
        let (addr, handle) = microagent::start(AppErrors);
        drop(addr);
        handle.await
    })
    .unwrap_err();
    let failures = error.failures();
    let messages: Vec<String> = failures.iter().map(|f| f.cause.to_string()).collect();
    assert_eq!(messages, ["boxed", "from anyhow", "a message"]);
    let hooks: Vec<&str> = failures.iter().map(|f| f.hook).collect();
    assert_eq!(hooks, ["boxed", "with_anyhow", "message"]);
    let HookFailure::Error(boxed) = &failures[0].cause else {
        panic!("an error, not a panic")
    };
    assert_eq!(boxed.downcast_ref::<Boom>().map(|b| b.0), Some("boxed"));
}

#[test]
fn every_party_waiting_on_a_failed_agent_gets_the_failure() {
    let (first, second, third) = microagent::run(async {
        let (addr, handle) = microagent::start(AppErrors);
        let watchers = (handle.clone(), handle.clone());
        drop(addr);
        let first = handle.wait().await;
        (first, watchers.0.await, watchers.1.wait().await)
    });
    for outcome in [first, second, third] {
        let error = outcome.unwrap_err();
        assert_eq!(error.agent(), "AppErrors");
        assert_eq!(error.failures().len(), 3);
        assert_eq!(
            error.failures()[0].to_string(),
            "agent `AppErrors`: pre_stop hook `boxed` failed: boxed"
        );
    }
}

#[test]
fn an_agent_started_under_its_own_name_is_reported_under_it() {
    let (name, info_name, outcome) = microagent::run(async {
        let (addr, handle) = microagent::start(AppErrors.named("errors-2"));
        let info = addr.send(GetInfo).await.expect("the agent answers");
        drop(addr);
        (handle.name(), info.name, handle.await)
    });
    assert_eq!((name, info_name), ("errors-2", "errors-2"));
    let error = outcome.unwrap_err();
    assert_eq!(error.agent(), "errors-2");
    assert!(error.failures().iter().all(|f| f.agent == "errors-2"));
    assert_eq!(
        error.failures()[0].to_string(),
        "agent `errors-2`: pre_stop hook `boxed` failed: boxed"
    );
    // The type still describes itself under its own name.
    assert_eq!(AppErrors::describe().name, "AppErrors");
}
