//! The query parameters of `/api/v1` requests: each type builds its query
//! string for the client ([`to_query`](DeployQuery::to_query)) and reads it
//! back on the server (`parse`), with the server's error for a bad value.
//! Queries are `application/x-www-form-urlencoded` (`form_urlencoded`).

use crate::error::Error;
use crate::platform::{DeployRequest, GitInfo};
use crate::spec::PoolSettings;
use std::time::Duration;

/// The decoded `key=value` pairs of a query string, in order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Pairs(Vec<(String, String)>);

impl Pairs {
    /// The pairs of `query` (none for no query).
    pub fn parse(query: Option<&str>) -> Pairs {
        let query = query.unwrap_or("").as_bytes();
        Pairs(form_urlencoded::parse(query).into_owned().collect())
    }

    /// The first value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The first value of `key`, unless it is missing or empty.
    pub fn non_empty(&self, key: &str) -> Option<&str> {
        self.get(key).filter(|v| !v.is_empty())
    }

    /// Every value of `key`, in order.
    pub fn all<'a, 'k>(&'a self, key: &'k str) -> impl Iterator<Item = &'a str> + use<'a, 'k> {
        self.0
            .iter()
            .filter(move |(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The pairs as owned tuples.
    pub fn into_vec(self) -> Vec<(String, String)> {
        self.0
    }
}

/// A query string being built.
struct Builder(form_urlencoded::Serializer<'static, String>);

impl Builder {
    fn new() -> Builder {
        Builder(form_urlencoded::Serializer::new(String::new()))
    }

    fn add(&mut self, key: &str, value: impl AsRef<str>) -> &mut Builder {
        self.0.append_pair(key, value.as_ref());
        self
    }

    fn add_some(&mut self, key: &str, value: Option<impl ToString>) -> &mut Builder {
        if let Some(value) = value {
            self.0.append_pair(key, &value.to_string());
        }
        self
    }

    fn finish(&mut self) -> String {
        self.0.finish()
    }
}

/// `version`: `3` or `v3`, or missing or empty for none.
fn version(pairs: &Pairs) -> Result<Option<u64>, Error> {
    match pairs.get("version") {
        None | Some("") => Ok(None),
        Some(v) => v
            .trim_start_matches('v')
            .parse()
            .map(Some)
            .map_err(|_| Error::BadInput(format!("`{v}` is not a version number"))),
    }
}

/// Who deploys when a request does not say.
const UNKNOWN_DEPLOYER: &str = "unknown";

/// The parameters of `POST apps/{app}/deploy` (the body is the component).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DeployQuery {
    /// Who deploys (`deployer`); `unknown` when missing.
    pub deployer: String,
    /// Environment variables for the guest (`env=KEY=VALUE`, repeated).
    pub env: Vec<(String, String)>,
    /// Hosts the app may send HTTP requests to (`allow_http`, repeated).
    pub allow_http: Vec<String>,
    /// Apps whose functions may call this app's (`allow_caller`,
    /// repeated; `*` for every app).
    pub allow_callers: Vec<String>,
    /// Secrets to attach (`secret`, repeated).
    pub secrets: Vec<String>,
    /// Directories to mount (`mount`, repeated: a JSON
    /// [`MountRecord`](crate::platform::MountRecord) whose archive was
    /// uploaded with `PUT archives/{digest}`).
    pub mounts: Vec<crate::platform::MountRecord>,
    /// Where failed scheduled runs are reported (`notify`).
    pub notify: Option<String>,
    /// A label for the version (`tag`).
    pub tag: Option<String>,
    /// The commit deployed from (`git_commit`, `git_dirty`).
    pub git: Option<GitInfo>,
    /// Pool settings of a plain `wasi:http` component (`timeout`,
    /// `min_warm`, `max_instances`, `max_requests`).
    pub pool: PoolSettings,
}

impl DeployQuery {
    /// The query string.
    pub fn to_query(&self) -> String {
        let mut query = Builder::new();
        query.add("deployer", &self.deployer);
        for (k, v) in &self.env {
            query.add("env", format!("{k}={v}"));
        }
        for host in &self.allow_http {
            query.add("allow_http", host);
        }
        for app in &self.allow_callers {
            query.add("allow_caller", app);
        }
        for secret in &self.secrets {
            query.add("secret", secret);
        }
        for mount in &self.mounts {
            if let Ok(json) = serde_json::to_string(mount) {
                query.add("mount", json);
            }
        }
        query
            .add_some("notify", self.notify.as_ref())
            .add_some("tag", self.tag.as_ref())
            .add_some("max_requests", self.pool.max_requests)
            .add_some("min_warm", self.pool.min_warm)
            .add_some("max_instances", self.pool.max_instances)
            .add_some(
                "timeout",
                self.pool.timeout.map(|t| format!("{}ms", t.as_millis())),
            );
        if let Some(git) = &self.git {
            query
                .add("git_commit", &git.commit)
                .add("git_dirty", git.dirty.to_string());
        }
        query.finish()
    }

    /// Reads the parameters; environment entries must be `KEY=VALUE` with
    /// names a guest may be given.
    pub fn parse(pairs: &Pairs) -> Result<DeployQuery, Error> {
        let mut env = Vec::new();
        for v in pairs.all("env") {
            match v.split_once('=') {
                Some((key, value)) if !key.is_empty() => {
                    env.push((key.to_string(), value.to_string()))
                }
                _ => {
                    return Err(Error::BadInput(format!(
                        "environment entries are KEY=VALUE, got `{v}`"
                    )));
                }
            }
        }
        crate::platform::validate_env(&env)?;
        let allow_callers: Vec<String> = pairs.all("allow_caller").map(str::to_string).collect();
        crate::platform::validate_callers(&allow_callers)?;
        let mounts = pairs
            .all("mount")
            .map(|m| {
                serde_json::from_str(m).map_err(|e| {
                    Error::BadInput(format!(
                        "`mount` is a JSON object with digest, path, source, files and bytes: {e}"
                    ))
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let git = pairs.non_empty("git_commit").map(|commit| GitInfo {
            commit: commit.to_string(),
            dirty: pairs.get("git_dirty") == Some("true"),
        });
        Ok(DeployQuery {
            deployer: pairs
                .get("deployer")
                .unwrap_or(UNKNOWN_DEPLOYER)
                .to_string(),
            env,
            allow_http: pairs.all("allow_http").map(str::to_string).collect(),
            allow_callers,
            secrets: pairs.all("secret").map(str::to_string).collect(),
            mounts,
            notify: pairs.non_empty("notify").map(str::to_string),
            tag: pairs.non_empty("tag").map(str::to_string),
            git,
            pool: pool_settings(pairs)?,
        })
    }

    /// The deploy of app `name` these parameters ask for.
    pub fn into_request(self, name: &str) -> DeployRequest {
        DeployRequest {
            name: name.to_string(),
            env: self.env,
            allow_http: self.allow_http,
            allow_callers: self.allow_callers,
            secrets: self.secrets,
            mounts: self.mounts,
            notify: self.notify,
            tag: self.tag,
            deployer: self.deployer,
            git: self.git,
            pool: self.pool,
        }
    }
}

/// `timeout`, `min_warm`, `max_instances`, `max_requests` of a deploy.
fn pool_settings(pairs: &Pairs) -> Result<PoolSettings, Error> {
    let count = |name: &str| -> Result<Option<u32>, Error> {
        pairs
            .get(name)
            .map(|v| {
                v.parse().map_err(|_| {
                    Error::BadInput(format!("`{name}` must be a whole number, got `{v}`"))
                })
            })
            .transpose()
    };
    Ok(PoolSettings {
        timeout: pairs
            .get("timeout")
            .map(|v| {
                crate::spec::parse_duration(v)
                    .map_err(|e| Error::BadInput(format!("`timeout`: {e}")))
            })
            .transpose()?,
        min_warm: count("min_warm")?,
        max_instances: count("max_instances")?,
        max_requests: count("max_requests")?,
    })
}

/// The parameters of `POST apps/{app}/rollback`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RollbackQuery {
    /// The version whose code to restore (`version`); the one before the
    /// live one when missing.
    pub version: Option<u64>,
    /// Who rolls back (`deployer`); `unknown` when missing.
    pub deployer: String,
}

impl RollbackQuery {
    /// The query string.
    pub fn to_query(&self) -> String {
        Builder::new()
            .add("deployer", &self.deployer)
            .add_some("version", self.version)
            .finish()
    }

    /// Reads the parameters.
    pub fn parse(pairs: &Pairs) -> Result<RollbackQuery, Error> {
        Ok(RollbackQuery {
            version: version(pairs)?,
            deployer: pairs
                .get("deployer")
                .unwrap_or(UNKNOWN_DEPLOYER)
                .to_string(),
        })
    }
}

/// The parameters of a call or spawn.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VersionQuery {
    /// Run this kept version instead of the live one (`version`, `3` or
    /// `v3`).
    pub version: Option<u64>,
}

impl VersionQuery {
    /// The query string (empty for the live version).
    pub fn to_query(&self) -> String {
        Builder::new().add_some("version", self.version).finish()
    }

    /// Reads the parameters.
    pub fn parse(pairs: &Pairs) -> Result<VersionQuery, Error> {
        Ok(VersionQuery {
            version: version(pairs)?,
        })
    }
}

/// Longest `wait` a result request may ask for.
pub const MAX_WAIT: Duration = Duration::from_secs(300);

/// The parameters of `GET calls/{id}`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ResultQuery {
    /// How long to wait for the call to finish (`wait`): a duration such as
    /// `30s`, or whole seconds; no wait when missing. At most [`MAX_WAIT`].
    pub wait: Option<String>,
}

impl ResultQuery {
    /// The query string.
    pub fn to_query(&self) -> String {
        Builder::new().add_some("wait", self.wait.as_ref()).finish()
    }

    /// Reads the parameters.
    pub fn parse(pairs: &Pairs) -> ResultQuery {
        ResultQuery {
            wait: pairs.get("wait").map(str::to_string),
        }
    }

    /// The wait asked for, at most [`MAX_WAIT`].
    pub fn wait(&self) -> Result<Duration, Error> {
        let wait = match self.wait.as_deref() {
            None | Some("") => Duration::ZERO,
            Some(w) => crate::spec::parse_duration(w)
                .or_else(|_| w.parse::<u64>().map(Duration::from_secs).map_err(|_| ()))
                .map_err(|()| Error::BadInput(format!("`{w}` is not a duration")))?,
        };
        Ok(wait.min(MAX_WAIT))
    }
}

/// Executions a logs request returns when it does not say.
pub const DEFAULT_LOGS: usize = 50;

/// Most executions one logs request returns.
pub const MAX_LOGS: usize = 1000;

/// The parameters of `GET apps/{app}/logs`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LogsQuery {
    /// How many of the latest executions (`limit`); [`DEFAULT_LOGS`] when
    /// missing or not a number, at most [`MAX_LOGS`].
    pub limit: Option<usize>,
    /// Only this function's executions (`function`).
    pub function: Option<String>,
    /// Stream new executions as server-sent events instead (`follow=1`).
    pub follow: bool,
}

impl LogsQuery {
    /// The query string.
    pub fn to_query(&self) -> String {
        let mut query = Builder::new();
        query
            .add_some("limit", self.limit)
            .add_some("function", self.function.as_ref());
        if self.follow {
            query.add("follow", "1");
        }
        query.finish()
    }

    /// Reads the parameters.
    pub fn parse(pairs: &Pairs) -> LogsQuery {
        LogsQuery {
            limit: pairs.get("limit").and_then(|l| l.parse().ok()),
            function: pairs.non_empty("function").map(str::to_string),
            follow: pairs.get("follow").is_some_and(|f| f == "1" || f == "true"),
        }
    }

    /// The number of executions to return.
    pub fn limit(&self) -> usize {
        self.limit.unwrap_or(DEFAULT_LOGS).min(MAX_LOGS)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_strings_are_decoded() {
        let pairs = Pairs::parse(Some("env=A%3D1&env=B=2+3&tag=&x"));
        assert_eq!(
            pairs.clone().into_vec(),
            [
                ("env".to_string(), "A=1".to_string()),
                ("env".to_string(), "B=2 3".to_string()),
                ("tag".to_string(), String::new()),
                ("x".to_string(), String::new()),
            ]
        );
        let parse = |q: &str| VersionQuery::parse(&Pairs::parse(Some(q)));
        assert_eq!(parse("version=v3").unwrap().version, Some(3));
        assert_eq!(parse("version=").unwrap().version, None);
        assert_eq!(
            parse("version=three").unwrap_err().to_string(),
            "bad input: `three` is not a version number"
        );
    }

    #[test]
    fn a_deploy_query_reads_back_what_it_wrote() {
        let query = DeployQuery {
            deployer: "ada@host".into(),
            env: vec![("GREETING".into(), "a=b & c+d é".into())],
            allow_http: vec!["example.com:8080".into(), "[::1]".into()],
            allow_callers: vec!["other".into(), "*".into()],
            secrets: vec!["openai".into()],
            mounts: vec![crate::platform::MountRecord {
                digest: "ab".repeat(32),
                path: "/assets".into(),
                source: "./dist, with \"quotes\"".into(),
                files: 3,
                bytes: 120,
            }],
            notify: Some("http://127.0.0.1:9/hook?x=1".into()),
            tag: Some("first try/2".into()),
            git: Some(GitInfo {
                commit: "abc123".into(),
                dirty: true,
            }),
            pool: PoolSettings {
                timeout: Some(Duration::from_millis(1500)),
                min_warm: Some(1),
                max_instances: Some(4),
                max_requests: Some(1),
            },
        };
        let text = query.to_query();
        assert_eq!(
            DeployQuery::parse(&Pairs::parse(Some(&text))).unwrap(),
            query
        );
        let empty = DeployQuery::parse(&Pairs::parse(None)).unwrap();
        assert_eq!((empty.deployer.as_str(), empty.git), ("unknown", None));
    }

    #[test]
    fn bad_deploy_parameters_are_named() {
        let error = |q: &str| {
            DeployQuery::parse(&Pairs::parse(Some(q)))
                .unwrap_err()
                .to_string()
        };
        assert_eq!(
            error("env=NOEQUALS"),
            "bad input: environment entries are KEY=VALUE, got `NOEQUALS`"
        );
        assert_eq!(
            error("min_warm=lots"),
            "bad input: `min_warm` must be a whole number, got `lots`"
        );
        assert!(error("timeout=soon").starts_with("bad input: `timeout`: "));
    }

    #[test]
    fn logs_and_result_queries_round_trip() {
        let logs = LogsQuery {
            limit: Some(5),
            function: Some("tick".into()),
            follow: true,
        };
        assert_eq!(
            LogsQuery::parse(&Pairs::parse(Some(&logs.to_query()))),
            logs
        );
        assert_eq!(LogsQuery::default().limit(), DEFAULT_LOGS);
        let huge = LogsQuery::parse(&Pairs::parse(Some("limit=99999")));
        assert_eq!(huge.limit(), MAX_LOGS);
        let wait = |w: &str| {
            ResultQuery {
                wait: Some(w.into()),
            }
            .wait()
        };
        assert_eq!(wait("2s").unwrap(), Duration::from_secs(2));
        assert_eq!(wait("3").unwrap(), Duration::from_secs(3));
        assert_eq!(wait("1h").unwrap(), MAX_WAIT);
        assert!(wait("soon").is_err());
        let rollback = RollbackQuery {
            version: Some(2),
            deployer: "me".into(),
        };
        assert_eq!(
            RollbackQuery::parse(&Pairs::parse(Some(&rollback.to_query()))).unwrap(),
            rollback
        );
    }
}
