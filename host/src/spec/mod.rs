//! The app spec in two layers: the raw form a guest's `describe` returns
//! ([`RawAppSpec`]), and the validated form the rest of the host uses
//! ([`AppSpec`]). No value from the guest is used before it passes
//! [`AppSpec::validate`].

mod raw;
mod validate;

use validate::validate;

pub use raw::{
    RawAppSpec, RawCronSchedule, RawFunctionKind, RawFunctionSpec, RawSchedule, RawWebRoute,
};

use crate::config::{HostConfig, MAX_TIMEOUT};
use crate::error::Error;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Most retries of a failed scheduled run.
pub const MAX_RETRIES: u32 = 10;
/// Highest `max_instances`.
pub const MAX_INSTANCES: u32 = 1000;

/// A validated app spec.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AppSpec {
    /// The functions, in the order the guest declared them.
    pub functions: Vec<FunctionSpec>,
    /// Which SDK built the guest, when it said so.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sdk: Option<String>,
    /// Whether the guest has an `enter` hook to run on new instances.
    #[serde(default)]
    pub has_enter: bool,
    /// Whether the guest has an `exit` hook to run before dropping one.
    #[serde(default)]
    pub has_exit: bool,
    /// The secrets the app's code names (`needs.secrets`); attached at
    /// deploy along with those given with `--secret`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secrets: Vec<String>,
}

impl AppSpec {
    /// Checks everything a guest described and fills in the defaults of
    /// `config`: the step every deploy takes after calling `describe`, so
    /// its error is the one a deploy of that component fails with,
    /// [`Error::InvalidSpec`] listing every problem, each naming its
    /// function. (A deploy also checks what depends on the component, such
    /// as a web function in a component without an HTTP handler.)
    ///
    /// ```
    /// use modal_host::spec::RawAppSpec;
    /// use modal_host::{AppSpec, HostConfig};
    ///
    /// let raw: RawAppSpec = serde_json::from_str(
    ///     r#"{"functions": [{"name": "9lives", "kind": "plain"}]}"#,
    /// ).unwrap();
    /// let error = AppSpec::validate(raw, &HostConfig::default()).unwrap_err();
    /// assert_eq!(
    ///     error.to_string(),
    ///     "invalid app spec: function `9lives`: a name starts with a letter \
    ///      and has only letters, digits, `_` and `-`",
    /// );
    /// ```
    pub fn validate(raw: RawAppSpec, config: &HostConfig) -> Result<AppSpec, Error> {
        validate(raw, config).map_err(Error::InvalidSpec)
    }

    /// The function called `name`.
    pub fn function(&self, name: &str) -> Option<&FunctionSpec> {
        self.functions.iter().find(|f| f.name == name)
    }

    /// All function names.
    pub fn names(&self) -> Vec<String> {
        self.functions.iter().map(|f| f.name.clone()).collect()
    }

    /// The spec of a component that only exports `wasi:http/incoming-handler`:
    /// one web function, `web`, accepting every method.
    pub(crate) fn proxy(config: &HostConfig) -> AppSpec {
        AppSpec {
            functions: vec![FunctionSpec {
                name: "web".into(),
                kind: FunctionKind::Web { method: None },
                description: Some("the component's wasi:http handler".into()),
                signature: None,
                settings: Settings::defaults(config),
            }],
            sdk: None,
            has_enter: false,
            has_exit: false,
            secrets: Vec::new(),
        }
    }
}

/// One validated function.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct FunctionSpec {
    /// Its name.
    pub name: String,
    /// Plain, web or scheduled.
    pub kind: FunctionKind,
    /// One line describing it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// A readable signature.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signature: Option<String>,
    /// Its settings, defaults filled in.
    pub settings: Settings,
}

/// The secret names a guest's `needs.secrets` gave: sorted, each once,
/// each 1 to 63 letters, digits, `-` or `_` (at most 64 of them).
pub fn validate_secret_names(mut names: Vec<String>) -> Result<Vec<String>, crate::Error> {
    names.sort();
    names.dedup();
    let bad: Vec<String> = names
        .iter()
        .filter(|n| {
            n.is_empty()
                || n.len() > 63
                || !n.starts_with(|c: char| c.is_ascii_alphanumeric())
                || !n
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
        .map(|n| {
            format!(
                "secret name `{}` is not 1 to 63 letters, digits, `-` or `_`",
                n.escape_debug()
            )
        })
        .collect();
    if names.len() > 64 {
        return Err(crate::Error::InvalidSpec(vec![format!(
            "{} secrets; at most 64",
            names.len()
        )]));
    }
    if !bad.is_empty() {
        return Err(crate::Error::InvalidSpec(bad));
    }
    Ok(names)
}

/// How a function is triggered.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum FunctionKind {
    /// Invoked by clients.
    Plain,
    /// Reached over HTTP.
    Web {
        /// The only method accepted, if any.
        #[serde(skip_serializing_if = "Option::is_none")]
        method: Option<String>,
    },
    /// Run by the scheduler.
    Scheduled {
        /// When.
        schedule: Schedule,
    },
}

impl FunctionKind {
    /// `plain`, `web` or `scheduled`.
    pub fn name(&self) -> &'static str {
        match self {
            FunctionKind::Plain => "plain",
            FunctionKind::Web { .. } => "web",
            FunctionKind::Scheduled { .. } => "scheduled",
        }
    }
}

/// When a scheduled function runs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Schedule {
    /// A cron expression with seconds, in a time zone (UTC if none).
    Cron {
        /// `sec min hour day-of-month month day-of-week [year]`.
        expression: String,
        /// An IANA time zone such as `Europe/Paris`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        timezone: Option<String>,
    },
    /// A fixed period.
    #[serde(rename = "period_ms", with = "millis")]
    Period(Duration),
}

impl std::fmt::Display for Schedule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Schedule::Cron {
                expression,
                timezone,
            } => write!(
                f,
                "cron `{expression}` ({})",
                timezone.as_deref().unwrap_or("UTC")
            ),
            Schedule::Period(d) => write!(f, "every {}", human(*d)),
        }
    }
}

/// Settings of one function, defaults applied.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Settings {
    /// Wall-clock limit of one execution.
    #[serde(rename = "timeout_ms", with = "millis")]
    pub timeout: Duration,
    /// Retries of a failed scheduled run.
    pub retries: u32,
    /// Instances kept warm when idle.
    pub min_warm: u32,
    /// Instances running at once.
    pub max_instances: u32,
    /// Executions per instance before it is replaced; `None` is unlimited.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_requests_per_instance: Option<u32>,
}

/// Pool settings given at deploy to a plain `wasi:http` component, which
/// has no `describe` to declare its own (`modal deploy --max-requests N
/// --min-warm N --max-instances N --timeout D`). `None` keeps the default.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolSettings {
    /// Wall-clock limit of one request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Duration>,
    /// Instances kept warm when idle.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_warm: Option<u32>,
    /// Instances running at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_instances: Option<u32>,
    /// Requests per instance before it is replaced (1: a fresh instance
    /// for every request).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_requests: Option<u32>,
}

impl PoolSettings {
    /// Whether no setting is given.
    pub fn is_empty(&self) -> bool {
        *self == PoolSettings::default()
    }

    /// Applies the given settings over `settings`; every problem is listed.
    pub(crate) fn apply(&self, settings: &mut Settings) -> Result<(), Vec<String>> {
        let mut problems = Vec::new();
        if let Some(timeout) = self.timeout {
            if timeout.is_zero() || timeout > MAX_TIMEOUT {
                problems.push(format!(
                    "--timeout must be more than 0 and at most {}",
                    human(MAX_TIMEOUT)
                ));
            }
            settings.timeout = timeout;
        }
        if let Some(n) = self.max_instances {
            if n == 0 {
                problems.push("--max-instances must be at least 1".into());
            }
            settings.max_instances = n;
        }
        if let Some(n) = self.min_warm {
            settings.min_warm = n;
        }
        if settings.min_warm > settings.max_instances {
            problems.push(format!(
                "--min-warm ({}) cannot exceed --max-instances ({})",
                settings.min_warm, settings.max_instances
            ));
        }
        if let Some(n) = self.max_requests {
            if n == 0 {
                problems.push("--max-requests must be at least 1".into());
            }
            settings.max_requests_per_instance = Some(n);
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems)
        }
    }
}

impl Settings {
    fn defaults(config: &HostConfig) -> Settings {
        Settings {
            timeout: config.default_timeout,
            retries: 0,
            min_warm: 0,
            max_instances: config.default_max_instances,
            max_requests_per_instance: None,
        }
    }
}

/// Durations as whole milliseconds in JSON.
mod millis {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_millis() as u64)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_millis)
    }
}

/// A duration as people write it and [`parse_duration`] reads it back:
/// `500ms`, `2s`, `5m`, `1h1m1s` (modal's one grammar, `modal-duration`).
pub fn human(d: Duration) -> String {
    modal_duration::format(d)
}

/// Parses a duration as people write it: `500ms`, `30s`, `5m`, `2h`,
/// `7d`, or terms added up such as `1h30m`. The grammar and its error
/// message are `modal-duration`'s, the same the guest SDK's macros use at
/// compile time: "`5 minutes` is not a duration; write e.g. 500ms, 30s,
/// 5m, 2h or 7d".
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    modal_duration::parse(text).map_err(|e| e.to_string())
}

/// The host label of a function in web URLs: lower case, `_` as `-`.
pub(crate) fn web_label(name: &str) -> String {
    name.to_ascii_lowercase().replace('_', "-")
}

/// Whether `label` is [`web_label`]`(name)`, without building it.
pub(crate) fn is_web_label(name: &str, label: &str) -> bool {
    name.len() == label.len()
        && name.bytes().zip(label.bytes()).all(|(n, l)| {
            let n = if n == b'_' {
                b'-'
            } else {
                n.to_ascii_lowercase()
            };
            n == l
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(name: &str, kind: RawFunctionKind) -> RawFunctionSpec {
        RawFunctionSpec {
            name: name.into(),
            kind,
            description: None,
            signature: None,
            timeout_ms: None,
            retries: None,
            min_warm: None,
            max_instances: None,
            max_requests_per_instance: None,
        }
    }

    fn check(functions: Vec<RawFunctionSpec>) -> Result<AppSpec, Vec<String>> {
        validate(
            RawAppSpec {
                functions,
                sdk: None,
                has_enter: false,
                has_exit: false,
            },
            &HostConfig::default(),
        )
    }

    #[test]
    fn defaults_are_filled_in() {
        let spec = check(vec![raw("square", RawFunctionKind::Plain)]).unwrap();
        let s = &spec.functions[0].settings;
        assert_eq!(s.timeout, crate::config::DEFAULT_TIMEOUT);
        assert_eq!(s.max_instances, crate::config::DEFAULT_MAX_INSTANCES);
        assert_eq!(s.min_warm, 0);
    }

    #[test]
    fn every_problem_is_reported_with_its_function() {
        let mut slow = raw("slow", RawFunctionKind::Plain);
        slow.timeout_ms = Some(0);
        slow.min_warm = Some(5);
        slow.max_instances = Some(2);
        let problems = check(vec![
            raw(
                "tick",
                RawFunctionKind::Scheduled(RawSchedule::Cron(RawCronSchedule {
                    expression: "* * *".into(),
                    timezone: None,
                })),
            ),
            raw("dup", RawFunctionKind::Plain),
            raw("dup", RawFunctionKind::Plain),
            raw(
                "zoned",
                RawFunctionKind::Scheduled(RawSchedule::Cron(RawCronSchedule {
                    expression: "0 0 9 * * *".into(),
                    timezone: Some("Mars/Olympus".into()),
                })),
            ),
            raw("9lives", RawFunctionKind::Plain),
            raw("fast", RawFunctionKind::Scheduled(RawSchedule::PeriodMs(5))),
            raw(
                "w",
                RawFunctionKind::Web(RawWebRoute {
                    method: Some("G ET".into()),
                }),
            ),
            slow,
        ])
        .unwrap_err();
        let text = problems.join("\n");
        assert!(
            text.contains("function `tick`: invalid cron expression `* * *`"),
            "{text}"
        );
        assert!(
            text.contains("function `dup`: declared more than once"),
            "{text}"
        );
        assert!(
            text.contains("function `9lives`: a name starts with a letter"),
            "{text}"
        );
        assert!(
            text.contains("function `fast`: a period of 5ms is shorter"),
            "{text}"
        );
        assert!(
            text.contains("function `w`: invalid HTTP method `G ET`"),
            "{text}"
        );
        assert!(
            text.contains("function `slow`: timeout 0ms is not between"),
            "{text}"
        );
        assert!(
            text.contains("function `slow`: min_warm 5 is more than max_instances 2"),
            "{text}"
        );
    }

    #[test]
    fn web_labels_must_not_collide() {
        let problems = check(vec![
            raw("a_b", RawFunctionKind::Plain),
            raw("a-b", RawFunctionKind::Plain),
        ])
        .unwrap_err();
        assert_eq!(
            problems,
            ["function `a-b`: its URL label `a-b` collides with another function's"]
        );
    }

    #[test]
    fn web_labels_match_without_being_built() {
        for (name, label) in [("say_hi", "say-hi"), ("Greet", "greet"), ("web", "web")] {
            assert_eq!(web_label(name), label);
            assert!(is_web_label(name, label), "{name} {label}");
        }
        assert!(!is_web_label("say_hi", "say_hi"));
        assert!(!is_web_label("greet", "greets"));
        assert!(!is_web_label("greet", "Greet"));
    }

    #[test]
    fn an_empty_app_is_rejected() {
        assert_eq!(
            check(vec![]).unwrap_err(),
            ["the app declares no functions"]
        );
    }

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("7d"), Ok(Duration::from_secs(7 * 86_400)));
        assert!(parse_duration("").is_err());
        assert!(parse_duration("5").is_err());
        assert!(parse_duration("5 minutes").is_err());
    }

    #[test]
    fn durations_read_naturally() {
        assert_eq!(human(Duration::from_millis(500)), "500ms");
        assert_eq!(human(Duration::from_secs(2)), "2s");
        assert_eq!(human(Duration::from_secs(300)), "5m");
        assert_eq!(human(Duration::from_secs(3600)), "1h");
        assert_eq!(human(Duration::from_secs(3661)), "1h1m1s");
    }
}
