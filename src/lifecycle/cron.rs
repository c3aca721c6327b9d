//! Cron expressions: parsing and next due times, and the wall clock they
//! are read by, for the scheduler and the self-description.

use std::str::FromStr;

#[cfg(feature = "testkit")]
use actix_rt::time::Instant;
use chrono::{DateTime, Local, Utc};
use croner::Cron;

use crate::info::Zone;

#[cfg(feature = "testkit")]
thread_local! {
    /// A virtual wall clock for this thread: the wall time it showed at a
    /// Tokio instant (the test kit with virtual time).
    static VIRTUAL_WALL: std::cell::Cell<Option<(DateTime<Utc>, Instant)>> =
        const { std::cell::Cell::new(None) };
}

/// Makes this thread's wall clock show `wall` now and move with Tokio's
/// (paused) clock from here; `None` gives it back the system clock.
#[cfg(feature = "testkit")]
pub(crate) fn set_virtual_wall(wall: Option<DateTime<Utc>>) {
    VIRTUAL_WALL.set(wall.map(|wall| (wall, Instant::now())));
}

/// The wall-clock time cron tasks are scheduled by: the system clock,
/// unless this thread has a virtual one (the test kit's).
pub(crate) fn wall_now() -> DateTime<Utc> {
    #[cfg(feature = "testkit")]
    if let Some((wall, at)) = VIRTUAL_WALL.get() {
        let since = chrono::Duration::from_std(Instant::now() - at).unwrap_or_default();
        return wall + since;
    }
    Utc::now()
}

/// Parses a cron expression the way `#[cron(...)]` does: 5 fields (minute
/// hour day-of-month month day-of-week), optionally a leading seconds field,
/// names, lists, ranges, steps, 0 and 7 for Sunday, and the `@hourly`,
/// `@daily`, `@weekly`, `@monthly`, `@yearly` shorthands.
pub(crate) fn parse_cron(expression: &str) -> Result<Cron, croner::errors::CronError> {
    Cron::from_str(expression)
}

/// The next time a cron expression fires strictly after `after`.
pub(crate) fn next_cron_time(
    cron: &Cron,
    zone: Zone,
    after: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    match zone {
        Zone::Utc => cron.find_next_occurrence(&after, false).ok(),
        Zone::Local => cron
            .find_next_occurrence(&after.with_timezone(&Local), false)
            .ok()
            .map(|t| t.with_timezone(&Utc)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, s).unwrap()
    }

    fn next(expr: &str, after: DateTime<Utc>) -> DateTime<Utc> {
        next_cron_time(&parse_cron(expr).unwrap(), Zone::Utc, after).unwrap()
    }

    #[test]
    fn five_fields_steps_and_shorthands() {
        let t = at(2026, 11, 26, 10, 21, 30);
        assert_eq!(next("0 */4 * * *", t), at(2026, 11, 26, 12, 0, 0));
        assert_eq!(next("*/15 * * * *", t), at(2026, 11, 26, 10, 30, 0));
        assert_eq!(next("@hourly", t), at(2026, 11, 26, 11, 0, 0));
        assert_eq!(next("@daily", t), at(2026, 11, 27, 0, 0, 0));
        assert_eq!(next("@monthly", t), at(2026, 12, 1, 0, 0, 0));
        assert_eq!(next("@yearly", t), at(2027, 1, 1, 0, 0, 0));
        // Six fields: seconds first.
        assert_eq!(next("* * * * * *", t), at(2026, 11, 26, 10, 21, 31));
    }

    #[test]
    fn day_of_week_is_standard_0_and_7_are_sunday_1_is_monday() {
        // 2026-11-26 is a Thursday.
        let t = at(2026, 11, 26, 10, 0, 0);
        assert_eq!(next("0 9 * * 0", t), at(2026, 11, 29, 9, 0, 0));
        assert_eq!(next("0 9 * * 7", t), at(2026, 11, 29, 9, 0, 0));
        assert_eq!(next("0 9 * * SUN", t), at(2026, 11, 29, 9, 0, 0));
        assert_eq!(next("0 9 * * 1", t), at(2026, 11, 30, 9, 0, 0));
        assert_eq!(next("0 9 * * mon-fri", t), at(2026, 11, 27, 9, 0, 0));
        assert_eq!(next("0 9 * JAN *", t), at(2027, 1, 1, 9, 0, 0));
    }

    #[test]
    fn bad_expressions_are_rejected() {
        for bad in [
            "",
            "* * *",
            "61 * * * *",
            "* 25 * * *",
            "@sometimes",
            "0 9 * * 8",
        ] {
            assert!(parse_cron(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn local_time_is_converted_back_to_utc() {
        let t = at(2026, 11, 26, 10, 21, 30);
        let local = next_cron_time(&parse_cron("@hourly").unwrap(), Zone::Local, t).unwrap();
        assert!(local > t && local - t <= chrono::Duration::hours(1));
    }
}
