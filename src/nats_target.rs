//! Where the NATS bus and broker connect: the servers a `nats://` URL
//! names and the credentials it carries, handed to the client as options
//! (never inside the address, so no client error can show them).
//!
//! `nats://[user:password@ | token@]host[:port][,host[:port]...][?creds=PATH]`:
//! a user and password, or a token alone, or a `.creds` file (a JWT and
//! its NKey seed, as `nsc` writes them). The client reconnects by itself,
//! to any server of the list, for as long as the connection lives.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_nats::{ConnectOptions, Event};
use percent_encoding::percent_decode_str;
use tokio::sync::mpsc;

/// The default port of a NATS server.
const PORT: u16 = 4222;

/// How long one connection attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The first pause before a reconnection attempt.
const FIRST_PAUSE: Duration = Duration::from_millis(50);

/// The servers and credentials of a `nats://` URL.
#[derive(Clone)]
pub(crate) struct NatsTarget {
    /// `nats://host:port` each, without credentials.
    servers: Vec<String>,
    auth: Auth,
}

#[derive(Clone)]
enum Auth {
    None,
    Token(String),
    User { user: String, password: String },
    CredsFile(PathBuf),
}

impl NatsTarget {
    /// The target `url` names; the reason when it names none.
    pub(crate) fn open(url: &str) -> Result<NatsTarget, String> {
        let rest = url
            .strip_prefix("nats://")
            .ok_or("expected a nats:// URL")?;
        let (rest, query) = rest.split_once('?').unwrap_or((rest, ""));
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.contains('/') {
            return Err("a NATS URL has no path".to_owned());
        }
        let (userinfo, hosts) = match rest.rsplit_once('@') {
            Some((userinfo, hosts)) => (Some(userinfo), hosts),
            None => (None, rest),
        };
        let servers = hosts
            .split(',')
            .map(server)
            .collect::<Result<Vec<_>, _>>()?;
        let mut auth = match userinfo {
            None => Auth::None,
            Some(userinfo) => match userinfo.split_once(':') {
                Some((user, password)) => Auth::User {
                    user: decoded(user)?,
                    password: decoded(password)?,
                },
                None => Auth::Token(decoded(userinfo)?),
            },
        };
        for pair in query.split('&').filter(|pair| !pair.is_empty()) {
            match pair.split_once('=') {
                Some(("creds", path)) if matches!(auth, Auth::None) => {
                    auth = Auth::CredsFile(PathBuf::from(decoded(path)?));
                }
                Some(("creds", _)) => {
                    return Err("`creds` and credentials in the URL exclude each other".to_owned())
                }
                _ => {
                    let key = pair.split_once('=').map_or(pair, |(key, _)| key);
                    return Err(format!("unknown parameter `{key}` (known: creds)"));
                }
            }
        }
        Ok(NatsTarget { servers, auth })
    }

    /// Connects in the background: the client is there at once, and
    /// reports its connection's state (and slow consumers) on `events`;
    /// pauses between attempts grow to `reconnect_max`.
    pub(crate) async fn connect(
        &self,
        name: &str,
        reconnect_max: Duration,
        events: mpsc::UnboundedSender<Event>,
    ) -> Result<async_nats::Client, NatsError> {
        let options = match &self.auth {
            Auth::None => ConnectOptions::new(),
            Auth::Token(token) => ConnectOptions::with_token(token.clone()),
            Auth::User { user, password } => {
                ConnectOptions::with_user_and_password(user.clone(), password.clone())
            }
            Auth::CredsFile(path) => ConnectOptions::with_credentials_file(path)
                .await
                .map_err(|e| NatsError(format!("the creds file {}: {e}", path.display())))?,
        };
        let events = Arc::new(events);
        options
            .name(name)
            .retry_on_initial_connect()
            .max_reconnects(None)
            .connection_timeout(CONNECT_TIMEOUT)
            .reconnect_delay_callback(move |attempts| pause(attempts, reconnect_max))
            .event_callback(move |event| {
                let _ = events.send(event);
                async {}
            })
            .connect(self.servers.as_slice())
            .await
            .map_err(|e| NatsError(e.to_string()))
    }
}

/// The pause before reconnection attempt `attempts` (0 for the first).
fn pause(attempts: usize, longest: Duration) -> Duration {
    if attempts == 0 {
        return Duration::ZERO;
    }
    let doublings = u32::try_from(attempts - 1).unwrap_or(u32::MAX).min(16);
    FIRST_PAUSE.saturating_mul(1 << doublings).min(longest)
}

/// `host[:port]` as the client's address.
fn server(host: &str) -> Result<String, String> {
    if host.is_empty() {
        return Err("no host".to_owned());
    }
    let has_port = host
        .rsplit_once(':')
        .is_some_and(|(_, port)| !port.contains(']'));
    Ok(match has_port {
        true => format!("nats://{host}"),
        false => format!("nats://{host}:{PORT}"),
    })
}

fn decoded(part: &str) -> Result<String, String> {
    percent_decode_str(part)
        .decode_utf8()
        .map(|text| text.into_owned())
        .map_err(|_| "a part of the URL is not UTF-8 once decoded".to_owned())
}

/// `part` as one subject token: ASCII letters, digits, `_` and `-` as they
/// are, every other byte as `%XX` (so `.`, `*`, `>`, spaces and `$` cannot
/// reach the server as syntax), and the empty string as `%`.
pub(crate) fn token(part: &str) -> String {
    let mut out = String::with_capacity(part.len());
    push_token(&mut out, part);
    out
}

/// Appends `part` to `out` as [`token`] writes it (one buffer for a
/// whole subject, no string per part).
pub(crate) fn push_token(out: &mut String, part: &str) {
    push_escaped(out, part, '%');
}

/// `part` as a JetStream stream or consumer name (and a subject token):
/// as [`token`], with `~` for the escape. A NATS server 2.9 puts stream
/// names into a format string when it builds ack subjects, so a `%` there
/// would come out garbled and break the client's parser.
#[cfg_attr(not(feature = "nats"), allow(dead_code))]
pub(crate) fn name(part: &str) -> String {
    let mut out = String::with_capacity(part.len());
    push_escaped(&mut out, part, '~');
    out
}

fn push_escaped(out: &mut String, part: &str, escape: char) {
    use std::fmt::Write as _;
    if part.is_empty() {
        return out.push(escape);
    }
    for byte in part.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'_' | b'-' => out.push(byte as char),
            // Writing to a String does not fail.
            _ => {
                let _ = write!(out, "{escape}{byte:02X}");
            }
        }
    }
}

/// A NATS client's failure to connect, as text (the client's own error
/// types carry no secret, but they are not `Clone`).
#[derive(Debug)]
pub(crate) struct NatsError(pub(crate) String);

impl std::fmt::Display for NatsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for NatsError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_give_servers_and_credentials() {
        let target = NatsTarget::open("nats://a,b:4223/").unwrap();
        assert_eq!(target.servers, ["nats://a:4222", "nats://b:4223"]);
        assert!(matches!(target.auth, Auth::None));
        let token = NatsTarget::open("nats://s%40cret@h").unwrap();
        assert!(matches!(token.auth, Auth::Token(t) if t == "s@cret"));
        let user = NatsTarget::open("nats://u:p@h:1").unwrap();
        assert!(
            matches!(user.auth, Auth::User { user, password } if user == "u" && password == "p")
        );
        let creds = NatsTarget::open("nats://h?creds=/etc/x.creds").unwrap();
        assert!(
            matches!(creds.auth, Auth::CredsFile(p) if p == std::path::Path::new("/etc/x.creds"))
        );
        for bad in [
            "redis://h",
            "nats://",
            "nats://h/db",
            "nats://h?x=1",
            "nats://t@h?creds=/c",
        ] {
            assert!(NatsTarget::open(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn pauses_grow_to_the_longest() {
        let longest = Duration::from_secs(2);
        assert_eq!(pause(0, longest), Duration::ZERO);
        assert_eq!(pause(1, longest), FIRST_PAUSE);
        assert_eq!(pause(2, longest), FIRST_PAUSE * 2);
        assert_eq!(pause(60, longest), longest);
    }

    #[test]
    fn names_cannot_widen_a_subject() {
        assert_eq!(token("user_created"), "user_created");
        assert_eq!(token("a.b"), "a%2Eb");
        assert_eq!(token(">"), "%3E");
        assert_eq!(token("*"), "%2A");
        assert_eq!(token("a b\t"), "a%20b%09");
        assert_eq!(token("$roster"), "%24roster");
        assert_eq!(token(""), "%");
        assert_eq!(token("é"), "%C3%A9");
        // Different names stay different subjects.
        assert_ne!(token("%2E"), token("."));
        assert_eq!(name("T1:jobs"), "T1~3Ajobs");
        assert_ne!(name("~3A"), name(":"));
    }
}
