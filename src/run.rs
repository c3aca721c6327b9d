//! Running agents from `main`.

use std::future::Future;

use crate::{registry, start, Agent, AgentError};

/// Runs `main` in a new actix System, then stops every agent still running
/// gracefully, waits for their `pre_stop` hooks, and only then stops the
/// System. Returns what `main` returned.
///
/// This is the crate's answer to a raw `System::stop()` (or the end of an
/// `#[actix::main]` body), which tears arbiters down without giving async
/// hooks a chance: agents on other arbiters get their `pre_stop` hooks
/// polled once at most, and agents on the System's own arbiter are dropped
/// without any hook. Under `run`, every agent started in the System (on any
/// arbiter, by [`start`](crate::start) or [`start_in`](crate::start_in)) has
/// finished its `pre_stop` hooks when `run` returns.
///
/// Agents stopped this way report their outcome through their
/// [`AgentHandle`](crate::AgentHandle)s, and hook failures are logged.
///
/// # Panics
/// When called inside a running actix System or Tokio runtime.
///
/// # Example
/// ```
/// use microagent::prelude::*;
///
/// #[derive(Default, MicroAgent)]
/// struct Cache { ready: bool }
///
/// #[microagent::hooks]
/// impl Cache {
///     #[on(pre_start)]
///     async fn warm_up(&mut self) { self.ready = true; }
/// }
///
/// struct IsReady;
/// impl Message for IsReady { type Result = bool; }
/// impl Handler<IsReady> for Cache {
///     type Result = bool;
///     fn handle(&mut self, _: IsReady, _: &mut Context<Self>) -> bool { self.ready }
/// }
///
/// let ready = microagent::run(async {
///     let (cache, _handle) = microagent::start(Cache::default());
///     cache.send(IsReady).await.unwrap()
/// });
/// assert!(ready);
/// ```
pub fn run<F: Future>(main: F) -> F::Output {
    let system = actix_rt::System::new();
    let system_id = actix_rt::System::current().id();
    let agents = registry::open(system_id);
    let output = system.block_on(async move {
        let output = main.await;
        let left = agents.len();
        if left > 0 {
            log::info!(target: "microagent", "stopping {left} agent(s) before the System exits");
        }
        agents.stop_all().await;
        output
    });
    actix_rt::System::current().stop();
    if let Err(e) = system.run() {
        log::warn!(target: "microagent", "the System did not stop cleanly: {e}");
    }
    registry::close(system_id);
    output
}

/// Runs one agent in a new actix System until it stops, and returns its
/// outcome.
///
/// The agent stops when it stops itself (`ctx.stop()`), when it is sent
/// [`StopAgent`](crate::StopAgent), or when a start hook fails.
///
/// # Example
/// ```
/// use microagent::prelude::*;
///
/// #[derive(Default, MicroAgent)]
/// struct OneShot;
///
/// #[microagent::hooks]
/// impl OneShot {
///     #[on(post_start)]
///     fn done(&mut self, ctx: &mut Context<Self>) { ctx.stop(); }
/// }
///
/// assert!(microagent::run_agent(OneShot).is_ok());
/// ```
pub fn run_agent<A: Agent>(agent: A) -> Result<(), AgentError> {
    run(async move {
        let (addr, handle) = start(agent);
        let outcome = handle.await;
        drop(addr);
        outcome
    })
}
