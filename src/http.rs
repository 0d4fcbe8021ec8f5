//! The small HTTP listener beside the pipeline: `/healthz`, `/readyz`, `/metrics`.
//! It only reads shared state; nothing in the pipeline waits for it.

use crate::processing::StoreHealth;
use crate::telemetry::exposition::Format;
use crate::telemetry::metrics::Metrics;
use crate::telemetry::readiness::Readiness;
use anyhow::Context;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

#[derive(Clone)]
pub struct HttpState {
    pub metrics: Arc<Metrics>,
    pub readiness: Arc<Readiness>,
    pub health: Arc<StoreHealth>,
}

/// Binds now (so a taken port is an error at start), serves until `shutdown`.
pub async fn start(
    addr: SocketAddr,
    state: HttpState,
    shutdown: CancellationToken,
) -> anyhow::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind(addr).await.with_context(|| {
        format!("cannot listen on HTTP_ADDR {addr} (set another address, or HTTP_ADDR=off)")
    })?;
    let bound = listener.local_addr().context("listener address")?;
    let app = axum::Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(state);
    let server = tokio::spawn(async move {
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(shutdown.cancelled_owned())
            .await;
        if let Err(error) = served {
            tracing::error!(%error, "the HTTP listener stopped");
        }
    });
    Ok((bound, server))
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(state): State<HttpState>) -> impl IntoResponse {
    let status = state.readiness.status(state.health.is_paused());
    let code = if status.ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, axum::Json(status))
}

/// The body and its `Content-Type` always agree (see [`crate::telemetry::exposition`] for why it matters).
async fn metrics(State(state): State<HttpState>, headers: HeaderMap) -> impl IntoResponse {
    let accept = headers.get(header::ACCEPT).and_then(|value| value.to_str().ok());
    let format = Format::negotiate(accept);
    (
        [
            (header::CONTENT_TYPE, format.content_type()),
            (header::VARY, "Accept"),
        ],
        state.metrics.render(format),
    )
}
