//! `server` hooks: order, concurrency, outcomes, restarts, graceful stop.

mod support;

use std::cell::Cell;
use std::rc::Rc;
use std::time::Duration;

use microagent::prelude::*;
use microagent::Stage;
use support::{pause, run_until, Boom, Events};

/// How the `work` server of [`Served`] ends.
#[derive(Default, Clone, Copy, PartialEq, Debug)]
enum Ending {
    /// Returns `Ok(())` after a moment.
    #[default]
    Finish,
    /// Returns another error.
    Fail,
    /// Panics.
    Panic,
    /// Waits for the shutdown signal, then takes a moment to drain.
    Drain,
    /// Never ends by itself and ignores the shutdown signal.
    Forever,
}

#[derive(Default, MicroAgent)]
struct Served {
    events: Events,
    ending: Ending,
    served: u32,
}

#[microagent::hooks]
impl Served {
    #[on(pre_start)]
    fn open(&mut self) {
        self.events.push("pre_start");
    }

    #[on(post_start)]
    fn ready(&mut self) {
        self.events.push("post_start");
    }

    #[on(pre_stop)]
    async fn close(&mut self) {
        self.events.push("pre_stop:begin");
        pause().await;
        self.events.push("pre_stop:end");
    }

    #[on(server)]
    fn work(
        &self,
        srv: ServerContext<Self>,
    ) -> impl std::future::Future<Output = Result<(), Box<Boom>>> + 'static {
        let events = self.events.clone();
        let ending = self.ending;
        let shutdown = (ending == Ending::Drain).then(|| srv.shutdown());
        async move {
            events.push("server:start");
            // The server runs alongside the handlers: it can ask the agent.
            let served = srv.agent().send(Hit).await.expect("agent alive");
            events.push(format!("server:hit:{served}"));
            match ending {
                Ending::Finish => {
                    pause().await;
                    events.push("server:end");
                    Ok(())
                }
                Ending::Fail => Err(Box::new(Boom("port in use"))),
                Ending::Panic => panic!("server bug"),
                Ending::Drain => {
                    shutdown.expect("asked for").await;
                    events.push("server:shutdown");
                    pause().await;
                    events.push("server:drained");
                    Ok(())
                }
                Ending::Forever => loop {
                    actix_rt::time::sleep(Duration::from_secs(3600)).await;
                },
            }
        }
    }
}

struct Hit;
impl Message for Hit {
    type Result = u32;
}
impl Handler<Hit> for Served {
    type Result = u32;
    fn handle(&mut self, _: Hit, _: &mut Context<Self>) -> u32 {
        self.served += 1;
        self.served
    }
}

/// Runs a `Served` agent; stops it once `stop_when` was recorded, if given.
fn run_served(ending: Ending, stop_when: Option<&'static str>) -> (Result<(), AgentError>, Events) {
    let events = Events::default();
    let agent = Served {
        events: events.clone(),
        ending,
        served: 0,
    };
    (run_until(agent, &events, stop_when), events)
}

#[test]
fn servers_start_after_post_start_and_a_finished_server_leaves_the_agent_running() {
    let events = Events::default();
    let agent = Served {
        events: events.clone(),
        ending: Ending::Finish,
        served: 0,
    };
    let watched = events.clone();
    let (outcome, served_after) = microagent::run(async move {
        let (addr, handle) = microagent::start(agent);
        watched.seen("server:end").await;
        // The server is done; the agent still handles messages.
        let served_after = addr.send(Hit).await.expect("agent still running");
        handle.stop();
        (handle.await, served_after)
    });
    outcome.unwrap();
    assert_eq!(served_after, 2, "the server's hit, then ours");
    assert_eq!(
        events.all(),
        [
            "pre_start",
            "post_start",
            "server:start",
            "server:hit:1",
            "server:end",
            "pre_stop:begin",
            "pre_stop:end",
        ]
    );
}

/// A server that ends the service with a real `ServerInterrupt`.
#[derive(Default, MicroAgent)]
struct Interrupting {
    events: Events,
}

#[microagent::hooks]
impl Interrupting {
    #[on(pre_stop)]
    fn close(&mut self) {
        self.events.push("pre_stop");
    }

    #[on(server)]
    fn run(&self) -> impl std::future::Future<Output = Result<(), ServerInterrupt>> {
        let events = self.events.clone();
        async move {
            pause().await;
            events.push("server:exit");
            Err(ServerInterrupt::new("Exit"))
        }
    }
}

#[test]
fn a_server_interrupt_stops_the_agent_gracefully() {
    let events = Events::default();
    let agent = Interrupting {
        events: events.clone(),
    };
    microagent::run_agent(agent).unwrap();
    assert_eq!(events.all(), ["server:exit", "pre_stop"]);
}

#[test]
fn a_server_interrupt_sent_as_a_message_stops_the_agent_gracefully() {
    let (outcome, events) = {
        let events = Events::default();
        let agent = Served {
            events: events.clone(),
            ending: Ending::Forever,
            served: 0,
        };
        let watched = events.clone();
        let outcome = microagent::run(async move {
            let (addr, handle) = microagent::start(agent);
            watched.seen("server:hit:1").await;
            addr.send(ServerInterrupt::new("operator")).await.unwrap();
            handle.await
        });
        (outcome, events)
    };
    outcome.unwrap();
    let all = events.all();
    assert_eq!(all[all.len() - 2..], ["pre_stop:begin", "pre_stop:end"]);
}

#[test]
fn a_failing_or_panicking_server_stops_its_agent_after_pre_stop() {
    for (ending, cause) in [
        (Ending::Fail, "port in use"),
        (Ending::Panic, "panicked: server bug"),
    ] {
        let (outcome, events) = run_served(ending, None);
        let error = outcome.unwrap_err();
        let failure = &error.failures()[0];
        assert_eq!(error.failures().len(), 1);
        assert_eq!((failure.stage, failure.hook), (Stage::Server, "work"));
        assert_eq!(failure.cause.to_string(), cause);
        assert_eq!(
            failure.to_string(),
            format!("agent `Served`: server hook `work` failed: {cause}")
        );
        let all = events.all();
        assert_eq!(
            all[all.len() - 2..],
            ["pre_stop:begin", "pre_stop:end"],
            "{ending:?}"
        );
    }
}

#[test]
fn a_server_that_asked_for_shutdown_drains_after_pre_stop_before_the_agent_stops() {
    let (outcome, events) = run_served(Ending::Drain, Some("server:hit:1"));
    outcome.unwrap();
    assert_eq!(
        events.all()[4..],
        [
            // pre_stop runs while the server is still up...
            "pre_stop:begin",
            "pre_stop:end",
            // ...then the server is told to shut down and is waited for.
            "server:shutdown",
            "server:drained",
        ]
    );
}

#[test]
fn a_server_that_ignores_shutdown_is_cancelled_and_does_not_hold_the_stop() {
    let (outcome, events) = run_served(Ending::Forever, Some("server:hit:1"));
    outcome.unwrap();
    let all = events.all();
    assert_eq!(all[all.len() - 2..], ["pre_stop:begin", "pre_stop:end"]);
}

/// A server that fails `fail_times` times, then runs until shut down.
#[derive(Default, MicroAgent)]
struct Flaky {
    events: Events,
    fail_times: u32,
    attempts: Rc<Cell<u32>>,
}

#[microagent::hooks]
impl Flaky {
    #[on(server, restarts = 2, within = 60, backoff = 0.01)]
    fn flaky(
        &self,
        srv: ServerContext<Self>,
    ) -> impl std::future::Future<Output = Result<(), Boom>> {
        let attempt = self.attempts.get() + 1;
        self.attempts.set(attempt);
        let fail = attempt <= self.fail_times;
        let events = self.events.clone();
        let shutdown = srv.shutdown();
        async move {
            events.push(format!("attempt:{attempt}"));
            if fail {
                return Err(Boom("flaky"));
            }
            shutdown.await;
            Ok(())
        }
    }
}

/// Runs a `Flaky` agent; stops it once `stop_when` was recorded, if given.
fn run_flaky(fail_times: u32, stop_when: Option<&'static str>) -> (Result<(), AgentError>, Events) {
    let events = Events::default();
    let agent = Flaky {
        events: events.clone(),
        fail_times,
        attempts: Rc::default(),
    };
    (run_until(agent, &events, stop_when), events)
}

#[test]
fn a_restarting_server_restarts_within_its_policy() {
    // Two failures, two restarts; the third attempt runs until stopped.
    let (outcome, events) = run_flaky(2, Some("attempt:3"));
    outcome.unwrap();
    assert_eq!(events.all(), ["attempt:1", "attempt:2", "attempt:3"]);
}

#[test]
fn a_restarting_server_gives_up_beyond_its_policy() {
    // The agent stops by itself once the policy is exhausted.
    let (outcome, events) = run_flaky(10, None);
    let error = outcome.unwrap_err();
    assert_eq!(error.failures().len(), 1);
    assert_eq!(error.failures()[0].hook, "flaky");
    assert_eq!(events.all(), ["attempt:1", "attempt:2", "attempt:3"]);
}

/// Listens on a port the OS picks and publishes it.
#[derive(Default, MicroAgent)]
struct Listening;

#[microagent::hooks]
impl Listening {
    #[on(server)]
    fn listen(
        &self,
        srv: ServerContext<Self>,
    ) -> impl std::future::Future<Output = std::io::Result<()>> {
        async move {
            let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
            srv.publish_address(listener.local_addr()?);
            srv.shutdown().await;
            drop(listener);
            Ok(())
        }
    }
}

#[test]
fn a_server_bound_to_port_0_publishes_its_address() {
    let (published, described) = microagent::run(async {
        let (addr, handle) = microagent::start(Listening);
        // Awaited, not polled: resolves once the server published it.
        let published = handle.bound_address("listen").await.expect("it binds");
        assert_eq!(handle.server_address("listen"), Some(published));
        std::net::TcpStream::connect(published).expect("the published address accepts");
        let info = addr.send(GetInfo).await.expect("the agent answers");
        handle.stop();
        handle.wait().await.unwrap();
        (published, info.servers[0].addresses.clone())
    });
    assert_ne!(published.port(), 0);
    assert_eq!(described, [published]);
    assert!(Listening::describe().servers[0].addresses.is_empty());
}

/// Fails to bind: its port is taken.
#[derive(MicroAgent)]
#[microagent(stand_in = Taken(0))]
struct Taken(u16);

#[microagent::hooks]
impl Taken {
    #[on(server)]
    fn listen(&self) -> impl std::future::Future<Output = std::io::Result<()>> {
        let port = self.0;
        async move {
            std::net::TcpListener::bind(("127.0.0.1", port))?;
            Ok(())
        }
    }
}

#[test]
fn waiting_for_the_address_of_a_server_that_cannot_bind_ends_with_none() {
    let (bound, outcome) = microagent::run(async {
        let held = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
        let port = held.local_addr().expect("bound").port();
        let (_addr, handle) = microagent::start(Taken(port));
        let bound = handle.bound_address("listen").await;
        (bound, handle.await)
    });
    assert_eq!(bound, None);
    assert!(outcome.is_err(), "the agent failed: {outcome:?}");
}
