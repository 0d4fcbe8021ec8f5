//! Connecting to a secured NATS: user/password, token, nkey, a creds file (decentralised JWT
//! authentication), TLS with a private CA and a client certificate, each against a
//! nats-server that requires it; missing or wrong credentials are a clear error; and no
//! secret ever reaches the logs.

mod support;

use std::time::Duration;
use support::*;

const WITHIN: Duration = Duration::from_secs(30);

/// Runs a worker with `auth`, publishes one like through `client`, and checks it is stored
/// and that none of `secrets` appears in anything the worker printed.
async fn worker_stores_an_event(
    nats: &NatsServer,
    auth: &[(&'static str, String)],
    client: async_nats::Client,
    secrets: &[&str],
) {
    let dir = tempfile::tempdir().unwrap();
    let mut env = base_env(nats, dir.path());
    env.retain(|(name, _)| *name != "LOG_LEVEL");
    // As chatty as it gets, the NATS client included.
    env.push(("LOG_LEVEL", "trace".into()));
    env.extend(auth.iter().cloned());
    let setup = command(dir.path(), &env).arg("setup").output().unwrap();
    assert!(
        setup.status.success(),
        "{}",
        String::from_utf8_lossy(&setup.stderr)
    );
    let worker = Worker::start(dir.path(), &env);
    let js = async_nats::jetstream::new(client);
    publish(&js, "notifications.post.like", like("user-1", "user-2", "post-1")).await;
    wait_until("the event to be stored", WITHIN, || count_rows(dir.path()) == 1);
    let printed = format!(
        "{}\n{}{}",
        worker.logs().join("\n"),
        String::from_utf8_lossy(&setup.stdout),
        String::from_utf8_lossy(&setup.stderr)
    );
    for secret in secrets {
        assert!(!printed.contains(secret), "a secret was printed");
    }
}

/// `setup` with `auth` must fail with exit 1 and a message saying why, without the secret.
fn refused(nats: &NatsServer, auth: &[(&'static str, String)], secret: &str, expect: &str) {
    let dir = tempfile::tempdir().unwrap();
    let mut env = base_env(nats, dir.path());
    env.extend(auth.iter().cloned());
    let output = command(dir.path(), &env).arg("setup").output().unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr).to_lowercase();
    assert!(stderr.contains("cannot connect to nats"), "{stderr}");
    assert!(stderr.contains(expect), "expected {expect:?} in {stderr}");
    assert!(!stderr.contains(&secret.to_lowercase()), "a secret was printed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_and_password() {
    let nats =
        NatsServer::start_with_config(r#"authorization { user: "worker", password: "pw-Sup3rSecret" }"#);
    let client = async_nats::ConnectOptions::with_user_and_password("worker".into(), "pw-Sup3rSecret".into())
        .connect(nats.url())
        .await
        .unwrap();
    let auth = [
        ("NATS_USER", "worker".to_owned()),
        ("NATS_PASSWORD", "pw-Sup3rSecret".to_owned()),
    ];
    worker_stores_an_event(&nats, &auth, client, &["pw-Sup3rSecret"]).await;
    let wrong = [
        ("NATS_USER", "worker".to_owned()),
        ("NATS_PASSWORD", "pw-Wr0ngGuess".to_owned()),
    ];
    refused(&nats, &wrong, "pw-Wr0ngGuess", "authorization");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token() {
    let nats = NatsServer::start_with_config(r#"authorization { token: "tok-Sup3rSecret" }"#);
    let client = async_nats::ConnectOptions::with_token("tok-Sup3rSecret".into())
        .connect(nats.url())
        .await
        .unwrap();
    worker_stores_an_event(
        &nats,
        &[("NATS_TOKEN", "tok-Sup3rSecret".into())],
        client,
        &["tok-Sup3rSecret"],
    )
    .await;
    refused(
        &nats,
        &[("NATS_TOKEN", "tok-Wr0ngGuess".into())],
        "tok-Wr0ngGuess",
        "authorization",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nkey_seed_file() {
    let user = nkeys::KeyPair::new_user();
    let seed = user.seed().unwrap();
    let nats = NatsServer::start_with_config(&format!(
        r#"authorization {{ users: [ {{ nkey: "{}" }} ] }}"#,
        user.public_key()
    ));
    let files = tempfile::tempdir().unwrap();
    let seed_file = files.path().join("worker.nk");
    std::fs::write(&seed_file, format!("{seed}\n")).unwrap();
    let client = async_nats::ConnectOptions::with_nkey(seed.clone())
        .connect(nats.url())
        .await
        .unwrap();
    let auth = [("NATS_NKEY_FILE", seed_file.display().to_string())];
    worker_stores_an_event(&nats, &auth, client, &[&seed]).await;

    let stranger = nkeys::KeyPair::new_user().seed().unwrap();
    let other_file = files.path().join("stranger.nk");
    std::fs::write(&other_file, &stranger).unwrap();
    refused(
        &nats,
        &[("NATS_NKEY_FILE", other_file.display().to_string())],
        &stranger,
        "authorization",
    );
}

/// A private CA, a server certificate for 127.0.0.1 and a client certificate, as PEM files.
struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    fn new() -> Pki {
        use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
        let dir = tempfile::tempdir().unwrap();
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "notification-worker test CA");
        let ca_cert = ca_params.self_signed(&ca_key).unwrap();
        let issuer = Issuer::new(ca_params, ca_key);
        let write = |name: &str, text: String| std::fs::write(dir.path().join(name), text).unwrap();
        write("ca.pem", ca_cert.pem());
        for (name, names) in [
            ("server", vec!["127.0.0.1".to_owned(), "localhost".to_owned()]),
            ("client", vec!["worker".to_owned()]),
        ] {
            let key = KeyPair::generate().unwrap();
            let mut params = CertificateParams::new(names).unwrap();
            params.distinguished_name.push(DnType::CommonName, name);
            let cert = params.signed_by(&key, &issuer).unwrap();
            write(&format!("{name}.pem"), cert.pem());
            write(&format!("{name}-key.pem"), key.serialize_pem());
        }
        Pki { dir }
    }

    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }

    fn server_config(&self) -> String {
        format!(
            r#"tls {{ cert_file: "{}", key_file: "{}", ca_file: "{}", verify: true }}"#,
            self.path("server.pem"),
            self.path("server-key.pem"),
            self.path("ca.pem")
        )
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_a_private_ca_and_a_client_certificate() {
    notification_worker::input::install_tls_provider();
    let pki = Pki::new();
    let nats = NatsServer::start_with_config(&pki.server_config());
    let client = async_nats::ConnectOptions::new()
        .add_root_certificates(pki.path("ca.pem").into())
        .add_client_certificate(pki.path("client.pem").into(), pki.path("client-key.pem").into())
        .require_tls(true)
        .connect(nats.url())
        .await
        .unwrap();
    let auth = [
        ("NATS_TLS_CA_FILE", pki.path("ca.pem")),
        ("NATS_TLS_CERT_FILE", pki.path("client.pem")),
        ("NATS_TLS_KEY_FILE", pki.path("client-key.pem")),
    ];
    let key = std::fs::read_to_string(pki.path("client-key.pem")).unwrap();
    let key_body = key.lines().nth(1).unwrap().to_owned();
    worker_stores_an_event(&nats, &auth, client, &[&key_body]).await;
    // Without the client certificate the server refuses the worker.
    refused(
        &nats,
        &[("NATS_TLS_CA_FILE", pki.path("ca.pem"))],
        &key_body,
        // rustls: "received fatal alert: BadCertificate" (lowercased by `refused`).
        "certificate",
    );
}

/// Decentralised (JWT) authentication as NGS and `nsc` set it up: an operator, a system
/// account and an account with JetStream, trusted by the server through a memory resolver;
/// users are JWTs signed by the account, sent with the seed that proves them.
struct Operator {
    operator: nkeys::KeyPair,
    system: nkeys::KeyPair,
    account: nkeys::KeyPair,
}

/// base64url without padding, as JWTs use it.
fn base64url(bytes: &[u8]) -> String {
    aws_smithy_types::base64::encode(bytes)
        .trim_end_matches('=')
        .replace('+', "-")
        .replace('/', "_")
}

/// A NATS JWT (`ed25519-nkey`) with these claims, signed by `issuer`.
fn jwt(issuer: &nkeys::KeyPair, subject: &str, nats: serde_json::Value) -> String {
    let claims = serde_json::json!({
        "jti": uuid::Uuid::new_v4().simple().to_string().to_uppercase(),
        "iat": std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs(),
        "iss": issuer.public_key(),
        "name": subject,
        "sub": subject,
        "nats": nats,
    });
    let signed = format!(
        "{}.{}",
        base64url(br#"{"typ":"JWT","alg":"ed25519-nkey"}"#),
        base64url(claims.to_string().as_bytes())
    );
    let signature = issuer.sign(signed.as_bytes()).unwrap();
    format!("{signed}.{}", base64url(&signature))
}

impl Operator {
    fn new() -> Operator {
        Operator {
            operator: nkeys::KeyPair::new_operator(),
            system: nkeys::KeyPair::new_account(),
            account: nkeys::KeyPair::new_account(),
        }
    }

    /// Server configuration trusting this operator and its two accounts.
    fn server_config(&self) -> String {
        let operator = jwt(
            &self.operator,
            &self.operator.public_key(),
            serde_json::json!({"type": "operator", "version": 2, "system_account": self.system.public_key()}),
        );
        let account = |key: &nkeys::KeyPair, jetstream: bool| {
            let storage = if jetstream { -1 } else { 0 };
            jwt(
                &self.operator,
                &key.public_key(),
                serde_json::json!({"type": "account", "version": 2, "limits": {
                    "subs": -1, "data": -1, "payload": -1, "imports": -1, "exports": -1,
                    "wildcards": true, "conn": -1, "leaf": -1,
                    "mem_storage": storage, "disk_storage": storage, "streams": -1, "consumer": -1,
                }}),
            )
        };
        format!(
            "operator: \"{operator}\"\nsystem_account: \"{system}\"\nresolver: MEMORY\n\
             resolver_preload: {{\n  {system}: \"{system_jwt}\"\n  {account}: \"{account_jwt}\"\n}}\n",
            system = self.system.public_key(),
            system_jwt = account(&self.system, false),
            account = self.account.public_key(),
            account_jwt = account(&self.account, true),
        )
    }

    /// A creds file for a new user, signed by `signer` (the account, or a stranger).
    fn creds(&self, signer: &nkeys::KeyPair) -> (String, String) {
        let user = nkeys::KeyPair::new_user();
        let token = jwt(
            signer,
            &user.public_key(),
            serde_json::json!({"type": "user", "version": 2, "pub": {}, "sub": {},
                               "subs": -1, "data": -1, "payload": -1}),
        );
        let seed = user.seed().unwrap();
        let creds = format!(
            "-----BEGIN NATS USER JWT-----\n{token}\n------END NATS USER JWT------\n\n\
             -----BEGIN USER NKEY SEED-----\n{seed}\n------END USER NKEY SEED------\n"
        );
        (creds, seed)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_creds_file_is_required_used_and_never_printed() {
    let operator = Operator::new();
    let nats = NatsServer::start_with_config(&operator.server_config());
    let files = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| {
        let path = files.path().join(name);
        std::fs::write(&path, text).unwrap();
        path.display().to_string()
    };
    let (creds, seed) = operator.creds(&operator.account);
    let creds_file = write("worker.creds", &creds);
    let client = async_nats::ConnectOptions::with_credentials(&creds)
        .unwrap()
        .connect(nats.url())
        .await
        .unwrap();
    let jwt_signature = creds
        .lines()
        .nth(1)
        .unwrap()
        .rsplit('.')
        .next()
        .unwrap()
        .to_owned();
    let auth = [("NATS_CREDS_FILE", creds_file.clone())];
    worker_stores_an_event(&nats, &auth, client, &[&seed, &jwt_signature]).await;

    // The server really checks: no credentials, a user signed by an account it does not
    // trust, or a seed that is not the JWT's, are all refused.
    refused(&nats, &[], &seed, "authorization violation");
    let stranger = nkeys::KeyPair::new_account();
    let (untrusted, untrusted_seed) = operator.creds(&stranger);
    refused(
        &nats,
        &[("NATS_CREDS_FILE", write("untrusted.creds", &untrusted))],
        &untrusted_seed,
        "authorization violation",
    );
    let (_, other_seed) = operator.creds(&operator.account);
    let mismatched = creds.replace(&seed, &other_seed);
    assert_ne!(mismatched, creds);
    refused(
        &nats,
        &[("NATS_CREDS_FILE", write("mismatched.creds", &mismatched))],
        &other_seed,
        "authorization violation",
    );
}
