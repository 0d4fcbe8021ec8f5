//! The rate limits' state in JetStream key-value: one key per limited subject (a trigger
//! user; an owner on one channel) holding its [`Window`], read with its revision and written
//! only under that revision, so that replicas deciding for the same key at once never both
//! take the last place.

use super::Rate;
use super::window::{Admitted, Decision, Window, largest_encoded};
use crate::domain::Id;
use anyhow::Context;
use async_nats::jetstream::{self, kv};
use std::collections::HashMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::time::Duration;

/// The bucket (its stream is `KV_NOTIFICATION_LIMITS`).
pub const BUCKET: &str = "NOTIFICATION_LIMITS";
/// Beyond the two periods a key holds, how long an idle key is kept: time for redeliveries
/// and slow replicas to come back to it.
const MARGIN: Duration = Duration::from_secs(5 * 60);
/// Revision conflicts in a row (other replicas writing the same key) before the check is
/// handed to the retry machinery as a transient failure.
const MAX_CONFLICTS: u32 = 50;
/// Keys whose "over its limit" line was written, remembered to say it once per window.
const SAID_AT_MOST: usize = 10_000;

/// How long the bucket keeps a key after its last write: idle keys expire, so the bucket
/// holds only recently active users.
pub fn key_lifetime(rate: Rate) -> Duration {
    rate.period() * 2 + MARGIN
}

/// The bucket's stream, laid out as every key-value client expects (`KV_<bucket>`, subjects
/// `$KV.<bucket>.>`, one value per key, direct gets). Made as a stream rather than through
/// the client's `create_key_value`, which first reads the account in a form the Debian
/// nats-server (2.9) does not answer with.
fn bucket_stream(longest: Rate) -> jetstream::stream::Config {
    jetstream::stream::Config {
        name: format!("KV_{BUCKET}"),
        description: Some(
            "notification-worker rate limits (RATE_LIMIT_TRIGGER_USER, RATE_LIMIT_OWNER)".to_owned(),
        ),
        subjects: vec![format!("$KV.{BUCKET}.>")],
        max_messages_per_subject: 1,
        max_age: key_lifetime(longest),
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

/// Creates the bucket when it is missing (`setup`, and `run` in development), its keys kept
/// for the `longest` period of the limits on; an existing one is used as it is, after
/// [`check_lifetime`].
pub async fn ensure_bucket(js: &jetstream::Context, longest: Rate) -> anyhow::Result<kv::Store> {
    if let Some(store) = existing_bucket(js, longest).await? {
        return Ok(store);
    }
    // get_or_create: replicas starting together all succeed.
    js.get_or_create_stream(bucket_stream(longest))
        .await
        .with_context(|| format!("cannot create JetStream key-value bucket {BUCKET}"))?;
    js.get_key_value(BUCKET)
        .await
        .with_context(|| format!("cannot open JetStream key-value bucket {BUCKET}"))
}

/// The bucket if it exists (`None` only when the server says it does not).
pub async fn existing_bucket(js: &jetstream::Context, longest: Rate) -> anyhow::Result<Option<kv::Store>> {
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
    check_lifetime(max_age, longest)?;
    let store = js
        .get_key_value(BUCKET)
        .await
        .with_context(|| format!("cannot open JetStream key-value bucket {BUCKET}"))?;
    Ok(Some(store))
}

/// A bucket whose keys expire within two of the longest period would forget admitted events
/// a limit still counts: refused rather than limiting loosely.
fn check_lifetime(max_age: Duration, longest: Rate) -> anyhow::Result<()> {
    if !max_age.is_zero() && max_age < longest.period() * 2 {
        anyhow::bail!(
            "JetStream key-value bucket {BUCKET} keeps keys {}s but a rate limit of {longest} needs at \
             least {}s: delete the bucket (`nats kv del {BUCKET}`) and run `notification-worker setup` again",
            max_age.as_secs(),
            key_lifetime(longest).as_secs()
        );
    }
    Ok(())
}

/// The key of `id` under `prefix` (`trigger_user`, `owner.email`, …): the id with every byte
/// but ASCII letters, digits, `-` and `_` written `=XX`, so that any id is one valid key
/// token and two ids never share a key.
pub fn key_of(prefix: &str, id: &Id) -> String {
    let mut key = String::with_capacity(prefix.len() + 1 + id.as_str().len());
    key.push_str(prefix);
    key.push('.');
    for byte in id.as_str().bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'_' | b'-') {
            key.push(char::from(byte));
        } else {
            let _ = write!(key, "={byte:02X}");
        }
    }
    key
}

/// Why a key's window could not be decided.
#[derive(Debug)]
pub enum Undecided {
    /// The bucket could not be read or written (NATS unreachable, bucket deleted, timeouts).
    Unavailable(String),
    /// Other replicas kept writing the key first, [`MAX_CONFLICTS`] times in a row.
    Contended,
}

impl std::fmt::Display for Undecided {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Undecided::Unavailable(error) => write!(
                f,
                "rate-limit state (JetStream key-value bucket {BUCKET}) unavailable: {error} \
                 (`notification-worker setup` creates the bucket)"
            ),
            Undecided::Contended => write!(f, "{BUCKET}: the key kept changing under {MAX_CONFLICTS} writes"),
        }
    }
}

/// The bucket as every limit uses it: decides one event against one key's window.
#[derive(Clone)]
pub struct Windows {
    store: kv::Store,
}

impl Windows {
    pub fn new(store: kv::Store) -> Windows {
        Windows { store }
    }

    /// True when `event` is admitted under `rate` at `key` (now, or before: a redelivery);
    /// false when it is over the limit.
    pub async fn admit(&self, key: &str, event: Admitted, rate: Rate) -> Result<bool, Undecided> {
        for _ in 0..MAX_CONFLICTS {
            let (window, revision, age) = self.read(key).await?;
            match window.decide(event, rate) {
                Decision::AlreadyAdmitted => return Ok(true),
                Decision::Admit(next) => {
                    if self.write(key, &next, revision).await? {
                        return Ok(true);
                    }
                }
                Decision::Throttle => {
                    // A throttled key is written nothing, so it would expire while its
                    // backlog drains: written again (unchanged) once half its life is gone.
                    if revision > 0 && age > key_lifetime(rate) / 2 {
                        let _ = self.write(key, &window, revision).await?;
                    }
                    return Ok(false);
                }
            }
        }
        Err(Undecided::Contended)
    }

    /// The key's window, the revision to write it under (0: absent) and its age.
    async fn read(&self, key: &str) -> Result<(Window, u64, Duration), Undecided> {
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
    async fn write(&self, key: &str, window: &Window, revision: u64) -> Result<bool, Undecided> {
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
}

fn unavailable(error: impl std::fmt::Display) -> Undecided {
    Undecided::Unavailable(error.to_string())
}

/// When a message was published (ms since the epoch): the same for every replica and every
/// redelivery. A message without one (never from JetStream) counts as now.
pub fn published_ms(published: Option<time::OffsetDateTime>) -> u64 {
    let at = published.unwrap_or_else(time::OffsetDateTime::now_utc);
    u64::try_from(at.unix_timestamp_nanos() / 1_000_000).unwrap_or(0)
}

/// The keys whose "over its limit" line was written, with the end (publish ms) of the
/// window it was written for. Bounded: only an optimisation of the logs, never of a limit.
#[derive(Default)]
pub struct SaidOnce(Mutex<HashMap<String, u64>>);

impl SaidOnce {
    /// True for the first throttled event of `key` in a window; remembers it.
    pub fn first_in_window(&self, key: &str, published_ms: u64, period_ms: u64) -> bool {
        let mut said = self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if said.get(key).is_some_and(|until| published_ms < *until) {
            return false;
        }
        if said.len() >= SAID_AT_MOST {
            // At worst a key is said to be over its limit once more.
            said.clear();
        }
        said.insert(key.to_owned(), published_ms.saturating_add(period_ms));
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_id_gets_its_own_valid_key() {
        let key = |id: &str| key_of("trigger_user", &Id::parse("trigger_user", id).unwrap());
        assert_eq!(key("user-123_a"), "trigger_user.user-123_a");
        assert_eq!(key("a.b"), "trigger_user.a=2Eb");
        assert_eq!(key("a=2Eb"), "trigger_user.a=3D2Eb");
        assert_eq!(key("é *>"), "trigger_user.=C3=A9=20=2A=3E");
        assert_ne!(key("a.b"), key("a=2Eb"));
        let owner = Id::parse("owner", "user.1").unwrap();
        assert_eq!(key_of("owner.email", &owner), "owner.email.user=2E1");
    }

    #[test]
    fn over_the_limit_is_said_once_per_window_and_the_memory_of_it_is_bounded() {
        let said = SaidOnce::default();
        assert!(said.first_in_window("trigger_user.fan-1", 1_000, 60_000));
        assert!(!said.first_in_window("trigger_user.fan-1", 60_999, 60_000));
        assert!(
            said.first_in_window("trigger_user.fan-1", 61_000, 60_000),
            "the next window"
        );
        for i in 0..3 * SAID_AT_MOST {
            said.first_in_window(&format!("trigger_user.fan-{i}"), 1_000, 60_000);
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
