//! Channel `email`'s settings: on when `SMTP_URL` and `EMAIL_FROM` are both set; one of
//! them alone is an error naming the other. Templates are read and checked here, so a broken
//! override stops the worker at start (exit code 2) rather than failing every email.

use super::{ConfigError, Environment, bad, parse_duration};
use crate::delivery::email::message::UnsubscribeUrl;
use crate::delivery::email::server::{SMTP_URL_FORMS, SmtpSecurity, SmtpServer};
use crate::delivery::email::templates::EmailTemplates;
use crate::delivery::email::{DEFAULT_DIGEST_WINDOW, EmailSettings};
use clap::Args;
use std::path::Path;

const SMTP_URL_EXAMPLE: &str = "smtps://user:password@smtp.example.com:465";
const EMAIL_FROM_EXAMPLE: &str = "Exobook <notifications@example.com>";
const DEFAULT_DIGEST_WINDOW_TEXT: &str = "15m";

#[derive(Clone, Args)]
#[command(next_help_heading = super::heading::DELIVERY)]
pub struct RawEmail {
    /// SMTP server (with EMAIL_FROM: turns channel `email` on): smtp://host:port (no TLS),
    /// smtp://user:pass@host:587?tls=required (STARTTLS) or smtps://user:pass@host:465.
    #[arg(long, env = "SMTP_URL", hide_env_values = true, global = true)]
    pub smtp_url: Option<String>,
    /// The sender of emails: `Name <address>` or an address.
    #[arg(long, env = "EMAIL_FROM", global = true)]
    pub email_from: Option<String>,
    /// A folder of email templates replacing the built-in ones of the same file name.
    #[arg(long, env = "EMAIL_TEMPLATES_DIR", global = true)]
    pub email_templates_dir: Option<String>,
    /// Unsubscribe link (List-Unsubscribe); {owner} is replaced by the owner (URL-encoded).
    #[arg(long, env = "EMAIL_UNSUBSCRIBE_URL", global = true)]
    pub email_unsubscribe_url: Option<String>,
    /// How long an email digest collects notifications before it is sent.
    #[arg(long, env = "EMAIL_DIGEST_WINDOW", default_value = DEFAULT_DIGEST_WINDOW_TEXT, global = true)]
    pub email_digest_window: String,
}

impl Default for RawEmail {
    /// The documented defaults: channel `email` off.
    fn default() -> RawEmail {
        RawEmail {
            smtp_url: None,
            email_from: None,
            email_templates_dir: None,
            email_unsubscribe_url: None,
            email_digest_window: DEFAULT_DIGEST_WINDOW_TEXT.into(),
        }
    }
}

fn given(value: &Option<String>) -> Option<&str> {
    value.as_deref().map(str::trim).filter(|value| !value.is_empty())
}

pub fn parse(raw: &RawEmail, environment: Environment) -> Result<Option<EmailSettings>, ConfigError> {
    let (url, from) = match (given(&raw.smtp_url), given(&raw.email_from)) {
        (None, None) => return Ok(None),
        (Some(url), Some(from)) => (url, from),
        (Some(_), None) => {
            return Err(ConfigError {
                variable: "EMAIL_FROM",
                value: None,
                problem: "must be set with SMTP_URL (SMTP_URL and EMAIL_FROM turn channel email on)".into(),
                example: EMAIL_FROM_EXAMPLE,
            });
        }
        (None, Some(_)) => {
            return Err(ConfigError {
                variable: "SMTP_URL",
                value: None,
                problem: "must be set with EMAIL_FROM (SMTP_URL and EMAIL_FROM turn channel email on)".into(),
                example: SMTP_URL_EXAMPLE,
            });
        }
    };
    let server = parse_server(url, environment)?;
    let from = from
        .parse()
        .map_err(|_| bad("EMAIL_FROM", from, "is not a mailbox", EMAIL_FROM_EXAMPLE))?;
    let templates = match given(&raw.email_templates_dir) {
        None => EmailTemplates::built_in(),
        Some(dir) => EmailTemplates::load(Path::new(dir)).map_err(|error| ConfigError {
            variable: "EMAIL_TEMPLATES_DIR",
            value: Some(dir.to_owned()),
            problem: format!("{}: {}", error.file, error.problem),
            example: "/etc/notification-worker/email-templates",
        })?,
    };
    let unsubscribe = match given(&raw.email_unsubscribe_url) {
        None => None,
        Some(template) => Some(
            UnsubscribeUrl::parse(template, environment == Environment::Development).map_err(|problem| {
                bad(
                    "EMAIL_UNSUBSCRIBE_URL",
                    template,
                    problem,
                    "https://example.com/notifications/unsubscribe?owner={owner}",
                )
            })?,
        ),
    };
    let digest_window = match raw.email_digest_window.trim() {
        "" => DEFAULT_DIGEST_WINDOW,
        value => parse_duration("EMAIL_DIGEST_WINDOW", value, DEFAULT_DIGEST_WINDOW_TEXT)?,
    };
    Ok(Some(EmailSettings {
        server,
        from,
        templates,
        unsubscribe,
        digest_window,
    }))
}

/// `SMTP_URL`, shown with its password hidden; plain SMTP leaves this machine only in
/// development (in production, credentials and mail would cross the network in clear).
fn parse_server(url: &str, environment: Environment) -> Result<SmtpServer, ConfigError> {
    let server = SmtpServer::parse(url).map_err(|error| ConfigError {
        variable: "SMTP_URL",
        value: error.shown,
        problem: error.problem,
        example: SMTP_URL_EXAMPLE,
    })?;
    if environment == Environment::Production
        && server.security() == SmtpSecurity::Plain
        && !server.is_loopback()
    {
        return Err(ConfigError {
            variable: "SMTP_URL",
            value: Some(server.redacted().to_owned()),
            problem: format!(
                "plain SMTP (no TLS) to a host other than this machine is refused in production (use {SMTP_URL_FORMS})"
            ),
            example: SMTP_URL_EXAMPLE,
        });
    }
    Ok(server)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(url: Option<&str>, from: Option<&str>) -> RawEmail {
        RawEmail {
            smtp_url: url.map(str::to_owned),
            email_from: from.map(str::to_owned),
            ..RawEmail::default()
        }
    }

    #[test]
    fn off_by_default_and_on_with_both_variables() {
        assert!(
            parse(&RawEmail::default(), Environment::Production)
                .unwrap()
                .is_none()
        );
        let settings = parse(
            &raw(
                Some("smtps://user:secret@smtp.example.com"),
                Some("Exobook <notifications@example.com>"),
            ),
            Environment::Production,
        )
        .unwrap()
        .unwrap();
        assert_eq!(settings.from.email.domain(), "example.com");
        assert_eq!(settings.digest_window, DEFAULT_DIGEST_WINDOW);
        assert!(settings.unsubscribe.is_none());
        assert!(!format!("{settings:?}").contains("secret"));
    }

    #[test]
    fn bad_values_name_their_variable() {
        let cases: [(RawEmail, &str); 5] = [
            (raw(None, Some("a@example.com")), "SMTP_URL"),
            (raw(Some("smtp://127.0.0.1:25"), None), "EMAIL_FROM"),
            (
                raw(Some("smtp://127.0.0.1:25"), Some("not a mailbox")),
                "EMAIL_FROM",
            ),
            (
                RawEmail {
                    email_digest_window: "15".into(),
                    ..raw(Some("smtp://127.0.0.1:25"), Some("a@example.com"))
                },
                "EMAIL_DIGEST_WINDOW",
            ),
            (
                RawEmail {
                    email_unsubscribe_url: Some("https://example.com/unsubscribe".into()),
                    ..raw(Some("smtp://127.0.0.1:25"), Some("a@example.com"))
                },
                "EMAIL_UNSUBSCRIBE_URL",
            ),
        ];
        for (raw, variable) in cases {
            let error = parse(&raw, Environment::Production).unwrap_err();
            assert_eq!(error.variable, variable, "{error}");
        }
    }
}
