//! Where notifications are kept: one contract, [`NotificationStore`], and its two
//! implementations. Store code knows nothing of NATS; it applies [`Change`]s and reads feeds.
//! Beside them, in tables of its own, the recipient directory ([`RecipientStore`]).
//!
//! Every implementation must pass the shared suite in `tests/store_contract.rs` (and
//! `tests/recipient_contract.rs` for the directory).

mod aggregate_dynamodb;
mod aggregate_sqlite;
mod aggregates;
mod dynamodb;
mod dynamodb_error;
mod dynamodb_table;
mod error;
mod recipients;
mod recipients_dynamodb;
mod recipients_sqlite;
mod sqlite;
pub mod versioning;
mod wal;

pub use dynamodb::{DynamoDbSettings, DynamoDbStore};
pub use error::{ErrorKind, StoreError};
pub use recipients::{AnyRecipientStore, RecipientStore, Revised};
pub use recipients_dynamodb::DynamoDbRecipientStore;
pub use recipients_sqlite::SqliteRecipientStore;
pub use sqlite::SqliteStore;
pub use wal::{CheckpointCounts, DEFAULT_WAL_MAX, MIN_WAL_MAX, WalStats};

use crate::domain::{Change, FeedItem, Id, Version};
use std::future::Future;
use std::path::PathBuf;

/// How long a removal record (tombstone) is kept when `NOTIF_TOMBSTONE_TTL` is not set: an
/// event older than its remove can arrive as long as the stream or the dead letters keep it
/// (7 days each by default), so the worker refuses to start with less than those.
pub const DEFAULT_TOMBSTONE_TTL: std::time::Duration = std::time::Duration::from_secs(30 * 24 * 60 * 60);

/// Which store to use, from `NOTIF_STORE` and its settings.
#[derive(Debug, Clone)]
pub enum StoreSettings {
    Sqlite {
        path: PathBuf,
        /// `NOTIF_SQLITE_WAL_MAX`, in bytes.
        wal_max: u64,
    },
    DynamoDb(DynamoDbSettings),
}

/// What a change did, once durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// A new notification was stored.
    Created,
    /// One with the same (owner, action_key) existed and was left exactly as it was.
    Duplicate,
    /// The notification was deleted.
    Removed,
    /// There was nothing to delete, or a newer create keeps the notification.
    Absent,
    /// A create older than a remove already applied: not stored (see [`versioning`]).
    Superseded,
    /// An actor joined or left an existing aggregate, which was rewritten (`AGGREGATE`).
    Aggregated,
}

impl Applied {
    pub fn as_str(self) -> &'static str {
        match self {
            Applied::Created => "created",
            Applied::Duplicate => "duplicate",
            Applied::Removed => "removed",
            Applied::Absent => "absent",
            Applied::Superseded => "superseded",
            Applied::Aggregated => "aggregated",
        }
    }
}

/// A notification's life that a remove ended: the id it had and the version of the event
/// that created it. The delivery stage tells clients the notification is gone by its id,
/// and waits for the creating event to be settled first (see `delivery::outbox`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ended {
    pub id: String,
    pub created: Version,
}

/// What a change did, with what the delivery stage needs to know about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub applied: Applied,
    /// Set when `applied` is [`Applied::Removed`]: the life this remove ended. Reported
    /// again when the same remove is redelivered (its tombstone remembers the life it
    /// ended), as a redelivered create is reported `Created` again.
    pub ended: Option<Ended>,
    /// Set when a join or leave created, rewrote or removed an aggregate: the aggregate as
    /// it now stands (or stood, when removed), for the delivery stage to tell clients.
    pub aggregate: Option<Box<Shown>>,
}

/// An aggregate as a join or leave left it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shown {
    pub item: FeedItem,
    /// Its revision, which its job carries.
    pub version: Version,
    /// When the store started it (unix seconds, the writer's clock); `None` for an item
    /// written before this was kept. The delivery stage orders an update after its
    /// `created` job only while that job can still be in flight.
    pub started_at: Option<i64>,
}

impl From<Applied> for Report {
    fn from(applied: Applied) -> Report {
        Report {
            applied,
            ended: None,
            aggregate: None,
        }
    }
}

/// The behaviour every store promises (SPEC.md, "Semantics"):
/// - `apply` takes the event's [`Version`] and follows [`versioning`]: whatever order and
///   however often a key's changes arrive, from however many processes, the key ends live
///   exactly when its newest change is a create, and a live notification is never rewritten
///   (its id and read_status survive) except for its version attributes.
/// - `apply(Create)` of an existing notification leaves it as it is ([`Applied::Duplicate`]);
///   never a read-then-write without a condition.
/// - `apply(Remove)` leaves a tombstone that no feed query sees; an absent key is
///   [`Applied::Absent`], not an error.
/// - `apply` returns only once its outcome is durable, so the caller may acknowledge.
/// - Calls may run concurrently, for the same key too: correctness never depends on the
///   caller's ordering.
pub trait NotificationStore: Send + Sync + 'static {
    /// Creates what is missing (schema, table and index); leaves what exists unchanged.
    fn setup(&self) -> impl Future<Output = Result<(), StoreError>> + Send;

    fn apply(
        &self,
        change: &Change,
        version: Version,
    ) -> impl Future<Output = Result<Applied, StoreError>> + Send {
        async move {
            self.apply_reported(change, version)
                .await
                .map(|report| report.applied)
        }
    }

    /// [`NotificationStore::apply`], also saying which life a remove ended (see [`Report`]).
    fn apply_reported(
        &self,
        change: &Change,
        version: Version,
    ) -> impl Future<Output = Result<Report, StoreError>> + Send;

    /// Answers whether the store can be used right now (reachable, schema or table present),
    /// cheaply: it runs every few seconds for readiness.
    fn probe(&self) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// The owner's notifications, newest first.
    fn feed(
        &self,
        owner: &Id,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<FeedItem>, StoreError>> + Send;

    /// The notification at (`owner`, `action_key`) as the API reads it, if one is stored (a
    /// strongly consistent read). The digests ask it whether a notification is still there
    /// and still unread when the digest goes out.
    fn find(
        &self,
        owner: &Id,
        action_key: &str,
    ) -> impl Future<Output = Result<Option<FeedItem>, StoreError>> + Send;

    /// How hard the worker should drive this store, given `WORKER_CONCURRENCY`.
    fn limits(&self, concurrency: usize) -> Limits {
        Limits {
            store_calls: concurrency,
            // A second set of events ready, so a finished request is followed by the next
            // at once instead of after a pull.
            in_flight: concurrency.saturating_mul(2),
        }
    }
}

/// How many events the worker holds, and how many store calls it makes at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub store_calls: usize,
    pub in_flight: usize,
}

/// The store chosen at start. An enum rather than a trait object: the contract's methods
/// are async, and two variants are simpler than boxing every future.
pub enum AnyStore {
    Sqlite(SqliteStore),
    DynamoDb(DynamoDbStore),
}

impl AnyStore {
    pub async fn open(settings: &StoreSettings) -> Result<AnyStore, StoreError> {
        Ok(match settings {
            StoreSettings::Sqlite { path, wal_max } => {
                AnyStore::Sqlite(SqliteStore::open_with_wal_max(path, *wal_max)?)
            }
            StoreSettings::DynamoDb(settings) => AnyStore::DynamoDb(DynamoDbStore::connect(settings).await),
        })
    }

    /// How long removal records are kept.
    pub fn with_tombstone_ttl(self, ttl: std::time::Duration) -> AnyStore {
        match self {
            AnyStore::Sqlite(store) => AnyStore::Sqlite(store.with_tombstone_ttl(ttl)),
            AnyStore::DynamoDb(store) => AnyStore::DynamoDb(store.with_tombstone_ttl(ttl)),
        }
    }

    /// The SQLite store's WAL figures, for the metrics (`None` for DynamoDB).
    pub fn sqlite_wal_stats(&self) -> Option<std::sync::Arc<WalStats>> {
        match self {
            AnyStore::Sqlite(store) => Some(store.wal_stats()),
            AnyStore::DynamoDb(_) => None,
        }
    }

    /// True for a store in a file of this process's own (SQLite), rather than shared
    /// infrastructure (a DynamoDB table): `run` creates its schema in every environment.
    pub fn is_embedded(&self) -> bool {
        matches!(self, AnyStore::Sqlite(_))
    }

    /// Where the notifications go, for logs.
    pub fn describe(&self) -> String {
        match self {
            AnyStore::Sqlite(store) => format!("sqlite {}", store.path().display()),
            AnyStore::DynamoDb(store) => format!("dynamodb table {}", store.table()),
        }
    }
}

impl NotificationStore for AnyStore {
    async fn setup(&self) -> Result<(), StoreError> {
        match self {
            AnyStore::Sqlite(store) => store.setup().await,
            AnyStore::DynamoDb(store) => store.setup().await,
        }
    }

    async fn apply_reported(&self, change: &Change, version: Version) -> Result<Report, StoreError> {
        match self {
            AnyStore::Sqlite(store) => store.apply_reported(change, version).await,
            // Boxed: the SDK's request futures are large, and unboxed they would make every
            // event's lane task as large, SQLite's included (copied at spawn and at its end).
            AnyStore::DynamoDb(store) => Box::pin(store.apply_reported(change, version)).await,
        }
    }

    async fn probe(&self) -> Result<(), StoreError> {
        match self {
            AnyStore::Sqlite(store) => store.probe().await,
            AnyStore::DynamoDb(store) => store.probe().await,
        }
    }

    async fn feed(&self, owner: &Id, limit: usize) -> Result<Vec<FeedItem>, StoreError> {
        match self {
            AnyStore::Sqlite(store) => store.feed(owner, limit).await,
            AnyStore::DynamoDb(store) => store.feed(owner, limit).await,
        }
    }

    async fn find(&self, owner: &Id, action_key: &str) -> Result<Option<FeedItem>, StoreError> {
        match self {
            AnyStore::Sqlite(store) => store.find(owner, action_key).await,
            AnyStore::DynamoDb(store) => store.find(owner, action_key).await,
        }
    }

    fn limits(&self, concurrency: usize) -> Limits {
        match self {
            AnyStore::Sqlite(store) => store.limits(concurrency),
            AnyStore::DynamoDb(store) => store.limits(concurrency),
        }
    }
}
