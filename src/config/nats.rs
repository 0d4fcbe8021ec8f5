//! The NATS part of the configuration: server URLs, names, and how to authenticate.

use super::{ConfigError, RawSettings, bad};
use std::fmt;
use std::path::PathBuf;

/// A value that must never be printed: `Debug` and `Display` show `[redacted]`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// How the worker proves who it is to NATS (at most one way).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NatsAuth {
    None,
    /// JWT + nkey seed (NGS / decentralised auth).
    CredsFile(PathBuf),
    /// A file holding an nkey seed.
    NkeyFile(PathBuf),
    UserPassword {
        user: String,
        password: Secret,
    },
    Token(Secret),
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NatsTls {
    pub ca_file: Option<PathBuf>,
    /// Client certificate and its key.
    pub client: Option<(PathBuf, PathBuf)>,
}

impl NatsTls {
    pub fn enabled(&self) -> bool {
        self.ca_file.is_some() || self.client.is_some()
    }
}

pub(super) fn parse_nats_urls(value: &str) -> Result<Vec<String>, ConfigError> {
    const EXAMPLE: &str = "nats://10.0.0.1:4222,nats://10.0.0.2:4222";
    let urls: Vec<String> = value.split(',').map(|url| url.trim().to_owned()).collect();
    for url in &urls {
        if url.is_empty() {
            return Err(bad("NATS_URL", value, "holds an empty server URL", EXAMPLE));
        }
        if !is_server_url(url) || url.parse::<async_nats::ServerAddr>().is_err() {
            return Err(bad(
                "NATS_URL",
                value,
                format!(
                    "{url:?} is not a NATS server URL (nats://HOST:PORT; tls://, ws:// and wss:// \
                     also work, and HOST:PORT alone means nats://)"
                ),
                EXAMPLE,
            ));
        }
    }
    Ok(urls)
}

/// `scheme://host[:port]` with a scheme the client speaks, or `host:port`. The client would
/// take a bare word (`not-a-url`) as a host name and retry it forever: a typo must be a
/// configuration error, not an endless connection failure.
fn is_server_url(url: &str) -> bool {
    let (with_scheme, needs_port) = if url.contains("://") {
        (url.to_owned(), false)
    } else {
        (format!("nats://{url}"), true)
    };
    match url::Url::parse(&with_scheme) {
        Ok(parsed) => {
            matches!(parsed.scheme(), "nats" | "tls" | "ws" | "wss")
                && parsed.host_str().is_some_and(|host| !host.is_empty())
                && (!needs_port || parsed.port().is_some())
        }
        Err(_) => false,
    }
}

/// A file that must exist. Only its path is ever printed, never its content.
fn parse_file(
    variable: &'static str,
    value: Option<&str>,
    example: &'static str,
) -> Result<Option<PathBuf>, ConfigError> {
    let Some(path) = value.filter(|path| !path.is_empty()) else {
        return Ok(None);
    };
    match std::fs::metadata(path) {
        Ok(meta) if meta.is_file() => Ok(Some(PathBuf::from(path))),
        Ok(_) => Err(bad(variable, path, "is not a file", example)),
        Err(error) => Err(bad(variable, path, format!("cannot be read: {error}"), example)),
    }
}

fn non_empty(value: &Option<String>) -> Option<&str> {
    value.as_deref().filter(|value| !value.is_empty())
}

fn missing(variable: &'static str, problem: &str, example: &'static str) -> ConfigError {
    ConfigError {
        variable,
        value: None,
        problem: problem.into(),
        example,
    }
}

pub(super) fn parse_nats_auth(raw: &RawSettings) -> Result<NatsAuth, ConfigError> {
    let creds = parse_file(
        "NATS_CREDS_FILE",
        raw.nats_creds_file.as_deref(),
        "/etc/nats/worker.creds",
    )?;
    let nkey = parse_file(
        "NATS_NKEY_FILE",
        raw.nats_nkey_file.as_deref(),
        "/etc/nats/worker.nk",
    )?;
    let user = non_empty(&raw.nats_user);
    let password = non_empty(&raw.nats_password);
    let token = non_empty(&raw.nats_token);
    let given: Vec<&str> = [
        (creds.is_some(), "NATS_CREDS_FILE"),
        (nkey.is_some(), "NATS_NKEY_FILE"),
        (user.is_some() || password.is_some(), "NATS_USER/NATS_PASSWORD"),
        (token.is_some(), "NATS_TOKEN"),
    ]
    .into_iter()
    .filter_map(|(set, name)| set.then_some(name))
    .collect();
    if given.len() > 1 {
        return Err(missing(
            "NATS_CREDS_FILE",
            &format!(
                "only one way to authenticate may be set, not {}",
                given.join(" and ")
            ),
            "/etc/nats/worker.creds (and no NATS_NKEY_FILE, NATS_USER or NATS_TOKEN)",
        ));
    }
    Ok(match (creds, nkey, user, password, token) {
        (Some(path), ..) => NatsAuth::CredsFile(path),
        (_, Some(path), ..) => NatsAuth::NkeyFile(path),
        (_, _, Some(user), Some(password), _) => NatsAuth::UserPassword {
            user: user.to_owned(),
            password: Secret(password.to_owned()),
        },
        (_, _, Some(_), None, _) => {
            return Err(missing(
                "NATS_PASSWORD",
                "must be set with NATS_USER",
                "(the user's password)",
            ));
        }
        (_, _, None, Some(_), _) => {
            return Err(missing(
                "NATS_USER",
                "must be set with NATS_PASSWORD",
                "notification-worker",
            ));
        }
        (_, _, None, None, Some(token)) => NatsAuth::Token(Secret(token.to_owned())),
        _ => NatsAuth::None,
    })
}

pub(super) fn parse_nats_tls(raw: &RawSettings) -> Result<NatsTls, ConfigError> {
    let ca_file = parse_file(
        "NATS_TLS_CA_FILE",
        raw.nats_tls_ca_file.as_deref(),
        "/etc/nats/ca.pem",
    )?;
    let cert = parse_file(
        "NATS_TLS_CERT_FILE",
        raw.nats_tls_cert_file.as_deref(),
        "/etc/nats/worker.pem",
    )?;
    let key = parse_file(
        "NATS_TLS_KEY_FILE",
        raw.nats_tls_key_file.as_deref(),
        "/etc/nats/worker-key.pem",
    )?;
    let client = match (cert, key) {
        (Some(cert), Some(key)) => Some((cert, key)),
        (None, None) => None,
        (Some(_), None) => {
            return Err(missing(
                "NATS_TLS_KEY_FILE",
                "must be set with NATS_TLS_CERT_FILE",
                "/etc/nats/worker-key.pem",
            ));
        }
        (None, Some(_)) => {
            return Err(missing(
                "NATS_TLS_CERT_FILE",
                "must be set with NATS_TLS_KEY_FILE",
                "/etc/nats/worker.pem",
            ));
        }
    };
    Ok(NatsTls { ca_file, client })
}

/// Stream and consumer names: NATS refuses whitespace, `.`, `*`, `>` and path separators.
pub(super) fn parse_nats_name(
    variable: &'static str,
    value: &str,
    example: &'static str,
) -> Result<String, ConfigError> {
    let valid = !value.is_empty()
        && value.len() <= 255
        && !value
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '.' | '*' | '>' | '/' | '\\'));
    if valid {
        Ok(value.to_owned())
    } else {
        Err(bad(
            variable,
            value,
            "must be a non-empty name without spaces, '.', '*', '>', '/' or '\\'",
            example,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_urls_need_a_known_scheme_or_a_port() {
        for good in [
            "nats://127.0.0.1:4222",
            "nats://nats",
            "tls://nats.example.com:4222",
            "wss://nats.example.com",
            "nats://user:secret@10.0.0.1:4222",
            "127.0.0.1:4222",
            "nats-0.nats:4222",
        ] {
            assert!(parse_nats_urls(good).is_ok(), "{good}");
        }
        for bad in [
            "not-a-url",
            "localhost",
            "http://127.0.0.1:4222",
            "nats://",
            "nats://:4222",
            "nats:4222x",
        ] {
            let error = parse_nats_urls(bad).unwrap_err();
            assert_eq!(error.variable, "NATS_URL", "{bad}");
        }
    }
}
