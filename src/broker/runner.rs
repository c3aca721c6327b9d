//! Running one consumer: take messages while fewer than its prefetch are
//! in flight, hand each to the agent, and settle it the way its run ended
//! (done, retried after a backoff, dead-lettered, or handed back).

use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::{self, Either};
use tokio::sync::{oneshot, OwnedSemaphorePermit, Semaphore};

use super::handle::Backend;
use super::job::{ConsumerOptions, Job, Outcome, Settle};
use super::memory::Taken;
use crate::LOG_TARGET;

/// Hands a job to the consumer's agent; `false` once the agent is gone.
pub(crate) type JobFn = Box<dyn Fn(Job) -> bool + Send + Sync>;

/// A running consumer; dropping it stops taking messages (those in flight
/// are still settled).
#[derive(Debug)]
pub(crate) struct Consuming {
    _stop: oneshot::Sender<()>,
}

/// Starts the consumer's loop on the System's arbiter.
pub(super) fn start(
    backend: Backend,
    queue: &'static str,
    consumer: Arc<str>,
    options: ConsumerOptions,
    deliver: JobFn,
) -> Consuming {
    let (stop, stopped) = oneshot::channel();
    let run = run(backend, queue, consumer, options, deliver, stopped);
    actix_rt::System::current().arbiter().spawn(run);
    Consuming { _stop: stop }
}

/// Resolves `work` unless `stopped` resolves first (`None`).
async fn unless<F: Future>(stopped: &mut oneshot::Receiver<()>, work: F) -> Option<F::Output> {
    match future::select(stopped, pin!(work)).await {
        Either::Left(_) => None,
        Either::Right((output, _)) => Some(output),
    }
}

async fn run(
    backend: Backend,
    queue: &'static str,
    consumer: Arc<str>,
    options: ConsumerOptions,
    deliver: JobFn,
    mut stopped: oneshot::Receiver<()>,
) {
    let in_flight = Arc::new(Semaphore::new(options.prefetch.max(1) as usize));
    log::debug!(target: LOG_TARGET, "consumer `{consumer}` takes from queue `{queue}`");
    loop {
        let Some(Ok(permit)) = unless(&mut stopped, in_flight.clone().acquire_owned()).await else {
            break;
        };
        let Some(taken) = unless(&mut stopped, take(&backend, queue)).await else {
            break;
        };
        let (tx, outcome) = oneshot::channel();
        let job = Job {
            body: taken.body.clone(),
            settle: Settle::new(tx),
        };
        if !deliver(job) {
            put_back(&backend, queue, taken);
            break;
        }
        let settle = settle(
            backend.clone(),
            queue,
            consumer.clone(),
            options,
            taken,
            outcome,
            permit,
        );
        actix_rt::spawn(settle);
    }
    log::debug!(target: LOG_TARGET, "consumer `{consumer}` stopped taking from queue `{queue}`");
}

async fn take(backend: &Backend, queue: &str) -> Taken {
    match backend {
        Backend::Memory(memory) => memory.take(queue).await,
    }
}

fn put_back(backend: &Backend, queue: &str, taken: Taken) {
    match backend {
        Backend::Memory(memory) => memory.put_back(queue, taken),
    }
}

/// The pause before retry number `attempt` (1 for the first retry).
fn backoff(options: &ConsumerOptions, attempt: u32) -> Duration {
    let doublings = attempt.saturating_sub(1).min(16);
    options.backoff.saturating_mul(1 << doublings)
}

async fn settle(
    backend: Backend,
    queue: &'static str,
    consumer: Arc<str>,
    options: ConsumerOptions,
    mut taken: Taken,
    outcome: oneshot::Receiver<Outcome>,
    in_flight: OwnedSemaphorePermit,
) {
    let attempts = taken.attempts + 1;
    let outcome = outcome.await;
    // Settled: the consumer may take the next message (a retry waits for
    // its backoff without holding up the others).
    drop(in_flight);
    match outcome {
        Ok(Outcome::Done) => {}
        // Not handled (its agent was stopping): back to the queue as it was.
        Err(_) => put_back(&backend, queue, taken),
        Ok(Outcome::Poison(reason)) => {
            log::error!(
                target: LOG_TARGET,
                "consumer `{consumer}`: a message of queue `{queue}` does not decode; dead-lettered: {reason}"
            );
            dead(&backend, queue, taken, reason, attempts);
        }
        Ok(Outcome::Failed(reason)) if attempts >= options.attempts => {
            log::error!(
                target: LOG_TARGET,
                "consumer `{consumer}`: a message of queue `{queue}` failed {attempts} attempt(s); dead-lettered: {reason}"
            );
            dead(&backend, queue, taken, reason, attempts);
        }
        Ok(Outcome::Failed(reason)) => {
            let pause = backoff(&options, attempts);
            log::warn!(
                target: LOG_TARGET,
                "consumer `{consumer}`: attempt {attempts} of {} at a message of queue `{queue}` failed: {reason}; retrying in {pause:?}",
                options.attempts
            );
            actix_rt::time::sleep(pause).await;
            taken.attempts = attempts;
            put_back(&backend, queue, taken);
        }
    }
}

fn dead(backend: &Backend, queue: &str, taken: Taken, reason: String, attempts: u32) {
    match backend {
        Backend::Memory(memory) => memory.dead(queue, taken, reason, attempts),
    }
}
