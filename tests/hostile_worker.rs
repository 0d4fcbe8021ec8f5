//! The hostile corpus through a running worker: every payload dead-lettered with its reason,
//! none stored, no crash, and a valid event after them still lands.

#[path = "support/hostile.rs"]
mod hostile;
mod support;

use std::collections::BTreeMap;
use std::time::Duration;
use support::*;

const WITHIN: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_hostile_payload_is_dead_lettered_with_its_reason_and_nothing_is_stored() {
    let nats = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let mut env = base_env(&nats, dir.path());
    // Production rules: https:// pictures only.
    env.push(("ENVIRONMENT", "production".into()));
    env.push(("NOTIF_STORE", "sqlite".into()));
    run_setup(dir.path(), &env);
    let mut worker = Worker::start(dir.path(), &env);
    let js = nats.jetstream().await;

    let corpus = hostile::corpus();
    assert!(corpus.len() >= 40);
    let mut expected = BTreeMap::new();
    for case in &corpus {
        let seq = publish(&js, case.subject, case.body.clone()).await;
        expected.insert(seq, (case.name, format!("invalid:{}", case.reason)));
    }
    let valid = publish(&js, "notifications.post.like", like("user-1", "user-2", "post-1")).await;

    wait_until("an outcome for every payload", WITHIN, || {
        expected
            .keys()
            .chain([&valid])
            .all(|seq| worker.outcome_of(*seq).is_some())
    });
    for (seq, (name, outcome)) in &expected {
        assert_eq!(worker.outcome_of(*seq).as_ref(), Some(outcome), "{name}");
    }
    assert_eq!(worker.outcome_of(valid).as_deref(), Some("created"));
    assert_eq!(count_rows(dir.path()), 1, "only the valid event is stored");

    let letters = dead_letters(&nats).await;
    let lettered: std::collections::BTreeSet<u64> = letters
        .iter()
        .map(|letter| header(letter, "Dlq-Original-Sequence").parse().unwrap())
        .collect();
    let missing: Vec<_> = expected
        .iter()
        .filter(|(seq, _)| !lettered.contains(seq))
        .map(|(_, (name, _))| name)
        .collect();
    assert!(missing.is_empty(), "not dead-lettered: {missing:?}");
    assert_eq!(letters.len(), corpus.len());
    for letter in &letters {
        let seq: u64 = header(letter, "Dlq-Original-Sequence").parse().unwrap();
        let (name, outcome) = &expected[&seq];
        assert_eq!(
            format!("invalid:{}", header(letter, "Dlq-Reason")),
            *outcome,
            "{name}"
        );
        let case = corpus.iter().find(|case| case.name == *name).unwrap();
        match header(letter, "Dlq-Truncated").as_str() {
            // Too large to carry whole next to the headers: its first 64 KiB are kept.
            "" => assert_eq!(
                letter.payload.as_ref(),
                case.body.as_slice(),
                "{name}: body untouched"
            ),
            size => {
                assert_eq!(size, case.body.len().to_string(), "{name}");
                assert!(
                    case.body.starts_with(&letter.payload) && letter.payload.len() == 64 * 1024,
                    "{name}"
                );
            }
        }
    }
    eventually("everything acknowledged", WITHIN, || async {
        consumer_backlog(&nats).await == (0, 0)
    })
    .await;
    assert!(worker.is_running());
}
