//! What the logs look like to the person reading them: quiet after a command that worked,
//! one warning per outage rather than one per reconnect attempt, no colour codes in a file.

mod support;

use std::process::Output;
use std::time::Duration;
use support::*;

const WITHIN: Duration = Duration::from_secs(60);

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Runs a one-shot command as a person would (readable logs, not JSON) and returns its output.
fn one_shot(nats: &NatsServer, dir: &std::path::Path, args: &[&str]) -> Output {
    let mut env = base_env(nats, dir);
    env.retain(|(name, _)| *name != "LOG_FORMAT");
    env.push(("LOG_FORMAT", "pretty".into()));
    let output = command(dir, &env).args(args).output().expect("the command runs");
    assert!(output.status.success(), "{args:?} failed:\n{}", text(&output));
    output
}

#[tokio::test]
async fn commands_that_worked_end_without_a_warning_or_colour_codes() {
    let nats = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let like = like("user-123", "user-456", "post-789");
    for args in [
        vec!["setup"],
        vec!["publish", "notifications.post.like", like.as_str()],
        vec!["dlq", "list"],
    ] {
        let output = one_shot(&nats, dir.path(), &args);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            !stderr.contains("WARN") && !stderr.contains("closed"),
            "{args:?} worked, yet warned:\n{stderr}"
        );
        assert!(
            !text(&output).contains('\u{1b}'),
            "{args:?} wrote colour codes to a pipe:\n{}",
            text(&output)
        );
    }
}

#[tokio::test]
async fn the_worker_writes_no_colour_codes_to_a_pipe() {
    let nats = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let mut env = base_env(&nats, dir.path());
    env.retain(|(name, _)| *name != "LOG_FORMAT");
    env.push(("LOG_FORMAT", "pretty".into()));
    let mut worker = Worker::start(dir.path(), &env);
    worker.terminate(WITHIN);
    let logs = worker.logs().join("\n");
    assert!(logs.contains("worker started"), "{logs}");
    assert!(!logs.contains('\u{1b}'), "colour codes in piped logs:\n{logs}");
}

/// NATS down long enough for a dozen reconnect attempts: the outage is logged when it
/// starts, with its first failure, and when it ends (with the attempts it took), not once
/// per attempt.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_logs_a_few_warnings_not_one_per_reconnect_attempt() {
    let mut nats = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let mut env = base_env(&nats, dir.path());
    env.retain(|(name, _)| *name != "LOG_LEVEL");
    // The client's own debug line for each attempt is what lets the test count them.
    env.push(("LOG_LEVEL", "info,async_nats=debug".into()));
    let worker = Worker::start(dir.path(), &env);
    let before = worker.logs().len();
    nats.kill();

    let attempts = |worker: &Worker| {
        worker.logs()[before..]
            .iter()
            .filter(|line| line.contains("connecting to server"))
            .count()
    };
    wait_until("a dozen reconnect attempts", WITHIN, || attempts(&worker) >= 12);
    nats.restart();
    wait_until("the worker to reconnect", WITHIN, || {
        worker.logs()[before..]
            .iter()
            .any(|line| line.contains("\"level\":\"INFO\"") && line.contains("connected to NATS"))
    });

    let logs = worker.logs()[before..].to_vec();
    let warnings: Vec<&String> = logs
        .iter()
        .filter(|line| line.contains("\"level\":\"WARN\""))
        .collect();
    assert!(
        (1..=3).contains(&warnings.len()),
        "{} warnings for one outage of {} attempts:\n{}",
        warnings.len(),
        attempts(&worker),
        warnings
            .iter()
            .map(|line| line.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    );
    let reconnected = logs
        .iter()
        .find(|line| line.contains("reconnected to NATS"))
        .expect("the end of the outage is logged");
    assert!(reconnected.contains("failed_attempts"), "{reconnected}");
}
