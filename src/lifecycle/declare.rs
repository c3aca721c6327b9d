//! What an agent declares, as the macros write it down: the table of its
//! hooks, servers, tasks, receivers and consumers, and how each is called.
//!
//! Everything here is reached by generated code through
//! `microagent::__private` and is not public API. Generated tables end in
//! `..HookTable::EMPTY`, so a new declaration kind is one new field here
//! and one new branch in the macros. The functions the generated shims call
//! are in `shims.rs`; what an agent's table shows as info is in
//! `describe.rs`.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use super::Context;
use crate::broker::{Binding, ConsumerOptions, Job};
use crate::bus::Delivery;
use crate::error::{HookResult, Stage};
use crate::info::{RestartPolicy, Zone};
use crate::server::ServerContext;

/// Which declared entry the agent's work in flight runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Work {
    /// A lifecycle hook, by method name (its stage is `Lifecycle::stage`).
    Hook(&'static str),
    /// A run of task `n` of `HOOKS.tasks`.
    Task(usize),
    /// A run of receiver `n` of `HOOKS.receivers`.
    Receiver(usize),
    /// A run of consumer `n` of `HOOKS.consumers`.
    Consumer(usize),
}

/// The future of a running async hook or task run. It owns the agent while
/// the method runs and hands it back together with the result.
pub type HookFuture<A> = Pin<Box<dyn Future<Output = (A, HookResult)>>>;

/// The future of a running server, with panics already caught.
pub type ServerFuture = Pin<Box<dyn Future<Output = HookResult>>>;

/// How the lifecycle calls a declared method's shim with its input: none
/// (`()`) for a hook or a task, a [`Delivery`] for a receiver, a [`Job`]
/// for a consumer.
pub enum Call<A: actix::Actor<Context = Context<A>>, In = ()> {
    /// A plain `fn`: called with the agent, its context and the input; a
    /// receiver's or consumer's shim decodes, runs and answers or settles
    /// right there.
    Sync(fn(&mut A, &mut Context<A>, In) -> HookResult),
    /// An `async fn`: the shim moves the agent out of the actor into the
    /// returned future, which gives it back when the method is done (or its
    /// timeout cancelled it), having answered or settled its input.
    Async(fn(&mut A, &mut Context<A>, In) -> HookFuture<A>),
}

impl<A: actix::Actor<Context = Context<A>>, In> Call<A, In> {
    fn is_async(&self) -> bool {
        matches!(self, Call::Async(_))
    }
}

/// One declared lifecycle hook.
pub struct Hook<A: actix::Actor<Context = Context<A>>> {
    /// The method's name, for logs and errors.
    pub name: &'static str,
    /// How to call it.
    pub call: Call<A>,
}

/// One declared server hook.
pub struct Server<A: actix::Actor> {
    /// The method's name.
    pub name: &'static str,
    /// Starts it: the shim calls the method with its [`ServerContext`].
    pub start: fn(&mut A, ServerContext<A>) -> ServerFuture,
    /// `None`: a failure stops the agent.
    pub restart: Option<RestartPolicy>,
}

/// One declared receiver.
pub struct Receiver<A: actix::Actor<Context = Context<A>>> {
    /// The method's name.
    pub name: &'static str,
    /// The signal's wire name.
    pub signal: &'static str,
    /// Time a run may take.
    pub timeout: Duration,
    /// How to call it.
    pub call: Call<A, Delivery>,
}

/// One declared consumer.
pub struct Consumer<A: actix::Actor<Context = Context<A>>> {
    /// The method's name.
    pub name: &'static str,
    /// The queue's name.
    pub queue: &'static str,
    /// Its exchange and topics (AMQP).
    pub binding: Binding,
    /// Its options (timeout, attempts, backoff, prefetch).
    pub options: ConsumerOptions,
    /// How to call it.
    pub call: Call<A, Job>,
}

/// When a task runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Schedule {
    /// Every `period`, first after `start_after`.
    Every {
        /// Time between runs (above zero).
        period: Duration,
        /// Time before the first run.
        start_after: Duration,
    },
    /// At the times a cron expression gives.
    Cron {
        /// The expression, as declared.
        expression: &'static str,
        /// The time zone it is read in.
        zone: Zone,
    },
}

/// One declared periodic or cron task.
pub struct Task<A: actix::Actor<Context = Context<A>>> {
    /// The method's name.
    pub name: &'static str,
    /// How to call it (an async shim applies `timeout` itself).
    pub call: Call<A>,
    /// Time a run may take.
    pub timeout: Duration,
    /// When it runs.
    pub schedule: Schedule,
}

/// Everything an agent declares, each list in declaration order.
pub struct HookTable<A: actix::Actor<Context = Context<A>>> {
    /// `#[on(pre_start)]` hooks.
    pub pre_start: &'static [Hook<A>],
    /// `#[on(post_start)]` hooks.
    pub post_start: &'static [Hook<A>],
    /// `#[on(pre_stop)]` hooks.
    pub pre_stop: &'static [Hook<A>],
    /// `#[on(server)]` hooks.
    pub servers: &'static [Server<A>],
    /// `#[periodic(...)]` and `#[cron(...)]` tasks.
    pub tasks: &'static [Task<A>],
    /// `#[receiver(...)]` methods.
    pub receivers: &'static [Receiver<A>],
    /// `#[consumer(...)]` methods.
    pub consumers: &'static [Consumer<A>],
}

impl<A: actix::Actor<Context = Context<A>>> HookTable<A> {
    /// A table that declares nothing; generated tables end in `..EMPTY`.
    pub const EMPTY: Self = HookTable {
        pre_start: &[],
        post_start: &[],
        pre_stop: &[],
        servers: &[],
        tasks: &[],
        receivers: &[],
        consumers: &[],
    };

    /// Whether the table declares nothing at all: such an agent starts
    /// and stops without running the driver.
    pub(crate) const fn declares_nothing(&self) -> bool {
        self.pre_start.is_empty()
            && self.post_start.is_empty()
            && self.pre_stop.is_empty()
            && self.servers.is_empty()
            && self.tasks.is_empty()
            && self.receivers.is_empty()
            && self.consumers.is_empty()
    }

    /// The hooks declared with one label.
    pub(crate) fn stage(&self, stage: Stage) -> &'static [Hook<A>] {
        match stage {
            Stage::PreStart => self.pre_start,
            Stage::PostStart => self.post_start,
            Stage::PreStop => self.pre_stop,
            // Servers are not called like hooks: see `servers`.
            Stage::Server => &[],
        }
    }
}

/// The declarations of an agent type. Implemented by `#[microagent::hooks]`.
#[diagnostic::on_unimplemented(
    message = "`{Self}` has no `#[microagent::hooks]` block",
    label = "this agent's hooks are never declared",
    note = "add `#[microagent::hooks] impl {Self} {{ ... }}`, even an empty one for an agent without hooks"
)]
pub trait Hooks: actix::Actor<Context = Context<Self>> {
    /// The table, built at compile time.
    const HOOKS: HookTable<Self>;
}

impl<A: actix::Actor<Context = Context<A>>, In> fmt::Debug for Call<A, In> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.is_async() { "Async" } else { "Sync" })
    }
}

impl<A: actix::Actor<Context = Context<A>>> fmt::Debug for Hook<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Hook")
            .field("name", &self.name)
            .field("call", &self.call)
            .finish()
    }
}

impl<A: actix::Actor> fmt::Debug for Server<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Server")
            .field("name", &self.name)
            .field("restart", &self.restart)
            .finish_non_exhaustive()
    }
}

impl<A: actix::Actor<Context = Context<A>>> fmt::Debug for Task<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Task")
            .field("name", &self.name)
            .field("call", &self.call)
            .field("timeout", &self.timeout)
            .field("schedule", &self.schedule)
            .finish()
    }
}

impl<A: actix::Actor<Context = Context<A>>> fmt::Debug for Receiver<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Receiver")
            .field("name", &self.name)
            .field("signal", &self.signal)
            .field("timeout", &self.timeout)
            .field("call", &self.call)
            .finish()
    }
}

impl<A: actix::Actor<Context = Context<A>>> fmt::Debug for Consumer<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Consumer")
            .field("name", &self.name)
            .field("queue", &self.queue)
            .field("binding", &self.binding)
            .field("options", &self.options)
            .field("call", &self.call)
            .finish()
    }
}

impl<A: actix::Actor<Context = Context<A>>> fmt::Debug for HookTable<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HookTable")
            .field("pre_start", &self.pre_start)
            .field("post_start", &self.post_start)
            .field("pre_stop", &self.pre_stop)
            .field("servers", &self.servers)
            .field("tasks", &self.tasks)
            .field("receivers", &self.receivers)
            .field("consumers", &self.consumers)
            .finish()
    }
}
