//! The per-agent lifecycle state kept in the agent's [`Context`](super::Context),
//! and the bookkeeping on it: hook results, failures, the outcome.

use std::sync::Arc;

use super::cell::{AgentCell, Outcome};
use super::declare::{HookFuture, Work};
use super::supervisor::Servers;
use super::tasks::Timers;
use crate::broker::BrokerError;
use crate::broker::Consuming;
use crate::bus::{BusError, Confirmation, Subscription};
use crate::error::{AgentError, HookError, HookFailure, HookResult, Stage};
use crate::phase::Phase;
use crate::registry::Registration;
use crate::LOG_TARGET;

/// Per-agent lifecycle state. It lives in the actor's task, so it is kept
/// small: what only some agents use (servers, tasks, receivers, consumers)
/// or only failures need is in [`Extras`], allocated on first use.
pub(crate) struct Lifecycle<A: actix::Actor> {
    pub(super) name: &'static str,
    pub(super) phase: Phase,
    pub(super) stage: Stage,
    pub(super) stop_requested: bool,
    /// The next hook of `stage` to run.
    pub(super) next: usize,
    /// The async hook or task run that has the agent now.
    pub(super) inflight: Option<(Work, HookFuture<A>)>,
    /// Set by `stopping` when it leaves work for a driver on a path where
    /// actix does not poll the actor again by itself: the actor's task
    /// future wakes the task once the poll returns.
    pub(super) wake_requested: bool,
    /// When the hook running now started, if hooks are timed (its
    /// duration is a metric).
    #[cfg(feature = "metrics")]
    pub(super) hook_started: Option<quanta::Instant>,
    /// The span of the hook or handler run in progress (feature
    /// `tracing`), entered while it is polled.
    pub(super) run_span: crate::spans::Span,
    pub(super) cell: Arc<AgentCell<A>>,
    registration: Option<Registration>,
    extras: Option<Box<Extras>>,
    /// The outcome once the lifecycle ended, until the actor's task reports
    /// it (after its mailbox is gone: see `take_outcome`).
    outcome: Option<Outcome>,
}

/// The lifecycle state of what an agent declares beyond hooks, and of its
/// failures.
#[derive(Default)]
pub(super) struct Extras {
    /// The agent's servers, once started.
    pub(super) servers: Option<Servers>,
    /// Whether the servers were told to shut down.
    pub(super) servers_shut: bool,
    /// The schedules of its periodic and cron tasks, once started.
    pub(super) timers: Option<Timers>,
    /// Its receivers' subscription to the bus, while it receives.
    pub(super) subscription: Option<Subscription>,
    /// Its consumers, while they take messages.
    pub(super) consuming: Vec<Consuming>,
    /// Redis confirming that subscription, before `post_start`.
    pub(super) confirming: Option<Confirmation>,
    /// Its handlers' duration histograms, from their first run.
    #[cfg(feature = "metrics")]
    pub(super) meters: Option<Box<super::meters::Meters>>,
    /// Why the subscription failed, if it did.
    subscribe_error: Option<Box<BusError>>,
    /// The consumer the broker refused, and why, if it did.
    consume_error: Option<(&'static str, Box<BrokerError>)>,
    /// The panic that killed the actor's task, if one did.
    crash: Option<HookFailure>,
    failures: Vec<HookError>,
}

impl<A: actix::Actor> Lifecycle<A> {
    pub(crate) fn new(
        name: &'static str,
        cell: Arc<AgentCell<A>>,
        registration: Option<Registration>,
    ) -> Self {
        Lifecycle {
            name,
            phase: Phase::Starting,
            stage: Stage::PreStart,
            stop_requested: false,
            next: 0,
            inflight: None,
            run_span: Default::default(),
            wake_requested: false,
            #[cfg(feature = "metrics")]
            hook_started: None,
            cell,
            registration,
            extras: None,
            outcome: None,
        }
    }

    /// The extras, made on first use.
    pub(super) fn extras(&mut self) -> &mut Extras {
        self.extras.get_or_insert_with(Box::default)
    }

    /// The extras, if any were made.
    pub(super) fn extras_mut(&mut self) -> Option<&mut Extras> {
        self.extras.as_deref_mut()
    }

    /// The shared cell, and the extras if any were made (both at once).
    pub(super) fn cell_and_extras(&mut self) -> (&Arc<AgentCell<A>>, Option<&mut Extras>) {
        (&self.cell, self.extras.as_deref_mut())
    }

    /// The task schedules, once started.
    pub(super) fn timers(&self) -> Option<&Timers> {
        self.extras.as_deref().and_then(|e| e.timers.as_ref())
    }

    /// The hook or handler run in progress ended with `result`: its span
    /// notes a failure and closes.
    pub(super) fn close_span(&mut self, result: &HookResult) {
        let span = std::mem::take(&mut self.run_span);
        if let Err(cause) = result {
            span.failed(super::cell::BadRun::of(cause).as_str());
        }
    }

    /// Notes a lifecycle hook's result; a failed start hook stops the agent.
    pub(super) fn record(&mut self, stage: Stage, hook: &'static str, result: HookResult) {
        self.cell.set_doing(None);
        self.close_span(&result);
        #[cfg(feature = "metrics")]
        if let Some(started) = self.hook_started.take() {
            crate::metrics::hook_ran(self.name, stage, hook, started.elapsed());
        }
        match result {
            Ok(()) => {
                log::debug!(target: LOG_TARGET, "agent `{}`: {stage} hook `{hook}` done", self.name)
            }
            Err(cause) => {
                self.fail(stage, hook, cause);
                // pre_stop failures do not keep the other pre_stop hooks from running.
                if stage != Stage::PreStop {
                    self.stop_requested = true;
                }
            }
        }
    }

    /// Logs a hook's or a server's failure and keeps it for the outcome.
    pub(super) fn fail(&mut self, stage: Stage, hook: &'static str, cause: HookFailure) {
        let error = HookError {
            agent: self.name,
            stage,
            hook,
            cause,
        };
        log::error!(target: LOG_TARGET, "{error}");
        self.extras().failures.push(error);
    }

    /// Notes that the receivers could not subscribe: the agent stops.
    pub(super) fn subscribe_failed(&mut self, error: BusError) {
        log::error!(
            target: LOG_TARGET,
            "agent `{}`: its receivers could not subscribe: {error}",
            self.name
        );
        self.extras().subscribe_error = Some(Box::new(error));
        self.stop_requested = true;
    }

    /// Notes that the broker refused consumer `consumer` for good: the
    /// agent stops.
    pub(super) fn consume_failed(&mut self, consumer: &'static str, error: BrokerError) {
        log::error!(
            target: LOG_TARGET,
            "agent `{}`: its consumer `{consumer}` could not start: {error}",
            self.name
        );
        self.extras().consume_error = Some((consumer, Box::new(error)));
        self.stop_requested = true;
    }

    /// Notes that a handler or spawned future panicked (the task is dying).
    pub(super) fn crashed(&mut self, panic: HookFailure) {
        log::error!(
            target: LOG_TARGET,
            "agent `{}` crashed: a message handler or spawned future {panic}",
            self.name
        );
        self.extras().crash = Some(panic);
    }

    /// The outcome of a lifecycle that ends now, with `otherwise` when no
    /// crash and no failure happened.
    fn outcome(&mut self, otherwise: Result<(), AgentError>) -> Result<(), AgentError> {
        let Some(extras) = self.extras.as_deref_mut() else {
            return otherwise;
        };
        let failures = std::mem::take(&mut extras.failures);
        let refused = extras.consume_error.take();
        match (extras.crash.take(), extras.subscribe_error.take(), refused) {
            (Some(panic), _, _) => Err(AgentError::Crashed {
                agent: self.name,
                panic,
                failures,
            }),
            (None, Some(error), _) => Err(AgentError::Subscribe {
                agent: self.name,
                error,
                failures,
            }),
            (None, None, Some((consumer, error))) => Err(AgentError::Consume {
                agent: self.name,
                consumer,
                error,
                failures,
            }),
            (None, None, None) if failures.is_empty() => otherwise,
            (None, None, None) => Err(AgentError::Failed {
                agent: self.name,
                failures,
            }),
        }
    }

    pub(super) fn set_phase(&mut self, phase: Phase) {
        self.phase = phase;
        self.cell.set_phase(phase);
        if phase == Phase::Running {
            if let Some(registration) = &self.registration {
                registration.now_running();
            }
        }
    }

    pub(super) fn enter_pre_stop(&mut self) {
        log::info!(target: LOG_TARGET, "agent `{}`: stopping", self.name);
        // It stops receiving before its pre_stop hooks run.
        if let Some(extras) = self.extras_mut() {
            extras.subscription = None;
            extras.consuming.clear();
            extras.confirming = None;
        }
        self.set_phase(Phase::Stopping);
        self.stage = Stage::PreStop;
        self.next = 0;
        self.stop_requested = false;
    }

    /// Ends the lifecycle and reports its outcome.
    pub(super) fn finish(&mut self) {
        if self.phase == Phase::Stopped {
            return;
        }
        self.set_phase(Phase::Stopped);
        let outcome = self.outcome(Ok(()));
        match &outcome {
            Ok(()) => log::info!(target: LOG_TARGET, "agent `{}`: stopped", self.name),
            Err(e) => log::warn!(target: LOG_TARGET, "agent `{}`: stopped: {e}", self.name),
        }
        // Reported by the actor's task once its mailbox is gone.
        self.outcome = Some(outcome.map_err(Box::new));
    }

    /// The outcome of a lifecycle that ended, with the cell to report it
    /// to, for the actor's task: it reports it once it dropped the context
    /// and the mailbox, so that the messages left in there (a consumer's
    /// jobs) were handed back first.
    pub(super) fn take_outcome(&mut self) -> Option<(Arc<AgentCell<A>>, Outcome)> {
        let outcome = self.outcome.take()?;
        Some((self.cell.clone(), outcome))
    }

    /// Ends a lifecycle that was cut short (`ctx.terminate()`, or the actor
    /// torn down with its arbiter) and reports it.
    pub(super) fn abort(&mut self) {
        if self.phase == Phase::Stopped {
            return;
        }
        log::warn!(
            target: LOG_TARGET,
            "agent `{}`: lifecycle cut short during {:?}; remaining hooks skipped",
            self.name,
            self.phase
        );
        self.set_phase(Phase::Stopped);
        let name = self.name;
        if let Some(servers) = self.extras_mut().and_then(|e| e.servers.as_mut()) {
            servers.shut_down(name);
        }
        let outcome = self.outcome(Err(AgentError::Aborted { agent: self.name }));
        self.outcome = Some(outcome.map_err(Box::new));
    }

    /// Whether an async hook or a task run has the agent.
    pub(super) fn is_busy(&self) -> bool {
        self.inflight.is_some()
    }

    /// Whether the task must wake itself after this poll (see
    /// `wake_requested`); clears the request.
    pub(super) fn take_wake_request(&mut self) -> bool {
        std::mem::take(&mut self.wake_requested)
    }
}

impl<A: actix::Actor> Drop for Lifecycle<A> {
    /// A lifecycle dropped unended is cut short; an outcome the actor's
    /// task did not take is reported all the same, so that no handle waits
    /// forever (nobody listening is fine: it was logged).
    fn drop(&mut self) {
        self.abort();
        if let Some(outcome) = self.outcome.take() {
            self.cell.report(outcome);
        }
    }
}
