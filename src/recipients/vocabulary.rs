//! The words of preferences: channels that reach a person, the `push` group, event types
//! and modes — spelled as in SPEC's vocabulary table, the same in every setting.

use crate::domain::{EventType, Operation, SUBJECT_PREFIX};
use std::fmt;

/// A channel that reaches one person. The realtime channels (`pusher`, `nats`) and `webhook`
/// are not here: they mirror the feed to apps and services, so every notification goes
/// out on them and no preference applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Channel {
    Email,
    Webpush,
    Fcm,
    Apns,
}

impl Channel {
    pub const ALL: [Channel; 4] = [Channel::Email, Channel::Webpush, Channel::Fcm, Channel::Apns];

    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Email => "email",
            Channel::Webpush => "webpush",
            Channel::Fcm => "fcm",
            Channel::Apns => "apns",
        }
    }

    /// The group a channel belongs to, if any (`push` = webpush + fcm + apns).
    pub fn group(self) -> Option<PreferenceChannel> {
        match self {
            Channel::Email => None,
            Channel::Webpush | Channel::Fcm | Channel::Apns => Some(PreferenceChannel::Push),
        }
    }
}

impl fmt::Display for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a preference names: one channel, or the `push` group. SPEC's vocabulary is "the
/// same in every setting", so a person may set `push` for all their devices or `fcm` for
/// one kind only; the single channel wins over the group (see [`super::resolve_mode`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PreferenceChannel {
    Email,
    Push,
    Webpush,
    Fcm,
    Apns,
}

impl PreferenceChannel {
    pub fn parse(text: &str) -> Result<PreferenceChannel, String> {
        Ok(match text {
            "email" => PreferenceChannel::Email,
            "push" => PreferenceChannel::Push,
            "webpush" => PreferenceChannel::Webpush,
            "fcm" => PreferenceChannel::Fcm,
            "apns" => PreferenceChannel::Apns,
            "pusher" | "nats" | "webhook" | "realtime" => {
                return Err(format!(
                    "{text} has no preferences: it carries every notification (preferences are for email, push, webpush, fcm, apns)"
                ));
            }
            other => {
                return Err(format!(
                    "{:?} is not a channel (email, push, webpush, fcm, apns)",
                    preview(other)
                ));
            }
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            PreferenceChannel::Email => "email",
            PreferenceChannel::Push => "push",
            PreferenceChannel::Webpush => "webpush",
            PreferenceChannel::Fcm => "fcm",
            PreferenceChannel::Apns => "apns",
        }
    }
}

impl From<Channel> for PreferenceChannel {
    fn from(channel: Channel) -> PreferenceChannel {
        match channel {
            Channel::Email => PreferenceChannel::Email,
            Channel::Webpush => PreferenceChannel::Webpush,
            Channel::Fcm => PreferenceChannel::Fcm,
            Channel::Apns => PreferenceChannel::Apns,
        }
    }
}

impl fmt::Display for PreferenceChannel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An event type as preferences name it: the subject's tail after `notifications.`
/// (`post.like`, `reply.post`, or a generic type). Checked against the subject table in
/// [`crate::domain::EventType`], so the two never disagree; types that remove a
/// notification (`post.unlike`) are refused, nothing is ever delivered for them.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EventTypeName(String);

impl EventTypeName {
    /// Longer names are not event types anyone publishes; the bound keeps records small.
    pub const MAX_BYTES: usize = 64;

    pub fn parse(text: &str) -> Result<EventTypeName, String> {
        if text.len() > EventTypeName::MAX_BYTES {
            return Err(format!(
                "event type is {} bytes, at most {} allowed",
                text.len(),
                EventTypeName::MAX_BYTES
            ));
        }
        let event_type = EventType::for_subject(&format!("{SUBJECT_PREFIX}{text}")).map_err(|_| {
            format!(
                "{:?} is not an event type (e.g. post.like, reply.post)",
                preview(text)
            )
        })?;
        if event_type.operation == Operation::Remove {
            return Err(format!(
                "{text} removes a notification: nothing is delivered for it"
            ));
        }
        Ok(EventTypeName(text.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for EventTypeName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// How a channel delivers one event type to one person.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Mode {
    /// One message per notification, as it is stored.
    Instant,
    /// Folded into the channel's digest for the window.
    Digest,
    /// Not on this channel (the feed still has it).
    Off,
}

impl Mode {
    pub fn parse(text: &str) -> Result<Mode, String> {
        match text {
            "instant" => Ok(Mode::Instant),
            "digest" => Ok(Mode::Digest),
            "off" => Ok(Mode::Off),
            other => Err(format!(
                "{:?} is not a mode (instant, digest, off)",
                preview(other)
            )),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Instant => "instant",
            Mode::Digest => "digest",
            Mode::Off => "off",
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A short, printable piece of untrusted text for messages.
pub(super) fn preview(text: &str) -> String {
    text.chars().take(32).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_types_come_from_the_subject_table() {
        for name in [
            "post.like",
            "comment.like",
            "reply.post",
            "reply.comment",
            "mention",
            "user.follow",
        ] {
            assert_eq!(EventTypeName::parse(name).unwrap().as_str(), name);
        }
        // A generic type is fine, as it is on the subjects.
        assert!(EventTypeName::parse("post.share").is_ok());
        for bad in [
            "",
            "post.unlike",
            "user.unfollow",
            "post..like",
            "post.*",
            ">",
            &"x".repeat(65),
        ] {
            assert!(EventTypeName::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn channels_with_preferences_and_the_push_group() {
        for name in ["email", "push", "webpush", "fcm", "apns"] {
            assert_eq!(PreferenceChannel::parse(name).unwrap().as_str(), name);
        }
        assert!(
            PreferenceChannel::parse("pusher")
                .unwrap_err()
                .contains("no preferences")
        );
        assert!(PreferenceChannel::parse("sms").is_err());
        assert_eq!(Channel::Fcm.group(), Some(PreferenceChannel::Push));
        assert_eq!(Channel::Email.group(), None);
    }

    #[test]
    fn modes() {
        assert_eq!(Mode::parse("digest"), Ok(Mode::Digest));
        assert!(Mode::parse("Instant").is_err());
    }
}
