//! Fire times: a schedule compiled to compute its next fire time, and the
//! fire times missed while the host was down.

use crate::spec::Schedule;
use chrono::{TimeZone, Utc};
use std::str::FromStr;

/// Most missed fire times counted for one schedule after a restart.
const MAX_MISSED: u64 = 100_000;

/// A schedule ready to compute fire times.
#[derive(Clone)]
pub(crate) enum Compiled {
    Cron(Box<cron::Schedule>, chrono_tz::Tz),
    Period(u64),
}

impl Compiled {
    pub(crate) fn new(schedule: &Schedule) -> Result<Compiled, String> {
        match schedule {
            Schedule::Cron {
                expression,
                timezone,
            } => {
                let cron = cron::Schedule::from_str(expression).map_err(|e| e.to_string())?;
                let tz = match timezone {
                    Some(tz) => tz.parse::<chrono_tz::Tz>().map_err(|e| e.to_string())?,
                    None => chrono_tz::UTC,
                };
                Ok(Compiled::Cron(Box::new(cron), tz))
            }
            Schedule::Period(period) => Ok(Compiled::Period((period.as_millis() as u64).max(1))),
        }
    }

    /// The first fire time strictly after `after` (Unix ms). Periods fire
    /// at multiples of the period since the epoch, so every host agrees.
    pub(crate) fn next_after(&self, after: u64) -> Option<u64> {
        match self {
            Compiled::Period(p) => Some((after / p + 1) * p),
            Compiled::Cron(cron, tz) => {
                let at = Utc
                    .timestamp_millis_opt(after as i64)
                    .single()?
                    .with_timezone(tz);
                let next = cron.after(&at).next()?;
                u64::try_from(next.timestamp_millis()).ok()
            }
        }
    }
}

/// The fire times after `after`, up to `until` (inclusive): how many, the
/// first, and the last (`after` itself when there are none). Past
/// [`MAX_MISSED`] of them the rest up to `until` are counted as one span,
/// so a long outage of a frequent schedule costs no long loop.
pub(crate) fn passed(compiled: &Compiled, after: u64, until: u64) -> (u64, Option<u64>, u64) {
    let (mut count, mut first, mut at) = (0u64, None, after);
    while let Some(t) = compiled.next_after(at) {
        if t > until {
            break;
        }
        if count >= MAX_MISSED {
            // Jump to the last fire time at or before `until`.
            if let Compiled::Period(p) = compiled {
                let end = until / p * p;
                count += (end - at) / p;
                at = end;
            } else {
                at = until;
                count += 1;
            }
            break;
        }
        first.get_or_insert(t);
        count += 1;
        at = t;
    }
    (count, first, at)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn no_fire_time_is_lost_across_a_restart() {
        let every_second = Compiled::Period(1000);
        // Last fired at 10 s, restarted at 15.5 s: 11..=14 (more than a
        // second ago) are missed and 15 runs now.
        let (count, first, at) = passed(&every_second, 10_000, 14_500);
        assert_eq!((count, first, at), (4, Some(11_000), 14_000));
        assert_eq!(every_second.next_after(at), Some(15_000));
        // Restarted right after the last fire: nothing missed, the next
        // one runs when due.
        let (count, first, at) = passed(&every_second, 10_000, 9_200);
        assert_eq!((count, first, at), (0, None, 10_000));
        assert_eq!(every_second.next_after(at), Some(11_000));
        // A long outage of a frequent schedule is counted without a loop
        // over every fire time.
        let every_ms = Compiled::Period(1);
        let (count, _, at) = passed(&every_ms, 0, 9_999_000);
        assert_eq!((count, at), (9_999_000, 9_999_000));
    }

    #[test]
    fn fire_times_follow_cron_periods_and_time_zones() {
        let every_second = Compiled::new(&Schedule::Cron {
            expression: "* * * * * *".into(),
            timezone: None,
        })
        .unwrap();
        assert_eq!(every_second.next_after(1_000), Some(2_000));
        assert_eq!(every_second.next_after(1_500), Some(2_000));
        let period = Compiled::new(&Schedule::Period(Duration::from_secs(5))).unwrap();
        assert_eq!(period.next_after(12_000), Some(15_000));
        assert_eq!(period.next_after(15_000), Some(20_000));
        // 09:00 in Paris is 08:00 UTC in winter.
        let paris = Compiled::new(&Schedule::Cron {
            expression: "0 0 9 * * *".into(),
            timezone: Some("Europe/Paris".into()),
        })
        .unwrap();
        let jan_1 = 1_767_225_600_000; // 2026-01-01T00:00:00Z
        assert_eq!(paris.next_after(jan_1), Some(jan_1 + 8 * 3_600_000));
    }
}
