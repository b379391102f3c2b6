//! How the host hands a managed plugin what it needs to connect.
//!
//! The host sets these variables on every plugin it spawns; the SDK reads
//! them. A binary started without [`crate::handshake::COOKIE_KEY`] set to the
//! cookie value knows it was not started by a host.

/// The ZeroMQ endpoint to connect to, e.g. `ipc:///run/user/1000/iglu/plugins.sock`.
pub const ENDPOINT: &str = "IGLU_ENDPOINT";
/// The fresh secret token of this launch, to present in HELLO.
pub const TOKEN: &str = "IGLU_TOKEN";
/// For external plugins: a file holding the token (Docker secrets), used when `IGLU_TOKEN` is unset.
pub const TOKEN_FILE: &str = "IGLU_TOKEN_FILE";
/// The id under which the host knows this plugin.
pub const PLUGIN_ID: &str = "IGLU_PLUGIN_ID";
/// `managed` when the host spawned the plugin (it exits when the host goes
/// silent); `external` for a plugin started elsewhere (it reconnects).
pub const MODE: &str = "IGLU_MODE";
/// The host's process id. A managed plugin sets the Linux parent-death
/// signal (SIGKILL) on itself at start, then checks that its parent is still
/// this process (if the host died in between, nobody would send the signal).
pub const HOST_PID: &str = "IGLU_HOST_PID";
/// Milliseconds the SDK waits for WELCOME before it gives up (optional).
pub const HANDSHAKE_TIMEOUT_MS: &str = "IGLU_HANDSHAKE_TIMEOUT_MS";
