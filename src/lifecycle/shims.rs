//! The functions the generated shims call (through `microagent::__private`):
//! converting what a method returned, catching its panics, bounding it by
//! its timeout, decoding a receiver's signal or a consumer's message, and
//! answering or settling it.

use std::future::Future;
use std::time::Duration;

use futures_util::FutureExt;
use serde::Serialize;
use serde_json::Value;

use super::declare::ServerFuture;
use crate::broker::{Job, Queue, Settle};
use crate::bus::{Delivery, Reply, Signal};
use crate::error::{HookFailure, HookResult, TimedOut};

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
        ..
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
