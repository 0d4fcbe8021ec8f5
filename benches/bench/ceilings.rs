//! The physical ceilings, each measured with a minimal client in the same run, so that the
//! worker's figures can be read as ratios on whatever machine runs this.

use super::support::{Dynalite, NatsServer, create_stream, like, publish_backlog};
use futures::StreamExt;
use std::time::{Duration, Instant};

/// Events per second of a measured run.
#[derive(Debug, Clone, Copy)]
pub struct Rate {
    pub events: usize,
    pub took: Duration,
}

impl Rate {
    pub fn per_second(&self) -> f64 {
        self.events as f64 / self.took.as_secs_f64()
    }
}

/// A JetStream pull consumer that only acknowledges, on a pre-published backlog.
pub async fn jetstream(events: usize) -> Rate {
    jetstream_of(events, false).await
}

/// [`jetstream`] on the narrow backlog, or on `realistic` traffic (several subjects, bodies
/// of several sizes).
pub async fn jetstream_of(events: usize, realistic: bool) -> Rate {
    use async_nats::jetstream::consumer;
    let nats = NatsServer::start();
    let js = nats.jetstream().await;
    let stream = create_stream(&js).await;
    if realistic {
        super::support::traffic::publish(&js, &super::support::traffic::realistic(events)).await;
    } else {
        publish_backlog(&js, events).await;
    }
    let consumer: consumer::PullConsumer = stream
        .create_consumer(consumer::pull::Config {
            durable_name: Some("ceiling".into()),
            ack_policy: consumer::AckPolicy::Explicit,
            max_ack_pending: 20_000,
            ..Default::default()
        })
        .await
        .unwrap();
    let started = Instant::now();
    let mut messages = consumer
        .stream()
        .max_messages_per_batch(1000)
        .messages()
        .await
        .unwrap();
    let mut received = 0;
    while received < events {
        let message = messages.next().await.unwrap().unwrap();
        message.ack().await.unwrap();
        received += 1;
    }
    nats.client().await.flush().await.unwrap();
    Rate {
        events,
        took: started.elapsed(),
    }
}

/// A minimal SQLite writer: the worker's schema, WAL, synchronous=NORMAL, 1,000 rows per
/// transaction, on the same file system as the worker's database.
pub fn sqlite(events: usize) -> Rate {
    let dir = tempfile::tempdir().unwrap();
    let connection = rusqlite::Connection::open(dir.path().join("ceiling.db")).unwrap();
    connection
        .execute_batch(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;
             CREATE TABLE notifications (owner TEXT NOT NULL, action_key TEXT NOT NULL, id TEXT NOT NULL,
               userid TEXT NOT NULL, username TEXT, userpic TEXT, userbio TEXT, action INTEGER NOT NULL,
               resource_type TEXT NOT NULL, resource_id TEXT NOT NULL, excerpt TEXT,
               read_status INTEGER NOT NULL DEFAULT 0, created_at TEXT NOT NULL,
               PRIMARY KEY (owner, action_key)) WITHOUT ROWID;
             CREATE INDEX notifications_owner_created_at ON notifications (owner, created_at);",
        )
        .unwrap();
    let mut connection = connection;
    let started = Instant::now();
    for chunk in (0..events).collect::<Vec<_>>().chunks(1000) {
        let transaction = connection.transaction().unwrap();
        {
            let mut insert = transaction
                .prepare_cached(
                    "INSERT INTO notifications VALUES (?1, ?2, ?3, ?4, ?5, NULL, NULL, 1, 'POST', 'post-1', NULL, 0, ?6)
                     ON CONFLICT (owner, action_key) DO NOTHING",
                )
                .unwrap();
            for i in chunk {
                insert
                    .execute(rusqlite::params![
                        format!("owner-{}", i % 97),
                        format!("fan-{i}#post-1#1#0001-01-01T00:00:00Z"),
                        uuid::Uuid::new_v4().to_string(),
                        format!("fan-{i}"),
                        "Test User",
                        "2025-12-09T22:06:40Z",
                    ])
                    .unwrap();
            }
        }
        transaction.commit().unwrap();
    }
    Rate {
        events,
        took: started.elapsed(),
    }
}

/// Conditional PutItem (the worker's create) at `concurrency` requests in flight.
pub async fn dynamodb(events: usize, concurrency: usize) -> Rate {
    use aws_sdk_dynamodb::types::AttributeValue;
    use notification_worker::store::NotificationStore;
    let dynamo = Dynalite::start();
    dynamo.store("ceiling").await.setup().await.unwrap();
    let client = aws_sdk_dynamodb::Client::new(&dynamo.sdk_config().await);
    let started = Instant::now();
    futures::stream::iter(0..events)
        .map(|i| {
            let client = client.clone();
            async move {
                client
                    .put_item()
                    .table_name("ceiling")
                    .item("owner", AttributeValue::S(format!("owner-{}", i % 97)))
                    .item(
                        "action_key",
                        AttributeValue::S(format!("fan-{i}#post-1#1#0001-01-01T00:00:00Z")),
                    )
                    .item("created_at", AttributeValue::S("2025-12-09T22:06:40Z".into()))
                    .item(
                        "body",
                        AttributeValue::S(like("owner", &format!("fan-{i}"), "post-1")),
                    )
                    .condition_expression("attribute_not_exists(action_key)")
                    .send()
                    .await
                    .unwrap();
            }
        })
        .buffer_unordered(concurrency)
        .collect::<Vec<()>>()
        .await;
    Rate {
        events,
        took: started.elapsed(),
    }
}
