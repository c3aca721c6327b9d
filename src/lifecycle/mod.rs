//! The lifecycle machinery: the agent's [`Context`] and everything it
//! carries and drives.
//!
//! | file | what |
//! |---|---|
//! | `context.rs` | [`Context`], the agent's actix context, holding its lifecycle state |
//! | `declare.rs` | the table of what an agent declares, as the macros write it (through `__private`) |
//! | `shims.rs` | what the generated shims call: results, panics, timeouts, decoding, answering, settling |
//! | `describe.rs` | the info an agent's table shows, for its type or while it runs |
//! | `state.rs` | the per-agent state: phase, hook position, work in flight, failures, outcome |
//! | `driver.rs` | runs the hooks from `started`/`stopping`/`stopped` |
//! | `cell.rs` | the one allocation shared with the outside: outcome, phase, running hook, runs by outcome |
//! | `meters.rs` | the duration of each handler run (feature `metrics`) |
//! | `supervisor.rs` | server hooks as child actors: restarts, interrupts, graceful stop |
//! | `tasks.rs`, `cron.rs` | periodic and cron schedules and their runs |
//!
//! It uses the vocabulary below it (errors, phases, messages, info, server
//! types) and the registry; [`Agent`](crate::Agent) and [`Context`] name
//! each other, the one mutual reference of the crate.
//!
//! How the driver works, given what actix does (see `ContextFut` in actix 0.13):
//!
//! - `started` runs the `pre_start` and `post_start` hooks right there as
//!   long as none suspends; when one does, a driver pushed with `ctx.wait`
//!   finishes them, so no message and no spawned future runs before the
//!   start hooks are done. Async hooks and task runs own the agent while
//!   they run (see `shims::AsyncHookAgent`).
//! - `stopping` is synchronous: it runs the `pre_stop` hooks and returns
//!   `Running::Stop` when none suspends; otherwise it pushes a driver and
//!   returns `Running::Continue`, and the driver calls `ctx.terminate()`
//!   when the last hook (and the graceful servers) are done, which ends the
//!   actor without a second `stopping`.
//! - On the "last `Addr` dropped" path actix does not re-poll the actor after
//!   `stopping` returns `Continue`. `stopping` notes that, and the task's own
//!   future (`Guarded`, around actix's `ContextFut`) wakes the task with its
//!   waker when that poll ends; no waker is kept. Hooks first polled inside
//!   `started` or `stopping` (which actix gives no waker) are polled again
//!   by the driver with the task's waker when they suspend.
//! - actix drops a `wait` future that returns `Pending` while the actor is
//!   stopping. So the driver holds no state: the hook in flight and the
//!   position in the hook lists live in the context, and `stopping` pushes a
//!   fresh driver whenever one may have been dropped. Stale drivers find
//!   nothing to do and finish.

mod cell;
pub(crate) mod consumers;
mod context;
mod cron;
pub(crate) mod declare;
#[cfg(feature = "metrics")]
mod meters;
/// Without the `metrics` feature, runs are not timed.
#[cfg(not(feature = "metrics"))]
mod meters {
    #[inline(always)]
    pub(super) fn run_begins<A: crate::Agent>(_: &mut super::Context<A>) {}
    #[inline(always)]
    pub(super) fn run_ended<A: crate::Agent>(_: &mut super::Context<A>, _: super::cell::Run) {}
}
pub(crate) mod describe;
pub(crate) mod driver;
pub(crate) mod receivers;
pub(crate) mod shims;
mod state;
mod supervisor;
mod tasks;

pub(crate) use cell::AgentCell;
pub use context::Context;
#[cfg(feature = "config")]
pub(crate) use cron::parse_cron;
#[cfg(feature = "testkit")]
pub(crate) use cron::set_virtual_wall;
pub(crate) use declare::Hooks;
pub(crate) use describe::describe;
pub(crate) use state::Lifecycle;
