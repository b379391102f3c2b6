//! The dashboard (`[web] bind`): a page served by the host, its assets in
//! the binary (no CDN), live over server-sent events.
//!
//! - [`auth`]: a token, made at start and kept in the runtime directory
//!   (0600, like the control socket's cookie); `iglu dashboard` prints the
//!   URL that carries it, and the page keeps it as a cookie;
//! - [`sampler`]: once a second, each plugin's calls/s and p99 from the
//!   call totals, with the last five minutes kept (bounded) for the chart;
//! - [`api`]: status, the live stream (status every second; events
//!   sampled to at most [`api::EVENTS_PER_SECOND`] a second per page, with
//!   what was skipped counted, so a slow browser or a flood never slows
//!   the host), start/stop/restart, a plugin's recent logs.

pub mod api;
pub mod auth;
pub mod sampler;

use std::sync::Arc;

use axum::routing::{get, post};
use axum::Router;

use crate::shared::Shared;

pub use crate::config::WebConfig;

/// What handlers share.
#[derive(Clone)]
pub struct Web {
    pub(crate) shared: Arc<Shared>,
    pub(crate) token: Arc<str>,
    pub(crate) sampler: Arc<sampler::Sampler>,
}

const INDEX: &str = include_str!("assets/index.html");
const APP: &str = include_str!("assets/app.js");
const STYLE: &str = include_str!("assets/style.css");

/// The routes.
pub fn router(web: Web) -> Router {
    use axum::http::header::CONTENT_TYPE;
    Router::new()
        .route("/", get(api::index))
        .route(
            "/app.js",
            get(|| async { ([(CONTENT_TYPE, "text/javascript; charset=utf-8")], APP) }),
        )
        .route(
            "/style.css",
            get(|| async { ([(CONTENT_TYPE, "text/css; charset=utf-8")], STYLE) }),
        )
        .route("/api/status", get(api::status))
        .route("/api/stream", get(api::stream))
        .route("/api/plugins/{id}/logs", get(api::logs))
        .route("/api/plugins/{id}/{action}", post(api::act))
        .layer(tower::limit::ConcurrencyLimitLayer::new(
            api::CONCURRENT_REQUESTS,
        ))
        .with_state(web)
}

/// The page itself.
pub(crate) fn index_html() -> &'static str {
    INDEX
}

/// Serves until the host stops.
pub async fn serve(shared: Arc<Shared>, listener: tokio::net::TcpListener, token: String) {
    let sampler = Arc::new(sampler::Sampler::default());
    let sampling = tokio::spawn(sampler::run(
        sampler.clone(),
        shared.clone(),
        shared.shutdown.clone(),
    ));
    let web = Web {
        shared: shared.clone(),
        token: Arc::from(token),
        sampler,
    };
    let shutdown = shared.shutdown.clone();
    if let Err(e) = axum::serve(listener, router(web))
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
    {
        tracing::warn!(error = %e, "the dashboard stopped");
    }
    sampling.abort();
}
