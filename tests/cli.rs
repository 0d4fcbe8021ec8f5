//! The command line as a user meets it: configuration errors, publish, feed, help.

mod support;

use std::io::Write;
use std::process::Stdio;
use std::time::Duration;
use support::*;

fn run_with(env: &[(&'static str, String)], args: &[&str]) -> std::process::Output {
    let dir = tempfile::tempdir().unwrap();
    command(dir.path(), env).args(args).output().unwrap()
}

/// The worker's environment for `dir`, after an operator's `setup` against `nats`.
fn set_up(nats: &NatsServer, dir: &std::path::Path) -> Vec<(&'static str, String)> {
    let env = base_env(nats, dir);
    run_setup(dir, &env);
    env
}

#[test]
fn a_bad_setting_exits_2_with_one_line_naming_it() {
    let cases: &[(&'static str, &str)] = &[
        ("WORKER_CONCURRENCY", "lots"),
        ("NATS_MODE", "push"),
        ("NOTIF_STORE", "redis"),
        ("HTTP_ADDR", "8080"),
        ("ENVIRONMENT", "staging"),
        ("LOG_LEVEL", "info,=[bad"),
        ("NATS_URL", "nats://a:4222,,"),
        ("NOTIF_TOMBSTONE_TTL", "a week"),
        ("NOTIFY_DEFAULTS", "email=sometimes"),
    ];
    for (variable, value) in cases {
        let output = run_with(&[(variable, value.to_string())], &["run"]);
        assert_eq!(output.status.code(), Some(2), "{variable}={value}");
        let stderr = String::from_utf8(output.stderr).unwrap();
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(
            stderr.contains(variable) && stderr.contains("example:"),
            "{stderr}"
        );
    }
}

#[test]
fn production_without_an_explicit_store_is_a_configuration_error() {
    let output = run_with(&[("ENVIRONMENT", "production".into())], &["run"]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(
        stderr.contains("NOTIF_STORE") && stderr.contains("production"),
        "{stderr}"
    );
}

#[test]
fn flags_work_like_variables() {
    let output = run_with(&[], &["--worker-concurrency", "0", "run"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        String::from_utf8(output.stderr)
            .unwrap()
            .contains("WORKER_CONCURRENCY")
    );
}

#[test]
fn an_unreachable_nats_is_a_clear_error() {
    let port = free_port();
    let output = run_with(&[("NATS_URL", format!("nats://127.0.0.1:{port}"))], &["setup"]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(
        stderr.contains("cannot connect to NATS") && stderr.contains(&port.to_string()),
        "{stderr}"
    );
}

#[test]
fn help_lists_the_commands() {
    let output = run_with(&[], &["--help"]);
    assert!(output.status.success());
    let help = String::from_utf8(output.stdout).unwrap();
    for word in [
        "run",
        "setup",
        "publish",
        "feed",
        "recipient",
        "NATS_URL",
        "NOTIF_STORE",
        "WORKER_CONCURRENCY",
    ] {
        assert!(help.contains(word), "--help does not mention {word}:\n{help}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_takes_json_a_file_or_stdin_and_prints_the_sequence() {
    let nats = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let env = base_env(&nats, dir.path());
    run_setup(dir.path(), &env);

    let inline = command(dir.path(), &env)
        .args([
            "publish",
            "notifications.post.like",
            &like("user-1", "user-2", "post-1"),
        ])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8(inline.stdout).unwrap().trim(), "1");

    let file = shared_events().join("valid/notifications.post.like--created.json");
    let from_file = command(dir.path(), &env)
        .args([
            "publish",
            "notifications.post.like",
            &format!("@{}", file.display()),
        ])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8(from_file.stdout).unwrap().trim(), "2");

    let mut from_stdin = command(dir.path(), &env)
        .args(["publish", "notifications.post.like", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    from_stdin
        .stdin
        .take()
        .unwrap()
        .write_all(like("user-1", "user-3", "post-1").as_bytes())
        .unwrap();
    let output = from_stdin.wait_with_output().unwrap();
    assert_eq!(String::from_utf8(output.stdout).unwrap().trim(), "3");

    let missing = command(dir.path(), &env)
        .args(["publish", "notifications.post.like", "@/nope.json"])
        .output()
        .unwrap();
    assert!(
        String::from_utf8(missing.stderr)
            .unwrap()
            .contains("cannot read the event from /nope.json")
    );

    // Published events wait in the stream; a worker started now stores them.
    let worker = Worker::start(dir.path(), &env);
    wait_until("three events", Duration::from_secs(30), || {
        worker.count("created") == 3
    });
    let feed = command(dir.path(), &env)
        .args(["feed", "user-123"])
        .output()
        .unwrap();
    let text = String::from_utf8(feed.stdout).unwrap();
    assert!(
        text.contains("user-456 (John Doe)  like post  POST post-789  [unread]"),
        "{text}"
    );
    let limited = command(dir.path(), &env)
        .args(["feed", "user-1", "--limit", "1", "--json"])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8(limited.stdout).unwrap().lines().count(), 1);
}

/// Tombstones must outlive every event that can still arrive: a stream that keeps messages
/// longer than NOTIF_TOMBSTONE_TTL (or forever) is refused at start with the fix named.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tombstone_lifetime_shorter_than_a_stream_keeps_events_is_refused() {
    let nats = NatsServer::start();
    let js = nats.jetstream().await;
    js.create_stream(async_nats::jetstream::stream::Config {
        name: "NOTIFICATIONS".into(),
        subjects: vec!["notifications.>".into()],
        max_age: Duration::from_secs(10 * 24 * 60 * 60),
        ..Default::default()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut env = base_env(&nats, dir.path());
    env.push(("NOTIF_TOMBSTONE_TTL", "7d".into()));
    let output = command(dir.path(), &env).arg("run").output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("NOTIFICATIONS keeps messages 10.0 days")
            && stderr.contains("NOTIF_TOMBSTONE_TTL to at least 10d"),
        "{stderr}"
    );

    // A dead-letter stream from an earlier release keeps everything forever.
    js.delete_stream("NOTIFICATIONS_DLQ").await.ok();
    js.create_stream(async_nats::jetstream::stream::Config {
        name: "NOTIFICATIONS_DLQ".into(),
        subjects: vec!["dlq.notifications.>".into()],
        ..Default::default()
    })
    .await
    .unwrap();
    env.push(("NOTIF_TOMBSTONE_TTL", "30d".into()));
    let output = command(dir.path(), &env).arg("run").output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("NOTIFICATIONS_DLQ keeps messages forever") && stderr.contains("--max-age"),
        "{stderr}"
    );

    env.push(("NOTIF_TOMBSTONE_TTL", "forever".into()));
    let worker = Worker::start(dir.path(), &env);
    drop(worker);
}

// ---- Errors a person can act on -------------------------------------------------------

/// The environment of a machine with no AWS credentials anywhere: no variables, an empty
/// home (no ~/.aws), no instance metadata to wait on.
fn without_aws_credentials(home: &std::path::Path, endpoint: String) -> Vec<(&'static str, String)> {
    // Empty files, not missing ones: the SDK warns about a configured file it cannot find.
    std::fs::write(home.join("config"), "").unwrap();
    std::fs::write(home.join("credentials"), "").unwrap();
    vec![
        ("NOTIF_STORE", "dynamodb".into()),
        ("NOTIF_TABLE_NAME", "cli-test".into()),
        ("AWS_REGION", AWS_REGION.into()),
        ("AWS_ENDPOINT_URL_DYNAMODB", endpoint),
        ("AWS_EC2_METADATA_DISABLED", "true".into()),
        ("HOME", home.display().to_string()),
        ("AWS_CONFIG_FILE", home.join("config").display().to_string()),
        (
            "AWS_SHARED_CREDENTIALS_FILE",
            home.join("credentials").display().to_string(),
        ),
    ]
}

/// What no error message may hold: the Debug form of the SDK's structs.
fn assert_no_debug_dump(stderr: &str) {
    for sign in [
        "Error {",
        "source:",
        "ConstructionFailure",
        "DispatchFailure",
        "{ kind",
        "Some(",
    ] {
        assert!(!stderr.contains(sign), "a Debug dump ({sign}):\n{stderr}");
    }
}

#[test]
fn dynamodb_without_credentials_says_how_to_provide_them_and_exits_2() {
    let dynalite = Dynalite::start();
    let nats = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let home = tempfile::tempdir().unwrap();
    let env = [
        base_env(&nats, dir.path()),
        without_aws_credentials(home.path(), dynalite.endpoint()),
    ]
    .concat();
    // `setup`, and the startup check of `run` (development creates the table first;
    // production probes it).
    let production = [env.clone(), vec![("ENVIRONMENT", "production".into())]].concat();
    for (command_line, env) in [(&["setup"], &env), (&["run"], &env), (&["run"], &production)] {
        let output = command(dir.path(), env).args(command_line).output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{command_line:?}: {stderr}");
        for needed in [
            "no AWS credentials",
            "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY",
            "AWS_PROFILE",
            "IAM role",
            "configuration",
        ] {
            assert!(
                stderr.contains(needed),
                "{command_line:?} lacks {needed:?}:\n{stderr}"
            );
        }
        assert!(!stderr.contains("transient store error"), "{stderr}");
        assert_no_debug_dump(&stderr);
    }
}

#[test]
fn an_unreachable_dynamodb_names_the_endpoint_and_the_variable() {
    let nats = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let endpoint = format!("http://127.0.0.1:{}", free_port());
    let mut env = base_env(&nats, dir.path());
    env.extend([
        ("NOTIF_STORE", "dynamodb".into()),
        ("AWS_REGION", AWS_REGION.into()),
        ("AWS_ACCESS_KEY_ID", AWS_ACCESS_KEY.into()),
        ("AWS_SECRET_ACCESS_KEY", AWS_SECRET_KEY.into()),
        ("AWS_ENDPOINT_URL_DYNAMODB", endpoint.clone()),
        ("AWS_EC2_METADATA_DISABLED", "true".into()),
    ]);
    let output = command(dir.path(), &env).arg("setup").output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&endpoint)
            && stderr.contains("AWS_ENDPOINT_URL_DYNAMODB")
            && stderr.contains("refused"),
        "{stderr}"
    );
    assert_no_debug_dump(&stderr);
}

#[test]
fn a_fatal_error_is_printed_once() {
    let port = free_port();
    let output = run_with(&[("NATS_URL", format!("nats://127.0.0.1:{port}"))], &["setup"]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert_eq!(
        stderr.matches("cannot connect to NATS").count(),
        1,
        "printed more than once:\n{stderr}"
    );
}

#[test]
fn a_nats_url_that_is_not_a_url_is_a_configuration_error() {
    for value in ["not-a-url", "http://127.0.0.1:4222", "nats://"] {
        let output = run_with(&[("NATS_URL", value.to_string())], &["setup"]);
        let stderr = String::from_utf8(output.stderr).unwrap();
        assert_eq!(output.status.code(), Some(2), "NATS_URL={value}: {stderr}");
        assert!(
            stderr.starts_with("error: NATS_URL=") && stderr.contains("example: NATS_URL=nats://"),
            "{stderr}"
        );
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purging_without_yes_is_a_usage_error() {
    let nats = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let env = set_up(&nats, dir.path());
    let output = command(dir.path(), &env).args(["dlq", "purge"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("--yes"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishing_outside_the_workers_subjects_is_a_usage_error() {
    let nats = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let env = set_up(&nats, dir.path());
    for subject in [
        "orders.created",
        "notifications.post.*",
        "dlq.notifications.post.like",
    ] {
        let output = command(dir.path(), &env)
            .args(["publish", subject, &like("user-1", "user-2", "post-1")])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{subject}: {stderr}");
        assert!(stderr.contains("not under notifications."), "{stderr}");
    }
}

/// Puts one dead letter in NOTIFICATIONS_DLQ, as the worker writes them.
async fn a_dead_letter(nats: &NatsServer, body: &str) {
    let js = nats.jetstream().await;
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Dlq-Reason", "invalid_field");
    headers.insert("Dlq-Error", "owner: must not be empty");
    headers.insert("Dlq-Original-Subject", "notifications.post.like");
    headers.insert("Dlq-Original-Sequence", "7");
    headers.insert("Dlq-Original-Version", "1765318000000000000000000000000000007");
    headers.insert("Dlq-Attempts", "3");
    js.publish_with_headers("dlq.notifications.post.like", headers, body.to_owned().into())
        .await
        .unwrap()
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dlq_replay_with_nothing_to_replay_says_so() {
    let nats = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let env = set_up(&nats, dir.path());
    let output = command(dir.path(), &env)
        .args(["dlq", "replay", "--all"])
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
    );
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("nothing to replay: NOTIFICATIONS_DLQ holds no dead letters"),
        "{stderr}"
    );
    assert!(!stdout.contains("replayed 0"), "{stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counts_of_one_are_singular() {
    let nats = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let env = set_up(&nats, dir.path());
    a_dead_letter(&nats, r#"{"owner":""}"#).await;
    let replay = command(dir.path(), &env)
        .args(["dlq", "replay", "--all"])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&replay.stdout),
        "replayed 1 dead letter\n"
    );
    a_dead_letter(&nats, r#"{"owner":""}"#).await;
    let purge = command(dir.path(), &env)
        .args(["dlq", "purge", "--yes"])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&purge.stdout), "purged 1 dead letter\n");
}

// ---- The command line ------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_refuses_a_body_that_is_not_json_unless_raw() {
    let nats = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let env = set_up(&nats, dir.path());
    let refused = command(dir.path(), &env)
        .args(["publish", "notifications.post.like", "{not json"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("not JSON") && stderr.contains("--raw"),
        "{stderr}"
    );
    assert!(refused.stdout.is_empty(), "nothing was published");

    let raw = command(dir.path(), &env)
        .args(["publish", "--raw", "notifications.post.like", "{not json"])
        .output()
        .unwrap();
    assert!(raw.status.success(), "{}", String::from_utf8_lossy(&raw.stderr));
    assert_eq!(
        String::from_utf8_lossy(&raw.stdout).trim(),
        "1",
        "the first message of the stream"
    );
}

fn help_of(args: &[&str]) -> String {
    let output = run_with(&[], args);
    assert!(output.status.success(), "{args:?}");
    String::from_utf8(output.stdout).unwrap()
}

#[test]
fn each_commands_help_shows_its_own_flags_first_and_only_the_settings_it_uses() {
    let publish = help_of(&["publish", "--help"]);
    let own = publish.find("--raw").expect("publish --help shows --raw");
    let nats = publish
        .find("NATS:")
        .unwrap_or_else(|| panic!("a NATS heading:\n{publish}"));
    assert!(
        publish.find("<SUBJECT>").unwrap() < nats && own < nats,
        "{publish}"
    );
    assert!(publish.contains("--nats-url"), "{publish}");
    for unused in [
        "NOTIF_SQLITE_PATH",
        "NOTIF_TABLE_NAME",
        "HTTP_ADDR",
        "WEBHOOK_URL",
        "PUSHER_KEY",
        "WORKER_CONCURRENCY",
        "RATE_LIMIT_TRIGGER_USER",
    ] {
        assert!(
            !publish.contains(unused),
            "publish --help shows {unused}:\n{publish}"
        );
    }

    let feed = help_of(&["feed", "--help"]);
    assert!(
        feed.contains("NOTIF_STORE") && !feed.contains("NATS_URL"),
        "{feed}"
    );
    assert!(
        feed.find("--limit").unwrap() < feed.find("Store:").unwrap(),
        "{feed}"
    );

    let list = help_of(&["dlq", "list", "--help"]);
    assert!(
        list.contains("NATS_URL") && !list.contains("NOTIF_STORE"),
        "{list}"
    );

    let run = help_of(&["run", "--help"]);
    for heading in ["NATS:", "Store:", "HTTP:", "Delivery:", "Rate limits:"] {
        assert!(run.contains(heading), "run --help lacks {heading}:\n{run}");
    }
}

#[test]
fn dry_run_is_described() {
    let replay = help_of(&["dlq", "replay", "--help"]);
    let line = replay
        .lines()
        .skip_while(|line| !line.contains("--dry-run"))
        .take(3)
        .collect::<Vec<_>>()
        .join(" ");
    assert!(
        line.contains("nothing is published or deleted"),
        "--dry-run:\n{replay}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dlq_list_shows_bodies_as_they_are_and_numbers_as_numbers() {
    let nats = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let env = set_up(&nats, dir.path());
    let body = "{\"owner\":\"\",\"excerpt\":\"caf\u{e9}\"}\n";
    a_dead_letter(&nats, body).await;

    let text = command(dir.path(), &env).args(["dlq", "list"]).output().unwrap();
    let text = String::from_utf8(text.stdout).unwrap();
    assert_eq!(text.lines().count(), 1, "one line per dead letter: {text}");
    assert!(
        text.trim_end()
            .ends_with("{\"owner\":\"\",\"excerpt\":\"caf\u{e9}\"}\\n"),
        "the body as it is (a control character escaped): {text}"
    );

    let json = command(dir.path(), &env)
        .args(["dlq", "list", "--json"])
        .output()
        .unwrap();
    let letter: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(letter["body_preview"], body, "{letter}");
    assert_eq!(letter["sequence"], 1, "{letter}");
    assert_eq!(letter["original_sequence"], 7, "{letter}");
    assert_eq!(letter["attempts"], 3, "{letter}");
}

/// `setup` creates the recipient directory beside the notifications, never in their table:
/// table `recipients` in the SQLite file, and `NOTIF_RECIPIENTS_TABLE` on DynamoDB, which
/// the recipient store can then write to and read from.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn setup_creates_the_recipient_directory_beside_the_notifications() {
    use notification_worker::domain::{Id, Version};
    use notification_worker::recipients::{Applied, Email, RecipientChange, Upsert};
    use notification_worker::store::{DynamoDbRecipientStore, RecipientStore};
    let nats = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    set_up(&nats, dir.path());
    let tables: Vec<String> = sqlite(dir.path())
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
        .unwrap()
        .query_map([], |row| row.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert!(
        tables.iter().any(|name| name == "recipients") && tables.iter().any(|name| name == "notifications"),
        "{tables:?}"
    );

    let dynalite = Dynalite::start();
    let mut env = base_env(&nats, dir.path());
    env.extend(dynalite.worker_env("cli-notifications"));
    env.push(("NOTIF_RECIPIENTS_TABLE", "cli-recipients".into()));
    let stdout = run_setup(dir.path(), &env);
    assert!(
        stdout.contains("recipient directory ready: dynamodb table cli-recipients"),
        "{stdout}"
    );
    let store = DynamoDbRecipientStore::with_config(&dynalite.sdk_config().await, "cli-recipients");
    let owner = Id::parse("owner", "user-1").unwrap();
    let change = RecipientChange::Upsert(Upsert {
        email: Some(Some(Email::parse("a@example.com").unwrap())),
        ..Upsert::default()
    });
    let version = Version::new(1_764_000_000_000_000, 1).unwrap();
    assert_eq!(
        store.apply(&owner, &change, version).await.unwrap(),
        Applied::Changed
    );
    let record = store.get(&owner).await.unwrap().unwrap();
    assert_eq!(record.email().unwrap().as_str(), "a@example.com");
}

/// A consumer made before the AckWait was shortened (30 s): `run` uses it as it is and warns,
/// naming `setup`; `setup` shortens it in place (its position kept) and says so, once. A
/// shorter AckWait (the recipients' consumer here) is left alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn setup_shortens_a_long_ack_wait_that_run_warns_about() {
    use async_nats::jetstream::{consumer, stream};
    use notification_worker::input::{RECIPIENTS_CONSUMER, RECIPIENTS_STREAM};
    const WITHIN: Duration = Duration::from_secs(60);
    let nats = NatsServer::start();
    create_consumer_with_ack_wait(&nats, Duration::from_secs(30)).await;
    let js = nats.jetstream().await;
    let recipients = js
        .get_or_create_stream(stream::Config {
            name: RECIPIENTS_STREAM.into(),
            subjects: vec!["recipients.>".into()],
            ..Default::default()
        })
        .await
        .unwrap();
    recipients
        .create_consumer(consumer::pull::Config {
            durable_name: Some(RECIPIENTS_CONSUMER.into()),
            filter_subject: "recipients.>".into(),
            ack_policy: consumer::AckPolicy::Explicit,
            ack_wait: Duration::from_secs(2),
            ..Default::default()
        })
        .await
        .unwrap();
    publish_backlog(&js, 10).await;
    let dir = tempfile::tempdir().unwrap();
    let env = base_env(&nats, dir.path());

    let mut worker = Worker::start(dir.path(), &env);
    wait_until("the events stored", WITHIN, || count_rows(dir.path()) == 10);
    let warnings: Vec<_> = worker
        .events()
        .into_iter()
        .filter(|event| {
            event["message"]
                .as_str()
                .is_some_and(|text| text.contains("AckWait"))
        })
        .collect();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert_eq!(warnings[0]["level"], "WARN", "{}", warnings[0]);
    assert_eq!(warnings[0]["consumer"], "notification-worker", "{}", warnings[0]);
    assert_eq!(warnings[0]["ack_wait_seconds"], 30.0, "{}", warnings[0]);
    assert!(
        warnings[0]["message"]
            .as_str()
            .unwrap()
            .contains("notification-worker setup"),
        "{}",
        warnings[0]
    );
    assert!(worker.terminate(WITHIN).success());

    let stdout = run_setup(dir.path(), &env);
    assert!(
        stdout.contains("consumer notification-worker: AckWait changed from 30s to 5s"),
        "{stdout}"
    );
    assert_eq!(stdout.matches("AckWait").count(), 1, "{stdout}");
    let mut events = worker_consumer(&js).await;
    let info = events.info().await.unwrap();
    assert_eq!(info.config.ack_wait, Duration::from_secs(5));
    assert_eq!(
        info.ack_floor.stream_sequence, 10,
        "the consumer kept its position"
    );
    let mut recipients_consumer: consumer::PullConsumer =
        recipients.get_consumer(RECIPIENTS_CONSUMER).await.unwrap();
    let info = recipients_consumer.info().await.unwrap();
    assert_eq!(info.config.ack_wait, Duration::from_secs(2));

    let again = command(dir.path(), &env).arg("setup").output().unwrap();
    assert!(again.status.success());
    assert!(!String::from_utf8_lossy(&again.stdout).contains("AckWait"));
    let worker = Worker::start(dir.path(), &env);
    assert!(
        !worker.logs().iter().any(|line| line.contains("AckWait")),
        "{:?}",
        worker.logs()
    );
}
