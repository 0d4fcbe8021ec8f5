//! `notification-worker setup`: create what is missing, change nothing that exists but an
//! AckWait longer than the worker needs to be back within seconds after a crash.

use crate::config::{Config, NatsMode};
use crate::delivery;
use crate::input;
use crate::store::{AnyRecipientStore, AnyStore, NotificationStore, RecipientStore};

pub async fn setup(config: &Config) -> anyhow::Result<()> {
    if config.nats.mode == NatsMode::JetStream {
        let client = input::connect(&config.nats, "notification-worker-setup").await?;
        let js = async_nats::jetstream::new(client);
        let stream = input::ensure_stream(&js, &config.nats.stream).await?;
        println!("stream {} ready", config.nats.stream);
        input::ensure_consumer(&stream, &config.nats.consumer).await?;
        shorten_ack_wait(&stream, &config.nats.consumer).await?;
        println!("consumer {} ready", config.nats.consumer);
        input::DeadLetters::ensure(&js, &config.nats.stream, &config.dead_letters).await?;
        println!("dead-letter stream {} ready", input::DLQ_STREAM);
        // The recipient directory's events (issue 10), with their own dead letters.
        let recipients = input::ensure_recipients_stream(&js).await?;
        println!("stream {} ready", input::RECIPIENTS_STREAM);
        input::ensure_consumer_on(
            &recipients,
            input::RECIPIENTS_CONSUMER,
            crate::recipients::RECIPIENTS_SUBJECT_FILTER,
            input::ACK_WAIT,
        )
        .await?;
        shorten_ack_wait(&recipients, input::RECIPIENTS_CONSUMER).await?;
        println!("consumer {} ready", input::RECIPIENTS_CONSUMER);
        input::DeadLetters::for_recipients(&js, &config.dead_letters).await?;
        println!("dead-letter stream {} ready", input::RECIPIENTS_DLQ_STREAM);
        // The rate limits' state (issue 11), only when a limit is on.
        if let Some(longest) = config.limits.longest() {
            crate::limits::kv::ensure_bucket(&js, longest).await?;
            println!("key-value bucket {} ready", crate::limits::kv::BUCKET);
        }
        // The delivery stage's streams and consumers, only for the channels configured: with
        // none, nothing of it exists.
        let channels = config.delivery.enabled();
        if !channels.is_empty() {
            let outbox = delivery::outbox::ensure_stream(&js).await?;
            println!("outbox stream {} ready", delivery::OUTBOX_STREAM);
            if config.delivery.has_personal() {
                let digests =
                    delivery::digest::ensure_stream(&js, config.delivery.longest_digest_window()).await?;
                println!("digest stream {} ready", delivery::digest::DIGEST_STREAM);
                for channel in channels.iter().filter(|channel| channel.personal().is_some()) {
                    delivery::digest::ensure_consumer(&digests, *channel).await?;
                    println!("consumer {} ready", delivery::digest::consumer_name(*channel));
                }
            }
            for channel in channels {
                let name = delivery::consumer_name(channel);
                input::ensure_consumer_on(
                    &outbox,
                    &name,
                    delivery::outbox::OUTBOX_FILTER,
                    input::DELIVERY_ACK_WAIT,
                )
                .await?;
                input::DeadLetters::for_channel(
                    &js,
                    delivery::OUTBOX_STREAM,
                    channel.as_str(),
                    &config.dead_letters,
                )
                .await?;
                println!(
                    "consumer {name} ready (dead letters: {})",
                    input::DELIVERIES_DLQ_STREAM
                );
            }
        }
    }
    let store = AnyStore::open(&config.store).await?;
    store.setup().await?;
    println!("store ready: {}", store.describe());
    let recipients = AnyRecipientStore::open(&config.store).await?;
    recipients.setup().await?;
    println!("recipient directory ready: {}", recipients.describe());
    Ok(())
}

/// A consumer made before the AckWait was shortened: the events a crashed replica held
/// would wait its old AckWait for the others.
async fn shorten_ack_wait(stream: &async_nats::jetstream::stream::Stream, name: &str) -> anyhow::Result<()> {
    if let Some(before) = input::shorten_ack_wait(stream, name).await? {
        println!(
            "consumer {name}: AckWait changed from {}s to {}s (what a crashed replica held comes back sooner)",
            before.as_secs_f64(),
            input::ACK_WAIT.as_secs_f64()
        );
    }
    Ok(())
}
