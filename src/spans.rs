//! Spans of hooks, handler runs, sends and calls (feature `tracing`),
//! named and attributed after the OpenTelemetry messaging conventions:
//! `{operation} {destination}` as `otel.name`, `otel.kind`,
//! `messaging.system`, `messaging.destination.name`,
//! `messaging.operation.type` and `.name`, `messaging.message.id`, and
//! this crate's `microagent.*` (agent, handler, attempt). A run's span is
//! entered while the run is polled, so what it logs or traces carries it.
//!
//! A message remembers the span it was sent in ([`Origin`]); in-process, the
//! receiver's or consumer's span is that span's child. Without the feature
//! every type here is empty and every call does nothing. Spans are made at
//! `INFO`; with no subscriber interested they are never built.

use std::future::Future;

/// Which system carries a message, as `messaging.system` names it.
pub(crate) type System = &'static str;

/// Whether spans are made: only once a `tracing` subscriber was set. Not
/// before: a span is never built for nobody, and `tracing`'s fallback to
/// `log` (on when a dependency turns on its `log` feature, as actix's
/// codec does) never adds lines to what a user of `log` alone sees.
#[cfg(feature = "tracing")]
fn on() -> bool {
    tracing::dispatcher::has_been_set()
}

/// An error's kind as a span's `error.type` names it.
pub(crate) trait ErrorKind {
    /// The variant's name in snake case.
    #[cfg_attr(not(feature = "tracing"), allow(dead_code))]
    fn kind(&self) -> &'static str;
}

/// Runs `fut` inside `span`, which notes it when `fut` fails.
pub(crate) async fn traced<T, E: ErrorKind>(
    span: Span,
    fut: impl Future<Output = Result<T, E>>,
) -> Result<T, E> {
    let result = span.clone().instrument(fut).await;
    span.ended(&result);
    result
}

/// A span of this crate (nothing without the feature `tracing`).
#[derive(Clone, Debug)]
pub(crate) struct Span(#[cfg(feature = "tracing")] tracing::Span);

/// What a message carries of the span it was sent in.
#[derive(Clone, Debug)]
pub(crate) struct Origin {
    #[cfg(feature = "tracing")]
    parent: tracing::Span,
    /// The system that carried it (`messaging.system` of its handling).
    #[cfg(feature = "tracing")]
    system: System,
    /// From another process: the W3C `traceparent` of its send, when its
    /// backend carried one (feature `otel`).
    #[cfg(feature = "otel")]
    traceparent: Option<Box<str>>,
}

/// The span entered, until dropped (held for its `Drop`).
pub(crate) struct Entered<'a>(
    #[cfg(feature = "tracing")]
    #[allow(dead_code)]
    tracing::span::Entered<'a>,
    std::marker::PhantomData<&'a ()>,
);

impl Entered<'_> {
    /// Leaves the span.
    pub(crate) fn exit(self) {}
}

impl Default for Span {
    /// No span.
    fn default() -> Span {
        Span(
            #[cfg(feature = "tracing")]
            tracing::Span::none(),
        )
    }
}

impl Origin {
    /// A message that came from another process over `system`, with the
    /// W3C `traceparent` of its send when the backend carried one.
    pub(crate) fn remote(system: System, traceparent: Option<&str>) -> Origin {
        // Copied only where it is used.
        #[cfg(not(feature = "otel"))]
        let traceparent = traceparent.and(None::<&str>);
        Origin::remote_owned(system, traceparent.map(Box::from))
    }

    /// [`remote`](Origin::remote), the `traceparent` moved in.
    #[cfg_attr(not(feature = "otel"), allow(unused_variables))]
    pub(crate) fn remote_owned(system: System, traceparent: Option<Box<str>>) -> Origin {
        Origin {
            #[cfg(feature = "tracing")]
            parent: tracing::Span::none(),
            #[cfg(feature = "tracing")]
            system,
            #[cfg(feature = "otel")]
            traceparent,
        }
    }

    /// A message sent from `span` on `system`.
    #[cfg_attr(not(feature = "tracing"), allow(unused_variables))]
    pub(crate) fn from(span: &Span, system: System) -> Origin {
        Origin {
            #[cfg(feature = "tracing")]
            parent: span.0.clone(),
            #[cfg(feature = "tracing")]
            system,
            #[cfg(feature = "otel")]
            traceparent: None,
        }
    }

    /// Makes a run's span the child of the send in another process, when
    /// the message carried its trace context.
    #[cfg(feature = "tracing")]
    fn adopt(&self, span: tracing::Span) -> Span {
        #[cfg(feature = "otel")]
        if let Some(traceparent) = &self.traceparent {
            crate::otel::set_remote_parent(&span, traceparent);
        }
        Span(span)
    }
}

/// What a name of an operation on a destination looks like in `otel.name`.
#[cfg(feature = "tracing")]
struct OpName<'a>(&'a str, &'a str);

#[cfg(feature = "tracing")]
impl std::fmt::Display for OpName<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.0, self.1)
    }
}

impl Span {
    /// A lifecycle hook's run: `{stage} {hook}`.
    #[cfg_attr(not(feature = "tracing"), allow(unused_variables))]
    pub(crate) fn hook(agent: &str, stage: &str, hook: &str) -> Span {
        #[cfg(feature = "tracing")]
        if on() {
            return Span(tracing::info_span!(
                parent: None,
                "hook",
                otel.name = %OpName(stage, hook),
                otel.kind = "internal",
                microagent.agent = agent,
                microagent.stage = stage,
                microagent.hook = hook,
                otel.status_code = tracing::field::Empty,
                error.type = tracing::field::Empty,
            ));
        }
        Span::default()
    }

    /// A periodic or cron task's run: `run {task}`.
    #[cfg_attr(not(feature = "tracing"), allow(unused_variables))]
    pub(crate) fn task(agent: &str, kind: &str, task: &str) -> Span {
        #[cfg(feature = "tracing")]
        if on() {
            return Span(tracing::info_span!(
                parent: None,
                "task",
                otel.name = %OpName("run", task),
                otel.kind = "internal",
                microagent.agent = agent,
                microagent.kind = kind,
                microagent.handler = task,
                otel.status_code = tracing::field::Empty,
                error.type = tracing::field::Empty,
            ));
        }
        Span::default()
    }

    /// A receiver's run on a signal: `process {signal}`, the child of the
    /// span the signal was sent in.
    #[cfg_attr(not(feature = "tracing"), allow(unused_variables))]
    pub(crate) fn receive(agent: &str, receiver: &str, signal: &str, origin: &Origin) -> Span {
        #[cfg(feature = "tracing")]
        if on() {
            return origin.adopt(tracing::info_span!(
                parent: &origin.parent,
                "receive",
                otel.name = %OpName("process", signal),
                otel.kind = "consumer",
                messaging.system = origin.system,
                messaging.destination.name = signal,
                messaging.operation.type = "process",
                messaging.operation.name = "process",
                microagent.agent = agent,
                microagent.handler = receiver,
                otel.status_code = tracing::field::Empty,
                error.type = tracing::field::Empty,
            ));
        }
        Span::default()
    }

    /// A consumer's run on a message: `process {queue}`, the child of the
    /// span the message was sent in; `attempt` counts from 1.
    #[cfg_attr(not(feature = "tracing"), allow(unused_variables))]
    pub(crate) fn consume(
        agent: &str,
        consumer: &str,
        queue: &str,
        origin: &Origin,
        id: Option<u64>,
        attempt: u32,
    ) -> Span {
        #[cfg(feature = "tracing")]
        if on() {
            return origin.adopt(tracing::info_span!(
                parent: &origin.parent,
                "consume",
                otel.name = %OpName("process", queue),
                otel.kind = "consumer",
                messaging.system = origin.system,
                messaging.destination.name = queue,
                messaging.operation.type = "process",
                messaging.operation.name = "process",
                messaging.message.id = id,
                microagent.agent = agent,
                microagent.handler = consumer,
                microagent.attempt = attempt,
                otel.status_code = tracing::field::Empty,
                error.type = tracing::field::Empty,
            ));
        }
        Span::default()
    }

    /// Sending a message to a queue or a signal to its receivers:
    /// `send {destination}`, a child of the span it is sent from.
    #[cfg_attr(not(feature = "tracing"), allow(unused_variables))]
    pub(crate) fn send(system: System, destination: &str) -> Span {
        #[cfg(feature = "tracing")]
        if on() {
            return Span(tracing::info_span!(
                "send",
                otel.name = %OpName("send", destination),
                otel.kind = "producer",
                messaging.system = system,
                messaging.destination.name = destination,
                messaging.operation.type = "send",
                messaging.operation.name = "send",
                messaging.message.id = tracing::field::Empty,
                otel.status_code = tracing::field::Empty,
                error.type = tracing::field::Empty,
            ));
        }
        Span::default()
    }

    /// An RPC call of a signal: `call {signal}`, covering the whole call
    /// (the answers collected); its receivers' runs are its children.
    #[cfg_attr(not(feature = "tracing"), allow(unused_variables))]
    pub(crate) fn call(system: System, signal: &str) -> Span {
        #[cfg(feature = "tracing")]
        if on() {
            return Span(tracing::info_span!(
                "call",
                otel.name = %OpName("call", signal),
                otel.kind = "producer",
                messaging.system = system,
                messaging.destination.name = signal,
                messaging.operation.type = "send",
                messaging.operation.name = "call",
                microagent.answers = tracing::field::Empty,
                otel.status_code = tracing::field::Empty,
                error.type = tracing::field::Empty,
            ));
        }
        Span::default()
    }

    /// The span the caller is in (none without the feature).
    pub(crate) fn current() -> Span {
        #[cfg(feature = "tracing")]
        if on() {
            return Span(tracing::Span::current());
        }
        Span::default()
    }

    /// The span while `f` runs (the run of a sync handler).
    pub(crate) fn enter(&self) -> Entered<'_> {
        Entered(
            #[cfg(feature = "tracing")]
            self.0.enter(),
            std::marker::PhantomData,
        )
    }

    /// Runs `fut` inside the span (each of its polls).
    pub(crate) fn instrument<F: Future>(self, fut: F) -> impl Future<Output = F::Output> {
        #[cfg(feature = "tracing")]
        return tracing::Instrument::instrument(fut, self.0);
        #[cfg(not(feature = "tracing"))]
        fut
    }

    /// Records that what the span covers failed (`otel.status_code` =
    /// `ERROR`, `error.type` = `kind`).
    #[cfg_attr(not(feature = "tracing"), allow(unused_variables))]
    pub(crate) fn failed(&self, kind: &str) {
        #[cfg(feature = "tracing")]
        {
            self.0.record("otel.status_code", "ERROR");
            self.0.record("error.type", kind);
        }
    }

    /// Records what the span covered ended with: a failure, if it failed.
    #[cfg_attr(not(feature = "tracing"), allow(unused_variables))]
    pub(crate) fn ended<T, E: ErrorKind>(&self, result: &Result<T, E>) {
        #[cfg(feature = "tracing")]
        if let Err(e) = result {
            self.failed(e.kind());
        }
    }

    /// Records a message's id (a queue's send).
    #[cfg_attr(not(feature = "tracing"), allow(unused_variables))]
    pub(crate) fn message_id(&self, id: u64) {
        #[cfg(feature = "tracing")]
        self.0.record("messaging.message.id", id);
    }

    /// The W3C `traceparent` of this span, for a message sent in it to
    /// carry (feature `otel`, with an OpenTelemetry layer that records the
    /// span); `None` otherwise.
    pub(crate) fn traceparent(&self) -> Option<String> {
        #[cfg(feature = "otel")]
        if on() {
            return crate::otel::traceparent(&self.0);
        }
        None
    }

    /// Records how many answered a call.
    #[cfg_attr(not(feature = "tracing"), allow(unused_variables))]
    pub(crate) fn answers(&self, count: usize) {
        #[cfg(feature = "tracing")]
        self.0.record("microagent.answers", count);
    }
}
