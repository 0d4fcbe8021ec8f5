//! Channel `webhook`: a POST signed as the Standard Webhooks specification says.
//! PLACEHOLDER: being written.

use super::channel::{Channel, ChannelName, SendError};
use super::job::Job;
use crate::config::Secret;
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct WebhookSettings {
    pub url: url::Url,
    /// `WEBHOOK_SECRET` as given (`whsec_` + base64).
    pub secret: Secret,
    /// `WEBHOOK_TIMEOUT`, default 5 s.
    pub timeout: Duration,
}

/// The signing key from a `whsec_` secret: the bytes its base64 decodes to (24 to 64).
pub fn signing_key(secret: &str) -> Option<Vec<u8>> {
    use base64::Engine;
    let encoded = secret.strip_prefix("whsec_")?;
    let key = base64::engine::general_purpose::STANDARD.decode(encoded).ok()?;
    (24..=64).contains(&key.len()).then_some(key)
}

pub struct WebhookChannel {
    settings: WebhookSettings,
}

impl WebhookChannel {
    pub fn new(settings: WebhookSettings) -> anyhow::Result<WebhookChannel> {
        Ok(WebhookChannel { settings })
    }
}

impl Channel for WebhookChannel {
    fn name(&self) -> ChannelName {
        ChannelName::Webhook
    }

    async fn send(&self, jobs: &[Job]) -> Vec<Result<(), SendError>> {
        let _ = &self.settings;
        jobs.iter()
            .map(|_| Err(SendError::permanent("webhook channel not built yet")))
            .collect()
    }
}
