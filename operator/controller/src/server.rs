//! The controller's HTTP endpoints: `/metrics` for Prometheus, `/healthz` (the process answers) and `/readyz`
//! (the caches are synced, or this replica is a standby waiting for the leader Lease).

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

use axum::Router;
use axum::extract::State as Extract;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;

use crate::metrics::Metrics;

/// Where this replica is in its life, as `/readyz` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Phase {
    /// Waiting for the Stack CRD, or filling the caches.
    Starting = 0,
    /// Another replica holds the leader Lease; this one takes over when it goes.
    Standby = 1,
    /// Reconciling.
    Leading = 2,
}

/// What the endpoints report, shared with the controller.
#[derive(Default)]
pub struct State {
    pub metrics: Metrics,
    phase: AtomicU8,
}

impl State {
    pub fn set_phase(&self, phase: Phase) {
        self.phase.store(phase as u8, Ordering::Relaxed);
    }

    pub fn phase(&self) -> Phase {
        match self.phase.load(Ordering::Relaxed) {
            1 => Phase::Standby,
            2 => Phase::Leading,
            _ => Phase::Starting,
        }
    }
}

pub fn router(state: Arc<State>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .with_state(state)
}

/// Serves the endpoints on `listener` until `shutdown` completes.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: Arc<State>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, "serving /metrics, /healthz and /readyz");
    }
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown)
        .await
}

async fn metrics(Extract(state): Extract<Arc<State>>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.encode(),
    )
}

async fn readyz(Extract(state): Extract<Arc<State>>) -> impl IntoResponse {
    match state.phase() {
        Phase::Starting => (StatusCode::SERVICE_UNAVAILABLE, "starting"),
        Phase::Standby => (StatusCode::OK, "standby"),
        Phase::Leading => (StatusCode::OK, "leading"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn get(state: &Arc<State>, path: &str) -> (StatusCode, String) {
        use tower::ServiceExt;
        let response = router(state.clone())
            .oneshot(
                axum::http::Request::get(path)
                    .body(axum::body::Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        let status = response.status();
        let body = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        (status, String::from_utf8(body.to_vec()).unwrap())
    }

    #[tokio::test]
    async fn readyz_fails_until_the_caches_are_synced() {
        let state = Arc::new(State::default());
        assert_eq!(get(&state, "/healthz").await.0, StatusCode::OK);
        assert_eq!(
            get(&state, "/readyz").await.0,
            StatusCode::SERVICE_UNAVAILABLE
        );
        state.set_phase(Phase::Standby);
        assert_eq!(
            get(&state, "/readyz").await,
            (StatusCode::OK, "standby".into())
        );
        state.set_phase(Phase::Leading);
        assert_eq!(
            get(&state, "/readyz").await,
            (StatusCode::OK, "leading".into())
        );
    }

    #[tokio::test]
    async fn metrics_are_served_as_openmetrics_text() {
        let state = Arc::new(State::default());
        drop(state.metrics.reconcile());
        let (status, body) = get(&state, "/metrics").await;
        assert_eq!(status, StatusCode::OK);
        assert!(
            body.contains("berth_controller_reconciles_total 1"),
            "{body}"
        );
        assert!(body.ends_with("# EOF\n"), "{body}");
    }
}
