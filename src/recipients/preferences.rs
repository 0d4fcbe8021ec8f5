//! Which mode a channel uses for one event type and one person: their own preferences
//! first, then the operator's defaults (`NOTIFY_DEFAULTS`).

use super::record::Recipient;
use super::vocabulary::{Channel, EventTypeName, Mode, PreferenceChannel};
use std::collections::BTreeMap;

/// `NOTIFY_DEFAULTS` when it is not set.
pub const DEFAULT_NOTIFY_DEFAULTS: &str = "email=digest,push=instant";

/// What a channel does when neither the recipient nor `NOTIFY_DEFAULTS` says anything:
/// nothing. Sending what nobody asked for is worse than not sending; the feed still has
/// every notification.
pub const FALLBACK_MODE: Mode = Mode::Off;

/// The operator's defaults: a mode per channel or group, optionally per event type
/// (`email=digest,push=instant,email.reply.post=instant`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotifyDefaults {
    /// `None` as the event type: the channel's (or group's) mode for every type.
    modes: BTreeMap<(PreferenceChannel, Option<EventTypeName>), Mode>,
}

impl NotifyDefaults {
    /// Reads comma-separated `CHANNEL=MODE` and `CHANNEL.EVENT_TYPE=MODE` items. An empty
    /// value sets no defaults (every channel then falls back to [`FALLBACK_MODE`]).
    pub fn parse(text: &str) -> Result<NotifyDefaults, String> {
        let mut modes = BTreeMap::new();
        if text.trim().is_empty() {
            return Ok(NotifyDefaults { modes });
        }
        for item in text.split(',').map(str::trim) {
            let Some((key, mode)) = item.split_once('=') else {
                return Err(format!("{item:?} is not CHANNEL=MODE or CHANNEL.EVENT_TYPE=MODE"));
            };
            let (channel, event_type) = match key.trim().split_once('.') {
                None => (key.trim(), None),
                Some((channel, event_type)) => (channel, Some(event_type)),
            };
            let channel = PreferenceChannel::parse(channel)?;
            let event_type = event_type.map(EventTypeName::parse).transpose()?;
            let mode = Mode::parse(mode.trim())?;
            if modes.insert((channel, event_type), mode).is_some() {
                return Err(format!("{} is given twice", key.trim()));
            }
        }
        Ok(NotifyDefaults { modes })
    }

    fn get(&self, channel: PreferenceChannel, event_type: Option<&EventTypeName>) -> Option<Mode> {
        self.modes.get(&(channel, event_type.cloned())).copied()
    }
}

impl Default for NotifyDefaults {
    fn default() -> NotifyDefaults {
        NotifyDefaults::parse(DEFAULT_NOTIFY_DEFAULTS).expect("the built-in defaults parse")
    }
}

/// The mode `channel` uses for `event_type` for this recipient (`None`: the directory has
/// no entry for the owner). The first of these that says something decides:
///
/// 1. the recipient's preference for the channel and type (`fcm` → `post.like`),
/// 2. the recipient's preference for the channel's group and type (`push` → `post.like`),
/// 3. `NOTIFY_DEFAULTS` for the channel and type (`fcm.post.like=`),
/// 4. `NOTIFY_DEFAULTS` for the group and type (`push.post.like=`),
/// 5. `NOTIFY_DEFAULTS` for the channel (`fcm=`),
/// 6. `NOTIFY_DEFAULTS` for the group (`push=`),
/// 7. [`FALLBACK_MODE`] (`off`).
///
/// The recipient's word beats any default, and the narrower of two defaults wins.
pub fn resolve_mode(
    defaults: &NotifyDefaults,
    recipient: Option<&Recipient>,
    channel: Channel,
    event_type: &EventTypeName,
) -> Mode {
    let own = PreferenceChannel::from(channel);
    let group = channel.group();
    let personal = recipient.and_then(|recipient| {
        recipient
            .preference(own, event_type)
            .or_else(|| group.and_then(|group| recipient.preference(group, event_type)))
    });
    personal
        .or_else(|| defaults.get(own, Some(event_type)))
        .or_else(|| group.and_then(|group| defaults.get(group, Some(event_type))))
        .or_else(|| defaults.get(own, None))
        .or_else(|| group.and_then(|group| defaults.get(group, None)))
        .unwrap_or(FALLBACK_MODE)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Id, Version};
    use crate::recipients::event::{RecipientChange, Upsert};

    fn kind(name: &str) -> EventTypeName {
        EventTypeName::parse(name).unwrap()
    }

    fn with_preferences(preferences: &[(PreferenceChannel, &str, Mode)]) -> Recipient {
        let mut recipient = Recipient::new(Id::parse("owner", "user-123").unwrap());
        let upsert = Upsert {
            preferences: preferences
                .iter()
                .map(|(channel, name, mode)| (*channel, kind(name), Some(*mode)))
                .collect(),
            ..Upsert::default()
        };
        recipient.apply(&RecipientChange::Upsert(upsert), Version::new(1, 1).unwrap());
        recipient
    }

    #[test]
    fn the_built_in_defaults() {
        let defaults = NotifyDefaults::default();
        let like = kind("post.like");
        assert_eq!(resolve_mode(&defaults, None, Channel::Email, &like), Mode::Digest);
        for push in [Channel::Webpush, Channel::Fcm, Channel::Apns] {
            assert_eq!(resolve_mode(&defaults, None, push, &like), Mode::Instant);
        }
    }

    #[test]
    fn defaults_narrowest_first() {
        let defaults =
            NotifyDefaults::parse("email=digest, push=instant, email.reply.post=instant, push.post.like=digest, apns=off, fcm.post.like=off")
                .unwrap();
        let mode = |channel, name| resolve_mode(&defaults, None, channel, &kind(name));
        assert_eq!(mode(Channel::Email, "reply.post"), Mode::Instant); // channel.type
        assert_eq!(mode(Channel::Email, "post.like"), Mode::Digest); // channel
        assert_eq!(mode(Channel::Fcm, "post.like"), Mode::Off); // channel.type over group.type
        assert_eq!(mode(Channel::Webpush, "post.like"), Mode::Digest); // group.type
        assert_eq!(mode(Channel::Apns, "post.like"), Mode::Digest); // group.type over channel
        assert_eq!(mode(Channel::Apns, "mention"), Mode::Off); // channel over group
        assert_eq!(mode(Channel::Webpush, "mention"), Mode::Instant); // group
    }

    #[test]
    fn nothing_said_means_off() {
        let defaults = NotifyDefaults::parse("email=instant").unwrap();
        assert_eq!(
            resolve_mode(&defaults, None, Channel::Fcm, &kind("mention")),
            Mode::Off
        );
        let none = NotifyDefaults::parse("").unwrap();
        assert_eq!(
            resolve_mode(&none, None, Channel::Email, &kind("mention")),
            FALLBACK_MODE
        );
    }

    #[test]
    fn the_recipient_beats_every_default_and_their_channel_beats_their_group() {
        let defaults = NotifyDefaults::parse("push=instant,fcm.mention=instant").unwrap();
        let recipient = with_preferences(&[
            (PreferenceChannel::Push, "mention", Mode::Off),
            (PreferenceChannel::Apns, "mention", Mode::Digest),
        ]);
        let mention = kind("mention");
        let mode = |channel| resolve_mode(&defaults, Some(&recipient), channel, &mention);
        assert_eq!(mode(Channel::Apns), Mode::Digest); // own channel.type
        assert_eq!(mode(Channel::Fcm), Mode::Off); // own group.type over the default fcm.mention
        assert_eq!(mode(Channel::Webpush), Mode::Off);
        // Another type: the recipient said nothing, the defaults decide.
        assert_eq!(
            resolve_mode(&defaults, Some(&recipient), Channel::Fcm, &kind("post.like")),
            Mode::Instant
        );
        // The push group's preference does not reach email.
        let email = resolve_mode(
            &NotifyDefaults::default(),
            Some(&recipient),
            Channel::Email,
            &mention,
        );
        assert_eq!(email, Mode::Digest);
    }

    #[test]
    fn bad_defaults_say_what_is_wrong() {
        for (bad, says) in [
            ("email", "not CHANNEL=MODE"),
            ("email=sometimes", "not a mode"),
            ("sms=instant", "not a channel"),
            ("webhook=off", "no preferences"),
            ("email.post.unlike=off", "removes a notification"),
            ("email.=off", "not an event type"),
            ("email=digest,email=instant", "given twice"),
            ("email=digest,,push=instant", "not CHANNEL=MODE"),
        ] {
            let problem = NotifyDefaults::parse(bad).unwrap_err();
            assert!(problem.contains(says), "{bad}: {problem}");
        }
    }
}
