//! What the CLI prints, coloured on a terminal: `✓` lines green, `✗`
//! lines and `error:` red. Everything goes through `anstream`, which drops
//! the colours when the stream is not a terminal, with `NO_COLOR`, or
//! when the terminal cannot show them (and keeps them with
//! `CLICOLOR_FORCE`).

use std::io::Write;

const GREEN: &str = "\x1b[32m";
const RED: &str = "\x1b[31m";
const BOLD_RED: &str = "\x1b[1;31m";
const RESET: &str = "\x1b[0m";

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
