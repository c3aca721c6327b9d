//! The NATS bus: signals and RPC over NATS core pub/sub. The only bus code
//! that names the `async-nats` crate; it plugs into the seam of
//! [`transport`](super::transport).
//!
//! Subjects: a signal goes on `{prefix}.{signal}.{sender}`, each part one
//! token (escaped by [`token`], so no name can widen a subscription); a
//! bus subscribes `{prefix}.{signal}.*` for each signal some local
//! receiver takes. The sender and, for a call, the request id travel in
//! headers, so the payload is the plain JSON object every backend carries.
//!
//! RPC: a call names a reply subject in this bus's own inbox,
//! `{inbox}.{request id}`. Each bus with receivers of the signal answers
//! there with ONE object `{"Agent.method": answer, ...}`, as on Redis. A
//! NATS publisher does not learn how many subscribers got a message, so
//! the buses keep a [`roster`]: which bus takes which signals. A call
//! waits for the buses the roster names, or for its timeout.
//!
//! The client reconnects by itself and subscribes again; readiness says
//! 503 from its `Disconnected` event until its `Connected` one (and the
//! subscriptions confirmed by a flush). A slow consumer (the client
//! dropped messages this process did not read in time) is counted and
//! logged.

mod roster;
mod task;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};

use async_nats::header::HeaderName;
use async_nats::{Client, HeaderMap};
use tokio::sync::oneshot;

use super::config::BusConfig;
use super::error::BusError;
use super::transport::{Connector, Hub, Publishing, Route, Transport};
use crate::backend::Endpoint;
use crate::nats_target::{push_token, token, NatsTarget};
use roster::Roster;

// Header names built once (a `&str` name is checked and parsed again on
// every insert and lookup).
/// The header naming a signal's sender.
const SENDER: HeaderName = HeaderName::from_static("Microagent-Sender");
/// The header carrying a call's request id.
const REQUEST: HeaderName = HeaderName::from_static("Microagent-Request-Id");
/// The W3C trace context of the span a signal was sent in (feature `otel`).
const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
/// The header naming the bus an answer comes from.
const RESPONDER: HeaderName = HeaderName::from_static("Microagent-Bus");

#[cfg_attr(docsrs, doc(cfg(feature = "nats")))]
impl BusConfig {
    /// The NATS bus at `url`:
    /// `nats://[user:password@ | token@]host[:port][,host[:port]...][?creds=PATH]`
    /// (a `.creds` file holds a JWT and its NKey seed). Needs a NATS
    /// server 2.9 or newer.
    pub fn nats(url: &str) -> Result<Self, BusError> {
        let endpoint = Endpoint::new(url);
        let target = NatsTarget::open(url).map_err(|reason| BusError::Config {
            reason: format!("bad NATS URL {}: {reason}", endpoint.redacted()),
        })?;
        Ok(BusConfig::remote("nats", endpoint, NatsBus { target }))
    }
}

/// A NATS bus's servers.
struct NatsBus {
    target: NatsTarget,
}

impl Connector for NatsBus {
    fn start(&self, hub: Arc<Hub>) -> Result<Box<dyn Transport>, BusError> {
        let link = task::start(self.target.clone(), hub);
        Ok(Box::new(NatsTransport(link)))
    }
}

/// The NATS side of a bus, shared by its transport and its tasks.
struct Link {
    hub: Arc<Hub>,
    /// Set once the client exists (at once: it connects in the background).
    client: OnceLock<Client>,
    /// The prefix as a subject token.
    prefix: String,
    /// This bus's reply subjects: `{inbox}.{request id}`.
    inbox: String,
    roster: Roster,
    /// The signals subscribed, by how many local receivers take each.
    signals: Mutex<HashMap<String, Subscribed>>,
    /// Wakes the connection's task when the bus closes.
    closing: tokio::sync::Notify,
}

/// One signal subscribed on the server.
struct Subscribed {
    receivers: usize,
    /// Confirmed by the server: later receivers are confirmed at once.
    confirmed: Arc<tokio::sync::watch::Sender<bool>>,
    /// The task reading it (aborted with the last receiver, which drops
    /// the subscription: the client unsubscribes).
    reader: futures_util::future::AbortHandle,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Link {
    fn client(&self) -> Option<&Client> {
        self.client.get()
    }

    /// The subject of `route` (without its request id, which is a header).
    fn subject(&self, route: Route<'_>) -> String {
        let size = self.prefix.len() + route.name.len() + route.sender.len() + 2;
        let mut subject = String::with_capacity(size);
        subject.push_str(&self.prefix);
        subject.push('.');
        push_token(&mut subject, route.name);
        subject.push('.');
        push_token(&mut subject, route.sender);
        subject
    }

    /// Publishes `payload` on `subject` with `headers`, answers to `reply`.
    async fn publish(
        &self,
        subject: String,
        reply: Option<String>,
        headers: HeaderMap,
        payload: Vec<u8>,
    ) -> Result<(), BusError> {
        let client = self
            .client()
            .filter(|_| self.hub.is_up())
            .ok_or_else(|| self.hub.down())?;
        let sent = match reply {
            Some(reply) => {
                client
                    .publish_with_reply_and_headers(subject, reply, headers, payload.into())
                    .await
            }
            None => {
                client
                    .publish_with_headers(subject, headers, payload.into())
                    .await
            }
        };
        sent.map_err(|e| self.hub.failed(e))
    }
}

/// The bus's handle on its NATS side.
struct NatsTransport(Arc<Link>);

impl Transport for NatsTransport {
    fn publish(&self, route: Route<'_>, payload: Vec<u8>) -> Publishing {
        let link = self.0.clone();
        let subject = link.subject(route);
        let mut headers = HeaderMap::new();
        headers.insert(SENDER, route.sender);
        if let Some(trace) = route.trace {
            headers.insert(TRACEPARENT, trace);
        }
        let reply = route.request_id.map(|id| {
            headers.insert(REQUEST, id);
            format!("{}.{}", link.inbox, token(id))
        });
        // A call waits for the buses that take it, as far as this bus has
        // heard; a signal waits for nobody (no roster lookup per signal).
        let buses = match reply {
            Some(_) => link.roster.buses_taking(route.name),
            None => 0,
        };
        Box::pin(async move {
            link.publish(subject, reply, headers, payload).await?;
            Ok(buses)
        })
    }

    fn subscribe(&self, signal: &str, confirmed: oneshot::Sender<()>) {
        task::subscribe(&self.0, signal, confirmed);
    }

    fn unsubscribe(&self, signal: &str) {
        task::unsubscribe(&self.0, signal);
    }

    fn close(&self) {
        task::close(&self.0);
    }
}
