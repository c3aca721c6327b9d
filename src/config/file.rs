//! The configuration's shape, as serde reads it: every table refuses
//! unknown keys.

use std::collections::BTreeMap;
use std::time::Duration;

use figment::Figment;
use serde::{Deserialize, Deserializer};

use super::error::ConfigError;
use crate::backend::{by_name, by_url, Registration, Unavailable};
use crate::broker::BrokerConfig;
use crate::bus::BusConfig;

/// The whole file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct File {
    pub(super) agents: Option<Vec<String>>,
    pub(super) shutdown_deadline: Option<Seconds>,
    pub(super) http: Option<String>,
    pub(super) log: Option<String>,
    #[serde(default)]
    pub(super) bus: BusSection,
    #[serde(default)]
    pub(super) broker: BrokerSection,
    #[serde(default)]
    pub(super) admin: AdminSection,
    #[serde(default)]
    pub(super) otel: OtelSection,
    #[serde(default)]
    pub(super) metrics: MetricsSection,
    /// Each agent's settings, read when the agent is built.
    #[serde(default)]
    pub(super) agent: BTreeMap<String, figment::value::Value>,
}

/// A duration in seconds: a non-negative number.
#[derive(Debug, Clone, Copy)]
pub(super) struct Seconds(pub(super) Duration);

impl<'de> Deserialize<'de> for Seconds {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;

        impl serde::de::Visitor<'_> for Visitor {
            type Value = Seconds;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a number of seconds, 0 or more")
            }

            fn visit_f64<E: serde::de::Error>(self, seconds: f64) -> Result<Seconds, E> {
                Duration::try_from_secs_f64(seconds)
                    .map(Seconds)
                    .map_err(|_| E::invalid_value(serde::de::Unexpected::Float(seconds), &self))
            }

            fn visit_u64<E: serde::de::Error>(self, seconds: u64) -> Result<Seconds, E> {
                Ok(Seconds(Duration::from_secs(seconds)))
            }

            fn visit_i64<E: serde::de::Error>(self, seconds: i64) -> Result<Seconds, E> {
                u64::try_from(seconds)
                    .map(|s| Seconds(Duration::from_secs(s)))
                    .map_err(|_| E::invalid_value(serde::de::Unexpected::Signed(seconds), &self))
            }
        }

        deserializer.deserialize_any(Visitor)
    }
}

/// Where a key's value comes from, for an error.
pub(super) fn origin(figment: &Figment, key: &str) -> String {
    let path: Vec<&str> = key.split('.').collect();
    super::error::origin(figment.find_metadata(key), &path)
}

/// The backend a section asks for, from the channel's registered
/// `backends`: its `kind`, else its URL's scheme, else in-process (`None`);
/// `section` names it in errors.
fn backend<Open: Copy>(
    figment: &Figment,
    section: &str,
    kind: Option<&str>,
    url: Option<&str>,
    backends: &'static [Registration<Open>],
) -> Result<Option<(Open, &'static str)>, ConfigError> {
    let (kind_key, url_key) = (format!("{section}.kind"), format!("{section}.url"));
    let refused =
        |key: &str, problem: String| ConfigError::invalid(origin(figment, key), key, problem);
    let by_kind = match kind {
        None | Some("in-process") => None,
        Some(name) => Some(by_name(backends, name).map_err(|e| match e {
            Unavailable::UnknownName(_) => {
                refused(&kind_key, format!("unknown value `{name}`; {e}"))
            }
            _ => refused(&kind_key, e.to_string()),
        })?),
    };
    let by_url = match url {
        None => None,
        Some(url) => Some(by_url(backends, url).map_err(|e| {
            refused(
                &url_key,
                format!("{e}, found {}", crate::backend::redact(url)),
            )
        })?),
    };
    match (kind, by_kind, by_url) {
        (Some("in-process"), _, Some(of_url)) => Err(refused(
            &kind_key,
            format!(
                "`in-process` does not match the URL's scheme ({})",
                of_url.name
            ),
        )),
        (_, Some(kind), Some(of_url)) if kind.name != of_url.name => Err(refused(
            &kind_key,
            format!(
                "`{}` does not match the URL's scheme ({})",
                kind.name, of_url.name
            ),
        )),
        (_, Some(kind), None) => Err(ConfigError::invalid(
            origin(figment, &kind_key),
            &url_key,
            format!("missing: `kind = \"{}\"` needs a URL", kind.name),
        )),
        (_, _, Some(chosen)) => Ok(Some((chosen.open, chosen.name))),
        (_, None, None) => Ok(None),
    }
}

/// `[bus]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct BusSection {
    kind: Option<String>,
    url: Option<String>,
    prefix: Option<String>,
    max_payload: Option<usize>,
    subscribe_timeout: Option<Seconds>,
    reconnect_max: Option<Seconds>,
    /// What one agent may buffer from Redis: signals, and their bytes.
    buffer_messages: Option<usize>,
    buffer_bytes: Option<usize>,
}

impl BusSection {
    pub(super) fn to_config(&self, figment: &Figment) -> Result<BusConfig, ConfigError> {
        let (kind, url) = (self.kind.as_deref(), self.url.as_deref());
        let chosen = backend(figment, "bus", kind, url, crate::bus::BACKENDS)?;
        let refused =
            |key: &str, problem: String| ConfigError::invalid(origin(figment, key), key, problem);
        let mut config = match (chosen, url) {
            (Some((open, _)), Some(url)) => {
                open(url).map_err(|e| refused("bus.url", e.to_string()))?
            }
            _ => BusConfig::in_process(),
        };
        if let Some(prefix) = &self.prefix {
            config = config
                .prefix(prefix)
                .map_err(|e| refused("bus.prefix", e.to_string()))?;
        }
        if let Some(bytes) = self.max_payload {
            config = config.max_payload(bytes);
        }
        if let Some(Seconds(timeout)) = self.subscribe_timeout {
            config = config.subscribe_timeout(timeout);
        }
        if let Some(Seconds(pause)) = self.reconnect_max {
            config = config.reconnect_max(pause);
        }
        if self.buffer_messages.is_some() || self.buffer_bytes.is_some() {
            let default = crate::bus::BUFFER;
            config = config.buffer(
                self.buffer_messages.unwrap_or(default.messages),
                self.buffer_bytes.unwrap_or(default.bytes),
            );
        }
        Ok(config)
    }
}

/// `[admin]`: the admin endpoints on the `http` address, off unless a
/// token is set.
#[derive(Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct AdminSection {
    pub(super) token: Option<String>,
    /// Whether an `http` address that is not loopback may serve them.
    pub(super) public: Option<bool>,
}

impl std::fmt::Debug for AdminSection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminSection")
            .field("token", &self.token.as_ref().map(|_| "***"))
            .field("public", &self.public)
            .finish()
    }
}

impl AdminSection {
    /// Checks the section against the `http` address it is served on.
    pub(super) fn check(&self, figment: &Figment, http: Option<&str>) -> Result<(), ConfigError> {
        let Some(token) = &self.token else {
            return Ok(());
        };
        let refused =
            |key: &str, problem: String| ConfigError::invalid(origin(figment, key), key, problem);
        if !cfg!(feature = "web") {
            return Err(refused(
                "admin.token",
                "the admin endpoints need microagent's cargo feature `web`".to_owned(),
            ));
        }
        let Some(http) = http else {
            return Err(refused(
                "admin.token",
                "the admin endpoints are served on the `http` address: set it".to_owned(),
            ));
        };
        if token.len() < MIN_TOKEN {
            return Err(refused(
                "admin.token",
                format!("expected a token of {MIN_TOKEN} bytes or more"),
            ));
        }
        if !is_loopback(http) && self.public != Some(true) {
            // Named where the token is: `public` is what is missing.
            return Err(ConfigError::invalid(
                origin(figment, "admin.token"),
                "admin.public",
                format!(
                    "`http` ({http}) is not a loopback address: the admin endpoints are served there only with `public = true`"
                ),
            ));
        }
        Ok(())
    }
}

/// `[metrics]`: a listener serving `GET /metrics` alone (features
/// `metrics` and `web`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct MetricsSection {
    /// Its address, `host:port`.
    pub(super) listen: Option<String>,
}

impl MetricsSection {
    /// Refuses a listener the build cannot serve.
    pub(super) fn check(&self, figment: &Figment) -> Result<(), ConfigError> {
        if self.listen.is_some() && !cfg!(all(feature = "metrics", feature = "web")) {
            return Err(ConfigError::invalid(
                origin(figment, "metrics.listen"),
                "metrics.listen",
                "a metrics listener needs microagent's cargo features `metrics` and `web`"
                    .to_owned(),
            ));
        }
        Ok(())
    }
}

/// `[otel]`: where spans are exported (feature `otel`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct OtelSection {
    /// The collector's OTLP/HTTP base address.
    pub(super) endpoint: Option<String>,
    /// `http/protobuf` (the default) or `http/json`.
    pub(super) protocol: Option<String>,
    /// `service.name`; the binary's name by default.
    pub(super) service_name: Option<String>,
    /// How long one export may take, in seconds.
    pub(super) timeout: Option<Seconds>,
}

impl OtelSection {
    /// Checks the section: it needs the feature, an endpoint, and a
    /// protocol OTLP/HTTP has.
    pub(super) fn check(&self, figment: &Figment) -> Result<(), ConfigError> {
        let refused =
            |key: &str, problem: String| ConfigError::invalid(origin(figment, key), key, problem);
        let set = self.endpoint.is_some()
            || self.protocol.is_some()
            || self.service_name.is_some()
            || self.timeout.is_some();
        if !set {
            return Ok(());
        }
        if !cfg!(feature = "otel") {
            return Err(refused(
                "otel.endpoint",
                "exporting spans needs microagent's cargo feature `otel`".to_owned(),
            ));
        }
        if self.endpoint.is_none() {
            return Err(refused(
                "otel.endpoint",
                "expected the collector's OTLP/HTTP address (http://host:4318)".to_owned(),
            ));
        }
        match self.protocol.as_deref() {
            None | Some("http/protobuf" | "http/json") => Ok(()),
            Some(other) => Err(refused(
                "otel.protocol",
                format!("expected `http/protobuf` or `http/json`, found `{other}`"),
            )),
        }
    }

    /// The exporter's configuration, when the section names an endpoint.
    #[cfg(feature = "otel")]
    pub(super) fn to_config(&self) -> Option<crate::otel::OtelConfig> {
        let endpoint = self.endpoint.as_ref()?;
        let mut config = crate::otel::OtelConfig::new(endpoint.clone())
            .json(self.protocol.as_deref() == Some("http/json"));
        if let Some(name) = &self.service_name {
            config = config.service_name(name.clone());
        }
        if let Some(timeout) = self.timeout {
            config = config.timeout(timeout.0);
        }
        Some(config)
    }
}

/// The shortest admin token (as `web::MIN_TOKEN_LEN`, which needs `web`).
const MIN_TOKEN: usize = 16;

/// Whether `host:port` names this machine only.
fn is_loopback(address: &str) -> bool {
    let host = address.rsplit_once(':').map_or(address, |(host, _)| host);
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// `[broker]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct BrokerSection {
    kind: Option<String>,
    url: Option<String>,
    namespace: Option<String>,
    capacity: Option<usize>,
    lease: Option<Seconds>,
    durable: Option<bool>,
    dead_letters_suffix: Option<String>,
    connect_timeout: Option<Seconds>,
    group: Option<String>,
}

impl BrokerSection {
    pub(super) fn to_config(&self, figment: &Figment) -> Result<BrokerConfig, ConfigError> {
        let (kind, url) = (self.kind.as_deref(), self.url.as_deref());
        let chosen = backend(figment, "broker", kind, url, crate::broker::BACKENDS)?;
        let refused = |e: crate::broker::BrokerError| {
            ConfigError::invalid(origin(figment, "broker.url"), "broker.url", e.to_string())
        };
        let mut config = match (chosen, url) {
            (Some((open, _)), Some(url)) => open(url).map_err(refused)?,
            _ => BrokerConfig::in_process(),
        };
        if let Some(namespace) = &self.namespace {
            config = config.namespace(namespace);
        }
        if let Some(messages) = self.capacity {
            config = config.capacity(messages);
        }
        if let Some(Seconds(lease)) = self.lease {
            config = config.lease(lease);
        }
        if let Some(durable) = self.durable {
            config = config.durable(durable);
        }
        if let Some(suffix) = &self.dead_letters_suffix {
            config = config.dead_letters_suffix(suffix);
        }
        if let Some(Seconds(timeout)) = self.connect_timeout {
            config = config.connect_timeout(timeout);
        }
        if let Some(group) = &self.group {
            config = config.group(group);
        }
        Ok(config)
    }
}
