//! The ranges of the fields of a cron expression
//! (`sec min hour day month weekday [year]`), checked before the
//! expression is parsed, so that a number out of range gets a message
//! naming the field and its allowed range (the host and the macros give
//! the same one).

/// Each field: its name and its allowed numbers.
const FIELDS: [(&str, u32, u32); 7] = [
    ("seconds", 0, 59),
    ("minutes", 0, 59),
    ("hours", 0, 23),
    ("day of month", 1, 31),
    ("month", 1, 12),
    ("day of week", 1, 7),
    ("year", 1970, 2100),
];

/// Checks every number of every field of `expression` against the
/// field's range; `Err` names the first one out of range. Anything else
/// (names such as `MON`, `*`, `?`, syntax) is left to the cron parser.
///
/// ```
/// assert_eq!(
///     modal_duration::cron::check_ranges("61 * * * * *").unwrap_err(),
///     "61 is out of range for seconds (0–59) in `61 * * * * *`"
/// );
/// assert!(modal_duration::cron::check_ranges("*/15 0 9-17 * JAN-MAR MON-FRI").is_ok());
/// ```
pub fn check_ranges(expression: &str) -> Result<(), String> {
    for (field, &(name, min, max)) in expression.split_whitespace().zip(FIELDS.iter()) {
        for item in field.split(',') {
            let (range, step) = match item.split_once('/') {
                Some((range, step)) => (range, Some(step)),
                None => (item, None),
            };
            for bound in range.split('-') {
                if let Ok(n) = bound.parse::<u64>()
                    && !(u64::from(min)..=u64::from(max)).contains(&n)
                {
                    return Err(format!(
                        "{n} is out of range for {name} ({min}–{max}) in `{expression}`"
                    ));
                }
            }
            if let Some(Ok(step)) = step.map(str::parse::<u64>)
                && !(1..=u64::from(max - min + 1)).contains(&step)
            {
                return Err(format!(
                    "a step of {step} is out of range for {name} (1–{}) in `{expression}`",
                    max - min + 1
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_checked_in_every_form() {
        assert!(check_ranges("0 30 9 * * MON-FRI").is_ok());
        assert!(check_ranges("0 0 0 1 1 1 2030").is_ok());
        let bad = |e: &str| check_ranges(e).unwrap_err();
        assert_eq!(
            bad("0 60 * * * *"),
            "60 is out of range for minutes (0–59) in `0 60 * * * *`"
        );
        assert!(bad("0 0 20-25 * * *").starts_with("25 is out of range for hours (0–23)"));
        assert!(bad("0 0 0 0 * *").starts_with("0 is out of range for day of month (1–31)"));
        assert!(bad("0 0 0 * 1,13 *").starts_with("13 is out of range for month (1–12)"));
        assert!(bad("0 0 0 * * 0").starts_with("0 is out of range for day of week (1–7)"));
        assert!(bad("*/0 * * * * *").starts_with("a step of 0 is out of range for seconds (1–60)"));
        assert!(bad("0 0 0 1 1 * 1800").starts_with("1800 is out of range for year"));
        // Not numbers: left to the parser.
        assert!(check_ranges("x y z").is_ok());
    }
}
