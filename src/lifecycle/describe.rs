//! What an agent's table shows: [`AgentInfo`] for a type (no state) or
//! for a running agent, with what its tasks and handlers did.

use std::net::SocketAddr;

use super::cron::{next_cron_time, parse_cron, wall_now};
use super::declare::Schedule;
use crate::agent::Agent;
use crate::error::Stage;
use crate::info::{
    AgentInfo, ConsumerInfo, CronInfo, HandlerRuns, HooksInfo, PeriodicInfo, ReceiverInfo,
    ServerInfo, TaskRuns,
};

/// Describes agent type `A` from its table (cron due times computed now).
pub fn describe<A: Agent>() -> AgentInfo {
    describe_running::<A>(A::NAME, (&[], &[]), &[], &[], &[])
}

/// Describes a running agent `name` of type `A` with what it did: the runs
/// of its tasks that went wrong and the schedules a deployment set for
/// them (by task index; as declared past its end), and its servers'
/// addresses.
pub(crate) fn describe_running<A: Agent>(
    name: &'static str,
    (runs, schedules): (&[TaskRuns], &[Schedule]),
    addresses: &[(&'static str, SocketAddr)],
    receiver_runs: &[HandlerRuns],
    consumer_runs: &[HandlerRuns],
) -> AgentInfo {
    let table = &A::HOOKS;
    let names = |stage| table.stage(stage).iter().map(|h| h.name).collect();
    let (periodic, cron) = describe_tasks::<A>(runs, schedules);
    AgentInfo {
        name,
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
                addresses: addresses
                    .iter()
                    .filter(|(name, _)| *name == s.name)
                    .map(|(_, addr)| *addr)
                    .collect(),
            })
            .collect(),
        periodic,
        cron,
        receivers: table
            .receivers
            .iter()
            .enumerate()
            .map(|(index, r)| ReceiverInfo {
                name: r.name,
                signal: r.signal,
                timeout: r.timeout,
                runs: receiver_runs.get(index).cloned().unwrap_or_default(),
            })
            .collect(),
        consumers: table
            .consumers
            .iter()
            .enumerate()
            .map(|(index, c)| ConsumerInfo {
                name: c.name,
                queue: c.queue,
                timeout: c.options.timeout,
                attempts: c.options.attempts,
                backoff: c.options.backoff,
                prefetch: c.options.prefetch,
                runs: consumer_runs.get(index).cloned().unwrap_or_default(),
            })
            .collect(),
        bus: None,
        broker: None,
    }
}

/// The agent's periodic and cron tasks, with their runs so far (`runs`,
/// by task index) and each cron task's next due time.
fn describe_tasks<A: Agent>(
    runs: &[TaskRuns],
    schedules: &[Schedule],
) -> (Vec<PeriodicInfo>, Vec<CronInfo>) {
    let runs_of = |index: usize| runs.get(index).cloned().unwrap_or_default();
    let now = wall_now();
    let (mut periodic, mut cron) = (Vec::new(), Vec::new());
    for (index, task) in A::HOOKS.tasks.iter().enumerate() {
        match schedules.get(index).copied().unwrap_or(task.schedule) {
            Schedule::Every {
                period,
                start_after,
            } => periodic.push(PeriodicInfo {
                name: task.name,
                period,
                timeout: task.timeout,
                start_after,
                runs: runs_of(index),
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
                runs: runs_of(index),
            }),
        }
    }
    (periodic, cron)
}
