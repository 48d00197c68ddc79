//! The collector. `main.rs` parses the command line and runs a command; the fuzz
//! targets in `fuzz/` reach the request handling through `fuzzing` (built with `--cfg fuzzing`).

mod alerts;
mod api;
pub mod cli;
mod clock;
mod codec;
pub mod commands;
#[cfg(fuzzing)]
pub mod fuzzing;
mod http;
mod jobs;
mod jwt;
mod limits;
mod listen;
mod liveness;
mod maintenance;
mod metrics;
mod model;
mod secret;
mod store;
mod uptime;
mod watchdog;
