//! `GET /metrics` over HTTP, on `[metrics] bind` (off by default; meant
//! for 127.0.0.1 or a trusted network: metrics carry no secret, but say
//! what runs).

use std::sync::Arc;

use axum::http::header::CONTENT_TYPE;
use axum::routing::get;
use axum::Router;
use tokio_util::sync::CancellationToken;

use super::Metrics;

/// Scrapes served at once; more wait (Prometheus scrapes one at a time).
const CONCURRENT_SCRAPES: usize = 8;

/// The OpenMetrics content type.
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Serves until `shutdown`.
pub async fn serve(
    listener: tokio::net::TcpListener,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let app = Router::new()
        .route(
            "/metrics",
            get(move || {
                let metrics = metrics.clone();
                async move { ([(CONTENT_TYPE, OPENMETRICS)], metrics.render()) }
            }),
        )
        .layer(tower::limit::ConcurrencyLimitLayer::new(CONCURRENT_SCRAPES));
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
}
