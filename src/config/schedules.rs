//! A deployment's task schedules: `[agent.NAME.tasks.TASK]` sets the
//! period (and first delay) of a periodic task, or the cron expression
//! (and zone) of a cron task, in place of what the agent declares.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

use super::{Config, ConfigError};
use crate::agent::Agent;
use crate::info::Zone;
use crate::lifecycle::declare::Schedule;

/// One task's table.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TaskTable {
    /// Seconds between runs (a periodic task).
    period: Option<f64>,
    /// Seconds before the first run (a periodic task).
    start_after: Option<f64>,
    /// The cron expression (a cron task).
    cron: Option<String>,
    /// Its time zone: `utc`, `local`, or a name (a cron task).
    tz: Option<String>,
}

/// The tasks' schedules `config` sets for agent `name` of type `A`, one per
/// task in declaration order; `None` when it sets none.
pub(super) fn schedules<A: Agent>(
    config: &Config,
    name: &str,
) -> Result<Option<Box<[Schedule]>>, ConfigError> {
    let key = format!("agent.{name}.tasks");
    if config.figment.find_value(&key).is_err() {
        return Ok(None);
    }
    let tables: BTreeMap<String, TaskTable> = config
        .figment
        .extract_inner(&key)
        .map_err(|e| ConfigError::from_figment_under(e, ""))?;
    let tasks = A::HOOKS.tasks;
    let mut schedules: Vec<Schedule> = tasks.iter().map(|t| t.schedule).collect();
    for (task, table) in tables {
        let at = format!("{key}.{task}");
        let origin = super::file::origin(&config.figment, &at);
        let invalid = |problem: String| ConfigError::invalid(origin.clone(), &at, problem);
        let Some(index) = tasks.iter().position(|t| t.name == task) else {
            let known: Vec<&str> = tasks.iter().map(|t| t.name).collect();
            return Err(invalid(format!(
                "agent `{name}` has no task `{task}`; its tasks: {}",
                if known.is_empty() {
                    "none".to_owned()
                } else {
                    known.join(", ")
                }
            )));
        };
        schedules[index] = match (schedules[index], table) {
            (
                Schedule::Every {
                    period,
                    start_after,
                },
                TaskTable {
                    period: new_period,
                    start_after: new_start,
                    cron: None,
                    tz: None,
                },
            ) => Schedule::Every {
                period: new_period
                    .map_or(Ok(period), |p| seconds(p, "period", true))
                    .map_err(&invalid)?,
                start_after: new_start
                    .map_or(Ok(start_after), |s| seconds(s, "start_after", false))
                    .map_err(&invalid)?,
            },
            (Schedule::Every { .. }, _) => {
                return Err(invalid(format!(
                    "`{task}` is a periodic task: expected `period` or `start_after`"
                )))
            }
            (
                Schedule::Cron { expression, zone },
                TaskTable {
                    period: None,
                    start_after: None,
                    cron,
                    tz,
                },
            ) => Schedule::Cron {
                expression: match cron {
                    Some(cron) => expression_of(cron).map_err(&invalid)?,
                    None => expression,
                },
                zone: match tz {
                    Some(tz) => zone_of(&tz).map_err(&invalid)?,
                    None => zone,
                },
            },
            (Schedule::Cron { .. }, _) => {
                return Err(invalid(format!(
                    "`{task}` is a cron task: expected `cron` or `tz`"
                )))
            }
        };
    }
    Ok(Some(schedules.into_boxed_slice()))
}

/// A number of seconds: finite, above zero when `positive`, else not
/// below zero.
fn seconds(value: f64, what: &str, positive: bool) -> Result<Duration, String> {
    let fits = value.is_finite() && if positive { value > 0.0 } else { value >= 0.0 };
    match Duration::try_from_secs_f64(value) {
        Ok(duration) if fits => Ok(duration),
        _ if positive => Err(format!(
            "`{what}` is a number of seconds above 0, found {value}"
        )),
        _ => Err(format!(
            "`{what}` is a number of seconds, 0 or more, found {value}"
        )),
    }
}

/// A cron expression that parses, kept for the life of the process (a
/// deployment's few expressions: the task table holds `&'static str`s).
fn expression_of(cron: String) -> Result<&'static str, String> {
    crate::lifecycle::parse_cron(&cron)
        .map_err(|e| format!("invalid cron expression {cron:?}: {e}"))?;
    Ok(crate::intern::intern(&cron))
}

/// `utc`, `local`, or a name of the IANA database (the `tz` feature).
fn zone_of(tz: &str) -> Result<Zone, String> {
    match tz {
        "utc" | "UTC" => Ok(Zone::Utc),
        "local" => Ok(Zone::Local),
        #[cfg(feature = "tz")]
        name => match name.parse::<chrono_tz::Tz>() {
            Ok(_) => Ok(Zone::Named(crate::intern::intern(name))),
            Err(_) => Err(format!(
                "unknown time zone `{name}`; expected \"utc\", \"local\" or a name of the IANA time zone database such as \"Europe/Berlin\""
            )),
        },
        #[cfg(not(feature = "tz"))]
        name => Err(format!(
            "the time zone `{name}` needs microagent's `tz` feature; without it `tz` is \"utc\" or \"local\""
        )),
    }
}
