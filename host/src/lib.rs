//! The Iglu host: supervises plugin processes and serves calls to them over ZeroMQ.
//!
//! # Map of the crate
//!
//! From the top (what a user or an embedding program touches) down to what
//! everything stands on; a module imports only from below it.
//!
//! - [`host`] starts everything ([`Host::start`]) and shuts it down;
//!   [`client`] is what an embedding program calls through ([`HostClient`]:
//!   call, publish, subscribe, status, start/stop/restart).
//! - [`control`]: the CLI's Unix socket (JSON lines), its commands defined
//!   once for the CLI and the socket. [`tcp_guard`]: the TCP endpoint for
//!   external plugins, Iglu's own accept loop in front of the ROUTER.
//!   [`simulator`]: the demo home's devices.
//! - [`router`]: the ROUTER loop; HELLOs go to [`router::admission`],
//!   host-API calls to [`router::host_api`] (store writes and
//!   plugin-to-plugin calls are routed apart, as they wait), answers to
//!   the waiting session; bad input is logged and cut by [`conduct`].
//! - [`call`]: a call from the host's side: find the live session (waiting
//!   for it if asked, [`call::options`]), send, and turn failure into a
//!   [`CallError`] for Rust callers, apart from the wire's `WireError`.
//! - [`shared`]: what the tasks above share. Nothing below takes it.
//! - [`plugin`]: plugins as the host keeps them: facts with one owner
//!   ([`plugin::registry`], changed only by its transition function), the
//!   channels and task of each ([`plugin::handle`]), and ONE supervisor loop
//!   ([`plugin::supervisor`]) with its restart policy, driving any
//!   [`runner::Runner`].
//! - [`runner`]: how a plugin's process runs: a child of the host
//!   ([`runner::child`]) or a plugin that attaches by itself
//!   ([`runner::attached`]).
//! - [`events`]: publish, retained state, each plugin's subscriptions and
//!   bounded queue, delivery paced by credit, in-process taps, lifecycle
//!   announcements.
//! - [`session`]: one authenticated plugin connection: sends that never
//!   wait, calls in flight by correlation id with deadlines and CANCEL, the
//!   outbox that batches them, liveness.
//! - [`store`]: every plugin's key-value data and the retained events, on
//!   disk (redb), mirrored in memory for reads, written in group commits by
//!   a thread of its own; a write is answered once durable.
//! - [`permissions`]: what a plugin may publish, subscribe to and call on
//!   the host, enforced by the router.
//! - [`package`]: plugin packages (manifest, bundle, signatures), for the
//!   CLI's `iglu package`, `iglu keygen` and `iglu verify`.
//! - [`config`], [`runtime_dir`], [`clock`], [`json_msgpack`], [`error`]:
//!   what the rest stands on. The transport is `iglu_bus::transport`
//!   (ZeroMQ, or its in-memory twin for unit tests).
//!
//! # The path of a call
//!
//! `iglu call echo echo '"hi"'` -> [`control::server`] parses the JSON
//! line -> [`call::call`] finds echo's live session in the registry (or
//! waits for it) -> [`session::Session::call`] registers the call in its
//! call table with its deadline and queues the CALL frame (straight into
//! the peer's socket queue when alone, else through the outbox's batch) ->
//! the plugin's REPLY arrives at [`router`], which hands it to the session
//! by correlation id -> the waiting caller wakes with the result -> JSON
//! back on the control socket. A deadline that passes first answers the
//! caller with `timeout` and sends CANCEL; a session that ends answers
//! every waiting caller at once.
//!
//! # The path of an event
//!
//! A plugin's `events.publish` host call -> [`router::host_api`] ->
//! [`events::EventHub::publish`] validates it, encodes the EVENT body once,
//! keeps it if retained (and hands it to [`store`] for the next commit), and queues the same bytes in the queue of every
//! plugin whose filters match ([`events::subscriptions`]) and offers it to
//! in-process taps -> each plugin's [`events::delivery`] task sends what its
//! credit allows, as one batch -> the plugin's CREDIT frees the window.

pub mod call;
pub mod client;
pub mod clock;
pub mod conduct;
pub mod config;
pub mod control;
pub mod error;
pub mod events;
pub mod host;
pub mod install;
pub mod json_msgpack;
pub mod limits;
pub mod logs;
pub mod metrics;
pub mod package;
pub mod permissions;
pub mod plugin;
pub mod roster;
pub mod router;
pub mod runner;
pub mod runtime_dir;
pub mod session;
pub mod settings;
pub mod shared;
pub mod simulator;
pub mod store;
pub mod tcp_guard;
#[cfg(test)]
mod testing;
pub mod watch;
pub mod web;

pub use call::error::CallError;
pub use call::options::CallOptions;
pub use client::HostClient;
pub use config::Config;
pub use error::HostError;
pub use host::Host;
pub use plugin::state::PluginState;
pub use plugin::status::PluginStatus;
