//! The control socket: how the `iglu` CLI talks to a running host.
//!
//! A Unix socket in the host's 0700 runtime directory; the server also checks
//! the peer's uid. One JSON request line per connection, one JSON response
//! line back. JSON rather than the plugin protocol because people and shell
//! scripts are its users.

pub mod client;
pub mod server;

use serde::{Deserialize, Serialize};

/// A request from the CLI. Read with [`Request::from_json`]: the
/// arguments stay JSON text (`RawValue`), which serde's tagged enums cannot
/// carry when deserializing.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub enum Request {
    /// Every plugin's status.
    Status,
    /// Call a plugin's method.
    Call {
        /// Plugin id.
        plugin: String,
        /// Method name.
        method: String,
        /// Arguments as JSON; sent to the plugin as MessagePack. Kept as
        /// text and transcoded, never built into a value tree (see
        /// `json_msgpack::text_to_msgpack`).
        args: Box<serde_json::value::RawValue>,
        /// Deadline in ms (default from the host's config).
        timeout_ms: Option<u64>,
        /// Wait, within the deadline, for a plugin that is starting or
        /// restarting (default: the host's `call_wait_for_running`).
        #[serde(skip_serializing_if = "Option::is_none")]
        wait: Option<bool>,
    },
    /// Publish an event from the host.
    Publish {
        /// Topic.
        topic: String,
        /// Payload as JSON; sent as MessagePack (transcoded like `args`).
        payload: Box<serde_json::value::RawValue>,
        /// Keep it as the topic's retained state.
        retain: bool,
    },
    /// Start a stopped or failed plugin.
    Start {
        /// Plugin id.
        plugin: String,
    },
    /// Stop a plugin.
    Stop {
        /// Plugin id.
        plugin: String,
    },
    /// Stop and start a plugin.
    Restart {
        /// Plugin id.
        plugin: String,
    },
}

impl Request {
    /// Parses one request line: its `cmd` first, then the fields of that
    /// command (two linear passes over the text; nothing is built for the
    /// arguments but their text).
    pub fn from_json(text: &str) -> Result<Request, serde_json::Error> {
        use serde_json::value::RawValue;
        #[derive(Deserialize)]
        struct Tag {
            cmd: String,
        }
        #[derive(Deserialize)]
        struct Call {
            plugin: String,
            method: String,
            args: Box<RawValue>,
            timeout_ms: Option<u64>,
            #[serde(default)]
            wait: Option<bool>,
        }
        #[derive(Deserialize)]
        struct Publish {
            topic: String,
            payload: Box<RawValue>,
            #[serde(default)]
            retain: bool,
        }
        #[derive(Deserialize)]
        struct Plugin {
            plugin: String,
        }
        let tag: Tag = serde_json::from_str(text)?;
        Ok(match tag.cmd.as_str() {
            "status" => Request::Status,
            "call" => {
                let c: Call = serde_json::from_str(text)?;
                Request::Call {
                    plugin: c.plugin,
                    method: c.method,
                    args: c.args,
                    timeout_ms: c.timeout_ms,
                    wait: c.wait,
                }
            }
            "publish" => {
                let p: Publish = serde_json::from_str(text)?;
                Request::Publish {
                    topic: p.topic,
                    payload: p.payload,
                    retain: p.retain,
                }
            }
            "start" => Request::Start {
                plugin: serde_json::from_str::<Plugin>(text)?.plugin,
            },
            "stop" => Request::Stop {
                plugin: serde_json::from_str::<Plugin>(text)?.plugin,
            },
            "restart" => Request::Restart {
                plugin: serde_json::from_str::<Plugin>(text)?.plugin,
            },
            other => {
                return Err(serde::de::Error::custom(format!(
                    "unknown cmd {other:?} (status, call, publish, start, stop, restart)"
                )))
            }
        })
    }
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
        let call = Request::Call {
            plugin: "echo".into(),
            method: "echo".into(),
            args: serde_json::value::RawValue::from_string(r#"{"n": [1, 2]}"#.into()).expect("raw"),
            timeout_ms: Some(5),
            wait: Some(true),
        };
        let text = serde_json::to_string(&call).expect("encodes");
        match Request::from_json(&text).expect("parses") {
            Request::Call {
                args,
                wait,
                timeout_ms,
                ..
            } => {
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
            Ok(Request::Stop { plugin }) if plugin == "x"
        ));
        assert!(Request::from_json(r#"{"cmd":"explode"}"#).is_err());
        assert!(Request::from_json(r#"{"cmd":"call","plugin":"x"}"#).is_err());
        let publish = Request::from_json(r#"{"cmd":"publish","topic":"t","payload":1}"#);
        assert!(matches!(
            publish,
            Ok(Request::Publish { retain: false, .. })
        ));
    }
}
