use clap::Parser;
use notification_worker::cli::{self, Cli, Command, UsageError};
use notification_worker::config::Config;
use notification_worker::input::ConsumerRefused;
use notification_worker::telemetry::{self, LogTarget};
use std::process::ExitCode;

/// Exit code for a configuration error (bad flag or variable), as for a usage error.
const CONFIG_ERROR: u8 = 2;

fn main() -> ExitCode {
    if let Err(error) = dotenvy::dotenv()
        && !error.not_found()
    {
        eprintln!("error: cannot read .env: {error}");
        return ExitCode::from(CONFIG_ERROR);
    }
    let cli = Cli::parse();
    let config = match Config::from_raw(&cli.settings) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::from(CONFIG_ERROR);
        }
    };
    let command = cli.command.unwrap_or(Command::Run { stage: None });
    let target = if matches!(command, Command::Run { .. }) {
        LogTarget::Stdout
    } else {
        LogTarget::Stderr
    };
    telemetry::init(&config.log_level, config.log_format, target);

    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(cli::execute(command, config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(error = format!("{error:#}"), "stopped on an error");
            eprintln!("error: {error:#}");
            // A consumer that needs changing is a configuration error, like a bad variable.
            if error.downcast_ref::<ConsumerRefused>().is_some()
                || error.downcast_ref::<UsageError>().is_some()
            {
                ExitCode::from(CONFIG_ERROR)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}
