//! Connecting to NATS: several URLs, a creds file, endless reconnects, logged.

use crate::config::NatsSettings;
use anyhow::Context;
use std::time::Duration;

/// Connects, failing fast (with the URLs named) when no server answers at start. After
/// that the client reconnects forever, logging each disconnect and reconnect.
pub async fn connect(settings: &NatsSettings, client_name: &str) -> anyhow::Result<async_nats::Client> {
    let mut options = async_nats::ConnectOptions::new()
        .name(client_name)
        .max_reconnects(None)
        .connection_timeout(Duration::from_secs(5))
        .event_callback(|event| async move {
            match event {
                async_nats::Event::Disconnected => tracing::warn!("disconnected from NATS; reconnecting"),
                async_nats::Event::Connected => tracing::info!("connected to NATS"),
                async_nats::Event::SlowConsumer(_) => {
                    tracing::warn!("NATS reports this client as a slow consumer")
                }
                other => tracing::warn!(event = %other, "NATS client event"),
            }
        });
    if let Some(path) = &settings.creds_file {
        options = options
            .credentials_file(path)
            .await
            .with_context(|| format!("cannot read NATS_CREDS_FILE {}", path.display()))?;
    }
    let urls = settings.urls.join(",");
    let addresses: Vec<async_nats::ServerAddr> = settings
        .urls
        .iter()
        .map(|url| url.parse())
        .collect::<Result<_, _>>()
        .context("NATS_URL was checked at start")?;
    options
        .connect(addresses)
        .await
        .with_context(|| format!("cannot connect to NATS at {urls} (is nats-server running? set NATS_URL)"))
}
