//! The bus semantics, run on both backends: receivers declared on agents,
//! signals, RPC calls. Each test runs once on the in-process bus and once
//! on Redis (with `REDIS_URL`; compiled as ignored without it), each Redis run
//! with a channel prefix of its own.

mod support;

use std::time::Duration;

use microagent::bus::{AnswerError, Answers, Bus, BusError, DynSignal, Signal};
use microagent::prelude::*;
use serde::{Deserialize, Serialize};
use support::matrix::{on_backends, Backend};
use support::{Boom, Events};

#[derive(Signal, Serialize, Deserialize, Debug, Clone, PartialEq)]
struct UserCreated {
    user_id: u64,
}

#[derive(Signal, Serialize, Deserialize, Clone)]
#[signal(name = "get_stock")]
struct GetStock {
    item: String,
}

/// Receives `user_created` (sync) and answers `get_stock` (async).
#[derive(Default, MicroAgent)]
struct Shop {
    events: Events,
    stock: u32,
    slow: bool,
}

#[microagent::hooks]
impl Shop {
    #[receiver(UserCreated)]
    fn welcome(&mut self, signal: UserCreated, sender: String) {
        self.events
            .push(format!("welcome {} from {sender}", signal.user_id));
    }

    #[receiver(GetStock, timeout = 0.2)]
    async fn stock(&mut self, signal: GetStock) -> Result<u32, Boom> {
        if self.slow {
            actix_rt::time::sleep(Duration::from_secs(5)).await;
        }
        if signal.item == "unknown" {
            return Err(Boom("no such item"));
        }
        self.stock -= 1;
        Ok(self.stock)
    }
}

/// Also answers `get_stock`, and signals itself from `post_start`.
#[derive(Default, MicroAgent)]
struct Warehouse {
    events: Events,
}

#[microagent::hooks]
impl Warehouse {
    /// Sent to itself while the agent is busy with its start hooks: the
    /// delivery waits in the mailbox, and arrives because the receiver was
    /// subscribed before `post_start`.
    #[on(post_start)]
    async fn announce(&mut self) {
        Bus::current()
            .send("warehouse", UserCreated { user_id: 0 })
            .await
            .unwrap();
    }

    #[receiver(UserCreated)]
    fn seen(&mut self, signal: UserCreated) {
        self.events
            .push(format!("warehouse saw {}", signal.user_id));
    }

    #[receiver(GetStock)]
    fn stock(&mut self, _signal: GetStock) -> &'static str {
        "plenty"
    }
}

#[derive(Signal, Serialize, Deserialize, Clone)]
#[signal(name = "inspect")]
struct Inspect {
    panic: bool,
}

/// Answers `inspect` from a plain `fn`, or panics.
#[derive(Default, MicroAgent)]
struct Brittle;

#[microagent::hooks]
impl Brittle {
    #[receiver(Inspect)]
    fn inspect(&mut self, signal: Inspect) -> u32 {
        if signal.panic {
            panic!("inspection failed");
        }
        7
    }
}

#[derive(Signal, Serialize, Deserialize, Clone)]
#[signal(name = "hold")]
struct Hold {}

#[derive(Signal, Serialize, Deserialize, Clone)]
#[signal(name = "tick")]
struct Tick {
    n: u32,
}

#[derive(Signal, Serialize, Deserialize, Clone)]
#[signal(name = "witness")]
struct Witness {}

/// Holds the agent (in an async receiver) until the test opens the gate;
/// ticks queue up behind it meanwhile.
#[derive(Default, MicroAgent)]
struct Gated {
    events: Events,
    gate: std::sync::Arc<tokio::sync::Notify>,
}

#[microagent::hooks]
impl Gated {
    #[receiver(Hold)]
    async fn hold(&mut self, _signal: Hold) {
        self.events.push("held");
        self.gate.notified().await;
    }

    #[receiver(Tick)]
    fn tick(&mut self, signal: Tick) {
        self.events.push(format!("tick {}", signal.n));
    }

    #[on(pre_stop)]
    fn bye(&mut self) {
        self.events.push("pre_stop");
    }
}

/// Sees `witness`: everything published before it was dispatched.
#[derive(Default, MicroAgent)]
struct Witnessing {
    events: Events,
}

#[microagent::hooks]
impl Witnessing {
    #[receiver(Witness)]
    fn saw(&mut self, _signal: Witness) {
        self.events.push("witnessed");
    }
}

fn shop(events: &Events) -> Shop {
    Shop {
        events: events.clone(),
        stock: 10,
        slow: false,
    }
}

on_backends!([in_process, redis, redis_cluster, nats] =>
    a_signal_reaches_every_receiver_and_a_self_signal_from_post_start_arrives,
    a_call_gets_every_answer_keyed_by_agent_and_method,
    named_instances_answer_under_their_names_and_one_answer_is_taken_typed,
    a_signal_known_only_at_run_time_is_received_checked_against_its_declaration,
    a_call_nobody_answers_is_a_typed_error,
    a_failing_or_slow_receiver_answers_null_and_the_agent_goes_on,
    arguments_that_do_not_fit_the_signal_answer_null_and_the_agent_goes_on,
    an_agent_stops_receiving_when_its_stop_begins,
    a_receiver_with_its_own_type_for_the_signal_gets_it_through_json,
    answers_stream_in_as_they_arrive_and_the_stream_ends_when_all_answered,
    pre_stop_hooks_can_still_send,
    an_agent_reachable_through_the_bus_lives_without_its_addr,
    a_panicking_plain_fn_receiver_answers_null_and_the_agent_goes_on,
    signals_waiting_when_the_stop_is_asked_for_are_dropped_and_pre_stop_runs,
);

/// A hang detector for calls, not a performance threshold.
const LONG: Duration = Duration::from_secs(60);

/// Resolves once the agent's start hooks are done (messages wait for them),
/// so its receivers are subscribed.
async fn started<A: Agent>(addr: &Addr<A>) {
    addr.send(GetInfo).await.expect("the agent started");
}

fn a_signal_reaches_every_receiver_and_a_self_signal_from_post_start_arrives(backend: Backend) {
    let events = Events::default();
    let warehouse_events = events.clone();
    let shop_events = events.clone();
    backend.run_bus(async move {
        let (shop_addr, shop) = microagent::start(self::shop(&shop_events));
        let (_warehouse, warehouse) = microagent::start(Warehouse {
            events: warehouse_events,
        });
        // Sent to itself from post_start: it was subscribed before.
        events.seen("warehouse saw 0").await;
        started(&shop_addr).await;
        Bus::current()
            .send("gateway", UserCreated { user_id: 7 })
            .await
            .unwrap();
        events.seen("welcome 7 from gateway").await;
        events.seen("warehouse saw 7").await;
        shop.stop();
        warehouse.stop();
        shop.await.unwrap();
        warehouse.await.unwrap();
    });
}

fn a_call_gets_every_answer_keyed_by_agent_and_method(backend: Backend) {
    let answers = backend.run_bus(async {
        let (shop, _s) = microagent::start(shop(&Events::default()));
        let (warehouse, _w) = microagent::start(Warehouse::default());
        started(&shop).await;
        started(&warehouse).await;
        let ask = GetStock {
            item: "apple".into(),
        };
        let answers = Bus::current().call("test", ask, LONG).await.unwrap();
        assert_eq!(answers.len(), 2);
        answers
    });
    assert_eq!(answers.decode::<u32>("Shop.stock").unwrap().unwrap(), 9);
    assert_eq!(
        answers.get("Warehouse.stock"),
        Some(&serde_json::json!("plenty"))
    );
}

fn named_instances_answer_under_their_names_and_one_answer_is_taken_typed(backend: Backend) {
    let (one, two) = backend.run_bus(async {
        let ask = || GetStock {
            item: "apple".into(),
        };
        let (first, first_handle) = microagent::start(shop(&Events::default()).named("shop-1"));
        started(&first).await;
        let one = Bus::current().call("test", ask(), LONG).await.unwrap();
        let (second, _s) = microagent::start(shop(&Events::default()).named("shop-2"));
        started(&second).await;
        let two = Bus::current().call("test", ask(), LONG).await.unwrap();
        first_handle.stop();
        (one, two)
    });
    // One answer: taken typed, whatever its key; a wrong type says whose.
    assert_eq!(one.one::<u32>(), Ok(9));
    let wrong = one.one::<String>().unwrap_err();
    assert!(
        matches!(&wrong, AnswerError::Decode { responder, .. } if responder == "shop-1.stock"),
        "{wrong:?}"
    );
    // Two instances of one type: each under its own name.
    let keys: Vec<String> = two.clone().into_map().into_keys().collect();
    assert_eq!(keys, ["shop-1.stock", "shop-2.stock"]);
    match two.one::<u32>() {
        Err(AnswerError::Several { mut responders }) => {
            responders.sort();
            assert_eq!(responders, ["shop-1.stock", "shop-2.stock"]);
        }
        other => panic!("expected several answers, got {other:?}"),
    }
    assert_eq!(two.into_iter().count(), 2);
    assert_eq!(Answers::default().one::<u32>(), Err(AnswerError::None));
}

fn a_signal_known_only_at_run_time_is_received_checked_against_its_declaration(backend: Backend) {
    let declarations = microagent::bus::Declarations::from_json(
        r#"{"signals": [{"name": "rate", "providing_args": {"currency": "string"}}], "queues": []}"#,
    )
    .unwrap();
    let spec = declarations.signal("rate").unwrap().clone();
    let args = |value: serde_json::Value| value.as_object().unwrap().clone();
    let (eur, refused, after) = backend.run_bus(async move {
        let bus = Bus::current();
        let receiving = bus
            .receive(&spec, "Rates.rate", |signal, sender| {
                serde_json::json!(format!("{} for {sender}", signal.args()["currency"]))
            })
            .await
            .unwrap();
        let ask = spec
            .signal(args(serde_json::json!({"currency": "EUR"})))
            .unwrap();
        let eur = bus.call_dyn("shop", &ask, LONG).await.unwrap();
        // A number where the declaration says string: answered null.
        let wrong = DynSignal::new("rate", args(serde_json::json!({"currency": 7}))).unwrap();
        let refused = bus.call_dyn("shop", &wrong, LONG).await.unwrap();
        drop(receiving);
        let after = bus
            .call_dyn("shop", &ask, std::time::Duration::from_millis(300))
            .await;
        (eur, refused, after)
    });
    assert_eq!(eur.one::<String>(), Ok("\"EUR\" for shop".to_owned()));
    assert_eq!(refused.get("Rates.rate"), Some(&serde_json::Value::Null));
    assert!(matches!(after, Err(BusError::NoAnswer { .. })), "{after:?}");
}

fn a_call_nobody_answers_is_a_typed_error(backend: Backend) {
    let error = backend.run_bus(async {
        Bus::current()
            .call(
                "test",
                GetStock { item: "x".into() },
                Duration::from_millis(50),
            )
            .await
            .unwrap_err()
    });
    assert_eq!(
        error,
        BusError::NoAnswer {
            signal: "get_stock".into(),
            timeout: Duration::from_millis(50),
            asked: 0,
        }
    );
}

fn a_failing_or_slow_receiver_answers_null_and_the_agent_goes_on(backend: Backend) {
    let (failed, slow_answer, after) = backend.run_bus(async {
        let (addr, handle) = microagent::start(Shop {
            stock: 10,
            ..Default::default()
        });
        let bus = Bus::current();
        let unknown = GetStock {
            item: "unknown".into(),
        };
        started(&addr).await;
        let failed = bus.call("test", unknown, LONG).await.unwrap();
        let counted = addr.send(GetInfo).await.unwrap().receivers[1].runs.clone();
        assert_eq!(
            (counted.failed, counted.timed_out, counted.bad_input),
            (1, 0, 0)
        );
        assert!(counted.last_failure.is_some());
        drop(addr);
        handle.stop();
        handle.await.unwrap();
        // A slow one: cancelled by its 200 ms timeout, answer null.
        let (addr, handle) = microagent::start(Shop {
            stock: 10,
            slow: true,
            ..Default::default()
        });
        started(&addr).await;
        let apple = GetStock {
            item: "apple".into(),
        };
        let slow = bus.call("test", apple.clone(), LONG).await.unwrap();
        // The agent came back from the cancelled run and still answers.
        let after = bus.call("test", apple, LONG).await.unwrap();
        let counted = addr.send(GetInfo).await.unwrap().receivers[1].runs.clone();
        assert_eq!((counted.failed, counted.timed_out), (0, 2));
        handle.stop();
        handle.await.unwrap();
        (failed, slow, after)
    });
    assert_eq!(failed.get("Shop.stock"), Some(&serde_json::Value::Null));
    assert_eq!(
        slow_answer.get("Shop.stock"),
        Some(&serde_json::Value::Null)
    );
    assert_eq!(
        after.get("Shop.stock"),
        Some(&serde_json::Value::Null),
        "still slow"
    );
}

/// A backlog of signals does not hold up a stop: those still in the
/// mailbox when the stop is asked for are dropped and counted (they were
/// at-most-once), and `pre_stop` runs next. (They were all handled first:
/// 100 000 at 200 µs each overran a 10 s deadline.)
fn signals_waiting_when_the_stop_is_asked_for_are_dropped_and_pre_stop_runs(backend: Backend) {
    let events = Events::default();
    let watched = events.clone();
    backend.run_bus(async move {
        let gate = std::sync::Arc::new(tokio::sync::Notify::new());
        let (addr, handle) = microagent::start(Gated {
            events: watched.clone(),
            gate: gate.clone(),
        });
        let witness = Events::default();
        let (witness_addr, witnessing) = microagent::start(Witnessing {
            events: witness.clone(),
        });
        started(&addr).await;
        started(&witness_addr).await;
        let bus = Bus::current();
        bus.send("test", Hold {}).await.unwrap();
        watched.seen("held").await;
        for n in 0..2000 {
            bus.send("test", Tick { n }).await.unwrap();
        }
        // Delivered in order: the ticks are in the mailbox once this is.
        bus.send("test", Witness {}).await.unwrap();
        witness.seen("witnessed").await;
        handle.stop();
        gate.notify_one();
        handle.wait().await.unwrap();
        witnessing.stop();
        witnessing.await.unwrap();
    });
    // None of the 2000 ticks ran.
    assert_eq!(events.all(), ["held", "pre_stop"]);
}

/// A plain `fn` receiver that panics answers `null`, as an `async fn` one
/// does (the caller got `NoAnswer`).
fn a_panicking_plain_fn_receiver_answers_null_and_the_agent_goes_on(backend: Backend) {
    let (panicked, after, runs) = backend.run_bus(async {
        let (addr, handle) = microagent::start(Brittle);
        started(&addr).await;
        let bus = Bus::current();
        let panicked = bus.call("test", Inspect { panic: true }, LONG).await;
        let after = bus.call("test", Inspect { panic: false }, LONG).await;
        let runs = addr.send(GetInfo).await.unwrap().receivers[0].runs.clone();
        handle.stop();
        handle.await.unwrap();
        (panicked.unwrap(), after.unwrap(), runs)
    });
    assert_eq!(
        panicked.get("Brittle.inspect"),
        Some(&serde_json::Value::Null)
    );
    assert_eq!(after.get("Brittle.inspect"), Some(&serde_json::json!(7)));
    assert_eq!((runs.panicked, runs.failed), (1, 0));
}

fn arguments_that_do_not_fit_the_signal_answer_null_and_the_agent_goes_on(backend: Backend) {
    let (wrong, right) = backend.run_bus(async {
        let (addr, handle) = microagent::start(shop(&Events::default()));
        started(&addr).await;
        let bus = Bus::current();
        let wrong_args = serde_json::json!({"item": 42});
        let wrong = DynSignal::new("get_stock", wrong_args.as_object().unwrap().clone()).unwrap();
        let wrong = bus.call_dyn("python", &wrong, LONG).await.unwrap();
        let counted = addr.send(GetInfo).await.unwrap().receivers[1].runs.clone();
        assert_eq!(
            (counted.bad_input, counted.failed),
            (1, 0),
            "counted as bad input"
        );
        let right = bus
            .call(
                "test",
                GetStock {
                    item: "apple".into(),
                },
                LONG,
            )
            .await
            .unwrap();
        // A declared signal (its arguments in the declaration's order on
        // the wire) reaches the typed receiver too.
        let declarations = microagent::bus::Declarations::from_json(
            r#"{"signals": [{"name": "get_stock", "providing_args": {"item": "string"}}], "queues": []}"#,
        )
        .unwrap();
        let mut args = serde_json::Map::new();
        args.insert("item".into(), serde_json::json!("apple"));
        let declared = declarations.signal("get_stock").unwrap().signal(args).unwrap();
        let answered = bus.call_dyn("python", &declared, LONG).await.unwrap();
        // (The shop sells one per call: 9 were left after the one before.)
        assert_eq!(answered.get("Shop.stock"), Some(&serde_json::json!(8)));
        handle.stop();
        handle.await.unwrap();
        (wrong, right)
    });
    assert_eq!(wrong.get("Shop.stock"), Some(&serde_json::Value::Null));
    assert_eq!(right.decode::<u32>("Shop.stock").unwrap().unwrap(), 9);
}

fn an_agent_stops_receiving_when_its_stop_begins(backend: Backend) {
    let events = Events::default();
    let watched = events.clone();
    let error = backend.run_bus(async move {
        let (addr, handle) = microagent::start(shop(&watched));
        started(&addr).await;
        let bus = Bus::current();
        // Received while it runs.
        bus.send("test", UserCreated { user_id: 1 }).await.unwrap();
        watched.seen("welcome 1 from test").await;
        handle.stop();
        handle.wait().await.unwrap();
        bus.send("test", UserCreated { user_id: 2 }).await.unwrap();
        bus.call(
            "test",
            GetStock {
                item: "apple".into(),
            },
            Duration::from_millis(50),
        )
        .await
        .unwrap_err()
    });
    // In-process nobody is asked; on Redis the pattern may still be
    // subscribed for a moment (it is released asynchronously), but no
    // receiver runs and nothing answers.
    match error {
        BusError::NoAnswer { asked: 0, .. } => {}
        BusError::NoAnswer { asked: 1, .. } if backend.is_remote() => {}
        other => panic!("{other:?}"),
    }
    assert_eq!(events.count("welcome 2 from test"), 0);
    assert_eq!(UserCreated::NAME, "user_created");
}

#[test]
fn info_lists_the_receivers() {
    let info = Shop::describe();
    let receivers: Vec<(&str, &str, Duration)> = info
        .receivers
        .iter()
        .map(|r| (r.name, r.signal, r.timeout))
        .collect();
    assert_eq!(
        receivers,
        [
            ("welcome", "user_created", Duration::from_secs(60)),
            ("stock", "get_stock", Duration::from_millis(200)),
        ]
    );
    let json = serde_json::to_value(&info).unwrap();
    assert_eq!(
        json["receivers"][1],
        serde_json::json!({
            "name": "stock", "signal": "get_stock", "timeout": 0.2,
            "runs": {"ok": 0, "failed": 0, "panicked": 0, "timed_out": 0, "bad_input": 0, "dropped": 0, "last_failure": null}
        })
    );
}

/// The same wire signal, declared by another agent with its own type (as a
/// separately built service would).
#[derive(Signal, Serialize, Deserialize)]
#[signal(name = "user_created")]
struct NewUser {
    user_id: u64,
}

#[derive(Default, MicroAgent)]
struct Audit {
    events: Events,
}

#[microagent::hooks]
impl Audit {
    #[receiver(NewUser)]
    fn record(&mut self, signal: NewUser) {
        self.events.push(format!("audit {}", signal.user_id));
    }
}

fn a_receiver_with_its_own_type_for_the_signal_gets_it_through_json(backend: Backend) {
    let events = Events::default();
    let watched = events.clone();
    backend.run_bus(async move {
        let (addr, handle) = microagent::start(Audit {
            events: watched.clone(),
        });
        started(&addr).await;
        Bus::current()
            .send("test", UserCreated { user_id: 5 })
            .await
            .unwrap();
        watched.seen("audit 5").await;
        handle.stop();
        handle.await.unwrap();
    });
    assert_eq!(events.all(), ["audit 5"]);
}

fn answers_stream_in_as_they_arrive_and_the_stream_ends_when_all_answered(backend: Backend) {
    use futures_util::StreamExt;
    let (asked, answers) = backend.run_bus(async {
        // Shop is slow: its 200 ms timeout answers null; Warehouse is quick.
        let (shop, _s) = microagent::start(Shop {
            slow: true,
            ..Default::default()
        });
        let (warehouse, _w) = microagent::start(Warehouse::default());
        started(&shop).await;
        started(&warehouse).await;
        let stream = Bus::current()
            .stream(
                "test",
                GetStock {
                    item: "apple".into(),
                },
                LONG,
            )
            .await
            .unwrap();
        let asked = stream.asked();
        // Ends without waiting for the 60 s timeout: both answered.
        (asked, stream.collect::<Vec<_>>().await)
    });
    let mut expected = vec![
        ("Warehouse.stock".to_owned(), serde_json::json!("plenty")),
        ("Shop.stock".to_owned(), serde_json::Value::Null),
    ];
    if backend.is_remote() {
        // One bus asked; it answers for both receivers in one object.
        assert_eq!(asked, 1);
        let mut answers = answers;
        answers.sort_by(|a, b| a.0.cmp(&b.0));
        expected.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(answers, expected);
    } else {
        // Each receiver asked; the quick one's answer comes first.
        assert_eq!(asked, 2);
        assert_eq!(answers, expected);
    }
}

/// Sends from `pre_stop`, after its receivers are gone.
#[derive(Default, MicroAgent)]
struct Leaver {
    bus: Option<microagent::bus::AgentBus>,
}

#[microagent::hooks]
impl Leaver {
    #[on(post_start)]
    fn keep_the_bus(&mut self, ctx: &mut Context<Self>) {
        self.bus = Some(ctx.bus());
    }

    #[on(pre_stop)]
    async fn goodbye(&mut self) {
        let bus = self.bus.as_ref().expect("kept in post_start");
        bus.send(UserCreated { user_id: 99 })
            .await
            .expect("the bus is still there during pre_stop");
    }
}

fn pre_stop_hooks_can_still_send(backend: Backend) {
    let events = Events::default();
    let watched = events.clone();
    backend.run_bus(async move {
        let (shop_addr, shop) = microagent::start(self::shop(&watched));
        started(&shop_addr).await;
        let (leaver_addr, leaver) = microagent::start(Leaver::default());
        started(&leaver_addr).await;
        leaver.stop();
        leaver.await.unwrap();
        // Sent under the agent's name by default.
        watched.seen("welcome 99 from Leaver").await;
        shop.stop();
        shop.await.unwrap();
    });
}

fn an_agent_reachable_through_the_bus_lives_without_its_addr(backend: Backend) {
    let events = Events::default();
    let watched = events.clone();
    backend.run_bus(async move {
        let (addr, handle) = microagent::start(self::shop(&watched));
        started(&addr).await;
        // No `Addr` left: a plain actix actor would stop now.
        drop(addr);
        actix_rt::time::sleep(Duration::from_millis(50)).await;
        assert!(!handle.is_finished());
        let bus = Bus::current();
        bus.send("test", UserCreated { user_id: 3 }).await.unwrap();
        watched.seen("welcome 3 from test").await;
        // Its stop ends the subscription, and with it the bus's reference.
        handle.stop();
        handle.await.unwrap();
    });
}
