//! Receivers known only at run time: a signal of the Python side's
//! declarations file, received as a [`DynSignal`] its declaration checks.

use std::sync::Arc;

use serde_json::Value;

use super::declarations::SignalSpec;
use super::delivery::Delivery;
use super::error::BusError;
use super::handle::{Bus, Subscription};
use super::local::DeliverFn;
use super::signal::DynSignal;
use crate::LOG_TARGET;

/// A run-time receiver on the bus, from [`Bus::receive`]: it receives
/// until it is dropped.
pub struct Receiving {
    _subscription: Subscription,
    signal: &'static str,
    responder: Arc<str>,
}

impl std::fmt::Debug for Receiving {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Receiving")
            .field("signal", &self.signal)
            .field("responder", &self.responder)
            .finish()
    }
}

impl Bus {
    /// Receives the signal `spec` declares, known only at run time (from
    /// the Python side's declarations file): `handler` gets each one as a
    /// [`DynSignal`] whose arguments its declaration accepted, and the
    /// sender's name; what it returns answers a call, under `responder`
    /// (`Agent.method`, as agents answer). Arguments the declaration
    /// refuses are logged and answered with `null`, as a typed receiver
    /// does with arguments that do not fit.
    ///
    /// Returns once the bus confirmed the subscription (at once
    /// in-process); the receiver receives until the returned
    /// [`Receiving`] is dropped. `handler` runs where the bus delivers
    /// (the System's arbiter): keep it short, or hand the work to an
    /// agent.
    ///
    /// ```
    /// use std::time::Duration;
    /// use microagent::bus::{Bus, Declarations};
    /// use serde_json::json;
    ///
    /// let declared = Declarations::from_json(
    ///     r#"{"signals": [{"name": "rate", "providing_args": {"currency": "string"}}], "queues": []}"#,
    /// ).unwrap();
    /// let spec = declared.signal("rate").unwrap().clone();
    /// microagent::run(async move {
    ///     let bus = Bus::current();
    ///     let _rates = bus
    ///         .receive(&spec, "Rates.rate", |signal, _sender| {
    ///             let eur = signal.args()["currency"] == "EUR";
    ///             json!(if eur { 1.0 } else { 1.1 })
    ///         })
    ///         .await
    ///         .unwrap();
    ///     let ask = spec.signal(json!({"currency": "EUR"}).as_object().unwrap().clone()).unwrap();
    ///     let answers = bus.call_dyn("shop", &ask, Duration::from_secs(1)).await.unwrap();
    ///     assert_eq!(answers.get("Rates.rate"), Some(&json!(1.0)));
    /// });
    /// ```
    pub async fn receive<F>(
        &self,
        spec: &SignalSpec,
        responder: &str,
        handler: F,
    ) -> Result<Receiving, BusError>
    where
        F: Fn(DynSignal, &str) -> Value + Send + Sync + 'static,
    {
        super::wire::check_part("responder", responder)?;
        let signal = crate::intern::intern(&spec.name);
        let responder: Arc<str> = responder.into();
        let declared = spec.clone();
        let deliver: DeliverFn = Box::new(move |delivery: Delivery| {
            let Delivery {
                payload,
                sender,
                reply,
                ..
            } = delivery;
            let checked = payload.to_json().and_then(|args| declared.signal(args));
            let answer = match checked {
                Ok(signal) => handler(signal, &sender),
                Err(e) => {
                    log::warn!(
                        target: LOG_TARGET,
                        "bus: a `{}` from `{sender}` does not fit its declaration; answered null: {e}",
                        declared.name
                    );
                    Value::Null
                }
            };
            reply.answer(answer);
            true
        });
        let (subscription, confirmation) =
            self.subscribe(vec![(signal, responder.clone(), deliver)]);
        if let Some(confirmation) = confirmation {
            confirmation.await?;
        }
        Ok(Receiving {
            _subscription: subscription,
            signal,
            responder,
        })
    }
}
