//! `RATE_LIMIT_OWNER`: how many instant deliveries one owner gets on a channel in any
//! interval of the period. Past it, the personal channel adds the notification to the
//! owner's digest instead of sending it; digests are never counted, and the feed is not
//! touched (the notification was stored before any channel saw it).
//!
//! One key per owner and channel as the setting names it: `owner.<channel>.<id>`. With
//! `push=10/1h`, webpush, fcm and apns share the key `owner.push.<id>`: ten notifications an
//! hour reach the owner's devices, each on every device (the version is the identity, so the
//! second push channel to send a notification finds it admitted already).
//!
//! Time is the publish time of the delivery job's message in the outbox: the same for every
//! replica and every redelivery of the job, and when the notification was stored, so a
//! backlog drained after an outage is counted by when it was stored, not by how fast it is
//! sent.

use super::kv::{SaidOnce, Undecided, Windows, key_of, published_ms};
use super::window::Admitted;
use super::{Admission, OwnerRates};
use crate::delivery::channel::SendError;
use crate::delivery::job::Notice;
use crate::domain::{Id, Version};
use crate::recipients::{Channel, PreferenceChannel};
use crate::telemetry::metrics::Metrics;

/// The metric labels (and log names) of the owner limits, one per channel a setting names.
pub const LIMITS: [&str; 5] = [
    "owner_email",
    "owner_push",
    "owner_webpush",
    "owner_fcm",
    "owner_apns",
];

fn label(channel: PreferenceChannel) -> &'static str {
    match channel {
        PreferenceChannel::Email => LIMITS[0],
        PreferenceChannel::Push => LIMITS[1],
        PreferenceChannel::Webpush => LIMITS[2],
        PreferenceChannel::Fcm => LIMITS[3],
        PreferenceChannel::Apns => LIMITS[4],
    }
}

/// `RATE_LIMIT_OWNER` against its bucket.
pub struct OwnerLimit {
    windows: Windows,
    rates: OwnerRates,
    said: SaidOnce,
}

impl OwnerLimit {
    pub fn new(windows: Windows, rates: OwnerRates) -> OwnerLimit {
        OwnerLimit {
            windows,
            rates,
            said: SaidOnce::default(),
        }
    }

    /// Whether `notice` may be sent to `owner` on `channel` now. A state that cannot be
    /// reached is a transient failure: the job is retried (and the channel pauses if it
    /// lasts), never sent unchecked nor dropped.
    pub async fn admit(
        &self,
        owner: &Id,
        channel: Channel,
        notice: &Notice,
        metrics: &Metrics,
    ) -> Result<Admission, SendError> {
        let Some((limited, rate)) = self.rates.for_channel(channel) else {
            return Ok(Admission::Admitted);
        };
        let version = Version::parse(&notice.version).ok_or_else(|| {
            SendError::permanent(format!("{:?} is not a notification version", notice.version))
        })?;
        let event = Admitted {
            published_ms: published_ms(notice.published),
            version,
        };
        let key = key_of(&format!("owner.{limited}"), owner);
        let admitted = self
            .windows
            .admit(&key, event, rate)
            .await
            .map_err(|undecided: Undecided| SendError::transient(undecided.to_string()))?;
        if admitted {
            return Ok(Admission::Admitted);
        }
        let limit = label(limited);
        metrics.throttled(limit);
        if self
            .said
            .first_in_window(&key, event.published_ms, rate.period_ms())
        {
            tracing::warn!(
                %owner,
                %channel,
                limit,
                %rate,
                %version,
                "owner over its limit on a channel: instant deliveries join the digest"
            );
        }
        Ok(Admission::Throttled(limit))
    }
}
