//! What a server hook deals with: the [`ServerContext`] it is handed and the
//! [`ServerInterrupt`] that ends the service. Their supervision (child
//! actors, restarts, the graceful stop) is in `lifecycle::supervisor`.

use std::borrow::Cow;
use std::error::Error;
use std::fmt;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use actix::{Actor, Addr, Message};
use tokio::sync::watch;

use crate::error::HookFailure;

/// Ends the whole service gracefully.
///
/// A server hook that returns `Err(ServerInterrupt::new("..."))` stops its
/// agent gracefully, and with it the whole group under a
/// [`Launcher`](crate::Launcher), which then exits 0. The interrupt may also
/// be wrapped in the error the server returns: boxed
/// (`Box<dyn Error + Send + Sync>`), inside an `std::io::Error`
/// (`io::Error::other(interrupt)`, so a server returning `io::Result` like
/// [`web::serve`](crate::web::serve) can end the service), anywhere in the
/// error's `source()` chain, or in an `anyhow::Error` (with the crate's
/// `anyhow` feature: anyhow hides the error it wraps from `source()`).
///
/// It is also an actix [`Message`]: sending it to any agent does the same.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("server interrupt: {reason}")]
pub struct ServerInterrupt {
    reason: Cow<'static, str>,
}

impl ServerInterrupt {
    /// An interrupt with a reason for the logs.
    pub fn new(reason: impl Into<Cow<'static, str>>) -> Self {
        ServerInterrupt {
            reason: reason.into(),
        }
    }

    /// Why the service was interrupted.
    pub fn reason(&self) -> &str {
        &self.reason
    }

    /// Finds a `ServerInterrupt` anywhere in a hook failure: the error
    /// itself, a `Box` around it, the error an `io::Error` wraps (its
    /// `source()` skips that one), and down the `source()` chain.
    pub(crate) fn find(failure: &HookFailure) -> Option<&ServerInterrupt> {
        let HookFailure::Error(error) = failure else {
            return None;
        };
        let mut next: Option<&(dyn Error + 'static)> = Some(&**error);
        while let Some(error) = next {
            if let Some(interrupt) = error.downcast_ref::<ServerInterrupt>() {
                return Some(interrupt);
            }
            if let Some(boxed) = error.downcast_ref::<Box<ServerInterrupt>>() {
                return Some(boxed);
            }
            #[cfg(feature = "anyhow")]
            if let Some(anyhow) = error.downcast_ref::<crate::failure::AnyhowError>() {
                return anyhow.0.chain().find_map(|e| e.downcast_ref());
            }
            next = match error
                .downcast_ref::<io::Error>()
                .and_then(io::Error::get_ref)
            {
                Some(wrapped) => Some(wrapped),
                None => error.source(),
            };
        }
        None
    }
}

impl Message for ServerInterrupt {
    type Result = ();
}

/// What a server hook is given: its agent's address and the signal to shut
/// down.
///
/// A server that awaits [`shutdown`](ServerContext::shutdown) is stopped
/// gracefully: when its agent stops (after the agent's `pre_stop` hooks) the
/// future resolves and the agent waits for the server to finish. A server
/// that never asks for it is cancelled (its future dropped) at that point.
pub struct ServerContext<A: Actor> {
    name: &'static str,
    agent: Addr<A>,
    shutdown: watch::Receiver<bool>,
    graceful: Arc<AtomicBool>,
    publish: Publish,
}

/// Where a server's published addresses go (the agent's shared cell).
pub(crate) type Publish = Arc<dyn Fn(SocketAddr) + Send + Sync>;

impl<A: Actor> ServerContext<A> {
    /// The context of one start of server `name`; `graceful` is set when the
    /// server asks for the shutdown signal.
    pub(crate) fn new(
        name: &'static str,
        agent: Addr<A>,
        shutdown: watch::Receiver<bool>,
        graceful: Arc<AtomicBool>,
        publish: Publish,
    ) -> Self {
        ServerContext {
            name,
            agent,
            shutdown,
            graceful,
            publish,
        }
    }

    /// Tells the world an address the server listens on, for a server bound
    /// to port 0 above all: it shows in the agent's
    /// [`AgentHandle::server_address`](crate::AgentHandle::server_address),
    /// its [`AgentInfo`](crate::AgentInfo) (from `GetInfo` and
    /// `GET /health/info`) and the log. [`web::serve`](crate::web::serve)
    /// publishes the addresses it bound by itself. A restarted server
    /// publishes again; its old addresses are forgotten.
    pub fn publish_address(&self, addr: SocketAddr) {
        log::info!(target: crate::LOG_TARGET, "server `{}` listening on {addr}", self.name);
        (self.publish)(addr);
    }

    /// The server's name (its method's name).
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// The agent's address. Holding it keeps the agent alive, like any `Addr`.
    pub fn agent(&self) -> &Addr<A> {
        &self.agent
    }

    /// Resolves when the agent is going down and the server should finish
    /// what it is doing and return. Asking for it opts the server into a
    /// graceful stop.
    pub fn shutdown(&self) -> impl Future<Output = ()> + Send + 'static {
        self.graceful.store(true, Ordering::Relaxed);
        let mut rx = self.shutdown.clone();
        async move {
            // An error means the agent is gone: shut down all the same.
            let _ = rx.wait_for(|stop| *stop).await;
        }
    }
}

impl<A: Actor> fmt::Debug for ServerContext<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerContext")
            .field("server", &self.name)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("other")]
    struct Other;

    /// An application error with its cause as `source()`.
    #[derive(Debug, thiserror::Error)]
    #[error("wrapper")]
    struct Wraps<E: Error + 'static>(#[source] E);

    fn reason(failure: HookFailure) -> Option<String> {
        ServerInterrupt::find(&failure).map(|i| i.reason().to_owned())
    }

    #[test]
    fn an_interrupt_is_found_however_it_is_wrapped() {
        let interrupt = || ServerInterrupt::new("Exit");
        let boxed: Box<dyn Error + Send + Sync> = Box::new(interrupt());
        let wrapped = [
            HookFailure::error(boxed),
            HookFailure::error(Box::new(interrupt())),
            HookFailure::error(io::Error::other(interrupt())),
            HookFailure::error(Wraps(interrupt())),
            HookFailure::error(Wraps(io::Error::other(Wraps(interrupt())))),
        ];
        for (index, failure) in wrapped.into_iter().enumerate() {
            let shown = format!("#{index}: {failure:?}");
            assert_eq!(reason(failure).as_deref(), Some("Exit"), "{shown}");
        }
        let plain_io = HookFailure::error(io::Error::other("Exit"));
        assert_eq!(reason(plain_io), None);
    }

    #[cfg(feature = "anyhow")]
    #[test]
    fn an_interrupt_is_found_inside_an_anyhow_error() {
        use anyhow::Context as _;
        let direct = anyhow::Error::new(ServerInterrupt::new("Exit"));
        let with_context = Err::<(), _>(ServerInterrupt::new("Exit"))
            .context("serving")
            .unwrap_err();
        for error in [direct, with_context] {
            let failure = HookFailure::error(error);
            assert_eq!(reason(failure).as_deref(), Some("Exit"));
        }
        let other = HookFailure::error(anyhow::anyhow!("Exit"));
        assert_eq!(reason(other), None);
    }

    #[test]
    fn an_interrupt_is_found_in_the_boxed_error_a_server_returns() {
        let failure = HookFailure::error(ServerInterrupt::new("Exit"));
        assert_eq!(
            ServerInterrupt::find(&failure).map(ServerInterrupt::reason),
            Some("Exit")
        );
        assert!(ServerInterrupt::find(&HookFailure::error(Other)).is_none());
        assert!(ServerInterrupt::find(&HookFailure::error(Wraps(Other))).is_none());
        assert!(ServerInterrupt::find(&HookFailure::Panic("Exit".into())).is_none());
        assert_eq!(
            ServerInterrupt::new("Exit").to_string(),
            "server interrupt: Exit"
        );
    }
}
