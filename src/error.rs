//! Typed errors: which agent, which hook, what went wrong. Above the bus
//! and the broker (an agent's error may carry theirs); what one run's
//! failure is lives below them, in `failure`.

pub(crate) use crate::failure::HookResult;
pub use crate::failure::{HookFailure, Stage, TimedOut};

/// One hook's failure, with the agent and hook it came from.
///
/// Its message already includes the cause, so [`source`](std::error::Error::source)
/// does not repeat it (error-chain printers would show it twice); the cause
/// is the public [`cause`](HookError::cause) field.
#[derive(Debug, Clone, thiserror::Error)]
#[error("agent `{agent}`: {stage} hook `{hook}` failed: {cause}")]
pub struct HookError {
    /// The agent's name (its type name unless renamed with `#[microagent(name = "...")]`).
    pub agent: &'static str,
    /// The label the hook was declared with.
    pub stage: Stage,
    /// The hook's method name.
    pub hook: &'static str,
    /// What went wrong.
    pub cause: HookFailure,
}

/// How an agent ended, when it did not end cleanly.
///
/// This is what an [`AgentHandle`](crate::AgentHandle) resolves to on failure.
/// It is `#[non_exhaustive]`: new causes (configuration, bus, broker) will
/// be added, so a `match` on it needs a wildcard arm. It is `Clone` (the
/// failures inside are shared), so every party waiting for an agent gets it.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum AgentError {
    /// One or more hooks failed. The first entry is the failure that stopped
    /// the agent when it was a `pre_start` or `post_start` hook; every
    /// `pre_stop` failure follows, in the order the hooks ran.
    #[error("{}", join(failures))]
    Failed {
        /// The agent's name.
        agent: &'static str,
        /// Every hook failure, in the order they happened (never empty).
        failures: Vec<HookError>,
    },
    /// A message handler or a future the agent spawned panicked, which kills
    /// an actix actor's task. The lifecycle records the panic, in the same
    /// shape as a hook's ([`HookFailure::Panic`]); the `pre_stop` hooks then
    /// get one chance in actix's teardown (those that complete without
    /// suspending run to the end), and their failures follow.
    #[error(
        "agent `{agent}` crashed: a message handler or spawned future {panic}{}",
        pre_stop_suffix(failures)
    )]
    Crashed {
        /// The agent's name.
        agent: &'static str,
        /// The panic (always [`HookFailure::Panic`]; it displays as
        /// `panicked: <message>`).
        panic: HookFailure,
        /// `pre_stop` hooks that failed during the teardown.
        failures: Vec<HookError>,
    },
    /// The agent's receivers could not subscribe to the bus (Redis did not
    /// confirm in time, or the bus was down) after its `pre_start` hooks; it
    /// did not start, and its `pre_stop` hooks ran (their failures follow).
    #[error(
        "agent `{agent}`: its receivers could not subscribe: {error}{}",
        pre_stop_suffix(failures)
    )]
    Subscribe {
        /// The agent's name.
        agent: &'static str,
        /// What the bus said.
        error: Box<crate::bus::BusError>,
        /// `pre_stop` hooks that failed afterwards.
        failures: Vec<HookError>,
    },
    /// One of the agent's consumers was refused by the broker for good
    /// after its `pre_start` hooks (an AMQP queue that exists with other
    /// flags: [`BrokerError::QueueMismatch`](crate::broker::BrokerError::QueueMismatch)
    /// names the queue, our flags and the broker's word on theirs); it did
    /// not start, and its `pre_stop` hooks ran (their failures follow).
    #[error(
        "agent `{agent}`: its consumer `{consumer}` could not start: {error}{}",
        pre_stop_suffix(failures)
    )]
    Consume {
        /// The agent's name.
        agent: &'static str,
        /// The consumer (the method's name).
        consumer: &'static str,
        /// What the broker said.
        error: Box<crate::broker::BrokerError>,
        /// `pre_stop` hooks that failed afterwards.
        failures: Vec<HookError>,
    },
    /// The agent was torn down before its lifecycle could finish, typically
    /// because its arbiter or its System was stopped directly instead of
    /// through [`run`](crate::run), so its `pre_stop` hooks may not have
    /// completed.
    #[error("agent `{agent}` was torn down before its lifecycle finished (its arbiter or System stopped first)")]
    Aborted {
        /// The agent's name.
        agent: &'static str,
    },
}

impl AgentError {
    /// The name of the agent this error is about.
    pub fn agent(&self) -> &'static str {
        match self {
            AgentError::Failed { agent, .. }
            | AgentError::Crashed { agent, .. }
            | AgentError::Subscribe { agent, .. }
            | AgentError::Consume { agent, .. }
            | AgentError::Aborted { agent } => agent,
        }
    }

    /// The panic's message when the agent crashed
    /// ([`Crashed`](AgentError::Crashed)), `None` otherwise.
    pub fn panic_message(&self) -> Option<&str> {
        match self {
            AgentError::Crashed { panic, .. } => panic.panic_message(),
            _ => None,
        }
    }

    /// The hook failures, in order (empty for [`AgentError::Aborted`]).
    pub fn failures(&self) -> &[HookError] {
        match self {
            AgentError::Failed { failures, .. }
            | AgentError::Crashed { failures, .. }
            | AgentError::Subscribe { failures, .. }
            | AgentError::Consume { failures, .. } => failures,
            AgentError::Aborted { .. } => &[],
        }
    }
}

fn pre_stop_suffix(failures: &[HookError]) -> String {
    if failures.is_empty() {
        String::new()
    } else {
        format!("; then {}", join(failures))
    }
}

fn join(failures: &[HookError]) -> String {
    failures
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
mod tests;
