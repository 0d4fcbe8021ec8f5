//! Parsing and validating one event body into the change it asks for.

use super::rejection::Reason;
use super::{
    Action, ActionKey, Aggregation, Change, EventType, Group, Id, Join, Notification, Operation, Rejection,
    ResourceType, Timestamp,
};
use serde::Deserialize;
use serde_json::Value;

/// Largest body accepted, in bytes.
pub const MAX_BODY_BYTES: usize = 64 * 1024;
const MAX_USERNAME_CHARS: usize = 128;
const MAX_BIO_CHARS: usize = 512;
const MAX_PICTURE_BYTES: usize = 2048;
const EXCERPT_CHARS: usize = 280;
const MAX_FUTURE_SECONDS: i64 = 24 * 60 * 60;

/// What validation depends on besides the event itself.
#[derive(Debug, Clone, Copy)]
pub struct EventPolicy {
    /// `http://` pictures are fine in development only.
    pub allow_http_pictures: bool,
    /// "Now", for events without `created_at` and the 24 h future limit.
    pub now: Timestamp,
    /// The actions whose creates and removes fold into aggregates (`AGGREGATE`).
    pub aggregate: Aggregation,
}

/// What to do with a valid event.
// Built once per event and moved straight into its job: boxing would only add an allocation.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Apply(Change),
    /// owner == trigger_user: nobody is notified of their own action.
    SkipSelf {
        owner: Id,
    },
}

/// The body as sent. Every field is optional here so that a missing field and a field of
/// the wrong type get their own reason codes; serde still refuses duplicate known keys.
#[derive(Deserialize)]
struct RawEvent {
    owner: Option<Value>,
    trigger_user: Option<Value>,
    username: Option<Value>,
    user_picture: Option<Value>,
    user_bio: Option<Value>,
    action: Option<Value>,
    resource_type: Option<Value>,
    resource_id: Option<Value>,
    excerpt: Option<Value>,
    created_at: Option<Value>,
}

/// Turns a subject and a body into a [`Decision`], or says why it never will be one.
pub fn parse_event(
    subject: &str,
    body: &[u8],
    policy: &EventPolicy,
) -> Result<(EventType, Decision), Rejection> {
    if body.len() > MAX_BODY_BYTES {
        return Err(Rejection::new(
            Reason::TooLarge,
            format!("body is {} bytes, at most {MAX_BODY_BYTES} allowed", body.len()),
        ));
    }
    let event_type = EventType::for_subject(subject)?;
    let raw: RawEvent = read_json(body)?;

    let owner = Id::parse("owner", required_str(&raw.owner, "owner")?)?;
    let trigger_user = Id::parse("trigger_user", required_str(&raw.trigger_user, "trigger_user")?)?;
    let action = parse_action(&raw.action, &event_type)?;
    let resource_type = parse_resource_type(&raw.resource_type, &event_type)?;
    let resource_id = Id::parse("resource_id", required_str(&raw.resource_id, "resource_id")?)?;
    let username = optional_text(&raw.username, "username", MAX_USERNAME_CHARS)?;
    let user_bio = optional_text(&raw.user_bio, "user_bio", MAX_BIO_CHARS)?;
    let user_picture = parse_picture(&raw.user_picture, policy.allow_http_pictures)?;
    let excerpt = parse_excerpt(&raw.excerpt)?;
    let created_at = parse_created_at(&raw.created_at, policy.now)?;

    if owner == trigger_user {
        return Ok((event_type, Decision::SkipSelf { owner }));
    }
    let folds = policy.aggregate.folds(action);
    let action_key = ActionKey::new(&trigger_user, &resource_id, action);
    let change = match event_type.operation {
        Operation::Remove if folds => Change::Leave {
            group: Group {
                owner,
                action,
                resource_type,
                resource_id,
            },
            actor: trigger_user,
        },
        Operation::Remove => Change::Remove { owner, action_key },
        Operation::Create => Change::Create(Notification {
            owner,
            action_key,
            id: uuid::Uuid::new_v4(),
            trigger_user,
            username,
            user_picture,
            user_bio,
            action,
            resource_type,
            resource_id,
            excerpt,
            read_status: false,
            created_at,
        }),
    };
    let change = match change {
        Change::Create(notification) if folds => Change::Join(Join::from_notification(notification)),
        change => change,
    };
    Ok((event_type, Decision::Apply(change)))
}

/// Reads a body that must be one JSON object (recipient events are read the same way).
pub(crate) fn read_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, Rejection> {
    // Structs also deserialize from JSON arrays; the contract says "a JSON object".
    let first = body.iter().find(|b| !b.is_ascii_whitespace());
    if first != Some(&b'{') {
        return Err(Rejection::new(Reason::InvalidJson, "body is not a JSON object"));
    }
    // serde_json skips the values of unknown fields without checking their UTF-8.
    let body = std::str::from_utf8(body)
        .map_err(|error| Rejection::new(Reason::InvalidJson, format!("body is not UTF-8: {error}")))?;
    serde_json::from_str(body).map_err(|error| Rejection::new(Reason::InvalidJson, format!("body: {error}")))
}

fn required_str<'a>(value: &'a Option<Value>, field: &str) -> Result<&'a str, Rejection> {
    match value {
        None => Err(Rejection::missing(field)),
        Some(Value::String(text)) => Ok(text),
        Some(_) => Err(Rejection::invalid(field, "must be a string")),
    }
}

fn optional_str<'a>(value: &'a Option<Value>, field: &str) -> Result<Option<&'a str>, Rejection> {
    match value {
        None => Ok(None),
        Some(Value::String(text)) if text.is_empty() => Ok(None),
        Some(Value::String(text)) => Ok(Some(text)),
        Some(_) => Err(Rejection::invalid(field, "must be a string")),
    }
}

fn parse_action(value: &Option<Value>, event_type: &EventType) -> Result<Action, Rejection> {
    let code = match value {
        None => return Err(Rejection::missing("action")),
        Some(Value::Number(number)) => number
            .as_i64()
            .ok_or_else(|| Rejection::invalid("action", format!("{number} is not a whole number")))?,
        Some(_) => return Err(Rejection::invalid("action", "must be a number")),
    };
    let action = Action::from_code(code).ok_or_else(|| {
        let known: Vec<String> = super::ACTIONS.iter().map(|(code, _)| code.to_string()).collect();
        Rejection::invalid(
            "action",
            format!("{code} is not a known action ({})", known.join(", ")),
        )
    })?;
    if let Some(expected) = event_type.action
        && expected != action.code()
    {
        return Err(Rejection::invalid(
            "action",
            format!(
                "{code} does not match subject {} (expects {expected})",
                event_type.subject
            ),
        ));
    }
    Ok(action)
}

fn parse_resource_type(value: &Option<Value>, event_type: &EventType) -> Result<ResourceType, Rejection> {
    let text = required_str(value, "resource_type")?;
    let kind = ResourceType::parse(text).ok_or_else(|| {
        Rejection::invalid(
            "resource_type",
            format!("{:?} is not one of POST, COMMENT, USER", preview(text)),
        )
    })?;
    if !event_type.resource_types.is_empty() && !event_type.resource_types.contains(&kind) {
        let allowed: Vec<&str> = event_type
            .resource_types
            .iter()
            .map(|kind| kind.as_str())
            .collect();
        return Err(Rejection::invalid(
            "resource_type",
            format!(
                "{text} does not match subject {} (expects {})",
                event_type.subject,
                allowed.join(" or ")
            ),
        ));
    }
    Ok(kind)
}

/// Free text shown in the app: bounded in characters, no control characters but newlines.
fn optional_text(value: &Option<Value>, field: &str, max_chars: usize) -> Result<Option<String>, Rejection> {
    let Some(text) = optional_str(value, field)? else {
        return Ok(None);
    };
    let chars = text.chars().count();
    if chars > max_chars {
        return Err(Rejection::invalid(
            field,
            format!("is {chars} characters, at most {max_chars} allowed"),
        ));
    }
    if text.chars().any(|c| c.is_control() && c != '\n') {
        return Err(Rejection::invalid(
            field,
            "must not contain control characters other than newline",
        ));
    }
    Ok(Some(text.to_owned()))
}

fn parse_picture(value: &Option<Value>, allow_http: bool) -> Result<Option<String>, Rejection> {
    let Some(text) = optional_str(value, "user_picture")? else {
        return Ok(None);
    };
    if text.len() > MAX_PICTURE_BYTES {
        return Err(Rejection::invalid(
            "user_picture",
            format!("is {} bytes, at most {MAX_PICTURE_BYTES} allowed", text.len()),
        ));
    }
    // The URL parser silently drops surrounding whitespace and inner tabs/newlines: refuse
    // them first so that what is stored is exactly what was checked.
    if text.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(Rejection::invalid(
            "user_picture",
            "must not contain whitespace or control characters",
        ));
    }
    let expected = if allow_http {
        "an absolute https:// or http:// URL"
    } else {
        "an absolute https:// URL"
    };
    let url = url::Url::parse(text)
        .map_err(|_| Rejection::invalid("user_picture", format!("must be {expected}")))?;
    let scheme_ok = url.scheme() == "https" || (allow_http && url.scheme() == "http");
    // The url crate (WHATWG rules) also reads `https:host`, `https:///host` and `\` as `/`,
    // which other URL parsers read differently: require `scheme://host` and no backslash.
    let written_as_parsed = !text.contains('\\')
        && text.split_once("://").is_some_and(|(scheme, rest)| {
            scheme.eq_ignore_ascii_case(url.scheme()) && !rest.starts_with('/')
        });
    if !scheme_ok || !written_as_parsed || url.host_str().is_none_or(str::is_empty) {
        return Err(Rejection::invalid("user_picture", format!("must be {expected}")));
    }
    Ok(Some(text.to_owned()))
}

fn parse_excerpt(value: &Option<Value>) -> Result<Option<String>, Rejection> {
    let Some(text) = optional_str(value, "excerpt")? else {
        return Ok(None);
    };
    if text
        .chars()
        .any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t'))
    {
        return Err(Rejection::invalid(
            "excerpt",
            "must not contain control characters other than newline and tab",
        ));
    }
    Ok(Some(text.chars().take(EXCERPT_CHARS).collect()))
}

fn parse_created_at(value: &Option<Value>, now: Timestamp) -> Result<Timestamp, Rejection> {
    let seconds = match value {
        None => return Ok(now),
        Some(Value::Number(number)) => number.as_i64().ok_or_else(|| {
            Rejection::invalid(
                "created_at",
                format!("{number} is not whole unix seconds in range"),
            )
        })?,
        Some(_) => {
            return Err(Rejection::invalid(
                "created_at",
                "must be unix seconds (a number)",
            ));
        }
    };
    match seconds {
        0 => Ok(now),
        s if s < 0 => Err(Rejection::invalid("created_at", format!("{s} is negative"))),
        s if s > now.unix() + MAX_FUTURE_SECONDS => Err(Rejection::invalid(
            "created_at",
            format!("{s} is more than 24 h in the future"),
        )),
        s => Timestamp::from_unix(s)
            .ok_or_else(|| Rejection::invalid("created_at", format!("{s} is out of range"))),
    }
}

/// A short, printable piece of untrusted text for messages.
fn preview(text: &str) -> String {
    text.chars().take(32).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> EventPolicy {
        EventPolicy {
            allow_http_pictures: false,
            now: Timestamp::from_unix(1_765_318_000).unwrap(),
            aggregate: Aggregation::OFF,
        }
    }

    fn like(body: &str) -> Result<(EventType, Decision), Rejection> {
        parse_event("notifications.post.like", body.as_bytes(), &policy())
    }

    fn reason(body: &str) -> &'static str {
        like(body).unwrap_err().reason.code()
    }

    const VALID: &str = r#"{"owner":"user-123","trigger_user":"user-456","username":"John Doe",
        "user_picture":"https://cdn.example.com/u/456.jpg","user_bio":"Software dev","action":1,
        "resource_type":"POST","resource_id":"post-789","excerpt":"Great post!","created_at":1765318000}"#;

    #[test]
    fn a_like_becomes_a_notification() {
        let (event_type, decision) = like(VALID).unwrap();
        assert_eq!(event_type.name, "post_like");
        let Decision::Apply(Change::Create(n)) = decision else {
            panic!("expected a create")
        };
        assert_eq!(n.owner.as_str(), "user-123");
        assert_eq!(n.action_key.as_str(), "user-456#post-789#1#0001-01-01T00:00:00Z");
        assert_eq!(n.username.as_deref(), Some("John Doe"));
        assert_eq!(n.created_at.to_rfc3339(), "2025-12-09T22:06:40Z");
        assert!(!n.read_status);
    }

    #[test]
    fn an_unlike_removes_by_key() {
        let (_, decision) = parse_event("notifications.post.unlike", VALID.as_bytes(), &policy()).unwrap();
        let Decision::Apply(Change::Remove { owner, action_key }) = decision else {
            panic!("expected a remove")
        };
        assert_eq!(owner.as_str(), "user-123");
        assert_eq!(action_key.as_str(), "user-456#post-789#1#0001-01-01T00:00:00Z");
    }

    #[test]
    fn self_notifications_are_skipped() {
        let body = VALID.replace("user-456", "user-123");
        assert!(matches!(like(&body).unwrap().1, Decision::SkipSelf { .. }));
    }

    #[test]
    fn reason_codes() {
        assert_eq!(reason(""), "invalid_json");
        assert_eq!(reason("[1,2]"), "invalid_json");
        assert_eq!(reason(r#"{"owner":"a","owner":"b"}"#), "invalid_json");
        assert_eq!(
            reason(&VALID.replace(r#""owner":"user-123","#, "")),
            "missing_field"
        );
        assert_eq!(
            reason(&VALID.replace(r#""action":1"#, r#""action":2"#)),
            "invalid_field"
        );
        assert_eq!(
            reason(&VALID.replace(r#""action":1"#, r#""action":9"#)),
            "invalid_field"
        );
        assert_eq!(
            reason(&VALID.replace(r#""action":1"#, r#""action":1.5"#)),
            "invalid_field"
        );
        assert_eq!(reason(&VALID.replace("POST", "COMMENT")), "invalid_field");
        assert_eq!(
            reason(&VALID.replace("https://cdn", "javascript://cdn")),
            "invalid_field"
        );
        assert_eq!(reason(&VALID.replace("1765318000", "-1")), "invalid_field");
        assert_eq!(
            reason(&VALID.replace("1765318000", "1765500000")),
            "invalid_field"
        );
        let big = format!(r#"{{"pad":"{}"}}"#, "x".repeat(MAX_BODY_BYTES));
        assert_eq!(reason(&big), "too_large");
    }

    #[test]
    fn http_pictures_only_when_allowed() {
        let body = VALID.replace("https://", "http://");
        assert_eq!(reason(&body), "invalid_field");
        let dev = EventPolicy {
            allow_http_pictures: true,
            ..policy()
        };
        assert!(parse_event("notifications.post.like", body.as_bytes(), &dev).is_ok());
    }

    #[test]
    fn excerpts_are_cut_to_280_characters() {
        let body = VALID.replace("Great post!", &"é".repeat(300));
        let Decision::Apply(Change::Create(n)) = like(&body).unwrap().1 else {
            panic!()
        };
        assert_eq!(n.excerpt.unwrap().chars().count(), 280);
    }

    #[test]
    fn missing_or_zero_created_at_means_now() {
        let body = VALID.replace("1765318000", "0");
        let Decision::Apply(Change::Create(n)) = like(&body).unwrap().1 else {
            panic!()
        };
        assert_eq!(n.created_at, policy().now);
    }
}
