//! Hostile event bodies, each with the reason code SPEC.md says it must be rejected with.
//!
//! Standalone: include it with `#[path = "support/hostile.rs"] mod hostile;`. Every entry's
//! `name` starts with the field its rejection message must name, then `: `, then what is
//! wrong (`body: ...` for `too_large` and `invalid_json`, whose messages start with "body").
#![allow(dead_code)] // not every test binary uses every helper

use serde_json::{Map, Value, json};
use std::time::{SystemTime, UNIX_EPOCH};

/// One payload the worker must refuse.
pub struct Hostile {
    /// `"<field>: <what is wrong>"`; the rejection message starts with `<field>`.
    pub name: &'static str,
    pub subject: &'static str,
    pub body: Vec<u8>,
    /// The reason code SPEC.md requires: too_large, invalid_json, missing_field, invalid_field.
    pub reason: &'static str,
}

/// The subject used unless a case needs another.
pub const SUBJECT: &str = "notifications.post.like";
/// The body limit of SPEC.md ("at most 64 KiB").
pub const MAX_BODY_BYTES: usize = 64 * 1024;

const TOO_LARGE: &str = "too_large";
const INVALID_JSON: &str = "invalid_json";
const MISSING_FIELD: &str = "missing_field";
const INVALID_FIELD: &str = "invalid_field";

/// A valid `notifications.post.like` event (the SPEC example).
pub fn valid_event() -> Map<String, Value> {
    let Value::Object(map) = json!({
        "owner": "user-123",
        "trigger_user": "user-456",
        "username": "John Doe",
        "user_picture": "https://cdn.example.com/u/456.jpg",
        "user_bio": "Software dev",
        "action": 1,
        "resource_type": "POST",
        "resource_id": "post-789",
        "excerpt": "Great post!",
        "created_at": 1_765_318_000,
    }) else {
        unreachable!("json! of an object is an object")
    };
    map
}

/// The valid event as bytes.
pub fn valid_body() -> Vec<u8> {
    serde_json::to_vec(&valid_event()).expect("a map serializes")
}

/// The valid event with `field` set to `value`.
fn with(field: &str, value: Value) -> Vec<u8> {
    let mut event = valid_event();
    event.insert(field.to_owned(), value);
    serde_json::to_vec(&event).expect("a map serializes")
}

/// The valid event without `field`.
fn without(field: &str) -> Vec<u8> {
    let mut event = valid_event();
    event.remove(field);
    serde_json::to_vec(&event).expect("a map serializes")
}

/// The valid event with the JSON value of `field` replaced by `raw` bytes, as written.
fn with_raw(field: &str, raw: &[u8]) -> Vec<u8> {
    let mut event = valid_event();
    event.remove(field);
    let rest = serde_json::to_vec(&event).expect("a map serializes");
    let mut body = format!("{{\"{field}\":").into_bytes();
    body.extend_from_slice(raw);
    body.push(b',');
    body.extend_from_slice(&rest[1..]); // rest without its opening brace
    body
}

/// `depth` nested arrays around `null`: `[[[...null...]]]`.
fn nested_arrays(depth: usize) -> Vec<u8> {
    let mut raw = vec![b'['; depth];
    raw.extend_from_slice(b"null");
    raw.extend(std::iter::repeat_n(b']', depth));
    raw
}

/// `depth` nested objects, each under `key`: `{"key":{"key":...{}...}}`.
fn nested_objects(key: &str, depth: usize) -> Vec<u8> {
    let mut raw = format!("{{\"{key}\":").repeat(depth).into_bytes();
    raw.extend_from_slice(b"{}");
    raw.extend(std::iter::repeat_n(b'}', depth));
    raw
}

fn unix_now() -> i64 {
    let elapsed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("the clock is after 1970");
    i64::try_from(elapsed.as_secs()).expect("the clock fits an i64")
}

fn case(name: &'static str, body: Vec<u8>, reason: &'static str) -> Hostile {
    Hostile {
        name,
        subject: SUBJECT,
        body,
        reason,
    }
}

fn case_on(subject: &'static str, name: &'static str, body: Vec<u8>, reason: &'static str) -> Hostile {
    Hostile {
        name,
        subject,
        body,
        reason,
    }
}

/// Every hostile payload, in no particular order.
pub fn corpus() -> Vec<Hostile> {
    let mut all = Vec::new();

    // --- The body as a whole -----------------------------------------------------------
    all.extend([
        case("body: empty", Vec::new(), INVALID_JSON),
        case("body: whitespace only", b" \t\r\n  \n".to_vec(), INVALID_JSON),
        case("body: not JSON", b"owner=user-123&action=1".to_vec(), INVALID_JSON),
        case(
            "body: truncated JSON",
            {
                let body = valid_body();
                body[..body.len() / 2].to_vec()
            },
            INVALID_JSON,
        ),
        case("body: object never closed", b"{".to_vec(), INVALID_JSON),
        case(
            "body: trailing garbage after the object",
            [valid_body(), b" x".to_vec()].concat(),
            INVALID_JSON,
        ),
        case(
            "body: two objects in a row",
            [valid_body(), valid_body()].concat(),
            INVALID_JSON,
        ),
        case(
            "body: UTF-8 byte order mark",
            [b"\xEF\xBB\xBF".to_vec(), valid_body()].concat(),
            INVALID_JSON,
        ),
        case("body: top-level array", b"[1,2,3]".to_vec(), INVALID_JSON),
        case(
            "body: top-level array of the event",
            [b"[".to_vec(), valid_body(), b"]".to_vec()].concat(),
            INVALID_JSON,
        ),
        case("body: top-level string", br#""user-123""#.to_vec(), INVALID_JSON),
        case("body: top-level number", b"42".to_vec(), INVALID_JSON),
        case("body: top-level null", b"null".to_vec(), INVALID_JSON),
        case("body: top-level true", b"true".to_vec(), INVALID_JSON),
        case(
            "body: duplicate owner",
            br#"{"owner":"user-123","owner":"user-999","trigger_user":"user-456","action":1,"resource_type":"POST","resource_id":"post-789"}"#.to_vec(),
            INVALID_JSON,
        ),
        case(
            "body: duplicate action",
            [br#"{"action":6,"#.to_vec(), valid_body()[1..].to_vec()].concat(),
            INVALID_JSON,
        ),
        case(
            "body: just over 64 KiB",
            {
                // A valid event padded with an unknown field to exactly one byte too many.
                let mut event = valid_event();
                event.insert("pad".into(), json!(""));
                let base = serde_json::to_vec(&event).unwrap().len();
                event.insert("pad".into(), json!("x".repeat(MAX_BODY_BYTES + 1 - base)));
                let body = serde_json::to_vec(&event).unwrap();
                assert_eq!(body.len(), MAX_BODY_BYTES + 1);
                body
            },
            TOO_LARGE,
        ),
        case("body: 1 MiB of spaces", vec![b' '; 1 << 20], TOO_LARGE),
        case("body: 1 MiB of opening brackets", vec![b'['; 1 << 20], TOO_LARGE),
    ]);

    // --- Bytes that are not UTF-8, NULs, nesting -------------------------------------------
    all.extend([
        case(
            "body: raw invalid UTF-8",
            b"\xFF\xFE\xFD\x80\x81".to_vec(),
            INVALID_JSON,
        ),
        case(
            "body: invalid UTF-8 in owner",
            with_raw("owner", b"\"user-\xFF\xFE\""),
            INVALID_JSON,
        ),
        case(
            "body: overlong UTF-8 encoding of '#' in resource_id",
            with_raw("resource_id", b"\"post\xC0\xA3789\""),
            INVALID_JSON,
        ),
        case(
            "body: UTF-8 encoded surrogate in username",
            with_raw("username", b"\"John \xED\xA0\x80\""),
            INVALID_JSON,
        ),
        case(
            "body: invalid UTF-8 in an unknown field",
            with_raw("nickname", b"\"\xC3\x28\xFF\""),
            INVALID_JSON,
        ),
        case(
            "body: lone surrogate escape in owner",
            with_raw("owner", br#""user-\ud800""#),
            INVALID_JSON,
        ),
        case("body: raw NUL byte alone", b"\0".to_vec(), INVALID_JSON),
        case(
            "body: raw NUL byte inside the owner string",
            with_raw("owner", b"\"user\x00123\""),
            INVALID_JSON,
        ),
        case(
            "body: raw NUL byte between tokens",
            with_raw("action", b"\x001"),
            INVALID_JSON,
        ),
        case(
            "body: raw newline inside the trigger_user string",
            with_raw("trigger_user", b"\"user\n456\""),
            INVALID_JSON,
        ),
        case(
            "owner: NUL escape",
            with("owner", json!("user\u{0}123")),
            INVALID_FIELD,
        ),
        case(
            "trigger_user: NUL escape at the end",
            with("trigger_user", json!("user-456\u{0}")),
            INVALID_FIELD,
        ),
        case(
            "resource_id: NUL escape",
            with("resource_id", json!("post-\u{0}789")),
            INVALID_FIELD,
        ),
        case(
            "username: NUL escape",
            with("username", json!("John\u{0}Doe")),
            INVALID_FIELD,
        ),
        case(
            "body: 10,000 nested arrays in resource_id",
            with_raw("resource_id", &nested_arrays(10_000)),
            INVALID_JSON,
        ),
        case(
            "body: 10,000 nested arrays in excerpt",
            with_raw("excerpt", &nested_arrays(10_000)),
            INVALID_JSON,
        ),
        case(
            "body: top-level object nested 5,000 deep under owner",
            nested_objects("owner", 5_000),
            INVALID_JSON,
        ),
        case(
            // serde_json skips unknown values without recursing: no stack overflow, and
            // the event has no owner.
            "owner: absent, top-level object nested 10,000 deep under an unknown key",
            nested_objects("a", 10_000),
            MISSING_FIELD,
        ),
        case(
            "body: 10,000 unclosed arrays",
            [br#"{"owner":"#.to_vec(), vec![b'['; 10_000]].concat(),
            INVALID_JSON,
        ),
    ]);

    // --- Required fields: absent, null, wrong type -----------------------------------------
    all.extend([
        case("owner: absent", without("owner"), MISSING_FIELD),
        case("trigger_user: absent", without("trigger_user"), MISSING_FIELD),
        case("action: absent", without("action"), MISSING_FIELD),
        case("resource_type: absent", without("resource_type"), MISSING_FIELD),
        case("resource_id: absent", without("resource_id"), MISSING_FIELD),
        case("owner: absent, empty object", b"{}".to_vec(), MISSING_FIELD),
        case("owner: null", with("owner", Value::Null), MISSING_FIELD),
        case(
            "trigger_user: null",
            with("trigger_user", Value::Null),
            MISSING_FIELD,
        ),
        case("action: null", with("action", Value::Null), MISSING_FIELD),
        case(
            "resource_type: null",
            with("resource_type", Value::Null),
            MISSING_FIELD,
        ),
        case(
            "resource_id: null",
            with("resource_id", Value::Null),
            MISSING_FIELD,
        ),
        case("owner: number", with("owner", json!(123)), INVALID_FIELD),
        case("owner: bool", with("owner", json!(true)), INVALID_FIELD),
        case(
            "trigger_user: object",
            with("trigger_user", json!({"id": "user-456"})),
            INVALID_FIELD,
        ),
        case(
            "resource_id: array",
            with("resource_id", json!(["post-789"])),
            INVALID_FIELD,
        ),
        case("action: string", with("action", json!("1")), INVALID_FIELD),
        case("action: bool", with("action", json!(true)), INVALID_FIELD),
        case("action: array", with("action", json!([1])), INVALID_FIELD),
        case(
            "resource_type: number",
            with("resource_type", json!(1)),
            INVALID_FIELD,
        ),
        case(
            "created_at: string",
            with("created_at", json!("1765318000")),
            INVALID_FIELD,
        ),
        case(
            "created_at: RFC 3339 string",
            with("created_at", json!("2025-12-09T22:06:40Z")),
            INVALID_FIELD,
        ),
        case("username: number", with("username", json!(7)), INVALID_FIELD),
        case(
            "user_picture: object",
            with("user_picture", json!({"url": "https://x"})),
            INVALID_FIELD,
        ),
        case("excerpt: array", with("excerpt", json!(["Great"])), INVALID_FIELD),
    ]);

    // --- Numbers -----------------------------------------------------------------------------
    all.extend([
        // serde_json cannot represent 1e400 at all: the body is refused as JSON.
        case("body: action 1e400", with_raw("action", b"1e400"), INVALID_JSON),
        case(
            "body: created_at -1e400",
            with_raw("created_at", b"-1e400"),
            INVALID_JSON,
        ),
        case("action: -1", with("action", json!(-1)), INVALID_FIELD),
        case(
            "action: 2^64",
            with_raw("action", b"18446744073709551616"),
            INVALID_FIELD,
        ),
        case("action: 2^64 - 1", with("action", json!(u64::MAX)), INVALID_FIELD),
        case(
            "action: 2^32 + 1 (wraps to 1 as u32)",
            with("action", json!(4_294_967_297_u64)),
            INVALID_FIELD,
        ),
        case(
            "action: 257 (wraps to 1 as u8)",
            with("action", json!(257)),
            INVALID_FIELD,
        ),
        case("action: 1.5", with("action", json!(1.5)), INVALID_FIELD),
        case("action: 1.0", with_raw("action", b"1.0"), INVALID_FIELD),
        case("action: 1e0", with_raw("action", b"1e0"), INVALID_FIELD),
        case("action: 0", with("action", json!(0)), INVALID_FIELD),
        case("action: 7", with("action", json!(7)), INVALID_FIELD),
        case("created_at: 1e30", with_raw("created_at", b"1e30"), INVALID_FIELD),
        case("created_at: -5", with("created_at", json!(-5)), INVALID_FIELD),
        case("created_at: 1.5", with("created_at", json!(1.5)), INVALID_FIELD),
        case(
            "created_at: i64::MIN",
            with("created_at", json!(i64::MIN)),
            INVALID_FIELD,
        ),
        case(
            "created_at: i64::MAX",
            with("created_at", json!(i64::MAX)),
            INVALID_FIELD,
        ),
        case(
            "created_at: u64::MAX",
            with("created_at", json!(u64::MAX)),
            INVALID_FIELD,
        ),
        case(
            "created_at: now + 2 days",
            with("created_at", json!(unix_now() + 2 * 24 * 60 * 60)),
            INVALID_FIELD,
        ),
        case(
            "created_at: year 10000",
            with("created_at", json!(253_402_300_800_i64)),
            INVALID_FIELD,
        ),
    ]);

    // --- Ids -----------------------------------------------------------------------------------
    all.extend([
        case(
            "owner: '#' forging a key part",
            with("owner", json!("user-1#post-2")),
            INVALID_FIELD,
        ),
        case(
            "trigger_user: '#' forging another action key",
            with("trigger_user", json!("user-456#post-789#1")),
            INVALID_FIELD,
        ),
        case(
            "resource_id: only '#'",
            with("resource_id", json!("#")),
            INVALID_FIELD,
        ),
        case(
            "resource_id: trailing '#'",
            with("resource_id", json!("post-789#")),
            INVALID_FIELD,
        ),
        case(
            "owner: leading space",
            with("owner", json!(" user-123")),
            INVALID_FIELD,
        ),
        case(
            "trigger_user: trailing space",
            with("trigger_user", json!("user-456 ")),
            INVALID_FIELD,
        ),
        case(
            "resource_id: leading no-break space",
            with("resource_id", json!("\u{a0}post-789")),
            INVALID_FIELD,
        ),
        case(
            "owner: trailing ideographic space",
            with("owner", json!("user-123\u{3000}")),
            INVALID_FIELD,
        ),
        case("owner: only spaces", with("owner", json!("   ")), INVALID_FIELD),
        case(
            "owner: tab inside",
            with("owner", json!("user\t123")),
            INVALID_FIELD,
        ),
        case(
            "trigger_user: newline inside",
            with("trigger_user", json!("user\n456")),
            INVALID_FIELD,
        ),
        case(
            "resource_id: carriage return",
            with("resource_id", json!("post\r789")),
            INVALID_FIELD,
        ),
        case(
            "resource_id: escape character",
            with("resource_id", json!("post\u{1b}[31m")),
            INVALID_FIELD,
        ),
        case("owner: DEL", with("owner", json!("user\u{7f}")), INVALID_FIELD),
        case(
            "owner: C1 control NEL",
            with("owner", json!("user\u{85}123")),
            INVALID_FIELD,
        ),
        case(
            "owner: 129 bytes",
            with("owner", json!("u".repeat(129))),
            INVALID_FIELD,
        ),
        case(
            "trigger_user: 43 three-byte chars (129 bytes)",
            with("trigger_user", json!("€".repeat(43))),
            INVALID_FIELD,
        ),
        case(
            "resource_id: 65,136 bytes",
            with("resource_id", json!("p".repeat(MAX_BODY_BYTES - 400))),
            INVALID_FIELD,
        ),
        case("owner: empty", with("owner", json!("")), INVALID_FIELD),
        case(
            "trigger_user: empty",
            with("trigger_user", json!("")),
            INVALID_FIELD,
        ),
        case(
            "resource_id: empty",
            with("resource_id", json!("")),
            INVALID_FIELD,
        ),
    ]);

    // --- Action and resource type against the subject --------------------------------------
    all.extend([
        case(
            "resource_type: lowercase post",
            with("resource_type", json!("post")),
            INVALID_FIELD,
        ),
        case(
            "resource_type: GROUP",
            with("resource_type", json!("GROUP")),
            INVALID_FIELD,
        ),
        case(
            "resource_type: empty",
            with("resource_type", json!("")),
            INVALID_FIELD,
        ),
        case(
            "resource_type: padded",
            with("resource_type", json!(" POST")),
            INVALID_FIELD,
        ),
        case_on(
            "notifications.comment.like",
            "action: 1 on comment.like",
            valid_body(),
            INVALID_FIELD,
        ),
        case(
            "resource_type: USER on post.like",
            with("resource_type", json!("USER")),
            INVALID_FIELD,
        ),
        case_on(
            "notifications.user.unfollow",
            "action: 1 on user.unfollow",
            valid_body(),
            INVALID_FIELD,
        ),
        case_on(
            "notifications.mention",
            "resource_type: USER on mention",
            {
                let mut event = valid_event();
                event.insert("action".into(), json!(5));
                event.insert("resource_type".into(), json!("USER"));
                serde_json::to_vec(&event).unwrap()
            },
            INVALID_FIELD,
        ),
        case_on(
            "notifications.post.share",
            "action: 9 on an unlisted subject",
            with("action", json!(9)),
            INVALID_FIELD,
        ),
        case_on(
            "notifications.post.unshare",
            "resource_type: GROUP on an unlisted subject",
            with("resource_type", json!("GROUP")),
            INVALID_FIELD,
        ),
    ]);

    // --- Pictures ---------------------------------------------------------------------------
    for (name, url) in [
        (
            "user_picture: javascript: URL",
            "javascript:alert(document.cookie)".to_owned(),
        ),
        (
            "user_picture: javascript:// URL",
            "javascript://cdn.example.com/%0Aalert(1)".to_owned(),
        ),
        (
            "user_picture: data: URL",
            "data:image/png;base64,iVBORw0KGgo=".to_owned(),
        ),
        ("user_picture: relative path", "/u/456.jpg".to_owned()),
        ("user_picture: bare file name", "456.jpg".to_owned()),
        (
            "user_picture: ftp URL",
            "ftp://cdn.example.com/u/456.jpg".to_owned(),
        ),
        ("user_picture: file URL", "file:///etc/passwd".to_owned()),
        (
            "user_picture: protocol-relative",
            "//cdn.example.com/x.png".to_owned(),
        ),
        ("user_picture: https with no host", "https://".to_owned()),
        (
            "user_picture: https without slashes",
            "https:cdn.example.com/x.png".to_owned(),
        ),
        (
            "user_picture: https without slashes, :// in the query",
            "https:cdn.example.com/x.png?u=https://a".to_owned(),
        ),
        (
            "user_picture: https with one slash",
            "https:/cdn.example.com/x.png".to_owned(),
        ),
        (
            "user_picture: https with three slashes",
            "https:///cdn.example.com/x.png".to_owned(),
        ),
        (
            "user_picture: backslashes for slashes",
            r"https:\\cdn.example.com\x.png".to_owned(),
        ),
        (
            "user_picture: backslash before userinfo",
            r"https://cdn.example.com\@evil.example/x.png".to_owned(),
        ),
        (
            "user_picture: https with empty host and port",
            "https://:443/x.png".to_owned(),
        ),
        (
            "user_picture: http in production",
            "http://cdn.example.com/u/456.jpg".to_owned(),
        ),
        (
            "user_picture: space inside",
            "https://cdn.example.com/u/4 56.jpg".to_owned(),
        ),
        (
            "user_picture: leading space",
            " https://cdn.example.com/u/456.jpg".to_owned(),
        ),
        (
            "user_picture: tab inside the scheme",
            "ht\ttps://cdn.example.com/x.png".to_owned(),
        ),
        (
            "user_picture: newline inside",
            "https://cdn.example.com/\nx.png".to_owned(),
        ),
        (
            "user_picture: NUL inside",
            "https://cdn.example.com/\u{0}x.png".to_owned(),
        ),
        ("user_picture: 2049 bytes", {
            let prefix = "https://cdn.example.com/";
            format!("{prefix}{}", "a".repeat(2049 - prefix.len()))
        }),
    ] {
        let body = with("user_picture", json!(url));
        all.push(Hostile {
            name,
            subject: SUBJECT,
            body,
            reason: INVALID_FIELD,
        });
    }

    // --- Free text -----------------------------------------------------------------------------
    all.extend([
        case(
            "username: 129 characters",
            with("username", json!("n".repeat(129))),
            INVALID_FIELD,
        ),
        case(
            "username: 129 two-byte characters",
            with("username", json!("é".repeat(129))),
            INVALID_FIELD,
        ),
        case(
            "username: BEL",
            with("username", json!("John\u{7}Doe")),
            INVALID_FIELD,
        ),
        case(
            "username: carriage return",
            with("username", json!("John\rDoe")),
            INVALID_FIELD,
        ),
        case(
            "username: escape sequence",
            with("username", json!("\u{1b}[2J")),
            INVALID_FIELD,
        ),
        case(
            "user_bio: 513 characters",
            with("user_bio", json!("b".repeat(513))),
            INVALID_FIELD,
        ),
        case(
            "user_bio: backspace",
            with("user_bio", json!("dev\u{8}")),
            INVALID_FIELD,
        ),
        case(
            "excerpt: NUL",
            with("excerpt", json!("Great\u{0}post")),
            INVALID_FIELD,
        ),
        case(
            "excerpt: form feed",
            with("excerpt", json!("Great\u{c}post")),
            INVALID_FIELD,
        ),
    ]);

    all
}
