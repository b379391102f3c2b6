//! The control socket: how the `iglu` CLI talks to a running host.
//!
//! A Unix socket in the host's 0700 runtime directory; the server also checks
//! the peer's uid. One JSON request line per connection, one JSON response
//! line back. JSON rather than the plugin protocol because people and shell
//! scripts are its users.

pub mod client;
pub mod server;

use serde::{Deserialize, Serialize};

/// A request from the CLI.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
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
        /// Arguments as JSON; sent to the plugin as MessagePack.
        args: serde_json::Value,
        /// Deadline in ms (default from the host's config).
        timeout_ms: Option<u64>,
        /// Wait, within the deadline, for a plugin that is starting or
        /// restarting (default: the host's `call_wait_for_running`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        wait: Option<bool>,
    },
    /// Publish an event from the host.
    Publish {
        /// Topic.
        topic: String,
        /// Payload as JSON; sent as MessagePack.
        payload: serde_json::Value,
        /// Keep it as the topic's retained state.
        #[serde(default)]
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
