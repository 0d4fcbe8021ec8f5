//! Property test of the recipient record's versioned merge: any set of recipient events,
//! applied in any order with any repeats, gives the same record as applying them once in
//! version order, and that record holds what the newest event for each field said.

use notification_worker::domain::Version;
use notification_worker::recipients::{
    Applied, EventTypeName, Mode, PreferenceChannel, Recipient, RecipientEvent, RecipientPolicy,
    parse_recipient_event,
};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

const EPOCH: u64 = 1_764_000_000_000_000;
const OWNER: &str = "user-123";
const EMAILS: [&str; 3] = ["a@example.com", "b@example.org", "c@mail.example.net"];
const TOKENS: [&str; 2] = ["fcm-token-a", "fcm-token-b"];
const ENDPOINTS: [&str; 2] = [
    "https://push.example.com/send/one",
    "https://push.example.com/send/two",
];
const P256DH: &str =
    "BNcRdreALRFXTkOOUHK1EtK2wtaz5Ry4YfYCA_0QTpQtUbVlUls0VJXg7A8u-Ts1XbjhazAkj7I99e8QcYP7DkM";
const AUTH: &str = "tBHItJI5svbpez7KI4CCXg";

/// One event as the application would publish it.
#[derive(Debug, Clone)]
enum Script {
    /// email index (None: field absent, Some(None): null), locale, one preference.
    Upsert {
        email: Option<Option<usize>>,
        locale: Option<usize>,
        preference: Option<(usize, usize, usize)>,
    },
    PushAdd(usize),
    PushRemove(usize),
    Remove,
}

fn script_strategy() -> impl Strategy<Value = Script> {
    prop_oneof![
        4 => (
            prop::option::of(prop::option::of(0..EMAILS.len())),
            prop::option::of(0..3usize),
            prop::option::of((0..3usize, 0..2usize, 0..4usize)),
        )
            .prop_map(|(email, locale, preference)| Script::Upsert { email, locale, preference }),
        3 => (0..4usize).prop_map(Script::PushAdd),
        2 => (0..4usize).prop_map(Script::PushRemove),
        1 => Just(Script::Remove),
    ]
}

fn target_json(target: usize) -> String {
    if target < TOKENS.len() {
        format!(r#""kind":"fcm","token":"{}""#, TOKENS[target])
    } else {
        format!(
            r#""kind":"webpush","subscription":{{"endpoint":"{}","expirationTime":null,"keys":{{"p256dh":"{P256DH}","auth":"{AUTH}"}}}}"#,
            ENDPOINTS[target - TOKENS.len()]
        )
    }
}

fn event(script: &Script) -> RecipientEvent {
    let (subject, body) = match script {
        Script::Upsert {
            email,
            locale,
            preference,
        } => {
            let mut fields = vec![format!(r#""owner":"{OWNER}""#)];
            match email {
                None => {}
                Some(None) => fields.push(r#""email":null"#.into()),
                Some(Some(i)) => fields.push(format!(r#""email":"{}""#, EMAILS[*i])),
            }
            if let Some(i) = locale {
                fields.push(format!(r#""locale":"{}""#, ["en", "fr-CA", "pt-BR"][*i]));
            }
            if let Some((channel, event_type, mode)) = preference {
                let channel = ["email", "push", "fcm"][*channel];
                let event_type = ["post.like", "reply.post"][*event_type];
                let mode = [r#""instant""#, r#""digest""#, r#""off""#, "null"][*mode];
                fields.push(format!(
                    r#""preferences":{{"{channel}":{{"{event_type}":{mode}}}}}"#
                ));
            }
            ("recipients.upsert", format!("{{{}}}", fields.join(",")))
        }
        Script::PushAdd(target) => (
            "recipients.push.add",
            format!(r#"{{"owner":"{OWNER}",{}}}"#, target_json(*target)),
        ),
        Script::PushRemove(target) => (
            "recipients.push.remove",
            format!(r#"{{"owner":"{OWNER}",{}}}"#, target_json(*target)),
        ),
        Script::Remove => ("recipients.remove", format!(r#"{{"owner":"{OWNER}"}}"#)),
    };
    parse_recipient_event(subject, body.as_bytes(), &RecipientPolicy::default())
        .unwrap_or_else(|rejection| panic!("{body}: {rejection}"))
}

#[derive(Debug, Clone)]
struct Case {
    scripts: Vec<Script>,
    /// The version of each script: distinct sequences, in an order unrelated to the list.
    sequences: Vec<u64>,
    /// Indexes into `scripts`, in arrival order, repeats included, every index at least once.
    arrival: Vec<usize>,
}

fn case_strategy() -> impl Strategy<Value = Case> {
    prop::collection::vec(script_strategy(), 1..16).prop_flat_map(|scripts| {
        let len = scripts.len();
        let sequences = Just((1..=len as u64).collect::<Vec<_>>()).prop_shuffle();
        let extra = prop::collection::vec(0..len, 0..len);
        let order = Just((0..len).collect::<Vec<_>>()).prop_shuffle();
        (Just(scripts), sequences, extra, order).prop_flat_map(|(scripts, sequences, extra, order)| {
            let mut arrival = order;
            arrival.extend(extra);
            (Just(scripts), Just(sequences), Just(arrival).prop_shuffle()).prop_map(
                |(scripts, sequences, arrival)| Case {
                    scripts,
                    sequences,
                    arrival,
                },
            )
        })
    })
}

fn version(sequence: u64) -> Version {
    Version::new(EPOCH, sequence).unwrap()
}

fn owner() -> notification_worker::domain::Id {
    notification_worker::domain::Id::parse("owner", OWNER).unwrap()
}

/// The scripts' events with their versions, oldest first.
fn in_version_order(case: &Case) -> Vec<(u64, Script, RecipientEvent)> {
    let mut events: Vec<_> = case
        .scripts
        .iter()
        .zip(&case.sequences)
        .map(|(script, sequence)| (*sequence, script.clone(), event(script)))
        .collect();
    events.sort_by_key(|(sequence, ..)| *sequence);
    events
}

fn check(case: &Case) -> Result<(), TestCaseError> {
    let ordered = in_version_order(case);
    let mut expected = Recipient::new(owner());
    for (sequence, _, event) in &ordered {
        expected.apply(&event.change, version(*sequence));
    }

    // Any order, with repeats: the same record.
    let mut arrived = Recipient::new(owner());
    for &index in &case.arrival {
        let event = event(&case.scripts[index]);
        arrived.apply(&event.change, version(case.sequences[index]));
    }
    prop_assert_eq!(&arrived, &expected, "arrival {:?}", case.arrival);

    // Idempotent: everything again changes nothing, and says so.
    for &index in &case.arrival {
        let event = event(&case.scripts[index]);
        prop_assert_eq!(
            arrived.apply(&event.change, version(case.sequences[index])),
            Applied::Unchanged
        );
    }
    prop_assert_eq!(&arrived, &expected);

    // And the record says what the newest event for each field said, counting a removal of
    // the recipient as clearing everything before it.
    let mut email: Option<&str> = None;
    let mut fcm_a = false;
    let mut email_like: Option<Mode> = None;
    for (_, script, _) in &ordered {
        match script {
            Script::Upsert {
                email: given,
                preference,
                ..
            } => {
                if let Some(given) = given {
                    email = given.map(|i| EMAILS[i]);
                }
                if let Some((0, 0, mode)) = preference {
                    email_like = [Some(Mode::Instant), Some(Mode::Digest), Some(Mode::Off), None][*mode];
                }
            }
            Script::PushAdd(0) => fcm_a = true,
            Script::PushRemove(0) => fcm_a = false,
            Script::PushAdd(_) | Script::PushRemove(_) => {}
            Script::Remove => {
                email = None;
                fcm_a = false;
                email_like = None;
            }
        }
    }
    prop_assert_eq!(arrived.email().map(|e| e.as_str()), email);
    let has_fcm_a = arrived.push_targets().any(|target| target.token() == TOKENS[0]);
    prop_assert_eq!(has_fcm_a, fcm_a);
    let like = EventTypeName::parse("post.like").unwrap();
    prop_assert_eq!(arrived.preference(PreferenceChannel::Email, &like), email_like);
    Ok(())
}

#[test]
fn any_order_with_repeats_gives_the_in_version_order_record() {
    let mut runner = TestRunner::new(Config {
        cases: 512,
        failure_persistence: None,
        ..Config::default()
    });
    runner.run(&case_strategy(), |case| check(&case)).unwrap();
}

#[test]
fn an_older_email_after_a_newer_push_add_is_applied_and_does_not_undo_it() {
    let mut recipient = Recipient::new(owner());
    let add = event(&Script::PushAdd(0));
    let upsert = event(&Script::Upsert {
        email: Some(Some(0)),
        locale: None,
        preference: None,
    });
    assert_eq!(recipient.apply(&add.change, version(11)), Applied::Changed);
    assert_eq!(recipient.apply(&upsert.change, version(10)), Applied::Changed);
    assert_eq!(recipient.email().map(|e| e.as_str()), Some(EMAILS[0]));
    assert_eq!(recipient.push_targets().count(), 1);
}

#[test]
fn a_removal_is_remembered_so_older_events_do_not_resurrect_the_recipient() {
    let mut recipient = Recipient::new(owner());
    let remove = event(&Script::Remove);
    let upsert = event(&Script::Upsert {
        email: Some(Some(1)),
        locale: Some(0),
        preference: None,
    });
    assert_eq!(recipient.apply(&remove.change, version(20)), Applied::Changed);
    assert_eq!(recipient.apply(&upsert.change, version(19)), Applied::Unchanged);
    assert_eq!(recipient.email(), None);
    assert_eq!(recipient.apply(&upsert.change, version(21)), Applied::Changed);
    assert_eq!(recipient.email().map(|e| e.as_str()), Some(EMAILS[1]));
    assert_eq!(recipient.locale().map(|l| l.as_str()), Some("en"));
}
