//! Which bus takes which signals: what a NATS publisher cannot ask the
//! server, and a call needs (how many buses will answer).
//!
//! Each bus announces the signals its receivers take on
//! `{prefix}.$roster` (`$` never appears in an escaped name, so no signal
//! subject can be this one): when the set changes (before it confirms a
//! subscription, so a peer hears of it before the agent's `post_start`),
//! every [`HEARTBEAT`], with an empty set when it closes, and in answer to
//! a newcomer's request (`ask`). A peer not heard of for [`EXPIRY`] is
//! forgotten, so a bus killed without a word delays calls (to their
//! timeout) for that long at most.
//!
//! Before a call counts the buses, it reads every announcement the client
//! has already received, so a subscription confirmed before the call was
//! made (and announced before it was confirmed) is counted: the server
//! forwards messages to one connection in the order it took them.

use std::collections::{BTreeSet, HashMap};
use std::future::poll_fn;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use async_nats::{Message, Subscriber};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};

/// How often a bus with receivers announces them.
pub(super) const HEARTBEAT: Duration = Duration::from_secs(2);

/// How long a peer not heard of stays on the roster.
pub(super) const EXPIRY: Duration = Duration::from_secs(7);

/// The roster's subject under `prefix` (escaped).
pub(super) fn subject(prefix: &str) -> String {
    format!("{prefix}.$roster")
}

/// One bus's announcement.
#[derive(Serialize, Deserialize)]
struct Announcement {
    bus: String,
    signals: BTreeSet<String>,
    /// A newcomer asks every bus to announce itself.
    #[serde(default)]
    ask: bool,
}

/// What the roster knows.
pub(super) struct Roster {
    own: String,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    own_signals: BTreeSet<String>,
    peers: HashMap<String, Peer>,
    feed: Option<Feed>,
}

struct Peer {
    signals: BTreeSet<String>,
    seen: Instant,
}

/// The subscription announcements arrive on, and the waker of the task
/// that reads it (a catch-up reads with that waker, so the task is still
/// woken for what comes next).
struct Feed {
    subscriber: Subscriber,
    waker: Option<Waker>,
}

/// What an announcement asks of this bus.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Heard {
    Nothing,
    /// A newcomer asked: announce yourself.
    Asked,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Roster {
    /// The roster of the bus `own`.
    pub(super) fn new(own: &str) -> Roster {
        Roster {
            own: own.to_owned(),
            state: Mutex::default(),
        }
    }

    /// Reads announcements from `subscriber` from now on.
    pub(super) fn listen(&self, subscriber: Subscriber) {
        lock(&self.state).feed = Some(Feed {
            subscriber,
            waker: None,
        });
    }

    /// The next announcement (`None` once the subscription ended).
    pub(super) async fn next(&self) -> Option<Message> {
        poll_fn(|cx| {
            let mut state = lock(&self.state);
            let Some(feed) = state.feed.as_mut() else {
                return Poll::Ready(None);
            };
            feed.waker = Some(cx.waker().clone());
            feed.subscriber.poll_next_unpin(cx)
        })
        .await
    }

    /// How many buses take `signal`, this one included.
    pub(super) fn buses_taking(&self, signal: &str) -> usize {
        self.catch_up();
        let state = lock(&self.state);
        let peers = state
            .peers
            .values()
            .filter(|peer| peer.signals.contains(signal))
            .count();
        peers + usize::from(state.own_signals.contains(signal))
    }

    /// Applies what the client has received and no one has read yet.
    fn catch_up(&self) {
        let mut state = lock(&self.state);
        let Some(feed) = state.feed.as_mut() else {
            return;
        };
        let waker = feed.waker.clone().unwrap_or_else(|| Waker::noop().clone());
        let mut cx = Context::from_waker(&waker);
        let mut heard = Vec::new();
        while let Poll::Ready(Some(message)) = feed.subscriber.poll_next_unpin(&mut cx) {
            heard.push(message);
        }
        for message in heard {
            // Asked for an announcement: the reading task answers the
            // next one it reads; a heartbeat covers a missed one.
            let _ = apply(&self.own, &mut state, &message.payload, Instant::now());
        }
    }

    /// Applies one announcement.
    pub(super) fn heard(&self, payload: &[u8]) -> Result<Heard, String> {
        apply(&self.own, &mut lock(&self.state), payload, Instant::now())
    }

    /// Forgets the peers not heard of for [`EXPIRY`].
    pub(super) fn expire(&self, now: Instant) {
        lock(&self.state)
            .peers
            .retain(|_, peer| now.duration_since(peer.seen) < EXPIRY);
    }

    /// This bus takes `signals` now.
    pub(super) fn set_own(&self, signals: impl Iterator<Item = String>) {
        lock(&self.state).own_signals = signals.collect();
    }

    /// This bus takes `signal` now (its subscription is on its way to the
    /// server, ahead of anything published after).
    pub(super) fn take_signal(&self, signal: &str) {
        lock(&self.state).own_signals.insert(signal.to_owned());
    }

    /// This bus no longer takes `signal`.
    pub(super) fn drop_signal(&self, signal: &str) {
        lock(&self.state).own_signals.remove(signal);
    }

    /// Whether this bus takes any signal.
    pub(super) fn has_own(&self) -> bool {
        !lock(&self.state).own_signals.is_empty()
    }

    /// This bus's announcement (`ask`: asking the others for theirs).
    pub(super) fn announcement(&self, ask: bool) -> Vec<u8> {
        let announcement = Announcement {
            bus: self.own.clone(),
            signals: lock(&self.state).own_signals.clone(),
            ask,
        };
        serde_json::to_vec(&announcement).unwrap_or_default()
    }
}

fn apply(own: &str, state: &mut State, payload: &[u8], now: Instant) -> Result<Heard, String> {
    let announcement: Announcement =
        serde_json::from_slice(payload).map_err(|e| format!("not an announcement: {e}"))?;
    if announcement.bus == own {
        return Ok(Heard::Nothing);
    }
    let heard = match announcement.ask {
        true => Heard::Asked,
        false => Heard::Nothing,
    };
    if announcement.signals.is_empty() {
        state.peers.remove(&announcement.bus);
    } else {
        let peer = Peer {
            signals: announcement.signals,
            seen: now,
        };
        state.peers.insert(announcement.bus, peer);
    }
    Ok(heard)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn said(bus: &str, signals: &[&str], ask: bool) -> Vec<u8> {
        let announcement = Announcement {
            bus: bus.to_owned(),
            signals: signals.iter().map(|s| s.to_string()).collect(),
            ask,
        };
        serde_json::to_vec(&announcement).unwrap()
    }

    #[test]
    fn buses_are_counted_by_the_signals_they_announced() {
        let roster = Roster::new("me");
        roster.set_own(["a".to_owned()].into_iter());
        assert_eq!(roster.buses_taking("a"), 1);
        assert_eq!(
            roster.heard(&said("p", &["a", "b"], true)),
            Ok(Heard::Asked)
        );
        assert_eq!(roster.heard(&said("q", &["b"], false)), Ok(Heard::Nothing));
        assert_eq!((roster.buses_taking("a"), roster.buses_taking("b")), (2, 2));
        // Its own announcement, echoed, changes nothing.
        roster.heard(&said("me", &[], false)).unwrap();
        assert_eq!(roster.buses_taking("a"), 2);
        // A bus that takes nothing more (or closed) is forgotten.
        roster.heard(&said("p", &[], false)).unwrap();
        assert_eq!((roster.buses_taking("a"), roster.buses_taking("b")), (1, 1));
        assert!(roster.heard(b"{\"bus\":1}").is_err());
    }

    #[test]
    fn peers_not_heard_of_expire() {
        let roster = Roster::new("me");
        roster.heard(&said("p", &["a"], false)).unwrap();
        roster.expire(Instant::now());
        assert_eq!(roster.buses_taking("a"), 1);
        roster.expire(Instant::now() + EXPIRY);
        assert_eq!(roster.buses_taking("a"), 0);
    }
}
