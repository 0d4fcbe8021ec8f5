//! Names with the owner in them: a NATS subject (`users.{owner}.notifications`) or a Pusher
//! channel (`private-user-{owner}-notifications`). The template is checked once at start,
//! and the owner is encoded so that no owner id can make the name invalid or wider: a `.`
//! in an owner would split a NATS token (`alice.x` reaching a subscriber allowed
//! `users.alice.>`), `*`, `>` and spaces are invalid in subjects, and Pusher allows only
//! `A-Z a-z 0-9 _ - = @ , . ;` up to 164 characters.
//!
//! The encoding (documented in docs/delivery.md, so clients compute the same name): ASCII
//! letters, digits and `_ - @ , ;` stay as they are; every other byte of the owner's UTF-8
//! is written `=XX` (two upper-case hex digits), `=` itself included. `user-123` stays
//! `user-123`; `alice.x` becomes `alice=2Ex`.

use std::fmt::Write;

const PLACEHOLDER: &str = "{owner}";
/// Pusher's limit on channel names.
const PUSHER_MAX_LEN: usize = 164;

/// Where the name goes, which decides what its fixed parts may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameKind {
    NatsSubject,
    PusherChannel,
}

/// A checked template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnerTemplate {
    kind: NameKind,
    before: String,
    after: String,
}

/// The owner as it appears in names (see the module's documentation).
pub fn encode_owner(owner: &str) -> String {
    let mut encoded = String::with_capacity(owner.len());
    for byte in owner.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'_' | b'-' | b'@' | b',' | b';') {
            encoded.push(char::from(byte));
        } else {
            let _ = write!(encoded, "={byte:02X}");
        }
    }
    encoded
}

impl OwnerTemplate {
    /// Checks `template` (holding `{owner}` exactly once) for `kind`.
    pub fn parse(kind: NameKind, template: &str) -> Result<OwnerTemplate, String> {
        let mut parts = template.split(PLACEHOLDER);
        let (Some(before), Some(after), None) = (parts.next(), parts.next(), parts.next()) else {
            return Err("must hold {owner} exactly once".to_owned());
        };
        let fixed = format!("{before}{after}");
        match kind {
            NameKind::NatsSubject => {
                if let Some(bad) = fixed
                    .chars()
                    .find(|c| c.is_whitespace() || c.is_control() || matches!(c, '*' | '>'))
                {
                    return Err(format!("a subject cannot hold {bad:?}"));
                }
                // Every token non-empty once the owner (never empty, never holding a dot) is in.
                let sample = format!("{before}x{after}");
                if sample.split('.').any(str::is_empty) {
                    return Err("has an empty subject token (check the dots)".to_owned());
                }
            }
            NameKind::PusherChannel => {
                if let Some(bad) = fixed
                    .chars()
                    .find(|c| !(c.is_ascii_alphanumeric() || "_-=@,.;".contains(*c)))
                {
                    return Err(format!("a Pusher channel name cannot hold {bad:?}"));
                }
                if fixed.len() + 1 > PUSHER_MAX_LEN {
                    return Err(format!("is longer than Pusher's {PUSHER_MAX_LEN} characters"));
                }
            }
        }
        Ok(OwnerTemplate {
            kind,
            before: before.to_owned(),
            after: after.to_owned(),
        })
    }

    /// The name for `owner`, or why there is none (a Pusher channel name over its limit).
    pub fn render(&self, owner: &str) -> Result<String, String> {
        let name = format!("{}{}{}", self.before, encode_owner(owner), self.after);
        if self.kind == NameKind::PusherChannel && name.len() > PUSHER_MAX_LEN {
            return Err(format!(
                "the channel name for owner {owner:?} would be {} characters, over Pusher's {PUSHER_MAX_LEN}",
                name.len()
            ));
        }
        Ok(name)
    }

    /// Whether the channel is private (Pusher: `private-...`): subscribers need the app's auth.
    pub fn is_private(&self) -> bool {
        self.before.starts_with("private-")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinary_owners_are_unchanged_and_the_rest_stay_in_their_token() {
        let subject = OwnerTemplate::parse(NameKind::NatsSubject, "users.{owner}.notifications").unwrap();
        assert_eq!(
            subject.render("user-123").unwrap(),
            "users.user-123.notifications"
        );
        assert_eq!(
            subject.render("alice.x").unwrap(),
            "users.alice=2Ex.notifications"
        );
        assert_eq!(
            subject.render("a b*>").unwrap(),
            "users.a=20b=2A=3E.notifications"
        );
        // Injective: the escape character is escaped too.
        assert_ne!(encode_owner("a=2E"), encode_owner("a."));
        assert_eq!(encode_owner("é"), "=C3=A9");
        let channel =
            OwnerTemplate::parse(NameKind::PusherChannel, "private-user-{owner}-notifications").unwrap();
        assert!(channel.is_private());
        assert_eq!(
            channel.render("user:1").unwrap(),
            "private-user-user=3A1-notifications"
        );
        for owner in ["user-1", "a.b", "x y", "ü#", "a=b"] {
            let name = channel.render(owner).unwrap();
            assert!(
                name.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_-=@,.;".contains(c)),
                "{name}"
            );
            let subject = subject.render(owner).unwrap();
            assert_eq!(subject.split('.').count(), 3, "{subject}");
        }
    }

    #[test]
    fn bad_templates_are_refused_at_start() {
        for template in [
            "users.notifications",
            "users.{owner}.{owner}",
            "users.*.{owner}",
            "users..{owner}",
            "{owner}.",
            "a b.{owner}",
        ] {
            assert!(
                OwnerTemplate::parse(NameKind::NatsSubject, template).is_err(),
                "{template}"
            );
        }
        for template in ["user/{owner}", "user {owner}", "{owner}#"] {
            assert!(
                OwnerTemplate::parse(NameKind::PusherChannel, template).is_err(),
                "{template}"
            );
        }
        let long = OwnerTemplate::parse(NameKind::PusherChannel, "private-{owner}").unwrap();
        assert!(long.render(&"é".repeat(64)).is_err());
    }
}
