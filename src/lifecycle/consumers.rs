//! Consumers: taking an agent's `#[consumer(...)]` queues from the broker
//! between its `pre_start` and `post_start` hooks, running each job
//! (exclusively, like a message handler), stopping when its stop begins.

use std::sync::Arc;

use actix::AsyncContext;

use super::cell::{BadRun, Handler, Run};
use super::declare::Call;
use super::declare::Work;
use super::driver::begin_work;
use super::meters;
use super::Context;
use crate::agent::Agent;
use crate::broker::{Broker, Consume, JobFn};
use crate::error::{HookFailure, HookResult};
use crate::phase::Phase;
use crate::LOG_TARGET;

/// Starts the agent's consumers, if it has any.
pub(super) fn start<A: Agent>(ctx: &mut Context<A>) {
    let consumers = A::HOOKS.consumers;
    if consumers.is_empty() {
        return;
    }
    let broker = Broker::current();
    let agent = ctx.life.name;
    for (index, consumer) in consumers.iter().enumerate() {
        // Like a subscription, the broker holds the agent's address while
        // it consumes.
        let addr = ctx.address();
        let deliver: JobFn = Box::new(move |job, more| {
            if !addr.connected() {
                // Dropped unsettled: back to the queue.
                return false;
            }
            addr.do_send(Consume {
                consumer: index,
                job,
                more,
            });
            true
        });
        let name: Arc<str> = format!("{agent}.{}", consumer.name).into();
        // A plain `fn` consumer runs a batch in one go; an `async fn` one
        // owns the agent for each run.
        let batches = matches!(consumer.call, Call::Sync(_));
        let consuming = broker.consume(
            consumer.queue,
            consumer.binding,
            name,
            consumer.options,
            batches,
            deliver,
        );
        ctx.life.extras().consuming.push(consuming);
    }
    log::debug!(target: LOG_TARGET, "agent `{agent}`: {} consumer(s) started", consumers.len());
}

/// `Handler<Consume>` of every agent: runs the consumer on each job.
pub fn consume<A: Agent>(act: &mut A, ctx: &mut Context<A>, msg: Consume) {
    let Consume {
        consumer,
        job,
        more,
    } = msg;
    let Some(declared) = A::HOOKS.consumers.get(consumer) else {
        return;
    };
    for job in std::iter::once(job).chain(more) {
        if ctx.life.phase != Phase::Running {
            log::debug!(
                target: LOG_TARGET,
                "agent `{}`: consumer `{}` hands messages of `{}` back: the agent is stopping",
                ctx.life.name,
                declared.name,
                declared.queue
            );
            // Dropping the jobs unsettled hands their messages back to the
            // queue, with no attempt counted.
            return;
        }
        meters::run_begins(ctx);
        let span = job.span(ctx.life.name, declared.name, declared.queue);
        ctx.life.run_span = span.clone();
        match declared.call {
            Call::Sync(f) => {
                let entered = span.enter();
                let result = HookFailure::catch_result(|| f(act, ctx, job));
                entered.exit();
                run_ended(ctx, consumer, result);
            }
            Call::Async(f) => {
                match HookFailure::catch(|| f(act, ctx, job)) {
                    Ok(fut) => begin_work(ctx, Work::Consumer(consumer), fut),
                    Err(failure) => run_ended(ctx, consumer, Err(failure)),
                }
                // An async run owns the agent: it is never given a batch,
                // and anything that came along goes back rather than wait.
                return;
            }
        }
    }
}

/// Counts a consumer run, and logs one that failed (the broker retries
/// or dead-letters the message); the agent goes on.
pub(super) fn run_ended<A: Agent>(ctx: &mut Context<A>, consumer: usize, result: HookResult) {
    meters::run_ended(ctx, Run::Consumer(consumer));
    ctx.life.close_span(&result);
    if result.is_ok() {
        ctx.life.cell.count_ok(Run::Consumer(consumer));
    }
    if let Err(cause) = result {
        ctx.life
            .cell
            .count_bad_handler_run(Handler::Consumer(consumer), BadRun::of(&cause));
        // The broker logs the attempt once, with what becomes of the
        // message: a WARN for a retry, an ERROR for a dead letter.
        let declared = &A::HOOKS.consumers[consumer];
        log::debug!(
            target: LOG_TARGET,
            "agent `{}`: consumer `{}` of queue `{}` failed: {cause}",
            ctx.life.name,
            declared.name,
            declared.queue
        );
    }
}
