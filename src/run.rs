//! Running agents from `main`.

use std::future::Future;

use std::sync::Arc;

use actix_rt::System;

use crate::agent::Agent;
use crate::broker;
use crate::bus;
use crate::error::AgentError;
use crate::registry::{self, SystemAgents};
use crate::start::start;
use crate::LOG_TARGET;

/// A new actix System with a registry of its agents: what [`run`] and the
/// [`Launcher`](crate::Launcher) run agents in.
pub(crate) struct OwnedSystem {
    system: actix_rt::SystemRunner,
    id: usize,
    agents: Arc<SystemAgents>,
}

impl OwnedSystem {
    /// Creates the System and its registry on this thread.
    ///
    /// # Panics
    /// Inside a running actix System or Tokio runtime.
    pub(crate) fn new() -> Self {
        let system = System::new();
        let id = System::current().id();
        let agents = registry::open(id);
        OwnedSystem { system, id, agents }
    }

    /// The agents started in this System.
    pub(crate) fn agents(&self) -> Arc<SystemAgents> {
        self.agents.clone()
    }

    /// Runs `main` on the System's own arbiter.
    pub(crate) fn block_on<F: Future>(&self, main: F) -> F::Output {
        self.system.block_on(main)
    }

    /// Stops the System, waits for it and forgets its registry.
    pub(crate) fn finish(self, log_target: &str) {
        System::current().stop();
        if let Err(e) = self.system.run() {
            log::warn!(target: log_target, "the System did not stop cleanly: {e}");
        }
        registry::close(self.id);
        bus::close(self.id);
        broker::close(self.id);
    }
}

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
    let system = OwnedSystem::new();
    let agents = system.agents();
    let output = system.block_on(async move {
        let output = main.await;
        let left = agents.len();
        if left > 0 {
            log::info!(target: LOG_TARGET, "stopping {left} agent(s) before the System exits");
        }
        agents.stop_all().await;
        crate::broker::disconnect().await;
        output
    });
    system.finish(LOG_TARGET);
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
