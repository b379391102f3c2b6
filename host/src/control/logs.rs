//! `iglu logs` and `iglu log-level` on the host's side.

use std::time::Duration;

use bytes::Bytes;

use super::{LogLevelRequest, LogsRequest, Response};
use crate::logs::{Level, Query};
use crate::shared::Shared;

/// How long a plugin has to take a new log filter.
const LOG_LEVEL_DEADLINE: Duration = Duration::from_secs(5);

/// `30s`, `5m`, `2h`, `1d`, or a number of seconds.
pub fn parse_since(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let (number, unit) = match t.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => t.split_at(i),
        None => (t, "s"),
    };
    let n: u64 = number
        .parse()
        .map_err(|_| format!("--since {text:?}: give 30s, 5m, 2h, 1d or seconds"))?;
    let secs = match unit {
        "s" => n,
        "m" => n.saturating_mul(60),
        "h" => n.saturating_mul(3600),
        "d" => n.saturating_mul(86_400),
        _ => return Err(format!("--since {text:?}: the unit is s, m, h or d")),
    };
    Ok(Duration::from_secs(secs))
}

/// `logs`.
pub fn logs(shared: &Shared, r: LogsRequest) -> Response {
    if shared.registry.state(&r.plugin).is_none() {
        return Response::err("unknown_plugin", format!("no plugin named {:?}", r.plugin));
    }
    let level = match r.level.as_deref().map(|l| (l, Level::parse(l))) {
        None => None,
        Some((_, Some(level))) => Some(level),
        Some((l, None)) => {
            return Response::err(
                "bad_arguments",
                format!("--level {l:?}: give error, warn, info, debug or trace"),
            )
        }
    };
    let since_ms = match r.since.as_deref().map(parse_since) {
        None => None,
        Some(Ok(d)) => {
            Some(now_ms().saturating_sub(u64::try_from(d.as_millis()).unwrap_or(u64::MAX)))
        }
        Some(Err(e)) => return Response::err("bad_arguments", e),
    };
    let (lines, last) = shared.logs.read(
        &r.plugin,
        &Query {
            after: r.after,
            level,
            since_ms,
            limit: r.lines,
        },
    );
    Response::ok(serde_json::json!({ "lines": lines, "last": last }))
}

/// `log_level`: the plugin's reserved method, through a call.
pub async fn log_level(shared: &Shared, r: LogLevelRequest) -> Response {
    #[derive(serde::Serialize)]
    struct Args<'a> {
        filter: &'a str,
    }
    let args = match rmp_serde::to_vec_named(&Args { filter: &r.filter }) {
        Ok(a) => Bytes::from(a),
        Err(e) => return Response::err("internal", e.to_string()),
    };
    let options = crate::call::options::CallOptions::new(LOG_LEVEL_DEADLINE);
    match crate::call::call(shared, &r.plugin, crate::logs::LOG_LEVEL_METHOD, args, options).await {
        Ok(result) => match crate::json_msgpack::to_json(&result) {
            Ok(json) => Response::ok(json),
            Err(e) => Response::err("bad_message", e.to_string()),
        },
        Err(e) if e.code() == iglu_bus::ErrorCode::MethodNotFound => Response::err(
            "method_not_found",
            format!(
                "plugin {} does not take a log filter at run time (it does not serve {}: only plugins built on the Rust SDK do); set RUST_LOG in its env and restart it",
                r.plugin,
                crate::logs::LOG_LEVEL_METHOD
            ),
        ),
        Err(e) => Response::err(e.code().as_str(), e.to_string()),
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_units() {
        assert_eq!(parse_since("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_since("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_since("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse_since("1d"), Ok(Duration::from_secs(86_400)));
        assert_eq!(parse_since("12"), Ok(Duration::from_secs(12)));
        assert!(parse_since("5y").is_err());
        assert!(parse_since("m").is_err());
    }
}
