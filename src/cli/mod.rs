//! The command line: `run` (the default), `setup`, `publish`, `feed`, `dlq`, `deliver`,
//! `recipient`.

mod deliver;
mod dlq;
mod feed;
mod publish;
mod recipient;
mod run;

pub use run::{Stage, UsageError};
mod setup;

use crate::config::{Config, RawSettings, heading};
use crate::input::ConsumerRefused;
use crate::store::StoreError;
use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "notification-worker",
    version,
    about = "Turns notification events published on NATS into notifications in each user's feed.",
    long_about = "Turns notification events published on NATS into notifications in each user's feed, \
                  stored in DynamoDB or an embedded SQLite file.\n\n\
                  Every setting is a flag and an environment variable (a .env file is read when present)."
)]
pub struct Cli {
    #[command(flatten)]
    pub settings: RawSettings,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Clone, Subcommand)]
pub enum Command {
    /// Run the worker (the default): the store stage and, when a channel is configured, the delivery stage.
    Run {
        /// Run one stage only, so each scales on its own: `store` (events in, notifications
        /// stored and announced) or `delivery` (the outbox in, notifications delivered).
        #[arg(long, value_enum)]
        stage: Option<run::Stage>,
    },
    /// Create what is missing: stream, consumer, and the table with its index or the SQLite schema.
    Setup,
    /// Publish one event and print its stream sequence.
    Publish {
        /// Subject under notifications., e.g. notifications.post.like
        subject: String,
        /// The event: JSON text, @FILE to read a file, or - to read standard input.
        event: String,
        /// Send the body as it is, even when it is not JSON (to try the dead letters).
        #[arg(long)]
        raw: bool,
    },
    /// Show a user's notifications, newest first.
    Feed {
        /// The user whose feed to show, e.g. user-123
        owner: String,
        /// How many notifications to show at most.
        #[arg(long, default_value_t = 20)]
        limit: usize,
        /// One JSON object per line, with the stored attribute names.
        #[arg(long)]
        json: bool,
    },
    /// Inspect, replay or purge dead letters (stream NOTIFICATIONS_DLQ, or with
    /// `--stream deliveries` DELIVERIES_DLQ).
    Dlq {
        /// `events` (NOTIFICATIONS_DLQ) or `deliveries` (DELIVERIES_DLQ: jobs a channel gave
        /// up on; replayed to their own channel only).
        #[arg(long, value_enum, default_value = "events")]
        stream: dlq::DlqStream,
        #[command(subcommand)]
        command: dlq::DlqCommand,
    },
    /// Check a delivery channel: send it a sample notification and print its answer.
    Deliver {
        #[command(subcommand)]
        command: deliver::DeliverCommand,
    },
    /// Change the recipient directory (published to stream RECIPIENTS, like the
    /// application's events) or show one entry with the modes that apply.
    Recipient {
        #[command(subcommand)]
        command: recipient::RecipientCommand,
    },
}

pub async fn execute(command: Command, config: Config) -> anyhow::Result<()> {
    match command {
        Command::Run { stage } => run::run(config, stage).await,
        Command::Setup => setup::setup(&config).await,
        Command::Publish { subject, event, raw } => publish::publish(&config, subject, &event, raw).await,
        Command::Feed { owner, limit, json } => feed::feed(&config, &owner, limit, json).await,
        Command::Dlq { stream, command } => dlq::dlq(&config, stream, command).await,
        Command::Deliver { command } => deliver::deliver(&config, command).await,
        Command::Recipient { command } => recipient::recipient(&config, command).await,
    }
}

/// The command line as given. Every setting is global (a flag before or after the command
/// works, and the command may be left out for `run`), but each command's `--help` shows its
/// own arguments first and then only the groups of settings it uses.
pub fn parse() -> Cli {
    let matches = command().get_matches();
    Cli::from_arg_matches(&matches).unwrap_or_else(|error| error.exit())
}

/// The `clap` command, with each command's help trimmed to the settings it uses.
pub fn command() -> clap::Command {
    let mut command = Cli::command();
    // Building copies the global settings into every command; only then can they be hidden
    // where they do not apply (they are still accepted there, as before).
    command.build();
    command.mut_subcommands(|subcommand| {
        let used = settings_used_by(subcommand.get_name());
        let subcommand = hide_settings_except(subcommand, used);
        if subcommand.get_name() == "recipient" {
            // `show` reads the store; the others publish. Each shows only its own.
            subcommand.mut_subcommands(|nested| {
                let used = settings_used_by_recipient(nested.get_name());
                hide_settings_except(nested, used)
            })
        } else {
            subcommand
        }
    })
}

/// The groups of settings (by help heading) each command reads.
fn settings_used_by(command: &str) -> &'static [&'static str] {
    use heading::*;
    match command {
        "setup" => &[GENERAL, NATS, STORE, DEAD_LETTERS, DELIVERY, LIMITS],
        "publish" | "dlq" => &[GENERAL, NATS],
        "feed" => &[GENERAL, STORE],
        "deliver" => &[GENERAL, NATS, DELIVERY],
        // Its commands narrow it further: see `settings_used_by_recipient`.
        "recipient" => &[GENERAL, NATS, STORE, DELIVERY],
        // `run`, and anything new until it says otherwise.
        _ => &[GENERAL, NATS, STORE, WORKER, HTTP, DEAD_LETTERS, DELIVERY, LIMITS],
    }
}

/// `recipient show` reads the store and `NOTIFY_DEFAULTS`; the others publish to NATS.
fn settings_used_by_recipient(command: &str) -> &'static [&'static str] {
    use heading::*;
    match command {
        "show" => &[GENERAL, STORE, DELIVERY],
        _ => &[GENERAL, NATS],
    }
}

fn hide_settings_except(command: clap::Command, used: &'static [&'static str]) -> clap::Command {
    command
        .mut_args(|arg| match arg.get_help_heading() {
            Some(group) if !used.contains(&group) => arg.hide(true),
            _ => arg,
        })
        .mut_subcommands(|subcommand| hide_settings_except(subcommand, used))
}

/// Errors a person fixes by changing the command line or the configuration, not by trying
/// again: exit code 2, like a bad variable.
pub fn is_configuration_error(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        cause.is::<UsageError>()
            || cause.is::<ConsumerRefused>()
            || cause
                .downcast_ref::<StoreError>()
                .is_some_and(|error| error.configuration)
    })
}
