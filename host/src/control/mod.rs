//! The control socket: how the `iglu` CLI talks to a running host.
//!
//! A Unix socket in the host's 0700 runtime directory; the server also checks
//! the peer's uid. One JSON request line per connection, one JSON response
//! line back. JSON rather than the plugin protocol because people and shell
//! scripts are its users.

pub mod client;
pub mod cookie;
pub mod kv;
pub mod logs;
pub mod packages;
pub mod server;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// A request from the CLI, and the CLI's own arguments for it: each
/// command's fields are defined once, here, as the `iglu` subcommand's
/// arguments (clap) and as the JSON of the control socket (serde). Read a
/// request with [`Request::from_json`]: the arguments stay JSON text
/// (`RawValue`), which serde's tagged enums cannot carry when deserializing.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub enum Request {
    /// Every plugin's status.
    Status,
    /// Call a plugin's method.
    Call(CallRequest),
    /// Publish an event from the host.
    Publish(PublishRequest),
    /// Start a stopped or failed plugin.
    Start(PluginRequest),
    /// Stop a plugin.
    Stop(PluginRequest),
    /// Stop and start a plugin.
    Restart(PluginRequest),
    /// A plugin's store (`iglu kv`).
    Kv(kv::KvRequest),
    /// What installing a bundle would do (for approval).
    Plan(packages::PlanRequest),
    /// Install a package and start it.
    Install(packages::InstallRequest),
    /// Upgrade an installed package with no failed call.
    Upgrade(packages::InstallRequest),
    /// Stop and remove an installed package.
    Uninstall(packages::UninstallRequest),
    /// Every plugin: where it comes from, version, state, permissions.
    Plugins,
    /// A plugin's settings.
    Settings(packages::SettingsRequest),
    /// A plugin's recent log lines.
    Logs(LogsRequest),
    /// Change a running plugin's log filter.
    LogLevel(LogLevelRequest),
}

/// `logs`: a plugin's recent log lines (the newest that match, oldest first).
#[derive(Debug, Clone, Serialize, Deserialize, clap::Args)]
pub struct LogsRequest {
    /// Plugin id.
    pub plugin: String,
    /// Keep printing lines as they come (Ctrl-C to stop).
    #[arg(short, long)]
    #[serde(default)]
    pub follow: bool,
    /// Only lines at least this severe: error, warn, info, debug or trace.
    #[arg(long)]
    #[serde(default)]
    pub level: Option<String>,
    /// Only lines from the last 30s, 5m, 2h, 1d (or a number of seconds).
    #[arg(long)]
    #[serde(default)]
    pub since: Option<String>,
    /// At most this many lines (at most 1,000).
    #[arg(long, short = 'n', default_value_t = 100)]
    #[serde(default = "hundred")]
    pub lines: usize,
    /// Only lines numbered after this (what --follow asks for next).
    #[arg(long, default_value_t = 0)]
    #[serde(default)]
    pub after: u64,
    /// Print each line as JSON.
    #[arg(long)]
    #[serde(default)]
    pub json: bool,
}

fn hundred() -> usize {
    100
}

/// `log-level`: a running plugin's new log filter.
#[derive(Debug, Clone, Serialize, Deserialize, clap::Args)]
pub struct LogLevelRequest {
    /// Plugin id.
    pub plugin: String,
    /// A `RUST_LOG`-style filter: `debug`, `warn,mymodule=trace`.
    pub filter: String,
}

/// `call`: a plugin's method with JSON arguments.
#[derive(Debug, Clone, Serialize, Deserialize, clap::Args)]
pub struct CallRequest {
    /// Plugin id.
    pub plugin: String,
    /// Method name.
    pub method: String,
    /// Arguments as JSON (default: null), sent to the plugin as
    /// MessagePack; integers beyond 64 bits are refused.
    // Kept as text and transcoded, never built into a value tree (see
    // `json_msgpack::text_to_msgpack`).
    #[arg(default_value = "null", value_parser = json_text)]
    pub args: Box<RawValue>,
    /// Deadline in ms (default: the host's call_timeout_ms).
    #[arg(long)]
    pub timeout_ms: Option<u64>,
    /// If the plugin is starting or restarting, wait for it (within the
    /// deadline) instead of failing with not_running (default: the host's
    /// `call_wait_for_running`).
    #[arg(long, num_args = 0, default_missing_value = "true")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait: Option<bool>,
}

/// `publish`: an event (JSON payload) on a topic, as the host.
#[derive(Debug, Clone, Serialize, Deserialize, clap::Args)]
pub struct PublishRequest {
    /// Topic, e.g. home/kitchen/motion.
    pub topic: String,
    /// Payload as JSON (default: null), sent as MessagePack; integers
    /// beyond 64 bits are refused.
    #[arg(default_value = "null", value_parser = json_text)]
    pub payload: Box<RawValue>,
    /// Keep it as the topic's retained state, given to every new subscriber.
    #[arg(long)]
    #[serde(default)]
    pub retain: bool,
}

/// `start`, `stop`, `restart`: one plugin.
#[derive(Debug, Clone, Serialize, Deserialize, clap::Args)]
pub struct PluginRequest {
    /// Plugin id.
    pub plugin: String,
}

/// JSON text from the command line, refusing integers MessagePack cannot
/// carry (serde_json would turn them into floats without a word).
/// Multi-line JSON (a file, pretty-printed) is made one line: a request
/// is one line on the socket.
pub fn json_text(text: &str) -> Result<Box<RawValue>, String> {
    crate::json_msgpack::check_integers(text).map_err(|e| e.to_string())?;
    let text = text.trim();
    if text.contains(['\n', '\r']) {
        let value: serde_json::Value =
            serde_json::from_str(text).map_err(|e| format!("not valid JSON: {e}"))?;
        return serde_json::value::to_raw_value(&value).map_err(|e| e.to_string());
    }
    RawValue::from_string(text.to_owned()).map_err(|e| format!("not valid JSON: {e}"))
}

impl Request {
    /// Parses one request line: its `cmd` first, then the fields of that
    /// command (two linear passes over the text; nothing is built for the
    /// arguments but their text).
    pub fn from_json(text: &str) -> Result<Request, serde_json::Error> {
        #[derive(Deserialize)]
        struct Tag {
            cmd: String,
        }
        let tag: Tag = serde_json::from_str(text)?;
        Ok(match tag.cmd.as_str() {
            "status" => Request::Status,
            "call" => Request::Call(serde_json::from_str(text)?),
            "publish" => Request::Publish(serde_json::from_str(text)?),
            "start" => Request::Start(serde_json::from_str(text)?),
            "stop" => Request::Stop(serde_json::from_str(text)?),
            "restart" => Request::Restart(serde_json::from_str(text)?),
            "kv" => Request::Kv(kv::KvRequest::from_json(text)?),
            "plan" => Request::Plan(serde_json::from_str(text)?),
            "install" => Request::Install(serde_json::from_str(text)?),
            "upgrade" => Request::Upgrade(serde_json::from_str(text)?),
            "uninstall" => Request::Uninstall(serde_json::from_str(text)?),
            "plugins" => Request::Plugins,
            "settings" => Request::Settings(settings_from_json(text)?),
            "logs" => Request::Logs(serde_json::from_str(text)?),
            "log_level" => Request::LogLevel(serde_json::from_str(text)?),
            other => {
                return Err(serde::de::Error::custom(format!(
                    "unknown cmd {other:?} (status, call, publish, start, stop, restart, kv, plan, install, upgrade, uninstall, plugins, settings, logs, log_level)"
                )))
            }
        })
    }
}

/// A `settings` request: `{"cmd": "settings", "op": "set", ...}`.
fn settings_from_json(text: &str) -> Result<packages::SettingsRequest, serde_json::Error> {
    let mut value: serde_json::Value = serde_json::from_str(text)?;
    if let Some(map) = value.as_object_mut() {
        map.remove("cmd");
    }
    serde_json::from_value(value)
}

/// The answer: `{"ok": true, "result": ...}` or `{"ok": false, "code": ..., "message": ...}`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Response {
    /// Whether the request succeeded.
    pub ok: bool,
    /// The result, when it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<serde_json::Value>,
    /// Machine-readable error code, when it did not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    /// A sentence for people, when it did not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

impl Response {
    /// Success with a result.
    pub fn ok(result: serde_json::Value) -> Response {
        Response {
            ok: true,
            result: Some(result),
            code: None,
            message: None,
        }
    }

    /// Failure with a code and a sentence.
    pub fn err(code: impl Into<String>, message: impl Into<String>) -> Response {
        Response {
            ok: false,
            result: None,
            code: Some(code.into()),
            message: Some(message.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_read_back_as_written() {
        let call = Request::Call(CallRequest {
            plugin: "echo".into(),
            method: "echo".into(),
            args: RawValue::from_string(r#"{"n": [1, 2]}"#.into()).expect("raw"),
            timeout_ms: Some(5),
            wait: Some(true),
        });
        let text = serde_json::to_string(&call).expect("encodes");
        match Request::from_json(&text).expect("parses") {
            Request::Call(CallRequest {
                args,
                wait,
                timeout_ms,
                ..
            }) => {
                assert_eq!(args.get(), r#"{"n": [1, 2]}"#);
                assert_eq!((wait, timeout_ms), (Some(true), Some(5)));
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            Request::from_json(r#"{"cmd":"status"}"#),
            Ok(Request::Status)
        ));
        assert!(matches!(
            Request::from_json(r#"{"cmd":"stop","plugin":"x"}"#),
            Ok(Request::Stop(PluginRequest { plugin })) if plugin == "x"
        ));
        assert!(Request::from_json(r#"{"cmd":"explode"}"#).is_err());
        assert!(Request::from_json(r#"{"cmd":"call","plugin":"x"}"#).is_err());
        let publish = Request::from_json(r#"{"cmd":"publish","topic":"t","payload":1}"#);
        assert!(matches!(
            publish,
            Ok(Request::Publish(PublishRequest { retain: false, .. }))
        ));
        assert!(json_text("[18446744073709551616]").is_err());
        assert!(json_text("{").is_err());
        assert_eq!(
            json_text("{\n  \"a\": [1,\n 2]\n}\n").expect("json").get(),
            r#"{"a":[1,2]}"#
        );
    }
}
