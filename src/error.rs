//! Typed errors: which agent, which hook, what went wrong.
//!
//! Bottom of the module graph: this module uses no other module of the crate.

use std::fmt;

/// The lifecycle stage a hook belongs to: the label it was declared with.
///
/// It is `#[non_exhaustive]`: declaration kinds that can fail an agent may
/// be added, so a `match` on it needs a wildcard arm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Stage {
    /// `#[on(pre_start)]`: before the agent handles any message.
    PreStart,
    /// `#[on(post_start)]`: once the agent accepts messages.
    PostStart,
    /// `#[on(pre_stop)]`: when the agent goes down, while it is still alive.
    PreStop,
    /// `#[on(server)]`: a run-forever task of the agent.
    Server,
}

impl Stage {
    /// The label as written in `#[on(...)]`.
    pub const fn label(self) -> &'static str {
        match self {
            Stage::PreStart => "pre_start",
            Stage::PostStart => "post_start",
            Stage::PreStop => "pre_stop",
            Stage::Server => "server",
        }
    }
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

/// Why a single hook (or server, or a handler that crashed the agent)
/// failed.
///
/// `HookFailure::Error` is transparent: it displays as the hook's own error
/// and has that error's source, and the error can be downcast to the hook's
/// error type. It is shared (`Arc`), so failures and the [`AgentError`]s
/// holding them are `Clone`: every party waiting for an agent gets them.
#[derive(Debug, Clone, thiserror::Error)]
pub enum HookFailure {
    /// The hook returned `Err(e)`.
    #[error(transparent)]
    Error(std::sync::Arc<dyn std::error::Error + Send + Sync + 'static>),
    /// The hook panicked; the payload's message, when it had one.
    #[error("panicked: {0}")]
    Panic(String),
}

/// What a hook, a server or a task run produced: nothing, or why it failed.
pub(crate) type HookResult = Result<(), HookFailure>;

/// The error a failed hook carries.
pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Boxes a hook's error. With the `anyhow` feature an `anyhow::Error` is
/// kept whole (its own conversion to a box hides the error it wraps from
/// `source()`), so that an interrupt inside it can still be found.
pub(crate) fn box_error<E: Into<BoxError> + 'static>(error: E) -> BoxError {
    #[cfg(feature = "anyhow")]
    {
        let mut slot = Some(error);
        let any: &mut dyn std::any::Any = &mut slot;
        if let Some(anyhow) = any
            .downcast_mut::<Option<anyhow::Error>>()
            .and_then(Option::take)
        {
            return Box::new(AnyhowError(anyhow));
        }
        slot.map_or_else(|| BoxError::from("<error taken>"), Into::into)
    }
    #[cfg(not(feature = "anyhow"))]
    error.into()
}

/// An `anyhow::Error` a hook returned, shown as anyhow shows it.
#[cfg(feature = "anyhow")]
#[derive(Debug)]
pub(crate) struct AnyhowError(pub(crate) anyhow::Error);

#[cfg(feature = "anyhow")]
impl fmt::Display for AnyhowError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

#[cfg(feature = "anyhow")]
impl std::error::Error for AnyhowError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0.source()
    }
}

impl HookFailure {
    /// A failure carrying the error a hook returned.
    pub(crate) fn error(error: impl Into<BoxError> + 'static) -> Self {
        HookFailure::Error(box_error(error).into())
    }

    /// Runs user code (a sync hook, a shim, `Default::default()`...),
    /// turning a panic into a failure with the panic's message.
    pub(crate) fn catch<T>(f: impl FnOnce() -> T) -> Result<T, HookFailure> {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).map_err(HookFailure::from_panic)
    }

    /// Runs a sync hook, task or receiver (user code returning its own
    /// result): its failure, or its panic as one.
    pub(crate) fn catch_result(f: impl FnOnce() -> HookResult) -> HookResult {
        Self::catch(f).and_then(|result| result)
    }

    /// Turns a payload caught by `catch_unwind` into a failure with its message.
    pub(crate) fn from_panic(payload: Box<dyn std::any::Any + Send>) -> Self {
        let msg = if let Some(s) = payload.downcast_ref::<&'static str>() {
            (*s).to_owned()
        } else if let Some(s) = payload.downcast_ref::<String>() {
            s.clone()
        } else {
            "<non-string panic payload>".to_owned()
        };
        HookFailure::Panic(msg)
    }

    /// Whether the hook panicked (as opposed to returning an error).
    pub fn is_panic(&self) -> bool {
        matches!(self, HookFailure::Panic(_))
    }
}

/// The error of an async task run cancelled by its timeout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("timed out after {0:?}")]
pub struct TimedOut(pub std::time::Duration);

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
