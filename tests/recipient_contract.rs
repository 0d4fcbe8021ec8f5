//! One behaviour contract for the recipient directory, run against both stores: SQLite on
//! a temporary file and DynamoDB on a private dynalite server. Each test gets two handles
//! on the same data (two connections, two clients), as two replicas would have.

mod support;

use notification_worker::domain::{Id, Version};
use notification_worker::recipients::{
    Applied, Email, EventTypeName, Locale, Mode, PreferenceChannel, PushKind, PushTarget, Recipient,
    RecipientChange, TargetKey, Upsert, WebPushKeys,
};
use notification_worker::store::RecipientStore;
use std::sync::Arc;

const EPOCH: u64 = 1_764_000_000_000_000;

fn v(sequence: u64) -> Version {
    Version::new(EPOCH, sequence).unwrap()
}

fn owner(id: &str) -> Id {
    Id::parse("owner", id).unwrap()
}

fn email(address: &str) -> RecipientChange {
    RecipientChange::Upsert(Upsert {
        email: Some(Some(Email::parse(address).unwrap())),
        ..Upsert::default()
    })
}

fn locale(tag: &str) -> RecipientChange {
    RecipientChange::Upsert(Upsert {
        locale: Some(Some(Locale::parse(tag).unwrap())),
        ..Upsert::default()
    })
}

fn preference(channel: &str, event_type: &str, mode: Option<&str>) -> RecipientChange {
    RecipientChange::Upsert(Upsert {
        preferences: vec![(
            PreferenceChannel::parse(channel).unwrap(),
            EventTypeName::parse(event_type).unwrap(),
            mode.map(|mode| Mode::parse(mode).unwrap()),
        )],
        ..Upsert::default()
    })
}

fn fcm(token: &str) -> TargetKey {
    TargetKey::token(PushKind::Fcm, token).unwrap()
}

fn push_add(token: &str) -> RecipientChange {
    RecipientChange::PushAdd(PushTarget::device(fcm(token)).unwrap())
}

fn webpush_add(endpoint: &str) -> RecipientChange {
    let keys = WebPushKeys::parse(
        "BNcRdreALRFXTkOOUHK1EtK2wtaz5Ry4YfYCA_0QTpQtUbVlUls0VJXg7A8u-Ts1XbjhazAkj7I99e8QcYP7DkM",
        "tBHItJI5svbpez7KI4CCXg",
    )
    .unwrap();
    let key = TargetKey::endpoint(endpoint, false).unwrap();
    RecipientChange::PushAdd(PushTarget::subscription(key, keys).unwrap())
}

fn sequential(owner_id: &str, events: &[(RecipientChange, Version)]) -> Recipient {
    let mut record = Recipient::new(owner(owner_id));
    for (change, version) in events {
        record.apply(change, *version);
    }
    record
}

async fn a_recipient_nobody_told_about_is_absent(store: &impl RecipientStore, _other: &impl RecipientStore) {
    assert_eq!(store.get(&owner("nobody")).await.unwrap(), None);
}

async fn every_field_survives_a_round_trip(store: &impl RecipientStore, other: &impl RecipientStore) {
    let events = vec![
        (email("a@example.com"), v(1)),
        (locale("fr-CA"), v(2)),
        (preference("push", "post.like", Some("digest")), v(3)),
        (preference("email", "reply.post", None), v(4)),
        (push_add("t1"), v(5)),
        (webpush_add("https://push.example.com/sub/1"), v(6)),
        (push_add("t2"), v(7)),
        (RecipientChange::PushRemove(fcm("t2")), v(8)),
    ];
    for (change, version) in &events {
        assert_eq!(
            store.apply(&owner("user-1"), change, *version).await.unwrap(),
            Applied::Changed
        );
    }
    let expected = sequential("user-1", &events);
    assert_eq!(store.get(&owner("user-1")).await.unwrap(), Some(expected.clone()));
    // The other replica reads the same record, versions and removed target included: an
    // older add of t2 stays removed there too.
    assert_eq!(other.get(&owner("user-1")).await.unwrap(), Some(expected));
    assert_eq!(
        other
            .apply(&owner("user-1"), &push_add("t2"), v(7))
            .await
            .unwrap(),
        Applied::Unchanged
    );
}

async fn an_older_email_and_a_newer_push_target_both_stay(
    store: &impl RecipientStore,
    other: &impl RecipientStore,
) {
    let user = owner("user-2");
    store.apply(&user, &push_add("t1"), v(11)).await.unwrap();
    assert_eq!(
        other.apply(&user, &email("b@example.com"), v(10)).await.unwrap(),
        Applied::Changed
    );
    let record = store.get(&user).await.unwrap().unwrap();
    assert_eq!(record.email().unwrap().as_str(), "b@example.com");
    assert_eq!(record.push_targets().count(), 1);
}

async fn a_remove_is_not_undone_by_an_older_upsert(store: &impl RecipientStore, other: &impl RecipientStore) {
    let user = owner("user-3");
    store.apply(&user, &email("c@example.com"), v(5)).await.unwrap();
    assert_eq!(
        store.apply(&user, &RecipientChange::Remove, v(12)).await.unwrap(),
        Applied::Changed
    );
    assert_eq!(
        other.apply(&user, &email("old@example.com"), v(9)).await.unwrap(),
        Applied::Unchanged
    );
    let record = other.get(&user).await.unwrap().unwrap();
    assert_eq!(record.email(), None);
    assert_eq!(record.removed_at(), Some(v(12)));
    // A newer upsert brings the recipient back.
    assert_eq!(
        store
            .apply(&user, &email("new@example.com"), v(13))
            .await
            .unwrap(),
        Applied::Changed
    );
    let record = store.get(&user).await.unwrap().unwrap();
    assert_eq!(record.email().unwrap().as_str(), "new@example.com");
}

async fn a_repeated_event_is_unchanged(store: &impl RecipientStore, other: &impl RecipientStore) {
    let user = owner("user-4");
    let change = preference("fcm", "mention", Some("off"));
    assert_eq!(store.apply(&user, &change, v(3)).await.unwrap(), Applied::Changed);
    assert_eq!(
        store.apply(&user, &change, v(3)).await.unwrap(),
        Applied::Unchanged
    );
    assert_eq!(
        other.apply(&user, &change, v(3)).await.unwrap(),
        Applied::Unchanged
    );
    assert_eq!(
        store.get(&user).await.unwrap(),
        Some(sequential("user-4", &[(change, v(3))]))
    );
}

/// Many events of one owner, each touching a different part of the record or racing for
/// the same field, in a shuffled order.
fn racing_events() -> Vec<(RecipientChange, Version)> {
    let mut events = Vec::new();
    let mut sequence = 1;
    let mut at = |change| {
        sequence += 1;
        (change, v(sequence))
    };
    for round in 0..6 {
        events.push(at(email(&format!("u{round}@example.com"))));
        events.push(at(locale(["en", "fr", "de"][round % 3])));
        events.push(at(push_add(&format!("token-{round}"))));
        events.push(at(preference(
            "push",
            "post.like",
            Some(["instant", "digest", "off"][round % 3]),
        )));
        events.push(at(preference("email", "user.follow", Some("off"))));
        if round % 2 == 1 {
            events.push(at(RecipientChange::PushRemove(fcm(&format!(
                "token-{}",
                round - 1
            )))));
        }
        if round == 3 {
            events.push(at(RecipientChange::Remove));
        }
    }
    // A fixed shuffle (a linear congruential generator), so a failure repeats.
    let mut state: u64 = 0x2545_f491_4f6c_dd1d;
    for i in (1..events.len()).rev() {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        let j = usize::try_from(state >> 33).unwrap() % (i + 1);
        events.swap(i, j);
    }
    events
}

async fn replicas_applying_at_once_end_as_one_would<S: RecipientStore>(store: S, other: S) {
    let events = racing_events();
    let expected = sequential("racer", &events);
    let handles = [Arc::new(store), Arc::new(other)];
    let mut tasks = tokio::task::JoinSet::new();
    // Eight tasks, four on each replica, each with every eighth event.
    for task in 0..8 {
        let store = Arc::clone(&handles[task % 2]);
        let mine: Vec<_> = events.iter().skip(task).step_by(8).cloned().collect();
        tasks.spawn(async move {
            for (change, version) in mine {
                store.apply(&owner("racer"), &change, version).await.unwrap();
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.unwrap();
    }
    assert_eq!(
        handles[0].get(&owner("racer")).await.unwrap(),
        Some(expected.clone())
    );
    assert_eq!(handles[1].get(&owner("racer")).await.unwrap(), Some(expected));
}

macro_rules! recipient_contract {
    ($store:ident, $fresh:path) => {
        mod $store {
            use super::*;

            macro_rules! case {
                ($name:ident) => {
                    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                    async fn $name() {
                        let fixture = $fresh().await;
                        fixture.store.setup().await.unwrap();
                        fixture.other.setup().await.unwrap();
                        super::$name(&fixture.store, &fixture.other).await;
                    }
                };
            }

            case!(a_recipient_nobody_told_about_is_absent);
            case!(every_field_survives_a_round_trip);
            case!(an_older_email_and_a_newer_push_target_both_stay);
            case!(a_remove_is_not_undone_by_an_older_upsert);
            case!(a_repeated_event_is_unchanged);

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn replicas_applying_at_once_end_as_one_would() {
                let fixture = $fresh().await;
                fixture.store.setup().await.unwrap();
                let _keep = fixture.keep;
                super::replicas_applying_at_once_end_as_one_would(fixture.store, fixture.other).await;
            }
        }
    };
}

mod fresh {
    use super::support::Dynalite;
    use notification_worker::store::{DynamoDbRecipientStore, SqliteRecipientStore};

    /// A store and a second handle on the same data (another replica).
    pub struct Fixture<S, K> {
        pub store: S,
        pub other: S,
        /// The temporary folder or the server, kept for the test's length.
        pub keep: K,
    }

    pub async fn sqlite() -> Fixture<SqliteRecipientStore, tempfile::TempDir> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("data/notifications.db");
        Fixture {
            store: SqliteRecipientStore::open(&path).unwrap(),
            other: SqliteRecipientStore::open(&path).unwrap(),
            keep: dir,
        }
    }

    pub async fn dynamodb() -> Fixture<DynamoDbRecipientStore, Dynalite> {
        let server = Dynalite::start();
        let config = server.sdk_config().await;
        Fixture {
            store: DynamoDbRecipientStore::with_config(&config, "contract-recipients"),
            other: DynamoDbRecipientStore::with_config(&server.sdk_config().await, "contract-recipients"),
            keep: server,
        }
    }
}

recipient_contract!(sqlite, fresh::sqlite);
recipient_contract!(dynamodb, fresh::dynamodb);

/// The SQLite directory lives in the notifications' file, in a table of its own: the
/// notifications table (which the API reads by owner) never holds a recipient.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_recipients_have_their_own_table() {
    let fixture = fresh::sqlite().await;
    fixture.store.setup().await.unwrap();
    fixture
        .store
        .apply(&owner("user-5"), &email("e@example.com"), v(1))
        .await
        .unwrap();
    let path = fixture.keep.path().join("data/notifications.db");
    let connection = rusqlite::Connection::open(path).unwrap();
    let (stored_email, revision): (String, i64) = connection
        .query_row(
            "SELECT email, revision FROM recipients WHERE owner = 'user-5'",
            [],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .unwrap();
    assert_eq!((stored_email.as_str(), revision), ("e@example.com", 1));
}
