//! The delivery stage: telling people. The store stage announces each notification whose
//! life began (or ended) to a durable outbox (stream `NOTIFICATION_DELIVERIES`); one durable
//! consumer per channel reads it, so a channel that is down holds only its own jobs.
//!
//! - [`job`]: what is announced, and its message id.
//! - [`outbox`]: the stream, and the store stage's side (announce before acking the event).
//! - [`stage`]: a channel's consumer: order per notification, retries, dead letters.
//! - [`channel`]: the contract every channel keeps, and what a failed send becomes.
//! - one file per channel: [`pusher`], [`nats`], [`webhook`]; personal channels: [`email`].

mod ack_floor;
pub mod channel;
pub mod email;
pub mod job;
pub mod messenger;
pub mod nats;
pub mod outbox;
pub mod pusher;
pub mod stage;
pub mod template;
pub mod webhook;
pub mod wording;

pub use channel::{Channel, ChannelName, Failure, SendError};
pub use job::{Job, JobKind};
pub use outbox::{Announcer, OUTBOX_STREAM};

use nats::{NatsChannel, NatsRealtimeSettings};
use pusher::{PusherChannel, PusherSettings};
use webhook::{WebhookChannel, WebhookSettings};

/// The channels turned on by configuration, and how the stage treats them.
#[derive(Debug, Clone, Default)]
pub struct DeliverySettings {
    pub pusher: Option<PusherSettings>,
    pub nats: Option<NatsRealtimeSettings>,
    pub webhook: Option<WebhookSettings>,
    /// Channel `email` (a personal channel: sent by `personal.rs`, not by the outbox stage).
    pub email: Option<email::EmailSettings>,
    /// `DELIVERY_MAX_ATTEMPTS`: a job still failing after this many sends is dead-lettered.
    pub max_attempts: u32,
    /// `DELIVERY_CONCURRENCY`: sends in flight at once, per channel.
    pub concurrency: usize,
}

impl DeliverySettings {
    /// The channels configured, in a fixed order.
    pub fn enabled(&self) -> Vec<ChannelName> {
        let mut names = Vec::new();
        if self.pusher.is_some() {
            names.push(ChannelName::Pusher);
        }
        if self.nats.is_some() {
            names.push(ChannelName::Nats);
        }
        if self.webhook.is_some() {
            names.push(ChannelName::Webhook);
        }
        names
    }

    /// The channel `name`, built from its settings (`None` when it is not configured).
    pub fn build(
        &self,
        name: ChannelName,
        client: Option<&async_nats::Client>,
    ) -> anyhow::Result<Option<AnyChannel>> {
        Ok(match name {
            ChannelName::Pusher => match &self.pusher {
                Some(settings) => Some(AnyChannel::Pusher(PusherChannel::new(settings.clone())?)),
                None => None,
            },
            ChannelName::Nats => match (&self.nats, client) {
                (Some(settings), Some(client)) => {
                    Some(AnyChannel::Nats(NatsChannel::new(client.clone(), settings)))
                }
                (Some(_), None) => anyhow::bail!("channel nats needs a NATS connection"),
                (None, _) => None,
            },
            ChannelName::Webhook => match &self.webhook {
                Some(settings) => Some(AnyChannel::Webhook(WebhookChannel::new(settings.clone())?)),
                None => None,
            },
        })
    }
}

/// A channel chosen at start (an enum for the same reason as `AnyStore`).
pub enum AnyChannel {
    Pusher(PusherChannel),
    Nats(NatsChannel),
    Webhook(WebhookChannel),
}

impl Channel for AnyChannel {
    fn name(&self) -> ChannelName {
        match self {
            AnyChannel::Pusher(channel) => channel.name(),
            AnyChannel::Nats(channel) => channel.name(),
            AnyChannel::Webhook(channel) => channel.name(),
        }
    }

    fn max_batch(&self) -> usize {
        match self {
            AnyChannel::Pusher(channel) => channel.max_batch(),
            AnyChannel::Nats(channel) => channel.max_batch(),
            AnyChannel::Webhook(channel) => channel.max_batch(),
        }
    }

    async fn send(&self, jobs: &[Job]) -> Vec<Result<(), SendError>> {
        match self {
            AnyChannel::Pusher(channel) => channel.send(jobs).await,
            AnyChannel::Nats(channel) => channel.send(jobs).await,
            AnyChannel::Webhook(channel) => channel.send(jobs).await,
        }
    }
}

/// Names of what the stage creates and reads, per channel.
pub fn consumer_name(channel: ChannelName) -> String {
    format!("notification-delivery-{channel}")
}

/// How the delivery stage is run.
pub struct StageOptions {
    /// Create the outbox when it is missing (`setup`, and `run` in development).
    pub create_outbox: bool,
    pub dead_letters: crate::config::DeadLetterSettings,
    pub shutdown_grace: std::time::Duration,
    /// In the store stage's process: its in-flight capacity (see `StageSettings`).
    pub yield_to_store: Option<usize>,
}

/// Starts one consumer per enabled channel on the outbox; returns their tasks, which end
/// after `shutdown` once their jobs in flight are settled.
pub async fn start_channels(
    client: &async_nats::Client,
    settings: &DeliverySettings,
    options: &StageOptions,
    metrics: std::sync::Arc<crate::telemetry::metrics::Metrics>,
    shutdown: tokio_util::sync::CancellationToken,
) -> anyhow::Result<Vec<tokio::task::JoinHandle<()>>> {
    use anyhow::Context;
    let js = async_nats::jetstream::new(client.clone());
    let stream = if options.create_outbox {
        outbox::ensure_stream(&js).await?
    } else {
        js.get_stream(OUTBOX_STREAM).await.with_context(|| {
            format!(
                "cannot read the outbox stream {OUTBOX_STREAM} (run `notification-worker setup` to create it)"
            )
        })?
    };
    let mut tasks = Vec::new();
    for name in settings.enabled() {
        let channel = settings
            .build(name, Some(client))?
            .expect("an enabled channel has settings");
        let (consumer, limits) =
            crate::input::ensure_consumer_on(&stream, &consumer_name(name), outbox::OUTBOX_FILTER).await?;
        let dead_letters =
            crate::input::DeadLetters::for_channel(&js, OUTBOX_STREAM, name.as_str(), &options.dead_letters)
                .await?;
        let source = crate::input::Source::jetstream(consumer.clone(), stream.cached_info().created)?;
        metrics.enable_channel(name.as_str());
        tasks.push(tokio::spawn(watch_pending(
            consumer.clone(),
            name,
            std::sync::Arc::clone(&metrics),
            shutdown.clone(),
        )));
        let parts = stage::StageParts {
            channel: std::sync::Arc::new(channel),
            source,
            floor_consumer: consumer,
            dead_letters,
            metrics: std::sync::Arc::clone(&metrics),
        };
        let stage_settings = stage::StageSettings {
            max_attempts: settings.max_attempts,
            concurrency: settings.concurrency,
            ack_wait: limits.ack_wait,
            shutdown_grace: options.shutdown_grace,
            yield_to_store: options.yield_to_store,
        };
        tasks.push(tokio::spawn(stage::run(parts, stage_settings, shutdown.clone())));
    }
    Ok(tasks)
}

/// Keeps `notification_worker_outbox_pending{channel}` current.
async fn watch_pending(
    mut consumer: async_nats::jetstream::consumer::PullConsumer,
    channel: ChannelName,
    metrics: std::sync::Arc<crate::telemetry::metrics::Metrics>,
    stop: tokio_util::sync::CancellationToken,
) {
    loop {
        match consumer.info().await {
            Ok(info) => metrics.set_outbox_pending(channel.as_str(), info.num_pending),
            Err(error) => tracing::debug!(%error, %channel, "cannot read the outbox backlog"),
        }
        tokio::select! {
            () = tokio::time::sleep(std::time::Duration::from_secs(5)) => {}
            () = stop.cancelled() => return,
        }
    }
}
