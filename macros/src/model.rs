//! The typed model of what a `#[microagent::hooks]` block declares: one
//! [`Declaration`] per marked method, with an enum of kinds.

use proc_macro2::Span;
use syn::{Ident, LitStr};

/// One marked method of a hooks block.
pub(crate) struct Declaration {
    /// The method's name.
    pub(crate) method: Ident,
    /// What it declares.
    pub(crate) kind: Kind,
    /// What its signature looks like (checked by `valid`).
    pub(crate) signature: Signature,
}

/// The kinds of declaration. The bus and the brokers add theirs here
/// (receivers, consumers) and one branch in `expand`.
pub(crate) enum Kind {
    /// A lifecycle hook, under one or more labels.
    Hook(Vec<Label>),
    /// A server hook, with its restart policy if it declares one.
    Server(Option<Restart>),
    /// A periodic or cron task.
    Task(TaskSpec),
    /// A receiver of a bus signal.
    Receiver(ReceiverSpec),
    /// A consumer of a queue.
    Consumer(ConsumerSpec),
}

impl Declaration {
    /// Whether the method is declared under lifecycle label `label`.
    pub(crate) fn has_label(&self, label: Label) -> bool {
        matches!(&self.kind, Kind::Hook(labels) if labels.contains(&label))
    }

    /// The time a run may take, for the kinds that have one.
    pub(crate) fn timeout(&self) -> Option<f64> {
        match &self.kind {
            Kind::Task(spec) => Some(spec.timeout),
            Kind::Receiver(spec) => Some(spec.timeout),
            Kind::Consumer(spec) => Some(spec.timeout),
            Kind::Hook(_) | Kind::Server(_) => None,
        }
    }
}

/// The labels `#[on(...)]` accepts.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Label {
    PreStart,
    PostStart,
    PreStop,
    Server,
}

impl Label {
    pub(crate) const ALL: [Label; 4] = [
        Label::PreStart,
        Label::PostStart,
        Label::PreStop,
        Label::Server,
    ];

    /// The labels of lifecycle hooks, in the order they run.
    pub(crate) const LIFECYCLE: [Label; 3] = [Label::PreStart, Label::PostStart, Label::PreStop];

    pub(crate) fn name(self) -> &'static str {
        match self {
            Label::PreStart => "pre_start",
            Label::PostStart => "post_start",
            Label::PreStop => "pre_stop",
            Label::Server => "server",
        }
    }
}

/// A server's restart policy, as declared (seconds).
pub(crate) struct Restart {
    pub(crate) restarts: u32,
    pub(crate) within: f64,
    pub(crate) backoff: f64,
}

/// A periodic or cron task, as declared (seconds).
pub(crate) struct TaskSpec {
    pub(crate) timeout: f64,
    pub(crate) schedule: Schedule,
}

pub(crate) enum Schedule {
    Every {
        period: Seconds,
        start_after: Seconds,
    },
    Cron {
        expression: LitStr,
        zone: ZoneSpec,
    },
}

/// The time zone of a cron task, as declared.
pub(crate) enum ZoneSpec {
    Utc,
    Local,
    /// An IANA name, checked against the time zone database (made only
    /// with the `tz` feature).
    #[cfg_attr(not(feature = "tz"), allow(dead_code))]
    Named(LitStr),
}

/// A number of seconds in a declaration: a literal, checked when the
/// macro runs, or a constant expression (`PERIOD`, `60 * 5`), checked
/// when the compiler evaluates it.
pub(crate) enum Seconds {
    Literal(f64),
    Const {
        expr: Box<syn::Expr>,
        /// The option's name, for the message.
        key: String,
        /// Whether 0 is allowed.
        zero_ok: bool,
    },
}

/// A receiver, as declared and checked.
pub(crate) struct ReceiverSpec {
    /// The signal's type.
    pub(crate) signal: syn::Type,
    /// Seconds a run may take.
    pub(crate) timeout: f64,
}

/// A consumer, as declared and checked.
pub(crate) struct ConsumerSpec {
    /// The message's type (it names the queue).
    pub(crate) queue: syn::Type,
    /// Seconds a run may take.
    pub(crate) timeout: f64,
    /// Attempts before the message is dead-lettered.
    pub(crate) attempts: u32,
    /// Seconds before the first retry (doubling after each failure).
    pub(crate) backoff: f64,
    /// Messages in flight at most for this consumer.
    pub(crate) prefetch: u32,
}

/// What a checked signature tells the code generator.
pub(crate) struct Signature {
    pub(crate) is_async: bool,
    /// What the method is handed besides `self`.
    pub(crate) extra: Extra,
    /// The whole signature, for errors about the method itself.
    pub(crate) sig_span: Span,
    /// The return type (or the name when there is none), for errors about it.
    pub(crate) ret_span: Span,
    /// A receiver's signal parameter (its type), for errors about it.
    pub(crate) signal_span: Option<Span>,
    /// Whether the return type is spelled `Result<..>` (`io::Result`,
    /// `anyhow::Result`... too): a receiver answers with its `Ok` value.
    pub(crate) returns_result: bool,
}

/// What a method is handed besides `self`.
pub(crate) enum Extra {
    None,
    /// `ctx: &mut Context<Self>` (sync hooks and tasks).
    Context,
    /// A value the shim passes: `addr: Addr<Self>` (async hooks and tasks),
    /// `srv: ServerContext<Self>` (servers), or the sender's name after
    /// the signal (receivers).
    Value,
}
