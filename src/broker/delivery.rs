//! The delivery semantics every queue backend shares, naming none: what a
//! run's outcome means for its message ([`Verdict`]: done, handed back,
//! retried after a backoff, dead-lettered), the backoff, and the patience
//! with a backend that fails under a settlement ([`persist`]).

use std::future::Future;
use std::pin::pin;
use std::time::Duration;

use futures_util::future::{self, Either};
use tokio::sync::oneshot;

use super::error::BrokerError;
use super::job::{ConsumerOptions, Outcome};
use crate::LOG_TARGET;

/// The longest pause between two attempts to reach a broker's server.
pub(crate) const RECONNECT_MAX: Duration = Duration::from_secs(5);

/// The first pause after a failure to reach a broker's server (doubling up
/// to [`RECONNECT_MAX`]).
pub(crate) const FIRST_PAUSE: Duration = Duration::from_millis(50);

/// What to do with a message once its run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Handled: gone from the queue.
    Ack,
    /// Not handled (its agent was stopping): back as it was, attempts
    /// unchanged.
    Release,
    /// Failed: again after `pause`, as attempt `attempts + 1`.
    Retry {
        attempts: u32,
        pause: Duration,
        reason: String,
    },
    /// Failed its last attempt, or does not decode: to the dead letters.
    Dead { reason: String, attempts: u32 },
}

/// Resolves `work` unless `stopped` resolves first (`None`).
pub(crate) async fn unless<F: Future>(
    stopped: &mut oneshot::Receiver<()>,
    work: F,
) -> Option<F::Output> {
    match future::select(stopped, pin!(work)).await {
        Either::Left(_) => None,
        Either::Right((output, _)) => Some(output),
    }
}

/// The pause before retry number `attempt` (1 for the first retry).
fn backoff(options: &ConsumerOptions, attempt: u32) -> Duration {
    let doublings = attempt.saturating_sub(1).min(16);
    options.backoff.saturating_mul(1 << doublings)
}

/// Decides what the run's outcome means, logging failures: `consumer` is
/// its name, its queue and its options.
pub(crate) fn verdict(
    consumer: (&str, &str, ConsumerOptions),
    attempts_before: u32,
    outcome: Outcome,
) -> Verdict {
    let (name, queue, options) = consumer;
    let attempts = attempts_before + 1;
    match outcome {
        Outcome::Done => Verdict::Ack,
        Outcome::Released => Verdict::Release,
        Outcome::Poison(reason) => {
            log::error!(
                target: LOG_TARGET,
                "consumer `{name}`: a message of queue `{queue}` does not decode; dead-lettered: {reason}"
            );
            Verdict::Dead { reason, attempts }
        }
        Outcome::Failed(reason) if attempts >= options.attempts => {
            log::error!(
                target: LOG_TARGET,
                "consumer `{name}`: a message of queue `{queue}` failed {attempts} attempt(s); dead-lettered: {reason}"
            );
            Verdict::Dead { reason, attempts }
        }
        Outcome::Failed(reason) => {
            let pause = backoff(&options, attempts);
            log::warn!(
                target: LOG_TARGET,
                "consumer `{name}`: attempt {attempts} of {} at a message of queue `{queue}` failed: {reason}; retrying in {pause:?}",
                options.attempts
            );
            Verdict::Retry {
                attempts,
                pause,
                reason,
            }
        }
    }
}

/// Retries a backend operation until it succeeds, pausing longer each
/// time: what settles a message must not be lost to a passing failure.
#[cfg_attr(not(any(feature = "redis", feature = "amqp")), allow(dead_code))]
pub(crate) async fn persist<F, Fut>(what: &str, mut op: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), BrokerError>>,
{
    let mut pause = FIRST_PAUSE;
    while let Err(e) = op().await {
        log::warn!(target: LOG_TARGET, "broker: {what} failed: {e}; retrying in {pause:?}");
        actix_rt::time::sleep(pause).await;
        pause = (pause * 2).min(RECONNECT_MAX);
    }
}
