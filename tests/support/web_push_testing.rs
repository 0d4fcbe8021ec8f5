//! A private web-push-testing server (npm, pinned in tests/dynalite/package.json): a real
//! push service that issues subscriptions the way a browser's would, checks the VAPID
//! signature against the subscription's `applicationServerKey`, decrypts `aes128gcm`
//! and keeps each decrypted message. Its HTTP API (src/server.js, version 1.2.2):
//! - `POST /subscribe` `{"userVisibleOnly": "true", "applicationServerKey": KEY}` →
//!   `{"data": {"endpoint", "keys": {"p256dh", "auth"}, "clientHash"}}`;
//! - `POST /notify/{clientHash}`: the push endpoint (201; 410 once expired; 400 for a
//!   push it refuses: bad signature, wrong key, undecryptable);
//! - `POST /get-notifications` `{"clientHash"}` → `{"data": {"messages": [TEXT...]}}`;
//! - `POST /expire-subscription/{clientHash}`.

use super::{MANIFEST_DIR, free_port, port_answers, require_program, wait_until};
use serde_json::{Value, json};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub struct WebPushTesting {
    pub port: u16,
    child: Option<Child>,
    client: reqwest::Client,
}

/// A subscription as the server issued it (what `PushSubscription.toJSON()` gives a page).
#[derive(Debug, Clone)]
pub struct Subscription {
    pub endpoint: String,
    pub p256dh: String,
    pub auth: String,
    pub client_hash: String,
}

impl WebPushTesting {
    pub fn start() -> WebPushTesting {
        // Its client is reqwest with rustls, which needs the process's crypto provider.
        notification_worker::input::install_tls_provider();
        let node = require_program("node", "install Node.js 20 (apt-get install nodejs npm)");
        let server =
            Path::new(MANIFEST_DIR).join("tests/dynalite/node_modules/web-push-testing/src/bin/server.js");
        assert!(
            server.is_file(),
            "web-push-testing is not installed: run scripts/test-deps.sh (npm ci in tests/dynalite)"
        );
        let port = free_port();
        // Started directly: its CLI detaches a daemon the test could not stop.
        let child = Command::new(node)
            .arg(server)
            .arg(port.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("web-push-testing starts");
        wait_until(
            "web-push-testing to accept connections",
            Duration::from_secs(20),
            || port_answers(port),
        );
        WebPushTesting {
            port,
            child: Some(child),
            client: reqwest::Client::new(),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        let response = self
            .client
            .post(self.url(path))
            .json(&body)
            .send()
            .await
            .expect("web-push-testing answers");
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    /// A new subscription for the sender whose VAPID public key is `application_server_key`.
    pub async fn subscribe(&self, application_server_key: &str) -> Subscription {
        let (status, body) = self
            .post(
                "/subscribe",
                json!({"userVisibleOnly": "true", "applicationServerKey": application_server_key}),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        let data = &body["data"];
        let text = |value: &Value| value.as_str().expect("a string").to_owned();
        Subscription {
            endpoint: text(&data["endpoint"]),
            p256dh: text(&data["keys"]["p256dh"]),
            auth: text(&data["keys"]["auth"]),
            client_hash: text(&data["clientHash"]),
        }
    }

    /// The decrypted messages the subscription received, oldest first.
    pub async fn messages(&self, subscription: &Subscription) -> Vec<String> {
        let (status, body) = self
            .post(
                "/get-notifications",
                json!({"clientHash": subscription.client_hash}),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        body["data"]["messages"]
            .as_array()
            .expect("a list of messages")
            .iter()
            .map(|message| message.as_str().expect("text").to_owned())
            .collect()
    }

    /// The browser unsubscribed: later pushes to it are answered 410.
    pub async fn expire(&self, subscription: &Subscription) {
        let path = format!("/expire-subscription/{}", subscription.client_hash);
        let (status, body) = self.post(&path, json!({})).await;
        assert_eq!(status, 200, "{body}");
    }

    /// Kills the server and waits until its port is closed.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let port = self.port;
        wait_until("web-push-testing to stop", Duration::from_secs(10), || {
            !port_answers(port)
        });
    }
}

impl Drop for WebPushTesting {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
