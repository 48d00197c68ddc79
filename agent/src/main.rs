//! `hearth-agent`: parse the command line, load the configuration, run the command,
//! and turn failure into an exit code.

mod beat;
mod checks;
mod cli;
mod commands;
mod config;
mod daemon;
mod envfile;
mod facts;
mod state;
mod transport;
mod units;

use std::process::ExitCode;

fn main() -> ExitCode {
    // First, while this is the only thread: minreq must never read these by itself.
    let proxies = transport::ProxyEnv::take();
    let (command, flags) = match cli::parse(std::env::args_os().skip(1)) {
        Ok(parsed) => parsed,
        Err(message) => return fail(2, &message),
    };
    match command {
        cli::Command::Help => {
            print!("{}", cli::HELP);
            return ExitCode::SUCCESS;
        }
        cli::Command::Version => {
            println!("hearth-agent {}", beat::AGENT_VERSION);
            return ExitCode::SUCCESS;
        }
        _ => {}
    }
    let config = match config::load(&flags, &|name| std::env::var(name).ok()) {
        Ok(config) => config,
        Err(message) => return fail(2, &message),
    };
    init_logging(config.log_filter.as_deref());
    for warning in &config.warnings {
        log::warn!("{warning}");
    }
    match commands::run(command, &flags, config, proxies) {
        Ok(()) => ExitCode::SUCCESS,
        Err(commands::Failure { code, message }) => fail(code, &message),
    }
}

fn fail(code: u8, message: &str) -> ExitCode {
    eprintln!("hearth-agent: {message}");
    ExitCode::from(code)
}

fn init_logging(filter: Option<&str>) {
    let mut logger = env_logger::Builder::new();
    logger.parse_filters(filter.unwrap_or("info"));
    if std::env::var_os("JOURNAL_STREAM").is_some() {
        logger.format_timestamp(None); // journald stamps each line itself
    }
    logger.init();
}
