//! `notification-worker setup`: create what is missing, change nothing that exists.

use crate::config::{Config, NatsMode};
use crate::input;
use crate::store::{AnyStore, NotificationStore};

pub async fn setup(config: &Config) -> anyhow::Result<()> {
    if config.nats.mode == NatsMode::JetStream {
        let client = input::connect(&config.nats, "notification-worker-setup").await?;
        let js = async_nats::jetstream::new(client);
        let stream = input::ensure_stream(&js, &config.nats.stream).await?;
        println!("stream {} ready", config.nats.stream);
        input::ensure_consumer(&stream, &config.nats.consumer).await?;
        println!("consumer {} ready", config.nats.consumer);
        input::DeadLetters::ensure(&js, &config.nats.stream, &config.dead_letters).await?;
        println!("dead-letter stream {} ready", input::DLQ_STREAM);
    }
    let store = AnyStore::open(&config.store).await?;
    store.setup().await?;
    println!("store ready: {}", store.describe());
    Ok(())
}
