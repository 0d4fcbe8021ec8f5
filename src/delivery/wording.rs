//! The words a person reads: "John Doe replied to your post". One table per action, shared
//! by every channel that writes to a person (email subjects, push titles, digest lines),
//! so an email and a phone never describe the same notification differently.

use super::job::Notice;
use crate::domain::{Action, FeedItem, Operation, SUBJECT_PREFIX, SUBJECTS};
use crate::recipients::EventTypeName;

/// Who did it, as the notification names them: the username, else the user id. An
/// aggregate's are its latest actor's.
pub fn actor(item: &FeedItem) -> &str {
    item.username
        .as_deref()
        .filter(|name| !name.trim().is_empty())
        .unwrap_or(&item.userid)
}

/// What they did, after their name.
pub fn deed(item: &FeedItem) -> &'static str {
    match (item.action, item.resource_type.as_str()) {
        (1, _) => "liked your post",
        (2, _) => "liked your comment",
        (3, _) => "replied to your post",
        (4, _) => "replied to your comment",
        (5, "comment") => "mentioned you in a comment",
        (5, _) => "mentioned you in a post",
        (6, _) => "started following you",
        _ => "sent you a notification",
    }
}

/// One line: "John Doe replied to your post".
pub fn headline(notice: &Notice) -> String {
    sentence(&notice.item)
}

/// "John Doe liked your post"; an aggregate of several actors (`AGGREGATE`) names the
/// latest and counts the rest: "John Doe and 4 others liked your post".
pub fn sentence(item: &FeedItem) -> String {
    match item.actor_count {
        Some(2) => format!("{} and 1 other {}", actor(item), deed(item)),
        Some(count) if count > 2 => {
            format!("{} and {} others {}", actor(item), count - 1, deed(item))
        }
        _ => format!("{} {}", actor(item), deed(item)),
    }
}

/// The subject line of a digest: "3 new notifications".
pub fn digest_headline(count: usize) -> String {
    match count {
        1 => "1 new notification".to_owned(),
        n => format!("{n} new notifications"),
    }
}

/// The event type preferences name for this notification (`post.like`, `reply.post`, ...):
/// the tail of the first subject in the event table that creates its action. A generic
/// subject (`notifications.post.share`) carries a known action code, so it is named by that
/// action's type.
pub fn event_type(notice: &Notice) -> Option<EventTypeName> {
    let action = Action::from_code(notice.item.action)?;
    let row = SUBJECTS
        .iter()
        .find(|row| row.operation == Operation::Create && row.action == Some(action.code()))?;
    EventTypeName::parse(row.subject.strip_prefix(SUBJECT_PREFIX)?).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn notice(action: i64, resource_type: &str, username: Option<&str>) -> Notice {
        let mut notice = Notice::sample("user-123");
        notice.item.action = action;
        notice.item.resource_type = resource_type.into();
        notice.item.username = username.map(str::to_owned);
        notice
    }

    #[test]
    fn headlines_name_the_actor_and_the_deed() {
        assert_eq!(
            headline(&notice(3, "post", Some("John Doe"))),
            "John Doe replied to your post"
        );
        assert_eq!(headline(&notice(1, "post", None)), "user-456 liked your post");
        assert_eq!(
            headline(&notice(5, "comment", Some(" "))),
            "user-456 mentioned you in a comment"
        );
        assert_eq!(digest_headline(1), "1 new notification");
        assert_eq!(digest_headline(4), "4 new notifications");
    }

    #[test]
    fn an_aggregate_names_its_latest_actor_and_counts_the_others() {
        let mut item = notice(1, "POST", Some("John Doe")).item;
        let said = |item: &FeedItem, count| {
            sentence(&FeedItem {
                actor_count: count,
                ..item.clone()
            })
        };
        assert_eq!(said(&item, None), "John Doe liked your post");
        assert_eq!(said(&item, Some(1)), "John Doe liked your post");
        assert_eq!(said(&item, Some(2)), "John Doe and 1 other liked your post");
        assert_eq!(said(&item, Some(5)), "John Doe and 4 others liked your post");
        item.action = 6;
        item.username = None;
        assert_eq!(
            said(&item, Some(10_000)),
            "user-456 and 9999 others started following you"
        );
    }

    #[test]
    fn every_action_has_the_event_type_of_its_subject() {
        let names: Vec<_> = (1..=6)
            .map(|action| {
                event_type(&notice(action, "post", None))
                    .unwrap()
                    .as_str()
                    .to_owned()
            })
            .collect();
        assert_eq!(
            names,
            [
                "post.like",
                "comment.like",
                "reply.post",
                "reply.comment",
                "mention",
                "user.follow"
            ]
        );
        assert!(event_type(&notice(9, "post", None)).is_none());
    }
}
