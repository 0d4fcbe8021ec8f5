//! The production store: one DynamoDB table, written with single conditional requests.
//!
//! create = PutItem with `attribute_not_exists(action_key)` (ConditionalCheckFailed means
//! duplicate), remove = DeleteItem. Never a read-then-write: two workers racing on one key
//! still store exactly one notification.

use super::{Applied, ErrorKind, NotificationStore, StoreError};
use crate::domain::{Change, FeedItem, Id};
use aws_config::BehaviorVersion;
use aws_config::timeout::TimeoutConfig;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::config::http::HttpResponse;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, GlobalSecondaryIndex, IndexStatus, KeySchemaElement,
    KeyType, Projection, ProjectionType, ReturnValue, ScalarAttributeType, TableStatus,
};
use std::time::Duration;

/// The global secondary index the API reads feeds from (owner, created_at).
pub const OWNER_INDEX: &str = "OwnerIndex";

#[derive(Debug, Clone)]
pub struct DynamoDbSettings {
    pub table: String,
    pub region: String,
}

pub struct DynamoDbStore {
    client: Client,
    table: String,
}

impl DynamoDbStore {
    /// Builds a client from the standard AWS chain (environment, profile, instance role;
    /// `AWS_ENDPOINT_URL_DYNAMODB` for a local endpoint), with explicit timeouts so that a
    /// hung connection becomes a retriable error instead of a stuck event.
    pub async fn connect(settings: &DynamoDbSettings) -> DynamoDbStore {
        let timeouts = TimeoutConfig::builder()
            .connect_timeout(Duration::from_secs(3))
            .operation_attempt_timeout(Duration::from_secs(5))
            .operation_timeout(Duration::from_secs(15))
            .build();
        let config = aws_config::defaults(BehaviorVersion::latest())
            .region(aws_config::Region::new(settings.region.clone()))
            .timeout_config(timeouts)
            .load()
            .await;
        DynamoDbStore::with_config(&config, &settings.table)
    }

    /// A store on a client configured elsewhere (tests point it at a local endpoint).
    pub fn with_config(config: &aws_config::SdkConfig, table: &str) -> DynamoDbStore {
        DynamoDbStore {
            client: Client::new(config),
            table: table.to_owned(),
        }
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    /// Ok(Some(true)) when the table and its index are ACTIVE, Ok(None) when absent.
    async fn table_active(&self) -> Result<Option<bool>, StoreError> {
        match self.client.describe_table().table_name(&self.table).send().await {
            Ok(output) => {
                let Some(table) = output.table() else {
                    return Ok(None);
                };
                let indexes_active = table
                    .global_secondary_indexes()
                    .iter()
                    .all(|index| index.index_status() == Some(&IndexStatus::Active));
                Ok(Some(
                    table.table_status() == Some(&TableStatus::Active) && indexes_active,
                ))
            }
            Err(error) if error.code() == Some("ResourceNotFoundException") => Ok(None),
            Err(error) => Err(classify("DescribeTable", &self.table, &error)),
        }
    }

    async fn create_table(&self) -> Result<(), StoreError> {
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
        let created = self
            .client
            .create_table()
            .table_name(&self.table)
            .billing_mode(BillingMode::PayPerRequest)
            .key_schema(key("owner", KeyType::Hash))
            .key_schema(key("action_key", KeyType::Range))
            .attribute_definitions(string_attribute("owner"))
            .attribute_definitions(string_attribute("action_key"))
            .attribute_definitions(string_attribute("created_at"))
            .global_secondary_indexes(owner_index)
            .send()
            .await;
        match created {
            Ok(_) => Ok(()),
            // Another replica created it first: fine.
            Err(error) if error.code() == Some("ResourceInUseException") => Ok(()),
            Err(error) => Err(classify("CreateTable", &self.table, &error)),
        }
    }
}

impl NotificationStore for DynamoDbStore {
    async fn setup(&self) -> Result<(), StoreError> {
        if self.table_active().await?.is_none() {
            tracing::info!(table = %self.table, "creating DynamoDB table with index {OWNER_INDEX}");
            self.create_table().await?;
        }
        // A new table takes a moment (seconds on AWS) to become usable.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(300);
        loop {
            if self.table_active().await? == Some(true) {
                return Ok(());
            }
            if tokio::time::Instant::now() > deadline {
                return Err(StoreError::new(
                    ErrorKind::Systemic,
                    format!("table {} did not become ACTIVE within 5 minutes", self.table),
                ));
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    async fn apply(&self, change: &Change) -> Result<Applied, StoreError> {
        match change {
            Change::Create(notification) => {
                let item = serde_dynamo::to_item(FeedItem::from(notification)).map_err(|error| {
                    StoreError::new(
                        ErrorKind::Permanent,
                        format!("cannot map the notification: {error}"),
                    )
                })?;
                let put = self
                    .client
                    .put_item()
                    .table_name(&self.table)
                    .set_item(Some(item))
                    .condition_expression("attribute_not_exists(action_key)")
                    .send()
                    .await;
                match put {
                    Ok(_) => Ok(Applied::Created),
                    Err(SdkError::ServiceError(service))
                        if matches!(service.err(), PutItemError::ConditionalCheckFailedException(_)) =>
                    {
                        Ok(Applied::Duplicate)
                    }
                    Err(error) => Err(classify("PutItem", &self.table, &error)),
                }
            }
            Change::Remove { owner, action_key } => {
                let deleted = self
                    .client
                    .delete_item()
                    .table_name(&self.table)
                    .key("owner", AttributeValue::S(owner.to_string()))
                    .key("action_key", AttributeValue::S(action_key.to_string()))
                    .return_values(ReturnValue::AllOld)
                    .send()
                    .await
                    .map_err(|error| classify("DeleteItem", &self.table, &error))?;
                let existed = deleted.attributes().is_some_and(|old| !old.is_empty());
                Ok(if existed {
                    Applied::Removed
                } else {
                    Applied::Absent
                })
            }
        }
    }

    async fn probe(&self) -> Result<(), StoreError> {
        match self.table_active().await? {
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
            .map_err(|error| classify("Query", &self.table, &error))?;
        serde_dynamo::from_items(page.items().to_vec()).map_err(|error| {
            StoreError::new(
                ErrorKind::Permanent,
                format!("unexpected item in {}: {error}", self.table),
            )
        })
    }
}

/// The one place DynamoDB errors are sorted into [`ErrorKind`]s.
fn classify<E>(operation: &str, table: &str, error: &SdkError<E, HttpResponse>) -> StoreError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    let (kind, hint) = match error {
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            (ErrorKind::Transient, "")
        }
        SdkError::ConstructionFailure(_) => (
            ErrorKind::Systemic,
            " (check AWS_REGION and the AWS configuration)",
        ),
        _ => match error.code().unwrap_or_default() {
            "ProvisionedThroughputExceededException"
            | "ThrottlingException"
            | "RequestLimitExceeded"
            | "InternalServerError"
            | "ServiceUnavailable"
            | "TransactionConflictException" => (ErrorKind::Transient, ""),
            "ResourceNotFoundException" => (
                ErrorKind::Systemic,
                " (the table is missing: run `notification-worker setup` or check NOTIF_TABLE_NAME)",
            ),
            "AccessDeniedException"
            | "UnrecognizedClientException"
            | "InvalidSignatureException"
            | "MissingAuthenticationTokenException"
            | "ExpiredTokenException"
            | "IncompleteSignatureException" => (
                ErrorKind::Systemic,
                " (check the AWS credentials and the IAM policy)",
            ),
            // A key that does not fit the table's key schema or an index's key type fails
            // every item alike: the table is wrong, not the event. Dead-lettering would
            // empty the whole stream into the dead letters.
            "ValidationException" if mismatches_the_schema(error.message().unwrap_or_default()) => (
                ErrorKind::Systemic,
                " (the table's keys do not match: NOTIF_TABLE_NAME must have owner (S) HASH, \
                 action_key (S) RANGE and OwnerIndex on owner (S), created_at (S); see `notification-worker setup`)",
            ),
            "ValidationException" | "ItemCollectionSizeLimitExceededException" => (ErrorKind::Permanent, ""),
            // Unknown service errors: 5xx are the service's trouble, the rest are ours.
            _ if error
                .raw_response()
                .is_some_and(|raw| raw.status().is_server_error()) =>
            {
                (ErrorKind::Transient, "")
            }
            _ => (ErrorKind::Systemic, ""),
        },
    };
    let detail = match error.message() {
        Some(message) => format!("{}: {message}", error.code().unwrap_or("error")),
        None => aws_smithy_types::error::display::DisplayErrorContext(error).to_string(),
    };
    StoreError::new(kind, format!("dynamodb {operation} on {table}: {detail}{hint}"))
}

/// ValidationException messages that say the table's key schema or an index's key type is
/// not the one the worker writes (DynamoDB's and dynalite's wording).
fn mismatches_the_schema(message: &str) -> bool {
    [
        "Type mismatch for key",
        "Type mismatch for Index Key",
        "Missing the key",
        "The provided key element does not match the schema",
    ]
    .iter()
    .any(|sign| message.contains(sign))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_mismatches_are_told_from_item_refusals() {
        for message in [
            "One or more parameter values were invalid: Type mismatch for key action_key expected: N actual: S",
            "One or more parameter values were invalid: Type mismatch for Index Key created_at Expected: N Actual: S IndexName: OwnerIndex",
            "One or more parameter values were invalid: Missing the key pk in the item",
            "The provided key element does not match the schema",
        ] {
            assert!(mismatches_the_schema(message), "{message}");
        }
        assert!(!mismatches_the_schema(
            "Item size has exceeded the maximum allowed size"
        ));
    }
}
