//! Argument parsing and dispatch of the `modal` subcommands.

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// Prints a line of output (`format!` arguments), `✓`/`✗` coloured on
/// a terminal.
macro_rules! say {
    ($($arg:tt)*) => {
        $crate::cli::style::say(&format!($($arg)*))
    };
}

/// [`say!`] on stderr (progress of work whose result goes to stdout).
macro_rules! esay {
    ($($arg:tt)*) => {
        $crate::cli::style::say_err(&format!($($arg)*))
    };
}

mod apps;
mod cargo;
mod client;
mod common;
mod progress;
mod python;
mod python_dev;
mod run;
mod serve;
mod server;
mod style;

/// modal: a self-hosted serverless host for WebAssembly components.
#[derive(Parser)]
#[command(name = "modal", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run one function of a component once, without a server.
    Run(run::RunArgs),
    /// Print the functions a component declares and their settings.
    Describe(run::DescribeArgs),
    /// Build a Python module into a component (with componentize-py).
    Build(run::BuildArgs),
    /// Serve a component's web functions locally, redeploying on change.
    Serve(serve::ServeArgs),
    /// Run the server: control API, web endpoints and deployed apps.
    Server(server::ServerArgs),
    /// Deploy a component as a new live version of an app.
    Deploy(apps::DeployArgs),
    /// Call a function of a deployed app and print its result.
    Call(apps::CallArgs),
    /// Start a call in the background and print its id.
    Spawn(apps::CallArgs),
    /// Print the result of a spawned call (exit code 3 while pending).
    Result(apps::ResultArgs),
    /// Manage deployed apps.
    #[command(subcommand)]
    App(apps::AppCommand),
    /// Pause, resume, fire and inspect schedules.
    #[command(subcommand)]
    Schedule(apps::ScheduleCommand),
    /// Create, list and delete secrets (variables given to apps deployed
    /// with `--secret`, encrypted at rest, never shown).
    #[command(subcommand)]
    Secret(apps::SecretCommand),
    /// Read and change the apps' key-value state (`modal_guest::Dict`,
    /// `modal.Dict`, `wasi:keyvalue`).
    #[command(subcommand)]
    Dict(apps::DictCommand),
    /// List the hosts serving the apps (several in cluster mode).
    #[command(subcommand)]
    Host(apps::HostCommand),
    /// Print the control token clients need.
    #[command(subcommand)]
    Token(apps::TokenCommand),
    /// Print a shell completion script: `source <(modal completion bash)`,
    /// or save it where your shell loads completions (zsh: a directory
    /// on `$fpath` as `_modal`; fish: `~/.config/fish/completions/modal.fish`).
    Completion {
        /// The shell.
        shell: clap_complete::Shell,
    },
}

/// Scheduler ticks between two looks at I/O (see `main`).
const RUNTIME_EVENT_INTERVAL: u32 = 2;

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    if !matches!(
        cli.command,
        Command::Server(_) | Command::Serve(_) | Command::Build(_) | Command::Run(_)
    ) {
        // A client whose output goes to a closed pipe (`modal app logs X |
        // head`) ends quietly on SIGPIPE, as other Unix tools do. The
        // server and the commands that drive child processes keep
        // ignoring it and see the write error instead.
        sigpipe::reset();
    }
    if matches!(
        cli.command,
        Command::Deploy(_)
            | Command::Build(_)
            | Command::Run(_)
            | Command::Describe(_)
            | Command::App(apps::AppCommand::Rollback { .. })
    ) {
        // Their long work (uploads, compiles, Python builds) shows a
        // spinner on a terminal; nothing else writes to stderr meanwhile.
        progress::enable();
    }
    init_tracing();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        // Guests that compute yield every epoch tick (10 ms) and are at
        // once ready again. Look at sockets and timers every couple of
        // ticks rather than tokio's default 61, or the work that waits on
        // them (outbound requests, timers, log streams) waits ~0.6 s
        // behind such guests; and take work handed over from other
        // threads (control API requests from the connection threads) at
        // every tick: with two spinning guests on two cores, control API
        // calls on new connections answer in p99 ~16 ms instead of ~0.5 s.
        .event_interval(RUNTIME_EVENT_INTERVAL)
        .global_queue_interval(1)
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: could not start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Run(args) => run::run(args).await,
            Command::Describe(args) => run::describe(args).await,
            Command::Build(args) => run::build(args),
            Command::Serve(args) => serve::run(args).await,
            Command::Server(args) => server::run(args).await,
            Command::Deploy(args) => apps::deploy(args).await,
            Command::Call(args) => apps::call(args).await,
            Command::Spawn(args) => apps::spawn(args).await,
            Command::Result(args) => apps::result(args).await,
            Command::App(command) => apps::app(command).await,
            Command::Schedule(command) => apps::schedule(command).await,
            Command::Dict(command) => apps::dict(command).await,
            Command::Secret(command) => apps::secret(command).await,
            Command::Host(command) => apps::host(command).await,
            Command::Token(command) => apps::token(command).await,
            Command::Completion { shell } => {
                use clap::CommandFactory;
                let mut command = Cli::command();
                clap_complete::generate(shell, &mut command, "modal", &mut std::io::stdout());
                Ok(ExitCode::SUCCESS)
            }
        }
    });
    match result {
        Ok(code) => code,
        Err(e) => {
            style::error(&one_line(&e));
            ExitCode::FAILURE
        }
    }
}

/// An error and its causes on one line.
fn one_line(e: &anyhow::Error) -> String {
    let mut text = e.to_string();
    for cause in e.chain().skip(1) {
        let cause = cause.to_string();
        if !text.contains(&cause) {
            text.push_str(": ");
            text.push_str(&cause);
        }
    }
    text.replace('\n', " ")
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("RUST_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    use std::io::IsTerminal;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}
