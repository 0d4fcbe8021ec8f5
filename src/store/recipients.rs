//! Where the recipient directory is kept: one contract, [`RecipientStore`], and its two
//! implementations, beside the notifications but never in their table (the API reads that
//! table by owner, and a recipient is no notification).
//!
//! One owner, one record. Replicas may apply events of the same owner at the same moment,
//! so a write is never blind: [`RecipientStore::apply`] reads the record with its
//! revision, merges the event with the pure [`Recipient::apply`], and writes only if the
//! revision is still the one it read (optimistic concurrency). A write that lost the race
//! reads and merges again. The merge is order-independent, so whatever the interleaving,
//! the record ends as if the events had been applied one after another.
//!
//! Every implementation must pass the shared suite in `tests/recipient_contract.rs`.

use super::{DynamoDbRecipientStore, ErrorKind, SqliteRecipientStore, StoreError, StoreSettings};
use crate::domain::{Id, Version};
use crate::recipients::{Applied, Recipient, RecipientChange};
use std::future::Future;
use std::time::Duration;

/// Rounds of read, merge, conditional write before an apply gives up with a transient
/// error (the worker retries it later). Each lost round means another write succeeded, so
/// this many in a row only happens when one owner's events pour in from everywhere.
const MAX_ROUNDS: u32 = 32;

/// A stored record and its revision: how many times it was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revised {
    pub record: Recipient,
    pub revision: u64,
}

/// The behaviour every recipient store promises:
/// - `apply` returns once its outcome is durable, and is correct across replicas: any
///   interleaving of concurrent applies of one owner's events ends in the record one
///   sequential order would give.
/// - `apply` writes nothing when the event changes nothing ([`Applied::Unchanged`]).
/// - A record is never deleted: after `recipients.remove` it keeps its removal floor, so an
///   older event arriving later cannot bring the recipient back.
pub trait RecipientStore: Send + Sync + 'static {
    /// Creates what is missing (table); leaves what exists unchanged.
    fn setup(&self) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// The owner's record and its revision, as last written (a strongly consistent read).
    fn read(&self, owner: &Id) -> impl Future<Output = Result<Option<Revised>, StoreError>> + Send;

    /// Stores `record` with revision `expected + 1` (1 for a new record) if the stored
    /// revision is still `expected` (`None`: no record yet). `Ok(false)`: someone else
    /// wrote first, nothing was written.
    fn write_if(
        &self,
        record: &Recipient,
        expected: Option<u64>,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// The owner's record, if any event of theirs was ever applied.
    fn get(&self, owner: &Id) -> impl Future<Output = Result<Option<Recipient>, StoreError>> + Send {
        async move { Ok(self.read(owner).await?.map(|revised| revised.record)) }
    }

    /// Merges one event of `owner` at `version` into the stored record.
    fn apply(
        &self,
        owner: &Id,
        change: &RecipientChange,
        version: Version,
    ) -> impl Future<Output = Result<Applied, StoreError>> + Send {
        async move {
            for round in 0..MAX_ROUNDS {
                let (mut record, revision) = match self.read(owner).await? {
                    Some(Revised { record, revision }) => (record, Some(revision)),
                    None => (Recipient::new(owner.clone()), None),
                };
                if record.apply(change, version) == Applied::Unchanged {
                    return Ok(Applied::Unchanged);
                }
                if self.write_if(&record, revision).await? {
                    return Ok(Applied::Changed);
                }
                // Lost the race: give the winner's neighbours a moment, at a random offset
                // so that the losers do not collide again in step.
                let pause = fastrand::u64(0..=u64::from(round.min(8)) * 2);
                tokio::time::sleep(Duration::from_millis(pause)).await;
            }
            Err(StoreError::new(
                ErrorKind::Transient,
                format!(
                    "recipient {owner} was changed by others {MAX_ROUNDS} times while this event was applied"
                ),
            ))
        }
    }
}

/// The recipient store matching the notification store chosen (`NOTIF_STORE`).
pub enum AnyRecipientStore {
    Sqlite(SqliteRecipientStore),
    DynamoDb(DynamoDbRecipientStore),
}

impl AnyRecipientStore {
    pub async fn open(settings: &StoreSettings) -> Result<AnyRecipientStore, StoreError> {
        Ok(match settings {
            StoreSettings::Sqlite { path, .. } => {
                AnyRecipientStore::Sqlite(SqliteRecipientStore::open(path)?)
            }
            StoreSettings::DynamoDb(settings) => {
                AnyRecipientStore::DynamoDb(DynamoDbRecipientStore::connect(settings).await)
            }
        })
    }

    /// Where the recipients go, for logs.
    pub fn describe(&self) -> String {
        match self {
            AnyRecipientStore::Sqlite(store) => format!("sqlite {} table recipients", store.path().display()),
            AnyRecipientStore::DynamoDb(store) => format!("dynamodb table {}", store.table()),
        }
    }
}

impl RecipientStore for AnyRecipientStore {
    async fn setup(&self) -> Result<(), StoreError> {
        match self {
            AnyRecipientStore::Sqlite(store) => store.setup().await,
            AnyRecipientStore::DynamoDb(store) => store.setup().await,
        }
    }

    async fn read(&self, owner: &Id) -> Result<Option<Revised>, StoreError> {
        match self {
            AnyRecipientStore::Sqlite(store) => store.read(owner).await,
            AnyRecipientStore::DynamoDb(store) => store.read(owner).await,
        }
    }

    async fn write_if(&self, record: &Recipient, expected: Option<u64>) -> Result<bool, StoreError> {
        match self {
            AnyRecipientStore::Sqlite(store) => store.write_if(record, expected).await,
            AnyRecipientStore::DynamoDb(store) => store.write_if(record, expected).await,
        }
    }
}

/// A stored document that does not read back: this owner's events cannot be applied until
/// a person repairs the record, so the error is permanent (the event is dead-lettered).
pub(super) fn damaged(owner: &Id, where_: &str, problem: String) -> StoreError {
    StoreError::new(
        ErrorKind::Permanent,
        format!("the stored recipient {owner} in {where_} is damaged: {problem}"),
    )
}
