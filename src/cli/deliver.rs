//! `notification-worker deliver test --channel C OWNER`: send one sample notification on a
//! configured channel, to check its credentials and settings, and print what it answered.

use super::run::UsageError;
use crate::config::Config;
use crate::delivery::{Channel, ChannelName, Job};
use crate::input;
use clap::Subcommand;

#[derive(Debug, Clone, Subcommand)]
pub enum DeliverCommand {
    /// Send a sample `new-notification` to OWNER on one channel (nothing is stored).
    Test {
        /// pusher, nats or webhook (it must be configured).
        #[arg(long)]
        channel: String,
        /// The user to send it to, e.g. user-123
        owner: String,
    },
}

pub async fn deliver(config: &Config, command: DeliverCommand) -> anyhow::Result<()> {
    let DeliverCommand::Test { channel, owner } = command;
    let Some(name) = ChannelName::parse(&channel) else {
        return Err(UsageError(format!("--channel {channel:?}: must be pusher, nats or webhook")).into());
    };
    if crate::domain::Id::parse("owner", &owner).is_err() {
        return Err(UsageError(format!("{owner:?} is not a valid owner id")).into());
    }
    // The nats channel publishes on the worker's connection; the others need none.
    let client = if name == ChannelName::Nats {
        Some(input::connect(&config.nats, "notification-worker-deliver").await?)
    } else {
        None
    };
    let built = config.delivery.build(name, client.as_ref())?;
    let Some(channel) = built else {
        return Err(UsageError(format!("channel {name} is not configured ({})", required(name))).into());
    };
    let job = Job::sample(&owner);
    let result = channel
        .send(std::slice::from_ref(&job))
        .await
        .into_iter()
        .next()
        .unwrap_or_else(|| Err(crate::delivery::SendError::transient("no answer")));
    if let Some(client) = client {
        let _ = client.flush().await;
    }
    match result {
        Ok(()) => {
            println!("{name}: accepted a sample notification {} for {owner}", job.id());
            Ok(())
        }
        Err(error) => {
            let kind = match error.kind {
                crate::delivery::Failure::Permanent => "refused (permanent: check the settings)",
                crate::delivery::Failure::Gone => "refused (the address no longer exists)",
                crate::delivery::Failure::Transient { .. } => "failed (transient: would be retried)",
            };
            anyhow::bail!("{name}: {kind}: {}", error.message)
        }
    }
}

fn required(name: ChannelName) -> &'static str {
    match name {
        ChannelName::Pusher => "set PUSHER_APP_ID, PUSHER_KEY and PUSHER_SECRET",
        ChannelName::Nats => "set REALTIME_NATS_SUBJECT",
        ChannelName::Webhook => "set WEBHOOK_URL and WEBHOOK_SECRET",
        ChannelName::Email => "set SMTP_URL and EMAIL_FROM",
        ChannelName::Webpush => "set WEBPUSH_VAPID_PRIVATE_KEY_FILE and WEBPUSH_SUBJECT",
        ChannelName::Fcm => "set FCM_CREDENTIALS_FILE",
        ChannelName::Apns => "set APNS_KEY_FILE, APNS_KEY_ID, APNS_TEAM_ID and APNS_TOPIC",
    }
}
