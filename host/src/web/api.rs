//! The dashboard's HTTP handlers.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, Semaphore};

use super::{auth, Web};
use crate::plugin::handle::Command;

/// Requests served at once.
pub const CONCURRENT_REQUESTS: usize = 64;
/// Live streams open at once (each holds a tap on the bus).
pub const MAX_STREAMS: usize = 16;
/// Events one page is sent per second at most; the rest are counted.
pub const EVENTS_PER_SECOND: u32 = 50;
/// Events waiting for one page; past it they are dropped for that page.
const TAP_CAPACITY: usize = 256;
/// Lifecycle changes closer together than this share one status.
const LIFECYCLE_COALESCE: Duration = Duration::from_millis(200);
/// An event's payload shown at most this long (JSON text).
const PAYLOAD_CHARS: usize = 512;

static STREAMS: Semaphore = Semaphore::const_new(MAX_STREAMS);

/// `?token=`.
#[derive(Deserialize, Default)]
pub struct TokenQuery {
    token: Option<String>,
}

fn refused() -> Response {
    (
        StatusCode::UNAUTHORIZED,
        "Not allowed: open the address `iglu dashboard` prints (it carries the token).\n",
    )
        .into_response()
}

fn allowed(web: &Web, query: Option<&str>, headers: &HeaderMap) -> bool {
    auth::allowed(&web.token, query, headers)
}

/// `GET /`: with `?token=`, keeps it as a cookie and goes to `/`.
pub async fn index(
    State(web): State<Web>,
    Query(q): Query<TokenQuery>,
    headers: HeaderMap,
) -> Response {
    if !allowed(&web, q.token.as_deref(), &headers) {
        return refused();
    }
    if q.token.is_some() {
        if !auth::allowed(&web.token, q.token.as_deref(), &HeaderMap::new()) {
            return refused();
        }
        let cookie = format!(
            "{}={}; Path=/; HttpOnly; SameSite=Strict",
            auth::COOKIE,
            web.token
        );
        return (
            StatusCode::SEE_OTHER,
            [
                (header::SET_COOKIE, cookie),
                (header::LOCATION, "/".to_owned()),
            ],
        )
            .into_response();
    }
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        super::index_html(),
    )
        .into_response()
}

/// One row of the table.
#[derive(Serialize)]
struct Row {
    id: String,
    name: String,
    version: String,
    state: &'static str,
    /// Every restart: after crashes and asked for (as pm2 counts).
    restarts: u32,
    crashes: u32,
    uptime_ms: Option<u64>,
    rss_kib: Option<u64>,
    cpu_percent: Option<f64>,
    calls_per_s: f64,
    p99_ms: Option<f64>,
    queue_depth: u64,
    last_exit: Option<String>,
    health: Option<String>,
}

fn rows(web: &Web) -> Vec<Row> {
    let latest = web.sampler.latest();
    web.shared
        .status()
        .into_iter()
        .map(|p| {
            let point = latest.get(&p.id);
            Row {
                name: p.name.clone(),
                version: p.version.clone(),
                state: p.state.as_str(),
                restarts: p.restarts.saturating_add(p.restarts_requested),
                crashes: p.restarts,
                uptime_ms: p.uptime_ms,
                rss_kib: p.usage.map(|u| u.rss_kib),
                cpu_percent: p.usage.map(|u| u.cpu_percent),
                calls_per_s: point.map_or(0.0, |x| x.calls_per_s),
                p99_ms: point.and_then(|x| x.p99_ms),
                queue_depth: p.events.queued + p.events.in_flight,
                last_exit: p.last_exit.clone(),
                health: p.health.as_ref().map(|h| {
                    if h.detail.is_empty() {
                        h.state.clone()
                    } else {
                        format!("{}: {}", h.state, h.detail)
                    }
                }),
                id: p.id,
            }
        })
        .collect()
}

/// `GET /api/status`: the table and the kept history.
pub async fn status(State(web): State<Web>, headers: HeaderMap) -> Response {
    if !allowed(&web, None, &headers) {
        return refused();
    }
    Json(serde_json::json!({
        "plugins": rows(&web),
        "history": web.sampler.history(),
    }))
    .into_response()
}

/// `?topic=`.
#[derive(Deserialize, Default)]
pub struct StreamQuery {
    topic: Option<String>,
}

/// An event as the page shows it.
#[derive(Serialize)]
struct ShownEvent {
    topic: String,
    source: String,
    timestamp_ms: u64,
    payload: String,
}

struct Stream {
    web: Web,
    /// Lifecycle changes: a status is sent at once, so a short state
    /// (Crashed, before Restarting) is seen.
    lifecycle: tokio::sync::broadcast::Receiver<crate::events::lifecycle::LifecycleEvent>,
    tap: Option<mpsc::Receiver<crate::events::Event>>,
    tick: tokio::time::Interval,
    budget: u32,
    skipped: u64,
    last_status: std::time::Instant,
    _slot: tokio::sync::SemaphorePermit<'static>,
}

/// `GET /api/stream?topic=<filter>`: server-sent events: `status` every
/// second, `event` for events matching the filter (at most
/// [`EVENTS_PER_SECOND`] a second; the status says how many were skipped).
pub async fn stream(
    State(web): State<Web>,
    Query(q): Query<StreamQuery>,
    headers: HeaderMap,
) -> Response {
    if !allowed(&web, None, &headers) {
        return refused();
    }
    let Ok(slot) = STREAMS.try_acquire() else {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "too many dashboards are open\n",
        )
            .into_response();
    };
    let tap = match q.topic.filter(|t| !t.is_empty()) {
        Some(filter) => match web.shared.events.tap(vec![filter], TAP_CAPACITY) {
            Ok(rx) => Some(rx),
            Err(e) => return (StatusCode::BAD_REQUEST, format!("{}\n", e.message)).into_response(),
        },
        None => None,
    };
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let state = Stream {
        lifecycle: web.shared.events.lifecycle(),
        web,
        tap,
        tick,
        budget: EVENTS_PER_SECOND,
        skipped: 0,
        last_status: std::time::Instant::now(),
        _slot: slot,
    };
    enum Wake {
        Tick,
        Lifecycle,
        Event(crate::events::Event),
    }
    let events = futures::stream::unfold(state, |mut s| async move {
        loop {
            let wake = match s.tap.as_mut() {
                Some(tap) => tokio::select! {
                    _ = s.tick.tick() => Wake::Tick,
                    r = s.lifecycle.recv() => {
                        if let Err(tokio::sync::broadcast::error::RecvError::Closed) = r {
                            return None;
                        }
                        Wake::Lifecycle
                    }
                    e = tap.recv() => match e { Some(e) => Wake::Event(e), None => { s.tap = None; continue; } },
                },
                None => tokio::select! {
                    _ = s.tick.tick() => Wake::Tick,
                    r = s.lifecycle.recv() => {
                        if let Err(tokio::sync::broadcast::error::RecvError::Closed) = r {
                            return None;
                        }
                        Wake::Lifecycle
                    }
                },
            };
            match wake {
                Wake::Lifecycle if s.last_status.elapsed() < LIFECYCLE_COALESCE => {}
                Wake::Tick | Wake::Lifecycle => {
                    if matches!(wake, Wake::Tick) {
                        s.budget = EVENTS_PER_SECOND;
                    }
                    s.last_status = std::time::Instant::now();
                    let body =
                        serde_json::json!({ "plugins": rows(&s.web), "skipped_events": s.skipped });
                    let sse = SseEvent::default().event("status").data(body.to_string());
                    return Some((Ok::<_, Infallible>(sse), s));
                }
                Wake::Event(_) if s.budget == 0 => {
                    s.skipped += 1;
                }
                Wake::Event(e) => {
                    s.budget -= 1;
                    let mut payload = crate::json_msgpack::to_json(&e.payload)
                        .map(|j| j.to_string())
                        .unwrap_or_else(|_| "(not MessagePack)".to_owned());
                    if payload.len() > PAYLOAD_CHARS {
                        let mut cut = PAYLOAD_CHARS;
                        while !payload.is_char_boundary(cut) {
                            cut -= 1;
                        }
                        payload.truncate(cut);
                        payload.push('…');
                    }
                    let shown = ShownEvent {
                        topic: e.topic,
                        source: e.source,
                        timestamp_ms: e.timestamp_ms,
                        payload,
                    };
                    let data = serde_json::to_string(&shown).unwrap_or_default();
                    return Some((Ok(SseEvent::default().event("event").data(data)), s));
                }
            }
        }
    });
    Sse::new(events)
        .keep_alive(KeepAlive::default())
        .into_response()
}

/// `POST /api/plugins/<id>/<start|stop|restart>` (with the header
/// `x-iglu-dashboard`, which a page of another site cannot send).
pub async fn act(
    State(web): State<Web>,
    Path((id, action)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    if !allowed(&web, None, &headers) {
        return refused();
    }
    if !headers.contains_key("x-iglu-dashboard") {
        return (
            StatusCode::FORBIDDEN,
            "missing the x-iglu-dashboard header\n",
        )
            .into_response();
    }
    let make: fn(tokio::sync::oneshot::Sender<()>) -> Command = match action.as_str() {
        "start" => Command::Start,
        "stop" => Command::Stop,
        "restart" => Command::Restart,
        _ => return (StatusCode::NOT_FOUND, "start, stop or restart\n").into_response(),
    };
    match web.shared.handles.command(&id, make).await {
        Ok(()) => Json(serde_json::json!({ "ok": true })).into_response(),
        Err(crate::error::HostError::UnknownPlugin(p)) => {
            (StatusCode::NOT_FOUND, format!("no plugin named {p:?}\n")).into_response()
        }
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")).into_response(),
    }
}

/// `?after=`.
#[derive(Deserialize, Default)]
pub struct LogsQuery {
    #[serde(default)]
    after: u64,
}

/// `GET /api/plugins/<id>/logs?after=N`: its recent lines.
pub async fn logs(
    State(web): State<Web>,
    Path(id): Path<String>,
    Query(q): Query<LogsQuery>,
    headers: HeaderMap,
) -> Response {
    if !allowed(&web, None, &headers) {
        return refused();
    }
    let (lines, last) = web.shared.logs.read(
        &id,
        &crate::logs::Query {
            after: q.after,
            limit: 200,
            ..Default::default()
        },
    );
    Json(serde_json::json!({ "lines": lines, "last": last })).into_response()
}
