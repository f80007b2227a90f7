//! The `modal` command line: run, describe (and, with a server, deploy and
//! call) WebAssembly apps.

mod cli;

/// mimalloc: a web request allocates and frees many small objects across
/// hyper, wasmtime and wasi-http, which it serves faster than glibc's malloc.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    cli::main()
}
