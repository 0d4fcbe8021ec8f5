//! The trigger-user limit's state in JetStream key-value: one key per trigger user holding
//! its [`Window`], read with its revision and written only under that revision, so that
//! replicas deciding for the same user at once never both take the last place.

use super::trigger_user::{Admitted, Decision, Window, largest_encoded};
use super::{Admission, Rate};
use crate::domain::{Id, Version};
use crate::input::Delivery;
use crate::store::{ErrorKind, StoreError};
use crate::telemetry::metrics::Metrics;
use anyhow::Context;
use async_nats::jetstream::{self, kv};
use std::collections::HashMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::time::Duration;

/// The bucket (its stream is `KV_NOTIFICATION_LIMITS`).
pub const BUCKET: &str = "NOTIFICATION_LIMITS";
/// The metric label and log name of this limit.
pub const LIMIT: &str = "trigger_user";
/// Beyond the two periods a key holds, how long an idle user's key is kept: time for
/// redeliveries and slow replicas to come back to it.
const MARGIN: Duration = Duration::from_secs(5 * 60);
/// Revision conflicts in a row (other replicas writing the same user's key) before the
/// check is handed to the retry machinery as a transient failure.
const MAX_CONFLICTS: u32 = 50;
/// Users whose "over its limit" line was written, remembered to say it once per window.
const SAID_AT_MOST: usize = 10_000;

/// How long the bucket keeps a key after its last write: idle users' keys expire, so the
/// bucket holds only recently active users.
pub fn key_lifetime(rate: Rate) -> Duration {
    rate.period() * 2 + MARGIN
}

/// The bucket's stream, laid out as every key-value client expects (`KV_<bucket>`, subjects
/// `$KV.<bucket>.>`, one value per key, direct gets). Made as a stream rather than through
/// the client's `create_key_value`, which first reads the account in a form the Debian
/// nats-server (2.9) does not answer with.
fn bucket_stream(rate: Rate) -> jetstream::stream::Config {
    jetstream::stream::Config {
        name: format!("KV_{BUCKET}"),
        description: Some("notification-worker rate limits (RATE_LIMIT_TRIGGER_USER)".to_owned()),
        subjects: vec![format!("$KV.{BUCKET}.>")],
        max_messages_per_subject: 1,
        max_age: key_lifetime(rate),
        // Room for the largest window of the highest limit, whatever this one is.
        max_message_size: i32::try_from(largest_encoded(super::MAX_COUNT as usize) + 1024)
            .unwrap_or(i32::MAX),
        storage: jetstream::stream::StorageType::File,
        allow_rollup: true,
        deny_delete: true,
        allow_direct: true,
        discard: jetstream::stream::DiscardPolicy::New,
        num_replicas: 1,
        ..Default::default()
    }
}

/// Creates the bucket when it is missing (`setup`, and `run` in development); an existing
/// one is used as it is, after [`check_lifetime`].
pub async fn ensure_bucket(js: &jetstream::Context, rate: Rate) -> anyhow::Result<kv::Store> {
    if let Some(store) = existing_bucket(js, rate).await? {
        return Ok(store);
    }
    // get_or_create: replicas starting together all succeed.
    js.get_or_create_stream(bucket_stream(rate))
        .await
        .with_context(|| format!("cannot create JetStream key-value bucket {BUCKET}"))?;
    js.get_key_value(BUCKET)
        .await
        .with_context(|| format!("cannot open JetStream key-value bucket {BUCKET}"))
}

/// The bucket if it exists (`None` only when the server says it does not).
pub async fn existing_bucket(js: &jetstream::Context, rate: Rate) -> anyhow::Result<Option<kv::Store>> {
    let stream = format!("KV_{BUCKET}");
    let Some(mut existing) = crate::input::existing_stream(js, &stream).await? else {
        return Ok(None);
    };
    let max_age = existing
        .info()
        .await
        .with_context(|| format!("cannot read JetStream stream {stream}"))?
        .config
        .max_age;
    check_lifetime(max_age, rate)?;
    let store = js
        .get_key_value(BUCKET)
        .await
        .with_context(|| format!("cannot open JetStream key-value bucket {BUCKET}"))?;
    Ok(Some(store))
}

/// A bucket whose keys expire within two periods would forget admitted creates the limit
/// still counts: refused rather than limiting loosely.
fn check_lifetime(max_age: Duration, rate: Rate) -> anyhow::Result<()> {
    if !max_age.is_zero() && max_age < rate.period() * 2 {
        anyhow::bail!(
            "JetStream key-value bucket {BUCKET} keeps keys {}s but RATE_LIMIT_TRIGGER_USER={rate} needs at \
             least {}s: delete the bucket (`nats kv del {BUCKET}`) and run `notification-worker setup` again",
            max_age.as_secs(),
            key_lifetime(rate).as_secs()
        );
    }
    Ok(())
}

/// The key of a trigger user: its id with every byte but ASCII letters, digits, `-` and `_`
/// written `=XX`, so that any id is one valid key token and two ids never share a key.
pub fn key_of(user: &Id) -> String {
    let mut key = String::from("trigger_user.");
    for byte in user.as_str().bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'_' | b'-') {
            key.push(char::from(byte));
        } else {
            let _ = write!(key, "={byte:02X}");
        }
    }
    key
}

/// `RATE_LIMIT_TRIGGER_USER` against its bucket.
pub struct TriggerUserLimit {
    store: kv::Store,
    rate: Rate,
    said: SaidOnce,
}

impl TriggerUserLimit {
    pub fn new(store: kv::Store, rate: Rate) -> TriggerUserLimit {
        TriggerUserLimit {
            store,
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
            published_ms: published_ms(delivery),
            version: delivery.version,
        };
        let key = key_of(user);
        for _ in 0..MAX_CONFLICTS {
            let (window, revision, age) = self.read(&key).await?;
            match window.decide(event, self.rate) {
                Decision::AlreadyAdmitted => return Ok(Admission::Admitted),
                Decision::Admit(next) => {
                    if self.write(&key, &next, revision).await? {
                        return Ok(Admission::Admitted);
                    }
                }
                Decision::Throttle => {
                    // A throttled user writes nothing, so its key would expire while its
                    // backlog drains: written again (unchanged) once half its life is gone.
                    if revision > 0 && age > key_lifetime(self.rate) / 2 {
                        let _ = self.write(&key, &window, revision).await?;
                    }
                    metrics.throttled(LIMIT);
                    self.say_once(user, event.published_ms, delivery.version);
                    return Ok(Admission::Throttled(LIMIT));
                }
            }
        }
        Err(StoreError::new(
            ErrorKind::Transient,
            format!("{BUCKET}: the key of trigger user {user} kept changing under {MAX_CONFLICTS} writes"),
        ))
    }

    /// The user's window, the revision to write it under (0: absent) and its age.
    async fn read(&self, key: &str) -> Result<(Window, u64, Duration), StoreError> {
        let entry = self.store.entry(key).await.map_err(unavailable)?;
        let Some(entry) = entry else {
            return Ok((Window::default(), 0, Duration::ZERO));
        };
        let age = (time::OffsetDateTime::now_utc() - entry.created)
            .try_into()
            .unwrap_or(Duration::ZERO);
        let window = match entry.operation {
            kv::Operation::Put => Window::decode(&entry.value).unwrap_or_else(|| {
                // Only this worker writes the bucket; anything else there is replaced.
                tracing::warn!(key, bucket = BUCKET, "unreadable limit state replaced");
                Window::default()
            }),
            kv::Operation::Delete | kv::Operation::Purge => Window::default(),
        };
        Ok((window, entry.revision, age))
    }

    /// Writes `window` if the key is still at `revision`; false when another replica wrote
    /// first (read again and decide again).
    async fn write(&self, key: &str, window: &Window, revision: u64) -> Result<bool, StoreError> {
        let value = window.encode().into();
        if revision == 0 {
            match self.store.create(key, value).await {
                Ok(_) => Ok(true),
                Err(error) if error.kind() == kv::CreateErrorKind::AlreadyExists => Ok(false),
                Err(error) => Err(unavailable(error)),
            }
        } else {
            match self.store.update(key, value, revision).await {
                Ok(_) => Ok(true),
                Err(error) if error.kind() == kv::UpdateErrorKind::WrongLastRevision => Ok(false),
                Err(error) => Err(unavailable(error)),
            }
        }
    }

    /// "Over its limit" once per user and window, not once per event.
    fn say_once(&self, user: &Id, published_ms: u64, version: Version) {
        if !self
            .said
            .first_in_window(user, published_ms, self.rate.period_ms())
        {
            return;
        }
        tracing::warn!(
            trigger_user = %user,
            limit = LIMIT,
            rate = %self.rate,
            %version,
            "trigger user over its limit: creates dropped"
        );
    }
}

/// The users whose "over its limit" line was written, with the end (publish ms) of the
/// window it was written for. Bounded: only an optimisation of the logs, never of the limit.
#[derive(Default)]
struct SaidOnce(Mutex<HashMap<String, u64>>);

impl SaidOnce {
    /// True for the first throttled event of `user` in a window; remembers it.
    fn first_in_window(&self, user: &Id, published_ms: u64, period_ms: u64) -> bool {
        let mut said = self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if said.get(user.as_str()).is_some_and(|until| published_ms < *until) {
            return false;
        }
        if said.len() >= SAID_AT_MOST {
            // At worst a user is said to be over its limit once more.
            said.clear();
        }
        said.insert(user.as_str().to_owned(), published_ms.saturating_add(period_ms));
        true
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .len()
    }
}

/// When the event's message was published (ms since the epoch): the same for every replica
/// and every redelivery. A delivery without one (never from JetStream) counts as now.
fn published_ms(delivery: &Delivery) -> u64 {
    let at = delivery.published.unwrap_or_else(time::OffsetDateTime::now_utc);
    u64::try_from(at.unix_timestamp_nanos() / 1_000_000).unwrap_or(0)
}

/// Any failure to read or write the state: like a store outage, the event is held and
/// tried again and intake pauses, since no create can be decided without it.
fn unavailable(error: impl std::fmt::Display) -> StoreError {
    StoreError::new(
        ErrorKind::Systemic,
        format!(
            "rate-limit state (JetStream key-value bucket {BUCKET}) unavailable: {error} \
             (`notification-worker setup` creates the bucket)"
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_user_gets_its_own_valid_key() {
        let key = |id: &str| key_of(&Id::parse("trigger_user", id).unwrap());
        assert_eq!(key("user-123_a"), "trigger_user.user-123_a");
        assert_eq!(key("a.b"), "trigger_user.a=2Eb");
        assert_eq!(key("a=2Eb"), "trigger_user.a=3D2Eb");
        assert_eq!(key("é *>"), "trigger_user.=C3=A9=20=2A=3E");
        assert_ne!(key("a.b"), key("a=2Eb"));
    }

    #[test]
    fn over_the_limit_is_said_once_per_window_and_the_memory_of_it_is_bounded() {
        let said = SaidOnce::default();
        let user = Id::parse("trigger_user", "fan-1").unwrap();
        assert!(said.first_in_window(&user, 1_000, 60_000));
        assert!(!said.first_in_window(&user, 60_999, 60_000));
        assert!(said.first_in_window(&user, 61_000, 60_000), "the next window");
        for i in 0..3 * SAID_AT_MOST {
            let user = Id::parse("trigger_user", &format!("fan-{i}")).unwrap();
            said.first_in_window(&user, 1_000, 60_000);
            assert!(said.len() <= SAID_AT_MOST);
        }
    }

    #[test]
    fn a_bucket_keeping_keys_less_than_two_periods_is_refused() {
        let rate = Rate::new(100, Duration::from_secs(3600)).unwrap();
        assert!(check_lifetime(Duration::ZERO, rate).is_ok());
        assert!(check_lifetime(key_lifetime(rate), rate).is_ok());
        let error = check_lifetime(Duration::from_secs(3600), rate).unwrap_err();
        assert!(error.to_string().contains("setup"), "{error}");
    }
}
