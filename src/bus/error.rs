//! The bus's vocabulary of failure ([`BusError`]): every other bus file
//! builds on it; it names none of them but the codec's and the signals'
//! own errors, and no backend.

use std::time::Duration;

use super::signal::SignalError;
use super::wire::WireError;
use crate::backend::BackendError;

/// Why sending, calling or connecting failed. None of them shows a
/// password: URLs appear with it replaced by `***`.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum BusError {
    /// The signal could not be encoded, or its name is not valid.
    #[error(transparent)]
    Signal(#[from] SignalError),
    /// The sender's name (or the prefix) cannot be used on the wire.
    #[error(transparent)]
    Sender(#[from] WireError),
    /// No answer came before the timeout (or no agent has a receiver for
    /// the signal, or every one of them failed to answer).
    #[error("{}", no_answer(signal, *timeout, *asked))]
    NoAnswer {
        /// The signal.
        signal: String,
        /// How long the call waited.
        timeout: Duration,
        /// How many were asked: receivers in-process, buses over a server
        /// (each answers for all its receivers).
        asked: usize,
    },
    /// The bus configuration cannot be used.
    #[error("bus configuration: {reason}")]
    Config {
        /// What is wrong.
        reason: String,
    },
    /// The System already has a bus: install one before anything uses
    /// [`Bus::current`](crate::bus::Bus::current), and only once.
    #[error("this actix System already has a bus")]
    AlreadyInstalled,
    /// The bus's server is not connected (it is reconnecting): nothing was
    /// sent.
    #[error("the bus at {url} is down (reconnecting)")]
    Down {
        /// The URL, password redacted.
        url: String,
    },
    /// The bus's server did not confirm a subscription in time.
    #[error("the bus at {url} did not confirm a subscription within {timeout:?}")]
    SubscribeTimeout {
        /// The URL, password redacted.
        url: String,
        /// How long it waited.
        timeout: Duration,
    },
    /// The backend's server answered a command with an error, or the
    /// connection failed under it: the client's error is the `source`.
    #[error("the {kind} bus at {url}: {source}")]
    Backend {
        /// The backend (`redis`, ...).
        kind: &'static str,
        /// The URL, password redacted.
        url: String,
        /// What the server or the connection said.
        #[source]
        source: BackendError,
    },
}

impl crate::spans::ErrorKind for BusError {
    fn kind(&self) -> &'static str {
        match self {
            BusError::Signal(_) => "signal",
            BusError::Sender(_) => "sender",
            BusError::NoAnswer { .. } => "no_answer",
            BusError::Config { .. } => "config",
            BusError::AlreadyInstalled => "already_installed",
            BusError::Down { .. } => "down",
            BusError::SubscribeTimeout { .. } => "subscribe_timeout",
            BusError::Backend { .. } => "backend",
        }
    }
}

/// `NoAnswer`'s message: a call that asked nobody ended at once (or the
/// bus did not take it in time), which is not a slow receiver.
fn no_answer(signal: &str, timeout: Duration, asked: usize) -> String {
    if asked == 0 {
        format!(
            "no answer to `{signal}`: nobody was asked (no receiver of it is subscribed, \
             or the bus did not take the call within {timeout:?})"
        )
    } else {
        format!("no answer to `{signal}` within {timeout:?} ({asked} asked)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_call_nobody_was_asked_for_says_so() {
        let error = |asked| BusError::NoAnswer {
            signal: "get_stock".into(),
            timeout: Duration::from_secs(2),
            asked,
        };
        assert_eq!(
            error(0).to_string(),
            "no answer to `get_stock`: nobody was asked (no receiver of it is subscribed, \
             or the bus did not take the call within 2s)"
        );
        assert_eq!(
            error(2).to_string(),
            "no answer to `get_stock` within 2s (2 asked)"
        );
    }
}
