//! `hearth-collector`: parse the command line, run the command, turn failure into an exit code.

use hearth_collector::{cli, commands};
use std::process::ExitCode;

fn main() -> ExitCode {
    let mut logger = env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"));
    if std::env::var_os("JOURNAL_STREAM").is_some() {
        logger.format_timestamp(None); // journald stamps each line itself
    }
    logger.init();
    let command = match cli::parse(std::env::args_os().skip(1)) {
        Ok(command) => command,
        Err(cli::UsageError(message)) => {
            eprintln!("hearth-collector: {message}");
            return ExitCode::from(2);
        }
    };
    match commands::run(command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("hearth-collector: {failure}");
            ExitCode::from(failure.exit_code())
        }
    }
}
