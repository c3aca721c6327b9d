//! An agent's self-description: what it declares, never what it holds.

use actix::Message;
use chrono::Utc;
use serde::Serialize;

use crate::server::RestartPolicy;
use crate::tasks::{next_cron_time, parse_cron, Schedule, Zone};
use crate::{Agent, Stage};

/// What an agent declares: its name, hooks, servers and tasks, with the
/// next due time of each cron task. It holds no field of the agent, so no
/// secret (connection string, token...) can leak through it.
///
/// Get it with [`Agent::info`], by sending [`GetInfo`] to the agent's
/// `Addr`, or as JSON from `GET /health/info` (see [`web::health`](crate::web::health)).
#[derive(Debug, Clone, PartialEq, Serialize)]
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
pub struct ServerInfo {
    /// The method's name.
    pub name: &'static str,
    /// Its restart policy, if it has one.
    pub restart: Option<RestartPolicy>,
}

/// One periodic task.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PeriodicInfo {
    /// The method's name.
    pub name: &'static str,
    /// Seconds between runs.
    pub period: f64,
    /// Seconds a run may take.
    pub timeout: f64,
    /// Seconds before the first run.
    pub start_after: f64,
}

/// One cron task.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CronInfo {
    /// The method's name.
    pub name: &'static str,
    /// The cron expression.
    pub expression: &'static str,
    /// The time zone it is read in.
    pub timezone: Zone,
    /// Seconds a run may take.
    pub timeout: f64,
    /// When it is next due, RFC 3339 in UTC (`None` if never).
    pub next_due: Option<String>,
}

/// Asks an agent for its [`AgentInfo`]; every agent handles it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GetInfo;

impl Message for GetInfo {
    type Result = AgentInfo;
}

/// Describes agent type `A` (the next cron due times are computed now).
pub fn describe<A: Agent>() -> AgentInfo {
    let table = &A::HOOKS;
    let names = |stage| table.stage(stage).iter().map(|h| h.name).collect();
    let now = Utc::now();
    let (mut periodic, mut cron) = (Vec::new(), Vec::new());
    for task in table.tasks {
        match task.schedule {
            Schedule::Every {
                period,
                start_after,
            } => periodic.push(PeriodicInfo {
                name: task.name,
                period,
                timeout: task.timeout,
                start_after,
            }),
            Schedule::Cron { expression, zone } => cron.push(CronInfo {
                name: task.name,
                expression,
                timezone: zone,
                timeout: task.timeout,
                next_due: parse_cron(expression)
                    .ok()
                    .and_then(|c| next_cron_time(&c, zone, now))
                    .map(|t| t.to_rfc3339()),
            }),
        }
    }
    AgentInfo {
        name: A::NAME,
        hooks: HooksInfo {
            pre_start: names(Stage::PreStart),
            post_start: names(Stage::PostStart),
            pre_stop: names(Stage::PreStop),
        },
        servers: table
            .servers
            .iter()
            .map(|s| ServerInfo {
                name: s.name,
                restart: s.restart,
            })
            .collect(),
        periodic,
        cron,
    }
}
