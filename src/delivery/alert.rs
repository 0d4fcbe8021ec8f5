//! What a phone shows for one notification or a digest, the same on FCM and APNs: a title,
//! a body, and the keys the app routes on (`type`, `resourceId`, `notificationId`).

use super::job::Notice;
use super::messenger::Content;
use super::wording;

/// Both services refuse a payload over 4 KB; the body is the only part that can grow (an
/// excerpt, a digest's lines), so it is cut well under that.
pub const MAX_BODY_BYTES: usize = 1024;

/// `type` of a digest.
pub const DIGEST_TYPE: &str = "digest";

/// `type` of a notification whose action has no event type (not expected: events are
/// validated before they are stored).
pub const FALLBACK_TYPE: &str = "notification";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alert {
    pub title: String,
    pub body: String,
    /// The event type (`reply.post`, ...) or [`DIGEST_TYPE`].
    pub kind: String,
    /// For one notification: what it is about, and its id. `None` for a digest.
    pub about: Option<About>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct About {
    pub resource_id: String,
    pub notification_id: String,
}

impl Alert {
    pub fn of(content: Content<'_>) -> Alert {
        match content {
            Content::One(notice) => one(notice),
            Content::Digest(notices) => Alert {
                title: wording::digest_headline(notices.len()),
                body: cut(&notices
                    .iter()
                    .map(wording::headline)
                    .collect::<Vec<_>>()
                    .join("\n")),
                kind: DIGEST_TYPE.to_owned(),
                about: None,
            },
        }
    }
}

fn one(notice: &Notice) -> Alert {
    Alert {
        title: wording::headline(notice),
        body: cut(notice.item.excerpt.as_deref().unwrap_or_default()),
        kind: wording::event_type(notice)
            .map_or_else(|| FALLBACK_TYPE.to_owned(), |name| name.as_str().to_owned()),
        about: Some(About {
            resource_id: notice.item.resource_id.clone(),
            notification_id: notice.item.id.clone(),
        }),
    }
}

/// `text` within [`MAX_BODY_BYTES`], cut at a character boundary and marked with "…".
fn cut(text: &str) -> String {
    if text.len() <= MAX_BODY_BYTES {
        return text.to_owned();
    }
    let mut end = MAX_BODY_BYTES - '…'.len_utf8();
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn notice() -> Notice {
        Notice::sample("user-123")
    }

    #[test]
    fn one_notification_has_its_headline_excerpt_and_routing_keys() {
        let notice = notice();
        let alert = Alert::of(Content::One(&notice));
        assert_eq!(alert.title, "John Doe liked your post");
        assert_eq!(alert.body, "A test notification from notification-worker");
        assert_eq!(alert.kind, "post.like");
        let about = alert.about.unwrap();
        assert_eq!(about.resource_id, "post-789");
        assert_eq!(about.notification_id, notice.item.id);
    }

    #[test]
    fn a_digest_lists_the_headlines_under_a_count() {
        let mut reply = notice();
        reply.item.action = 3;
        let notices = [notice(), reply];
        let alert = Alert::of(Content::Digest(&notices));
        assert_eq!(alert.title, "2 new notifications");
        assert_eq!(
            alert.body,
            "John Doe liked your post\nJohn Doe replied to your post"
        );
        assert_eq!((alert.kind.as_str(), alert.about), (DIGEST_TYPE, None));
    }

    #[test]
    fn long_bodies_are_cut_at_a_character_boundary() {
        let mut long = notice();
        long.item.excerpt = Some("é".repeat(MAX_BODY_BYTES));
        let body = Alert::of(Content::One(&long)).body;
        assert!(
            body.len() <= MAX_BODY_BYTES && body.ends_with('…'),
            "{}",
            body.len()
        );
        long.item.excerpt = None;
        assert_eq!(Alert::of(Content::One(&long)).body, "");
    }
}
