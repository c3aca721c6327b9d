//! The [`Agent`] trait: what `#[derive(MicroAgent)]` makes of a struct.
//!
//! With [`Context`] this is the one pair of modules that refer to each
//! other: an agent's actor context is [`Context`], and the context's
//! lifecycle calls what the agent declares ([`Hooks`]).

use crate::info::AgentInfo;
use crate::lifecycle::{Context, Hooks};
use crate::messages::{GetInfo, StopAgent};
use crate::server::ServerInterrupt;

/// An agent: an actix actor whose lifecycle runs declared hooks.
///
/// Implemented by `#[derive(MicroAgent)]`, and only by it: the trait is
/// sealed, because the lifecycle relies on the actor impl the derive writes
/// (its `started`, `stopping` and `stopped` drive the hooks).
pub trait Agent:
    actix::Actor<Context = Context<Self>>
    + Hooks
    + actix::Handler<StopAgent>
    + actix::Handler<ServerInterrupt>
    + actix::Handler<GetInfo>
    + sealed::Sealed
{
    /// The agent's name, for logs and errors.
    const NAME: &'static str;

    /// What agents of this type declare: hooks, servers, tasks (see
    /// [`AgentInfo`]). Needs no instance: `Mailer::describe()`.
    fn describe() -> AgentInfo {
        crate::lifecycle::describe::<Self>()
    }

    /// What the agent declares, the same as [`describe`](Agent::describe).
    fn info(&self) -> AgentInfo {
        Self::describe()
    }
}

/// Implemented by `#[derive(MicroAgent)]` next to [`Agent`]; reachable only
/// through the crate's hidden module for generated code.
pub(crate) mod sealed {
    /// Keeps [`Agent`](super::Agent) for the derive.
    pub trait Sealed {}
}
