//! A webhook receiver for tests: a real HTTP server on a free port that checks every
//! request's signature with its own implementation of the Standard Webhooks algorithm
//! (hmac and sha2 crates, not the worker's ring-based signer), answers with the status the
//! test sets, and records what it accepted.

use base64::Engine;
use hmac::{KeyInit, Mac};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use tokio_util::sync::CancellationToken;

/// One accepted request.
#[derive(Debug, Clone)]
pub struct Received {
    pub id: String,
    pub timestamp: i64,
    pub body: serde_json::Value,
}

#[derive(Default)]
struct State {
    /// Requests answered 2xx whose signature was valid.
    accepted: Mutex<Vec<Received>>,
    /// Requests whose signature did not verify (always answered 401).
    forged: Mutex<usize>,
    /// Requests answered with an error status.
    refused: Mutex<usize>,
    status: AtomicU16,
    key: Vec<u8>,
}

pub struct WebhookReceiver {
    state: Arc<State>,
    pub port: u16,
    stop: Option<CancellationToken>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// The Standard Webhooks signature, computed independently: `v1,` + base64 of
/// HMAC-SHA256(key, "{id}.{timestamp}.{body}").
pub fn expected_signature(key: &[u8], id: &str, timestamp: &str, body: &[u8]) -> String {
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(key).unwrap();
    mac.update(format!("{id}.{timestamp}.").as_bytes());
    mac.update(body);
    let tag = mac.finalize().into_bytes();
    format!("v1,{}", base64::engine::general_purpose::STANDARD.encode(tag))
}

/// The secret every test receiver uses (the Standard Webhooks specification's example).
pub const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

impl WebhookReceiver {
    pub fn start() -> WebhookReceiver {
        let key = base64::engine::general_purpose::STANDARD
            .decode(SECRET.strip_prefix("whsec_").unwrap())
            .unwrap();
        let state = Arc::new(State {
            status: AtomicU16::new(200),
            key,
            ..State::default()
        });
        let mut receiver = WebhookReceiver {
            state,
            port: super::free_port(),
            stop: None,
            thread: None,
        };
        receiver.serve();
        receiver
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/hooks/notifications", self.port)
    }

    /// Answers every request with `status` from now on.
    pub fn answer(&self, status: u16) {
        self.state.status.store(status, Ordering::SeqCst);
    }

    pub fn accepted(&self) -> Vec<Received> {
        self.state.accepted.lock().unwrap().clone()
    }

    pub fn forged(&self) -> usize {
        *self.state.forged.lock().unwrap()
    }

    pub fn refused(&self) -> usize {
        *self.state.refused.lock().unwrap()
    }

    /// Stops listening (connections are refused) until [`WebhookReceiver::restart`].
    pub fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            stop.cancel();
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }

    pub fn restart(&mut self) {
        self.stop();
        self.serve();
    }

    fn serve(&mut self) {
        let stop = CancellationToken::new();
        let state = Arc::clone(&self.state);
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        let (ready_tx, ready) = std::sync::mpsc::channel();
        let token = stop.clone();
        self.thread = Some(std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let listener = loop {
                    match tokio::net::TcpListener::bind(addr).await {
                        Ok(listener) => break listener,
                        // The previous listener's port may take a moment to be free again.
                        Err(_) => tokio::time::sleep(std::time::Duration::from_millis(20)).await,
                    }
                };
                ready_tx.send(()).unwrap();
                let app = axum::Router::new()
                    .route("/hooks/notifications", axum::routing::post(receive))
                    .with_state(state);
                let _ = axum::serve(listener, app)
                    .with_graceful_shutdown(token.cancelled_owned())
                    .await;
            });
        }));
        ready.recv().unwrap();
        self.stop = Some(stop);
    }
}

async fn receive(
    axum::extract::State(state): axum::extract::State<Arc<State>>,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> (axum::http::StatusCode, [(&'static str, &'static str); 1]) {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let (id, timestamp, signature) = (
        header("webhook-id"),
        header("webhook-timestamp"),
        header("webhook-signature"),
    );
    let expected = expected_signature(&state.key, &id, &timestamp, &body);
    // The header may hold several space-separated signatures (key rotation).
    if id.is_empty() || !signature.split(' ').any(|candidate| candidate == expected) {
        *state.forged.lock().unwrap() += 1;
        return (axum::http::StatusCode::UNAUTHORIZED, [("retry-after", "0")]);
    }
    let status = axum::http::StatusCode::from_u16(state.status.load(Ordering::SeqCst)).unwrap();
    if !status.is_success() {
        *state.refused.lock().unwrap() += 1;
        return (status, [("retry-after", "1")]);
    }
    state.accepted.lock().unwrap().push(Received {
        id,
        timestamp: timestamp.parse().unwrap_or(0),
        body: serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null),
    });
    (status, [("retry-after", "0")])
}

impl Drop for WebhookReceiver {
    fn drop(&mut self) {
        self.stop();
    }
}
