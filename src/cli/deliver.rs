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
        /// pusher, nats, webhook, email, webpush, fcm or apns (it must be configured). The
        /// personal channels send to OWNER's addresses in the recipient directory.
        #[arg(long)]
        channel: String,
        /// The user to send it to, e.g. user-123
        owner: String,
    },
}

pub async fn deliver(config: &Config, command: DeliverCommand) -> anyhow::Result<()> {
    let DeliverCommand::Test { channel, owner } = command;
    let Some(name) = ChannelName::parse(&channel) else {
        return Err(UsageError(format!(
            "--channel {channel:?}: must be pusher, nats, webhook, email, webpush, fcm or apns"
        ))
        .into());
    };
    if crate::domain::Id::parse("owner", &owner).is_err() {
        return Err(UsageError(format!("{owner:?} is not a valid owner id")).into());
    }
    if name.personal().is_some() {
        return personal(config, name, &owner).await;
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
        Err(error) => anyhow::bail!("{name}: {}: {}", refusal(&error), error.message),
    }
}

/// A personal channel: the sample goes to each of the owner's addresses on it.
async fn personal(config: &Config, name: ChannelName, owner: &str) -> anyhow::Result<()> {
    use crate::store::RecipientStore;
    if !config.delivery.enabled().contains(&name) {
        return Err(UsageError(format!("channel {name} is not configured ({})", required(name))).into());
    }
    let owner_id = crate::domain::Id::parse("owner", owner)
        .map_err(|_| UsageError(format!("{owner:?} is not a valid owner id")))?;
    let directory = crate::store::AnyRecipientStore::open(&config.store).await?;
    let recipient = directory.get(&owner_id).await?;
    let Some(recipient) = recipient.filter(|recipient| {
        name.personal()
            .is_some_and(|channel| !crate::delivery::personal::addresses(recipient, channel).is_empty())
    }) else {
        return Err(UsageError(format!(
            "{owner} has no address for channel {name} in the recipient directory (see `notification-worker recipient show {owner}`)"
        ))
        .into());
    };
    let notice = crate::delivery::job::Notice::sample(owner);
    let answers = crate::delivery::send_sample(&config.delivery, name, &recipient, &notice).await?;
    let mut failed = 0;
    for (address, answer) in &answers {
        match answer {
            Ok(()) => println!(
                "{name}: {address} accepted a sample notification {}",
                notice.item.id
            ),
            Err(error) => {
                failed += 1;
                eprintln!("{name}: {address}: {}: {}", refusal(error), error.message);
            }
        }
    }
    if failed > 0 {
        anyhow::bail!(
            "{name}: {failed} of {} addresses did not accept the sample",
            answers.len()
        );
    }
    Ok(())
}

fn refusal(error: &crate::delivery::SendError) -> &'static str {
    match error.kind {
        crate::delivery::Failure::Permanent => "refused (permanent: check the settings)",
        crate::delivery::Failure::Gone => "refused (the address no longer exists)",
        crate::delivery::Failure::Transient { .. } => "failed (transient: would be retried)",
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
