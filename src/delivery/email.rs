//! Channel `email`: one notification, or one digest, as one email to the recipient's
//! address, handed to the SMTP server of `SMTP_URL` (lettre, a pool of connections).
//!
//! - [`server`]: `SMTP_URL` and the transport built from it;
//! - [`templates`]: what the email says (minijinja, HTML and text, overridable);
//! - [`message`]: headers (`Message-ID`, `List-Unsubscribe`) and parts;
//! - [`failure`]: what a failed send means (SMTP 4xx retried, 5xx dead letter).
//!
//! The subject is the wording table's: the headline of the notification ("John Doe replied
//! to your post"), or "3 new notifications" for a digest.

pub mod failure;
pub mod message;
pub mod server;
pub mod templates;

use super::channel::SendError;
use super::messenger::{Address, Content, Messenger};
use super::wording;
use crate::recipients::{Channel, Recipient};
use lettre::message::Mailbox;
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use message::{Letter, UnsubscribeUrl};
use server::SmtpServer;
use std::time::Duration;
use templates::{EmailContext, EmailTemplates, NoticeView};

/// `EMAIL_DIGEST_WINDOW` unless set.
pub const DEFAULT_DIGEST_WINDOW: Duration = Duration::from_secs(15 * 60);
/// Each step of an SMTP conversation (connecting, a command, its reply).
pub const STEP_TIMEOUT: Duration = Duration::from_secs(10);
/// A whole send, however the steps add up: a job never waits on SMTP for longer.
pub const SEND_TIMEOUT: Duration = Duration::from_secs(60);
/// Connections kept open to the server.
pub const POOL_SIZE: u32 = 10;

/// The channel's settings (on when `SMTP_URL` and `EMAIL_FROM` are both set).
#[derive(Debug, Clone)]
pub struct EmailSettings {
    /// `SMTP_URL`.
    pub server: SmtpServer,
    /// `EMAIL_FROM`: the sender; its domain is the right side of every `Message-ID`.
    pub from: Mailbox,
    /// The built-in templates with `EMAIL_TEMPLATES_DIR`'s overrides, checked at start.
    pub templates: EmailTemplates,
    /// `EMAIL_UNSUBSCRIBE_URL`: when set, every email has `List-Unsubscribe` headers.
    pub unsubscribe: Option<UnsubscribeUrl>,
    /// `EMAIL_DIGEST_WINDOW` (default 15 min): how long a digest collects notifications.
    pub digest_window: Duration,
}

pub struct EmailMessenger {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    /// The domain of `from`, for message ids.
    domain: String,
    templates: EmailTemplates,
    unsubscribe: Option<UnsubscribeUrl>,
}

impl EmailMessenger {
    /// Builds the pooled transport (no connection is opened yet). Call inside a Tokio
    /// runtime.
    pub fn new(settings: &EmailSettings) -> anyhow::Result<EmailMessenger> {
        Ok(EmailMessenger {
            transport: settings.server.transport(STEP_TIMEOUT, POOL_SIZE)?,
            from: settings.from.clone(),
            domain: settings.from.email.domain().to_owned(),
            templates: settings.templates.clone(),
            unsubscribe: settings.unsubscribe.clone(),
        })
    }

    /// The email for `content`, or why there can be none (a permanent failure: the same
    /// content would fail the same way again).
    fn compose(
        &self,
        recipient: &Recipient,
        to: &crate::recipients::Email,
        content: Content<'_>,
    ) -> Result<lettre::Message, SendError> {
        let owner = recipient.owner().as_str();
        let (subject, notice, notices, message_id) = match content {
            Content::One(notice) => (
                wording::headline(notice),
                Some(NoticeView::of(notice)),
                std::slice::from_ref(notice),
                message::message_id_for_one(notice, &self.domain),
            ),
            Content::Digest([]) => return Err(SendError::permanent("a digest with no notification")),
            Content::Digest(notices) => (
                wording::digest_headline(notices.len()),
                None,
                notices,
                message::message_id_for_digest(owner, notices, &self.domain),
            ),
        };
        let unsubscribe_url = self.unsubscribe.as_ref().map(|url| url.for_owner(owner));
        let context = EmailContext {
            owner: owner.to_owned(),
            locale: recipient
                .locale()
                .map_or("en", |locale| locale.as_str())
                .to_owned(),
            subject: subject.clone(),
            unsubscribe_url: unsubscribe_url.clone(),
            notice,
            notices: notices.iter().map(NoticeView::of).collect(),
        };
        let rendered = self.templates.render(&context).map_err(SendError::permanent)?;
        let address = to
            .as_str()
            .parse()
            .map_err(|error| SendError::permanent(format!("{to} cannot be sent to: {error}")))?;
        Letter {
            from: &self.from,
            to: Mailbox::new(None, address),
            subject: &subject,
            message_id,
            unsubscribe_url: unsubscribe_url.as_deref(),
            text: rendered.text,
            html: rendered.html,
        }
        .compose()
        .map_err(|error| SendError::permanent(format!("cannot build the email: {error}")))
    }
}

impl Messenger for EmailMessenger {
    fn channel(&self) -> Channel {
        Channel::Email
    }

    async fn send(
        &self,
        recipient: &Recipient,
        address: Address<'_>,
        content: Content<'_>,
    ) -> Result<(), SendError> {
        let Address::Email(to) = address else {
            return Err(SendError::permanent(
                "channel email was given a device, not an email address",
            ));
        };
        let email = self.compose(recipient, to, content)?;
        match tokio::time::timeout(SEND_TIMEOUT, self.transport.send(email)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(error)) => Err(failure::send_error(&error)),
            Err(_) => Err(SendError::transient(format!(
                "SMTP: no answer within {}s",
                SEND_TIMEOUT.as_secs()
            ))),
        }
    }
}
