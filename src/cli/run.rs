//! `notification-worker run`: connect, make sure everything exists, consume until a signal.

use crate::config::{Config, Environment, NatsMode};
use crate::input::{self, DeadLetters, Source};
use crate::processing::{self, StoreHealth, WorkerSettings};
use crate::store::{AnyStore, NotificationStore};
use anyhow::Context;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How long shutdown waits for in-flight events (Kubernetes gives 30 s by default).
const SHUTDOWN_GRACE: Duration = Duration::from_secs(20);

pub async fn run(config: Config) -> anyhow::Result<()> {
    let store = Arc::new(AnyStore::open(&config.store).await?);
    if config.environment == Environment::Development {
        store.setup().await.context("cannot prepare the store")?;
    }
    let client = input::connect(&config.nats, "notification-worker").await?;
    let (source, dead_letters, limits) = match config.nats.mode {
        NatsMode::JetStream => {
            let js = async_nats::jetstream::new(client.clone());
            let stream = input::ensure_stream(&js, &config.nats.stream).await?;
            let (consumer, limits) = input::ensure_consumer(&stream, &config.nats.consumer).await?;
            let dead_letters = DeadLetters::ensure(&js, &config.nats.stream).await?;
            (
                Source::JetStream(Box::new(consumer)),
                Some(dead_letters),
                Some(limits),
            )
        }
        NatsMode::Core => (Source::core(&client).await?, None, None),
    };
    let settings = WorkerSettings {
        in_flight: store.in_flight_limit(config.concurrency),
        ack_wait: limits.map_or(Duration::from_secs(30), |limits| limits.ack_wait),
        max_deliveries: limits.map(|limits| limits.max_deliveries),
        allow_http_pictures: config.environment == Environment::Development,
        shutdown_grace: SHUTDOWN_GRACE,
    };
    tracing::info!(
        store = %store.describe(),
        nats_mode = ?config.nats.mode,
        stream = %config.nats.stream,
        consumer = %config.nats.consumer,
        in_flight = settings.in_flight,
        "worker started"
    );
    if config.nats.mode == NatsMode::Core {
        tracing::warn!(
            "NATS_MODE=core: events published while no worker runs are lost (at-most-once), \
             and rejected events are only logged (no dead letters)"
        );
    }

    let shutdown = CancellationToken::new();
    tokio::spawn(cancel_on_signal(shutdown.clone()));
    let health = Arc::new(StoreHealth::default());
    processing::run(source, store, dead_letters, health, settings, shutdown).await;

    // Acks are fire-and-forget publishes: make sure they have left before exiting.
    if let Err(error) = client.flush().await {
        tracing::warn!(%error, "could not flush the last acknowledgements; those events will be redelivered");
    }
    tracing::info!("worker stopped");
    Ok(())
}

async fn cancel_on_signal(shutdown: CancellationToken) {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::warn!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = terminate => {}
    }
    tracing::info!("shutdown requested: finishing in-flight events");
    shutdown.cancel();
}
