//! Why a configuration was refused: what, where (the file or the
//! environment variable) and which key.

use std::path::PathBuf;

use figment::error::{Actual, Kind};

use super::ENV_PREFIX;

/// Why a configuration cannot be used. Nothing in it shows a password or a
/// string value from the configuration (a setting may be a secret).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// `--config` was the last argument.
    #[error("`--config` needs a path after it")]
    Flag,
    /// The file named by `--config` or `MICROAGENT_CONFIG` does not exist.
    #[error("configuration file `{}` does not exist", file.display())]
    Missing {
        /// The file.
        file: PathBuf,
    },
    /// A key has a value that cannot be used, is unknown, or is missing.
    #[error("configuration {origin}: {}{problem}", at(key))]
    Invalid {
        /// Where the value comes from: ``file `x.toml` ``, ``environment
        /// variable `MICROAGENT_BUS__URL` ``...
        origin: String,
        /// The key's path (`bus.url`, `agent.mailer.sender`); empty when
        /// the text does not parse.
        key: String,
        /// What was expected and what was found.
        problem: String,
    },
    /// `agents` names an agent, or an `[agent.NAME]` table configures one,
    /// that the binary does not register.
    #[error("configuration: `{key}` names agent `{name}`, which this binary does not have (it has: {known})")]
    UnknownAgent {
        /// The key (`agents`, or `agent.NAME`).
        key: String,
        /// The name.
        name: String,
        /// The names the binary registers, comma-separated.
        known: String,
    },
}

impl ConfigError {
    /// The first of figment's errors, with where it comes from.
    pub(super) fn from_figment(error: figment::Error) -> ConfigError {
        ConfigError::from_figment_under(error, "")
    }

    /// The first of figment's errors, for a value read under `prefix` (a
    /// dotted key; empty for the whole configuration).
    pub(super) fn from_figment_under(error: figment::Error, prefix: &str) -> ConfigError {
        let mut key: Vec<String> = prefix
            .split('.')
            .filter(|part| !part.is_empty())
            .map(str::to_owned)
            .collect();
        key.extend(error.path.iter().cloned());
        if let Kind::UnknownField(field, _) = &error.kind {
            if key.last() != Some(field) {
                key.push(field.clone());
            }
        }
        let origin = origin(error.metadata.as_ref(), &key);
        ConfigError::Invalid {
            origin,
            key: key.join("."),
            problem: problem(&error.kind),
        }
    }

    /// An error of the value at `key`, from `origin`.
    pub(super) fn invalid(origin: String, key: &str, problem: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            origin,
            key: key.to_owned(),
            problem: problem.into(),
        }
    }
}

/// `` `key`: `` before a problem, when there is a key.
fn at(key: &str) -> String {
    if key.is_empty() {
        String::new()
    } else {
        format!("`{key}`: ")
    }
}

/// Where the value at `key` comes from: its file, its environment
/// variable, or the provider's name.
pub(super) fn origin<S: AsRef<str>>(metadata: Option<&figment::Metadata>, key: &[S]) -> String {
    match metadata {
        Some(meta) => match &meta.source {
            Some(figment::Source::File(path)) => format!("file `{}`", path.display()),
            _ if meta.name.contains("environment") => {
                let parts: Vec<&str> = key.iter().map(AsRef::as_ref).collect();
                format!(
                    "environment variable `{ENV_PREFIX}{}`",
                    parts.join("__").to_uppercase()
                )
            }
            _ => meta.name.to_string(),
        },
        None => "defaults".to_owned(),
    }
}

/// What was expected and what was found, without the text of a string
/// (it may be a password).
fn problem(kind: &Kind) -> String {
    let found = |actual: &Actual| match actual {
        Actual::Str(_) | Actual::Char(_) | Actual::Bytes(_) => "a string".to_owned(),
        other => other.to_string(),
    };
    match kind {
        Kind::InvalidType(actual, expected) | Kind::InvalidValue(actual, expected) => {
            format!("expected {expected}, found {}", found(actual))
        }
        Kind::UnknownField(field, expected) => format!(
            "unknown key `{field}`; expected one of: {}",
            expected.join(", ")
        ),
        Kind::UnknownVariant(found, expected) => format!(
            "unknown value `{found}`; expected one of: {}",
            expected.join(", ")
        ),
        Kind::MissingField(field) => format!("missing key `{field}`"),
        other => other.to_string(),
    }
}
