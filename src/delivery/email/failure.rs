//! What a failed SMTP send means for its job: the one place that decides.
//!
//! Only a 5xx reply says the server refuses this message for good (RFC 5321 §4.2.1:
//! "permanent negative completion"): a dead letter. A 4xx reply asks to try later.
//! Everything without a reply (connection refused, a timeout, a TLS handshake that failed,
//! a connection dropped mid-conversation, a server that does not offer STARTTLS or a
//! login mechanism lettre has) is the server or the way to it being unavailable: retried,
//! like HTTP channels retry a 503, so that an outage delays emails and loses none.

use crate::delivery::channel::{Failure, SendError};
use lettre::transport::smtp::response::{Code, Severity};

/// The failure an SMTP reply code (`None`: no reply) stands for.
pub fn smtp_failure(reply: Option<Code>) -> Failure {
    match reply.map(|code| code.severity) {
        Some(Severity::PermanentNegativeCompletion) => Failure::Permanent,
        _ => Failure::Transient { retry_after: None },
    }
}

/// A lettre SMTP error as the delivery stage sees it.
pub fn send_error(error: &lettre::transport::smtp::Error) -> SendError {
    let mut message = format!("SMTP: {error}");
    if error.is_timeout() && !message.contains("timed out") {
        message.push_str(" (timed out)");
    }
    SendError {
        kind: smtp_failure(error.status()),
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lettre::transport::smtp::response::{Category, Detail};

    fn code(severity: Severity, category: Category, detail: Detail) -> Option<Code> {
        Some(Code::new(severity, category, detail))
    }

    #[test]
    fn five_hundreds_are_permanent_the_rest_is_retried() {
        use Category::*;
        use Detail::*;
        use Severity::*;
        let transient = Failure::Transient { retry_after: None };
        let cases = [
            // 421 service not available, 450 mailbox busy, 451 local error, 452 storage
            (code(TransientNegativeCompletion, Connections, One), transient),
            (code(TransientNegativeCompletion, MailSystem, Zero), transient),
            (code(TransientNegativeCompletion, MailSystem, One), transient),
            (code(TransientNegativeCompletion, MailSystem, Two), transient),
            // 500 syntax, 535 authentication failed, 550 no such mailbox, 552, 554
            (
                code(PermanentNegativeCompletion, Syntax, Zero),
                Failure::Permanent,
            ),
            (
                code(PermanentNegativeCompletion, Unspecified3, Five),
                Failure::Permanent,
            ),
            (
                code(PermanentNegativeCompletion, MailSystem, Zero),
                Failure::Permanent,
            ),
            (
                code(PermanentNegativeCompletion, MailSystem, Two),
                Failure::Permanent,
            ),
            (
                code(PermanentNegativeCompletion, MailSystem, Four),
                Failure::Permanent,
            ),
            // no reply: refused connection, timeout, TLS handshake
            (None, transient),
        ];
        for (reply, expected) in cases {
            assert_eq!(smtp_failure(reply), expected, "{reply:?}");
        }
    }
}
