//! The bus as one agent uses it: its name is the sender.

use std::sync::Arc;
use std::time::Duration;

use super::delivery::typed;
use super::error::BusError;
use super::handle::{AnswerStream, Answers, Bus, SenderName};
use super::signal::{DynSignal, Signal};

/// The System's [`Bus`] with a sender's name: what `ctx.bus()` gives an
/// agent, so that what it sends carries its name (as the Python original
/// does). Cheap to clone and `Send`: move it into a spawned future.
///
/// ```
/// use std::time::Duration;
/// use microagent::prelude::*;
/// use microagent::bus::Signal;
///
/// #[derive(Signal, serde::Serialize, serde::Deserialize)]
/// struct Ping {}
///
/// #[derive(Default, MicroAgent)]
/// struct Pinger;
///
/// #[microagent::hooks]
/// impl Pinger {
///     #[on(post_start)]
///     fn ping(&mut self, ctx: &mut Context<Self>) {
///         let bus = ctx.bus();
///         assert_eq!(bus.sender(), "Pinger");
///         actix_rt::spawn(async move { bus.send(Ping {}).await });
///     }
/// }
/// # microagent::run(async { microagent::start(Pinger); });
/// ```
#[derive(Debug, Clone)]
pub struct AgentBus {
    bus: Bus,
    sender: Arc<str>,
}

impl AgentBus {
    /// The bus with `sender` as the sender's name.
    pub fn new(bus: Bus, sender: impl Into<Arc<str>>) -> Self {
        AgentBus {
            bus,
            sender: sender.into(),
        }
    }

    /// The sender's name.
    pub fn sender(&self) -> &str {
        &self.sender
    }

    /// The bus itself.
    pub fn bus(&self) -> &Bus {
        &self.bus
    }

    /// [`Bus::send`] from this sender.
    pub async fn send<S: Signal>(&self, signal: S) -> Result<(), BusError> {
        let sender = SenderName::Shared(&self.sender);
        self.bus.publish(S::NAME, sender, typed(signal)).await
    }

    /// [`Bus::send_dyn`] from this sender.
    pub async fn send_dyn(&self, signal: &DynSignal) -> Result<(), BusError> {
        let payload = super::handle::dyn_payload(signal);
        let sender = SenderName::Shared(&self.sender);
        self.bus.publish(signal.name(), sender, payload).await
    }

    /// [`Bus::call`] from this sender.
    pub async fn call<S: Signal>(&self, signal: S, timeout: Duration) -> Result<Answers, BusError> {
        let sender = SenderName::Shared(&self.sender);
        self.bus
            .call_payload(S::NAME, sender, typed(signal), timeout)
            .await
    }

    /// [`Bus::call_dyn`] from this sender.
    pub async fn call_dyn(
        &self,
        signal: &DynSignal,
        timeout: Duration,
    ) -> Result<Answers, BusError> {
        let payload = super::handle::dyn_payload(signal);
        let sender = SenderName::Shared(&self.sender);
        self.bus
            .call_payload(signal.name(), sender, payload, timeout)
            .await
    }

    /// [`Bus::stream`] from this sender.
    pub async fn stream<S: Signal>(
        &self,
        signal: S,
        timeout: Duration,
    ) -> Result<AnswerStream, BusError> {
        let sender = SenderName::Shared(&self.sender);
        self.bus
            .stream_payload(S::NAME, sender, typed(signal), timeout)
            .await
    }
}
