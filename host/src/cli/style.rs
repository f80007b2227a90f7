//! What the CLI prints, coloured on a terminal: `✓` lines green, `✗`
//! lines and `error:` red, states in tables by what they mean (see
//! [`states`]). Everything goes through `anstream`, which drops the
//! colours when the stream is not a terminal, with `NO_COLOR`, or when
//! the terminal cannot show them (and keeps them with `CLICOLOR_FORCE`).

use std::io::Write;

const GREEN: &str = "\x1b[32m";
const YELLOW: &str = "\x1b[33m";
const RED: &str = "\x1b[31m";
const BOLD_RED: &str = "\x1b[1;31m";
const RESET: &str = "\x1b[0m";

/// The colour of a state word: green for what serves or succeeded, yellow
/// for what is on its way out or held, red for what stopped or failed.
/// Words of no state (`retired`, `waiting`) stay plain.
fn state_colour(word: &str) -> Option<&'static str> {
    match word {
        "deployed" | "live" | "running" | "ok" => Some(GREEN),
        "draining" | "paused" | "cancelled" | "rejected" => Some(YELLOW),
        "stopped" | "failed" | "error" | "trap" | "timeout" | "memory_limit" | "no_response" => {
            Some(RED)
        }
        _ => None,
    }
}

/// `text` with every state word in it coloured (a whole word: `live` in
/// `v3 live (2 warm)`), for cells that hold states and no names.
pub fn states(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 16);
    let mut rest = text;
    while !rest.is_empty() {
        let word_len = rest
            .find(|c: char| !(c.is_ascii_lowercase() || c == '_'))
            .unwrap_or(rest.len());
        if word_len == 0 {
            let next = rest.chars().next().map_or(1, char::len_utf8);
            out.push_str(&rest[..next]);
            rest = &rest[next..];
            continue;
        }
        let (word, after) = rest.split_at(word_len);
        match state_colour(word) {
            Some(colour) => out.push_str(&format!("{colour}{word}{RESET}")),
            None => out.push_str(word),
        }
        rest = after;
    }
    out
}

/// `text` with each state in parentheses (`hello (failed)`) coloured and
/// nothing else, for cells that also hold names.
pub fn marked_states(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 16);
    let mut rest = text;
    while let Some(open) = rest.find('(') {
        let (before, from) = rest.split_at(open);
        out.push_str(before);
        match from.find(')') {
            Some(close) if state_colour(&from[1..close]).is_some() => {
                out.push_str(&states(&from[..=close]));
                rest = &from[close + 1..];
            }
            _ => {
                out.push('(');
                rest = &from[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// `text` with its `✓` and `✗` marks coloured, line by line.
fn paint(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 16);
    for line in text.split_inclusive('\n') {
        let (body, end) = match line.strip_suffix('\n') {
            Some(body) => (body, "\n"),
            None => (line, ""),
        };
        if let Some(rest) = body.strip_prefix('✓') {
            out.push_str(&format!("{GREEN}✓{RESET}{rest}{end}"));
        } else if body.starts_with('✗') {
            out.push_str(&format!("{RED}{body}{RESET}{end}"));
        } else {
            out.push_str(line);
        }
    }
    out
}

/// Prints `text` on stdout as it is (no newline added).
pub fn show(text: &str) {
    let mut out = anstream::stdout();
    // A closed stdout ends the command quietly (see `sigpipe`).
    let _ = out.write_all(paint(text).as_bytes());
    let _ = out.flush();
}

/// Prints `line` and a newline on stdout.
pub fn say(line: &str) {
    show(&format!("{line}\n"));
}

/// Prints `line` and a newline on stderr.
pub fn say_err(line: &str) {
    let mut err = anstream::stderr();
    let _ = err.write_all(paint(&format!("{line}\n")).as_bytes());
}

/// Prints the one-line error of a failed command on stderr.
pub fn error(message: &str) {
    let mut err = anstream::stderr();
    let _ = writeln!(err, "{BOLD_RED}error:{RESET} {message}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_words_are_coloured_and_nothing_else() {
        assert_eq!(
            states("v3 live (2 warm), v2 draining (5 in flight)"),
            "v3 \x1b[32mlive\x1b[0m (2 warm), v2 \x1b[33mdraining\x1b[0m (5 in flight)"
        );
        assert_eq!(states("stopped"), "\x1b[31mstopped\x1b[0m");
        assert_eq!(states("memory_limit"), "\x1b[31mmemory_limit\x1b[0m");
        assert_eq!(
            states("retired, waiting, lively, ümlaut"),
            "retired, waiting, lively, ümlaut"
        );
        // Names keep their colour: only a state in parentheses is marked.
        assert_eq!(
            marked_states("failed v2, live (failed), x (schedules"),
            "failed v2, live (\x1b[31mfailed\x1b[0m), x (schedules"
        );
    }
}
