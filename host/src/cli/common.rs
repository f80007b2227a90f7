//! Helpers the CLI commands share: where state lives, the app name and the
//! local entrypoints a file gives, `KEY=VALUE` flags and temporary
//! directories. It imports no other command module, so that they can all
//! import it.

use std::path::{Path, PathBuf};

/// The state directory: `--state`, else `$MODAL_STATE`, else
/// `$XDG_DATA_HOME/modal`, else `~/.local/share/modal`.
pub fn state_dir(flag: Option<&Path>) -> anyhow::Result<PathBuf> {
    if let Some(dir) = flag {
        return Ok(dir.to_path_buf());
    }
    if let Some(dir) = std::env::var_os("MODAL_STATE").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(dir));
    }
    if let Some(dir) = std::env::var_os("XDG_DATA_HOME").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(dir).join("modal"));
    }
    match std::env::var_os("HOME").filter(|d| !d.is_empty()) {
        Some(home) => Ok(PathBuf::from(home).join(".local/share/modal")),
        None => anyhow::bail!("cannot find a state directory: set MODAL_STATE or pass --state"),
    }
}

/// A `--env KEY=VALUE` flag, checked as the server checks it.
pub fn parse_env(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => {
            let pair = (k.to_string(), v.to_string());
            modal_host::platform::validate_env(std::slice::from_ref(&pair))
                .map_err(|e| e.to_string())?;
            Ok(pair)
        }
        _ => Err(format!("expected KEY=VALUE, got `{s}`")),
    }
}

/// A `--mount DIR:PATH`: the local directory and the guest path.
pub fn parse_mount(s: &str) -> Result<(std::path::PathBuf, String), String> {
    let Some((dir, path)) = s.rsplit_once(':') else {
        return Err(format!(
            "expected DIR:PATH such as ./dist:/assets, got `{s}`"
        ));
    };
    modal_host::validate_mount_path(path).map_err(|e| e.to_string())?;
    let dir = std::path::PathBuf::from(dir);
    if !dir.is_dir() {
        return Err(format!("{} is not a directory", dir.display()));
    }
    Ok((dir, path.to_string()))
}

/// The app name a file gives: for a Python module, the name its
/// `App("...")` declares; else (or when that is no valid app name) the
/// file's stem, as a DNS label.
pub fn app_name(path: &Path) -> String {
    if let Some(name) = declared_name(path) {
        return name;
    }
    let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("app");
    let name: String = stem
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    let name = name.trim_matches('-');
    if name.is_empty() {
        "app".into()
    } else {
        name.chars().take(63).collect()
    }
}

/// Whether `path` is a Python module to build first.
pub fn is_python(path: &Path) -> bool {
    path.extension().is_some_and(|e| e == "py")
}

/// The name a Python module gives its app: the string literal in its first
/// `App("name")` or `App(name="name")`, when it is a valid app name.
fn declared_name(path: &Path) -> Option<String> {
    if !is_python(path) {
        return None;
    }
    let source = std::fs::read_to_string(path).ok()?;
    source
        .match_indices("App(")
        .filter(|(at, _)| {
            // `App(`, `modal.App(`, not `MyApp(`.
            !source[..*at]
                .chars()
                .next_back()
                .is_some_and(|c| c.is_alphanumeric() || c == '_')
        })
        .find_map(|(at, call)| app_literal(&source[at + call.len()..]))
        .filter(|name| modal_host::platform::validate_app_name(name).is_ok())
}

/// The functions a Python module marks `@app.local_entrypoint()` (any app
/// variable), in source order: for each such decorator line, the `def`
/// after it. Triple-quoted strings are skipped, so a docstring's example
/// is not one. Empty for anything but a readable `.py` file.
pub fn local_entrypoints(path: &Path) -> Vec<String> {
    if !is_python(path) {
        return Vec::new();
    }
    let Ok(source) = std::fs::read_to_string(path) else {
        return Vec::new();
    };
    let mut found = Vec::new();
    let mut in_string = false;
    let mut marked = false;
    for line in source.lines() {
        let code = line.trim_start();
        // A line with an odd number of triple quotes opens or closes one.
        let quotes = code.matches("\"\"\"").count() + code.matches("'''").count();
        if in_string {
            in_string = quotes % 2 == 0;
            continue;
        }
        if quotes % 2 == 1 {
            in_string = true;
            continue;
        }
        if let Some(decorator) = code.strip_prefix('@') {
            marked |= decorator.contains(".local_entrypoint(");
        } else if let Some(def) = code
            .strip_prefix("def ")
            .or_else(|| code.strip_prefix("async def "))
        {
            if std::mem::take(&mut marked) {
                let name: String = def
                    .trim_start()
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                if !name.is_empty() {
                    found.push(name);
                }
            }
        } else if !code.is_empty() && !code.starts_with('#') {
            // Anything else between a decorator and its `def` (a class,
            // a statement) means the decorator was not on a function.
            marked = false;
        }
    }
    found
}

/// The string literal at the start of `args` (after `name=`, if given).
fn app_literal(args: &str) -> Option<String> {
    let args = args.trim_start();
    let args = match args.strip_prefix("name") {
        Some(rest) => rest.trim_start().strip_prefix('=')?.trim_start(),
        None => args,
    };
    let quote = args.chars().next().filter(|c| *c == '"' || *c == '\'')?;
    let body = &args[1..];
    let end = body.find(quote)?;
    let name = &body[..end];
    (!name.contains('\\')).then(|| name.to_string())
}

/// Removes a temporary directory when dropped.
pub struct RemoveOnDrop(pub PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The whole of stdin, as text (`-` for a call's JSON input).
pub fn read_stdin() -> anyhow::Result<String> {
    String::from_utf8(read_stdin_bytes()?)
        .map_err(|_| anyhow::anyhow!("the input on stdin is not UTF-8 text"))
}

/// The whole of stdin, as bytes (`--data -`).
pub fn read_stdin_bytes() -> anyhow::Result<Vec<u8>> {
    use anyhow::Context as _;
    let mut bytes = Vec::new();
    std::io::Read::read_to_end(&mut std::io::stdin(), &mut bytes)
        .context("cannot read the input from stdin")?;
    Ok(bytes)
}

/// Splits `args` into the flags `command` has (with their values) and
/// the others (a function's `--NAME VALUE` arguments); after `--` every
/// argument is the function's.
pub fn split_own_flags(command: &clap::Command, args: Vec<String>) -> (Vec<String>, Vec<String>) {
    let takes_value = |name: &str| {
        command
            .get_arguments()
            .find(|a| a.get_long() == Some(name))
            .map(|a| a.get_action().takes_values())
    };
    let (mut own, mut rest) = (Vec::new(), Vec::new());
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        if arg == "--" {
            rest.extend(args.by_ref());
            break;
        }
        let flag = arg
            .strip_prefix("--")
            .map(|f| f.split('=').next().unwrap_or(f));
        match flag.and_then(takes_value) {
            Some(takes) => {
                let inline = arg.contains('=');
                own.push(arg);
                if takes
                    && !inline
                    && let Some(value) = args.next()
                {
                    own.push(value);
                }
            }
            None => rest.push(arg),
        }
    }
    (own, rest)
}

/// The flags of command `T` given among its `input` (a list positional
/// that allows hyphens, which clap fills with everything from the first
/// input value on), parsed again after the positionals `leading`; `None`
/// when there are none. After a value every flag must be `T`'s; when the
/// input starts with a flag (a function's `--NAME VALUE` arguments), the
/// flags `T` has are its own and the rest stay in `input`.
pub fn trailing_flags<T: clap::Args + clap::FromArgMatches>(
    name: &'static str,
    leading: Vec<String>,
    input: &mut Vec<String>,
) -> anyhow::Result<Option<(T, clap::ArgMatches)>> {
    let Some(at) = input.iter().position(|a| a.starts_with("--")) else {
        return Ok(None);
    };
    let mut own = input.split_off(at);
    let command = T::augment_args(clap::Command::new(name))
        .no_binary_name(true)
        .mut_arg("input", |a| a.allow_hyphen_values(false));
    if at == 0 {
        let (flags, function) = split_own_flags(&command, own);
        *input = function;
        own = flags;
        if own.is_empty() {
            return Ok(None);
        }
    }
    let parsed = command
        .try_get_matches_from(leading.into_iter().chain(own))
        .and_then(|matches| Ok((T::from_arg_matches(&matches)?, matches)));
    match parsed {
        Ok(parsed) => Ok(Some(parsed)),
        Err(e) if matches!(e.kind(), clap::error::ErrorKind::DisplayHelp) => e.exit(),
        Err(e) => {
            let text = e.render().to_string();
            let first = text.lines().next().unwrap_or_default();
            anyhow::bail!("{}", first.trim_start_matches("error: "))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_app_name_is_read_from_the_module() {
        let dir = tempfile::tempdir().unwrap();
        let module = |name: &str, source: &str| {
            let path = dir.path().join(name);
            std::fs::write(&path, source).unwrap();
            declared_name(&path)
        };
        assert_eq!(
            module("a.py", "import modal\napp = modal.App(\"pyshop\")\n"),
            Some("pyshop".into())
        );
        assert_eq!(
            module(
                "b.py",
                "from modal import App\napp = App( name = 'shop-2' )\n"
            ),
            Some("shop-2".into())
        );
        assert_eq!(
            module("c.py", "class MyApp(\"x\"): pass\napp = modal.App()\n"),
            None
        );
        assert_eq!(module("d.py", "app = modal.App(\"Not A Label\")\n"), None);
        assert_eq!(module("e.txt", "app = modal.App(\"pyshop\")\n"), None);
    }

    #[test]
    fn local_entrypoints_are_read_from_the_module() {
        let dir = tempfile::tempdir().unwrap();
        let module = |name: &str, source: &str| {
            let path = dir.path().join(name);
            std::fs::write(&path, source).unwrap();
            local_entrypoints(&path)
        };
        assert_eq!(
            module(
                "a.py",
                "import modal\napp = modal.App()\n\n@app.function()\ndef square(x):\n    return x * x\n\n\
                 @app.local_entrypoint()\n# the CLI runs this\ndef main(name=\"world\"):\n    print(name)\n"
            ),
            vec!["main".to_string()]
        );
        assert_eq!(
            module(
                "b.py",
                "\"\"\"Example:\n\n    @app.local_entrypoint()\n    def doc():\n\"\"\"\n\
                 @stub.local_entrypoint()\n@other\ndef one(): pass\n\
                 @app.local_entrypoint()\nasync def two(): pass\n"
            ),
            vec!["one".to_string(), "two".to_string()]
        );
        assert_eq!(
            module(
                "c.py",
                "@app.local_entrypoint()\nclass Nope: pass\ndef later(): pass\n"
            ),
            Vec::<String>::new()
        );
        assert_eq!(
            module("d.txt", "@app.local_entrypoint()\ndef main(): pass\n"),
            Vec::<String>::new()
        );
    }
}
