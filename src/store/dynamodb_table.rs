//! What the notification and recipient stores do alike with their DynamoDB tables: a client
//! that leaves retries to the worker, and creating a table then waiting until it is usable.

use super::dynamodb_error::classify;
use super::{ErrorKind, StoreError};
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::ProvideErrorMetadata;
use aws_sdk_dynamodb::operation::create_table::builders::CreateTableFluentBuilder;
use aws_sdk_dynamodb::types::{IndexStatus, TableStatus};
use std::time::Duration;

/// A client without retries inside the SDK: the worker retries with its own backoff, and a
/// conditional write retried after a lost answer would fail its own condition, so each
/// store must see every failure itself.
pub(super) fn client_without_retries(sdk_config: &aws_config::SdkConfig) -> Client {
    let config = aws_sdk_dynamodb::config::Builder::from(sdk_config)
        .retry_config(aws_config::retry::RetryConfig::disabled())
        .build();
    Client::from_conf(config)
}

/// A store's table, named in errors with the endpoint requests go to.
pub(super) struct Table<'a> {
    pub client: &'a Client,
    pub name: &'a str,
    pub endpoint: &'a str,
}

impl Table<'_> {
    /// Ok(Some(true)) when the table and its indexes are ACTIVE, Ok(None) when absent.
    pub async fn active(&self) -> Result<Option<bool>, StoreError> {
        match self.client.describe_table().table_name(self.name).send().await {
            Ok(output) => Ok(output.table().map(|table| {
                table.table_status() == Some(&TableStatus::Active)
                    && table
                        .global_secondary_indexes()
                        .iter()
                        .all(|index| index.index_status() == Some(&IndexStatus::Active))
            })),
            Err(error) if error.code() == Some("ResourceNotFoundException") => Ok(None),
            Err(error) => Err(classify("DescribeTable", self.name, self.endpoint, &error)),
        }
    }

    /// Creates the table with `create` when absent (`what` says what for, in the log) and
    /// waits until it is usable: a new table takes a moment (seconds on AWS).
    pub async fn ensure(&self, what: &str, create: CreateTableFluentBuilder) -> Result<(), StoreError> {
        if self.active().await?.is_none() {
            tracing::info!(table = %self.name, "creating DynamoDB table {what}");
            match create.table_name(self.name).send().await {
                Ok(_) => {}
                // Another replica created it first: fine.
                Err(error) if error.code() == Some("ResourceInUseException") => {}
                Err(error) => return Err(classify("CreateTable", self.name, self.endpoint, &error)),
            }
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(300);
        while self.active().await? != Some(true) {
            if tokio::time::Instant::now() > deadline {
                return Err(StoreError::new(
                    ErrorKind::Systemic,
                    format!("table {} did not become ACTIVE within 5 minutes", self.name),
                ));
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        Ok(())
    }
}
