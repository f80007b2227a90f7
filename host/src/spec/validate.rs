//! Checking what a guest described: every problem found, each naming its
//! function, and the defaults filled in.

use super::{
    AppSpec, FunctionKind, FunctionSpec, MAX_INSTANCES, MAX_RETRIES, RawAppSpec, RawCronSchedule,
    RawFunctionKind, RawFunctionSpec, RawSchedule, Schedule, Settings, human, web_label,
};
use crate::config::{HostConfig, MAX_TIMEOUT};
use std::collections::HashSet;
use std::str::FromStr;
use std::time::Duration;

/// Most functions one app may declare.
const MAX_FUNCTIONS: usize = 256;
/// Longest function name; a function's web host label must fit in 63.
const MAX_NAME: usize = 63;
/// Longest description or signature kept from the guest.
const MAX_TEXT: usize = 1024;
/// Shortest period of a period schedule.
const MIN_PERIOD: Duration = Duration::from_millis(100);

/// Checks everything the guest described and fills in defaults. Returns
/// every problem found, each naming its function.
pub(super) fn validate(raw: RawAppSpec, config: &HostConfig) -> Result<AppSpec, Vec<String>> {
    let mut problems = Vec::new();
    if raw.functions.is_empty() {
        problems.push("the app declares no functions".to_string());
    }
    if raw.functions.len() > MAX_FUNCTIONS {
        problems.push(format!(
            "the app declares {} functions; at most {MAX_FUNCTIONS} are allowed",
            raw.functions.len()
        ));
        return Err(problems);
    }
    let mut seen = HashSet::new();
    let mut labels = HashSet::new();
    let mut functions = Vec::with_capacity(raw.functions.len());
    for f in raw.functions {
        let name = f.name.clone();
        let shown = shorten(&name);
        let mut complain = |m: String| problems.push(format!("function `{shown}`: {m}"));
        if let Err(m) = check_name(&name) {
            complain(m);
        } else if !seen.insert(name.clone()) {
            complain("declared more than once".into());
        } else if !labels.insert(web_label(&name)) {
            complain(format!(
                "its URL label `{}` collides with another function's",
                web_label(&name)
            ));
        }
        match function(f, config) {
            Ok(spec) => functions.push(spec),
            Err(ms) => ms.into_iter().for_each(&mut complain),
        }
    }
    let sdk = raw.sdk.map(|s| shorten(&s));
    if problems.is_empty() {
        Ok(AppSpec {
            functions,
            sdk,
            has_enter: raw.has_enter,
            has_exit: raw.has_exit,
            secrets: Vec::new(),
        })
    } else {
        Err(problems)
    }
}

fn shorten(text: &str) -> String {
    if text.len() <= MAX_TEXT {
        return text.to_string();
    }
    format!("{}…", &text[..text.floor_char_boundary(MAX_TEXT)])
}

fn check_name(name: &str) -> Result<(), String> {
    let valid_chars = name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if name.is_empty() || name.len() > MAX_NAME {
        Err(format!("a name has 1 to {MAX_NAME} characters"))
    } else if !name.as_bytes()[0].is_ascii_alphabetic() || !valid_chars {
        Err("a name starts with a letter and has only letters, digits, `_` and `-`".into())
    } else {
        Ok(())
    }
}

fn function(f: RawFunctionSpec, config: &HostConfig) -> Result<FunctionSpec, Vec<String>> {
    let mut problems = Vec::new();
    let kind = kind(&f.kind, &mut problems);
    let settings = settings(&f, config, &mut problems);
    if !problems.is_empty() {
        return Err(problems);
    }
    Ok(FunctionSpec {
        name: f.name,
        kind,
        description: f.description.map(|d| shorten(&d)),
        signature: f.signature.map(|s| shorten(&s)),
        settings,
    })
}

/// A function's validated kind; what is wrong goes to `problems`.
fn kind(raw: &RawFunctionKind, problems: &mut Vec<String>) -> FunctionKind {
    match raw {
        RawFunctionKind::Plain => FunctionKind::Plain,
        RawFunctionKind::Web(route) => {
            let method = route.method.as_ref().map(|m| m.to_ascii_uppercase());
            if let Some(m) = &method
                && (m.is_empty() || m.len() > 16 || !m.bytes().all(|b| b.is_ascii_alphabetic()))
            {
                problems.push(format!("invalid HTTP method `{}`", shorten(m)));
            }
            FunctionKind::Web { method }
        }
        RawFunctionKind::Scheduled(RawSchedule::Cron(RawCronSchedule {
            expression,
            timezone,
        })) => {
            if let Err(e) = modal_duration::cron::check_ranges(expression) {
                problems.push(format!("invalid cron expression: {}", shorten(&e)));
            } else if let Err(e) = cron::Schedule::from_str(expression) {
                problems.push(format!(
                    "invalid cron expression `{}`: {e} (expected `sec min hour day month weekday [year]`)",
                    shorten(expression)
                ));
            }
            if let Some(tz) = timezone
                && tz.parse::<chrono_tz::Tz>().is_err()
            {
                problems.push(format!(
                    "unknown time zone `{}` (expected an IANA name such as `Europe/Paris`)",
                    shorten(tz)
                ));
            }
            FunctionKind::Scheduled {
                schedule: Schedule::Cron {
                    expression: expression.clone(),
                    timezone: timezone.clone(),
                },
            }
        }
        RawFunctionKind::Scheduled(RawSchedule::PeriodMs(ms)) => {
            let period = Duration::from_millis(*ms);
            if period < MIN_PERIOD {
                problems.push(format!(
                    "a period of {} is shorter than the minimum {}",
                    human(period),
                    human(MIN_PERIOD)
                ));
            }
            FunctionKind::Scheduled {
                schedule: Schedule::Period(period),
            }
        }
    }
}

/// A function's settings: the host's defaults with what it set, checked;
/// what is wrong goes to `problems`.
fn settings(f: &RawFunctionSpec, config: &HostConfig, problems: &mut Vec<String>) -> Settings {
    let mut settings = Settings::defaults(config);
    if let Some(ms) = f.timeout_ms {
        settings.timeout = Duration::from_millis(ms);
        if ms == 0 || settings.timeout > MAX_TIMEOUT {
            problems.push(format!(
                "timeout {} is not between 1ms and {}",
                human(settings.timeout),
                human(MAX_TIMEOUT)
            ));
        }
    }
    if let Some(r) = f.retries {
        settings.retries = r;
        if r > MAX_RETRIES {
            problems.push(format!(
                "{r} retries is more than the maximum {MAX_RETRIES}"
            ));
        }
    }
    if let Some(m) = f.max_instances {
        settings.max_instances = m;
        if m == 0 || m > MAX_INSTANCES {
            problems.push(format!(
                "max_instances {m} is not between 1 and {MAX_INSTANCES}"
            ));
        }
    }
    if let Some(w) = f.min_warm {
        settings.min_warm = w;
        if w > settings.max_instances {
            problems.push(format!(
                "min_warm {w} is more than max_instances {}",
                settings.max_instances
            ));
        }
    }
    if let Some(n) = f.max_requests_per_instance {
        settings.max_requests_per_instance = Some(n);
        if n == 0 {
            problems.push("max_requests must be at least 1".into());
        }
    }
    settings
}
