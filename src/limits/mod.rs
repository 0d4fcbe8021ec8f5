//! Rate limits (issue 11): how many notifications one trigger user may create in any
//! interval of a period (`RATE_LIMIT_TRIGGER_USER`), and how many instant deliveries one
//! owner gets on a channel (`RATE_LIMIT_OWNER`; the rest fold into their digest).
//!
//! The state lives in JetStream key-value (bucket [`kv::BUCKET`]), written only under the
//! revision it was read at, so every replica counts against the same numbers whatever the
//! store, and redeliveries are recognised by their version. See docs/rate-limits.md.
//!
//! The store stage asks [`Limits::admit`] once per change before storing it: removes always
//! pass, creates pass while their trigger user is under the limit. A state that cannot be
//! reached is a [`StoreError`], retried and paused on like a store outage. The personal
//! channels ask [`owner::OwnerLimit`] before an instant delivery.

pub mod kv;
pub mod owner;
pub mod trigger_user;
pub mod window;

use crate::domain::Change;
use crate::input::Delivery;
use crate::recipients::{Channel, PreferenceChannel};
use crate::store::StoreError;
use crate::telemetry::metrics::Metrics;
use std::sync::Arc;
use std::time::Duration;

/// The largest N of `N/DURATION`. The state of one key holds every event it admitted in
/// the last two periods, 24 bytes each, and is read and written whole: at this
/// N it is under 0.5 MB, within NATS' default 1 MB message limit.
pub const MAX_COUNT: u32 = 10_000;
/// Shortest and longest period: below a second, publish times are too coarse a clock;
/// beyond a week, the state would outlive anything worth limiting.
pub const MIN_PERIOD: Duration = Duration::from_secs(1);
pub const MAX_PERIOD: Duration = Duration::from_secs(7 * 24 * 60 * 60);

/// N events per period.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    count: u32,
    period: Duration,
}

impl Rate {
    /// `None` outside 1..=[`MAX_COUNT`] creates or [`MIN_PERIOD`]..=[`MAX_PERIOD`].
    pub fn new(count: u32, period: Duration) -> Option<Rate> {
        ((1..=MAX_COUNT).contains(&count) && (MIN_PERIOD..=MAX_PERIOD).contains(&period))
            .then_some(Rate { count, period })
    }

    pub fn count(self) -> usize {
        self.count as usize
    }

    pub fn period(self) -> Duration {
        self.period
    }

    pub fn period_ms(self) -> u64 {
        u64::try_from(self.period.as_millis()).unwrap_or(u64::MAX)
    }
}

impl std::fmt::Display for Rate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}s", self.count, self.period.as_secs())
    }
}

/// The limits turned on (`RATE_LIMIT_*`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LimitSettings {
    /// `RATE_LIMIT_TRIGGER_USER`; `None` when `off`.
    pub trigger_user: Option<Rate>,
    /// `RATE_LIMIT_OWNER`.
    pub owner: OwnerRates,
}

impl LimitSettings {
    /// The rate with the longest period of those on, which the bucket's key lifetime is made
    /// for; `None` when every limit is off (and no bucket is needed).
    pub fn longest(&self) -> Option<Rate> {
        self.trigger_user
            .into_iter()
            .chain(self.owner.rates().map(|(_, rate)| rate))
            .max_by_key(|rate| rate.period())
    }
}

/// `RATE_LIMIT_OWNER`: instant deliveries per owner, by channel as preferences name it
/// (`email`, the group `push`, or one of `webpush`, `fcm`, `apns`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OwnerRates([Option<Rate>; 5]);

impl OwnerRates {
    const CHANNELS: [PreferenceChannel; 5] = [
        PreferenceChannel::Email,
        PreferenceChannel::Push,
        PreferenceChannel::Webpush,
        PreferenceChannel::Fcm,
        PreferenceChannel::Apns,
    ];

    fn slot(channel: PreferenceChannel) -> usize {
        match channel {
            PreferenceChannel::Email => 0,
            PreferenceChannel::Push => 1,
            PreferenceChannel::Webpush => 2,
            PreferenceChannel::Fcm => 3,
            PreferenceChannel::Apns => 4,
        }
    }

    /// Sets `channel`'s rate; false when it had one already.
    pub fn set(&mut self, channel: PreferenceChannel, rate: Rate) -> bool {
        self.0[Self::slot(channel)].replace(rate).is_none()
    }

    pub fn get(&self, channel: PreferenceChannel) -> Option<Rate> {
        self.0[Self::slot(channel)]
    }

    /// The limit a delivery on `channel` counts against, and under which name: the channel's
    /// own, else its group's (`push`). The single channel wins over the group, as in
    /// preferences.
    pub fn for_channel(&self, channel: Channel) -> Option<(PreferenceChannel, Rate)> {
        let own = PreferenceChannel::from(channel);
        self.get(own).map(|rate| (own, rate)).or_else(|| {
            let group = channel.group()?;
            self.get(group).map(|rate| (group, rate))
        })
    }

    pub fn rates(&self) -> impl Iterator<Item = (PreferenceChannel, Rate)> + '_ {
        Self::CHANNELS
            .into_iter()
            .filter_map(|channel| self.get(channel).map(|rate| (channel, rate)))
    }

    pub fn is_on(&self) -> bool {
        self.rates().next().is_some()
    }
}

/// Whether a change may be stored, or an instant delivery sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    Admitted,
    /// Over a limit: a create is acknowledged and not stored, an instant delivery joins the
    /// digest. Names the limit (the metric's label).
    Throttled(&'static str),
}

/// The limits the store stage applies; off (everything admitted) by default.
#[derive(Clone, Default)]
pub struct Limits {
    trigger_user: Option<Arc<trigger_user::TriggerUserLimit>>,
}

impl Limits {
    pub fn new(trigger_user: Option<trigger_user::TriggerUserLimit>) -> Limits {
        Limits {
            trigger_user: trigger_user.map(Arc::new),
        }
    }

    /// Only creates (and aggregated likes) are limited: an unlike must always take effect.
    pub async fn admit(
        &self,
        change: &Change,
        delivery: &Delivery,
        metrics: &Metrics,
    ) -> Result<Admission, StoreError> {
        match (&self.trigger_user, change.trigger_user()) {
            (Some(limit), Some(trigger_user)) if change.creates() => {
                // Boxed: only events under a limit carry the key-value requests' futures.
                Box::pin(limit.admit(trigger_user, delivery, metrics)).await
            }
            _ => Ok(Admission::Admitted),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rate(count: u32, secs: u64) -> Rate {
        Rate::new(count, Duration::from_secs(secs)).unwrap()
    }

    #[test]
    fn a_channel_counts_against_its_own_limit_else_its_group() {
        let mut owner = OwnerRates::default();
        assert!(!owner.is_on());
        assert!(owner.set(PreferenceChannel::Push, rate(10, 3600)));
        assert!(owner.set(PreferenceChannel::Fcm, rate(5, 3600)));
        assert!(!owner.set(PreferenceChannel::Fcm, rate(6, 3600)), "set twice");
        assert_eq!(
            owner.for_channel(Channel::Fcm),
            Some((PreferenceChannel::Fcm, rate(6, 3600)))
        );
        assert_eq!(
            owner.for_channel(Channel::Webpush),
            Some((PreferenceChannel::Push, rate(10, 3600)))
        );
        assert_eq!(owner.for_channel(Channel::Email), None);
    }

    #[test]
    fn the_bucket_is_made_for_the_longest_period_of_any_limit() {
        let mut settings = LimitSettings::default();
        assert_eq!(settings.longest(), None);
        settings.trigger_user = Some(rate(100, 60));
        assert_eq!(settings.longest(), Some(rate(100, 60)));
        settings.owner.set(PreferenceChannel::Email, rate(5, 86_400));
        settings.owner.set(PreferenceChannel::Push, rate(10, 3600));
        assert_eq!(settings.longest(), Some(rate(5, 86_400)));
    }
}
