//! What the FCM and APNs contract servers (`fcm_server.rs`, `apns_server.rs`) and their
//! tests share: keys made at test time with the openssl CLI (never committed), their public
//! halves derived by openssl too (so the contract servers do not trust the worker's own key
//! handling), JWT checks, a recipient and a notification to send, and a local server on a
//! free port that a test can stop.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use notification_worker::delivery::Job;
use notification_worker::delivery::job::Notice;
use notification_worker::domain::Id;
use notification_worker::recipients::{PushKind, PushTarget, Recipient, TargetKey};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

pub const WITHIN: Duration = Duration::from_secs(10);

fn openssl(args: &[&str]) -> Vec<u8> {
    let output = Command::new("openssl")
        .args(args)
        .output()
        .expect("the openssl CLI (scripts/test-deps.sh installs it)");
    assert!(
        output.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output.stdout
}

/// A private key file and the public key a verifier uses.
pub struct TestKey {
    pub path: PathBuf,
    pub pem: String,
    /// DER `RSAPublicKey` (RSA) or the uncompressed point (P-256), as ring verifies with.
    pub public: Vec<u8>,
}

/// A 2048-bit RSA key in PKCS#8 PEM, like a service account's `private_key`.
pub fn rsa_key(dir: &Path) -> TestKey {
    let path = dir.join("service-account-key.pem");
    let file = path.to_str().unwrap();
    openssl(&[
        "genpkey",
        "-algorithm",
        "RSA",
        "-pkeyopt",
        "rsa_keygen_bits:2048",
        "-out",
        file,
    ]);
    let public = openssl(&["rsa", "-in", file, "-RSAPublicKey_out", "-outform", "DER"]);
    TestKey {
        pem: std::fs::read_to_string(&path).unwrap(),
        path,
        public,
    }
}

/// A P-256 key in PKCS#8 PEM, the form of Apple's `.p8` files.
pub fn p256_key(dir: &Path) -> TestKey {
    let path = dir.join("AuthKey_TEST123456.p8");
    let file = path.to_str().unwrap();
    openssl(&[
        "genpkey",
        "-algorithm",
        "EC",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-out",
        file,
    ]);
    // SubjectPublicKeyInfo of a P-256 key: a fixed 26-byte prefix, then the 65-byte point.
    let spki = openssl(&["pkey", "-in", file, "-pubout", "-outform", "DER"]);
    assert_eq!(spki.len(), 91, "a P-256 SubjectPublicKeyInfo");
    let public = spki[26..].to_vec();
    assert_eq!(public[0], 4, "an uncompressed point");
    TestKey {
        pem: std::fs::read_to_string(&path).unwrap(),
        path,
        public,
    }
}

/// A JWT whose signature verified: its header and claims.
pub struct Verified {
    pub header: serde_json::Value,
    pub claims: serde_json::Value,
}

/// Checks `token`'s form (three base64url parts, no padding) and its signature.
pub fn verify_jwt(
    token: &str,
    algorithm: &'static dyn ring::signature::VerificationAlgorithm,
    public_key: &[u8],
) -> Result<Verified, String> {
    let parts: Vec<&str> = token.split('.').collect();
    let [header, claims, signature] = parts[..] else {
        return Err("not three parts".into());
    };
    let decode = |part: &str| {
        URL_SAFE_NO_PAD
            .decode(part)
            .map_err(|_| format!("{part:?} is not unpadded base64url"))
    };
    let signature = decode(signature)?;
    ring::signature::UnparsedPublicKey::new(algorithm, public_key)
        .verify(format!("{header}.{claims}").as_bytes(), &signature)
        .map_err(|_| "the signature does not verify".to_owned())?;
    let json = |part: &str| -> Result<serde_json::Value, String> {
        serde_json::from_slice(&decode(part)?).map_err(|_| "not JSON".to_owned())
    };
    Ok(Verified {
        header: json(header)?,
        claims: json(claims)?,
    })
}

pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// The keys of a JSON object, sorted; empty for anything else.
pub fn keys(value: &serde_json::Value) -> Vec<&str> {
    let mut keys: Vec<&str> = value
        .as_object()
        .map(|object| object.keys().map(String::as_str).collect())
        .unwrap_or_default();
    keys.sort_unstable();
    keys
}

pub fn recipient() -> Recipient {
    Recipient::new(Id::parse("owner", "user-123").unwrap())
}

pub fn device(kind: PushKind, token: &str) -> PushTarget {
    PushTarget::device(TargetKey::token(kind, token).unwrap()).unwrap()
}

/// A reply to a post, with an excerpt.
pub fn reply() -> Notice {
    let Job::Created(mut notice) = Job::sample("user-123") else {
        unreachable!()
    };
    notice.item.action = 3;
    notice.item.excerpt = Some("Great point, thanks!".into());
    notice
}

/// An in-process HTTP server on a free port of 127.0.0.1; it stops when [`HttpServer::stop`]
/// is called or the handle is dropped.
pub struct HttpServer {
    /// Its base URL, `http://127.0.0.1:PORT`.
    pub url: String,
    port: u16,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl HttpServer {
    /// Stops listening and closes every connection (HTTP/2 ones with a GOAWAY), so that the
    /// next request to it is refused; returns once its port is closed.
    pub async fn stop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(task) = self.task.take() {
            tokio::time::timeout(WITHIN, task)
                .await
                .expect("the server closes its connections in time")
                .expect("the server ran without panicking");
        }
        let port = self.port;
        super::eventually("the server's port to close", WITHIN, || async move {
            !super::port_answers(port)
        })
        .await;
    }
}

/// Serves `router` on a free port of 127.0.0.1 (HTTP/1.1, and HTTP/2 with prior knowledge
/// when axum's `http2` feature is on).
pub async fn serve(router: axum::Router) -> HttpServer {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let (shutdown, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        axum::serve(listener, router)
            .with_graceful_shutdown(async move {
                // A stop, or the handle dropped: either ends the server.
                let _ = stopped.await;
            })
            .await
            .unwrap();
    });
    HttpServer {
        url: format!("http://{address}"),
        port: address.port(),
        shutdown: Some(shutdown),
        task: Some(task),
    }
}
