//! Direct access to a store's data, the way the existing API and the first version see it:
//! for tests that play those parts (mark read, legacy rows) or check what a client's query
//! returns, and for the half of a remove that writes its tombstone before it deletes.

use aws_sdk_dynamodb::types::AttributeValue;
use notification_worker::domain::{FeedItem, Version};
use std::collections::HashMap;
use std::path::PathBuf;

pub enum RawStore {
    Sqlite(PathBuf),
    DynamoDb {
        client: aws_sdk_dynamodb::Client,
        table: String,
    },
}

fn s(value: &str) -> AttributeValue {
    AttributeValue::S(value.to_owned())
}

/// Writes `item` as it is, unconditionally (as another writer or an old release would).
async fn put(client: &aws_sdk_dynamodb::Client, table: &str, item: HashMap<String, AttributeValue>) {
    client
        .put_item()
        .table_name(table)
        .set_item(Some(item))
        .send()
        .await
        .unwrap();
}

fn key(owner: &str, action_key: &str) -> HashMap<String, AttributeValue> {
    HashMap::from([
        ("owner".to_owned(), s(owner)),
        ("action_key".to_owned(), s(action_key)),
    ])
}

impl RawStore {
    pub async fn dynamodb(server: &super::Dynalite, table: &str) -> RawStore {
        RawStore::DynamoDb {
            client: aws_sdk_dynamodb::Client::new(&server.sdk_config().await),
            table: table.to_owned(),
        }
    }

    fn sqlite(path: &PathBuf) -> rusqlite::Connection {
        let connection = rusqlite::Connection::open(path).unwrap();
        connection
            .busy_timeout(std::time::Duration::from_secs(5))
            .unwrap();
        connection
    }

    /// What the API does when a user opens a notification: `SET read_status = true`
    /// conditioned on `attribute_exists(id)`. False when there was nothing to mark.
    pub async fn mark_read(&self, owner: &str, action_key: &str) -> bool {
        match self {
            RawStore::Sqlite(path) => {
                RawStore::sqlite(path)
                    .execute(
                        "UPDATE notifications SET read_status = 1 WHERE owner = ?1 AND action_key = ?2",
                        [owner, action_key],
                    )
                    .unwrap()
                    == 1
            }
            RawStore::DynamoDb { client, table } => {
                let updated = client
                    .update_item()
                    .table_name(table)
                    .set_key(Some(key(owner, action_key)))
                    .update_expression("SET read_status = :t")
                    .condition_expression("attribute_exists(id)")
                    .expression_attribute_values(":t", AttributeValue::Bool(true))
                    .send()
                    .await;
                match updated {
                    Ok(_) => true,
                    Err(error) if format!("{error:?}").contains("ConditionalCheckFailed") => false,
                    Err(error) => panic!("{error:?}"),
                }
            }
        }
    }

    /// The first step of a remove alone: its tombstone, without its delete (a worker that
    /// stopped between the two, or a remove still on its way to the delete).
    pub async fn write_tombstone(&self, owner: &str, action_key: &str, version: Version) {
        match self {
            RawStore::Sqlite(path) => {
                RawStore::sqlite(path)
                    .execute(
                        "INSERT OR REPLACE INTO tombstones (owner, action_key, version, expires_at) VALUES (?1, ?2, ?3, ?4)",
                        rusqlite::params![owner, action_key, version.to_text(), i64::MAX],
                    )
                    .unwrap();
            }
            RawStore::DynamoDb { client, table } => {
                let mut item = key(&format!("{owner}#tombstone"), action_key);
                item.insert("version".into(), AttributeValue::N(version.to_string()));
                put(client, table, item).await;
            }
        }
    }

    /// The id of the life the key's tombstone remembers ending, if any.
    pub async fn tombstone_ended_id(&self, owner: &str, action_key: &str) -> Option<String> {
        match self {
            RawStore::Sqlite(path) => RawStore::sqlite(path)
                .query_row(
                    "SELECT ended_id FROM tombstones WHERE owner = ?1 AND action_key = ?2",
                    [owner, action_key],
                    |row| row.get(0),
                )
                .unwrap(),
            RawStore::DynamoDb { client, table } => client
                .get_item()
                .table_name(table)
                .set_key(Some(key(&format!("{owner}#tombstone"), action_key)))
                .consistent_read(true)
                .send()
                .await
                .unwrap()
                .item()
                .and_then(|item| item.get("ended_id"))
                .map(|id| id.as_s().unwrap().clone()),
        }
    }

    /// A row as the first version wrote it: no version attributes.
    pub async fn insert_legacy(&self, item: &FeedItem) {
        match self {
            RawStore::Sqlite(path) => {
                RawStore::sqlite(path)
                    .execute(
                        "INSERT INTO notifications (owner, action_key, id, userid, action, resource_type, resource_id, read_status, created_at)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                        rusqlite::params![
                            item.owner,
                            item.action_key,
                            item.id,
                            item.userid,
                            item.action,
                            item.resource_type,
                            item.resource_id,
                            item.read_status,
                            item.created_at
                        ],
                    )
                    .unwrap();
            }
            RawStore::DynamoDb { client, table } => {
                let item: HashMap<String, AttributeValue> = serde_dynamo::to_item(item).unwrap();
                put(client, table, item).await;
            }
        }
    }

    /// What a client's queries by owner return — the base table and, for DynamoDB, also
    /// `OwnerIndex` — each decoded as the client does, with all 13 attributes (a partial
    /// item fails the test).
    pub async fn client_queries(&self, owner: &str) -> Vec<Vec<FeedItem>> {
        match self {
            RawStore::Sqlite(path) => {
                let connection = RawStore::sqlite(path);
                let mut statement = connection
                    .prepare(
                        "SELECT owner, action_key, id, userid, username, userpic, userbio, action, resource_type,
                                resource_id, excerpt, read_status, created_at FROM notifications WHERE owner = ?1",
                    )
                    .unwrap();
                let rows = statement
                    .query_map([owner], |row| {
                        Ok(FeedItem {
                            owner: row.get(0)?,
                            action_key: row.get(1)?,
                            id: row.get(2)?,
                            userid: row.get(3)?,
                            username: row.get(4)?,
                            userpic: row.get(5)?,
                            userbio: row.get(6)?,
                            action: row.get(7)?,
                            resource_type: row.get(8)?,
                            resource_id: row.get(9)?,
                            excerpt: row.get(10)?,
                            read_status: row.get(11)?,
                            created_at: row.get(12)?,
                            actor_count: None,
                            actors: None,
                        })
                    })
                    .unwrap()
                    .collect::<Result<Vec<_>, _>>()
                    .unwrap();
                vec![rows]
            }
            RawStore::DynamoDb { client, table } => {
                let mut results = Vec::new();
                for index in [None, Some("OwnerIndex")] {
                    let page = client
                        .query()
                        .table_name(table)
                        .set_index_name(index.map(str::to_owned))
                        .key_condition_expression("#o = :o")
                        .expression_attribute_names("#o", "owner")
                        .expression_attribute_values(":o", s(owner))
                        .send()
                        .await
                        .unwrap();
                    let items: Vec<FeedItem> = serde_dynamo::from_items(page.items().to_vec())
                        .expect("every item a client reads decodes with its 13 attributes");
                    results.push(items);
                }
                results
            }
        }
    }

    /// An item with the key but no `id`: what an unconditioned API update of a deleted
    /// notification would leave. DynamoDB only (SQLite's `id` is NOT NULL).
    pub async fn insert_without_id(&self, owner: &str, action_key: &str) {
        let RawStore::DynamoDb { client, table } = self else {
            panic!("DynamoDB only")
        };
        let mut item = key(owner, action_key);
        item.insert("read_status".into(), AttributeValue::Bool(true));
        put(client, table, item).await;
    }
}
