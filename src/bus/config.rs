//! Which bus a System uses, and what it reports about itself.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use super::backlog::Bound;

use super::error::BusError;
pub(crate) use super::transport::Connector;
use super::wire::{self, MAX_PAYLOAD};
use crate::backend::Endpoint;

/// The prefix of every channel, as in the Python original.
pub const DEFAULT_PREFIX: &str = "PUBSUB";

/// Which bus the agents of a System use: the in-process one (the default)
/// or one on a server (Redis with the feature `redis`). Install it with
/// [`Bus::connect`](super::Bus::connect) or
/// [`Launcher::bus`](crate::Launcher::bus) before the agents start.
///
/// Its `Debug` output and [`BusInfo`] show the URL with its password
/// replaced by `***`.
///
/// ```
/// # #[cfg(feature = "redis")] {
/// use std::time::Duration;
/// use microagent::bus::BusConfig;
///
/// let config = BusConfig::from_url("redis://:s3cret@127.0.0.1:6379/0")
///     .unwrap()
///     .prefix("PUBSUB")
///     .unwrap()
///     .subscribe_timeout(Duration::from_secs(5));
/// assert!(!format!("{config:?}").contains("s3cret"));
/// # }
/// ```
#[derive(Clone)]
pub struct BusConfig {
    pub(super) kind: Kind,
    pub(super) prefix: String,
    pub(super) max_payload: usize,
    pub(super) subscribe_timeout: Duration,
    pub(super) reconnect_max: Duration,
    pub(super) buffer: Bound,
}

/// What one agent buffers from the Redis bus by default: signals waiting
/// in its mailbox, and their bytes.
pub(crate) const BUFFER: Bound = Bound {
    messages: 100_000,
    bytes: 32 << 20,
};

#[derive(Clone)]
pub(super) enum Kind {
    InProcess,
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    /// A backend on a server, as its constructor (`BusConfig::redis`, ...)
    /// set it up.
    Remote {
        /// The backend's name (`redis`, ...), as [`BusInfo::kind`] shows it.
        kind: &'static str,
        endpoint: Endpoint,
        connector: Arc<dyn Connector>,
    },
}

impl fmt::Debug for BusConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = f.debug_struct("BusConfig");
        let (kind, url) = self.describe();
        out.field("kind", &kind);
        if let Some(url) = url {
            out.field("url", &url);
        }
        out.field("prefix", &self.prefix)
            .field("max_payload", &self.max_payload)
            .field("subscribe_timeout", &self.subscribe_timeout)
            .field("reconnect_max", &self.reconnect_max)
            .field("buffer", &self.buffer)
            .finish()
    }
}

impl Default for BusConfig {
    fn default() -> Self {
        BusConfig::in_process()
    }
}

impl BusConfig {
    /// The in-process bus: agents of one process (on any arbiter) exchange
    /// signals and RPC calls with the same semantics as over Redis.
    pub fn in_process() -> Self {
        BusConfig {
            kind: Kind::InProcess,
            prefix: DEFAULT_PREFIX.to_owned(),
            max_payload: MAX_PAYLOAD,
            subscribe_timeout: Duration::from_secs(10),
            reconnect_max: Duration::from_secs(5),
            buffer: BUFFER,
        }
    }

    /// The bus at `url`, on the backend its scheme names (`redis://` and
    /// the other Redis schemes with the feature `redis`).
    ///
    /// Fails when no backend takes the scheme, or when the backend's cargo
    /// feature is off (the error names the feature).
    pub fn from_url(url: &str) -> Result<Self, BusError> {
        let backend =
            crate::backend::by_url(super::BACKENDS, url).map_err(|e| BusError::Config {
                reason: format!("{e}, found {}", crate::backend::redact(url)),
            })?;
        (backend.open)(url)
    }

    /// A bus on a server: what backend constructors build on.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(super) fn remote(
        kind: &'static str,
        endpoint: Endpoint,
        connector: impl Connector,
    ) -> Self {
        BusConfig {
            kind: Kind::Remote {
                kind,
                endpoint,
                connector: Arc::new(connector),
            },
            ..BusConfig::in_process()
        }
    }

    /// Sets the channel prefix (`PUBSUB` by default); it cannot hold `:`
    /// or `#`.
    pub fn prefix(mut self, prefix: &str) -> Result<Self, BusError> {
        wire::check_part("prefix", prefix)?;
        self.prefix = prefix.to_owned();
        Ok(self)
    }

    /// The largest payload a receiver decodes (1 MiB by default); larger
    /// ones are logged and counted as bad input.
    pub fn max_payload(mut self, bytes: usize) -> Self {
        self.max_payload = bytes;
        self
    }

    /// How much one agent may buffer from the Redis bus: signals delivered
    /// to its mailbox and not yet handled, and their payloads' bytes
    /// (100 000 signals and 32 MiB by default). Past either, new signals
    /// for that agent are dropped (pub/sub is at-most-once), counted on the
    /// receiver (`dropped` in its runs) and logged once per burst; one
    /// signal always fits, however large (`max_payload` bounds it). The
    /// in-process bus has no such bound: its senders are the process's own
    /// code.
    pub fn buffer(mut self, messages: usize, bytes: usize) -> Self {
        self.buffer = Bound {
            messages: messages.max(1),
            bytes,
        };
        self
    }

    /// How long an agent waits for Redis to confirm its receivers'
    /// subscriptions before its start fails (10 s by default).
    pub fn subscribe_timeout(mut self, timeout: Duration) -> Self {
        self.subscribe_timeout = timeout;
        self
    }

    /// The longest pause between two reconnection attempts (5 s by
    /// default; the pause doubles from 50 ms up to it).
    pub fn reconnect_max(mut self, pause: Duration) -> Self {
        self.reconnect_max = pause;
        self
    }

    /// Its kind and its URL, password redacted.
    pub(crate) fn describe(&self) -> (&'static str, Option<&str>) {
        match &self.kind {
            Kind::InProcess => ("in-process", None),
            Kind::Remote { kind, endpoint, .. } => (kind, Some(endpoint.redacted())),
        }
    }
}

/// What a bus reports about itself: in each agent's
/// [`AgentInfo`](crate::AgentInfo), and from [`Bus::info`](super::Bus::info).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct BusInfo {
    /// `in-process`, or the backend's name (`redis`, ...).
    pub kind: &'static str,
    /// The channel prefix.
    pub prefix: String,
    /// The URL, with its password replaced by `***` (none in-process).
    pub url: Option<String>,
    /// Whether the bus is connected and subscribed (always in-process).
    pub connected: bool,
    /// Messages from the wire that were dropped as malformed (bad channel,
    /// not UTF-8, not a JSON object, too large), since the bus started.
    pub bad_input: u64,
    /// How often the backend's client dropped messages because this
    /// process did not read them in time (NATS's "slow consumer"), since
    /// the bus started.
    pub slow_consumer: u64,
    /// How often the connection to the server was lost, since the bus
    /// started (the client reconnects by itself).
    pub disconnects: u64,
    /// Commands the server refused and connections that failed under
    /// one, since the bus started (each also reached its caller or the
    /// log).
    pub errors: u64,
    /// Of those errors, the ones while connected: the server refused or
    /// did not answer (the others failed because the connection was down
    /// or went down under them).
    pub server_errors: u64,
    /// Signals this process sent (not calls), since it started.
    pub sent: u64,
    /// Signals and calls handed to at least one of this process's
    /// receivers, since it started (from its own sends in-process, from
    /// the wire on a server).
    pub received: u64,
    /// The calls this process made since it started, by signal and
    /// outcome (the names
    /// past [`SIGNALS_CAP`](super::SIGNALS_CAP) add up under
    /// [`OTHER`](super::OTHER)).
    pub calls: Vec<super::CallCounts>,
}

impl BusInfo {
    pub(super) fn in_process(prefix: &str) -> Self {
        BusInfo {
            kind: "in-process",
            prefix: prefix.to_owned(),
            url: None,
            connected: true,
            bad_input: 0,
            slow_consumer: 0,
            disconnects: 0,
            errors: 0,
            server_errors: 0,
            sent: 0,
            received: 0,
            calls: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(feature = "redis")]
    #[test]
    fn redis_configurations_show_no_password() {
        let unix = BusConfig::redis("redis+unix:///x.sock?pass=S3cret").unwrap();
        assert!(!format!("{unix:?}").contains("S3cret"), "{unix:?}");
        let config = BusConfig::redis("redis://:hunter2@localhost:6379").unwrap();
        assert!(!format!("{config:?}").contains("hunter2"));
        let bad = BusConfig::redis("nonsense://:hunter2@x").unwrap_err();
        assert!(!bad.to_string().contains("hunter2"), "{bad}");
    }

    #[test]
    fn a_url_no_backend_of_the_build_takes_is_refused_naming_the_feature() {
        let unknown = BusConfig::from_url("kafka://:hunter2@localhost").unwrap_err();
        assert!(
            unknown.to_string().contains("expected a redis://"),
            "{unknown}"
        );
        assert!(!unknown.to_string().contains("hunter2"), "{unknown}");
        let redis = BusConfig::from_url("redis://:hunter2@localhost:6379");
        if cfg!(feature = "redis") {
            assert_eq!(redis.unwrap().describe().0, "redis");
        } else {
            let error = redis.unwrap_err().to_string();
            assert!(error.contains("cargo feature `redis`"), "{error}");
        }
    }

    #[test]
    fn a_prefix_must_fit_in_a_channel() {
        assert!(BusConfig::in_process().prefix("A:B").is_err());
        assert!(BusConfig::in_process().prefix("").is_err());
        assert_eq!(BusConfig::in_process().prefix("X").unwrap().prefix, "X");
    }
}
