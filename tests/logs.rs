//! What the crate logs where the log is the behaviour: messages the
//! in-process broker would otherwise lose without a word (sent to a queue
//! no agent consumes, or left in a queue at exit), and one line per failed
//! attempt (a WARN for a retry, an ERROR for a dead letter); and no more
//! than the crate's own lines for a user of `log` alone, whatever features
//! are on (spans never fall back to log records). This file captures the
//! log.

use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use microagent::broker::{Broker, Queue};
use microagent::prelude::*;
use serde::{Deserialize, Serialize};

/// Every record: its level, target and text.
struct Capture(Mutex<Vec<(log::Level, String, String)>>);

impl log::Log for Capture {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }

    fn log(&self, record: &log::Record<'_>) {
        let mut lines = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let target = record.target().to_owned();
        lines.push((record.level(), target, record.args().to_string()));
    }

    fn flush(&self) {}
}

fn captured() -> &'static Capture {
    static CAPTURE: OnceLock<&'static Capture> = OnceLock::new();
    CAPTURE.get_or_init(|| {
        let capture: &'static Capture = Box::leak(Box::new(Capture(Mutex::default())));
        log::set_logger(capture).expect("the only logger of this test binary");
        log::set_max_level(log::LevelFilter::Trace);
        capture
    })
}

fn warnings_about(queue: &str) -> Vec<String> {
    logged_about(queue)
        .into_iter()
        .map(|(_, line)| line)
        .collect()
}

/// The WARN and ERROR lines naming `queue`.
fn logged_about(queue: &str) -> Vec<(log::Level, String)> {
    let lines = captured().0.lock().unwrap_or_else(|e| e.into_inner());
    lines
        .iter()
        .filter(|(level, _, line)| {
            *level <= log::Level::Warn && line.contains(&format!("`{queue}`"))
        })
        .map(|(level, _, line)| (*level, line.clone()))
        .collect()
}

#[derive(Queue, Serialize, Deserialize, Clone)]
#[queue(name = "mial")]
struct Typo {
    n: u32,
}

#[derive(Queue, Serialize, Deserialize, Clone)]
#[queue(name = "mail")]
struct Mail {
    n: u32,
}

#[derive(Default, MicroAgent)]
struct Mailer;

#[microagent::hooks]
impl Mailer {
    #[consumer(Mail)]
    fn deliver(&mut self, _mail: Mail) {}
}

#[test]
fn a_queue_nobody_consumes_is_named_once_and_its_messages_at_exit() {
    captured();
    microagent::run(async {
        let (mailer, _handle) = microagent::start(Mailer);
        mailer.send(GetInfo).await.expect("started");
        let broker = Broker::current();
        for n in 0..3 {
            broker.send(Typo { n }).await.unwrap();
            broker.send(Mail { n }).await.unwrap();
        }
        // Past the grace period a consumer has to show up.
        actix_rt::time::sleep(Duration::from_millis(1500)).await;
        broker.send(Typo { n: 3 }).await.unwrap();
        let typo = warnings_about("mial");
        assert_eq!(typo.len(), 1, "{typo:?}");
        assert!(
            typo[0].contains("no agent of this process consumes"),
            "{typo:?}"
        );
    });
    // At exit: the four messages nobody took, counted; the consumed queue
    // has nothing left and says nothing.
    let typo = warnings_about("mial");
    assert_eq!(typo.len(), 2, "{typo:?}");
    assert!(
        typo[1].contains("4 message(s)") && typo[1].contains("dropped at exit"),
        "{typo:?}"
    );
    assert_eq!(warnings_about("mail"), Vec::<String>::new());
}

#[derive(Queue, Serialize, Deserialize, Clone)]
#[queue(name = "flaky")]
struct Flaky {
    n: u32,
}

#[derive(Default, MicroAgent)]
struct Refuser;

#[microagent::hooks]
impl Refuser {
    #[consumer(Flaky, attempts = 3, backoff = 0.01)]
    fn refuse(&mut self, _job: Flaky) -> Result<(), std::io::Error> {
        Err(std::io::Error::other("refused"))
    }
}

#[test]
fn each_failed_attempt_is_one_line_a_warn_per_retry_and_an_error_for_the_dead_letter() {
    captured();
    microagent::run(async {
        let (refuser, _handle) = microagent::start(Refuser);
        refuser.send(GetInfo).await.expect("started");
        let broker = Broker::current();
        broker.send(Flaky { n: 1 }).await.unwrap();
        while broker.dead_letters("flaky").await.unwrap().is_empty() {
            actix_rt::time::sleep(Duration::from_millis(5)).await;
        }
    });
    let logged = logged_about("flaky");
    let levels: Vec<log::Level> = logged.iter().map(|(level, _)| *level).collect();
    assert_eq!(
        levels,
        [log::Level::Warn, log::Level::Warn, log::Level::Error],
        "{logged:#?}"
    );
    assert!(logged[0].1.contains("attempt 1 of 3"), "{logged:#?}");
    assert!(
        logged[2].1.contains("dead-lettered: refused"),
        "{logged:#?}"
    );
    assert!(logged[2].1.contains("Refuser.refuse"), "{logged:#?}");
}

#[derive(Default, MicroAgent)]
struct Hooked;

#[microagent::hooks]
impl Hooked {
    #[on(pre_start)]
    async fn open(&mut self) {}

    #[periodic(period = 3600.0)]
    fn tick(&mut self) {}
}

#[test]
fn a_user_of_log_alone_sees_only_the_crates_lines_whatever_the_features() {
    captured();
    microagent::run(async {
        let (hooked, _h) = microagent::start(Hooked);
        let (mailer, _m) = microagent::start(Mailer);
        hooked.send(GetInfo).await.expect("started");
        mailer.send(GetInfo).await.expect("started");
        Broker::current().send(Mail { n: 9 }).await.unwrap();
        while Broker::current().length("mail").await.unwrap() > 0 {
            actix_rt::time::sleep(Duration::from_millis(5)).await;
        }
    });
    let lines = captured().0.lock().unwrap_or_else(|e| e.into_inner());
    // Hooks, task runs, sends and consumer runs happened: with the
    // `tracing` feature each made a span, and `tracing`'s fallback to
    // `log` (turned on by actix's codec) would have logged each one.
    let spans: Vec<_> = lines
        .iter()
        .filter(|(_, target, line)| target.starts_with("tracing") || line.contains("otel."))
        .collect();
    assert!(spans.is_empty(), "span lines in the log: {spans:#?}");
    assert!(
        lines.iter().any(|(_, target, _)| target == "microagent"),
        "the crate's own lines are there"
    );
}
