//! Signals: typed ones declared with `#[derive(Signal)]`, and ones known
//! only at run time ([`DynSignal`]).

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{Map, Value};

use super::wire::{self, WireError};

/// A signal of the bus: a type whose fields are its arguments.
///
/// Derive it, with serde's `Serialize` and `Deserialize`:
///
/// ```
/// use microagent::bus::Signal;
/// use serde::{Deserialize, Serialize};
///
/// // The wire name is the type's name in snake case...
/// #[derive(Signal, Serialize, Deserialize)]
/// struct UserCreated {
///     user_id: u64,
/// }
///
/// // ...or given explicitly.
/// #[derive(Signal, Serialize, Deserialize)]
/// #[signal(name = "comment.added")]
/// struct CommentAdded {
///     comment_id: u64,
///     #[serde(rename = "text")]
///     body: String,
/// }
///
/// assert_eq!(UserCreated::NAME, "user_created");
/// assert_eq!(CommentAdded::ARGS, ["comment_id", "text"]);
/// let args = CommentAdded { comment_id: 7, body: "hi".into() }.to_args().unwrap();
/// assert_eq!(serde_json::Value::Object(args), serde_json::json!({"comment_id": 7, "text": "hi"}));
/// ```
///
/// The derive rejects at compile time what the wire cannot carry: a name
/// with `:` or `#`, the reserved name `response`, and arguments named
/// `signal` or `sender` (a Python receiver takes those as its own
/// parameters).
pub trait Signal: Serialize + DeserializeOwned + Send + 'static {
    /// The signal's name on the wire.
    const NAME: &'static str;
    /// Its arguments' names on the wire (the fields, as serde names them).
    const ARGS: &'static [&'static str];

    /// The signal's arguments, as the JSON object sent on the wire.
    fn to_args(&self) -> Result<Map<String, Value>, SignalError> {
        match serde_json::to_value(self) {
            Ok(Value::Object(args)) => Ok(args),
            Ok(other) => Err(SignalError::NotAnObject {
                signal: Self::NAME.to_owned(),
                found: wire::kind(&other),
            }),
            Err(e) => Err(SignalError::Encode {
                signal: Self::NAME.to_owned(),
                reason: e.to_string(),
            }),
        }
    }

    /// The signal's arguments as the wire's bytes: a JSON object, encoded
    /// in one pass.
    fn to_wire(&self) -> Result<Vec<u8>, SignalError> {
        let bytes = serde_json::to_vec(self).map_err(|e| SignalError::Encode {
            signal: Self::NAME.to_owned(),
            reason: e.to_string(),
        })?;
        if bytes.first() == Some(&b'{') {
            return Ok(bytes);
        }
        // Not an object: say what it is.
        let found = serde_json::from_slice::<Value>(&bytes).map_or("not JSON", |v| wire::kind(&v));
        Err(SignalError::NotAnObject {
            signal: Self::NAME.to_owned(),
            found,
        })
    }

    /// The signal, decoded in one pass from the bytes of a JSON object
    /// received on the wire.
    fn from_wire(bytes: &[u8]) -> Result<Self, SignalError> {
        serde_json::from_slice(bytes).map_err(|e| SignalError::Decode {
            signal: Self::NAME.to_owned(),
            reason: e.to_string(),
        })
    }

    /// The signal, from the arguments received on the wire.
    fn from_args(args: Map<String, Value>) -> Result<Self, SignalError> {
        serde_json::from_value(Value::Object(args)).map_err(|e| SignalError::Decode {
            signal: Self::NAME.to_owned(),
            reason: e.to_string(),
        })
    }
}

/// Why a signal's arguments could not be made or read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SignalError {
    /// The name cannot be used on the wire.
    #[error("invalid signal name: {0}")]
    Name(#[from] WireError),
    /// The name `response` is the bus's own.
    #[error("`response` cannot be a signal name: the bus answers RPC calls on it")]
    Reserved,
    /// An argument is named `signal` or `sender`.
    #[error("signal `{signal}`: `{arg}` cannot be an argument: Python receivers take it as their own parameter")]
    ReservedArg {
        /// The signal.
        signal: String,
        /// The argument.
        arg: String,
    },
    /// The signal's type does not serialize to a JSON object.
    #[error("signal `{signal}` serializes to {found}, not an object of arguments")]
    NotAnObject {
        /// The signal.
        signal: String,
        /// What it serialized to.
        found: &'static str,
    },
    /// The signal could not be serialized.
    #[error("signal `{signal}` could not be encoded: {reason}")]
    Encode {
        /// The signal.
        signal: String,
        /// Why.
        reason: String,
    },
    /// Arguments from the wire do not fit the signal's type.
    #[error("signal `{signal}`: arguments do not fit: {reason}")]
    Decode {
        /// The signal.
        signal: String,
        /// Why (serde's message: the field and what was expected).
        reason: String,
    },
    /// An argument declared with types has a value of another type.
    #[error("signal `{signal}`: argument `{arg}` is {found}, declared as {expected}")]
    WrongType {
        /// The signal.
        signal: String,
        /// The argument.
        arg: String,
        /// The declared types, e.g. `number or null`.
        expected: String,
        /// The value's type.
        found: &'static str,
    },
    /// A declared argument is missing.
    #[error("signal `{signal}`: argument `{arg}` is missing")]
    Missing {
        /// The signal.
        signal: String,
        /// The argument.
        arg: String,
    },
}

/// Checks a signal name: usable in a channel, and not `response`.
pub(crate) fn check_name(name: &str) -> Result<(), SignalError> {
    wire::check_part("signal name", name)?;
    if name == wire::RESPONSE {
        return Err(SignalError::Reserved);
    }
    Ok(())
}

/// Checks an argument name: not `signal` or `sender`.
pub(crate) fn check_arg(signal: &str, arg: &str) -> Result<(), SignalError> {
    if matches!(arg, "signal" | "sender") {
        return Err(SignalError::ReservedArg {
            signal: signal.to_owned(),
            arg: arg.to_owned(),
        });
    }
    Ok(())
}

/// A signal known only at run time: a name and its arguments, for gateways
/// and for the signals of a Python declarations file
/// ([`Declarations`](super::Declarations)).
///
/// Its arguments go on the wire in the order its declaration gives (one
/// made by [`SignalSpec::signal`](super::SignalSpec::signal)), else in
/// the map's order (sorted by name).
#[derive(Debug, Clone, PartialEq)]
pub struct DynSignal {
    name: String,
    args: Map<String, Value>,
    /// The declaration's argument order, if it has one.
    order: Vec<String>,
}

impl DynSignal {
    /// A signal `name` with `args`; the name and argument names are checked
    /// as the derive checks them.
    pub fn new(name: impl Into<String>, args: Map<String, Value>) -> Result<Self, SignalError> {
        let name = name.into();
        check_name(&name)?;
        for arg in args.keys() {
            check_arg(&name, arg)?;
        }
        Ok(DynSignal {
            name,
            args,
            order: Vec::new(),
        })
    }

    /// Puts its arguments on the wire in `order` (names it lacks are
    /// skipped; arguments not named come after, by name).
    pub(super) fn in_order(mut self, order: Vec<String>) -> Self {
        self.order = order;
        self
    }

    /// Whether it has a declaration's argument order.
    pub(super) fn has_order(&self) -> bool {
        !self.order.is_empty()
    }

    /// Its payload as the wire carries it: a JSON object, its keys in the
    /// declaration's order when it has one.
    pub(super) fn encoded(&self) -> Vec<u8> {
        if self.order.is_empty() {
            return super::wire::encode_payload(&self.args);
        }
        // A map of JSON values always serializes.
        serde_json::to_vec(&Ordered(self)).unwrap_or_else(|_| b"{}".to_vec())
    }

    /// The signal's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its arguments.
    pub fn args(&self) -> &Map<String, Value> {
        &self.args
    }

    /// Takes its arguments.
    pub fn into_args(self) -> Map<String, Value> {
        self.args
    }
}

/// A dynamic signal's arguments, serialized in its declaration's order.
struct Ordered<'a>(&'a DynSignal);

impl serde::Serialize for Ordered<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let DynSignal { args, order, .. } = self.0;
        let mut map = serializer.serialize_map(Some(args.len()))?;
        for name in order {
            if let Some(value) = args.get(name) {
                map.serialize_entry(name, value)?;
            }
        }
        for (name, value) in args {
            if !order.contains(name) {
                map.serialize_entry(name, value)?;
            }
        }
        map.end()
    }
}
