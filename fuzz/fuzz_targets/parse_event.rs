//! Fuzzes `parse_event`: the first line of the input is the subject (lossy UTF-8), the
//! rest is the body. Besides "never panics", checks what an accepted event guarantees.
#![no_main]

use libfuzzer_sys::fuzz_target;
use notification_worker::domain::{Change, Decision, EventPolicy, Timestamp, parse_event};

const MAX_BODY_BYTES: usize = 64 * 1024;

fuzz_target!(|data: &[u8]| {
    let (subject, body) = match data.iter().position(|&b| b == b'\n') {
        Some(end) => (String::from_utf8_lossy(&data[..end]), &data[end + 1..]),
        None => (String::from_utf8_lossy(data), &data[data.len()..]),
    };
    let policy = EventPolicy {
        allow_http_pictures: false,
        now: Timestamp::from_unix(1_765_318_000).expect("in range"),
    };
    match parse_event(&subject, body, &policy) {
        Err(rejection) => {
            let code = rejection.reason.code();
            assert!(
                matches!(
                    code,
                    "too_large" | "invalid_json" | "missing_field" | "invalid_field"
                ),
                "{rejection}"
            );
            assert_eq!(body.len() > MAX_BODY_BYTES, code == "too_large", "{rejection}");
        }
        Ok((_, decision)) => {
            assert!(body.len() <= MAX_BODY_BYTES);
            assert!(
                std::str::from_utf8(body).is_ok(),
                "accepted a body that is not UTF-8"
            );
            match decision {
                Decision::SkipSelf { owner } => assert!(!owner.as_str().contains('#')),
                Decision::Apply(change) => {
                    // Exactly the three separators of `{trigger}#{resource}#{action}#{constant}`.
                    let key = change.action_key().as_str();
                    assert_eq!(key.matches('#').count(), 3, "{key}");
                    assert!(key.ends_with("#0001-01-01T00:00:00Z"), "{key}");
                    assert!(!change.owner().as_str().contains('#'));
                    if let Change::Create(notification) = change {
                        assert!(notification.created_at.unix() <= policy.now.unix() + 24 * 60 * 60);
                        assert!(notification.created_at.unix() >= 0);
                        if let Some(excerpt) = &notification.excerpt {
                            assert!(excerpt.chars().count() <= 280);
                        }
                        if let Some(picture) = &notification.user_picture {
                            assert!(
                                picture
                                    .get(..8)
                                    .is_some_and(|p| p.eq_ignore_ascii_case("https://")),
                                "{picture}"
                            );
                            assert!(!picture.contains('\\'), "{picture}");
                            assert!(picture.len() <= 2048);
                        }
                        for id in [
                            &notification.owner,
                            &notification.trigger_user,
                            &notification.resource_id,
                        ] {
                            let id = id.as_str();
                            assert!(!id.is_empty() && id.len() <= 128, "{id:?}");
                            assert!(!id.chars().any(char::is_control), "{id:?}");
                            assert_eq!(id.trim(), id);
                        }
                    }
                }
            }
        }
    }
});
