//! What every backend (of the bus or the broker) shares, at the bottom of
//! the crate: where it is ([`Endpoint`], its URL with the secrets
//! redacted) and how its failures travel ([`BackendError`], the client
//! library's error kept as the `source`, with no secret in its text),
//! and how often it failed ([`Failures`]).
//!
//! It names no backend and no client crate.

use std::error::Error;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// A backend's URL, and the same URL as it may be shown (secrets
/// replaced by `***`). Its `Debug` shows only the redacted one.
#[derive(Clone)]
pub(crate) struct Endpoint {
    url: String,
    redacted: String,
}

impl Endpoint {
    pub(crate) fn new(url: &str) -> Self {
        Endpoint {
            url: url.to_owned(),
            redacted: redact(url),
        }
    }

    /// The URL itself, for the client library only.
    #[cfg_attr(not(feature = "amqp"), allow(dead_code))]
    pub(crate) fn url(&self) -> &str {
        &self.url
    }

    /// The URL as logs, errors and info show it.
    pub(crate) fn redacted(&self) -> &str {
        &self.redacted
    }

    /// Wraps a client library's error, with any secret of this URL taken
    /// out of its text.
    pub(crate) fn error(&self, error: impl Error + Send + Sync + 'static) -> BackendError {
        BackendError::new(error, &secrets(&self.url))
    }
}

impl fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted)
    }
}

/// A backend client's error (Redis, AMQP, ...), kept as the `source` of a
/// [`BusError`](crate::bus::BusError) or
/// [`BrokerError`](crate::broker::BrokerError) so that the chain of causes
/// stays walkable. When the client's message would show a secret of the
/// URL, only the message with the secret replaced by `***` is kept.
///
/// Two are equal when their messages are.
#[derive(Clone)]
pub struct BackendError {
    inner: Inner,
}

#[derive(Clone)]
enum Inner {
    Source(Arc<dyn Error + Send + Sync>),
    Redacted(String),
}

impl BackendError {
    /// `error`, unless its text holds one of `secrets`.
    pub(crate) fn new(error: impl Error + Send + Sync + 'static, secrets: &[String]) -> Self {
        let text = error.to_string();
        let inner = if secrets
            .iter()
            .any(|s| !s.is_empty() && text.contains(s.as_str()))
        {
            let mut shown = text;
            for secret in secrets.iter().filter(|s| !s.is_empty()) {
                shown = shown.replace(secret.as_str(), "***");
            }
            Inner::Redacted(shown)
        } else {
            Inner::Source(Arc::new(error))
        };
        BackendError { inner }
    }

    /// An error the backend code itself describes (a refusal that carries
    /// no client error).
    #[cfg_attr(not(feature = "amqp"), allow(dead_code))]
    pub(crate) fn message(text: impl Into<String>) -> Self {
        BackendError {
            inner: Inner::Redacted(text.into()),
        }
    }
}

impl fmt::Display for BackendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.inner {
            Inner::Source(error) => fmt::Display::fmt(error, f),
            Inner::Redacted(text) => f.write_str(text),
        }
    }
}

impl fmt::Debug for BackendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The client's own `Debug` may show what its `Display` hides.
        f.debug_tuple("BackendError")
            .field(&self.to_string())
            .finish()
    }
}

impl Error for BackendError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match &self.inner {
            Inner::Source(error) => error.source(),
            Inner::Redacted(_) => None,
        }
    }
}

impl PartialEq for BackendError {
    fn eq(&self, other: &Self) -> bool {
        self.to_string() == other.to_string()
    }
}

impl Eq for BackendError {}

/// The secrets `url` carries: its password, and the values of query
/// parameters that may hold one (see [`redact`]).
fn secrets(url: &str) -> Vec<String> {
    let Ok(parsed) = url::Url::parse(url).or_else(|e| match one_host(url) {
        Some(one) => url::Url::parse(&one),
        None => Err(e),
    }) else {
        return Vec::new();
    };
    let mut found: Vec<String> = Vec::new();
    if let Some(secret) = userinfo_secret(&parsed) {
        found.push(secret.to_owned());
        // The client may show it decoded.
        if let Ok(decoded) = percent_encoding::percent_decode_str(secret).decode_utf8() {
            found.push(decoded.into_owned());
        }
    }
    found.extend(
        parsed
            .query_pairs()
            .filter(|(key, _)| is_secret(key))
            .map(|(_, value)| value.into_owned()),
    );
    found
}

/// `url` with its secrets replaced by `***`: the password of its userinfo
/// (or its user name when it has no password: a token), and the value of any query parameter a client library may read one from
/// (the `redis` crate reads `pass` for `redis+unix://` and `unix://` URLs;
/// any key that names a password, secret, token or key is taken for one).
/// A URL that does not parse is replaced whole, as it may hold one
/// anywhere; one that names several hosts (`redis+sentinel://:pw@h1:26379,
/// h2:26379/mymaster`) is redacted the same way, its hosts kept.
pub fn redact(url: &str) -> String {
    let Ok(mut parsed) = url::Url::parse(url) else {
        return redact_hosts(url).unwrap_or_else(|| "<unparsable URL>".to_owned());
    };
    let token = parsed.password().is_none() && userinfo_secret(&parsed).is_some();
    if parsed.password().is_some() && parsed.set_password(Some("***")).is_err() {
        return "<redacted>".to_owned();
    }
    if token && parsed.set_username("***").is_err() {
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

/// A URL naming several hosts, which the `url` crate does not parse:
/// redacted with one placeholder host in their place, then its hosts put
/// back; `None` when it is not such a URL.
fn redact_hosts(url: &str) -> Option<String> {
    let (one, hosts) = one_host_and_hosts(url)?;
    let redacted = redact(&one);
    redacted
        .contains(PLACEHOLDER)
        .then(|| redacted.replacen(PLACEHOLDER, &hosts, 1))
}

/// The host that stands for a URL's several hosts.
const PLACEHOLDER: &str = "hosts.invalid";

/// A URL naming several hosts with one placeholder host in their place.
fn one_host(url: &str) -> Option<String> {
    one_host_and_hosts(url).map(|(one, _)| one)
}

/// A URL naming several hosts (`scheme://[userinfo@]h1,h2/...`) with one
/// placeholder host in their place, and the hosts; `None` for any other.
fn one_host_and_hosts(url: &str) -> Option<(String, String)> {
    let (scheme, rest) = url.split_once("://")?;
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let (userinfo, hosts) = match authority.rsplit_once('@') {
        Some((userinfo, hosts)) => (Some(userinfo), hosts),
        None => (None, authority),
    };
    if !hosts.contains(',') || hosts.contains(PLACEHOLDER) {
        return None;
    }
    let one = match userinfo {
        Some(userinfo) => format!("{scheme}://{userinfo}@{PLACEHOLDER}{tail}"),
        None => format!("{scheme}://{PLACEHOLDER}{tail}"),
    };
    Some((one, hosts.to_owned()))
}

/// The secret of a URL's userinfo: its password, or a user name given
/// without one, which clients take for a token (`nats://TOKEN@host`).
fn userinfo_secret(parsed: &url::Url) -> Option<&str> {
    match (parsed.username(), parsed.password()) {
        (_, Some(password)) => Some(password),
        ("", None) | ("***", None) => None,
        (token, None) => Some(token),
    }
}

/// Whether a URL's query parameter may carry a secret.
fn is_secret(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    key == "auth"
        || ["pass", "pwd", "secret", "token", "key", "credential"]
            .iter()
            .any(|word| key.contains(word))
}

/// One backend of a channel (bus or broker) as its registration point
/// lists it, compiled in or not: `open` is `None` when its cargo feature
/// is off, so a configuration that asks for it gets an error naming the
/// feature rather than an unknown scheme.
#[derive(Debug)]
pub(crate) struct Registration<Open: 'static> {
    /// Its `kind` in a configuration (`redis`, `amqp`, ...).
    pub(crate) name: &'static str,
    /// The URL schemes it takes, without `://`.
    pub(crate) schemes: &'static [&'static str],
    /// The cargo feature that compiles it.
    pub(crate) feature: &'static str,
    /// Its configuration from a URL, when compiled in.
    pub(crate) open: Option<Open>,
}

/// The URL schemes of Redis, for the bus and the broker alike: one server
/// (TCP, TLS, a Unix socket), a Sentinel-served master, a cluster.
pub(crate) const REDIS_SCHEMES: &[&str] = &[
    "redis",
    "rediss",
    "redis+unix",
    "unix",
    "redis+sentinel",
    "redis+cluster",
];

/// Why a channel's backend cannot be had from a URL or a name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Unavailable {
    /// No backend takes this URL's scheme; the schemes that are known.
    UnknownScheme(Vec<&'static str>),
    /// No backend has this name; the names that are known.
    #[cfg_attr(not(feature = "config"), allow(dead_code))]
    UnknownName(Vec<&'static str>),
    /// The backend exists, but its cargo feature is off.
    FeatureOff {
        /// The backend.
        name: &'static str,
        /// The feature to turn on.
        feature: &'static str,
    },
}

impl fmt::Display for Unavailable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Unavailable::UnknownScheme(schemes) => {
                let mut schemes: Vec<String> =
                    schemes.iter().map(|s| format!("{s}://")).collect();
                let last = schemes.pop().unwrap_or_default();
                match schemes.is_empty() {
                    true => write!(f, "expected a {last} URL"),
                    false => write!(f, "expected a {} or {last} URL", schemes.join(", ")),
                }
            }
            Unavailable::UnknownName(names) => {
                write!(f, "expected one of: {}", names.join(", "))
            }
            Unavailable::FeatureOff { name, feature } => write!(
                f,
                "the `{name}` backend is not compiled in: turn on microagent's cargo feature `{feature}`"
            ),
        }
    }
}

/// A backend that is compiled in: its name, and how its configuration is
/// made.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Compiled<Open> {
    /// (The configuration names it in errors.)
    #[cfg_attr(not(feature = "config"), allow(dead_code))]
    pub(crate) name: &'static str,
    pub(crate) open: Open,
}

/// The backend of `backends` whose scheme `url` has, compiled in.
pub(crate) fn by_url<Open: Copy>(
    backends: &'static [Registration<Open>],
    url: &str,
) -> Result<Compiled<Open>, Unavailable> {
    let scheme = url.split_once("://").map_or("", |(scheme, _)| scheme);
    let found = backends.iter().find(|b| b.schemes.contains(&scheme));
    compiled(found.ok_or_else(|| {
        Unavailable::UnknownScheme(
            backends
                .iter()
                .flat_map(|b| b.schemes.iter().copied())
                .collect(),
        )
    })?)
}

/// The backend of `backends` named `name`, compiled in (`in-process` is
/// the channel's own, not listed).
#[cfg_attr(not(feature = "config"), allow(dead_code))]
pub(crate) fn by_name<Open: Copy>(
    backends: &'static [Registration<Open>],
    name: &str,
) -> Result<Compiled<Open>, Unavailable> {
    let found = backends.iter().find(|b| b.name == name);
    compiled(found.ok_or_else(|| {
        let mut names = vec!["in-process"];
        names.extend(backends.iter().map(|b| b.name));
        Unavailable::UnknownName(names)
    })?)
}

fn compiled<Open: Copy>(backend: &Registration<Open>) -> Result<Compiled<Open>, Unavailable> {
    match backend.open {
        Some(open) => Ok(Compiled {
            name: backend.name,
            open,
        }),
        None => Err(Unavailable::FeatureOff {
            name: backend.name,
            feature: backend.feature,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Client(String);

    impl fmt::Display for Client {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(&self.0)
        }
    }

    impl Error for Client {}

    fn open() {}

    static LISTED: &[Registration<fn()>] = &[
        Registration {
            name: "on",
            schemes: &["on"],
            feature: "on",
            open: Some(open),
        },
        Registration {
            name: "off",
            schemes: &["off", "offs"],
            feature: "off-feature",
            open: None,
        },
    ];

    #[test]
    fn a_backend_is_found_by_scheme_or_name_and_one_compiled_out_names_its_feature() {
        assert_eq!(by_url(LISTED, "on://host").map(|b| b.name), Ok("on"));
        assert_eq!(by_name(LISTED, "on").map(|b| b.name), Ok("on"));
        let off = Unavailable::FeatureOff {
            name: "off",
            feature: "off-feature",
        };
        assert_eq!(
            by_url(LISTED, "offs://host").map(|b| b.name),
            Err(off.clone())
        );
        assert_eq!(by_name(LISTED, "off").map(|b| b.name), Err(off.clone()));
        assert_eq!(
            off.to_string(),
            "the `off` backend is not compiled in: turn on microagent's cargo feature `off-feature`"
        );
        let scheme = by_url(LISTED, "http://host").map(|b| b.name).unwrap_err();
        assert_eq!(
            scheme.to_string(),
            "expected a on://, off:// or offs:// URL"
        );
        let name = by_name(LISTED, "rabbit").map(|b| b.name).unwrap_err();
        assert_eq!(name.to_string(), "expected one of: in-process, on, off");
    }

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
            "nats://hunter2@localhost:4222",
            "nats://user:hunter2@a:4222,b:4222",
        ] {
            let shown = redact(url);
            assert!(!shown.contains("hunter2"), "{url} -> {shown}");
            assert!(shown.contains("***"), "{url} -> {shown}");
        }
        assert_eq!(
            redact("unix:///run/redis.sock?db=2&pass=hunter2&user=me"),
            "unix:///run/redis.sock?db=2&pass=***&user=me"
        );
        // A user name without a password is a token.
        assert_eq!(
            redact("nats://s3cr3t@localhost:4222"),
            "nats://***@localhost:4222"
        );
        assert_eq!(
            secrets("nats://s3cr3t@localhost:4222"),
            ["s3cr3t", "s3cr3t"]
        );
        assert_eq!(
            redact("amqp://localhost/%2f?heartbeat=10"),
            "amqp://localhost/%2f?heartbeat=10"
        );
    }

    #[test]
    fn a_client_error_keeps_its_text_and_loses_the_secrets() {
        let endpoint = Endpoint::new("amqp://guest:hun%40ter2@localhost/%2f?auth_token=tok3n");
        assert!(!format!("{endpoint:?}").contains("ter2"));
        let plain = endpoint.error(Client("connection refused".into()));
        assert_eq!(plain.to_string(), "connection refused");
        for leaked in ["bad login hun@ter2", "bad login hun%40ter2", "token tok3n"] {
            let error = endpoint.error(Client(leaked.into()));
            let shown = format!("{error} {error:?}");
            assert!(shown.contains("***"), "{shown}");
            assert!(
                !shown.contains("ter2") && !shown.contains("tok3n"),
                "{shown}"
            );
        }
    }
}

/// How often a backend lost its server and how its operations failed:
/// what the bus's hub and each broker backend count, and what their info
/// and the metrics read.
#[derive(Debug, Default)]
pub(crate) struct Failures {
    disconnects: AtomicU64,
    errors: AtomicU64,
    /// Of the errors, those while connected.
    server_errors: AtomicU64,
}

/// What [`Failures`] counted so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FailureCounts {
    /// Connections lost (up, then down).
    pub(crate) disconnects: u64,
    /// Operations that failed.
    pub(crate) errors: u64,
    /// Of those, the ones while connected: the server refused or did not
    /// answer. The others failed because the connection was down or went
    /// down under them.
    pub(crate) server_errors: u64,
}

impl Failures {
    /// The connection was lost.
    pub(crate) fn disconnected(&self) {
        self.disconnects.fetch_add(1, Ordering::Relaxed);
    }

    /// An operation failed; `connected`: whether the backend was connected
    /// when it did (a backend that sees a lost connection in the error
    /// notes it first).
    pub(crate) fn failed(&self, connected: bool) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        if connected {
            self.server_errors.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The counts so far.
    pub(crate) fn counts(&self) -> FailureCounts {
        let read = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        FailureCounts {
            disconnects: read(&self.disconnects),
            errors: read(&self.errors),
            server_errors: read(&self.server_errors),
        }
    }
}
