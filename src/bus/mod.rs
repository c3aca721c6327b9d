//! The signal bus: what agents send each other, in the wire format of the
//! Python original (microagent 1.9), so that Rust and Python agents can
//! share one Redis.
//!
//! This module holds what every bus backend builds on:
//! - declaring signals: [`Signal`] (`#[derive(Signal)]`) for typed ones,
//!   [`DynSignal`] for ones known at run time;
//! - the Python side's declarations file: [`Declarations`], with the
//!   argument types it declares checked by [`SignalSpec::check`];
//! - the wire codec: [`wire`], channel names and payloads, which turns any
//!   malformed input into a [`WireError`](wire::WireError) instead of a
//!   panic.
//!
//! - the in-process [`Bus`]: receivers declared on agents with
//!   `#[receiver(Signal)]`, [`Bus::send`] and [`Bus::call`] (RPC).
//!
//! The Redis backend comes next (issue 8).

mod declarations;
mod local;
mod signal;
pub mod wire;

pub use declarations::{
    ArgSpec, ArgType, DeclarationError, DeclarationProblem, Declarations, QueueSpec, SignalSpec,
};
pub(crate) use local::{close, DeliverFn, Subscription};
pub use local::{AnswerStream, Answers, Bus, BusError};
pub use local::{Deliver, Delivery, Payload, Reply, ToArgs};
pub use signal::{DynSignal, Signal, SignalError};

/// Declares a signal: see [`Signal`].
pub use microagent_macros::Signal;
