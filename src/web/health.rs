//! Probes for the platform: `/healthz` says the process answers (it touches nothing, so a slow
//! dependency never gets a healthy process restarted); `/readyz` says its dependencies answer,
//! naming the ones that do not, and answers 503 at once while the process drains.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::AppState;

/// How long each dependency has to answer `/readyz`.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

pub async fn healthz() -> &'static str {
    "ok"
}

/// Whether the process is draining: told to stop, it goes on serving for
/// `SHUTDOWN_DRAIN_SECS` while `/readyz` says it is not ready, so a load balancer takes it out
/// of rotation before it stops listening. Shared by the server loop and the handlers.
#[derive(Debug, Clone, Default)]
pub struct Draining(Arc<AtomicBool>);

impl Draining {
    pub fn start(&self) {
        self.0.store(true, Ordering::Relaxed);
    }

    pub fn is_on(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

pub async fn readyz(State(state): State<AppState>) -> Response {
    if state.draining.is_on() {
        return no_store(
            StatusCode::SERVICE_UNAVAILABLE,
            "draining: shutting down".into(),
        );
    }
    let (database, public, private) = tokio::join!(
        answers(state.db.ping(PROBE_TIMEOUT)),
        answers(state.storages.public.ping()),
        answers(state.storages.private.ping()),
    );
    let failed: Vec<&str> = [
        (!database).then_some("database"),
        (!(public && private)).then_some("storage"),
    ]
    .into_iter()
    .flatten()
    .collect();
    let (status, body) = if failed.is_empty() {
        (StatusCode::OK, "ready".to_owned())
    } else {
        tracing::warn!(failed = ?failed, "not ready");
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {} not answering", failed.join(", ")),
        )
    };
    no_store(status, body)
}

fn no_store(status: StatusCode, body: String) -> Response {
    let mut response = (status, body).into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// Whether `probe` succeeds within [`PROBE_TIMEOUT`].
async fn answers<T, E>(probe: impl std::future::Future<Output = Result<T, E>>) -> bool {
    matches!(tokio::time::timeout(PROBE_TIMEOUT, probe).await, Ok(Ok(_)))
}
