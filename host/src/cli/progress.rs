//! Progress of long work on a terminal: a spinner line on stderr with what
//! is going on and the time it has taken (`indicatif`), for uploads,
//! compiles and Python builds. It shows only when stderr is a terminal and
//! the command turned progress on ([`enable`]), and it leaves nothing
//! behind: the `✓` line that follows reads as it does without it. Piped,
//! a command prints exactly what it printed before spinners existed.

use bytesize::ByteSize;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Whether this process may show spinners (see [`enable`]).
static ENABLED: AtomicBool = AtomicBool::new(false);

/// Time between two frames of the spinner: smooth, and cheap to draw.
const TICK: Duration = Duration::from_millis(100);

/// The spinner's frames; the last one is shown when it stops.
const FRAMES: &[&str] = &["⠋", "⠙", "⠹", "⠸", "⠼", "⠴", "⠦", "⠧", "⠇", "⠏", " "];

/// Lets spinners show (on a terminal) in this process. The commands that
/// call it print nothing else on stderr while their long work runs;
/// `modal serve`, whose guests print on stderr at any time, does not.
pub fn enable() {
    ENABLED.store(true, Ordering::Relaxed);
}

/// Whether a spinner would show now: progress is on, and stderr is a
/// terminal that can redraw a line.
fn shown() -> bool {
    use std::io::IsTerminal;
    ENABLED.load(Ordering::Relaxed)
        && std::io::stderr().is_terminal()
        && std::env::var_os("TERM").is_none_or(|t| t != "dumb")
}

/// What an upload reports as its bytes go out: (sent, total).
pub type Progress = Arc<dyn Fn(u64, u64) + Send + Sync>;

/// A spinner line on stderr, `⠹ MESSAGE 3.2s`, removed when finished or
/// dropped. Where no spinner shows it does nothing.
pub struct Spinner {
    bar: Option<ProgressBar>,
}

impl Spinner {
    /// Starts a spinner showing `message`, if spinners show.
    pub fn start(message: impl Into<String>) -> Spinner {
        if !shown() {
            return Spinner { bar: None };
        }
        let style = ProgressStyle::with_template("{spinner} {wide_msg} {secs}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner())
            .tick_strings(FRAMES)
            .with_key(
                "secs",
                |state: &indicatif::ProgressState, out: &mut dyn std::fmt::Write| {
                    let _ = write!(out, "{:.1}s", state.elapsed().as_secs_f64());
                },
            );
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr())
            .with_style(style)
            .with_message(message.into());
        bar.enable_steady_tick(TICK);
        // The first frame at once, not a tick later.
        bar.tick();
        Spinner { bar: Some(bar) }
    }

    /// [`start`](Spinner::start); where no spinner shows, `message` is
    /// printed as a line on stderr instead (what the work printed before
    /// spinners existed).
    pub fn or_line(message: impl Into<String>) -> Spinner {
        let message = message.into();
        if shown() {
            Spinner::start(message)
        } else {
            eprintln!("{message}");
            Spinner { bar: None }
        }
    }

    /// What an upload of `what` reports to this spinner: the bytes sent so
    /// far, then `after` once all are (the server's part of the work).
    /// `None` where no spinner shows.
    pub fn upload(&self, what: &str, after: &str) -> Option<Progress> {
        let bar = self.bar.clone()?;
        let (what, after) = (what.to_string(), after.to_string());
        Some(Arc::new(move |sent: u64, total: u64| {
            if sent < total {
                let (sent, total) = (
                    ByteSize::b(sent).display().iec(),
                    ByteSize::b(total).display().iec(),
                );
                bar.set_message(format!("Uploading {what}: {sent} of {total}…"));
            } else {
                bar.set_message(after.clone());
            }
        }))
    }
}

impl Drop for Spinner {
    fn drop(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}
