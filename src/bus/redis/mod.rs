//! The Redis bus: the Python original's channels and payloads over Redis
//! pub/sub, so Rust and Python agents share one Redis. The only bus code
//! that names the `redis` crate; it plugs into the seam of
//! [`transport`](super::transport).
//!
//! One task per bus (on the System's arbiter, [`task`]) owns the
//! subscribing connection: it pattern-subscribes `{prefix}:{signal}:*` for
//! each signal some local receiver takes and `{prefix}:response:*` for RPC
//! answers, hands what arrives to the [`Hub`], and reconnects with a capped
//! backoff when the connection drops, subscribing everything again before
//! it reports itself connected. Publishing goes through a second,
//! multiplexed connection that any arbiter can use.
//!
//! On a Redis Cluster (`redis+cluster://`), both connections go to the
//! cluster's home node (the master of slot 0, see
//! [`RedisTarget::client`]): a cluster forwards every message to every
//! node, but `PUBLISH` counts only the subscribers of the node it was sent
//! to, so every bus publishes and subscribes on one node for the RPC count
//! below to hold. The bus moves when that node fails or stops being a
//! master.
//!
//! RPC: a call publishes on `{prefix}:{signal}:{sender}#{id}`; PUBLISH
//! tells how many subscriptions got it, which is how many buses will
//! answer. Each answering bus runs all its receivers of the signal and
//! publishes ONE object `{"Agent.method": answer, ...}` on
//! `{prefix}:response:{bus id}#{id}`, as the Python original does.

mod task;

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use tokio::sync::{mpsc, oneshot};

use super::config::BusConfig;
use super::error::BusError;
use super::transport::{Connector, Hub, Publishing, Route, Transport};
use super::wire::{Channel, RESPONSE};
use crate::backend::Endpoint;
use crate::redis_target::RedisTarget;
use crate::LOG_TARGET;

#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
impl BusConfig {
    /// The Redis bus at `url` (`redis://[:password@]host[:port][/db]`, or
    /// `rediss://` with TLS where the `redis` crate supports it;
    /// `redis+sentinel://host:port[,...]/MASTER` for a Sentinel-served
    /// master; `redis+cluster://host:port[,...]` for a Redis Cluster).
    pub fn redis(url: &str) -> Result<Self, BusError> {
        let endpoint = Endpoint::new(url);
        let client = RedisTarget::open(url).map_err(|reason| BusError::Config {
            reason: format!("bad Redis URL {}: {reason}", endpoint.redacted()),
        })?;
        Ok(BusConfig::remote("redis", endpoint, RedisBus { client }))
    }
}

/// A Redis bus's server.
struct RedisBus {
    client: RedisTarget,
}

impl Connector for RedisBus {
    fn start(&self, hub: Arc<Hub>) -> Result<Box<dyn Transport>, BusError> {
        let (commands, rx) = mpsc::unbounded_channel();
        let link = Arc::new(Link {
            client: self.client.clone(),
            reconnect_max: hub.reconnect_max(),
            hub,
            publisher: Mutex::default(),
            commands,
        });
        actix_rt::System::current()
            .arbiter()
            .spawn(task::serve(link.clone(), rx));
        Ok(Box::new(RedisTransport(link)))
    }
}

/// What the bus's task is asked to do.
enum Command {
    /// One more local receiver of `signal`; `confirmed` once Redis has
    /// confirmed the pattern subscription.
    Subscribe {
        signal: String,
        confirmed: oneshot::Sender<()>,
    },
    /// One receiver of `signal` fewer.
    Unsubscribe { signal: String },
    /// The bus is gone: end the task.
    Close,
}

/// The Redis side of a bus, shared by its transport and its task.
struct Link {
    client: RedisTarget,
    hub: Arc<Hub>,
    reconnect_max: Duration,
    /// The publishing connection, while connected.
    publisher: Mutex<Option<MultiplexedConnection>>,
    commands: mpsc::UnboundedSender<Command>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Link {
    /// Publishes on `channel`; returns how many subscriptions got it.
    fn publish(&self, channel: String, payload: Vec<u8>) -> Publishing {
        let connection = lock(&self.publisher).clone();
        let hub = self.hub.clone();
        Box::pin(async move {
            let Some(mut connection) = connection.filter(|_| hub.is_up()) else {
                return Err(hub.down());
            };
            redis::cmd("PUBLISH")
                .arg(channel)
                .arg(payload)
                .query_async::<usize>(&mut connection)
                .await
                .map_err(|e| hub.failed(e))
        })
    }

    /// Handles one message from the subscribing connection.
    fn on_message(self: &Arc<Self>, message: &redis::Msg) {
        let hub = &self.hub;
        // `?` stands for a channel name that is not UTF-8; it cannot match
        // a pattern of ours either way.
        let text = message.get_channel_name();
        if text == "?" {
            return hub.bad(text, "the channel name is not UTF-8");
        }
        let channel = match Channel::parse(text) {
            Ok(channel) => channel,
            Err(e) => return hub.bad(text, e),
        };
        // Our patterns are escaped: another prefix is someone's mistake.
        if channel.prefix != hub.prefix() {
            return hub.bad(text, format_args!("not our prefix `{}`", hub.prefix()));
        }
        let payload = message.get_payload_bytes();
        if channel.name == RESPONSE {
            match channel.request_id {
                Some(id) => hub.answered(text, id, payload),
                None => hub.bad(text, "an answer without a request id"),
            }
            return;
        }
        let route = Route {
            name: channel.name,
            sender: channel.sender,
            request_id: channel.request_id,
            // The Python original's channels have no place for it.
            trace: None,
        };
        let (Some(answering), Some(id)) = (hub.deliver(text, route, payload), route.request_id)
        else {
            return;
        };
        let answer = Channel {
            prefix: hub.prefix(),
            name: RESPONSE,
            sender: hub.uid(),
            request_id: Some(id),
        }
        .to_string();
        let link = self.clone();
        actix_rt::spawn(async move {
            let Some(object) = answering.collect().await else {
                return;
            };
            if let Err(e) = link.publish(answer, object).await {
                log::warn!(target: LOG_TARGET, "bus: an RPC answer was not sent: {e}");
            }
        });
    }
}

/// The bus's handle on its Redis side.
struct RedisTransport(Arc<Link>);

impl Transport for RedisTransport {
    fn publish(&self, route: Route<'_>, payload: Vec<u8>) -> Publishing {
        let channel = Channel {
            prefix: self.0.hub.prefix(),
            name: route.name,
            sender: route.sender,
            request_id: route.request_id,
        };
        self.0.publish(channel.to_string(), payload)
    }

    fn subscribe(&self, signal: &str, confirmed: oneshot::Sender<()>) {
        // A closed task drops `confirmed`: the bus reports it down.
        let _ = self.0.commands.send(Command::Subscribe {
            signal: signal.to_owned(),
            confirmed,
        });
    }

    fn unsubscribe(&self, signal: &str) {
        let _ = self.0.commands.send(Command::Unsubscribe {
            signal: signal.to_owned(),
        });
    }

    fn close(&self) {
        let _ = self.0.commands.send(Command::Close);
    }
}
