//! Starting agents, and the handle that reports how they ended.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;

use actix::dev::channel;
use actix::Addr;
use actix_rt::ArbiterHandle;

use crate::agent::{Agent, IntoAgent};
use crate::error::AgentError;
use crate::lifecycle::{AgentCell, Context, Lifecycle};
use crate::registry::{self, Tracked};
use crate::LOG_TARGET;

/// Mailbox capacity of a new agent, as for actix actors.
const MAILBOX_CAPACITY: usize = 16;

/// A started agent's lifecycle, seen from outside.
///
/// Await it, or [`wait`](AgentHandle::wait) on it, for the agent's outcome:
/// `Ok(())` once the agent stopped with every hook successful, or the
/// [`AgentError`] naming the hooks that failed. It is `Clone`: any number
/// of parties may wait, and each gets the outcome. It holds no strong
/// `Addr`, so it does not keep the agent alive.
///
/// ```
/// use microagent::prelude::*;
///
/// #[derive(Default, MicroAgent)]
/// struct Worker;
///
/// #[microagent::hooks]
/// impl Worker {}
///
/// microagent::run(async {
///     let (_addr, handle) = microagent::start(Worker);
///     let watcher = handle.clone();
///     assert_eq!(handle.stop(), StopRequest::Delivered);
///     handle.wait().await.unwrap(); // borrows: `handle` stays usable
///     assert!(handle.is_finished());
///     watcher.await.unwrap(); // another party sees the same outcome
/// });
/// ```
#[must_use = "an agent handle reports how the agent ended; dropping it leaves the agent running"]
pub struct AgentHandle<A: Agent> {
    cell: Arc<AgentCell<A>>,
}

impl<A: Agent> Clone for AgentHandle<A> {
    fn clone(&self) -> Self {
        AgentHandle {
            cell: self.cell.clone(),
        }
    }
}

/// What [`AgentHandle::stop`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StopRequest {
    /// [`StopAgent`](crate::StopAgent) is in the agent's mailbox: the agent
    /// stops once the messages before it are handled (not yet stopped: wait
    /// on the handle for that).
    Delivered,
    /// The agent has no `Addr` left: it is already stopping, or gone. Its
    /// `pre_stop` hooks are running or done.
    AlreadyStopping,
}

impl StopRequest {
    /// Whether the request reached the agent's mailbox (`Delivered`).
    pub fn is_delivered(self) -> bool {
        self == StopRequest::Delivered
    }
}

impl<A: Agent> AgentHandle<A> {
    /// The agent's name: its type's, or the one it was started with
    /// ([`Agent::named`](crate::Agent::named)).
    pub fn name(&self) -> &'static str {
        self.cell.name()
    }

    /// A new address of the agent, while its mailbox exists (until its
    /// lifecycle ends: the outcome is reported once the mailbox is gone,
    /// unless some other `Addr` keeps it). Holding it keeps the agent alive
    /// like any `Addr`.
    pub fn address(&self) -> Option<Addr<A>> {
        self.cell.addr().upgrade()
    }

    /// Where the agent is in its lifecycle now (`Running` once its
    /// `post_start` hooks are done).
    pub fn phase(&self) -> crate::Phase {
        Tracked::phase(&*self.cell)
    }

    /// Asks the agent to stop gracefully (sends it
    /// [`StopAgent`](crate::StopAgent)) and says whether the request was
    /// delivered. It does not wait: [`wait`](AgentHandle::wait) for that.
    pub fn stop(&self) -> StopRequest {
        if self.cell.request_stop() {
            StopRequest::Delivered
        } else {
            StopRequest::AlreadyStopping
        }
    }

    /// The first address server `server` (the method's name) published
    /// with [`ServerContext::publish_address`](crate::ServerContext::publish_address)
    /// ([`web::serve`](crate::web::serve) does it by itself), while it runs.
    pub fn server_address(&self, server: &str) -> Option<std::net::SocketAddr> {
        self.cell.server_address(server)
    }

    /// The first address server `server` (the method's name) publishes,
    /// once it does: an HTTP agent's port once bound, ready for requests
    /// (`started()` and `GetInfo` resolve before the servers listen).
    /// `None` when the agent's lifecycle ends first (the server failed to
    /// bind, or the agent stopped).
    ///
    /// ```
    /// use microagent::prelude::*;
    ///
    /// #[derive(Default, MicroAgent)]
    /// struct Api;
    ///
    /// #[microagent::hooks]
    /// impl Api {
    ///     #[on(server)]
    ///     fn http(&self, srv: ServerContext<Self>) -> impl std::future::Future<Output = std::io::Result<()>> {
    ///         async move {
    ///             let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    ///             srv.publish_address(listener.local_addr()?);
    ///             std::future::pending().await
    ///         }
    ///     }
    /// }
    ///
    /// microagent::run(async {
    ///     let (_api, handle) = microagent::start(Api);
    ///     let addr = handle.bound_address("http").await.expect("it binds");
    ///     assert!(addr.port() > 0);
    ///     handle.stop();
    /// });
    /// ```
    pub fn bound_address(
        &self,
        server: &'static str,
    ) -> impl Future<Output = Option<std::net::SocketAddr>> + Send + 'static {
        let cell = self.cell.clone();
        std::future::poll_fn(move |task| cell.poll_address(server, task.waker()))
    }

    /// Whether the agent's lifecycle is over (its outcome is ready).
    pub fn is_finished(&self) -> bool {
        self.cell.is_done()
    }

    /// Waits for the agent's outcome without giving up the handle.
    pub fn wait(&self) -> impl Future<Output = Result<(), AgentError>> + Send + 'static {
        self.clone()
    }
}

impl<A: Agent> Future for AgentHandle<A> {
    type Output = Result<(), AgentError>;

    fn poll(self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> Poll<Self::Output> {
        self.cell.poll_outcome(cx.waker())
    }
}

impl<A: Agent> std::fmt::Debug for AgentHandle<A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentHandle")
            .field("agent", &self.name())
            .field("finished", &self.is_finished())
            .finish_non_exhaustive()
    }
}

/// Starts an agent on the current arbiter.
///
/// Returns at once with the agent's address and its handle. Messages sent
/// to the address are queued and handled only after every `pre_start` and
/// `post_start` hook has finished, so they see what the hooks set up.
///
/// # How long the agent lives
/// It depends on what the agent declares:
///
/// - **Hooks only** (and handlers): like any actix actor, the agent stops
///   when its last `Addr` is dropped, after its `pre_stop` hooks. Keep the
///   address for as long as the agent should run: `let (_, handle) =
///   start(agent)` drops it at once, so `pre_stop` runs right after
///   start-up.
/// - **Servers or periodic/cron tasks**: the agent stays alive without any
///   `Addr` (a server holds one; timers, like actix's `run_interval`, keep
///   the actor busy) until it is stopped explicitly: [`AgentHandle::stop`],
///   [`StopAgent`](crate::StopAgent), `ctx.stop()`, a
///   [`ServerInterrupt`](crate::ServerInterrupt), or the end of
///   [`run`](crate::run).
///
/// ```
/// use microagent::prelude::*;
///
/// #[derive(Default, MicroAgent)]
/// struct Plain;
///
/// #[microagent::hooks]
/// impl Plain {}
///
/// #[derive(Default, MicroAgent)]
/// struct Ticking;
///
/// #[microagent::hooks]
/// impl Ticking {
///     #[periodic(period = 0.01)]
///     fn tick(&mut self) {}
/// }
///
/// microagent::run(async {
///     // No `Addr` kept: the plain agent stops right after start-up.
///     let (_, plain) = microagent::start(Plain);
///     plain.wait().await.unwrap();
///
///     // The agent with a task keeps running until it is stopped.
///     let (_, ticking) = microagent::start(Ticking);
///     actix_rt::time::sleep(std::time::Duration::from_millis(50)).await;
///     assert!(!ticking.is_finished());
///     ticking.stop();
///     ticking.wait().await.unwrap();
/// });
/// ```
///
/// # Panics
/// Outside a running actix System: start agents inside
/// [`run`](crate::run), from a [`Launcher`](crate::Launcher), or in an
/// actix System you run yourself.
pub fn start<T: IntoAgent>(agent: T) -> (Addr<T::Agent>, AgentHandle<T::Agent>) {
    let instance = agent.into_agent();
    let (addr, handle, launch) = prepare(instance.name, instance.schedules);
    launch.run(instance.agent);
    (addr, handle)
}

/// Starts an agent on another arbiter (its own thread), so that a busy
/// agent does not stall the others.
///
/// If the arbiter has already stopped, the agent is dropped without running
/// any hook and the handle resolves to [`AgentError::Aborted`].
///
/// # Panics
/// Outside a running actix System (see [`start`]).
pub fn start_in<T>(arbiter: &ArbiterHandle, agent: T) -> (Addr<T::Agent>, AgentHandle<T::Agent>)
where
    T: IntoAgent,
    T::Agent: Send,
{
    let crate::agent::Instance {
        name,
        agent,
        schedules,
    } = agent.into_agent();
    let (addr, handle, launch) = prepare(name, schedules);
    if !arbiter.spawn_fn(move || launch.run(agent)) {
        log::error!(target: LOG_TARGET, "agent `{name}`: its arbiter has stopped; not started");
    }
    (addr, handle)
}

/// Everything needed to run an agent, made on the caller's thread so the
/// address exists before the actor does.
struct Launch<A: Agent> {
    /// Taken by `run`; still here on drop means the agent never ran.
    parts: Option<LaunchParts<A>>,
}

struct LaunchParts<A: Agent> {
    rx: channel::AddressReceiver<A>,
    cell: Arc<AgentCell<A>>,
    registration: Option<registry::Registration>,
}

impl<A: Agent> Launch<A> {
    fn run(mut self, agent: A) {
        if let Some(LaunchParts {
            rx,
            cell,
            registration,
        }) = self.parts.take()
        {
            let life = Lifecycle::new(cell.name(), cell, registration);
            Context::run(rx, life, agent);
        }
    }
}

impl<A: Agent> Drop for Launch<A> {
    fn drop(&mut self) {
        // Dropped unrun (its arbiter had stopped): the handle must not wait
        // forever.
        if let Some(parts) = self.parts.take() {
            let agent = parts.cell.name();
            parts
                .cell
                .report(Err(Box::new(AgentError::Aborted { agent })));
        }
    }
}

fn prepare<A: Agent>(
    name: &'static str,
    schedules: Option<Box<[crate::lifecycle::declare::Schedule]>>,
) -> (Addr<A>, AgentHandle<A>, Launch<A>) {
    let (tx, rx) = channel::channel(MAILBOX_CAPACITY);
    let addr = Addr::new(tx);
    let hooks = &A::HOOKS;
    let handlers = hooks.tasks.len() + hooks.receivers.len() + hooks.consumers.len();
    let cell = Arc::new(AgentCell::new(name, addr.downgrade(), schedules, handlers));
    let registration = registry::register(&cell);
    let handle = AgentHandle { cell: cell.clone() };
    let launch = Launch {
        parts: Some(LaunchParts {
            rx,
            cell,
            registration,
        }),
    };
    (addr, handle, launch)
}
