//! Every hostile payload of the corpus is refused with the reason code SPEC.md gives it,
//! without panicking, and the parser still accepts valid events afterwards. No network.

#[path = "support/hostile.rs"]
mod hostile;

use notification_worker::domain::{Aggregation, Change, Decision, EventPolicy, Timestamp, parse_event};
use serde_json::json;
use std::panic::{AssertUnwindSafe, catch_unwind};

const CODES: [&str; 4] = ["too_large", "invalid_json", "missing_field", "invalid_field"];

fn policy() -> EventPolicy {
    EventPolicy {
        allow_http_pictures: false,
        now: Timestamp::now(),
        aggregate: Aggregation::OFF,
    }
}

fn short(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(120)]).into_owned();
    format!("{text:?} ({} bytes)", bytes.len())
}

#[test]
fn the_corpus_is_big_enough_and_well_formed() {
    let corpus = hostile::corpus();
    assert!(corpus.len() >= 40, "only {} hostile payloads", corpus.len());
    let mut names = std::collections::HashSet::new();
    for entry in &corpus {
        assert!(names.insert(entry.name), "duplicate name {:?}", entry.name);
        assert!(
            CODES.contains(&entry.reason),
            "{}: unknown code {}",
            entry.name,
            entry.reason
        );
        assert!(
            entry.name.contains(": "),
            "{:?} does not start with a field",
            entry.name
        );
    }
}

#[test]
fn every_hostile_payload_is_refused_with_its_reason() {
    let policy = policy();
    let mut failures = Vec::new();
    for entry in hostile::corpus() {
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            parse_event(entry.subject, &entry.body, &policy)
        }));
        let field = entry.name.split(": ").next().unwrap();
        match outcome {
            Err(_) => failures.push(format!("{}: PANICKED on {}", entry.name, short(&entry.body))),
            Ok(Ok((_, decision))) => failures.push(format!(
                "{}: ACCEPTED {} as {decision:?}",
                entry.name,
                short(&entry.body)
            )),
            Ok(Err(rejection)) => {
                if rejection.reason.code() != entry.reason {
                    failures.push(format!(
                        "{}: expected {}, got {rejection}",
                        entry.name, entry.reason
                    ));
                } else if !rejection.message.starts_with(field) {
                    failures.push(format!(
                        "{}: message does not name {field}: {rejection}",
                        entry.name
                    ));
                } else if rejection.message.len() > 300 {
                    // Messages name the problem; they never echo a large piece of the input.
                    failures.push(format!(
                        "{}: message of {} bytes",
                        entry.name,
                        rejection.message.len()
                    ));
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn valid_events_still_parse_after_the_corpus() {
    let policy = policy();
    for entry in hostile::corpus() {
        let _ = parse_event(entry.subject, &entry.body, &policy);
    }
    let (event_type, decision) = parse_event(hostile::SUBJECT, &hostile::valid_body(), &policy).unwrap();
    assert_eq!(event_type.name, "post_like");
    let Decision::Apply(Change::Create(notification)) = decision else {
        panic!("expected a create, got {decision:?}")
    };
    assert_eq!(notification.owner.as_str(), "user-123");
    assert_eq!(
        notification.action_key.as_str(),
        "user-456#post-789#1#0001-01-01T00:00:00Z"
    );
    assert_eq!(notification.created_at.to_rfc3339(), "2025-12-09T22:06:40Z");
}

/// The limit is "at most 64 KiB": exactly 64 KiB is fine.
#[test]
fn a_body_of_exactly_64_kib_is_accepted() {
    let mut event = hostile::valid_event();
    event.insert("pad".into(), json!(""));
    let base = serde_json::to_vec(&event).unwrap().len();
    event.insert("pad".into(), json!("x".repeat(hostile::MAX_BODY_BYTES - base)));
    let body = serde_json::to_vec(&event).unwrap();
    assert_eq!(body.len(), hostile::MAX_BODY_BYTES);
    assert!(parse_event(hostile::SUBJECT, &body, &policy()).is_ok());
}

/// Unknown fields are ignored, however deeply nested: serde_json skips them without
/// recursion, so this neither overflows the stack nor is refused.
#[test]
fn deeply_nested_unknown_fields_are_skipped() {
    let mut body = br#"{"extra":"#.to_vec();
    body.extend(std::iter::repeat_n(b'[', 20_000));
    body.extend(std::iter::repeat_n(b']', 20_000));
    body.push(b',');
    body.extend_from_slice(&hostile::valid_body()[1..]);
    assert!(body.len() <= hostile::MAX_BODY_BYTES);
    assert!(parse_event(hostile::SUBJECT, &body, &policy()).is_ok());
}

/// The limits are inclusive: 128-byte ids, 128-character usernames, 512-character bios and
/// 2048-byte pictures are accepted (the corpus refuses one more).
#[test]
fn values_at_the_limits_are_accepted() {
    let mut event = hostile::valid_event();
    event.insert("owner".into(), json!("o".repeat(128)));
    event.insert("trigger_user".into(), json!("€".repeat(42)));
    event.insert("resource_id".into(), json!("r".repeat(128)));
    event.insert("username".into(), json!("é".repeat(128)));
    event.insert("user_bio".into(), json!(format!("{}\n", "b".repeat(511))));
    let prefix = "https://cdn.example.com/";
    event.insert(
        "user_picture".into(),
        json!(format!("{prefix}{}", "a".repeat(2048 - prefix.len()))),
    );
    event.insert("created_at".into(), json!(Timestamp::now().unix() + 23 * 60 * 60));
    let body = serde_json::to_vec(&event).unwrap();
    let (_, decision) = parse_event(hostile::SUBJECT, &body, &policy()).unwrap();
    assert!(
        matches!(decision, Decision::Apply(Change::Create(_))),
        "{decision:?}"
    );
}

/// The picture checks refuse what other URL parsers would read differently, not ordinary
/// URLs.
#[test]
fn ordinary_picture_urls_are_accepted() {
    for url in [
        "https://cdn.example.com/u/456.jpg",
        "HTTPS://CDN.example.com/u/456.jpg",
        "https://cdn.example.com",
        "https://cdn.example.com:8443/u/456.jpg?size=64&v=2#top",
        "https://user@cdn.example.com/a%20b.png",
        "https://[::1]/x.png",
        "https://bücher.example/x.png",
    ] {
        let body = {
            let mut event = hostile::valid_event();
            event.insert("user_picture".into(), json!(url));
            serde_json::to_vec(&event).unwrap()
        };
        let result = parse_event(hostile::SUBJECT, &body, &policy());
        assert!(result.is_ok(), "{url}: {result:?}");
    }
}
