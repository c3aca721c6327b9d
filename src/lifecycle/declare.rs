//! What an agent declares, as the macros write it down: the table of its
//! hooks, servers and tasks, and the glue the generated shims call.
//!
//! Everything here is reached by generated code through
//! `microagent::__private` and is not public API. Generated tables end in
//! `..HookTable::EMPTY`, so a new declaration kind is one new field here
//! and one new branch in the macros.

use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::time::Duration;

use futures_util::FutureExt;

use super::cron::{next_cron_time, parse_cron};
use super::Context;
use serde::Serialize;
use serde_json::Value;

use crate::agent::Agent;
use crate::broker::{Binding, ConsumerOptions, Job, Queue, Settle};
use crate::bus::{Delivery, Reply, Signal};
use crate::error::{HookFailure, HookResult, Stage, TimedOut};
use crate::info::{
    AgentInfo, ConsumerInfo, CronInfo, HandlerRuns, HooksInfo, PeriodicInfo, ReceiverInfo,
    RestartPolicy, ServerInfo, TaskRuns, Zone,
};
use crate::server::ServerContext;

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

/// What a hook may return: `()` or `Result<(), E>` for any error type `E`
/// that converts into `Box<dyn Error + Send + Sync>`: every
/// `Error + Send + Sync + 'static` type, a boxed error, `anyhow::Error`, or
/// a `String`/`&'static str` message.
#[diagnostic::on_unimplemented(
    message = "a hook must return `()` or `Result<(), E>` where `E` is an error (`E: Into<Box<dyn std::error::Error + Send + Sync>>`), not `{Self}`",
    label = "unsupported hook return type",
    note = "any `std::error::Error + Send + Sync + 'static` type works, and so do `Box<dyn Error + Send + Sync>`, `anyhow::Error` and `String`"
)]
pub trait IntoHookResult {
    /// Converts the hook's return value.
    fn into_hook_result(self) -> HookResult;
}

impl IntoHookResult for () {
    fn into_hook_result(self) -> HookResult {
        Ok(())
    }
}

impl<E> IntoHookResult for Result<(), E>
where
    E: Into<Box<dyn std::error::Error + Send + Sync>> + 'static,
{
    fn into_hook_result(self) -> HookResult {
        self.map_err(HookFailure::error)
    }
}

/// Awaits an async method's body, turning a panic into its failure.
///
/// The panic is caught around the method's own future, inside the future
/// that owns the agent, so the agent always comes back to its actor.
pub async fn call_async<R: IntoHookResult>(fut: impl Future<Output = R>) -> HookResult {
    // Written out rather than through `caught`: every async hook runs this,
    // and the extra future layer measurably costs the lifecycle bench.
    match std::panic::AssertUnwindSafe(fut).catch_unwind().await {
        Ok(r) => r.into_hook_result(),
        Err(payload) => Err(HookFailure::from_panic(payload)),
    }
}

/// [`call_async`] bounded by a timeout: a run that overruns is cancelled
/// and fails with [`TimedOut`].
pub async fn call_timed<R: IntoHookResult>(
    timeout: Duration,
    fut: impl Future<Output = R>,
) -> HookResult {
    timed(timeout, fut).await?.into_hook_result()
}

/// What a method's future returned, or its panic as a failure.
async fn caught<F: Future>(fut: F) -> Result<F::Output, HookFailure> {
    std::panic::AssertUnwindSafe(fut)
        .catch_unwind()
        .await
        .map_err(HookFailure::from_panic)
}

/// [`caught`] bounded by a timeout: a run that overruns is cancelled (its
/// future dropped, inside the future that owns the agent) and fails with
/// [`TimedOut`].
async fn timed<F: Future>(timeout: Duration, fut: F) -> Result<F::Output, HookFailure> {
    match actix_rt::time::timeout(timeout, caught(fut)).await {
        Ok(result) => result,
        Err(_) => Err(HookFailure::error(TimedOut(timeout))),
    }
}

/// Decodes a job for a typed consumer: the message and how to settle it. A
/// message that does not decode is poison: it goes to the dead letters at
/// once, and the run fails as bad input.
pub fn decode_job<Q: Queue>(job: Job) -> Result<(Q, Settle), HookFailure> {
    let Job { settle } = job;
    match settle.decode::<Q>() {
        Ok(message) => Ok((message, settle)),
        Err(e) => {
            settle.poison(e.to_string());
            Err(HookFailure::error(e))
        }
    }
}

/// Runs a plain `fn` consumer's method and settles its job with the
/// result: a panic is a failed attempt like an error (retried after the
/// backoff, dead-lettered when the attempts are spent), never a message
/// dropped unsettled and taken again at once.
pub fn consume_sync(settle: Settle, run: impl FnOnce() -> HookResult) -> HookResult {
    settle.done(HookFailure::catch_result(run))
}

/// Runs an async consumer's body within its timeout, catching panics.
pub async fn consume_timed<F>(timeout: Duration, fut: F) -> HookResult
where
    F: Future<Output = HookResult>,
{
    timed(timeout, fut).await.and_then(|result| result)
}

/// Decodes a delivery for a typed receiver: the signal, the sender's name
/// and where the answer goes. Arguments that do not fit the signal's type
/// fail the run (logged with agent, receiver and signal) and answer `null`.
pub fn decode_signal<S: Signal>(
    delivery: Delivery,
) -> Result<(S, std::sync::Arc<str>, Reply), HookFailure> {
    let Delivery {
        payload,
        sender,
        reply,
    } = delivery;
    match payload.into_signal::<S>() {
        Ok(signal) => Ok((signal, sender, reply)),
        Err(e) => {
            reply.answer(Value::Null);
            Err(HookFailure::error(e))
        }
    }
}

/// Answers with a receiver's return value (`()` answers `null`).
pub fn answer_value<T: Serialize>(reply: Reply, value: T) -> HookResult {
    match serde_json::to_value(value) {
        Ok(value) => {
            reply.answer(value);
            Ok(())
        }
        Err(e) => {
            reply.answer(Value::Null);
            Err(HookFailure::error(e))
        }
    }
}

/// Answers with a receiver's `Ok` value, or `null` for its error.
pub fn answer_result<T, E>(reply: Reply, result: Result<T, E>) -> HookResult
where
    T: Serialize,
    E: Into<Box<dyn std::error::Error + Send + Sync>> + 'static,
{
    match result {
        Ok(value) => answer_value(reply, value),
        Err(e) => {
            reply.answer(Value::Null);
            Err(HookFailure::error(e))
        }
    }
}

/// Runs a plain `fn` receiver's method and answers with what it returned;
/// the answer is `null` when it panics, as when it fails.
pub fn answer_sync<R>(
    reply: Reply,
    run: impl FnOnce() -> R,
    answer: fn(Reply, R) -> HookResult,
) -> HookResult {
    match HookFailure::catch(run) {
        Ok(returned) => answer(reply, returned),
        Err(failure) => {
            reply.answer(Value::Null);
            Err(failure)
        }
    }
}

/// Runs an async receiver's body within its timeout, catching panics; the
/// answer is `null` when it fails, panics or times out.
pub async fn answer_timed<F, R>(
    reply: Reply,
    timeout: Duration,
    fut: F,
    answer: fn(Reply, R) -> HookResult,
) -> HookResult
where
    F: Future<Output = R>,
{
    match timed(timeout, fut).await {
        Ok(returned) => answer(reply, returned),
        Err(failure) => {
            reply.answer(Value::Null);
            Err(failure)
        }
    }
}

/// Wraps a server hook's future: panics are caught, the output converted.
pub fn server_future<F>(fut: F) -> ServerFuture
where
    F: Future + 'static,
    F::Output: IntoHookResult,
{
    Box::pin(call_async(fut))
}

/// Agents with `async` hooks need a stand-in: while an async hook runs it
/// owns the agent, and the actor holds the stand-in in its place:
/// `Default::default()`, or what `#[microagent(stand_in = ...)]` names.
#[diagnostic::on_unimplemented(
    message = "`{Self}` has async hooks, so it needs a stand-in: implement `Default` or name one with `#[microagent(stand_in = ...)]`",
    label = "async hook declared here",
    note = "an async hook owns the agent while it awaits; the actor holds a stand-in value meanwhile (no handler ever sees it)",
    note = "derive or implement `Default` for `{Self}`, or add `#[microagent(stand_in = {Self}::placeholder())]` to the struct with a function that builds a cheap value, or make the hook a plain `fn`"
)]
pub trait AsyncHookAgent: Sized {
    /// Moves the agent out, leaving `Default::default()` behind.
    fn take_for_hook(&mut self) -> Self;
}

impl<T: Default> AsyncHookAgent for T {
    fn take_for_hook(&mut self) -> Self {
        std::mem::take(self)
    }
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

/// Describes agent type `A` from its table (cron due times computed now).
pub fn describe<A: Agent>() -> AgentInfo {
    describe_running::<A>(A::NAME, &[], &[], &[], &[])
}

/// Describes a running agent `name` of type `A` with what it did: the runs
/// of its tasks that went wrong (by task index) and its servers' addresses.
pub(crate) fn describe_running<A: Agent>(
    name: &'static str,
    runs: &[TaskRuns],
    addresses: &[(&'static str, SocketAddr)],
    receiver_runs: &[HandlerRuns],
    consumer_runs: &[HandlerRuns],
) -> AgentInfo {
    let table = &A::HOOKS;
    let runs_of = |index: usize| runs.get(index).cloned().unwrap_or_default();
    let names = |stage| table.stage(stage).iter().map(|h| h.name).collect();
    let now = super::tasks::wall_now();
    let (mut periodic, mut cron) = (Vec::new(), Vec::new());
    for (index, task) in table.tasks.iter().enumerate() {
        match task.schedule {
            Schedule::Every {
                period,
                start_after,
            } => periodic.push(PeriodicInfo {
                name: task.name,
                period,
                timeout: task.timeout,
                start_after,
                runs: runs_of(index),
            }),
            Schedule::Cron { expression, zone } => cron.push(CronInfo {
                name: task.name,
                expression,
                timezone: zone,
                timeout: task.timeout,
                next_due: parse_cron(expression)
                    .ok()
                    .and_then(|c| next_cron_time(&c, zone, now))
                    .map(|t| t.to_rfc3339()),
                runs: runs_of(index),
            }),
        }
    }
    AgentInfo {
        name,
        hooks: HooksInfo {
            pre_start: names(Stage::PreStart),
            post_start: names(Stage::PostStart),
            pre_stop: names(Stage::PreStop),
        },
        servers: table
            .servers
            .iter()
            .map(|s| ServerInfo {
                name: s.name,
                restart: s.restart,
                addresses: addresses
                    .iter()
                    .filter(|(name, _)| *name == s.name)
                    .map(|(_, addr)| *addr)
                    .collect(),
            })
            .collect(),
        periodic,
        cron,
        receivers: table
            .receivers
            .iter()
            .enumerate()
            .map(|(index, r)| ReceiverInfo {
                name: r.name,
                signal: r.signal,
                timeout: r.timeout,
                runs: receiver_runs.get(index).cloned().unwrap_or_default(),
            })
            .collect(),
        consumers: table
            .consumers
            .iter()
            .enumerate()
            .map(|(index, c)| ConsumerInfo {
                name: c.name,
                queue: c.queue,
                timeout: c.options.timeout,
                attempts: c.options.attempts,
                backoff: c.options.backoff,
                prefetch: c.options.prefetch,
                runs: consumer_runs.get(index).cloned().unwrap_or_default(),
            })
            .collect(),
        bus: None,
        broker: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("nope")]
    struct Nope;

    #[test]
    fn unit_and_ok_are_success_err_is_failure() {
        assert!(().into_hook_result().is_ok());
        assert!(Ok::<(), Nope>(()).into_hook_result().is_ok());
        let err = Err::<(), Nope>(Nope).into_hook_result().unwrap_err();
        assert_eq!(err.to_string(), "nope");
        assert!(!err.is_panic());
    }

    #[test]
    fn call_async_catches_panics() {
        let rt = actix_rt::Runtime::new().expect("runtime");
        let r = rt.block_on(call_async(async {
            if true {
                panic!("async boom")
            }
        }));
        assert_eq!(r.unwrap_err().to_string(), "panicked: async boom");
        let r = rt.block_on(call_async(async { Err::<(), Nope>(Nope) }));
        assert_eq!(r.unwrap_err().to_string(), "nope");
    }
}
