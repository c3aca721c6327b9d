//! The launcher in-process: its handle, its group rule and its exit codes.
//! (Signals and deadlines are covered with real processes in process.rs.)

mod support;

use std::sync::mpsc;
use std::time::Duration;

use microagent::prelude::*;
use microagent::{Exit, Launcher};
use support::{Boom, Events};

#[derive(Default, MicroAgent)]
struct Member {
    name: &'static str,
    events: Events,
    ready: Option<mpsc::Sender<()>>,
    fail_start: bool,
    /// Makes the start hooks suspend for a while.
    slow_start: bool,
}

#[microagent::hooks]
impl Member {
    #[on(pre_start)]
    fn open(&mut self) -> Result<(), Boom> {
        if self.fail_start {
            return Err(Boom("no database"));
        }
        Ok(())
    }

    #[on(post_start)]
    async fn warm_up(&mut self) {
        if self.slow_start {
            actix_rt::time::sleep(Duration::from_millis(100)).await;
            self.events.push(format!("{}:started", self.name));
        }
    }

    #[on(post_start)]
    fn ready(&mut self) {
        if let Some(ready) = self.ready.take() {
            let _ = ready.send(());
        }
    }

    #[on(pre_stop)]
    fn close(&mut self) {
        self.events.push(format!("{}:pre_stop", self.name));
    }
}

fn member(name: &'static str, events: &Events) -> Member {
    Member {
        name,
        events: events.clone(),
        ..Default::default()
    }
}

#[test]
fn a_launcher_handle_stops_the_group_gracefully_from_another_thread() {
    let events = Events::default();
    let (ready_tx, ready_rx) = mpsc::channel();
    let (handle_tx, handle_rx) = mpsc::channel();
    let group = events.clone();
    // A launcher may hold agents that are not `Send`: it is built where it runs.
    let run = std::thread::spawn(move || {
        let launcher = Launcher::new()
            .agent(Member {
                ready: Some(ready_tx),
                ..member("a", &group)
            })
            .agent(member("b", &group))
            .shutdown_deadline(Duration::from_secs(10));
        handle_tx.send(launcher.handle()).expect("the test waits");
        launcher.run()
    });
    let handle = handle_rx.recv().expect("a handle");
    ready_rx
        .recv_timeout(Duration::from_secs(60))
        .expect("agent a started");
    handle.do_send(ServerInterrupt::new("operator"));
    handle.do_send(ServerInterrupt::new("ignored"));
    assert_eq!(run.join().expect("the launcher thread"), Exit::Graceful);
    let mut stopped = events.all();
    stopped.sort();
    assert_eq!(stopped, ["a:pre_stop", "b:pre_stop"]);
}

#[test]
fn an_interrupt_sent_before_run_stops_the_group_once_started() {
    let events = Events::default();
    let launcher = Launcher::new().local_agent(member("solo", &events));
    launcher.handle().do_send(ServerInterrupt::new("early"));
    assert_eq!(launcher.run(), Exit::Graceful);
    assert_eq!(events.all(), ["solo:pre_stop"]);
}

#[test]
fn a_failed_start_stops_the_group_and_exits_hook_failed() {
    let events = Events::default();
    let exit = Launcher::new()
        .agent(member("healthy", &events))
        .agent(Member {
            fail_start: true,
            ..member("broken", &events)
        })
        .run();
    assert_eq!(exit, Exit::HookFailed);
    assert_eq!(exit.code(), 3);
    // The broken agent never started: no pre_stop; the healthy one did.
    assert_eq!(events.all(), ["healthy:pre_stop"]);
}

/// Runs a launcher on its own thread; returns its handle and the thread.
fn spawn_launcher(
    build: impl FnOnce() -> Launcher + Send + 'static,
) -> (microagent::LauncherHandle, std::thread::JoinHandle<Exit>) {
    let (handle_tx, handle_rx) = mpsc::channel();
    let run = std::thread::spawn(move || {
        let launcher = build();
        handle_tx.send(launcher.handle()).expect("the test waits");
        launcher.run()
    });
    (handle_rx.recv().expect("a handle"), run)
}

fn block_on<F: std::future::Future>(future: F) -> F::Output {
    actix_rt::Runtime::new()
        .expect("a runtime")
        .block_on(future)
}

#[test]
fn ready_resolves_once_every_agent_has_finished_its_start_hooks() {
    let events = Events::default();
    let group = events.clone();
    let (handle, run) = spawn_launcher(move || {
        Launcher::new()
            .agent(Member {
                slow_start: true,
                ..member("a", &group)
            })
            .agent(Member {
                slow_start: true,
                ..member("b", &group)
            })
    });
    assert!(block_on(handle.ready()), "the group came up");
    let mut started = events.all();
    started.sort();
    assert_eq!(started, ["a:started", "b:started"], "nothing else yet");
    handle.do_send(ServerInterrupt::new("done"));
    assert_eq!(run.join().expect("the launcher thread"), Exit::Graceful);
    assert!(!block_on(handle.ready()), "no longer up once stopped");
}

#[test]
fn ready_is_false_when_a_start_fails() {
    let (handle, run) = spawn_launcher(|| {
        let group = Events::default();
        Launcher::new()
            .agent(Member {
                slow_start: true,
                ..member("healthy", &group)
            })
            .agent(Member {
                fail_start: true,
                ..member("broken", &group)
            })
    });
    assert!(!block_on(handle.ready()));
    assert_eq!(run.join().expect("the launcher thread"), Exit::HookFailed);
}

/// Takes its time in pre_start, and says when post_start runs.
#[derive(Default, MicroAgent)]
struct Slowpoke {
    events: Events,
}

#[microagent::hooks]
impl Slowpoke {
    #[on(pre_start)]
    async fn connect(&mut self) {
        actix_rt::time::sleep(Duration::from_millis(300)).await;
        self.events.push("slowpoke:pre_start");
    }

    #[on(post_start)]
    fn announce(&mut self) {
        self.events.push("slowpoke:post_start");
    }

    #[on(pre_stop)]
    fn close(&mut self) {
        self.events.push("slowpoke:pre_stop");
    }
}

/// When one member fails to start, the group stops: a member still in its
/// pre_start hooks finishes them, skips post_start (nothing of it starts:
/// no timers, receivers or consumers), and runs its pre_stop hooks.
#[test]
fn a_member_still_starting_when_another_fails_runs_no_post_start() {
    let events = Events::default();
    let exit = Launcher::new()
        .agent(Slowpoke {
            events: events.clone(),
        })
        .agent(Member {
            fail_start: true,
            ..member("broken", &events)
        })
        .run();
    assert_eq!(exit, Exit::HookFailed);
    assert_eq!(events.all(), ["slowpoke:pre_start", "slowpoke:pre_stop"]);
}
