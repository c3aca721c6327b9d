//! The agents a binary can run, registered by name, and the launcher a
//! configuration builds from them.

use std::fmt;

use serde::de::DeserializeOwned;

use super::schedules::schedules;
use super::{Config, ConfigError};
use crate::agent::{IntoAgent, Scheduled};
use crate::launcher::Launcher;

/// Adds one registered agent, built from the configuration, to a launcher.
type Add = Box<dyn Fn(&Config, Launcher) -> Result<Launcher, ConfigError>>;

struct Entry {
    name: String,
    add: Add,
}

/// The agents a binary can run, by name: the configuration's `agents` list
/// picks which of them a process runs (all of them when it has none), and
/// each one's `[agent.NAME]` table becomes its settings.
///
/// One binary, several deployments: every agent in one process on a
/// laptop, one agent per process in production. Whatever runs in one
/// process is a group: when one of its agents stops, the group stops.
///
/// ```
/// use microagent::prelude::*;
/// use microagent::config::{Agents, Config};
/// use serde::Deserialize;
///
/// #[derive(Default, MicroAgent)]
/// struct Stock;
///
/// #[microagent::hooks]
/// impl Stock {}
///
/// #[derive(Deserialize)]
/// #[serde(deny_unknown_fields)]
/// struct MailerSettings {
///     sender: String,
/// }
///
/// #[derive(MicroAgent)]
/// struct Mailer {
///     sender: String,
/// }
///
/// #[microagent::hooks]
/// impl Mailer {}
///
/// let agents = Agents::new()
///     .agent("stock", Stock::default)
///     .agent_with("mailer", |s: MailerSettings| Mailer { sender: s.sender });
///
/// let config = Config::from_toml(r#"
///     agents = ["mailer"]
///     [agent.mailer]
///     sender = "shop@example.com"
/// "#).unwrap();
/// let launcher = microagent::Launcher::from_config(&config, &agents).unwrap();
///
/// let typo = Config::from_toml(r#"agents = ["mailr"]"#).unwrap();
/// let refused = microagent::Launcher::from_config(&typo, &agents).unwrap_err();
/// assert_eq!(
///     refused.to_string(),
///     "configuration: `agents` names agent `mailr`, which this binary does not have (it has: stock, mailer)"
/// );
/// ```
#[derive(Default)]
#[must_use]
pub struct Agents {
    entries: Vec<Entry>,
}

impl fmt::Debug for Agents {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.names()).finish()
    }
}

impl Agents {
    /// No agents yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers an agent without settings as `name`; `make` builds it
    /// when the configuration picks it. A `[agent.NAME]` table for it is
    /// an error, unless it holds only `tasks` (its tasks' schedules).
    ///
    /// # Panics
    /// When `name` is registered already.
    pub fn agent<T, F>(self, name: &str, make: F) -> Self
    where
        F: Fn() -> T + 'static,
        T: IntoAgent + Send + 'static,
        T::Agent: Send,
    {
        let key = format!("agent.{name}");
        let owned = name.to_owned();
        self.register(
            name,
            Box::new(move |config, launcher| {
                if let Some(setting) = config
                    .agent_settings(&owned)
                    .into_iter()
                    .find(|k| k != "tasks")
                {
                    let key = format!("{key}.{setting}");
                    return Err(ConfigError::invalid(
                        super::file::origin(&config.figment, &key),
                        &key,
                        "this agent takes no settings (only `tasks`, its tasks' schedules)",
                    ));
                }
                add_scheduled(config, launcher, &owned, make())
            }),
        )
    }

    /// Registers an agent as `name`, built by `make` from its settings:
    /// its `[agent.NAME]` table (an empty table when there is none)
    /// deserialized as `S` (see [`Config::settings`]). The key `tasks` of
    /// that table sets its tasks' schedules (see [`config`](super)); a
    /// settings type that denies unknown fields must allow it.
    ///
    /// # Panics
    /// When `name` is registered already.
    pub fn agent_with<S, T, F>(self, name: &str, make: F) -> Self
    where
        S: DeserializeOwned,
        F: Fn(S) -> T + 'static,
        T: IntoAgent + Send + 'static,
        T::Agent: Send,
    {
        let owned = name.to_owned();
        self.register(
            name,
            Box::new(move |config, launcher| {
                let settings = config.settings::<S>(&owned)?;
                add_scheduled(config, launcher, &owned, make(settings))
            }),
        )
    }

    fn register(mut self, name: &str, add: Add) -> Self {
        assert!(
            !self.entries.iter().any(|e| e.name == name),
            "microagent: agent `{name}` is registered twice"
        );
        self.entries.push(Entry {
            name: name.to_owned(),
            add,
        });
        self
    }

    /// The registered names, in registration order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().map(|e| e.name.as_str())
    }

    fn unknown(&self, key: &str, name: &str) -> ConfigError {
        ConfigError::UnknownAgent {
            key: key.to_owned(),
            name: name.to_owned(),
            known: self.names().collect::<Vec<_>>().join(", "),
        }
    }

    /// A launcher for what `config` asks of these agents.
    pub(crate) fn launcher(&self, config: &Config) -> Result<Launcher, ConfigError> {
        for name in config.configured_agents() {
            if !self.names().any(|n| n == name) {
                return Err(self.unknown(&format!("agent.{name}"), name));
            }
        }
        let picked: Vec<&Entry> = match config.agents() {
            None => self.entries.iter().collect(),
            Some([]) => {
                return Err(ConfigError::invalid(
                    super::file::origin(&config.figment, "agents"),
                    "agents",
                    "expected at least one agent's name, found an empty list",
                ))
            }
            Some(names) => {
                let mut picked = Vec::with_capacity(names.len());
                for name in names {
                    let entry = self
                        .entries
                        .iter()
                        .find(|e| &e.name == name)
                        .ok_or_else(|| self.unknown("agents", name))?;
                    if !picked.iter().any(|p: &&Entry| p.name == entry.name) {
                        picked.push(entry);
                    }
                }
                picked
            }
        };
        let mut launcher = Launcher::new()
            .shutdown_deadline(config.shutdown_deadline())
            .bus(config.bus())
            .broker(config.broker());
        #[cfg(feature = "otel")]
        if let Some(otel) = config.otel() {
            launcher = launcher.otel(otel);
        }
        for entry in picked {
            launcher = (entry.add)(config, launcher)?;
        }
        // Refused at loading without the feature `web`.
        #[cfg(feature = "web")]
        if let Some(bind) = config.http() {
            let mut health = crate::web::HealthServer::new(bind);
            if let Some(token) = config.admin_token() {
                health = health.admin(token);
            }
            launcher = launcher.agent(health);
        }
        // Refused at loading without the features `metrics` and `web`.
        #[cfg(all(feature = "metrics", feature = "web"))]
        if let Some(bind) = config.metrics_listen() {
            launcher = launcher.agent(crate::web::MetricsServer::new(bind));
        }
        Ok(launcher)
    }
}

/// Adds `agent`, registered as `name`, with the tasks' schedules the
/// configuration sets for it.
fn add_scheduled<T>(
    config: &Config,
    launcher: Launcher,
    name: &str,
    agent: T,
) -> Result<Launcher, ConfigError>
where
    T: IntoAgent + Send + 'static,
    T::Agent: Send,
{
    Ok(match schedules::<T::Agent>(config, name)? {
        Some(schedules) => launcher.agent(Scheduled { agent, schedules }),
        None => launcher.agent(agent),
    })
}

// The configuration builds on the launcher, not the other way round: this
// constructor lives with what it reads.
impl Launcher {
    /// The launcher `config` describes, for `agents`: the agents it picks
    /// (every registered one when it names none), each built from its
    /// settings, the bus, the broker, the shutdown deadline, and the health
    /// endpoints on its `http` address. See [`config`](crate::config).
    pub fn from_config(config: &Config, agents: &Agents) -> Result<Launcher, ConfigError> {
        agents.launcher(config)
    }
}
