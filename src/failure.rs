//! What went wrong in one run of user code ([`HookFailure`]), and the
//! stage a hook belongs to ([`Stage`]): the failures every module reports.
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
/// error type. It is shared (`Arc`), so failures and the [`AgentError`](crate::AgentError)s
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

    /// The panic's message, when the hook panicked.
    pub fn panic_message(&self) -> Option<&str> {
        match self {
            HookFailure::Panic(message) => Some(message),
            HookFailure::Error(_) => None,
        }
    }
}

/// The error of an async task run cancelled by its timeout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("timed out after {0:?}")]
pub struct TimedOut(pub std::time::Duration);
