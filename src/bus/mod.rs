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
//! - the [`Bus`]: receivers declared on agents with `#[receiver(Signal)]`,
//!   [`Bus::send`], [`Bus::call`] and [`Bus::stream`] (RPC), in-process by
//!   default or on Redis ([`BusConfig`]).

mod backlog;
mod config;
mod declarations;
mod delivery;
mod dynamic;
mod error;
mod handle;
mod local;
#[cfg(feature = "nats")]
mod nats;
mod observe;
#[cfg(feature = "redis")]
mod redis;
mod remote;
// Only backends use parts of the seam.
mod sender;
mod signal;
mod tally;
#[cfg_attr(not(any(feature = "redis", feature = "nats")), allow(dead_code))]
mod transport;
pub mod wire;

pub use crate::backend::redact;
pub use backlog::Ticket;
pub(crate) use backlog::{Backlog, Bound};
#[cfg(feature = "config")]
pub(crate) use config::BUFFER;
pub use config::{BusConfig, BusInfo, DEFAULT_PREFIX};
pub use declarations::{
    ArgSpec, ArgType, DeclarationError, DeclarationProblem, Declarations, QueueSpec, SignalSpec,
};
pub use delivery::{Deliver, Delivery, Payload, Reply, ToArgs, ToWire};
pub use dynamic::Receiving;
pub use error::BusError;
#[cfg(feature = "metrics")]
pub(crate) use handle::call_latencies;
#[cfg(feature = "web")]
pub(crate) use handle::connected;
pub(crate) use handle::{close, current_info, Confirmation, Subscription};
pub use handle::{AnswerError, AnswerStream, Answers, Bus};
pub(crate) use local::DeliverFn;
pub(crate) use observe::Observers;
pub use observe::{Observer, Sent};
pub use sender::AgentBus;
pub use signal::{DynSignal, Signal, SignalError};
pub use tally::{CallCounts, OTHER, SIGNALS_CAP};

/// How a bus backend's configuration is made from a URL.
type Open = fn(&str) -> Result<BusConfig, BusError>;

/// The bus backends, compiled in or not: the one place in the bus that
/// names them (see `docs/backends.md`).
pub(crate) static BACKENDS: &[crate::backend::Registration<Open>] = &[
    crate::backend::Registration {
        name: "redis",
        schemes: crate::backend::REDIS_SCHEMES,
        feature: "redis",
        #[cfg(feature = "redis")]
        open: Some(BusConfig::redis),
        #[cfg(not(feature = "redis"))]
        open: None,
    },
    crate::backend::Registration {
        name: "nats",
        schemes: &["nats"],
        feature: "nats",
        #[cfg(feature = "nats")]
        open: Some(BusConfig::nats),
        #[cfg(not(feature = "nats"))]
        open: None,
    },
];

/// Declares a signal: see [`Signal`].
pub use microagent_macros::Signal;
