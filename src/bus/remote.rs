//! A bus on a server: the [`Hub`] and the backend's [`Transport`], as the
//! bus handle uses them (start, send, call, subscribe, info). Names no
//! backend.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future;
use tokio::sync::oneshot;

use super::backlog::Bound;
use super::config::{BusConfig, BusInfo, Connector};
use super::error::BusError;
use super::local::Subscribers;
use super::transport::{Called, Hub, HubSettings, Route, Transport};
use crate::backend::Endpoint;

/// A bus on a server: the [`Hub`] and the backend's [`Transport`].
pub(crate) struct Remote {
    hub: Arc<Hub>,
    transport: Box<dyn Transport>,
    subscribe_timeout: Duration,
    /// What each agent may buffer of what this bus delivers.
    pub(crate) buffer: Bound,
}

impl Remote {
    /// Starts the backend and waits until it is connected and subscribed
    /// (bounded by the subscribe timeout).
    pub(crate) async fn start(
        config: &BusConfig,
        (kind, endpoint, connector): (&'static str, Endpoint, &dyn Connector),
        subscribers: Arc<Subscribers>,
    ) -> Result<Arc<Remote>, BusError> {
        let settings = HubSettings {
            kind,
            endpoint,
            prefix: config.prefix.clone(),
            max_payload: config.max_payload,
            reconnect_max: config.reconnect_max,
        };
        let hub = Hub::new(settings, subscribers);
        let transport = connector.start(hub.clone())?;
        let connected = actix_rt::time::timeout(config.subscribe_timeout, hub.until_up());
        if let Ok(true) = connected.await {
            return Ok(Arc::new(Remote {
                hub,
                transport,
                subscribe_timeout: config.subscribe_timeout,
                buffer: config.buffer,
            }));
        }
        transport.close();
        Err(hub.down())
    }

    /// The backend's name (`redis`, `nats`).
    pub(crate) fn kind(&self) -> &'static str {
        self.hub.kind()
    }

    pub(crate) fn is_up(&self) -> bool {
        self.hub.is_up()
    }

    pub(crate) fn info(&self) -> BusInfo {
        let failures = self.hub.failures();
        BusInfo {
            kind: self.hub.kind(),
            prefix: self.hub.prefix().to_owned(),
            url: Some(self.hub.endpoint().redacted().to_owned()),
            connected: self.is_up(),
            bad_input: self.hub.bad_input(),
            slow_consumer: self.hub.slow_consumer_count(),
            disconnects: failures.disconnects,
            errors: failures.errors,
            server_errors: failures.server_errors,
            // The bus handle adds its own counts.
            sent: 0,
            received: 0,
            calls: Vec::new(),
        }
    }

    /// Subscribes one receiver of each of `signals`; the future resolves
    /// once the server has confirmed them all.
    pub(crate) fn subscribe(
        &self,
        signals: impl Iterator<Item = &'static str>,
    ) -> impl Future<Output = Result<(), BusError>> + 'static {
        let confirmations: Vec<_> = signals
            .map(|signal| {
                let (confirmed, wait) = oneshot::channel();
                // A closed backend drops `confirmed`: the wait below fails.
                self.transport.subscribe(signal, confirmed);
                wait
            })
            .collect();
        let timeout = self.subscribe_timeout;
        let (down, url) = (self.hub.down(), self.hub.endpoint().redacted().to_owned());
        async move {
            let all = future::try_join_all(confirmations);
            match actix_rt::time::timeout(timeout, all).await {
                Ok(Ok(_)) => Ok(()),
                Ok(Err(_)) => Err(down),
                Err(_) => Err(BusError::SubscribeTimeout { url, timeout }),
            }
        }
    }

    /// One receiver of `signal` fewer.
    pub(crate) fn unsubscribe(&self, signal: &str) {
        self.transport.unsubscribe(signal);
    }

    /// Publishes a signal; returns how many buses got it.
    pub(crate) async fn send(
        &self,
        (name, sender): (&str, &str),
        payload: Vec<u8>,
        trace: Option<&str>,
    ) -> Result<usize, BusError> {
        if !self.is_up() {
            return Err(self.hub.down());
        }
        let route = Route {
            name,
            sender,
            request_id: None,
            trace,
        };
        self.transport.publish(route, payload).await
    }

    /// Publishes an RPC call and notes it as waiting for answers.
    pub(crate) async fn call(
        &self,
        (name, sender): (&str, &str),
        payload: Vec<u8>,
        trace: Option<&str>,
    ) -> Result<Called, BusError> {
        if !self.is_up() {
            return Err(self.hub.down());
        }
        let (guard, rx) = self.hub.open_call();
        let route = Route {
            name,
            sender,
            request_id: Some(guard.id()),
            trace,
        };
        let asked = self.transport.publish(route, payload).await?;
        self.hub.asked(guard.id(), asked);
        Ok((rx, guard, asked))
    }
}

impl Drop for Remote {
    fn drop(&mut self) {
        self.transport.close();
    }
}
