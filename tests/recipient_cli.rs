//! `notification-worker recipient …` (issue 10): the operator's way to change the recipient
//! directory (through stream RECIPIENTS, like the application) and to look at one entry.

mod support;

use serde_json::Value;
use std::path::Path;
use std::process::Output;
use std::time::Duration;
use support::*;

const WITHIN: Duration = Duration::from_secs(60);

fn recipient(dir: &Path, env: &[(&'static str, String)], args: &[&str]) -> Output {
    command(dir, env).arg("recipient").args(args).output().unwrap()
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).to_string()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).to_string()
}

fn assert_published(output: &Output) -> u64 {
    assert!(output.status.success(), "{}", stderr(output));
    stdout(output)
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("not a stream sequence: {:?}", stdout(output)))
}

async fn recipients_stored(nats: &NatsServer) -> u64 {
    let js = nats.jetstream().await;
    match js.get_stream("RECIPIENTS").await {
        Ok(mut stream) => stream.info().await.unwrap().state.messages,
        Err(_) => 0,
    }
}

fn show_json(dir: &Path, env: &[(&'static str, String)], owner: &str) -> Value {
    let shown = recipient(dir, env, &["show", owner, "--json"]);
    assert!(shown.status.success(), "{}", stderr(&shown));
    serde_json::from_slice(&shown.stdout).unwrap_or_else(|error| panic!("{error}: {}", stdout(&shown)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn set_and_push_add_reach_the_directory_and_show_gives_the_effective_modes() {
    let nats = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let mut env = base_env(&nats, dir.path());
    env.push(("NOTIFY_DEFAULTS", "email=digest,push=instant".into()));
    let _worker = Worker::start(dir.path(), &env);

    let set = recipient(
        dir.path(),
        &env,
        &[
            "set",
            "user-1",
            "--email",
            "a@example.com",
            "--locale",
            "fr-CA",
            "--pref",
            "email.reply.post=instant",
            "--pref",
            "push.post.like=off",
        ],
    );
    let first = assert_published(&set);
    let token = "fcm_token_0123456789abcdefghijklmnop";
    let add = recipient(
        dir.path(),
        &env,
        &["push", "add", "user-1", "--kind", "fcm", "--token", token],
    );
    assert_eq!(assert_published(&add), first + 1);

    eventually("the worker syncs the two events", WITHIN, || async {
        let shown = show_json(dir.path(), &env, "user-1");
        shown["push_targets"]
            .as_array()
            .is_some_and(|targets| targets.len() == 1)
    })
    .await;
    let shown = show_json(dir.path(), &env, "user-1");
    assert_eq!(shown["owner"], "user-1");
    assert_eq!(shown["entry"], true);
    assert_eq!(shown["email"], "a@example.com");
    assert_eq!(shown["locale"], "fr-CA");
    assert_eq!(shown["preferences"]["email"]["reply.post"], "instant");
    assert_eq!(shown["preferences"]["push"]["post.like"], "off");
    let target = &shown["push_targets"][0];
    assert_eq!(target["kind"], "fcm");
    let shortened = target["token"].as_str().unwrap();
    assert!(
        shortened.len() < token.len() && token.starts_with(&shortened[..8]),
        "{shortened}"
    );
    // The person's word, then NOTIFY_DEFAULTS.
    let effective = &shown["effective"];
    assert_eq!(effective["email"]["reply.post"], "instant");
    assert_eq!(effective["email"]["post.like"], "digest");
    assert_eq!(effective["fcm"]["post.like"], "off");
    assert_eq!(effective["fcm"]["reply.post"], "instant");
    assert_eq!(effective["webpush"]["post.like"], "off");

    let text = recipient(dir.path(), &env, &["show", "user-1"]);
    assert!(text.status.success(), "{}", stderr(&text));
    let text = stdout(&text);
    for expected in [
        "a@example.com",
        "fr-CA",
        "email.reply.post",
        "fcm",
        "instant",
        "digest",
    ] {
        assert!(text.contains(expected), "{expected} missing from:\n{text}");
    }
    assert!(!text.contains(token), "the token is shortened:\n{text}");

    let remove = recipient(
        dir.path(),
        &env,
        &["push", "remove", "user-1", "--kind", "fcm", "--token", token],
    );
    assert_published(&remove);
    eventually("the push target is removed", WITHIN, || async {
        let shown = show_json(dir.path(), &env, "user-1");
        shown["push_targets"].as_array().is_some_and(Vec::is_empty)
    })
    .await;

    let forget = recipient(dir.path(), &env, &["remove", "user-1"]);
    assert_published(&forget);
    eventually("the entry is forgotten", WITHIN, || async {
        let shown = recipient(dir.path(), &env, &["show", "user-1"]);
        shown.status.success() && stdout(&shown).contains("no entry for user-1; defaults apply")
    })
    .await;
    let shown = show_json(dir.path(), &env, "user-1");
    assert_eq!(shown["entry"], false);
    assert_eq!(shown["email"], Value::Null);
    assert_eq!(shown["effective"]["email"]["reply.post"], "digest");
    assert_eq!(shown["effective"]["apns"]["post.like"], "instant");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webpush_subscription_is_given_whole() {
    let nats = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let mut env = base_env(&nats, dir.path());
    env.push(("ENVIRONMENT", "development".into()));
    let _worker = Worker::start(dir.path(), &env);
    let subscription = format!(
        r#"{{"endpoint":"https://push.example.com/send/abcdef0123456789","keys":{{"p256dh":"B{}","auth":"{}"}}}}"#,
        "A".repeat(86),
        "A".repeat(22)
    );
    let file = dir.path().join("subscription.json");
    std::fs::write(&file, &subscription).unwrap();
    let add = recipient(
        dir.path(),
        &env,
        &[
            "push",
            "add",
            "user-2",
            "--kind",
            "webpush",
            "--subscription",
            &format!("@{}", file.display()),
        ],
    );
    assert_published(&add);
    eventually("the subscription is synced", WITHIN, || async {
        let shown = show_json(dir.path(), &env, "user-2");
        shown["push_targets"]
            .as_array()
            .is_some_and(|targets| targets.len() == 1)
    })
    .await;
    assert_eq!(
        show_json(dir.path(), &env, "user-2")["push_targets"][0]["kind"],
        "webpush"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_flags_exit_2_and_publish_nothing() {
    let nats = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let env = base_env(&nats, dir.path());
    let setup = command(dir.path(), &env).arg("setup").output().unwrap();
    assert!(setup.status.success(), "{}", stderr(&setup));

    let cases: &[(&[&str], &str)] = &[
        (&["set", "user-1", "--pref", "email.post.like=sometimes"], "mode"),
        (
            &["set", "user-1", "--pref", "email.post.unlike=off"],
            "post.unlike",
        ),
        (&["set", "user-1", "--pref", "sms.post.like=off"], "sms"),
        (&["set", "user-1", "--pref", "email=off"], "CHANNEL.ACTION=MODE"),
        (&["set", "user-1", "--email", "not-an-address"], "email"),
        (&["set", "user-1"], "--email"),
        (&["push", "add", "user-1", "--kind", "fcm"], "--token"),
        (
            &["push", "add", "user-1", "--kind", "webpush", "--token", "abc"],
            "--subscription",
        ),
        (
            &["push", "add", "user-1", "--kind", "apns", "--token", "not hex"],
            "token",
        ),
        (
            &["push", "add", "user-1", "--kind", "pager", "--token", "abc"],
            "pager",
        ),
        (&["remove", "user#1"], "owner"),
    ];
    for (args, says) in cases {
        let output = recipient(dir.path(), &env, args);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {}", stderr(&output));
        assert!(
            stderr(&output).contains(says),
            "{args:?} should mention {says}: {}",
            stderr(&output)
        );
        assert!(stdout(&output).is_empty(), "{args:?}: {}", stdout(&output));
    }
    assert_eq!(recipients_stored(&nats).await, 0);
}

#[test]
fn help_lists_the_subcommands_and_only_the_settings_they_use() {
    let dir = tempfile::tempdir().unwrap();
    let help = command(dir.path(), &[])
        .args(["recipient", "--help"])
        .output()
        .unwrap();
    assert!(help.status.success(), "{}", stderr(&help));
    let text = stdout(&help);
    for subcommand in ["set", "show", "remove", "push"] {
        assert!(
            text.contains(&format!("  {subcommand} ")),
            "{subcommand} missing:\n{text}"
        );
    }
    let set = stdout(
        &command(dir.path(), &[])
            .args(["recipient", "set", "--help"])
            .output()
            .unwrap(),
    );
    assert!(set.contains("--pref") && set.contains("NATS_URL"), "{set}");
    assert!(!set.contains("NOTIF_SQLITE_PATH"), "set reads no store:\n{set}");
    let show = stdout(
        &command(dir.path(), &[])
            .args(["recipient", "show", "--help"])
            .output()
            .unwrap(),
    );
    assert!(
        show.contains("NOTIF_SQLITE_PATH") && show.contains("NOTIFY_DEFAULTS"),
        "{show}"
    );
    assert!(!show.contains("NATS_URL"), "show reads no NATS:\n{show}");
}

/// `show` reads whichever store is configured: here DynamoDB (dynalite), table
/// `NOTIF_RECIPIENTS_TABLE`, which the development worker creates.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn show_reads_the_dynamodb_directory_when_that_is_the_store() {
    let nats = NatsServer::start();
    let dynalite = Dynalite::start();
    let dir = tempfile::tempdir().unwrap();
    let mut env = base_env(&nats, dir.path());
    env.extend(dynalite.worker_env("cli-notifications"));
    env.push(("NOTIF_RECIPIENTS_TABLE", "cli-recipients".into()));
    let _worker = Worker::start(dir.path(), &env);

    let set = recipient(
        dir.path(),
        &env,
        &["set", "user-3", "--locale", "en", "--pref", "apns.mention=off"],
    );
    assert_published(&set);
    eventually("the worker syncs the upsert", WITHIN, || async {
        show_json(dir.path(), &env, "user-3")["entry"] == true
    })
    .await;
    let shown = show_json(dir.path(), &env, "user-3");
    assert_eq!(shown["locale"], "en");
    assert_eq!(shown["effective"]["apns"]["mention"], "off");
    assert_eq!(shown["effective"]["fcm"]["mention"], "instant");
    assert!(
        !dir.path().join("notifications.db").exists(),
        "no SQLite file is made"
    );
}
