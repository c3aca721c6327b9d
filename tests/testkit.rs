//! The test kit's own behaviour: an agent's outcome, signals in and out,
//! scripted answers to its calls, messages settled each way, what it sent
//! to queues, and its periodic and cron tasks in virtual time.

mod support;

use std::time::Duration;

use chrono::TimeZone;
use microagent::broker::{Broker, Queue, Settlement};
use microagent::bus::{Bus, Signal};
use microagent::prelude::*;
use microagent::testkit::{TestKit, SENDER};
use microagent::{AgentError, Stage};
use serde::{Deserialize, Serialize};
use serde_json::json;
use support::matrix::{on_backends, Backend};
use support::{Boom, Events};

#[derive(Signal, Serialize, Deserialize)]
struct Price {
    item: String,
}

#[derive(Signal, Serialize, Deserialize)]
struct Quote {
    item: String,
    price: u64,
}

#[derive(Queue, Serialize, Deserialize, Clone)]
#[queue(name = "orders")]
struct Order {
    item: String,
    fail_times: u32,
}

#[derive(Queue, Serialize, Deserialize, Clone)]
#[queue(name = "invoices")]
struct Invoice {
    item: String,
    total: u64,
}

/// Asks `price` (an RPC someone else answers) for each order, announces a
/// quote and queues an invoice; fails an order's first `fail_times`
/// attempts.
#[derive(Default, MicroAgent)]
struct Seller {
    events: Events,
    attempts: u32,
}

#[microagent::hooks]
impl Seller {
    #[consumer(Order, attempts = 3, backoff = 0.01)]
    async fn sell(&mut self, order: Order) -> Result<(), Boom> {
        self.attempts += 1;
        if self.attempts <= order.fail_times {
            return Err(Boom("not now"));
        }
        self.attempts = 0;
        let bus = Bus::current();
        let ask = Price {
            item: order.item.clone(),
        };
        let answers = bus
            .call("seller", ask, Duration::from_secs(1))
            .await
            .map_err(|_| Boom("no price"))?;
        let price = answers.iter().find_map(|(_, v)| v.as_u64()).unwrap_or(0);
        self.events.push(format!("sold {} at {price}", order.item));
        bus.send(
            "seller",
            Quote {
                item: order.item.clone(),
                price,
            },
        )
        .await
        .map_err(|_| Boom("bus down"))?;
        let invoice = Invoice {
            item: order.item,
            total: price,
        };
        Broker::current()
            .send(invoice)
            .await
            .map_err(|_| Boom("broker down"))
    }

    #[receiver(Quote)]
    fn quoted(&mut self, quote: Quote, sender: String) -> String {
        self.events.push(format!(
            "quote {} {} from {sender}",
            quote.item, quote.price
        ));
        format!("noted {}", quote.item)
    }
}

/// Panics on every order, in a plain `fn`.
#[derive(Default, MicroAgent)]
struct Clumsy;

#[microagent::hooks]
impl Clumsy {
    #[consumer(Order, attempts = 2, backoff = 0.01)]
    fn sell(&mut self, order: Order) {
        panic!("dropped the {}", order.item);
    }
}

/// Under the kit too, a panic is a failed attempt: two attempts, then the
/// dead letters with the panic (it was taken again thousands of times a
/// second, and never settled).
#[test]
fn a_panicking_plain_fn_consumer_is_dead_lettered_under_the_kit() {
    TestKit::new().run(|kit| async move {
        let clumsy = kit.start(Clumsy);
        assert!(clumsy.started().await);
        let fate = kit
            .consume(Order {
                item: "vase".into(),
                fail_times: 0,
            })
            .await;
        assert_eq!(fate.attempts(), 2);
        let reason = fate.dead_lettered().unwrap_or_default();
        assert!(reason.contains("dropped the vase"), "{reason}");
        clumsy.stop().await.unwrap();
    });
}

// The same kit on every backend: the bus and broker of a real server,
// under a prefix and namespace of the test's own.
on_backends!([in_process, redis, amqp, nats, kafka] => messages_are_acked_retried_or_dead_lettered_and_calls_get_scripted_answers);

fn messages_are_acked_retried_or_dead_lettered_and_calls_get_scripted_answers(backend: Backend) {
    let events = Events::default();
    let watched = events.clone();
    let kit = TestKit::new()
        .bus(backend.bus_config())
        .broker(backend.broker_config());
    kit.run(|kit| async move {
        kit.answer(|ask: Price| if ask.item == "apple" { 3 } else { 10 });
        let seller = kit.start(Seller {
            events: watched.clone(),
            attempts: 0,
        });
        assert!(seller.started().await);

        let fate = kit
            .consume(Order {
                item: "apple".into(),
                fail_times: 0,
            })
            .await;
        assert_eq!(fate.settlements, [Settlement::Acked]);

        let fate = kit
            .consume(Order {
                item: "pear".into(),
                fail_times: 2,
            })
            .await;
        assert!(fate.acked());
        assert_eq!(fate.retries(), ["not now", "not now"]);
        assert_eq!(fate.attempts(), 3);

        let fate = kit
            .consume(Order {
                item: "plum".into(),
                fail_times: 5,
            })
            .await;
        assert_eq!(fate.dead_lettered(), Some("not now"));
        assert_eq!(fate.attempts(), 3);
        let dead = Broker::current().dead_letters("orders").await.unwrap();
        assert_eq!(dead.len(), 1);

        // What the seller sent: its calls and signals, and its invoices.
        let sent: Vec<(String, String, bool)> = kit
            .sent()
            .into_iter()
            .map(|s| (s.signal, s.sender, s.call))
            .collect();
        assert_eq!(
            sent,
            [
                ("price".into(), "seller".into(), true),
                ("quote".into(), "seller".into(), false),
                ("price".into(), "seller".into(), true),
                ("quote".into(), "seller".into(), false),
            ]
        );
        assert_eq!(kit.sent()[1].args["price"], 3);
        let invoices: Vec<_> = kit
            .queued()
            .into_iter()
            .filter(|(queue, _)| queue == "invoices")
            .map(|(_, message)| message)
            .collect();
        assert_eq!(
            invoices,
            [
                json!({"item": "apple", "total": 3}),
                json!({"item": "pear", "total": 10})
            ]
        );

        // A signal to its receiver, and its answer to a call.
        kit.send(Quote {
            item: "fig".into(),
            price: 7,
        })
        .await
        .unwrap();
        let answers = kit
            .call(Quote {
                item: "kiwi".into(),
                price: 1,
            })
            .await
            .unwrap();
        assert_eq!(answers.get("Seller.quoted"), Some(&json!("noted kiwi")));
        seller.stop().await.unwrap();
    });
    let quotes: Vec<String> = events
        .all()
        .into_iter()
        .filter(|e| e.starts_with("quote"))
        .collect();
    assert_eq!(
        quotes,
        [
            "quote apple 3 from seller",
            "quote pear 10 from seller",
            format!("quote fig 7 from {SENDER}").as_str(),
            format!("quote kiwi 1 from {SENDER}").as_str(),
        ]
    );
}

#[test]
fn two_messages_consumed_at_once_each_get_their_fate() {
    TestKit::new().run(|kit| async move {
        kit.answer(|_: Price| 1);
        let seller = kit.start(Seller::default());
        seller.started().await;
        let good = Order {
            item: "apple".into(),
            fail_times: 0,
        };
        let bad = Order {
            item: "plum".into(),
            fail_times: 9,
        };
        let (bad, good) = tokio::join!(kit.consume(bad), kit.consume(good));
        assert_eq!(bad.dead_lettered(), Some("not now"));
        assert!(good.acked(), "{good:?}");
        seller.stop().await.unwrap();
    });
}

/// Fails its `pre_start`.
#[derive(Default, MicroAgent)]
struct Broken;

#[microagent::hooks]
impl Broken {
    #[on(pre_start)]
    fn open(&mut self) -> Result<(), Boom> {
        Err(Boom("no database"))
    }
}

#[test]
fn an_agent_that_fails_to_start_gives_its_outcome() {
    let outcome = TestKit::new().run(|kit| async move {
        let broken = kit.start(Broken);
        assert!(!broken.started().await);
        broken.outcome().await
    });
    let Err(AgentError::Failed { failures, .. }) = outcome else {
        panic!("{outcome:?}");
    };
    assert_eq!(failures[0].stage, Stage::PreStart);
    assert_eq!(failures[0].hook, "open");
}

/// A periodic task every 10 s and a cron task at the top of each hour.
#[derive(Default, MicroAgent)]
struct Clockwork {
    events: Events,
}

#[microagent::hooks]
impl Clockwork {
    #[periodic(period = 10.0, start_after = 10.0)]
    fn tick(&mut self) {
        self.events.push("tick");
    }

    #[cron("0 0 * * * *")]
    fn hourly(&mut self) {
        self.events.push("hourly");
    }
}

#[test]
fn periodic_and_cron_tasks_run_in_virtual_time() {
    let events = Events::default();
    let watched = events.clone();
    let half_past = chrono::Utc.with_ymd_and_hms(2026, 1, 1, 0, 30, 0).unwrap();
    let real = std::time::Instant::now();
    TestKit::new()
        .virtual_time(half_past)
        .run(|kit| async move {
            let clock = kit.start(Clockwork {
                events: watched.clone(),
            });
            clock.started().await;
            let count = |what: &str| watched.all().iter().filter(|e| *e == what).count();
            kit.advance(Duration::from_secs(35)).await;
            assert_eq!(count("tick"), 3);
            // 00:30:35 now: the first top of the hour is 29 min 25 s away.
            kit.advance(Duration::from_secs(29 * 60 + 24)).await;
            assert_eq!(count("hourly"), 0);
            kit.advance(Duration::from_secs(2)).await;
            assert_eq!(count("hourly"), 1);
            kit.advance(Duration::from_secs(3600)).await;
            assert_eq!(count("hourly"), 2);
            clock.stop().await.unwrap();
        });
    // Hours of schedule, not hours of waiting (a hang detector, not a
    // performance threshold).
    assert!(real.elapsed() < support::process::HANG);
}

/// Serves HTTP with actix-web on a port the OS picks.
#[cfg(feature = "web")]
#[derive(Default, MicroAgent)]
struct Hello;

#[cfg(feature = "web")]
#[microagent::hooks]
impl Hello {
    #[on(server)]
    fn http(
        &self,
        srv: ServerContext<Self>,
    ) -> impl std::future::Future<Output = std::io::Result<()>> {
        async move {
            let server = actix_web::HttpServer::new(|| {
                actix_web::App::new().route("/", actix_web::web::get().to(|| async { "hello" }))
            })
            .workers(1)
            .bind("127.0.0.1:0")?;
            microagent::web::serve(server, srv).await
        }
    }
}

#[cfg(feature = "web")]
#[test]
fn the_kit_gives_an_http_agent_s_address_once_it_listens() {
    TestKit::new().run(|kit| async move {
        let hello = kit.start(Hello);
        let addr = hello.bound_address("http").await.expect("it listens");
        let mut response = awc::Client::default()
            .get(format!("http://{addr}/"))
            .send()
            .await
            .expect("it answers");
        assert_eq!(response.status(), 200);
        assert_eq!(response.body().await.expect("a body"), "hello");
        hello.stop().await.unwrap();
    });
}

/// A daily job at 02:30 in Berlin: a time that does not exist on the day
/// summer time starts and exists twice on the day it ends.
#[cfg(feature = "tz")]
#[derive(Default, MicroAgent)]
struct Berlin {
    events: Events,
}

#[cfg(feature = "tz")]
#[microagent::hooks]
impl Berlin {
    #[cron("30 2 * * *", tz = "Europe/Berlin")]
    fn nightly(&mut self) {
        self.events.push("nightly");
    }
}

/// Runs the Berlin job in virtual time from `start` (UTC): each of
/// `steps` advances to a UTC time and expects that many runs so far; then
/// the next due time the agent reports, and its zone.
#[cfg(feature = "tz")]
fn berlin_nights(
    start: chrono::DateTime<chrono::Utc>,
    steps: &[(chrono::DateTime<chrono::Utc>, usize)],
) -> (Option<String>, microagent::Zone, serde_json::Value) {
    let events = Events::default();
    let watched = events.clone();
    let steps = steps.to_vec();
    TestKit::new().virtual_time(start).run(|kit| async move {
        let berlin = kit.start(Berlin {
            events: watched.clone(),
        });
        berlin.started().await;
        let mut now = start;
        for (at, runs) in steps {
            kit.advance((at - now).to_std().expect("steps go forward"))
                .await;
            now = at;
            assert_eq!(watched.count("nightly"), runs, "runs by {at}");
        }
        let info = berlin.addr().send(GetInfo).await.unwrap();
        berlin.stop().await.unwrap();
        let cron = &info.cron[0];
        let json = serde_json::to_value(cron).unwrap();
        (
            cron.next_due.clone(),
            cron.timezone,
            json["timezone"].clone(),
        )
    })
}

/// Spring: 02:30 does not exist on 29 March 2026 (02:00 CET jumps to
/// 03:00 CEST): the job runs right after the gap, at 03:00 CEST (01:00
/// UTC), once; the next night at 02:30 CEST (00:30 UTC).
#[cfg(feature = "tz")]
#[test]
fn a_named_zone_cron_task_runs_right_after_the_spring_gap() {
    let utc = |d, h, m, s| chrono::Utc.with_ymd_and_hms(2026, 3, d, h, m, s).unwrap();
    let (next, zone, json) = berlin_nights(
        utc(28, 12, 0, 0),
        &[
            (utc(29, 0, 59, 59), 0),
            (utc(29, 1, 0, 1), 1),
            (utc(29, 23, 0, 0), 1),
        ],
    );
    assert_eq!(next.as_deref(), Some("2026-03-30T00:30:00+00:00"));
    assert_eq!(zone, microagent::Zone::Named("Europe/Berlin"));
    assert_eq!(json, "Europe/Berlin");
}

/// Autumn: 02:30 happens twice on 25 October 2026 (03:00 CEST falls back
/// to 02:00 CET): the job runs once, the first time (00:30 UTC), not at
/// the second (01:30 UTC); the next night at 02:30 CET (01:30 UTC).
#[cfg(feature = "tz")]
#[test]
fn a_named_zone_cron_task_runs_once_in_the_autumn_overlap() {
    let utc = |d, h, m, s| chrono::Utc.with_ymd_and_hms(2026, 10, d, h, m, s).unwrap();
    let (next, _, _) = berlin_nights(
        utc(24, 12, 0, 0),
        &[
            (utc(25, 0, 29, 59), 0),
            (utc(25, 0, 30, 1), 1),
            (utc(25, 1, 30, 1), 1),
            (utc(25, 23, 0, 0), 1),
        ],
    );
    assert_eq!(next.as_deref(), Some("2026-10-26T01:30:00+00:00"));
}
