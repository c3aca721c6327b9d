//! The configuration's shape, as serde reads it: every table refuses
//! unknown keys.

use std::collections::BTreeMap;
use std::time::Duration;

use figment::Figment;
use serde::{Deserialize, Deserializer};

use super::error::ConfigError;
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

/// What serves as bus or broker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(super) enum Backend {
    InProcess,
    Redis,
    Amqp,
}

impl Backend {
    fn name(self) -> &'static str {
        match self {
            Backend::InProcess => "in-process",
            Backend::Redis => "redis",
            Backend::Amqp => "amqp",
        }
    }

    /// The backend a URL's scheme names.
    fn of_url(url: &str) -> Option<Backend> {
        let scheme = url.split_once("://")?.0;
        match scheme {
            "redis" | "rediss" | "redis+unix" | "unix" => Some(Backend::Redis),
            "amqp" | "amqps" => Some(Backend::Amqp),
            _ => None,
        }
    }
}

/// Where a key's value comes from, for an error.
pub(super) fn origin(figment: &Figment, key: &str) -> String {
    let path: Vec<&str> = key.split('.').collect();
    super::error::origin(figment.find_metadata(key), &path)
}

/// The backend a section asks for: its `kind`, else its URL's scheme, else
/// in-process; `section` names it in errors.
fn backend(
    figment: &Figment,
    section: &str,
    kind: Option<Backend>,
    url: Option<&str>,
    allowed: &[Backend],
) -> Result<Backend, ConfigError> {
    let schemes = || {
        allowed
            .iter()
            .filter_map(|b| match b {
                Backend::InProcess => None,
                Backend::Redis => Some("redis://"),
                Backend::Amqp => Some("amqp://"),
            })
            .collect::<Vec<_>>()
            .join(" or ")
    };
    let url_key = format!("{section}.url");
    let from_url = match url {
        Some(url) => match Backend::of_url(url).filter(|b| allowed.contains(b)) {
            Some(backend) => Some(backend),
            None => {
                return Err(ConfigError::invalid(
                    origin(figment, &url_key),
                    &url_key,
                    format!(
                        "expected a {} URL, found {}",
                        schemes(),
                        crate::bus::redact(url)
                    ),
                ))
            }
        },
        None => None,
    };
    let chosen = match (kind, from_url) {
        (Some(kind), Some(of_url)) if kind != of_url => {
            return Err(ConfigError::invalid(
                origin(figment, &format!("{section}.kind")),
                &format!("{section}.kind"),
                format!(
                    "`{}` does not match the URL's scheme ({})",
                    kind.name(),
                    of_url.name()
                ),
            ))
        }
        (Some(kind), _) => kind,
        (None, Some(of_url)) => of_url,
        (None, None) => Backend::InProcess,
    };
    if !allowed.contains(&chosen) {
        let names: Vec<_> = allowed.iter().map(|b| b.name()).collect();
        return Err(ConfigError::invalid(
            origin(figment, &format!("{section}.kind")),
            &format!("{section}.kind"),
            format!(
                "expected one of: {}, found `{}`",
                names.join(", "),
                chosen.name()
            ),
        ));
    }
    if chosen != Backend::InProcess && url.is_none() {
        return Err(ConfigError::invalid(
            origin(figment, &format!("{section}.kind")),
            &format!("{section}.url"),
            format!("missing: `kind = \"{}\"` needs a URL", chosen.name()),
        ));
    }
    Ok(chosen)
}

/// `[bus]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct BusSection {
    kind: Option<Backend>,
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
        let chosen = backend(
            figment,
            "bus",
            self.kind,
            self.url.as_deref(),
            &[Backend::InProcess, Backend::Redis],
        )?;
        let refused =
            |key: &str, problem: String| ConfigError::invalid(origin(figment, key), key, problem);
        let mut config = match (chosen, &self.url) {
            (Backend::Redis, Some(url)) => {
                BusConfig::redis(url).map_err(|e| refused("bus.url", e.to_string()))?
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

/// `[broker]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct BrokerSection {
    kind: Option<Backend>,
    url: Option<String>,
    namespace: Option<String>,
    capacity: Option<usize>,
    lease: Option<Seconds>,
    durable: Option<bool>,
    dead_letters_suffix: Option<String>,
}

impl BrokerSection {
    pub(super) fn to_config(&self, figment: &Figment) -> Result<BrokerConfig, ConfigError> {
        let chosen = backend(
            figment,
            "broker",
            self.kind,
            self.url.as_deref(),
            &[Backend::InProcess, Backend::Redis, Backend::Amqp],
        )?;
        let refused = |e: crate::broker::BrokerError| {
            ConfigError::invalid(origin(figment, "broker.url"), "broker.url", e.to_string())
        };
        let mut config = match (chosen, &self.url) {
            (Backend::Redis, Some(url)) => BrokerConfig::redis(url).map_err(refused)?,
            (Backend::Amqp, Some(url)) => BrokerConfig::amqp(url).map_err(refused)?,
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
        Ok(config)
    }
}
