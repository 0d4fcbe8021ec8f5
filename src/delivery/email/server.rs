//! `SMTP_URL`: the server emails are handed to, in lettre's URL forms, checked once at
//! start. The URL holds the password: it is kept as a [`Secret`], and what logs and errors
//! show is [`SmtpServer::redacted`].

use crate::config::Secret;
use lettre::transport::smtp::PoolConfig;
use lettre::{AsyncSmtpTransport, Tokio1Executor};
use std::time::Duration;

/// How the connection is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpSecurity {
    /// `smtp://host:port`: no TLS (local servers).
    Plain,
    /// `smtp://...?tls=required`: STARTTLS, refusing a server that does not offer it.
    StartTls,
    /// `smtps://`: TLS from the first byte.
    Tls,
}

/// What `SMTP_URL` accepts, for error messages.
pub const SMTP_URL_FORMS: &str =
    "smtp://host:port, smtp://user:pass@host:587?tls=required (STARTTLS) or smtps://user:pass@host:465";

#[derive(Clone)]
pub struct SmtpServer {
    url: Secret,
    redacted: String,
    security: SmtpSecurity,
    loopback: bool,
}

impl std::fmt::Debug for SmtpServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpServer")
            .field("url", &self.redacted)
            .field("security", &self.security)
            .finish()
    }
}

/// Why `SMTP_URL` is refused, and the URL as it may be shown (`None` when it cannot be
/// read well enough to hide its password).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmtpUrlError {
    pub shown: Option<String>,
    pub problem: String,
}

impl SmtpServer {
    pub fn parse(text: &str) -> Result<SmtpServer, SmtpUrlError> {
        let url = url::Url::parse(text.trim()).map_err(|_| SmtpUrlError {
            shown: None,
            problem: format!("is not a URL (use {SMTP_URL_FORMS})"),
        })?;
        // Until the URL is known to be an SMTP URL with a host, where its password sits is
        // not known either (`user:secret` reads as scheme `user`): show none of it.
        let unshown = |problem: String| SmtpUrlError { shown: None, problem };
        if !matches!(url.scheme(), "smtp" | "smtps") {
            return Err(unshown(format!(
                "is not an smtp:// or smtps:// URL (use {SMTP_URL_FORMS})"
            )));
        }
        let host = match url.host_str() {
            Some(host) if !host.is_empty() => host,
            _ => return Err(unshown(format!("has no host (use {SMTP_URL_FORMS})"))),
        };
        let redacted = redact(&url);
        let refuse = |problem: String| SmtpUrlError {
            shown: Some(redacted.clone()),
            problem,
        };
        // smtp: is not a scheme the URL standard knows, so its host stays text (an IP
        // address is not parsed as one): read it here.
        let loopback = host.eq_ignore_ascii_case("localhost")
            || host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback());
        let mut tls = None;
        for (key, value) in url.query_pairs() {
            match key.as_ref() {
                "tls" if tls.is_none() => tls = Some(value.into_owned()),
                _ => {
                    return Err(refuse(format!(
                        "has a parameter lettre does not take: {key} (only tls=required)"
                    )));
                }
            }
        }
        let security = match (url.scheme() == "smtps", tls.as_deref()) {
            (false, None) => SmtpSecurity::Plain,
            (false, Some("required")) => SmtpSecurity::StartTls,
            (false, Some(other)) => {
                return Err(refuse(format!(
                    "tls={other} is not supported: tls=required (STARTTLS), or smtps:// for TLS"
                )));
            }
            (true, None) => SmtpSecurity::Tls,
            (true, Some(_)) => {
                return Err(refuse(
                    "smtps:// is TLS from the start: it takes no tls= parameter".into(),
                ));
            }
        };
        if !url.username().is_empty() && url.password().is_none() {
            return Err(refuse(
                "has a user but no password (smtp://user:password@host; percent-encode special characters)"
                    .into(),
            ));
        }
        // lettre builds its transport from the same text; what it refuses (a TLS name it
        // cannot use, say) is refused now rather than at the first email.
        crate::input::install_tls_provider();
        if let Err(error) = AsyncSmtpTransport::<Tokio1Executor>::from_url(text.trim()) {
            return Err(refuse(format!("is refused by the SMTP client: {error}")));
        }
        Ok(SmtpServer {
            url: Secret::new(text.trim()),
            redacted,
            security,
            loopback,
        })
    }

    /// The URL with its password replaced by `***`.
    pub fn redacted(&self) -> &str {
        &self.redacted
    }

    pub fn security(&self) -> SmtpSecurity {
        self.security
    }

    /// Whether the host is this machine (`localhost`, 127.0.0.0/8, `::1`): the only place
    /// production sends to without TLS.
    pub fn is_loopback(&self) -> bool {
        self.loopback
    }

    /// A pooled transport: up to `connections` kept open, each step of a conversation
    /// (connecting included) bounded by `timeout`. Needs a Tokio runtime (the pool starts a
    /// task that closes idle connections).
    pub fn transport(
        &self,
        timeout: Duration,
        connections: u32,
    ) -> anyhow::Result<AsyncSmtpTransport<Tokio1Executor>> {
        crate::input::install_tls_provider();
        let builder = AsyncSmtpTransport::<Tokio1Executor>::from_url(self.url.expose())
            .map_err(|error| anyhow::anyhow!("SMTP_URL {}: {error}", self.redacted))?;
        Ok(builder
            .timeout(Some(timeout))
            .pool_config(PoolConfig::new().max_size(connections.max(1)))
            .build())
    }
}

fn redact(url: &url::Url) -> String {
    let mut shown = url.clone();
    if shown.password().is_some() {
        let _ = shown.set_password(Some("***"));
    }
    shown.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_three_forms_and_their_security() {
        let cases = [
            ("smtp://127.0.0.1:2525", SmtpSecurity::Plain, true),
            ("smtp://localhost", SmtpSecurity::Plain, true),
            ("smtp://[::1]:25", SmtpSecurity::Plain, true),
            ("smtp://127.1.2.3:25", SmtpSecurity::Plain, true),
            ("smtp://127.0.0.1.example.com:25", SmtpSecurity::Plain, false),
            ("smtp://10.0.0.1:25", SmtpSecurity::Plain, false),
            ("smtp://mail.example.com:25", SmtpSecurity::Plain, false),
            (
                "smtp://user:p%40ss@smtp.example.com:587?tls=required",
                SmtpSecurity::StartTls,
                false,
            ),
            ("smtps://user:pass@smtp.example.com:465", SmtpSecurity::Tls, false),
        ];
        for (url, security, loopback) in cases {
            let server = SmtpServer::parse(url).unwrap_or_else(|error| panic!("{url}: {error:?}"));
            assert_eq!(server.security(), security, "{url}");
            assert_eq!(server.is_loopback(), loopback, "{url}");
        }
    }

    #[test]
    fn refusals_never_show_the_password() {
        let cases = [
            "http://user:hunter2@smtp.example.com",
            "smtp://user:hunter2@smtp.example.com?tls=opportunistic",
            "smtp://user:hunter2@smtp.example.com?tls=yes",
            "smtps://user:hunter2@smtp.example.com?tls=required",
            "smtp://user:hunter2@smtp.example.com?starttls=1",
            "smtp://user:hunter2@",
            "hunter2",
            "smtp://user@smtp.example.com",
        ];
        for url in cases {
            let error = SmtpServer::parse(url).unwrap_err();
            let text = format!("{error:?}");
            assert!(!text.contains("hunter2"), "{url}: {text}");
            assert!(!error.problem.is_empty(), "{url}");
        }
        let server = SmtpServer::parse("smtps://user:hunter2@smtp.example.com").unwrap();
        assert!(!format!("{server:?}").contains("hunter2"));
        assert_eq!(server.redacted(), "smtps://user:***@smtp.example.com");
    }
}
