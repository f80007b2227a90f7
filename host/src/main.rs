//! The `modal` command line: run, describe (and, with a server, deploy and
//! call) WebAssembly apps.

mod cli;

fn main() -> std::process::ExitCode {
    cli::main()
}
