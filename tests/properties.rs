//! Properties of `parse_event` over generated input (proptest, default 256 cases each).

use notification_worker::domain::{
    Aggregation, Change, Decision, EventPolicy, EventType, SUBJECTS, Timestamp, parse_event,
};
use proptest::prelude::*;
use serde_json::{Map, Value, json};

/// A fixed "now" (2025-12-09T22:06:40Z) so that every case sees the same clock.
const NOW: i64 = 1_765_318_000;
const MAX_BODY_BYTES: usize = 64 * 1024;
const CODES: [&str; 4] = ["too_large", "invalid_json", "missing_field", "invalid_field"];

fn policy() -> EventPolicy {
    EventPolicy {
        allow_http_pictures: false,
        now: Timestamp::from_unix(NOW).unwrap(),
        aggregate: Aggregation::OFF,
    }
}

/// The parts of a valid event.
#[derive(Debug, Clone)]
struct Parts {
    row: EventType,
    owner: String,
    trigger_user: String,
    resource_id: String,
    resource_type: &'static str,
    username: Option<String>,
    excerpt: Option<String>,
    created_at: Option<i64>,
}

impl Parts {
    fn action(&self) -> u8 {
        self.row.action.expect("table rows name their action")
    }

    fn to_map(&self) -> Map<String, Value> {
        let mut event = Map::new();
        event.insert("owner".into(), json!(self.owner));
        event.insert("trigger_user".into(), json!(self.trigger_user));
        event.insert("action".into(), json!(self.action()));
        event.insert("resource_type".into(), json!(self.resource_type));
        event.insert("resource_id".into(), json!(self.resource_id));
        if let Some(username) = &self.username {
            event.insert("username".into(), json!(username));
        }
        if let Some(excerpt) = &self.excerpt {
            event.insert("excerpt".into(), json!(excerpt));
        }
        if let Some(created_at) = self.created_at {
            event.insert("created_at".into(), json!(created_at));
        }
        event
    }

    fn body(&self) -> Vec<u8> {
        serde_json::to_vec(&self.to_map()).unwrap()
    }
}

fn id() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9_-]{1,128}"
}

/// Free text a user could type: no control characters but newlines.
fn text(max_chars: usize) -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop_oneof![
            8 => any::<char>().prop_filter("no control characters", |c| !c.is_control()),
            1 => Just('\n'),
        ],
        0..=max_chars,
    )
    .prop_map(|chars| chars.into_iter().collect())
}

fn parts() -> impl Strategy<Value = Parts> {
    let row = prop::sample::select(SUBJECTS.to_vec());
    (row, id(), id(), id(), any::<bool>())
        .prop_flat_map(|(row, owner, trigger_user, resource_id, self_action)| {
            // Now and then the owner acts on their own content.
            let trigger_user = if self_action { owner.clone() } else { trigger_user };
            let resource_types: Vec<&'static str> =
                row.resource_types.iter().map(|kind| kind.as_str()).collect();
            (
                Just((row, owner, trigger_user, resource_id)),
                prop::sample::select(resource_types),
                prop::option::of(text(128)),
                prop::option::of(text(600)),
                prop::option::of(prop_oneof![Just(0_i64), 0..=NOW + 24 * 60 * 60]),
            )
        })
        .prop_map(
            |((row, owner, trigger_user, resource_id), resource_type, username, excerpt, created_at)| Parts {
                row,
                owner,
                trigger_user,
                resource_id,
                resource_type,
                username,
                excerpt,
                created_at,
            },
        )
}

proptest! {
    /// (a) Arbitrary bytes and subjects: never a panic, only input reason codes.
    #[test]
    fn arbitrary_input_never_panics(
        subject in prop_oneof![
            any::<String>(),
            prop::sample::select(SUBJECTS.iter().map(|row| row.subject.to_owned()).collect::<Vec<_>>()),
        ],
        body in prop::collection::vec(any::<u8>(), 0..=70 * 1024),
    ) {
        match parse_event(&subject, &body, &policy()) {
            Ok(_) => {}
            Err(rejection) => {
                prop_assert!(CODES.contains(&rejection.reason.code()), "{rejection}");
                if body.len() > MAX_BODY_BYTES {
                    prop_assert_eq!(rejection.reason.code(), "too_large");
                }
            }
        }
    }

    /// (a') Valid events with one byte changed, or cut short: never a panic.
    #[test]
    fn mutated_valid_events_never_panic(
        parts in parts(),
        position in any::<prop::sample::Index>(),
        byte in any::<u8>(),
        cut in any::<bool>(),
    ) {
        let mut body = parts.body();
        let at = position.index(body.len());
        if cut {
            body.truncate(at);
        } else {
            body[at] = byte;
        }
        if let Err(rejection) = parse_event(parts.row.subject, &body, &policy()) {
            prop_assert!(CODES.contains(&rejection.reason.code()), "{rejection}");
        }
    }

    /// (b) Events built from valid parts are accepted, keyed as SPEC.md says.
    #[test]
    fn valid_events_are_accepted(parts in parts()) {
        let (event_type, decision) = parse_event(parts.row.subject, &parts.body(), &policy())
            .map_err(|rejection| TestCaseError::fail(format!("{rejection} for {parts:?}")))?;
        prop_assert_eq!(event_type, parts.row);
        let change = match decision {
            Decision::SkipSelf { owner } => {
                prop_assert_eq!(&parts.owner, &parts.trigger_user);
                prop_assert_eq!(owner.as_str(), parts.owner.as_str());
                return Ok(());
            }
            Decision::Apply(change) => change,
        };
        prop_assert_ne!(&parts.owner, &parts.trigger_user);
        let expected_key = format!(
            "{}#{}#{}#0001-01-01T00:00:00Z",
            parts.trigger_user,
            parts.resource_id,
            parts.action()
        );
        prop_assert_eq!(change.owner().as_str(), parts.owner.as_str());
        prop_assert_eq!(change.action_key().map(|key| key.as_str()), Some(expected_key.as_str()));
        if let Change::Create(notification) = &change {
            prop_assert_eq!(notification.trigger_user.as_str(), parts.trigger_user.as_str());
            prop_assert_eq!(notification.resource_id.as_str(), parts.resource_id.as_str());
            prop_assert_eq!(notification.resource_type.as_str(), parts.resource_type);
            prop_assert_eq!(notification.action.code(), parts.action());
            let username = parts.username.clone().filter(|name| !name.is_empty());
            prop_assert_eq!(&notification.username, &username);
            let expected_time = match parts.created_at {
                None | Some(0) => NOW,
                Some(seconds) => seconds,
            };
            prop_assert_eq!(notification.created_at.unix(), expected_time);
            prop_assert!(!notification.read_status);
        }
    }

    /// (c) A `#` anywhere in an id could forge an action key: always invalid_field.
    #[test]
    fn a_hash_in_any_id_is_refused(
        parts in parts(),
        field in 0..3_usize,
        position in any::<prop::sample::Index>(),
    ) {
        let mut parts = parts;
        let (name, id) = match field {
            0 => ("owner", &mut parts.owner),
            1 => ("trigger_user", &mut parts.trigger_user),
            _ => ("resource_id", &mut parts.resource_id),
        };
        let at = position.index(id.len() + 1); // ids are ASCII: every index is a boundary
        id.insert(at, '#');
        let rejection = parse_event(parts.row.subject, &parts.body(), &policy())
            .expect_err("an id with '#' was accepted");
        prop_assert_eq!(rejection.reason.code(), "invalid_field");
        prop_assert!(rejection.message.starts_with(name), "{}", rejection.message);
    }

    /// (d) Excerpts of any length are stored as their first 280 characters.
    #[test]
    fn excerpts_are_cut_to_a_prefix_of_280_characters(
        parts in parts(),
        excerpt in prop_oneof![text(300), text(5_000)],
    ) {
        let mut parts = parts;
        // Never a self-notification.
        parts.trigger_user = if parts.owner == "someone" { "someone-else" } else { "someone" }.to_owned();
        parts.excerpt = Some(excerpt.clone());
        let (_, decision) = parse_event(parts.row.subject, &parts.body(), &policy())
            .map_err(|rejection| TestCaseError::fail(format!("{rejection} for {parts:?}")))?;
        let Decision::Apply(change) = decision else {
            return Err(TestCaseError::fail("unexpected self-notification"));
        };
        if let Change::Create(notification) = change {
            match notification.excerpt {
                None => prop_assert!(excerpt.is_empty()),
                Some(stored) => {
                    prop_assert!(excerpt.starts_with(&stored));
                    prop_assert_eq!(stored.chars().count(), excerpt.chars().count().min(280));
                }
            }
        }
    }
}
