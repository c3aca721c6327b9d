//! Which bus a System uses, and what it reports about itself.

use std::fmt;
use std::time::Duration;

use serde::Serialize;

use super::backlog::Bound;

use super::error::BusError;
use super::wire::{self, MAX_PAYLOAD};

/// The prefix of every channel, as in the Python original.
pub const DEFAULT_PREFIX: &str = "PUBSUB";

/// Which bus the agents of a System use: the in-process one (the default)
/// or Redis. Install it with [`Bus::connect`](super::Bus::connect) or
/// [`Launcher::bus`](crate::Launcher::bus) before the agents start.
///
/// Its `Debug` output and [`BusInfo`] show the URL with its password
/// replaced by `***`.
///
/// ```
/// use std::time::Duration;
/// use microagent::bus::BusConfig;
///
/// let config = BusConfig::redis("redis://:s3cret@127.0.0.1:6379/0")
///     .unwrap()
///     .prefix("PUBSUB")
///     .unwrap()
///     .subscribe_timeout(Duration::from_secs(5));
/// assert!(!format!("{config:?}").contains("s3cret"));
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
    Redis { url: String, redacted: String },
}

impl fmt::Debug for BusConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = f.debug_struct("BusConfig");
        out.field("kind", &self.kind_name());
        if let Kind::Redis { redacted, .. } = &self.kind {
            out.field("url", redacted);
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

    /// The Redis bus at `url` (`redis://[:password@]host[:port][/db]`, or
    /// `rediss://` with TLS where the `redis` crate supports it).
    pub fn redis(url: &str) -> Result<Self, BusError> {
        let redacted = redact(url);
        redis::Client::open(url).map_err(|e| BusError::Config {
            reason: format!("bad Redis URL {redacted}: {:?}", e.kind()),
        })?;
        Ok(BusConfig {
            kind: Kind::Redis {
                url: url.to_owned(),
                redacted,
            },
            ..BusConfig::in_process()
        })
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

    pub(super) fn kind_name(&self) -> &'static str {
        match self.kind {
            Kind::InProcess => "in-process",
            Kind::Redis { .. } => "redis",
        }
    }

    /// Its kind and its URL, password redacted.
    pub(crate) fn describe(&self) -> (&'static str, Option<&str>) {
        match &self.kind {
            Kind::InProcess => (self.kind_name(), None),
            Kind::Redis { redacted, .. } => (self.kind_name(), Some(redacted)),
        }
    }
}

/// What a bus reports about itself: in each agent's
/// [`AgentInfo`](crate::AgentInfo), and from [`Bus::info`](super::Bus::info).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct BusInfo {
    /// `in-process` or `redis`.
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
}

impl BusInfo {
    pub(super) fn in_process(prefix: &str) -> Self {
        BusInfo {
            kind: "in-process",
            prefix: prefix.to_owned(),
            url: None,
            connected: true,
            bad_input: 0,
        }
    }
}

/// `url` with its secrets replaced by `***`: the password of its userinfo,
/// and the value of any query parameter a client library may read one from
/// (the `redis` crate reads `pass` for `redis+unix://` and `unix://` URLs;
/// any key that names a password, secret, token or key is taken for one).
/// A URL that does not parse is replaced whole, as it may hold one
/// anywhere.
pub fn redact(url: &str) -> String {
    let Ok(mut parsed) = url::Url::parse(url) else {
        return "<unparsable URL>".to_owned();
    };
    if parsed.password().is_some() && parsed.set_password(Some("***")).is_err() {
        return "<redacted>".to_owned();
    }
    if parsed.query_pairs().any(|(key, _)| is_secret(&key)) {
        let pairs: Vec<(String, String)> = parsed
            .query_pairs()
            .map(|(key, value)| {
                let value = if is_secret(&key) {
                    "***".to_owned()
                } else {
                    value.into_owned()
                };
                (key.into_owned(), value)
            })
            .collect();
        parsed.query_pairs_mut().clear().extend_pairs(pairs);
    }
    parsed.to_string()
}

/// Whether a URL's query parameter may carry a secret.
fn is_secret(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    key == "auth"
        || ["pass", "pwd", "secret", "token", "key", "credential"]
            .iter()
            .any(|word| key.contains(word))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact("redis://:hunter2@localhost:6379/1"),
            "redis://:***@localhost:6379/1"
        );
        assert_eq!(
            redact("redis://user:hunter2@localhost/"),
            "redis://user:***@localhost/"
        );
        assert_eq!(redact("redis://localhost:6379"), "redis://localhost:6379");
        assert!(!redact("redis//:hunter2@").contains("hunter2"));
        // Every scheme the configuration accepts, with the secret where
        // the client libraries read one: userinfo, and the query (`pass`
        // for the redis crate's Unix sockets).
        for url in [
            "redis://:hunter2@localhost:6379/1",
            "rediss://user:hunter2@localhost:6380/0",
            "redis+unix:///run/redis.sock?db=2&pass=hunter2",
            "unix:///run/redis.sock?pass=hunter2&user=me",
            "redis+unix:///run/redis.sock?password=hunter2",
            "amqp://guest:hunter2@localhost:5672/%2f",
            "amqps://guest:hunter2@localhost:5671/%2f?heartbeat=10",
            "amqp://localhost/%2f?auth_token=hunter2",
        ] {
            let shown = redact(url);
            assert!(!shown.contains("hunter2"), "{url} -> {shown}");
            assert!(shown.contains("***"), "{url} -> {shown}");
        }
        assert_eq!(
            redact("unix:///run/redis.sock?db=2&pass=hunter2&user=me"),
            "unix:///run/redis.sock?db=2&pass=***&user=me"
        );
        assert_eq!(
            redact("amqp://localhost/%2f?heartbeat=10"),
            "amqp://localhost/%2f?heartbeat=10"
        );
        let unix = BusConfig::redis("redis+unix:///x.sock?pass=S3cret").unwrap();
        assert!(!format!("{unix:?}").contains("S3cret"), "{unix:?}");
        let config = BusConfig::redis("redis://:hunter2@localhost:6379").unwrap();
        assert!(!format!("{config:?}").contains("hunter2"));
        let bad = BusConfig::redis("nonsense://:hunter2@x").unwrap_err();
        assert!(!bad.to_string().contains("hunter2"), "{bad}");
    }

    #[test]
    fn a_prefix_must_fit_in_a_channel() {
        assert!(BusConfig::in_process().prefix("A:B").is_err());
        assert!(BusConfig::in_process().prefix("").is_err());
        assert_eq!(BusConfig::in_process().prefix("X").unwrap().prefix, "X");
    }
}
