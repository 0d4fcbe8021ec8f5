//! Channel `webpush`'s settings: on when both `WEBPUSH_VAPID_PRIVATE_KEY_FILE` and
//! `WEBPUSH_SUBJECT` are set. The key file is read and checked at start, so a wrong key
//! stops the worker with one line instead of failing every push; the key is never printed.

use super::{ConfigError, bad};
use crate::delivery::webpush::{VapidKey, VapidSubject, WebPushSettings};
use clap::Args;
use std::time::Duration;

const KEY_FILE: &str = "WEBPUSH_VAPID_PRIVATE_KEY_FILE";
const SUBJECT: &str = "WEBPUSH_SUBJECT";
const KEY_FILE_EXAMPLE: &str = "/etc/notification-worker/vapid.pem";
/// Said when the file holds no usable key.
const MAKE_ONE: &str = "make one with: openssl ecparam -genkey -name prime256v1 -noout -out vapid.pem";
const SUBJECT_EXAMPLE: &str = "mailto:ops@example.com";

/// A key file is a few hundred bytes; anything much larger is the wrong file.
const MAX_KEY_FILE_BYTES: u64 = 64 * 1024;

#[derive(Clone, Default, Args)]
#[command(next_help_heading = super::heading::DELIVERY)]
pub struct RawWebPush {
    /// VAPID private key, P-256, PEM (PKCS#8 or SEC1 "EC PRIVATE KEY") or base64url (with
    /// WEBPUSH_SUBJECT: turns channel `webpush` on).
    #[arg(long, env = KEY_FILE, global = true)]
    pub webpush_vapid_private_key_file: Option<String>,
    /// Who push services can contact about this sender (VAPID `sub`): mailto: or https:.
    #[arg(long, env = SUBJECT, global = true)]
    pub webpush_subject: Option<String>,
}

fn given(value: &Option<String>) -> Option<&str> {
    value.as_deref().map(str::trim).filter(|value| !value.is_empty())
}

pub fn parse(raw: &RawWebPush) -> Result<Option<WebPushSettings>, ConfigError> {
    let (path, subject) = match (
        given(&raw.webpush_vapid_private_key_file),
        given(&raw.webpush_subject),
    ) {
        (None, None) => return Ok(None),
        (Some(path), Some(subject)) => (path, subject),
        (Some(_), None) => {
            return Err(ConfigError {
                variable: SUBJECT,
                value: None,
                problem: format!("must be set with {KEY_FILE} (push services require a contact)"),
                example: SUBJECT_EXAMPLE,
            });
        }
        (None, Some(_)) => {
            return Err(ConfigError {
                variable: KEY_FILE,
                value: None,
                problem: format!("must be set with {SUBJECT}"),
                example: KEY_FILE_EXAMPLE,
            });
        }
    };
    let subject =
        VapidSubject::parse(subject).map_err(|problem| bad(SUBJECT, subject, problem, SUBJECT_EXAMPLE))?;
    let key = VapidKey::parse(&read_key_file(path)?)
        .map_err(|problem| bad(KEY_FILE, path, format!("{problem}; {MAKE_ONE}"), KEY_FILE_EXAMPLE))?;
    Ok(Some(WebPushSettings {
        key,
        subject,
        timeout: Duration::from_secs(10),
    }))
}

/// The file's text; errors name the path, never the content.
fn read_key_file(path: &str) -> Result<String, ConfigError> {
    let problem = |problem: String| bad(KEY_FILE, path, problem, KEY_FILE_EXAMPLE);
    let meta = std::fs::metadata(path).map_err(|error| problem(format!("cannot be read: {error}")))?;
    if !meta.is_file() {
        return Err(problem("is not a file".into()));
    }
    if meta.len() > MAX_KEY_FILE_BYTES {
        return Err(problem(format!(
            "is {} bytes, too large for a key file",
            meta.len()
        )));
    }
    let bytes = std::fs::read(path).map_err(|error| problem(format!("cannot be read: {error}")))?;
    String::from_utf8(bytes).map_err(|_| problem("is not a PEM file (not text)".into()))
}
