//! The production store: one DynamoDB table, written with conditional requests that follow
//! the rules of [`super::versioning`] without transactions (dynalite, which the tests use,
//! has none; nor do some DynamoDB-compatible stores).
//!
//! Per key, beside the notification item (owner, action_key) with its immutable
//! `created_seq` and its `version`, a tombstone item at (`{owner}#tombstone`, action_key)
//! holds the newest remove's `version`. Its partition key is no user's (ids cannot hold `#`)
//! and it has no `created_at`, so neither a Query by owner nor `OwnerIndex` ever returns it.
//!
//! - remove: raise the tombstone (`version < :r`), then delete the item unless a create
//!   newer than the remove was applied to it (`version < :r`). A redelivered remove whose
//!   tombstone exists still runs its delete. A delete that ended a life writes it (id and
//!   `created_seq`, from the deleted item) onto the tombstone, if the tombstone is still this
//!   remove's, so that the remove's redelivery reports it again; only a remove whose raise
//!   was refused and that deleted nothing (a redelivery, or a remove arriving late) reads
//!   the tombstone back for that.
//! - create: put the item if absent (`attribute_not_exists(id)`); otherwise read it and the
//!   tombstone (strongly consistent) and, as the rules say, keep it (raising its `version`),
//!   replace a life that a newer remove ended (conditioned on the life read), or do nothing.
//!   A create that stored its life then checks the tombstone: a newer remove that slipped
//!   in between is finished on its behalf (the same conditional delete). Every conditional
//!   write that fails re-reads and decides again.
//!
//! docs/reliability.md walks through the interleavings, each with its test.

use super::dynamodb_error::{classify, endpoint_of};
use super::dynamodb_table::{Table, client_without_retries};
use super::versioning::{CreatePlan, Life, Remembers, plan_create, report_remove};
use super::{Applied, Ended, ErrorKind, NotificationStore, Report, StoreError};
use crate::domain::{Change, FeedItem, Id, Notification, Timestamp, Version};
use aws_config::BehaviorVersion;
use aws_config::timeout::TimeoutConfig;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::config::http::HttpResponse;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::create_table::builders::CreateTableFluentBuilder;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType,
    Projection, ProjectionType, ReturnValue, ScalarAttributeType,
};
use std::collections::HashMap;
use std::time::Duration;

/// The global secondary index the API reads feeds from (owner, created_at).
pub const OWNER_INDEX: &str = "OwnerIndex";

#[derive(Debug, Clone)]
pub struct DynamoDbSettings {
    pub table: String,
    /// `NOTIF_RECIPIENTS_TABLE`: the recipient directory's own table.
    pub recipients_table: String,
    pub region: String,
}

/// Appended to the owner in a tombstone's partition key.
const TOMBSTONE_SUFFIX: &str = "#tombstone";
/// The attribute DynamoDB's TTL deletes expired tombstones by (unix seconds).
pub(super) const EXPIRES_AT: &str = "expires_at";
/// A tombstone's memory of the life its remove ended (see [`Remembers`]): the id, the
/// version that created it, and the remove that ended it.
const ENDED_ID: &str = "ended_id";
const ENDED_CREATED: &str = "ended_created";
const ENDED_BY: &str = "ended_by";
/// A create whose conditional writes keep failing because others change the key at the same
/// moment gives up after this many rounds (a transient error: it is retried).
const MAX_ROUNDS: usize = 10;
/// How long after a create whose put went unanswered the key is checked again: that put may
/// still land after a newer remove's delete (a request outlives its client's timeout on a
/// busy server), and nothing else would delete it then.
const RECHECK_AFTER: Duration = Duration::from_secs(30);

/// The standard AWS chain for `region`, with explicit timeouts (see
/// [`DynamoDbStore::connect`]); the recipient store uses the same.
pub(super) async fn sdk_config(region: &str) -> aws_config::SdkConfig {
    let timeouts = TimeoutConfig::builder()
        .connect_timeout(Duration::from_secs(3))
        .operation_attempt_timeout(Duration::from_secs(5))
        .operation_timeout(Duration::from_secs(15))
        .build();
    aws_config::defaults(BehaviorVersion::latest())
        .region(aws_config::Region::new(region.to_owned()))
        .timeout_config(timeouts)
        .load()
        .await
}

#[derive(Clone)]
pub struct DynamoDbStore {
    pub(super) client: Client,
    pub(super) table: String,
    /// Where requests go, named in errors (a wrong local endpoint is a common mistake).
    endpoint: String,
    tombstone_ttl: Duration,
}

impl DynamoDbStore {
    /// Builds a client from the standard AWS chain (environment, profile, instance role;
    /// `AWS_ENDPOINT_URL_DYNAMODB` for a local endpoint), with explicit timeouts so that a
    /// hung connection becomes a retriable error instead of a stuck event.
    pub async fn connect(settings: &DynamoDbSettings) -> DynamoDbStore {
        DynamoDbStore::with_config(&sdk_config(&settings.region).await, &settings.table)
    }

    /// A store on a client configured elsewhere (tests point it at a local endpoint).
    pub fn with_config(sdk_config: &aws_config::SdkConfig, table: &str) -> DynamoDbStore {
        // This store must know when a write may have landed without an answer (see `create`).
        DynamoDbStore {
            endpoint: endpoint_of(sdk_config),
            client: client_without_retries(sdk_config),
            table: table.to_owned(),
            tombstone_ttl: super::DEFAULT_TOMBSTONE_TTL,
        }
    }

    /// A failed request, said as [`classify`] decides.
    pub(super) fn failed<E>(&self, operation: &str, error: &SdkError<E, HttpResponse>) -> StoreError
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
    {
        classify(operation, &self.table, &self.endpoint, error)
    }

    /// How long removal records are kept (`NOTIF_TOMBSTONE_TTL`).
    pub fn with_tombstone_ttl(mut self, ttl: Duration) -> DynamoDbStore {
        self.tombstone_ttl = ttl;
        self
    }

    /// When a record written now to remember a remove (a tombstone, an unliking actor's
    /// standing) may go: unix seconds, for DynamoDB's TTL on [`EXPIRES_AT`].
    pub(super) fn expires_at(&self) -> i64 {
        Timestamp::now()
            .unix()
            .saturating_add(i64::try_from(self.tombstone_ttl.as_secs()).unwrap_or(i64::MAX))
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    fn table_handle(&self) -> Table<'_> {
        Table {
            client: &self.client,
            name: &self.table,
            endpoint: &self.endpoint,
        }
    }

    /// The table: key (owner, action_key), and the index the API reads a feed through.
    fn create_table(&self) -> CreateTableFluentBuilder {
        let key = |name: &str, kind: KeyType| {
            KeySchemaElement::builder()
                .attribute_name(name)
                .key_type(kind)
                .build()
                .expect("name and type set")
        };
        let string_attribute = |name: &str| {
            AttributeDefinition::builder()
                .attribute_name(name)
                .attribute_type(ScalarAttributeType::S)
                .build()
                .expect("name and type set")
        };
        let owner_index = GlobalSecondaryIndex::builder()
            .index_name(OWNER_INDEX)
            .key_schema(key("owner", KeyType::Hash))
            .key_schema(key("created_at", KeyType::Range))
            .projection(Projection::builder().projection_type(ProjectionType::All).build())
            .build()
            .expect("index fields set");
        self.client
            .create_table()
            .billing_mode(BillingMode::PayPerRequest)
            .key_schema(key("owner", KeyType::Hash))
            .key_schema(key("action_key", KeyType::Range))
            .attribute_definitions(string_attribute("owner"))
            .attribute_definitions(string_attribute("action_key"))
            .attribute_definitions(string_attribute("created_at"))
            .global_secondary_indexes(owner_index)
    }
}

/// The versioned-write protocol (see the module's documentation).
impl DynamoDbStore {
    async fn create(&self, notification: &Notification, version: Version) -> Result<Applied, StoreError> {
        let mut unanswered = false;
        let applied = self.create_rounds(notification, version, &mut unanswered).await;
        if unanswered {
            self.recheck_later(notification.owner.as_str(), notification.action_key.as_str());
        }
        applied
    }

    /// A put that got no answer (timeout, lost connection) may land later than anything
    /// this worker does next: after [`RECHECK_AFTER`], delete what it may have left alive
    /// behind a newer remove. Harmless when it landed in time or not at all: this is the
    /// remove's own conditional delete. (A worker that stops before then leaves it to the
    /// key's next event; docs/reliability.md says so.)
    fn recheck_later(&self, owner: &str, action_key: &str) {
        let store = self.clone();
        let (owner, action_key) = (owner.to_owned(), action_key.to_owned());
        tracing::info!(
            owner,
            action_key,
            after_s = RECHECK_AFTER.as_secs(),
            "a put went unanswered: recheck scheduled"
        );
        tokio::spawn(async move {
            tokio::time::sleep(RECHECK_AFTER).await;
            for _ in 0..5 {
                let checked = async {
                    let life = store.read_life(&owner, &action_key).await?;
                    let tombstone = store.read_tombstone(&owner, &action_key).await?;
                    if let (Some(life), Some(removed)) = (life, tombstone)
                        && removed > life.version
                    {
                        store.delete_older_than(&owner, &action_key, removed).await?;
                    }
                    Ok::<(), StoreError>(())
                };
                match checked.await {
                    Ok(()) => {
                        tracing::info!(owner, action_key, "recheck done");
                        return;
                    }
                    Err(error) => {
                        tracing::debug!(%error, owner, action_key, "recheck after an unanswered put failed; trying again");
                        tokio::time::sleep(Duration::from_secs(5)).await;
                    }
                }
            }
        });
    }

    async fn create_rounds(
        &self,
        notification: &Notification,
        version: Version,
        unanswered: &mut bool,
    ) -> Result<Applied, StoreError> {
        let owner = notification.owner.as_str();
        let action_key = notification.action_key.as_str();
        for _ in 0..MAX_ROUNDS {
            let put = self.put_life(notification, version, None).await;
            *unanswered |= put
                .as_ref()
                .is_err_and(|error| error.kind == ErrorKind::Transient);
            if put? {
                return self.confirm_life(owner, action_key, version).await;
            }
            // Something is there: decide on what it is, read consistently.
            let Some(life) = self.read_life(owner, action_key).await? else {
                continue; // deleted in the meantime: try to put again
            };
            let tombstone = self.read_tombstone(owner, action_key).await?;
            match plan_create(Some(life), tombstone, version) {
                CreatePlan::AlreadyCreated => return self.confirm_life(owner, action_key, version).await,
                CreatePlan::Replace => {
                    if self.put_life(notification, version, Some(life)).await? {
                        return self.confirm_life(owner, action_key, version).await;
                    }
                }
                CreatePlan::Keep { raise_version: true } => {
                    if self.raise_version(owner, action_key, life, version).await? {
                        return Ok(Applied::Duplicate);
                    }
                }
                CreatePlan::Keep { raise_version: false } => return Ok(Applied::Duplicate),
                CreatePlan::Superseded => return Ok(Applied::Superseded),
                CreatePlan::FinishRemove => {
                    let removed = tombstone.expect("a remove to finish has a tombstone");
                    self.delete_older_than(owner, action_key, removed).await?;
                    return Ok(Applied::Superseded);
                }
                // There is a life: the rules never say insert. Read again.
                CreatePlan::Insert => {}
            }
        }
        Err(StoreError::new(
            ErrorKind::Transient,
            format!(
                "dynamodb: {action_key} of {owner} kept changing under {MAX_ROUNDS} attempts to create it"
            ),
        ))
    }

    /// After this create's life was stored (now or by an earlier delivery of the same
    /// event): if a newer remove's tombstone is there, that remove's delete may have run
    /// before the life was stored, so run it again on its behalf. The life stands, and is
    /// reported created, only if it survives that.
    async fn confirm_life(
        &self,
        owner: &str,
        action_key: &str,
        version: Version,
    ) -> Result<Applied, StoreError> {
        let Some(removed) = self.read_tombstone(owner, action_key).await? else {
            return Ok(Applied::Created);
        };
        if removed < version {
            return Ok(Applied::Created);
        }
        if self
            .delete_older_than(owner, action_key, removed)
            .await?
            .is_some()
        {
            return Ok(Applied::Superseded);
        }
        // Not deleted: gone already, or a create newer than the remove keeps it.
        let still_ours = self
            .read_life(owner, action_key)
            .await?
            .is_some_and(|life| life.created == version);
        Ok(if still_ours {
            Applied::Created
        } else {
            Applied::Superseded
        })
    }

    async fn remove(&self, owner: &str, action_key: &str, version: Version) -> Result<Report, StoreError> {
        let expires_at = self.expires_at();
        // The tombstone first: from now on no older create can store a life that stays.
        let raised = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(&tombstone_owner(owner), action_key)))
            // An older remove's memory is not this one's (free to drop in the same request).
            .update_expression("SET #v = :v, #expires = :expires REMOVE #ended_id, #ended_created, #ended_by")
            .condition_expression("attribute_not_exists(#v) OR #v < :v")
            .expression_attribute_names("#v", "version")
            .expression_attribute_names("#expires", EXPIRES_AT)
            .expression_attribute_names("#ended_id", ENDED_ID)
            .expression_attribute_names("#ended_created", ENDED_CREATED)
            .expression_attribute_names("#ended_by", ENDED_BY)
            .expression_attribute_values(":v", number(version))
            .expression_attribute_values(":expires", AttributeValue::N(expires_at.to_string()))
            .send()
            .await;
        let refused = match raised {
            Ok(_) => false,
            // A tombstone as new or newer is there already (a redelivery, or a later remove).
            Err(error) if is_condition_failure(&error) => true,
            Err(error) => return Err(self.failed("UpdateItem", &error)),
        };
        if let Some(ended) = self.delete_older_than(owner, action_key, version).await? {
            self.remember_ended(owner, action_key, version, &ended).await;
            return Ok(report_remove(Some(ended), None, None, version));
        }
        if !refused {
            // This remove's own new tombstone: it remembers nothing yet.
            return Ok(report_remove(None, Some(version), None, version));
        }
        let (tombstone, remembers) = match self.read_tombstone_memory(owner, action_key).await? {
            Some((tombstone, remembers)) => (Some(tombstone), remembers),
            None => (None, None),
        };
        Ok(report_remove(None, tombstone, remembers, version))
    }

    /// Writes the life this remove ended onto its tombstone, unless a newer remove's
    /// tombstone is there by now (that one must never be made to remember this life).
    /// Failing is logged, not returned: the life is deleted and is reported now, whereas a
    /// retry of the remove would find nothing to delete and nothing remembered, and never
    /// report it. What is lost is only the report of a later redelivery, as when the worker
    /// stops between the delete and this write (SQLite, in one transaction, has no such gap).
    async fn remember_ended(&self, owner: &str, action_key: &str, version: Version, ended: &Ended) {
        let remembered = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(&tombstone_owner(owner), action_key)))
            .update_expression("SET #ended_id = :id, #ended_created = :created, #ended_by = :v")
            .condition_expression("#v = :v")
            .expression_attribute_names("#v", "version")
            .expression_attribute_names("#ended_id", ENDED_ID)
            .expression_attribute_names("#ended_created", ENDED_CREATED)
            .expression_attribute_names("#ended_by", ENDED_BY)
            .expression_attribute_values(":v", number(version))
            .expression_attribute_values(":id", AttributeValue::S(ended.id.clone()))
            .expression_attribute_values(":created", number(ended.created))
            .send()
            .await;
        match remembered {
            Ok(_) => {}
            Err(error) if is_condition_failure(&error) => {}
            Err(error) => {
                let error = self.failed("UpdateItem", &error);
                tracing::warn!(%error, owner, action_key, "cannot write the ended life on the tombstone; a redelivery of this remove will report nothing ended");
            }
        }
    }

    /// Deletes the notification unless a create at `version` or newer was applied to it;
    /// returns the life it ended, read from the deleted item.
    async fn delete_older_than(
        &self,
        owner: &str,
        action_key: &str,
        version: Version,
    ) -> Result<Option<Ended>, StoreError> {
        let deleted = self
            .client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(key(owner, action_key)))
            .condition_expression("attribute_exists(id) AND (attribute_not_exists(#v) OR #v < :v)")
            .expression_attribute_names("#v", "version")
            .expression_attribute_values(":v", number(version))
            .return_values(ReturnValue::AllOld)
            .send()
            .await;
        match deleted {
            Ok(output) => Ok(output.attributes().and_then(|old| {
                let id = old.get("id")?.as_s().ok()?.clone();
                Some(Ended {
                    id,
                    created: stored_version(old.get("created_seq")),
                })
            })),
            Err(error) if is_condition_failure(&error) => Ok(None),
            Err(error) => Err(self.failed("DeleteItem", &error)),
        }
    }

    /// Stores a new life started by this create: where no notification is (`expected`
    /// None), or in place of exactly the life `expected` (a newer remove ended it). False
    /// when the key is not as expected any more.
    async fn put_life(
        &self,
        notification: &Notification,
        version: Version,
        expected: Option<Life>,
    ) -> Result<bool, StoreError> {
        let mut item =
            serde_dynamo::to_item::<_, HashMap<String, AttributeValue>>(FeedItem::from(notification))
                .map_err(|error| {
                    StoreError::new(
                        ErrorKind::Permanent,
                        format!("cannot map the notification: {error}"),
                    )
                })?;
        item.insert("created_seq".to_owned(), number(version));
        item.insert("version".to_owned(), number(version));
        let mut put = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item));
        put = match expected {
            // An item without `id` (say, a partial item an unconditioned API update left)
            // counts as absent and is overwritten.
            None => put.condition_expression("attribute_not_exists(id)"),
            Some(life) => {
                let (condition, names, values) = life_condition(life);
                put.condition_expression(condition)
                    .set_expression_attribute_names(Some(names))
                    .set_expression_attribute_values(Some(values))
            }
        };
        held(self, "PutItem", put.send().await)
    }

    /// A create newer than everything the live notification has seen: remember it, so a
    /// remove older than this create cannot delete the notification. False when the life
    /// changed meanwhile.
    async fn raise_version(
        &self,
        owner: &str,
        action_key: &str,
        life: Life,
        version: Version,
    ) -> Result<bool, StoreError> {
        let (condition, mut names, mut values) = life_condition(life);
        names.insert("#v".to_owned(), "version".to_owned());
        values.insert(":new".to_owned(), number(version));
        let raised = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(owner, action_key)))
            .update_expression("SET #v = :new")
            .condition_expression(condition)
            .set_expression_attribute_names(Some(names))
            .set_expression_attribute_values(Some(values))
            .send()
            .await;
        held(self, "UpdateItem", raised)
    }

    /// The live notification's versions, read strongly consistent (the default read may
    /// miss a write that just happened); `None` when absent or without `id`.
    async fn read_life(&self, owner: &str, action_key: &str) -> Result<Option<Life>, StoreError> {
        let item = self.get(key(owner, action_key), "id, created_seq, #v").await?;
        Ok(item.filter(|item| item.contains_key("id")).map(|item| Life {
            created: stored_version(item.get("created_seq")),
            version: stored_version(item.get("version")),
        }))
    }

    /// The newest remove's version, read strongly consistent.
    async fn read_tombstone(&self, owner: &str, action_key: &str) -> Result<Option<Version>, StoreError> {
        let item = self.get(key(&tombstone_owner(owner), action_key), "#v").await?;
        Ok(item.and_then(|item| item.get("version").map(|value| stored_version(Some(value)))))
    }

    /// The newest remove's version and its memory of the life a remove ended there, read
    /// strongly consistent.
    async fn read_tombstone_memory(
        &self,
        owner: &str,
        action_key: &str,
    ) -> Result<Option<(Version, Option<Remembers>)>, StoreError> {
        let projection = format!("#v, {ENDED_ID}, {ENDED_CREATED}, {ENDED_BY}");
        let item = self
            .get(key(&tombstone_owner(owner), action_key), &projection)
            .await?;
        Ok(item.and_then(|item| {
            let version = stored_version(Some(item.get("version")?));
            let id = item.get(ENDED_ID).and_then(|id| id.as_s().ok());
            let by = item
                .get(ENDED_BY)
                .and_then(|by| by.as_n().ok())
                .and_then(|text| Version::parse(text));
            let remembers = id.zip(by).map(|(id, by)| Remembers {
                ended: Ended {
                    id: id.clone(),
                    created: stored_version(item.get(ENDED_CREATED)),
                },
                by,
            });
            Some((version, remembers))
        }))
    }

    pub(super) async fn get(
        &self,
        key: HashMap<String, AttributeValue>,
        projection: &str,
    ) -> Result<Option<HashMap<String, AttributeValue>>, StoreError> {
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key))
            .consistent_read(true)
            .projection_expression(projection)
            .expression_attribute_names("#v", "version")
            .send()
            .await
            .map_err(|error| self.failed("GetItem", &error))?;
        Ok(output.item.filter(|item| !item.is_empty()))
    }

    /// Enables DynamoDB's TTL on tombstones' `expires_at`; where the endpoint has no TTL
    /// (DynamoDB Local, dynalite), tombstones are simply kept.
    async fn enable_tombstone_expiry(&self) -> Result<(), StoreError> {
        let enabled = self
            .client
            .update_time_to_live()
            .table_name(&self.table)
            .time_to_live_specification(
                aws_sdk_dynamodb::types::TimeToLiveSpecification::builder()
                    .attribute_name(EXPIRES_AT)
                    .enabled(true)
                    .build()
                    .expect("name and flag set"),
            )
            .send()
            .await;
        match enabled {
            Ok(_) => Ok(()),
            Err(error) if error.message().is_some_and(|m| m.contains("already enabled")) => Ok(()),
            Err(error) if error.code() == Some("UnknownOperationException") => {
                tracing::info!(table = %self.table, "this DynamoDB endpoint has no TTL: tombstones are kept");
                Ok(())
            }
            Err(error) => Err(self.failed("UpdateTimeToLive", &error)),
        }
    }
}

pub(super) fn key(owner: &str, action_key: &str) -> HashMap<String, AttributeValue> {
    HashMap::from([
        ("owner".to_owned(), AttributeValue::S(owner.to_owned())),
        ("action_key".to_owned(), AttributeValue::S(action_key.to_owned())),
    ])
}

fn tombstone_owner(owner: &str) -> String {
    format!("{owner}{TOMBSTONE_SUFFIX}")
}

pub(super) fn number(version: Version) -> AttributeValue {
    AttributeValue::N(version.to_number().to_string())
}

/// A stored version attribute; an item written before versions has none: the oldest.
pub(super) fn stored_version(value: Option<&AttributeValue>) -> Version {
    value
        .and_then(|value| value.as_n().ok())
        .and_then(|text| Version::parse(text))
        .unwrap_or(Version::LEGACY)
}

/// "The item holds exactly this life": its `id`, and its two versions as read (absent on
/// items written before versions).
fn life_condition(life: Life) -> (String, HashMap<String, String>, HashMap<String, AttributeValue>) {
    let names = HashMap::from([
        ("#c".to_owned(), "created_seq".to_owned()),
        ("#v".to_owned(), "version".to_owned()),
    ]);
    let mut values = HashMap::new();
    let mut condition = String::from("attribute_exists(id)");
    for (name, placeholder, stored) in [("#c", ":c", life.created), ("#v", ":v", life.version)] {
        if stored == Version::LEGACY {
            condition.push_str(&format!(" AND attribute_not_exists({name})"));
        } else {
            condition.push_str(&format!(" AND {name} = {placeholder}"));
            values.insert(placeholder.to_owned(), number(stored));
        }
    }
    (condition, names, values)
}

/// Whether a conditional write held: `false` when its condition failed (the protocols then
/// read again and decide), a [`StoreError`] for any other failure.
pub(super) fn held<O, E>(
    store: &DynamoDbStore,
    operation: &str,
    result: Result<O, SdkError<E, HttpResponse>>,
) -> Result<bool, StoreError>
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    match result {
        Ok(_) => Ok(true),
        Err(error) if is_condition_failure(&error) => Ok(false),
        Err(error) => Err(store.failed(operation, &error)),
    }
}

pub(super) fn is_condition_failure<E: ProvideErrorMetadata>(error: &SdkError<E, HttpResponse>) -> bool {
    error.code() == Some("ConditionalCheckFailedException")
}

impl NotificationStore for DynamoDbStore {
    async fn setup(&self) -> Result<(), StoreError> {
        self.table_handle()
            .ensure(&format!("with index {OWNER_INDEX}"), self.create_table())
            .await?;
        self.enable_tombstone_expiry().await
    }

    async fn apply_reported(&self, change: &Change, version: Version) -> Result<Report, StoreError> {
        match change {
            Change::Create(notification) => self.create(notification, version).await.map(Report::from),
            Change::Remove { owner, action_key } => {
                self.remove(owner.as_str(), action_key.as_str(), version).await
            }
            Change::Join(join) => self.join(join, version).await,
            Change::Leave { group, actor } => self.leave(group, actor, version).await,
        }
    }

    async fn probe(&self) -> Result<(), StoreError> {
        match self.table_handle().active().await? {
            Some(true) => Ok(()),
            Some(false) => Err(StoreError::new(
                ErrorKind::Systemic,
                format!(
                    "table {} or its index {OWNER_INDEX} is not ACTIVE yet",
                    self.table
                ),
            )),
            None => Err(StoreError::new(
                ErrorKind::Systemic,
                format!(
                    "table {} does not exist (run `notification-worker setup`)",
                    self.table
                ),
            )),
        }
    }

    async fn find(&self, owner: &Id, action_key: &str) -> Result<Option<FeedItem>, StoreError> {
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key(owner.as_str(), action_key)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|error| self.failed("GetItem", &error))?;
        // As everywhere in this store, an item without `id` counts as absent.
        match output.item.filter(|item| item.contains_key("id")) {
            None => Ok(None),
            Some(item) => serde_dynamo::from_item(item).map(Some).map_err(|error| {
                StoreError::new(
                    ErrorKind::Permanent,
                    format!("unexpected item in {}: {error}", self.table),
                )
            }),
        }
    }

    async fn feed(&self, owner: &Id, limit: usize) -> Result<Vec<FeedItem>, StoreError> {
        let page = self
            .client
            .query()
            .table_name(&self.table)
            .index_name(OWNER_INDEX)
            .key_condition_expression("#owner = :owner")
            .expression_attribute_names("#owner", "owner")
            .expression_attribute_values(":owner", AttributeValue::S(owner.to_string()))
            .scan_index_forward(false)
            .limit(i32::try_from(limit).unwrap_or(i32::MAX).max(1))
            .send()
            .await
            .map_err(|error| self.failed("Query", &error))?;
        serde_dynamo::from_items(page.items().to_vec()).map_err(|error| {
            StoreError::new(
                ErrorKind::Permanent,
                format!("unexpected item in {}: {error}", self.table),
            )
        })
    }
}
