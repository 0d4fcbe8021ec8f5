//! Rate limits on the write path (issue 11): how many notifications one trigger user may
//! create in any interval of a period (`RATE_LIMIT_TRIGGER_USER`).
//!
//! The state lives in JetStream key-value (bucket [`kv::BUCKET`]), written only under the
//! revision it was read at, so every replica counts against the same numbers whatever the
//! store, and redeliveries are recognised by their version. See docs/rate-limits.md.
//!
//! The store stage asks [`Limits::admit`] once per change before storing it: removes always
//! pass, creates pass while their trigger user is under the limit. A state that cannot be
//! reached is a [`StoreError`], retried and paused on like a store outage.

pub mod kv;
pub mod trigger_user;

use crate::domain::Change;
use crate::input::Delivery;
use crate::store::StoreError;
use crate::telemetry::metrics::Metrics;
use std::sync::Arc;
use std::time::Duration;

/// The largest N of `N/DURATION`. The state of one trigger user holds every create it
/// admitted in the last two periods, 24 bytes each, and is read and written whole: at this
/// N it is under 0.5 MB, within NATS' default 1 MB message limit.
pub const MAX_COUNT: u32 = 10_000;
/// Shortest and longest period: below a second, publish times are too coarse a clock;
/// beyond a week, the state would outlive anything worth limiting.
pub const MIN_PERIOD: Duration = Duration::from_secs(1);
pub const MAX_PERIOD: Duration = Duration::from_secs(7 * 24 * 60 * 60);

/// N creates per period.
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
}

/// Whether a change may be stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    Admitted,
    /// Over a limit: acknowledged, not stored. Names the limit (the metric's label).
    Throttled(&'static str),
}

/// The limits the store stage applies; off (everything admitted) by default.
#[derive(Clone, Default)]
pub struct Limits {
    trigger_user: Option<Arc<kv::TriggerUserLimit>>,
}

impl Limits {
    pub fn new(trigger_user: Option<kv::TriggerUserLimit>) -> Limits {
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
                limit.admit(trigger_user, delivery, metrics).await
            }
            _ => Ok(Admission::Admitted),
        }
    }
}
