//! The agent's actor context: everything `actix::Context` offers, plus the
//! agent's lifecycle state.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::Poll;

use actix::dev::channel::AddressReceiver;
use actix::dev::{
    AsyncContextParts, ContextFut, ContextParts, Envelope, Mailbox, OneshotSender, ToEnvelope,
};
use actix::{
    Actor, ActorContext, ActorFuture, ActorState, Addr, AsyncContext, Handler, Message, SpawnHandle,
};

use super::state::Lifecycle;
use crate::error::HookFailure;
use crate::phase::Phase;

/// The execution context of an agent.
///
/// It is an actix actor context (it implements [`ActorContext`] and
/// [`AsyncContext`], so `ctx.stop()`, `ctx.address()`, `ctx.spawn(..)`,
/// `ctx.wait(..)`, `ctx.notify(..)`, `ctx.run_interval(..)` and friends work as
/// with `actix::Context`) that also carries the agent's lifecycle. Handlers of
/// an agent take `ctx: &mut Context<Self>` with this type; the crate's
/// [`prelude`](crate::prelude) exports it under that name in place of actix's.
pub struct Context<A: Actor<Context = Context<A>>> {
    parts: ContextParts<A>,
    pub(super) life: Lifecycle<A>,
}

impl<A: Actor<Context = Context<A>>> Context<A> {
    /// Spawns the actor `act`, with the mailbox `rx` receives and its
    /// lifecycle `life`, on the current arbiter.
    pub(crate) fn run(rx: AddressReceiver<A>, life: Lifecycle<A>, act: A) {
        let mailbox = Mailbox::new(rx);
        let context = Context {
            parts: ContextParts::new(mailbox.sender_producer()),
            life,
        };
        actix_rt::spawn(Guarded(Some(ContextFut::new(context, act, mailbox))));
    }

    /// The agent's name.
    pub fn agent_name(&self) -> &'static str {
        self.life.name
    }

    /// The System's bus, with this agent's name as the sender of what it
    /// sends (see [`AgentBus`](crate::bus::AgentBus)).
    ///
    /// # Panics
    /// Outside a running actix System (an agent always runs in one).
    pub fn bus(&self) -> crate::bus::AgentBus {
        crate::bus::AgentBus::new(crate::bus::Bus::current(), self.life.name)
    }

    /// Where the agent is in its lifecycle.
    pub fn phase(&self) -> Phase {
        self.life.phase
    }

    /// Changes the capacity of the agent's mailbox (16 by default, as in actix).
    pub fn set_mailbox_capacity(&mut self, cap: usize) {
        self.parts.set_mailbox_capacity(cap)
    }

    /// The handle of the future the context is running right now.
    pub fn handle(&self) -> SpawnHandle {
        self.parts.curr_handle()
    }

    /// Whether any `Addr` of the agent is still alive.
    pub fn connected(&self) -> bool {
        self.parts.connected()
    }
}

/// The actor's task. actix does not catch panics in handlers or spawned
/// futures: the task dies. This notes the panic in the lifecycle first, so
/// the agent's outcome says so, then ends the task (see [`Guarded::end`]).
struct Guarded<A: Actor<Context = Context<A>>>(Option<ContextFut<A, Context<A>>>);

impl<A: Actor<Context = Context<A>>> Future for Guarded<A> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, task: &mut std::task::Context<'_>) -> Poll<()> {
        let Some(fut) = self.0.as_mut() else {
            return Poll::Ready(());
        };
        match HookFailure::catch(|| Pin::new(&mut *fut).poll(task)) {
            Ok(Poll::Pending) => {
                // `stopping` left hooks to a driver on a path where actix
                // does not poll again by itself (the last `Addr` dropped):
                // the next poll runs the driver, with this task's waker.
                if fut.ctx().life.take_wake_request() {
                    task.waker().wake_by_ref();
                }
                return Poll::Pending;
            }
            Ok(Poll::Ready(())) => {}
            Err(panic) => fut.ctx().life.crashed(panic),
        }
        self.end();
        Poll::Ready(())
    }
}

impl<A: Actor<Context = Context<A>>> Guarded<A> {
    /// Ends the actor's task: actix's teardown (our `stopping`, polled
    /// once) where the actor did not stop by itself, then the context and
    /// the mailbox dropped with every message still in it (a consumer's
    /// jobs among them go back to their queue), and only then the outcome
    /// reported: whoever awaits it finds those messages handed back.
    fn end(&mut self) {
        let Some(fut) = self.0.as_mut() else {
            return;
        };
        if fut.alive() {
            fut.ctx().stop();
            let mut task = std::task::Context::from_waker(std::task::Waker::noop());
            if let Err(panic) = HookFailure::catch(|| Pin::new(&mut *fut).poll(&mut task)) {
                fut.ctx().life.crashed(panic);
            }
        }
        let outcome = fut.ctx().life.take_outcome();
        // Dropped where it lies (the future is large: no move).
        self.0 = None;
        if let Some((cell, outcome)) = outcome {
            cell.report(outcome);
        }
    }
}

impl<A: Actor<Context = Context<A>>> Drop for Guarded<A> {
    /// The task dropped unfinished (its arbiter went away).
    fn drop(&mut self) {
        self.end();
    }
}

impl<A: Actor<Context = Context<A>>> fmt::Debug for Context<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Context")
            .field("agent", &self.life.name)
            .field("phase", &self.life.phase)
            .field("parts", &self.parts)
            .finish()
    }
}

impl<A: Actor<Context = Context<A>>> ActorContext for Context<A> {
    fn stop(&mut self) {
        self.parts.stop()
    }

    fn terminate(&mut self) {
        self.parts.terminate()
    }

    fn state(&self) -> ActorState {
        self.parts.state()
    }
}

impl<A: Actor<Context = Context<A>>> AsyncContext<A> for Context<A> {
    fn address(&self) -> Addr<A> {
        self.parts.address()
    }

    fn spawn<F>(&mut self, fut: F) -> SpawnHandle
    where
        F: ActorFuture<A, Output = ()> + 'static,
    {
        self.parts.spawn(fut)
    }

    fn wait<F>(&mut self, fut: F)
    where
        F: ActorFuture<A, Output = ()> + 'static,
    {
        self.parts.wait(fut)
    }

    fn waiting(&self) -> bool {
        self.parts.waiting()
    }

    fn cancel_future(&mut self, handle: SpawnHandle) -> bool {
        self.parts.cancel_future(handle)
    }
}

impl<A: Actor<Context = Context<A>>> AsyncContextParts<A> for Context<A> {
    fn parts(&mut self) -> &mut ContextParts<A> {
        &mut self.parts
    }
}

impl<A, M> ToEnvelope<A, M> for Context<A>
where
    A: Actor<Context = Context<A>> + Handler<M>,
    M: Message + Send + 'static,
    M::Result: Send,
{
    fn pack(msg: M, tx: Option<OneshotSender<M::Result>>) -> Envelope<A> {
        Envelope::new(msg, tx)
    }
}
