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
    let setup = command(dir.path(), &env).arg("setup").output().unwrap();
    assert!(
        setup.status.success(),
        "{}",
        String::from_utf8_lossy(&setup.stderr)
    );

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

    let outside = command(dir.path(), &env)
        .args(["publish", "orders.created", "{}"])
        .output()
        .unwrap();
    assert_eq!(outside.status.code(), Some(1));
    assert!(
        String::from_utf8(outside.stderr)
            .unwrap()
            .contains("not under notifications.")
    );

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
