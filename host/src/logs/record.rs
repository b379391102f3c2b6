//! One line of a plugin's output, understood: a JSON record from the Rust
//! SDK (`IGLU_LOG_FORMAT=json`, which the host sets for the plugins it
//! starts) keeps its level, target and fields; any other line (a plugin in
//! another language, a panic message) is a plain line, at the level its
//! first word names (`ERROR`, `WARN`/`WARNING`, `INFO`, `DEBUG`, `TRACE`,
//! optionally in brackets or followed by `:`), else INFO on stdout and
//! WARN on stderr: what a program writes to stderr unasked is usually
//! something going wrong.

use serde::{Deserialize, Serialize};

/// A log level, ordered from the most to the least severe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Level {
    /// Something failed.
    Error,
    /// Something is wrong.
    Warn,
    /// What happened.
    Info,
    /// For a developer.
    Debug,
    /// For a developer, in detail.
    Trace,
}

impl Level {
    /// Reads `ERROR`, `warn`, `WARNING`, ...
    pub fn parse(word: &str) -> Option<Level> {
        Some(match word.to_ascii_uppercase().as_str() {
            "ERROR" | "ERR" | "CRITICAL" | "FATAL" => Level::Error,
            "WARN" | "WARNING" => Level::Warn,
            "INFO" => Level::Info,
            "DEBUG" => Level::Debug,
            "TRACE" => Level::Trace,
            _ => return None,
        })
    }

    /// As tracing spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Error => "ERROR",
            Level::Warn => "WARN",
            Level::Info => "INFO",
            Level::Debug => "DEBUG",
            Level::Trace => "TRACE",
        }
    }

    /// The tracing level.
    pub fn tracing(self) -> tracing::Level {
        match self {
            Level::Error => tracing::Level::ERROR,
            Level::Warn => tracing::Level::WARN,
            Level::Info => tracing::Level::INFO,
            Level::Debug => tracing::Level::DEBUG,
            Level::Trace => tracing::Level::TRACE,
        }
    }
}

/// A line, understood.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// Its level.
    pub level: Level,
    /// The plugin's module (`thermostat::rules`), or `stdout`/`stderr` for a plain line.
    pub target: String,
    /// The message.
    pub message: String,
    /// Its fields, as text, sorted by name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<(String, String)>,
}

/// Fields a record may carry (more are dropped): a log line is not a
/// data dump, and the re-emitted event has a field set of bounded size.
pub const MAX_FIELDS: usize = 24;

/// Reads one line of `stream` (`stdout` or `stderr`).
pub fn parse(stream: &'static str, line: &str) -> Record {
    let line = line.trim_end();
    if line.starts_with('{') {
        if let Some(r) = json(line) {
            return r;
        }
    }
    plain(stream, line)
}

/// The SDK's JSON record: `{"level":"WARN","target":"x","fields":{"message":"m","k":1}}`.
fn json(line: &str) -> Option<Record> {
    #[derive(Deserialize)]
    struct Json {
        level: String,
        #[serde(default)]
        target: String,
        #[serde(default)]
        fields: serde_json::Map<String, serde_json::Value>,
    }
    let j: Json = serde_json::from_str(line).ok()?;
    let level = Level::parse(&j.level)?;
    let mut message = String::new();
    let mut fields = Vec::new();
    for (k, v) in j.fields {
        let text = match v {
            serde_json::Value::String(s) => s,
            other => other.to_string(),
        };
        if k == "message" {
            message = text;
        } else if fields.len() < MAX_FIELDS {
            fields.push((k, text));
        }
    }
    Some(Record {
        level,
        target: j.target,
        message,
        fields,
    })
}

fn plain(stream: &'static str, line: &str) -> Record {
    let first = line
        .split_whitespace()
        .next()
        .unwrap_or("")
        .trim_matches(|c: char| c == '[' || c == ']' || c == ':');
    let level = Level::parse(first).unwrap_or(if stream == "stderr" {
        Level::Warn
    } else {
        Level::Info
    });
    Record {
        level,
        target: stream.to_owned(),
        message: line.to_owned(),
        fields: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sdk_records_keep_level_target_and_fields() {
        let r = parse(
            "stderr",
            r#"{"timestamp":"t","level":"WARN","fields":{"message":"event handler failed","topic":"home/x","n":3},"target":"garage::doors"}"#,
        );
        assert_eq!(r.level, Level::Warn);
        assert_eq!(r.target, "garage::doors");
        assert_eq!(r.message, "event handler failed");
        assert_eq!(
            r.fields,
            vec![("n".into(), "3".into()), ("topic".into(), "home/x".into())]
        );
    }

    #[test]
    fn plain_lines_by_first_word_or_stream() {
        assert_eq!(
            parse("stderr", "WARNING:root:low battery").level,
            Level::Warn
        );
        assert_eq!(parse("stderr", "[debug] x").level, Level::Debug);
        assert_eq!(parse("stderr", "INFO started").level, Level::Info);
        assert_eq!(
            parse("stderr", "Traceback (most recent call last):").level,
            Level::Warn
        );
        assert_eq!(parse("stdout", "hello").level, Level::Info);
        assert_eq!(parse("stderr", "{not json").level, Level::Warn);
    }
}
