//! What each event does, end to end: a private nats-server, the worker binary, SQLite.

mod support;

use notification_worker::domain::{Operation, SUBJECTS};
use std::collections::BTreeMap;
use std::time::Duration;
use support::*;

const WITHIN: Duration = Duration::from_secs(60);

struct Setup {
    nats: NatsServer,
    dir: tempfile::TempDir,
    worker: Worker,
    js: async_nats::jetstream::Context,
}

async fn start() -> Setup {
    let nats = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let worker = Worker::start(dir.path(), &base_env(&nats, dir.path()));
    let js = nats.jetstream().await;
    Setup {
        nats,
        dir,
        worker,
        js,
    }
}

impl Setup {
    fn rows(&self) -> i64 {
        count_rows(self.dir.path())
    }

    fn has(&self, owner: &str, action_key: &str) -> bool {
        sqlite(self.dir.path())
            .query_row(
                "SELECT COUNT(*) FROM notifications WHERE owner = ?1 AND action_key = ?2",
                [owner, action_key],
                |row| row.get::<_, i64>(0),
            )
            .unwrap()
            == 1
    }

    /// Waits until the worker has logged an outcome for every sequence up to `last`.
    fn wait_for_outcomes(&self, sequences: &[u64]) -> BTreeMap<u64, String> {
        wait_until("an outcome for every event", WITHIN, || {
            sequences.iter().all(|seq| self.worker.outcome_of(*seq).is_some())
        });
        sequences
            .iter()
            .map(|seq| (*seq, self.worker.outcome_of(*seq).unwrap()))
            .collect()
    }
}

fn event(resource_type: &str, action: u8) -> String {
    format!(
        r#"{{"owner":"user-123","trigger_user":"user-456","action":{action},"resource_type":"{resource_type}","resource_id":"res-{action}","created_at":1765318000}}"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_row_of_the_subject_table_does_what_it_says() {
    let s = start().await;
    let mut sequences = Vec::new();
    let mut expected = BTreeMap::new();
    // Creates first, then removes, so each remove finds what its create stored.
    let mut rows: Vec<_> = SUBJECTS.iter().collect();
    rows.sort_by_key(|row| row.operation == Operation::Remove);
    for row in rows {
        let action = row.action.unwrap();
        let resource_type = row.resource_types[0].as_str();
        let seq = publish(&s.js, row.subject, event(resource_type, action)).await;
        let outcome = match row.operation {
            Operation::Create => "created",
            Operation::Remove => "removed",
        };
        expected.insert(seq, outcome.to_owned());
        sequences.push(seq);
    }
    // Subjects outside the table: create, or remove when the last token starts with "un".
    let share = event("POST", 5).replace("res-5", "res-share");
    let seq = publish(&s.js, "notifications.post.share", share.clone()).await;
    expected.insert(seq, "created".into());
    sequences.push(seq);
    let seq = publish(&s.js, "notifications.post.unshare", share).await;
    expected.insert(seq, "removed".into());
    sequences.push(seq);

    assert_eq!(s.wait_for_outcomes(&sequences), expected);
    // like/unlike, follow/unfollow and share/unshare cancel; replies and the mention stay.
    let left: Vec<String> = sqlite(s.dir.path())
        .prepare("SELECT action_key FROM notifications ORDER BY action_key")
        .unwrap()
        .query_map([], |row| row.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(
        left,
        [
            "user-456#res-3#3#0001-01-01T00:00:00Z",
            "user-456#res-4#4#0001-01-01T00:00:00Z",
            "user-456#res-5#5#0001-01-01T00:00:00Z",
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shared_sample_events_have_their_documented_outcomes() {
    let s = start().await;
    let mut samples: Vec<(String, String, String)> = Vec::new();
    for folder in ["valid", "invalid"] {
        for entry in std::fs::read_dir(shared_events().join(folder)).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_stem().unwrap().to_str().unwrap().to_owned();
            let (subject, outcome) = name
                .split_once("--")
                .expect("files are named SUBJECT--OUTCOME.json");
            let outcome = if folder == "invalid" {
                format!("invalid:{outcome}")
            } else {
                outcome.to_owned()
            };
            samples.push((subject.to_owned(), outcome, path.display().to_string()));
        }
    }
    // A remove sample removes what a create sample made: publish removes last.
    samples.sort_by_key(|(_, outcome, path)| (outcome == "removed", path.clone()));
    assert!(samples.len() >= 10, "found only {} samples", samples.len());
    let mut expected = BTreeMap::new();
    for (subject, outcome, path) in &samples {
        let seq = publish(&s.js, subject, std::fs::read(path).unwrap()).await;
        expected.insert(seq, outcome.clone());
    }
    let sequences: Vec<u64> = expected.keys().copied().collect();
    assert_eq!(s.wait_for_outcomes(&sequences), expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeated_like_is_stored_once_and_keeps_its_read_status() {
    let s = start().await;
    let body = like("user-1", "user-2", "post-1");
    let first = publish(&s.js, "notifications.post.like", body.clone()).await;
    s.wait_for_outcomes(&[first]);
    let read_id = |s: &Setup| -> String {
        sqlite(s.dir.path())
            .query_row("SELECT id FROM notifications", [], |row| row.get(0))
            .unwrap()
    };
    let id = read_id(&s);
    // The app marks it read; a redelivered or repeated like must not reset that.
    sqlite(s.dir.path())
        .execute("UPDATE notifications SET read_status = 1", [])
        .unwrap();
    let again = publish(&s.js, "notifications.post.like", body).await;
    assert_eq!(s.wait_for_outcomes(&[again])[&again], "duplicate");
    assert_eq!(s.rows(), 1);
    assert_eq!(read_id(&s), id);
    let read: bool = sqlite(s.dir.path())
        .query_row("SELECT read_status FROM notifications", [], |row| row.get(0))
        .unwrap();
    assert!(read);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unlike_removes_and_a_second_unlike_is_absent() {
    let s = start().await;
    let body = like("user-1", "user-2", "post-1");
    let created = publish(&s.js, "notifications.post.like", body.clone()).await;
    let removed = publish(&s.js, "notifications.post.unlike", body.clone()).await;
    let absent = publish(&s.js, "notifications.post.unlike", body).await;
    let outcomes = s.wait_for_outcomes(&[created, removed, absent]);
    assert_eq!(
        outcomes.values().map(String::as_str).collect::<Vec<_>>(),
        ["created", "removed", "absent"]
    );
    assert_eq!(s.rows(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn self_notifications_and_invalid_events_are_acknowledged_without_a_write() {
    let s = start().await;
    let own = publish(
        &s.js,
        "notifications.post.like",
        like("user-1", "user-1", "post-1"),
    )
    .await;
    let bad_json = publish(&s.js, "notifications.post.like", "{not json").await;
    let forged = publish(
        &s.js,
        "notifications.post.like",
        like("user-1", "user-2#post-9", "post-1"),
    )
    .await;
    let missing = publish(&s.js, "notifications.post.like", r#"{"owner":"user-1"}"#).await;
    let too_large = publish(&s.js, "notifications.post.like", vec![b' '; 70 * 1024]).await;
    let wrong_action = publish(
        &s.js,
        "notifications.comment.like",
        like("user-1", "user-2", "post-1"),
    )
    .await;
    let outcomes = s.wait_for_outcomes(&[own, bad_json, forged, missing, too_large, wrong_action]);
    assert_eq!(outcomes[&own], "self_skipped");
    assert_eq!(outcomes[&bad_json], "invalid:invalid_json");
    assert_eq!(outcomes[&forged], "invalid:invalid_field");
    assert_eq!(outcomes[&missing], "invalid:missing_field");
    assert_eq!(outcomes[&too_large], "invalid:too_large");
    assert_eq!(outcomes[&wrong_action], "invalid:invalid_field");
    assert_eq!(s.rows(), 0);
    // All settled: nothing left pending or waiting for an ack.
    eventually("the consumer to have nothing pending", WITHIN, || async {
        consumer_backlog(&s.nats).await == (0, 0)
    })
    .await;
    // And the worker goes on: a valid event after them still lands.
    let valid = publish(
        &s.js,
        "notifications.post.like",
        like("user-1", "user-2", "post-1"),
    )
    .await;
    assert_eq!(s.wait_for_outcomes(&[valid])[&valid], "created");
}

/// One worker applies a key's events in stream order even when they are published back to
/// back among a thousand others, pulled in the same batch and in flight together: the exact
/// in-order outcomes (created, removed, created), not just the right end state.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_for_one_key_apply_in_stream_order_among_a_thousand_others() {
    let s = start().await;
    let key = "user-456#post-789#1#0001-01-01T00:00:00Z";
    let other_key = "user-456#post-790#1#0001-01-01T00:00:00Z";
    let mut acks = Vec::new();
    let mut watched = Vec::new();
    for i in 0..1000 {
        if i == 500 {
            // Back to back: like, unlike, like on post-789; like, unlike on post-790.
            for (subject, resource) in [
                ("notifications.post.like", "post-789"),
                ("notifications.post.unlike", "post-789"),
                ("notifications.post.like", "post-789"),
                ("notifications.post.like", "post-790"),
                ("notifications.post.unlike", "post-790"),
            ] {
                let body = like("user-123", "user-456", resource);
                watched.push(acks.len());
                acks.push(s.js.publish(subject, body.into()).await.unwrap());
            }
        }
        let body = like(&format!("owner-{}", i % 37), &format!("fan-{i}"), "post-1");
        acks.push(
            s.js.publish("notifications.post.like", body.into())
                .await
                .unwrap(),
        );
    }
    let mut sequences = Vec::new();
    for ack in acks {
        sequences.push(ack.await.unwrap().sequence);
    }
    let outcomes = s.wait_for_outcomes(&sequences);
    let watched: Vec<&str> = watched
        .iter()
        .map(|&index| outcomes[&sequences[index]].as_str())
        .collect();
    assert_eq!(
        watched,
        ["created", "removed", "created", "created", "removed"],
        "applied once each, in stream order"
    );
    assert!(s.has("user-123", key), "like, unlike, like ends liked");
    assert!(!s.has("user-123", other_key), "like, unlike ends unliked");
    assert_eq!(s.rows(), 1001);
}

/// The same promise where store calls really run concurrently (DynamoDB: many requests in
/// flight, answered in any order): fifty keys, each like → unlike → like back to back among
/// other events, each applied exactly in stream order by one worker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_worker_applies_each_keys_events_in_stream_order_on_dynamodb() {
    let nats = NatsServer::start();
    let dynamo = Dynalite::start();
    let dir = tempfile::tempdir().unwrap();
    let mut env = base_env(&nats, dir.path());
    env.extend(dynamo.worker_env("order-notifications"));
    let worker = Worker::start(dir.path(), &env);
    let js = nats.jetstream().await;
    let mut acks = Vec::new();
    let mut watched: Vec<(usize, &str)> = Vec::new();
    for key in 0..50 {
        for (subject, expected) in [
            ("notifications.post.like", "created"),
            ("notifications.post.unlike", "removed"),
            ("notifications.post.like", "created"),
        ] {
            watched.push((acks.len(), expected));
            let body = like("user-123", &format!("fan-{key}"), "post-1");
            acks.push(js.publish(subject, body.into()).await.unwrap());
        }
        for other in 0..10 {
            let body = like(&format!("owner-{other}"), &format!("fan-{key}"), "post-2");
            acks.push(js.publish("notifications.post.like", body.into()).await.unwrap());
        }
    }
    let mut sequences = Vec::new();
    for ack in acks {
        sequences.push(ack.await.unwrap().sequence);
    }
    wait_until("an outcome for every event", WITHIN, || {
        sequences.iter().all(|seq| worker.outcome_of(*seq).is_some())
    });
    for (index, expected) in watched {
        assert_eq!(
            worker.outcome_of(sequences[index]).as_deref(),
            Some(expected),
            "event {index} in stream order"
        );
    }
}
