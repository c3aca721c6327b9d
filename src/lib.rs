//! Microservices as *agents* on [actix]: long-running actors with a managed
//! lifecycle, declared derive-style.
//!
//! An agent is a plain struct and an `impl` block whose methods are marked as
//! lifecycle hooks. The macros turn it into an actix [`Actor`]: you keep
//! writing `impl Handler<M> for YourAgent` and talk to it through `Addr`.
//!
//! | label | runs | on failure (error or panic) |
//! |---|---|---|
//! | `pre_start` | before any message is handled, in declaration order | the agent stops; later start hooks and all `pre_stop` hooks are skipped |
//! | `post_start` | after every `pre_start` hook, once the agent accepts messages | the agent stops; its `pre_stop` hooks run |
//! | `pre_stop` | exactly once when a started agent stops, for any reason, while it is still alive | the other `pre_stop` hooks still run |
//! | `server` | after the `post_start` hooks, in a child actor, alongside the handlers (see [`server`]) | the agent stops, unless its restart policy allows a restart; `Err(`[`ServerInterrupt`]`)` is a graceful stop |
//! | `#[periodic]`, `#[cron]` | on a schedule from the end of the `pre_start` hooks until the agent stops (see [`tasks`]) | logged; the agent keeps running |
//!
//! Every failure is reported through the agent's [`AgentHandle`] as an
//! [`AgentError`] naming the agent, the hook and the cause, and logged.
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
//! exit code), use a [`Launcher`]; for HTTP endpoints and health checks see
//! [`web`].
//!
//! # Declaring hooks
//! Inside a `#[microagent::hooks]` block, `#[on(pre_start)]`,
//! `#[on(post_start)]` and `#[on(pre_stop)]` mark hooks. Several hooks may
//! share a label; they run one after another in declaration order.
//!
//! - A hook takes `&mut self` (or `&self`) and may be `fn` or `async fn`.
//! - It returns `()` or `Result<(), E>` for any
//!   `E: std::error::Error + Send + Sync + 'static`.
//! - A plain `fn` hook may also take the context: `ctx: &mut Context<Self>`
//!   (its address, `ctx.spawn`, `ctx.stop()`...).
//! - An `async fn` hook may take the agent's address, `addr: Addr<Self>`;
//!   it cannot borrow the context across `.await`.
//! - A `server` hook is a plain `fn` taking `&self` and optionally
//!   `srv: `[`ServerContext`]`<Self>`, returning a `'static` future; it may
//!   declare a restart policy: `#[on(server, restarts = 3, within = 60.0,
//!   backoff = 0.5)]`.
//! - An agent with `async` hooks must implement [`Default`]: while an async
//!   hook runs it owns the agent, and the actor holds `Default::default()`
//!   in its place. That is how `&mut self` can be held across `.await`
//!   without `unsafe`; no message handler can observe the stand-in, because
//!   hooks run exclusively (see below). The stand-in is dropped when the
//!   agent comes back, so a `Drop` impl on the agent also runs for it.
//!
//! Mistakes are compile errors pointing at the method: an unknown label, a
//! parameter a hook cannot be given, an unsupported return type, `#[on]`
//! outside a hooks block, async hooks on an agent without `Default`.
//!
//! # Semantics
//! - **Exclusive hooks.** Hooks run like `ctx.wait` futures: while one runs,
//!   no message handler and no spawned future of the agent runs. Messages
//!   sent in the meantime are queued and handled afterwards.
//! - **Start.** [`start`] returns the agent's `Addr` at once; messages sent
//!   to it wait until every `pre_start` and `post_start` hook is done.
//! - **Stop.** `pre_stop` hooks run exactly once, before the actor stops,
//!   whatever the cause: `ctx.stop()`, [`StopAgent`] / [`AgentHandle::stop`],
//!   its last `Addr` dropped, or the end of [`run`]. A stop requested during
//!   start-up takes effect after the `post_start` hooks (a failed start skips
//!   `pre_stop`, since the agent never started). `ctx.terminate()` keeps its
//!   actix meaning, an unconditional stop: it skips the remaining hooks and
//!   the handle reports [`AgentError::Aborted`].
//! - **Raw `System::stop()`.** actix then tears the arbiters down without
//!   running async work: an agent on another arbiter gets its hooks polled
//!   once at most, and one on the System's own arbiter is dropped with no
//!   hook at all. Use [`run`] (or [`run_agent`]) from `main`: it stops every
//!   agent and waits for its `pre_stop` hooks before stopping the System.
//!
//! # Compared with plain actix
//! actix's own `started` and `stopping` are synchronous: async work spawned
//! in `stopping` never runs, and `started` cannot await a connection before
//! the first message. Agents keep actix's model (an [`Actor`], `Addr`,
//! `Handler`s, a context with `spawn`/`wait`/`notify`/`run_interval`) and
//! add awaited, ordered, fallible hooks with typed error reporting.
//!
//! [actix]: https://actix.rs
//! [`Actor`]: actix::Actor
#![warn(missing_docs)]

mod context;
mod error;
pub mod hooks;
mod info;
mod launcher;
mod lifecycle;
mod outcome;
mod registry;
mod run;
pub mod server;
mod start;
pub mod tasks;
pub mod web;

pub use context::Context;
pub use error::{AgentError, HookError, HookFailure, Stage};
pub use info::{AgentInfo, CronInfo, GetInfo, HooksInfo, PeriodicInfo, ServerInfo};
pub use launcher::{Exit, Launcher, LauncherHandle};
pub use lifecycle::Phase;
pub use run::{run, run_agent};
pub use server::{ServerContext, ServerInterrupt};
pub use start::{start, start_in, AgentHandle, StopAgent};

/// Declares the hooks of an agent: put it on an `impl` block and mark
/// methods with `#[on(pre_start)]`, `#[on(post_start)]` or `#[on(pre_stop)]`.
///
/// See the [crate documentation](crate#declaring-hooks) for what a hook may
/// look like.
pub use microagent_macros::hooks;

/// Makes a struct an agent: implements [`actix::Actor`] with [`Context`] as
/// its context, the [`Agent`] trait and the [`StopAgent`] handler.
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
/// `timeout` defaults to 1.0, `start_after` to 0.0). See [`tasks`].
pub use microagent_macros::periodic;

/// Marks a cron task inside a `#[microagent::hooks]` block:
/// `#[cron("0 */4 * * *", timeout = 30.0, tz = "local")]` (UTC unless
/// `tz = "local"`; `timeout` defaults to 1.0). See [`tasks`].
pub use microagent_macros::cron;

/// Re-export of actix, which the generated code and users' handlers use.
pub use actix;

/// An agent: an actix actor whose lifecycle runs declared hooks.
///
/// Implemented by `#[derive(MicroAgent)]`; do not implement it by hand.
pub trait Agent:
    actix::Actor<Context = Context<Self>>
    + hooks::Hooks
    + actix::Handler<StopAgent>
    + actix::Handler<ServerInterrupt>
    + actix::Handler<GetInfo>
{
    /// The agent's name, for logs and errors.
    const NAME: &'static str;

    /// What the agent declares: hooks, servers, tasks (see [`AgentInfo`]).
    fn info(&self) -> AgentInfo {
        info::describe::<Self>()
    }
}

/// Everything to write an agent: actix's prelude, with [`Context`] being the
/// agent context, plus this crate's macros, traits and functions.
///
/// Use it instead of `actix::prelude::*` (both glob-export a `Context`).
pub mod prelude {
    pub use actix::prelude::*;

    pub use crate::{
        cron, on, periodic, start, start_in, Agent, AgentError, AgentHandle, Context, GetInfo,
        MicroAgent, Phase, ServerContext, ServerInterrupt, StopAgent,
    };
}

/// Used by the code the macros generate. Not public API.
#[doc(hidden)]
pub mod __private {
    pub use crate::hooks::{call_async, server_future, AsyncHookAgent, IntoHookResult};
    pub use crate::info::describe;
    pub use crate::lifecycle::{interrupt, started, stopped, stopping};
    pub use crate::tasks::call_task;
}
