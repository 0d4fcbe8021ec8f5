//! Channel `email` against a real SMTP server (aiosmtpd, started per test on a free port):
//! what arrives (subject, both parts, headers), digests, template overrides, what failures
//! become, and the settings that turn the channel on. What every personal channel does is
//! in `tests/messenger_contract.rs`.

mod support;

use notification_worker::config::Environment;
use notification_worker::config::email::{RawEmail, parse};
use notification_worker::delivery::Failure;
use notification_worker::delivery::email::{EmailMessenger, EmailSettings};
use notification_worker::delivery::job::Notice;
use notification_worker::delivery::messenger::{Address, Content, Messenger};
use notification_worker::delivery::wording;
use notification_worker::domain::{Id, Version};
use notification_worker::recipients::{Email, Locale, Recipient, RecipientChange, Upsert};
use std::time::Duration;
use support::aiosmtpd::{Aiosmtpd, Mail};
use support::free_port;

const FROM: &str = "Exobook <notifications@example.com>";
const TO: &str = "bob@example.org";
/// An owner with characters a URL must encode.
const OWNER: &str = "user 123/é";
const UNSUBSCRIBE: &str = "https://example.com/unsubscribe?owner={owner}";
const WITHIN: Duration = Duration::from_secs(20);

fn recipient() -> Recipient {
    let mut recipient = Recipient::new(Id::parse("owner", OWNER).unwrap());
    let upsert = Upsert {
        email: Some(Some(Email::parse(TO).unwrap())),
        locale: Some(Some(Locale::parse("fr-CA").unwrap())),
        preferences: Vec::new(),
    };
    recipient.apply(&RecipientChange::Upsert(upsert), Version::new(1, 1).unwrap());
    recipient
}

fn notice(id: &str, action: i64, username: &str, excerpt: Option<&str>) -> Notice {
    let mut notice = Notice::sample(OWNER);
    notice.item.action_key = format!("{action}#{username}#post-789");
    notice.item.id = id.into();
    notice.item.userid = format!("id-of-{username}");
    notice.item.username = Some(username.into());
    notice.item.action = action;
    notice.item.resource_type = "post".into();
    notice.item.excerpt = excerpt.map(str::to_owned);
    notice.item.created_at = "2024-01-15T10:30:00Z".into();
    notice.version = "1".into();
    notice
}

fn raw(url: &str) -> RawEmail {
    RawEmail {
        smtp_url: Some(url.into()),
        email_from: Some(FROM.into()),
        email_unsubscribe_url: Some(UNSUBSCRIBE.into()),
        ..RawEmail::default()
    }
}

fn settings(raw: &RawEmail) -> EmailSettings {
    parse(raw, Environment::Production)
        .expect("valid settings")
        .expect("channel email is on")
}

async fn send(
    messenger: &EmailMessenger,
    content: Content<'_>,
) -> Result<(), notification_worker::delivery::SendError> {
    let recipient = recipient();
    let to = recipient.email().unwrap().clone();
    messenger.send(&recipient, Address::Email(&to), content).await
}

fn text_of(mail: &Mail) -> &str {
    mail.part("text/plain").expect("a text part")
}

fn html_of(mail: &Mail) -> &str {
    mail.part("text/html").expect("an HTML part")
}

#[tokio::test]
async fn an_instant_email_arrives_with_its_subject_both_parts_and_headers() {
    let server = Aiosmtpd::start();
    let messenger = EmailMessenger::new(&settings(&raw(&server.url()))).unwrap();
    let id = "3f2b8c1e-7d4a-4b9e-9c1a-2e5f6a7b8c9d";
    let reply = notice(id, 3, "John Doe", Some("Très bien écrit !"));
    send(&messenger, Content::One(&reply)).await.unwrap();

    let mail = server.wait_for_messages(1, WITHIN).remove(0);
    let headline = "John Doe replied to your post";
    assert_eq!(wording::headline(&reply), headline);
    assert_eq!(mail.header("subject"), Some(headline));
    assert!(
        mail.header("content-type")
            .unwrap()
            .starts_with("multipart/alternative"),
        "{mail:?}"
    );
    assert!(text_of(&mail).contains(headline), "{mail:?}");
    assert!(text_of(&mail).contains("Très bien écrit !"), "{mail:?}");
    assert!(html_of(&mail).contains(headline), "{mail:?}");
    assert!(html_of(&mail).contains("Très bien écrit !"), "{mail:?}");
    assert!(html_of(&mail).contains(r#"<html lang="fr-CA">"#), "{mail:?}");
    assert!(
        mail.header("from")
            .unwrap()
            .contains("<notifications@example.com>")
    );
    assert!(mail.header("to").unwrap().contains(TO));
    assert_eq!(
        mail.header("message-id"),
        Some(format!("<{id}@example.com>").as_str())
    );
    let link = "https://example.com/unsubscribe?owner=user%20123%2F%C3%A9";
    assert_eq!(
        mail.header("list-unsubscribe"),
        Some(format!("<{link}>").as_str())
    );
    assert_eq!(
        mail.header("list-unsubscribe-post"),
        Some("List-Unsubscribe=One-Click")
    );
    assert!(text_of(&mail).contains(link), "the footer has the link: {mail:?}");
}

#[tokio::test]
async fn without_an_unsubscribe_url_there_are_no_list_headers() {
    let server = Aiosmtpd::start();
    let raw = RawEmail {
        email_unsubscribe_url: None,
        ..raw(&server.url())
    };
    let messenger = EmailMessenger::new(&settings(&raw)).unwrap();
    let follow = notice("f-1", 6, "Ann", None);
    send(&messenger, Content::One(&follow)).await.unwrap();
    let mail = server.wait_for_messages(1, WITHIN).remove(0);
    assert_eq!(mail.header("subject"), Some("Ann started following you"));
    assert_eq!(mail.header("list-unsubscribe"), None);
    assert_eq!(mail.header("list-unsubscribe-post"), None);
    assert!(!text_of(&mail).contains("Unsubscribe"), "{mail:?}");
}

#[tokio::test]
async fn a_digest_lists_exactly_its_notifications_under_a_stable_message_id() {
    let server = Aiosmtpd::start();
    let messenger = EmailMessenger::new(&settings(&raw(&server.url()))).unwrap();
    let digest = [
        notice("d-1", 1, "Ann", None),
        notice("d-2", 5, "Carl", Some("see @bob")),
        notice("d-3", 6, "Dora", None),
    ];
    let left_out = notice("d-4", 2, "Eve", None);
    send(&messenger, Content::Digest(&digest)).await.unwrap();
    // The same digest again (a retry after a crash): the same Message-ID.
    send(&messenger, Content::Digest(&digest)).await.unwrap();
    send(&messenger, Content::Digest(&digest[..2])).await.unwrap();

    let mails = server.wait_for_messages(3, WITHIN);
    // Files in arrival order are not guaranteed: find the digest of three by its subject.
    let mail = mails
        .iter()
        .find(|mail| mail.header("subject") == Some("3 new notifications"))
        .expect("the digest of three arrived");
    for part in [text_of(mail), html_of(mail)] {
        for notice in &digest {
            assert!(part.contains(&wording::headline(notice)), "{part}");
        }
        assert!(part.contains("see @bob"), "the excerpt is shown: {part}");
        assert!(!part.contains(&wording::headline(&left_out)), "{part}");
    }
    let lines = text_of(mail)
        .lines()
        .filter(|line| line.starts_with("- "))
        .count();
    assert_eq!(lines, 3, "{}", text_of(mail));
    assert_eq!(html_of(mail).matches("<li").count(), 3, "{}", html_of(mail));

    let id = mail.header("message-id").unwrap();
    assert!(
        id.starts_with("<digest-") && id.ends_with("@example.com>"),
        "{id}"
    );
    let ids: Vec<_> = mails
        .iter()
        .map(|mail| mail.header("message-id").unwrap())
        .collect();
    assert!(
        ids.contains(&id) && ids.iter().filter(|other| **other == id).count() == 2,
        "{ids:?}"
    );
    assert!(
        mails
            .iter()
            .any(|mail| mail.header("subject") == Some("2 new notifications")
                && mail.header("message-id") != Some(id)),
        "another digest has another id: {ids:?}"
    );
}

#[tokio::test]
async fn templates_from_email_templates_dir_replace_the_built_in_ones_by_name() {
    let server = Aiosmtpd::start();
    let templates = tempfile::tempdir().unwrap();
    std::fs::write(
        templates.path().join("reply.post.txt"),
        "Custom for {{ owner }}: {{ notice.actor }} said {{ notice.excerpt }}",
    )
    .unwrap();
    std::fs::write(
        templates.path().join("layout.html"),
        "<html><body class=\"custom-layout\">{% block content %}{% endblock %}</body></html>",
    )
    .unwrap();
    let raw = RawEmail {
        email_templates_dir: Some(templates.path().display().to_string()),
        ..raw(&server.url())
    };
    let messenger = EmailMessenger::new(&settings(&raw)).unwrap();
    let reply = notice("r-1", 3, "John Doe", Some("nice"));
    send(&messenger, Content::One(&reply)).await.unwrap();

    let mail = server.wait_for_messages(1, WITHIN).remove(0);
    assert_eq!(
        text_of(&mail).trim_end(),
        format!("Custom for {OWNER}: John Doe said nice")
    );
    let html = html_of(&mail);
    assert!(html.contains("custom-layout"), "the layout override: {html}");
    assert!(
        html.contains("John Doe replied to your post"),
        "the built-in reply.post.html: {html}"
    );
}

#[test]
fn a_template_override_that_does_not_parse_is_refused_at_start_naming_the_file() {
    let templates = tempfile::tempdir().unwrap();
    std::fs::write(
        templates.path().join("digest.html"),
        "{% for notice in notices %}",
    )
    .unwrap();
    let raw = RawEmail {
        email_templates_dir: Some(templates.path().display().to_string()),
        ..raw("smtp://127.0.0.1:2525")
    };
    let error = parse(&raw, Environment::Production).unwrap_err();
    assert_eq!(error.variable, "EMAIL_TEMPLATES_DIR");
    assert!(error.to_string().contains("digest.html"), "{error}");
}

#[tokio::test]
async fn a_server_that_is_not_running_is_a_transient_failure_and_sending_resumes_when_it_is_back() {
    let port = free_port();
    let messenger = EmailMessenger::new(&settings(&raw(&format!("smtp://127.0.0.1:{port}")))).unwrap();
    let like = notice("l-1", 1, "Ann", None);
    let error = send(&messenger, Content::One(&like)).await.unwrap_err();
    assert!(matches!(error.kind, Failure::Transient { .. }), "{error:?}");

    let server = Aiosmtpd::start_on(port);
    send(&messenger, Content::One(&like)).await.unwrap();
    let mail = server.wait_for_messages(1, WITHIN).remove(0);
    assert_eq!(mail.header("subject"), Some("Ann liked your post"));
}

#[tokio::test]
async fn a_5xx_reply_is_permanent_and_a_4xx_reply_transient() {
    let like = notice("l-2", 1, "Ann", None);
    let refusing = Aiosmtpd::start_refusing();
    let messenger = EmailMessenger::new(&settings(&raw(&refusing.url()))).unwrap();
    let error = send(&messenger, Content::One(&like)).await.unwrap_err();
    assert_eq!(error.kind, Failure::Permanent, "{error:?}\n{}", refusing.log());
    assert!(error.message.contains("500"), "{error:?}");

    let busy = Aiosmtpd::start_busy();
    let messenger = EmailMessenger::new(&settings(&raw(&busy.url()))).unwrap();
    let error = send(&messenger, Content::One(&like)).await.unwrap_err();
    assert!(
        matches!(error.kind, Failure::Transient { .. }),
        "{error:?}\n{}",
        busy.log()
    );
    assert!(error.message.contains("451"), "{error:?}");
}

#[test]
fn plain_smtp_leaves_the_machine_only_in_development() {
    let remote = raw("smtp://mail.example.com:25");
    let error = parse(&remote, Environment::Production).unwrap_err();
    assert_eq!(error.variable, "SMTP_URL");
    assert!(error.problem.contains("production"), "{error}");
    assert!(parse(&remote, Environment::Development).unwrap().is_some());
    for url in [
        "smtp://127.0.0.1:2525",
        "smtp://localhost:25",
        "smtp://[::1]:25",
        "smtp://user:pass@mail.example.com:587?tls=required",
        "smtps://user:pass@mail.example.com:465",
    ] {
        assert!(
            parse(&raw(url), Environment::Production).unwrap().is_some(),
            "{url}"
        );
    }
}

#[test]
fn half_the_settings_is_an_error_naming_the_other() {
    let only_url = RawEmail {
        email_from: None,
        ..raw("smtp://127.0.0.1:2525")
    };
    assert_eq!(
        parse(&only_url, Environment::Development).unwrap_err().variable,
        "EMAIL_FROM"
    );
    let only_from = RawEmail {
        smtp_url: None,
        ..raw("smtp://127.0.0.1:2525")
    };
    assert_eq!(
        parse(&only_from, Environment::Development).unwrap_err().variable,
        "SMTP_URL"
    );
    let neither = RawEmail {
        smtp_url: None,
        email_from: None,
        ..RawEmail::default()
    };
    assert!(parse(&neither, Environment::Production).unwrap().is_none());
}

#[test]
fn the_password_never_shows_in_errors_or_debug_output() {
    let password = "hunter2-secret";
    for url in [
        format!("smtp://user:{password}@mail.example.com:25"),
        format!("smtp://user:{password}@mail.example.com?tls=maybe"),
        format!("smtps://user:{password}@mail.example.com?tls=required"),
        format!("ftp://user:{password}@mail.example.com"),
        format!("user:{password}"),
    ] {
        let error = parse(&raw(&url), Environment::Production).unwrap_err();
        assert_eq!(error.variable, "SMTP_URL", "{url}");
        assert!(!error.to_string().contains(password), "{error}");
        assert!(!format!("{error:?}").contains(password), "{error:?}");
    }
    let good = settings(&raw(&format!("smtps://user:{password}@mail.example.com")));
    assert!(!format!("{good:?}").contains(password), "{good:?}");
}

#[test]
fn the_worker_exits_2_on_bad_email_settings_without_printing_the_password() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            vec![("SMTP_URL", "smtps://u:hunter2-secret@mail.example.com".to_owned())],
            "EMAIL_FROM",
        ),
        (vec![("EMAIL_FROM", FROM.to_owned())], "SMTP_URL"),
        (
            vec![
                ("ENVIRONMENT", "production".to_owned()),
                ("NOTIF_STORE", "sqlite".to_owned()),
                ("SMTP_URL", "smtp://u:hunter2-secret@mail.example.com".to_owned()),
                ("EMAIL_FROM", FROM.to_owned()),
            ],
            "SMTP_URL",
        ),
    ];
    for (env, variable) in cases {
        let output = support::command(dir.path(), &env).arg("run").output().unwrap();
        let stderr = String::from_utf8(output.stderr).unwrap();
        assert_eq!(output.status.code(), Some(2), "{env:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(stderr.contains(variable), "{stderr}");
        assert!(!stderr.contains("hunter2"), "{stderr}");
    }
}
