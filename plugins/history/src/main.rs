//! History: records the home's events and answers `query`.
//!
//! It keeps the last 10,000 events in memory. After a restart it starts
//! from the retained state of every topic (the host sends it first), so the
//! current state of the home is never lost, only older history.

use std::collections::VecDeque;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

use iglu_bus::topic::{matches, validate_filter};
use iglu_sdk::{Context, HandlerError, Manifest, Plugin};
use serde::de::IgnoredAny;
use serde::{Deserialize, Serialize};

/// Events kept; the oldest are forgotten first.
const KEEP: usize = 10_000;

#[derive(Serialize, Clone)]
struct Record {
    topic: String,
    source: String,
    timestamp_ms: u64,
    retained: bool,
    payload: rmpv::Value,
}

#[derive(Deserialize)]
struct Query {
    #[serde(default = "everything")]
    topic: String,
    #[serde(default = "ten")]
    limit: usize,
}

fn everything() -> String {
    "#".to_owned()
}

fn ten() -> usize {
    10
}

#[derive(Serialize)]
struct Stats {
    recorded: usize,
    kept: usize,
}

type Log = Arc<Mutex<(usize, VecDeque<Record>)>>;

fn main() -> ExitCode {
    let log: Log = Arc::default();
    let (writer, reader, counter) = (log.clone(), log.clone(), log);
    Plugin::new(Manifest {
        id: "history".into(),
        name: "History".into(),
        author: "Iglu developers".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        description: "Records the home's events and answers queries".into(),
    })
    .subscribe("home/#")
    .subscribe("$iglu/#")
    .on_event(move |_ctx: Context, event| {
        let log = writer.clone();
        async move {
            let payload =
                rmpv::decode::read_value(&mut &event.payload[..]).unwrap_or(rmpv::Value::Nil);
            let mut log = log.lock().unwrap_or_else(|p| p.into_inner());
            log.0 += 1;
            if log.1.len() >= KEEP {
                log.1.pop_front();
            }
            log.1.push_back(Record {
                topic: event.topic,
                source: event.source,
                timestamp_ms: event.timestamp_ms,
                retained: event.retained,
                payload,
            });
            Ok(())
        }
    })
    .method("query", move |_ctx: Context, q: Query| {
        let log = reader.clone();
        async move {
            validate_filter(&q.topic).map_err(HandlerError::msg)?;
            let log = log.lock().unwrap_or_else(|p| p.into_inner());
            let found: Vec<Record> = log
                .1
                .iter()
                .rev()
                .filter(|r| matches(&q.topic, &r.topic))
                .take(q.limit.min(KEEP))
                .cloned()
                .collect();
            Ok::<_, HandlerError>(found)
        }
    })
    .method("stats", move |_ctx: Context, _: IgnoredAny| {
        let log = counter.clone();
        async move {
            let log = log.lock().unwrap_or_else(|p| p.into_inner());
            Ok::<_, HandlerError>(Stats {
                recorded: log.0,
                kept: log.1.len(),
            })
        }
    })
    .serve()
}
