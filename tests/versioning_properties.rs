//! Property test of versioned writes over both stores: random create/remove scripts for a few
//! keys, applied in a random order with random repeats, concurrently from two store
//! instances (two replicas), end as the in-order single application says and keep the
//! invariants; applied in stream order (with redeliveries), they give exactly the in-order
//! result.

mod support;

use notification_worker::domain::{
    Aggregation, Change, Decision, EventPolicy, Id, Timestamp, Version, parse_event,
};
use notification_worker::store::{Applied, DynamoDbStore, NotificationStore, SqliteStore};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};

const EPOCH: u64 = 1_764_000_000_000_000;

/// One event: its key (0..3), create or remove, and its own change (a create has its own id).
#[derive(Debug, Clone)]
struct Event {
    sequence: u64,
    key: usize,
    create: bool,
    change: Change,
}

#[derive(Debug, Clone)]
struct Case {
    owner: String,
    events: Vec<Event>,
    /// Indexes into `events`, in arrival order (repeats included).
    arrival: Vec<usize>,
    /// Sizes of the waves applied concurrently, in arrival order.
    waves: Vec<usize>,
}

fn change(owner: &str, key: usize, create: bool) -> Change {
    let subject = if create {
        "notifications.post.like"
    } else {
        "notifications.post.unlike"
    };
    let body = format!(
        r#"{{"owner":"{owner}","trigger_user":"fan-{key}","action":1,"resource_type":"POST","resource_id":"post-1","created_at":1765318000}}"#
    );
    let policy = EventPolicy {
        allow_http_pictures: false,
        now: Timestamp::now(),
        aggregate: Aggregation::OFF,
    };
    match parse_event(subject, body.as_bytes(), &policy).unwrap().1 {
        Decision::Apply(change) => change,
        Decision::SkipSelf { .. } => unreachable!(),
    }
}

fn case_strategy() -> impl Strategy<Value = Case> {
    static CASE: AtomicU64 = AtomicU64::new(0);
    prop::collection::vec((0..3usize, any::<bool>()), 1..14)
        .prop_flat_map(|script| {
            let len = script.len();
            (
                Just(script),
                prop::collection::vec(0..len, 0..len + 1),
                any::<u64>(),
                prop::collection::vec(1..6usize, 1..20),
            )
        })
        .prop_map(|(script, repeats, seed, waves)| {
            let owner = format!("case-{}", CASE.fetch_add(1, Ordering::Relaxed));
            let events: Vec<Event> = script
                .iter()
                .enumerate()
                .map(|(i, &(key, create))| Event {
                    sequence: 10 + i as u64,
                    key,
                    create,
                    change: change(&owner, key, create),
                })
                .collect();
            let mut arrival: Vec<usize> = (0..events.len()).chain(repeats).collect();
            fastrand::Rng::with_seed(seed).shuffle(&mut arrival);
            Case {
                owner,
                events,
                arrival,
                waves,
            }
        })
}

fn id_of(change: &Change) -> Option<String> {
    match change {
        Change::Create(notification) => Some(notification.id.to_string()),
        _ => None,
    }
}

/// Per key: (live, the id of the create that started the final life) by the in-order model.
fn in_order(events: &[Event], key: usize) -> (bool, Option<String>) {
    let mut starter: Option<String> = None;
    for event in events.iter().filter(|event| event.key == key) {
        if !event.create {
            starter = None;
        } else if starter.is_none() {
            starter = id_of(&event.change);
        }
    }
    (starter.is_some(), starter)
}

/// Applies the case; returns the ids reported `created`.
async fn apply<S: NotificationStore>(
    stores: [&S; 2],
    case: &Case,
    order: &[usize],
    waves: &[usize],
) -> Vec<String> {
    let mut created = Vec::new();
    let mut rest = order;
    let mut wave_sizes = waves.iter().cycle();
    while !rest.is_empty() {
        let size = (*wave_sizes.next().unwrap()).min(rest.len());
        let (wave, tail) = rest.split_at(size);
        rest = tail;
        let outcomes = futures::future::join_all(wave.iter().enumerate().map(|(i, &index)| {
            let event = &case.events[index];
            let store = stores[i % 2];
            async move {
                let applied = store
                    .apply(&event.change, Version::new(EPOCH, event.sequence).unwrap())
                    .await
                    .unwrap();
                (event, applied)
            }
        }))
        .await;
        created.extend(
            outcomes
                .into_iter()
                .filter(|(_, applied)| *applied == Applied::Created)
                .filter_map(|(event, _)| id_of(&event.change)),
        );
    }
    created
}

async fn stored_ids(store: &impl NotificationStore, owner: &str) -> HashMap<String, String> {
    store
        .feed(&Id::parse("owner", owner).unwrap(), 100)
        .await
        .unwrap()
        .into_iter()
        .map(|item| (item.action_key, item.id))
        .collect()
}

fn key_of(case: &Case, key: usize) -> Option<String> {
    case.events
        .iter()
        .find(|event| event.key == key)
        .and_then(|event| event.change.action_key().map(ToString::to_string))
}

/// Random order, repeats, concurrency: the live/absent state of the in-order application,
/// and every live notification reported created.
async fn check_any_order<S: NotificationStore>(stores: [&S; 2], case: &Case) -> Result<(), TestCaseError> {
    let created = apply(stores, case, &case.arrival, &case.waves).await;
    let stored = stored_ids(stores[0], &case.owner).await;
    for key in 0..3 {
        let Some(action_key) = key_of(case, key) else {
            continue;
        };
        let (live, _) = in_order(&case.events, key);
        let id = stored.get(&action_key);
        prop_assert_eq!(id.is_some(), live, "key {} of {:?}", key, case);
        if let Some(id) = id {
            prop_assert!(created.contains(id), "live {} was never reported created", id);
        }
    }
    Ok(())
}

/// Stream order, each event redelivered at once: exactly the in-order result.
async fn check_in_order<S: NotificationStore>(stores: [&S; 2], case: &Case) -> Result<(), TestCaseError> {
    let order: Vec<usize> = (0..case.events.len()).flat_map(|i| [i, i]).collect();
    apply(stores, case, &order, &[1]).await;
    let stored = stored_ids(stores[0], &case.owner).await;
    for key in 0..3 {
        let Some(action_key) = key_of(case, key) else {
            continue;
        };
        let (_, starter) = in_order(&case.events, key);
        prop_assert_eq!(
            stored.get(&action_key),
            starter.as_ref(),
            "key {} of {:?}",
            key,
            case
        );
    }
    Ok(())
}

fn run<S: NotificationStore>(stores: [&S; 2], cases: u32, runtime: &tokio::runtime::Runtime) {
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    });
    runner
        .run(&case_strategy(), |case| {
            runtime.block_on(check_any_order(stores, &case))
        })
        .unwrap();
    runner
        .run(&case_strategy(), |case| {
            runtime.block_on(check_in_order(stores, &case))
        })
        .unwrap();
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn sqlite_ends_as_in_order_whatever_the_arrival() {
    let runtime = runtime();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notifications.db");
    let (first, second) = runtime.block_on(async {
        let first = SqliteStore::open(&path).unwrap();
        first.setup().await.unwrap();
        (first, SqliteStore::open(&path).unwrap())
    });
    run([&first, &second], 128, &runtime);
}

#[test]
fn dynamodb_ends_as_in_order_whatever_the_arrival() {
    let runtime = runtime();
    let server = support::Dynalite::start();
    let (first, second): (DynamoDbStore, DynamoDbStore) = runtime.block_on(async {
        let first = server.store("property-notifications").await;
        first.setup().await.unwrap();
        (first, server.store("property-notifications").await)
    });
    run([&first, &second], 48, &runtime);
}
