use notification_worker::cli::{self, Command};
use notification_worker::config::Config;
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
    let cli = cli::parse();
    let config = match Config::from_raw(&cli.settings) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::from(CONFIG_ERROR);
        }
    };
    let command = cli.command.unwrap_or(Command::Run { stage: None });
    let runs = matches!(command, Command::Run { .. });
    let target = if runs {
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
            // Printed once where a person looks: the worker's log goes to standard output
            // (for the log collector) and the reason it stopped to standard error; the other
            // commands log to standard error already, so the line alone says it.
            if runs {
                tracing::error!(error = format!("{error:#}"), "stopped on an error");
            }
            eprintln!("error: {error:#}");
            if cli::is_configuration_error(&error) {
                ExitCode::from(CONFIG_ERROR)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}
