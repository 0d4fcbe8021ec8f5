//! The recipient directory in DynamoDB: its own table (`NOTIF_RECIPIENTS_TABLE`, key
//! `owner` (S), pay-per-request like the notifications table), one item per owner.
//!
//! A write is a whole-item PutItem conditioned on the revision read (or on no item for a
//! new record): DynamoDB checks the condition and writes atomically, so of two replicas
//! that read the same revision exactly one writes, and the other merges again.

use super::StoreError;
use super::dynamodb::{DynamoDbSettings, sdk_config};
use super::dynamodb_error::{classify, endpoint_of};
use super::dynamodb_table::{Table, client_without_retries};
use super::recipients::{RecipientStore, Revised, damaged};
use crate::domain::Id;
use crate::recipients::Recipient;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::config::http::HttpResponse;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::create_table::builders::CreateTableFluentBuilder;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
};

/// The whole versioned record ([`Recipient::to_stored`]), the only attribute read back.
/// `email` and `locale` repeat its current values as plain attributes for people looking
/// at the table in the console; nothing reads them.
const RECORD: &str = "record";
const REVISION: &str = "revision";

#[derive(Clone)]
pub struct DynamoDbRecipientStore {
    client: Client,
    table: String,
    /// Where requests go, named in errors.
    endpoint: String,
}

impl DynamoDbRecipientStore {
    /// A client from the standard AWS chain, as the notification store builds it.
    pub async fn connect(settings: &DynamoDbSettings) -> DynamoDbRecipientStore {
        DynamoDbRecipientStore::with_config(&sdk_config(&settings.region).await, &settings.recipients_table)
    }

    /// A store on a client configured elsewhere (tests point it at a local endpoint).
    pub fn with_config(sdk_config: &aws_config::SdkConfig, table: &str) -> DynamoDbRecipientStore {
        // The merge loop and the worker retry, not the SDK.
        DynamoDbRecipientStore {
            endpoint: endpoint_of(sdk_config),
            client: client_without_retries(sdk_config),
            table: table.to_owned(),
        }
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    fn failed<E>(&self, operation: &str, error: &SdkError<E, HttpResponse>) -> StoreError
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
    {
        classify(operation, &self.table, &self.endpoint, error)
    }

    /// The table: key `owner`, one item per recipient.
    fn create_table(&self) -> CreateTableFluentBuilder {
        self.client
            .create_table()
            .billing_mode(BillingMode::PayPerRequest)
            .key_schema(
                KeySchemaElement::builder()
                    .attribute_name("owner")
                    .key_type(KeyType::Hash)
                    .build()
                    .expect("name and type set"),
            )
            .attribute_definitions(
                AttributeDefinition::builder()
                    .attribute_name("owner")
                    .attribute_type(ScalarAttributeType::S)
                    .build()
                    .expect("name and type set"),
            )
    }
}

impl RecipientStore for DynamoDbRecipientStore {
    async fn setup(&self) -> Result<(), StoreError> {
        let table = Table {
            client: &self.client,
            name: &self.table,
            endpoint: &self.endpoint,
        };
        table
            .ensure("for the recipient directory", self.create_table())
            .await
    }

    async fn read(&self, owner: &Id) -> Result<Option<Revised>, StoreError> {
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("owner", AttributeValue::S(owner.to_string()))
            .consistent_read(true)
            .send()
            .await
            .map_err(|error| self.failed("GetItem", &error))?;
        let Some(item) = output.item() else {
            return Ok(None);
        };
        let text = match item.get(RECORD) {
            Some(AttributeValue::S(text)) => text,
            _ => {
                return Err(damaged(
                    owner,
                    &self.table,
                    format!("no string attribute {RECORD}"),
                ));
            }
        };
        let revision = match item.get(REVISION) {
            Some(AttributeValue::N(number)) => number.parse::<u64>().ok(),
            _ => None,
        }
        .ok_or_else(|| {
            damaged(
                owner,
                &self.table,
                format!("no whole number attribute {REVISION}"),
            )
        })?;
        let record = Recipient::from_stored(owner.clone(), text)
            .map_err(|problem| damaged(owner, &self.table, problem))?;
        Ok(Some(Revised { record, revision }))
    }

    async fn write_if(&self, record: &Recipient, expected: Option<u64>) -> Result<bool, StoreError> {
        let next = expected.map_or(1, |revision| revision + 1);
        let mut put = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("owner", AttributeValue::S(record.owner().to_string()))
            .item(RECORD, AttributeValue::S(record.to_stored()))
            .item(REVISION, AttributeValue::N(next.to_string()));
        if let Some(email) = record.email() {
            put = put.item("email", AttributeValue::S(email.to_string()));
        }
        if let Some(locale) = record.locale() {
            put = put.item("locale", AttributeValue::S(locale.as_str().to_owned()));
        }
        put = match expected {
            None => put
                .condition_expression("attribute_not_exists(#owner)")
                .expression_attribute_names("#owner", "owner"),
            Some(revision) => put
                .condition_expression("#revision = :revision")
                .expression_attribute_names("#revision", REVISION)
                .expression_attribute_values(":revision", AttributeValue::N(revision.to_string())),
        };
        match put.send().await {
            Ok(_) => Ok(true),
            Err(error) if error.code() == Some("ConditionalCheckFailedException") => Ok(false),
            Err(error) => Err(self.failed("PutItem", &error)),
        }
    }
}
