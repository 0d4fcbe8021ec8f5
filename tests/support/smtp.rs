//! A real SMTP server for the email tests: aiosmtpd (PyPI, installed by
//! `scripts/test-deps.sh`), storing every message it accepts as one file under `DIR/new`.
//! Stop and restart keep the port and the mailbox, like a mail relay going down and
//! coming back.

use super::{free_port, port_answers, signal, wait_until};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub struct SmtpServer {
    pub port: u16,
    _root: tempfile::TempDir,
    mailbox: PathBuf,
    child: Option<Child>,
}

/// One stored message, parsed.
pub struct Mail {
    pub raw: Vec<u8>,
}

impl Mail {
    pub fn parsed(&self) -> mail_parser::Message<'_> {
        mail_parser::MessageParser::default()
            .parse(&self.raw)
            .expect("aiosmtpd stores whole messages")
    }

    pub fn subject(&self) -> String {
        self.parsed().subject().unwrap_or_default().to_owned()
    }

    pub fn header(&self, name: &str) -> Option<String> {
        let parsed = self.parsed();
        parsed
            .header_raw(name)
            .map(|value| value.split_whitespace().collect::<Vec<_>>().join(" "))
    }

    pub fn message_id(&self) -> String {
        self.parsed().message_id().unwrap_or_default().to_owned()
    }

    pub fn to(&self) -> String {
        self.parsed()
            .to()
            .and_then(|to| to.first())
            .and_then(|address| address.address())
            .unwrap_or_default()
            .to_owned()
    }

    pub fn text(&self) -> String {
        self.parsed().body_text(0).unwrap_or_default().into_owned()
    }

    pub fn html(&self) -> String {
        self.parsed().body_html(0).unwrap_or_default().into_owned()
    }
}

/// The Python that has aiosmtpd: `AIOSMTPD_PYTHON` if set, else `python3`.
fn python() -> String {
    std::env::var("AIOSMTPD_PYTHON").unwrap_or_else(|_| "python3".to_owned())
}

impl SmtpServer {
    pub fn start() -> SmtpServer {
        let root = tempfile::tempdir().unwrap();
        // aiosmtpd creates the mailbox itself: an existing empty folder makes it answer 500.
        let mailbox = root.path().join("mailbox");
        let mut server = SmtpServer {
            port: free_port(),
            _root: root,
            mailbox,
            child: None,
        };
        server.launch();
        server
    }

    fn launch(&mut self) {
        let listen = format!("127.0.0.1:{}", self.port);
        let child = Command::new(python())
            .args([
                "-m",
                "aiosmtpd",
                "-n",
                "-l",
                &listen,
                "-c",
                "aiosmtpd.handlers.Mailbox",
            ])
            .arg(&self.mailbox)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("python3 with aiosmtpd starts (run scripts/test-deps.sh)");
        self.child = Some(child);
        let port = self.port;
        wait_until("aiosmtpd to accept connections", Duration::from_secs(20), || {
            port_answers(port)
        });
    }

    /// `smtp://127.0.0.1:PORT`: plain SMTP, as production allows only to loopback.
    pub fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.port)
    }

    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            signal(&child, "TERM");
            let _ = child.wait();
        }
        let port = self.port;
        wait_until("aiosmtpd to stop", Duration::from_secs(10), || {
            !port_answers(port)
        });
    }

    pub fn restart(&mut self) {
        self.stop();
        self.launch();
    }

    /// Every message accepted so far, in no particular order.
    pub fn mails(&self) -> Vec<Mail> {
        let Ok(entries) = std::fs::read_dir(self.mailbox.join("new")) else {
            return Vec::new();
        };
        entries
            .filter_map(Result::ok)
            .filter_map(|entry| std::fs::read(entry.path()).ok())
            .map(|raw| Mail { raw })
            .collect()
    }

    /// Waits until at least `count` messages are stored; returns them all.
    pub fn wait_for(&self, count: usize, within: Duration) -> Vec<Mail> {
        wait_until(&format!("{count} emails"), within, || self.mails().len() >= count);
        self.mails()
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
