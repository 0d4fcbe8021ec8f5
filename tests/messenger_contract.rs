//! The one suite every personal channel (every `Messenger`) passes, each against a receiver
//! started for the test: a real SMTP server (aiosmtpd) for `email`, a real push service
//! (web-push-testing) for `webpush`, and the strict contract servers of `support/` for `fcm`
//! and `apns` (no local FCM or APNs server exists). What is particular to one channel
//! (headers, VAPID, tokens, settings) stays in its own file. A new personal channel adds its
//! rig here.

mod support;

use futures::future::BoxFuture;
use notification_worker::config::Environment;
use notification_worker::config::email::RawEmail;
use notification_worker::config::webpush::RawWebPush;
use notification_worker::delivery::apns::ApnsMessenger;
use notification_worker::delivery::email::EmailMessenger;
use notification_worker::delivery::fcm::FcmMessenger;
use notification_worker::delivery::job::Notice;
use notification_worker::delivery::messenger::{Address, Content, Messenger};
use notification_worker::delivery::webpush::WebPushMessenger;
use notification_worker::delivery::{Failure, SendError, wording};
use notification_worker::domain::{Id, Version};
use notification_worker::recipients::{
    Channel, Email, PushKind, PushTarget, Recipient, RecipientChange, TargetKey, Upsert, WebPushKeys,
};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::aiosmtpd::{Aiosmtpd, Mail};
use support::apns_server::Apple;
use support::fcm_server::Google;
use support::mobile::{HttpServer, device, p256_key, rsa_key};
use support::web_push_testing::{Subscription, WebPushTesting};

const WITHIN: Duration = Duration::from_secs(20);
const OWNER: &str = "user-123";
const EMAIL: &str = "bob@example.org";
/// How many sends go out at once in the concurrency case.
const CONCURRENT: usize = 20;

/// An address as a test holds it; the messenger borrows it as an [`Address`].
#[derive(Debug)]
enum Reach {
    Email(Email),
    Device(PushTarget),
}

impl Reach {
    fn address(&self) -> Address<'_> {
        match self {
            Reach::Email(email) => Address::Email(email),
            Reach::Device(target) => Address::Device(target),
        }
    }

    /// `email`, or the kind of push target.
    fn kind(&self) -> &'static str {
        match self {
            Reach::Email(_) => "email",
            Reach::Device(target) => target.kind().as_str(),
        }
    }
}

/// One address of each kind a person can have: an email address, an FCM device, an APNs
/// device, a Web Push subscription (its endpoint at `endpoint`, its keys made here).
fn every_kind_of_address(endpoint: &str) -> Vec<Reach> {
    let rng = ring::rand::SystemRandom::new();
    let browser = ring::agreement::EphemeralPrivateKey::generate(&ring::agreement::ECDH_P256, &rng).unwrap();
    let mut auth = [0u8; 16];
    ring::rand::SecureRandom::fill(&rng, &mut auth).unwrap();
    let base64 = |bytes: &[u8]| {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    };
    let keys = WebPushKeys::parse(
        &base64(browser.compute_public_key().unwrap().as_ref()),
        &base64(&auth),
    )
    .unwrap();
    let subscription = PushTarget::subscription(TargetKey::endpoint(endpoint, true).unwrap(), keys).unwrap();
    vec![
        Reach::Email(Email::parse(EMAIL).unwrap()),
        Reach::Device(device(PushKind::Fcm, "fcm-token-of-another-app")),
        Reach::Device(device(PushKind::Apns, "00ff00ff00ff00ff")),
        Reach::Device(subscription),
    ]
}

/// The addresses of every kind but `address`'s.
fn other_kinds(address: &Reach, endpoint: &str) -> Vec<Reach> {
    every_kind_of_address(endpoint)
        .into_iter()
        .filter(|other| other.kind() != address.kind())
        .collect()
}

/// What one receiver got, and a way to take it away.
trait Receiver: Send + Sync {
    /// Each message it accepted, as text: the email's text part, the decrypted Web Push
    /// payload, the FCM or APNs request body.
    fn received(&self) -> BoxFuture<'_, Vec<String>>;

    /// Stops it: from then on nothing answers at its address.
    fn stop(&mut self) -> BoxFuture<'_, ()>;
}

/// A messenger wired to its running receiver.
struct Rig<M> {
    channel: Channel,
    messenger: M,
    recipient: Recipient,
    /// An address the receiver takes messages for.
    address: Reach,
    /// An address of every other kind: this messenger cannot reach them.
    other_kinds: Vec<Reach>,
    receiver: Box<dyn Receiver>,
    /// Key files, kept for the test's length (email has none).
    _keys: Option<tempfile::TempDir>,
}

impl<M: Messenger> Rig<M> {
    async fn send(&self, content: Content<'_>) -> Result<(), SendError> {
        self.messenger
            .send(&self.recipient, self.address.address(), content)
            .await
    }

    /// Waits until at least `count` messages arrived; all that arrived.
    async fn wait_for(&self, count: usize) -> Vec<String> {
        let deadline = Instant::now() + WITHIN;
        loop {
            let received = self.receiver.received().await;
            if received.len() >= count {
                return received;
            }
            assert!(
                Instant::now() < deadline,
                "{}: {} of {count} messages arrived: {received:?}",
                self.channel,
                received.len()
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}

fn recipient() -> Recipient {
    Recipient::new(Id::parse("owner", OWNER).unwrap())
}

/// A notification for [`OWNER`] from `actor` (action 1 like, 3 reply, 5 mention, 6
/// follow), with its own id.
fn notice(actor: &str, action: i64) -> Notice {
    let mut notice = Notice::sample(OWNER);
    notice.item.action_key = format!("{OWNER}#{action}#post-789#{actor}");
    notice.item.userid = format!("id-of-{actor}");
    notice.item.username = Some(actor.into());
    notice.item.action = action;
    notice.item.resource_type = "post".into();
    notice.item.excerpt = Some("Great point, thanks!".into());
    notice.item.created_at = "2024-01-15T10:30:00Z".into();
    notice.version = "1".into();
    notice
}

// --- rigs ---

struct SmtpReceiver(Aiosmtpd);

impl Receiver for SmtpReceiver {
    fn received(&self) -> BoxFuture<'_, Vec<String>> {
        Box::pin(async {
            self.0
                .messages()
                .iter()
                .map(|raw| match Mail::parse(raw).part("text/plain") {
                    Some(text) => text.to_owned(),
                    None => format!("(no text part) {raw}"),
                })
                .collect()
        })
    }

    fn stop(&mut self) -> BoxFuture<'_, ()> {
        Box::pin(async { self.0.stop() })
    }
}

async fn email() -> Rig<EmailMessenger> {
    let server = Aiosmtpd::start();
    let raw = RawEmail {
        smtp_url: Some(server.url()),
        email_from: Some("Exobook <notifications@example.com>".into()),
        ..RawEmail::default()
    };
    let settings = notification_worker::config::email::parse(&raw, Environment::Production)
        .unwrap()
        .expect("channel email is on");
    let mut recipient = recipient();
    let upsert = Upsert {
        email: Some(Some(Email::parse(EMAIL).unwrap())),
        locale: None,
        preferences: Vec::new(),
    };
    recipient.apply(&RecipientChange::Upsert(upsert), Version::new(1, 1).unwrap());
    let address = Reach::Email(recipient.email().unwrap().clone());
    Rig {
        channel: Channel::Email,
        messenger: EmailMessenger::new(&settings).unwrap(),
        recipient,
        other_kinds: other_kinds(&address, &format!("http://127.0.0.1:{}/push", server.port)),
        address,
        receiver: Box::new(SmtpReceiver(server)),
        _keys: None,
    }
}

struct PushServiceReceiver {
    server: WebPushTesting,
    subscription: Subscription,
}

impl Receiver for PushServiceReceiver {
    fn received(&self) -> BoxFuture<'_, Vec<String>> {
        Box::pin(self.server.messages(&self.subscription))
    }

    fn stop(&mut self) -> BoxFuture<'_, ()> {
        Box::pin(async { self.server.stop() })
    }
}

async fn webpush() -> Rig<WebPushMessenger> {
    let dir = tempfile::tempdir().unwrap();
    // A P-256 key in PKCS#8 PEM, one of the forms WEBPUSH_VAPID_PRIVATE_KEY_FILE takes.
    let key = p256_key(dir.path());
    let raw = RawWebPush {
        webpush_vapid_private_key_file: Some(key.path.to_str().unwrap().into()),
        webpush_subject: Some("mailto:ops@example.com".into()),
    };
    let settings = notification_worker::config::webpush::parse(&raw)
        .unwrap()
        .expect("channel webpush is on");
    let server = WebPushTesting::start();
    let subscription = server.subscribe(settings.vapid_public_key()).await;
    // web-push-testing's endpoints are http://localhost: allowed here, as in development.
    let address = Reach::Device(
        PushTarget::subscription(
            TargetKey::endpoint(&subscription.endpoint, true).unwrap(),
            WebPushKeys::parse(&subscription.p256dh, &subscription.auth).unwrap(),
        )
        .unwrap(),
    );
    Rig {
        channel: Channel::Webpush,
        messenger: WebPushMessenger::new(&settings).unwrap(),
        recipient: recipient(),
        other_kinds: other_kinds(&address, &subscription.endpoint),
        address,
        receiver: Box::new(PushServiceReceiver { server, subscription }),
        _keys: Some(dir),
    }
}

struct FcmReceiver {
    google: Arc<Google>,
    server: HttpServer,
}

impl Receiver for FcmReceiver {
    fn received(&self) -> BoxFuture<'_, Vec<String>> {
        let messages = self.google.messages.lock().unwrap().clone();
        Box::pin(async move { messages.iter().map(ToString::to_string).collect() })
    }

    fn stop(&mut self) -> BoxFuture<'_, ()> {
        Box::pin(self.server.stop())
    }
}

async fn fcm() -> Rig<FcmMessenger> {
    let dir = tempfile::tempdir().unwrap();
    let key = rsa_key(dir.path());
    let (google, server) = Google::start(key.public.clone(), 3600).await;
    let address = Reach::Device(device(PushKind::Fcm, support::fcm_server::DEVICE));
    Rig {
        channel: Channel::Fcm,
        messenger: support::fcm_server::messenger(dir.path(), &key, &server.url),
        recipient: recipient(),
        other_kinds: other_kinds(&address, &format!("{}/push", server.url)),
        address,
        receiver: Box::new(FcmReceiver { google, server }),
        _keys: Some(dir),
    }
}

struct ApnsReceiver {
    apple: Arc<Apple>,
    server: HttpServer,
}

impl Receiver for ApnsReceiver {
    fn received(&self) -> BoxFuture<'_, Vec<String>> {
        let accepted = self.apple.accepted.lock().unwrap().clone();
        Box::pin(async move {
            accepted
                .iter()
                .map(|request| request.payload.to_string())
                .collect()
        })
    }

    fn stop(&mut self) -> BoxFuture<'_, ()> {
        Box::pin(self.server.stop())
    }
}

async fn apns() -> Rig<ApnsMessenger> {
    let dir = tempfile::tempdir().unwrap();
    let key = p256_key(dir.path());
    let (apple, server) = Apple::start(key.public.clone()).await;
    let address = Reach::Device(device(PushKind::Apns, support::apns_server::DEVICE));
    Rig {
        channel: Channel::Apns,
        messenger: support::apns_server::messenger(&key, &server.url),
        recipient: recipient(),
        other_kinds: other_kinds(&address, &format!("{}/push", server.url)),
        address,
        receiver: Box::new(ApnsReceiver { apple, server }),
        _keys: Some(dir),
    }
}

// --- the contract ---

/// One notification is accepted, and exactly one message with its headline arrives.
async fn a_notification_arrives_with_its_headline<M: Messenger>(rig: Rig<M>) {
    assert_eq!(rig.messenger.channel(), rig.channel);
    let reply = notice("John Doe", 3);
    let sent = rig.send(Content::One(&reply)).await;
    assert!(sent.is_ok(), "{}: {sent:?}", rig.channel);
    let received = rig.wait_for(1).await;
    assert_eq!(received.len(), 1, "{}: {received:?}", rig.channel);
    let headline = wording::headline(&reply);
    assert!(
        received[0].contains(&headline),
        "{}: {headline:?} not in {:?}",
        rig.channel,
        received[0]
    );
}

/// A digest is one message that counts its notifications and names each of them.
async fn a_digest_arrives_as_one_message_with_its_count<M: Messenger>(rig: Rig<M>) {
    let notices = [notice("Ann", 1), notice("Carl", 5), notice("Dora", 6)];
    let sent = rig.send(Content::Digest(&notices)).await;
    assert!(sent.is_ok(), "{}: {sent:?}", rig.channel);
    let received = rig.wait_for(1).await;
    assert_eq!(received.len(), 1, "{}: {received:?}", rig.channel);
    let expected =
        std::iter::once(wording::digest_headline(notices.len())).chain(notices.iter().map(wording::headline));
    for text in expected {
        assert!(
            received[0].contains(&text),
            "{}: {text:?} not in {:?}",
            rig.channel,
            received[0]
        );
    }
}

/// A receiver that went away is worth retrying: the failure is transient.
async fn a_stopped_receiver_is_a_transient_failure<M: Messenger>(mut rig: Rig<M>) {
    // Reached once first, so that what the messenger keeps (connections, tokens) is there.
    let before = notice("Ann", 1);
    let sent = rig.send(Content::One(&before)).await;
    assert!(sent.is_ok(), "{}: {sent:?}", rig.channel);
    rig.wait_for(1).await;
    rig.receiver.stop().await;
    let after = notice("Bob", 1);
    let error = rig
        .send(Content::One(&after))
        .await
        .expect_err("the receiver is stopped");
    assert!(
        matches!(error.kind, Failure::Transient { .. }),
        "{}: {error:?}",
        rig.channel
    );
}

/// An address of another kind is the caller's mistake: refused for good, nothing sent.
async fn an_address_of_another_kind_is_refused_for_good<M: Messenger>(rig: Rig<M>) {
    assert_eq!(rig.other_kinds.len(), 3, "{}: {:?}", rig.channel, rig.other_kinds);
    let like = notice("Ann", 1);
    for address in &rig.other_kinds {
        for content in [Content::One(&like), Content::Digest(std::slice::from_ref(&like))] {
            let result = rig
                .messenger
                .send(&rig.recipient, address.address(), content)
                .await;
            assert!(
                matches!(&result, Err(error) if error.kind == Failure::Permanent),
                "{} to {}: {result:?}",
                rig.channel,
                address.kind()
            );
        }
    }
    // A message to the right address after them arrives alone: none of them went out.
    let follow = notice("Carl", 6);
    let sent = rig.send(Content::One(&follow)).await;
    assert!(sent.is_ok(), "{}: {sent:?}", rig.channel);
    let received = rig.wait_for(1).await;
    assert_eq!(received.len(), 1, "{}: {received:?}", rig.channel);
    assert!(
        received[0].contains(&wording::headline(&follow)),
        "{}: {received:?}",
        rig.channel
    );
}

/// Sends at once each arrive, and once.
async fn concurrent_sends_each_arrive_once<M: Messenger>(rig: Rig<M>) {
    let notices: Vec<Notice> = (0..CONCURRENT)
        .map(|i| notice(&format!("Actor {i:02}"), 1))
        .collect();
    let results =
        futures::future::join_all(notices.iter().map(|notice| rig.send(Content::One(notice)))).await;
    assert!(results.iter().all(Result::is_ok), "{}: {results:?}", rig.channel);
    let received = rig.wait_for(CONCURRENT).await;
    assert_eq!(received.len(), CONCURRENT, "{}: {received:?}", rig.channel);
    for notice in &notices {
        let headline = wording::headline(notice);
        let copies = received.iter().filter(|text| text.contains(&headline)).count();
        assert_eq!(copies, 1, "{}: {headline:?} in {received:?}", rig.channel);
    }
}

/// Runs every case of the contract as its own test, against a fresh rig from `$rig()`.
macro_rules! contract {
    ($rig:ident) => {
        mod $rig {
            contract!(@cases $rig:
                a_notification_arrives_with_its_headline,
                a_digest_arrives_as_one_message_with_its_count,
                a_stopped_receiver_is_a_transient_failure,
                an_address_of_another_kind_is_refused_for_good,
                concurrent_sends_each_arrive_once);
        }
    };
    (@cases $rig:ident: $($case:ident),+) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                super::$case(super::$rig().await).await;
            }
        )+
    };
}

contract!(email);
contract!(webpush);
contract!(fcm);
contract!(apns);
