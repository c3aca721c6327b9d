//! The hook table that `#[microagent::hooks]` generates, and the glue its
//! generated code calls.
//!
//! Nothing here is needed to *use* the crate; it is public because the code
//! the macros generate lives in the user's crate.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;

use futures_util::FutureExt;

use crate::{Context, HookFailure, Stage};

/// What a hook produced: nothing, or why it failed.
pub type HookResult = Result<(), HookFailure>;

/// The future of a running async hook. It owns the agent while the hook
/// runs and hands it back together with the hook's result.
pub type HookFuture<A> = Pin<Box<dyn Future<Output = (A, HookResult)>>>;

/// How the lifecycle calls one hook.
pub enum HookCall<A: actix::Actor<Context = Context<A>>> {
    /// A plain `fn`: called with the agent and its context.
    Sync(fn(&mut A, &mut Context<A>) -> HookResult),
    /// An `async fn`: the shim moves the agent out of the actor into the
    /// returned future, which gives it back when the hook is done.
    Async(fn(&mut A, &mut Context<A>) -> HookFuture<A>),
}

/// One declared hook.
pub struct Hook<A: actix::Actor<Context = Context<A>>> {
    /// The method's name, for logs and errors.
    pub name: &'static str,
    /// How to call it.
    pub call: HookCall<A>,
}

/// Every hook of an agent, by label, each list in declaration order.
pub struct HookTable<A: actix::Actor<Context = Context<A>>> {
    /// `#[on(pre_start)]` hooks.
    pub pre_start: &'static [Hook<A>],
    /// `#[on(post_start)]` hooks.
    pub post_start: &'static [Hook<A>],
    /// `#[on(pre_stop)]` hooks.
    pub pre_stop: &'static [Hook<A>],
    /// `#[on(server)]` hooks.
    pub servers: &'static [crate::server::Server<A>],
    /// `#[periodic(...)]` and `#[cron(...)]` tasks.
    pub tasks: &'static [crate::tasks::Task<A>],
}

impl<A: actix::Actor<Context = Context<A>>> HookTable<A> {
    /// The hooks declared with one label.
    pub fn stage(&self, stage: Stage) -> &'static [Hook<A>] {
        match stage {
            Stage::PreStart => self.pre_start,
            Stage::PostStart => self.post_start,
            Stage::PreStop => self.pre_stop,
            // Servers are not called like hooks: see `servers`.
            Stage::Server => &[],
        }
    }

    /// Whether any hook with this label is `async`.
    pub fn has_async(&self, stage: Stage) -> bool {
        self.stage(stage)
            .iter()
            .any(|h| matches!(h.call, HookCall::Async(_)))
    }
}

/// The hooks of an agent type. Implemented by `#[microagent::hooks]`.
#[diagnostic::on_unimplemented(
    message = "`{Self}` has no `#[microagent::hooks]` block",
    label = "this agent's hooks are never declared",
    note = "add `#[microagent::hooks] impl {Self} {{ ... }}`, even an empty one for an agent without hooks"
)]
pub trait Hooks: actix::Actor<Context = Context<Self>> {
    /// The hook table, built at compile time.
    const HOOKS: HookTable<Self>;
}

/// What a hook may return: `()` or `Result<(), E>` for any error type.
#[diagnostic::on_unimplemented(
    message = "a hook must return `()` or `Result<(), E>` where `E: std::error::Error + Send + Sync + 'static`, not `{Self}`",
    label = "unsupported hook return type"
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
    E: std::error::Error + Send + Sync + 'static,
{
    fn into_hook_result(self) -> HookResult {
        self.map_err(|e| HookFailure::Error(Box::new(e)))
    }
}

/// Awaits an async hook body, turning a panic into the hook's failure.
///
/// The panic is caught around the hook's own future, inside the future that
/// owns the agent, so the agent always comes back to its actor.
#[doc(hidden)]
pub async fn call_async<R: IntoHookResult>(fut: impl Future<Output = R>) -> HookResult {
    match AssertUnwindSafe(fut).catch_unwind().await {
        Ok(r) => r.into_hook_result(),
        Err(payload) => Err(HookFailure::from_panic(payload)),
    }
}

/// Wraps a server hook's future: panics are caught, the output converted.
#[doc(hidden)]
pub fn server_future<F>(fut: F) -> crate::server::ServerFuture
where
    F: Future + 'static,
    F::Output: IntoHookResult,
{
    Box::pin(call_async(fut))
}

/// Agents with `async` hooks must be [`Default`]: while an async hook runs
/// it owns the agent, and the actor holds `Default::default()` in its place.
#[diagnostic::on_unimplemented(
    message = "`{Self}` has async hooks, so it must implement `Default`",
    label = "async hook declared here",
    note = "an async hook owns the agent while it awaits; the actor holds `{Self}::default()` meanwhile",
    note = "derive or implement `Default` for `{Self}`, or make the hook a plain `fn`"
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
