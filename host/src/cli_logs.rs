//! `iglu logs` and `iglu log-level`: the CLI's side.

use std::process::ExitCode;
use std::time::Duration;

use iglu_host::control::{LogLevelRequest, LogsRequest, Request};
use iglu_host::Config;

/// How often `--follow` asks for new lines.
const FOLLOW_EVERY: Duration = Duration::from_millis(300);

/// A request to the host, with its answer's result.
async fn result(config: &Config, request: Request) -> anyhow::Result<serde_json::Value> {
    crate::ask(config, request, Duration::from_secs(10)).await
}

/// Prints the lines that match, then (with `--follow`) new ones as they come.
pub async fn logs(config: &Config, mut r: LogsRequest) -> anyhow::Result<ExitCode> {
    let json = r.json;
    let stop = tokio::signal::ctrl_c();
    tokio::pin!(stop);
    loop {
        let answer = result(config, Request::Logs(r.clone())).await?;
        let lines = answer["lines"].as_array().cloned().unwrap_or_default();
        for line in &lines {
            if json {
                println!("{line}");
            } else {
                println!("{}", human(line));
            }
        }
        if !r.follow {
            return Ok(ExitCode::SUCCESS);
        }
        r.after = answer["last"].as_u64().unwrap_or(r.after);
        // After the first page, every new line (up to a read's bound) and
        // no time window: the window was for the start.
        r.since = None;
        r.lines = 1000;
        tokio::select! {
            _ = tokio::time::sleep(FOLLOW_EVERY) => {}
            _ = &mut stop => return Ok(ExitCode::SUCCESS),
        }
    }
}

/// `2026-12-02T15:01:02.123Z  WARN garage::doors: stuck door=left`
fn human(line: &serde_json::Value) -> String {
    let ms = line["timestamp_ms"].as_u64().unwrap_or(0);
    let mut out = format!(
        "{} {:>5} {}: {}",
        utc(ms),
        line["level"].as_str().unwrap_or(""),
        line["target"].as_str().unwrap_or(""),
        line["message"].as_str().unwrap_or("")
    );
    if let Some(fields) = line["fields"].as_array() {
        for f in fields {
            if let (Some(k), Some(v)) = (f[0].as_str(), f[1].as_str()) {
                out.push_str(&format!(" {k}={v}"));
            }
        }
    }
    // A plugin's text must not drive the terminal (escape sequences).
    out.chars()
        .map(|c| if c.is_control() { '\u{fffd}' } else { c })
        .collect()
}

/// Milliseconds since the epoch as an ISO 8601 UTC time.
fn utc(ms: u64) -> String {
    let secs = ms / 1000;
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Howard Hinnant's days-to-civil.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        ms % 1000
    )
}

/// Sets a running plugin's log filter.
pub async fn log_level(config: &Config, r: LogLevelRequest) -> anyhow::Result<ExitCode> {
    let answer = result(config, Request::LogLevel(r.clone())).await?;
    println!(
        "{}: log filter {} (was {})",
        r.plugin,
        answer["filter"].as_str().unwrap_or(&r.filter),
        answer["previous"].as_str().unwrap_or("?")
    );
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    #[test]
    fn utc_dates() {
        assert_eq!(super::utc(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(super::utc(1_796_223_148_393), "2026-12-02T14:52:28.393Z");
    }
}
