//! Connecting to NATS: several URLs, a creds file, endless reconnects, logged.

use super::connection_log::ConnectionLog;
use crate::config::{NatsAuth, NatsSettings};
use anyhow::Context;
use std::sync::Arc;
use std::time::Duration;

/// Chooses rustls's crypto provider for the process. Two are compiled in (ring for NATS,
/// aws-lc-rs for the AWS SDK), and rustls then refuses to guess: TLS would panic. Safe to
/// call more than once.
pub fn install_tls_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Connects, failing fast (with the URLs named) when no server answers at start. After
/// that the client reconnects forever, logging outages as [`ConnectionLog`] decides.
pub async fn connect(settings: &NatsSettings, client_name: &str) -> anyhow::Result<async_nats::Client> {
    install_tls_provider();
    let log = Arc::new(ConnectionLog::default());
    let mut options = async_nats::ConnectOptions::new()
        .name(client_name)
        .max_reconnects(None)
        .connection_timeout(Duration::from_secs(5))
        .event_callback(move |event| {
            let log = Arc::clone(&log);
            async move { log.log(event) }
        });
    options = match &settings.auth {
        NatsAuth::None => options,
        NatsAuth::CredsFile(path) => options
            .credentials_file(path)
            .await
            .with_context(|| format!("cannot read NATS_CREDS_FILE {}", path.display()))?,
        NatsAuth::NkeyFile(path) => {
            let seed = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read NATS_NKEY_FILE {}", path.display()))?;
            options.nkey(seed.trim().to_owned())
        }
        NatsAuth::UserPassword { user, password } => {
            options.user_and_password(user.clone(), password.expose().to_owned())
        }
        NatsAuth::Token(token) => options.token(token.expose().to_owned()),
    };
    if let Some(ca_file) = &settings.tls.ca_file {
        options = options.add_root_certificates(ca_file.clone());
    }
    if let Some((cert, key)) = &settings.tls.client {
        options = options.add_client_certificate(cert.clone(), key.clone());
    }
    if settings.tls.enabled() {
        options = options.require_tls(true);
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
