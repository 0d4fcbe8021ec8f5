//! One behaviour contract, run against every store: SQLite on a temporary file and
//! DynamoDB on a private dynalite server.

mod support;

use notification_worker::domain::{Change, Decision, EventPolicy, FeedItem, Id, Timestamp, parse_event};
use notification_worker::store::{Applied, NotificationStore};

fn policy() -> EventPolicy {
    EventPolicy {
        allow_http_pictures: false,
        now: Timestamp::now(),
    }
}

/// A change as the worker would build it from an event.
fn change(subject: &str, body: &str) -> Change {
    match parse_event(subject, body.as_bytes(), &policy())
        .expect("valid event")
        .1
    {
        Decision::Apply(change) => change,
        Decision::SkipSelf { .. } => panic!("not a self-notification"),
    }
}

fn like_at(owner: &str, trigger: &str, resource: &str, created_at: i64) -> Change {
    change(
        "notifications.post.like",
        &format!(
            r#"{{"owner":"{owner}","trigger_user":"{trigger}","action":1,"resource_type":"POST","resource_id":"{resource}","created_at":{created_at}}}"#
        ),
    )
}

fn unlike(owner: &str, trigger: &str, resource: &str) -> Change {
    change(
        "notifications.post.unlike",
        &format!(
            r#"{{"owner":"{owner}","trigger_user":"{trigger}","action":1,"resource_type":"POST","resource_id":"{resource}"}}"#
        ),
    )
}

fn owner(id: &str) -> Id {
    Id::parse("owner", id).unwrap()
}

async fn create_then_read_back(store: &impl NotificationStore) {
    let like = like_at("user-1", "user-2", "post-1", 1_765_318_000);
    assert_eq!(store.apply(&like).await.unwrap(), Applied::Created);
    let feed = store.feed(&owner("user-1"), 10).await.unwrap();
    let Change::Create(notification) = &like else {
        unreachable!()
    };
    assert_eq!(feed, vec![FeedItem::from(notification)]);
}

async fn duplicate_keeps_the_stored_item(store: &impl NotificationStore) {
    let first = like_at("user-1", "user-2", "post-1", 1_765_318_000);
    let again = like_at("user-1", "user-2", "post-1", 1_765_318_999);
    assert_eq!(store.apply(&first).await.unwrap(), Applied::Created);
    assert_eq!(store.apply(&again).await.unwrap(), Applied::Duplicate);
    let feed = store.feed(&owner("user-1"), 10).await.unwrap();
    let Change::Create(stored) = &first else {
        unreachable!()
    };
    // Same id, same time: the first write stands untouched.
    assert_eq!(feed, vec![FeedItem::from(stored)]);
}

async fn remove_and_remove_absent(store: &impl NotificationStore) {
    store
        .apply(&like_at("user-1", "user-2", "post-1", 1_765_318_000))
        .await
        .unwrap();
    assert_eq!(
        store.apply(&unlike("user-1", "user-2", "post-1")).await.unwrap(),
        Applied::Removed
    );
    assert!(store.feed(&owner("user-1"), 10).await.unwrap().is_empty());
    assert_eq!(
        store.apply(&unlike("user-1", "user-2", "post-1")).await.unwrap(),
        Applied::Absent
    );
    assert_eq!(
        store.apply(&unlike("user-9", "user-2", "post-1")).await.unwrap(),
        Applied::Absent
    );
}

async fn feed_is_newest_first_per_owner_and_limited(store: &impl NotificationStore) {
    for (i, trigger) in ["user-a", "user-b", "user-c"].iter().enumerate() {
        let at = 1_765_318_000 + i64::try_from(i).unwrap() * 60;
        store
            .apply(&like_at("user-1", trigger, "post-1", at))
            .await
            .unwrap();
    }
    store
        .apply(&like_at("user-2", "user-a", "post-1", 1_765_319_000))
        .await
        .unwrap();
    let feed = store.feed(&owner("user-1"), 10).await.unwrap();
    let triggers: Vec<&str> = feed.iter().map(|item| item.userid.as_str()).collect();
    assert_eq!(triggers, ["user-c", "user-b", "user-a"]);
    assert_eq!(store.feed(&owner("user-1"), 2).await.unwrap().len(), 2);
    assert_eq!(store.feed(&owner("user-2"), 10).await.unwrap().len(), 1);
    assert!(store.feed(&owner("user-3"), 10).await.unwrap().is_empty());
}

async fn field_mapping_matches_the_existing_table(store: &impl NotificationStore) {
    let full = change(
        "notifications.comment.like",
        r#"{"owner":"user-123","trigger_user":"user-777","username":"Ana Lima","user_picture":"https://cdn.example.com/u/777.png",
            "user_bio":"Hi\nthere","action":2,"resource_type":"COMMENT","resource_id":"comment-42","excerpt":"同意 👍","created_at":1765318100}"#,
    );
    let bare = change(
        "notifications.user.follow",
        r#"{"owner":"user-123","trigger_user":"user-321","action":6,"resource_type":"USER","resource_id":"user-123","created_at":1765318000}"#,
    );
    store.apply(&full).await.unwrap();
    store.apply(&bare).await.unwrap();
    let feed = store.feed(&owner("user-123"), 10).await.unwrap();
    let item = &feed[0];
    assert_eq!(item.owner, "user-123");
    assert_eq!(item.action_key, "user-777#comment-42#2#0001-01-01T00:00:00Z");
    assert_eq!(item.userid, "user-777");
    assert_eq!(item.username.as_deref(), Some("Ana Lima"));
    assert_eq!(item.userpic.as_deref(), Some("https://cdn.example.com/u/777.png"));
    assert_eq!(item.userbio.as_deref(), Some("Hi\nthere"));
    assert_eq!(item.action, 2);
    assert_eq!(item.resource_type, "COMMENT");
    assert_eq!(item.resource_id, "comment-42");
    assert_eq!(item.excerpt.as_deref(), Some("同意 👍"));
    assert!(!item.read_status);
    assert_eq!(item.created_at, "2025-12-09T22:08:20Z");
    assert!(uuid::Uuid::parse_str(&item.id).is_ok());
    // Empty attributes are omitted, not stored as empty strings.
    let bare = &feed[1];
    assert_eq!(
        (
            bare.username.as_ref(),
            bare.userpic.as_ref(),
            bare.userbio.as_ref()
        ),
        (None, None, None)
    );
    assert_eq!(bare.excerpt, None);
    assert_eq!(bare.action_key, "user-321#user-123#6#0001-01-01T00:00:00Z");
}

async fn setup_is_idempotent(store: &impl NotificationStore) {
    store
        .apply(&like_at("user-1", "user-2", "post-1", 1_765_318_000))
        .await
        .unwrap();
    store.setup().await.unwrap();
    assert_eq!(
        store.feed(&owner("user-1"), 10).await.unwrap().len(),
        1,
        "setup kept the data"
    );
}

async fn probe_answers_once_set_up(store: &impl NotificationStore) {
    store.probe().await.unwrap();
}

async fn concurrent_changes_to_different_keys(store: &impl NotificationStore) {
    let changes: Vec<Change> = (0..200)
        .map(|i| like_at("user-1", &format!("fan-{i}"), "post-1", 1_765_318_000 + i))
        .collect();
    let outcomes = futures::future::join_all(changes.iter().map(|change| store.apply(change))).await;
    assert!(
        outcomes
            .iter()
            .all(|outcome| outcome.as_ref().is_ok_and(|a| *a == Applied::Created))
    );
    assert_eq!(store.feed(&owner("user-1"), 500).await.unwrap().len(), 200);
}

/// Runs every contract check as its own test against a fresh store from `$fresh`.
macro_rules! store_contract {
    ($store:ident, $fresh:path) => {
        mod $store {
            use super::*;
            store_contract!(@tests $fresh, create_then_read_back, duplicate_keeps_the_stored_item,
                remove_and_remove_absent, feed_is_newest_first_per_owner_and_limited,
                field_mapping_matches_the_existing_table, setup_is_idempotent,
                concurrent_changes_to_different_keys, probe_answers_once_set_up);
        }
    };
    (@tests $fresh:path, $($check:ident),+) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $check() {
                let (store, _keep) = $fresh().await;
                store.setup().await.unwrap();
                super::$check(&store).await;
            }
        )+
    };
}

mod fresh {
    use super::support::Dynalite;
    use notification_worker::store::{DynamoDbStore, SqliteStore};

    pub async fn sqlite() -> (SqliteStore, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("nested/folder/notifications.db")).unwrap();
        (store, dir)
    }

    pub async fn dynamodb() -> (DynamoDbStore, Dynalite) {
        let server = Dynalite::start();
        let store = server.store("contract-notifications").await;
        (store, server)
    }
}

store_contract!(sqlite, fresh::sqlite);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probes_report_a_missing_schema_or_table() {
    let (sqlite, _dir) = fresh::sqlite().await;
    let error = sqlite.probe().await.unwrap_err();
    assert!(error.message.contains("notification-worker setup"), "{error}");
    let (dynamodb, _server) = fresh::dynamodb().await;
    let error = dynamodb.probe().await.unwrap_err();
    assert!(error.message.contains("notification-worker setup"), "{error}");
}
store_contract!(dynamodb, fresh::dynamodb);
