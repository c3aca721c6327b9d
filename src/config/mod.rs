//! Configuration-driven deployment: what changes between environments read
//! from a TOML file under environment-variable overrides, and the agents a
//! binary can run, registered by name.
//!
//! ```toml
//! # microagent.toml
//! agents = ["api"]              # which registered agents run (all by default)
//! shutdown_deadline = 30.0      # seconds
//! http = "127.0.0.1:8080"       # the health endpoints (none by default)
//! log = "info"                  # the log filter (RUST_LOG wins)
//!
//! [bus]
//! url = "redis://127.0.0.1:6379" # none: the in-process bus
//! prefix = "PUBSUB"
//! buffer_messages = 100000       # what one agent buffers from Redis
//! buffer_bytes = 33554432        # (see `BusConfig::buffer`)
//!
//! [broker]
//! url = "amqp://guest:guest@127.0.0.1:5672/%2f"
//! durable = true
//!
//! [metrics]                     # GET /metrics alone (features `metrics`, `web`)
//! listen = "0.0.0.0:9100"       # none by default (`http` serves /metrics too)
//!
//! [otel]                        # spans over OTLP/HTTP (feature `otel`; off by default)
//! endpoint = "http://127.0.0.1:4318"
//! protocol = "http/protobuf"     # or "http/json"
//! service_name = "shop"          # the binary's name by default
//!
//! [admin]                       # dead letters and purges over HTTP (off by default)
//! token = "..."                 # 16 bytes or more; better: MICROAGENT_ADMIN__TOKEN
//! public = false                # served on a non-loopback `http` only when true
//!
//! [agent.mailer]                # deserialized into the mailer's settings
//! sender = "shop@example.com"
//! ```
//!
//! - The file: the path after `--config`, else the environment variable
//!   `MICROAGENT_CONFIG`, else `microagent.toml` in the working directory
//!   when it exists. A file named by the flag or the variable must exist.
//! - Every key can be overridden by an environment variable: `MICROAGENT_`
//!   and the key's path in capitals, its parts joined by `__`
//!   (`MICROAGENT_BUS__URL`, `MICROAGENT_AGENT__MAILER__SENDER`,
//!   `MICROAGENT_SHUTDOWN_DEADLINE`). Values parse as TOML-like scalars,
//!   arrays (`[a, b]`) or tables (`{key = value}`).
//! - No file and no variables: the in-process bus and broker, a 30 s
//!   deadline, no health address, every registered agent.
//! - Unknown keys are errors, and so is a settings table of an agent that is
//!   not registered: a typo never falls back to a default. Errors name the
//!   file or the variable, the key, what was expected and what was found.
//! - URLs are shown with their password as `***` wherever the configuration
//!   is printed ([`Config`]'s `Display` and `Debug`) or logged; the admin
//!   token is never shown.
//! - `[admin] token` turns on the admin endpoints
//!   ([`web::admin`](crate::web::admin): list, requeue and purge dead
//!   letters, purge a queue) on the `http` address, for requests that
//!   carry the token (`Authorization: Bearer <token>`). They need `http`,
//!   and an `http` address that is not loopback needs `public = true`: an
//!   operator's endpoint is never opened on a public port by accident.
//!
//! Run a binary's agents from configuration in one call with
//! [`deploy`](crate::deploy), or build a [`Launcher`](crate::Launcher) with
//! [`Launcher::from_config`](crate::Launcher::from_config).

mod agents;
mod error;
mod file;
mod schedules;

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::providers::{Env, Format, Toml};
use figment::Figment;
use serde::de::DeserializeOwned;

pub use agents::Agents;
pub use error::ConfigError;
use file::File;

use crate::broker::BrokerConfig;
use crate::bus::BusConfig;

/// The prefix of the environment variables that override the file.
pub const ENV_PREFIX: &str = "MICROAGENT_";

/// The environment variable naming the configuration file.
pub const ENV_FILE: &str = "MICROAGENT_CONFIG";

/// The file read when neither `--config` nor `MICROAGENT_CONFIG` names one,
/// if it exists in the working directory.
pub const DEFAULT_FILE: &str = "microagent.toml";

/// A process's configuration: the bus, the broker, the shutdown deadline,
/// the health address, the log filter, which agents run, and each agent's
/// settings. See the [module docs](self) for the file and the variables.
#[derive(Clone)]
pub struct Config {
    figment: Figment,
    file: Option<PathBuf>,
    parsed: File,
    bus: BusConfig,
    broker: BrokerConfig,
}

impl Config {
    /// The configuration of this process: the file named by `--config` in
    /// its arguments or by `MICROAGENT_CONFIG` (else `microagent.toml` if
    /// it exists), under the `MICROAGENT_*` variables.
    pub fn load() -> Result<Config, ConfigError> {
        Config::from_args(std::env::args().skip(1))
    }

    /// As [`load`](Config::load), with the command-line arguments given
    /// (without the program's name): `--config PATH` or `--config=PATH`.
    pub fn from_args<I, S>(args: I) -> Result<Config, ConfigError>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let mut args = args.into_iter().map(Into::into);
        let mut named = None;
        while let Some(arg) = args.next() {
            if arg == "--config" {
                named = Some(args.next().ok_or(ConfigError::Flag)?);
            } else if let Some(path) = arg.strip_prefix("--config=") {
                named = Some(path.to_owned());
            }
        }
        let named = named.or_else(|| std::env::var(ENV_FILE).ok().filter(|p| !p.is_empty()));
        match named {
            Some(path) => Config::from_file(path),
            None if Path::new(DEFAULT_FILE).is_file() => Config::from_file(DEFAULT_FILE),
            None => Config::build(None, Figment::new()),
        }
    }

    /// The file at `path` (it must exist), under the `MICROAGENT_*`
    /// variables.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Config, ConfigError> {
        let path = path.as_ref();
        if !path.is_file() {
            return Err(ConfigError::Missing {
                file: path.to_owned(),
            });
        }
        Config::build(Some(path.to_owned()), Figment::from(Toml::file_exact(path)))
    }

    /// The TOML text `toml`, under the `MICROAGENT_*` variables (for tests
    /// and embedded defaults).
    pub fn from_toml(toml: &str) -> Result<Config, ConfigError> {
        Config::build(None, Figment::from(Toml::string(toml)))
    }

    /// The defaults alone: no file, no variables.
    pub fn defaults() -> Config {
        Config::parse(None, Figment::new()).expect("the defaults are a valid configuration")
    }

    fn build(file: Option<PathBuf>, figment: Figment) -> Result<Config, ConfigError> {
        let env = Env::prefixed(ENV_PREFIX).split("__").ignore(&["config"]);
        Config::parse(file, figment.merge(env))
    }

    fn parse(file: Option<PathBuf>, figment: Figment) -> Result<Config, ConfigError> {
        let parsed: File = figment.extract().map_err(ConfigError::from_figment)?;
        let bus = parsed.bus.to_config(&figment)?;
        let broker = parsed.broker.to_config(&figment)?;
        parsed.admin.check(&figment, parsed.http.as_deref())?;
        parsed.otel.check(&figment)?;
        parsed.metrics.check(&figment)?;
        if parsed.http.is_some() && !cfg!(feature = "web") {
            return Err(ConfigError::invalid(
                file::origin(&figment, "http"),
                "http",
                "the health endpoints need microagent's cargo feature `web`".to_owned(),
            ));
        }
        Ok(Config {
            figment,
            file,
            parsed,
            bus,
            broker,
        })
    }

    /// The address of the metrics-only listener (`[metrics] listen`), if
    /// any.
    pub fn metrics_listen(&self) -> Option<&str> {
        self.parsed.metrics.listen.as_deref()
    }

    /// Where spans are exported (`[otel]`), if anywhere.
    #[cfg(feature = "otel")]
    pub fn otel(&self) -> Option<crate::otel::OtelConfig> {
        self.parsed.otel.to_config()
    }

    /// The file it was read from, if any.
    pub fn file(&self) -> Option<&Path> {
        self.file.as_deref()
    }

    /// The bus (`[bus]`): in-process unless it has a `url`.
    pub fn bus(&self) -> BusConfig {
        self.bus.clone()
    }

    /// The broker (`[broker]`): in-process unless it has a `url`.
    pub fn broker(&self) -> BrokerConfig {
        self.broker.clone()
    }

    /// The shutdown deadline (`shutdown_deadline`, seconds; 30 by default).
    pub fn shutdown_deadline(&self) -> Duration {
        self.parsed
            .shutdown_deadline
            .map_or(Duration::from_secs(30), |s| s.0)
    }

    /// The address of the health endpoints (`http`), if any.
    pub fn http(&self) -> Option<&str> {
        self.parsed.http.as_deref()
    }

    /// The admin endpoints' token (`[admin] token`), if they are on.
    pub fn admin_token(&self) -> Option<&str> {
        self.parsed.admin.token.as_deref()
    }

    /// The log filter (`log`), if any: `env_logger`'s syntax
    /// (`info,microagent=debug`).
    pub fn log(&self) -> Option<&str> {
        self.parsed.log.as_deref()
    }

    /// The agents this process runs (`agents`), if the configuration names
    /// them; `None`: every registered agent.
    pub fn agents(&self) -> Option<&[String]> {
        self.parsed.agents.as_deref()
    }

    /// The names of the agents with a settings table (`[agent.NAME]`).
    pub fn configured_agents(&self) -> impl Iterator<Item = &str> {
        self.parsed.agent.keys().map(String::as_str)
    }

    /// The keys of agent `name`'s `[agent.NAME]` table (none when it has
    /// none; a value that is not a table shows as one key, empty).
    pub(crate) fn agent_settings(&self, name: &str) -> Vec<String> {
        match self.parsed.agent.get(name) {
            Some(figment::value::Value::Dict(_, dict)) => dict.keys().cloned().collect(),
            Some(_) => vec![String::new()],
            None => Vec::new(),
        }
    }

    /// The settings of agent `name`: its `[agent.NAME]` table (an empty
    /// one when there is none) as `S`. Give `S` `#[serde(default)]` to make
    /// keys optional and `#[serde(deny_unknown_fields)]` to make a typo an
    /// error.
    pub fn settings<S: DeserializeOwned>(&self, name: &str) -> Result<S, ConfigError> {
        let key = format!("agent.{name}");
        if self.parsed.agent.contains_key(name) {
            self.figment
                .focus(&key)
                .extract()
                .map_err(|e| ConfigError::from_figment_under(e, &key))
        } else {
            let empty = figment::value::Dict::new();
            Figment::from(figment::providers::Serialized::defaults(empty))
                .extract()
                .map_err(|e| ConfigError::from_figment_under(e, &key))
        }
    }

    /// Starts logging through `env_logger` with the configuration's filter
    /// (`RUST_LOG`, when set, wins; `info` when neither is), timestamps in
    /// milliseconds. A logger installed before wins: then the
    /// configuration's `log` key, if it has one, is not applied, and a
    /// WARN says so.
    pub fn init_logging(&self) {
        let mut builder = env_logger::Builder::new();
        // `tracing` spans as log lines carry only their name, and lapin's
        // come at ERROR level when no `tracing` subscriber is installed
        // (`io_loop;` per AMQP connection); `RUST_LOG=tracing::span=...`
        // brings them back.
        builder.filter_module("tracing::span", log::LevelFilter::Off);
        match std::env::var("RUST_LOG") {
            Ok(filter) if !filter.is_empty() => builder.parse_filters(&filter),
            _ => builder.parse_filters(self.log().unwrap_or("info")),
        };
        builder.format_timestamp_millis();
        if builder.try_init().is_err() {
            if let Some(filter) = self.log() {
                log::warn!(
                    target: crate::LOG_TARGET,
                    "a logger was installed before the configuration was read: its `log` filter ({filter}) is not applied"
                );
            }
        }
    }
}

impl fmt::Display for Config {
    /// The effective configuration, URLs redacted.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let file = self
            .file
            .as_ref()
            .map_or("none".to_owned(), |p| p.display().to_string());
        let agents = self
            .agents()
            .map_or("all registered".to_owned(), |names| names.join(", "));
        let (bus, bus_url) = self.bus.describe();
        let (broker, broker_url) = self.broker.describe();
        write!(
            f,
            "file: {file}; agents: {agents}; bus: {bus} {}; broker: {broker} {}; shutdown deadline: {:?}; http: {}; admin: {}; log: {}",
            bus_url.unwrap_or("(this process)"),
            broker_url.unwrap_or("(this process)"),
            self.shutdown_deadline(),
            self.http().unwrap_or("none"),
            if self.admin_token().is_some() { "on" } else { "off" },
            self.log().unwrap_or("default"),
        )
    }
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("file", &self.file)
            .field("agents", &self.agents())
            .field("bus", &self.bus)
            .field("broker", &self.broker)
            .field("shutdown_deadline", &self.shutdown_deadline())
            .field("http", &self.http())
            .field("admin", &self.admin_token().is_some())
            .field("log", &self.log())
            .finish_non_exhaustive()
    }
}
