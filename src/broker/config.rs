//! Which broker a System uses, and what it reports about itself.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use super::error::BrokerError;
use futures_util::future::BoxFuture;

use super::remote::RemoteQueues;
use crate::backend::Endpoint;

/// How a queue backend is reached: what its [`BrokerConfig`] constructor
/// stores (beside the backend's name and URL), and what connects it when
/// the broker is installed.
pub(crate) trait Connector: Send + Sync + 'static {
    /// Connects; fails when the server cannot be reached.
    fn connect(
        &self,
        config: &BrokerConfig,
    ) -> BoxFuture<'static, Result<Arc<dyn RemoteQueues>, BrokerError>>;
}

/// Which broker the agents of a System use: the in-process one (the
/// default), Redis, AMQP, NATS JetStream or Kafka. `Debug` shows a URL's password as `***`. Install it with [`Broker::connect`](super::Broker::connect)
/// or [`Launcher::broker`](crate::Launcher::broker) before the agents
/// start.
#[derive(Clone)]
pub struct BrokerConfig {
    pub(super) kind: Kind,
    pub(super) capacity: usize,
    pub(super) namespace: String,
    pub(super) lease: Duration,
    pub(super) durable: bool,
    pub(super) dead_suffix: String,
    pub(super) connect_timeout: Duration,
    pub(super) group: String,
}

#[derive(Clone)]
pub(super) enum Kind {
    InProcess,
    #[cfg_attr(not(any(feature = "redis", feature = "amqp")), allow(dead_code))]
    /// Queues on a server, as the backend's constructor
    /// (`BrokerConfig::redis`, ...) set them up.
    Remote {
        /// The backend's name (`redis`, `amqp`, ...), as
        /// [`BrokerInfo::kind`] shows it.
        kind: &'static str,
        endpoint: Endpoint,
        connector: Arc<dyn Connector>,
    },
}

impl fmt::Debug for BrokerConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = f.debug_struct("BrokerConfig");
        match &self.kind {
            Kind::InProcess => out
                .field("kind", &"in-process")
                .field("capacity", &self.capacity),
            Kind::Remote { kind, endpoint, .. } => out
                .field("kind", kind)
                .field("url", endpoint)
                .field("namespace", &self.namespace)
                .field("lease", &self.lease)
                .field("durable", &self.durable),
        };
        out.finish()
    }
}

impl Default for BrokerConfig {
    fn default() -> Self {
        BrokerConfig::in_process()
    }
}

impl BrokerConfig {
    /// The in-process broker: bounded queues in this process (10 000
    /// messages each by default; `send` waits while one is full), with the
    /// same retry and dead-letter semantics as the others. Messages live as
    /// long as the System.
    pub fn in_process() -> Self {
        BrokerConfig {
            kind: Kind::InProcess,
            capacity: 10_000,
            namespace: String::new(),
            lease: Duration::from_secs(30),
            durable: false,
            dead_suffix: ":dead".to_owned(),
            connect_timeout: Duration::from_secs(10),
            group: "{queue}".to_owned(),
        }
    }

    /// The broker at `url`, on the backend its scheme names (`redis://`
    /// and the other Redis schemes with the feature `redis`, `amqp://` and
    /// `amqps://` with the feature `amqp`, `nats://` with the feature
    /// `nats`, `kafka://` with the feature `kafka`).
    ///
    /// Fails when no backend takes the scheme, or when the backend's cargo
    /// feature is off (the error names the feature).
    pub fn from_url(url: &str) -> Result<Self, BrokerError> {
        let backend =
            crate::backend::by_url(super::BACKENDS, url).map_err(|e| BrokerError::Config {
                reason: format!("{e}, found {}", crate::backend::redact(url)),
            })?;
        (backend.open)(url)
    }

    /// Queues on a server: what backend constructors build on.
    #[cfg_attr(not(any(feature = "redis", feature = "amqp")), allow(dead_code))]
    pub(super) fn remote(
        kind: &'static str,
        endpoint: Endpoint,
        connector: impl Connector,
    ) -> Self {
        BrokerConfig {
            kind: Kind::Remote {
                kind,
                endpoint,
                connector: Arc::new(connector),
            },
            ..BrokerConfig::in_process()
        }
    }

    /// Kafka: the consumer group of this broker's consumers, where
    /// `{queue}` stands for the queue's topic (`{queue}` by default: one
    /// group per queue, named after it). Each group reads every message of
    /// a topic, so consumers under another group get the queue's messages
    /// again, as a second service would; one name without `{queue}` puts
    /// every queue's consumers in one group (a member joining for one
    /// queue then rebalances them all). The other backends have one set of
    /// competing consumers per queue and take no group.
    pub fn group(mut self, group: &str) -> Self {
        self.group = group.to_owned();
        self
    }

    /// What is appended to a queue's name to name its dead letters' list
    /// (Redis) or queue (AMQP): `:dead` by default (`mailer:dead`). The
    /// in-process broker keeps them beside the queue.
    pub fn dead_letters_suffix(mut self, suffix: &str) -> Self {
        self.dead_suffix = suffix.to_owned();
        self
    }

    /// AMQP: declare queues durable and publish persistent messages (the
    /// production choice). The default, `false`, matches what the Python
    /// original declares, so both can share a queue; a queue that exists
    /// with other flags is refused by the broker (`BrokerError::QueueMismatch`).
    pub fn durable(mut self, durable: bool) -> Self {
        self.durable = durable;
        self
    }

    /// Puts `namespace` before every Redis key or AMQP queue name (none by
    /// default). Python agents share a queue only under the same full name.
    pub fn namespace(mut self, namespace: &str) -> Self {
        self.namespace = namespace.to_owned();
        self
    }

    /// How long a Redis consumer's lease lasts (30 s by default; renewed
    /// every third of it). A consumer that died holds its messages that
    /// long before another consumer returns them to their queue. On NATS
    /// JetStream it is the consumer's ack wait; on Kafka the consumers'
    /// session timeout, at least 2 s, with the classic group protocol (the
    /// servers set it with the consumer protocol), and on every Kafka
    /// protocol how long a rebalance waits for the messages in flight of
    /// the partitions it takes from a consumer (docs/broker.md).
    pub fn lease(mut self, lease: Duration) -> Self {
        self.lease = lease.max(Duration::from_millis(30));
        self
    }

    /// Its kind and its URL, password redacted.
    #[cfg_attr(not(feature = "config"), allow(dead_code))]
    pub(crate) fn describe(&self) -> (&'static str, Option<&str>) {
        match &self.kind {
            Kind::InProcess => ("in-process", None),
            Kind::Remote { kind, endpoint, .. } => (kind, Some(endpoint.redacted())),
        }
    }

    /// How long installing a broker on a server waits for it (10 s by
    /// default), trying again with a backoff (50 ms, doubling up to 5 s):
    /// a launch whose broker is not there by then ends with
    /// [`Exit::BrokerFailed`](crate::Exit::BrokerFailed) and no agent
    /// started. The bus waits as long for its server (its subscribe
    /// timeout).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// How many messages an in-process queue holds before `send` waits.
    pub fn capacity(mut self, messages: usize) -> Self {
        self.capacity = messages.max(1);
        self
    }
}

/// What a broker reports about itself: in each agent's
/// [`AgentInfo`](crate::AgentInfo), and from [`Broker::info`](super::Broker::info).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct BrokerInfo {
    /// `in-process`, `redis` or `amqp`.
    pub kind: &'static str,
    /// The URL, password redacted (none in-process).
    pub url: Option<String>,
    /// Whether it is connected (always in-process).
    pub connected: bool,
    /// Connections to its server lost so far (the backend reconnects by
    /// itself); 0 in-process.
    pub disconnects: u64,
    /// Operations its server refused or that failed on the way, so far;
    /// 0 in-process.
    pub errors: u64,
    /// Of those errors, the ones while connected: the server refused or
    /// did not answer (the others failed because the connection was down
    /// or went down under them).
    pub server_errors: u64,
    /// How this process's consumers settled their attempts, for each
    /// queue they consume, since the process started.
    pub queues: Vec<super::QueueCounts>,
}

impl BrokerInfo {
    /// The in-process broker's, with the process's queue counts.
    pub(crate) fn in_process(queues: Vec<super::QueueCounts>) -> BrokerInfo {
        BrokerInfo {
            kind: "in-process",
            url: None,
            connected: true,
            disconnects: 0,
            errors: 0,
            server_errors: 0,
            queues,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_url_picks_its_backend_or_names_the_feature_it_needs() {
        for (url, kind) in [
            ("redis://:hunter2@127.0.0.1:6379/3", "redis"),
            ("amqps://guest:hunter2@127.0.0.1/%2f", "amqp"),
            ("kafka://127.0.0.1:9092", "kafka"),
        ] {
            match BrokerConfig::from_url(url) {
                Ok(config) => assert_eq!(config.describe().0, kind),
                Err(e) => {
                    let shown = e.to_string();
                    assert!(shown.contains(&format!("feature `{kind}`")), "{shown}");
                    assert!(!shown.contains("hunter2"), "{shown}");
                }
            }
        }
        let unknown = BrokerConfig::from_url("mqtt://broker:1883").unwrap_err();
        assert!(unknown.to_string().contains("amqp://"), "{unknown}");
    }

    #[cfg(all(feature = "redis", feature = "amqp"))]
    #[test]
    fn urls_show_no_password() {
        let redis = BrokerConfig::redis("redis://:hunter2@127.0.0.1:6379/3").unwrap();
        let amqp = BrokerConfig::amqp("amqp://guest:hunter2@127.0.0.1:5672/%2f").unwrap();
        for shown in [format!("{redis:?}"), format!("{amqp:?}")] {
            assert!(!shown.contains("hunter2"), "{shown}");
            assert!(shown.contains(":***@"), "{shown}");
        }
        let bad = BrokerConfig::amqp("http://guest:hunter2@x").unwrap_err();
        assert!(!bad.to_string().contains("hunter2"), "{bad}");
    }
}
