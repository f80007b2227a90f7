//! `modal deploy`, `modal call` and `modal app ...`: clients of a running
//! `modal server`. `args` declares the flags, `commands` sends the requests
//! through the typed client, `render` prints the answers.

mod args;
mod commands;
mod render;

pub use args::{
    AppCommand, CallArgs, DeployArgs, DictCommand, HostCommand, PoolArgs, ResultArgs,
    ScheduleCommand, SecretCommand, TokenCommand,
};
pub use commands::{app, call, deploy, dict, host, result, schedule, secret, spawn, token};
