//! A [`Recipient`] as the stores keep it: one JSON document with every field's version and
//! the removal floor, so that a record read back merges exactly like the one written.
//!
//! The document is the record's only source of truth. Versions are written as their
//! fixed-width decimal text ([`Version::to_text`]): a JSON number would lose digits in most
//! readers. Values are written as the events spell them, and read back through the same
//! parsers, so a hand-edited or corrupted row is refused with a reason instead of trusted.

use super::contact::{Email, Locale, PushKind, PushTarget, TargetKey, WebPushKeys};
use super::record::{Recipient, TargetState, Versioned};
use super::vocabulary::{EventTypeName, Mode, PreferenceChannel};
use crate::domain::{Id, Version};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Serialize, Deserialize)]
struct Document {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    removed: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    email: Option<Slot>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    locale: Option<Slot>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    preferences: Vec<StoredPreference>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    push_targets: Vec<StoredTarget>,
}

/// A value (`null`: cleared) and the version that set it.
#[derive(Serialize, Deserialize)]
struct Slot {
    value: Option<String>,
    version: String,
}

#[derive(Serialize, Deserialize)]
struct StoredPreference {
    channel: String,
    event_type: String,
    /// `null`: back to the defaults.
    mode: Option<String>,
    version: String,
}

#[derive(Serialize, Deserialize)]
struct StoredTarget {
    kind: String,
    /// The device token or the Web Push endpoint.
    address: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    p256dh: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    auth: Option<String>,
    /// A removal kept so that an older add stays removed.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    removed: bool,
    version: String,
}

impl Recipient {
    /// The record's storage form (see the module's documentation).
    pub fn to_stored(&self) -> String {
        let slot = |slot: &Option<Versioned<Option<String>>>| {
            slot.as_ref().map(|slot| Slot {
                value: slot.value.clone(),
                version: slot.version.to_text(),
            })
        };
        let email = self.email.as_ref().map(|slot| Versioned {
            value: slot.value.as_ref().map(|email| email.as_str().to_owned()),
            version: slot.version,
        });
        let locale = self.locale.as_ref().map(|slot| Versioned {
            value: slot.value.as_ref().map(|locale| locale.as_str().to_owned()),
            version: slot.version,
        });
        let document = Document {
            removed: self.removed.map(Version::to_text),
            email: slot(&email),
            locale: slot(&locale),
            preferences: self
                .preferences
                .iter()
                .map(|((channel, event_type), slot)| StoredPreference {
                    channel: channel.as_str().to_owned(),
                    event_type: event_type.as_str().to_owned(),
                    mode: slot.value.map(|mode| mode.as_str().to_owned()),
                    version: slot.version.to_text(),
                })
                .collect(),
            push_targets: self
                .push_targets
                .iter()
                .map(|(key, slot)| {
                    let keys = match &slot.value {
                        TargetState::Added(target) => target.webpush_keys(),
                        TargetState::Removed => None,
                    };
                    StoredTarget {
                        kind: key.kind().as_str().to_owned(),
                        address: key.address().to_owned(),
                        p256dh: keys.map(|keys| keys.p256dh().to_owned()),
                        auth: keys.map(|keys| keys.auth().to_owned()),
                        removed: slot.value == TargetState::Removed,
                        version: slot.version.to_text(),
                    }
                })
                .collect(),
        };
        serde_json::to_string(&document).expect("a document of strings always serialises")
    }

    /// Reads [`Recipient::to_stored`] back; `Err` says what in the stored text is wrong.
    pub fn from_stored(owner: Id, text: &str) -> Result<Recipient, String> {
        let document: Document =
            serde_json::from_str(text).map_err(|error| format!("not a stored recipient: {error}"))?;
        let mut record = Recipient::new(owner);
        record.removed = document.removed.as_deref().map(version).transpose()?;
        record.email = document
            .email
            .map(|slot| read_slot(slot, Email::parse))
            .transpose()
            .map_err(|error| format!("email {error}"))?;
        record.locale = document
            .locale
            .map(|slot| read_slot(slot, Locale::parse))
            .transpose()
            .map_err(|error| format!("locale {error}"))?;
        let mut preferences = BTreeMap::new();
        for stored in document.preferences {
            let channel = PreferenceChannel::parse(&stored.channel)?;
            let event_type = EventTypeName::parse(&stored.event_type)?;
            let mode = stored.mode.as_deref().map(Mode::parse).transpose()?;
            let slot = Versioned {
                value: mode,
                version: version(&stored.version)?,
            };
            preferences.insert((channel, event_type), slot);
        }
        record.preferences = preferences;
        let mut push_targets = BTreeMap::new();
        for stored in document.push_targets {
            let kind = PushKind::parse(&stored.kind)?;
            let key = match kind {
                // Checked when it was added, under the setting of that time: http:// may
                // have been allowed then.
                PushKind::Webpush => TargetKey::endpoint(&stored.address, true)?,
                PushKind::Fcm | PushKind::Apns => TargetKey::token(kind, &stored.address)?,
            };
            let state = match (stored.removed, stored.p256dh, stored.auth) {
                (true, _, _) => TargetState::Removed,
                (false, Some(p256dh), Some(auth)) => {
                    let keys = WebPushKeys::parse(&p256dh, &auth)
                        .map_err(|(field, problem)| format!("{field} {problem}"))?;
                    TargetState::Added(PushTarget::subscription(key.clone(), keys)?)
                }
                (false, _, _) => TargetState::Added(PushTarget::device(key.clone())?),
            };
            let slot = Versioned {
                value: state,
                version: version(&stored.version)?,
            };
            push_targets.insert(key, slot);
        }
        record.push_targets = push_targets;
        Ok(record)
    }
}

fn version(text: &str) -> Result<Version, String> {
    Version::parse(text).ok_or_else(|| format!("{text:?} is not a version"))
}

fn read_slot<T>(
    slot: Slot,
    parse: impl Fn(&str) -> Result<T, String>,
) -> Result<Versioned<Option<T>>, String> {
    Ok(Versioned {
        value: slot.value.as_deref().map(parse).transpose()?,
        version: version(&slot.version)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recipients::event::{RecipientChange, Upsert};

    fn v(sequence: u64) -> Version {
        Version::new(1_764_000_000_000_000, sequence).unwrap()
    }

    fn full_record() -> Recipient {
        let fcm = |token| TargetKey::token(PushKind::Fcm, token).unwrap();
        let keys = WebPushKeys::parse(
            "BNcRdreALRFXTkOOUHK1EtK2wtaz5Ry4YfYCA_0QTpQtUbVlUls0VJXg7A8u-Ts1XbjhazAkj7I99e8QcYP7DkM",
            "tBHItJI5svbpez7KI4CCXg",
        )
        .unwrap();
        let endpoint = TargetKey::endpoint("http://127.0.0.1:8990/push/1", true).unwrap();
        let like = EventTypeName::parse("post.like").unwrap();
        let mention = EventTypeName::parse("mention").unwrap();
        let mut record = Recipient::new(Id::parse("owner", "user-1").unwrap());
        let changes = [
            RecipientChange::Upsert(Upsert {
                email: Some(Some(Email::parse("a@example.com").unwrap())),
                locale: Some(None),
                preferences: vec![
                    (PreferenceChannel::Push, like, Some(Mode::Digest)),
                    (PreferenceChannel::Email, mention, None),
                ],
            }),
            RecipientChange::PushAdd(PushTarget::device(fcm("t1")).unwrap()),
            RecipientChange::PushAdd(PushTarget::subscription(endpoint, keys).unwrap()),
            RecipientChange::PushRemove(fcm("t2")),
        ];
        record.apply(&RecipientChange::Remove, v(1));
        for (sequence, change) in (2..).zip(&changes) {
            record.apply(change, v(sequence));
        }
        record
    }

    #[test]
    fn a_record_reads_back_exactly_with_its_versions_and_floor() {
        let record = full_record();
        assert!(record.removed_at().is_some());
        let text = record.to_stored();
        let read = Recipient::from_stored(record.owner().clone(), &text).unwrap();
        assert_eq!(read, record);
        assert_eq!(read.to_stored(), text);
        let empty = Recipient::new(Id::parse("owner", "user-2").unwrap());
        assert_eq!(empty.to_stored(), "{}");
        assert_eq!(
            Recipient::from_stored(empty.owner().clone(), "{}").unwrap(),
            empty
        );
    }

    #[test]
    fn a_damaged_document_is_refused_with_a_reason() {
        let owner = Id::parse("owner", "user-1").unwrap();
        for (text, said) in [
            ("not json", "not a stored recipient"),
            (r#"{"removed":"soon"}"#, "not a version"),
            (r#"{"email":{"value":"nope","version":"1"}}"#, "email"),
            (
                r#"{"push_targets":[{"kind":"sms","address":"x","version":"1"}]}"#,
                "sms",
            ),
        ] {
            let error = Recipient::from_stored(owner.clone(), text).unwrap_err();
            assert!(error.contains(said), "{text}: {error}");
        }
    }
}
