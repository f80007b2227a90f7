//! The spec as a guest's `describe` returns it, before validation: the
//! `app-spec` record of `wit/modal.wit`, field for field. In JSON the names
//! are the WIT names (`timeout-ms`, `period-ms`) and variants are written
//! as `"plain"` or `{"web": {"method": "GET"}}`. Nothing here is trusted;
//! [`AppSpec::validate`](super::AppSpec::validate) is the only way from a
//! raw spec to an [`AppSpec`](super::AppSpec).

use crate::bindings as wit;
use serde::{Deserialize, Serialize};

/// Everything an app says it offers (WIT `app-spec`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct RawAppSpec {
    /// The app's functions.
    pub functions: Vec<RawFunctionSpec>,
    /// Which SDK built the guest, e.g. `modal-guest-rust 0.1.0`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sdk: Option<String>,
    /// Whether the guest's `lifecycle.enter` hook does anything.
    #[serde(default)]
    pub has_enter: bool,
    /// Whether the guest's `lifecycle.exit` hook does anything.
    #[serde(default)]
    pub has_exit: bool,
}

/// One function and its settings (WIT `function-spec`); `None` takes the
/// host's default.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct RawFunctionSpec {
    /// The function's name.
    pub name: String,
    /// Plain, web or scheduled.
    pub kind: RawFunctionKind,
    /// A one-line description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// A readable signature.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<String>,
    /// Wall-clock limit of one execution, in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    /// Retries of a failed scheduled run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retries: Option<u32>,
    /// Instances kept warm when idle.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_warm: Option<u32>,
    /// Most instances running at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_instances: Option<u32>,
    /// Executions per instance before it is replaced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_requests_per_instance: Option<u32>,
}

/// How a function is triggered (WIT `function-kind`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub enum RawFunctionKind {
    /// Invoked by clients.
    Plain,
    /// Reached over HTTP.
    Web(RawWebRoute),
    /// Run by the scheduler.
    Scheduled(RawSchedule),
}

/// How a web function is reached (WIT `web-route`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct RawWebRoute {
    /// The only method accepted; `None` accepts every method.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
}

/// When a scheduled function runs (WIT `schedule`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub enum RawSchedule {
    /// On the times a cron expression names.
    Cron(RawCronSchedule),
    /// A fixed period between runs, in milliseconds.
    PeriodMs(u64),
}

/// A cron schedule (WIT `cron-schedule`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct RawCronSchedule {
    /// `sec min hour day-of-month month day-of-week [year]`.
    pub expression: String,
    /// An IANA time zone; `None` is UTC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
}

impl From<wit::RawSpec> for RawAppSpec {
    fn from(raw: wit::RawSpec) -> Self {
        RawAppSpec {
            functions: raw.functions.into_iter().map(Into::into).collect(),
            sdk: raw.sdk,
            has_enter: raw.has_enter,
            has_exit: raw.has_exit,
        }
    }
}

impl From<wit::RawFunction> for RawFunctionSpec {
    fn from(f: wit::RawFunction) -> Self {
        RawFunctionSpec {
            name: f.name,
            kind: f.kind.into(),
            description: f.description,
            signature: f.signature,
            timeout_ms: f.timeout_ms,
            retries: f.retries,
            min_warm: f.min_warm,
            max_instances: f.max_instances,
            max_requests_per_instance: f.max_requests_per_instance,
        }
    }
}

impl From<wit::RawKind> for RawFunctionKind {
    fn from(kind: wit::RawKind) -> Self {
        match kind {
            wit::RawKind::Plain => RawFunctionKind::Plain,
            wit::RawKind::Web(route) => RawFunctionKind::Web(RawWebRoute {
                method: route.method,
            }),
            wit::RawKind::Scheduled(wit::RawSchedule::Cron(cron)) => {
                RawFunctionKind::Scheduled(RawSchedule::Cron(RawCronSchedule {
                    expression: cron.expression,
                    timezone: cron.timezone,
                }))
            }
            wit::RawKind::Scheduled(wit::RawSchedule::PeriodMs(ms)) => {
                RawFunctionKind::Scheduled(RawSchedule::PeriodMs(ms))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_uses_the_wit_names() {
        let json = r#"{"functions": [
            {"name": "square", "kind": "plain", "timeout-ms": 2000},
            {"name": "greet", "kind": {"web": {"method": "GET"}}},
            {"name": "tick", "kind": {"scheduled": {"cron": {"expression": "0 * * * * *"}}}},
            {"name": "beat", "kind": {"scheduled": {"period-ms": 1000}}, "max-requests-per-instance": 1}
        ], "has-enter": true}"#;
        let raw: RawAppSpec = serde_json::from_str(json).unwrap();
        assert_eq!(raw.functions[0].timeout_ms, Some(2000));
        assert_eq!(
            raw.functions[1].kind,
            RawFunctionKind::Web(RawWebRoute {
                method: Some("GET".into())
            })
        );
        assert_eq!(
            raw.functions[3].kind,
            RawFunctionKind::Scheduled(RawSchedule::PeriodMs(1000))
        );
        assert!(raw.has_enter && !raw.has_exit);
        let again: RawAppSpec =
            serde_json::from_str(&serde_json::to_string(&raw).unwrap()).unwrap();
        assert_eq!(again, raw);
        assert!(serde_json::from_str::<RawAppSpec>(r#"{"functions": [], "extra": 1}"#).is_err());
    }
}
