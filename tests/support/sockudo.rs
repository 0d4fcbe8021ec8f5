//! A private sockudo (a self-hosted Pusher-protocol server) on a free port, and a Pusher
//! WebSocket client that subscribes the way browsers do, to see what the `pusher` channel
//! actually delivers.
//!
//! sockudo is installed by scripts/test-deps.sh (`cargo install sockudo --version 5.2.0`).

use super::{free_port, port_answers};
use futures::{SinkExt, StreamExt};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;

/// The sockudo release the harness is written against (its environment variables).
pub const SOCKUDO_VERSION: &str = "5.2.0";

/// A running sockudo with one app, configured only through its environment.
pub struct Sockudo {
    pub port: u16,
    pub app_id: String,
    pub key: String,
    pub secret: String,
    /// Its working folder (no config/config.toml there, so only the environment counts)
    /// and its log.
    dir: tempfile::TempDir,
    child: Option<Child>,
}

fn program() -> PathBuf {
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("sockudo"))
            .find(|candidate| candidate.is_file())
    });
    let in_cargo_home = std::env::var_os("HOME")
        .map(|home| PathBuf::from(home).join(".cargo/bin/sockudo"))
        .filter(|path| path.is_file());
    on_path.or(in_cargo_home).unwrap_or_else(|| {
        panic!(
            "sockudo is not installed: run scripts/test-deps.sh (cargo install sockudo --version {SOCKUDO_VERSION} --locked --no-default-features --features local)"
        )
    })
}

impl Sockudo {
    pub fn start() -> Sockudo {
        Sockudo::start_with_app(
            "notification-test",
            "test-key-0123456789",
            "test-secret-9876543210",
        )
    }

    pub fn start_with_app(app_id: &str, key: &str, secret: &str) -> Sockudo {
        let mut server = Sockudo {
            port: free_port(),
            app_id: app_id.to_owned(),
            key: key.to_owned(),
            secret: secret.to_owned(),
            dir: tempfile::tempdir().unwrap(),
            child: None,
        };
        server.launch();
        server
    }

    /// Starts it again (after [`Sockudo::kill`]) on the same port with the same app: a
    /// Pusher server back from an outage, with no subscriptions (they were in its memory).
    pub fn restart(&mut self) {
        self.kill();
        self.launch();
    }

    fn launch(&mut self) {
        // Appended to, so that a restart keeps what the earlier run said.
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .unwrap();
        let mut command = Command::new(program());
        command.current_dir(self.dir.path()).env_clear();
        for keep in ["PATH", "HOME"] {
            if let Some(value) = std::env::var_os(keep) {
                command.env(keep, value);
            }
        }
        // Its environment overrides any config file; everything that matters is set here, so
        // nothing on the machine (or another test) changes what the server does.
        let port = self.port.to_string();
        let env = [
            ("HOST", "127.0.0.1"),
            ("PORT", port.as_str()),
            ("SOCKUDO_DEFAULT_APP_ENABLED", "true"),
            ("SOCKUDO_DEFAULT_APP_ID", self.app_id.as_str()),
            ("SOCKUDO_DEFAULT_APP_KEY", self.key.as_str()),
            ("SOCKUDO_DEFAULT_APP_SECRET", self.secret.as_str()),
            ("APP_MANAGER_DRIVER", "memory"),
            ("ADAPTER_DRIVER", "local"),
            ("CACHE_DRIVER", "memory"),
            // No background delivery of sockudo's own webhooks.
            ("QUEUE_DRIVER", "none"),
            // Tests send bursts on purpose; a limiter would make them flaky.
            ("RATE_LIMITER_ENABLED", "false"),
            // Each connection's outgoing queue holds 1,000 messages by default, and a client
            // that falls that far behind is disconnected ("Client buffer full ... disconnecting
            // slow consumer", sockudo-core's websocket/reference.rs): one subscriber of
            // thousands of events on a busy machine would lose events to that rather than to
            // the worker. (With 5, even 20 subscriptions' confirmations overflow it.)
            ("WEBSOCKET_MAX_MESSAGES", "1000000"),
            // Its metrics listener has a fixed port (9601): parallel servers would collide.
            ("METRICS_ENABLED", "false"),
            ("MCP_ENABLED", "false"),
            ("SSL_ENABLED", "false"),
            ("UNIX_SOCKET_ENABLED", "false"),
            ("SHUTDOWN_GRACE_PERIOD", "0"),
            ("DEBUG_MODE", "false"),
            ("LOG_COLORS_ENABLED", "false"),
        ];
        for (name, value) in env {
            command.env(name, value);
        }
        command
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        let mut child = command.spawn().expect("sockudo starts");
        let deadline = Instant::now() + Duration::from_secs(20);
        while !port_answers(self.port) {
            // Fail at once, with its log, when it stops instead of listening.
            let exited = child.try_wait().unwrap();
            assert!(
                exited.is_none() && Instant::now() < deadline,
                "sockudo did not start listening ({exited:?}):\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(25));
        }
        self.child = Some(child);
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("sockudo.log")
    }

    /// What sockudo printed, for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// Where its HTTP API is (`PUSHER_HOST`).
    pub fn host_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The worker's environment for channel `pusher` on this server.
    pub fn worker_env(&self, channel_template: &str) -> Vec<(&'static str, String)> {
        vec![
            ("PUSHER_APP_ID", self.app_id.clone()),
            ("PUSHER_KEY", self.key.clone()),
            ("PUSHER_SECRET", self.secret.clone()),
            ("PUSHER_HOST", self.host_url()),
            ("PUSHER_CHANNEL", channel_template.to_owned()),
        ]
    }

    /// Settings of channel `pusher` for this server, with `secret` (the app's, or a wrong one).
    pub fn channel_settings(
        &self,
        template: &str,
        secret: &str,
    ) -> notification_worker::delivery::pusher::PusherSettings {
        use notification_worker::delivery::template::{NameKind, OwnerTemplate};
        notification_worker::delivery::pusher::PusherSettings {
            app_id: self.app_id.clone(),
            key: self.key.clone(),
            secret: notification_worker::config::Secret::new(secret),
            base_url: url::Url::parse(&self.host_url()).unwrap(),
            channel: OwnerTemplate::parse(NameKind::PusherChannel, template).unwrap(),
            timeout: Duration::from_secs(5),
        }
    }

    /// A WebSocket client of this server's app.
    pub async fn subscriber(&self) -> Subscriber {
        Subscriber::connect(self.port, &self.key, &self.secret).await
    }

    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Sockudo {
    fn drop(&mut self) {
        self.kill();
    }
}

/// An event a subscriber received, its `data` parsed (Pusher carries it as a JSON string).
#[derive(Debug, Clone)]
pub struct Received {
    pub event: String,
    pub channel: String,
    pub data: serde_json::Value,
}

type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A Pusher protocol 7 client, as pusher-js speaks it.
pub struct Subscriber {
    socket: Socket,
    pub socket_id: String,
    key: String,
    secret: String,
}

/// The `auth` a private channel's subscription carries: `{key}:{hex HMAC-SHA256 of
/// "{socket_id}:{channel}" keyed with the secret}`, what an app's auth endpoint returns.
pub fn private_auth(key: &str, secret: &str, socket_id: &str, channel: &str) -> String {
    let signing_key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.as_bytes());
    let signature = ring::hmac::sign(&signing_key, format!("{socket_id}:{channel}").as_bytes());
    format!("{key}:{}", hex::encode(signature.as_ref()))
}

const PROTOCOL_WAIT: Duration = Duration::from_secs(10);

impl Subscriber {
    pub async fn connect(port: u16, key: &str, secret: &str) -> Subscriber {
        let url =
            format!("ws://127.0.0.1:{port}/app/{key}?protocol=7&client=notification-worker-tests&version=1");
        let (socket, _) = tokio_tungstenite::connect_async(url)
            .await
            .expect("the WebSocket connects");
        let mut subscriber = Subscriber {
            socket,
            socket_id: String::new(),
            key: key.to_owned(),
            secret: secret.to_owned(),
        };
        let established = subscriber
            .next_frame(PROTOCOL_WAIT)
            .await
            .expect("pusher:connection_established");
        assert_eq!(
            established["event"], "pusher:connection_established",
            "{established}"
        );
        let data = parse_data(&established["data"]);
        subscriber.socket_id = data["socket_id"].as_str().expect("a socket_id").to_owned();
        subscriber
    }

    /// Subscribes to `channel` (signing the subscription when it is private) and waits until
    /// the server confirms it, so that events sent afterwards are surely received.
    pub async fn subscribe(&mut self, channel: &str) {
        let mut data = serde_json::json!({ "channel": channel });
        if channel.starts_with("private-") {
            data["auth"] = private_auth(&self.key, &self.secret, &self.socket_id, channel).into();
        }
        self.send_frame(serde_json::json!({ "event": "pusher:subscribe", "data": data }))
            .await;
        let deadline = Instant::now() + PROTOCOL_WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let frame = self
                .next_frame(left)
                .await
                .unwrap_or_else(|| panic!("no answer to the subscription to {channel}"));
            match frame["event"].as_str() {
                Some("pusher_internal:subscription_succeeded") if frame["channel"] == channel => return,
                Some("pusher:subscription_error" | "pusher:error") => {
                    panic!("the subscription to {channel} was refused: {frame}")
                }
                _ => {}
            }
        }
    }

    /// The next application event (not `pusher:` or `pusher_internal:`), or `None` when
    /// none comes `within`.
    pub async fn next_event(&mut self, within: Duration) -> Option<Received> {
        let deadline = Instant::now() + within;
        loop {
            let frame = self
                .next_frame(deadline.saturating_duration_since(Instant::now()))
                .await?;
            let event = frame["event"].as_str().unwrap_or_default();
            if event.starts_with("pusher:") || event.starts_with("pusher_internal:") {
                continue;
            }
            return Some(Received {
                event: event.to_owned(),
                channel: frame["channel"].as_str().unwrap_or_default().to_owned(),
                data: parse_data(&frame["data"]),
            });
        }
    }

    /// `count` application events, failing when they do not all come `within`.
    pub async fn events(&mut self, count: usize, within: Duration) -> Vec<Received> {
        let deadline = Instant::now() + within;
        let mut received = Vec::with_capacity(count);
        while received.len() < count {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next_event(left).await {
                Some(event) => received.push(event),
                None => panic!(
                    "{} of {count} events arrived within {within:?}: {received:?}",
                    received.len()
                ),
            }
        }
        received
    }

    async fn send_frame(&mut self, frame: serde_json::Value) {
        self.socket
            .send(Message::text(frame.to_string()))
            .await
            .expect("the WebSocket takes a frame");
    }

    /// The next protocol frame, answering pings on the way; `None` at the deadline.
    async fn next_frame(&mut self, within: Duration) -> Option<serde_json::Value> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let message = tokio::time::timeout_at(deadline, self.socket.next())
                .await
                .ok()?
                .expect("the WebSocket stays open")
                .expect("the WebSocket reads");
            let Message::Text(text) = message else {
                continue;
            };
            let frame: serde_json::Value = serde_json::from_str(text.as_str()).expect("a JSON frame");
            if frame["event"] == "pusher:ping" {
                self.send_frame(serde_json::json!({ "event": "pusher:pong", "data": {} }))
                    .await;
                continue;
            }
            return Some(frame);
        }
    }
}

/// Pusher frames carry `data` as a JSON string (sometimes as an object): the value inside.
fn parse_data(data: &serde_json::Value) -> serde_json::Value {
    match data {
        serde_json::Value::String(text) => serde_json::from_str(text).unwrap_or_else(|_| data.clone()),
        other => other.clone(),
    }
}

impl Sockudo {
    /// A subscriber of `channels` that reads in the background and comes back by itself:
    /// when the server goes away it connects again (as pusher-js does) and subscribes to
    /// every channel again. Returns once the first subscriptions are confirmed.
    pub async fn audience(&self, channels: Vec<String>) -> Audience {
        let audience = Audience {
            events: Arc::default(),
            sessions: Arc::default(),
            stop: Arc::default(),
        };
        tokio::spawn(listen(
            self.port,
            self.key.clone(),
            self.secret.clone(),
            channels,
            audience.clone(),
        ));
        audience.wait_for_sessions(1, Duration::from_secs(30)).await;
        audience
    }
}

/// What an [`Sockudo::audience`] received, over every connection it made.
#[derive(Clone)]
pub struct Audience {
    events: Arc<Mutex<Vec<Received>>>,
    /// Connections on which every channel's subscription was confirmed.
    sessions: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl Audience {
    /// Every application event so far, in arrival order.
    pub fn events(&self) -> Vec<Received> {
        self.events.lock().unwrap().clone()
    }

    pub fn count(&self) -> usize {
        self.events.lock().unwrap().len()
    }

    /// How many times it was subscribed to all its channels (1 + the reconnections).
    pub fn sessions(&self) -> usize {
        self.sessions.load(Ordering::SeqCst)
    }

    pub async fn wait_for_sessions(&self, sessions: usize, within: Duration) {
        let deadline = Instant::now() + within;
        while self.sessions() < sessions {
            assert!(
                Instant::now() < deadline,
                "not subscribed {sessions} times within {within:?}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

impl Drop for Audience {
    fn drop(&mut self) {
        // The last handle (the listening task keeps one, so two are left before that).
        if Arc::strong_count(&self.stop) <= 2 {
            self.stop.store(true, Ordering::SeqCst);
        }
    }
}

/// The audience's task: connect, subscribe to everything, record events; again whenever
/// the connection ends, until the audience is dropped.
async fn listen(port: u16, key: String, secret: String, channels: Vec<String>, audience: Audience) {
    let url =
        format!("ws://127.0.0.1:{port}/app/{key}?protocol=7&client=notification-worker-tests&version=1");
    while !audience.stop.load(Ordering::SeqCst) {
        let Ok((mut socket, _)) = tokio_tungstenite::connect_async(url.as_str()).await else {
            // The server is not back yet.
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        };
        let mut confirmed = std::collections::HashSet::new();
        loop {
            let next = tokio::time::timeout(Duration::from_millis(200), socket.next()).await;
            if audience.stop.load(Ordering::SeqCst) {
                return;
            }
            let message = match next {
                Err(_) => continue,
                Ok(Some(Ok(message))) => message,
                // Closed or broken: connect again.
                Ok(Some(Err(_)) | None) => break,
            };
            let Message::Text(text) = message else {
                continue;
            };
            let Ok(frame) = serde_json::from_str::<serde_json::Value>(text.as_str()) else {
                continue;
            };
            let event = frame["event"].as_str().unwrap_or_default();
            match event {
                "pusher:connection_established" => {
                    let data = parse_data(&frame["data"]);
                    let socket_id = data["socket_id"].as_str().unwrap_or_default().to_owned();
                    // Every subscription at once: no event is missed while waiting for one.
                    for channel in &channels {
                        let mut data = serde_json::json!({ "channel": channel });
                        if channel.starts_with("private-") {
                            data["auth"] = private_auth(&key, &secret, &socket_id, channel).into();
                        }
                        let frame = serde_json::json!({ "event": "pusher:subscribe", "data": data });
                        if socket.send(Message::text(frame.to_string())).await.is_err() {
                            break;
                        }
                    }
                }
                "pusher:ping" => {
                    let pong = serde_json::json!({ "event": "pusher:pong", "data": {} });
                    let _ = socket.send(Message::text(pong.to_string())).await;
                }
                "pusher_internal:subscription_succeeded" => {
                    confirmed.insert(frame["channel"].as_str().unwrap_or_default().to_owned());
                    if confirmed.len() == channels.len() {
                        audience.sessions.fetch_add(1, Ordering::SeqCst);
                    }
                }
                "pusher:subscription_error" | "pusher:error" => {
                    panic!("sockudo refused the audience: {frame}")
                }
                _ if event.starts_with("pusher:") || event.starts_with("pusher_internal:") => {}
                _ => audience.events.lock().unwrap().push(Received {
                    event: event.to_owned(),
                    channel: frame["channel"].as_str().unwrap_or_default().to_owned(),
                    data: parse_data(&frame["data"]),
                }),
            }
        }
    }
}

/// A door in front of a server's HTTP API, for the worker: open, it passes connections
/// through to `upstream`; closed, it drops each connection at once (to the worker, a server
/// that is not there). Lets a test decide when a server back from an outage is reachable
/// again for the worker, e.g. only once its subscribers are back.
pub struct Gate {
    pub port: u16,
    open: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
}

impl Gate {
    pub fn start(upstream: u16) -> Gate {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        listener.set_nonblocking(true).unwrap();
        let open = Arc::new(AtomicBool::new(true));
        let stop = Arc::new(AtomicBool::new(false));
        let (is_open, stopped) = (Arc::clone(&open), Arc::clone(&stop));
        std::thread::spawn(move || {
            while !stopped.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((client, _)) if is_open.load(Ordering::SeqCst) => {
                        client.set_nonblocking(false).unwrap();
                        std::thread::spawn(move || pass(client, upstream));
                    }
                    Ok((client, _)) => drop(client),
                    // Polled so that the thread notices `stop`.
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Gate { port, open, stop }
    }

    pub fn open(&self) {
        self.open.store(true, Ordering::SeqCst);
    }

    /// New connections are dropped; ones already through stay until either side ends them.
    pub fn close(&self) {
        self.open.store(false, Ordering::SeqCst);
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for Gate {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

fn pass(client: TcpStream, upstream: u16) {
    let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)) else {
        return;
    };
    let copy = |mut from: TcpStream, mut to: TcpStream| {
        let _ = std::io::copy(&mut from, &mut to);
        let _ = to.shutdown(std::net::Shutdown::Both);
        let _ = from.shutdown(std::net::Shutdown::Both);
    };
    let (client_in, server_out) = (client.try_clone().unwrap(), server.try_clone().unwrap());
    let upward = std::thread::spawn(move || copy(client_in, server_out));
    copy(server, client);
    let _ = upward.join();
}
