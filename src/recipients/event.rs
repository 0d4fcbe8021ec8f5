//! Parsing and validating one event of stream `RECIPIENTS` into the change it asks for,
//! with the rules of notification events: a body of at most [`MAX_BODY_BYTES`], a JSON
//! object, stable reason codes, unknown fields ignored, a known field given twice refused.

use super::contact::{Email, Locale, PushKind, PushTarget, TargetKey, WebPushKeys};
use super::vocabulary::{EventTypeName, Mode, PreferenceChannel, preview};
use crate::domain::{Id, MAX_BODY_BYTES, Reason, Rejection, read_json};
use serde::{Deserialize, Deserializer};
use serde_json::{Map, Value};

pub const UPSERT: &str = "recipients.upsert";
pub const PUSH_ADD: &str = "recipients.push.add";
pub const PUSH_REMOVE: &str = "recipients.push.remove";
pub const REMOVE: &str = "recipients.remove";
/// Every subject of stream `RECIPIENTS`.
pub const RECIPIENT_SUBJECTS: [&str; 4] = [UPSERT, PUSH_ADD, PUSH_REMOVE, REMOVE];
/// The subject filter of stream `RECIPIENTS`.
pub const RECIPIENTS_SUBJECT_FILTER: &str = "recipients.>";
/// Most preferences one upsert may set: every channel and group for dozens of types.
pub const MAX_PREFERENCES: usize = 256;

/// What validation depends on besides the event itself.
#[derive(Debug, Clone, Copy, Default)]
pub struct RecipientPolicy {
    /// `http://` Web Push endpoints are fine in development only (a local push service).
    pub allow_http_endpoints: bool,
}

/// A valid recipient event: whose record, and what to do to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecipientEvent {
    pub owner: Id,
    pub change: RecipientChange,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecipientChange {
    Upsert(Upsert),
    PushAdd(PushTarget),
    /// Names the target only: a Web Push removal needs the endpoint, not the keys.
    PushRemove(TargetKey),
    /// Forget the recipient: everything set before this event.
    Remove,
}

/// The fields an upsert gives. A field that is absent stays as it is; `null` or `""`
/// clears it (back to no email, no locale, or the defaults for that preference).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Upsert {
    pub email: Option<Option<Email>>,
    pub locale: Option<Option<Locale>>,
    /// `(channel, event type, mode)`; `None` clears that preference.
    pub preferences: Vec<(PreferenceChannel, EventTypeName, Option<Mode>)>,
}

type JsonObject = Map<String, Value>;

/// A field as sent: absent, or present with a value (`null` included, unlike `Option`).
#[derive(Default)]
enum Given {
    #[default]
    Absent,
    Present(Value),
}

impl<'de> Deserialize<'de> for Given {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Given, D::Error> {
        Value::deserialize(deserializer).map(Given::Present)
    }
}

/// Every field of every subject; each subject reads its own and ignores the others, as
/// unknown fields are ignored.
#[derive(Deserialize)]
struct RawRecipientEvent {
    #[serde(default)]
    owner: Given,
    #[serde(default)]
    email: Given,
    #[serde(default)]
    locale: Given,
    #[serde(default)]
    preferences: Given,
    #[serde(default)]
    kind: Given,
    #[serde(default)]
    token: Given,
    #[serde(default)]
    subscription: Given,
}

/// Turns a subject of stream `RECIPIENTS` and a body into a [`RecipientEvent`], or says
/// why it never will be one.
pub fn parse_recipient_event(
    subject: &str,
    body: &[u8],
    policy: &RecipientPolicy,
) -> Result<RecipientEvent, Rejection> {
    if body.len() > MAX_BODY_BYTES {
        return Err(Rejection::new(
            Reason::TooLarge,
            format!("body is {} bytes, at most {MAX_BODY_BYTES} allowed", body.len()),
        ));
    }
    if !RECIPIENT_SUBJECTS.contains(&subject) {
        return Err(Rejection::invalid(
            "subject",
            format!(
                "{:?} is not one of {}",
                preview(subject),
                RECIPIENT_SUBJECTS.join(", ")
            ),
        ));
    }
    let raw: RawRecipientEvent = read_json(body)?;
    let owner = Id::parse("owner", required_str(&raw.owner, "owner")?)?;
    let change = match subject {
        UPSERT => RecipientChange::Upsert(parse_upsert(&raw)?),
        PUSH_ADD => RecipientChange::PushAdd(parse_target(&raw, policy)?),
        PUSH_REMOVE => RecipientChange::PushRemove(parse_target_key(&raw, policy)?.0),
        _ => RecipientChange::Remove,
    };
    Ok(RecipientEvent { owner, change })
}

fn required_str<'a>(given: &'a Given, field: &str) -> Result<&'a str, Rejection> {
    match given {
        Given::Absent => Err(Rejection::missing(field)),
        Given::Present(Value::String(text)) => Ok(text),
        Given::Present(_) => Err(Rejection::invalid(field, "must be a string")),
    }
}

/// Absent: keep. `null` or `""`: clear. A string: parsed.
fn clearable<T>(
    given: &Given,
    field: &str,
    parse: impl Fn(&str) -> Result<T, String>,
) -> Result<Option<Option<T>>, Rejection> {
    match given {
        Given::Absent => Ok(None),
        Given::Present(Value::Null) => Ok(Some(None)),
        Given::Present(Value::String(text)) if text.is_empty() => Ok(Some(None)),
        Given::Present(Value::String(text)) => parse(text)
            .map(|value| Some(Some(value)))
            .map_err(|problem| Rejection::invalid(field, problem)),
        Given::Present(_) => Err(Rejection::invalid(field, "must be a string or null")),
    }
}

fn parse_upsert(raw: &RawRecipientEvent) -> Result<Upsert, Rejection> {
    Ok(Upsert {
        email: clearable(&raw.email, "email", Email::parse)?,
        locale: clearable(&raw.locale, "locale", Locale::parse)?,
        preferences: match &raw.preferences {
            Given::Absent | Given::Present(Value::Null) => Vec::new(),
            Given::Present(Value::Object(channels)) => parse_preferences(channels)?,
            Given::Present(_) => {
                return Err(Rejection::invalid(
                    "preferences",
                    "must be an object like {\"email\":{\"post.like\":\"digest\"}}",
                ));
            }
        },
    })
}

fn parse_preferences(
    channels: &Map<String, Value>,
) -> Result<Vec<(PreferenceChannel, EventTypeName, Option<Mode>)>, Rejection> {
    let mut preferences = Vec::new();
    for (channel_name, types) in channels {
        let channel = PreferenceChannel::parse(channel_name)
            .map_err(|problem| Rejection::invalid("preferences", problem))?;
        let Value::Object(types) = types else {
            return Err(Rejection::invalid(
                &format!("preferences.{channel}"),
                "must be an object of event type to mode",
            ));
        };
        for (type_name, mode) in types {
            let field = format!("preferences.{channel}");
            let event_type =
                EventTypeName::parse(type_name).map_err(|problem| Rejection::invalid(&field, problem))?;
            let field = format!("{field}.{event_type}");
            let mode = match mode {
                Value::Null => None,
                Value::String(text) => {
                    Some(Mode::parse(text).map_err(|problem| Rejection::invalid(&field, problem))?)
                }
                _ => return Err(Rejection::invalid(&field, "must be instant, digest, off or null")),
            };
            if preferences.len() == MAX_PREFERENCES {
                return Err(Rejection::invalid(
                    "preferences",
                    format!("more than {MAX_PREFERENCES} preferences"),
                ));
            }
            preferences.push((channel, event_type, mode));
        }
    }
    Ok(preferences)
}

/// The target's kind and key, and the subscription object when there is one.
fn parse_target_key<'a>(
    raw: &'a RawRecipientEvent,
    policy: &RecipientPolicy,
) -> Result<(TargetKey, Option<&'a JsonObject>), Rejection> {
    let kind = PushKind::parse(required_str(&raw.kind, "kind")?)
        .map_err(|problem| Rejection::invalid("kind", problem))?;
    match (kind, &raw.token, &raw.subscription) {
        (PushKind::Webpush, Given::Present(_), _) => Err(Rejection::invalid(
            "token",
            "webpush targets are given as \"subscription\":{\"endpoint\",\"keys\"}, not a token",
        )),
        (PushKind::Webpush, Given::Absent, subscription) => {
            let subscription = match subscription {
                Given::Absent => return Err(Rejection::missing("subscription")),
                Given::Present(Value::Object(object)) => object,
                Given::Present(_) => return Err(Rejection::invalid("subscription", "must be an object")),
            };
            let endpoint = match subscription.get("endpoint") {
                None => return Err(Rejection::missing("subscription.endpoint")),
                Some(Value::String(endpoint)) => endpoint,
                Some(_) => return Err(Rejection::invalid("subscription.endpoint", "must be a string")),
            };
            let key = TargetKey::endpoint(endpoint, policy.allow_http_endpoints)
                .map_err(|problem| Rejection::invalid("subscription.endpoint", problem))?;
            Ok((key, Some(subscription)))
        }
        (_, _, Given::Present(_)) => Err(Rejection::invalid(
            "subscription",
            format!("only webpush targets have one; {} takes a token", kind.as_str()),
        )),
        (_, token, Given::Absent) => {
            let token = required_str(token, "token")?;
            let key =
                TargetKey::token(kind, token).map_err(|problem| Rejection::invalid("token", problem))?;
            Ok((key, None))
        }
    }
}

fn parse_target(raw: &RawRecipientEvent, policy: &RecipientPolicy) -> Result<PushTarget, Rejection> {
    let (key, subscription) = parse_target_key(raw, policy)?;
    let Some(subscription) = subscription else {
        return PushTarget::device(key).map_err(|problem| Rejection::invalid("kind", problem));
    };
    let keys = match subscription.get("keys") {
        None => return Err(Rejection::missing("subscription.keys")),
        Some(Value::Object(keys)) => keys,
        Some(_) => return Err(Rejection::invalid("subscription.keys", "must be an object")),
    };
    let key_text = |name: &str| match keys.get(name) {
        None => Err(Rejection::missing(&format!("subscription.keys.{name}"))),
        Some(Value::String(text)) => Ok(text.as_str()),
        Some(_) => Err(Rejection::invalid(
            &format!("subscription.keys.{name}"),
            "must be a string",
        )),
    };
    let keys = WebPushKeys::parse(key_text("p256dh")?, key_text("auth")?)
        .map_err(|(name, problem)| Rejection::invalid(&format!("subscription.keys.{name}"), problem))?;
    PushTarget::subscription(key, keys).map_err(|problem| Rejection::invalid("subscription", problem))
}

#[cfg(test)]
mod tests {
    use super::*;

    const P256DH: &str =
        "BNcRdreALRFXTkOOUHK1EtK2wtaz5Ry4YfYCA_0QTpQtUbVlUls0VJXg7A8u-Ts1XbjhazAkj7I99e8QcYP7DkM";
    const AUTH: &str = "tBHItJI5svbpez7KI4CCXg";

    fn parse(subject: &str, body: &str) -> Result<RecipientEvent, Rejection> {
        parse_recipient_event(subject, body.as_bytes(), &RecipientPolicy::default())
    }

    fn reason(subject: &str, body: &str) -> String {
        let rejection = parse(subject, body).unwrap_err();
        format!(
            "{}: {}",
            rejection.reason.code(),
            rejection.message.split(':').next().unwrap()
        )
    }

    fn subscription(endpoint: &str) -> String {
        format!(
            r#"{{"owner":"user-123","kind":"webpush","subscription":{{"endpoint":"{endpoint}","expirationTime":null,"keys":{{"p256dh":"{P256DH}","auth":"{AUTH}"}}}}}}"#
        )
    }

    #[test]
    fn the_specs_upsert() {
        let event = parse(
            UPSERT,
            r#"{"owner":"user-123","email":"a@example.com","locale":"en","preferences":{"email":{"post.like":"off","reply.post":"instant"}}}"#,
        )
        .unwrap();
        assert_eq!(event.owner.as_str(), "user-123");
        let RecipientChange::Upsert(upsert) = event.change else {
            panic!("an upsert")
        };
        assert_eq!(upsert.email.unwrap().unwrap().as_str(), "a@example.com");
        assert_eq!(upsert.locale.unwrap().unwrap().as_str(), "en");
        let modes: Vec<_> = upsert
            .preferences
            .iter()
            .map(|(channel, event_type, mode)| format!("{channel}.{event_type}={}", mode.unwrap()))
            .collect();
        assert_eq!(modes, ["email.post.like=off", "email.reply.post=instant"]);
    }

    #[test]
    fn absent_keeps_and_null_or_empty_clears() {
        let RecipientChange::Upsert(upsert) = parse(
            UPSERT,
            r#"{"owner":"u","email":null,"locale":"","preferences":{"push":{"mention":null}}}"#,
        )
        .unwrap()
        .change
        else {
            panic!()
        };
        assert_eq!(upsert.email, Some(None));
        assert_eq!(upsert.locale, Some(None));
        assert_eq!(upsert.preferences[0].2, None);
        let RecipientChange::Upsert(upsert) = parse(UPSERT, r#"{"owner":"u"}"#).unwrap().change else {
            panic!()
        };
        assert_eq!(upsert, Upsert::default());
    }

    #[test]
    fn push_targets_by_token_or_subscription() {
        let add = parse(PUSH_ADD, r#"{"owner":"u","kind":"fcm","token":"abc:DEF-1"}"#).unwrap();
        let RecipientChange::PushAdd(target) = add.change else {
            panic!()
        };
        assert_eq!((target.kind(), target.token()), (PushKind::Fcm, "abc:DEF-1"));

        let add = parse(PUSH_ADD, &subscription("https://push.example.com/x")).unwrap();
        let RecipientChange::PushAdd(target) = add.change else {
            panic!()
        };
        assert_eq!(target.webpush_keys().unwrap().auth(), AUTH);

        // Removing a subscription needs its endpoint only.
        let remove = parse(
            PUSH_REMOVE,
            r#"{"owner":"u","kind":"webpush","subscription":{"endpoint":"https://push.example.com/x"}}"#,
        )
        .unwrap();
        assert_eq!(remove.change, RecipientChange::PushRemove(target.key().clone()));
        assert_eq!(
            parse(REMOVE, r#"{"owner":"u","unknown":[1]}"#).unwrap().change,
            RecipientChange::Remove
        );
    }

    #[test]
    fn http_endpoints_only_when_allowed() {
        let body = subscription("http://127.0.0.1:8990/push/1");
        assert_eq!(reason(PUSH_ADD, &body), "invalid_field: subscription.endpoint");
        let development = RecipientPolicy {
            allow_http_endpoints: true,
        };
        assert!(parse_recipient_event(PUSH_ADD, body.as_bytes(), &development).is_ok());
    }

    #[test]
    fn reason_codes_name_the_field() {
        let cases = [
            (UPSERT, "", "invalid_json: body is not a JSON object"),
            (UPSERT, "[1]", "invalid_json: body is not a JSON object"),
            (UPSERT, r#"{"owner":"a","owner":"b"}"#, "invalid_json: body"),
            (UPSERT, r#"{"email":"a@example.com"}"#, "missing_field: owner"),
            (UPSERT, r#"{"owner":7}"#, "invalid_field: owner"),
            (UPSERT, r#"{"owner":"a#b"}"#, "invalid_field: owner"),
            (UPSERT, r#"{"owner":"u","email":"nope"}"#, "invalid_field: email"),
            (UPSERT, r#"{"owner":"u","email":5}"#, "invalid_field: email"),
            (
                UPSERT,
                r#"{"owner":"u","locale":"en_US"}"#,
                "invalid_field: locale",
            ),
            (
                UPSERT,
                r#"{"owner":"u","preferences":[]}"#,
                "invalid_field: preferences",
            ),
            (
                UPSERT,
                r#"{"owner":"u","preferences":{"sms":{}}}"#,
                "invalid_field: preferences",
            ),
            (
                UPSERT,
                r#"{"owner":"u","preferences":{"pusher":{}}}"#,
                "invalid_field: preferences",
            ),
            (
                UPSERT,
                r#"{"owner":"u","preferences":{"email":"off"}}"#,
                "invalid_field: preferences.email",
            ),
            (
                UPSERT,
                r#"{"owner":"u","preferences":{"email":{"post.unlike":"off"}}}"#,
                "invalid_field: preferences.email",
            ),
            (
                UPSERT,
                r#"{"owner":"u","preferences":{"email":{"post.like":"never"}}}"#,
                "invalid_field: preferences.email.post.like",
            ),
            (
                UPSERT,
                r#"{"owner":"u","preferences":{"email":{"post.like":1}}}"#,
                "invalid_field: preferences.email.post.like",
            ),
            (PUSH_ADD, r#"{"owner":"u","token":"t"}"#, "missing_field: kind"),
            (
                PUSH_ADD,
                r#"{"owner":"u","kind":"sms","token":"t"}"#,
                "invalid_field: kind",
            ),
            (PUSH_ADD, r#"{"owner":"u","kind":"fcm"}"#, "missing_field: token"),
            (
                PUSH_ADD,
                r#"{"owner":"u","kind":"fcm","token":"a b"}"#,
                "invalid_field: token",
            ),
            (
                PUSH_ADD,
                r#"{"owner":"u","kind":"apns","token":"xyz"}"#,
                "invalid_field: token",
            ),
            (
                PUSH_ADD,
                r#"{"owner":"u","kind":"fcm","subscription":{}}"#,
                "invalid_field: subscription",
            ),
            (
                PUSH_ADD,
                r#"{"owner":"u","kind":"webpush","token":"t"}"#,
                "invalid_field: token",
            ),
            (
                PUSH_ADD,
                r#"{"owner":"u","kind":"webpush"}"#,
                "missing_field: subscription",
            ),
            (
                PUSH_ADD,
                r#"{"owner":"u","kind":"webpush","subscription":{}}"#,
                "missing_field: subscription.endpoint",
            ),
            (
                PUSH_ADD,
                r#"{"owner":"u","kind":"webpush","subscription":{"endpoint":"https://p.example.com/1"}}"#,
                "missing_field: subscription.keys",
            ),
            (
                PUSH_ADD,
                r#"{"owner":"u","kind":"webpush","subscription":{"endpoint":"https://p.example.com/1","keys":{"p256dh":"AAAA","auth":"AAAA"}}}"#,
                "invalid_field: subscription.keys.p256dh",
            ),
            ("recipients.update", r#"{"owner":"u"}"#, "invalid_field: subject"),
            (
                "notifications.post.like",
                r#"{"owner":"u"}"#,
                "invalid_field: subject",
            ),
        ];
        for (subject, body, expected) in cases {
            assert_eq!(reason(subject, body), expected, "{subject} {body}");
        }
        let big = format!(r#"{{"owner":"u","pad":"{}"}}"#, "x".repeat(MAX_BODY_BYTES));
        assert_eq!(parse(UPSERT, &big).unwrap_err().reason, Reason::TooLarge);
    }

    #[test]
    fn preferences_are_bounded() {
        let types: Vec<String> = (0..=MAX_PREFERENCES)
            .map(|i| format!(r#""t{i}":"off""#))
            .collect();
        let body = format!(
            r#"{{"owner":"u","preferences":{{"email":{{{}}}}}}}"#,
            types.join(",")
        );
        assert_eq!(reason(UPSERT, &body), "invalid_field: preferences");
    }
}
