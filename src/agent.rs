//! The [`Agent`] trait: what `#[derive(MicroAgent)]` makes of a struct.
//!
//! With [`Context`] this is the one pair of modules that refer to each
//! other: an agent's actor context is [`Context`], and the context's
//! lifecycle calls what the agent declares ([`Hooks`]).

use crate::broker::Consume;
use crate::bus::Deliver;
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
    + actix::Handler<Deliver>
    + actix::Handler<Consume>
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

    /// This agent under a name of its own, for several agents of one type:
    /// `Launcher::new().agent(Member::new().named("member-1"))`. The name
    /// replaces the type's in logs, errors, the shutdown report, the
    /// handle, `GetInfo` and `/health/info`.
    fn named(self, name: &str) -> Named<Self> {
        Named::new(name, self)
    }
}

/// An agent with a name of its own, from [`Agent::named`](crate::Agent::named).
///
/// Start it like the agent itself ([`start`](crate::start),
/// [`start_in`](crate::start_in), [`Launcher::agent`](crate::Launcher::agent)...): the name replaces the
/// type's in logs, errors, the shutdown report, `info()` and
/// `/health/info`, so that several agents of one type can be told apart.
#[derive(Debug)]
pub struct Named<A> {
    name: &'static str,
    agent: A,
}

impl<A> Named<A> {
    /// Names `agent`. Names are interned: each distinct name is kept once
    /// for the life of the process.
    pub(crate) fn new(name: &str, agent: A) -> Self {
        Named {
            name: crate::intern::intern(name),
            agent,
        }
    }

    /// The name.
    pub fn name(&self) -> &'static str {
        self.name
    }
}

/// What [`start`](crate::start), [`start_in`](crate::start_in) and the
/// [`Launcher`](crate::Launcher) take: an agent (named after its type) or a
/// [`Named`] agent. Sealed.
pub trait IntoAgent: sealed::Sealed {
    /// The agent's type.
    type Agent: Agent;

    /// The agent, the name it runs under, and its tasks' schedules when a
    /// deployment set them.
    #[doc(hidden)]
    fn into_agent(self) -> Instance<Self::Agent>;
}

/// An agent as it starts: its name, and its tasks' schedules when they
/// differ from its declaration's (one per task, in declaration order).
#[doc(hidden)]
#[derive(Debug)]
pub struct Instance<A> {
    pub(crate) name: &'static str,
    pub(crate) agent: A,
    pub(crate) schedules: Option<Box<[crate::lifecycle::declare::Schedule]>>,
}

impl<A: Agent> IntoAgent for A {
    type Agent = A;

    fn into_agent(self) -> Instance<A> {
        Instance {
            name: A::NAME,
            agent: self,
            schedules: None,
        }
    }
}

/// An agent (or a named one) with its tasks' schedules set by a
/// deployment: what the configuration starts.
#[cfg_attr(not(feature = "config"), allow(dead_code))]
pub(crate) struct Scheduled<T> {
    pub(crate) agent: T,
    pub(crate) schedules: Box<[crate::lifecycle::declare::Schedule]>,
}

impl<T: IntoAgent> sealed::Sealed for Scheduled<T> {}

impl<T: IntoAgent> IntoAgent for Scheduled<T> {
    type Agent = T::Agent;

    fn into_agent(self) -> Instance<T::Agent> {
        Instance {
            schedules: Some(self.schedules),
            ..self.agent.into_agent()
        }
    }
}

impl<A: Agent> sealed::Sealed for Named<A> {}

impl<A: Agent> IntoAgent for Named<A> {
    type Agent = A;

    fn into_agent(self) -> Instance<A> {
        Instance {
            name: self.name,
            agent: self.agent,
            schedules: None,
        }
    }
}

/// Implemented by `#[derive(MicroAgent)]` next to [`Agent`]; reachable only
/// through the crate's hidden module for generated code.
pub(crate) mod sealed {
    /// Keeps [`Agent`](super::Agent) for the derive.
    pub trait Sealed {}
}
