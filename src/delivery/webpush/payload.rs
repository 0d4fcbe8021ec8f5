//! What a browser's service worker receives, before encryption: one JSON object,
//! `{"title", "body", "data"}`, small enough for every push service.
//!
//! - One notification: `title` is its headline ("John Doe replied to your post"), `body`
//!   its excerpt (or ""), `data` = `{"type": event type, "resourceId", "notificationId"}`.
//! - A digest: `title` "3 new notifications", `body` one headline a line, newest first,
//!   `data` = `{"type": "digest", "count", "notificationIds"}` (the ids of the lines shown).
//!
//! Too long a text is cut, never the JSON: an excerpt ends in "…", a digest lists the
//! newest lines that fit and ends with "…and N more".

use crate::delivery::job::Notice;
use crate::delivery::wording;
use serde_json::{Value, json};

/// Largest plaintext sent. RFC 8030 push services take 4096 bytes of encrypted record;
/// the `web-push` crate refuses more than 3052 bytes of plaintext, which leaves room for
/// the aes128gcm header, padding and tag.
pub const MAX_PAYLOAD_BYTES: usize = 3052;

/// The payload of one notification, or `None` when even with no title and no body it would
/// not fit (ids are at most 128 bytes, so it always does).
pub fn one(notice: &Notice) -> Option<Vec<u8>> {
    let data = json!({
        "type": wording::event_type(notice).map(|name| name.as_str().to_owned()),
        "resourceId": notice.item.resource_id,
        "notificationId": notice.item.id,
    });
    let title = wording::headline(notice);
    let body = notice.item.excerpt.as_deref().unwrap_or("");
    let fits =
        |title: &str, body: &str| encode(title, body, &data).filter(|bytes| bytes.len() <= MAX_PAYLOAD_BYTES);
    if let Some(bytes) = fits(&title, body) {
        return Some(bytes);
    }
    // The body gives way first, then the title.
    if let Some(cut) = longest_prefix(body, |cut| fits(&title, cut).is_some()) {
        return fits(&title, &cut);
    }
    let title = longest_prefix(&title, |cut| fits(cut, "").is_some())?;
    fits(&title, "")
}

/// The payload of a digest (`notices` oldest first, as the digest holds them).
pub fn digest(notices: &[Notice]) -> Option<Vec<u8>> {
    let title = wording::digest_headline(notices.len());
    let newest_first: Vec<&Notice> = notices.iter().rev().collect();
    let lines: Vec<String> = newest_first
        .iter()
        .map(|notice| wording::headline(notice))
        .collect();
    let build = |shown: usize| {
        let mut body = lines[..shown].join("\n");
        let left = lines.len() - shown;
        if left > 0 {
            if !body.is_empty() {
                body.push('\n');
            }
            body.push_str(&format!("…and {left} more"));
        }
        let ids: Vec<&str> = newest_first[..shown]
            .iter()
            .map(|notice| notice.item.id.as_str())
            .collect();
        let data = json!({"type": "digest", "count": notices.len(), "notificationIds": ids});
        encode(&title, &body, &data).filter(|bytes| bytes.len() <= MAX_PAYLOAD_BYTES)
    };
    // The most lines that fit: fewer lines never make the payload longer.
    let (mut low, mut high) = (0, lines.len());
    if build(high).is_some() {
        return build(high);
    }
    while low + 1 < high {
        let middle = (low + high) / 2;
        if build(middle).is_some() {
            low = middle;
        } else {
            high = middle;
        }
    }
    build(low)
}

fn encode(title: &str, body: &str, data: &Value) -> Option<Vec<u8>> {
    serde_json::to_vec(&json!({"title": title, "body": body, "data": data})).ok()
}

/// The longest start of `text` (whole characters, then "…") that `fits`; `None` when not
/// even "…" does. Binary search: escaping makes the JSON grow unevenly with the text.
fn longest_prefix(text: &str, fits: impl Fn(&str) -> bool) -> Option<String> {
    let ends: Vec<usize> = text.char_indices().map(|(at, _)| at).collect();
    let cut = |count: usize| format!("{}…", &text[..ends.get(count).copied().unwrap_or(text.len())]);
    if !fits(&cut(0)) {
        return fits("").then(String::new);
    }
    let (mut low, mut high) = (0, ends.len());
    while low + 1 < high {
        let middle = (low + high) / 2;
        if fits(&cut(middle)) {
            low = middle;
        } else {
            high = middle;
        }
    }
    Some(cut(low))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn notice(id: &str, action: i64, excerpt: Option<String>) -> Notice {
        let mut notice = Notice::sample("user-123");
        notice.item.id = id.into();
        notice.item.action = action;
        notice.item.excerpt = excerpt;
        notice
    }

    fn read(bytes: &[u8]) -> Value {
        serde_json::from_slice(bytes).unwrap()
    }

    #[test]
    fn one_notification_carries_its_headline_excerpt_and_ids() {
        let payload = read(&one(&notice("n-1", 3, Some("Nice post!".into()))).unwrap());
        assert_eq!(
            payload,
            json!({
                "title": "John Doe replied to your post",
                "body": "Nice post!",
                "data": {"type": "reply.post", "resourceId": "post-789", "notificationId": "n-1"}
            })
        );
        let payload = read(&one(&notice("n-2", 1, None)).unwrap());
        assert_eq!(payload["body"], "");
        assert_eq!(payload["data"]["type"], "post.like");
    }

    #[test]
    fn a_long_excerpt_is_cut_to_fit() {
        // Quotes double when escaped: the cut must count the JSON, not the text.
        for filler in ["é", "\"", "a", "\u{1}"] {
            let excerpt = filler.repeat(5000);
            let bytes = one(&notice("n-1", 3, Some(excerpt.clone()))).unwrap();
            assert!(bytes.len() <= MAX_PAYLOAD_BYTES, "{}", bytes.len());
            assert!(bytes.len() > MAX_PAYLOAD_BYTES - 8, "{filler:?}: {}", bytes.len());
            let body = read(&bytes)["body"].as_str().unwrap().to_owned();
            assert!(body.ends_with('…'));
            assert!(excerpt.starts_with(body.trim_end_matches('…')));
        }
    }

    #[test]
    fn a_digest_lists_headlines_newest_first() {
        let notices = [
            notice("n-1", 1, None),
            notice("n-2", 6, None),
            notice("n-3", 3, None),
        ];
        let payload = read(&digest(&notices).unwrap());
        assert_eq!(
            payload,
            json!({
                "title": "3 new notifications",
                "body": "John Doe replied to your post\nJohn Doe started following you\nJohn Doe liked your post",
                "data": {"type": "digest", "count": 3, "notificationIds": ["n-3", "n-2", "n-1"]}
            })
        );
    }

    #[test]
    fn a_long_digest_shows_what_fits_and_counts_the_rest() {
        let notices: Vec<Notice> = (0..300)
            .map(|n| notice(&format!("notification-{n:04}"), 1, None))
            .collect();
        let bytes = digest(&notices).unwrap();
        assert!(bytes.len() <= MAX_PAYLOAD_BYTES);
        let payload = read(&bytes);
        assert_eq!(payload["title"], "300 new notifications");
        assert_eq!(payload["data"]["count"], 300);
        let ids = payload["data"]["notificationIds"].as_array().unwrap();
        assert!(ids.len() > 10 && ids.len() < 300, "{}", ids.len());
        assert_eq!(ids[0], "notification-0299");
        let body = payload["body"].as_str().unwrap();
        assert_eq!(body.lines().count(), ids.len() + 1);
        assert!(
            body.ends_with(&format!("…and {} more", 300 - ids.len())),
            "{body}"
        );
    }
}
