//! Microservices as *agents* on [actix]: long-running actors with a managed
//! lifecycle, declared derive-style.
//!
//! An agent is a plain struct and an `impl` block whose methods are marked as
//! lifecycle hooks. The macros turn it into an actix [`Actor`]: you keep
//! writing `impl Handler<M> for YourAgent` and talk to it through `Addr`.
//!
//! # Example
//! ```
//! use microagent::prelude::*;
//! use std::sync::{Arc, Mutex};
//!
//! #[derive(Default, MicroAgent)]
//! struct Greeter {
//!     greeting: Option<String>,
//!     log: Arc<Mutex<Vec<String>>>,
//! }
//!
//! #[microagent::hooks]
//! impl Greeter {
//!     // Async hooks may hold `&mut self` across `.await`.
//!     #[on(pre_start)]
//!     async fn connect(&mut self) -> Result<(), std::io::Error> {
//!         self.greeting = Some("hello".into());
//!         Ok(())
//!     }
//!
//!     #[on(pre_stop)]
//!     fn goodbye(&mut self) {
//!         self.log.lock().unwrap().push("pre_stop".into());
//!     }
//! }
//!
//! struct Greet(&'static str);
//! impl Message for Greet { type Result = String; }
//!
//! impl Handler<Greet> for Greeter {
//!     type Result = String;
//!     fn handle(&mut self, Greet(who): Greet, _: &mut Context<Self>) -> String {
//!         // pre_start has run before any message is handled.
//!         format!("{} {who}", self.greeting.as_deref().unwrap())
//!     }
//! }
//!
//! let log = Arc::new(Mutex::new(Vec::new()));
//! let agent = Greeter { log: log.clone(), ..Default::default() };
//! let reply = microagent::run(async move {
//!     let (addr, handle) = microagent::start(agent);
//!     let reply = addr.send(Greet("world")).await.unwrap();
//!     handle.stop();
//!     handle.await.unwrap();
//!     reply
//! });
//! assert_eq!(reply, "hello world");
//! assert_eq!(*log.lock().unwrap(), ["pre_stop"]);
//! ```
//!
//! To run agents as a service (signals, a group, a shutdown deadline, an
//! exit code), use a [`Launcher`], or [`deploy`] to build one from a
//! configuration file and the environment ([`config`]); for HTTP endpoints
//! and health checks see [`web`]; to test agents without Redis or RabbitMQ,
//! see `testkit` (feature `testkit`, for `[dev-dependencies]`).
//!
#![cfg_attr(docsrs, feature(doc_cfg))]
#![doc = include_str!("../docs/lifecycle.md")]
//!
#![doc = include_str!("../docs/declaring.md")]
//!
#![doc = include_str!("../docs/servers.md")]
//!
#![doc = include_str!("../docs/tasks.md")]
//!
#![doc = include_str!("../docs/bus.md")]
//!
#![doc = include_str!("../docs/broker.md")]
//!
//! # Cargo features
//! - `metrics`: Prometheus metrics of agents, handler runs, queues, the
//!   bus and backends through the `metrics` facade, and `GET /metrics` on
//!   the health server when the application installs no recorder of its
//!   own (module `metrics`; docs/observability.md in the repository).
//! - `tracing`: `tracing` spans of hooks, handler runs, sends and calls,
//!   named and attributed after the OpenTelemetry messaging conventions;
//!   in-process, the runs a message causes are children of its send
//!   (docs/observability.md).
//! - `otel`: OpenTelemetry (module `otel`): W3C `traceparent` in AMQP and
//!   NATS headers, so a run in another process is the child of the send,
//!   and an OTLP/HTTP exporter from `[otel]` in the configuration,
//!   started and flushed with the launcher.
//! - `tz`: cron tasks in named time zones of the IANA database
//!   (`#[cron("0 9 * * *", tz = "Europe/Berlin")]`, with `chrono-tz`),
//!   checked at compile time; see the tasks section above for daylight
//!   saving.
//! - `anyhow`: a `ServerInterrupt` inside an `anyhow::Error` that a server
//!   returns is found, so the service ends gracefully. (Hooks may return
//!   `anyhow::Error` without it; only the interrupt inside one needs it,
//!   because anyhow hides the error it wraps from `Error::source`.)
//!
//! [actix]: https://actix.rs
//! [`Actor`]: actix::Actor

// The derive macros name `::microagent`, in this crate too (the
// `HealthServer` agent of `web`).
extern crate self as microagent;

/// The README's examples, compiled as doc tests so that they stay true.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;

// The modules, from the bottom of the dependency graph up. Each uses only
// modules listed before it, except `agent` and `lifecycle`, which name each
// other (an agent's actor context is `lifecycle::Context`, whose lifecycle
// calls what the agent declares).
//
// vocabulary: no dependency on the rest of the crate
#[cfg(feature = "metrics")]
mod durations;
mod failure;
mod intern;
mod per_system;
mod phase;
// what every backend shares (only backends use it)
#[cfg_attr(not(any(feature = "redis", feature = "amqp")), allow(dead_code))]
mod backend;
// the channels between agents, and the errors and info that name them
pub mod broker;
pub mod bus;
mod error;
mod info;
mod messages;
mod server;
// the agent trait, and the lifecycle machinery around its context
mod agent;
mod lifecycle;
#[cfg(feature = "nats")]
mod nats_target;
#[cfg(feature = "redis")]
mod redis_target;
mod registry;
#[cfg(feature = "metrics")]
mod retired;
mod spans;

// OpenTelemetry: the OTLP exporter and W3C trace context in headers.
#[cfg(feature = "otel")]
#[cfg_attr(docsrs, doc(cfg(feature = "otel")))]
pub mod otel;
// metrics of the agents the registry knows, and of the backends
#[cfg(feature = "metrics")]
#[cfg_attr(docsrs, doc(cfg(feature = "metrics")))]
pub mod metrics;
// starting agents, running Systems
mod run;
mod start;
// on top: running a group as a process; HTTP alongside agents
mod launcher;
#[cfg(feature = "web")]
#[cfg_attr(docsrs, doc(cfg(feature = "web")))]
pub mod web;
// running from configuration; testing agents
#[cfg(feature = "config")]
#[cfg_attr(docsrs, doc(cfg(feature = "config")))]
pub mod config;
#[cfg(feature = "config")]
mod deploy;
#[cfg(feature = "testkit")]
#[cfg_attr(docsrs, doc(cfg(feature = "testkit")))]
pub mod testkit;

pub use agent::{Agent, IntoAgent, Named};
pub use backend::BackendError;
#[cfg(feature = "config")]
#[cfg_attr(docsrs, doc(cfg(feature = "config")))]
pub use deploy::deploy;
pub use error::{AgentError, HookError, HookFailure, Stage, TimedOut};
pub use info::{
    AgentInfo, CronInfo, HandlerRuns, HooksInfo, PeriodicInfo, ReceiverInfo, RestartPolicy,
    ServerInfo, TaskRuns, Zone,
};
pub use launcher::{Exit, Launcher, LauncherHandle};
pub use lifecycle::Context;
pub use messages::{GetInfo, StopAgent};
pub use phase::Phase;
pub use run::{run, run_agent};
pub use server::{ServerContext, ServerInterrupt};
pub use start::{start, start_in, AgentHandle, StopRequest};

/// Declares the hooks of an agent: put it on an `impl` block and mark
/// methods with `#[on(pre_start)]`, `#[on(post_start)]`, `#[on(pre_stop)]`,
/// `#[on(server)]`, `#[periodic(...)]` or `#[cron(...)]`.
///
/// See [Declaring hooks](crate#declaring-hooks) for what a hook may look like.
pub use microagent_macros::hooks;

/// Makes a struct an agent: implements [`actix::Actor`] with [`Context`] as
/// its context, the [`Agent`] trait and the handlers of [`StopAgent`],
/// [`ServerInterrupt`] and [`GetInfo`].
///
/// The agent's name, used in logs and errors, is the struct's name unless
/// set with `#[microagent(name = "...")]`. The struct also needs a
/// `#[microagent::hooks]` block (it may be empty).
pub use microagent_macros::MicroAgent;

/// Only meaningful on a method inside a `#[microagent::hooks]` block; used
/// anywhere else it is a compile error that says so.
pub use microagent_macros::on;

/// Marks a periodic task inside a `#[microagent::hooks]` block:
/// `#[periodic(period = 5.0, timeout = 1.0, start_after = 0.0)]` (seconds;
/// `timeout` defaults to 1.0, `start_after` to 0.0). See
/// [Periodic and cron tasks](crate#periodic-and-cron-tasks).
pub use microagent_macros::periodic;

/// Marks a cron task inside a `#[microagent::hooks]` block:
/// `#[cron("0 */4 * * *", timeout = 30.0, tz = "local")]` (UTC unless
/// `tz = "local"`; `timeout` defaults to 1.0). See
/// [Periodic and cron tasks](crate#periodic-and-cron-tasks).
pub use microagent_macros::cron;

/// Marks a receiver of a bus signal inside a `#[microagent::hooks]` block:
/// `#[receiver(UserCreated)]` or `#[receiver(UserCreated, timeout = 60.0)]`
/// (seconds, 60 by default). The method takes the signal and optionally
/// the sender's name (`sender: String`); what it returns (anything
/// serializable, `()`, or a `Result` whose `Ok` is) is its RPC answer. See
/// [`bus`].
pub use microagent_macros::receiver;

/// Marks a consumer of a queue inside a `#[microagent::hooks]` block:
/// `#[consumer(Mail)]` or `#[consumer(Mail, timeout = 60.0, attempts = 3,
/// backoff = 1.0, prefetch = 1)]` (those are the defaults; seconds for
/// `timeout` and `backoff`, which doubles after each failed attempt). The
/// method takes the message by value and returns `()` or a `Result`; an
/// error, a panic or a timeout is a failed attempt. See [`broker`].
pub use microagent_macros::consumer;

/// Re-export of actix, which the generated code and users' handlers use.
pub use actix;

/// The target of the crate's log lines (the launcher and `web` use
/// sub-targets of it).
const LOG_TARGET: &str = "microagent";

/// Everything to write an agent: actix's prelude, with [`Context`] being the
/// agent context, plus this crate's macros, traits and functions.
///
/// Use it instead of `actix::prelude::*` (both glob-export a `Context`).
pub mod prelude {
    pub use actix::prelude::*;

    pub use crate::{
        consumer, cron, on, periodic, receiver, start, start_in, Agent, AgentError, AgentHandle,
        Context, GetInfo, MicroAgent, Phase, ServerContext, ServerInterrupt, StopAgent,
        StopRequest,
    };
}

/// Everything the code generated by the macros names, and nothing else. Not
/// public API: it changes whenever the macros do.
#[doc(hidden)]
pub mod __private {
    pub use crate::agent::sealed::Sealed;
    pub use crate::broker::{Binding, Consume, ConsumerOptions, Job, Queue};
    pub use crate::bus::{Deliver, Delivery, Signal};
    pub use crate::info::{RestartPolicy, Zone};
    pub use crate::lifecycle::consumers::consume;
    pub use crate::lifecycle::declare::{
        Call, Consumer, Hook, HookFuture, HookTable, Hooks, Receiver, Schedule, Server,
        ServerFuture, Task,
    };
    pub use crate::lifecycle::describe::describe;
    pub use crate::lifecycle::driver::{interrupt, running_info, started, stopped, stopping};
    pub use crate::lifecycle::receivers::deliver;
    pub use crate::lifecycle::shims::{
        answer_result, answer_sync, answer_timed, answer_value, call_async, call_timed,
        consume_sync, consume_timed, decode_job, decode_signal, server_future, AsyncHookAgent,
        IntoHookResult,
    };
    pub use std::time::Duration;

    /// What a hook shim returns.
    pub type HookResult = Result<(), crate::error::HookFailure>;
}
