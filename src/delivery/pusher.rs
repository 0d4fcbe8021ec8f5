//! Channel `pusher`: Pusher Channels' HTTP API (or a self-hosted Pusher-protocol server).
//! PLACEHOLDER: being written.

use super::channel::{Channel, ChannelName, SendError};
use super::job::Job;
use super::template::OwnerTemplate;
use crate::config::Secret;
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct PusherSettings {
    pub app_id: String,
    pub key: String,
    pub secret: Secret,
    /// `https://api-{cluster}.pusher.com` from `PUSHER_CLUSTER`, or `PUSHER_HOST`.
    pub base_url: url::Url,
    /// `PUSHER_CHANNEL`, default `user-{owner}-notifications`.
    pub channel: OwnerTemplate,
    pub timeout: Duration,
}

pub struct PusherChannel {
    settings: PusherSettings,
}

impl PusherChannel {
    pub fn new(settings: PusherSettings) -> anyhow::Result<PusherChannel> {
        Ok(PusherChannel { settings })
    }
}

impl Channel for PusherChannel {
    fn name(&self) -> ChannelName {
        ChannelName::Pusher
    }

    fn max_batch(&self) -> usize {
        10
    }

    async fn send(&self, jobs: &[Job]) -> Vec<Result<(), SendError>> {
        let _ = &self.settings;
        jobs.iter()
            .map(|_| Err(SendError::permanent("pusher channel not built yet")))
            .collect()
    }
}
