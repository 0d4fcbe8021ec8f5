//! The directory as the delivery stage reads it: cached for a short lifetime, with bounded
//! memory, on a real SQLite recipient store written through a second handle (as another
//! replica would).

use notification_worker::domain::{Id, Version};
use notification_worker::recipients::{CacheSettings, Directory, Email, RecipientChange, Upsert};
use notification_worker::store::{AnyRecipientStore, RecipientStore, SqliteRecipientStore};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn owner(id: &str) -> Id {
    Id::parse("owner", id).unwrap()
}

async fn directory(dir: &std::path::Path, settings: CacheSettings) -> (Directory, SqliteRecipientStore) {
    let path = dir.join("notifications.db");
    let store = SqliteRecipientStore::open(&path).unwrap();
    store.setup().await.unwrap();
    let other = SqliteRecipientStore::open(&path).unwrap();
    (
        Directory::new(Arc::new(AnyRecipientStore::Sqlite(store)), settings),
        other,
    )
}

#[tokio::test]
async fn an_answer_is_kept_for_its_lifetime_then_read_again() {
    let dir = tempfile::tempdir().unwrap();
    let ttl = Duration::from_millis(400);
    let (directory, other_replica) = directory(dir.path(), CacheSettings { ttl, capacity: 10 }).await;
    let alice = owner("user-1");
    let cached_at = Instant::now();
    assert!(directory.get(&alice).await.unwrap().is_none());
    let upsert = RecipientChange::Upsert(Upsert {
        email: Some(Some(Email::parse("alice@example.com").unwrap())),
        ..Upsert::default()
    });
    other_replica
        .apply(&alice, &upsert, Version::new(1_764_000_000_000_000, 1).unwrap())
        .await
        .unwrap();
    // "Nobody" was cached: still the answer within the lifetime.
    assert!(directory.get(&alice).await.unwrap().is_none());
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if let Some(found) = directory.get(&alice).await.unwrap() {
            assert_eq!(found.email().unwrap().as_str(), "alice@example.com");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the change never showed through the cache"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        cached_at.elapsed() >= ttl,
        "the change showed before the cached answer expired"
    );
    // Forgetting an owner reads the store at once.
    directory.forget(&alice);
    assert!(directory.get(&alice).await.unwrap().is_some());
}

#[tokio::test]
async fn memory_stays_within_the_configured_size() {
    let dir = tempfile::tempdir().unwrap();
    let settings = CacheSettings {
        ttl: Duration::from_secs(60),
        capacity: 100,
    };
    let (directory, _) = directory(dir.path(), settings).await;
    let mut largest = 0;
    for i in 0..2_000 {
        directory.get(&owner(&format!("user-{i}"))).await.unwrap();
        // Asked twice in a row: the second answer comes from the cache.
        directory.get(&owner(&format!("user-{i}"))).await.unwrap();
        largest = largest.max(directory.len());
    }
    assert_eq!(
        largest, 100,
        "the cache should fill up to its size and never past it"
    );
}

#[tokio::test]
async fn a_zero_lifetime_keeps_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let settings = CacheSettings {
        ttl: Duration::ZERO,
        capacity: 100,
    };
    let (directory, _) = directory(dir.path(), settings).await;
    directory.get(&owner("user-1")).await.unwrap();
    assert!(directory.is_empty());
}
