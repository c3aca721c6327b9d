//! Messages the in-process broker would lose without a word: sent to a
//! queue no agent consumes, or left in a queue at exit. The broker says so
//! (a WARN naming the queue, and how many are dropped); consumed queues
//! stay quiet. Logs are this behaviour, so this file captures them.

use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use microagent::broker::{Broker, Queue};
use microagent::prelude::*;
use serde::{Deserialize, Serialize};

/// Every WARN or worse, as text.
struct Capture(Mutex<Vec<String>>);

impl log::Log for Capture {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.level() <= log::Level::Warn
    }

    fn log(&self, record: &log::Record<'_>) {
        if self.enabled(record.metadata()) {
            let mut lines = self.0.lock().unwrap_or_else(|e| e.into_inner());
            lines.push(record.args().to_string());
        }
    }

    fn flush(&self) {}
}

fn captured() -> &'static Capture {
    static CAPTURE: OnceLock<&'static Capture> = OnceLock::new();
    CAPTURE.get_or_init(|| {
        let capture: &'static Capture = Box::leak(Box::new(Capture(Mutex::default())));
        log::set_logger(capture).expect("the only logger of this test binary");
        log::set_max_level(log::LevelFilter::Warn);
        capture
    })
}

fn warnings_about(queue: &str) -> Vec<String> {
    let lines = captured().0.lock().unwrap_or_else(|e| e.into_inner());
    lines
        .iter()
        .filter(|line| line.contains(&format!("`{queue}`")))
        .cloned()
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
