//! The delivery stage: telling people. The store stage announces each notification whose
//! life began (or ended) to a durable outbox (stream `NOTIFICATION_DELIVERIES`); one durable
//! consumer per channel reads it, so a channel that is down holds only its own jobs.
//!
//! - [`job`]: what is announced, and its message id.
//! - [`outbox`]: the stream, and the store stage's side (announce before acking the event).
//! - [`stage`]: a channel's consumer: order per notification, retries, dead letters.
//! - [`channel`]: the contract every channel keeps, and what a failed send becomes.
//! - one file per channel: [`pusher`], [`nats`], [`webhook`].
//! - personal channels ([`messenger::Messenger`]s, run by [`personal`] with [`digest`]):
//!   [`email`], [`webpush`], [`fcm`], [`apns`], with [`jwt`] (their signed tokens) and [`alert`]
//!   (what a phone shows).

mod ack_floor;
pub mod alert;
pub mod apns;
pub mod channel;
pub mod digest;
pub mod email;
pub mod fcm;
pub mod job;
pub mod jwt;
pub mod messenger;
pub mod nats;
pub mod outbox;
pub mod personal;
pub mod pusher;
pub mod stage;
pub mod template;
pub mod webhook;
pub mod webpush;
pub mod wording;

pub use channel::{Channel, ChannelName, Failure, SendError};
pub use job::{Job, JobKind};
pub use outbox::{Announcer, OUTBOX_STREAM};

use nats::{NatsChannel, NatsRealtimeSettings};
use pusher::{PusherChannel, PusherSettings};
use webhook::{WebhookChannel, WebhookSettings};
use webpush::WebPushSettings;

/// The channels turned on by configuration, and how the stage treats them.
#[derive(Debug, Clone, Default)]
pub struct DeliverySettings {
    pub pusher: Option<PusherSettings>,
    pub nats: Option<NatsRealtimeSettings>,
    pub webhook: Option<WebhookSettings>,
    /// Personal channel `webpush` (a `Messenger`, not one of the stage's `Channel`s).
    pub webpush: Option<WebPushSettings>,
    /// Channel `fcm` (a personal channel, sent through the recipient directory).
    pub fcm: Option<fcm::FcmSettings>,
    /// Channel `apns` (a personal channel, sent through the recipient directory).
    pub apns: Option<apns::ApnsSettings>,
    /// Channel `email` (a personal channel: sent by `personal.rs`, not by the outbox stage).
    pub email: Option<email::EmailSettings>,
    /// `DELIVERY_MAX_ATTEMPTS`: a job still failing after this many sends is dead-lettered.
    pub max_attempts: u32,
    /// `DELIVERY_CONCURRENCY`: sends in flight at once, per channel.
    pub concurrency: usize,
    /// `PUSH_DIGEST_WINDOW`: the digest window of webpush, fcm and apns.
    pub push_digest_window: std::time::Duration,
    /// `RECIPIENT_CACHE_TTL` and `RECIPIENT_CACHE_SIZE`.
    pub recipient_cache: crate::recipients::CacheSettings,
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
        if self.email.is_some() {
            names.push(ChannelName::Email);
        }
        if self.webpush.is_some() {
            names.push(ChannelName::Webpush);
        }
        if self.fcm.is_some() {
            names.push(ChannelName::Fcm);
        }
        if self.apns.is_some() {
            names.push(ChannelName::Apns);
        }
        names
    }

    /// Whether a channel that reaches one person is on (they need the recipient directory).
    pub fn has_personal(&self) -> bool {
        self.enabled().iter().any(|name| name.personal().is_some())
    }

    /// The digest window of a personal channel.
    pub fn digest_window(&self, name: ChannelName) -> std::time::Duration {
        match name {
            ChannelName::Email => self.email_digest_window(),
            _ => self.push_digest_window,
        }
    }

    /// The longest digest window of the enabled channels: the digest stream deduplicates
    /// over at least this long.
    pub fn longest_digest_window(&self) -> std::time::Duration {
        self.enabled()
            .into_iter()
            .filter(|name| name.personal().is_some())
            .map(|name| self.digest_window(name))
            .max()
            .unwrap_or(self.push_digest_window)
    }

    fn email_digest_window(&self) -> std::time::Duration {
        self.email
            .as_ref()
            .map_or(self.push_digest_window, |email| email.digest_window)
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
            // The personal channels are built by `start_channels`, with the directory.
            ChannelName::Email | ChannelName::Webpush | ChannelName::Fcm | ChannelName::Apns => None,
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

/// Starts one consumer per enabled channel on the outbox (and, for the personal channels,
/// one digest consumer each); returns their tasks, which end after `shutdown` once their
/// jobs in flight are settled. `people` is needed when a personal channel is enabled.
pub async fn start_channels(
    client: &async_nats::Client,
    settings: &DeliverySettings,
    options: &StageOptions,
    people: Option<std::sync::Arc<personal::People>>,
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
    let start = Start {
        js: &js,
        outbox: &stream,
        settings,
        options,
        metrics: &metrics,
        shutdown: &shutdown,
    };
    let mut tasks = Vec::new();
    for name in settings.enabled() {
        if name.personal().is_some() {
            let Some(people) = &people else {
                anyhow::bail!("channel {name} needs the recipient directory");
            };
            tasks.extend(start_personal(&start, name, people).await?);
        } else {
            let channel = settings
                .build(name, Some(client))?
                .expect("an enabled channel has settings");
            tasks.extend(start.stage(channel).await?);
        }
    }
    Ok(tasks)
}

/// A personal channel's messenger, built from its settings, and its consumers started.
async fn start_personal(
    start: &Start<'_>,
    name: ChannelName,
    people: &std::sync::Arc<personal::People>,
) -> anyhow::Result<Vec<tokio::task::JoinHandle<()>>> {
    let missing = || anyhow::anyhow!("channel {name} is enabled without its settings");
    match name {
        ChannelName::Email => {
            let settings = start.settings.email.as_ref().ok_or_else(missing)?;
            start
                .personal(name, email::EmailMessenger::new(settings)?, people)
                .await
        }
        ChannelName::Webpush => {
            let settings = start.settings.webpush.as_ref().ok_or_else(missing)?;
            start
                .personal(name, webpush::WebPushMessenger::new(settings)?, people)
                .await
        }
        ChannelName::Fcm => {
            let settings = start.settings.fcm.clone().ok_or_else(missing)?;
            start
                .personal(name, fcm::FcmMessenger::new(settings)?, people)
                .await
        }
        ChannelName::Apns => {
            let settings = start.settings.apns.clone().ok_or_else(missing)?;
            start
                .personal(name, apns::ApnsMessenger::new(settings)?, people)
                .await
        }
        _ => anyhow::bail!("channel {name} is not a personal channel"),
    }
}

/// `deliver test` on a personal channel: one sample notification to every address
/// `recipient` has on channel `name`, each address with what it answered.
pub async fn send_sample(
    settings: &DeliverySettings,
    name: ChannelName,
    recipient: &crate::recipients::Recipient,
    notice: &job::Notice,
) -> anyhow::Result<Vec<(String, Result<(), SendError>)>> {
    async fn to_each<M: messenger::Messenger>(
        messenger: M,
        recipient: &crate::recipients::Recipient,
        notice: &job::Notice,
    ) -> Vec<(String, Result<(), SendError>)> {
        let mut answers = Vec::new();
        for address in personal::addresses(recipient, messenger.channel()) {
            let shown = match address {
                messenger::Address::Email(email) => email.as_str().to_owned(),
                messenger::Address::Device(target) => {
                    let token: String = target.token().chars().take(24).collect();
                    format!("{} {token}…", target.kind().as_str())
                }
            };
            let answer = messenger
                .send(recipient, address, messenger::Content::One(notice))
                .await;
            answers.push((shown, answer));
        }
        answers
    }
    let missing = || anyhow::anyhow!("channel {name} is not configured");
    Ok(match name {
        ChannelName::Email => {
            let settings = settings.email.as_ref().ok_or_else(missing)?;
            to_each(email::EmailMessenger::new(settings)?, recipient, notice).await
        }
        ChannelName::Webpush => {
            let settings = settings.webpush.as_ref().ok_or_else(missing)?;
            to_each(webpush::WebPushMessenger::new(settings)?, recipient, notice).await
        }
        ChannelName::Fcm => {
            let settings = settings.fcm.clone().ok_or_else(missing)?;
            to_each(fcm::FcmMessenger::new(settings)?, recipient, notice).await
        }
        ChannelName::Apns => {
            let settings = settings.apns.clone().ok_or_else(missing)?;
            to_each(apns::ApnsMessenger::new(settings)?, recipient, notice).await
        }
        _ => anyhow::bail!("channel {name} is not a personal channel"),
    })
}

/// What starting a channel's consumers takes.
struct Start<'a> {
    js: &'a async_nats::jetstream::Context,
    outbox: &'a async_nats::jetstream::stream::Stream,
    settings: &'a DeliverySettings,
    options: &'a StageOptions,
    metrics: &'a std::sync::Arc<crate::telemetry::metrics::Metrics>,
    shutdown: &'a tokio_util::sync::CancellationToken,
}

impl Start<'_> {
    /// The channel's consumer on the outbox and its stage (and the backlog gauge's task).
    async fn stage<C: Channel>(&self, channel: C) -> anyhow::Result<Vec<tokio::task::JoinHandle<()>>> {
        let name = channel.name();
        let (consumer, limits) = crate::input::ensure_consumer_on(
            self.outbox,
            &consumer_name(name),
            outbox::OUTBOX_FILTER,
            crate::input::DELIVERY_ACK_WAIT,
        )
        .await?;
        let dead_letters = crate::input::DeadLetters::for_channel(
            self.js,
            OUTBOX_STREAM,
            name.as_str(),
            &self.options.dead_letters,
        )
        .await?;
        let source = crate::input::Source::jetstream(consumer.clone(), self.outbox.cached_info().created)?;
        self.metrics.enable_channel(name.as_str());
        let watch = tokio::spawn(watch_pending(
            consumer.clone(),
            name,
            std::sync::Arc::clone(self.metrics),
            self.shutdown.clone(),
        ));
        let parts = stage::StageParts {
            channel: std::sync::Arc::new(channel),
            source,
            floor_consumer: consumer,
            dead_letters,
            metrics: std::sync::Arc::clone(self.metrics),
        };
        let stage_settings = stage::StageSettings {
            max_attempts: self.settings.max_attempts,
            concurrency: self.settings.concurrency,
            ack_wait: limits.ack_wait,
            shutdown_grace: self.options.shutdown_grace,
            yield_to_store: self.options.yield_to_store,
        };
        let run = tokio::spawn(stage::run(parts, stage_settings, self.shutdown.clone()));
        Ok(vec![watch, run])
    }

    /// A personal channel: its stage on the outbox, and its digest consumer.
    async fn personal<M: messenger::Messenger>(
        &self,
        name: ChannelName,
        messenger: M,
        people: &std::sync::Arc<personal::People>,
    ) -> anyhow::Result<Vec<tokio::task::JoinHandle<()>>> {
        let window = self.settings.digest_window(name);
        let longest = self.settings.longest_digest_window();
        let digests_stream = if self.options.create_outbox {
            digest::ensure_stream(self.js, longest).await?
        } else {
            digest::existing_stream(self.js, longest).await?
        };
        let messenger = std::sync::Arc::new(messenger);
        let channel = personal::PersonalChannel::new(
            name,
            std::sync::Arc::clone(&messenger),
            std::sync::Arc::clone(people),
            digest::Digests::new(self.js.clone(), name, window),
        );
        let mut tasks = self.stage(channel).await?;
        let consumer = digest::ensure_consumer(&digests_stream, name).await?;
        let dead_letters = crate::input::DeadLetters::for_channel(
            self.js,
            digest::DIGEST_STREAM,
            name.as_str(),
            &self.options.dead_letters,
        )
        .await?;
        let parts = digest::DigestParts {
            channel: name,
            messenger,
            people: std::sync::Arc::clone(people),
            stream: digests_stream,
            dead_letters,
            window,
            max_attempts: self.settings.max_attempts,
            concurrency: self.settings.concurrency,
        };
        tasks.push(tokio::spawn(digest::run(parts, consumer, self.shutdown.clone())));
        Ok(tasks)
    }
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
