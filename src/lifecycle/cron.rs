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

/// The next time a cron expression fires strictly after `after`, read in
/// `zone` (across its daylight-saving changes as croner does: a fixed time
/// in a skipped hour runs right after the gap, once in a repeated hour;
/// an interval runs for each time the pattern matches on the wall clock).
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
        #[cfg(feature = "tz")]
        Zone::Named(name) => {
            // The macro checked the name against the same database.
            let zone: chrono_tz::Tz = name.parse().ok()?;
            cron.find_next_occurrence(&after.with_timezone(&zone), false)
                .ok()
                .map(|t| t.with_timezone(&Utc))
        }
        // Only the macro makes one, and only with the feature.
        #[cfg(not(feature = "tz"))]
        Zone::Named(_) => None,
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

    /// Berlin in 2026: summer time from 29 March 02:00 (to 03:00, UTC+2),
    /// winter time from 25 October 03:00 (back to 02:00, UTC+1).
    #[cfg(feature = "tz")]
    #[test]
    fn named_zones_follow_their_daylight_saving_changes() {
        let berlin = Zone::Named("Europe/Berlin");
        let next =
            |expr: &str, after| next_cron_time(&parse_cron(expr).unwrap(), berlin, after).unwrap();
        // 09:00 local is 08:00 UTC in winter, 07:00 UTC in summer.
        assert_eq!(
            next("0 9 * * *", at(2026, 3, 28, 12, 0, 0)),
            at(2026, 3, 29, 7, 0, 0)
        );
        assert_eq!(
            next("0 9 * * *", at(2026, 3, 27, 12, 0, 0)),
            at(2026, 3, 28, 8, 0, 0)
        );
        assert_eq!(
            next("0 9 * * *", at(2026, 10, 24, 12, 0, 0)),
            at(2026, 10, 25, 8, 0, 0)
        );
        // 02:30 does not exist on 29 March: right after the gap (03:00
        // local, 01:00 UTC), then 02:30 local again the next day.
        let gap = next("30 2 * * *", at(2026, 3, 28, 12, 0, 0));
        assert_eq!(gap, at(2026, 3, 29, 1, 0, 0));
        assert_eq!(next("30 2 * * *", gap), at(2026, 3, 30, 0, 30, 0));
        // 02:30 happens twice on 25 October: once, the first time (UTC+2).
        let twice = next("30 2 * * *", at(2026, 10, 24, 12, 0, 0));
        assert_eq!(twice, at(2026, 10, 25, 0, 30, 0));
        assert_eq!(next("30 2 * * *", twice), at(2026, 10, 26, 1, 30, 0));
        // Hourly runs: none in the skipped hour, both in the repeated one.
        let four_runs = |mut t| {
            (0..4)
                .map(|_| {
                    t = next("0 * * * *", t);
                    t
                })
                .collect::<Vec<_>>()
        };
        // 01:00 and 03:00 local (00:00 and 01:00 UTC): one hour apart.
        assert_eq!(
            four_runs(at(2026, 3, 28, 23, 30, 0)),
            [
                at(2026, 3, 29, 0, 0, 0),
                at(2026, 3, 29, 1, 0, 0),
                at(2026, 3, 29, 2, 0, 0),
                at(2026, 3, 29, 3, 0, 0)
            ]
        );
        // 02:00 local twice (00:00 and 01:00 UTC), then 03:00 at 02:00 UTC.
        assert_eq!(
            four_runs(at(2026, 10, 24, 23, 30, 0)),
            [
                at(2026, 10, 25, 0, 0, 0),
                at(2026, 10, 25, 1, 0, 0),
                at(2026, 10, 25, 2, 0, 0),
                at(2026, 10, 25, 3, 0, 0)
            ]
        );
    }

    #[test]
    fn local_time_is_converted_back_to_utc() {
        let t = at(2026, 11, 26, 10, 21, 30);
        let local = next_cron_time(&parse_cron("@hourly").unwrap(), Zone::Local, t).unwrap();
        assert!(local > t && local - t <= chrono::Duration::hours(1));
    }
}
