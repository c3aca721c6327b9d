//! Testing an agent: run it through its lifecycle, talk to its receivers,
//! script the answers to its calls, put messages on its queues and see how
//! each was settled, drive its periodic and cron tasks in virtual time,
//! and wait for its HTTP server to listen ([`Tested::bound_address`]).
//!
//! The kit uses the real in-process bus and broker of a real actix System
//! by default, not stand-ins. [`TestKit::bus`] and [`TestKit::broker`] put
//! the same test on Redis or RabbitMQ (each test under a prefix and a
//! namespace of its own), with everything else the kit offers unchanged.
//!
//! ```
//! use microagent::bus::Signal;
//! use microagent::broker::Queue;
//! use microagent::prelude::*;
//! use microagent::testkit::TestKit;
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Signal, Serialize, Deserialize)]
//! struct StockLevel {
//!     item: String,
//! }
//!
//! #[derive(Signal, Serialize, Deserialize)]
//! struct Restocked {
//!     item: String,
//! }
//!
//! #[derive(Queue, Serialize, Deserialize, Clone)]
//! struct Refill {
//!     item: String,
//!     count: u64,
//! }
//!
//! #[derive(Default, MicroAgent)]
//! struct Store {
//!     apples: u64,
//! }
//!
//! #[derive(Debug, thiserror::Error)]
//! #[error("unknown item")]
//! struct Unknown;
//!
//! #[microagent::hooks]
//! impl Store {
//!     #[receiver(StockLevel)]
//!     fn level(&mut self, ask: StockLevel) -> u64 {
//!         if ask.item == "apple" { self.apples } else { 0 }
//!     }
//!
//!     #[consumer(Refill, attempts = 2, backoff = 0.01)]
//!     async fn refill(&mut self, refill: Refill) -> Result<(), Unknown> {
//!         if refill.item != "apple" {
//!             return Err(Unknown);
//!         }
//!         self.apples += refill.count;
//!         Bus::current().send("store", Restocked { item: refill.item }).await.ok();
//!         Ok(())
//!     }
//! }
//!
//! use microagent::bus::Bus;
//!
//! TestKit::new().run(|kit| async move {
//!     let store = kit.start(Store::default());
//!     store.started().await;
//!
//!     let fate = kit.consume(Refill { item: "apple".into(), count: 5 }).await;
//!     assert!(fate.acked());
//!     let answers = kit.call(StockLevel { item: "apple".into() }).await.unwrap();
//!     assert_eq!(answers.get("Store.level"), Some(&serde_json::json!(5)));
//!     // What the agent sent on the bus.
//!     assert!(kit.sent().iter().any(|s| s.signal == "restocked" && s.sender == "store"));
//!
//!     let fate = kit.consume(Refill { item: "pear".into(), count: 1 }).await;
//!     assert_eq!(fate.dead_lettered(), Some("unknown item"));
//!     assert_eq!(fate.attempts(), 2);
//!
//!     store.stop().await.unwrap();
//! });
//! ```

use std::cell::RefCell;
use std::fmt;
use std::future::Future;
use std::time::Duration;

use actix::Addr;
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use tokio::sync::mpsc::UnboundedReceiver;

use crate::agent::{Agent, IntoAgent};
use crate::broker::{Broker, BrokerConfig, Queue, QueueEvent, Settlement};
use crate::bus::{
    Answers, Bus, BusConfig, BusError, Confirmation, DeliverFn, Observer, Sent, Signal,
    Subscription,
};
use crate::error::AgentError;
use crate::phase::Phase;
use crate::start::{start, AgentHandle};

/// The sender's name of the signals the kit sends and calls.
pub const SENDER: &str = "testkit";

/// How long a [`Kit::call`] waits for answers (virtual time passes at
/// once while nothing else runs).
pub const CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// Sets up a test: real time or virtual time, then [`run`](TestKit::run).
#[derive(Debug, Default)]
#[must_use]
pub struct TestKit {
    virtual_time: Option<DateTime<Utc>>,
    bus: Option<BusConfig>,
    broker: Option<BrokerConfig>,
}

impl TestKit {
    /// A test in real time.
    pub fn new() -> Self {
        Self::default()
    }

    /// Runs the test in virtual time: Tokio's clock is paused (it moves
    /// with [`Kit::advance`], and jumps ahead by itself whenever every task
    /// waits on a timer), and the wall clock that cron tasks follow shows
    /// `wall` at the start and moves with it.
    ///
    /// ```
    /// use std::sync::{Arc, Mutex};
    /// use std::time::Duration;
    /// use chrono::TimeZone;
    /// use microagent::prelude::*;
    /// use microagent::testkit::TestKit;
    ///
    /// #[derive(Default, MicroAgent)]
    /// struct Report {
    ///     /// Reports and polls so far, for the test to read.
    ///     runs: Arc<Mutex<(u32, u32)>>,
    /// }
    ///
    /// #[microagent::hooks]
    /// impl Report {
    ///     #[cron("0 0 6 * * *")] // 06:00 UTC
    ///     fn daily(&mut self) {
    ///         self.runs.lock().unwrap().0 += 1;
    ///     }
    ///
    ///     #[periodic(period = 60.0)]
    ///     fn poll(&mut self) {
    ///         self.runs.lock().unwrap().1 += 1;
    ///     }
    /// }
    ///
    /// let runs = Arc::new(Mutex::new((0, 0)));
    /// let midnight = chrono::Utc.with_ymd_and_hms(2026, 3, 1, 0, 0, 0).unwrap();
    /// let shared = runs.clone();
    /// TestKit::new().virtual_time(midnight).run(|kit| async move {
    ///     let report = kit.start(Report { runs: shared });
    ///     report.started().await;
    ///     kit.advance(Duration::from_secs(2 * 24 * 3600)).await; // two days, at once
    ///     report.stop().await.unwrap();
    /// });
    /// // 06:00 on both days; every minute from the start.
    /// assert_eq!(*runs.lock().unwrap(), (2, 2 * 24 * 60 + 1));
    /// ```
    pub fn virtual_time(mut self, wall: DateTime<Utc>) -> Self {
        self.virtual_time = Some(wall);
        self
    }

    /// Runs the test on this bus (the in-process one by default), under a
    /// channel prefix of the test's own (`TK` and a random id): tests that
    /// run at once on one Redis do not hear each other. Everything else the
    /// kit offers works the same on it.
    ///
    /// ```no_run
    /// # #[cfg(feature = "redis")] {
    /// use microagent::bus::BusConfig;
    /// use microagent::broker::BrokerConfig;
    /// use microagent::testkit::TestKit;
    ///
    /// let url = std::env::var("REDIS_URL").unwrap();
    /// TestKit::new()
    ///     .bus(BusConfig::redis(&url).unwrap())
    ///     .broker(BrokerConfig::redis(&url).unwrap())
    ///     .run(|kit| async move {
    ///         // kit.start(..), kit.consume(..).await, kit.answer(..) ...
    ///     });
    /// # }
    /// ```
    pub fn bus(mut self, config: BusConfig) -> Self {
        self.bus = Some(config);
        self
    }

    /// Runs the test on this broker (the in-process one by default), under
    /// a namespace of the test's own (`tk` and a random id, then `.`,
    /// which every backend's names take),
    /// so that its queues are its own. On a server, [`Kit::consume`] tells
    /// messages apart by their JSON: consume distinct messages.
    pub fn broker(mut self, config: BrokerConfig) -> Self {
        self.broker = Some(config);
        self
    }

    /// Runs `test` in a new actix System with its bus and broker (the
    /// in-process ones unless [`bus`](TestKit::bus) and
    /// [`broker`](TestKit::broker) name others), and returns what it
    /// returns. The agents it started and left
    /// running are stopped (their `pre_stop` hooks run) before this
    /// returns.
    ///
    /// # Panics
    /// Inside a running actix System or Tokio runtime.
    pub fn run<F, Fut>(self, test: F) -> Fut::Output
    where
        F: FnOnce(Kit) -> Fut,
        Fut: Future,
    {
        let TestKit {
            virtual_time: wall,
            bus,
            broker,
        } = self;
        let test_id = uuid::Uuid::new_v4().simple().to_string();
        crate::run(async move {
            if let Some(config) = bus {
                let config = config
                    .prefix(&format!("TK{test_id}"))
                    .expect("a valid prefix");
                Bus::connect(config).await.expect("the test's bus connects");
            }
            if let Some(config) = broker {
                let config = config.namespace(&format!("tk{test_id}."));
                Broker::connect(config)
                    .await
                    .expect("the test's broker connects");
            }
            if let Some(wall) = wall {
                tokio::time::pause();
                crate::lifecycle::set_virtual_wall(Some(wall));
            }
            let kit = Kit::new();
            let output = test(kit).await;
            crate::lifecycle::set_virtual_wall(None);
            output
        })
    }
}

/// The test's view of its System: see the [module docs](self).
pub struct Kit {
    bus: Bus,
    broker: Broker,
    sent: RefCell<(Observer, Vec<Sent>)>,
    /// What the broker tells; read by one waiter at a time, into `log`.
    events: tokio::sync::Mutex<UnboundedReceiver<QueueEvent>>,
    log: RefCell<Vec<QueueEvent>>,
    responders: RefCell<Vec<Subscription>>,
    /// Scripted answers' subscriptions the bus has not confirmed yet.
    confirming: RefCell<Vec<Confirmation>>,
}

impl fmt::Debug for Kit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Kit").finish_non_exhaustive()
    }
}

impl Kit {
    fn new() -> Kit {
        let bus = Bus::current();
        let broker = Broker::current();
        let observer = bus.observe();
        let events = broker.observe();
        Kit {
            bus,
            broker,
            sent: RefCell::new((observer, Vec::new())),
            events: tokio::sync::Mutex::new(events),
            log: RefCell::default(),
            responders: RefCell::default(),
            confirming: RefCell::default(),
        }
    }

    /// Waits until the bus confirmed the scripted answers' subscriptions
    /// (at once in-process).
    async fn confirmed(&self) {
        let confirming = std::mem::take(&mut *self.confirming.borrow_mut());
        for confirmation in confirming {
            confirmation
                .await
                .expect("the bus confirms the kit's scripted answers");
        }
    }

    /// Starts an agent on this thread; its `pre_start` hooks run as soon
    /// as the test awaits something.
    pub fn start<T: IntoAgent>(&self, agent: T) -> Tested<T::Agent> {
        let (addr, handle) = start(agent);
        Tested { addr, handle }
    }

    /// Sends `signal` to every receiver (from [`SENDER`]).
    ///
    /// ```
    /// use std::sync::{Arc, Mutex};
    /// use microagent::bus::Signal;
    /// use microagent::prelude::*;
    /// use microagent::testkit::{TestKit, SENDER};
    /// use serde::{Deserialize, Serialize};
    ///
    /// #[derive(Signal, Serialize, Deserialize)]
    /// struct UserCreated {
    ///     user_id: u64,
    /// }
    ///
    /// #[derive(Default, MicroAgent)]
    /// struct Welcomer {
    ///     seen: Arc<Mutex<Vec<(u64, String)>>>,
    /// }
    ///
    /// #[microagent::hooks]
    /// impl Welcomer {
    ///     #[receiver(UserCreated)]
    ///     fn welcome(&mut self, user: UserCreated, sender: String) {
    ///         self.seen.lock().unwrap().push((user.user_id, sender));
    ///     }
    /// }
    ///
    /// let seen = Arc::new(Mutex::new(Vec::new()));
    /// let shared = seen.clone();
    /// TestKit::new().run(|kit| async move {
    ///     let welcomer = kit.start(Welcomer { seen: shared });
    ///     welcomer.started().await;
    ///     kit.send(UserCreated { user_id: 7 }).await.unwrap();
    ///     welcomer.stop().await.unwrap(); // once the signal was handled
    /// });
    /// assert_eq!(*seen.lock().unwrap(), [(7, SENDER.to_owned())]);
    /// ```
    pub async fn send<S: Signal>(&self, signal: S) -> Result<(), BusError> {
        self.confirmed().await;
        self.bus.send(SENDER, signal).await
    }

    /// Calls `signal` as an RPC and returns every receiver's answer (within
    /// [`CALL_TIMEOUT`]).
    pub async fn call<S: Signal>(&self, signal: S) -> Result<Answers, BusError> {
        self.confirmed().await;
        self.bus.call(SENDER, signal, CALL_TIMEOUT).await
    }

    /// Answers every call of `S` from now on with what `answer` returns
    /// (its responder is `testkit.NAME`): the script for the RPCs the agent
    /// under test makes. A call whose arguments do not fit `S` is answered
    /// with `null`.
    ///
    /// ```
    /// use std::time::Duration;
    /// use microagent::bus::{Bus, Signal};
    /// use microagent::prelude::*;
    /// use microagent::testkit::TestKit;
    /// use serde::{Deserialize, Serialize};
    ///
    /// #[derive(Signal, Serialize, Deserialize)]
    /// struct Rate {
    ///     currency: String,
    /// }
    ///
    /// #[derive(Default, MicroAgent)]
    /// struct Pricer {
    ///     rate: Option<f64>,
    /// }
    ///
    /// #[microagent::hooks]
    /// impl Pricer {
    ///     #[on(pre_start)]
    ///     async fn load(&mut self) {
    ///         let ask = Rate { currency: "EUR".into() };
    ///         let answers = Bus::current().call("pricer", ask, Duration::from_secs(1)).await;
    ///         self.rate = answers.ok().and_then(|a| a.iter().find_map(|(_, v)| v.as_f64()));
    ///     }
    /// }
    ///
    /// TestKit::new().run(|kit| async move {
    ///     kit.answer(|ask: Rate| if ask.currency == "EUR" { 1.5 } else { 0.0 });
    ///     let pricer = kit.start(Pricer::default());
    ///     pricer.started().await;
    ///     let call = &kit.sent()[0];
    ///     assert_eq!((call.signal.as_str(), call.sender.as_str(), call.call), ("rate", "pricer", true));
    ///     pricer.stop().await.unwrap();
    /// });
    /// ```
    pub fn answer<S, R, F>(&self, answer: F)
    where
        S: Signal,
        R: Serialize,
        F: Fn(S) -> R + Send + Sync + 'static,
    {
        let deliver: DeliverFn = Box::new(move |delivery| {
            let value = delivery
                .payload
                .into_signal::<S>()
                .ok()
                .and_then(|signal| serde_json::to_value(answer(signal)).ok())
                .unwrap_or(Value::Null);
            delivery.reply.answer(value);
            true
        });
        let responder = format!("{SENDER}.{}", S::NAME);
        let (subscription, confirmation) =
            self.bus
                .subscribe(vec![(S::NAME, responder.into(), deliver)]);
        self.responders.borrow_mut().push(subscription);
        // On a server: the kit's next send, call or consume waits for it.
        self.confirming.borrow_mut().extend(confirmation);
    }

    /// Every signal sent or called on the bus since the kit started (by
    /// the agents, by scripted answers' callers, and by the kit itself), in
    /// order.
    pub fn sent(&self) -> Vec<Sent> {
        let mut sent = self.sent.borrow_mut();
        let (observer, log) = &mut *sent;
        log.extend(observer.drain());
        log.clone()
    }

    /// Every message sent to a queue since the kit started (by the agents
    /// and by the kit), as `(queue, message)`, in order.
    ///
    /// ```
    /// use microagent::broker::{Broker, Queue};
    /// use microagent::prelude::*;
    /// use microagent::testkit::TestKit;
    /// use serde::{Deserialize, Serialize};
    ///
    /// #[derive(Queue, Serialize, Deserialize, Clone)]
    /// struct Welcome {
    ///     to: String,
    /// }
    ///
    /// #[derive(Default, MicroAgent)]
    /// struct Signup;
    ///
    /// #[microagent::hooks]
    /// impl Signup {
    ///     #[on(post_start)]
    ///     async fn greet(&mut self) {
    ///         Broker::current().send(Welcome { to: "ann".into() }).await.unwrap();
    ///     }
    /// }
    ///
    /// TestKit::new().run(|kit| async move {
    ///     let signup = kit.start(Signup);
    ///     signup.started().await;
    ///     assert_eq!(kit.queued(), [("welcome".to_owned(), serde_json::json!({"to": "ann"}))]);
    ///     signup.stop().await.unwrap();
    /// });
    /// ```
    pub fn queued(&self) -> Vec<(String, Value)> {
        self.queue_events()
            .into_iter()
            .filter_map(|event| match event {
                QueueEvent::Sent { queue, message, .. } => Some((queue, message)),
                _ => None,
            })
            .collect()
    }

    fn queue_events(&self) -> Vec<QueueEvent> {
        // While a `consume` waits on the receiver, it logs what comes.
        if let Ok(mut events) = self.events.try_lock() {
            while let Ok(event) = events.try_recv() {
                self.log.borrow_mut().push(event);
            }
        }
        self.log.borrow().clone()
    }

    /// Puts `message` on its queue and waits until it is settled for good:
    /// acknowledged, or dead-lettered after its last attempt. Returns every
    /// attempt's settlement. Messages handed back by a stopping agent stay
    /// queued: the wait goes on until another consumer settles them.
    pub async fn consume<Q: Queue>(&self, message: Q) -> Fate {
        self.confirmed().await;
        let target = if self.broker.is_in_process() {
            let id = self
                .broker
                .send_tracked(message)
                .await
                .expect("the in-process broker takes any message")
                .expect("the in-process broker gives the message's id");
            Target::Id(id)
        } else {
            let json = serde_json::to_value(&message).expect("a queue's message serializes");
            self.broker
                .send(message)
                .await
                .expect("the test's broker takes the message");
            Target::Message(json)
        };
        let mut seen = 0;
        loop {
            // What was logged (by this wait or a concurrent one), then the
            // next event.
            let settlements = target.settlements(&self.log.borrow());
            let done = settlements
                .iter()
                .any(|s| matches!(s, Settlement::Acked | Settlement::DeadLettered { .. }));
            if done {
                return Fate { settlements };
            }
            let mut events = self.events.lock().await;
            if self.log.borrow().len() != seen {
                // Another wait logged events meanwhile: look at them first.
                seen = self.log.borrow().len();
                continue;
            }
            let Some(event) = events.recv().await else {
                return Fate { settlements };
            };
            self.log.borrow_mut().push(event);
            seen = self.log.borrow().len();
        }
    }

    /// Moves virtual time forward by `by`, letting every timer due in
    /// between fire in order (periodic and cron tasks, backoffs, timeouts).
    /// In a test in real time it waits that long.
    pub async fn advance(&self, by: Duration) {
        // With the clock paused, a sleep moves it from one due timer to
        // the next, letting what each one wakes run before going on.
        actix_rt::time::sleep(by).await;
        // What came due at the very end runs too.
        for _ in 0..16 {
            tokio::task::yield_now().await;
        }
    }
}

/// The message a [`Kit::consume`] waits for: by its id in-process, by its
/// JSON on a server (where each delivery has an id of its own).
enum Target {
    Id(u64),
    Message(Value),
}

impl Target {
    /// Every settlement of the message in `log`, in order.
    fn settlements(&self, log: &[QueueEvent]) -> Vec<Settlement> {
        let ids: Vec<u64> = match self {
            Target::Id(id) => vec![*id],
            Target::Message(json) => log
                .iter()
                .filter_map(|event| match event {
                    QueueEvent::Taken { id, message, .. } if message == json => Some(*id),
                    _ => None,
                })
                .collect(),
        };
        log.iter()
            .filter_map(|event| match event {
                QueueEvent::Settled { id, settlement, .. } if ids.contains(id) => {
                    Some(settlement.clone())
                }
                _ => None,
            })
            .collect()
    }
}

/// How a message put on a queue by [`Kit::consume`] fared: each attempt's
/// settlement, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fate {
    /// Each attempt's settlement (a hand-back by a stopping agent is one).
    pub settlements: Vec<Settlement>,
}

impl Fate {
    /// Whether it was handled and acknowledged.
    pub fn acked(&self) -> bool {
        matches!(self.settlements.last(), Some(Settlement::Acked))
    }

    /// Why it went to the dead letters, if it did.
    pub fn dead_lettered(&self) -> Option<&str> {
        match self.settlements.last() {
            Some(Settlement::DeadLettered { reason, .. }) => Some(reason),
            _ => None,
        }
    }

    /// How many attempts it had (hand-backs not counted).
    pub fn attempts(&self) -> usize {
        self.settlements
            .iter()
            .filter(|s| !matches!(s, Settlement::Released))
            .count()
    }

    /// The reasons of its failed attempts that were retried.
    pub fn retries(&self) -> Vec<&str> {
        self.settlements
            .iter()
            .filter_map(|s| match s {
                Settlement::Retried { reason, .. } => Some(reason.as_str()),
                _ => None,
            })
            .collect()
    }
}

/// An agent started by [`Kit::start`].
#[derive(Debug)]
pub struct Tested<A: Agent> {
    addr: Addr<A>,
    handle: AgentHandle<A>,
}

impl<A: Agent> Tested<A> {
    /// Its address, to send it messages.
    pub fn addr(&self) -> &Addr<A> {
        &self.addr
    }

    /// Its handle: phase, outcome, stop.
    pub fn handle(&self) -> &AgentHandle<A> {
        &self.handle
    }

    /// The address its server `server` (the method's name) listens on,
    /// once it does; `None` when the agent ended first. An HTTP agent's
    /// tests await it before sending requests (see
    /// [`AgentHandle::bound_address`]).
    pub async fn bound_address(&self, server: &'static str) -> Option<std::net::SocketAddr> {
        self.handle.bound_address(server).await
    }

    /// Waits until its `post_start` hooks are done (`true`), or until it
    /// stopped without getting there (`false`).
    pub async fn started(&self) -> bool {
        loop {
            match self.handle.phase() {
                Phase::Running => return true,
                Phase::Stopping | Phase::Stopped => return false,
                Phase::Starting => actix_rt::time::sleep(Duration::from_millis(1)).await,
            }
        }
    }

    /// Stops it gracefully, once what was sent to it before is handled,
    /// and returns its outcome. (A running agent drops the signals still
    /// waiting in its mailbox when its stop is asked for; a test means its
    /// sends to come first.)
    pub async fn stop(self) -> Result<(), AgentError> {
        // A round trip through the mailbox: everything before it is done.
        let _ = self.addr.send(crate::GetInfo).await;
        self.handle.stop();
        self.outcome().await
    }

    /// Waits until it stops by itself and returns its outcome.
    ///
    /// ```
    /// use std::future::Future;
    /// use microagent::prelude::*;
    /// use microagent::testkit::TestKit;
    ///
    /// #[derive(Default, MicroAgent)]
    /// struct OneShot;
    ///
    /// #[microagent::hooks]
    /// impl OneShot {
    ///     #[on(server)]
    ///     fn work(&self) -> impl Future<Output = Result<(), ServerInterrupt>> {
    ///         async { Err(ServerInterrupt::new("done")) }
    ///     }
    /// }
    ///
    /// let outcome = TestKit::new().run(|kit| async move { kit.start(OneShot).outcome().await });
    /// assert!(outcome.is_ok()); // an interrupt is a graceful end
    /// ```
    pub async fn outcome(self) -> Result<(), AgentError> {
        let Tested { addr, handle } = self;
        let outcome = handle.wait().await;
        drop(addr);
        outcome
    }
}
