//! The buttons that change an app: stop, pause / resume / run now of a
//! schedule, rollback to a version. Each `GET` shows a confirmation whose
//! form posts back with the session's CSRF token; the `POST` acts, leaves
//! a notice and returns to the app's page.

use super::super::{Body, State};
use super::form::encode;
use super::layout::{self, Chrome, Confirm};
use hyper::{Response, StatusCode};
use maud::html;

/// Who the registry records as the deployer of a rollback made here.
const DEPLOYER: &str = "apps page";

/// What a button does.
#[derive(Clone, Debug, PartialEq)]
pub(super) enum Action {
    /// Stop the app.
    Stop,
    /// Pause the schedule of a function.
    Pause(String),
    /// Resume the schedule of a function.
    Resume(String),
    /// Fire a scheduled function now, once.
    RunNow(String),
    /// Make a version's code live again (as a new version).
    Rollback(u64),
}

impl Action {
    /// The action at `rest` (the path segments after the app's name,
    /// decoded), if it is one.
    pub(super) fn parse(rest: &[String]) -> Option<Action> {
        let rest: Vec<&str> = rest.iter().map(String::as_str).collect();
        match rest.as_slice() {
            ["stop"] => Some(Action::Stop),
            ["rollback", v] => v.trim_start_matches('v').parse().ok().map(Action::Rollback),
            ["schedules", f, "pause"] => Some(Action::Pause(f.to_string())),
            ["schedules", f, "resume"] => Some(Action::Resume(f.to_string())),
            ["schedules", f, "run"] => Some(Action::RunNow(f.to_string())),
            _ => None,
        }
    }

    /// Its path (the confirmation's address and the form's target).
    fn path(&self, app: &str) -> String {
        match self {
            Action::Stop => format!("/apps/{app}/stop"),
            Action::Rollback(v) => format!("/apps/{app}/rollback/{v}"),
            Action::Pause(f) => format!("/apps/{app}/schedules/{}/pause", encode(f)),
            Action::Resume(f) => format!("/apps/{app}/schedules/{}/resume", encode(f)),
            Action::RunNow(f) => format!("/apps/{app}/schedules/{}/run", encode(f)),
        }
    }

    /// The styled page that says why it cannot be confirmed (the app,
    /// the schedule or the version does not exist); `None` if it can.
    async fn missing(&self, state: &State, app: &str, chrome: &Chrome) -> Option<Response<Body>> {
        let platform = &state.platform;
        let status = match platform.app(app).await {
            Ok(status) => status,
            Err(e) => return Some(layout::platform_error(chrome, &e)),
        };
        let missing = |what: String| {
            Some(layout::error_page(
                StatusCode::NOT_FOUND,
                chrome,
                "Not found",
                &what,
            ))
        };
        match self {
            Action::Stop => None,
            Action::Pause(f) | Action::Resume(f) | Action::RunNow(f) => {
                if status.schedules.iter().any(|s| &s.function == f) {
                    None
                } else {
                    missing(format!("App `{app}` has no schedule named `{f}`."))
                }
            }
            Action::Rollback(v) => match platform.history(app).await {
                Err(e) => Some(layout::platform_error(chrome, &e)),
                Ok(versions) if versions.iter().any(|r| r.record.version == *v) => None,
                Ok(_) => missing(format!("App `{app}` has no version v{v}.")),
            },
        }
    }

    /// The confirmation page.
    pub(super) async fn confirm(
        &self,
        state: &State,
        app: &str,
        chrome: &Chrome,
    ) -> Response<Body> {
        if let Some(page) = self.missing(state, app, chrome).await {
            return page;
        }
        let (title, explain, button, danger) = match self {
            Action::Stop => (
                format!("Stop {app}?"),
                html! { "Its web endpoints stop answering, its schedules stop and calls in progress drain. Deploy it again to restart it." },
                format!("Yes, stop {app}"),
                true,
            ),
            Action::Pause(f) => (
                format!("Pause {f}?"),
                html! { "The schedule of " code { (f) } " fires no more until it is resumed; a run in progress finishes." },
                format!("Pause {f}"),
                false,
            ),
            Action::Resume(f) => (
                format!("Resume {f}?"),
                html! { "The schedule of " code { (f) } " fires again from its next time on (missed times are not made up)." },
                format!("Resume {f}"),
                false,
            ),
            Action::RunNow(f) => (
                format!("Run {f} now?"),
                html! { code { (f) } " runs once now, as a scheduled run, on the live version; its schedule is unchanged." },
                format!("Run {f}"),
                false,
            ),
            Action::Rollback(v) => (
                format!("Roll {app} back to v{v}?"),
                html! { "The code and settings of v" (v) " are deployed again as a new version and made live; the current version drains. Secrets keep the revisions v" (v) " had." },
                format!("Roll back to v{v}"),
                true,
            ),
        };
        Confirm {
            title,
            explain,
            action: self.path(app),
            button,
            button_id: if *self == Action::Stop {
                "confirm-stop"
            } else {
                "confirm"
            },
            danger,
            back: format!("/apps/{app}"),
        }
        .page(chrome)
    }

    /// Does it; the notice that says what happened.
    pub(super) async fn run(&self, state: &State, app: &str) -> Result<String, crate::Error> {
        let platform = &state.platform;
        Ok(match self {
            Action::Stop => {
                platform.stop(app).await?;
                format!(
                    "Stopped {app}: its endpoints and schedules are off; calls in progress drain."
                )
            }
            Action::Pause(f) => {
                platform.set_paused(app, f, true).await?;
                format!("Paused the schedule of {f}.")
            }
            Action::Resume(f) => {
                platform.set_paused(app, f, false).await?;
                format!("Resumed the schedule of {f}.")
            }
            Action::RunNow(f) => {
                let run = platform.run_now(app, f).await?;
                format!("Started a run of {f} (run {run}).")
            }
            Action::Rollback(v) => {
                let d = platform.rollback(app, Some(*v), DEPLOYER).await?;
                format!(
                    "Rolled back {app}: v{} now runs the code of v{v}.",
                    d.version
                )
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(path: &str) -> Option<Action> {
        let rest: Vec<String> = path.split('/').map(str::to_string).collect();
        Action::parse(&rest)
    }

    #[test]
    fn actions_are_read_from_their_paths_and_back() {
        assert_eq!(parse("stop"), Some(Action::Stop));
        assert_eq!(parse("rollback/3"), Some(Action::Rollback(3)));
        assert_eq!(parse("rollback/v3"), Some(Action::Rollback(3)));
        assert_eq!(
            parse("schedules/tick/pause"),
            Some(Action::Pause("tick".into()))
        );
        assert_eq!(
            parse("schedules/tick/run"),
            Some(Action::RunNow("tick".into()))
        );
        for bad in [
            "rollback/x",
            "schedules/tick",
            "schedules/tick/explode",
            "stop/now",
            "",
        ] {
            assert_eq!(parse(bad), None, "{bad}");
        }
        assert_eq!(
            Action::Resume("a b".into()).path("app"),
            "/apps/app/schedules/a%20b/resume"
        );
    }
}
