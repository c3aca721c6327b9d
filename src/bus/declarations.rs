//! The Python side's declarations file: `{"signals": [...], "queues": [...],
//! "default_prefix": "..."}`, with the argument types it declares.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::{Map, Value};

use super::signal::{check_arg, check_name, DynSignal, SignalError};
use super::wire;

/// Signals and queues declared in a Python microagent declarations file.
///
/// ```
/// use microagent::bus::{ArgType, Declarations};
///
/// let declarations = Declarations::from_json(r#"{
///     "signals": [
///         {"name": "user_created", "providing_args": ["user_id"]},
///         {"name": "typed", "providing_args": {"uuid": "string", "code": ["number", "null"]}}
///     ],
///     "queues": [{"name": "mailer"}, {"name": "push_a", "exchange": "push"}],
///     "default_prefix": "PUBSUB"
/// }"#).unwrap();
///
/// let typed = declarations.signal("typed").unwrap();
/// assert_eq!(typed.args[1].types, Some(vec![ArgType::Number, ArgType::Null]));
/// let ok = serde_json::json!({"uuid": "abc", "code": null});
/// assert!(typed.signal(ok.as_object().unwrap().clone()).is_ok());
/// let wrong = serde_json::json!({"uuid": 1, "code": 2});
/// assert!(typed.signal(wrong.as_object().unwrap().clone()).is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Declarations {
    /// The signals, in file order.
    pub signals: Vec<SignalSpec>,
    /// The queues, in file order.
    pub queues: Vec<QueueSpec>,
    /// The bus prefix the file sets, if it does.
    pub default_prefix: Option<String>,
}

/// One declared signal.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SignalSpec {
    /// Its name.
    pub name: String,
    /// Its arguments, in file order.
    pub args: Vec<ArgSpec>,
}

/// One declared argument.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ArgSpec {
    /// Its name.
    pub name: String,
    /// The types it may have; `None` when declared without types (the list
    /// form of `providing_args`).
    pub types: Option<Vec<ArgType>>,
}

/// An argument type, as the declarations file names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ArgType {
    /// `"string"`.
    String,
    /// `"number"` (integer or float).
    Number,
    /// `"object"`.
    Object,
    /// `"array"`.
    Array,
    /// `"boolean"`.
    Boolean,
    /// `"null"`.
    Null,
}

impl ArgType {
    fn name(self) -> &'static str {
        match self {
            ArgType::String => "string",
            ArgType::Number => "number",
            ArgType::Object => "object",
            ArgType::Array => "array",
            ArgType::Boolean => "boolean",
            ArgType::Null => "null",
        }
    }

    /// Whether `value` is of this type.
    pub fn matches(self, value: &Value) -> bool {
        wire::kind(value) == self.name()
    }
}

impl fmt::Display for ArgType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One declared queue.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct QueueSpec {
    /// Its name.
    pub name: String,
    /// The exchange it is bound to (AMQP), if any.
    pub exchange: Option<String>,
}

/// Why a declarations file was refused.
#[derive(Debug, thiserror::Error)]
#[error("declarations{}: {problem}", file.as_ref().map(|f| format!(" file `{}`", f.display())).unwrap_or_default())]
pub struct DeclarationError {
    /// The file, when read from one.
    pub file: Option<PathBuf>,
    /// What is wrong.
    pub problem: DeclarationProblem,
}

/// What is wrong with a declarations file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DeclarationProblem {
    /// The file could not be read.
    #[error("cannot be read: {0}")]
    Read(#[from] std::io::Error),
    /// It is not JSON of the expected shape.
    #[error("{0}")]
    Format(#[from] serde_json::Error),
    /// A signal is not valid.
    #[error("signal `{signal}`: {source}")]
    Signal {
        /// The signal's name.
        signal: String,
        /// Why.
        source: Box<SignalError>,
    },
    /// A name is declared twice.
    #[error("signal `{0}` is declared twice")]
    Duplicate(String),
    /// A queue is not valid.
    #[error("queue {queue:?}: {reason}")]
    Queue {
        /// The queue's name.
        queue: String,
        /// Why.
        reason: &'static str,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    signals: Vec<RawSignal>,
    #[serde(default)]
    queues: Vec<RawQueue>,
    #[serde(default)]
    default_prefix: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSignal {
    name: String,
    #[serde(default)]
    providing_args: Option<RawArgs>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RawArgs {
    Names(Vec<String>),
    Typed(OrderedArgs),
}

/// `{"name": types, ...}` in file order (`serde_json::Map` sorts its keys).
struct OrderedArgs(Vec<(String, Value)>);

impl<'de> Deserialize<'de> for OrderedArgs {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Entries;

        impl<'de> serde::de::Visitor<'de> for Entries {
            type Value = OrderedArgs;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a map of argument names to types")
            }

            fn visit_map<M: serde::de::MapAccess<'de>>(
                self,
                mut map: M,
            ) -> Result<OrderedArgs, M::Error> {
                let mut entries = Vec::new();
                while let Some(entry) = map.next_entry::<String, Value>()? {
                    entries.push(entry);
                }
                Ok(OrderedArgs(entries))
            }
        }

        deserializer.deserialize_map(Entries)
    }
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RawTypes {
    One(ArgType),
    Many(Vec<ArgType>),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawQueue {
    name: String,
    #[serde(default)]
    exchange: Option<String>,
}

impl Declarations {
    /// Reads a declarations file.
    pub fn load(path: impl AsRef<Path>) -> Result<Self, DeclarationError> {
        let path = path.as_ref();
        let in_file = |problem| DeclarationError {
            file: Some(path.to_owned()),
            problem,
        };
        let text = std::fs::read_to_string(path).map_err(|e| in_file(e.into()))?;
        Self::parse(&text).map_err(in_file)
    }

    /// Parses the contents of a declarations file.
    pub fn from_json(text: &str) -> Result<Self, DeclarationError> {
        Self::parse(text).map_err(|problem| DeclarationError {
            file: None,
            problem,
        })
    }

    fn parse(text: &str) -> Result<Self, DeclarationProblem> {
        let raw: RawFile = serde_json::from_str(text)?;
        let mut signals: Vec<SignalSpec> = Vec::with_capacity(raw.signals.len());
        for signal in raw.signals {
            let spec = SignalSpec::from_raw(signal)?;
            if signals.iter().any(|s| s.name == spec.name) {
                return Err(DeclarationProblem::Duplicate(spec.name));
            }
            signals.push(spec);
        }
        let queues = raw
            .queues
            .into_iter()
            .map(|q| {
                if q.name.is_empty() {
                    return Err(DeclarationProblem::Queue {
                        queue: q.name,
                        reason: "a queue needs a name",
                    });
                }
                Ok(QueueSpec {
                    name: q.name,
                    exchange: q.exchange,
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(Declarations {
            signals,
            queues,
            default_prefix: raw.default_prefix,
        })
    }

    /// The signal declared as `name`.
    pub fn signal(&self, name: &str) -> Option<&SignalSpec> {
        self.signals.iter().find(|s| s.name == name)
    }

    /// The queue declared as `name`, to send to with
    /// [`Broker::send_declared`](crate::broker::Broker::send_declared).
    pub fn queue(&self, name: &str) -> Option<&QueueSpec> {
        self.queues.iter().find(|q| q.name == name)
    }
}

impl SignalSpec {
    fn from_raw(raw: RawSignal) -> Result<Self, DeclarationProblem> {
        let invalid = |source| DeclarationProblem::Signal {
            signal: raw.name.clone(),
            source: Box::new(source),
        };
        check_name(&raw.name).map_err(invalid)?;
        let args = match raw.providing_args {
            None => Vec::new(),
            Some(RawArgs::Names(names)) => names
                .into_iter()
                .map(|name| ArgSpec { name, types: None })
                .collect(),
            Some(RawArgs::Typed(OrderedArgs(typed))) => typed
                .into_iter()
                .map(|(name, types)| {
                    let types = match serde_json::from_value::<RawTypes>(types) {
                        Ok(RawTypes::One(one)) => vec![one],
                        Ok(RawTypes::Many(many)) => many,
                        Err(e) => {
                            return Err(invalid(SignalError::Decode {
                                signal: raw.name.clone(),
                                reason: format!("argument `{name}`: {e}"),
                            }))
                        }
                    };
                    Ok(ArgSpec {
                        name,
                        types: Some(types),
                    })
                })
                .collect::<Result<_, _>>()?,
        };
        for arg in &args {
            check_arg(&raw.name, &arg.name).map_err(invalid)?;
        }
        Ok(SignalSpec {
            name: raw.name,
            args,
        })
    }

    /// Checks arguments against the declaration: each declared argument is
    /// present and, when declared with types, has one of them. Arguments
    /// the declaration does not name are allowed (Python producers may
    /// send them; Python receivers only warn).
    pub fn check(&self, args: &Map<String, Value>) -> Result<(), SignalError> {
        for arg in &self.args {
            let Some(value) = args.get(&arg.name) else {
                return Err(SignalError::Missing {
                    signal: self.name.clone(),
                    arg: arg.name.clone(),
                });
            };
            if let Some(types) = &arg.types {
                if !types.iter().any(|t| t.matches(value)) {
                    let expected: Vec<&str> = types.iter().map(|t| t.name()).collect();
                    return Err(SignalError::WrongType {
                        signal: self.name.clone(),
                        arg: arg.name.clone(),
                        expected: expected.join(" or "),
                        found: wire::kind(value),
                    });
                }
            }
        }
        Ok(())
    }

    /// This signal with `args`, after [`check`](SignalSpec::check).
    pub fn signal(&self, args: Map<String, Value>) -> Result<DynSignal, SignalError> {
        self.check(&args)?;
        let order = self.args.iter().map(|arg| arg.name.clone()).collect();
        Ok(DynSignal::new(self.name.clone(), args)?.in_order(order))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problem(text: &str) -> String {
        Declarations::from_json(text).unwrap_err().to_string()
    }

    #[test]
    fn a_declared_signal_keeps_its_argument_order_on_the_wire_and_queues_are_found() {
        let d = Declarations::from_json(
            r#"{"signals": [{"name": "typed", "providing_args": {"uuid": "string", "code": ["number", "null"]}}],
                "queues": [{"name": "mailer"}, {"name": "push_a", "exchange": "push"}]}"#,
        )
        .unwrap();
        let mut args = Map::new();
        args.insert("code".into(), Value::from(1));
        args.insert("uuid".into(), Value::from("u-1"));
        let declared = d.signal("typed").unwrap().signal(args.clone()).unwrap();
        let bytes = String::from_utf8(declared.encoded()).unwrap();
        assert_eq!(bytes, r#"{"uuid":"u-1","code":1}"#);
        // Without a declaration: the map's order.
        let plain = DynSignal::new("typed", args).unwrap();
        assert_eq!(
            String::from_utf8(plain.encoded()).unwrap(),
            r#"{"code":1,"uuid":"u-1"}"#
        );
        assert_eq!(
            d.queue("push_a").and_then(|q| q.exchange.as_deref()),
            Some("push")
        );
        assert!(d.queue("nope").is_none());
    }

    #[test]
    fn the_originals_example_file_loads() {
        let d = Declarations::from_json(
            r#"{"signals": [{"name": "user_created", "providing_args": ["user_id"]},
                {"name": "typed", "providing_args": {"uuid": "string", "code": ["number", "null"]}}],
                "queues": [{"name": "mailer"}, {"name": "push_a", "exchange": "push"}],
                "default_prefix": "PUBSUB"}"#,
        )
        .unwrap();
        assert_eq!(d.signals.len(), 2);
        assert_eq!(d.signals[0].args[0].types, None);
        assert_eq!(d.signals[1].args[0].types, Some(vec![ArgType::String]));
        assert_eq!(d.queues[1].exchange.as_deref(), Some("push"));
        assert_eq!(d.default_prefix.as_deref(), Some("PUBSUB"));
    }

    #[test]
    fn what_the_wire_cannot_carry_is_refused_with_the_signal_named() {
        assert_eq!(
            problem(r#"{"signals": [{"name": "a:b"}]}"#),
            "declarations: signal `a:b`: invalid signal name: signal name \"a:b\" cannot be used in a channel: it contains `:`"
        );
        assert!(problem(r#"{"signals": [{"name": "response"}]}"#)
            .contains("`response` cannot be a signal name"));
        assert!(
            problem(r#"{"signals": [{"name": "x", "providing_args": ["sender"]}]}"#)
                .contains("`sender` cannot be an argument")
        );
        assert!(
            problem(r#"{"signals": [{"name": "x"}, {"name": "x"}]}"#).contains("declared twice")
        );
        assert!(
            problem(r#"{"signals": [{"name": "x", "providing_args": {"a": "float"}}]}"#)
                .contains("argument `a`")
        );
        assert!(problem(r#"{"signal": []}"#).contains("unknown field `signal`"));
    }

    #[test]
    fn arguments_are_checked_against_their_declared_types() {
        let d = Declarations::from_json(
            r#"{"signals": [{"name": "typed", "providing_args": {"uuid": "string", "code": ["number", "null"]}}]}"#,
        )
        .unwrap();
        let typed = d.signal("typed").unwrap();
        let args = |v: Value| v.as_object().cloned().unwrap();
        typed
            .check(&args(serde_json::json!({"uuid": "u", "code": 1.5})))
            .unwrap();
        typed
            .check(&args(
                serde_json::json!({"uuid": "u", "code": null, "extra": true}),
            ))
            .unwrap();
        assert_eq!(
            typed
                .check(&args(serde_json::json!({"uuid": "u", "code": "1"})))
                .unwrap_err()
                .to_string(),
            "signal `typed`: argument `code` is string, declared as number or null"
        );
        assert_eq!(
            typed
                .check(&args(serde_json::json!({"code": 1})))
                .unwrap_err()
                .to_string(),
            "signal `typed`: argument `uuid` is missing"
        );
    }

    #[test]
    fn a_file_that_cannot_be_read_is_named() {
        let error = Declarations::load("/nonexistent/declarations.json").unwrap_err();
        assert!(error
            .to_string()
            .starts_with("declarations file `/nonexistent/declarations.json`: cannot be read"));
    }
}
