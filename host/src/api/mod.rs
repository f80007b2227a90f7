//! The request and response bodies of `/api/v1`, the control API that
//! `modal server` answers and the `modal` CLI calls: one typed contract
//! that both ends use, so neither reads or writes a JSON key by hand.
//!
//! Every answer is JSON. A failed request answers with an error status and
//! an [`ErrorBody`]; a call that ran and failed answers with an error
//! status and a [`CallResult`] whose `error` is set. A request's parameters
//! travel in its query string ([`query`]); the body of a deploy is the
//! component and the body of a call or spawn is the function's JSON input.
//!
//! | Route | Parameters | Answer |
//! | --- | --- | --- |
//! | `GET apps` | | [`AppList`] |
//! | `GET apps/{app}` | | [`AppDetail`] |
//! | `GET apps/{app}/history` | | [`History`] |
//! | `POST apps/{app}/deploy` | [`DeployQuery`] | [`Deployed`] |
//! | `POST apps/{app}/rollback` | [`RollbackQuery`] | [`Deployed`] |
//! | `POST apps/{app}/stop` | | [`Stopped`] |
//! | `POST apps/{app}/functions/{f}/call` | [`VersionQuery`] | [`CallResult`] |
//! | `POST apps/{app}/functions/{f}/spawn` | [`VersionQuery`] | [`Spawned`] |
//! | `GET calls/{id}` | [`ResultQuery`] | [`CallStatus`] |
//! | `GET apps/{app}/logs` | [`LogsQuery`] | [`Executions`], or with `follow` a [`sse`] stream of [`ExecutionRecord`]s |
//! | `GET apps/{app}/stats` | | [`Stats`] |
//! | `GET apps/{app}/schedules` | | [`Schedules`] |
//! | `POST apps/{app}/schedules/{f}/pause` | | [`Paused`] |
//! | `POST apps/{app}/schedules/{f}/resume` | | [`Paused`] |
//! | `POST apps/{app}/schedules/{f}/run` | | [`RunStarted`] |
//! | `POST gc` | | [`GcReport`] |

pub mod query;
pub mod sse;

pub use crate::app::Trigger;
pub use crate::error::Outcome;
pub use crate::platform::{
    AppRecord, AppState, AppStatus, CallState, Deployment, DrainStatus, ExecutionRecord, GcReport,
    GitInfo, ScheduleStatus, Usage, VersionRecord, VersionState, VersionStatus,
};
pub use crate::pool::PoolStats;
pub use query::{DeployQuery, LogsQuery, ResultQuery, RollbackQuery, VersionQuery};

use crate::error::Error;
use crate::platform::CallRecord;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The body of every failed answer: `{"error": {"kind", "message"}}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// What failed.
    pub error: ApiError,
}

/// What failed, as a machine-readable kind and a sentence for a person.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{message}")]
pub struct ApiError {
    /// The kind of failure, as [`Error::kind`] names it (`app_not_found`,
    /// `timeout`, …), or `no_route` for a path the API does not have.
    #[serde(default)]
    pub kind: String,
    /// The error message.
    pub message: String,
    /// For a web function that failed inside the guest, the id that is
    /// also in the execution's logs (the message says no more).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
}

impl ApiError {
    /// An error of `kind` saying `message`.
    pub fn new(kind: &str, message: impl Into<String>) -> ApiError {
        ApiError {
            kind: kind.to_string(),
            message: message.into(),
            id: None,
        }
    }

    /// The error of a request for a route the API does not have.
    pub fn no_route(what: &str) -> ApiError {
        ApiError::new("no_route", format!("no such API route: {what}"))
    }
}

impl From<&Error> for ApiError {
    fn from(e: &Error) -> ApiError {
        ApiError::new(e.kind(), e.to_string())
    }
}

impl From<ApiError> for ErrorBody {
    fn from(error: ApiError) -> ErrorBody {
        ErrorBody { error }
    }
}

/// The answer of `GET apps`: every app the server keeps.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AppList {
    /// The apps, by name.
    pub apps: Vec<AppStatus>,
}

/// The answer of `GET hosts`: the live hosts on the same stores, the one
/// that answers first.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct HostList {
    /// The hosts.
    pub hosts: Vec<crate::platform::HostRecord>,
}

/// The answer of `GET apps/{app}`: an app, its versions and its live pools.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AppDetail {
    /// The app's state.
    pub app: AppStatus,
    /// Its versions, oldest first.
    pub versions: Vec<VersionStatus>,
    /// The instance pools of its live version, one per function.
    pub pools: Vec<PoolStats>,
    /// The addresses of its live version's web functions.
    pub web: Vec<WebUrl>,
    /// The address of the app's page.
    pub app_url: String,
}

/// The answer of `GET apps/{app}/history`: an app and its versions.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct History {
    /// The app's state.
    pub app: AppStatus,
    /// Its versions, oldest first.
    pub versions: Vec<VersionStatus>,
}

/// Where a web function answers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebUrl {
    /// The web function.
    pub function: String,
    /// Its address.
    pub url: String,
}

/// The answer of a deploy or a rollback: the new live version.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Deployed {
    /// What was deployed.
    pub deployment: Deployment,
    /// The addresses of its web functions.
    pub web: Vec<WebUrl>,
    /// The address of the app's page.
    pub app_url: String,
}

/// The answer of `POST apps/{app}/stop`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Stopped {
    /// The app.
    pub app: String,
    /// Its state now: stopped.
    pub state: AppState,
    /// How each live host took it, this one first.
    #[serde(default)]
    pub hosts: Vec<crate::platform::HostReport>,
}

/// What a function returned.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Output {
    /// The output, when it is JSON (the `output` key).
    Output(Value),
    /// The output as text, when it is not JSON (the `output_text` key).
    OutputText(String),
}

impl Output {
    /// The output of a function: JSON when it parses as JSON, else text.
    pub fn from_bytes(bytes: &[u8]) -> Output {
        match serde_json::from_slice(bytes) {
            Ok(value) => Output::Output(value),
            Err(_) => Output::OutputText(String::from_utf8_lossy(bytes).into_owned()),
        }
    }

    /// The output as a line of text: compact JSON, or the text itself.
    pub fn to_text(&self) -> String {
        match self {
            Output::Output(value) => value.to_string(),
            Output::OutputText(text) => text.clone(),
        }
    }
}

/// The answer of `POST apps/{app}/functions/{f}/call`: one execution.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CallResult {
    /// The app.
    pub app: String,
    /// The version that ran the call.
    pub version: u64,
    /// The function.
    pub function: String,
    /// How long the execution took, in ms.
    pub duration_ms: f64,
    /// What the guest printed while it ran.
    pub logs: String,
    /// What the function returned, when it succeeded.
    #[serde(flatten)]
    pub output: Option<Output>,
    /// Why it failed, when it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ApiError>,
}

/// The answer of `POST apps/{app}/functions/{f}/spawn`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Spawned {
    /// The id to fetch the result with (`GET calls/{id}`).
    pub call_id: String,
}

/// The answer of `GET calls/{id}`: a spawned call and, once it finished,
/// its result.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CallStatus {
    /// The call's id.
    pub id: String,
    /// The app.
    pub app: String,
    /// The function.
    pub function: String,
    /// Whether it is pending, succeeded or failed.
    pub state: CallState,
    /// When it was spawned, Unix ms.
    pub created_at: u64,
    /// When it finished, Unix ms.
    pub finished_at: Option<u64>,
    /// What the function returned, when it succeeded.
    #[serde(flatten)]
    pub output: Option<Output>,
    /// Why it failed, when it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ApiError>,
}

impl From<CallRecord> for CallStatus {
    fn from(record: CallRecord) -> CallStatus {
        let state = record.state;
        let kind = record.error_kind.unwrap_or_default();
        let error = record.error.map(|message| ApiError::new(&kind, message));
        CallStatus {
            id: record.id,
            app: record.app,
            function: record.function,
            state,
            created_at: record.created_at,
            finished_at: record.finished_at,
            output: record.output.as_deref().map(Output::from_bytes),
            error,
        }
    }
}

/// The answer of `GET apps/{app}/logs`: recent executions.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Executions {
    /// The executions, oldest first.
    pub executions: Vec<ExecutionRecord>,
}

/// The body of `POST secrets/{name}`: the secret's variables.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretCreate {
    /// `KEY` → `VALUE`.
    pub vars: std::collections::BTreeMap<String, String>,
}

impl std::fmt::Debug for SecretCreate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let keys: Vec<&String> = self.vars.keys().collect();
        f.debug_struct("SecretCreate").field("keys", &keys).finish()
    }
}

/// The answer of `GET secrets`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Secrets {
    /// Every secret, by name; never a value.
    pub secrets: Vec<crate::platform::SecretInfo>,
}

/// The answer of `DELETE secrets/{name}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretDeleted {
    /// The secret.
    pub name: String,
}

/// One key-value bucket of an app.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DictInfo {
    /// Its name.
    pub name: String,
    /// How many keys it holds.
    pub keys: u64,
}

/// The answer of `GET apps/{app}/dicts`: the buckets that hold keys.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dicts {
    /// The buckets, by name.
    pub dicts: Vec<DictInfo>,
}

/// The answer of `GET apps/{app}/dicts/{bucket}`: a page of its keys.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DictKeys {
    /// The keys, in order.
    pub keys: Vec<String>,
    /// Pass as `cursor` for the next page; absent on the last.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<u64>,
}

/// The answer of `GET apps/{app}/dicts/{bucket}/keys/{key}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DictValue {
    /// The key.
    pub key: String,
    /// The value: JSON when it parses as JSON, else text.
    #[serde(flatten)]
    pub value: Output,
}

/// The answer of a change to a bucket (put, delete, clear).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DictChanged {
    /// The bucket.
    pub dict: String,
}

/// The answer of `GET apps/{app}/stats`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Stats {
    /// Usage per version and function.
    pub usage: Vec<Usage>,
}

/// The answer of `GET apps/{app}/schedules`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Schedules {
    /// The app's schedules and their next fire times.
    pub schedules: Vec<ScheduleStatus>,
}

/// The answer of pausing or resuming a schedule.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Paused {
    /// Whether the schedule is paused now.
    pub paused: bool,
}

/// The answer of `POST apps/{app}/schedules/{f}/run`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunStarted {
    /// The id of the run, as its executions record it.
    pub run_id: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn outputs_are_json_or_text_under_their_own_keys() {
        let mut result = CallResult {
            app: "a".into(),
            version: 1,
            function: "f".into(),
            duration_ms: 1.5,
            logs: String::new(),
            output: Some(Output::from_bytes(b"null")),
            error: None,
        };
        let value = serde_json::to_value(&result).unwrap();
        assert_eq!(value["output"], Value::Null);
        assert!(value.get("output").is_some() && value.get("error").is_none());
        let back: CallResult = serde_json::from_value(value).unwrap();
        assert_eq!(back.output, Some(Output::Output(Value::Null)));

        result.output = Some(Output::from_bytes(b"not json"));
        let value = serde_json::to_value(&result).unwrap();
        assert_eq!(value["output_text"], "not json");
        assert_eq!(serde_json::from_value::<CallResult>(value).unwrap(), result);

        result.output = None;
        result.error = Some(ApiError::new("trap", "it trapped"));
        let value = serde_json::to_value(&result).unwrap();
        assert_eq!(
            value["error"],
            json!({"kind": "trap", "message": "it trapped"})
        );
        assert!(value.get("output").is_none() && value.get("output_text").is_none());
        assert_eq!(serde_json::from_value::<CallResult>(value).unwrap(), result);
    }

    #[test]
    fn a_spawned_call_keeps_its_wire_shape() {
        let record = CallRecord {
            id: "call-1".into(),
            app: "a".into(),
            function: "f".into(),
            state: CallState::Succeeded,
            output: Some(b"{\"x\":1}".to_vec()),
            error: None,
            error_kind: None,
            created_at: 5,
            finished_at: None,
            caller: None,
        };
        let value = serde_json::to_value(CallStatus::from(record)).unwrap();
        assert_eq!(
            value,
            json!({"id": "call-1", "app": "a", "function": "f", "state": "succeeded",
                   "created_at": 5, "finished_at": null, "output": {"x": 1}})
        );
    }

    #[test]
    fn the_error_envelope_round_trips() {
        let body = ErrorBody::from(ApiError::no_route("GET /api/v1/nope"));
        let text = serde_json::to_string(&body).unwrap();
        assert_eq!(
            text,
            r#"{"error":{"kind":"no_route","message":"no such API route: GET /api/v1/nope"}}"#
        );
        assert_eq!(serde_json::from_str::<ErrorBody>(&text).unwrap(), body);
    }
}
