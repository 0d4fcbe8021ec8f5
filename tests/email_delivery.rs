//! Channel `email` end to end (issue 10): events on NATS, the worker (one or two replicas),
//! the recipient directory synced from stream RECIPIENTS, and a real SMTP server (aiosmtpd)
//! whose mailbox the tests read. Preferences decide instant, digest or nothing; digests
//! list exactly what is still unread; a crash or an SMTP outage loses nothing.

mod support;

use serde_json::json;
use std::path::Path;
use std::time::{Duration, Instant};
use support::aiosmtpd::{Aiosmtpd, Mail};
use support::*;

const WITHIN: Duration = Duration::from_secs(60);

fn event(owner: &str, trigger: &str, username: &str, action: u8, resource: &str) -> String {
    let resource_type = if action == 6 { "USER" } else { "POST" };
    json!({
        "owner": owner,
        "trigger_user": trigger,
        "username": username,
        "action": action,
        "resource_type": resource_type,
        "resource_id": resource,
        "excerpt": format!("about {resource}"),
        "created_at": 1_765_318_000,
    })
    .to_string()
}

fn reply(owner: &str, trigger: &str, username: &str, post: &str) -> String {
    event(owner, trigger, username, 3, post)
}

fn mention(owner: &str, trigger: &str, username: &str, post: &str) -> String {
    event(owner, trigger, username, 5, post)
}

/// `count` likes of `owner`'s posts, by fan-0 (Fan 0) on post-0 and so on, back to back.
async fn publish_likes(js: &async_nats::jetstream::Context, owner: &str, count: usize) {
    for i in 0..count {
        let body = like_by(
            owner,
            &format!("fan-{i}"),
            &format!("Fan {i}"),
            &format!("post-{i}"),
        );
        publish(js, "notifications.post.like", body).await;
    }
}

fn like_by(owner: &str, trigger: &str, username: &str, post: &str) -> String {
    event(owner, trigger, username, 1, post)
}

/// A worker's environment with channel email on, sending to `smtp`.
fn email_env(
    nats: &NatsServer,
    dir: &Path,
    smtp: &Aiosmtpd,
    defaults: &str,
    window: &str,
) -> Vec<(&'static str, String)> {
    let mut env = with_http(base_env(nats, dir));
    env.extend([
        ("SMTP_URL", smtp.url()),
        ("EMAIL_FROM", "Exobook <notifications@exobook.example>".into()),
        ("EMAIL_DIGEST_WINDOW", window.into()),
        ("NOTIFY_DEFAULTS", defaults.into()),
        (
            "EMAIL_UNSUBSCRIBE_URL",
            "https://exobook.example/unsubscribe/{owner}".into(),
        ),
        // Short, so a directory change made by the test shows at once.
        ("RECIPIENT_CACHE_TTL", "1s".into()),
    ]);
    env
}

/// Sets `owner`'s email and preferences through stream RECIPIENTS, and waits until the
/// worker applied them.
async fn set_recipient(
    nats: &NatsServer,
    dir: &Path,
    owner: &str,
    address: &str,
    email_prefs: serde_json::Value,
) {
    let js = nats.jetstream().await;
    let body =
        json!({"owner": owner, "email": address, "locale": "en", "preferences": {"email": email_prefs}});
    publish(&js, "recipients.upsert", body.to_string()).await;
    let owner = owner.to_owned();
    let db = dir.join("notifications.db");
    wait_until("the recipient in the directory", WITHIN, || {
        rusqlite::Connection::open(&db)
            .and_then(|connection| {
                connection.query_row(
                    "SELECT COUNT(*) FROM recipients WHERE owner = ?1 AND email IS NOT NULL",
                    [&owner],
                    |row| row.get::<_, i64>(0),
                )
            })
            .unwrap_or(0)
            == 1
    });
}

fn metric_of(worker: &Worker, series: &str) -> f64 {
    let (_, text) = http_get(&worker.http_addr(), "/metrics");
    metric(&text, series).unwrap_or(0.0)
}

fn decisions(worker: &Worker, decision: &str) -> f64 {
    metric_of(
        worker,
        &format!("notification_worker_personal_decisions_total{{channel=\"email\",decision=\"{decision}\"}}"),
    )
}

fn digests(worker: &Worker, outcome: &str) -> f64 {
    metric_of(
        worker,
        &format!("notification_worker_digests_total{{channel=\"email\",outcome=\"{outcome}\"}}"),
    )
}

fn notification_id(dir: &Path, owner: &str, trigger: &str) -> String {
    sqlite(dir)
        .query_row(
            "SELECT id FROM notifications WHERE owner = ?1 AND userid = ?2",
            [owner, trigger],
            |row| row.get(0),
        )
        .unwrap()
}

fn subject(mail: &Mail) -> &str {
    mail.header("subject").unwrap_or_default()
}

fn text(mail: &Mail) -> &str {
    mail.part("text/plain").unwrap_or_default()
}

fn html(mail: &Mail) -> &str {
    mail.part("text/html").unwrap_or_default()
}

fn mails_in(smtp: &Aiosmtpd) -> Vec<Mail> {
    smtp.messages().iter().map(|raw| Mail::parse(raw)).collect()
}

fn digest_mails(mails: &[Mail]) -> Vec<&Mail> {
    mails
        .iter()
        .filter(|mail| subject(mail).contains("new notification"))
        .collect()
}

#[tokio::test]
async fn an_instant_email_arrives_whole_and_off_sends_nothing() {
    let nats = NatsServer::start();
    let smtp = Aiosmtpd::start();
    let dir = tempfile::tempdir().unwrap();
    create_stream(&nats.jetstream().await).await;
    // Digests far away: only instant mail can arrive during the test.
    let worker = Worker::start(
        dir.path(),
        &email_env(&nats, dir.path(), &smtp, "email=digest", "1h"),
    );
    set_recipient(
        &nats,
        dir.path(),
        "user-123",
        "alice@example.com",
        json!({"reply.post": "instant", "mention": "off"}),
    )
    .await;
    let js = nats.jetstream().await;
    // Turned off first, then one she wants at once: when the second has arrived, the first
    // would have too.
    publish(
        &js,
        "notifications.mention",
        mention("user-123", "user-7", "Mallory", "post-1"),
    )
    .await;
    publish(
        &js,
        "notifications.reply.post",
        reply("user-123", "user-456", "John Doe", "post-789"),
    )
    .await;
    let mails = smtp.wait_for_messages(1, WITHIN);
    wait_until("the mention decided", WITHIN, || decisions(&worker, "off") == 1.0);
    assert_eq!(mails.len(), 1, "only the reply is sent");
    let mail = &mails[0];
    assert_eq!(subject(mail), "John Doe replied to your post");
    assert!(
        mail.header("to")
            .unwrap_or_default()
            .contains("alice@example.com")
    );
    assert!(
        text(mail).contains("John Doe replied to your post"),
        "{}",
        text(mail)
    );
    assert!(
        text(mail).contains("about post-789"),
        "the excerpt is in the text part"
    );
    assert!(
        html(mail).contains("John Doe replied to your post"),
        "{}",
        html(mail)
    );
    let id = notification_id(dir.path(), "user-123", "user-456");
    let message_id = mail.header("message-id").unwrap_or_default();
    assert!(
        message_id.starts_with(&format!("<{id}@")),
        "Message-ID {message_id} from notification {id}"
    );
    assert_eq!(
        mail.header("list-unsubscribe"),
        Some("<https://exobook.example/unsubscribe/user-123>")
    );
    assert_eq!(
        mail.header("list-unsubscribe-post"),
        Some("List-Unsubscribe=One-Click")
    );
    assert_eq!(
        (decisions(&worker, "instant"), decisions(&worker, "off")),
        (1.0, 1.0)
    );
    // Someone with no address in the directory is unreachable, not an error.
    publish(
        &js,
        "notifications.reply.post",
        reply("user-999", "user-456", "John Doe", "post-1"),
    )
    .await;
    wait_until("the unreachable owner decided", WITHIN, || {
        decisions(&worker, "unreachable") == 1.0
    });
    assert_eq!(smtp.messages().len(), 1);
}

#[tokio::test]
async fn a_digest_lists_exactly_the_notifications_still_unread() {
    let nats = NatsServer::start();
    let smtp = Aiosmtpd::start();
    let dir = tempfile::tempdir().unwrap();
    create_stream(&nats.jetstream().await).await;
    let window = Duration::from_secs(8);
    let worker = Worker::start(
        dir.path(),
        &email_env(&nats, dir.path(), &smtp, "email=digest", "8s"),
    );
    set_recipient(&nats, dir.path(), "user-123", "alice@example.com", json!({})).await;
    let js = nats.jetstream().await;
    at_window_start(window);
    let opened = Instant::now();
    for (fan, name) in [
        ("fan-a", "Ada"),
        ("fan-b", "Bea"),
        ("fan-c", "Cyd"),
        ("fan-d", "Dov"),
    ] {
        publish(
            &js,
            "notifications.post.like",
            like_by("user-123", fan, name, &format!("post-{fan}")),
        )
        .await;
    }
    wait_until("four likes stored", WITHIN, || count_rows(dir.path()) == 4);
    wait_until("four digest decisions", WITHIN, || {
        decisions(&worker, "digest") == 4.0
    });
    // The owner reads Cyd's like (the API sets read_status), and Dov takes his back.
    sqlite(dir.path())
        .execute(
            "UPDATE notifications SET read_status = 1 WHERE userid = 'fan-c'",
            [],
        )
        .unwrap();
    publish(
        &js,
        "notifications.post.unlike",
        like_by("user-123", "fan-d", "Dov", "post-fan-d"),
    )
    .await;
    wait_until("the unlike applied", WITHIN, || count_rows(dir.path()) == 3);
    assert!(
        opened.elapsed() < window,
        "the test's changes must land inside one window"
    );
    let mails = smtp.wait_for_messages(1, WITHIN);
    wait_until("the digest counted", WITHIN, || digests(&worker, "sent") == 1.0);
    let digest = digest_mails(&mails);
    assert_eq!(digest.len(), 1, "one digest for the window");
    assert_eq!(subject(digest[0]), "2 new notifications");
    let text = text(digest[0]);
    for listed in ["Ada liked your post", "Bea liked your post"] {
        assert!(text.contains(listed), "{listed} missing from:\n{text}");
    }
    for left_out in ["Cyd", "Dov"] {
        assert!(
            !text.contains(left_out),
            "{left_out} is read or removed, yet listed:\n{text}"
        );
    }
    assert!(html(digest[0]).contains("Bea liked your post"));
    assert_eq!(
        smtp.messages().len(),
        1,
        "no instant mail for digest-mode notifications"
    );
}

#[tokio::test]
async fn a_window_with_nothing_left_unread_sends_nothing() {
    let nats = NatsServer::start();
    let smtp = Aiosmtpd::start();
    let dir = tempfile::tempdir().unwrap();
    create_stream(&nats.jetstream().await).await;
    let window = Duration::from_secs(5);
    let worker = Worker::start(
        dir.path(),
        &email_env(&nats, dir.path(), &smtp, "email=digest", "5s"),
    );
    set_recipient(&nats, dir.path(), "user-123", "alice@example.com", json!({})).await;
    let js = nats.jetstream().await;
    at_window_start(window);
    publish(
        &js,
        "notifications.post.like",
        like_by("user-123", "fan-a", "Ada", "post-1"),
    )
    .await;
    wait_until("the like joined the digest", WITHIN, || {
        decisions(&worker, "digest") == 1.0
    });
    sqlite(dir.path())
        .execute("UPDATE notifications SET read_status = 1", [])
        .unwrap();
    wait_until("the window settled", WITHIN, || digests(&worker, "empty") == 1.0);
    assert_eq!(digests(&worker, "sent"), 0.0);
    assert!(smtp.messages().is_empty(), "nothing unread: no digest");
}

#[tokio::test]
async fn a_replica_killed_while_a_window_is_open_still_leaves_exactly_one_digest() {
    let nats = NatsServer::start();
    let smtp = Aiosmtpd::start();
    let dir = tempfile::tempdir().unwrap();
    create_stream(&nats.jetstream().await).await;
    let window = Duration::from_secs(10);
    let env = email_env(&nats, dir.path(), &smtp, "email=digest", "10s");
    let mut first = Worker::start(dir.path(), &env);
    let second = Worker::start(dir.path(), &env);
    set_recipient(&nats, dir.path(), "user-123", "alice@example.com", json!({})).await;
    let js = nats.jetstream().await;
    at_window_start(window);
    let opened = Instant::now();
    // Back to back, so both replicas take some.
    publish_likes(&js, "user-123", 6).await;
    wait_until("six likes in the digest", WITHIN, || {
        decisions(&first, "digest") + decisions(&second, "digest") == 6.0
    });
    // Killed with the window open: whatever it held (its marker, its hold) is the server's.
    first.kill();
    assert!(
        opened.elapsed() < window,
        "the kill must come while the window is open"
    );
    let mails = smtp.wait_for_messages(1, WITHIN + window);
    let digest = digest_mails(&mails);
    assert_eq!(digest.len(), 1);
    assert_eq!(subject(digest[0]), "6 new notifications");
    for i in 0..6 {
        assert!(text(digest[0]).contains(&format!("Fan {i} liked your post")));
    }
    // Long enough for anything the killed replica held to come back (the outbox's and the
    // digest consumer's AckWait, 30 s) and for the window after it to close: still one.
    let settled = window * 2 + Duration::from_secs(40);
    wait_until("later windows to close", settled + Duration::from_secs(5), || {
        opened.elapsed() >= settled
    });
    assert_eq!(digest_mails(&mails_in(&smtp)).len(), 1, "one digest per window");
}

#[tokio::test]
async fn emails_wait_out_an_smtp_outage_and_none_is_lost() {
    let nats = NatsServer::start();
    let mut smtp = Aiosmtpd::start();
    let dir = tempfile::tempdir().unwrap();
    create_stream(&nats.jetstream().await).await;
    let worker = Worker::start(
        dir.path(),
        &email_env(&nats, dir.path(), &smtp, "email=instant", "1h"),
    );
    set_recipient(&nats, dir.path(), "user-123", "alice@example.com", json!({})).await;
    let port = smtp.port;
    smtp.stop();
    let down = Instant::now();
    let js = nats.jetstream().await;
    for i in 0..20 {
        publish(
            &js,
            "notifications.reply.post",
            reply(
                "user-123",
                &format!("user-{i}"),
                &format!("Replier {i}"),
                &format!("post-{i}"),
            ),
        )
        .await;
    }
    wait_until("twenty replies stored", WITHIN, || count_rows(dir.path()) == 20);
    wait_until("sends failing while the server is down", WITHIN, || {
        metric_of(
            &worker,
            "notification_worker_deliveries_total{channel=\"email\",outcome=\"retried\"}",
        ) > 0.0
    });
    // Down for ten seconds in all.
    wait_until("ten seconds of outage", Duration::from_secs(20), || {
        down.elapsed() >= Duration::from_secs(10)
    });
    let smtp = Aiosmtpd::start_on(port);
    let mails = smtp.wait_for_messages(20, Duration::from_secs(120));
    let mut ids: Vec<String> = mails
        .iter()
        .map(|mail| mail.header("message-id").unwrap_or_default().to_owned())
        .collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 20, "every reply mailed after the outage");
    assert_eq!(
        metric_of(
            &worker,
            "notification_worker_deliveries_total{channel=\"email\",outcome=\"dead_lettered\"}"
        ),
        0.0
    );
}

#[tokio::test]
async fn deliver_test_sends_a_sample_to_the_owners_address_only() {
    use notification_worker::domain::{Id, Version};
    use notification_worker::recipients::{Email, RecipientChange, Upsert};
    use notification_worker::store::{RecipientStore, SqliteRecipientStore};
    let nats = NatsServer::start();
    let smtp = Aiosmtpd::start();
    let dir = tempfile::tempdir().unwrap();
    let directory = SqliteRecipientStore::open(&dir.path().join("notifications.db")).unwrap();
    directory.setup().await.unwrap();
    let upsert = RecipientChange::Upsert(Upsert {
        email: Some(Some(Email::parse("alice@example.com").unwrap())),
        ..Upsert::default()
    });
    directory
        .apply(
            &Id::parse("owner", "user-123").unwrap(),
            &upsert,
            Version::new(1_764_000_000_000_000, 1).unwrap(),
        )
        .await
        .unwrap();
    let env = email_env(&nats, dir.path(), &smtp, "email=digest", "1h");
    let output = command(dir.path(), &env)
        .args(["deliver", "test", "--channel", "email", "user-123"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains("alice@example.com accepted a sample notification"),
        "{stdout}"
    );
    let mails = smtp.wait_for_messages(1, WITHIN);
    assert!(
        mails[0]
            .header("to")
            .unwrap_or_default()
            .contains("alice@example.com")
    );
    assert_eq!(subject(&mails[0]), "John Doe liked your post");
    // Nobody in the directory: a usage error that says where to look, nothing sent.
    let output = command(dir.path(), &env)
        .args(["deliver", "test", "--channel", "email", "user-999"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("no address for channel email"), "{stderr}");
    assert_eq!(smtp.messages().len(), 1);
}

fn owner_limited_env(
    nats: &NatsServer,
    dir: &Path,
    smtp: &Aiosmtpd,
    window: &str,
) -> Vec<(&'static str, String)> {
    let mut env = email_env(nats, dir, smtp, "email=instant", window);
    env.push(("RATE_LIMIT_OWNER", "email=3/1h".into()));
    env
}

fn owner_throttled(worker: &Worker) -> f64 {
    metric_of(
        worker,
        r#"notification_worker_throttled_total{limit="owner_email"}"#,
    )
}

/// `RATE_LIMIT_OWNER=email=3/1h` through two replicas on one consumer: three likes are
/// mailed one by one, the seven past the limit in one digest, and the feed has all ten.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_owner_limit_instant_emails_fold_into_one_digest_across_replicas() {
    let nats = NatsServer::start();
    let smtp = Aiosmtpd::start();
    let dir = tempfile::tempdir().unwrap();
    create_stream(&nats.jetstream().await).await;
    let window = Duration::from_secs(15);
    let env = owner_limited_env(&nats, dir.path(), &smtp, "15s");
    let workers = [Worker::start(dir.path(), &env), Worker::start(dir.path(), &env)];
    set_recipient(&nats, dir.path(), "user-123", "alice@example.com", json!({})).await;
    let js = nats.jetstream().await;
    at_window_start(window);
    let opened = Instant::now();
    // Back to back, so both replicas take some.
    publish_likes(&js, "user-123", 10).await;
    let total = |decision: &str| {
        workers
            .iter()
            .map(|worker| decisions(worker, decision))
            .sum::<f64>()
    };
    wait_until("ten likes decided", WITHIN, || {
        total("instant") + total("throttled") == 10.0
    });
    assert!(
        opened.elapsed() < window,
        "the throttled likes must join one window"
    );
    assert_eq!(count_rows(dir.path()), 10, "the feed has every like");
    assert_eq!((total("instant"), total("throttled")), (3.0, 7.0));
    let throttled: f64 = workers.iter().map(owner_throttled).sum();
    assert_eq!(throttled, 7.0);

    let mails = smtp.wait_for_messages(4, WITHIN + window);
    wait_until("the digest counted", WITHIN, || {
        workers.iter().map(|worker| digests(worker, "sent")).sum::<f64>() == 1.0
    });
    let digest = digest_mails(&mails);
    assert_eq!(digest.len(), 1, "one digest for the rest");
    assert_eq!(subject(digest[0]), "7 new notifications");
    let instant: Vec<&Mail> = mails
        .iter()
        .filter(|mail| subject(mail).ends_with("liked your post"))
        .collect();
    assert_eq!(instant.len(), 3, "three instant emails");
    for i in 0..10 {
        let line = format!("Fan {i} liked your post");
        let one_by_one = instant.iter().any(|mail| subject(mail) == line);
        let in_digest = text(digest[0]).contains(&line);
        assert!(
            one_by_one != in_digest,
            "Fan {i}'s like is mailed exactly once (instant: {one_by_one}, digest: {in_digest})"
        );
    }
    assert_eq!(mails_in(&smtp).len(), 4);
}

/// The owner limit's state gone (its bucket deleted): instant emails are neither sent
/// unchecked nor dropped nor folded; they are retried, and sent once the bucket is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_its_state_the_owner_limit_holds_instant_emails_instead_of_sending_them() {
    let nats = NatsServer::start();
    let smtp = Aiosmtpd::start();
    let dir = tempfile::tempdir().unwrap();
    create_stream(&nats.jetstream().await).await;
    let env = owner_limited_env(&nats, dir.path(), &smtp, "1h");
    let worker = Worker::start(dir.path(), &env);
    set_recipient(&nats, dir.path(), "user-123", "alice@example.com", json!({})).await;
    let js = nats.jetstream().await;
    publish(
        &js,
        "notifications.reply.post",
        reply("user-123", "user-1", "Replier 1", "post-1"),
    )
    .await;
    smtp.wait_for_messages(1, WITHIN);

    js.delete_key_value("NOTIFICATION_LIMITS").await.unwrap();
    publish(
        &js,
        "notifications.reply.post",
        reply("user-123", "user-2", "Replier 2", "post-2"),
    )
    .await;
    let failures = || {
        worker
            .events()
            .iter()
            .filter(|event| event["message"] == "delivery failed; retrying")
            .filter(|event| {
                event["error"]
                    .as_str()
                    .is_some_and(|e| e.contains("NOTIFICATION_LIMITS"))
            })
            .count()
    };
    wait_until("the email channel to retry the limit's state", WITHIN, || {
        failures() >= 2
    });
    assert_eq!(smtp.messages().len(), 1, "nothing sent unchecked");
    assert_eq!(
        (decisions(&worker, "throttled"), decisions(&worker, "digest")),
        (0.0, 0.0),
        "nothing folded"
    );

    run_setup(dir.path(), &env);
    let mails = smtp.wait_for_messages(2, WITHIN);
    assert_eq!(subject(&mails[1]), "Replier 2 replied to your post");
    wait_until("the second instant email counted", WITHIN, || {
        decisions(&worker, "instant") == 2.0
    });
    assert_eq!(decisions(&worker, "throttled"), 0.0);
}

/// A send that fails and is retried takes one place, not one per attempt: with
/// `email=2/1h`, a reply retried through an SMTP server answering 451 and the next reply are
/// both mailed at once; only the third joins the digest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_instant_email_counts_once_against_the_owner_limit() {
    let nats = NatsServer::start();
    let mut busy = Aiosmtpd::start_busy();
    let dir = tempfile::tempdir().unwrap();
    create_stream(&nats.jetstream().await).await;
    let mut env = email_env(&nats, dir.path(), &busy, "email=instant", "1h");
    env.push(("RATE_LIMIT_OWNER", "email=2/1h".into()));
    let worker = Worker::start(dir.path(), &env);
    set_recipient(&nats, dir.path(), "user-123", "alice@example.com", json!({})).await;
    let js = nats.jetstream().await;
    let reply_of = |i: usize| {
        reply(
            "user-123",
            &format!("user-{i}"),
            &format!("Replier {i}"),
            &format!("post-{i}"),
        )
    };
    publish(&js, "notifications.reply.post", reply_of(1)).await;
    wait_until("the first reply retried", WITHIN, || {
        metric_of(
            &worker,
            "notification_worker_deliveries_total{channel=\"email\",outcome=\"retried\"}",
        ) >= 3.0
    });
    let port = busy.port;
    busy.stop();
    let smtp = Aiosmtpd::start_on(port);
    smtp.wait_for_messages(1, WITHIN);

    // One after the other: two replies decided at the same moment may take the one place
    // left in either order.
    publish(&js, "notifications.reply.post", reply_of(2)).await;
    wait_until("the second reply decided", WITHIN, || {
        decisions(&worker, "instant") + decisions(&worker, "throttled") == 2.0
    });
    publish(&js, "notifications.reply.post", reply_of(3)).await;
    wait_until("three replies decided", WITHIN, || {
        decisions(&worker, "instant") + decisions(&worker, "throttled") == 3.0
    });
    assert_eq!(
        (decisions(&worker, "instant"), decisions(&worker, "throttled")),
        (2.0, 1.0),
        "the retried reply took one place"
    );
    let mut subjects: Vec<String> = smtp
        .wait_for_messages(2, WITHIN)
        .iter()
        .map(|mail| subject(mail).to_owned())
        .collect();
    subjects.sort();
    assert_eq!(
        subjects,
        ["Replier 1 replied to your post", "Replier 2 replied to your post"]
    );
}
