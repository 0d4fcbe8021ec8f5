//! The one table of event types: which subject does what.
//!
//! Adding an event type is adding one row to [`SUBJECTS`] (and, for a new kind of
//! notification, one row to [`ACTIONS`]). Everything else — validation, the stored item,
//! metrics labels — reads from here.

use super::{Rejection, ResourceType};

/// What an event does to the owner's feed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    /// Add a notification (idempotent: an existing one is left as it is).
    Create,
    /// Take a notification away (removing an absent one is fine).
    Remove,
}

/// A kind of notification, by its stable numeric code (stored as `action`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Action(u8);

/// Every known action code, with the words the product uses for it.
pub const ACTIONS: &[(u8, &str)] = &[
    (1, "like post"),
    (2, "like comment"),
    (3, "reply to post"),
    (4, "reply to comment"),
    (5, "mention"),
    (6, "follow"),
];

impl Action {
    /// Accepts only the codes listed in [`ACTIONS`].
    pub fn from_code(code: i64) -> Option<Action> {
        ACTIONS
            .iter()
            .find(|(known, _)| i64::from(*known) == code)
            .map(|(known, _)| Action(*known))
    }

    pub fn code(self) -> u8 {
        self.0
    }

    pub fn name(self) -> &'static str {
        ACTIONS
            .iter()
            .find(|(code, _)| *code == self.0)
            .map_or("unknown", |(_, name)| name)
    }
}

/// One row of the subject table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventType {
    /// Full subject, or `None` for the catch-all row.
    pub subject: &'static str,
    /// Short, low-cardinality name used in logs and metrics.
    pub name: &'static str,
    pub operation: Operation,
    /// The action this subject is for; the event's `action` must match it.
    pub action: Option<u8>,
    /// The resource types this subject accepts; empty means "whatever the event says".
    pub resource_types: &'static [ResourceType],
}

use ResourceType::{Comment, Post, User};

/// The subject table of SPEC.md, in one place.
pub const SUBJECTS: &[EventType] = &[
    row(
        "notifications.post.like",
        "post_like",
        Operation::Create,
        1,
        &[Post],
    ),
    row(
        "notifications.post.unlike",
        "post_unlike",
        Operation::Remove,
        1,
        &[Post],
    ),
    row(
        "notifications.comment.like",
        "comment_like",
        Operation::Create,
        2,
        &[Comment],
    ),
    row(
        "notifications.comment.unlike",
        "comment_unlike",
        Operation::Remove,
        2,
        &[Comment],
    ),
    row(
        "notifications.reply.post",
        "reply_post",
        Operation::Create,
        3,
        &[Post],
    ),
    row(
        "notifications.reply.comment",
        "reply_comment",
        Operation::Create,
        4,
        &[Comment],
    ),
    row(
        "notifications.mention",
        "mention",
        Operation::Create,
        5,
        &[Post, Comment],
    ),
    row(
        "notifications.user.follow",
        "user_follow",
        Operation::Create,
        6,
        &[User],
    ),
    row(
        "notifications.user.unfollow",
        "user_unfollow",
        Operation::Remove,
        6,
        &[User],
    ),
];

const fn row(
    subject: &'static str,
    name: &'static str,
    operation: Operation,
    action: u8,
    resource_types: &'static [ResourceType],
) -> EventType {
    EventType {
        subject,
        name,
        operation,
        action: Some(action),
        resource_types,
    }
}

/// Every subject the worker consumes starts with this.
pub const SUBJECT_PREFIX: &str = "notifications.";

/// The subject filter for the stream and the consumer.
pub const SUBJECT_FILTER: &str = "notifications.>";

impl EventType {
    /// Looks a subject up in the table. A subject under `notifications.` that is not in the
    /// table still works: it creates, or removes when its last token starts with `un`, using
    /// the event's own `action` and `resource_type`.
    pub fn for_subject(subject: &str) -> Result<EventType, Rejection> {
        if let Some(known) = SUBJECTS.iter().find(|row| row.subject == subject) {
            return Ok(*known);
        }
        let rest = subject.strip_prefix(SUBJECT_PREFIX).unwrap_or("");
        let well_formed = !rest.is_empty()
            && rest.split('.').all(|token| {
                !token.is_empty()
                    && token
                        .bytes()
                        .all(|b| b.is_ascii_graphic() && b != b'*' && b != b'>')
            });
        if !well_formed {
            return Err(Rejection::invalid(
                "subject",
                format!("{subject:?} is not a subject under {SUBJECT_PREFIX}"),
            ));
        }
        let last = rest.rsplit('.').next().unwrap_or(rest);
        let operation = if last.starts_with("un") {
            Operation::Remove
        } else {
            Operation::Create
        };
        Ok(EventType {
            subject: "",
            name: "other",
            operation,
            action: None,
            resource_types: &[],
        })
    }
}

/// The low-cardinality name of a subject for logs and metrics: the table row's name, or
/// `other` (also for subjects that are not valid at all).
pub fn event_type_label(subject: &str) -> &'static str {
    SUBJECTS
        .iter()
        .find(|row| row.subject == subject)
        .map_or("other", |row| row.name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_table_row_names_a_known_action() {
        for row in SUBJECTS {
            let code = row.action.expect("table rows name their action");
            assert!(Action::from_code(code.into()).is_some(), "{}", row.subject);
        }
    }

    #[test]
    fn known_subjects_come_from_the_table() {
        let like = EventType::for_subject("notifications.post.like").unwrap();
        assert_eq!(like.operation, Operation::Create);
        assert_eq!(like.action, Some(1));
        let unfollow = EventType::for_subject("notifications.user.unfollow").unwrap();
        assert_eq!(unfollow.operation, Operation::Remove);
        assert_eq!(unfollow.name, "user_unfollow");
    }

    #[test]
    fn other_subjects_remove_when_last_token_starts_with_un() {
        let share = EventType::for_subject("notifications.post.share").unwrap();
        assert_eq!((share.operation, share.name), (Operation::Create, "other"));
        let unshare = EventType::for_subject("notifications.post.unshare").unwrap();
        assert_eq!(unshare.operation, Operation::Remove);
    }

    #[test]
    fn subjects_outside_the_prefix_are_rejected() {
        for subject in [
            "orders.created",
            "notifications.",
            "notifications..x",
            "notifications.*",
        ] {
            assert!(EventType::for_subject(subject).is_err(), "{subject}");
        }
    }

    #[test]
    fn unknown_action_codes_are_refused() {
        assert!(Action::from_code(0).is_none());
        assert!(Action::from_code(7).is_none());
        assert_eq!(Action::from_code(6).unwrap().name(), "follow");
    }
}
