//! `AGGREGATE=post.like` end to end, in both stores, through two replicas on one consumer:
//! likes of one post fold into one notification whose `actor_count` and `actors` match the
//! events applied in stream order, realtime clients get one `new-notification` for it and
//! `notification-updated` after, `feed` shows it as one line, and once the owner read it the
//! next like starts another while the read one stays as the owner saw it.

mod support;

use notification_worker::domain::FeedItem;
use std::collections::HashMap;
use std::time::Duration;
use support::raw::RawStore;
use support::realtime::{Realtime, wait_until_delivered};
use support::*;

const WITHIN: Duration = Duration::from_secs(180);
const OWNER: &str = "author-1";
const POST: &str = "post-1";
const LIKE: &str = "notifications.post.like";
const UNLIKE: &str = "notifications.post.unlike";

fn fan(i: usize) -> String {
    format!("fan-{i:02}")
}

/// A like (or, by subject, an unlike) of the post by fan `i`, who has a display name and a
/// time of their own so that the aggregate's fields show whose like they describe.
fn like_by(i: usize) -> String {
    format!(
        r#"{{"owner":"{OWNER}","trigger_user":"{}","username":"Fan {i}","action":1,"resource_type":"POST","resource_id":"{POST}","created_at":{}}}"#,
        fan(i),
        1_765_318_000 + i
    )
}

/// Where the two replicas store: the SQLite file they share, or a table in dynalite.
enum Store {
    Sqlite,
    DynamoDb(Dynalite),
}

const TABLE: &str = "aggregate-notifications";

/// The replicas, their shared environment, and the store as the API sees it.
struct Setup {
    nats: NatsServer,
    dir: tempfile::TempDir,
    env: Vec<(&'static str, String)>,
    raw: RawStore,
    _store: Store,
    workers: Vec<Worker>,
}

impl Setup {
    async fn start(store: Store) -> Setup {
        let nats = NatsServer::start();
        let dir = tempfile::tempdir().unwrap();
        let mut env = base_env(&nats, dir.path());
        env.push(("AGGREGATE", "post.like".into()));
        env.push(("REALTIME_NATS_SUBJECT", "users.{owner}.notifications".into()));
        let raw = match &store {
            Store::Sqlite => RawStore::Sqlite(dir.path().join("notifications.db")),
            Store::DynamoDb(dynamo) => {
                env.extend(dynamo.worker_env(TABLE));
                RawStore::dynamodb(dynamo, TABLE).await
            }
        };
        let workers = (0..2).map(|_| Worker::start(dir.path(), &env)).collect();
        Setup {
            nats,
            dir,
            env,
            raw,
            _store: store,
            workers,
        }
    }

    /// `notification-worker feed OWNER [--json]`, as a user runs it against the same store.
    fn feed_output(&self, json: bool) -> String {
        let mut command = command(self.dir.path(), &self.env);
        command.args(["feed", OWNER]);
        if json {
            command.arg("--json");
        }
        let output = command.output().unwrap();
        assert!(
            output.status.success(),
            "feed failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap()
    }

    fn feed(&self) -> Vec<FeedItem> {
        self.feed_output(true)
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect()
    }

    /// Publishes `events` (subject, fan) back to back, each waiting only for its place in
    /// the stream, so that the replicas work on them at the same time.
    async fn publish_all(&self, events: &[(&str, usize)]) {
        let js = self.nats.jetstream().await;
        let mut acks = Vec::new();
        for (subject, i) in events {
            acks.push(js.publish(subject.to_string(), like_by(*i).into()).await.unwrap());
        }
        for ack in acks {
            ack.await.unwrap();
        }
    }

    /// Waits until every event is applied and the feed is `expected` (compared by
    /// [`summary`]), then returns the feed.
    async fn feed_once_drained(&self, expected: &[Summary]) -> Vec<FeedItem> {
        eventually("the feed to show the aggregates", WITHIN, || async {
            consumer_backlog(&self.nats).await == (0, 0)
                && self.feed().iter().map(summary).collect::<Vec<_>>() == expected
        })
        .await;
        self.feed()
    }
}

/// What an aggregate is expected to show: (read, actor_count, actors' ids newest first,
/// latest actor's userid and username).
type Summary = (bool, Option<u64>, Vec<String>, String, Option<String>);

fn summary(item: &FeedItem) -> Summary {
    let actors = item
        .actors
        .iter()
        .flatten()
        .map(|actor| actor.userid.clone())
        .collect();
    (
        item.read_status,
        item.actor_count,
        actors,
        item.userid.clone(),
        item.username.clone(),
    )
}

/// The aggregate `events` make when applied one by one in stream order: each fan's last
/// event decides whether they are in, and the latest three are those whose last like came
/// last.
fn in_order(events: &[(&str, usize)]) -> Summary {
    let mut last: HashMap<usize, (usize, bool)> = HashMap::new();
    for (at, (subject, i)) in events.iter().enumerate() {
        last.insert(*i, (at, *subject == LIKE));
    }
    let mut present: Vec<(usize, usize)> = last
        .into_iter()
        .filter(|(_, (_, liked))| *liked)
        .map(|(i, (at, _))| (at, i))
        .collect();
    present.sort_unstable_by(|a, b| b.cmp(a));
    let latest = present[0].1;
    (
        false,
        Some(present.len() as u64),
        present.iter().take(3).map(|(_, i)| fan(*i)).collect(),
        fan(latest),
        Some(format!("Fan {latest}")),
    )
}

/// Fifty likes, then ten of those fans unlike (among them the latest likers, so the
/// display fields must move back), then five fans still in like again (repeats: counted
/// once, but now their like is the latest).
fn fifty_ten_five() -> Vec<(&'static str, usize)> {
    let mut events: Vec<(&str, usize)> = (0..50).map(|i| (LIKE, i)).collect();
    events.extend((40..50).map(|i| (UNLIKE, i)));
    events.extend([3, 11, 17, 22, 8].map(|i| (LIKE, i)));
    events
}

async fn fifty_likes_fold_into_one_aggregate(store: Store) {
    let setup = Setup::start(store).await;
    let realtime = Realtime::subscribe(&setup.nats, "users.>").await;
    let events = fifty_ten_five();
    let expected = in_order(&events);
    assert_eq!(
        (expected.1, &expected.2),
        (Some(40), &vec![fan(8), fan(22), fan(17)]),
        "the model itself"
    );
    setup.publish_all(&events).await;

    let feed = setup.feed_once_drained(std::slice::from_ref(&expected)).await;
    let aggregate = &feed[0];
    assert_eq!(aggregate.action_key, "#post-1#1#aggregate-1");
    assert_eq!(
        aggregate.actors.as_ref().unwrap()[0].username.as_deref(),
        Some("Fan 8")
    );
    let lines = setup.feed_output(false);
    assert!(
        lines.lines().count() == 1 && lines.contains("Fan 8 and 39 others liked your post"),
        "{lines}"
    );

    let applied: Vec<usize> = setup
        .workers
        .iter()
        .map(|worker| worker.count("created") + worker.count("aggregated"))
        .collect();
    assert!(
        applied.iter().all(|&count| count > 0),
        "both replicas folded likes: {applied:?}"
    );

    wait_until_delivered(&setup.nats, WITHIN, "nats").await;
    let events = realtime.events();
    let of_aggregate = |name: &str| {
        events
            .iter()
            .filter(|(event, id)| event == name && *id == aggregate.id)
            .count()
    };
    assert_eq!(of_aggregate("new-notification"), 1, "{events:?}");
    assert!(of_aggregate("notification-updated") >= 1, "{events:?}");
    assert_eq!(
        events.first(),
        Some(&("new-notification".to_owned(), aggregate.id.clone())),
        "the banner comes first"
    );
    assert!(
        events.iter().all(|(_, id)| *id == aggregate.id),
        "nothing but the aggregate: {events:?}"
    );
    assert_eq!(of_aggregate("notification-removed"), 0, "{events:?}");
    // The newest update (clients keep the highest version) tells the whole aggregate.
    let newest = realtime
        .messages()
        .into_iter()
        .filter(|(_, body)| body["event"] == "notification-updated")
        .map(|(_, body)| body["data"].clone())
        .max_by_key(|data| data["version"].as_str().unwrap().parse::<u128>().unwrap())
        .unwrap();
    assert_eq!(newest["actor_count"], 40, "{newest}");
    assert_eq!(newest["actors"][0]["userid"], aggregate.userid, "{newest}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_likes_ten_unlikes_five_repeats_make_one_aggregate_in_sqlite() {
    fifty_likes_fold_into_one_aggregate(Store::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_likes_ten_unlikes_five_repeats_make_one_aggregate_in_dynamodb() {
    fifty_likes_fold_into_one_aggregate(Store::DynamoDb(Dynalite::start())).await;
}

/// Three likes; the owner reads the aggregate; then two likes at once and an unlike of a
/// fan in the read one: one new aggregate with the two, the read one exactly as it was.
async fn a_read_aggregate_stays_and_the_next_like_starts_another(store: Store) {
    let setup = Setup::start(store).await;
    let before: Vec<(&str, usize)> = (0..3).map(|i| (LIKE, i)).collect();
    setup.publish_all(&before).await;
    let first = setup.feed_once_drained(&[in_order(&before)]).await.remove(0);
    assert!(setup.raw.mark_read(OWNER, &first.action_key).await);
    let read = FeedItem {
        read_status: true,
        ..first
    };

    let after = [(LIKE, 3), (LIKE, 4), (UNLIKE, 0)];
    setup.publish_all(&after).await;
    // Newest first: the new aggregate's latest like is newer than anything in the read one.
    let feed = setup
        .feed_once_drained(&[in_order(&after[..2]), summary(&read)])
        .await;
    assert_eq!(feed[0].action_key, "#post-1#1#aggregate-2");
    assert_ne!(feed[0].id, read.id);
    assert_eq!(feed[1], read, "the read aggregate is untouched");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_aggregate_stays_and_the_next_like_starts_another_in_sqlite() {
    a_read_aggregate_stays_and_the_next_like_starts_another(Store::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_aggregate_stays_and_the_next_like_starts_another_in_dynamodb() {
    a_read_aggregate_stays_and_the_next_like_starts_another(Store::DynamoDb(Dynalite::start())).await;
}
