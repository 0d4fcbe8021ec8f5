//! `RATE_LIMIT_TRIGGER_USER`: how many notifications one trigger user may create in any
//! interval of the period, decided by the store stage before it stores a create. Its key is
//! `trigger_user.<id>`; time is the publish time of the event's message.

use super::kv::{SaidOnce, Undecided, Windows, key_of, published_ms};
use super::window::Admitted;
use super::{Admission, Rate};
use crate::domain::Id;
use crate::input::Delivery;
use crate::store::{ErrorKind, StoreError};
use crate::telemetry::metrics::Metrics;

/// The metric label, log name and key prefix of this limit.
pub const LIMIT: &str = "trigger_user";

/// `RATE_LIMIT_TRIGGER_USER` against its bucket.
pub struct TriggerUserLimit {
    windows: Windows,
    rate: Rate,
    said: SaidOnce,
}

impl TriggerUserLimit {
    pub fn new(windows: Windows, rate: Rate) -> TriggerUserLimit {
        TriggerUserLimit {
            windows,
            rate,
            said: SaidOnce::default(),
        }
    }

    /// Admits or throttles a create of `user` delivered as `delivery`.
    pub async fn admit(
        &self,
        user: &Id,
        delivery: &Delivery,
        metrics: &Metrics,
    ) -> Result<Admission, StoreError> {
        let event = Admitted {
            published_ms: published_ms(delivery.published),
            version: delivery.version,
        };
        let key = key_of(LIMIT, user);
        let admitted =
            self.windows
                .admit(&key, event, self.rate)
                .await
                .map_err(|undecided| match undecided {
                    // Like a store outage: the event is held and tried again and intake pauses,
                    // since no create can be decided without the state.
                    Undecided::Unavailable(_) => StoreError::new(ErrorKind::Systemic, undecided.to_string()),
                    Undecided::Contended => {
                        StoreError::new(ErrorKind::Transient, format!("{undecided} (trigger user {user})"))
                    }
                })?;
        if admitted {
            return Ok(Admission::Admitted);
        }
        metrics.throttled(LIMIT);
        if self
            .said
            .first_in_window(&key, event.published_ms, self.rate.period_ms())
        {
            tracing::warn!(
                trigger_user = %user,
                limit = LIMIT,
                rate = %self.rate,
                version = %delivery.version,
                "trigger user over its limit: creates dropped"
            );
        }
        Ok(Admission::Throttled(LIMIT))
    }
}
