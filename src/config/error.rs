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
    #[error("configuration {origin}: `{key}`: {problem}")]
    Invalid {
        /// Where the value comes from: ``file `x.toml` ``, ``environment
        /// variable `MICROAGENT_BUS__URL` ``...
        origin: String,
        /// The key's path (`bus.url`, `agent.mailer.sender`).
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
        let mut key = error.path.clone();
        if let Kind::UnknownField(field, _) = &error.kind {
            key.push(field.clone());
        }
        let origin = origin(error.metadata.as_ref(), &key);
        ConfigError::Invalid {
            origin,
            key: if key.is_empty() {
                "(top level)".to_owned()
            } else {
                key.join(".")
            },
            problem: problem(&error.kind),
        }
    }

    /// The same error for a value read under `key`.
    pub(super) fn under(self, prefix: &str) -> ConfigError {
        match self {
            ConfigError::Invalid {
                origin,
                key,
                problem,
            } => ConfigError::Invalid {
                origin,
                key: if key == "(top level)" {
                    prefix.to_owned()
                } else {
                    format!("{prefix}.{key}")
                },
                problem,
            },
            other => other,
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
