//! A private aiosmtpd (an SMTP server in Python) on a free port, storing every message it
//! accepts as a file under `{mailbox}/new` (a Maildir), and a small reader for those files.
//!
//! aiosmtpd is installed by scripts/test-deps.sh in a venv of its own; the harness runs
//! that venv's python (or `AIOSMTPD_PYTHON`).

use super::{free_port, port_answers, wait_until};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The release scripts/test-deps.sh installs.
pub const AIOSMTPD_VERSION: &str = "1.4.6";

fn python() -> PathBuf {
    if let Some(python) = std::env::var_os("AIOSMTPD_PYTHON") {
        return PathBuf::from(python);
    }
    let data = std::env::var_os("XDG_DATA_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".local/share")))
        .expect("HOME is set");
    let python = data.join("notification-worker/aiosmtpd/bin/python");
    assert!(
        python.is_file(),
        "aiosmtpd is not installed at {}: run scripts/test-deps.sh (aiosmtpd=={AIOSMTPD_VERSION} in a venv), or set AIOSMTPD_PYTHON",
        python.display()
    );
    python
}

/// How the server answers.
enum Handler {
    /// Stores every message (`aiosmtpd.handlers.Mailbox`).
    Mailbox,
    /// Its mailbox folder exists but is no Maildir: it answers DATA with `500`.
    BrokenMailbox,
    /// Answers every recipient with `451` (try again later), as a busy server does.
    Busy,
}

pub struct Aiosmtpd {
    pub port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl Aiosmtpd {
    pub fn start() -> Aiosmtpd {
        Aiosmtpd::launch(Handler::Mailbox, free_port())
    }

    /// On `port` (where a client was told to send before the server was up).
    pub fn start_on(port: u16) -> Aiosmtpd {
        Aiosmtpd::launch(Handler::Mailbox, port)
    }

    /// A server that refuses every message with a 5xx reply.
    pub fn start_refusing() -> Aiosmtpd {
        Aiosmtpd::launch(Handler::BrokenMailbox, free_port())
    }

    /// A server that defers every message with a 4xx reply.
    pub fn start_busy() -> Aiosmtpd {
        Aiosmtpd::launch(Handler::Busy, free_port())
    }

    fn launch(handler: Handler, port: u16) -> Aiosmtpd {
        let mut server = Aiosmtpd {
            port,
            dir: tempfile::tempdir().unwrap(),
            child: None,
        };
        let mailbox = server.mailbox();
        let mut command = Command::new(python());
        command.args([
            "-m",
            "aiosmtpd",
            "-n",
            "-l",
            &format!("127.0.0.1:{}", server.port),
            "-c",
        ]);
        match handler {
            // aiosmtpd makes the Maildir itself: the folder must not exist yet.
            Handler::Mailbox => command.arg("aiosmtpd.handlers.Mailbox").arg(&mailbox),
            Handler::BrokenMailbox => {
                std::fs::create_dir(&mailbox).unwrap();
                command.arg("aiosmtpd.handlers.Mailbox").arg(&mailbox)
            }
            Handler::Busy => {
                std::fs::write(
                    server.dir.path().join("busy_handler.py"),
                    "class Busy:\n    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):\n        return '451 4.3.2 Try again later'\n",
                )
                .unwrap();
                command
                    .env("PYTHONPATH", server.dir.path())
                    .arg("busy_handler.Busy")
            }
        };
        let log = std::fs::File::create(server.dir.path().join("aiosmtpd.log")).unwrap();
        let child = command
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("aiosmtpd starts");
        server.child = Some(child);
        let port = server.port;
        wait_until("aiosmtpd to accept connections", Duration::from_secs(20), || {
            port_answers(port)
        });
        server
    }

    /// `SMTP_URL` for it.
    pub fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.port)
    }

    fn mailbox(&self) -> PathBuf {
        self.dir.path().join("mail")
    }

    /// The messages stored so far, raw (by file time, then name: not a reliable order).
    pub fn messages(&self) -> Vec<String> {
        let Ok(entries) = std::fs::read_dir(self.mailbox().join("new")) else {
            return Vec::new();
        };
        let mut files: Vec<_> = entries
            .filter_map(Result::ok)
            .filter_map(|entry| Some((entry.metadata().ok()?.modified().ok()?, entry.path())))
            .collect();
        files.sort();
        files
            .into_iter()
            .filter_map(|(_, path)| std::fs::read_to_string(path).ok())
            .collect()
    }

    /// Waits until `count` messages are stored, and returns them.
    pub fn wait_for_messages(&self, count: usize, within: Duration) -> Vec<Mail> {
        wait_until(&format!("{count} messages in aiosmtpd"), within, || {
            self.messages().len() >= count
        });
        self.messages().iter().map(|raw| Mail::parse(raw)).collect()
    }

    /// What the server logged (for assertion messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("aiosmtpd.log")).unwrap_or_default()
    }

    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Aiosmtpd {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A stored email, read just enough for tests: headers (unfolded, names lower-cased) and
/// the text of each part of a multipart body, transfer encoding undone.
#[derive(Debug, Clone)]
pub struct Mail {
    pub headers: Vec<(String, String)>,
    /// (content type without parameters, decoded text).
    pub parts: Vec<(String, String)>,
}

impl Mail {
    pub fn parse(raw: &str) -> Mail {
        let raw = raw.replace("\r\n", "\n");
        let (head, body) = raw.split_once("\n\n").unwrap_or((&raw, ""));
        let headers = parse_headers(head);
        let content_type = header_in(&headers, "content-type").unwrap_or("text/plain");
        let parts = match parameter(content_type, "boundary") {
            Some(boundary) => body
                .split(&format!("--{boundary}"))
                .skip(1)
                .filter(|part| !part.starts_with("--"))
                .map(|part| {
                    let part = part.strip_prefix('\n').unwrap_or(part);
                    let (head, body) = part.split_once("\n\n").unwrap_or((part, ""));
                    let headers = parse_headers(head);
                    (media_type(&headers), decode(&headers, body))
                })
                .collect(),
            None => vec![(media_type(&headers), decode(&headers, body))],
        };
        Mail { headers, parts }
    }

    /// The first header of that name.
    pub fn header(&self, name: &str) -> Option<&str> {
        header_in(&self.headers, name)
    }

    /// The decoded text of the first part of that media type (`text/plain`, `text/html`).
    pub fn part(&self, media_type: &str) -> Option<&str> {
        self.parts
            .iter()
            .find(|(kind, _)| kind == media_type)
            .map(|(_, text)| text.as_str())
    }
}

fn parse_headers(head: &str) -> Vec<(String, String)> {
    let mut headers: Vec<(String, String)> = Vec::new();
    for line in head.lines() {
        if line.starts_with([' ', '\t']) {
            if let Some((_, value)) = headers.last_mut() {
                value.push(' ');
                value.push_str(line.trim());
            }
        } else if let Some((name, value)) = line.split_once(':') {
            headers.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
        }
    }
    headers
}

fn header_in<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.as_str())
}

fn media_type(headers: &[(String, String)]) -> String {
    header_in(headers, "content-type")
        .unwrap_or("text/plain")
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase()
}

fn parameter(value: &str, name: &str) -> Option<String> {
    value.split(';').skip(1).find_map(|pair| {
        let (key, value) = pair.split_once('=')?;
        (key.trim().eq_ignore_ascii_case(name)).then(|| value.trim().trim_matches('"').to_owned())
    })
}

fn decode(headers: &[(String, String)], body: &str) -> String {
    let encoding = header_in(headers, "content-transfer-encoding")
        .unwrap_or("7bit")
        .to_ascii_lowercase();
    match encoding.as_str() {
        "base64" => {
            use base64::Engine;
            let compact: String = body.split_whitespace().collect();
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(compact)
                .expect("a base64 part");
            String::from_utf8(bytes).expect("a UTF-8 part")
        }
        "quoted-printable" => String::from_utf8(quoted_printable(body)).expect("a UTF-8 part"),
        _ => body.to_owned(),
    }
}

fn quoted_printable(body: &str) -> Vec<u8> {
    let mut out = Vec::new();
    let lines: Vec<&str> = body.split('\n').collect();
    for (index, line) in lines.iter().enumerate() {
        let line = line.trim_end();
        // A line ending in `=` continues on the next one (a soft line break).
        let (line, soft_break) = match line.strip_suffix('=') {
            Some(rest) => (rest, true),
            None => (line, false),
        };
        let bytes = line.as_bytes();
        let mut i = 0;
        while i < bytes.len() {
            let escaped = bytes
                .get(i + 1..i + 3)
                .and_then(|hex| u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok());
            match (bytes[i], escaped) {
                (b'=', Some(byte)) => {
                    out.push(byte);
                    i += 3;
                }
                (byte, _) => {
                    out.push(byte);
                    i += 1;
                }
            }
        }
        if !soft_break && index + 1 < lines.len() {
            out.push(b'\n');
        }
    }
    out
}
