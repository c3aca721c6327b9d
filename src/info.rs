//! An agent's self-description: what it declares, never what it holds.
//!
//! Plain data (serializable for `GET /health/info`); the lifecycle fills it
//! from the agent's declarations.

use std::net::SocketAddr;
use std::time::Duration;

use serde::{Serialize, Serializer};

/// What an agent declares: its name, hooks, servers and tasks, with the
/// next due time of each cron task. It holds no field of the agent, so no
/// secret (connection string, token...) can leak through it.
///
/// Get it with [`Agent::info`](crate::Agent::info), by sending
/// [`GetInfo`](crate::GetInfo) to the agent's `Addr`, or as JSON from
/// `GET /health/info` (see [`web::health`](crate::web::health)), where
/// durations are numbers of seconds.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct AgentInfo {
    /// The agent's name.
    pub name: &'static str,
    /// The lifecycle hooks, by label, in declaration order.
    pub hooks: HooksInfo,
    /// The server hooks.
    pub servers: Vec<ServerInfo>,
    /// The periodic tasks.
    pub periodic: Vec<PeriodicInfo>,
    /// The cron tasks.
    pub cron: Vec<CronInfo>,
    /// The receivers of bus signals.
    pub receivers: Vec<ReceiverInfo>,
    /// The consumers of queues.
    pub consumers: Vec<ConsumerInfo>,
    /// The bus of the agent's System (kind, prefix, redacted URL); `None`
    /// when described from the type.
    pub bus: Option<crate::bus::BusInfo>,
    /// The broker of the agent's System; `None` when described from the
    /// type.
    pub broker: Option<crate::broker::BrokerInfo>,
}

/// One consumer of a queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct ConsumerInfo {
    /// The method's name.
    pub name: &'static str,
    /// The queue's name.
    pub queue: &'static str,
    /// Time a run may take.
    #[serde(serialize_with = "seconds")]
    pub timeout: Duration,
    /// Attempts before a message is dead-lettered.
    pub attempts: u32,
    /// The pause before the first retry (doubling after each failure).
    #[serde(serialize_with = "seconds")]
    pub backoff: Duration,
    /// Messages in flight at most.
    pub prefetch: u32,
    /// How its runs went so far (zero when described from the type).
    pub runs: HandlerRuns,
}

/// One receiver of a bus signal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct ReceiverInfo {
    /// The method's name.
    pub name: &'static str,
    /// The signal's wire name.
    pub signal: &'static str,
    /// Time a run may take.
    #[serde(serialize_with = "seconds")]
    pub timeout: Duration,
    /// How its runs went so far (zero when described from the type).
    pub runs: HandlerRuns,
}

/// The runs of a receiver or a consumer, counted since the agent started:
/// those that went well, and how the others did not. A receiver's failed
/// runs answered `null`; a consumer's were failed attempts (bad input:
/// dead-lettered at once).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct HandlerRuns {
    /// Runs that returned `Ok` within their timeout.
    pub ok: u64,
    /// Runs that returned an error.
    pub failed: u64,
    /// Runs that panicked.
    pub panicked: u64,
    /// Async runs cancelled by their timeout.
    pub timed_out: u64,
    /// Deliveries that did not fit the signal's or message's type (bad
    /// input from the sender); the method did not run.
    pub bad_input: u64,
    /// Signals dropped unhandled (receivers): past the agent's bus buffer
    /// ([`BusConfig::buffer`](crate::bus::BusConfig::buffer)), or waiting
    /// in its mailbox when its stop was asked for. Pub/sub is
    /// at-most-once; an RPC caller gets no answer from this receiver.
    pub dropped: u64,
    /// When the last failed, panicked, timed-out or bad-input run ended,
    /// RFC 3339 UTC.
    pub last_failure: Option<String>,
}

/// The lifecycle hooks of an agent, by label.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HooksInfo {
    /// `#[on(pre_start)]` methods.
    pub pre_start: Vec<&'static str>,
    /// `#[on(post_start)]` methods.
    pub post_start: Vec<&'static str>,
    /// `#[on(pre_stop)]` methods.
    pub pre_stop: Vec<&'static str>,
}

/// One server hook.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct ServerInfo {
    /// The method's name.
    pub name: &'static str,
    /// Its restart policy, if it has one.
    pub restart: Option<RestartPolicy>,
    /// The addresses it published (see
    /// [`ServerContext::publish_address`](crate::ServerContext::publish_address));
    /// empty when described from the type.
    pub addresses: Vec<SocketAddr>,
}

/// How a failing server is restarted instead of stopping its agent.
///
/// Declared as `#[on(server, restarts = 3, within = 60.0, backoff = 0.5)]`
/// (seconds): at most `restarts` restarts within any `within`, each after
/// `backoff`. A failure beyond that stops the agent. Panics count as
/// failures; `Ok(())` and [`ServerInterrupt`](crate::ServerInterrupt) are
/// not failures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct RestartPolicy {
    /// Restarts allowed within the window.
    pub restarts: u32,
    /// The window.
    #[serde(serialize_with = "seconds")]
    pub within: Duration,
    /// Delay before each restart.
    #[serde(serialize_with = "seconds")]
    pub backoff: Duration,
}

/// One periodic task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct PeriodicInfo {
    /// The method's name.
    pub name: &'static str,
    /// Time between runs.
    #[serde(serialize_with = "seconds")]
    pub period: Duration,
    /// Time a run may take.
    #[serde(serialize_with = "seconds")]
    pub timeout: Duration,
    /// Time before the first run.
    #[serde(serialize_with = "seconds")]
    pub start_after: Duration,
    /// How its runs went so far (zero when described from the type).
    pub runs: TaskRuns,
}

/// One cron task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct CronInfo {
    /// The method's name.
    pub name: &'static str,
    /// The cron expression.
    pub expression: &'static str,
    /// The time zone it is read in.
    pub timezone: Zone,
    /// Time a run may take.
    #[serde(serialize_with = "seconds")]
    pub timeout: Duration,
    /// When it is next due, RFC 3339 in UTC (`None` if never).
    pub next_due: Option<String>,
    /// How its runs went so far (zero when described from the type).
    pub runs: TaskRuns,
}

/// The runs of a periodic or cron task, counted since the agent started:
/// those that went well, and how the others did not, so that monitoring
/// can see a task that always fails.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct TaskRuns {
    /// Runs that returned `Ok` (a sync run past its timeout counts as
    /// timed out instead).
    pub ok: u64,
    /// Runs that returned an error.
    pub failed: u64,
    /// Runs that panicked.
    pub panicked: u64,
    /// Runs past their timeout: async runs cancelled by it, and sync runs
    /// that returned after it (they cannot be cancelled).
    pub timed_out: u64,
    /// Due times skipped because the task (or another one) was still
    /// running (missed runs are not replayed).
    pub skipped: u64,
    /// When the last failed, panicked or timed-out run ended, RFC 3339 UTC.
    pub last_failure: Option<String>,
}

/// The time zone a cron expression is read in. In JSON it is its name:
/// `"utc"`, `"local"` or the IANA name (`"Europe/Berlin"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Zone {
    /// UTC (the default).
    Utc,
    /// The machine's local time zone.
    Local,
    /// A zone of the IANA time zone database by its name
    /// (`tz = "Europe/Berlin"`; the `tz` feature), its daylight-saving
    /// changes included.
    Named(&'static str),
}

impl Zone {
    /// Its name: `utc`, `local`, or the IANA name.
    pub fn name(&self) -> &'static str {
        match self {
            Zone::Utc => "utc",
            Zone::Local => "local",
            Zone::Named(name) => name,
        }
    }
}

impl std::fmt::Display for Zone {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl Serialize for Zone {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

/// Durations appear in JSON as seconds, as they are declared.
fn seconds<S: Serializer>(duration: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(duration.as_secs_f64())
}
