//! One behaviour contract, run against every store: SQLite on a temporary file and
//! DynamoDB on a private dynalite server.

mod support;

use notification_worker::domain::{
    Action, Aggregation, Change, Decision, EventPolicy, FeedItem, Id, Timestamp, Version, parse_event,
};
use notification_worker::store::{Applied, Ended, NotificationStore, Report};
use std::sync::atomic::{AtomicU64, Ordering};
use support::raw::RawStore;

/// A stream created at some moment: the epoch of every version in these tests.
const EPOCH: u64 = 1_764_000_000_000_000;

fn v(sequence: u64) -> Version {
    Version::new(EPOCH, sequence).unwrap()
}

/// For checks that are not about order: each change one newer than the last.
fn next() -> Version {
    static SEQUENCE: AtomicU64 = AtomicU64::new(1_000_000);
    v(SEQUENCE.fetch_add(1, Ordering::Relaxed))
}

fn policy() -> EventPolicy {
    EventPolicy {
        allow_http_pictures: false,
        now: Timestamp::now(),
        aggregate: Aggregation::OFF,
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

async fn create_then_read_back(store: &impl NotificationStore, _raw: &RawStore) {
    let like = like_at("user-1", "user-2", "post-1", 1_765_318_000);
    assert_eq!(store.apply(&like, next()).await.unwrap(), Applied::Created);
    let feed = store.feed(&owner("user-1"), 10).await.unwrap();
    let Change::Create(notification) = &like else {
        unreachable!()
    };
    assert_eq!(feed, vec![FeedItem::from(notification)]);
}

async fn duplicate_keeps_the_stored_item(store: &impl NotificationStore, _raw: &RawStore) {
    let first = like_at("user-1", "user-2", "post-1", 1_765_318_000);
    let again = like_at("user-1", "user-2", "post-1", 1_765_318_999);
    assert_eq!(store.apply(&first, next()).await.unwrap(), Applied::Created);
    assert_eq!(store.apply(&again, next()).await.unwrap(), Applied::Duplicate);
    let feed = store.feed(&owner("user-1"), 10).await.unwrap();
    let Change::Create(stored) = &first else {
        unreachable!()
    };
    // Same id, same time: the first write stands untouched.
    assert_eq!(feed, vec![FeedItem::from(stored)]);
}

async fn remove_and_remove_absent(store: &impl NotificationStore, _raw: &RawStore) {
    store
        .apply(&like_at("user-1", "user-2", "post-1", 1_765_318_000), next())
        .await
        .unwrap();
    assert_eq!(
        store
            .apply(&unlike("user-1", "user-2", "post-1"), next())
            .await
            .unwrap(),
        Applied::Removed
    );
    assert!(store.feed(&owner("user-1"), 10).await.unwrap().is_empty());
    assert_eq!(
        store
            .apply(&unlike("user-1", "user-2", "post-1"), next())
            .await
            .unwrap(),
        Applied::Absent
    );
    assert_eq!(
        store
            .apply(&unlike("user-9", "user-2", "post-1"), next())
            .await
            .unwrap(),
        Applied::Absent
    );
}

async fn feed_is_newest_first_per_owner_and_limited(store: &impl NotificationStore, _raw: &RawStore) {
    for (i, trigger) in ["user-a", "user-b", "user-c"].iter().enumerate() {
        let at = 1_765_318_000 + i64::try_from(i).unwrap() * 60;
        store
            .apply(&like_at("user-1", trigger, "post-1", at), next())
            .await
            .unwrap();
    }
    store
        .apply(&like_at("user-2", "user-a", "post-1", 1_765_319_000), next())
        .await
        .unwrap();
    let feed = store.feed(&owner("user-1"), 10).await.unwrap();
    let triggers: Vec<&str> = feed.iter().map(|item| item.userid.as_str()).collect();
    assert_eq!(triggers, ["user-c", "user-b", "user-a"]);
    assert_eq!(store.feed(&owner("user-1"), 2).await.unwrap().len(), 2);
    assert_eq!(store.feed(&owner("user-2"), 10).await.unwrap().len(), 1);
    assert!(store.feed(&owner("user-3"), 10).await.unwrap().is_empty());
}

async fn field_mapping_matches_the_existing_table(store: &impl NotificationStore, _raw: &RawStore) {
    let full = change(
        "notifications.comment.like",
        r#"{"owner":"user-123","trigger_user":"user-777","username":"Ana Lima","user_picture":"https://cdn.example.com/u/777.png",
            "user_bio":"Hi\nthere","action":2,"resource_type":"COMMENT","resource_id":"comment-42","excerpt":"同意 👍","created_at":1765318100}"#,
    );
    let bare = change(
        "notifications.user.follow",
        r#"{"owner":"user-123","trigger_user":"user-321","action":6,"resource_type":"USER","resource_id":"user-123","created_at":1765318000}"#,
    );
    store.apply(&full, next()).await.unwrap();
    store.apply(&bare, next()).await.unwrap();
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

async fn setup_is_idempotent(store: &impl NotificationStore, _raw: &RawStore) {
    store
        .apply(&like_at("user-1", "user-2", "post-1", 1_765_318_000), next())
        .await
        .unwrap();
    store.setup().await.unwrap();
    assert_eq!(
        store.feed(&owner("user-1"), 10).await.unwrap().len(),
        1,
        "setup kept the data"
    );
}

async fn probe_answers_once_set_up(store: &impl NotificationStore, _raw: &RawStore) {
    store.probe().await.unwrap();
}

async fn concurrent_changes_to_different_keys(store: &impl NotificationStore, _raw: &RawStore) {
    let changes: Vec<Change> = (0..200)
        .map(|i| like_at("user-1", &format!("fan-{i}"), "post-1", 1_765_318_000 + i))
        .collect();
    let outcomes = futures::future::join_all(changes.iter().map(|change| store.apply(change, next()))).await;
    assert!(
        outcomes
            .iter()
            .all(|outcome| outcome.as_ref().is_ok_and(|a| *a == Applied::Created))
    );
    assert_eq!(store.feed(&owner("user-1"), 500).await.unwrap().len(), 200);
}

// ---- Versioned writes: the named cases of docs/reliability.md ("Ordering"). ----

fn like(trigger: &str) -> Change {
    like_at("user-1", trigger, "post-1", 1_765_318_000)
}

fn unlike_of(trigger: &str) -> Change {
    unlike("user-1", trigger, "post-1")
}

fn id_of(change: &Change) -> String {
    match change {
        Change::Create(notification) => notification.id.to_string(),
        _ => panic!("only a create has an id"),
    }
}

/// The stored notification of `trigger`'s like on post-1 of user-1, as the feed shows it.
async fn stored(store: &impl NotificationStore, trigger: &str) -> Option<FeedItem> {
    let key = like(trigger).action_key().unwrap().to_string();
    let mut items: Vec<FeedItem> = store
        .feed(&owner("user-1"), 1000)
        .await
        .unwrap()
        .into_iter()
        .filter(|item| item.action_key == key)
        .collect();
    assert!(items.len() <= 1, "one key, one item: {items:?}");
    items.pop()
}

/// Events of one key by sequence: `true` for a create (a like), `false` for a remove.
fn events_of(trigger: &str, script: &[(u64, bool)]) -> Vec<(u64, Change)> {
    script
        .iter()
        .map(|&(sequence, create)| {
            let change = if create { like(trigger) } else { unlike_of(trigger) };
            (sequence, change)
        })
        .collect()
}

/// Applies `events` in the given order and returns the ids of the creates reported `created`.
async fn apply_in_order(
    store: &impl NotificationStore,
    events: &[(u64, Change)],
) -> (Vec<Applied>, Vec<String>) {
    let mut outcomes = Vec::new();
    let mut created = Vec::new();
    for (sequence, change) in events {
        let applied = store.apply(change, v(*sequence)).await.unwrap();
        if applied == Applied::Created {
            created.push(id_of(change));
        }
        outcomes.push(applied);
    }
    (outcomes, created)
}

/// Every arrival order of like 3 / unlike 4 / like 5 ends live, with a life some create
/// reported; in stream order exactly as applying them once.
async fn like_unlike_like_in_every_arrival_order(store: &impl NotificationStore, raw: &RawStore) {
    let orders = [[3, 4, 5], [3, 5, 4], [4, 3, 5], [4, 5, 3], [5, 3, 4], [5, 4, 3]];
    for (i, order) in orders.iter().enumerate() {
        let trigger = format!("fan-{i}");
        let script = events_of(&trigger, &[(3, true), (4, false), (5, true)]);
        let arrival: Vec<(u64, Change)> = order
            .iter()
            .map(|sequence| script.iter().find(|(s, _)| s == sequence).unwrap().clone())
            .collect();
        let (outcomes, created) = apply_in_order(store, &arrival).await;
        let item = stored(store, &trigger)
            .await
            .unwrap_or_else(|| panic!("order {order:?} ({outcomes:?}) must end live"));
        assert!(
            created.contains(&item.id),
            "order {order:?}: the live life was reported created by its create"
        );
        if *order == [3, 4, 5] {
            assert_eq!(outcomes, [Applied::Created, Applied::Removed, Applied::Created]);
            assert_eq!(
                item.id,
                id_of(&script[2].1),
                "in order, like 5 started the live life"
            );
        }
    }
    for items in raw.client_queries("user-1").await {
        assert_eq!(
            items.len(),
            orders.len(),
            "one item per key, no tombstone: {items:?}"
        );
    }
}

/// Like 3 / unlike 4 in both orders end with nothing, and the tombstone shows in no query.
async fn like_unlike_in_both_orders_ends_removed(store: &impl NotificationStore, raw: &RawStore) {
    let script = events_of("fan-a", &[(3, true), (4, false)]);
    assert_eq!(
        apply_in_order(store, &script).await.0,
        [Applied::Created, Applied::Removed]
    );
    let reversed = events_of("fan-b", &[(4, false), (3, true)]);
    assert_eq!(
        apply_in_order(store, &reversed).await.0,
        [Applied::Absent, Applied::Superseded]
    );
    assert!(stored(store, "fan-a").await.is_none() && stored(store, "fan-b").await.is_none());
    for items in raw.client_queries("user-1").await {
        assert!(items.is_empty(), "tombstones are invisible to clients: {items:?}");
    }
    assert!(store.feed(&owner("user-1"), 10).await.unwrap().is_empty());
}

/// A redelivered create reports the life it started again; no create, older or newer,
/// changes a live notification's id or read_status.
async fn a_live_notification_keeps_its_id_and_read_status(store: &impl NotificationStore, raw: &RawStore) {
    let first = like("fan-1");
    assert_eq!(store.apply(&first, v(3)).await.unwrap(), Applied::Created);
    assert!(
        raw.mark_read("user-1", first.action_key().unwrap().as_str())
            .await
    );
    assert_eq!(
        store.apply(&first, v(3)).await.unwrap(),
        Applied::Created,
        "redelivery"
    );
    assert_eq!(
        store.apply(&like("fan-1"), v(7)).await.unwrap(),
        Applied::Duplicate
    );
    assert_eq!(
        store.apply(&like("fan-1"), v(2)).await.unwrap(),
        Applied::Duplicate
    );
    let item = stored(store, "fan-1").await.unwrap();
    assert_eq!((item.id, item.read_status), (id_of(&first), true));
    // The newer like (7) was seen: an unlike older than it must leave the notification.
    assert_eq!(
        store.apply(&unlike_of("fan-1"), v(5)).await.unwrap(),
        Applied::Absent
    );
    assert!(stored(store, "fan-1").await.is_some());
    assert_eq!(
        store.apply(&unlike_of("fan-1"), v(8)).await.unwrap(),
        Applied::Removed
    );
    assert!(
        !raw.mark_read("user-1", first.action_key().unwrap().as_str())
            .await,
        "nothing to mark"
    );
}

/// `find` reads one notification back as the API would: present with its read status,
/// absent before its create and after its remove, and never a tombstone.
async fn find_reads_one_notification_as_the_api_sees_it(store: &impl NotificationStore, raw: &RawStore) {
    let first = like("fan-1");
    let key = first.action_key().unwrap().as_str().to_owned();
    assert_eq!(store.find(&owner("user-1"), &key).await.unwrap(), None);
    assert_eq!(store.apply(&first, v(3)).await.unwrap(), Applied::Created);
    let found = store.find(&owner("user-1"), &key).await.unwrap().unwrap();
    assert_eq!(
        (found.id.as_str(), found.read_status),
        (id_of(&first).as_str(), false)
    );
    assert_eq!(
        Some(&found),
        store.feed(&owner("user-1"), 10).await.unwrap().first()
    );
    assert!(raw.mark_read("user-1", &key).await);
    assert!(
        store
            .find(&owner("user-1"), &key)
            .await
            .unwrap()
            .unwrap()
            .read_status
    );
    assert_eq!(
        store.find(&owner("user-2"), &key).await.unwrap(),
        None,
        "another owner's key"
    );
    assert_eq!(
        store.apply(&unlike_of("fan-1"), v(8)).await.unwrap(),
        Applied::Removed
    );
    assert_eq!(
        store.find(&owner("user-1"), &key).await.unwrap(),
        None,
        "a tombstone is no notification"
    );
}

/// A zombie: a remove at 6 wrote its tombstone but has not deleted yet (it stopped between
/// the two, or its delete ran before an older create stored its life). Its redelivery still
/// deletes; and a create older than the remove, even the life's own create redelivered,
/// finishes that delete rather than leaving the notification live.
async fn a_zombie_create_between_a_tombstone_and_its_delete(store: &impl NotificationStore, raw: &RawStore) {
    let first = like("fan-1");
    assert_eq!(store.apply(&first, v(3)).await.unwrap(), Applied::Created);
    raw.write_tombstone("user-1", first.action_key().unwrap().as_str(), v(6))
        .await;
    assert_eq!(
        store.apply(&unlike_of("fan-1"), v(6)).await.unwrap(),
        Applied::Removed
    );
    assert!(stored(store, "fan-1").await.is_none());
    // It deleted under a tombstone it found rather than raised: that one remembers the life.
    assert_eq!(
        store.apply_reported(&unlike_of("fan-1"), v(6)).await.unwrap(),
        removed(&id_of(&first), v(3)),
        "redelivery"
    );

    for (trigger, late_create) in [("fan-2", 5), ("fan-3", 3)] {
        let first = like(trigger);
        assert_eq!(store.apply(&first, v(3)).await.unwrap(), Applied::Created);
        raw.write_tombstone("user-1", first.action_key().unwrap().as_str(), v(6))
            .await;
        let late = if late_create == 3 {
            first.clone()
        } else {
            like(trigger)
        };
        assert_eq!(
            store.apply(&late, v(late_create)).await.unwrap(),
            Applied::Superseded
        );
        assert!(
            stored(store, trigger).await.is_none(),
            "{trigger}: the zombie was deleted"
        );
        assert_eq!(
            store.apply(&unlike_of(trigger), v(6)).await.unwrap(),
            Applied::Absent
        );
    }
}

/// A create newer than the zombie's remove replaces it with a new life: new id, unread;
/// the remove arriving after that leaves the new life alone.
async fn a_create_newer_than_a_pending_remove_starts_a_new_life(
    store: &impl NotificationStore,
    raw: &RawStore,
) {
    let old = like("fan-1");
    let key = old.action_key().unwrap().to_string();
    store.apply(&old, v(3)).await.unwrap();
    assert!(raw.mark_read("user-1", &key).await);
    raw.write_tombstone("user-1", &key, v(6)).await;
    let new = like("fan-1");
    assert_eq!(store.apply(&new, v(7)).await.unwrap(), Applied::Created);
    assert_eq!(
        store.apply(&unlike_of("fan-1"), v(6)).await.unwrap(),
        Applied::Absent
    );
    let item = stored(store, "fan-1").await.unwrap();
    assert_eq!((item.id, item.read_status), (id_of(&new), false));
}

/// A write whose response was lost is sent again (by the SDK, or by the worker after a
/// timeout) while, or after, the first one lands: one notification, reported created.
async fn a_create_retried_after_a_lost_response(store: &impl NotificationStore, _raw: &RawStore) {
    let like = like("fan-1");
    let (a, b) = futures::join!(store.apply(&like, v(3)), store.apply(&like, v(3)));
    assert_eq!((a.unwrap(), b.unwrap()), (Applied::Created, Applied::Created));
    assert_eq!(store.apply(&like, v(3)).await.unwrap(), Applied::Created);
    assert_eq!(stored(store, "fan-1").await.unwrap().id, id_of(&like));
}

/// Rows the first version wrote have no versions: they count as the oldest.
async fn rows_without_versions_count_as_the_oldest(store: &impl NotificationStore, raw: &RawStore) {
    let legacy = like("fan-1");
    let Change::Create(notification) = &legacy else {
        unreachable!()
    };
    let mut item = FeedItem::from(notification);
    item.read_status = true;
    raw.insert_legacy(&item).await;
    assert_eq!(
        store.apply(&like("fan-1"), v(3)).await.unwrap(),
        Applied::Duplicate
    );
    let kept = stored(store, "fan-1").await.unwrap();
    assert_eq!((kept.id, kept.read_status), (item.id.clone(), true));
    raw.insert_legacy(&FeedItem {
        action_key: like("fan-2").action_key().unwrap().to_string(),
        ..item
    })
    .await;
    assert_eq!(
        store.apply(&unlike_of("fan-2"), v(4)).await.unwrap(),
        Applied::Removed
    );
    assert!(stored(store, "fan-2").await.is_none());
}

// ---- What a remove reports: the life it ended, for the delivery stage. ----

fn removed(id: &str, created: Version) -> Report {
    Report {
        applied: Applied::Removed,
        ended: Some(Ended {
            id: id.to_owned(),
            created,
        }),
        aggregate: None,
    }
}

const ABSENT: Report = Report {
    applied: Applied::Absent,
    ended: None,
    aggregate: None,
};

/// An unlike that deletes reports the life it ended (its id, and the like that created
/// it); its redelivery, with nothing left to delete, reports that same life again, as a
/// redelivered create reports `created` again. The tombstone that remembers it stays
/// invisible to clients.
async fn a_remove_reports_the_life_it_ended_and_again_when_redelivered(
    store: &impl NotificationStore,
    raw: &RawStore,
) {
    store.apply(&like("fan-1"), v(3)).await.unwrap();
    let id = stored(store, "fan-1").await.unwrap().id;
    let ended = removed(&id, v(3));
    assert_eq!(
        store.apply_reported(&unlike_of("fan-1"), v(4)).await.unwrap(),
        ended
    );
    let key = unlike_of("fan-1").action_key().unwrap().to_string();
    assert_eq!(raw.tombstone_ended_id("user-1", &key).await, Some(id.clone()));
    for _ in 0..2 {
        assert_eq!(
            store.apply_reported(&unlike_of("fan-1"), v(4)).await.unwrap(),
            ended,
            "redelivery"
        );
    }
    assert!(stored(store, "fan-1").await.is_none());
    for items in raw.client_queries("user-1").await {
        assert!(items.is_empty(), "tombstones are invisible to clients: {items:?}");
    }
}

/// A remove with nothing live to delete ended no life, delivered once or again.
async fn a_remove_with_nothing_live_ends_nothing(store: &impl NotificationStore, _raw: &RawStore) {
    for _ in 0..2 {
        assert_eq!(
            store.apply_reported(&unlike_of("fan-1"), v(5)).await.unwrap(),
            ABSENT
        );
    }
}

/// Like 3, unlike 5 (which ends the life), then unlike 4 arriving late: the late one ended
/// nothing, even though a life was ended after it; unlike 5 still owns that life.
async fn an_older_remove_arriving_late_ended_nothing(store: &impl NotificationStore, _raw: &RawStore) {
    store.apply(&like("fan-1"), v(3)).await.unwrap();
    let id = stored(store, "fan-1").await.unwrap().id;
    assert_eq!(
        store.apply_reported(&unlike_of("fan-1"), v(5)).await.unwrap(),
        removed(&id, v(3))
    );
    for _ in 0..2 {
        assert_eq!(
            store.apply_reported(&unlike_of("fan-1"), v(4)).await.unwrap(),
            ABSENT
        );
    }
    assert_eq!(
        store.apply_reported(&unlike_of("fan-1"), v(5)).await.unwrap(),
        removed(&id, v(3))
    );
}

/// Unlike 5 deletes while unlike 8 has raised the tombstone but not yet deleted: 5 reports
/// the life it ended, but 8's tombstone is not made to remember it, so neither remove's
/// redelivery reports it again.
async fn a_later_removes_tombstone_never_remembers_an_earlier_removes_life(
    store: &impl NotificationStore,
    raw: &RawStore,
) {
    let first = like("fan-1");
    store.apply(&first, v(3)).await.unwrap();
    raw.write_tombstone("user-1", first.action_key().unwrap().as_str(), v(8))
        .await;
    assert_eq!(
        store.apply_reported(&unlike_of("fan-1"), v(5)).await.unwrap(),
        removed(&id_of(&first), v(3))
    );
    assert_eq!(
        raw.tombstone_ended_id("user-1", first.action_key().unwrap().as_str())
            .await,
        None
    );
    for version in [8, 5] {
        assert_eq!(
            store
                .apply_reported(&unlike_of("fan-1"), v(version))
                .await
                .unwrap(),
            ABSENT,
            "unlike {version}"
        );
    }
}

/// Every check above is one process's view. Here two store instances (two connections to
/// one SQLite file, two DynamoDB clients: two replicas) race on the same keys, every event
/// delivered twice, all at once: the rules still decide the end.
async fn replicas_racing_on_one_key<S: NotificationStore>(store: &S, other: &S) {
    let scripts: [&[(u64, bool)]; 4] = [
        &[(3, true), (4, false), (5, true)],
        &[(3, true), (4, false)],
        &[(3, true), (5, true), (4, false)],
        &[(3, true), (4, false), (5, true), (6, false)],
    ];
    for round in 0..40 {
        let script = scripts[round % scripts.len()];
        let trigger = format!("racer-{round}");
        let events = events_of(&trigger, script);
        let mut arrivals: Vec<&(u64, Change)> = events.iter().chain(events.iter()).collect();
        fastrand::shuffle(&mut arrivals);
        let outcomes = futures::future::join_all(arrivals.iter().enumerate().map(
            |(i, (sequence, change))| async move {
                let replica: &S = if i % 2 == 0 { store } else { other };
                (change, replica.apply(change, v(*sequence)).await.unwrap())
            },
        ))
        .await;
        let created: Vec<String> = outcomes
            .iter()
            .filter(|(_, applied)| *applied == Applied::Created)
            .map(|(change, _)| id_of(change))
            .collect();
        let newest_is_create = script.iter().max_by_key(|(sequence, _)| *sequence).unwrap().1;
        let item = stored(store, &trigger).await;
        assert_eq!(
            item.is_some(),
            newest_is_create,
            "round {round} {script:?}: {outcomes:?}"
        );
        if let Some(item) = item {
            assert!(
                created.contains(&item.id),
                "round {round}: the live life was reported created"
            );
        }
    }
}

// ---- Aggregation (`AGGREGATE`): likes of one post fold into one notification. ----

/// A like or unlike of post-agg (owner user-1) by `actor`, with post likes aggregated.
fn folded(actor: &str, likes: bool) -> Change {
    let policy = EventPolicy {
        aggregate: Aggregation::OFF.with(Action::from_code(1).unwrap()),
        ..policy()
    };
    let (subject, extra) = if likes {
        ("notifications.post.like", r#","excerpt":"My post""#)
    } else {
        ("notifications.post.unlike", "")
    };
    let body = format!(
        r#"{{"owner":"user-1","trigger_user":"{actor}","username":"Name {actor}","action":1,"resource_type":"POST","resource_id":"post-agg"{extra}}}"#
    );
    match parse_event(subject, body.as_bytes(), &policy).unwrap().1 {
        Decision::Apply(change) => change,
        Decision::SkipSelf { .. } => panic!("not a self-notification"),
    }
}

/// The owner's aggregates of post-agg, newest first.
async fn aggregates(store: &impl NotificationStore) -> Vec<FeedItem> {
    store
        .feed(&owner("user-1"), 100)
        .await
        .unwrap()
        .into_iter()
        .filter(|item| item.resource_id == "post-agg")
        .collect()
}

fn userids(item: &FeedItem) -> Vec<String> {
    item.actors
        .iter()
        .flatten()
        .map(|named| named.userid.clone())
        .collect()
}

/// The first like creates the aggregate, later ones fold into it: one item, the latest
/// actor in the 13 attributes, the exact count, the latest three, a key no event can forge.
async fn likes_fold_into_one_aggregate(store: &impl NotificationStore, _raw: &RawStore) {
    let mut reports = Vec::new();
    for (i, actor) in ["fan-a", "fan-b", "fan-c", "fan-d", "fan-e"].iter().enumerate() {
        reports.push(
            store
                .apply_reported(&folded(actor, true), v(10 + i as u64))
                .await
                .unwrap(),
        );
    }
    let applied: Vec<Applied> = reports.iter().map(|report| report.applied).collect();
    assert_eq!(applied[0], Applied::Created);
    assert!(
        applied[1..].iter().all(|applied| *applied == Applied::Aggregated),
        "{applied:?}"
    );
    let items = aggregates(store).await;
    assert_eq!(items.len(), 1, "{items:?}");
    let item = &items[0];
    assert!(
        item.action_key.starts_with("#post-agg#1#aggregate-"),
        "{}",
        item.action_key
    );
    assert_eq!(
        (item.userid.as_str(), item.username.as_deref()),
        ("fan-e", Some("Name fan-e"))
    );
    assert_eq!(item.actor_count, Some(5));
    assert_eq!(userids(item), ["fan-e", "fan-d", "fan-c"]);
    assert_eq!(item.excerpt.as_deref(), Some("My post"));
    assert!(!item.read_status);
    // Every report names the aggregate as it then stood; the first created it.
    let first = reports[0].aggregate.as_ref().unwrap();
    assert_eq!(first.item.id, item.id);
    assert_eq!(first.item.actor_count, Some(1));
    let last = reports[4].aggregate.as_ref().unwrap();
    assert_eq!(last.item.actor_count, Some(5));
    assert!(last.version > first.version, "each rewrite has a newer version");
    // Its start is known, so the delivery stage can order updates after the banner.
    assert!(first.started_at.is_some() && first.started_at == last.started_at);
    assert_eq!(
        store
            .find(&owner("user-1"), &item.action_key)
            .await
            .unwrap()
            .as_ref(),
        Some(item)
    );
}

/// Applies `arrivals` all at once, each (sequence, change) through one replica or the other
/// in turn.
async fn through_both<S: NotificationStore>(store: &S, other: &S, arrivals: &[&(u64, Change)]) {
    futures::future::join_all(
        arrivals
            .iter()
            .enumerate()
            .map(|(i, (sequence, change))| async move {
                let replica: &S = if i % 2 == 0 { store } else { other };
                replica.apply(change, v(*sequence)).await.unwrap()
            }),
    )
    .await;
}

/// Fifty actors like one post through two replicas at once, ten unlike, five likes are
/// redelivered: one aggregate, 40 actors, the latest three.
async fn fifty_likes_ten_unlikes_and_redeliveries_through_two_replicas<S: NotificationStore>(
    store: &S,
    other: &S,
) {
    let actor = |i: u64| format!("fan-{i:02}");
    let likes: Vec<(u64, Change)> = (0..50).map(|i| (100 + i, folded(&actor(i), true))).collect();
    let mut arrivals: Vec<&(u64, Change)> = likes.iter().collect();
    arrivals.extend(likes.iter().take(5));
    fastrand::shuffle(&mut arrivals);
    through_both(store, other, &arrivals).await;
    // The ten newest likers take theirs back, again from both replicas at once.
    let unlikes: Vec<(u64, Change)> = (40..50).map(|i| (200 + i, folded(&actor(i), false))).collect();
    through_both(store, other, &unlikes.iter().collect::<Vec<_>>()).await;
    let items = aggregates(store).await;
    assert_eq!(items.len(), 1, "{items:?}");
    assert_eq!(items[0].actor_count, Some(40));
    assert_eq!(userids(&items[0]), ["fan-39", "fan-38", "fan-37"]);
    assert_eq!(items[0].userid, "fan-39");
}

/// Once read, the aggregate stays as the owner saw it: the next like starts a second one,
/// and an unlike of an actor in the read one changes nothing.
async fn a_read_aggregate_stays_and_the_next_like_starts_another(
    store: &impl NotificationStore,
    raw: &RawStore,
) {
    for (i, actor) in ["fan-a", "fan-b", "fan-c"].iter().enumerate() {
        store.apply(&folded(actor, true), v(10 + i as u64)).await.unwrap();
    }
    let read = aggregates(store).await.remove(0);
    assert!(raw.mark_read("user-1", &read.action_key).await);
    assert_eq!(
        store.apply(&folded("fan-d", true), v(20)).await.unwrap(),
        Applied::Created
    );
    assert_eq!(
        store.apply(&folded("fan-a", false), v(21)).await.unwrap(),
        Applied::Absent
    );
    assert_eq!(
        store.apply(&folded("fan-e", true), v(22)).await.unwrap(),
        Applied::Aggregated
    );
    let items = aggregates(store).await;
    assert_eq!(items.len(), 2, "{items:?}");
    let (new, old): (Vec<_>, Vec<_>) = items.into_iter().partition(|item| !item.read_status);
    assert_eq!(old[0].action_key, read.action_key);
    assert_eq!((old[0].actor_count, userids(&old[0])), (Some(3), userids(&read)));
    assert_ne!(new[0].action_key, read.action_key);
    assert_eq!(
        (new[0].actor_count, userids(&new[0])),
        (Some(2), vec!["fan-e".to_owned(), "fan-d".to_owned()])
    );
}

/// An unlike takes its actor out: the display moves to the latest remaining actor, and the
/// last one out removes the aggregate (reporting the life it ended). A late, older like of
/// an actor who unliked never comes back; a redelivered like never counts twice.
async fn unlikes_shrink_the_aggregate_and_the_last_removes_it(
    store: &impl NotificationStore,
    _raw: &RawStore,
) {
    store.apply(&folded("fan-a", true), v(10)).await.unwrap();
    store.apply(&folded("fan-b", true), v(11)).await.unwrap();
    assert_eq!(
        store.apply(&folded("fan-b", true), v(11)).await.unwrap(),
        Applied::Aggregated
    );
    assert_eq!(
        store.apply(&folded("fan-b", false), v(12)).await.unwrap(),
        Applied::Aggregated
    );
    let item = aggregates(store).await.remove(0);
    assert_eq!((item.userid.as_str(), item.actor_count), ("fan-a", Some(1)));
    assert_eq!(item.username.as_deref(), Some("Name fan-a"));
    assert_eq!(
        store.apply(&folded("fan-b", true), v(9)).await.unwrap(),
        Applied::Superseded
    );
    let report = store
        .apply_reported(&folded("fan-a", false), v(13))
        .await
        .unwrap();
    assert_eq!(report.applied, Applied::Removed);
    assert_eq!(report.ended.map(|ended| ended.id), Some(item.id));
    assert!(aggregates(store).await.is_empty());
    assert_eq!(
        store.apply(&folded("fan-a", true), v(8)).await.unwrap(),
        Applied::Superseded
    );
    assert!(aggregates(store).await.is_empty());
}

/// Random likes and unlikes from random actors, in random order with repeats, through two
/// replicas at once, end as applying each once in order does: the same actors, the same
/// count, the same latest three.
async fn any_arrival_order_gives_the_in_order_aggregate<S: NotificationStore>(
    store: &S,
    other: &S,
    rounds: usize,
) {
    for round in 0..rounds {
        let post = format!("post-p{round}");
        let events: Vec<(u64, String, bool)> = (0..30)
            .map(|sequence| {
                (
                    1000 + sequence,
                    format!("fan-{}", fastrand::u8(0..8)),
                    fastrand::bool(),
                )
            })
            .collect();
        // In order, once: an actor is in when its newest event is a like.
        let mut newest = std::collections::BTreeMap::new();
        for (sequence, actor, likes) in &events {
            newest.insert(actor.clone(), (*sequence, *likes));
        }
        let mut expected: Vec<(u64, String)> = newest
            .iter()
            .filter(|(_, (_, likes))| *likes)
            .map(|(actor, (sequence, _))| (*sequence, actor.clone()))
            .collect();
        expected.sort_by(|a, b| b.cmp(a));
        let changes: Vec<(u64, Change)> = events
            .iter()
            .map(|(sequence, actor, likes)| {
                let change = folded(actor, *likes);
                let change = match change {
                    Change::Join(mut join) => {
                        join.group.resource_id = Id::parse("resource_id", &post).unwrap();
                        Change::Join(join)
                    }
                    Change::Leave { mut group, actor } => {
                        group.resource_id = Id::parse("resource_id", &post).unwrap();
                        Change::Leave { group, actor }
                    }
                    other => other,
                };
                (*sequence, change)
            })
            .collect();
        let mut arrivals: Vec<&(u64, Change)> = changes.iter().chain(changes.iter().take(10)).collect();
        fastrand::shuffle(&mut arrivals);
        through_both(store, other, &arrivals).await;
        let items: Vec<FeedItem> = store
            .feed(&owner("user-1"), 100)
            .await
            .unwrap()
            .into_iter()
            .filter(|item| item.resource_id == post)
            .collect();
        if expected.is_empty() {
            assert!(items.is_empty(), "round {round}: {events:?} left {items:?}");
            continue;
        }
        assert_eq!(items.len(), 1, "round {round}: {items:?}");
        assert_eq!(
            items[0].actor_count,
            Some(expected.len() as u64),
            "round {round}: {events:?}"
        );
        let latest: Vec<String> = expected.iter().take(3).map(|(_, actor)| actor.clone()).collect();
        assert_eq!(userids(&items[0]), latest, "round {round}: {events:?}");
    }
}

/// Runs every contract check as its own test against a fresh store from `$fresh`.
macro_rules! store_contract {
    ($store:ident, $fresh:path) => {
        mod $store {
            use super::*;
            store_contract!(@tests $fresh, create_then_read_back, duplicate_keeps_the_stored_item,
                remove_and_remove_absent, feed_is_newest_first_per_owner_and_limited,
                field_mapping_matches_the_existing_table, setup_is_idempotent,
                concurrent_changes_to_different_keys, probe_answers_once_set_up,
                like_unlike_like_in_every_arrival_order, like_unlike_in_both_orders_ends_removed,
                a_live_notification_keeps_its_id_and_read_status,
                find_reads_one_notification_as_the_api_sees_it,
                a_zombie_create_between_a_tombstone_and_its_delete,
                a_create_newer_than_a_pending_remove_starts_a_new_life,
                a_create_retried_after_a_lost_response, rows_without_versions_count_as_the_oldest,
                a_remove_reports_the_life_it_ended_and_again_when_redelivered,
                a_remove_with_nothing_live_ends_nothing, an_older_remove_arriving_late_ended_nothing,
                a_later_removes_tombstone_never_remembers_an_earlier_removes_life,
                likes_fold_into_one_aggregate, a_read_aggregate_stays_and_the_next_like_starts_another,
                unlikes_shrink_the_aggregate_and_the_last_removes_it);

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn fifty_likes_ten_unlikes_and_redeliveries_through_two_replicas() {
                let fixture = $fresh().await;
                fixture.store.setup().await.unwrap();
                super::fifty_likes_ten_unlikes_and_redeliveries_through_two_replicas(&fixture.store, &fixture.other)
                    .await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn any_arrival_order_gives_the_in_order_aggregate() {
                let fixture = $fresh().await;
                fixture.store.setup().await.unwrap();
                super::any_arrival_order_gives_the_in_order_aggregate(&fixture.store, &fixture.other, 25).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn replicas_racing_on_one_key() {
                let fixture = $fresh().await;
                fixture.store.setup().await.unwrap();
                super::replicas_racing_on_one_key(&fixture.store, &fixture.other).await;
            }
        }
    };
    (@tests $fresh:path, $($check:ident),+) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $check() {
                let fixture = $fresh().await;
                fixture.store.setup().await.unwrap();
                super::$check(&fixture.store, &fixture.raw).await;
            }
        )+
    };
}

mod fresh {
    use super::support::Dynalite;
    use super::support::raw::RawStore;
    use notification_worker::store::{DynamoDbStore, SqliteStore};

    /// A fresh store, a second instance on the same data (another replica), and raw access.
    pub struct Fixture<S, K> {
        pub store: S,
        pub other: S,
        pub raw: RawStore,
        /// The temporary folder or the server, kept for the test's length.
        pub keep: K,
    }

    pub async fn sqlite() -> Fixture<SqliteStore, tempfile::TempDir> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested/folder/notifications.db");
        let store = SqliteStore::open(&path).unwrap();
        let other = SqliteStore::open(&path).unwrap();
        Fixture {
            store,
            other,
            raw: RawStore::Sqlite(path),
            keep: dir,
        }
    }

    pub async fn dynamodb() -> Fixture<DynamoDbStore, Dynalite> {
        let server = Dynalite::start();
        let store = server.store("contract-notifications").await;
        let other = server.store("contract-notifications").await;
        let raw = RawStore::dynamodb(&server, "contract-notifications").await;
        Fixture {
            store,
            other,
            raw,
            keep: server,
        }
    }
}

store_contract!(sqlite, fresh::sqlite);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probes_report_a_missing_schema_or_table() {
    let sqlite = fresh::sqlite().await;
    let error = sqlite.store.probe().await.unwrap_err();
    assert!(error.message.contains("notification-worker setup"), "{error}");
    let dynamodb = fresh::dynamodb().await;
    let error = dynamodb.store.probe().await.unwrap_err();
    assert!(error.message.contains("notification-worker setup"), "{error}");
}
store_contract!(dynamodb, fresh::dynamodb);

/// An item without `id` (an unconditioned update of a deleted notification) counts as
/// absent: a create stores a whole notification over it. DynamoDB only: SQLite's `id` is
/// NOT NULL, so no such row can exist there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dynamodb_an_item_without_id_counts_as_absent() {
    let fixture = fresh::dynamodb().await;
    fixture.store.setup().await.unwrap();
    let like = like("fan-1");
    fixture
        .raw
        .insert_without_id("user-1", like.action_key().unwrap().as_str())
        .await;
    assert_eq!(
        fixture.store.apply(&unlike_of("fan-1"), v(2)).await.unwrap(),
        Applied::Absent
    );
    assert_eq!(fixture.store.apply(&like, v(3)).await.unwrap(), Applied::Created);
    let item = stored(&fixture.store, "fan-1").await.unwrap();
    assert_eq!((item.id, item.read_status), (id_of(&like), false));
}

/// A PutItem whose response timed out: the worker retries, finishes the protocol (a newer
/// remove wins), and only then does the first put land on the busy server, bringing the
/// notification back. The store that sent it checks the key again later and runs the
/// remove's delete. DynamoDB only: SQLite has no request that outlives its caller.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dynamodb_a_put_that_lands_after_its_timeout_is_undone_by_a_recheck() {
    use notification_worker::store::{DynamoDbStore, ErrorKind};
    use std::time::Duration;
    let fixture = fresh::dynamodb().await;
    fixture.store.setup().await.unwrap();
    // Requests to dynalite through this proxy arrive 1.5 s late; the client gives up after 0.3 s.
    let proxy = support::DelayingProxy::start(fixture.keep.port, Duration::from_millis(1500));
    let credentials = aws_sdk_dynamodb::config::Credentials::new(
        support::AWS_ACCESS_KEY,
        support::AWS_SECRET_KEY,
        None,
        None,
        "tests",
    );
    let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new(support::AWS_REGION))
        .endpoint_url(proxy.endpoint())
        .credentials_provider(credentials)
        .timeout_config(
            aws_config::timeout::TimeoutConfig::builder()
                .operation_attempt_timeout(Duration::from_millis(300))
                .build(),
        )
        .load()
        .await;
    let slow = DynamoDbStore::with_config(&config, "contract-notifications");

    let like = like("fan-1");
    let error = slow.apply(&like, v(3)).await.unwrap_err();
    assert_eq!(error.kind, ErrorKind::Transient, "{error}");
    proxy.set_delay(Duration::ZERO);
    // The unlike that follows, and the worker's retry of the like: the unlike wins.
    assert_eq!(
        fixture.store.apply(&unlike_of("fan-1"), v(4)).await.unwrap(),
        Applied::Absent
    );
    assert_eq!(
        fixture.store.apply(&like, v(3)).await.unwrap(),
        Applied::Superseded
    );
    assert!(stored(&fixture.store, "fan-1").await.is_none());
    // Then the first put lands...
    support::eventually("the late put to land", Duration::from_secs(10), || async {
        stored(&fixture.store, "fan-1").await.is_some()
    })
    .await;
    // ...and the recheck its store scheduled deletes it again.
    support::eventually("the recheck to delete it", Duration::from_secs(60), || async {
        stored(&fixture.store, "fan-1").await.is_none()
    })
    .await;
}

/// The schema the release before removes reported what they ended, with a tombstone and a
/// live notification in it: `setup` adds what is missing and keeps the data, the probe asks
/// for `setup` until then, and the old tombstone (which remembers no life) ends nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_a_file_from_the_previous_release_is_migrated() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notifications.db");
    {
        let connection = rusqlite::Connection::open(&path).unwrap();
        connection
            .execute_batch(
                "CREATE TABLE notifications (
                    owner TEXT NOT NULL, action_key TEXT NOT NULL, id TEXT NOT NULL, userid TEXT NOT NULL,
                    username TEXT, userpic TEXT, userbio TEXT, action INTEGER NOT NULL,
                    resource_type TEXT NOT NULL, resource_id TEXT NOT NULL, excerpt TEXT,
                    read_status INTEGER NOT NULL DEFAULT 0, created_at TEXT NOT NULL,
                    created_seq TEXT, version TEXT, PRIMARY KEY (owner, action_key)) WITHOUT ROWID;
                 CREATE INDEX notifications_owner_created_at ON notifications (owner, created_at);
                 CREATE TABLE tombstones (
                    owner TEXT NOT NULL, action_key TEXT NOT NULL, version TEXT NOT NULL,
                    expires_at INTEGER NOT NULL, PRIMARY KEY (owner, action_key)) WITHOUT ROWID;
                 CREATE INDEX tombstones_expires_at ON tombstones (expires_at);",
            )
            .unwrap();
        // A notification the previous release created at 3, still live.
        connection
            .execute(
                "INSERT INTO notifications (owner, action_key, id, userid, action, resource_type, resource_id,
                     created_at, created_seq, version)
                 VALUES ('user-1', ?1, 'id-of-fan-2', 'fan-2', 1, 'POST', 'post-1', '2025-12-09T22:06:40Z', ?2, ?2)",
                rusqlite::params![like("fan-2").action_key().unwrap().as_str(), v(3).to_text()],
            )
            .unwrap();
    }
    let raw = RawStore::Sqlite(path.clone());
    raw.write_tombstone("user-1", unlike_of("fan-1").action_key().unwrap().as_str(), v(4))
        .await;
    let store = notification_worker::store::SqliteStore::open(&path).unwrap();
    let error = store.probe().await.unwrap_err();
    assert!(error.message.contains("notification-worker setup"), "{error}");

    store.setup().await.unwrap();
    store.probe().await.unwrap();
    assert_eq!(
        store.apply_reported(&unlike_of("fan-1"), v(4)).await.unwrap(),
        ABSENT,
        "a tombstone from before remembers no life"
    );
    assert_eq!(stored(&store, "fan-2").await.unwrap().id, "id-of-fan-2");
    for _ in 0..2 {
        assert_eq!(
            store.apply_reported(&unlike_of("fan-2"), v(5)).await.unwrap(),
            removed("id-of-fan-2", v(3))
        );
    }
}

/// Exact at ten thousand actors on one aggregate: they all arrive at once (one group
/// commit after another), a hundred take theirs back, and the count is what is left.
/// SQLite only: DynamoDB recounts the same way from a strongly consistent query of the
/// members, whose cost grows with the aggregate (docs/aggregation.md says so); dynalite
/// would spend minutes on it here.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_ten_thousand_actors_on_one_aggregate_are_counted_exactly() {
    let fixture = fresh::sqlite().await;
    fixture.store.setup().await.unwrap();
    let store = &fixture.store;
    let likes: Vec<Change> = (0..10_000)
        .map(|i| folded(&format!("fan-{i:05}"), true))
        .collect();
    futures::future::join_all(
        likes
            .iter()
            .enumerate()
            .map(|(i, like)| store.apply(like, v(100_000 + i as u64))),
    )
    .await
    .into_iter()
    .for_each(|applied| {
        applied.unwrap();
    });
    let unlikes: Vec<Change> = (0..100)
        .map(|i| folded(&format!("fan-{:05}", i * 7), false))
        .collect();
    futures::future::join_all(
        unlikes
            .iter()
            .enumerate()
            .map(|(i, unlike)| store.apply(unlike, v(200_000 + i as u64))),
    )
    .await
    .into_iter()
    .for_each(|applied| {
        applied.unwrap();
    });
    let items = aggregates(store).await;
    assert_eq!(items.len(), 1);
    assert_eq!(items[0].actor_count, Some(9_900));
    assert_eq!(userids(&items[0]), ["fan-09999", "fan-09998", "fan-09997"]);
    // The item the API reads stays small whatever the count.
    assert!(serde_json::to_vec(&items[0]).unwrap().len() < 4096);
}
