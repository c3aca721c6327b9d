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
