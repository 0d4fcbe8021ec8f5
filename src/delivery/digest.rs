//! Digests: one message per owner, channel and window, listing the notifications stored in
//! the window that are still unread when it goes out. Kept in JetStream (stream
//! `NOTIFICATION_DIGESTS`), never in memory, so a crash or a restart loses no window.
//!
//! Windows are fixed stretches of `window` length on the clock (window `k` is
//! `[k·window, (k+1)·window)`), so every replica agrees on which window is open without
//! talking to the others. A notification joins the window open when its channel handles it,
//! which is when the worker stored it or later (a backlog drained after an outage joins the
//! window of the drain: never skipped).
//!
//! Joining a window publishes two messages:
//! - an entry, `digests.entry.{channel}.{k}.{owner}`: the notification as the job carried it
//!   (message id `{channel}:{notification id}`, so a redelivered job adds nothing);
//! - the window's marker, `digests.due.{channel}`: `{owner, window}` (message id
//!   `{channel}:{owner}:{k}`; the stream's duplicate window is longer than a digest window,
//!   so the marker exists once however many notifications join).
//!
//! Markers are read by a consumer of their own, `notification-digest-{channel}`. A marker
//! that arrives before its window closed is held there: a delayed Nak until the window's end
//! (plus [`GRACE`] for clocks a little apart). A held marker stays pending, so that consumer's
//! MaxAckPending is [`MAX_OPEN_WINDOWS`], sized for owners × channels, apart from the jobs'
//! consumers; and a hold is a delivery to the server but not an attempt here: attempts are
//! counted in the marker itself. When the window is over, the marker's owner gets the
//! digest of the entries still stored and unread, and the window's entries are purged. A
//! failed send publishes the marker again with the next attempt's number and time (the
//! same hold then waits for it) and acks the old one; past `DELIVERY_MAX_ATTEMPTS` the
//! marker is dead-lettered.
//!
//! One digest per window becomes two only if a replica crashes after the receiver accepted
//! the digest and before the marker was acked: the marker comes back and is sent again.

use super::channel::{ChannelName, Failure, SendError, retry_pause};
use super::job::Notice;
use super::messenger::{Content, Messenger};
use super::personal::{People, addresses, send_to_all};
use super::template::encode_owner;
use crate::domain::{Id, Reason, Version};
use crate::input::{DeadLetters, Delivery};
use crate::recipients::Mode;
use crate::store::NotificationStore;
use anyhow::Context;
use async_nats::jetstream::{self, AckKind, consumer, stream};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

pub const DIGEST_STREAM: &str = "NOTIFICATION_DIGESTS";
const DIGEST_FILTER: &str = "digests.>";
/// Markers' subjects: this and the channel.
pub const DIGEST_DUE_PREFIX: &str = "digests.due.";
/// A marker is sent this long after its window's end: a replica whose clock is behind may
/// still add to the window until then.
pub const GRACE: Duration = Duration::from_secs(5);
/// Windows open at once that a digest consumer holds: owners × personal channels with a
/// digest due. Held markers count against MaxAckPending, so this is the limit, not the
/// jobs' consumers' few thousand.
pub const MAX_OPEN_WINDOWS: i64 = 1_000_000;
/// The most notifications one digest lists (the rest of the window is dropped with it; a
/// person who gets more than this in one window reads the feed).
pub const MAX_ENTRIES: usize = 500;
/// AckWait of the digest consumers: a send keeps its marker with progress acks meanwhile.
const MARKER_ACK_WAIT: Duration = Duration::from_secs(30);
const PROGRESS_EVERY: Duration = Duration::from_secs(10);
/// A due marker that finds every send slot busy comes back after this (plus jitter).
const BUSY_PAUSE: Duration = Duration::from_millis(500);

/// Creates the digest stream when absent, and widens its duplicate window when a longer
/// digest window is configured than the stream was made for.
pub async fn ensure_stream(
    js: &jetstream::Context,
    longest_window: Duration,
) -> anyhow::Result<stream::Stream> {
    let config = stream_config(longest_window);
    let mut stream = js
        .get_or_create_stream(config.clone())
        .await
        .with_context(|| format!("cannot read or create the digest stream {DIGEST_STREAM}"))?;
    let current = stream.info().await?.config.clone();
    if current.duplicate_window < config.duplicate_window || current.max_age < config.max_age {
        let wider = stream::Config {
            duplicate_window: current.duplicate_window.max(config.duplicate_window),
            max_age: current.max_age.max(config.max_age),
            ..current
        };
        js.update_stream(wider)
            .await
            .with_context(|| format!("cannot widen the duplicate window of {DIGEST_STREAM}"))?;
        stream = js.get_stream(DIGEST_STREAM).await?;
    }
    Ok(stream)
}

/// The digest stream as `run` finds it in production (created by `setup`), checked to be
/// fit for `longest_window`.
pub async fn existing_stream(
    js: &jetstream::Context,
    longest_window: Duration,
) -> anyhow::Result<stream::Stream> {
    let mut stream = js.get_stream(DIGEST_STREAM).await.with_context(|| {
        format!(
            "cannot read the digest stream {DIGEST_STREAM} (run `notification-worker setup` to create it)"
        )
    })?;
    let wanted = stream_config(longest_window).duplicate_window;
    let current = stream.info().await?.config.duplicate_window;
    if current < wanted {
        anyhow::bail!(
            "the digest stream {DIGEST_STREAM} deduplicates over {}s, shorter than the digest window: \
             run `notification-worker setup` to widen it",
            current.as_secs()
        );
    }
    Ok(stream)
}

fn stream_config(longest_window: Duration) -> stream::Config {
    // The marker of a window is published again by every notification joining it, up to
    // one window apart; a minute more covers a job handled a little late.
    let duplicate_window = longest_window + Duration::from_secs(60);
    stream::Config {
        name: DIGEST_STREAM.to_owned(),
        subjects: vec![DIGEST_FILTER.to_owned()],
        storage: stream::StorageType::File,
        retention: stream::RetentionPolicy::Limits,
        // Entries of a digest being retried are kept for the attempts; a week, like the
        // outbox, and never less than a few windows.
        max_age: (longest_window * 3).max(Duration::from_secs(7 * 24 * 60 * 60)),
        duplicate_window,
        ..Default::default()
    }
}

/// The window's marker: whose digest, which window, and which attempt it is at.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Marker {
    owner: String,
    window: u64,
    #[serde(default = "first_attempt")]
    attempt: u32,
    /// Unix milliseconds before which this attempt is not made (a retry's pause).
    #[serde(default)]
    not_before_ms: u64,
}

fn first_attempt() -> u32 {
    1
}

fn now_ms() -> u64 {
    (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as u64
}

fn window_ms(window: Duration) -> u64 {
    (window.as_millis() as u64).max(1)
}

/// The window open at `at_ms`.
pub fn window_at(at_ms: u64, window: Duration) -> u64 {
    at_ms / window_ms(window)
}

/// When window `index`'s digest is due (its end plus [`GRACE`]), in Unix milliseconds.
pub fn due_ms(index: u64, window: Duration) -> u64 {
    (index + 1) * window_ms(window) + GRACE.as_millis() as u64
}

fn entry_subject(channel: ChannelName, window: u64, owner: &str) -> String {
    format!("digests.entry.{channel}.{window}.{}", encode_owner(owner))
}

fn due_subject(channel: ChannelName) -> String {
    format!("{DIGEST_DUE_PREFIX}{channel}")
}

/// A channel's side of adding to digests.
pub struct Digests {
    js: jetstream::Context,
    channel: ChannelName,
    window: Duration,
}

impl Digests {
    pub fn new(js: jetstream::Context, channel: ChannelName, window: Duration) -> Digests {
        Digests { js, channel, window }
    }

    /// Adds `notice` to `owner`'s open window; returns once both messages are stored.
    pub async fn add(&self, owner: &Id, notice: &Notice) -> Result<(), SendError> {
        let window = window_at(now_ms(), self.window);
        let entry = serde_json::to_vec(notice).map_err(|error| SendError::permanent(error.to_string()))?;
        self.publish(
            entry_subject(self.channel, window, owner.as_str()),
            format!("{}:{}", self.channel, notice.item.id),
            entry,
        )
        .await?;
        let marker = Marker {
            owner: owner.to_string(),
            window,
            attempt: 1,
            not_before_ms: 0,
        };
        self.publish(
            due_subject(self.channel),
            format!("{}:{}:{window}", self.channel, owner),
            serde_json::to_vec(&marker).expect("a marker serializes"),
        )
        .await
    }

    async fn publish(&self, subject: String, id: String, body: Vec<u8>) -> Result<(), SendError> {
        publish_once(&self.js, subject, id, body).await
    }
}

async fn publish_once(
    js: &jetstream::Context,
    subject: String,
    id: String,
    body: Vec<u8>,
) -> Result<(), SendError> {
    let mut headers = async_nats::HeaderMap::new();
    headers.insert(async_nats::header::NATS_MESSAGE_ID, id.as_str());
    let failed = |error: String| SendError::transient(format!("cannot add to the digest stream: {error}"));
    js.publish_with_headers(subject, headers, body.into())
        .await
        .map_err(|error| failed(error.to_string()))?
        .await
        .map_err(|error| failed(error.to_string()))?;
    Ok(())
}

/// What the digest consumer of one channel needs.
pub struct DigestParts<M> {
    pub channel: ChannelName,
    pub messenger: Arc<M>,
    pub people: Arc<People>,
    pub stream: stream::Stream,
    pub dead_letters: DeadLetters,
    pub window: Duration,
    pub max_attempts: u32,
    pub concurrency: usize,
}

/// The digest consumer's name for `channel`.
pub fn consumer_name(channel: ChannelName) -> String {
    format!("notification-digest-{channel}")
}

/// Creates (or reads) the channel's digest consumer.
pub async fn ensure_consumer(
    stream: &stream::Stream,
    channel: ChannelName,
) -> anyhow::Result<consumer::PullConsumer> {
    let name = consumer_name(channel);
    stream
        .get_or_create_consumer(
            &name,
            consumer::pull::Config {
                durable_name: Some(name.clone()),
                filter_subject: due_subject(channel),
                ack_policy: consumer::AckPolicy::Explicit,
                ack_wait: MARKER_ACK_WAIT,
                max_ack_pending: MAX_OPEN_WINDOWS,
                // Holds are deliveries too: no server-side limit (attempts are counted in
                // the marker, see the module's documentation).
                max_deliver: -1,
                ..Default::default()
            },
        )
        .await
        .with_context(|| format!("cannot create or read the digest consumer {name}"))
}

/// Reads markers until `shutdown`: holds those whose window is open, sends the others.
pub async fn run<M: Messenger>(
    parts: DigestParts<M>,
    consumer: consumer::PullConsumer,
    shutdown: CancellationToken,
) {
    let parts = Arc::new(parts);
    let sends = Arc::new(Semaphore::new(parts.concurrency.max(1)));
    let tasks = tokio_util::task::TaskTracker::new();
    while !shutdown.is_cancelled() {
        let messages = consumer
            .stream()
            .max_messages_per_batch(1_000)
            .heartbeat(Duration::from_secs(5))
            .expires(Duration::from_secs(30))
            .messages()
            .await;
        let mut messages = match messages {
            Ok(messages) => messages,
            Err(error) => {
                tracing::warn!(channel = %parts.channel, %error, "cannot read digest markers; trying again");
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    () = tokio::time::sleep(Duration::from_secs(1)) => continue,
                }
            }
        };
        loop {
            let next = tokio::select! {
                () = shutdown.cancelled() => break,
                next = messages.next() => next,
            };
            let message = match next {
                Some(Ok(message)) => message,
                Some(Err(error)) => {
                    tracing::debug!(channel = %parts.channel, %error, "digest marker stream interrupted");
                    break;
                }
                None => break,
            };
            let Some(marker) = read_marker(&parts, &message).await else {
                continue;
            };
            let now = now_ms();
            let ready_at = due_ms(marker.window, parts.window).max(marker.not_before_ms);
            if now < ready_at {
                // Held: back when the window is over. Not an attempt.
                let _ = message
                    .ack_with(AckKind::Nak(Some(Duration::from_millis(ready_at - now))))
                    .await;
                continue;
            }
            // Every send slot busy: back in a moment rather than waiting here, where the
            // marker would age against AckWait unacknowledged and come back to another
            // replica while this one still meant to send it.
            let Ok(permit) = Arc::clone(&sends).try_acquire_owned() else {
                let pause = BUSY_PAUSE + BUSY_PAUSE.mul_f64(fastrand::f64());
                let _ = message.ack_with(AckKind::Nak(Some(pause))).await;
                continue;
            };
            let parts = Arc::clone(&parts);
            tasks.spawn(async move {
                settle(&parts, message, marker).await;
                drop(permit);
            });
        }
    }
    tasks.close();
    tasks.wait().await;
}

/// The marker in `message`, or `None` when it is unreadable (then dead-lettered: nothing
/// this worker wrote looks like that).
async fn read_marker<M: Messenger>(parts: &DigestParts<M>, message: &jetstream::Message) -> Option<Marker> {
    match serde_json::from_slice::<Marker>(&message.payload) {
        Ok(marker) => Some(marker),
        Err(error) => {
            let delivery = detached(message);
            match parts
                .dead_letters
                .send(
                    &delivery,
                    Reason::ChannelRejected,
                    &format!("unreadable digest marker: {error}"),
                )
                .await
            {
                Ok(()) => {
                    let _ = message.ack().await;
                }
                Err(problem) => {
                    tracing::warn!(channel = %parts.channel, problem, "cannot dead-letter an unreadable digest marker");
                    let _ = message
                        .ack_with(AckKind::Nak(Some(Duration::from_secs(30))))
                        .await;
                }
            }
            None
        }
    }
}

fn detached(message: &jetstream::Message) -> Delivery {
    let sequence = message.info().map(|info| info.stream_sequence).unwrap_or(0);
    Delivery::detached(
        &message.subject,
        message.payload.clone(),
        sequence,
        Version::received_now(),
    )
}

/// Sends one due window's digest and settles its marker.
async fn settle<M: Messenger>(parts: &DigestParts<M>, message: jetstream::Message, marker: Marker) {
    let channel = parts.channel.as_str();
    let result = {
        let send = send_digest(parts, &marker);
        tokio::pin!(send);
        let mut progress = tokio::time::interval(PROGRESS_EVERY);
        progress.tick().await;
        loop {
            tokio::select! {
                result = &mut send => break result,
                _ = progress.tick() => { let _ = message.ack_with(AckKind::Progress).await; }
            }
        }
    };
    let error = match result {
        Ok(sent) => {
            purge_window(parts, &marker).await;
            let _ = message.double_ack().await;
            parts
                .people
                .metrics
                .digest_settled(channel, if sent { "sent" } else { "empty" });
            tracing::debug!(
                channel,
                owner = marker.owner,
                window = marker.window,
                sent,
                "digest window settled"
            );
            return;
        }
        Err(error) => error,
    };
    let give_up = match error.kind {
        Failure::Transient { .. } => marker.attempt >= parts.max_attempts,
        Failure::Permanent | Failure::Gone => true,
    };
    if give_up {
        let reason = match error.kind {
            Failure::Transient { .. } => Reason::MaxDeliveries,
            _ => Reason::ChannelRejected,
        };
        let detail = format!("digest attempt {} failed: {}", marker.attempt, error.message);
        match parts
            .dead_letters
            .send(&detached(&message), reason, &detail)
            .await
        {
            Ok(()) => {
                let _ = message.ack().await;
                parts.people.metrics.digest_settled(channel, "dead_lettered");
                tracing::error!(channel, owner = marker.owner, window = marker.window, error = %error, "digest dead-lettered");
            }
            Err(problem) => {
                tracing::warn!(
                    channel,
                    problem,
                    "cannot dead-letter a digest; it comes back later"
                );
                let _ = message
                    .ack_with(AckKind::Nak(Some(Duration::from_secs(30))))
                    .await;
            }
        }
        return;
    }
    // The next attempt is a new marker (so that holds never count as attempts), published
    // before this one is acked: a crash in between leaves two markers of one window, the
    // "two digests only after a crash" of the module's documentation.
    let pause = retry_pause(error.kind, marker.attempt);
    let next = Marker {
        attempt: marker.attempt + 1,
        not_before_ms: now_ms() + pause.as_millis() as u64,
        ..marker.clone()
    };
    let id = format!(
        "{}:{}:{}:attempt-{}",
        parts.channel, marker.owner, marker.window, next.attempt
    );
    let body = serde_json::to_vec(&next).expect("a marker serializes");
    match publish_once(&parts.people.js, due_subject(parts.channel), id, body).await {
        Ok(()) => {
            let _ = message.ack().await;
            parts.people.metrics.digest_settled(channel, "retried");
            tracing::warn!(channel, owner = marker.owner, attempt = marker.attempt, error = %error, retry_in_ms = pause.as_millis() as u64, "digest failed; retrying");
        }
        Err(problem) => {
            tracing::warn!(channel, error = %problem, "cannot schedule the digest's next attempt; it comes back later");
            let _ = message.ack_with(AckKind::Nak(Some(pause))).await;
        }
    }
}

/// Sends the window's digest; `Ok(false)` when nothing was left to send.
async fn send_digest<M: Messenger>(parts: &DigestParts<M>, marker: &Marker) -> Result<bool, SendError> {
    let owner = Id::parse("owner", &marker.owner)
        .map_err(|_| SendError::permanent(format!("{:?} is not a valid owner", marker.owner)))?;
    let transient = |what: &str, error: String| SendError::transient(format!("{what}: {error}"));
    let Some(recipient) = parts
        .people
        .directory
        .get(&owner)
        .await
        .map_err(|error| transient("cannot read the recipient directory", error.message))?
    else {
        return Ok(false);
    };
    let channel = parts.messenger.channel();
    if addresses(&recipient, channel).is_empty() {
        return Ok(false);
    }
    let entries = read_window(parts, marker)
        .await
        .map_err(|error| transient("cannot read the digest's entries", format!("{error:#}")))?;
    let mut unread = Vec::with_capacity(entries.len());
    for entry in entries {
        let stored = parts
            .people
            .feeds
            .find(&owner, &entry.item.action_key)
            .await
            .map_err(|error| transient("cannot read the feed", error.message))?;
        // Still the same life of the notification, still unread, and not turned off since.
        if let Some(item) = stored.filter(|item| item.id == entry.item.id && !item.read_status) {
            let notice = Notice {
                item,
                version: entry.version,
                published: None,
                created_job: None,
            };
            if parts.people.mode(&recipient, channel, &notice) != Mode::Off {
                unread.push(notice);
            }
        }
    }
    if unread.is_empty() {
        return Ok(false);
    }
    send_to_all(
        &*parts.messenger,
        &parts.people,
        &recipient,
        Content::Digest(&unread),
    )
    .await?;
    Ok(true)
}

/// The window's entries, oldest first, each notification once.
async fn read_window<M: Messenger>(parts: &DigestParts<M>, marker: &Marker) -> anyhow::Result<Vec<Notice>> {
    let subject = entry_subject(parts.channel, marker.window, &marker.owner);
    let reader: consumer::PullConsumer = parts
        .stream
        .create_consumer(consumer::pull::Config {
            filter_subject: subject,
            deliver_policy: consumer::DeliverPolicy::All,
            ack_policy: consumer::AckPolicy::None,
            inactive_threshold: Duration::from_secs(60),
            ..Default::default()
        })
        .await?;
    let pending = reader.cached_info().num_pending as usize;
    let mut notices: Vec<Notice> = Vec::new();
    if pending > 0 {
        let mut batch = reader
            .fetch()
            .max_messages(pending.min(MAX_ENTRIES))
            .expires(Duration::from_secs(5))
            .messages()
            .await?;
        while let Some(message) = batch.next().await {
            let message = message.map_err(|error| anyhow::anyhow!("{error}"))?;
            match serde_json::from_slice::<Notice>(&message.payload) {
                Ok(notice) if !notices.iter().any(|kept| kept.item.id == notice.item.id) => {
                    notices.push(notice)
                }
                Ok(_) => {}
                Err(error) => tracing::warn!(%error, "skipping an unreadable digest entry"),
            }
            if notices.len() >= pending.min(MAX_ENTRIES) {
                break;
            }
        }
    }
    let name = reader.cached_info().name.clone();
    let _ = parts.stream.delete_consumer(&name).await;
    Ok(notices)
}

/// Drops the window's entries once its digest is settled.
async fn purge_window<M: Messenger>(parts: &DigestParts<M>, marker: &Marker) {
    let subject = entry_subject(parts.channel, marker.window, &marker.owner);
    if let Err(error) = parts.stream.purge().filter(subject).await {
        // Harmless: the stream's max age drops them later.
        tracing::debug!(%error, "cannot purge a settled digest window");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_are_fixed_stretches_of_the_clock() {
        let window = Duration::from_secs(900);
        assert_eq!(window_at(0, window), 0);
        assert_eq!(window_at(899_999, window), 0);
        assert_eq!(window_at(900_000, window), 1);
        assert_eq!(due_ms(0, window), 900_000 + GRACE.as_millis() as u64);
    }

    #[test]
    fn markers_read_without_attempt_start_at_the_first() {
        let marker: Marker = serde_json::from_str(r#"{"owner":"user-1","window":3}"#).unwrap();
        assert_eq!((marker.attempt, marker.not_before_ms), (1, 0));
        let again: Marker = serde_json::from_slice(&serde_json::to_vec(&marker).unwrap()).unwrap();
        assert_eq!(again, marker);
    }

    #[test]
    fn entry_subjects_keep_the_owner_in_one_token() {
        assert_eq!(
            entry_subject(ChannelName::Pusher, 7, "alice.x"),
            "digests.entry.pusher.7.alice=2Ex"
        );
    }
}
