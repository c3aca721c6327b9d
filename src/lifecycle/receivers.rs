//! Receivers: subscribing an agent's `#[receiver(...)]` methods to the bus
//! between its `pre_start` and `post_start` hooks, running them on a
//! delivery (exclusively, like a message handler), unsubscribing when its
//! stop begins.

use std::sync::Arc;

use actix::AsyncContext;

use super::cell::{BadRun, Handler, Run};
use super::declare::Call;
use super::declare::Work;
use super::driver::begin_work;
use super::meters;
use super::Context;
use crate::agent::Agent;
use crate::bus::{Backlog, Bus, Deliver, DeliverFn};
use crate::error::{HookFailure, HookResult};
use crate::phase::Phase;
use crate::spans::Span;
use crate::LOG_TARGET;

/// Subscribes the agent's receivers, if it has any.
pub(super) fn subscribe<A: Agent>(ctx: &mut Context<A>) {
    let receivers = A::HOOKS.receivers;
    if receivers.is_empty() {
        return;
    }
    let agent = ctx.life.name;
    let bus = Bus::current();
    // What the agent buffers from Redis is bounded; one buffer for all its
    // receivers.
    let backlog = bus.buffer_bound().map(|bound| Backlog::new(agent, bound));
    let entries = receivers
        .iter()
        .enumerate()
        .map(|(index, receiver)| {
            // The bus holds the agent's address while it is subscribed: an
            // agent reachable through the bus lives until it is stopped
            // (its stop drops the subscription), not until its last `Addr`
            // is dropped.
            let addr = ctx.address();
            let (backlog, cell) = (backlog.clone(), ctx.life.cell.clone());
            let deliver: DeliverFn = Box::new(move |delivery| {
                if !addr.connected() {
                    return false;
                }
                let ticket = match &backlog {
                    None => None,
                    Some(backlog) => match backlog.admit(delivery.payload.wire_len()) {
                        Some(ticket) => Some(ticket),
                        None => {
                            // Dropped, and with it any RPC reply: that
                            // caller gets no answer from this receiver.
                            cell.count_dropped(index);
                            return false;
                        }
                    },
                };
                addr.do_send(Deliver {
                    receiver: index,
                    delivery,
                    ticket,
                });
                true
            });
            let responder: Arc<str> = format!("{agent}.{}", receiver.name).into();
            (receiver.signal, responder, deliver)
        })
        .collect();
    let (subscription, confirmation) = bus.subscribe(entries);
    ctx.life.extras().subscription = Some(subscription);
    // On Redis, post_start waits until Redis has confirmed them.
    ctx.life.extras().confirming = confirmation;
    log::debug!(target: LOG_TARGET, "agent `{agent}`: {} receiver(s) subscribed", receivers.len());
}

/// `Handler<Deliver>` of every agent: runs the receiver.
pub fn deliver<A: Agent>(act: &mut A, ctx: &mut Context<A>, msg: Deliver) {
    let Deliver {
        receiver,
        delivery,
        ticket,
    } = msg;
    // Taken up: out of the agent's bus buffer.
    drop(ticket);
    let Some(declared) = A::HOOKS.receivers.get(receiver) else {
        return;
    };
    if ctx.life.phase != Phase::Running || ctx.life.cell.stop_asked() {
        // Stopping, or asked to stop (the request may wait behind these in
        // the mailbox): no more receiving, so that the stop comes within
        // its deadline. Dropping the delivery tells a caller that this
        // receiver will not answer.
        ctx.life.cell.count_dropped(receiver);
        log::debug!(
            target: LOG_TARGET,
            "agent `{}`: receiver `{}` drops `{}`: the agent is stopping",
            ctx.life.name,
            declared.name,
            declared.signal
        );
        return;
    }
    meters::run_begins(ctx);
    let span = Span::receive(
        ctx.life.name,
        declared.name,
        declared.signal,
        &delivery.origin,
    );
    ctx.life.run_span = span.clone();
    match declared.call {
        Call::Sync(f) => {
            let entered = span.enter();
            let result = HookFailure::catch_result(|| f(act, ctx, delivery));
            entered.exit();
            run_ended(ctx, receiver, result);
        }
        Call::Async(f) => match HookFailure::catch(|| f(act, ctx, delivery)) {
            Ok(fut) => begin_work(ctx, Work::Receiver(receiver), fut),
            Err(failure) => run_ended(ctx, receiver, Err(failure)),
        },
    }
}

/// Counts a receiver's run, and logs its failure (its answer was
/// `null`); the agent goes on.
pub(super) fn run_ended<A: Agent>(ctx: &mut Context<A>, receiver: usize, result: HookResult) {
    meters::run_ended(ctx, Run::Receiver(receiver));
    ctx.life.close_span(&result);
    if result.is_ok() {
        ctx.life.cell.count_ok(Run::Receiver(receiver));
    }
    if let Err(cause) = result {
        ctx.life
            .cell
            .count_bad_handler_run(Handler::Receiver(receiver), BadRun::of(&cause));
        let declared = &A::HOOKS.receivers[receiver];
        log::error!(
            target: LOG_TARGET,
            "agent `{}`: receiver `{}` of signal `{}` failed: {cause}",
            ctx.life.name,
            declared.name,
            declared.signal
        );
    }
}
