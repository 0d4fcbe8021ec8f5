//! Test harness: private nats-server and dynalite processes on free ports, the worker
//! binary as a child process, and waiting for conditions with deadlines (never fixed sleeps).
#![allow(dead_code)] // each test binary uses a different part of the harness

pub mod aiosmtpd;
pub mod apns_server;
pub mod channel;
pub mod delay_proxy;
pub mod fcm_server;
pub mod mobile;
pub mod raw;
pub mod realtime;
pub mod sockudo;
pub mod traffic;
pub mod web_push_testing;
pub mod webhook;

use std::io::{BufRead, BufReader, Read};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const MANIFEST_DIR: &str = env!("CARGO_MANIFEST_DIR");
pub const WORKER_BIN: &str = env!("CARGO_BIN_EXE_notification-worker");

/// Dummy AWS settings. dynalite keeps tables per access key, so every process of one test
/// (the test itself and the workers it starts) must use this same key.
pub const AWS_ACCESS_KEY: &str = "notificationworkertest";
pub const AWS_SECRET_KEY: &str = "notificationworkertest";
pub const AWS_REGION: &str = "us-east-1";

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Polls `check` until it returns true or `within` passes.
pub fn wait_until(what: &str, within: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !check() {
        assert!(
            Instant::now() < deadline,
            "timed out after {within:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// Async flavour of [`wait_until`].
pub async fn eventually<F, Fut>(what: &str, within: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    while !check().await {
        assert!(
            Instant::now() < deadline,
            "timed out after {within:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

pub fn port_answers(port: u16) -> bool {
    TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_millis(200)).is_ok()
}

pub fn require_program(program: &str, how: &str) -> PathBuf {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(program))
            .find(|candidate| candidate.is_file())
    });
    found.unwrap_or_else(|| panic!("{program} is not installed: {how}"))
}

/// A private `nats-server -js` with its own store folder; stop, kill and restart keep the
/// port and the folder, so JetStream state survives like a real server restart.
pub struct NatsServer {
    pub port: u16,
    store: tempfile::TempDir,
    config: Option<PathBuf>,
    child: Option<Child>,
}

impl NatsServer {
    pub fn start() -> NatsServer {
        let mut server = NatsServer {
            port: free_port(),
            store: tempfile::tempdir().unwrap(),
            config: None,
            child: None,
        };
        server.launch();
        server
    }

    /// A server with extra configuration (authorization, tls, ...) in nats-server syntax.
    pub fn start_with_config(config: &str) -> NatsServer {
        let store = tempfile::tempdir().unwrap();
        let path = store.path().join("server.conf");
        std::fs::write(&path, config).unwrap();
        let mut server = NatsServer {
            port: free_port(),
            store,
            config: Some(path),
            child: None,
        };
        server.launch();
        server
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// The server's process id while it runs (the benchmark reads its CPU time).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    fn launch(&mut self) {
        let program = require_program(
            "nats-server",
            "run scripts/test-deps.sh (or apt-get install nats-server)",
        );
        let mut command = Command::new(program);
        command
            .args(["-js", "-a", "127.0.0.1", "-p", &self.port.to_string(), "-sd"])
            .arg(self.store.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Some(config) = &self.config {
            command.arg("-c").arg(config);
        }
        self.child = Some(command.spawn().expect("nats-server starts"));
        let port = self.port;
        wait_until(
            "nats-server to accept connections",
            Duration::from_secs(15),
            || port_answers(port),
        );
    }

    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            signal(&child, "TERM");
            let _ = child.wait();
        }
    }

    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn restart(&mut self) {
        self.stop();
        self.launch();
    }

    pub async fn client(&self) -> async_nats::Client {
        async_nats::connect(self.url())
            .await
            .expect("test client connects")
    }

    pub async fn jetstream(&self) -> async_nats::jetstream::Context {
        async_nats::jetstream::new(self.client().await)
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A JetStream cluster of private `nats-server -js` nodes (cluster `notification-test`),
/// routed to each other on loopback ports, each with its own store folder. Each node is a
/// [`NatsServer`], so it can be killed and restarted the same way.
pub struct NatsCluster {
    pub nodes: Vec<NatsServer>,
}

impl NatsCluster {
    pub fn start(size: usize) -> NatsCluster {
        let route_ports: Vec<u16> = (0..size).map(|_| free_port()).collect();
        let routes = route_ports
            .iter()
            .map(|port| format!("\"nats-route://127.0.0.1:{port}\""))
            .collect::<Vec<_>>()
            .join(", ");
        let nodes = route_ports
            .iter()
            .enumerate()
            .map(|(index, port)| {
                NatsServer::start_with_config(&format!(
                    "server_name: {}\ncluster {{\n  name: notification-test\n  listen: \"127.0.0.1:{port}\"\n  routes: [{routes}]\n}}\n",
                    NatsCluster::node_name(index)
                ))
            })
            .collect();
        NatsCluster { nodes }
    }

    /// The `server_name` of node `index`, as stream and consumer info report leaders.
    pub fn node_name(index: usize) -> String {
        format!("node-{index}")
    }

    /// Every node's URL, comma-separated, as `NATS_URL` takes them.
    pub fn urls(&self) -> String {
        self.nodes
            .iter()
            .map(NatsServer::url)
            .collect::<Vec<_>>()
            .join(",")
    }

    /// A client that knows every node, so it reconnects to a survivor.
    pub async fn client(&self) -> async_nats::Client {
        let addresses: Vec<async_nats::ServerAddr> = self
            .nodes
            .iter()
            .map(|node| node.url().parse().unwrap())
            .collect();
        async_nats::ConnectOptions::new()
            .retry_on_initial_connect()
            .connect(addresses)
            .await
            .expect("test client connects")
    }

    pub async fn jetstream(&self) -> async_nats::jetstream::Context {
        async_nats::jetstream::new(self.client().await)
    }
}

/// A private dynalite (DynamoDB-compatible) server, pinned in tests/dynalite. On disk
/// (`start_on_disk`) it keeps its tables across `stop` and `restart`.
pub struct Dynalite {
    pub port: u16,
    data: Option<tempfile::TempDir>,
    max_item_kib: Option<f64>,
    child: Option<Child>,
}

impl Dynalite {
    pub fn start() -> Dynalite {
        Dynalite::launch(None)
    }

    pub fn start_on_disk() -> Dynalite {
        Dynalite::launch(Some(tempfile::tempdir().unwrap()))
    }

    /// A server that refuses items over `kib` KiB (DynamoDB's limit is 400), to make the
    /// store reject one item for good.
    pub fn start_with_max_item_size(kib: f64) -> Dynalite {
        let mut server = Dynalite {
            port: free_port(),
            data: None,
            max_item_kib: Some(kib),
            child: None,
        };
        server.spawn();
        server
    }

    fn launch(data: Option<tempfile::TempDir>) -> Dynalite {
        let mut server = Dynalite {
            port: free_port(),
            data,
            max_item_kib: None,
            child: None,
        };
        server.spawn();
        server
    }

    fn spawn(&mut self) {
        let node = require_program("node", "install Node.js 20 (apt-get install nodejs npm)");
        let cli = Path::new(MANIFEST_DIR).join("tests/dynalite/node_modules/dynalite/cli.js");
        assert!(
            cli.is_file(),
            "dynalite is not installed: run scripts/test-deps.sh (npm ci in tests/dynalite)"
        );
        let mut command = Command::new(node);
        command
            .arg(cli)
            .args(["--host", "127.0.0.1", "--port", &self.port.to_string()])
            .args([
                "--createTableMs",
                "0",
                "--deleteTableMs",
                "0",
                "--updateTableMs",
                "0",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Some(data) = &self.data {
            command.arg("--path").arg(data.path());
        }
        if let Some(kib) = self.max_item_kib {
            command.args(["--maxItemSizeKb", &kib.to_string()]);
        }
        self.child = Some(command.spawn().expect("dynalite starts"));
        let port = self.port;
        wait_until("dynalite to accept connections", Duration::from_secs(20), || {
            port_answers(port)
        });
    }

    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            signal(&child, "TERM");
            let _ = child.wait();
        }
        let port = self.port;
        wait_until("dynalite to stop", Duration::from_secs(10), || {
            !port_answers(port)
        });
    }

    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub async fn sdk_config(&self) -> aws_config::SdkConfig {
        let credentials =
            aws_sdk_dynamodb::config::Credentials::new(AWS_ACCESS_KEY, AWS_SECRET_KEY, None, None, "tests");
        aws_config::defaults(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new(AWS_REGION))
            .endpoint_url(self.endpoint())
            .credentials_provider(credentials)
            .load()
            .await
    }

    /// A store talking to this server, for checks from the test itself.
    pub async fn store(&self, table: &str) -> notification_worker::store::DynamoDbStore {
        notification_worker::store::DynamoDbStore::with_config(&self.sdk_config().await, table)
    }

    /// What a worker process needs to reach this server.
    pub fn worker_env(&self, table: &str) -> Vec<(&'static str, String)> {
        vec![
            ("NOTIF_STORE", "dynamodb".into()),
            ("NOTIF_TABLE_NAME", table.into()),
            ("AWS_REGION", AWS_REGION.into()),
            ("AWS_ACCESS_KEY_ID", AWS_ACCESS_KEY.into()),
            ("AWS_SECRET_ACCESS_KEY", AWS_SECRET_KEY.into()),
            ("AWS_ENDPOINT_URL_DYNAMODB", self.endpoint()),
            ("AWS_EC2_METADATA_DISABLED", "true".into()),
        ]
    }
}

impl Drop for Dynalite {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

pub fn signal(child: &Child, name: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(child.id().to_string())
        .status();
}

/// The worker binary, run as a user would, with JSON logs collected for assertions.
pub struct Worker {
    child: Option<Child>,
    lines: Arc<Mutex<Vec<String>>>,
    pub dir: PathBuf,
}

/// Environment for a worker: nothing from the machine but PATH and HOME, so the test sees
/// exactly the configuration it sets.
pub fn base_env(nats: &NatsServer, dir: &Path) -> Vec<(&'static str, String)> {
    vec![
        ("NATS_URL", nats.url()),
        (
            "NOTIF_SQLITE_PATH",
            dir.join("notifications.db").display().to_string(),
        ),
        ("HTTP_ADDR", "off".into()),
        ("LOG_FORMAT", "json".into()),
        ("LOG_LEVEL", "info".into()),
    ]
}

pub fn command(dir: &Path, env: &[(&'static str, String)]) -> Command {
    command_for(Path::new(WORKER_BIN), dir, env)
}

/// [`command`] for another build of the worker (the benchmark compares with a baseline).
pub fn command_for(program: &Path, dir: &Path, env: &[(&'static str, String)]) -> Command {
    let mut command = Command::new(program);
    command.current_dir(dir).env_clear();
    for keep in ["PATH", "HOME"] {
        if let Some(value) = std::env::var_os(keep) {
            command.env(keep, value);
        }
    }
    for (name, value) in env {
        command.env(name, value);
    }
    command
}

impl Worker {
    pub fn start(dir: &Path, env: &[(&'static str, String)]) -> Worker {
        let mut command = command(dir, env);
        command.arg("run");
        Worker::start_command(command, dir)
    }

    /// [`Worker::start`] for any command that runs the worker (a wrapper script, say):
    /// its output is collected and the call returns once the worker logged "worker started".
    pub fn start_command(mut command: Command, dir: &Path) -> Worker {
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("worker starts");
        let lines = Arc::new(Mutex::new(Vec::new()));
        for stream in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let lines = Arc::clone(&lines);
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    lines.lock().unwrap().push(line);
                }
            });
        }
        let mut worker = Worker {
            child: Some(child),
            lines,
            dir: dir.to_owned(),
        };
        // Fail at once, with its logs, when the worker stops instead of starting.
        let deadline = Instant::now() + Duration::from_secs(30);
        while !worker.logs().iter().any(|line| line.contains("worker started")) {
            assert!(
                worker.is_running() && Instant::now() < deadline,
                "the worker did not start:\n{}",
                worker.logs().join("\n")
            );
            std::thread::sleep(Duration::from_millis(25));
        }
        worker
    }

    pub fn logs(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    /// JSON log events (lines that are not JSON are skipped).
    pub fn events(&self) -> Vec<serde_json::Value> {
        self.logs()
            .iter()
            .filter_map(|line| serde_json::from_str(line).ok())
            .collect()
    }

    /// How many events ended with this outcome (created, duplicate, removed, ...).
    pub fn count(&self, outcome: &str) -> usize {
        self.events()
            .iter()
            .filter(|event| event["outcome"] == outcome)
            .count()
    }

    /// The outcome logged for a stream sequence: `created`, `duplicate`, ..., or
    /// `invalid:<reason>` / `dead_lettered:<reason>` for rejected events.
    pub fn outcome_of(&self, stream_seq: u64) -> Option<String> {
        self.events()
            .iter()
            .find(|event| event["stream_seq"] == stream_seq && event["outcome"].is_string())
            .map(|event| {
                let outcome = event["outcome"].as_str().unwrap_or_default();
                match event["reason"].as_str() {
                    Some(reason) => format!("{outcome}:{reason}"),
                    None => outcome.to_owned(),
                }
            })
    }

    pub fn wait_for_log(&self, needle: &str, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            if self.logs().iter().any(|line| line.contains(needle)) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {needle:?} in the worker's logs:\n{}",
                self.logs().join("\n")
            );
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// SIGTERM, then the exit status (the test fails if it takes longer than `within`).
    pub fn terminate(&mut self, within: Duration) -> ExitStatus {
        self.stop_with("TERM", within)
    }

    /// Sends the signal `name` (`TERM`, `INT`, ...), then the exit status (the test fails if
    /// it takes longer than `within`).
    pub fn stop_with(&mut self, name: &str, within: Duration) -> ExitStatus {
        signal(self.child.as_ref().expect("worker running"), name);
        self.wait_for_exit(&format!("SIG{name}"), within)
    }

    /// The exit status once the process has exited (after `cause`, e.g. a signal sent some
    /// other way); the test fails if it takes longer than `within`.
    pub fn wait_for_exit(&mut self, cause: &str, within: Duration) -> ExitStatus {
        let mut child = self.child.take().expect("worker running");
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!(
                    "worker did not exit within {within:?} of {cause}:\n{}",
                    self.logs().join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The process id of what was started (the worker, or the command that runs it).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("worker running").id()
    }

    /// True while the process has not exited.
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|child| child.try_wait().unwrap().is_none())
    }

    /// SIGKILL: no chance to ack or flush anything.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Publishes and waits for the stream's ack; returns the stream sequence.
pub async fn publish(
    js: &async_nats::jetstream::Context,
    subject: &str,
    body: impl Into<bytes::Bytes>,
) -> u64 {
    js.publish(subject.to_owned(), body.into())
        .await
        .unwrap()
        .await
        .unwrap()
        .sequence
}

/// The NOTIFICATIONS stream, created the simplest way (the worker uses it as it is).
pub async fn create_stream(js: &async_nats::jetstream::Context) -> async_nats::jetstream::stream::Stream {
    js.get_or_create_stream(async_nats::jetstream::stream::Config {
        name: "NOTIFICATIONS".into(),
        subjects: vec!["notifications.>".into()],
        // As `setup` makes it: tombstones must outlive what the stream keeps.
        max_age: Duration::from_secs(7 * 24 * 60 * 60),
        ..Default::default()
    })
    .await
    .unwrap()
}

/// Creates the stream and consumer the way `setup` does, but with a short AckWait so that
/// redeliveries after a crash happen within the test's time (an existing consumer is used
/// unchanged by the worker).
pub async fn create_consumer_with_ack_wait(nats: &NatsServer, ack_wait: Duration) {
    use async_nats::jetstream::consumer;
    let stream = create_stream(&nats.jetstream().await).await;
    stream
        .create_consumer(consumer::pull::Config {
            durable_name: Some("notification-worker".into()),
            filter_subject: "notifications.>".into(),
            ack_policy: consumer::AckPolicy::Explicit,
            ack_wait,
            max_ack_pending: 20_000,
            ..Default::default()
        })
        .await
        .unwrap();
}

/// The worker's durable consumer, as `setup` creates it.
pub async fn worker_consumer(
    js: &async_nats::jetstream::Context,
) -> async_nats::jetstream::consumer::PullConsumer {
    js.get_stream("NOTIFICATIONS")
        .await
        .unwrap()
        .get_consumer("notification-worker")
        .await
        .unwrap()
}

/// The consumer's (pending, ack pending) counts.
pub async fn consumer_backlog(nats: &NatsServer) -> (u64, usize) {
    let mut consumer = worker_consumer(&nats.jetstream().await).await;
    let info = consumer.info().await.unwrap();
    (info.num_pending, info.num_ack_pending)
}

/// Row count and other reads straight from the SQLite file the worker writes.
pub fn sqlite(dir: &Path) -> rusqlite::Connection {
    rusqlite::Connection::open(dir.join("notifications.db")).unwrap()
}

pub fn count_rows(dir: &Path) -> i64 {
    let path = dir.join("notifications.db");
    if !path.exists() {
        return 0;
    }
    sqlite(dir)
        .query_row("SELECT COUNT(*) FROM notifications", [], |row| row.get(0))
        .unwrap_or(0)
}

/// Runs `notification-worker setup` in `dir` with `env`; asserts it succeeded and returns
/// what it printed.
pub fn run_setup(dir: &Path, env: &[(&'static str, String)]) -> String {
    let output = command(dir, env).arg("setup").output().unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// A valid like event body for (owner, trigger, resource).
pub fn like(owner: &str, trigger: &str, resource: &str) -> String {
    format!(
        r#"{{"owner":"{owner}","trigger_user":"{trigger}","username":"Test User","action":1,"resource_type":"POST","resource_id":"{resource}","created_at":1765318000}}"#
    )
}

/// The unlike of [`like`]'s key: the same body (the subject says it is a remove).
pub fn unlike(owner: &str, trigger: &str, resource: &str) -> String {
    like(owner, trigger, resource)
}

/// Publishes `count` likes of `post-1` for `owner`, from `fan-0`, `fan-1`, ..., one at a time.
pub async fn publish_likes(js: &async_nats::jetstream::Context, owner: &str, count: usize) {
    for i in 0..count {
        publish(
            js,
            "notifications.post.like",
            like(owner, &format!("fan-{i}"), "post-1"),
        )
        .await;
    }
}

/// The shared sample events (../shared/events beside the repository).
pub fn shared_events() -> PathBuf {
    let dir = Path::new(MANIFEST_DIR).join("../shared/events");
    assert!(
        dir.is_dir(),
        "the sample events are missing: expected {}",
        dir.display()
    );
    dir
}

/// Every message in the dead-letter stream, oldest first (empty when it does not exist).
pub async fn dead_letters(nats: &NatsServer) -> Vec<async_nats::jetstream::message::StreamMessage> {
    let js = nats.jetstream().await;
    let Ok(mut stream) = js.get_stream("NOTIFICATIONS_DLQ").await else {
        return Vec::new();
    };
    let state = stream.info().await.unwrap().state.clone();
    let mut letters = Vec::new();
    if state.messages == 0 {
        return letters;
    }
    for sequence in state.first_sequence..=state.last_sequence {
        if let Ok(message) = stream.get_raw_message(sequence).await {
            letters.push(message);
        }
    }
    letters
}

pub fn header(message: &async_nats::jetstream::message::StreamMessage, name: &str) -> String {
    message
        .headers
        .get(name)
        .map(|value| value.to_string())
        .unwrap_or_default()
}

/// Publishes `count` likes with distinct keys, as fast as the stream acknowledges them: each
/// from a trigger user of its own, to 97 owners, all of each owner's `post-1`.
pub async fn publish_backlog(js: &async_nats::jetstream::Context, count: usize) {
    publish_backlog_of(js, count, |_| "post-1".to_owned()).await;
}

/// [`publish_backlog`] with the `i`th like on `post(i)`.
pub async fn publish_backlog_of(
    js: &async_nats::jetstream::Context,
    count: usize,
    post: impl Fn(usize) -> String,
) {
    let likes = (0..count).map(|i| {
        let body = like(&format!("owner-{}", i % 97), &format!("fan-{i}"), &post(i));
        ("notifications.post.like", body)
    });
    publish_all(js, likes).await;
}

/// Publishes each (subject, body) in order, up to 1,000 acknowledgements outstanding.
pub async fn publish_all(
    js: &async_nats::jetstream::Context,
    events: impl IntoIterator<Item = (&'static str, String)>,
) {
    let mut pending = Vec::with_capacity(1000);
    for (subject, body) in events {
        pending.push(js.publish(subject, body.into()).await.unwrap());
        if pending.len() == 1000 {
            for ack in pending.drain(..) {
                ack.await.unwrap();
            }
        }
    }
    for ack in pending {
        ack.await.unwrap();
    }
}

/// (owner, action_key) → id of every notification in the SQLite file.
pub fn stored_ids(dir: &Path) -> std::collections::HashMap<(String, String), String> {
    let connection = sqlite(dir);
    let mut statement = connection
        .prepare("SELECT owner, action_key, id FROM notifications")
        .unwrap();
    statement
        .query_map([], |row| Ok(((row.get(0)?, row.get(1)?), row.get(2)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

pub fn distinct_ids(dir: &std::path::Path) -> usize {
    let connection = sqlite(dir);
    let mut statement = connection.prepare("SELECT id FROM notifications").unwrap();
    let ids: std::collections::HashSet<String> = statement
        .query_map([], |row| row.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    ids.len()
}

/// A plain HTTP/1.0 GET: (status code, body).
pub fn http_get(addr: &str, path: &str) -> (u16, String) {
    use std::io::Write;
    let mut stream = TcpStream::connect(addr).expect("the HTTP listener answers");
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(stream, "GET {path} HTTP/1.0\r\nHost: test\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default();
    (status, body)
}

impl Worker {
    /// The address the HTTP listener bound (start the worker with HTTP_ADDR=127.0.0.1:0).
    pub fn http_addr(&self) -> String {
        self.wait_for_log("serving /healthz", Duration::from_secs(10));
        self.events()
            .iter()
            .find_map(|event| event["bound"].as_str().map(str::to_owned))
            .expect("the bound address is logged")
    }
}

/// The worker's environment with the HTTP listener on a free port (see `Worker::http_addr`).
pub fn with_http(mut env: Vec<(&'static str, String)>) -> Vec<(&'static str, String)> {
    env.retain(|(name, _)| *name != "HTTP_ADDR");
    env.push(("HTTP_ADDR", "127.0.0.1:0".into()));
    env
}

/// One series' value in a /metrics text, e.g. `metric(&text, "notification_worker_ready")`.
pub fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find(|line| line.starts_with(series) && line[series.len()..].starts_with(' '))
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|value| value.parse().ok())
}

/// Runs the worker until it exits by itself (a refusal at start); the test fails if it is
/// still running after `within`. Returns (exit code, stderr).
pub fn run_until_exit(dir: &Path, env: &[(&'static str, String)], within: Duration) -> (i32, String) {
    let mut child = command(dir, env)
        .arg("run")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("worker starts");
    let mut stderr = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let deadline = Instant::now() + within;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the worker was still running after {within:?}: it should have refused to start");
        }
        std::thread::sleep(Duration::from_millis(25));
    };
    (status.code().unwrap_or(-1), reader.join().unwrap())
}

/// A TCP proxy on a free port that holds every chunk sent towards `upstream` for `delay`
/// before passing it on: a slow network or a slow store, emulated without touching the
/// server. Answers flow back at once. Stops accepting when dropped.
pub struct DelayingProxy {
    pub port: u16,
    stop: Arc<std::sync::atomic::AtomicBool>,
    /// The delay in milliseconds, changeable while the proxy runs (see `set_delay`).
    delay_ms: Arc<std::sync::atomic::AtomicU64>,
}

impl DelayingProxy {
    pub fn start(upstream: u16, delay: Duration) -> DelayingProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        listener.set_nonblocking(true).unwrap();
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stopped = Arc::clone(&stop);
        let delay_ms = Arc::new(std::sync::atomic::AtomicU64::new(delay.as_millis() as u64));
        let delays = Arc::clone(&delay_ms);
        std::thread::spawn(move || {
            while !stopped.load(std::sync::atomic::Ordering::Relaxed) {
                match listener.accept() {
                    Ok((client, _)) => {
                        client.set_nonblocking(false).unwrap();
                        let delays = Arc::clone(&delays);
                        std::thread::spawn(move || relay(client, upstream, delays));
                    }
                    // Polled so that the thread notices `stop`.
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        DelayingProxy { port, stop, delay_ms }
    }

    /// From now on, chunks are held this long (a chunk already held keeps its delay).
    pub fn set_delay(&self, delay: Duration) {
        self.delay_ms
            .store(delay.as_millis() as u64, std::sync::atomic::Ordering::Relaxed);
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for DelayingProxy {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

fn relay(client: TcpStream, upstream: u16, delay_ms: Arc<std::sync::atomic::AtomicU64>) {
    let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)) else {
        return;
    };
    let copy =
        |mut from: TcpStream, mut to: TcpStream, delay_ms: Option<Arc<std::sync::atomic::AtomicU64>>| {
            use std::io::Write;
            let mut buffer = [0u8; 16 * 1024];
            loop {
                match from.read(&mut buffer) {
                    Ok(0) | Err(_) => {
                        let _ = to.shutdown(std::net::Shutdown::Write);
                        return;
                    }
                    Ok(n) => {
                        if let Some(delay_ms) = &delay_ms {
                            let delay = delay_ms.load(std::sync::atomic::Ordering::Relaxed);
                            std::thread::sleep(Duration::from_millis(delay));
                        }
                        if to.write_all(&buffer[..n]).is_err() {
                            return;
                        }
                    }
                }
            }
        };
    let (client_in, server_out) = (client.try_clone().unwrap(), server.try_clone().unwrap());
    let upward = std::thread::spawn(move || copy(client_in, server_out, Some(delay_ms)));
    copy(server, client, None);
    let _ = upward.join();
}

/// Every `notification_worker_...` name in a text (a scrape, an alert file, a dashboard).
pub fn metric_names(text: &str) -> std::collections::BTreeSet<String> {
    let mut names = std::collections::BTreeSet::new();
    let mut rest = text;
    while let Some(start) = rest.find("notification_worker_") {
        let name: String = rest[start..]
            .chars()
            .take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_')
            .collect();
        rest = &rest[start + name.len()..];
        names.insert(name);
    }
    names
}

/// Waits until a fresh digest window of `window` has just begun, so that what the test
/// publishes next falls into one window (windows are fixed stretches of the clock).
pub fn at_window_start(window: Duration) {
    let window_ms = window.as_millis();
    wait_until("a digest window to begin", window * 2, || {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis();
        now % window_ms < 300
    });
}
