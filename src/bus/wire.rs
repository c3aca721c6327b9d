//! The Python original's wire format on Redis: channel names and payloads.
//!
//! - A signal: `PUBLISH {prefix}:{name}:{sender} {json object}`.
//! - An RPC request: the same channel with `#{request_id}` appended.
//! - An RPC answer: `PUBLISH {prefix}:response:{responder}#{request_id}
//!   {"Class.method": value, ...}`.
//!
//! Everything here takes untrusted input: a malformed channel or payload is
//! an error value, never a panic, so one bad message cannot kill a
//! subscription.

use std::fmt;

use serde_json::{Map, Value};

/// The channel name RPC answers are published on.
pub const RESPONSE: &str = "response";

/// The largest payload decoded by default (1 MiB).
pub const MAX_PAYLOAD: usize = 1 << 20;

/// Why a channel name or a payload from the wire was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    /// The channel is not `prefix:name:sender` with an optional `#id`.
    #[error("malformed channel {channel:?}: {reason}")]
    Channel {
        /// The channel, as received (lossily decoded).
        channel: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A part to be put in a channel contains `:` or `#`, or is empty.
    #[error("{what} {part:?} cannot be used in a channel: {reason}")]
    Part {
        /// Which part ("prefix", "signal name", "sender", "request id").
        what: &'static str,
        /// The part.
        part: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The payload is larger than the limit.
    #[error("payload of {size} bytes is over the limit of {limit}")]
    Oversized {
        /// Its size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// The payload is not UTF-8.
    #[error("payload is not UTF-8")]
    NotUtf8,
    /// The payload is not JSON (Python's `NaN` and `Infinity` are not).
    #[error("payload is not JSON: {0}")]
    NotJson(String),
    /// The payload is JSON but not an object.
    #[error("payload is JSON but not an object (it is {0})")]
    NotAnObject(&'static str),
}

/// A parsed channel name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Channel<'a> {
    /// The bus prefix (`PUBSUB` by default).
    pub prefix: &'a str,
    /// The signal's name (`response` for RPC answers).
    pub name: &'a str,
    /// The sender's name (the responder's, for an answer).
    pub sender: &'a str,
    /// The RPC request id, when the channel carries one.
    pub request_id: Option<&'a str>,
}

impl<'a> Channel<'a> {
    /// Parses `prefix:name:sender` or `prefix:name:sender#id`.
    pub fn parse(channel: &'a str) -> Result<Channel<'a>, WireError> {
        let bad = |reason| WireError::Channel {
            channel: channel.to_owned(),
            reason,
        };
        let (head, request_id) = match channel.split_once('#') {
            Some((_, id)) if id.contains('#') => return Err(bad("more than one `#`")),
            Some((_, "")) => return Err(bad("empty request id after `#`")),
            Some((head, id)) => (head, Some(id)),
            None => (channel, None),
        };
        let mut parts = head.split(':');
        let (Some(prefix), Some(name), Some(sender), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(bad("expected exactly three `:`-separated parts"));
        };
        if prefix.is_empty() || name.is_empty() || sender.is_empty() {
            return Err(bad("an empty part"));
        }
        Ok(Channel {
            prefix,
            name,
            sender,
            request_id,
        })
    }

    /// Whether this is an RPC answer (`prefix:response:responder#id`).
    pub fn is_response(&self) -> bool {
        self.name == RESPONSE && self.request_id.is_some()
    }

    /// Checks that every part can be written into a channel.
    pub fn validate(&self) -> Result<(), WireError> {
        check_part("prefix", self.prefix)?;
        check_part("signal name", self.name)?;
        check_part("sender", self.sender)?;
        if let Some(id) = self.request_id {
            check_part("request id", id)?;
        }
        Ok(())
    }

    /// The channel's name on the wire, after [`validate`](Channel::validate).
    pub fn encode(&self) -> Result<String, WireError> {
        self.validate()?;
        Ok(self.to_string())
    }
}

impl fmt::Display for Channel<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.prefix, self.name, self.sender)?;
        if let Some(id) = self.request_id {
            write!(f, "#{id}")?;
        }
        Ok(())
    }
}

/// Checks a part of a channel: not empty, no `:` or `#`.
pub fn check_part(what: &'static str, part: &str) -> Result<(), WireError> {
    // One pass: this runs on every send.
    let reason = match part.bytes().find(|b| matches!(b, b':' | b'#')) {
        _ if part.is_empty() => "it is empty",
        Some(b':') => "it contains `:`",
        Some(_) => "it contains `#`",
        None => return Ok(()),
    };
    Err(WireError::Part {
        what,
        part: part.to_owned(),
        reason,
    })
}

/// The pattern a receiver of signal `name` subscribes to: `prefix:name:*`,
/// with Redis's glob characters in the prefix and the name escaped, so
/// that neither can widen it (`AC?` would match `ACX` too).
pub fn pattern(prefix: &str, name: &str) -> String {
    let mut pattern = String::with_capacity(prefix.len() + name.len() + 3);
    for (part, end) in [(prefix, ":"), (name, ":*")] {
        for c in part.chars() {
            if matches!(c, '*' | '?' | '[' | ']' | '\\') {
                pattern.push('\\');
            }
            pattern.push(c);
        }
        pattern.push_str(end);
    }
    pattern
}

/// Decodes a payload: at most `limit` bytes of UTF-8 JSON holding an object.
pub fn decode_payload(payload: &[u8], limit: usize) -> Result<Map<String, Value>, WireError> {
    if payload.len() > limit {
        return Err(WireError::Oversized {
            size: payload.len(),
            limit,
        });
    }
    let text = std::str::from_utf8(payload).map_err(|_| WireError::NotUtf8)?;
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(object)) => Ok(object),
        Ok(other) => Err(WireError::NotAnObject(kind(&other))),
        Err(e) => Err(WireError::NotJson(e.to_string())),
    }
}

/// Checks a payload without decoding it: at most `limit` bytes of UTF-8
/// JSON holding an object. Receivers then decode it into their own types.
pub fn check_payload(payload: &[u8], limit: usize) -> Result<(), WireError> {
    if payload.len() > limit {
        return Err(WireError::Oversized {
            size: payload.len(),
            limit,
        });
    }
    let text = std::str::from_utf8(payload).map_err(|_| WireError::NotUtf8)?;
    if text.trim_start().starts_with('{') {
        if let Err(e) = serde_json::from_str::<serde::de::IgnoredAny>(text) {
            return Err(WireError::NotJson(e.to_string()));
        }
        return Ok(());
    }
    // Not an object: say what it is, as `decode_payload` does.
    decode_payload(payload, limit).map(drop)
}

/// Encodes a payload as compact JSON (Python reads compact JSON and raw
/// UTF-8 as well as its own `json.dumps` output).
pub fn encode_payload(payload: &Map<String, Value>) -> Vec<u8> {
    // A map of JSON values always serializes.
    serde_json::to_vec(payload).unwrap_or_else(|_| b"{}".to_vec())
}

/// A JSON value's kind, as the declarations file names it.
pub(crate) fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

#[cfg(test)]
mod tests;
