//! Where a person is reached: an email address, a locale, push targets. Each type checks
//! its value once, when it is built, so the channels can trust what the directory holds.

use super::vocabulary::{Channel, preview};
use base64::Engine;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use std::fmt;

/// An email address: not a full RFC 5322 parser (no quoted local parts, no comments, no
/// IP literals), but what SMTP servers take and no obvious garbage: one `@`, a local part
/// of 1..=64 bytes without whitespace or control characters, a domain of dot-separated
/// labels of letters, digits and inner hyphens with at least one dot; 254 bytes at most.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Email(String);

impl Email {
    pub const MAX_BYTES: usize = 254;

    pub fn parse(text: &str) -> Result<Email, String> {
        if text.len() > Email::MAX_BYTES {
            return Err(format!(
                "is {} bytes, at most {} allowed",
                text.len(),
                Email::MAX_BYTES
            ));
        }
        let Some((local, domain)) = text.split_once('@') else {
            return Err("is not an email address (no @)".into());
        };
        let local_ok = (1..=64).contains(&local.len())
            && !local.chars().any(|c| {
                c.is_whitespace() || c.is_control() || matches!(c, '@' | '<' | '>' | ',' | ';' | '"')
            });
        let labels_ok = domain.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_alphanumeric() || c == '-')
        });
        if !local_ok || !labels_ok || !domain.contains('.') {
            return Err(format!("{:?} is not an email address", preview(text)));
        }
        Ok(Email(text.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A BCP 47-like language tag (`en`, `fr-CA`, `zh-Hant-TW`): a primary language of 2 or 3
/// letters, then subtags of 1..=8 letters or digits separated by `-`; 35 bytes at most
/// (the longest tag templates will be looked up with). Kept as written.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Locale(String);

impl Locale {
    pub const MAX_BYTES: usize = 35;

    pub fn parse(text: &str) -> Result<Locale, String> {
        let problem = || format!("{:?} is not a language tag (e.g. en, fr-CA)", preview(text));
        if text.len() > Locale::MAX_BYTES {
            return Err(format!(
                "is {} bytes, at most {} allowed",
                text.len(),
                Locale::MAX_BYTES
            ));
        }
        let mut subtags = text.split('-');
        let primary = subtags.next().unwrap_or("");
        if !(2..=3).contains(&primary.len()) || !primary.bytes().all(|b| b.is_ascii_alphabetic()) {
            return Err(problem());
        }
        if !subtags.all(|tag| (1..=8).contains(&tag.len()) && tag.bytes().all(|b| b.is_ascii_alphanumeric()))
        {
            return Err(problem());
        }
        Ok(Locale(text.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The three push services.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PushKind {
    Fcm,
    Apns,
    Webpush,
}

impl PushKind {
    pub fn parse(text: &str) -> Result<PushKind, String> {
        match text {
            "fcm" => Ok(PushKind::Fcm),
            "apns" => Ok(PushKind::Apns),
            "webpush" => Ok(PushKind::Webpush),
            other => Err(format!("{:?} is not fcm, apns or webpush", preview(other))),
        }
    }

    pub fn as_str(self) -> &'static str {
        self.channel().as_str()
    }

    /// The delivery channel that sends to this kind of target.
    pub fn channel(self) -> Channel {
        match self {
            PushKind::Fcm => Channel::Fcm,
            PushKind::Apns => Channel::Apns,
            PushKind::Webpush => Channel::Webpush,
        }
    }
}

/// Which push target: its kind and its address (the device token, or the endpoint of a
/// Web Push subscription, which identifies it). A removal names only this.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TargetKey {
    kind: PushKind,
    address: String,
}

impl TargetKey {
    /// Largest token accepted: FCM tokens are about 160 bytes today, APNs tokens 64 hex
    /// digits; both services say the length may change, so there is room.
    pub const MAX_TOKEN_BYTES: usize = 4096;
    /// Largest Web Push endpoint accepted.
    pub const MAX_ENDPOINT_BYTES: usize = 2048;

    /// A device token of an FCM or APNs target. APNs tokens are hex, kept in lower case so
    /// that an add and a remove written in different cases name the same device.
    pub fn token(kind: PushKind, token: &str) -> Result<TargetKey, String> {
        if token.is_empty() || token.len() > TargetKey::MAX_TOKEN_BYTES {
            return Err(format!(
                "must be 1 to {} bytes, is {}",
                TargetKey::MAX_TOKEN_BYTES,
                token.len()
            ));
        }
        let address = match kind {
            PushKind::Fcm
                if token
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"_-:.".contains(&b)) =>
            {
                token.to_owned()
            }
            PushKind::Fcm => return Err("an FCM token holds only letters, digits and _ - : .".into()),
            PushKind::Apns
                if token.len().is_multiple_of(2) && token.bytes().all(|b| b.is_ascii_hexdigit()) =>
            {
                token.to_ascii_lowercase()
            }
            PushKind::Apns => return Err("an APNs device token is hex digits, an even number of them".into()),
            PushKind::Webpush => return Err("a webpush target is a subscription, not a token".into()),
        };
        Ok(TargetKey { kind, address })
    }

    /// A Web Push endpoint: an absolute `https://` URL (`http://` too when allowed, for a
    /// local push service in development), written as it parses.
    pub fn endpoint(endpoint: &str, allow_http: bool) -> Result<TargetKey, String> {
        if endpoint.len() > TargetKey::MAX_ENDPOINT_BYTES {
            return Err(format!(
                "is {} bytes, at most {} allowed",
                endpoint.len(),
                TargetKey::MAX_ENDPOINT_BYTES
            ));
        }
        let expected = if allow_http {
            "must be an absolute https:// or http:// URL"
        } else {
            "must be an absolute https:// URL"
        };
        if endpoint.chars().any(|c| c.is_whitespace() || c.is_control()) || endpoint.contains('\\') {
            return Err(expected.into());
        }
        let url = url::Url::parse(endpoint).map_err(|_| expected.to_owned())?;
        let scheme_ok = url.scheme() == "https" || (allow_http && url.scheme() == "http");
        // As for pictures: the url crate reads `https:host` and `https:///host` too.
        let written_as_parsed = endpoint.split_once("://").is_some_and(|(scheme, rest)| {
            scheme.eq_ignore_ascii_case(url.scheme()) && !rest.starts_with('/')
        });
        if !scheme_ok || !written_as_parsed || url.host_str().is_none_or(str::is_empty) {
            return Err(expected.into());
        }
        Ok(TargetKey {
            kind: PushKind::Webpush,
            address: endpoint.to_owned(),
        })
    }

    pub fn kind(&self) -> PushKind {
        self.kind
    }

    /// The token, or the subscription's endpoint.
    pub fn address(&self) -> &str {
        &self.address
    }
}

/// The keys of a Web Push subscription (RFC 8291): the browser's P-256 public key and the
/// 16-byte authentication secret, base64url as `PushSubscription.toJSON()` gives them.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct WebPushKeys {
    p256dh: String,
    auth: String,
}

impl WebPushKeys {
    /// `Err((field, problem))` names the key that is wrong.
    pub fn parse(p256dh: &str, auth: &str) -> Result<WebPushKeys, (&'static str, String)> {
        let point = decode_base64url(p256dh).ok_or(("p256dh", "is not base64url".to_owned()))?;
        if point.len() != 65 || point[0] != 4 {
            return Err((
                "p256dh",
                "is not an uncompressed P-256 public key (65 bytes)".into(),
            ));
        }
        let secret = decode_base64url(auth).ok_or(("auth", "is not base64url".to_owned()))?;
        if secret.len() != 16 {
            return Err(("auth", format!("is {} bytes, must be 16", secret.len())));
        }
        Ok(WebPushKeys {
            p256dh: p256dh.to_owned(),
            auth: auth.to_owned(),
        })
    }

    pub fn p256dh(&self) -> &str {
        &self.p256dh
    }

    pub fn auth(&self) -> &str {
        &self.auth
    }
}

fn decode_base64url(text: &str) -> Option<Vec<u8>> {
    const ENGINE: GeneralPurpose = GeneralPurpose::new(
        &base64::alphabet::URL_SAFE,
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
    );
    // Bounded before decoding: a key is never longer than this.
    (text.len() <= 128).then(|| ENGINE.decode(text).ok()).flatten()
}

/// A device or browser to push to.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PushTarget {
    key: TargetKey,
    /// Present exactly for `webpush` targets.
    keys: Option<WebPushKeys>,
}

impl PushTarget {
    /// An FCM or APNs device (the key was made by [`TargetKey::token`]).
    pub fn device(key: TargetKey) -> Result<PushTarget, String> {
        if key.kind == PushKind::Webpush {
            return Err("a webpush target needs its subscription keys".into());
        }
        Ok(PushTarget { key, keys: None })
    }

    /// A Web Push subscription (the key was made by [`TargetKey::endpoint`]).
    pub fn subscription(key: TargetKey, keys: WebPushKeys) -> Result<PushTarget, String> {
        if key.kind != PushKind::Webpush {
            return Err("only webpush targets have subscription keys".into());
        }
        Ok(PushTarget {
            key,
            keys: Some(keys),
        })
    }

    pub fn key(&self) -> &TargetKey {
        &self.key
    }

    pub fn kind(&self) -> PushKind {
        self.key.kind
    }

    /// The device token, or the Web Push endpoint.
    pub fn token(&self) -> &str {
        &self.key.address
    }

    pub fn webpush_keys(&self) -> Option<&WebPushKeys> {
        self.keys.as_ref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails() {
        for good in [
            "a@example.com",
            "first.last+tag@mail.example.co.uk",
            "ü@bücher.example",
        ] {
            assert!(Email::parse(good).is_ok(), "{good}");
        }
        let long_local = format!("{}@example.com", "x".repeat(65));
        for bad in [
            "",
            "plain",
            "@example.com",
            "a@",
            "a@localhost",
            "a@b@example.com",
            "a b@example.com",
            "a@exa mple.com",
            "a@-example.com",
            "a@example..com",
            "Name <a@example.com>",
            "a@example.com\n",
            &long_local,
        ] {
            assert!(Email::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn locales() {
        for good in ["en", "fr-CA", "zh-Hant-TW", "pt-BR", "ast"] {
            assert!(Locale::parse(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "e",
            "english",
            "en_US",
            "en-",
            "fr--CA",
            "en-toolongtag",
            "1a",
            &format!("en-{}", "a-".repeat(20)),
        ] {
            assert!(Locale::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn tokens_by_kind() {
        assert!(TargetKey::token(PushKind::Fcm, "dQw4w9WgXcQ:APA91bH-x_y").is_ok());
        assert!(TargetKey::token(PushKind::Fcm, "has space").is_err());
        assert!(TargetKey::token(PushKind::Fcm, "").is_err());
        let apns = TargetKey::token(PushKind::Apns, &"AB".repeat(32)).unwrap();
        assert_eq!(apns.address(), "ab".repeat(32));
        assert!(TargetKey::token(PushKind::Apns, "abc").is_err());
        assert!(TargetKey::token(PushKind::Apns, "zz").is_err());
        assert!(TargetKey::token(PushKind::Webpush, "abc").is_err());
    }

    #[test]
    fn endpoints_are_https_urls() {
        assert!(TargetKey::endpoint("https://fcm.googleapis.com/fcm/send/abc", false).is_ok());
        assert!(TargetKey::endpoint("http://127.0.0.1:8990/push/1", false).is_err());
        assert!(TargetKey::endpoint("http://127.0.0.1:8990/push/1", true).is_ok());
        for bad in [
            "",
            "push.example.com/x",
            "https:push.example.com",
            "https:///x",
            "javascript://x",
            "https://a\\b",
        ] {
            assert!(TargetKey::endpoint(bad, true).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn webpush_keys_must_decode_to_their_sizes() {
        let p256dh =
            "BNcRdreALRFXTkOOUHK1EtK2wtaz5Ry4YfYCA_0QTpQtUbVlUls0VJXg7A8u-Ts1XbjhazAkj7I99e8QcYP7DkM";
        let auth = "tBHItJI5svbpez7KI4CCXg";
        assert!(WebPushKeys::parse(p256dh, auth).is_ok());
        assert!(WebPushKeys::parse(p256dh, &format!("{auth}==")).is_ok());
        assert_eq!(WebPushKeys::parse("abc!", auth).unwrap_err().0, "p256dh");
        assert_eq!(WebPushKeys::parse(auth, auth).unwrap_err().0, "p256dh");
        assert_eq!(WebPushKeys::parse(p256dh, "AAAA").unwrap_err().0, "auth");
    }
}
