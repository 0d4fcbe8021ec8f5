//! The email itself: headers and parts. `Message-ID` is derived from what the email is
//! about, so a send retried after a crash carries the same id and mail clients (and
//! deduplicating relays) can tell it is the same email.

use crate::delivery::job::Notice;
use lettre::Message;
use lettre::message::header::{HeaderName, HeaderValue};
use lettre::message::{Mailbox, MultiPart, SinglePart};
use std::fmt::Write;

const PLACEHOLDER: &str = "{owner}";

/// `EMAIL_UNSUBSCRIBE_URL`: a link with `{owner}` in it, checked at start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnsubscribeUrl(String);

impl UnsubscribeUrl {
    /// `allow_http`: development only; mail clients POST to it (RFC 8058), which needs https.
    pub fn parse(template: &str, allow_http: bool) -> Result<UnsubscribeUrl, String> {
        let template = template.trim();
        if !template.contains(PLACEHOLDER) {
            return Err("must hold {owner}".into());
        }
        let sample = template.replace(PLACEHOLDER, "user-123");
        match url::Url::parse(&sample) {
            Ok(url) if url.scheme() == "https" && url.host().is_some() => {}
            Ok(url) if url.scheme() == "http" && url.host().is_some() && allow_http => {}
            Ok(url) if url.scheme() == "http" => return Err("must be https:// in production".into()),
            _ => return Err("must be an https:// URL".into()),
        }
        if template
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '<' | '>'))
        {
            return Err("must not hold spaces, < or >".into());
        }
        Ok(UnsubscribeUrl(template.to_owned()))
    }

    /// The link for `owner`, the owner percent-encoded (all but `A-Z a-z 0-9 - . _ ~`).
    pub fn for_owner(&self, owner: &str) -> String {
        let mut encoded = String::with_capacity(owner.len());
        for byte in owner.bytes() {
            if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
                encoded.push(char::from(byte));
            } else {
                let _ = write!(encoded, "%{byte:02X}");
            }
        }
        self.0.replace(PLACEHOLDER, &encoded)
    }
}

/// `<{id}@{domain}>` for one notification: its id, with anything a message id cannot hold
/// written `=XX` (a UUID stays as it is).
pub fn message_id_for_one(notice: &Notice, domain: &str) -> String {
    let mut local = String::with_capacity(notice.item.id.len());
    for byte in notice.item.id.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_') {
            local.push(char::from(byte));
        } else {
            let _ = write!(local, "={byte:02X}");
        }
    }
    format!("<{local}@{domain}>")
}

/// `<digest-{hash}@{domain}>`: a hash of the owner and the ids, in order, so the same
/// digest sent again has the same id and another digest another one.
pub fn message_id_for_digest(owner: &str, notices: &[Notice], domain: &str) -> String {
    let mut context = ring::digest::Context::new(&ring::digest::SHA256);
    context.update(owner.as_bytes());
    for notice in notices {
        context.update(b"\n");
        context.update(notice.item.id.as_bytes());
    }
    let hash = context.finish();
    format!("<digest-{}@{domain}>", hex::encode(&hash.as_ref()[..16]))
}

/// What goes into one email.
pub struct Letter<'a> {
    pub from: &'a Mailbox,
    pub to: Mailbox,
    pub subject: &'a str,
    pub message_id: String,
    pub unsubscribe_url: Option<&'a str>,
    pub text: String,
    pub html: String,
}

impl Letter<'_> {
    /// A `multipart/alternative` email (text first, so clients that can show HTML prefer it).
    pub fn compose(self) -> Result<Message, lettre::error::Error> {
        let mut builder = Message::builder()
            .from(self.from.clone())
            .to(self.to)
            .subject(self.subject)
            .message_id(Some(self.message_id))
            .date_now();
        if let Some(url) = self.unsubscribe_url {
            // RFC 2369 and RFC 8058 (one-click: clients POST to the link, no page to visit).
            builder = builder
                .raw_header(HeaderValue::new(
                    HeaderName::new_from_ascii_str("List-Unsubscribe"),
                    format!("<{url}>"),
                ))
                .raw_header(HeaderValue::new(
                    HeaderName::new_from_ascii_str("List-Unsubscribe-Post"),
                    "List-Unsubscribe=One-Click".to_owned(),
                ));
        }
        builder.multipart(
            MultiPart::alternative()
                .singlepart(SinglePart::plain(self.text))
                .singlepart(SinglePart::html(self.html)),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn notice(id: &str) -> Notice {
        let mut notice = Notice::sample("user-123");
        notice.item.id = id.into();
        notice.item.username = None;
        notice.item.action = 3;
        notice.item.excerpt = None;
        notice
    }

    #[test]
    fn message_ids_come_from_what_the_email_is_about() {
        let id = "3f2b8c1e-7d4a-4b9e-9c1a-2e5f6a7b8c9d";
        assert_eq!(
            message_id_for_one(&notice(id), "example.com"),
            format!("<{id}@example.com>")
        );
        assert_eq!(
            message_id_for_one(&notice("a b@c>"), "example.com"),
            "<a=20b=40c=3E@example.com>"
        );
        let digest = [notice("1"), notice("2")];
        let first = message_id_for_digest("user-123", &digest, "example.com");
        assert_eq!(first, message_id_for_digest("user-123", &digest, "example.com"));
        assert_ne!(
            first,
            message_id_for_digest("user-123", &digest[..1], "example.com")
        );
        assert_ne!(first, message_id_for_digest("user-999", &digest, "example.com"));
        assert!(
            first.starts_with("<digest-") && first.ends_with("@example.com>"),
            "{first}"
        );
    }

    #[test]
    fn unsubscribe_links_encode_the_owner() {
        let url = UnsubscribeUrl::parse("https://example.com/unsubscribe?owner={owner}", false).unwrap();
        assert_eq!(
            url.for_owner("user-123"),
            "https://example.com/unsubscribe?owner=user-123"
        );
        assert_eq!(
            url.for_owner("a&b=c d/é"),
            "https://example.com/unsubscribe?owner=a%26b%3Dc%20d%2F%C3%A9"
        );
        for (template, allow_http) in [
            ("https://example.com/unsubscribe", false),
            ("http://example.com/u/{owner}", false),
            ("mailto:unsubscribe@example.com?subject={owner}", false),
            ("https://example.com/u/{owner} x", false),
            ("/u/{owner}", true),
        ] {
            assert!(UnsubscribeUrl::parse(template, allow_http).is_err(), "{template}");
        }
        assert!(UnsubscribeUrl::parse("http://localhost:3000/u/{owner}", true).is_ok());
    }
}
