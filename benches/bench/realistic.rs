//! The ceilings of realistic traffic (see `tests/support/traffic.rs`): minimal clients doing
//! exactly the store work the worker does for the same events, so that worker ÷ ceiling
//! compares like with like.

use super::ceilings::Rate;
use super::process;
use super::support::traffic::{self, Event};
use super::support::{Dynalite, NatsServer, create_stream};
use futures::StreamExt;
use notification_worker::domain::{FeedItem, Version};
use std::collections::HashMap;
use std::time::Instant;

/// Rows per transaction of the SQLite ceiling: the most the worker commits at once (it
/// commits whatever is waiting, up to 2,048 changes); fewer was slower ("SQLite settings").
const CEILING_COMMIT: usize = 2048;

/// The version of the `i`th event of a backlog (a stream created at a fixed moment).
fn version(i: usize) -> Version {
    Version::new(1_765_318_000_000_000, i as u64 + 1).expect("a valid epoch")
}

/// The SQLite settings a ceiling runs with; [`Settings::WORKER`] are the worker's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    /// `PRAGMA cache_size`, KiB.
    pub cache_kib: u32,
    /// `PRAGMA page_size`, bytes (set before the tables are made).
    pub page_size: u32,
    /// Changes per transaction.
    pub commit: usize,
    /// The notifications and tombstones tables `WITHOUT ROWID` (clustered on the key, the
    /// earlier layout) instead of rowid tables with the key as an index beside them.
    pub clustered: bool,
}

impl Settings {
    pub const WORKER: Settings = Settings {
        cache_kib: 8192,
        page_size: 4096,
        commit: CEILING_COMMIT,
        clustered: false,
    };
}

/// A minimal SQLite writer on the worker's own schema (made by the worker's `setup`) and
/// settings (WAL, `synchronous=FULL`, an 8 MiB page cache; 2,048 changes per transaction),
/// running for each event the
/// statements the worker runs: the key's life and tombstone read, then the insert, the version
/// raise (a repeat), or the tombstone upsert and delete (an unlike or unfollow). Everything a
/// row needs is formatted before the clock starts, as the worker formats off its writer thread.
pub async fn sqlite(events: &[Event]) -> Rate {
    sqlite_with(events, Settings::WORKER).await
}

/// [`sqlite`] with other `settings`: the worker's schema, read from a file its `setup` made,
/// made again in a fresh file under them.
pub async fn sqlite_with(events: &[Event], settings: Settings) -> Rate {
    use notification_worker::store::{NotificationStore, SqliteStore};
    let dir = tempfile::tempdir().unwrap();
    let template = dir.path().join("template.db");
    SqliteStore::open(&template).unwrap().setup().await.unwrap();
    let schema: Vec<String> = rusqlite::Connection::open(&template)
        .unwrap()
        .prepare("SELECT sql FROM sqlite_master WHERE sql IS NOT NULL ORDER BY rowid")
        .unwrap()
        .query_map([], |row| row.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let path = dir.path().join("ceiling.db");
    let mut connection = rusqlite::Connection::open(&path).unwrap();
    connection
        .execute_batch(&format!(
            "PRAGMA page_size = {}; PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA cache_size = -{};",
            settings.page_size, settings.cache_kib
        ))
        .unwrap();
    for statement in schema {
        let keyed = ["CREATE TABLE notifications", "CREATE TABLE tombstones"];
        let statement = if settings.clustered && keyed.iter().any(|table| statement.starts_with(table)) {
            format!("{statement} WITHOUT ROWID")
        } else {
            statement
        };
        connection.execute_batch(&statement).unwrap();
    }
    struct Row<'a> {
        event: &'a Event,
        key: String,
        id: String,
        created_at: String,
        version: String,
    }
    let rows: Vec<Row> = events
        .iter()
        .enumerate()
        .filter(|(_, event)| !event.is_own())
        .map(|(i, event)| Row {
            event,
            key: event.action_key(),
            id: uuid::Uuid::new_v4().to_string(),
            created_at: notification_worker::domain::Timestamp::from_unix(event.created_at)
                .map(|t| t.to_rfc3339())
                .unwrap_or_default(),
            version: version(i).to_text(),
        })
        .collect();
    let started = Instant::now();
    for chunk in rows.chunks(settings.commit) {
        let transaction = connection
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .unwrap();
        for row in chunk {
            let event = row.event;
            let life: Option<String> = transaction
                .prepare_cached(
                    "SELECT created_seq, version, id FROM notifications WHERE owner = ?1 AND action_key = ?2",
                )
                .unwrap()
                .query_row([&event.owner, &row.key], |r| r.get(2))
                .ok();
            let _tombstone: Option<String> = transaction
                .prepare_cached(
                    "SELECT version, ended_id, ended_created, ended_by FROM tombstones WHERE owner = ?1 AND action_key = ?2",
                )
                .unwrap()
                .query_row([&event.owner, &row.key], |r| r.get(0))
                .ok();
            if event.removes {
                transaction
                    .prepare_cached(
                        "INSERT INTO tombstones (owner, action_key, version, expires_at, ended_id, ended_created, ended_by)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, CASE WHEN ?5 IS NULL THEN NULL ELSE ?3 END)
                         ON CONFLICT (owner, action_key) DO UPDATE SET version = excluded.version,
                           expires_at = excluded.expires_at, ended_id = excluded.ended_id,
                           ended_created = excluded.ended_created, ended_by = excluded.ended_by",
                    )
                    .unwrap()
                    .execute(rusqlite::params![
                        event.owner,
                        row.key,
                        row.version,
                        event.created_at + 7 * 86_400,
                        life,
                        life.as_ref().map(|_| &row.version),
                    ])
                    .unwrap();
                if life.is_some() {
                    transaction
                        .prepare_cached("DELETE FROM notifications WHERE owner = ?1 AND action_key = ?2")
                        .unwrap()
                        .execute([&event.owner, &row.key])
                        .unwrap();
                }
            } else if life.is_some() {
                transaction
                    .prepare_cached(
                        "UPDATE notifications SET version = ?3 WHERE owner = ?1 AND action_key = ?2",
                    )
                    .unwrap()
                    .execute([&event.owner, &row.key, &row.version])
                    .unwrap();
            } else {
                transaction
                    .prepare_cached(
                        "INSERT OR REPLACE INTO notifications
                         (owner, action_key, id, userid, username, userpic, userbio, action, resource_type,
                          resource_id, excerpt, read_status, created_at, created_seq, version)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?14)",
                    )
                    .unwrap()
                    .execute(rusqlite::params![
                        event.owner,
                        row.key,
                        row.id,
                        event.trigger_user,
                        event.username(),
                        None::<String>,
                        None::<String>,
                        event.action,
                        event.resource_type,
                        event.resource_id,
                        event.excerpt,
                        false,
                        row.created_at,
                        row.version,
                    ])
                    .unwrap();
            }
        }
        transaction.commit().unwrap();
    }
    Rate {
        events: events.len(),
        took: started.elapsed(),
    }
}

/// A run of the minimal DynamoDB client: its rate and its own CPU.
pub struct ClientRun {
    pub rate: Rate,
    pub cpu_seconds: f64,
}

impl ClientRun {
    pub fn cpu_seconds_per_100k(&self) -> f64 {
        self.cpu_seconds * 100_000.0 / self.rate.events as f64
    }

    fn figures(&self) -> String {
        format!(
            "{:.0} events/s, {:.2} CPU s/100k",
            self.rate.per_second(),
            self.cpu_seconds_per_100k()
        )
    }
}

/// The event as the minimal client reads it from its message.
#[derive(serde::Deserialize)]
struct Body {
    owner: String,
    trigger_user: String,
    username: Option<String>,
    action: i64,
    resource_type: String,
    resource_id: String,
    excerpt: Option<String>,
}

/// A minimal DynamoDB client for the worker's job: it consumes the backlog from JetStream,
/// parses each event, makes the requests the worker makes for it, `concurrency` events at a
/// time, and acknowledges it. A create: a conditional PutItem of the worker's item and a
/// strongly consistent GetItem of the key's tombstone (a repeat, whose put is refused: the
/// life and tombstone read, and a conditional UpdateItem raising the version). An unlike or
/// unfollow: the tombstone's conditional UpdateItem, a conditional DeleteItem returning the old
/// item, and the UpdateItem that writes the ended life onto the tombstone. `endpoint` is
/// dynalite's port or a proxy's in front of it; the client runs in this process, whose CPU
/// (nothing else runs in it meanwhile) is its cost.
pub async fn dynamodb(events: &[Event], concurrency: usize, dynamo: &Dynalite, endpoint: u16) -> ClientRun {
    use async_nats::jetstream::consumer;
    use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue};
    use notification_worker::store::NotificationStore;
    let table = "ceiling";
    dynamo.store(table).await.setup().await.unwrap();
    let config = aws_sdk_dynamodb::config::Builder::from(&dynamo.sdk_config().await)
        .endpoint_url(format!("http://127.0.0.1:{endpoint}"))
        .build();
    let client = aws_sdk_dynamodb::Client::from_conf(config);
    let nats = NatsServer::start();
    let js = nats.jetstream().await;
    let stream = create_stream(&js).await;
    traffic::publish(&js, events).await;
    let consumer: consumer::PullConsumer = stream
        .create_consumer(consumer::pull::Config {
            durable_name: Some("ceiling".into()),
            ack_policy: consumer::AckPolicy::Explicit,
            max_ack_pending: 2048,
            ..Default::default()
        })
        .await
        .unwrap();
    let key = |owner: &str, action_key: &str| {
        HashMap::from([
            ("owner".to_owned(), AttributeValue::S(owner.to_owned())),
            ("action_key".to_owned(), AttributeValue::S(action_key.to_owned())),
        ])
    };
    let number = |v: Version| AttributeValue::N(v.to_number().to_string());
    let cpu_before = process::cost(std::process::id()).cpu_seconds;
    let started = Instant::now();
    let messages = consumer
        .stream()
        .max_messages_per_batch(1000)
        .messages()
        .await
        .unwrap();
    messages
        .take(events.len())
        .map(|message| {
            let client = client.clone();
            async move {
                let message = message.unwrap();
                let seq = message.info().unwrap().stream_sequence;
                let v = Version::new(1_765_318_000_000_000, seq).unwrap();
                let body: Body = serde_json::from_slice(&message.payload).unwrap();
                let removes = message.subject.contains(".un");
                let action_key = format!(
                    "{}#{}#{}#0001-01-01T00:00:00Z",
                    body.trigger_user, body.resource_id, body.action
                );
                let tombstone = key(&format!("{}#tombstone", body.owner), &action_key);
                // Nobody is notified of their own actions: no request at all.
                let own = body.owner == body.trigger_user;
                if own {
                    message.ack().await.unwrap();
                    return;
                }
                if removes {
                    let _ = client
                        .update_item()
                        .table_name(table)
                        .set_key(Some(tombstone.clone()))
                        .update_expression(
                            "SET #v = :v, #expires = :expires REMOVE #ended_id, #ended_created, #ended_by",
                        )
                        .condition_expression("attribute_not_exists(#v) OR #v < :v")
                        .expression_attribute_names("#v", "version")
                        .expression_attribute_names("#expires", "expires_at")
                        .expression_attribute_names("#ended_id", "ended_id")
                        .expression_attribute_names("#ended_created", "ended_created")
                        .expression_attribute_names("#ended_by", "ended_by")
                        .expression_attribute_values(":v", number(v))
                        .expression_attribute_values(":expires", AttributeValue::N("1766000000".into()))
                        .send()
                        .await;
                    let deleted = client
                        .delete_item()
                        .table_name(table)
                        .set_key(Some(key(&body.owner, &action_key)))
                        .condition_expression(
                            "attribute_exists(id) AND (attribute_not_exists(#v) OR #v < :v)",
                        )
                        .expression_attribute_names("#v", "version")
                        .expression_attribute_values(":v", number(v))
                        .return_values(ReturnValue::AllOld)
                        .send()
                        .await;
                    if let Some(old) = deleted.ok().and_then(|output| output.attributes) {
                        client
                            .update_item()
                            .table_name(table)
                            .set_key(Some(tombstone))
                            .update_expression(
                                "SET #ended_id = :id, #ended_created = :created, #ended_by = :v",
                            )
                            .condition_expression("#v = :v")
                            .expression_attribute_names("#v", "version")
                            .expression_attribute_names("#ended_id", "ended_id")
                            .expression_attribute_names("#ended_created", "ended_created")
                            .expression_attribute_names("#ended_by", "ended_by")
                            .expression_attribute_values(":v", number(v))
                            .expression_attribute_values(":id", old["id"].clone())
                            .expression_attribute_values(":created", old["created_seq"].clone())
                            .send()
                            .await
                            // Refused when a newer remove of the key got there first, as in
                            // the worker.
                            .ok();
                    }
                } else {
                    let item = FeedItem {
                        owner: body.owner.clone(),
                        action_key: action_key.clone(),
                        id: uuid::Uuid::new_v4().to_string(),
                        userid: body.trigger_user,
                        username: body.username,
                        userpic: None,
                        userbio: None,
                        action: body.action,
                        resource_type: body.resource_type,
                        resource_id: body.resource_id,
                        excerpt: body.excerpt,
                        read_status: false,
                        created_at: "2025-12-09T22:06:40Z".into(),
                        actor_count: None,
                        actors: None,
                    };
                    let mut item: HashMap<String, AttributeValue> = serde_dynamo::to_item(item).unwrap();
                    item.insert("created_seq".into(), number(v));
                    item.insert("version".into(), number(v));
                    let put = client
                        .put_item()
                        .table_name(table)
                        .set_item(Some(item))
                        .condition_expression("attribute_not_exists(id)")
                        .send()
                        .await;
                    let get = |item_key: HashMap<String, AttributeValue>| {
                        client
                            .get_item()
                            .table_name(table)
                            .set_key(Some(item_key))
                            .consistent_read(true)
                            .projection_expression("#v")
                            .expression_attribute_names("#v", "version")
                            .send()
                    };
                    if put.is_err() {
                        // A repeat: read the life, then raise its version.
                        get(key(&body.owner, &action_key)).await.unwrap();
                        get(tombstone).await.unwrap();
                        client
                            .update_item()
                            .table_name(table)
                            .set_key(Some(key(&body.owner, &action_key)))
                            .update_expression("SET #v = :new")
                            .condition_expression("attribute_exists(id) AND #v < :new")
                            .expression_attribute_names("#v", "version")
                            .expression_attribute_values(":new", number(v))
                            .send()
                            .await
                            .ok();
                    } else {
                        get(tombstone).await.unwrap();
                    }
                }
                message.ack().await.unwrap();
            }
        })
        .buffer_unordered(concurrency)
        .collect::<Vec<()>>()
        .await;
    nats.client().await.flush().await.unwrap();
    let took = started.elapsed();
    ClientRun {
        rate: Rate {
            events: events.len(),
            took,
        },
        cpu_seconds: process::cost(std::process::id()).cpu_seconds - cpu_before,
    }
}

/// The SQLite settings tried against the worker's, each on the realistic ceiling.
pub async fn try_settings(sizes: &super::Sizes) {
    let events = traffic::realistic(sizes.sqlite_drain);
    let worker = Settings::WORKER;
    let tries = [
        (
            "the worker's: rowid tables, 8 MiB cache, 4 KiB pages, 2,048 per commit",
            worker,
        ),
        (
            "cache 2 MiB (SQLite's default)",
            Settings {
                cache_kib: 2048,
                ..worker
            },
        ),
        (
            "cache 32 MiB",
            Settings {
                cache_kib: 32768,
                ..worker
            },
        ),
        (
            "pages 8 KiB",
            Settings {
                page_size: 8192,
                ..worker
            },
        ),
        (
            "pages 16 KiB",
            Settings {
                page_size: 16384,
                ..worker
            },
        ),
        (
            "pages 1 KiB",
            Settings {
                page_size: 1024,
                ..worker
            },
        ),
        (
            "250 per commit",
            Settings {
                commit: 250,
                ..worker
            },
        ),
        (
            "1,000 per commit",
            Settings {
                commit: 1000,
                ..worker
            },
        ),
        (
            "clustered on the key (WITHOUT ROWID, the earlier layout)",
            Settings {
                clustered: true,
                ..worker
            },
        ),
    ];
    let mut rates: Vec<Vec<f64>> = vec![Vec::new(); tries.len()];
    for round in 1..=super::REPEATS {
        for ((what, settings), rates) in tries.iter().zip(&mut rates) {
            let rate = sqlite_with(&events, *settings).await.per_second();
            eprintln!("round {round}: {what}: {rate:.0} events/s");
            rates.push(rate);
        }
    }
    let base = median(rates[0].clone());
    eprintln!(
        "\n| SQLite settings ({} realistic events) | events/s, median (each round) | vs the worker's |",
        events.len()
    );
    eprintln!("|---|---|---|");
    for ((what, _), rates) in tries.iter().zip(&rates) {
        let m = median(rates.clone());
        let each: Vec<String> = rates.iter().map(|r| format!("{r:.0}")).collect();
        eprintln!("| {what} | {m:.0} ({}) | {:.2} |", each.join(" · "), m / base);
    }
}

/// The concurrencies of the runs through the delaying proxy.
pub const DELAYED_CONCURRENCY: [usize; 3] = [16, 64, 256];

/// The main rows' measurements, [`super::REPEATS`] rounds of each, alternating.
#[derive(Default)]
pub struct Figures {
    pub jetstream_ceiling: Vec<Rate>,
    pub sqlite_ceiling: Vec<Rate>,
    pub sqlite_drain: Vec<super::runs::Drain>,
    pub dynamodb_client: Vec<ClientRun>,
    pub dynamodb_drain: Vec<super::runs::Drain>,
    /// Per concurrency of [`DELAYED_CONCURRENCY`]: the client's runs and the worker's.
    pub delayed: Vec<(usize, Vec<ClientRun>, Vec<super::runs::Drain>)>,
}

/// Runs every measurement of realistic traffic, round after round; `step` says what starts.
pub async fn measure(sizes: &super::Sizes, step: &dyn Fn(&str)) -> Figures {
    use super::runs::{self, Backlog, Delivery, Store};
    let sqlite_events = traffic::realistic(sizes.sqlite_drain);
    let dynamodb_events = traffic::realistic(sizes.dynamodb_drain);
    let delayed_events = traffic::realistic(sizes.delayed);
    let mut figures = Figures {
        delayed: DELAYED_CONCURRENCY
            .iter()
            .map(|&c| (c, Vec::new(), Vec::new()))
            .collect(),
        ..Figures::default()
    };
    for round in 1..=super::REPEATS {
        let at = |what: &str| step(&format!("round {round}/{}: realistic: {what}", super::REPEATS));
        at("ceiling: JetStream consume + ack");
        let ceiling = super::ceilings::jetstream_of(sqlite_events.len(), true).await;
        eprintln!("  {:.0} events/s", ceiling.per_second());
        figures.jetstream_ceiling.push(ceiling);
        at("ceiling: minimal SQLite writer, the worker's statements");
        let ceiling = sqlite(&sqlite_events).await;
        eprintln!("  {:.0} events/s", ceiling.per_second());
        figures.sqlite_ceiling.push(ceiling);
        at("worker: SQLite drain");
        let drain = runs::drain_of(
            Store::Sqlite,
            sqlite_events.len(),
            Backlog::Realistic,
            64,
            Delivery::Off,
        )
        .await;
        eprintln!("  {}", drain.figures());
        figures.sqlite_drain.push(drain);
        at("minimal DynamoDB client, the worker's requests, 64 in flight");
        let dynamo = Dynalite::start();
        let client = dynamodb(&dynamodb_events, 64, &dynamo, dynamo.port).await;
        eprintln!("  {}", client.figures());
        figures.dynamodb_client.push(client);
        drop(dynamo);
        at("worker: DynamoDB drain, WORKER_CONCURRENCY=64");
        let drain = runs::drain_of(
            Store::DynamoDb,
            dynamodb_events.len(),
            Backlog::Realistic,
            64,
            Delivery::Off,
        )
        .await;
        eprintln!("  {}", drain.figures());
        figures.dynamodb_drain.push(drain);
        for (concurrency, clients, drains) in &mut figures.delayed {
            at(&format!(
                "DynamoDB {:?} each way, minimal client then worker at {concurrency}",
                super::runs::NETWORK_DELAY
            ));
            let dynamo = Dynalite::start();
            let proxy =
                super::support::delay_proxy::DelayProxy::start(dynamo.port, super::runs::NETWORK_DELAY);
            let client = dynamodb(&delayed_events, *concurrency, &dynamo, proxy.port).await;
            eprintln!("  client {}", client.figures());
            clients.push(client);
            drop((proxy, dynamo));
            let drain = runs::drain_of(
                Store::DynamoDbDelayed,
                delayed_events.len(),
                Backlog::Realistic,
                *concurrency,
                Delivery::Off,
            )
            .await;
            eprintln!("  worker {}", drain.figures());
            drains.push(drain);
        }
    }
    figures
}

/// The median of `values`.
fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

impl Figures {
    /// The main rows as markdown: rates, ratios and CPU, medians of the rounds (each round's
    /// figures in brackets, for the spread).
    pub fn markdown(&self, shape: &traffic::Shape) -> String {
        use std::fmt::Write;
        let rounds = |values: &[f64]| {
            values
                .iter()
                .map(|v| format!("{v:.0}"))
                .collect::<Vec<_>>()
                .join(" · ")
        };
        let mut out = String::new();
        let _ = writeln!(
            out,
            "Realistic traffic ({} events: {} owners of 100,000, the most popular with {} events; {} unlikes and unfollows, {} repeats; {}). No delivery stage runs during these measurements (no channel configured). Medians of {} rounds, each round's figures in brackets.\n",
            shape.events,
            shape.owners,
            shape.top_owner_events,
            shape.undos,
            shape.repeats,
            shape
                .by_subject
                .iter()
                .map(|(subject, n)| format!("{} {n}", subject.trim_start_matches("notifications.")))
                .collect::<Vec<_>>()
                .join(", "),
            super::REPEATS
        );
        let _ = writeln!(out, "| measure | result | ceiling (same run) | ratio | goal |");
        let _ = writeln!(out, "|---|---|---|---|---|");
        let jetstream: Vec<f64> = self.jetstream_ceiling.iter().map(Rate::per_second).collect();
        let jetstream_ceiling = median(jetstream.clone());
        let _ = writeln!(
            out,
            "| JetStream ceiling: consume + ack (minimal client) | {jetstream_ceiling:.0} msg/s ({}) | | | |",
            rounds(&jetstream)
        );
        let ceiling: Vec<f64> = self.sqlite_ceiling.iter().map(Rate::per_second).collect();
        let drain: Vec<f64> = self.sqlite_drain.iter().map(|d| d.events_per_second()).collect();
        let (c, d) = (median(ceiling.clone()), median(drain.clone()));
        let lower = c.min(jetstream_ceiling);
        let _ = writeln!(
            out,
            "| SQLite ceiling: minimal writer, the worker's schema, statements and `synchronous=FULL`, {} rows/transaction | {c:.0} events/s ({}) | | | |",
            CEILING_COMMIT,
            rounds(&ceiling)
        );
        let _ = writeln!(
            out,
            "| worker drain, SQLite, WORKER_CONCURRENCY=64 | {d:.0} events/s ({}); {:.2} CPU s/100k | {lower:.0} (lower of this and JetStream's) | {:.2} | >= 0.80 |",
            rounds(&drain),
            median(
                self.sqlite_drain
                    .iter()
                    .map(|d| d.cpu_seconds_per_100k())
                    .collect()
            ),
            d / lower
        );
        let client: Vec<f64> = self.dynamodb_client.iter().map(|r| r.rate.per_second()).collect();
        let drain: Vec<f64> = self
            .dynamodb_drain
            .iter()
            .map(|d| d.events_per_second())
            .collect();
        let client_cpu = median(
            self.dynamodb_client
                .iter()
                .map(ClientRun::cpu_seconds_per_100k)
                .collect(),
        );
        let drain_cpu = median(
            self.dynamodb_drain
                .iter()
                .map(|d| d.cpu_seconds_per_100k())
                .collect(),
        );
        let _ = writeln!(
            out,
            "| DynamoDB (dynalite) minimal client: consume, parse, the worker's requests, ack; 64 in flight | {:.0} events/s ({}); {client_cpu:.2} CPU s/100k | | | |",
            median(client.clone()),
            rounds(&client)
        );
        let _ = writeln!(
            out,
            "| worker drain, DynamoDB, WORKER_CONCURRENCY=64 | {:.0} events/s ({}); {drain_cpu:.2} CPU s/100k | {client_cpu:.2} CPU s/100k | CPU {:.2}x | CPU <= 1.3x |",
            median(drain.clone()),
            rounds(&drain),
            drain_cpu / client_cpu
        );
        for (concurrency, clients, drains) in &self.delayed {
            let client: Vec<f64> = clients.iter().map(|r| r.rate.per_second()).collect();
            let drain: Vec<f64> = drains.iter().map(|d| d.events_per_second()).collect();
            let (c, d) = (median(client.clone()), median(drain.clone()));
            let _ = writeln!(
                out,
                "| DynamoDB {} ms each way (delaying proxy), concurrency {concurrency}: worker ({} events) | {d:.0} events/s ({}) | minimal client {c:.0} events/s ({}) | {:.2} | >= 0.90 |",
                super::runs::NETWORK_DELAY.as_millis(),
                drains.first().map_or(0, |d| d.rate.events),
                rounds(&drain),
                rounds(&client),
                d / c
            );
        }
        out
    }
}
