//! The Iglu host: supervises plugin processes and serves calls to them over ZeroMQ.
//!
//! Map of the crate, following a call from the CLI to a plugin and back:
//!
//! - [`config`] (+ [`plugin_dir`]): what to run, and every timing knob.
//! - [`host`]: [`Host::start`] wires everything below together; the
//!   library API for embedding (call, status, start/stop/restart, shutdown).
//! - [`runtime_dir`]: the private 0700 directory for the sockets, and safe
//!   removal of stale ones.
//! - [`control`]: the CLI's Unix socket (JSON lines) -> [`host::call`],
//!   with the caller's [`call_options`] (deadline, wait for a restarting
//!   plugin); a failed call is a [`call_error::CallError`], apart from the
//!   wire's `WireError`.
//! - [`registry`]: every plugin's state; [`status`] renders it.
//! - [`session`]: one authenticated plugin connection: sends, calls in
//!   flight by correlation id ([`session::calls`]), liveness
//!   ([`session::liveness`]); closing it fails every waiting call. Its calls
//!   leave through its [`session::outbox`], coalesced into batches.
//! - [`router`]: the ROUTER loop; HELLOs go to [`admission`], host-API calls
//!   to [`host_api`] (+ [`kv`]), answers to the waiting [`session`]; bad
//!   input is logged and cut by the budgets of [`conduct`].
//! - [`supervisor`]: one task per plugin: start via [`runner`], watch for
//!   exit, disconnect or silence, restart per [`restart_policy`], stop;
//!   [`external`] does the same for plugins that connect by themselves.
//! - [`tcp_guard`]: the TCP endpoint for external plugins, Iglu's own accept
//!   loop in front of the ROUTER (a strangers' budget apart from admitted
//!   plugins, deadlines, frame-size cap, hang-up after REJECT).
//! - [`events`]: publish -> encode once -> every matching plugin's bounded
//!   queue -> delivery paced by credit; retained state; lifecycle events.
//! - [`simulator`]: the demo home's devices.
//! - [`json_msgpack`]: CLI JSON <-> plugin MessagePack.
//! - [`bench`]: `iglu bench`, the load-test harness with its floors.

pub mod call;
pub mod client;
pub mod clock;
pub mod conduct;
pub mod config;
pub mod control;
pub mod error;
pub mod events;
pub mod host;
pub mod json_msgpack;
pub mod kv;
pub mod plugin;
pub mod router;
pub mod runner;
pub mod runtime_dir;
pub mod session;
pub mod shared;
pub mod simulator;
pub mod tcp_guard;
#[cfg(test)]
mod testing;

pub use call::error::CallError;
pub use call::options::CallOptions;
pub use client::HostClient;
pub use config::Config;
pub use error::HostError;
pub use host::Host;
pub use plugin::state::PluginState;
pub use plugin::status::PluginStatus;
